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
    return "; ".join(done)


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
