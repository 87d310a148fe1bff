"""Torch optimizers from neutral :class:`gankit.OptimizerSettings`."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch

from gankit import ConfigError, OptimizerSettings
from gankit.trainer import optimizer_slots


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


def backward_and_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[torch.nn.Parameter],
                      settings: OptimizerSettings, scaler: torch.amp.GradScaler | None = None,
                      **backward_kwargs) -> None:
    """One network's update: ``loss.backward`` (which averages the gradients over the
    ranks under DDP), ``clip_grad_norm``, the optimizer's step, then WGAN weight clipping
    of every parameter (not buffer) into ``[-clip_weights, clip_weights]``. With float16's
    ``scaler`` the loss is scaled and the gradients unscaled before clipping."""
    (scaler.scale(loss) if scaler else loss).backward(**backward_kwargs)
    clip = settings.clip_grad_norm
    if scaler:
        if clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
    if settings.clip_weights:
        with torch.no_grad():
            torch._foreach_clamp_min_(params, -settings.clip_weights)
            torch._foreach_clamp_max_(params, settings.clip_weights)


def export_optimizer_state(optimizer: torch.optim.Optimizer, settings: OptimizerSettings,
                           params: Mapping[str, torch.nn.Parameter], transposed: set[str],
                           step: int) -> dict[str, np.ndarray]:
    """``step`` and every slot as ``<canonical param name>.<slot>`` in the canonical
    layout (numpy). Slots not yet created (before the first step) are zeros. ``step`` is
    the optimizer's own per-parameter count where it keeps one (Adam, AdamW, RMSprop): a
    fused step that float16's loss scaler skipped is not counted there."""
    own = [float(entry["step"]) for entry in optimizer.state.values() if "step" in entry]
    out = {"step": np.asarray(int(own[0]) if own else step, dtype=np.int64)}
    for name, p in params.items():
        state = optimizer.state.get(p, {})
        for slot in optimizer_slots(settings):
            t = state.get(slot)
            t = torch.zeros_like(p) if t is None else t.detach()
            if name in transposed:
                t = t.t()
            out[f"{name}.{slot}"] = t.to("cpu", torch.float32).numpy().copy()
    return out


def load_optimizer_state(optimizer: torch.optim.Optimizer, settings: OptimizerSettings,
                         params: Mapping[str, torch.nn.Parameter], transposed: set[str],
                         state: Mapping[str, np.ndarray]) -> int:
    """Load what :func:`export_optimizer_state` wrote (names and shapes checked by
    :func:`gankit.trainer.check_optimizer_state`); returns the step count."""
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
        for slot in optimizer_slots(settings):
            t = torch.as_tensor(np.asarray(state[f"{name}.{slot}"]), dtype=p.dtype)
            entry[slot] = (t.t() if name in transposed else t).to(p.device).contiguous()
        optimizer.state[p] = entry
    return step
