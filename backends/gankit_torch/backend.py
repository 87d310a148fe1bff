"""The object the torch plugin's factory returns."""

from __future__ import annotations

import torch

from gankit import TrainSetup

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

    def __repr__(self) -> str:
        return f"TorchBackend(torch {self.version()})"
