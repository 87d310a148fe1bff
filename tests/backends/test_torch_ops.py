"""TorchOps against the numpy reference: one table of inputs, extremes included."""

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from gankit import NumpyOps  # noqa: E402
from gankit_torch.ops import TorchOps  # noqa: E402

BIG = 1e4
INPUTS = {
    "extremes": np.array([-BIG, -100.0, -30.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 30.0, 100.0, BIG]),
    "grid": np.linspace(-5, 5, 12).reshape(3, 4),
    "batch3d": np.random.default_rng(0).normal(size=(2, 3, 4)) * 10,
}
POSITIVE = {"tiny": np.array([1e-30, 1e-6, 0.5]), "large": np.array([1.0, 1e4, 1e30])}
UNARY = ["softplus", "log_sigmoid", "sigmoid", "relu", "abs", "exp", "square", "stop_gradient",
         "zeros_like", "ones_like", "std", "mean", "sum", "batch_sum_squares"]
TOL = {"float32": dict(rtol=2e-6, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


def _compare(name, x, dtype, *args):
    ref_args = [tuple(a) if isinstance(a, list) else a for a in args]  # numpy wants tuple axes
    with np.errstate(over="ignore"):  # exp(1e4) = inf on both sides
        ref = getattr(NumpyOps(dtype=dtype), name)(x.astype(dtype), *ref_args)
    ops = TorchOps(dtype=dtype)
    got = ops.to_numpy(getattr(ops, name)(ops.asarray(x), *args))
    np.testing.assert_allclose(got, ref, **TOL[dtype], equal_nan=False)
    assert got.dtype == np.dtype(dtype) and got.shape == np.shape(ref)


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("case", INPUTS)
def test_unary_matches_numpy(name, case, dtype):
    _compare(name, INPUTS[case], dtype)


@pytest.mark.parametrize("name", ["log", "sqrt"])
@pytest.mark.parametrize("case", POSITIVE)
def test_positive_domain_matches_numpy(name, case, dtype):
    _compare(name, POSITIVE[case], dtype)


@pytest.mark.parametrize("name", ["mean", "sum"])
@pytest.mark.parametrize("axis", [0, 1, (1, 2), [0, 2], -1])
def test_reductions_with_axis(name, axis, dtype):
    _compare(name, INPUTS["batch3d"], dtype, axis)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@pytest.mark.parametrize("other", [0.0, -1.0, "array"])
def test_binary_matches_numpy(name, other, dtype):
    x = INPUTS["grid"]
    if other == "array":
        ops = TorchOps(dtype=dtype)
        y = x[::-1].copy()
        got = ops.to_numpy(getattr(ops, name)(ops.asarray(x), ops.asarray(y)))
        np.testing.assert_allclose(got, getattr(np, name)(x, y), **TOL[dtype])
    else:
        _compare(name, x, dtype, other)


def test_where_reshape_shape():
    ops, x = TorchOps(), INPUTS["grid"]
    t = ops.asarray(x)
    np.testing.assert_allclose(ops.to_numpy(ops.where(t > 0, t, ops.zeros_like(t))), np.where(x > 0, x, 0), rtol=1e-6)
    np.testing.assert_allclose(ops.to_numpy(ops.where(t > 0, 1.0, -1.0)), np.where(x > 0, 1.0, -1.0))
    assert ops.shape(ops.reshape(t, (4, 3))) == (4, 3)
    assert ops.shape(t) == (3, 4)


def test_asarray_defaults_to_float32_on_the_device():
    ops = TorchOps()
    t = ops.asarray(np.arange(3))
    assert t.dtype == torch.float32 and t.device.type == "cpu"
    assert ops.asarray(1.5).dtype == torch.float32
    assert ops.asarray([1, 2], dtype="float64").dtype == torch.float64
    assert ops.name == "torch" and ops.differentiable


def test_softplus_and_log_sigmoid_are_finite_with_finite_grads_at_extremes():
    ops = TorchOps()
    x = np.array([-BIG, -50.0, 0.0, 50.0, BIG], dtype=np.float32)
    for fn in (ops.softplus, ops.log_sigmoid):
        value, (grad,) = ops.value_and_grad(lambda t: ops.sum(fn(t)), x)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
    # d softplus(x) / dx = sigmoid(x)
    _, (grad,) = ops.value_and_grad(lambda t: ops.sum(ops.softplus(t)), x)
    np.testing.assert_allclose(grad, NumpyOps().sigmoid(x.astype(np.float64)), atol=1e-7)


def test_value_and_grad_matches_analytic():
    ops = TorchOps()
    x, y = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.5, 2.0])
    value, (gx, gy) = ops.value_and_grad(lambda a, b: ops.sum(ops.square(a) * b), x, y, dtype="float64")
    assert value == pytest.approx(np.sum(x**2 * y))
    np.testing.assert_allclose(gx, 2 * x * y)
    np.testing.assert_allclose(gy, x**2)
    assert gx.dtype == np.float64


def test_stop_gradient_blocks_gradient():
    ops = TorchOps()
    x = np.array([1.0, 2.0, -3.0])
    _, (g,) = ops.value_and_grad(lambda t: ops.sum(ops.stop_gradient(t) * t), x)
    np.testing.assert_allclose(g, x)  # not 2x
    _, (g,) = ops.value_and_grad(lambda t: ops.sum(ops.stop_gradient(t)), x)
    np.testing.assert_array_equal(g, 0)


def test_random_draws_are_seeded_and_distributed():
    a, b, c = TorchOps(seed=3), TorchOps(seed=3), TorchOps(seed=4)
    np.testing.assert_array_equal(a.to_numpy(a.random_normal((5,))), b.to_numpy(b.random_normal((5,))))
    assert not np.array_equal(a.to_numpy(a.random_uniform((5,))), c.to_numpy(c.random_uniform((5,))))
    u = a.to_numpy(a.random_uniform((20000,)))
    n = a.to_numpy(a.random_normal((20000,)))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    assert abs(n.mean()) < 0.03 and abs(n.std() - 1) < 0.03
    like = torch.zeros(2, dtype=torch.float64)
    assert a.random_normal((2, 3), like=like).dtype == torch.float64


def test_input_grad_of_linear_function_is_the_weights_and_is_differentiable():
    ops = TorchOps()
    w = torch.tensor([[1.0], [-2.0], [0.5]], requires_grad=True)
    x = ops.asarray(np.random.default_rng(1).normal(size=(4, 3)))
    grad = ops.input_grad(lambda t: (t @ w).reshape(-1), x)
    np.testing.assert_allclose(ops.to_numpy(grad), np.tile(w.detach().numpy().T, (4, 1)))
    assert not x.requires_grad  # the caller's tensor is left alone
    # a penalty on the input gradient trains the weights: d/dw sum(grad^2) = 2 * batch * w
    (gw,) = torch.autograd.grad(ops.sum(ops.square(grad)), w)
    np.testing.assert_allclose(gw.numpy(), 2 * 4 * w.detach().numpy())


def test_input_grad_second_order_of_nonlinear_function():
    ops = TorchOps(dtype="float64")
    x = ops.asarray(np.array([[0.3, -0.7]]))
    grad = ops.input_grad(lambda t: ops.sum(t**3, axis=1), x)  # 3 x^2
    np.testing.assert_allclose(ops.to_numpy(grad), 3 * ops.to_numpy(x) ** 2)
    assert grad.requires_grad  # the graph is kept for a second derivative


def test_input_grad_of_a_constant_function_is_zero():
    ops = TorchOps()
    x = ops.asarray(np.ones((2, 3)))
    np.testing.assert_array_equal(ops.to_numpy(ops.input_grad(lambda t: torch.zeros(2), x)), 0)
