"""Latent interpolation: walks between random latents, straight and spherical.

A walk from ``z0`` to ``z1`` in ``steps`` points shows how smoothly the generator maps
its latent space. The straight walk is ``lerp(z0, z1, t) = (1 - t) z0 + t z1``. Gaussian
latents live near a sphere of radius ~sqrt(dim), and the straight walk's middle passes
well inside it (at t = 1/2 two independent latents average to a vector ~0.71 times as
long), where the generator saw few latents in training; the spherical walk (White 2016,
"Sampling Generative Networks") follows the great circle instead::

    omega = arccos(z0 . z1 / (|z0| |z1|))
    slerp(z0, z1, t) = sin((1 - t) omega) / sin(omega) z0 + sin(t omega) / sin(omega) z1

It equals ``z0`` at t = 0 and ``z1`` at t = 1. Where it is undefined or ill-conditioned,
it is the straight walk: a zero latent, or latents (anti)parallel to within
``1e-6`` radians (sin(omega) ~ 0; for antiparallel latents every great circle joins them
and none is preferred). Neutral numpy over any loaded GAN's ``generate``.
"""

from __future__ import annotations

import numpy as np

#: Angles this close to 0 or pi (radians) make the spherical walk a straight one.
PARALLEL_TOLERANCE = 1e-6


def lerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points ``(1 - t) z0 + t z1`` for each ``t``: shape ``(len(t), dim)``."""
    z0, z1 = np.asarray(z0, dtype=np.float64), np.asarray(z1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1, 1)
    return (1 - t) * z0 + t * z1


def slerp(z0: np.ndarray, z1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation (see the module docstring): shape ``(len(t), dim)``."""
    z0, z1 = np.asarray(z0, dtype=np.float64), np.asarray(z1, dtype=np.float64)
    n0, n1 = np.linalg.norm(z0), np.linalg.norm(z1)
    if n0 == 0 or n1 == 0:
        return lerp(z0, z1, t)
    omega = np.arccos(np.clip(np.dot(z0 / n0, z1 / n1), -1.0, 1.0))
    if omega < PARALLEL_TOLERANCE or np.pi - omega < PARALLEL_TOLERANCE:
        return lerp(z0, z1, t)
    t = np.asarray(t, dtype=np.float64).reshape(-1, 1)
    return (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)


def walks(gan, steps: int, n_walks: int, seed: int = 0, truncation: float | None = None,
          labels: np.ndarray | None = None) -> np.ndarray:
    """Generator outputs along straight and spherical walks between random latent pairs.

    ``gan`` is a :class:`gankit.restore.LoadedGAN` (anything with ``latents(n, seed,
    truncation)`` and ``generate(z, labels)``). Returns shape
    ``(n_walks, 2, steps, *sample_shape)``: for each walk, the straight then the
    spherical one, from the same two latents. A class-conditional generator takes
    ``labels`` (one per walk; default: walk ``i`` draws class ``i % num_classes``), the
    label fixed along the walk.
    """
    if steps < 2:
        raise ValueError(f"a walk needs at least 2 steps, got {steps}")
    if n_walks < 1:
        raise ValueError(f"at least one walk, got {n_walks}")
    ends = gan.latents(2 * n_walks, seed, truncation)
    t = np.linspace(0.0, 1.0, steps)
    z = np.stack([np.concatenate([lerp(ends[2 * i], ends[2 * i + 1], t), slerp(ends[2 * i], ends[2 * i + 1], t)])
                  for i in range(n_walks)]).astype(np.float32)  # (walks, 2 * steps, dim)
    y = None
    if getattr(gan, "num_classes", None):
        per_walk = np.arange(n_walks) % gan.num_classes if labels is None else np.asarray(labels, dtype=np.int64)
        if per_walk.shape != (n_walks,):
            raise ValueError(f"one label per walk: got {per_walk.shape[0]} labels for {n_walks} walks")
        y = np.repeat(per_walk, 2 * steps)
    x = gan.generate(z.reshape(n_walks * 2 * steps, -1), y)
    return np.asarray(x).reshape(n_walks, 2, steps, *np.shape(x)[1:])
