"""Resolve a config device string to a ``jax.Device``, and set the CPU threads.

``auto`` picks the first GPU jax sees, else the cpu; ``gpu`` is an alias of ``cuda``. A
device that was asked for but is not available (``mps`` included: jax has no Metal
backend here) falls back to the cpu with one RuntimeWarning.
"""

from __future__ import annotations

import os
import re
import warnings

from gankit.errors import ConfigError

_DEVICE = re.compile(r"^(auto|cpu|mps|(cuda|gpu)(?::(\d+))?)$")
#: XLA's CPU flags for one compute thread (Eigen's pool off, one intra-op thread).
ONE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _backend_started() -> bool:
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())


def set_threads(threads: int | None) -> None:
    """Run each XLA program on one CPU thread when ``threads == 1`` (``None``: jax's
    default). XLA reads its flags when its runtime starts (the first array): after that
    this warns and changes nothing. The runtime's pool is still sized by the CPUs the
    process may use (only its affinity, e.g. ``taskset``, changes that). More than one
    thread keeps XLA's default pool."""
    if threads is None or int(threads) != 1:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen=false" in flags:
        return
    if _backend_started():
        warnings.warn("training.threads = 1 is not applied: jax's runtime already started in this process; "
                      f"set XLA_FLAGS='{ONE_THREAD_FLAGS}' in the environment instead", RuntimeWarning, stacklevel=2)
        return
    os.environ["XLA_FLAGS"] = f"{flags} {ONE_THREAD_FLAGS}".strip()


def _fallback(requested: str, why: str):
    import jax

    warnings.warn(f"device {requested!r} was requested but {why}; falling back to cpu", RuntimeWarning, stacklevel=3)
    return jax.devices("cpu")[0]


def _gpus() -> list:
    import jax

    try:
        return list(jax.devices("gpu"))
    except RuntimeError:  # no GPU backend in this jaxlib
        return []


def resolve_device(requested: str | None = "auto"):
    """``auto|cpu|cuda|cuda:N|gpu|gpu:N|mps`` -> a ``jax.Device``."""
    import jax

    text = (requested or "auto").strip().lower()
    match = _DEVICE.match(text)
    if match is None:
        raise ConfigError(f"unknown device {requested!r}", hint="use auto, cpu, cuda, cuda:N, gpu, gpu:N or mps")
    if text == "cpu":
        return jax.devices("cpu")[0]
    gpus = _gpus()
    if text == "auto":
        return gpus[0] if gpus else jax.devices("cpu")[0]
    if text == "mps":
        return _fallback(requested, "jax has no mps backend")
    index = int(match.group(3) or 0)
    if index < len(gpus):
        return gpus[index]
    return _fallback(requested, f"jax sees {len(gpus)} GPU{'' if len(gpus) == 1 else 's'}")


def device_name(device) -> str:
    """The neutral name of a ``jax.Device``: ``"cpu"`` or ``"cuda:N"``."""
    return "cpu" if device.platform == "cpu" else f"cuda:{device.id}"
