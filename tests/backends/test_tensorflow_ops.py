"""TensorFlowOps agrees with the numpy reference, stays finite at extremes, and
differentiates (twice, through input_grad)."""

import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow
tf = pytest.importorskip("tensorflow")

from gankit import NumpyOps  # noqa: E402
from gankit_tensorflow.ops import TensorFlowOps  # noqa: E402

X = np.array([-1e4, -50.0, -3.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 2.0, 30.0, 1e4])
Y = np.array([2.0, -1.0, 0.0, 3.0, -1e4, 1e4, 0.25, -0.5, 1.0, -2.0, 5.0])
POS = np.array([1e-6, 1e-3, 0.5, 1.0, 2.0, 100.0, 1e4])

# name -> (function of (ops, x, y), input set)
UNARY = {
    "softplus": lambda o, x: o.softplus(x),
    "log_sigmoid": lambda o, x: o.log_sigmoid(x),
    "sigmoid": lambda o, x: o.sigmoid(x),
    "relu": lambda o, x: o.relu(x),
    "abs": lambda o, x: o.abs(x),
    "square": lambda o, x: o.square(x),
    "stop_gradient": lambda o, x: o.stop_gradient(x),
    "mean": lambda o, x: o.mean(x),
    "sum": lambda o, x: o.sum(x),
    "std": lambda o, x: o.std(x),
    "zeros_like": lambda o, x: o.zeros_like(x),
    "ones_like": lambda o, x: o.ones_like(x),
    "maximum_scalar": lambda o, x: o.maximum(x, 0.5),
    "minimum_scalar": lambda o, x: o.minimum(x, 0.5),
    "where_scalar": lambda o, x: o.where(x > 0, x, 0.0),
}
POSITIVE = {
    "log": lambda o, x: o.log(x),
    "sqrt": lambda o, x: o.sqrt(x),
    "exp_small": lambda o, x: o.exp(-x),
}
BINARY = {
    "maximum": lambda o, x, y: o.maximum(x, y),
    "minimum": lambda o, x, y: o.minimum(x, y),
    "where": lambda o, x, y: o.where(x > y, x, y),
}
MATRIX = {
    "mean_axis0": lambda o, m: o.mean(m, axis=0),
    "sum_axis_tuple": lambda o, m: o.sum(m, axis=(1, 2)),
    "reshape": lambda o, m: o.reshape(m, (3, 8)),
    "batch_sum_squares": lambda o, m: o.batch_sum_squares(m),
}


@pytest.fixture(scope="module")
def ops():
    return TensorFlowOps(seed=0)


def _check(ops, fn, *arrays, rtol=1e-5, atol=1e-6):
    ref = NumpyOps()
    expected = fn(ref, *[ref.asarray(a) for a in arrays])
    got = ops.to_numpy(fn(ops, *[ops.asarray(a) for a in arrays]))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_matches_numpy_including_extremes(ops, name):
    _check(ops, UNARY[name], X, rtol=2e-5)


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_positive_domain_matches_numpy(ops, name):
    _check(ops, POSITIVE[name], POS)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_matches_numpy(ops, name):
    _check(ops, BINARY[name], X, Y)


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_axes_and_shapes_match_numpy(ops, name):
    m = np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7 - 1.5
    _check(ops, MATRIX[name], m)


@pytest.mark.parametrize("name", ["softplus", "log_sigmoid", "sigmoid"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_finite_values_and_gradients_at_extremes(ops, name, dtype):
    value, (grad,) = ops.value_and_grad(lambda x: ops.sum(UNARY[name](ops, x)), X, dtype=dtype)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    s = NumpyOps().sigmoid(X)
    # d softplus = sigmoid(x); d log_sigmoid = sigmoid(-x); d sigmoid = s (1 - s)
    expected = {"softplus": s, "log_sigmoid": 1 - s, "sigmoid": s * (1 - s)}[name]
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_value_and_grad_of_a_loss_formula(ops):
    def loss(r, f):
        return ops.mean(ops.softplus(-r)) + ops.mean(ops.softplus(f))

    r, f = np.array([1.0, -2.0, 1e4]), np.array([0.5, -1e4, 3.0])
    value, (gr, gf) = ops.value_and_grad(loss, r, f, dtype="float64")
    n = NumpyOps()
    assert value == pytest.approx(float(np.mean(n.softplus(-r)) + np.mean(n.softplus(f))))
    np.testing.assert_allclose(gr, -n.sigmoid(-r) / 3)
    np.testing.assert_allclose(gf, n.sigmoid(f) / 3)


def test_shape_and_asarray_default_to_float32(ops):
    x = ops.asarray(np.ones((2, 3)))
    assert x.dtype == tf.float32 and ops.shape(x) == (2, 3)
    assert ops.asarray(1.5, dtype="float64").dtype == tf.float64


def test_input_grad_of_linear_function_is_the_weights(ops):
    w = np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)
    x = ops.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    grad = ops.input_grad(lambda v: tf.linalg.matmul(v, w), x)
    np.testing.assert_allclose(ops.to_numpy(grad), np.tile(w.T, (4, 1)), rtol=1e-6)


def test_input_grad_is_differentiable_second_order(ops):
    # penalty(w) = sum over the batch of |d(x . w)/dx|^2 = n |w|^2, so d penalty/dw = 2 n w.
    w = tf.Variable([[1.0], [-2.0], [0.5]])
    x = ops.asarray(np.random.default_rng(1).normal(size=(4, 3)))
    with tf.GradientTape() as outer:
        g = ops.input_grad(lambda v: tf.linalg.matmul(v, w), x)
        penalty = ops.sum(ops.batch_sum_squares(g))
    np.testing.assert_allclose(outer.gradient(penalty, w).numpy(), 2 * 4 * w.numpy(), rtol=1e-6)


def test_input_grad_of_unconnected_function_is_zero(ops):
    x = ops.asarray(np.ones((2, 2)))
    np.testing.assert_array_equal(ops.to_numpy(ops.input_grad(lambda v: tf.constant(3.0), x)), 0.0)


def test_works_inside_tf_function_with_dynamic_batch(ops):
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def penalty(x):
        n, d = ops.shape(x)
        assert d == 3  # static sizes stay Python ints
        eps = ops.random_uniform((n, 1), like=x)
        g = ops.input_grad(lambda v: ops.sum(ops.square(v), axis=1), x * eps)
        return ops.mean(ops.batch_sum_squares(g))

    value = penalty(np.ones((5, 3), np.float32))
    assert value.shape == () and np.isfinite(value.numpy())


def test_random_draws_are_seeded_and_follow_like_dtype():
    a, b = TensorFlowOps(seed=7), TensorFlowOps(seed=7)
    np.testing.assert_array_equal(a.random_normal((3, 2)).numpy(), b.random_normal((3, 2)).numpy())
    u = a.random_uniform((1000,), like=tf.zeros((1,), tf.float64))
    assert u.dtype == tf.float64 and 0.0 <= float(tf.reduce_min(u)) and float(tf.reduce_max(u)) < 1.0
    assert not np.array_equal(a.random_normal((3,)).numpy(), TensorFlowOps(seed=8).random_normal((3,)).numpy())
