"""Torch optimizers from neutral :class:`gankit.OptimizerSettings`."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch

from gankit import CheckpointError, ConfigError, OptimizerSettings


def build_optimizer(params: Iterable[torch.nn.Parameter], settings: OptimizerSettings) -> torch.optim.Optimizer:
    """``adam`` (weight decay as L2 on the gradient), ``adamw`` (decoupled weight
    decay), ``rmsprop`` (torch's alpha = 0.99), ``sgd`` (with momentum)."""
    s = settings
    params = list(params)
    # Adam and AdamW update all of a net's parameters in one fused kernel on the CPU and
    # CUDA; RMSprop and SGD in a few multi-tensor (foreach) calls. torch picks foreach by
    # itself on CUDA only: on the CPU its default loops over the parameters op by op,
    # which cost the 2D toys' small MLPs a quarter of their step (a grid25_hq step, one
    # thread: 6.0-9.2 ms with the loop or foreach, 5.1-5.9 fused; docs/benchmarks.md).
    # True where torch has these kernels for every parameter; None leaves torch's default.
    native = True if params and all(p.device.type in ("cpu", "cuda") for p in params) else None
    if s.name == "adam":
        return torch.optim.Adam(params, lr=s.lr, betas=tuple(s.betas), eps=s.eps, weight_decay=s.weight_decay,
                                fused=native)
    if s.name == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, betas=tuple(s.betas), eps=s.eps, weight_decay=s.weight_decay,
                                 fused=native)
    if s.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=s.lr, alpha=0.99, eps=s.eps,
                                   weight_decay=s.weight_decay, momentum=s.momentum, foreach=native)
    if s.name == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, foreach=native)
    raise ConfigError(f"unknown optimizer {s.name!r}", hint="use adam, adamw, rmsprop or sgd")


def slot_names(settings: OptimizerSettings) -> tuple[str, ...]:
    """The per-parameter state torch keeps for ``settings`` (torch's own names)."""
    if settings.name in ("adam", "adamw"):
        return ("exp_avg", "exp_avg_sq")
    if settings.name == "rmsprop":
        return ("square_avg", "momentum_buffer") if settings.momentum else ("square_avg",)
    return ("momentum_buffer",) if settings.momentum else ()


def export_optimizer_state(optimizer: torch.optim.Optimizer, settings: OptimizerSettings,
                           params: Mapping[str, torch.nn.Parameter], transposed: set[str],
                           step: int) -> dict[str, np.ndarray]:
    """``step`` and every slot as ``<canonical param name>.<slot>`` in the canonical
    layout (numpy). Slots not yet created (before the first step) are zeros."""
    out = {"step": np.asarray(step, dtype=np.int64)}
    for name, p in params.items():
        state = optimizer.state.get(p, {})
        for slot in slot_names(settings):
            t = state.get(slot)
            t = torch.zeros_like(p) if t is None else t.detach()
            if name in transposed:
                t = t.t()
            out[f"{name}.{slot}"] = t.to("cpu", torch.float32).numpy().copy()
    return out


def check_optimizer_state(settings: OptimizerSettings, params: Mapping[str, torch.nn.Parameter],
                          transposed: set[str], state: Mapping[str, np.ndarray], label: str = "") -> None:
    """Raise :class:`gankit.CheckpointError` unless ``state`` has every slot, well shaped."""
    wanted = {"step": ()} | {
        f"{n}.{s}": tuple(reversed(p.shape)) if n in transposed else tuple(p.shape)
        for n, p in params.items() for s in slot_names(settings)
    }
    for key, shape in wanted.items():
        if key not in state:
            raise CheckpointError(f"optimizer state is missing {label}{key}",
                                  hint=f"it was saved with a different optimizer than {settings.name}")
        if tuple(np.shape(state[key])) != shape:
            raise CheckpointError(f"optimizer state {label}{key} has shape {tuple(np.shape(state[key]))} "
                                  f"but the model expects {shape}")


def load_optimizer_state(optimizer: torch.optim.Optimizer, settings: OptimizerSettings,
                         params: Mapping[str, torch.nn.Parameter], transposed: set[str],
                         state: Mapping[str, np.ndarray], label: str = "") -> int:
    """Load what :func:`export_optimizer_state` wrote (checked first); returns the step count."""
    check_optimizer_state(settings, params, transposed, state, label)
    step = int(np.asarray(state["step"]))
    optimizer.state.clear()
    if step == 0:
        return 0
    for name, p in params.items():
        entry = {}
        if settings.name != "sgd":  # torch keeps a per-parameter step: a float tensor on the
            # cpu, or on the parameter's device for fused and capturable optimizers
            on_device = optimizer.defaults.get("fused") or optimizer.defaults.get("capturable")
            entry["step"] = torch.tensor(float(step), dtype=torch.float32, device=p.device if on_device else "cpu")
        for slot in slot_names(settings):
            t = torch.as_tensor(np.asarray(state[f"{name}.{slot}"]), dtype=p.dtype)
            entry[slot] = (t.t() if name in transposed else t).to(p.device).contiguous()
        optimizer.state[p] = entry
    return step
