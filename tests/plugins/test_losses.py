"""The built-in losses: values against hand computation, gradients, extremes, registry.

One table of cases runs over every Ops implementation (numpy float64, torch and
TensorFlow float32). Expected values are computed here from the textbook
definitions in plain ``math`` (probabilities and logs, no softplus), independently
of the loss code.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import gankit
from gankit_plugins import losses as L


# -- implementations under test -------------------------------------------------
def _numpy_ops():
    return gankit.NumpyOps(seed=0, dtype="float64")


def _torch_ops():
    ops = pytest.importorskip("gankit_torch.ops", reason="the torch backend is not installed")
    return ops.TorchOps(device="cpu", seed=0, dtype="float32")


def _tf_ops():
    ops = pytest.importorskip("gankit_tensorflow.ops", reason="the tensorflow backend is not installed")
    return ops.TensorFlowOps(seed=0, dtype="float32")


# (factory, relative tolerance of the forward values)
IMPLEMENTATIONS = [
    pytest.param((_numpy_ops, 1e-12), id="numpy-float64"),
    pytest.param((_torch_ops, 2e-6), id="torch-float32", marks=pytest.mark.torch),
    pytest.param((_tf_ops, 2e-6), id="tensorflow-float32", marks=pytest.mark.tensorflow),
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


def make_loss(name: str, **params) -> gankit.Loss:
    cls, _ = L.LOSSES[name]
    return cls(cls.params_model(**params))


def evaluate(ops, loss, real, fake) -> tuple[float, float]:
    r = ops.asarray(np.asarray(real, dtype=np.float64))
    f = ops.asarray(np.asarray(fake, dtype=np.float64))
    d = float(ops.to_numpy(loss.discriminator(ops, r, f)))
    g = float(ops.to_numpy(loss.generator(ops, f, r)))
    return d, g


# -- hand computation from the definitions ----------------------------------------
def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def bce(x: float, target: float) -> float:
    """Binary cross-entropy of probability sigmoid(x) against ``target``, as written."""
    p = sigmoid(x)
    return -(target * math.log(p) + (1.0 - target) * math.log(1.0 - p))


def ref_minimax_d(r, f, label_smoothing=0.0):
    return mean(bce(x, 1.0 - label_smoothing) for x in r) + mean(bce(x, 0.0) for x in f)


def ref_minimax_g(r, f, label_smoothing=0.0):
    return mean(math.log(1.0 - sigmoid(x)) for x in f)


def ref_non_saturating_g(r, f, label_smoothing=0.0):
    return mean(-math.log(sigmoid(x)) for x in f)


def ref_wasserstein(r, f):
    return mean(f) - mean(r), -mean(f)


def ref_hinge(r, f):
    return mean(max(0.0, 1.0 - x) for x in r) + mean(max(0.0, 1.0 + x) for x in f), -mean(f)


def ref_least_squares(r, f, a=0.0, b=1.0, c=1.0):
    d = 0.5 * mean((x - b) ** 2 for x in r) + 0.5 * mean((x - a) ** 2 for x in f)
    return d, 0.5 * mean((x - c) ** 2 for x in f)


def ref_relativistic(r, f):
    d = mean(-math.log(sigmoid(ri - fi)) for ri, fi in zip(r, f))
    g = mean(-math.log(sigmoid(fi - ri)) for ri, fi in zip(r, f))
    return d, g


def ref_relativistic_average(r, f):
    mr, mf = mean(r), mean(f)
    d = mean(-math.log(sigmoid(x - mf)) for x in r) + mean(-math.log(1 - sigmoid(x - mr)) for x in f)
    g = mean(-math.log(sigmoid(x - mr)) for x in f) + mean(-math.log(1 - sigmoid(x - mf)) for x in r)
    return d, g


# f-GAN (Nowozin et al. 2016, table 2): D = -(E_p[g(v_r)] - E_q[f*(g(v_f))]), G = -E_q[g(v_f)],
# with the output activation g and the conjugate f* written out as in the paper.
def _f_gan(activation, conjugate):
    def ref(r, f):
        d = -mean(activation(x) for x in r) + mean(conjugate(activation(x)) for x in f)
        return d, -mean(activation(x) for x in f)

    return ref


REFERENCES_F_GAN = {
    "f_gan_kl": _f_gan(lambda v: v, lambda t: math.exp(t - 1.0)),
    "f_gan_reverse_kl": _f_gan(lambda v: -math.exp(-v), lambda t: -1.0 - math.log(-t)),
    "f_gan_pearson": _f_gan(lambda v: v, lambda t: 0.25 * t * t + t),
    "f_gan_js": _f_gan(lambda v: math.log(2.0) - math.log1p(math.exp(-v)), lambda t: -math.log(2.0 - math.exp(t))),
}

REFERENCES = {
    **REFERENCES_F_GAN,
    "minimax": lambda r, f, **p: (ref_minimax_d(r, f, **p), ref_minimax_g(r, f, **p)),
    "non_saturating": lambda r, f, **p: (ref_minimax_d(r, f, **p), ref_non_saturating_g(r, f, **p)),
    "wasserstein": ref_wasserstein,
    "hinge": ref_hinge,
    "least_squares": ref_least_squares,
    "relativistic": ref_relativistic,
    "relativistic_average": ref_relativistic_average,
}

LOGITS = {
    "small": ([1.0, -2.0], [0.5, 3.0]),
    "zeros": ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
    "mixed": ([2.5, -0.3, 4.0], [-1.2, 0.7, -3.3]),
}

PARAM_VARIANTS = {
    "minimax": [{}, {"label_smoothing": 0.1}, {"label_smoothing": 0.3}],
    "non_saturating": [{}, {"label_smoothing": 0.1}, {"label_smoothing": 0.3}],
    "least_squares": [{}, {"a": -1.0, "b": 1.0, "c": 0.0}, {"a": 0.5, "b": 2.0, "c": 1.5}],
}

CASES = [
    pytest.param(name, params, logits, id=f"{name}-{logits}-" + ",".join(f"{k}={v}" for k, v in params.items()))
    for name in L.LOSSES
    for params in PARAM_VARIANTS.get(name, [{}])
    for logits in LOGITS
]


def test_every_loss_has_reference_cases():
    assert set(REFERENCES) == set(L.LOSSES)


@pytest.mark.parametrize("name, params, logits", CASES)
def test_loss_matches_hand_computation(impl, name, params, logits):
    ops, rtol = impl
    real, fake = LOGITS[logits]
    want_d, want_g = REFERENCES[name](real, fake, **params)
    got_d, got_g = evaluate(ops, make_loss(name, **params), real, fake)
    assert got_d == pytest.approx(want_d, rel=rtol, abs=rtol)
    assert got_g == pytest.approx(want_g, rel=rtol, abs=rtol)


# A few values worked out by hand, as literals (r = [1, -2], f = [0.5, 3]).
LITERALS = [
    ("minimax", {}, "zeros", math.log(4.0), -math.log(2.0)),
    ("non_saturating", {}, "zeros", math.log(4.0), math.log(2.0)),
    ("wasserstein", {}, "small", 1.75 - (-0.5), -1.75),
    ("hinge", {}, "small", (0.0 + 3.0) / 2 + (1.5 + 4.0) / 2, -1.75),
    ("least_squares", {}, "small", 0.5 * (0 + 9) / 2 + 0.5 * (0.25 + 9) / 2, 0.5 * (0.25 + 4) / 2),
    ("relativistic", {}, "zeros", math.log(2.0), math.log(2.0)),
    ("relativistic_average", {}, "zeros", 2 * math.log(2.0), 2 * math.log(2.0)),
    # f-GAN at r = [1, -2], f = [0.5, 3]: KL D = (e^-0.5 + e^2)/2 - (-0.5), G = -1.75
    ("f_gan_kl", {}, "small", (math.exp(-0.5) + math.exp(2.0)) / 2 + 0.5, -1.75),
    ("f_gan_reverse_kl", {}, "small", (math.exp(-1.0) + math.exp(2.0)) / 2 + 1.75 - 1.0,
     (math.exp(-0.5) + math.exp(-3.0)) / 2),
    ("f_gan_pearson", {}, "small", (0.0625 + 0.5 + 2.25 + 3.0) / 2 + 0.5, -1.75),
    ("f_gan_js", {}, "zeros", 0.0, 0.0),
]


@pytest.mark.parametrize("divergence, name", [("kl", "f_gan_kl"), ("reverse_kl", "f_gan_reverse_kl"),
                                              ("pearson", "f_gan_pearson"), ("jensen_shannon", "f_gan_js")])
def test_f_gan_d_loss_at_the_optimum_is_minus_the_divergence(divergence, name):
    """At g(v) = f'(p/q) the expected D loss is -D_f(p || q) = -sum q f(p/q)."""
    f = {"kl": lambda u: u * np.log(u), "reverse_kl": lambda u: -np.log(u), "pearson": lambda u: (u - 1) ** 2,
         "jensen_shannon": lambda u: u * np.log(u) - (u + 1) * np.log((u + 1) / 2)}[divergence]
    optimum = {"kl": lambda u: 1 + np.log(u), "reverse_kl": np.log, "pearson": lambda u: 2 * (u - 1),
               "jensen_shannon": np.log}[divergence]
    loss = make_loss(name)
    assert loss.meta.family == "f_divergence" and loss.meta.divergence == divergence
    assert "Nowozin" in loss.meta.paper
    counts_p, counts_q = np.array([4, 2, 1, 1]), np.array([1, 1, 2, 4])
    p, q = counts_p / 8, counts_q / 8
    logits = optimum(p / q)
    ops = _numpy_ops()
    d = float(loss.discriminator(ops, np.repeat(logits, counts_p), np.repeat(logits, counts_q)))
    assert d == pytest.approx(-np.sum(q * f(p / q)), rel=1e-12)


@pytest.mark.parametrize("name, params, logits, want_d, want_g", LITERALS, ids=[c[0] for c in LITERALS])
def test_loss_literal_values(impl, name, params, logits, want_d, want_g):
    ops, rtol = impl
    got_d, got_g = evaluate(ops, make_loss(name, **params), *LOGITS[logits])
    assert got_d == pytest.approx(want_d, rel=rtol, abs=rtol)
    assert got_g == pytest.approx(want_g, rel=rtol, abs=rtol)


# -- extremes -----------------------------------------------------------------------
EXTREME_REAL = np.array([1e4, -1e4, 1e4, -1e4, 0.5])
EXTREME_FAKE = np.array([-1e4, 1e4, 1e4, -1e4, -0.5])


def softplus_ref(x):
    """log(1 + exp(x)) via numpy's own stable logaddexp (independent of the ops)."""
    return np.logaddexp(0.0, np.asarray(x, dtype=np.float64))


def extreme_reference(name, r, f):
    """Reference values at huge logits, from np.logaddexp (no overflow)."""
    if name == "minimax":
        return softplus_ref(-r).mean() + softplus_ref(f).mean(), -softplus_ref(f).mean()
    if name == "non_saturating":
        return softplus_ref(-r).mean() + softplus_ref(f).mean(), softplus_ref(-f).mean()
    if name == "relativistic":
        return softplus_ref(f - r).mean(), softplus_ref(r - f).mean()
    if name == "relativistic_average":
        return (softplus_ref(f.mean() - r).mean() + softplus_ref(f - r.mean()).mean(),
                softplus_ref(r.mean() - f).mean() + softplus_ref(r - f.mean()).mean())
    if name == "f_gan_js":
        return softplus_ref(-r).mean() + softplus_ref(f).mean() - 2 * math.log(2.0), softplus_ref(-f).mean() - math.log(2.0)
    return REFERENCES[name](list(r), list(f))


@pytest.mark.parametrize("name", [n for n, (cls, _) in L.LOSSES.items() if "finite_at_extremes" in cls.meta.properties])
def test_loss_finite_at_extremes(diff_ops, name):
    loss = make_loss(name)
    want_d, want_g = extreme_reference(name, EXTREME_REAL, EXTREME_FAKE)
    d, (gd_r, gd_f) = diff_ops.value_and_grad(lambda r, f: loss.discriminator(diff_ops, r, f),
                                              EXTREME_REAL, EXTREME_FAKE)
    g, (gg_f, gg_r) = diff_ops.value_and_grad(lambda f, r: loss.generator(diff_ops, f, r),
                                              EXTREME_FAKE, EXTREME_REAL)
    for value in (d, g):
        assert math.isfinite(value)
    for grad in (gd_r, gd_f, gg_f, gg_r):
        assert np.all(np.isfinite(grad)), grad
    assert d == pytest.approx(want_d, rel=1e-5)
    assert g == pytest.approx(want_g, rel=1e-5)


# -- gradients -----------------------------------------------------------------------
def sigmoid_np(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))  # no overflow


GRAD_POINTS = {
    "small": (np.array([1.0, -2.0]), np.array([0.5, 3.0])),
    "extreme": (EXTREME_REAL, EXTREME_FAKE),
}


@pytest.mark.parametrize("alpha", [0.0, 0.2])
@pytest.mark.parametrize("point", list(GRAD_POINTS))
@pytest.mark.parametrize("name", ["minimax", "non_saturating"])
def test_cross_entropy_gradients_are_analytic(diff_ops, name, point, alpha):
    r, f = GRAD_POINTS[point]
    n = len(r)
    loss = make_loss(name, label_smoothing=alpha)
    _, (gr, gf) = diff_ops.value_and_grad(lambda r_, f_: loss.discriminator(diff_ops, r_, f_), r, f)
    # d/dr [(1-a) softplus(-r) + a softplus(r)] = -(1-a) sigmoid(-r) + a sigmoid(r); d/df softplus(f) = sigmoid(f)
    np.testing.assert_allclose(gr, (-(1 - alpha) * sigmoid_np(-r) + alpha * sigmoid_np(r)) / n, atol=1e-6)
    np.testing.assert_allclose(gf, sigmoid_np(f) / n, atol=1e-6)
    _, (gg,) = diff_ops.value_and_grad(lambda f_: loss.generator(diff_ops, f_), f)
    # minimax: d/df -softplus(f) = -sigmoid(f); non-saturating: d/df softplus(-f) = -sigmoid(-f)
    want = -sigmoid_np(f) / n if name == "minimax" else -sigmoid_np(-f) / n
    np.testing.assert_allclose(gg, want, atol=1e-6)


def test_minimax_saturates_where_non_saturating_does_not(diff_ops):
    """Where D confidently rejects a fake (f = -1e4) the minimax generator gets no
    gradient and the non-saturating one gets the full -1/n."""
    f = np.array([-1e4, -1e4])
    _, (mm,) = diff_ops.value_and_grad(lambda x: make_loss("minimax").generator(diff_ops, x), f)
    _, (ns,) = diff_ops.value_and_grad(lambda x: make_loss("non_saturating").generator(diff_ops, x), f)
    np.testing.assert_allclose(mm, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(ns, [-0.5, -0.5], rtol=1e-6)
    assert make_loss("minimax").meta.saturating and not make_loss("non_saturating").meta.saturating


def test_linear_and_quadratic_gradients_are_analytic(diff_ops):
    r, f = (np.array(x) for x in LOGITS["mixed"])  # away from the hinge's kinks
    n = len(r)
    cases = {
        "wasserstein": (np.full(n, -1 / n), np.full(n, 1 / n), np.full(n, -1 / n)),
        "hinge": (-np.where(1 - r > 0, 1.0, 0.0) / n, np.where(1 + f > 0, 1.0, 0.0) / n, np.full(n, -1 / n)),
        "least_squares": ((r - 1.0) / n, (f - 0.0) / n, (f - 1.0) / n),
    }
    for name, (want_r, want_f, want_g) in cases.items():
        loss = make_loss(name)
        _, (gr, gf) = diff_ops.value_and_grad(lambda r_, f_: loss.discriminator(diff_ops, r_, f_), r, f)
        _, (gg,) = diff_ops.value_and_grad(lambda f_: loss.generator(diff_ops, f_), f)
        np.testing.assert_allclose(gr, want_r, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(gf, want_f, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(gg, want_g, atol=1e-6, err_msg=name)


def central_difference(fn, xs, i, h=1e-6):
    """Gradient of scalar ``fn(*xs)`` with respect to ``xs[i]`` by central differences."""
    grad = np.zeros_like(xs[i])
    for j in range(xs[i].size):
        up = [x.copy() for x in xs]
        down = [x.copy() for x in xs]
        up[i].flat[j] += h
        down[i].flat[j] -= h
        grad.flat[j] = (fn(*up) - fn(*down)) / (2 * h)
    return grad


@pytest.mark.parametrize("name", list(L.LOSSES))
def test_gradients_match_finite_differences_of_the_numpy_reference(diff_ops, name):
    """Backend autodiff against central differences of the float64 numpy evaluation."""
    np_ops = _numpy_ops()
    loss = make_loss(name)
    r, f = LOGITS["mixed"]
    r, f = np.array(r), np.array(f)
    d_np = lambda r_, f_: float(loss.discriminator(np_ops, r_, f_))
    g_np = lambda f_, r_: float(loss.generator(np_ops, f_, r_))
    _, (gr, gf) = diff_ops.value_and_grad(lambda r_, f_: loss.discriminator(diff_ops, r_, f_), r, f)
    _, (ggf, ggr) = diff_ops.value_and_grad(lambda f_, r_: loss.generator(diff_ops, f_, r_), f, r)
    np.testing.assert_allclose(gr, central_difference(d_np, [r, f], 0), atol=1e-6)
    np.testing.assert_allclose(gf, central_difference(d_np, [r, f], 1), atol=1e-6)
    np.testing.assert_allclose(ggf, central_difference(g_np, [f, r], 0), atol=1e-6)
    np.testing.assert_allclose(ggr, central_difference(g_np, [f, r], 1), atol=1e-6)


# -- declared metadata ----------------------------------------------------------------
@pytest.mark.parametrize("name", list(L.LOSSES))
def test_loss_meta_is_complete(name):
    cls, description = L.LOSSES[name]
    meta = cls.meta
    assert set(meta.properties) <= set(gankit.LOSS_PROPERTIES)
    assert meta.formula and meta.paper and description
    assert meta.saturating == (name == "minimax")
    assert meta.generator_needs_real == name.startswith("relativistic")
    assert cls.__doc__ and "Source" in cls.__doc__


def test_least_squares_does_not_claim_monotone():
    assert "monotone" not in make_loss("least_squares").meta.properties
    assert "least_squares_targets" in make_loss("least_squares").meta.properties


def test_label_smoothing_withdraws_the_claims_it_breaks():
    plain, smoothed = make_loss("non_saturating"), make_loss("non_saturating", label_smoothing=0.1)
    assert {"monotone", "optimal_discriminator"} <= set(plain.meta.properties)
    assert "monotone" not in smoothed.meta.properties
    # The optimum moves to p (1 - a) / (p + q); the conformance suite checks it there.
    assert "optimal_discriminator" in smoothed.meta.properties
    # ... and really: a real logit beyond log((1 - a) / a) raises the smoothed D loss.
    ops = _numpy_ops()
    f = np.array([0.0])
    assert float(smoothed.discriminator(ops, np.array([10.0]), f)) > float(
        smoothed.discriminator(ops, np.array([math.log(9.0)]), f))
    assert type(smoothed).meta is plain.meta  # the class declaration is untouched


RNG = np.random.default_rng(7)
PROPERTY_R, PROPERTY_F = RNG.normal(size=6) * 3, RNG.normal(size=6) * 3


def _losses_with(prop):
    return [n for n, (cls, _) in L.LOSSES.items() if prop in cls.meta.properties]


@pytest.mark.parametrize("name", _losses_with("shift_invariant"))
def test_shift_invariant_losses(name):
    ops, loss = _numpy_ops(), make_loss(name)
    d0, g0 = evaluate(ops, loss, PROPERTY_R, PROPERTY_F)
    d1, g1 = evaluate(ops, loss, PROPERTY_R + 5.0, PROPERTY_F + 5.0)
    assert d1 == pytest.approx(d0, abs=1e-12)
    # The generator loss of wasserstein moves by the shift; its gradient does not.
    assert g1 == pytest.approx(g0 - 5.0 if name == "wasserstein" else g0, abs=1e-12)


@pytest.mark.parametrize("name", _losses_with("mean_reduced"))
def test_mean_reduced_losses(name):
    ops, loss = _numpy_ops(), make_loss(name)
    once = evaluate(ops, loss, PROPERTY_R, PROPERTY_F)
    twice = evaluate(ops, loss, np.tile(PROPERTY_R, 2), np.tile(PROPERTY_F, 2))
    assert twice == pytest.approx(once, abs=1e-12)


@pytest.mark.parametrize("name", _losses_with("batch_order_invariant"))
def test_batch_order_invariant_losses(name):
    """Real and fake batches permuted independently."""
    ops, loss = _numpy_ops(), make_loss(name)
    perm = np.random.default_rng(1).permutation(len(PROPERTY_R))
    got = evaluate(ops, loss, PROPERTY_R[perm], PROPERTY_F)
    assert got == pytest.approx(evaluate(ops, loss, PROPERTY_R, PROPERTY_F), abs=1e-12)


def test_relativistic_pairs_real_with_fake():
    ops, loss = _numpy_ops(), make_loss("relativistic")
    r, f = np.array([1.0, -1.0]), np.array([-1.0, 1.0])
    assert evaluate(ops, loss, r, f) != pytest.approx(evaluate(ops, loss, r[::-1], f))
    assert evaluate(ops, loss, r[::-1], f[::-1]) == pytest.approx(evaluate(ops, loss, r, f))
    with pytest.raises(ValueError, match="shapes differ"):
        loss.discriminator(ops, np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="real_logits"):
        loss.generator(ops, np.zeros(2))


def test_hinge_margin_and_least_squares_targets():
    ops = _numpy_ops()
    d, _ = evaluate(ops, make_loss("hinge"), [1.0, 3.0], [-1.0, -7.0])
    assert d == 0.0
    ls = make_loss("least_squares", a=-1.0, b=2.0, c=0.5)
    d, g = evaluate(ops, ls, [2.0, 2.0], [0.5, 0.5])
    assert g == 0.0 and d == pytest.approx(0.5 * 1.5**2)
    d, _ = evaluate(ops, ls, [2.0, 2.0], [-1.0, -1.0])
    assert d == 0.0


@pytest.mark.parametrize("name", _losses_with("monotone"))
def test_monotone_losses(name):
    ops, loss = _numpy_ops(), make_loss(name)
    grid = np.linspace(-30, 30, 61)
    base_r, base_f = PROPERTY_R.copy(), PROPERTY_F.copy()
    d_of_r, d_of_f, g_of_f = [], [], []
    for x in grid:
        r, f = base_r.copy(), base_f.copy()
        r[0] = x
        d_of_r.append(evaluate(ops, loss, r, base_f)[0])
        f[0] = x
        d, g = evaluate(ops, loss, base_r, f)
        d_of_f.append(d)
        g_of_f.append(g)
    assert np.all(np.diff(d_of_r) <= 1e-12), "higher real logits must not raise the D loss"
    assert np.all(np.diff(d_of_f) >= -1e-12), "higher fake logits must not lower the D loss"
    assert np.all(np.diff(g_of_f) <= 1e-12), "higher fake logits must not raise the G loss"


# -- params and registry --------------------------------------------------------------
def test_params_are_validated():
    with pytest.raises(Exception, match="label_smoothing"):
        L.LabelSmoothingParams(label_smoothing=1.0)
    with pytest.raises(Exception, match="extra"):
        L.LabelSmoothingParams(smoothing=0.1)
    with pytest.raises(Exception, match="b != a"):
        L.LeastSquaresParams(a=1.0, b=1.0)
    with pytest.raises(Exception):
        L.LeastSquaresParams(c=float("nan"))


def test_loss_registry_records():
    registry = gankit.Registry.from_plugins([L])
    assert registry.names("loss") == sorted(L.LOSSES)
    for entry in registry.entries("loss"):
        record = entry.record
        loss = record.factory(record.params())
        assert isinstance(loss, gankit.Loss) and isinstance(loss.params, record.params)
        assert record.description and "\n" not in record.description
        assert record.metadata == {"family": loss.meta.family, "saturating": loss.meta.saturating,
                                   "paper": loss.meta.paper}
        for field_name, field in record.params.model_fields.items():
            assert field.description, f"{entry.name}.{field_name} has no description"


def test_builtin_losses_are_found_through_entry_points():
    names = gankit.get_registry().names("loss")
    assert set(L.LOSSES) <= set(names)


def test_plugins_import_no_framework():
    code = ("import sys, gankit_plugins.losses, gankit_plugins.regularizers; "
            "bad = {'torch', 'tensorflow'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.tensorflow
@pytest.mark.parametrize("name", list(L.LOSSES))
def test_loss_traces_in_tf_function_with_unknown_batch(name):
    """Inside tf.function the batch size may be unknown: the loss must not need it."""
    tf = pytest.importorskip("tensorflow")
    ops, loss = _tf_ops(), make_loss(name)
    spec = tf.TensorSpec([None], tf.float32)

    @tf.function(input_signature=[spec, spec])
    def both(r, f):
        return loss.discriminator(ops, r, f), loss.generator(ops, f, r)

    real, fake = LOGITS["small"]
    d, g = both(tf.constant(real), tf.constant(fake))
    want_d, want_g = REFERENCES[name](real, fake)
    assert float(d) == pytest.approx(want_d, rel=2e-6)
    assert float(g) == pytest.approx(want_g, rel=2e-6)
