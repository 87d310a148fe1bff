"""Data streaming for the training loop: the batches each step trains on, from any
position in the stream (so that a resumed run sees what an uninterrupted one would),
this process's share of each global batch, prepared ahead by a background thread (or
inline, for arrays in memory)."""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np

from gankit.data import ArrayDataset, Dataset, epoch_orders


def indexed(dataset: Dataset, labels: bool = False) -> bool:
    """Whether the dataset's batches are plain index lookups into arrays in memory (an
    :class:`ArrayDataset` whose ``batches`` is not overridden): each batch is one copy, which
    costs less than handing it over from a background thread."""
    return type(dataset).batches is ArrayDataset.batches and (not labels or dataset.labels is not None)


def batch_stream(dataset: Dataset, batch_size: int, seed: int, skip: int = 0,
                 labels: bool = False) -> Iterator[np.ndarray]:
    """The dataset's batches from position ``skip`` on, as an uninterrupted run would see
    them. An :class:`ArrayDataset` skips by index (no copies); other datasets draw and
    drop ``skip`` batches. With ``labels``, ``(x, y)`` pairs (class-conditional GANs)."""
    if indexed(dataset, labels):
        orders = epoch_orders(len(dataset), batch_size, seed)
        for _ in range(skip):
            next(orders)
        if labels:
            return ((dataset.array[idx], dataset.labels[idx]) for idx in orders)
        return (dataset.array[idx] for idx in orders)
    stream = dataset.labelled_batches(batch_size, seed) if labels else dataset.batches(batch_size, seed)
    for _ in range(skip):
        next(stream)
    return stream


def step_batches(dataset: Dataset, batch_size: int, n_critic: int, seed: int, *, start_step: int = 0,
                 rank: int = 0, world_size: int = 1, labels: bool = False) -> Iterator[np.ndarray]:
    """What each step trains on: ``(n_critic, batch_size // world_size, *sample_shape)``,
    this process's rows of the next ``n_critic`` global batches, from step ``start_step`` on.
    With ``labels``: ``(batches, labels)``, labels of shape ``(n_critic, batch_size // world_size)``."""
    stream = batch_stream(dataset, batch_size, seed, skip=start_step * n_critic, labels=labels)
    share = batch_size // world_size
    lo, hi = rank * share, (rank + 1) * share
    # An indexed dataset's batches are fresh copies: one of them (n_critic = 1) gets a leading
    # axis as a view. Other datasets' arrays are copied (a plugin may reuse its buffers).
    stack = _view_or_stack if indexed(dataset, labels) else np.stack
    while True:
        if labels:
            pairs = [next(stream) for _ in range(n_critic)]
            yield stack([x[lo:hi] for x, _ in pairs]), stack([y[lo:hi] for _, y in pairs])
        else:
            yield stack([next(stream)[lo:hi] for _ in range(n_critic)])


def _view_or_stack(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0][None] if len(arrays) == 1 else np.stack(arrays)


class Prefetcher:
    """Runs an iterator in a background thread, ``depth`` items ahead (0: inline)."""

    _END = object()

    def __init__(self, source: Iterator, depth: int):
        self.source, self.depth = source, depth
        self.error: BaseException | None = None
        if depth <= 0:
            return
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._fill, name="gankit-prefetch", daemon=True)
        self.thread.start()

    def _fill(self) -> None:
        try:
            for item in self.source:
                while not self.stop.is_set():
                    try:
                        self.queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
        except BaseException as exc:  # surfaced in the training thread
            self.error = exc
        self.queue.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        if self.depth <= 0:
            return next(self.source)
        item = self.queue.get()
        if item is self._END:
            if self.error is not None:
                raise self.error
            raise StopIteration
        return item

    def close(self) -> None:
        if self.depth > 0:
            self.stop.set()
            self.thread.join(timeout=5)
