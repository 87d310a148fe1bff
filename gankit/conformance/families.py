"""What the suite knows about each loss family (``LossMeta.family``), independently of
any plugin: the per-sample derivatives of the canonical D and G losses, and the optimal
discriminator for known real and fake distributions p, q.

A family's D loss is separable, ``D = E_p[a(r)] + E_q[b(f)]``, so the expected D loss
over discrete p, q at one logit l per point is ``sum_x p(x) a(l_x) + q(x) b(l_x)``,
minimised where ``p a'(l) + q b'(l) = 0``. The functions here give ``a'``, ``b'`` and
the generator's ``g'`` (derivatives per sample, i.e. ``batch size * dLoss/dlogit``),
``a`` and ``b`` themselves, and that optimum in closed form:

======================  ===================================  ===============================
family                  a(r), b(f); G                         optimal logit l*(p, q)
======================  ===================================  ===============================
minimax (smoothing s)   (1-s) sp(-r) + s sp(r), sp(f);         logit(p (1-s) / (p + q))
                        sp(-f) (non-saturating) or -sp(f)
least_squares (a,b,c)   (r-b)^2/2, (f-a)^2/2; (f-c)^2/2        (b p + a q) / (p + q)
hinge                   relu(1-r), relu(1+f); -f               sign(p - q)
wasserstein             -r, f; -f                              none (slope q - p)
f_divergence kl         -r, exp(f-1); -f                       1 + log(p/q)
f_divergence reverse_kl exp(-r), f - 1; exp(-f)                log(p/q)
f_divergence pearson    -r, f^2/4 + f; -f                      2 (p/q - 1)
f_divergence js         sp(-r) - log 2, sp(f) - log 2;          log(p/q)
                        sp(-f) - log 2
======================  ===================================  ===============================

(sp = softplus.) The f-divergence rows are Nowozin et al. 2016's ``-(E_p[g(v)] -
E_q[f*(g(v))])`` with the generator maximising ``E_q[g(v)]``; at the optimum the
expected D loss is ``-D_f(p || q)``. Relativistic losses compare real with fake logits,
so none of this applies to them; "other" declares nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

LOG2 = math.log(2.0)


def _sp(x):
    x = np.asarray(x, dtype=np.float64)
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _sig(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@dataclass(frozen=True)
class Canon:
    """The canonical terms of one loss (a family with its parameters)."""

    what: str
    a: Callable        # real term of the D loss, per sample
    b: Callable        # fake term of the D loss, per sample
    da: Callable       # their derivatives
    db: Callable
    dg: Callable | None  # derivative of the G loss per fake sample; None when the family leaves G open
    optimum: Callable | None  # (p, q) -> optimal logits; None when there is none

    def expected(self, logits, p, q) -> float:
        with np.errstate(over="ignore"):
            return float(np.sum(p * self.a(logits) + q * self.b(logits)))


def _param(loss, name, default):
    value = getattr(getattr(loss, "params", None), name, default)
    return default if value is None else float(value)


def canon(loss) -> Canon | None:
    """The canonical terms for ``loss`` from its family (and params), or None. A hinge or
    f-GAN loss declared ``saturating`` has the minimax generator, minus D's fake term:
    G = -E b(f) (Nowozin et al.'s original f-GAN objective)."""
    form = _canon(loss)
    if form is not None and loss.meta.saturating and loss.meta.family in ("hinge", "f_divergence"):
        db = form.db
        form = replace(form, what=form.what + " (saturating G = -b(f))", dg=lambda f: -np.asarray(db(f), float))
    return form


def _canon(loss) -> Canon | None:
    meta = loss.meta
    family = meta.family
    if family == "minimax":
        s = _param(loss, "label_smoothing", 0.0)
        if meta.saturating:
            dg = lambda f: -_sig(f)  # noqa: E731  G = -E softplus(f) = E log(1 - D)
        else:
            dg = lambda f: -_sig(-f)  # noqa: E731  G = E softplus(-f) = -E log D
        return Canon(
            f"minimax with one-sided label smoothing {s:g}" if s else "minimax",
            a=lambda r: (1 - s) * _sp(-r) + s * _sp(r), b=_sp,
            da=lambda r: -(1 - s) * _sig(-r) + s * _sig(r), db=_sig, dg=dg,
            optimum=lambda p, q: np.log(p * (1 - s) / (p + q)) - np.log1p(-p * (1 - s) / (p + q)))
    if family == "least_squares":
        a, b, c = (_param(loss, k, d) for k, d in (("a", 0.0), ("b", 1.0), ("c", 1.0)))
        return Canon(f"least squares a={a:g}, b={b:g}, c={c:g}",
                     a=lambda r: 0.5 * (r - b) ** 2, b=lambda f: 0.5 * (f - a) ** 2,
                     da=lambda r: r - b, db=lambda f: f - a, dg=lambda f: f - c,
                     optimum=lambda p, q: (b * p + a * q) / (p + q))
    if family == "hinge":
        return Canon("hinge", a=lambda r: np.maximum(1 - r, 0), b=lambda f: np.maximum(1 + f, 0),
                     da=lambda r: -(np.asarray(r) < 1).astype(float), db=lambda f: (np.asarray(f) > -1).astype(float),
                     dg=lambda f: -_ones(f), optimum=lambda p, q: np.sign(p - q))
    if family == "wasserstein":
        return Canon("wasserstein", a=lambda r: -np.asarray(r, float), b=lambda f: np.asarray(f, float),
                     da=lambda r: -np.ones_like(r, dtype=float), db=lambda f: np.ones_like(f, dtype=float),
                     dg=lambda f: -np.ones_like(f, dtype=float), optimum=None)
    if family == "f_divergence":
        return F_DIVERGENCES.get(getattr(meta, "divergence", None))
    return None


def _ones(x):
    return np.ones_like(np.asarray(x, dtype=float))


F_DIVERGENCES = {
    "kl": Canon("f-GAN KL", a=lambda r: -np.asarray(r, float), b=lambda f: np.exp(np.asarray(f, float) - 1),
                da=lambda r: -_ones(r), db=lambda f: np.exp(np.asarray(f, float) - 1), dg=lambda f: -_ones(f),
                optimum=lambda p, q: 1 + np.log(p / q)),
    "reverse_kl": Canon("f-GAN reverse KL", a=lambda r: np.exp(-np.asarray(r, float)),
                        b=lambda f: np.asarray(f, float) - 1, da=lambda r: -np.exp(-np.asarray(r, float)),
                        db=_ones, dg=lambda f: -np.exp(-np.asarray(f, float)), optimum=lambda p, q: np.log(p / q)),
    "pearson": Canon("f-GAN Pearson chi^2", a=lambda r: -np.asarray(r, float),
                     b=lambda f: np.asarray(f, float) ** 2 / 4 + f, da=lambda r: -_ones(r),
                     db=lambda f: np.asarray(f, float) / 2 + 1, dg=lambda f: -_ones(f),
                     optimum=lambda p, q: 2 * (p / q - 1)),
    "jensen_shannon": Canon("f-GAN Jensen-Shannon", a=lambda r: _sp(-r) - LOG2, b=lambda f: _sp(f) - LOG2,
                            da=lambda r: -_sig(-r), db=_sig, dg=lambda f: -_sig(-f),
                            optimum=lambda p, q: np.log(p / q)),
}
"""``LossMeta.divergence`` -> the canonical f-GAN terms (family ``f_divergence``)."""
