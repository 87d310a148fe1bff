"""Neutral datasets: numpy batches for any backend.

A :class:`Dataset` yields float32 numpy batches of shape ``(batch, *sample_shape)``.
:class:`ArrayDataset` serves a finite array, reshuffled every epoch with the run's seed;
:class:`SamplerDataset` draws fresh samples from a distribution (the 2D toys);
:class:`StreamingDataset` reads its items batch by batch (files larger than memory).

Layout: images are channel-first, ``(C, H, W)`` per sample, values in [-1, 1]; the
backends convert to their framework's preferred layout (NHWC on TensorFlow) internally.

Labels (optional, for conditional GANs and class-aware metrics): a labelled dataset has
``num_classes`` set and ``labelled_batches`` yields ``(x, y)`` with ``y`` int64 class ids.
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
    #: Number of classes when the samples are labelled, else ``None``.
    num_classes: int | None = None

    def batches(self, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        """An endless iterator of batches, deterministic for a given seed."""
        raise NotImplementedError

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` samples (for plots and metrics)."""
        raise NotImplementedError

    @property
    def labelled(self) -> bool:
        """Whether :meth:`labelled_batches` is available."""
        return self.num_classes is not None

    def labelled_batches(self, batch_size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Like :meth:`batches`, with each sample's class id: ``(x, y)``, ``y`` int64 of
        shape ``(batch,)``. The images are the ones :meth:`batches` yields for the same seed."""
        raise DataError(f"the dataset {type(self).__name__} has no labels", hint="choose a labelled dataset for a conditional model")


def epoch_orders(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless index batches over ``n`` items: a fresh permutation every epoch (seeded),
    the last partial batch dropped."""
    if batch_size > n:
        raise DataError(
            f"batch size {batch_size} is larger than the dataset ({n} samples)",
            hint="lower training.batch_size",
        )
    rng = np.random.default_rng([seed, 0xDA7A])
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


@dataclass
class ArrayDataset(Dataset):
    """A finite array of samples, shuffled per epoch; the last partial batch is dropped."""

    array: np.ndarray
    modality: Literal["points", "images"] = "points"
    info: dict[str, Any] = field(default_factory=dict)
    labels: np.ndarray | None = None

    num_classes: int | None = None

    def __post_init__(self):
        self.array = np.asarray(self.array, dtype=np.float32)
        if self.array.ndim < 2 or len(self.array) == 0:
            raise DataError(f"a dataset needs an array of shape (n, ...) with n > 0, got shape {self.array.shape}")
        if not np.all(np.isfinite(self.array)):
            raise DataError("the dataset holds NaN or infinite values", hint="clean the data before training")
        self.sample_shape = tuple(self.array.shape[1:])
        if self.labels is not None:
            self.labels = np.asarray(self.labels).astype(np.int64).reshape(-1)
            if len(self.labels) != len(self.array):
                raise DataError(f"the dataset has {len(self.array)} samples but {len(self.labels)} labels")
            if len(self.labels) and self.labels.min() < 0:
                raise DataError("class labels must be non-negative integers")
            if self.num_classes is None:
                self.num_classes = int(self.labels.max()) + 1

    def __len__(self) -> int:
        return len(self.array)

    def _orders(self, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        return epoch_orders(len(self.array), batch_size, seed)

    def batches(self, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        for idx in self._orders(batch_size, seed):
            yield self.array[idx]

    def labelled_batches(self, batch_size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.labels is None:
            yield from Dataset.labelled_batches(self, batch_size, seed)
        for idx in self._orders(batch_size, seed):
            yield self.array[idx], self.labels[idx]

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


@dataclass
class StreamingDataset(Dataset):
    """Items read on demand, a batch at a time: ``load(indices)`` returns the samples
    ``(len(indices), *sample_shape)`` for integer item ids in ``[0, length)``.

    Only one batch is in memory at once, so the items may be larger than memory (an
    image folder). The order is reshuffled every epoch with the run's seed, as in
    :class:`ArrayDataset`; the last partial batch is dropped.
    """

    load: Callable[[np.ndarray], np.ndarray]
    length: int
    sample_shape: tuple[int, ...]
    modality: Literal["points", "images"] = "points"
    info: dict[str, Any] = field(default_factory=dict)
    labels: np.ndarray | None = None
    num_classes: int | None = None

    def __post_init__(self):
        if self.length <= 0:
            raise DataError("a streaming dataset needs at least one item")
        self.sample_shape = tuple(self.sample_shape)
        if self.labels is not None:
            self.labels = np.asarray(self.labels).astype(np.int64).reshape(-1)
            if len(self.labels) != self.length:
                raise DataError(f"the dataset has {self.length} items but {len(self.labels)} labels")
            if self.num_classes is None:
                self.num_classes = int(self.labels.max()) + 1

    def __len__(self) -> int:
        return self.length

    def _read(self, idx: np.ndarray) -> np.ndarray:
        x = np.asarray(self.load(np.asarray(idx, dtype=np.int64)), dtype=np.float32)
        if x.shape != (len(idx), *self.sample_shape):
            raise DataError(f"the dataset's loader returned shape {x.shape}, expected {(len(idx), *self.sample_shape)}")
        return x

    def _orders(self, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        return epoch_orders(self.length, batch_size, seed)  # the order an ArrayDataset would use

    def batches(self, batch_size: int, seed: int) -> Iterator[np.ndarray]:
        for idx in self._orders(batch_size, seed):
            yield self._read(idx)

    def labelled_batches(self, batch_size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.labels is None:
            yield from Dataset.labelled_batches(self, batch_size, seed)
        for idx in self._orders(batch_size, seed):
            yield self._read(idx), self.labels[idx]

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, 0x5A3])
        return self._read(rng.choice(self.length, size=n, replace=n > self.length))


def gaussian_mixture(centers: np.ndarray, std: float) -> Callable[[np.random.Generator, int], np.ndarray]:
    """A sampler for an equal-weight mixture of isotropic Gaussians."""
    centers = np.asarray(centers, dtype=np.float64)

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        idx = rng.integers(0, len(centers), size=n)
        return centers[idx] + std * rng.standard_normal((n, centers.shape[1]))

    return draw
