"""``TorchOps``: gankit's array vocabulary on torch tensors."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gankit import Ops

from gankit_torch.streams import draw, make_generator

DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int32": torch.int32,
    "int64": torch.int64,
    "bool": torch.bool,
}


def _to_dtype(dtype: Any) -> torch.dtype:
    """A dtype name (or numpy/torch dtype) as a ``torch.dtype``."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}; use one of {', '.join(DTYPES)}") from None


def _axis(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _same_samples(x, samples: torch.Tensor) -> bool:
    """``x`` is ``samples`` or a detached alias of the very same memory."""
    return (isinstance(x, torch.Tensor) and x.device == samples.device and x.dtype == samples.dtype
            and x.shape == samples.shape and x.stride() == samples.stride()
            and x.data_ptr() == samples.data_ptr())


class TorchOps(Ops):
    """Ops on torch tensors on one device, with a seeded ``torch.Generator``.

    ``generator`` may be shared with a trainer so that every random draw in a run
    (latents, penalty interpolation weights) comes from one seeded stream.
    """

    name = "torch"
    differentiable = True

    def __init__(self, device: Any = "cpu", seed: int = 0, dtype: str = "float32",
                 generator: torch.Generator | None = None):
        self.device = torch.device(device)
        self.dtype = _to_dtype(dtype)
        self.generator = generator if generator is not None else make_generator(self.device, seed)

    def __repr__(self) -> str:
        return f"TorchOps(device={str(self.device)!r}, dtype={str(self.dtype).removeprefix('torch.')!r})"

    _shared_forward: tuple | None = None

    @contextmanager
    def reuse_forward(self, fn: Callable, samples: torch.Tensor, leaf: torch.Tensor, out: torch.Tensor):
        """Within the block, ``input_grad(fn, x)`` for ``x`` holding the same memory as
        ``samples`` differentiates ``out`` (``fn(leaf)``, where ``leaf`` is ``samples``
        as a leaf requiring grad) instead of evaluating ``fn`` again: the R1 penalty
        then costs no second discriminator forward on the real batch. Only for a
        deterministic ``fn`` without state (a second forward would give the same
        values and change nothing)."""
        saved, self._shared_forward = self._shared_forward, (fn, samples, leaf, out)
        try:
            yield
        finally:
            self._shared_forward = saved

    # -- conversion -------------------------------------------------------------
    def asarray(self, x, dtype=None):
        dt = _to_dtype(dtype) if dtype is not None else self.dtype
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=dt)  # keeps the autograd graph
        return torch.as_tensor(np.asarray(x), dtype=dt, device=self.device)

    def to_numpy(self, x):
        if not isinstance(x, torch.Tensor):
            return np.asarray(x)
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()  # numpy has no bfloat16
        return x.cpu().numpy()

    def _like(self, y, x):
        """Python scalars and numpy arrays as tensors on ``x``'s device and dtype."""
        if isinstance(y, torch.Tensor):
            return y
        return torch.as_tensor(y, dtype=x.dtype if x.is_floating_point() else self.dtype, device=x.device)

    # -- elementwise ------------------------------------------------------------
    def softplus(self, x):
        # torch's softplus returns x itself above threshold 20 (where log1p(exp(x)) == x
        # in float32) and log1p(exp(x)) below: no overflow for large x, exact 0 limit
        # for very negative x.
        return F.softplus(x)

    def log_sigmoid(self, x):
        # log(sigmoid(x)) = -softplus(-x), computed as min(x, 0) - log1p(exp(-|x|)):
        # finite for every finite x, unlike log(sigmoid(x)) which is -inf below ~-88.
        return F.logsigmoid(x)

    def sigmoid(self, x):
        return torch.sigmoid(x)

    def relu(self, x):
        return torch.relu(x)

    def abs(self, x):
        return torch.abs(x)

    def exp(self, x):
        return torch.exp(x)

    def log(self, x):
        return torch.log(x)

    def square(self, x):
        return torch.square(x)

    def sqrt(self, x):
        return torch.sqrt(x)

    def maximum(self, x, y):
        return torch.maximum(x, self._like(y, x))

    def minimum(self, x, y):
        return torch.minimum(x, self._like(y, x))

    def where(self, cond, x, y):
        ref = x if isinstance(x, torch.Tensor) else y if isinstance(y, torch.Tensor) else None
        if ref is None:
            ref = torch.empty((), dtype=self.dtype, device=self.device)
        cond = torch.as_tensor(cond, device=ref.device)
        return torch.where(cond.bool(), self._like(x, ref), self._like(y, ref))

    def floor(self, x):
        return torch.floor(x.detach())

    def matmul(self, a, b):
        return torch.matmul(self._like(a, b), self._like(b, a))

    def stop_gradient(self, x):
        return x.detach()

    # -- shape and reductions ---------------------------------------------------
    def mean(self, x, axis=None):
        return x.mean() if axis is None else x.mean(dim=_axis(axis))

    def sum(self, x, axis=None):
        return x.sum() if axis is None else x.sum(dim=_axis(axis))

    def std(self, x):
        return torch.std(x, correction=0)  # population std, as numpy's default

    def reshape(self, x, shape):
        return x.reshape(tuple(shape))

    def shape(self, x):
        return tuple(x.shape)

    def zeros_like(self, x):
        return torch.zeros_like(x)

    def ones_like(self, x):
        return torch.ones_like(x)

    def cast(self, x, dtype):
        dt = dtype.dtype if isinstance(dtype, torch.Tensor) else _to_dtype(dtype)
        if isinstance(x, torch.Tensor):
            return x.to(dt)
        return torch.as_tensor(x, dtype=dt, device=self.device)

    def batch_size(self, x):
        return float(x.shape[0])  # a Python number takes the dtype of the array it meets

    # -- random -----------------------------------------------------------------
    def _draw(self, kind, shape, like):
        dtype = like.dtype if isinstance(like, torch.Tensor) and like.is_floating_point() else self.dtype
        device = like.device if isinstance(like, torch.Tensor) else self.device
        return draw(kind, shape, self.generator, device, dtype)

    def random_uniform(self, shape, like=None):
        return self._draw("uniform", shape, like)

    def random_normal(self, shape, like=None):
        return self._draw("normal", shape, like)

    # -- differentiation --------------------------------------------------------
    def input_grad(self, fn: Callable, x):
        """d sum(fn(x)) / dx with ``create_graph=True``, so a penalty on it trains
        the parameters inside ``fn`` (double backward).

        When a trainer has already evaluated ``fn`` at these very samples (see
        :meth:`reuse_forward`), the gradient comes from that forward pass."""
        shared = self._shared_forward
        if shared is not None and fn is shared[0] and _same_samples(x, shared[1]):
            leaf, out = shared[2], shared[3]
            (grad,) = torch.autograd.grad(out.sum(), leaf, create_graph=True, allow_unused=True)
            return torch.zeros_like(x) if grad is None else grad
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            out = fn(x)
            if not out.requires_grad:  # fn ignores x and has no parameters
                return torch.zeros_like(x)
            (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True, allow_unused=True)
        return torch.zeros_like(x) if grad is None else grad

    def value_and_grad(self, fn: Callable, *xs: np.ndarray, dtype: str = "float32"):
        saved, self.dtype = self.dtype, _to_dtype(dtype)  # constants made by fn follow dtype
        try:
            with torch.enable_grad():
                ts = [torch.tensor(np.asarray(x), dtype=self.dtype, device=self.device, requires_grad=True)
                      for x in xs]
                out = fn(*ts)
                if out.numel() != 1:
                    raise ValueError(f"value_and_grad needs a scalar function, got shape {tuple(out.shape)}")
                out = out.reshape(())
                grads = (torch.autograd.grad(out, ts, allow_unused=True)
                         if ts and out.requires_grad else [None] * len(ts))
        finally:
            self.dtype = saved
        return float(out.item()), [
            np.zeros(np.shape(x), dtype=_to_numpy_dtype(dtype)) if g is None else self.to_numpy(g)
            for x, g in zip(xs, grads)
        ]


def _to_numpy_dtype(dtype: str) -> np.dtype:
    return np.dtype("float32") if dtype == "bfloat16" else np.dtype(dtype)
