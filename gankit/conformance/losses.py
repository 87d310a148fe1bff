"""Checks every loss must pass, on every backend and dtype.

Each check is a property of the mathematics, not a golden number: agreement with the
numpy reference and between backends, finiteness, batch-order and duplication
invariance, direction, saturation, and the property that defines the loss's family.
Declared metadata is read from the loss *instance* (label smoothing changes it).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from gankit.conformance import strategies as S
from gankit.conformance.context import SIDES, Evaluation, OutOfRange
from gankit.conformance.core import NotApplicable, check, declared, fail, require
from gankit.conformance.families import canon
from gankit.conformance.numerics import (
    DTYPES,
    EPS,
    FULL_PRECISION,
    TOLERANCES,
    derivatives,
    fmt,
    grad_tolerance,
    gradient_matches,
    representable,
    round_to,
    value_tolerance,
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
        fail(f"{what}: {fmt(got)} where {fmt(want)} was expected (|diff| {abs(got - want)!r} > tolerance "
             f"{tol!r}) on {ctx.where}")


def _close_grads(ctx, got: np.ndarray, want: np.ndarray, what: str, batch: int, factor: float = 1.0) -> None:
    tol = factor * grad_tolerance(ctx.dtype, want, batch)
    if got.shape != want.shape or not np.all(np.isfinite(got)) or np.max(np.abs(got - want), initial=0) > tol:
        fail(f"{what}: gradient {fmt(got)} where {fmt(want)} was expected (tolerance {tol!r}) on {ctx.where}")


def _reference_derivatives(ctx, side, real, fake):
    """Finite differences of the numpy reference, made once per loss, side and inputs:
    every backend replays the same examples, and the reference does not depend on it."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    memo = ctx.suite.cache.setdefault("reference-derivatives", {})
    key = (id(ctx.subject.loss), side, real.shape, real.tobytes(), fake.shape, fake.tobytes())
    if key not in memo:
        memo[key] = derivatives(lambda r, f: ctx.reference(side, r, f), [real, fake])
    return memo[key]


def _against_reference(ctx, side: str, real, fake, got: Evaluation) -> None:
    """Value and gradients of one evaluation against the numpy reference in float64;
    gradients against Richardson-extrapolated finite differences with their own error
    estimate (a subgradient is accepted at a kink). An example whose exact value is
    beyond the dtype's range is skipped."""
    want = ctx.reference(side, real, fake)
    if not representable(ctx.dtype, want) and ctx.excused(want, max(len(real), len(fake))):
        raise OutOfRange(f"the exact {side} loss at {_at(real, fake)} is {want!r}")
    _close_values(ctx, got.value, want, f"{side} loss at {_at(real, fake)}: value", real, fake)
    diffs = _reference_derivatives(ctx, side, real, fake)
    for name, g, d in zip(("real", "fake"), (got.real, got.fake), diffs):
        tol = grad_tolerance(ctx.dtype, d.central, max(len(real), len(fake)))
        if not representable(ctx.dtype, d.central):
            raise OutOfRange(f"the exact gradient of the {side} loss at {_at(real, fake)} is {fmt(d.central)}")
        ok = gradient_matches(g, d, tol)
        if not ok.all():
            k = int(np.argmin(ok))
            fail(f"{side} loss at {_at(real, fake)}: gradient wrt {name} logits is {fmt(g)}, the numpy "
                 f"reference's finite differences give {fmt(d.central)} (element {k}: {g.ravel()[k]!r} vs "
                 f"{d.central.ravel()[k]!r}, tolerance {tol!r} + finite-difference error "
                 f"{d.error.ravel()[k]!r}) on {ctx.where}")


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


#: Extreme logits per dtype: beyond the +-20 the examples are drawn from, where a
#: clamp (at +-30, or on one backend only) or a naive formula shows. float16 stops at
#: +-100: a squared logit beyond ~250 overflows its 65504.
EXTREMES = {"float64": (50.0, 1e3), "float32": (50.0, 1e3), "bfloat16": (50.0, 1e3), "float16": (50.0, 100.0)}


def _extreme_batches(ctx):
    """(real, fake) pairs at and beyond the extremes: one sample far out, the rest moderate,
    and whole batches far out in each direction."""
    out = []
    for e in EXTREMES[ctx.dtype]:
        for s in (1.0, -1.0):
            out.append((np.array([s * e, 0.5, -1.0]), np.array([0.25, -0.5, 1.5])))
            out.append((np.array([0.25, -0.5, 1.5]), np.array([s * e, 0.5, -1.0])))
            out.append((np.full(3, s * e), np.full(3, -s * e)))
    return out


def _each_example(ctx, examples, body) -> int:
    """Run ``body`` on fixed examples, skipping those out of the dtype's range; n/a if all are."""
    ran, skipped = 0, []
    for real, fake in examples:
        try:
            body(*ctx.round(real, fake))
            ran += 1
        except OutOfRange as exc:
            skipped.append(str(exc))
    if skipped and not ran:
        raise NotApplicable(f"every example is out of {ctx.dtype}'s range ({skipped[0]})")
    return ran


def _agree(ctx, real, fake):
    first, others = ctx.backends[0], ctx.backends[1:]
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
                     f"{other.name} gives {fmt(got.value)} (|diff| {abs(got.value - base.value)!r} > tolerance "
                     f"{tol_v!r})")
            for name, a, b, k in (("real", base.real, got.real, 0), ("fake", base.fake, got.fake, 1)):
                tol = 2 * grad_tolerance(ctx.dtype, a, n)
                if np.max(np.abs(a - b), initial=0) <= tol:
                    continue
                # At a kink backends may pick different subgradients: accept both
                # when both lie between the one-sided derivatives.
                diffs = diffs or _reference_derivatives(ctx, side, real, fake)
                d = diffs[k]
                if not (gradient_matches(a, d, tol).all() and gradient_matches(b, d, tol).all()):
                    fail(f"{side} loss at {_at(real, fake)} {ctx.dtype}: gradient wrt {name} logits is "
                         f"{fmt(a)} on {first.name}, {fmt(b)} on {other.name} (tolerance {tol!r})")


@check("loss.backends_agree", "value and gradient agree between backends, out to extreme logits",
       dtypes=DTYPES, across=True)
def backends_agree(ctx):
    ctx.forall(_batches(ctx), lambda example: _agree(ctx, *ctx.round(*example)), examples_of="loss.reference")
    _each_example(ctx, _extreme_batches(ctx), lambda r, f: _agree(ctx, r, f))


@check("loss.extremes", "value and gradient agree with the numpy reference at logits of +-50 and +-1e3 "
       "(+-100 in float16)", dtypes=DTYPES)
def extremes(ctx):
    def body(real, fake):
        for side in SIDES:
            _against_reference(ctx, side, real, fake, ctx.evaluate(side, real, fake))

    n = _each_example(ctx, _extreme_batches(ctx), body)
    return f"{n} extreme examples, logits up to +-{EXTREMES[ctx.dtype][-1]:g}"


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
    def body(real, fake):
        for side in SIDES:
            _finite(ctx, side, real, fake, ctx.evaluate(side, real, fake))

    _each_example(ctx, cases, body)
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
#: Params a family's checks (loss.optimal_discriminator, loss.asymptotes) also try, at
#: float64, when the instance's own hide a wrong term: least squares'
#: defaults have c = b, so a G pulling to b instead of c passes them; without label
#: smoothing, smoothing the wrong targets changes nothing.
VARIANTS = {"minimax": {"label_smoothing": 0.2}, "least_squares": {"a": -1.0, "b": 1.0, "c": 0.0}}


def _loss_variants(ctx) -> list:
    """The subject's loss, and the same class with the family's variant params (when its
    params have those fields, differ from them, and accept them)."""
    loss = ctx.subject.loss
    update = VARIANTS.get(loss.meta.family)
    params = getattr(loss, "params", None)
    if ctx.dtype != "float64" or not update or params is None:
        return [loss]
    fields = set(getattr(type(params), "model_fields", ()))
    if not set(update) <= fields:
        return [loss]
    now = {k: getattr(params, k) for k in update}
    if now == update or ("label_smoothing" in update and now["label_smoothing"]):
        return [loss]  # already the variant, or smoothing already on
    memo = ctx.suite.cache.setdefault("loss-variants", {})
    if id(loss) not in memo:
        try:
            variant = type(loss)(type(params).model_validate({**params.model_dump(), **update}))
        except Exception:  # a plugin whose params or constructor refuse them: nothing to add
            variant = None
        memo[id(loss)] = (loss, variant)  # the loss kept alive: ids key the evaluation cache
    variant = memo[id(loss)][1]
    return [loss] if variant is None else [loss, variant]


def _each_variant(ctx, fn) -> str:
    """``fn(ctx, loss, variant)`` for the subject's loss and its variants; a variant the
    check does not apply to (its values out of range) is left out."""
    done = []
    for k, loss in enumerate(_loss_variants(ctx)):
        try:
            done.append(fn(ctx, loss, k > 0))
        except NotApplicable:
            if k == 0:
                raise
    return "; ".join(done)


#: Two discrete distributions p (real) and q (fake) on a few points, as sample counts.
#: A batch holds each point as often as its count, so a batch mean is an expectation.
#: The last pair has batches of different sizes (skipped for pairwise losses).
DISCRETE_PAIRS = (((4, 2, 1, 1), (1, 1, 2, 4)), ((1, 3), (3, 1)), ((3, 1, 2, 2), (1, 3, 2, 2)),
                  ((2, 1, 1), (1, 2, 3)))


def _has_optimum(subject) -> str | None:
    meta = subject.meta
    form = canon(subject.loss)
    if form is not None and (form.optimum is not None or meta.family == "wasserstein"):
        return None
    if "optimal_discriminator" in meta.properties:
        return None
    return (f"family {meta.family!r} has no known optimal discriminator (and the loss does not declare "
            "'optimal_discriminator')")


@check("loss.optimal_discriminator", "over known unequal p, q the expected D loss is stationary and minimal "
       "at the family's D* (minimax with label smoothing: p(1-s)/(p+q); least squares: (bp+aq)/(p+q); hinge: "
       "sign(p-q); f-GAN: f'(p/q)) with the family's value there; wasserstein: slope q - p",
       dtypes=DTYPES, applies=_has_optimum)
def optimal_discriminator(ctx):
    return _each_variant(ctx, _optimal_discriminator)


def _optimal_discriminator(ctx, loss, variant: bool = False) -> str:
    form = canon(loss)
    if form is None:  # declared without a known family: the minimax optimum
        from gankit.conformance.families import Canon, _sig, _sp

        form = Canon("minimax", lambda r: _sp(-r), _sp, lambda r: -_sig(-r), _sig, None,
                     optimum=lambda p, q: np.log(p / q))
    checked = []
    for cp, cq in DISCRETE_PAIRS[:2] if variant else DISCRETE_PAIRS:  # a variant: two pairs suffice
        cp, cq = np.array(cp), np.array(cq)
        if cp.sum() != cq.sum() and not ctx.subject.unequal_sizes_ok:
            continue
        p, q = cp / cp.sum(), cq / cq.sum()
        idx_r, idx_f = np.repeat(np.arange(len(p)), cp), np.repeat(np.arange(len(q)), cq)

        def at(logits):
            logits = round_to(logits, ctx.dtype)
            real, fake = logits[idx_r], logits[idx_f]
            e = ctx.evaluate("discriminator", real, fake, loss=loss)
            grad = np.zeros(len(logits))
            np.add.at(grad, idx_r, e.real)
            np.add.at(grad, idx_f, e.fake)
            size = np.zeros(len(logits))
            np.add.at(size, idx_r, np.abs(e.real))
            np.add.at(size, idx_f, np.abs(e.fake))
            return e.value, grad, size, logits

        where = f"p={fmt(p)} (real batch {fmt(cp)}), q={fmt(q)} (fake batch {fmt(cq)}), {form.what}"
        if form.optimum is None:  # wasserstein: linear, the slope per point is q - p
            logits = np.linspace(-1.0, 1.0, len(p))
            value, grad, _, logits = at(logits)
            _close_grads(ctx, grad, q - p, f"expected critic loss for {where}: slope per point (q - p)", 1)
            checked.append("slope q - p")
            continue
        with np.errstate(divide="ignore"):
            best = form.optimum(p, q)
        value, grad, size, best = at(best)
        what = f"expected D loss at D* (logits {fmt(best)}) for {where}"
        # The value against the family's, up to a constant (which changes no gradient):
        # the rise from D* to D = 1/2-like zero logits is the family's rise.
        zero = at(np.zeros(len(p)))[0]
        want = form.expected(np.zeros(len(p)), p, q) - form.expected(best, p, q)
        if not representable(ctx.dtype, want, value, zero):
            continue
        _close_values(ctx, zero - value, want, what + ": the rise to all-zero logits", best,
                      factor=1 + (abs(value) + abs(zero)) / (1 + abs(want)))
        if loss.meta.family != "hinge":  # a kink at D*: minimality below says enough
            tol = grad_tolerance(ctx.dtype, size, 1)
            if np.max(np.abs(grad)) > tol:
                fail(f"{what} is not stationary: d/d logit per point is {fmt(grad)} (tolerance {tol!r}) on "
                     f"{ctx.where}; a term weighted or targeted differently from the family's canonical form?")
        for k in range(len(p)):
            for delta in (-0.5, 0.5):
                moved = best.copy()
                moved[k] += delta
                other = at(moved)[0]
                if other < value - value_tolerance(ctx.dtype, value, moved):
                    fail(f"{what} is not the minimum: moving the logit of point {k} by {delta:+g} lowers the "
                         f"expected D loss from {fmt(value)} to {fmt(other)} on {ctx.where}")
        checked.append(f"D* {fmt(best)}")
    if not checked:
        raise NotApplicable(f"the optimum's values are out of {ctx.dtype}'s range")
    return f"{form.what}: {len(checked)} pairs p, q"


#: Per-sample gradients are compared with the family's at these logits (the other
#: batch at 0, or 3 for a G that reads the reals); the generic check compares the slope
#: at +-20 with the slope beyond. +-2: where a G that reads the real logits shows.
def _ray(ctx):
    near, far = EXTREMES[ctx.dtype]
    # float64 also at +-300, where exp(300) is still finite: an f-GAN whose exp is clamped
    # against float32's overflow (exp(min(x, 80))) shows there, and in no float32 value.
    mid = (300.0,) if ctx.dtype == "float64" else ()
    return (-far, *(-m for m in mid), -near, -20.0, -2.0, 2.0, 20.0, near, *mid, far)


@check("loss.asymptotes", "per-sample gradients out to +-1e3 follow the family's canonical ones (e.g. the "
       "non-saturating G gradient -> -1 as D(G(z)) -> 0), and never go flat beyond +-20 where they were not",
       dtypes=DTYPES)
def asymptotes(ctx):
    return _each_variant(ctx, _asymptotes)


def _asymptotes(ctx, loss, variant: bool = False) -> str:
    form = canon(loss)
    n = 2
    slopes = {}
    # A family that fixes G's gradient fixes it whatever the real logits are: a G that
    # reads them (declaring generator_needs_real) gets real logits that are not 0.
    reads_real = form is not None and form.dg is not None and loss.meta.generator_needs_real
    g_real = np.full(n, 3.0) if reads_real else np.zeros(n)
    for x in _ray(ctx):
        batches = {"discriminator/real": (np.full(n, x), np.zeros(n)), "discriminator/fake": (np.zeros(n), np.full(n, x)),
                   "generator/fake": (g_real, np.full(n, x))}
        for key, (real, fake) in batches.items():
            side, which = key.split("/")
            if abs(x) == 2.0 and side == "discriminator":
                continue  # loss.optimal_discriminator checks D's terms at moderate logits
            real, fake = ctx.round(real, fake)
            try:
                e = ctx.evaluate(side, real, fake, loss=loss)
            except OutOfRange:
                continue
            g = (e.real if which == "real" else e.fake) * n
            slopes[key, x] = g
            if form is None:
                continue
            expect = {"discriminator/real": form.da, "discriminator/fake": form.db, "generator/fake": form.dg}[key]
            if expect is None:
                continue
            with np.errstate(over="ignore"):
                want = np.asarray(expect(np.full(n, float(real[0] if which == "real" else fake[0]))), float)
            if not representable(ctx.dtype, want, e.value):
                continue
            tol = float(TOLERANCES[ctx.dtype].grad * (np.max(np.abs(want)) + 1.0))
            if not (np.all(np.isfinite(g)) and np.max(np.abs(g - want)) <= tol):
                other = fake if which == "real" else real
                fail(f"{side} loss, {which} logits all {x:g} (the other batch {fmt(other)}): gradient per sample is "
                     f"{fmt(g)}, "
                     f"the {form.what} family's is {fmt(want)} (tolerance {tol!r}) on {ctx.where}"
                     "; a clamp, an epsilon inside a log, or probabilities where logits belong?")
    # Generic, where the family says nothing: a slope alive at +-20 does not vanish at
    # every logit further out (a clamp does exactly that).
    known = {"discriminator/real": form and form.da, "discriminator/fake": form and form.db,
             "generator/fake": form and form.dg}
    for key in (k for k, v in known.items() if v is None):
        for sign in (1.0, -1.0):
            near = slopes.get((key, sign * 20.0))
            if near is None or not np.all(np.isfinite(near)) or np.min(np.abs(near)) < 1e-2:
                continue
            far = [slopes.get((key, sign * e)) for e in (EXTREMES[ctx.dtype][0], EXTREMES[ctx.dtype][-1])]
            if all(f is not None and np.max(np.abs(f)) <= 1e-6 * np.min(np.abs(near)) for f in far):
                side, which = key.split("/")
                fail(f"{side} loss, {which} logits all {sign * EXTREMES[ctx.dtype][0]:g} and "
                     f"{sign * EXTREMES[ctx.dtype][-1]:g}: gradients per sample {fmt(far[0])}, {fmt(far[1])} are flat, "
                     f"but {fmt(near)} at {sign * 20:g} on {ctx.where}: the loss stops changing beyond some logit "
                     "(a clamp?)")
    return f"{form.what} family's gradients and no flat tail" if form else "no flat tail"


#: dtype -> (the lower precision it must out-resolve, ulps of the dtype the probe moves the value by)
PROBES = {"float64": ("float32", 4096), "float32": ("bfloat16", 512)}


@check("loss.precision", "at float64 (float32) the loss resolves logit changes far below float32's "
       "(bfloat16's) resolution: it computes in the dtype it is given", dtypes=tuple(PROBES))
def precision(ctx):
    lower, ulps = PROBES[ctx.dtype]
    rng = np.random.default_rng(5)
    done = 0
    for trial in range(6):
        n = 4
        real, fake = ctx.round(rng.uniform(-3, 3, n), rng.uniform(-3, 3, n))
        for side in SIDES:
            base = ctx.evaluate(side, real, fake)
            # Move every logit in its gradient's direction, in proportion to its size.
            sr = np.sign(base.real) * np.maximum(1, np.abs(real))
            sf = np.sign(base.fake) * np.maximum(1, np.abs(fake))
            slope = float(np.dot(base.real, sr) + np.dot(base.fake, sf))
            if not np.isfinite(slope) or slope < 1e-3 * (1 + abs(base.value)):
                continue
            # A step changing the value by `ulps` ulps of this dtype, far below one ulp of `lower`.
            t = ulps * EPS[ctx.dtype] * (1 + abs(base.value)) / slope
            if t * max(np.max(np.abs(sr)), np.max(np.abs(sf))) > EPS[lower] / 16:
                continue
            r2, f2 = ctx.round(real + t * sr, fake + t * sf)
            predicted = float(np.dot(base.real, r2 - real) + np.dot(base.fake, f2 - fake))
            got = ctx.evaluate(side, r2, f2).value - base.value
            tol = 0.25 * abs(predicted) + (ulps / 8) * EPS[ctx.dtype] * (1 + abs(base.value))
            if not abs(got - predicted) <= tol:
                fail(f"{side} loss at {_at(real, fake)}: moving the logits by ~{t!r} (relative) changes the value "
                     f"by {got!r}, its gradient predicts {predicted!r} (tolerance {tol!r}) on {ctx.where}: the "
                     f"loss does not resolve {ctx.dtype} differences; does it compute in {lower} or lower?")
            done += 1
    if not done:
        raise NotApplicable("the loss's gradient is too small against its value to probe its precision")
    return f"{done} probes"


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


def _swaps_roles(subject) -> str | None:
    meta = subject.meta
    if meta.family != "relativistic":
        return "not a relativistic loss: only a relativistic generator loss is the discriminator's with roles swapped"
    if meta.saturating:
        return "a saturating relativistic generator loss is not the discriminator's with the roles swapped"
    return None


@check("loss.relativistic_roles", "relativistic (non-saturating): the generator loss is the discriminator loss "
       "with real and fake swapped, G(fake=x, real=y) = D(real=x, fake=y), and it reads the real logits",
       dtypes=FULL_PRECISION, applies=_swaps_roles)
def relativistic_roles(ctx):
    require(ctx.subject.meta.generator_needs_real,
            "family 'relativistic' but meta.generator_needs_real is False: a relativistic generator compares fake "
            "with real logits (as the discriminator does, roles swapped); declare generator_needs_real=True")

    def body(example):
        real, fake = ctx.round(*example)
        g = ctx.evaluate("generator", real, fake)
        d = ctx.evaluate("discriminator", fake, real)
        what = (f"generator loss at {_at(real, fake)} against the discriminator loss with the roles swapped "
                f"({_at(fake, real)})")
        n = max(len(real), len(fake))
        _close_values(ctx, g.value, d.value, what, real, fake)
        _close_grads(ctx, g.fake, d.real, what + " (G's d/d fake against D's d/d real)", n)
        _close_grads(ctx, g.real, d.fake, what + " (G's d/d real against D's d/d fake)", n)

    ctx.forall(_batches(ctx), body)
    return "G(fake=x, real=y) = D(real=x, fake=y)"


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
