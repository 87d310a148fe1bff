"""Differentiable augmentation (DiffAugment, Zhao et al. 2020), written once against :class:`Ops`.

The discriminator of a GAN trained on little data memorises the real images. DiffAugment
augments *both* the real and the generated batch with the same kind of random transform
before the discriminator sees them, in every update (the generator's too), so the
discriminator never sees an un-augmented image and the generator is not taught to make
augmented ones. Every transform is differentiable with respect to the images, so the
generator's gradients flow through it. The three transforms of the paper (its
``color,translation,cutout`` policy, as in its reference code):

* ``color``: brightness ``x + (u - 0.5)``; saturation: the deviation from the
  per-pixel channel mean times ``2u``; contrast: the deviation from the image mean
  times ``u + 0.5`` (three draws ``u ~ U[0, 1)`` per image);
* ``translation``: an integer shift of up to ``round(ratio * side)`` pixels along each
  axis, zeros shifted in (written as a product with 0/1 shift matrices, so it needs no
  gather and differentiates like any matrix product);
* ``cutout``: a square of ``round(ratio * side)`` pixels set to zero at a random centre
  (it may reach over the border, as in the reference code).

Images are channel-first ``(batch, C, H, W)``. The random numbers come from the
backend's seeded generator (``ops.random_uniform``), one row of :attr:`DiffAugment.draws`
numbers per image, so a seeded run repeats and a resumed run draws what an uninterrupted
one would. :meth:`DiffAugment.apply` is the deterministic function of the images and
those numbers: the same draws give the same images on every backend.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from gankit.ops import Array, Ops

#: The transforms, in the order they are applied, and the uniform draws each takes per image.
TRANSFORMS = {"color": 3, "translation": 2, "cutout": 2}


class DiffAugment:
    """A DiffAugment policy: ``augment(ops, images)`` draws and applies it."""

    def __init__(self, policy: Sequence[str] = ("color", "translation", "cutout"),
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.5):
        unknown = [p for p in policy if p not in TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown DiffAugment transforms {unknown}; known: {', '.join(TRANSFORMS)}")
        if not policy:
            raise ValueError("a DiffAugment policy needs at least one transform")
        # Applied in the paper's order whatever the order given; each transform once.
        self.policy = tuple(t for t in TRANSFORMS if t in policy)
        self.translation_ratio = float(translation_ratio)
        self.cutout_ratio = float(cutout_ratio)

    def __repr__(self) -> str:
        return (f"DiffAugment(policy={','.join(self.policy)!r}, translation_ratio={self.translation_ratio}, "
                f"cutout_ratio={self.cutout_ratio})")

    @property
    def draws(self) -> int:
        """Uniform random numbers drawn per image."""
        return sum(TRANSFORMS[t] for t in self.policy)

    def check_shape(self, sample_shape: Sequence[int]) -> None:
        """Refuse samples that are not images ``(C, H, W)`` (a ValueError in one line)."""
        if len(tuple(sample_shape)) != 3:
            raise ValueError(f"DiffAugment transforms images (C, H, W); the samples have shape {tuple(sample_shape)}")

    def draw(self, ops: Ops, images: Array) -> Array:
        """The random numbers for one batch: shape (batch, :attr:`draws`), uniform [0, 1),
        from the backend's seeded generator."""
        return ops.random_uniform((ops.shape(images)[0], self.draws), like=images)

    def __call__(self, ops: Ops, images: Array) -> Array:
        return self.apply(ops, images, self.draw(ops, images))

    def apply(self, ops: Ops, images: Array, u: Array) -> Array:
        """The policy applied to ``images`` (batch, C, H, W) with the random numbers ``u``
        (batch, :attr:`draws`). Differentiable with respect to ``images``."""
        _, _, h, w = ops.shape(images)
        h, w = int(h), int(w)
        x, col = images, 0
        for transform in self.policy:
            k = TRANSFORMS[transform]
            draws = [ops.reshape(u[:, col + i], (-1, 1, 1, 1)) for i in range(k)]
            col += k
            if transform == "color":
                x = _color(ops, x, *draws, h, w)
            elif transform == "translation":
                x = _translation(ops, x, *draws, h, w, self.translation_ratio)
            else:
                x = _cutout(ops, x, *draws, h, w, self.cutout_ratio)
        return x


def _color(ops: Ops, x, u_brightness, u_saturation, u_contrast, h: int, w: int):
    x = x + (u_brightness - 0.5)
    pixel_mean = ops.reshape(ops.mean(x, axis=1), (-1, 1, h, w))  # over the channels
    x = (x - pixel_mean) * (u_saturation * 2) + pixel_mean
    image_mean = ops.reshape(ops.mean(x, axis=(1, 2, 3)), (-1, 1, 1, 1))
    return (x - image_mean) * (u_contrast + 0.5) + image_mean


def _integer(ops: Ops, u, count: int):
    """``floor(u * count)`` in [0, count - 1]: an integer drawn uniformly (the minimum
    guards against ``u * count`` rounding up to ``count`` for ``u`` just below 1)."""
    return ops.minimum(ops.floor(u * count), float(count - 1))


def _index(ops: Ops, n: int, axis: int):
    """0..n-1 as floats, laid along ``axis`` of a 4-axis array of ones."""
    shape = [1, 1, 1, 1]
    shape[axis] = n
    return ops.asarray(np.arange(n, dtype=np.float32).reshape(shape))


def _translation(ops: Ops, x, u_rows, u_cols, h: int, w: int, ratio: float):
    # out[i, j] = x[i + s, j + t] (zero outside), integer s in [-sh, sh], t in [-sw, sw].
    # A 0/1 matrix with ones where column - row = shift moves the rows: relu(1 - |d|)
    # is 1 at d = 0 and 0 at every other integer d.
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    s = _integer(ops, u_rows, 2 * sh + 1) - sh  # (batch, 1, 1, 1)
    t = _integer(ops, u_cols, 2 * sw + 1) - sw
    rows = ops.relu(1 - ops.abs(_index(ops, h, 3) - _index(ops, h, 2) - s))  # [i, j] = 1 iff j = i + s
    cols = ops.relu(1 - ops.abs(_index(ops, w, 2) - _index(ops, w, 3) - t))  # [j, l] = 1 iff j = l + t
    return ops.matmul(ops.matmul(rows, x), cols)


def _inside(ops: Ops, index, low, size: int):
    """1 where ``low <= index < low + size`` (integers), else 0."""
    return ops.minimum(ops.relu(ops.minimum(index - low + 1, low + size - index)), 1.0)


def _cutout(ops: Ops, x, u_rows, u_cols, h: int, w: int, ratio: float):
    # As the reference code: a size_h × size_w square whose centre row is drawn from
    # 0..h - size_h % 2 (so it may hang over the border), every channel zeroed there.
    size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = _integer(ops, u_rows, h + 1 - size_h % 2) - size_h // 2
    left = _integer(ops, u_cols, w + 1 - size_w % 2) - size_w // 2
    box = _inside(ops, _index(ops, h, 2), top, size_h) * _inside(ops, _index(ops, w, 3), left, size_w)
    return x * (1 - box)
