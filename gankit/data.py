"""Neutral datasets: numpy batches for any backend.

A :class:`Dataset` yields float32 numpy batches of shape ``(batch, *sample_shape)``.
:class:`ArrayDataset` serves a finite array, reshuffled every epoch with the run's seed;
:class:`SamplerDataset` draws fresh samples from a distribution (the 2D toys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal

import numpy as np

from gankit.errors import DataError


class Dataset:
    """What a dataset plugin's factory returns."""

    #: Shape of one sample, excluding the batch axis.
    sample_shape: tuple[int, ...]
    #: ``points`` (low-dimensional, plotted as a scatter) or ``images``.
    modality: Literal["points", "images"] = "points"
    #: Facts for metrics and plots (e.g. ``modes`` and ``std`` of a Gaussian mixture).
    info: dict[str, Any]

    def batches(self, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        """An endless iterator of batches, deterministic for a given seed."""
        raise NotImplementedError

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` samples (for plots and metrics)."""
        raise NotImplementedError


@dataclass
class ArrayDataset(Dataset):
    """A finite array of samples, shuffled per epoch; the last partial batch is dropped."""

    array: np.ndarray
    modality: Literal["points", "images"] = "points"
    info: dict[str, Any] = field(default_factory=dict)
    labels: np.ndarray | None = None

    def __post_init__(self):
        self.array = np.asarray(self.array, dtype=np.float32)
        if self.array.ndim < 2 or len(self.array) == 0:
            raise DataError(f"a dataset needs an array of shape (n, ...) with n > 0, got shape {self.array.shape}")
        if not np.all(np.isfinite(self.array)):
            raise DataError("the dataset holds NaN or infinite values", hint="clean the data before training")
        self.sample_shape = tuple(self.array.shape[1:])

    def __len__(self) -> int:
        return len(self.array)

    def batches(self, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        if batch_size > len(self.array):
            raise DataError(
                f"batch size {batch_size} is larger than the dataset ({len(self.array)} samples)",
                hint="lower training.batch_size",
            )
        rng = np.random.default_rng([seed, 0xDA7A])
        while True:
            order = rng.permutation(len(self.array))
            for start in range(0, len(order) - batch_size + 1, batch_size):
                yield self.array[order[start : start + batch_size]]

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, 0x5A3])
        idx = rng.choice(len(self.array), size=n, replace=n > len(self.array))
        return self.array[idx]


@dataclass
class SamplerDataset(Dataset):
    """Fresh samples on every draw: ``draw(rng, n)`` returns ``(n, *sample_shape)``."""

    draw: Callable[[np.random.Generator, int], np.ndarray]
    sample_shape: tuple[int, ...]
    modality: Literal["points", "images"] = "points"
    info: dict[str, Any] = field(default_factory=dict)

    def batches(self, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([seed, 0xDA7A])
        while True:
            yield np.asarray(self.draw(rng, batch_size), dtype=np.float32)

    def sample(self, n: int, seed: int) -> np.ndarray:
        return np.asarray(self.draw(np.random.default_rng([seed, 0x5A3]), n), dtype=np.float32)


def gaussian_mixture(centers: np.ndarray, std: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    """A sampler for an equal-weight mixture of isotropic Gaussians."""
    centers = np.asarray(centers, dtype=np.float64)

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        idx = rng.integers(0, len(centers), size=n)
        return centers[idx] + std * rng.standard_normal((n, centers.shape[1]))

    return draw
