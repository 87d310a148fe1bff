"""Checks every loss must pass, on every backend and dtype.

Each check is a property of the mathematics, not a golden number: agreement with the
numpy reference and between backends, finiteness, batch-order and duplication
invariance, direction, saturation, and the property that defines the loss's family.
Declared metadata is read from the loss *instance* (label smoothing changes it).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from gankit.conformance import strategies as S
from gankit.conformance.context import SIDES, Evaluation
from gankit.conformance.core import NotApplicable, check, declared, fail, require
from gankit.conformance.numerics import (
    DTYPES,
    fmt,
    grad_tolerance,
    one_sided_differences,
    round_to,
    value_tolerance,
    within,
)


def _batches(ctx, **kw):
    return S.logit_batches(ctx.tol.bound, equal=not ctx.subject.unequal_sizes_ok, **kw)


def _at(real, fake) -> str:
    return f"real={fmt(real)}, fake={fmt(fake)}"


def _close_values(ctx, got: float, want: float, what: str, *inputs, factor: float = 1.0) -> None:
    tol = factor * value_tolerance(ctx.dtype, want, *inputs)
    if not (np.isfinite(got) and np.isfinite(want)):
        fail(f"{what}: {fmt(got)} where {fmt(want)} was expected: not finite on {ctx.where}")
    if not abs(got - want) <= tol:
        fail(f"{what}: {fmt(got)} where {fmt(want)} was expected (|diff| {abs(got - want):.3g} > tolerance "
             f"{tol:.3g}) on {ctx.where}")


def _close_grads(ctx, got: np.ndarray, want: np.ndarray, what: str, batch: int, factor: float = 1.0) -> None:
    tol = factor * grad_tolerance(ctx.dtype, want, batch)
    if got.shape != want.shape or not np.all(np.isfinite(got)) or np.max(np.abs(got - want), initial=0) > tol:
        fail(f"{what}: gradient {fmt(got)} where {fmt(want)} was expected (tolerance {tol:.3g}) on {ctx.where}")


def _against_reference(ctx, side: str, real, fake, got: Evaluation) -> None:
    """Value and gradients of one evaluation against the numpy reference; gradients
    against one-sided finite differences, so a subgradient at a kink is accepted."""
    want = ctx.reference(side, real, fake)
    _close_values(ctx, got.value, want, f"{side} loss at {_at(real, fake)}: value", real, fake)
    diffs = one_sided_differences(lambda r, f: ctx.reference(side, r, f), [real, fake])
    for name, g, (left, right) in zip(("real", "fake"), (got.real, got.fake), diffs):
        tol = grad_tolerance(ctx.dtype, (left + right) / 2, max(len(real), len(fake)))
        ok = within(g, left, right, tol) & np.isfinite(g)
        if not ok.all():
            fail(f"{side} loss at {_at(real, fake)}: gradient wrt {name} logits is {fmt(g)}, the numpy "
                 f"reference's finite differences give {fmt((left + right) / 2)} (tolerance {tol:.3g}) on {ctx.where}")


def _finite(ctx, side, real, fake, e: Evaluation) -> None:
    bad = [n for n, v in (("value", e.value), ("d/d real", e.real), ("d/d fake", e.fake)) if not np.all(np.isfinite(v))]
    if bad:
        fail(f"{side} loss at {_at(real, fake)} on {ctx.where}: {', '.join(bad)} not finite "
             f"(value {fmt(e.value)}, gradients {fmt(e.real)}, {fmt(e.fake)}); "
             "write log(sigmoid(x)) as -softplus(-x) and log(1 - sigmoid(x)) as -softplus(x)")


# -- agreement ----------------------------------------------------------------------
@check("loss.reference", "value and gradient agree with the numpy reference of the same loss", dtypes=DTYPES)
def reference_agreement(ctx):
    def body(example):
        real, fake = ctx.round(*example)
        for side in SIDES:
            _against_reference(ctx, side, real, fake, ctx.evaluate(side, real, fake))

    ctx.forall(_batches(ctx), body)


@check("loss.backends_agree", "value and gradient agree between backends", dtypes=DTYPES, across=True)
def backends_agree(ctx):
    first, others = ctx.backends[0], ctx.backends[1:]

    def body(example):
        real, fake = ctx.round(*example)
        n = max(len(real), len(fake))
        for side in SIDES:
            base = ctx.evaluate(side, real, fake, backend=first)
            diffs = None
            for other in others:
                got = ctx.evaluate(side, real, fake, backend=other)
                if not (np.isfinite(base.value) and np.isfinite(got.value)):
                    fail(f"{side} loss at {_at(real, fake)} {ctx.dtype}: not finite ({first.name} gives "
                         f"{fmt(base.value)}, {other.name} gives {fmt(got.value)})")
                tol_v = 2 * value_tolerance(ctx.dtype, base.value, real, fake)
                if not abs(got.value - base.value) <= tol_v:
                    fail(f"{side} loss at {_at(real, fake)} {ctx.dtype}: {first.name} gives {fmt(base.value)}, "
                         f"{other.name} gives {fmt(got.value)} (tolerance {tol_v:.3g})")
                for name, a, b, k in (("real", base.real, got.real, 0), ("fake", base.fake, got.fake, 1)):
                    tol = 2 * grad_tolerance(ctx.dtype, a, n)
                    if np.max(np.abs(a - b), initial=0) <= tol:
                        continue
                    # At a kink backends may pick different subgradients: accept both
                    # when both lie between the one-sided derivatives.
                    diffs = diffs or one_sided_differences(lambda r, f: ctx.reference(side, r, f), [real, fake])
                    left, right = diffs[k]
                    if not (within(a, left, right, tol).all() and within(b, left, right, tol).all()):
                        fail(f"{side} loss at {_at(real, fake)} {ctx.dtype}: gradient wrt {name} logits is "
                             f"{fmt(a)} on {first.name}, {fmt(b)} on {other.name} (tolerance {tol:.3g})")

    ctx.forall(_batches(ctx), body)


# -- numerics -----------------------------------------------------------------------
@check("loss.finite_at_extremes", "finite value and gradients at logits of +-1e4 (+-100 in float16)",
       dtypes=DTYPES, applies=declared("finite_at_extremes"))
def finite_at_extremes(ctx):
    e = ctx.tol.extreme
    n = 4
    cases = [
        (np.full(n, e), np.full(n, -e)), (np.full(n, -e), np.full(n, e)),
        (np.full(n, e), np.full(n, e)), (np.full(n, -e), np.full(n, -e)),
        (np.array([e, -e, 0.0, 1.0]), np.array([-e, e, 1.0, 0.0])),
        (np.array([e]), np.array([-e])), (np.array([-e]), np.array([e])),
    ]
    for real, fake in cases:
        real, fake = ctx.round(real, fake)
        for side in SIDES:
            _finite(ctx, side, real, fake, ctx.evaluate(side, real, fake))
    return f"logits +-{e:g}"


@check("loss.batch_size_one", "a batch of one sample is finite and agrees with the reference", dtypes=DTYPES)
def batch_size_one(ctx):
    def body(example):
        real, fake = ctx.round(*example)
        for side in SIDES:
            got = ctx.evaluate(side, real, fake)
            _finite(ctx, side, real, fake, got)
            _against_reference(ctx, side, real, fake, got)

    ctx.forall(_batches(ctx, min_size=1, max_size=1), body, share=0.5)


# -- reductions ---------------------------------------------------------------------
@check("loss.batch_order_invariant", "permuting the real or the fake batch on its own changes nothing",
       dtypes=DTYPES, applies=declared("batch_order_invariant"))
def batch_order_invariant(ctx):
    def body(example):
        real, fake, pr, pf = example
        real, fake = ctx.round(real, fake)
        n = max(len(real), len(fake))
        for side in SIDES:
            base = ctx.evaluate(side, real, fake)
            for which, perm in (("real", pr), ("fake", pf)):
                r2, f2 = (real[perm], fake) if which == "real" else (real, fake[perm])
                got = ctx.evaluate(side, r2, f2)
                what = f"{side} loss with the {which} batch permuted by {[int(k) for k in perm]}, {_at(real, fake)}"
                _close_values(ctx, got.value, base.value, what, real, fake)
                want_r, want_f = (base.real[perm], base.fake) if which == "real" else (base.real, base.fake[perm])
                _close_grads(ctx, got.real, want_r, what + " (d/d real)", n)
                _close_grads(ctx, got.fake, want_f, what + " (d/d fake)", n)

    ctx.forall(S.permuted_batches(ctx.tol.bound, equal=not ctx.subject.unequal_sizes_ok), body)


@check("loss.mean_reduced", "duplicating the batch leaves the value unchanged (a mean, not a sum)",
       dtypes=DTYPES, applies=declared("mean_reduced"))
def mean_reduced(ctx):
    def body(example):
        real, fake = ctx.round(*example)
        r2, f2 = np.concatenate([real, real]), np.concatenate([fake, fake])
        n = 2 * max(len(real), len(fake))
        for side in SIDES:
            base = ctx.evaluate(side, real, fake)
            got = ctx.evaluate(side, r2, f2)
            what = f"{side} loss with both batches duplicated, {_at(real, fake)}"
            _close_values(ctx, got.value, base.value, what, real, fake)
            _close_grads(ctx, got.real, np.concatenate([base.real, base.real]) / 2, what + " (d/d real)", n)
            _close_grads(ctx, got.fake, np.concatenate([base.fake, base.fake]) / 2, what + " (d/d fake)", n)

    ctx.forall(_batches(ctx), body)


# -- direction and saturation -------------------------------------------------------
@check("loss.monotone", "raising real logits never raises the D loss, raising fake logits never lowers it; "
       "raising D(G(z)) never raises the G loss", dtypes=DTYPES, applies=declared("monotone"))
def monotone(ctx):
    step = 1.0

    def body(example):
        (real, fake), i, j = example
        real, fake = ctx.round(real, fake)
        i, j = i % len(real), j % len(fake)
        n = max(len(real), len(fake))
        d = ctx.evaluate("discriminator", real, fake)
        g = ctx.evaluate("generator", real, fake)
        tol_d = grad_tolerance(ctx.dtype, np.concatenate([d.real, d.fake]), n)
        tol_g = grad_tolerance(ctx.dtype, g.fake, n)
        if np.any(d.real > tol_d):
            fail(f"D loss gradient wrt real logits {fmt(d.real)} is positive at {_at(real, fake)} on {ctx.where}: "
                 "raising a real logit raises the discriminator loss (flipped sign or swapped arguments?)")
        if np.any(d.fake < -tol_d):
            fail(f"D loss gradient wrt fake logits {fmt(d.fake)} is negative at {_at(real, fake)} on {ctx.where}: "
                 "raising a fake logit lowers the discriminator loss (flipped sign or swapped arguments?)")
        if np.any(g.fake > tol_g):
            fail(f"G loss gradient wrt fake logits {fmt(g.fake)} is positive at {_at(real, fake)} on {ctx.where}: "
                 "raising D(G(z)) raises the generator loss (flipped sign?)")
        # The same, as finite steps (one logit, or a whole batch, raised by `step`).
        up_r, up_f = real.copy(), fake.copy()
        up_r[i] += step
        up_f[j] += step
        moves = [
            ("discriminator", (up_r, fake), d.value, +1, f"raising real logit {i}"),
            ("discriminator", (real, fake + step), d.value, -1, "raising every fake logit"),
            ("generator", (real, up_f), g.value, +1, f"raising fake logit {j}"),
        ]
        for side, (r2, f2), before, worse, what in moves:
            r2, f2 = ctx.round(r2, f2)
            after = ctx.evaluate(side, r2, f2).value
            tol = value_tolerance(ctx.dtype, before, r2, f2)
            if (after - before) * worse > tol:
                verb = "raises" if worse > 0 else "lowers"
                fail(f"{what} by {step:g} {verb} the {side} loss from {fmt(before)} to {fmt(after)} at "
                     f"{_at(real, fake)} on {ctx.where}")

    index = st.integers(0, 7)
    ctx.forall(st.tuples(_batches(ctx), index, index), body)


#: Fake logits where D(G(z)) = sigmoid(-20) ~ 2e-9: the discriminator rejects every fake.
SATURATION_LOGIT = 20.0
VANISHING, ALIVE = 1e-3, 1e-2


@check("loss.saturation", "the G gradient vanishes as D(G(z)) -> 0 exactly when meta.saturating says so",
       dtypes=DTYPES)
def saturation(ctx):
    n = 4
    real, fake = ctx.round(np.full(n, SATURATION_LOGIT), np.full(n, -SATURATION_LOGIT))
    g = ctx.evaluate("generator", real, fake)
    per_sample = float(np.mean(np.abs(g.fake))) * n
    detail = (f"per-sample |dG/d fake logit| is {per_sample:.3g} at fake logits {-SATURATION_LOGIT:g} "
              f"(D(G(z)) ~ 2e-9), real logits {SATURATION_LOGIT:g}, on {ctx.where}")
    if not np.isfinite(per_sample):
        fail(detail)
    if ctx.subject.meta.saturating:
        require(per_sample < VANISHING, f"meta.saturating is True but the gradient does not vanish: {detail}")
        return "saturating, as declared"
    require(per_sample > ALIVE, f"meta.saturating is False but the gradient vanishes: {detail}")
    return "non-saturating, as declared"


# -- families -----------------------------------------------------------------------
#: Two discrete distributions p (real) and q (fake) on a few points, as sample counts.
#: A batch holds each point as often as its count, so a batch mean is an expectation.
DISCRETE_PAIRS = (((4, 2, 1, 1), (1, 1, 2, 4)), ((1, 3), (3, 1)), ((3, 1, 2, 2), (1, 3, 2, 2)))


def _jsd(p, q) -> float:
    m = (p + q) / 2
    return float(0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m)))


@check("loss.optimal_discriminator", "minimax: the expected D loss over known p, q is minimised at "
       "D* = p/(p+q) (value log 4 - 2 JSD), and equals log 4 at D = 1/2",
       dtypes=DTYPES, applies=declared("optimal_discriminator"))
def optimal_discriminator(ctx):
    for cp, cq in DISCRETE_PAIRS:
        cp, cq = np.array(cp), np.array(cq)
        p, q = cp / cp.sum(), cq / cq.sum()
        idx_r, idx_f = np.repeat(np.arange(len(p)), cp), np.repeat(np.arange(len(q)), cq)

        def at(logits):
            logits = round_to(logits, ctx.dtype)
            e = ctx.evaluate("discriminator", logits[idx_r], logits[idx_f])
            grad = np.zeros(len(logits))
            np.add.at(grad, idx_r, e.real)
            np.add.at(grad, idx_f, e.fake)
            return e.value, grad

        # D* = p / (p + q) is the logit log(p / q).
        best = np.log(p / q)
        value, grad = at(best)
        want = math.log(4) - 2 * _jsd(p, q)
        what = f"D loss at D* = p/(p+q) for p={fmt(p)}, q={fmt(q)}"
        _close_values(ctx, value, want, what + " (log 4 - 2 JSD(p, q))", best)
        _close_grads(ctx, grad, np.zeros_like(grad), what + " is not stationary; d/d logit", 1)
        for k in range(len(p)):
            for delta in (-0.5, 0.5):
                moved = best.copy()
                moved[k] += delta
                other, _ = at(moved)
                if other < value - value_tolerance(ctx.dtype, value, moved):
                    fail(f"{what} is not the minimum: moving the logit of point {k} by {delta:+g} lowers the "
                         f"expected D loss from {fmt(value)} to {fmt(other)} on {ctx.where}")

    def half(example):
        n, m = example
        e = ctx.evaluate("discriminator", np.zeros(n), np.zeros(m))
        _close_values(ctx, e.value, math.log(4), f"D loss at D = 1/2 (zero logits, batches {n} and {m})")

    sizes = st.integers(1, 8)
    ctx.forall(st.tuples(sizes, sizes) if ctx.subject.unequal_sizes_ok else sizes.map(lambda n: (n, n)), half,
               share=0.5)


@check("loss.shift_invariant", "adding one constant to every logit changes nothing (wasserstein: "
       "the critic loss; the generator's gradient)", dtypes=DTYPES, applies=declared("shift_invariant"))
def shift_invariant(ctx):
    critic_only = ctx.subject.meta.family == "wasserstein"

    def body(example):
        (real, fake), c = example
        real, fake = ctx.round(real, fake)
        r2, f2 = ctx.round(real + c, fake + c)
        n = max(len(real), len(fake))
        for side in SIDES:
            base, got = ctx.evaluate(side, real, fake), ctx.evaluate(side, r2, f2)
            what = f"{side} loss with every logit shifted by {c:.6g}, {_at(real, fake)}"
            # The shifted inputs are rounded again: allow for their own rounding.
            if side == "discriminator" or not critic_only:
                _close_values(ctx, got.value, base.value, what, r2, f2, factor=2)
            _close_grads(ctx, got.real, base.real, what + " (d/d real)", n, factor=2)
            _close_grads(ctx, got.fake, base.fake, what + " (d/d fake)", n, factor=2)

    ctx.forall(st.tuples(_batches(ctx), S.floats(-10, 10)), body)
    return "critic loss value; both gradients" if critic_only else "both losses"


@check("loss.hinge_margin", "the D loss is zero once every real logit >= 1 and every fake logit <= -1, "
       "positive when a margin is violated", dtypes=DTYPES, applies=declared("hinge_margin"))
def hinge_margin(ctx):
    b = ctx.tol.bound

    def body(example):
        real, fake = ctx.round(*example)
        e = ctx.evaluate("discriminator", real, fake)
        n = max(len(real), len(fake))
        require(abs(e.value) <= value_tolerance(ctx.dtype, 0.0),
                f"D loss is {fmt(e.value)}, not 0, beyond the margins at {_at(real, fake)} on {ctx.where}")
        _close_grads(ctx, e.real, np.zeros_like(real), f"D loss beyond the margins at {_at(real, fake)}", n)
        _close_grads(ctx, e.fake, np.zeros_like(fake), f"D loss beyond the margins at {_at(real, fake)}", n)
        inside = real.copy()
        inside[0] = 0.0
        v = ctx.evaluate("discriminator", inside, fake).value
        require(v > value_tolerance(ctx.dtype, 0.0),
                f"D loss is {fmt(v)} with real logit 0 inside the margin at {_at(inside, fake)} on {ctx.where}")

    ctx.forall(_batches(ctx, real_range=(1.0, b), fake_range=(-b, -1.0)), body)


@check("loss.least_squares_targets", "the D loss is minimised at real = b, fake = a; the G loss at fake = c",
       dtypes=DTYPES, applies=declared("least_squares_targets"))
def least_squares_targets(ctx):
    params = ctx.subject.loss.params
    try:
        a, b, c = (float(getattr(params, k)) for k in ("a", "b", "c"))
    except (AttributeError, TypeError):
        raise NotApplicable("the loss's params have no targets a, b, c") from None

    def body(example):
        (real, fake), delta = example
        n, m = len(real), len(fake)
        targets = {"discriminator": ctx.round(np.full(n, b), np.full(m, a)),
                   "generator": ctx.round(np.full(n, b), np.full(m, c))}
        for side, (tr, tf) in targets.items():
            best = ctx.evaluate(side, tr, tf)
            what = f"{side} loss at its targets (a={a:g}, b={b:g}, c={c:g})"
            _close_grads(ctx, best.real, np.zeros(n), what + " is not stationary (d/d real)", max(n, m))
            _close_grads(ctx, best.fake, np.zeros(m), what + " is not stationary (d/d fake)", max(n, m))
            moved = [ctx.round(tr + delta, tf), ctx.round(tr, tf + delta), ctx.round(real, fake)]
            if side == "generator":
                moved = moved[1:]
            for r2, f2 in moved:
                v = ctx.evaluate(side, r2, f2).value
                if v < best.value - value_tolerance(ctx.dtype, best.value, r2, f2):
                    fail(f"{what} is {fmt(best.value)} but {fmt(v)} at {_at(r2, f2)} on {ctx.where}: "
                         "not minimised at the targets")

    nonzero = st.one_of(S.floats(-2.0, -0.25), S.floats(0.25, 2.0))
    ctx.forall(st.tuples(_batches(ctx), nonzero), body)
