"""The object the torch plugin's factory returns."""

from __future__ import annotations

import torch

from gankit import TrainSetup
from gankit.protocol import ProcessGroup

from gankit_torch.ops import TorchOps
from gankit_torch.step import TorchTrainer


class TorchBackend:
    """PyTorch backend: :class:`TorchOps` and :class:`TorchTrainer`."""

    name = "torch"

    def version(self) -> str:
        return str(torch.__version__)

    def ops(self, dtype: str = "float32", seed: int = 0) -> TorchOps:
        """Ops on the cpu, for standalone evaluation (tests, conformance)."""
        return TorchOps(device="cpu", seed=seed, dtype=dtype)

    def build_trainer(self, setup: TrainSetup) -> TorchTrainer:
        return TorchTrainer(setup)

    def export_onnx(self, trainer: TorchTrainer, path, opset: int = 17) -> list[str]:
        """Write the trainer's generator as ONNX (torch.onnx.export); returns the input names."""
        from gankit_torch.export import export_generator

        return export_generator(trainer, path, opset)

    def distributed(self, mode: str = "auto", device: str = "auto") -> ProcessGroup:
        """torchrun's process group (gloo on cpu, nccl on cuda), or a single process."""
        from gankit_torch import distributed

        return distributed.init(mode, device)

    def generator_module(self, trainer: TorchTrainer):
        """The trainer's sampling generator as the framework's own module (see gankit_torch.export)."""
        from gankit_torch.export import generator_module

        return generator_module(trainer)

    def __repr__(self) -> str:
        return f"TorchBackend(torch {self.version()})"
