"""What a run shows while it trains: the progress bar, TensorBoard event files, metrics.jsonl.

TensorBoard files are written with ``tensorboardX`` (pure Python: no framework is
imported), one event file per training session under ``RUN_DIR/tensorboard``; a resumed
run purges the events after its checkpoint's step so curves do not double back.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import sys
import time
import warnings
from pathlib import Path
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


def keep_until(path: Path, step: int) -> list[dict]:
    """A resumed run's JSON-lines file (``metrics.jsonl``, ``eval.jsonl``): keep the records
    up to ``step``, drop the later ones and any line cut short by the interruption, and
    rewrite the file atomically. Returns the kept records."""
    from gankit.checkpoint import atomic_write

    kept: list[dict] = []
    if not path.is_file():
        return kept
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # UnicodeDecodeError included
            continue  # a line cut short by the interruption, or damaged
        if isinstance(record, dict) and isinstance(record.get("step", 0), int) and record.get("step", 0) <= step:
            kept.append(record)
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return kept


def append_line(fd: int, record: dict) -> None:
    """Append one JSON line with a single ``write`` to a file opened ``O_APPEND``: a line
    is never interleaved with another process's or cut by a buffer boundary."""
    data = (json.dumps(record) + "\n").encode()
    written = os.write(fd, data)
    if written != len(data):  # a full disk: finish the line rather than leave half of it
        os.write(fd, data[written:])


class MetricsLog:
    """``metrics.jsonl``: one JSON object per logged step, each appended by one write. A
    resumed run keeps the lines up to its checkpoint's step and appends after them."""

    def __init__(self, path: Path | None, resume_step: int = 0):
        self.path = path
        self.records: list[dict] = []
        self._fd: int | None = None
        if path is None:
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if resume_step:
            self.records = keep_until(path, resume_step)
        else:
            flags |= os.O_TRUNC
        self._fd = os.open(path, flags, 0o666)

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self._fd is not None:
            append_line(self._fd, record)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_BARS: contextvars.ContextVar[bool] = contextvars.ContextVar("gankit_progress_bars", default=True)


def progress_bars() -> bool:
    """Whether slow work may show a progress bar now (on a terminal): false while
    ``gankit train -q`` (or ``gankit.train(progress=False)``) runs. A plugin with slow
    work of its own, like a dataset's up-front check of its files, asks this (and whether
    stderr is a terminal) before drawing one."""
    return _BARS.get()


@contextlib.contextmanager
def progress_bars_allowed(allowed: bool):
    """Within this block :func:`progress_bars` says ``allowed``."""
    token = _BARS.set(allowed)
    try:
        yield
    finally:
        _BARS.reset(token)


class Progress:
    """A rich progress bar on stderr: step, losses, steps/s and time left (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, completed: int = 0, console=None):
        from rich.console import Console
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

        if console is None and enabled:
            console = Console(stderr=True)
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


# -- the lines a run prints (a log file under a cluster job, or a terminal) ----------------
def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def step_line(step: int, total: int, scalars: dict[str, float], *, since_step: int, seconds: float) -> str:
    """One log line: ``step 500/2000 (25%)  d_loss 1.2345  g_loss 0.8765  41.3 steps/s  ETA 36s``."""
    done = step - since_step
    rate = done / seconds if seconds > 0 else 0.0
    eta = f"  ETA {_duration((total - step) / rate)}" if rate > 0 and step < total else ""
    losses = "  ".join(f"{k} {scalars[k]:.4f}" for k in ("d_loss", "g_loss") if k in scalars)
    return f"step {step}/{total} ({100 * step // total}%)  {losses}  {rate:.1f} steps/s{eta}"


def format_metrics(metrics: dict[str, float]) -> str:
    """``fid 1.234, modes_captured 8`` (integers without decimals)."""
    def value(v: float) -> str:
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.4g}"

    return ", ".join(f"{k} {value(v)}" for k, v in metrics.items())


def print_line(line: str) -> None:
    """The default sink of ``gankit train``: stdout, flushed per line. A reader that went
    away (``gankit train | head -3``) ends the printing, never the run."""
    try:
        print(line, file=sys.stdout, flush=True)
    except (BrokenPipeError, ValueError):  # ValueError: stdout was closed
        try:  # Python's recipe: the rest of stdout goes to devnull, so nothing fails at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
