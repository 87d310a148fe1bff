"""Checks every regularizer must pass, on a linear discriminator ``D(x) = x . w``.

For a linear D the input gradient is ``w`` at every sample, so a penalty has a closed
form that does not depend on the (random) points it is evaluated at:

* a gradient-norm penalty (params ``weight``, ``target``, optionally ``one_sided``):
  ``weight * (||w|| - target)^2``, or ``weight * relu(||w|| - target)^2`` one-sided;
* a zero-centred penalty (params ``gamma``): ``gamma / 2 * ||w||^2`` (R1, R2).

``w`` is an input of ``value_and_grad``, so the penalty's gradient with respect to the
discriminator's parameters comes out too, and is compared with finite differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from hypothesis import strategies as st

from gankit.conformance import strategies as S
from gankit.conformance.core import NotApplicable, check, fail
from gankit.conformance.numerics import FULL_PRECISION, as_float64, fmt, grad_tolerance, value_tolerance

FEATURES = 3
#: The sample shape of the cubic critic's image-shaped example (channel-first).
IMAGE_SHAPE = (2, 1, 3)


@dataclass(frozen=True)
class ClosedForm:
    """A penalty's value on a linear D as a function of ``||w||``, and its derivative."""

    formula: str
    value: Callable[[float], float]
    slope: Callable[[float], float]

    def gradient(self, w: np.ndarray) -> np.ndarray:
        norm = float(np.linalg.norm(w))
        return self.slope(norm) * w / norm if norm > 0 else np.zeros_like(w)


def closed_form(regularizer) -> ClosedForm | None:
    """The closed form on a linear D, recognised from the params, or None."""
    p = regularizer.params
    fields = set(type(p).model_fields) if p is not None else set()
    if {"weight", "target"} <= fields:
        lam, t, one_sided = float(p.weight), float(p.target), bool(getattr(p, "one_sided", False))
        if one_sided:
            return ClosedForm(f"{lam:g} * relu(||w|| - {t:g})^2", lambda n: lam * max(n - t, 0.0) ** 2,
                              lambda n: 2 * lam * max(n - t, 0.0))
        return ClosedForm(f"{lam:g} * (||w|| - {t:g})^2", lambda n: lam * (n - t) ** 2, lambda n: 2 * lam * (n - t))
    if "gamma" in fields and "target" not in fields:
        gamma = float(p.gamma)
        return ClosedForm(f"{gamma:g} / 2 * ||w||^2", lambda n: 0.5 * gamma * n * n, lambda n: gamma * n)
    return None


def _forms(subject) -> list:
    """The regularizer, and its other form when it has a ``one_sided`` switch."""
    reg = subject.regularizer
    out = [reg]
    fields = type(reg.params).model_fields if reg.params is not None else {}
    if "one_sided" in fields:
        flipped = reg.params.model_copy(update={"one_sided": not reg.params.one_sided})
        out.append(type(reg)(flipped))
    return out


def penalty(handle, regularizer, dtype: str, w, real, fake, seed: int = 0):
    """Value of the penalty on ``D(x) = x . w`` and its gradient wrt ``w`` (float64).

    Fresh ops with a fixed seed each call: a penalty's random draws repeat, so finite
    differences see the same function."""
    ops = handle.backend.ops(dtype=dtype, seed=seed)

    def fn(w_, real_, fake_):
        def discriminator(x):
            return ops.sum(x * w_, axis=1)

        return regularizer(ops, discriminator, real_, fake_)

    value, grads = ops.value_and_grad(fn, np.asarray(w, np.float64), np.asarray(real, np.float64),
                                      np.asarray(fake, np.float64), dtype=dtype)
    return float(value), as_float64(grads[0])


@st.composite
def _linear_cases(draw, min_norm: float = 0.0):
    w = draw(S.vector(FEATURES, -3.0, 3.0))
    if np.linalg.norm(w) < min_norm:
        w = w + min_norm  # keep away from the kink of ||w|| at 0
    n = draw(st.integers(1, 6))
    real = draw(S.vector(n * FEATURES, -3.0, 3.0)).reshape(n, FEATURES)
    fake = draw(S.vector(n * FEATURES, -3.0, 3.0)).reshape(n, FEATURES)
    return w, real, fake


def _requires_closed_form(subject) -> str | None:
    if closed_form(subject.regularizer) is None:
        return ("no closed form on a linear D is known for these params (gankit recognises weight/target"
                "[/one_sided] gradient-norm penalties and gamma zero-centred ones)")
    return None


@check("regularizer.linear_closed_form", "on D(x) = x.w the penalty is exactly its closed form "
       "(gradient penalty l(||w|| - t)^2, zero at ||w|| = t, one-sided zero below t; R1 g/2 ||w||^2)",
       dtypes=FULL_PRECISION, applies=_requires_closed_form)
def linear_closed_form(ctx):
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(4, FEATURES)), rng.normal(size=(4, FEATURES))
    unit = np.array([0.6, 0.0, 0.8])
    done = []
    for reg in _forms(ctx.subject):
        form = closed_form(reg)
        target = float(getattr(reg.params, "target", 1.0))
        # Unit w, w at the target norm (zero for a gradient penalty), below and above it.
        norms = sorted({1.0, target, 0.5 * target, 2.0 * target, 0.25})
        for norm in norms:
            w = unit * norm
            _compare(ctx, reg, form, w, ctx.round(real)[0], ctx.round(fake)[0])

        def body(example, reg=reg, form=form):
            w, r, f = (ctx.round(x)[0] for x in example)
            _compare(ctx, reg, form, w, r, f)

        ctx.forall(_linear_cases(), body, share=0.5)
        done.append(form.formula)
    # Another target than the instance's: a penalty that ignores params.target passes
    # at the default 1.
    moved = _target_variant(ctx.subject.regularizer)
    if moved is not None:
        form, t = closed_form(moved), float(moved.params.target)
        for norm in sorted({1.0, t, 2.0 * t, 0.25}):
            _compare(ctx, moved, form, unit * norm, ctx.round(real)[0], ctx.round(fake)[0])
        done.append(form.formula)
    return "; ".join(done)


def _target_variant(regularizer):
    """The regularizer with params.target moved (0.5, or 2 if it is 0.5), or None."""
    p = regularizer.params
    if p is None or "target" not in type(p).model_fields:
        return None
    target = 2.0 if float(p.target) == 0.5 else 0.5
    try:
        return type(regularizer)(type(p).model_validate({**p.model_dump(), "target": target}))
    except Exception:  # params or a constructor that refuse it: nothing to add
        return None


def _compare(ctx, reg, form: ClosedForm, w, real, fake) -> None:
    got, _ = penalty(ctx.backend, reg, ctx.dtype, w, real, fake)
    want = form.value(float(np.linalg.norm(w)))
    tol = value_tolerance(ctx.dtype, want) + 1e-5 * (1 + abs(want))  # NORM_EPS-style epsilons
    if not (np.isfinite(got) and abs(got - want) <= tol):
        fail(f"penalty on D(x) = x.w with w={fmt(w)} (||w|| = {np.linalg.norm(w):.6g}) is {fmt(got)}; "
             f"{form.formula} = {fmt(want)} (tolerance {tol:.3g}) on {ctx.where} with params {reg.params!r}")


@check("regularizer.parameter_gradient", "the penalty's gradient wrt D's parameters exists and matches "
       "finite differences (and the closed form's)", dtypes=FULL_PRECISION)
def parameter_gradient(ctx):
    reg = ctx.subject.regularizer
    form = closed_form(reg)

    def body(example):
        w, real, fake = (ctx.round(x)[0] for x in example)
        _, grad = penalty(ctx.backend, reg, ctx.dtype, w, real, fake)
        if grad.shape != w.shape or not np.all(np.isfinite(grad)):
            fail(f"gradient wrt w is {fmt(grad)} (shape {grad.shape}) at w={fmt(w)} on {ctx.where}")
        if ctx.dtype == "float64":
            # Central differences on the same backend in float64, same seed every call.
            ref, what = np.zeros_like(w), "finite differences give"
            for k in range(len(w)):
                h = 1e-6 * max(1.0, abs(w[k]))
                up, down = w.copy(), w.copy()
                up[k] += h
                down[k] -= h
                ref[k] = (penalty(ctx.backend, reg, "float64", up, real, fake)[0]
                          - penalty(ctx.backend, reg, "float64", down, real, fake)[0]) / (2 * h)
        else:
            # Lower precision: against the float64 gradient, which the float64 case
            # checks against finite differences.
            ref, what = penalty(ctx.backend, reg, "float64", w, real, fake)[1], "its float64 gradient is"
        tol = grad_tolerance(ctx.dtype, ref, 1) + 1e-6 * (1 + np.max(np.abs(ref)))
        if np.max(np.abs(grad - ref)) > tol:
            fail(f"gradient wrt w is {fmt(grad)}, {what} {fmt(ref)} (tolerance {tol:.3g}) "
                 f"at w={fmt(w)} on {ctx.where}")
        if form is not None:
            want = form.gradient(w)
            if np.max(np.abs(grad - want)) > tol:
                fail(f"gradient wrt w is {fmt(grad)}, the closed form {form.formula} gives {fmt(want)} "
                     f"(tolerance {tol:.3g}) at w={fmt(w)} on {ctx.where}")
        if not np.any(grad != 0) and np.any(ref != 0):
            fail(f"the penalty has no gradient wrt D's parameters at w={fmt(w)} on {ctx.where}")

    try:
        ctx.forall(_linear_cases(min_norm=0.1), body, share=0.5)
    except NotImplementedError as exc:
        raise NotApplicable(f"the backend's ops cannot differentiate ({exc})") from None


# -- a non-linear critic: penalties at their declared points ---------------------------
# D(x) = sum_j (c_j x_j^3 / 3 + a_j x_j^2 / 2 + b_j x_j), parameters theta = (c, a, b).
# Its input gradient c x^2 + a x + b differs from point to point, so a penalty evaluated
# at other points than it declares (R1 at fakes, a gradient penalty at fakes only or
# with one interpolation coefficient for the whole batch, DRAGAN unperturbed) has
# another value than its closed form at the declared points.


def critic_gradient(theta, x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    c, a, b = (t.reshape(x.shape[1:]) for t in np.asarray(theta, np.float64).reshape(3, -1))
    return c * x * x + a * x + b


def _per_sample_form(regularizer):
    """``phi(norms) -> penalty`` from the params (the closed form per sample), or None."""
    p = regularizer.params
    fields = set(type(p).model_fields) if p is not None else set()
    if {"weight", "target"} <= fields:
        lam, t, one_sided = float(p.weight), float(p.target), bool(getattr(p, "one_sided", False))
        if one_sided:
            return f"{lam:g} E[relu(||grad D(x)|| - {t:g})^2]", lambda n: lam * np.mean(np.maximum(n - t, 0) ** 2)
        return f"{lam:g} E[(||grad D(x)|| - {t:g})^2]", lambda n: lam * np.mean((n - t) ** 2)
    if "gamma" in fields and "target" not in fields:
        gamma = float(p.gamma)
        return f"{gamma:g}/2 E[||grad D(x)||^2]", lambda n: 0.5 * gamma * np.mean(n * n)
    return None


def closed_form_at(phi, theta, points) -> float:
    grad = critic_gradient(theta, points)
    return float(phi(np.linalg.norm(grad.reshape(len(grad), -1), axis=1)))


def nonlinear_penalty(handle, regularizer, dtype, theta, real, fake, *, seed=0, record=None, traced=False):
    """The penalty on the cubic critic and its gradients wrt theta, real and fake (float64).
    ``record`` (a list) receives every batch the penalty evaluates D at (eagerly only)."""
    ops = handle.backend.ops(dtype=dtype, seed=seed)
    sample = tuple(np.shape(real)[1:])  # (FEATURES,), or an image's (C, H, W)
    k = int(np.prod(sample))

    def fn(theta_, real_, fake_):
        c, a, b = theta_[0:k], theta_[k:2 * k], theta_[2 * k:]
        if len(sample) > 1:
            c, a, b = (ops.reshape(t, (1, *sample)) for t in (c, a, b))

        def discriminator(x):
            if record is not None:
                record.append(np.asarray(ops.to_numpy(x), np.float64))
            y = c * x * x * x / 3.0 + a * x * x / 2.0 + b * x
            return ops.sum(y, axis=tuple(range(1, 1 + len(sample))) if len(sample) > 1 else 1)

        return regularizer(ops, discriminator, real_, fake_)

    value, grads = ops.value_and_grad(ops.trace(fn) if traced else fn, np.asarray(theta, np.float64),
                                      np.asarray(real, np.float64), np.asarray(fake, np.float64), dtype=dtype)
    return float(value), [as_float64(g) for g in grads]


@st.composite
def _cubic_cases(draw, min_size: int = 2):
    theta = draw(S.vector(3 * FEATURES, -1.0, 1.0))
    n = draw(st.integers(min_size, 6))
    # A fixed spread under the drawn values: a real batch of one repeated value has no
    # spread for DRAGAN to scale its perturbation by.
    spread = np.linspace(-0.5, 0.5, n * FEATURES).reshape(n, FEATURES)
    real = draw(S.vector(n * FEATURES, -2.0, 2.0)).reshape(n, FEATURES) + spread
    fake = draw(S.vector(n * FEATURES, -2.0, 2.0)).reshape(n, FEATURES) - spread
    return theta, real, fake


def _one_batch(ctx, record, what) -> np.ndarray:
    if not record:
        fail(f"the penalty never evaluated the discriminator ({what}) on {ctx.where}")
    shapes = {r.shape for r in record}
    if len(record) > 1 and len({r.tobytes() for r in record}) > 1:
        fail(f"the penalty evaluated D at {len(record)} different batches (shapes {sorted(shapes)}) on {ctx.where}; "
             f"one declared at {ctx.subject.regularizer.meta.evaluated_at!r} evaluates it at one batch ({what})")
    return record[-1]


def _check_points(ctx, at: str, points, real, fake, tol: float, params) -> None:
    """The recorded points are the declared ones (interpolation coefficients are checked
    one per sample, within [0, 1]; their distribution in regularizer.interpolation)."""
    where = f"real={fmt(real)}, fake={fmt(fake)} on {ctx.where}"
    if points.shape != real.shape:
        fail(f"D was evaluated at a batch of shape {points.shape}, not the real batch's {real.shape}, at {where}")
    if at in ("real", "fake"):
        want = real if at == "real" else fake
        bad = np.max(np.abs(points - want))
        if bad > tol:
            fail(f"declared evaluated_at={at!r}, but D was evaluated at {fmt(points)} (|x - {at}| up to {bad!r} > "
                 f"tolerance {tol!r}), at {where}")
    elif at == "interpolates":
        d = real - fake
        eps = np.sum((points - fake) * d, axis=1) / np.maximum(np.sum(d * d, axis=1), 1e-300)
        off_line = np.max(np.abs(points - fake - eps[:, None] * d))
        if off_line > tol * 4:
            fail(f"declared evaluated_at='interpolates', but D's points {fmt(points)} are not eps_i real_i + "
                 f"(1 - eps_i) fake_i with one eps per sample (off the segment by {off_line!r}) at {where}")
        if np.any(eps < -tol) or np.any(eps > 1 + tol):
            fail(f"interpolation coefficients {fmt(eps)} are outside [0, 1] at {where}")
        apart = eps[np.sum(d * d, axis=1) > 1e-6]  # a sample whose real and fake coincide has any eps
        if len(apart) >= 3 and np.ptp(apart) < 1e-6:
            fail(f"every sample has the same interpolation coefficient {eps[0]!r} (one draw for the whole batch, "
                 f"not one per sample) at {where}")
    elif at == "perturbed_real":
        moved = np.abs(points - real) > tol
        if moved.mean() < 0.9:
            fail(f"declared evaluated_at='perturbed_real', but {int((~moved).sum())} of {moved.size} coordinates of "
                 f"D's points equal the real batch's (no perturbation?) at {where}")
        near_real = np.linalg.norm(points - real, axis=1)
        near_fake = np.linalg.norm(points - fake, axis=1)
        if np.any(near_real >= near_fake):
            fail(f"declared evaluated_at='perturbed_real', but D's points {fmt(points)} are nearer the fake samples "
                 f"than the real ones at {where}")


def _far_fakes(real, fake):
    """Fakes moved well away from the reals, so perturbed reals are told from fakes."""
    return fake + 10.0 + 5.0 * np.abs(real).max()


@check("regularizer.evaluated_at", "on a cubic D (input gradient different at every point) the penalty "
       "evaluates D at its declared points (real, fake, per-sample interpolates, perturbed reals) and equals "
       "its closed form there", dtypes=FULL_PRECISION)
def evaluated_at(ctx):
    reg = ctx.subject.regularizer
    at = reg.meta.evaluated_at
    form = _per_sample_form(reg)
    tol_x = 1e-12 if ctx.dtype == "float64" else 1e-6

    def body(example):
        theta, real, fake = (ctx.round(x)[0] for x in example)
        if at == "perturbed_real":
            fake = ctx.round(_far_fakes(real, fake))[0]
        record: list = []
        got, _ = nonlinear_penalty(ctx.backend, reg, ctx.dtype, theta, real, fake, record=record)
        points = _one_batch(ctx, record, f"evaluated_at={at!r}")
        if points.shape != real.shape:
            fail(f"D was evaluated at a batch of shape {points.shape}, not the real batch's {real.shape}, at "
                 f"real={fmt(real)}, fake={fmt(fake)} on {ctx.where}")
        n, sample = len(real), real.shape[1:]  # images: points and norms per sample, over all its axes
        points, real, fake = points.reshape(n, -1), real.reshape(n, -1), fake.reshape(n, -1)
        _check_points(ctx, at, points, real, fake, tol_x * (1 + np.abs(real).max() + np.abs(fake).max()), reg.params)
        if form is None:
            return
        formula, phi = form
        want = closed_form_at(phi, theta, points)
        tol = value_tolerance(ctx.dtype, want) + 1e-5 * (1 + abs(want))
        if not (np.isfinite(got) and abs(got - want) <= tol):
            fail(f"penalty on the cubic D (samples of shape {sample}) with theta={fmt(theta)} is {got!r}; "
                 f"{formula} at D's points "
                 f"{fmt(points)} is {want!r} (tolerance {tol!r}) on {ctx.where} with params {reg.params!r}")

    ctx.forall(_cubic_cases(), body, share=0.5)
    if ctx.dtype == "float32":
        # Image-shaped samples (C, H, W) = (2, 1, 3): a norm or a sum over axis 1 alone, or
        # coefficients of shape (batch, 1) that broadcast against the wrong axes, show here.
        rng = np.random.default_rng(3)
        shape = (4, *IMAGE_SHAPE)
        spread = np.linspace(-0.5, 0.5, int(np.prod(shape))).reshape(shape)
        body((rng.uniform(-1, 1, 3 * int(np.prod(IMAGE_SHAPE))), rng.normal(size=shape) + spread,
              rng.normal(size=shape) - spread))
    images = f"; also images {IMAGE_SHAPE}" if ctx.dtype == "float32" else ""
    return f"at {at}" + (f"; {form[0]}" if form else "") + images


@check("regularizer.interpolation", "interpolates: one coefficient per sample, drawn uniformly from [0, 1) "
       "(Kolmogorov-Smirnov over 512 samples); perturbed reals: a perturbation that scales with params.noise",
       dtypes=("float32",), applies=lambda s: None if s.regularizer.meta.evaluated_at in ("interpolates", "perturbed_real")
       else f"evaluated at {s.regularizer.meta.evaluated_at!r}: no random points")
def interpolation(ctx):
    from scipy import stats

    reg = ctx.subject.regularizer
    rng = np.random.default_rng(11)
    n = 512
    real, fake = ctx.round(rng.normal(size=(n, FEATURES)), rng.normal(size=(n, FEATURES)) + 3.0)
    theta = ctx.round(rng.uniform(-1, 1, 3 * FEATURES))[0]
    record: list = []
    nonlinear_penalty(ctx.backend, reg, ctx.dtype, theta, real, fake, record=record)
    points = _one_batch(ctx, record, reg.meta.evaluated_at)
    if reg.meta.evaluated_at == "interpolates":
        d = real - fake
        eps = np.sum((points - fake) * d, axis=1) / np.sum(d * d, axis=1)
        ks = stats.kstest(eps, "uniform")
        if ks.pvalue < 1e-4:
            fail(f"the {n} interpolation coefficients are not uniform on [0, 1): Kolmogorov-Smirnov statistic "
                 f"{ks.statistic!r}, p = {ks.pvalue!r} (mean {eps.mean()!r}, min {eps.min()!r}, max {eps.max()!r}) "
                 f"on {ctx.where}")
        return f"KS p = {ks.pvalue:.3g}"
    p = reg.params
    if p is None or "noise" not in type(p).model_fields or float(p.noise) <= 0:
        raise NotApplicable("the params have no positive `noise` scale to vary")
    doubled = type(reg)(p.model_copy(update={"noise": 2 * float(p.noise)}))
    record2: list = []
    nonlinear_penalty(ctx.backend, doubled, ctx.dtype, theta, real, fake, record=record2)
    base, twice = np.abs(points - real).mean(), np.abs(_one_batch(ctx, record2, "perturbed_real") - real).mean()
    ratio = twice / base if base > 0 else float("inf")
    if not abs(ratio - 2) < 0.05:
        fail(f"doubling params.noise from {p.noise!r} scales the mean perturbation by {ratio!r}, not 2, on {ctx.where}")
    return f"perturbation x{ratio:.3f} for noise x2; " + _perturbation_scale(ctx, reg, theta, real, fake, points)


#: The mean |perturbation| per coordinate, in units of params.noise * std(real), must lie
#: here: DRAGAN's c std(real) u with u ~ U[0, 1) gives 1/2; a normal u 0.8; a point drawn
#: between the real and that perturbed one 1/4.
PERTURBATION_SIZE = (0.05, 2.0)


def _perturbation_scale(ctx, reg, theta, real, fake, points) -> str:
    """Perturbed reals (params.noise = c): the perturbation is c standard deviations of
    the real batch in size, one draw per coordinate, and stretches with the reals'
    spread (not the fakes')."""
    delta = points - real
    spread = float(np.std(real))
    unit = float(reg.params.noise) * spread
    size = float(np.abs(delta).mean()) / unit
    lo, hi = PERTURBATION_SIZE
    if not lo <= size <= hi:
        fail(f"the mean |perturbation| per coordinate is {float(np.abs(delta).mean())!r} = {size!r} x params.noise "
             f"({reg.params.noise!r}) x std(real) ({spread!r}), outside [{lo:g}, {hi:g}] on {ctx.where}: "
             "DRAGAN's perturbation is noise * std(real) * u, u ~ U[0, 1)")
    flat = np.ptp(delta, axis=1) <= 1e-6 * unit
    if flat.mean() > 0.5:
        fail(f"{int(flat.sum())} of {len(flat)} samples are perturbed by the same amount in every coordinate (e.g. "
             f"{fmt(delta[int(np.argmax(flat))])}) on {ctx.where}: one draw per sample, not per coordinate")
    stretch = 4.0
    mean = float(real.mean())
    wide = ctx.round(mean + stretch * (real - mean))[0]
    record: list = []
    nonlinear_penalty(ctx.backend, reg, ctx.dtype, theta, wide, fake, record=record)
    ratio = float(np.abs(_one_batch(ctx, record, "perturbed_real") - wide).mean() / np.abs(delta).mean())
    if not abs(ratio - stretch) < 0.05 * stretch:
        fail(f"stretching the real batch about its mean by {stretch:g} (its std from {spread!r} to "
             f"{float(np.std(wide))!r}, the fakes unchanged) scales the mean perturbation by {ratio!r}, "
             f"not {stretch:g}, "
             f"on {ctx.where}: params.noise is in units of the real batch's standard deviation")
    return f"perturbation {size:.3g} x noise x std(real), x{ratio:.3f} for a spread x{stretch:g}"


@check("regularizer.parameter_gradient_nonlinear", "on the cubic D the penalty's gradient wrt D's parameters "
       "matches its closed form's at the declared points", dtypes=FULL_PRECISION,
       applies=lambda s: None if _per_sample_form(s.regularizer) else "no closed form known for these params")
def parameter_gradient_nonlinear(ctx):
    reg = ctx.subject.regularizer
    formula, phi = _per_sample_form(reg)

    def body(example):
        theta, real, fake = (ctx.round(x)[0] for x in example)
        if reg.meta.evaluated_at == "perturbed_real":
            fake = ctx.round(_far_fakes(real, fake))[0]
        record: list = []
        _, (grad, _, _) = nonlinear_penalty(ctx.backend, reg, ctx.dtype, theta, real, fake, record=record)
        points = _one_batch(ctx, record, "")
        if np.min(np.linalg.norm(critic_gradient(theta, points), axis=1)) < 1e-2:
            skipped.append(1)  # a gradient norm at its kink (||g|| = 0): no derivative to compare
            return
        want = np.zeros_like(theta)
        for k in range(len(theta)):
            h = 1e-6
            up, down = theta.copy(), theta.copy()
            up[k] += h
            down[k] -= h
            want[k] = (closed_form_at(phi, up, points) - closed_form_at(phi, down, points)) / (2 * h)
        tol = grad_tolerance(ctx.dtype, want, 1) + 1e-5 * (1 + np.max(np.abs(want)))
        if not (np.all(np.isfinite(grad)) and np.max(np.abs(grad - want)) <= tol):
            fail(f"gradient wrt D's parameters is {fmt(grad)}; {formula} at D's points gives {fmt(want)} "
                 f"(tolerance {tol!r}) at theta={fmt(theta)} on {ctx.where}")

    skipped: list = []
    ctx.forall(_cubic_cases(), body, share=0.5)
    return formula + (f" ({len(skipped)} examples at the norm's kink skipped)" if skipped else "")


@check("regularizer.samples_detached", "the penalty trains D only: its gradient wrt the real and fake "
       "batches is zero (they are wrapped in ops.stop_gradient)", dtypes=("float32",))
def samples_detached(ctx):
    reg = ctx.subject.regularizer

    def body(example):
        theta, real, fake = (ctx.round(x)[0] for x in example)
        _, (_, g_real, g_fake) = nonlinear_penalty(ctx.backend, reg, ctx.dtype, theta, real, fake)
        for name, g in (("real", g_real), ("fake", g_fake)):
            if np.any(g != 0):
                fail(f"the penalty has a gradient {fmt(g)} wrt the {name} samples at theta={fmt(theta)} on {ctx.where}: "
                     "wrap the samples in ops.stop_gradient (a penalty must not train the generator)")

    ctx.forall(_cubic_cases(), body, share=0.5)


@check("regularizer.traced", "under the backend's tracing (ops.trace: tf.function on TensorFlow) the penalty "
       "and its gradient equal the eager ones, same seed (its draws come from ops' seeded generator)",
       dtypes=("float32",))
def traced(ctx):
    reg = ctx.subject.regularizer

    def body(example):
        theta, real, fake = (ctx.round(x)[0] for x in example)
        eager, (g_eager, _, _) = nonlinear_penalty(ctx.backend, reg, ctx.dtype, theta, real, fake, seed=3)
        got, (g_got, _, _) = nonlinear_penalty(ctx.backend, reg, ctx.dtype, theta, real, fake, seed=3, traced=True)
        tol = value_tolerance(ctx.dtype, eager)
        where = f"theta={fmt(theta)}, real={fmt(real)}, fake={fmt(fake)} on {ctx.where}"
        hint = ("; both with ops seeded alike: are its random draws from ops.random_uniform/ops.random_normal "
                "(not numpy's or Python's generator, which tracing also freezes)?")
        if not (np.isfinite(got) and abs(got - eager) <= tol):
            fail(f"traced penalty {got!r}, eager {eager!r} (tolerance {tol!r}) at {where}{hint}")
        tol = grad_tolerance(ctx.dtype, g_eager, 1)
        if not np.max(np.abs(g_got - g_eager)) <= tol:
            fail(f"traced gradient wrt D's parameters {fmt(g_got)}, eager {fmt(g_eager)} (tolerance {float(tol)!r}) "
                 f"at {where}{hint}")

    # A fixed critic with an input gradient that differs from point to point (hypothesis's
    # first example is the all-zero critic, whose penalty no point or draw changes): a
    # penalty whose draws do not come from ops' seeded generator (numpy's global one,
    # say) differs between the two calls.
    rng = np.random.default_rng(7)
    fixed = (rng.uniform(-1, 1, 3 * FEATURES), rng.normal(size=(4, FEATURES)), rng.normal(size=(4, FEATURES)) + 1.0)
    body(fixed)
    if ctx.suite.profile != "ci":
        ctx.forall(_cubic_cases(), body, share=0.17)  # each example traces anew
