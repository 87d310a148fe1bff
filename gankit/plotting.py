"""Pictures of a run: scatter plots for 2D data, image grids for images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def scatter(path: str | Path, fake: np.ndarray, real: np.ndarray | None = None, title: str = "") -> Path:
    """Real points (grey) under generated ones (orange), equal axes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if real is not None:
        ax.scatter(real[:, 0], real[:, 1], s=4, c="0.6", alpha=0.5, label="real", linewidths=0)
    ax.scatter(fake[:, 0], fake[:, 1], s=4, c="tab:orange", alpha=0.6, label="generated", linewidths=0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper right", markerscale=3, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def histogram(path: str | Path, fake: np.ndarray, real: np.ndarray | None = None, title: str = "") -> Path:
    """1-D data: histograms of real (grey) and generated (orange) values."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    values = [np.ravel(fake)] + ([np.ravel(real)] if real is not None else [])
    lo, hi = min(float(v.min()) for v in values), max(float(v.max()) for v in values)
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 60)
    if real is not None:
        ax.hist(np.ravel(real), bins=bins, color="0.6", alpha=0.6, label="real")
    ax.hist(np.ravel(fake), bins=bins, color="tab:orange", alpha=0.6, label="generated")
    ax.legend(loc="upper right", frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def image_grid(path: str | Path, images: np.ndarray, columns: int | None = None,
               scale: int | None = None) -> Path:
    """A grid PNG of images shaped (n, H, W) or (n, H, W, C) or (n, C, H, W), values in [-1, 1].

    ``scale`` enlarges each pixel to a ``scale`` × ``scale`` block (nearest neighbour, so
    nothing is smoothed away); the default makes small images (MNIST's 28×28, digits' 8×8)
    at least 56 pixels on a side so a person can see them, and leaves 64×64 and up alone.
    """
    from PIL import Image

    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    n, h, w, c = x.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + 2) + 2, cols * (w + 2) + 2, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, cols)
        grid[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + col * (w + 2): 2 + col * (w + 2) + w] = (x[i] + 1) / 2
    grid = (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)
    picture = Image.fromarray(grid[..., 0] if c == 1 else grid)
    scale = scale if scale is not None else max(1, -(-56 // max(h, w)))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    picture.save(path)
    return Path(path)


def loss_curves(path: str | Path, records: list[dict]) -> Path:
    """Discriminator and generator losses against steps."""
    plt = _pyplot()
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key in ("d_loss", "g_loss"):
        ax.plot(steps, [r[key] for r in records], label=key)
    ax.set_xlabel("step")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
