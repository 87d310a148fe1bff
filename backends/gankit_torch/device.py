"""Resolve the config's device string to a ``torch.device``, name it, and set the CPU
threads (the seeded random streams on a device are in :mod:`gankit_torch.streams`).

``auto`` picks cuda, then mps, then cpu. ``gpu`` is an alias of ``cuda``. A device
that was asked for but is not available falls back to cpu with one RuntimeWarning.
"""

from __future__ import annotations

import re
import warnings
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


def device_name(device: torch.device) -> str:
    """The neutral name of a resolved device: ``"cpu"``, ``"cuda:N"`` or ``"mps"``."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.current_device() if device.index is None else device.index}"
    return device.type


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)``: the intra-op pool, process-wide (``None``:
    leave torch's default, one thread per core, alone)."""
    if threads is not None and torch.get_num_threads() != int(threads):
        torch.set_num_threads(int(threads))
