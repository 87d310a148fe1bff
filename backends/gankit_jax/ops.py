"""``JaxOps``: gankit's array vocabulary on jax arrays.

jax is functional: random draws need a key. ``JaxOps`` keeps one (``key``) and splits it
on every draw, so losses and penalties written against :class:`gankit.Ops` draw as on the
other backends. Inside a jax transformation (``jit``, ``grad``) the key is a traced value:
:meth:`JaxOps.using_key` puts such a key in place for the duration of a traced function
and puts the concrete one back afterwards, so no traced value outlives its trace. The
trainer does this in its jitted step; :meth:`trace`, :meth:`input_grad` and
:meth:`value_and_grad` do it for themselves.

float64 exists in jax only with ``jax_enable_x64``; :meth:`value_and_grad` and
:meth:`asarray` turn it on for the duration of a float64 call (jax's ``enable_x64``
context), so the rest of the process keeps jax's float32 defaults.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import numpy as np

import jax
import jax.numpy as jnp

from gankit.ops import Ops

DTYPES = {
    "float16": jnp.float16,
    "bfloat16": jnp.bfloat16,
    "float32": jnp.float32,
    "float64": jnp.float64,
    "int32": jnp.int32,
    "int64": jnp.int64,
    "bool": jnp.bool_,
}


def _to_dtype(dtype: Any):
    """A dtype name (or numpy/jax dtype) as a jax dtype."""
    if not isinstance(dtype, str):
        dtype = np.dtype(dtype).name if np.dtype(dtype).name in DTYPES else jnp.dtype(dtype).name
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}; use one of {', '.join(DTYPES)}") from None


def _x64(dtype: Any):
    """A context with jax's 64-bit types on when ``dtype`` needs them."""
    wide = str(dtype) in ("float64", "int64") or getattr(dtype, "itemsize", 4) == 8
    return jax.enable_x64(True) if wide else contextlib.nullcontext()


def _axis(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


class JaxOps(Ops):
    """Ops on jax arrays with a seeded key (``key``), split on every draw."""

    name = "jax"
    differentiable = True

    def __init__(self, seed: int = 0, dtype: str = "float32", key=None):
        self.dtype = _to_dtype(dtype)
        self.key = jax.random.PRNGKey(int(seed)) if key is None else key

    def __repr__(self) -> str:
        return f"JaxOps(dtype={jnp.dtype(self.dtype).name!r})"

    @contextlib.contextmanager
    def using_key(self, key):
        """Draw from ``key`` within the block (a traced key inside a transformation);
        the previous key is back afterwards. Read ``self.key`` inside the block for the
        key the draws left."""
        saved, self.key = self.key, key
        try:
            yield
        finally:
            self.key = saved

    def _keyed(self, fn: Callable) -> Callable:
        """``fn`` as a function ``(key, *args) -> (out, key after its draws)``."""

        def run(key, *args):
            with self.using_key(key):
                out = fn(*args)
                return out, self.key

        return run

    # -- conversion -------------------------------------------------------------
    def asarray(self, x, dtype=None):
        dt = _to_dtype(dtype) if dtype is not None else self.dtype
        if isinstance(x, jax.Array):  # tracers too
            return x.astype(dt)
        with _x64(jnp.dtype(dt).name):
            return jnp.asarray(np.asarray(x), dtype=dt)

    def to_numpy(self, x):
        """``x`` as numpy. Inside an eager ``jax.grad`` / ``value_and_grad`` (a tracer whose
        value is known) the value it carries; inside ``jit`` there is none: an error."""
        for _ in range(16):  # transformations nest: take each tracer's primal value
            if not isinstance(x, jax.core.Tracer):
                break
            inner = getattr(x, "primal", None)
            if inner is None:
                inner = getattr(x, "val", None)
            if inner is None:
                break
            x = inner
        arr = np.asarray(x)
        return arr.astype(np.float32) if arr.dtype == jnp.bfloat16 else arr

    def _like(self, y, x):
        """Python scalars stay weakly typed (they take ``x``'s dtype); numpy becomes jax."""
        return jnp.asarray(y, dtype=x.dtype) if isinstance(y, np.ndarray) and hasattr(x, "dtype") else y

    # -- elementwise ------------------------------------------------------------
    def softplus(self, x):
        # jax.nn.softplus is logaddexp(x, 0) = max(x, 0) + log1p(exp(-|x|)): finite at +-1e4.
        return jax.nn.softplus(x)

    def log_sigmoid(self, x):
        # log(sigmoid(x)) = -softplus(-x), finite for every finite x.
        return jax.nn.log_sigmoid(x)

    def sigmoid(self, x):
        return jax.nn.sigmoid(x)

    def relu(self, x):
        return jax.nn.relu(x)

    def abs(self, x):
        return jnp.abs(x)

    def exp(self, x):
        return jnp.exp(x)

    def log(self, x):
        return jnp.log(x)

    def square(self, x):
        return jnp.square(x)

    def sqrt(self, x):
        return jnp.sqrt(x)

    def maximum(self, x, y):
        return jnp.maximum(x, self._like(y, x))

    def minimum(self, x, y):
        return jnp.minimum(x, self._like(y, x))

    def where(self, cond, x, y):
        return jnp.where(jnp.asarray(cond).astype(bool), x, y)

    def stop_gradient(self, x):
        return jax.lax.stop_gradient(x)

    # -- shape and reductions ---------------------------------------------------
    def mean(self, x, axis=None):
        return jnp.mean(x, axis=_axis(axis))

    def sum(self, x, axis=None):
        return jnp.sum(x, axis=_axis(axis))

    def std(self, x):
        return jnp.std(x)  # population std (ddof=0), as numpy's default

    def reshape(self, x, shape):
        return jnp.reshape(x, tuple(shape))

    def shape(self, x):
        return tuple(int(d) for d in jnp.shape(x))

    def zeros_like(self, x):
        return jnp.zeros_like(x)

    def ones_like(self, x):
        return jnp.ones_like(x)

    def cast(self, x, dtype):
        dt = dtype.dtype if hasattr(dtype, "dtype") and not isinstance(dtype, str) else _to_dtype(dtype)
        return jnp.asarray(x).astype(dt)

    def batch_size(self, x):
        return float(jnp.shape(x)[0])  # shapes are static under jit

    def trace(self, fn):
        """``fn`` under ``jax.jit``, as the trainer's step runs losses and penalties; its
        random draws come from (and advance) this ops' key."""
        keyed = self._keyed(fn)
        jitted = jax.jit(keyed)

        def call(*xs):
            out, self.key = jitted(self.key, *xs)
            return out

        @jax.jit
        def value_and_grads(key, *xs):
            # The value and its gradients as one compiled program (per input shape),
            # as the step computes them: not the forward, JVP and transpose of ``jitted``
            # compiled one by one under an eager value_and_grad.
            def scalar(key_, *args):
                out, key_ = keyed(key_, *args)
                if jnp.size(out) != 1:
                    raise ValueError(f"value_and_grad needs a scalar function, got shape {jnp.shape(out)}")
                return jnp.reshape(out, ()), key_

            return jax.value_and_grad(scalar, argnums=tuple(range(1, len(xs) + 1)), has_aux=True)(key, *xs)

        call.value_and_grads = value_and_grads
        return call

    # -- random -----------------------------------------------------------------
    def _draw(self, kind, shape, like):
        dtype = like.dtype if hasattr(like, "dtype") and jnp.issubdtype(like.dtype, jnp.floating) else self.dtype
        self.key, sub = jax.random.split(self.key)
        shape = tuple(int(s) for s in shape)
        if kind == "uniform":
            return jax.random.uniform(sub, shape, dtype=dtype)
        return jax.random.normal(sub, shape, dtype=dtype)

    def random_uniform(self, shape: Sequence[int], like=None):
        return self._draw("uniform", shape, like)

    def random_normal(self, shape: Sequence[int], like=None):
        return self._draw("normal", shape, like)

    # -- differentiation --------------------------------------------------------
    def input_grad(self, fn: Callable, x):
        """d sum(fn(x)) / dx by ``jax.grad``; differentiable again (jax differentiates
        anything), so a gradient penalty trains the parameters inside ``fn``."""

        def total(x_, key):
            with self.using_key(key):
                return jnp.sum(fn(x_)), self.key

        grad, self.key = jax.grad(total, has_aux=True)(x, self.key)
        return grad

    def value_and_grad(self, fn: Callable, *xs: np.ndarray, dtype: str = "float32"):
        dt = _to_dtype(dtype)
        saved, self.dtype = self.dtype, dt  # constants made by fn follow dtype
        try:
            with _x64(dtype):
                ts = [jnp.asarray(np.asarray(x), dtype=dt) for x in xs]

                def scalar(key, *args):
                    out, key = self._keyed(fn)(key, *args)
                    if jnp.size(out) != 1:
                        raise ValueError(f"value_and_grad needs a scalar function, got shape {jnp.shape(out)}")
                    return jnp.reshape(out, ()), key

                argnums = tuple(range(1, len(ts) + 1))
                if argnums and hasattr(fn, "value_and_grads"):  # from trace(): one compiled call
                    (value, self.key), grads = fn.value_and_grads(self.key, *ts)
                elif argnums:
                    (value, self.key), grads = jax.value_and_grad(scalar, argnums=argnums, has_aux=True)(
                        self.key, *ts)
                else:
                    (value, self.key), grads = scalar(self.key), ()
                value = float(value)
                grads = [self.to_numpy(g) for g in grads]
        finally:
            self.dtype = saved
        return value, grads
