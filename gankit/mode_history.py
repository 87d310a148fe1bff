"""Mode collapse, seen and measured: the generator's 2-D samples over training, as one strip.

For 2-D point data, every ``training.sample_every`` steps and at the last step the
training loop keeps the generator's samples at the run's fixed latents in
``RUN_DIR/modes/step_NNNNNN.npy`` (so a resumed run keeps the frames before it). At the
end, :func:`write_strip` draws them side by side over the real data in
``RUN_DIR/modes_over_training.png`` and, for a Gaussian mixture (ring8, grid25, whose
dataset info gives the modes), counts each frame's captured modes and mode KL (the
``modes`` metric's definitions, :func:`gankit.metrics.mode_statistics`) into the
panel titles and ``RUN_DIR/modes_over_training.json``. A collapsing run shows its samples
hopping between a few modes; a healthy one spreads over all of them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from gankit.metrics import mode_statistics

FRAMES_DIR = "modes"
STRIP_FILE = "modes_over_training.png"
COUNTS_FILE = "modes_over_training.json"
#: Panels per row of the strip (more frames wrap onto further rows).
PER_ROW = 8
#: The most frames drawn: evenly spaced ones of a longer history (all are counted).
MAX_FRAMES = 24


def applies(exp) -> bool:
    """Whether the run's data are 2-D points (what a scatter shows whole)."""
    return exp.dataset.modality == "points" and tuple(exp.dataset.sample_shape) == (2,)


def record(exp, directory: Path, step: int, z: np.ndarray) -> Path:
    """Keep the generator's samples at the fixed latents ``z`` for ``step``."""
    frames = Path(directory) / FRAMES_DIR
    frames.mkdir(exist_ok=True)
    path = frames / f"step_{step:06d}.npy"
    np.save(path, np.asarray(exp.trainer.generate(z), dtype=np.float32), allow_pickle=False)
    return path


def _frame_files(directory: Path) -> list[tuple[int, Path]]:
    """The kept frame files with their steps, in step order (not name order: the names'
    zero padding runs out past 10^6 steps)."""
    out = []
    for path in (Path(directory) / FRAMES_DIR).glob("step_*.npy"):
        step = path.stem.removeprefix("step_")
        if step.isdigit():
            out.append((int(step), path))
    return sorted(out)


def load_frames(directory: Path) -> list[tuple[int, np.ndarray]]:
    """The kept frames, by step."""
    return [(step, np.load(path, allow_pickle=False)) for step, path in _frame_files(directory)]


def drop_frames(directory: Path, after: int) -> None:
    """Remove the frames of steps after ``after``: a resumed run draws them again, a new
    run in a reused directory (``after = 0``) draws all of its own."""
    for step, path in _frame_files(directory):
        if step > after:
            path.unlink(missing_ok=True)


def counts(frames: list[tuple[int, np.ndarray]], info: dict) -> list[dict]:
    """Per frame: step, and for a Gaussian mixture its captured modes and mode KL."""
    rows = []
    for step, fake in frames:
        row: dict = {"step": step}
        if "modes" in info and "std" in info:
            row.update(mode_statistics(fake, np.asarray(info["modes"]), float(info["std"])))
        rows.append(row)
    return rows


def write_strip(exp, directory: Path) -> Path | None:
    """Draw the kept frames as one strip (and their mode counts as JSON); None without frames."""
    from gankit.plotting import _pyplot

    directory = Path(directory)
    frames = load_frames(directory)
    if not frames:
        return None
    info = dict(exp.dataset.info)
    rows = counts(frames, info)
    (directory / COUNTS_FILE).write_text(json.dumps(rows, indent=2) + "\n")
    if len(frames) > MAX_FRAMES:
        keep = np.unique(np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(int))
        frames, rows = [frames[i] for i in keep], [rows[i] for i in keep]
    real = np.asarray(exp.dataset.sample(len(frames[0][1]), seed=exp.config.seed)).reshape(-1, 2)
    everything = np.concatenate([real, *(f for _, f in frames)])
    lo, hi = np.percentile(real, [0, 100], axis=0)
    pad = 0.15 * (hi - lo).max()
    # Generated points far off widen the view (all but the farthest 0.5% of them).
    lo = np.minimum(lo - pad, np.percentile(everything, 0.5, axis=0))
    hi = np.maximum(hi + pad, np.percentile(everything, 99.5, axis=0))
    plt = _pyplot()
    cols = min(PER_ROW, len(frames))
    nrows = math.ceil(len(frames) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.2 * cols, 2.4 * nrows), dpi=100, squeeze=False)
    for ax in axes.ravel()[len(frames):]:
        ax.axis("off")
    for ax, (step, fake), row in zip(axes.ravel(), frames, rows):
        ax.scatter(real[:, 0], real[:, 1], s=2, c="0.7", linewidths=0)
        ax.scatter(fake[:, 0], fake[:, 1], s=2, c="tab:orange", alpha=0.6, linewidths=0)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        title = f"step {step}"
        if "modes_captured" in row:
            title += f"\n{row['modes_captured']:.0f}/{row['modes_total']:.0f} modes, KL {row['mode_kl']:.2f}"
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"{exp.config.name} · {exp.config.backend} · generated (orange) over real (grey)", fontsize=9)
    fig.tight_layout()
    path = directory / STRIP_FILE
    fig.savefig(path)
    plt.close(fig)
    return path
