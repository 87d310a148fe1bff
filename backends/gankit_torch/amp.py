"""Mixed precision on torch: ``torch.autocast`` for the forwards, a ``GradScaler`` per optimizer for float16."""

from __future__ import annotations

import contextlib
from typing import Mapping

import numpy as np
import torch

from gankit.errors import ConfigError

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class Precision:
    """A trainer's compute precision. ``bfloat16`` and ``float16`` run the forward passes
    and losses under ``torch.autocast`` (weights stay float32); ``float16`` also scales each
    network's loss with its own ``GradScaler`` (see :func:`gankit_torch.update.backward_and_step`),
    whose scales a resumed run restores (:meth:`state`)."""

    def __init__(self, precision: str, device: torch.device, roles: tuple[str, ...]):
        self.device = device
        self.dtype = _DTYPES.get(precision)
        if self.dtype is not None and device.type == "mps":
            raise ConfigError("mixed precision is not supported on mps", hint="use precision = 'float32'")
        #: The loss scalers by role (float16 only).
        self.scalers = {role: torch.amp.GradScaler(device.type) for role in roles} if precision == "float16" else {}

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def state(self) -> dict[str, np.ndarray]:
        """Each scaler's scale and growth tracker as ``loss_scale.<role>`` (float64 pairs)."""
        out = {}
        for role, scaler in self.scalers.items():
            st = scaler.state_dict()
            out[f"loss_scale.{role}"] = np.asarray([st.get("scale", 0.0), st.get("_growth_tracker", 0)], np.float64)
        return out

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`state` wrote (a scaler without an entry keeps its own)."""
        for role, scaler in self.scalers.items():
            if f"loss_scale.{role}" in state:
                scale, tracker = np.asarray(state[f"loss_scale.{role}"], dtype=np.float64).tolist()
                scaler.load_state_dict({**scaler.state_dict(), "scale": scale, "_growth_tracker": int(tracker)})
