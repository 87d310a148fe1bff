"""Discriminator rejection sampling (DRS): the trained discriminator filters the generator's samples.

Azadi et al. 2019, "Discriminator Rejection Sampling" (ICLR). For the optimal
discriminator of the minimax / non-saturating loss, ``D(x) = sigmoid(l(x))`` with the
logit ``l(x) = log p_data(x) / p_g(x)``, so accepting a generated ``x`` with probability
``exp(l(x) - l_max)`` turns the generator's distribution into the data's exactly
(ordinary rejection sampling with the density ratio ``exp(l)``, bounded by ``exp(l_max)``).

``l_max`` is estimated (the largest logit seen: a burn-in, then every batch). That exact
rule is :func:`rejection_sample`'s default (``percentile=None``); it keeps the balance
between modes. For a sharp discriminator, whose largest logit is far above the rest, it
can accept almost nothing, so the paper accepts with ``sigmoid(F(x) - gamma)`` where::

    F(x) = l(x) - l_max - log(1 - exp(l(x) - l_max - eps))

``sigmoid(F)`` equals ``exp(l - l_max)`` (``sigmoid(a - log(1 - e^a)) = e^a``), and the
shift ``gamma`` is the ``percentile`` of ``F`` over each batch: the candidate at that
percentile is accepted with probability 1/2, those above it more often, those below
less, whatever ``l_max`` is; a higher percentile is stricter, and may pile the samples
onto the modes the discriminator scores highest. Either way the candidates the
discriminator finds least real (between the modes of a mixture, say) are the ones
thrown away.

Everything here is numpy over a trainer's ``generate`` and ``discriminate``, so it works
the same on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from gankit.errors import ConfigError, GankitError

#: ``eps`` of F(x): keeps ``log(1 - exp(l - l_max - eps))`` finite at ``l = l_max``.
EPS = 1e-6


@dataclass
class RejectionResult:
    """Accepted samples, with how many candidates it took."""

    samples: np.ndarray
    labels: np.ndarray | None
    candidates: int
    """Generated samples scored by the discriminator, burn-in included."""
    burn_in: int
    """Of those, the ones that only estimated the largest logit."""
    accepted: int
    """Candidates accepted (the last batch's beyond the ``n`` asked for included)."""
    logit_max: float
    """The final estimate of the largest discriminator logit."""

    @property
    def acceptance(self) -> float:
        """Accepted share of the candidates after the burn-in."""
        return self.accepted / max(self.candidates - self.burn_in, 1)


def acceptance_probability(logits: np.ndarray, logit_max: float, percentile: float | None) -> np.ndarray:
    """DRS's ``sigmoid(F(x) - gamma)`` for discriminator ``logits`` (any shape), float64.

    ``percentile=None`` is exact rejection sampling (``gamma = 0``: ``exp(l - l_max)``);
    otherwise ``gamma`` is that percentile (in [0, 1)) of ``F`` over ``logits``.
    """
    l = np.asarray(logits, dtype=np.float64)
    a = np.minimum(l - logit_max, 0.0) - EPS  # log of exp(l - l_max) <= 1, strictly below 0
    # F = a - log(1 - e^a), with log(1 - e^a) = log1p(-exp(a)) (a < 0, so 1 - e^a > 0).
    f = a - np.log1p(-np.exp(a))
    gamma = 0.0 if percentile is None else float(np.quantile(f, percentile))
    # sigmoid(F - gamma), written to stay finite for F far below gamma.
    return np.exp(-np.logaddexp(0.0, -(f - gamma)))


def rejection_sample(
    generate: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    discriminate: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    draw_latents: Callable[[int, np.random.Generator], np.ndarray],
    n: int,
    *,
    percentile: float | None = None,
    seed: int = 0,
    batch_size: int = 1000,
    burn_in: int = 10000,
    max_candidates: int | None = None,
    label_cycle: np.ndarray | None = None,
) -> RejectionResult:
    """``n`` samples of ``generate`` that pass DRS with ``discriminate``'s logits.

    ``draw_latents(k, rng)`` gives ``k`` latent vectors. For a class-conditional generator,
    ``label_cycle`` labels the candidates in turn (e.g. ``0, 1, ..., k-1`` for every class)
    and the accepted samples keep their labels (the discriminator scores each with its own).
    Raises :class:`gankit.GankitError` when ``max_candidates`` (default ``1000 * n``
    plus the burn-in) are drawn before ``n`` are accepted.
    """
    if n < 1:
        raise ConfigError(f"rejection sampling needs n >= 1, got {n}")
    if percentile is not None and not 0.0 <= percentile < 1.0:
        raise ConfigError(f"the DRS percentile must be in [0, 1), got {percentile}", hint="e.g. 0.8")
    rng = np.random.default_rng([seed, 0xD25])
    cycle = None if label_cycle is None else np.asarray(label_cycle, dtype=np.int64).reshape(-1)
    if cycle is not None and not len(cycle):
        raise ConfigError("rejection sampling got an empty list of labels")
    limit = max_candidates if max_candidates is not None else 1000 * n + burn_in
    drawn = 0

    def candidates(k: int):
        nonlocal drawn
        z = draw_latents(k, rng)
        y = None if cycle is None else cycle[(drawn + np.arange(k)) % len(cycle)]
        drawn += k
        x = np.asarray(generate(z, y))
        logits = np.asarray(discriminate(x, y), dtype=np.float64).reshape(k)
        if not np.isfinite(logits).all():
            raise GankitError("the discriminator returned a NaN or infinite logit; rejection sampling needs finite scores",
                              hint="sample without rejection, or check the checkpoint")
        return x, y, logits

    logit_max = -np.inf
    for s in range(0, burn_in, batch_size):
        _, _, logits = candidates(min(batch_size, burn_in - s))
        logit_max = max(logit_max, float(logits.max()))
    kept_x, kept_y, kept = [], [], 0
    while kept < n:
        if drawn >= limit:
            raise GankitError(f"rejection sampling accepted {kept} of {drawn} candidates before its limit; "
                              f"{n} were asked for", hint="use a lower percentile, or sample without rejection")
        x, y, logits = candidates(batch_size)
        logit_max = max(logit_max, float(logits.max()))
        accept = rng.random(batch_size) < acceptance_probability(logits, logit_max, percentile)
        kept_x.append(x[accept])
        if y is not None:
            kept_y.append(y[accept])
        kept += int(accept.sum())
    samples = np.concatenate(kept_x)[:n]
    labels = np.concatenate(kept_y)[:n] if kept_y else None
    return RejectionResult(samples=samples, labels=labels, candidates=drawn, burn_in=burn_in,
                           accepted=kept, logit_max=logit_max)
