"""Resolve the config's device string to a ``torch.device``, set the CPU threads, and make
(and save, and restore) the seeded random generators on a device.

``auto`` picks cuda, then mps, then cpu. ``gpu`` is an alias of ``cuda``. A device
that was asked for but is not available falls back to cpu with one RuntimeWarning.
"""

from __future__ import annotations

import re
import warnings
from typing import Mapping

import numpy as np
import torch

from gankit import ConfigError

_DEVICE = re.compile(r"^(cpu|mps|cuda|gpu)(?::(\d+))?$")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _fallback(requested: str, why: str) -> torch.device:
    warnings.warn(
        f"device {requested!r} was requested but {why} is not available; falling back to cpu",
        RuntimeWarning,
        stacklevel=3,
    )
    return torch.device("cpu")


def resolve_device(requested: str | None = "auto") -> torch.device:
    """``auto|cpu|cuda|cuda:N|gpu|gpu:N|mps`` -> ``torch.device`` (cuda with an index)."""
    text = (requested or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    match = _DEVICE.match(text)
    if match is None or (match[1] in ("cpu", "mps") and match[2] is not None):
        raise ConfigError(
            f"unknown device {requested!r}", hint="use auto, cpu, cuda, cuda:N, gpu, gpu:N or mps"
        )
    kind, index = match[1], match[2]
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        return torch.device("mps") if _mps_available() else _fallback(requested, "MPS")
    # cuda / gpu
    if not torch.cuda.is_available():
        build = "" if torch.version.cuda else " (this torch build has no CUDA support)"
        return _fallback(requested, f"CUDA{build}")
    n = torch.cuda.device_count()
    i = torch.cuda.current_device() if index is None else int(index)
    if i >= n:
        return _fallback(requested, f"CUDA device {i} (found {n})")
    return torch.device("cuda", i)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded ``torch.Generator`` on ``device`` (on cpu where the device has none)."""
    try:
        gen = torch.Generator(device=device)
    except (RuntimeError, TypeError):  # a device type without its own generator
        gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


def generator_states(generators: Mapping[str, torch.Generator], device: torch.device) -> dict[str, np.ndarray]:
    """The state of each named generator and of torch's global ones (``torch_global``, and
    ``torch_cuda`` on a GPU), as uint8 arrays: what a resumed run needs to draw the same numbers."""
    out = {name: gen.get_state().numpy().copy() for name, gen in generators.items()}
    out["torch_global"] = torch.get_rng_state().numpy().copy()
    if device.type == "cuda":
        out["torch_cuda"] = torch.cuda.get_rng_state(device).numpy().copy()
    return out


def set_generator_states(generators: Mapping[str, torch.Generator], device: torch.device,
                         state: Mapping[str, np.ndarray]) -> None:
    """Restore what :func:`generator_states` returned; KeyError for a missing stream,
    ValueError for a state torch cannot take (another torch version's, another backend's)."""
    def as_state(key):
        return torch.as_tensor(np.asarray(state[key], dtype=np.uint8))

    try:
        for name, gen in generators.items():
            gen.set_state(as_state(name))
        torch.set_rng_state(as_state("torch_global"))
        if "torch_cuda" in state and device.type == "cuda":
            torch.cuda.set_rng_state(as_state("torch_cuda"), device)
    except RuntimeError as exc:  # a state of the wrong size: torch's own message
        raise ValueError(str(exc)) from None


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)``: the intra-op pool, process-wide (``None``:
    leave torch's default, one thread per core, alone)."""
    if threads is not None and torch.get_num_threads() != int(threads):
        torch.set_num_threads(int(threads))
