"""The built-in regularizers: closed forms on linear and quadratic discriminators,
differentiability through the input gradient, the random draws, and the registry.

Every test table runs over every Ops implementation: numpy (float64, with a
central-difference ``input_grad`` defined below, exact for the linear and quadratic
discriminators used here), torch and TensorFlow (float32).
"""

from __future__ import annotations

import numpy as np
import pytest

import gankit
from gankit_plugins import losses as L
from gankit_plugins import regularizers as R


class FiniteDifferenceOps(gankit.NumpyOps):
    """NumpyOps with an ``input_grad`` by central differences.

    Every discriminator in these tests maps sample i to logit i alone, so one
    perturbation of feature j in all samples at once gives column j of every
    sample's gradient. Central differences are exact for quadratics."""

    name = "numpy-fd"

    def input_grad(self, fn, x, h=1e-3):
        x = np.asarray(x, dtype=np.float64)
        grad = np.zeros_like(x)
        for j in np.ndindex(x.shape[1:]):
            up, down = x.copy(), x.copy()
            up[(slice(None),) + j] += h
            down[(slice(None),) + j] -= h
            grad[(slice(None),) + j] = (np.asarray(fn(up)) - np.asarray(fn(down))) / (2 * h)
        return grad


class FixedDrawOps(FiniteDifferenceOps):
    """Hands out given arrays as its uniform draws and records the shapes asked for."""

    def __init__(self, *draws):
        super().__init__(dtype="float64")
        self.draws, self.shapes = list(draws), []

    def random_uniform(self, shape, like=None):
        self.shapes.append(tuple(shape))
        return self.draws.pop(0)


def _numpy_ops():
    return FiniteDifferenceOps(seed=0, dtype="float64")


def _torch_ops():
    ops = pytest.importorskip("gankit_torch.ops", reason="the torch backend is not installed")
    return ops.TorchOps(device="cpu", seed=0, dtype="float32")


def _tf_ops():
    ops = pytest.importorskip("gankit_tensorflow.ops", reason="the tensorflow backend is not installed")
    return ops.TensorFlowOps(seed=0, dtype="float32")


IMPLEMENTATIONS = [
    pytest.param((_numpy_ops, 1e-9), id="numpy-float64"),
    pytest.param((_torch_ops, 1e-5), id="torch-float32", marks=pytest.mark.torch),
    pytest.param((_tf_ops, 1e-5), id="tensorflow-float32", marks=pytest.mark.tensorflow),
]
DIFFERENTIABLE = IMPLEMENTATIONS[1:]


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request):
    factory, rtol = request.param
    return factory(), rtol


@pytest.fixture(params=DIFFERENTIABLE)
def diff_ops(request):
    factory, _ = request.param
    return factory()


def make_reg(name: str, **params) -> gankit.Regularizer:
    cls, _ = R.REGULARIZERS[name]
    return cls(cls.params_model(**params))


# -- discriminators written with ops ----------------------------------------------
def linear(ops, w):
    """D(x) = <x, w> per sample; grad_x D = w everywhere, so ||grad|| = ||w||."""
    axes = tuple(range(1, 1 + len(ops.shape(w))))
    return lambda x: ops.sum(x * w, axis=axes)


def quadratic(ops, w):
    """D(x) = <x^2, w> per sample; grad_x D = 2 w * x."""
    axes = tuple(range(1, 1 + len(ops.shape(w))))
    return lambda x: ops.sum(ops.square(x) * w, axis=axes)


DATA = np.random.default_rng(3)
BATCHES = {
    "flat": (DATA.normal(size=(4, 3)), DATA.normal(size=(4, 3))),
    "image": (DATA.normal(size=(4, 2, 3, 3)), DATA.normal(size=(4, 2, 3, 3))),
}


def weights(layout: str, w3) -> np.ndarray:
    """The 3-vector ``w3`` laid out for a batch's sample shape (zeros elsewhere)."""
    sample_shape = BATCHES[layout][0].shape[1:]
    w = np.zeros(int(np.prod(sample_shape)))
    w[:3] = w3
    return w.reshape(sample_shape)


UNIT, NORM5, NORM_HALF = [0.6, 0.8, 0.0], [3.0, 4.0, 0.0], [0.3, 0.4, 0.0]

# (name, params, w, expected penalty), worked out by hand from ||w||.
LINEAR_CASES = [
    ("gradient_penalty", {}, UNIT, 0.0),                                     # (1 - 1)^2
    ("gradient_penalty", {}, NORM5, 160.0),                                  # 10 (5 - 1)^2
    ("gradient_penalty", {}, NORM_HALF, 2.5),                                # 10 (0.5 - 1)^2
    ("gradient_penalty", {"weight": 2.0, "target": 2.0}, NORM5, 18.0),       # 2 (5 - 2)^2
    ("gradient_penalty", {"target": 0.0}, NORM5, 250.0),                     # 10 (5 - 0)^2
    ("gradient_penalty", {"one_sided": True}, NORM_HALF, 0.0),               # relu(0.5 - 1) = 0
    ("gradient_penalty", {"one_sided": True}, NORM5, 160.0),                 # 10 relu(5 - 1)^2
    ("r1", {}, NORM5, 125.0),                                                # 10 / 2 * 25
    ("r1", {"gamma": 1.0}, NORM_HALF, 0.125),                                # 1 / 2 * 0.25
    ("r2", {}, NORM5, 125.0),
    ("r2", {"gamma": 0.1}, UNIT, 0.05),                                      # 0.1 / 2 * 1
    ("dragan", {}, UNIT, 0.0),
    ("dragan", {}, NORM5, 160.0),                                            # 10 (5 - 1)^2
    ("dragan", {"weight": 1.0, "target": 2.0, "noise": 2.0}, NORM5, 9.0),    # 1 (5 - 2)^2
]


def test_every_regularizer_has_linear_cases():
    assert {case[0] for case in LINEAR_CASES} == set(R.REGULARIZERS)


@pytest.mark.parametrize("layout", list(BATCHES))
@pytest.mark.parametrize("name, params, w3, want", LINEAR_CASES,
                         ids=[f"{c[0]}-{c[1]}-|w|={np.linalg.norm(c[2]):g}" for c in LINEAR_CASES])
def test_penalty_on_a_linear_discriminator(impl, layout, name, params, w3, want):
    ops, rtol = impl
    real, fake = BATCHES[layout]
    w = ops.asarray(weights(layout, w3))
    got = make_reg(name, **params)(ops, linear(ops, w), ops.asarray(real), ops.asarray(fake))
    assert float(ops.to_numpy(got)) == pytest.approx(want, rel=rtol, abs=1e-5)


def analytic_linear_grad(name, params, w):
    """d penalty / d w for the linear discriminator, from the closed forms above."""
    norm = np.linalg.norm(w)
    if name in ("r1", "r2"):
        return params.get("gamma", 10.0) * w                                # d/dw gamma/2 |w|^2
    weight, target = params.get("weight", 10.0), params.get("target", 1.0)
    gap = norm - target
    if params.get("one_sided") and gap < 0:
        return np.zeros_like(w)
    return 2 * weight * gap * w / norm                                      # d/dw l (|w| - t)^2


def central_difference(fn, x, h=1e-6):
    grad = np.zeros_like(x)
    for j in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        grad[j] = (fn(up) - fn(down)) / (2 * h)
    return grad


@pytest.mark.parametrize("name, params, w3, want", LINEAR_CASES,
                         ids=[f"{c[0]}-{c[1]}-|w|={np.linalg.norm(c[2]):g}" for c in LINEAR_CASES])
def test_penalty_is_differentiable_in_the_discriminator_weights(diff_ops, name, params, w3, want):
    """The penalty trains D: autodiff through input_grad (double backward) matches the
    closed form and central differences of the float64 numpy evaluation."""
    real, fake = BATCHES["flat"]
    reg = make_reg(name, **params)
    w0 = np.array(w3) + np.array([0.0, 0.0, 0.1])  # off the unit sphere's special points

    def penalty(w):
        ops = diff_ops
        return reg(ops, linear(ops, w), ops.asarray(real), ops.asarray(fake))

    value, (grad,) = diff_ops.value_and_grad(penalty, w0)
    np_ops = _numpy_ops()
    fd = central_difference(lambda w: float(reg(np_ops, linear(np_ops, w), real, fake)), w0)
    np.testing.assert_allclose(grad, analytic_linear_grad(name, params, w0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-4)
    assert np.isfinite(value)


@pytest.mark.parametrize("name", list(R.REGULARIZERS))
def test_penalty_does_not_train_the_generator(diff_ops, name):
    """The samples are behind stop_gradient: no gradient reaches real or fake."""
    real, fake = BATCHES["flat"]
    reg = make_reg(name)
    _, (g_w, g_real, g_fake) = diff_ops.value_and_grad(
        lambda w, r, f: reg(diff_ops, quadratic(diff_ops, w), r, f), np.array(NORM5), real, fake)
    assert np.any(g_w != 0)
    np.testing.assert_array_equal(g_real, 0.0)
    np.testing.assert_array_equal(g_fake, 0.0)


def test_gradient_penalty_stays_finite_where_the_input_gradient_vanishes(diff_ops):
    """A zero input gradient: sqrt at 0 would give an infinite derivative without the epsilon."""
    real, fake = BATCHES["flat"]
    reg = make_reg("gradient_penalty")
    value, (grad,) = diff_ops.value_and_grad(
        lambda w: reg(diff_ops, linear(diff_ops, w), diff_ops.asarray(real), diff_ops.asarray(fake)),
        np.zeros(3))
    assert value == pytest.approx(10.0 * (1e-6 - 1.0) ** 2)  # ||g|| = sqrt(0 + 1e-12)
    # d/dw sqrt(|w|^2 + 1e-12) = w / sqrt(...) = 0 at w = 0; without the epsilon, NaN.
    np.testing.assert_array_equal(grad, 0.0)


# -- a quadratic discriminator: the input gradient depends on where it is evaluated ----
W_Q = np.array([0.5, -1.0, 2.0])


def expected_gap_penalty(x, w, weight=10.0, target=1.0):
    norms = np.linalg.norm(2 * w * x, axis=1)
    return weight * np.mean((norms - target) ** 2)


@pytest.mark.parametrize("where", ["r1", "r2"])
def test_r1_r2_on_a_quadratic_discriminator(impl, where):
    ops, rtol = impl
    real, fake = BATCHES["flat"]
    at = real if where == "r1" else fake
    want = 10.0 / 2 * np.mean(np.sum((2 * W_Q * at) ** 2, axis=1))
    got = make_reg(where)(ops, quadratic(ops, ops.asarray(W_Q)), ops.asarray(real), ops.asarray(fake))
    assert float(ops.to_numpy(got)) == pytest.approx(want, rel=rtol)


def test_gradient_penalty_at_coinciding_batches(impl):
    """real == fake: every interpolate is that batch, whatever eps is drawn."""
    ops, rtol = impl
    real, _ = BATCHES["flat"]
    want = expected_gap_penalty(real, W_Q)
    got = make_reg("gradient_penalty")(ops, quadratic(ops, ops.asarray(W_Q)), ops.asarray(real), ops.asarray(real))
    assert float(ops.to_numpy(got)) == pytest.approx(want, rel=rtol)


@pytest.mark.parametrize("layout", list(BATCHES))
def test_gradient_penalty_interpolates_with_one_eps_per_sample(layout):
    real, fake = BATCHES[layout]
    eps_shape = (4,) + (1,) * (real.ndim - 1)
    eps = np.array([0.0, 0.25, 0.5, 0.9]).reshape(eps_shape)
    ops = FixedDrawOps(eps)
    w = weights(layout, W_Q) + 0.3
    got = make_reg("gradient_penalty", weight=3.0, target=0.5)(ops, quadratic(ops, w), real, fake)
    assert ops.shapes == [eps_shape]
    x = (eps * real + (1 - eps) * fake).reshape(4, -1)
    want = 3.0 * np.mean((np.linalg.norm(2 * w.reshape(-1) * x, axis=1) - 0.5) ** 2)
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_dragan_perturbs_real_samples_by_scaled_uniform_noise():
    real, fake = BATCHES["image"]
    u = np.random.default_rng(5).random(real.shape)
    ops = FixedDrawOps(u)
    w = weights("image", W_Q) + 0.3
    got = make_reg("dragan", weight=2.0, target=1.5, noise=0.7)(ops, quadratic(ops, w), real, fake)
    assert ops.shapes == [real.shape]
    x = (real + 0.7 * real.std() * u).reshape(4, -1)
    want = 2.0 * np.mean((np.linalg.norm(2 * w.reshape(-1) * x, axis=1) - 1.5) ** 2)
    assert float(got) == pytest.approx(want, rel=1e-9)


# -- the random draws of each backend, checked by their statistics ------------------
N_STAT = 4000


def test_gradient_penalty_eps_is_uniform_and_shared_within_a_sample(impl):
    """real = 1, fake = 0, D(x) = sum(x^2) over m features: x = eps_i everywhere in
    sample i, ||grad|| = 2 sqrt(m) eps_i, and with target sqrt(m) the penalty / m is
    E[(2 eps - 1)^2] = 1/3 for eps ~ U[0, 1). One eps per element would give ~0.024."""
    ops, _ = impl
    shape = (N_STAT, 2, 2, 3)
    m = 12
    real, fake = np.ones(shape), np.zeros(shape)
    reg = make_reg("gradient_penalty", weight=1.0, target=float(np.sqrt(m)))
    got = reg(ops, quadratic(ops, ops.asarray(np.ones(shape[1:]))), ops.asarray(real), ops.asarray(fake))
    assert float(ops.to_numpy(got)) / m == pytest.approx(1 / 3, abs=0.03)


def test_dragan_noise_is_uniform_scaled_by_the_batch_std(impl):
    """1-d samples s = +-2 (std 2), D(x) = x^2: ||grad|| = 2 |s + c 2 u|. The expected
    penalty is averaged over u on a fine grid."""
    ops, _ = impl
    real = np.where(np.arange(N_STAT) % 2 == 0, 2.0, -2.0)[:, None]
    c, k = 0.5, 1.0
    u = (np.arange(100_000) + 0.5) / 100_000
    want = 0.5 * sum(np.mean((2 * np.abs(s + c * 2.0 * u) - k) ** 2) for s in (2.0, -2.0))
    reg = make_reg("dragan", weight=1.0, target=k, noise=c)
    got = reg(ops, quadratic(ops, ops.asarray(np.ones(1))), ops.asarray(real), ops.asarray(real))
    assert float(ops.to_numpy(got)) == pytest.approx(want, rel=0.03)


def test_forward_only_ops_say_why_they_cannot_penalise():
    real, fake = BATCHES["flat"]
    ops = gankit.NumpyOps()
    with pytest.raises(NotImplementedError, match="forward only"):
        make_reg("r1")(ops, linear(ops, np.ones(3)), real, fake)


# -- metadata, params and registry ----------------------------------------------------
EVALUATED_AT = {"gradient_penalty": "interpolates", "r1": "real", "r2": "fake", "dragan": "perturbed_real"}


@pytest.mark.parametrize("name", list(R.REGULARIZERS))
def test_regularizer_meta(name):
    cls, description = R.REGULARIZERS[name]
    assert cls.meta.evaluated_at == EVALUATED_AT[name]
    assert cls.meta.formula and cls.meta.paper and description
    assert cls.__doc__ and "Source" in cls.__doc__


def test_regularizer_params_are_validated():
    with pytest.raises(Exception, match="weight"):
        R.GradientPenaltyParams(weight=-1.0)
    with pytest.raises(Exception, match="extra"):
        R.R1Params(lambda_=1.0)
    with pytest.raises(Exception, match="noise"):
        R.DraganParams(noise=float("inf"))
    assert make_reg("r1").params.gamma == 10.0
    assert R.REGULARIZERS["gradient_penalty"][0]().params == R.GradientPenaltyParams()


def test_regularizer_registry_records():
    registry = gankit.Registry.from_plugins([R])
    assert registry.names("regularizer") == sorted(R.REGULARIZERS)
    for entry in registry.entries("regularizer"):
        record = entry.record
        reg = record.factory(record.params())
        assert isinstance(reg, gankit.Regularizer) and isinstance(reg.params, record.params)
        assert record.description and "\n" not in record.description
        assert record.metadata["evaluated_at"] == reg.meta.evaluated_at


@pytest.mark.parametrize("module", [L, R], ids=["losses", "regularizers"])
def test_every_registered_params_field_is_described(module):
    registry = gankit.Registry.from_plugins([module])
    entries = registry.entries()
    assert entries
    for entry in entries:
        assert issubclass(entry.record.params, gankit.StrictModel), entry.name
        for field_name, field in entry.record.params.model_fields.items():
            assert field.description, f"{entry.kind} {entry.name}: field {field_name!r} has no description"


def test_builtin_regularizers_are_found_through_entry_points():
    assert set(R.REGULARIZERS) <= set(gankit.get_registry().names("regularizer"))


@pytest.mark.tensorflow
@pytest.mark.parametrize("name, params, w3, want", LINEAR_CASES,
                         ids=[f"{c[0]}-{c[1]}-|w|={np.linalg.norm(c[2]):g}" for c in LINEAR_CASES])
def test_penalty_traces_in_tf_function_with_unknown_batch(name, params, w3, want):
    """Inside tf.function (batch size unknown) the penalty and its weight gradient still work."""
    tf = pytest.importorskip("tensorflow")
    ops, reg = _tf_ops(), make_reg(name, **params)
    w = tf.Variable(np.asarray(w3, dtype=np.float32))
    spec = tf.TensorSpec([None, 3], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def penalty_and_grad(r, f):
        with tf.GradientTape() as tape:
            p = reg(ops, linear(ops, w), r, f)
        return p, tape.gradient(p, w)

    real, fake = BATCHES["flat"]
    p, grad = penalty_and_grad(tf.constant(real, tf.float32), tf.constant(fake, tf.float32))
    assert float(p) == pytest.approx(want, rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(grad.numpy(), analytic_linear_grad(name, params, np.asarray(w3)), rtol=1e-4, atol=1e-4)
