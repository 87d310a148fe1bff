"""What a run shows while it trains: the progress bar, TensorBoard event files, metrics.jsonl.

TensorBoard files are written with ``tensorboardX`` (pure Python: no framework is
imported), one event file per training session under ``RUN_DIR/tensorboard``; a resumed
run purges the events after its checkpoint's step so curves do not double back.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import IO

import numpy as np

TENSORBOARD_DIR = "tensorboard"


class TensorBoard:
    """Scalars and images into TensorBoard event files (a no-op when disabled)."""

    def __init__(self, directory: Path | None, purge_step: int | None = None):
        self.writer = None
        if directory is None:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # an optional extra missing must not stop a run
            warnings.warn("tensorboardX is not installed, so no TensorBoard files are written "
                          "(pip install tensorboardX, or set training.tensorboard = false)", RuntimeWarning, stacklevel=2)
            return
        self.writer = SummaryWriter(logdir=str(directory), purge_step=purge_step, flush_secs=30)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(_tag(key), value, step)

    def image(self, tag: str, step: int, picture: Path | np.ndarray) -> None:
        """An image: an (H, W, C) or (H, W) uint8 array, or a PNG file."""
        if self.writer is None:
            return
        if isinstance(picture, (str, Path)):
            from PIL import Image

            with Image.open(picture) as im:
                picture = np.asarray(im.convert("RGB"))
        arr = np.asarray(picture)
        if arr.ndim == 2:
            arr = arr[..., None]
        self.writer.add_image(tag, arr, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _tag(key: str) -> str:
    if key in ("d_loss", "g_loss"):
        return f"loss/{key}"
    if key.startswith("penalty_"):
        return f"penalty/{key[len('penalty_'):]}"
    if key.startswith("lr_"):
        return f"lr/{key[3:]}"
    return f"train/{key}"


class MetricsLog:
    """``metrics.jsonl``: one JSON object per logged step. A resumed run keeps the lines
    up to its checkpoint's step and appends after them."""

    def __init__(self, path: Path | None, resume_step: int = 0):
        self.path = path
        self.records: list[dict] = []
        self._fh: IO[str] | None = None
        if path is None:
            return
        if resume_step and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by the interruption
                if isinstance(record, dict) and record.get("step", 0) <= resume_step:
                    self.records.append(record)
            path.write_text("".join(json.dumps(r) + "\n" for r in self.records))
            self._fh = path.open("a")
        else:
            self._fh = path.open("w")

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self._fh is not None:
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Progress:
    """A rich progress bar: step, losses, steps/s and time left (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, completed: int = 0, console=None):
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

        self.enabled = enabled
        self.start_step = completed
        self.start = time.perf_counter()
        self.bar = RichProgress(
            TextColumn("[bold]step {task.completed}/{task.total}"), BarColumn(),
            TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
            disable=not enabled, transient=False, console=console,
        )
        self.task = self.bar.add_task("train", total=total, completed=completed, losses="", rate="")

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def advance(self, step: int, scalars: dict[str, float] | None = None) -> None:
        if not self.enabled:
            return
        fields = {}
        if scalars is not None:
            rate = (step - self.start_step) / max(time.perf_counter() - self.start, 1e-9)
            fields = {"losses": f"D {scalars['d_loss']:.4f}  G {scalars['g_loss']:.4f}", "rate": f"{rate:.1f} steps/s"}
        self.bar.update(self.task, completed=step, **fields)
