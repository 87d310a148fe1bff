"""Built-in datasets: the PacGAN 2D toys and arrays from a ``.npy``/``.npz`` file.

* ``ring8``: 8 Gaussians on a circle of radius 1, sigma 0.01 (PacGAN, Lin et al. 2018).
* ``grid25``: 25 Gaussians on {-4, -2, 0, 2, 4}^2, sigma 0.05 (PacGAN).
* ``npy``: every sample of an array file; a ``.npz`` names its array with ``key``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

import gankit


def absolute_path(value: str) -> str:
    """A data path as an absolute one (``~`` expanded, relative to the working directory),
    so the run's saved config finds the data from any directory later (``gankit evaluate``)."""
    if not value.strip():
        raise ValueError("must not be empty")
    path = Path(value).expanduser()
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # a symlink loop: refused when the file is opened
        return os.path.abspath(path)


def shown(path: Path | str) -> str:
    """A path as an error message names it: relative to the working directory when it lies
    inside it (as the user most likely typed it), absolute otherwise (and from ``/``)."""
    path = Path(path)
    try:
        cwd = Path.cwd()
        return str(path) if cwd.parent == cwd else str(path.relative_to(cwd))
    except (ValueError, OSError):
        return str(path)


class RingParams(gankit.StrictModel):
    """Parameters of ``ring8``."""

    modes: int = Field(default=8, ge=1, le=100_000)
    """Number of Gaussians, evenly spaced on the circle."""
    radius: float = Field(default=1.0, gt=0, le=1e6)
    """Radius of the circle."""
    std: float = Field(default=0.01, gt=0, le=1e6)
    """Standard deviation of each Gaussian."""


class GridParams(gankit.StrictModel):
    """Parameters of ``grid25``."""

    side: int = Field(default=5, ge=1, le=300)
    """Modes per side of the square grid (side^2 modes)."""
    spacing: float = Field(default=2.0, gt=0, le=1e6)
    """Distance between neighbouring modes; the grid is centred on 0."""
    std: float = Field(default=0.05, gt=0, le=1e6)
    """Standard deviation of each Gaussian."""


class ArrayFileParams(gankit.StrictModel):
    """Parameters of ``npy``."""

    path: str
    """Path to a .npy or .npz file holding an array of shape (n, ...)."""
    key: str | None = None
    """Array name inside a .npz (default: its only array)."""
    labels_key: str | None = None
    """Name of an integer class-label array inside the .npz (same length as the samples)."""
    modality: Literal["auto", "points", "images"] = "auto"
    """auto: images for arrays of shape (n, C, H, W), points otherwise. Images are
    channel-first, values in [-1, 1]."""

    @field_validator("path")
    @classmethod
    def _absolute(cls, v):
        return absolute_path(v)


def ring_centers(p: RingParams) -> np.ndarray:
    angles = 2 * np.pi * np.arange(p.modes) / p.modes
    return p.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_centers(p: GridParams) -> np.ndarray:
    ticks = (np.arange(p.side) - (p.side - 1) / 2) * p.spacing
    return np.array([(x, y) for x in ticks for y in ticks], dtype=np.float64)


def make_ring(params: RingParams, seed: int = 0) -> gankit.Dataset:
    centers = ring_centers(params)
    return gankit.SamplerDataset(
        draw=gankit.gaussian_mixture(centers, params.std), sample_shape=(2,),
        info={"modes": centers.tolist(), "std": params.std},
    )


def make_grid(params: GridParams, seed: int = 0) -> gankit.Dataset:
    centers = grid_centers(params)
    return gankit.SamplerDataset(
        draw=gankit.gaussian_mixture(centers, params.std), sample_shape=(2,),
        info={"modes": centers.tolist(), "std": params.std},
    )


def load_array_file(params: ArrayFileParams, seed: int = 0) -> gankit.Dataset:
    path = Path(params.path).expanduser()
    if not path.is_file():
        raise gankit.DataError(f"data file {shown(path)!r} does not exist", hint="check data.params.path")
    try:
        # allow_pickle=False: loading data never runs code.
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise gankit.DataError(
            f"data file {shown(path)!r} is not a readable .npy/.npz array ({' '.join(str(exc).split())})",
            hint="save it with numpy.save or numpy.savez, without object arrays",
        ) from None
    labels = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if params.labels_key is not None:
                if params.labels_key not in keys:
                    raise gankit.DataError(f"data file {shown(path)!r} has no array {params.labels_key!r}; it holds {keys}",
                                           hint="check data.params.labels_key")
                labels = loaded[params.labels_key]
                if not np.issubdtype(labels.dtype, np.integer):
                    raise gankit.DataError(f"labels {params.labels_key!r} in {shown(path)!r} must be integers, got {labels.dtype}")
                keys = [k for k in keys if k != params.labels_key]
            key = params.key or (keys[0] if len(keys) == 1 else None)
            if key is None or key not in keys:
                raise gankit.DataError(
                    f"data file {shown(path)!r} holds arrays {keys}; choose one",
                    hint="set data.params.key",
                )
            try:
                array = loaded[key]
            except ValueError as exc:
                raise gankit.DataError(f"array {key!r} in {shown(path)!r} cannot be read: {exc}") from None
    else:
        if params.labels_key is not None:
            raise gankit.DataError(f"data file {shown(path)!r} is a .npy: labels need a .npz", hint="unset data.params.labels_key")
        array = loaded
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating) or array.ndim < 2:
        raise gankit.DataError(
            f"data file {shown(path)!r} must hold a real numeric array of shape (n, ...), got {array.dtype} {array.shape}",
        )
    modality = params.modality if params.modality != "auto" else ("images" if array.ndim == 4 else "points")
    return gankit.ArrayDataset(array, modality=modality, labels=labels, info={"source": str(path)})


@gankit.hookimpl
def gankit_register_datasets():
    return [
        gankit.DatasetRecord(name="ring8", params=RingParams, factory=make_ring,
                             description="8 Gaussians on a circle (PacGAN 2D ring)"),
        gankit.DatasetRecord(name="grid25", params=GridParams, factory=make_grid,
                             description="25 Gaussians on a 5x5 grid (PacGAN 2D grid)"),
        gankit.DatasetRecord(name="npy", params=ArrayFileParams, factory=load_array_file,
                             description="Samples from a .npy or .npz array file"),
    ]
