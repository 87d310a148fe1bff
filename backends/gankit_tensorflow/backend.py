"""``TensorFlowBackend``: what the ``tensorflow`` backend plugin provides."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.protocol import ProcessGroup, TrainSetup  # noqa: E402

from gankit_tensorflow.gpus import configure_gpus  # noqa: E402
from gankit_tensorflow.ops import TensorFlowOps  # noqa: E402
from gankit_tensorflow.step import TensorFlowTrainer  # noqa: E402


class TensorFlowBackend:
    """The TensorFlow implementation of :class:`gankit.Backend`."""

    name = "tensorflow"

    def __init__(self):
        configure_gpus()  # before anything touches a GPU: memory growth, no TF32

    def version(self) -> str:
        return tf.__version__

    def ops(self, dtype: str = "float32", seed: int = 0) -> TensorFlowOps:
        return TensorFlowOps(seed=seed, dtype=dtype)

    def build_trainer(self, setup: TrainSetup) -> TensorFlowTrainer:
        return TensorFlowTrainer(setup)

    def distributed(self, mode: str = "auto", device: str = "auto") -> ProcessGroup:
        """MultiWorkerMirroredStrategy under TF_CONFIG, MirroredStrategy when asked, else one process."""
        from gankit_tensorflow import distributed

        return distributed.init(mode, device)

    def export_onnx(self, trainer: TensorFlowTrainer, path, opset: int = 17) -> list[str]:
        """Write the trainer's generator as ONNX (tf2onnx); returns the input names."""
        from gankit_tensorflow.export import export_generator

        return export_generator(trainer, path, opset)

    def generator_module(self, trainer: TensorFlowTrainer):
        """The trainer's sampling generator as the framework's own module (see gankit_tensorflow.export)."""
        from gankit_tensorflow.export import generator_module

        return generator_module(trainer)

    def __repr__(self) -> str:
        return f"TensorFlowBackend(tensorflow {tf.__version__})"
