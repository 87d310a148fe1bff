"""``Ops``: the small array vocabulary every backend provides.

Losses and regularizers are written once against this vocabulary and run on every
backend, on its framework's arrays. :class:`NumpyOps` is the forward-only reference implementation the
conformance suite evaluates formulas with.

Conventions shared by every implementation:

* Arrays are the backend's own arrays (``numpy.ndarray``, ``torch.Tensor``,
  ``tf.Tensor``, ``jax.Array``). Reductions without ``axis`` reduce everything to a scalar.
* ``batch_sum_squares(x)`` sums over every axis but the first (the batch axis).
* Random draws use the backend's seeded generator, so a seeded run repeats exactly.
* ``input_grad(fn, x)`` is the gradient of ``sum(fn(x))`` with respect to ``x``,
  itself differentiable (gradient penalties are trained through it).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

Array = Any
"""A backend's own array type (its framework's tensor)."""


class Ops:
    """The array vocabulary. Subclasses implement every method for one framework."""

    #: Name of the backend providing these ops ("numpy", "torch", "tensorflow").
    name: str = "abstract"
    #: Whether :meth:`input_grad` and :meth:`value_and_grad` are available.
    differentiable: bool = False

    # -- conversion -------------------------------------------------------------
    def asarray(self, x: Any, dtype: str | None = None) -> Array:
        """Convert a numpy array or Python scalar to the backend's array (float32 by default)."""
        raise NotImplementedError

    def to_numpy(self, x: Array) -> np.ndarray:
        """Convert the backend's array to numpy (detached from any graph)."""
        raise NotImplementedError

    # -- elementwise ------------------------------------------------------------
    def softplus(self, x: Array) -> Array:
        """log(1 + exp(x)), computed stably for large |x|."""
        raise NotImplementedError

    def log_sigmoid(self, x: Array) -> Array:
        """log(sigmoid(x)) = -softplus(-x), finite for every finite x."""
        raise NotImplementedError

    def sigmoid(self, x: Array) -> Array:
        raise NotImplementedError

    def relu(self, x: Array) -> Array:
        raise NotImplementedError

    def abs(self, x: Array) -> Array:
        raise NotImplementedError

    def exp(self, x: Array) -> Array:
        raise NotImplementedError

    def log(self, x: Array) -> Array:
        raise NotImplementedError

    def square(self, x: Array) -> Array:
        raise NotImplementedError

    def sqrt(self, x: Array) -> Array:
        raise NotImplementedError

    def maximum(self, x: Array, y: Array | float) -> Array:
        raise NotImplementedError

    def minimum(self, x: Array, y: Array | float) -> Array:
        raise NotImplementedError

    def where(self, cond: Array, x: Array, y: Array) -> Array:
        raise NotImplementedError

    def floor(self, x: Array) -> Array:
        """The largest integer not above ``x``, elementwise, in ``x``'s float dtype (no
        gradient: used on random draws, e.g. DiffAugment's integer shifts)."""
        raise NotImplementedError

    def matmul(self, a: Array, b: Array) -> Array:
        """Matrix product over the last two axes, the leading axes broadcast (numpy's
        ``matmul``); differentiable in both arguments."""
        raise NotImplementedError

    def stop_gradient(self, x: Array) -> Array:
        """The same values, with no gradient flowing back through them."""
        raise NotImplementedError

    # -- shape and reductions ---------------------------------------------------
    def mean(self, x: Array, axis: int | Sequence[int] | None = None) -> Array:
        raise NotImplementedError

    def sum(self, x: Array, axis: int | Sequence[int] | None = None) -> Array:
        raise NotImplementedError

    def std(self, x: Array) -> Array:
        """Population standard deviation of all elements (a scalar)."""
        raise NotImplementedError

    def reshape(self, x: Array, shape: Sequence[int]) -> Array:
        raise NotImplementedError

    def shape(self, x: Array) -> tuple[int, ...]:
        raise NotImplementedError

    def zeros_like(self, x: Array) -> Array:
        raise NotImplementedError

    def ones_like(self, x: Array) -> Array:
        raise NotImplementedError

    def cast(self, x: Array, dtype: Any) -> Array:
        """``x`` (an array, a Python number or a size from :meth:`shape`) converted to
        ``dtype``: a name (``"float32"``, ``"float64"``, ``"float16"``, ``"bfloat16"``,
        ``"int32"``, ``"int64"``, ``"bool"``) or an array whose dtype to take. Differentiable
        between float dtypes."""
        raise NotImplementedError

    def batch_size(self, x: Array) -> Any:
        """The size of ``x``'s first axis as a number usable in arithmetic with arrays of
        ``x``'s dtype, also while a graph is traced (TensorFlow's ``tf.function``, where
        :meth:`shape` may give an int32 tensor that cannot be mixed with float arrays):
        ``ops.sum(x) / ops.batch_size(x)``."""
        raise NotImplementedError

    def trace(self, fn: Callable[..., Array]) -> Callable[..., Array]:
        """``fn`` as this backend's trainers run it: compiled (TensorFlow: a
        ``tf.function`` whose batch sizes are unknown while it is traced), or ``fn``
        itself where trainers run eagerly. The conformance suite evaluates plugins
        through it, so a plugin that only works eagerly fails there as in training."""
        return fn

    def batch_sum_squares(self, x: Array) -> Array:
        """Per-sample sum of squares over every non-batch axis: shape (batch,)."""
        n = len(self.shape(x))
        return self.sum(self.square(x), axis=tuple(range(1, n))) if n > 1 else self.square(x)

    # -- random -----------------------------------------------------------------
    def random_uniform(self, shape: Sequence[int], like: Array | None = None) -> Array:
        """Uniform [0, 1) samples from the backend's seeded generator."""
        raise NotImplementedError

    def random_normal(self, shape: Sequence[int], like: Array | None = None) -> Array:
        """Standard normal samples from the backend's seeded generator."""
        raise NotImplementedError

    # -- differentiation --------------------------------------------------------
    def input_grad(self, fn: Callable[[Array], Array], x: Array) -> Array:
        """Gradient of ``sum(fn(x))`` with respect to ``x``, differentiable itself."""
        raise NotImplementedError(
            f"the {self.name} ops are forward only: input gradients need a backend "
            "such as torch, tensorflow or jax"
        )

    def value_and_grad(
        self, fn: Callable[..., Array], *xs: np.ndarray, dtype: str = "float32"
    ) -> tuple[float, list[np.ndarray]]:
        """Evaluate scalar ``fn(*xs)`` on numpy inputs; return its value and the
        gradients with respect to each input, as numpy. Used by tests and the
        conformance suite."""
        raise NotImplementedError(
            f"the {self.name} ops are forward only: gradients need a backend such as "
            "torch, tensorflow or jax"
        )


def _axis(axis):
    """numpy takes an int or a tuple of axes, not a list."""
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


class NumpyOps(Ops):
    """Forward-only reference implementation on numpy."""

    name = "numpy"
    differentiable = False

    def __init__(self, seed: int = 0, dtype: str = "float64"):
        self.dtype = np.dtype(dtype)
        self._rng = np.random.default_rng(seed)

    def asarray(self, x, dtype=None):
        return np.asarray(x, dtype=dtype or self.dtype)

    def to_numpy(self, x):
        return np.asarray(x)

    def softplus(self, x):
        # softplus(x) = max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|.
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))

    def log_sigmoid(self, x):
        return -self.softplus(-x)

    def sigmoid(self, x):
        # Evaluate through exp(-|x|) so neither branch overflows.
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def relu(self, x):
        return np.maximum(x, 0)

    def abs(self, x):
        return np.abs(x)

    def exp(self, x):
        return np.exp(x)

    def log(self, x):
        return np.log(x)

    def square(self, x):
        return np.square(x)

    def sqrt(self, x):
        return np.sqrt(x)

    def maximum(self, x, y):
        return np.maximum(x, y)

    def minimum(self, x, y):
        return np.minimum(x, y)

    def where(self, cond, x, y):
        return np.where(cond, x, y)

    def floor(self, x):
        return np.floor(x)

    def matmul(self, a, b):
        return np.matmul(a, b)

    def stop_gradient(self, x):
        return x

    def mean(self, x, axis=None):
        return np.mean(x, axis=_axis(axis))

    def sum(self, x, axis=None):
        return np.sum(x, axis=_axis(axis))

    def std(self, x):
        return np.std(x)

    def reshape(self, x, shape):
        return np.reshape(x, shape)

    def shape(self, x):
        return tuple(np.shape(x))

    def zeros_like(self, x):
        return np.zeros_like(x)

    def ones_like(self, x):
        return np.ones_like(x)

    def cast(self, x, dtype):
        if hasattr(dtype, "dtype"):
            dtype = dtype.dtype
        elif dtype == "bfloat16":
            import ml_dtypes  # numpy has no bfloat16 of its own

            dtype = ml_dtypes.bfloat16
        return np.asarray(x).astype(dtype)

    def batch_size(self, x):
        return float(np.shape(x)[0])

    def random_uniform(self, shape, like=None):
        return self._rng.random(tuple(shape)).astype(self.dtype)

    def random_normal(self, shape, like=None):
        return self._rng.standard_normal(tuple(shape)).astype(self.dtype)
