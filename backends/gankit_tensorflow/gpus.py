"""TensorFlow's GPU set-up, once per process (TensorFlow only: torch and jax need none)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

_configured = False


def configure_gpus(gpus=None) -> None:
    """Once per process, before the GPUs are initialised: grow GPU memory on demand
    (so TensorFlow can share a GPU with torch), and turn TensorFloat-32 matmuls off
    so float32 results match torch's defaults and the CPU within float32 tolerance."""
    global _configured
    if _configured:
        return
    _configured = True
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    if not gpus:
        return
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # GPUs already initialised: keep their setting
            pass
    tf.config.experimental.enable_tensor_float_32_execution(False)
