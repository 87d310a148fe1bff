"""torch.optim's own mechanics (torch only: TensorFlow's and jax's optimizers are gankit
classes with these as methods): one update of a net (:func:`backward_and_step`), and an
optimizer's state to and from the canonical layout with torch's slot names."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from gankit import OptimizerSettings
from gankit.trainer import optimizer_slots


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
