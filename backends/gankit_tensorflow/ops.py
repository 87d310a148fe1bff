"""``TensorFlowOps``: gankit's array vocabulary on TensorFlow tensors.

Every method works eagerly and inside ``tf.function``. Binary ops convert a Python
scalar to the dtype of their tensor argument (TensorFlow does not promote dtypes), and
random draws with ``like=`` take ``like``'s dtype, so one loss runs in float32 or float64.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.ops import Ops  # noqa: E402


def _axis(axis):
    return list(axis) if isinstance(axis, (tuple, list)) else axis


class TensorFlowOps(Ops):
    """The :class:`gankit.Ops` vocabulary on TensorFlow, with a seeded ``tf.random.Generator``."""

    name = "tensorflow"
    differentiable = True

    def __init__(self, seed: int = 0, dtype: str = "float32", generator: tf.random.Generator | None = None):
        self.dtype = tf.as_dtype(dtype)
        # A generator object (not the global seed) so a seeded run repeats exactly,
        # eagerly and inside tf.function alike.
        self.generator = generator if generator is not None else tf.random.Generator.from_seed(seed)

    # -- conversion -------------------------------------------------------------
    def asarray(self, x: Any, dtype: str | None = None):
        dtype = tf.as_dtype(dtype) if dtype is not None else self.dtype
        if isinstance(x, (tf.Tensor, tf.Variable)):
            return tf.cast(x, dtype)
        return tf.convert_to_tensor(np.asarray(x), dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        if isinstance(x, (tf.Tensor, tf.Variable)):
            return np.asarray(x.numpy())
        return np.asarray(x)

    def _like(self, y, x):
        """``y`` as a tensor of ``x``'s dtype when ``y`` is a Python/numpy scalar or array."""
        if isinstance(y, (tf.Tensor, tf.Variable)):
            return y
        dtype = x.dtype if isinstance(x, (tf.Tensor, tf.Variable)) else self.dtype
        return tf.convert_to_tensor(y, dtype=dtype)

    # -- elementwise ------------------------------------------------------------
    def softplus(self, x):
        # tf.math.softplus is evaluated as max(x, 0) + log1p(exp(-|x|)): finite at +-1e4.
        return tf.math.softplus(x)

    def log_sigmoid(self, x):
        # log(sigmoid(x)) = -softplus(-x); tf.math.log_sigmoid computes exactly that.
        return tf.math.log_sigmoid(x)

    def sigmoid(self, x):
        return tf.math.sigmoid(x)

    def relu(self, x):
        return tf.nn.relu(x)

    def abs(self, x):
        return tf.math.abs(x)

    def exp(self, x):
        return tf.math.exp(x)

    def log(self, x):
        return tf.math.log(x)

    def square(self, x):
        return tf.math.square(x)

    def sqrt(self, x):
        return tf.math.sqrt(x)

    def maximum(self, x, y):
        x = self._like(x, y)
        return tf.math.maximum(x, self._like(y, x))

    def minimum(self, x, y):
        x = self._like(x, y)
        return tf.math.minimum(x, self._like(y, x))

    def where(self, cond, x, y):
        x = self._like(x, y)
        y = self._like(y, x)
        return tf.where(tf.cast(cond, tf.bool), x, y)

    def floor(self, x):
        return tf.math.floor(tf.stop_gradient(x))

    def matmul(self, a, b):
        a = self._like(a, b)
        return tf.linalg.matmul(a, self._like(b, a))  # batch axes broadcast

    def stop_gradient(self, x):
        return tf.stop_gradient(x)

    # -- shape and reductions ---------------------------------------------------
    def mean(self, x, axis=None):
        return tf.math.reduce_mean(x, axis=_axis(axis))

    def sum(self, x, axis=None):
        return tf.math.reduce_sum(x, axis=_axis(axis))

    def std(self, x):
        # Population standard deviation (ddof=0), like numpy's default.
        return tf.math.reduce_std(x)

    def reshape(self, x, shape):
        return tf.reshape(x, shape)

    def shape(self, x) -> tuple:
        """Static sizes as ints; a size unknown while tracing is a scalar int32 tensor."""
        static = x.shape.as_list() if isinstance(x, (tf.Tensor, tf.Variable)) else list(np.shape(x))
        if all(d is not None for d in static):
            return tuple(int(d) for d in static)
        dynamic = tf.shape(x)
        return tuple(int(d) if d is not None else dynamic[i] for i, d in enumerate(static))

    def cast(self, x, dtype):
        dtype = dtype.dtype if isinstance(dtype, (tf.Tensor, tf.Variable)) else tf.as_dtype(dtype)
        return tf.cast(x, dtype)

    def batch_size(self, x):
        n = x.shape[0] if isinstance(x, (tf.Tensor, tf.Variable)) else np.shape(x)[0]
        if n is not None:
            return float(n)
        # Unknown while tracing: tf.shape gives an int32 tensor; as x's dtype it mixes.
        return tf.cast(tf.shape(x)[0], x.dtype)

    def trace(self, fn):
        """``fn`` as a ``tf.function`` without autograph, its inputs' first axis of
        unknown size, as the training step traces losses and penalties."""
        traced = {}

        def compiled(key, body, xs):
            if key not in traced:
                sig = [tf.TensorSpec([None] + x.shape.as_list()[1:] if x.shape.rank else [], x.dtype) for x in xs]
                traced[key] = tf.function(body, input_signature=sig, autograph=False)
            return traced[key]

        def call(*xs):
            xs = [tf.convert_to_tensor(x) for x in xs]
            return compiled(tuple((x.dtype, x.shape.rank) for x in xs), fn, xs)(*xs)

        def value_and_grads(*xs):
            # value_and_grad of a traced fn: the value and its gradients in one graph.
            def body(*ts):
                with tf.GradientTape() as tape:
                    tape.watch(ts)
                    value = fn(*ts)
                return value, tape.gradient(value, ts, unconnected_gradients=tf.UnconnectedGradients.ZERO)

            return compiled(("grad",) + tuple((x.dtype, x.shape.rank) for x in xs), body, xs)(*xs)

        call.value_and_grads = value_and_grads
        return call

    def zeros_like(self, x):
        return tf.zeros_like(x)

    def ones_like(self, x):
        return tf.ones_like(x)

    # -- random -----------------------------------------------------------------
    def _dtype_of(self, like):
        return like.dtype if isinstance(like, (tf.Tensor, tf.Variable)) else self.dtype

    def random_uniform(self, shape: Sequence[int], like=None):
        return self.generator.uniform(shape, dtype=self._dtype_of(like))

    def random_normal(self, shape: Sequence[int], like=None):
        return self.generator.normal(shape, dtype=self._dtype_of(like))

    # -- differentiation --------------------------------------------------------
    def input_grad(self, fn: Callable, x):
        """d sum(fn(x)) / dx. The inner tape is recorded by any enclosing tape, so the
        result is differentiable again (a gradient penalty trains the discriminator)."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.math.reduce_sum(fn(x))
        return tape.gradient(y, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def value_and_grad(self, fn: Callable, *xs: np.ndarray, dtype: str = "float32"):
        tensors = [tf.convert_to_tensor(np.asarray(x), dtype=tf.as_dtype(dtype)) for x in xs]
        # Constants made inside fn (asarray, random draws) follow the requested dtype.
        saved, self.dtype = self.dtype, tf.as_dtype(dtype)
        if hasattr(fn, "value_and_grads"):  # from trace(): one compiled call
            try:
                value, grads = fn.value_and_grads(*tensors)
            finally:
                self.dtype = saved
            return float(value.numpy()), [np.asarray(g.numpy()) for g in grads]
        try:
            with tf.GradientTape() as tape:
                for t in tensors:
                    tape.watch(t)
                value = fn(*tensors)
        finally:
            self.dtype = saved
        grads = tape.gradient(value, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return float(value.numpy()), [np.asarray(g.numpy()) for g in grads]
