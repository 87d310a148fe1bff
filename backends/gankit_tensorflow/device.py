"""Resolve a config device (auto, cpu, cuda[:N], gpu[:N], mps) to a TensorFlow device string,
and set the CPU threads."""

from __future__ import annotations

import os
import re
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.errors import ConfigError  # noqa: E402
from gankit_tensorflow.gpus import configure_gpus  # noqa: E402

_PATTERN = re.compile(r"^(auto|cpu|mps|(cuda|gpu)(:(\d+))?)$")


def resolve_device(requested: str | None = "auto") -> str:
    """``"/GPU:N"`` or ``"/CPU:0"`` for a config device string.

    ``auto`` picks the first GPU when TensorFlow sees one. A device that is not
    available (including ``mps``, which TensorFlow does not support) falls back to the
    CPU with a :class:`RuntimeWarning`; an unknown string is a :class:`gankit.ConfigError`.
    """
    spec = (requested or "auto").strip().lower()
    match = _PATTERN.match(spec)
    if match is None:
        raise ConfigError(f"unknown device {requested!r}", hint="use auto, cpu, cuda, cuda:N, gpu, gpu:N or mps")
    if spec == "cpu":
        return "/CPU:0"
    gpus = tf.config.list_physical_devices("GPU")
    configure_gpus(gpus)
    if spec == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    if spec == "mps":
        reason = "TensorFlow does not support mps"
    else:
        index = int(match.group(4) or 0)
        if index < len(gpus):
            return f"/GPU:{index}"
        reason = f"TensorFlow sees {len(gpus)} GPU{'' if len(gpus) == 1 else 's'}"
    warnings.warn(f"device {requested!r} was requested but {reason}; falling back to cpu", RuntimeWarning, stacklevel=2)
    return "/CPU:0"


def device_name(device: str) -> str:
    """The neutral name of a resolved device, as the torch backend reports it:
    ``"/CPU:0"`` -> ``"cpu"``, ``"/GPU:1"`` -> ``"cuda:1"``."""
    kind, _, index = device.strip("/").partition(":")
    return "cpu" if kind.upper() == "CPU" else f"cuda:{index or 0}"


def set_threads(threads: int | None) -> None:
    """TensorFlow's intra-op and inter-op thread pools, ``threads`` each (``None``: leave
    TensorFlow's defaults). TensorFlow fixes them when its runtime starts (the first op,
    or a ``tf.distribute`` strategy); after that this warns and changes nothing."""
    if threads is None:
        return
    threading = tf.config.threading
    n = int(threads)
    if threading.get_intra_op_parallelism_threads() == n and threading.get_inter_op_parallelism_threads() == n:
        return
    try:
        threading.set_intra_op_parallelism_threads(n)
        threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        warnings.warn(
            f"training.threads = {n} is not applied: TensorFlow's runtime already started in this process "
            "(a tf.distribute strategy or an earlier op starts it); set TF_NUM_INTRAOP_THREADS and "
            "TF_NUM_INTEROP_THREADS in the environment instead",
            RuntimeWarning,
            stacklevel=2,
        )
