"""Built-in GAN losses, written once against :class:`gankit.Ops`.

Every loss takes discriminator *logits* (never probabilities) and returns batch-mean
scalars. Terms of the form ``log(sigmoid(x))`` are never computed as written: they
overflow or lose all precision once ``|x|`` is a few tens. We use the identities

    -log(sigmoid(x))     = softplus(-x)
    -log(1 - sigmoid(x)) = softplus(x)          (because 1 - sigmoid(x) = sigmoid(-x))

and every backend's ``softplus`` is the stable ``max(x, 0) + log1p(exp(-|x|))``.
"""

from __future__ import annotations

import dataclasses

from pydantic import Field, model_validator

import gankit

#: Properties that hold for every built-in loss unless a class says otherwise.
_FINITE_MEAN = ("finite_at_extremes", "batch_order_invariant", "mean_reduced")


# -- parameter models -----------------------------------------------------------
class LabelSmoothingParams(gankit.StrictModel):
    """Parameters of the sigmoid cross-entropy losses (minimax, non-saturating)."""

    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """One-sided label smoothing alpha: the discriminator's target for real samples
    is 1 - alpha instead of 1 (Salimans et al. 2016). Fake targets stay 0."""


class LeastSquaresParams(gankit.StrictModel):
    """Targets of the least-squares loss (Mao et al. 2017)."""

    a: float = Field(0.0, ge=-1e3, le=1e3, allow_inf_nan=False)
    """Target the discriminator pushes fake logits towards."""
    b: float = Field(1.0, ge=-1e3, le=1e3, allow_inf_nan=False)
    """Target the discriminator pushes real logits towards."""
    c: float = Field(1.0, ge=-1e3, le=1e3, allow_inf_nan=False)
    """Target the generator pushes fake logits towards."""

    @model_validator(mode="after")
    def _distinct_targets(self):
        if self.a == self.b:
            raise ValueError(
                f"the real target b and fake target a are both {self.a}: the discriminator "
                "could not tell them apart; choose b != a (e.g. a=0, b=1)"
            )
        return self


# -- helpers --------------------------------------------------------------------
def _smoothed_real_term(ops: gankit.Ops, real_logits, alpha: float):
    """Mean binary cross-entropy of real logits against the target ``1 - alpha``:
    ``(1 - alpha) * -log(sigmoid(r)) + alpha * -log(1 - sigmoid(r))``."""
    # -log(sigmoid(r)) = softplus(-r)
    term = ops.softplus(-real_logits)
    if alpha > 0:
        # -log(1 - sigmoid(r)) = softplus(r)
        term = (1.0 - alpha) * term + alpha * ops.softplus(real_logits)
    return ops.mean(term)


def _require_real(name: str, ops: gankit.Ops, fake_logits, real_logits, pairwise: bool):
    if real_logits is None:
        raise ValueError(
            f"the {name} generator loss compares fake with real logits: pass real_logits "
            "(its meta declares generator_needs_real=True)"
        )
    if not pairwise:
        return
    real_shape, fake_shape = ops.shape(real_logits), ops.shape(fake_logits)
    # Sizes unknown while a graph is traced are not ints: leave those to the framework.
    known = all(isinstance(d, int) for d in real_shape + fake_shape)
    if known and real_shape != fake_shape:
        raise ValueError(
            f"the {name} loss pairs real and fake logits one to one, but their shapes differ: "
            f"{real_shape} vs {fake_shape}; use equal batch sizes"
        )


class _SmoothedLoss(gankit.Loss):
    """Shared discriminator of the two sigmoid cross-entropy losses."""

    def __init__(self, params: LabelSmoothingParams | None = None):
        super().__init__(params if params is not None else LabelSmoothingParams())
        if self.params.label_smoothing > 0:
            # A real target below 1 moves the optimum of the real term to the finite
            # logit log((1 - alpha) / alpha): the D loss is no longer monotone in the
            # real logits. (D* becomes p (1 - alpha) / (p + q): the conformance suite
            # reads alpha from the params and checks that optimum.) Declare only what holds.
            dropped = ("monotone",)
            self.meta = dataclasses.replace(
                type(self).meta,
                properties=tuple(p for p in type(self).meta.properties if p not in dropped),
            )

    def discriminator(self, ops, real_logits, fake_logits):
        # -log(1 - sigmoid(f)) = softplus(f)
        return _smoothed_real_term(ops, real_logits, self.params.label_smoothing) + ops.mean(
            ops.softplus(fake_logits)
        )


# -- losses ---------------------------------------------------------------------
class Minimax(_SmoothedLoss):
    """The original (saturating) minimax GAN loss.

    ``D = E[softplus(-r)] + E[softplus(f)]`` — the sigmoid cross-entropy with real
    target 1 and fake target 0; with one-sided label smoothing alpha the real term is
    ``(1 - alpha) softplus(-r) + alpha softplus(r)``.

    ``G = E[log(1 - sigmoid(f))] = -E[softplus(f)]`` — the generator minimises exactly
    what the discriminator maximises. Its gradient ``-sigmoid(f) / n`` vanishes when
    the discriminator confidently rejects fakes (f -> -inf): the loss *saturates*.

    Source: Goodfellow et al. 2014, "Generative Adversarial Nets" (NeurIPS).
    """

    params_model = LabelSmoothingParams
    meta = gankit.LossMeta(
        family="minimax",
        saturating=True,
        properties=_FINITE_MEAN + ("monotone", "optimal_discriminator"),
        formula=(
            "D = E[(1-alpha) softplus(-r) + alpha softplus(r)] + E[softplus(f)];  "
            "G = E[log(1 - sigmoid(f))] = -E[softplus(f)]"
        ),
        paper="Goodfellow et al. 2014, Generative Adversarial Nets (NeurIPS)",
    )

    def generator(self, ops, fake_logits, real_logits=None):
        # log(1 - sigmoid(f)) = -softplus(f)
        return -ops.mean(ops.softplus(fake_logits))


class NonSaturating(_SmoothedLoss):
    """The non-saturating GAN loss (the generator maximises log D(G(z))).

    ``D`` is the minimax discriminator loss (with the same label smoothing);
    ``G = -E[log(sigmoid(f))] = E[softplus(-f)]``, whose gradient ``-sigmoid(-f) / n``
    is largest exactly where the minimax generator's vanishes.

    Source: Goodfellow et al. 2014, "Generative Adversarial Nets" (NeurIPS), section 3.
    """

    params_model = LabelSmoothingParams
    meta = gankit.LossMeta(
        family="minimax",
        saturating=False,
        properties=_FINITE_MEAN + ("monotone", "optimal_discriminator"),
        formula=(
            "D = E[(1-alpha) softplus(-r) + alpha softplus(r)] + E[softplus(f)];  "
            "G = -E[log sigmoid(f)] = E[softplus(-f)]"
        ),
        paper="Goodfellow et al. 2014, Generative Adversarial Nets (NeurIPS)",
    )

    def generator(self, ops, fake_logits, real_logits=None):
        # -log(sigmoid(f)) = softplus(-f)
        return ops.mean(ops.softplus(-fake_logits))


class Wasserstein(gankit.Loss):
    """The Wasserstein (critic) loss.

    ``D = E[f] - E[r]``, ``G = -E[f]``. The critic must be kept (roughly) 1-Lipschitz,
    by weight clipping, a gradient penalty or spectral normalisation; the loss itself
    is linear in the logits, so it is finite everywhere. Adding one constant to every
    logit leaves the critic loss unchanged (and the generator's gradients too).

    Source: Arjovsky, Chintala & Bottou 2017, "Wasserstein GAN" (ICML).
    """

    params_model = gankit.NoParams
    meta = gankit.LossMeta(
        family="wasserstein",
        saturating=False,
        properties=_FINITE_MEAN + ("monotone", "shift_invariant"),
        formula="D = E[f] - E[r];  G = -E[f]",
        paper="Arjovsky, Chintala & Bottou 2017, Wasserstein GAN (ICML)",
    )

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(fake_logits) - ops.mean(real_logits)

    def generator(self, ops, fake_logits, real_logits=None):
        return -ops.mean(fake_logits)


class Hinge(gankit.Loss):
    """The hinge loss.

    ``D = E[relu(1 - r)] + E[relu(1 + f)]`` — zero once every real logit is at least 1
    and every fake logit at most -1; ``G = -E[f]``.

    Sources: Lim & Ye 2017, "Geometric GAN" (arXiv:1705.02894); Miyato et al. 2018,
    "Spectral Normalization for Generative Adversarial Networks" (ICLR).
    """

    params_model = gankit.NoParams
    meta = gankit.LossMeta(
        family="hinge",
        saturating=False,
        properties=_FINITE_MEAN + ("monotone", "hinge_margin"),
        formula="D = E[relu(1 - r)] + E[relu(1 + f)];  G = -E[f]",
        paper="Lim & Ye 2017, Geometric GAN; Miyato et al. 2018, Spectral Normalization for GANs (ICLR)",
    )

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.relu(1.0 - real_logits)) + ops.mean(ops.relu(1.0 + fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return -ops.mean(fake_logits)


class LeastSquares(gankit.Loss):
    """The least-squares loss with targets a (fake), b (real), c (generator).

    ``D = 1/2 E[(r - b)^2] + 1/2 E[(f - a)^2]``, ``G = 1/2 E[(f - c)^2]``. The
    defaults a=0, b=c=1 are the paper's "0-1 coding"; a=-1, b=1, c=0 is its
    Pearson chi-squared setting. The loss is minimised at its targets, so it is *not*
    monotone: a real logit beyond b raises the discriminator loss again.

    Source: Mao et al. 2017, "Least Squares Generative Adversarial Networks" (ICCV).
    """

    params_model = LeastSquaresParams
    meta = gankit.LossMeta(
        family="least_squares",
        saturating=False,
        properties=_FINITE_MEAN + ("least_squares_targets",),
        formula="D = 1/2 E[(r - b)^2] + 1/2 E[(f - a)^2];  G = 1/2 E[(f - c)^2]",
        paper="Mao et al. 2017, Least Squares Generative Adversarial Networks (ICCV)",
    )

    def __init__(self, params: LeastSquaresParams | None = None):
        super().__init__(params if params is not None else LeastSquaresParams())

    def discriminator(self, ops, real_logits, fake_logits):
        p = self.params
        return 0.5 * ops.mean(ops.square(real_logits - p.b)) + 0.5 * ops.mean(
            ops.square(fake_logits - p.a)
        )

    def generator(self, ops, fake_logits, real_logits=None):
        return 0.5 * ops.mean(ops.square(fake_logits - self.params.c))


class Relativistic(gankit.Loss):
    """The relativistic standard GAN loss (RSGAN), pairing real and fake samples.

    ``D = -E[log sigmoid(r - f)] = E[softplus(-(r - f))]`` and symmetrically
    ``G = E[softplus(-(f - r))]``, with ``r_i`` paired to ``f_i``: the discriminator
    estimates how much more realistic a real sample is than a fake one. Only
    differences of logits enter, so shifting every logit changes nothing. The value
    depends on the pairing, so it is invariant only when real and fake batches are
    permuted together (``batch_order_invariant`` is not declared).

    Source: Jolicoeur-Martineau 2018, "The relativistic discriminator: a key element
    missing from standard GAN" (ICLR 2019, arXiv:1807.00734).
    """

    params_model = gankit.NoParams
    meta = gankit.LossMeta(
        family="relativistic",
        saturating=False,
        properties=("finite_at_extremes", "mean_reduced", "monotone", "shift_invariant"),
        formula="D = E[softplus(-(r - f))];  G = E[softplus(-(f - r))]  (r_i paired with f_i)",
        paper="Jolicoeur-Martineau 2018, The relativistic discriminator (ICLR 2019)",
        generator_needs_real=True,
    )

    def discriminator(self, ops, real_logits, fake_logits):
        _require_real("relativistic", ops, fake_logits, real_logits, pairwise=True)
        # -log(sigmoid(r - f)) = softplus(-(r - f))
        return ops.mean(ops.softplus(fake_logits - real_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        _require_real("relativistic", ops, fake_logits, real_logits, pairwise=True)
        # -log(sigmoid(f - r)) = softplus(-(f - r))
        return ops.mean(ops.softplus(real_logits - fake_logits))


class RelativisticAverage(gankit.Loss):
    """The relativistic average standard GAN loss (RaSGAN).

    Each logit is compared with the *mean* logit of the other batch::

        D = E[softplus(-(r - E f))] + E[softplus(f - E r)]
        G = E[softplus(-(f - E r))] + E[softplus(r - E f)]

    (``-log sigmoid(x) = softplus(-x)``, ``-log(1 - sigmoid(x)) = softplus(x)``).
    Gradients flow through the batch means. Only differences of logits enter, so
    shifting every logit changes nothing; batches may differ in size.

    Source: Jolicoeur-Martineau 2018, "The relativistic discriminator: a key element
    missing from standard GAN" (ICLR 2019, arXiv:1807.00734).
    """

    params_model = gankit.NoParams
    meta = gankit.LossMeta(
        family="relativistic",
        saturating=False,
        properties=_FINITE_MEAN + ("monotone", "shift_invariant"),
        formula=(
            "D = E[softplus(-(r - E f))] + E[softplus(f - E r)];  "
            "G = E[softplus(-(f - E r))] + E[softplus(r - E f)]"
        ),
        paper="Jolicoeur-Martineau 2018, The relativistic discriminator (ICLR 2019)",
        generator_needs_real=True,
    )

    @staticmethod
    def _both_ways(ops, ahead, behind):
        # -log(sigmoid(a - E b)) - log(1 - sigmoid(b - E a))
        #   = softplus(-(a - E b)) + softplus(b - E a)
        return ops.mean(ops.softplus(ops.mean(behind) - ahead)) + ops.mean(
            ops.softplus(behind - ops.mean(ahead))
        )

    def discriminator(self, ops, real_logits, fake_logits):
        return self._both_ways(ops, real_logits, fake_logits)

    def generator(self, ops, fake_logits, real_logits=None):
        _require_real("relativistic_average", ops, fake_logits, real_logits, pairwise=False)
        return self._both_ways(ops, fake_logits, real_logits)


class _FGan(gankit.Loss):
    """Shared shape of the f-GAN losses (Nowozin, Cseke & Tomioka 2016).

    The discriminator's logit v passes through the output activation g_f; the
    discriminator maximises the variational bound E_p[g_f(v_r)] - E_q[f*(g_f(v_f))] of
    D_f(p || q), so its loss is the negated bound. The generator maximises E_q[g_f(v_f)]
    (the paper's practical, non-saturating choice, section 3.2). At the optimal
    discriminator, g_f(v) = f'(p / q), the D loss equals -D_f(p || q).
    """

    params_model = gankit.NoParams

    def real_term(self, ops, r):
        """-g_f(r): the discriminator's loss on one real logit."""
        raise NotImplementedError

    def fake_term(self, ops, f):
        """f*(g_f(f)): the discriminator's loss on one fake logit."""
        raise NotImplementedError

    def generator_term(self, ops, f):
        """-g_f(f): the generator's loss on one fake logit."""
        return self.real_term(ops, f)

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(self.real_term(ops, real_logits)) + ops.mean(self.fake_term(ops, fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(self.generator_term(ops, fake_logits))


_F_PAPER = "Nowozin, Cseke & Tomioka 2016, f-GAN: Training Generative Neural Samplers using Variational Divergence Minimization (NeurIPS)"
#: exp grows without bound: these losses are not finite at logits of 1e4 in any dtype.
_F_PROPERTIES = ("batch_order_invariant", "mean_reduced", "monotone", "optimal_discriminator")


class FGanKL(_FGan):
    """f-GAN with the Kullback-Leibler divergence KL(p || q).

    ``f(u) = u log u``; output activation ``g_f(v) = v``; conjugate ``f*(t) = exp(t - 1)``:
    ``D = E[exp(f - 1)] - E[r]``, ``G = -E[f]``; D* has ``v = 1 + log(p/q)``. Values grow
    like ``exp(f)``: near 1e5 at a fake logit of 12.5.

    Source: Nowozin, Cseke & Tomioka 2016, "f-GAN" (NeurIPS), table 2.
    """

    meta = gankit.LossMeta(family="f_divergence", divergence="kl", saturating=False, properties=_F_PROPERTIES,
                           formula="D = E[exp(f - 1)] - E[r];  G = -E[f]", paper=_F_PAPER)

    def real_term(self, ops, r):
        return -r

    def fake_term(self, ops, f):
        return ops.exp(f - 1.0)


class FGanReverseKL(_FGan):
    """f-GAN with the reverse Kullback-Leibler divergence KL(q || p).

    ``f(u) = -log u``; ``g_f(v) = -exp(-v)``; ``f*(t) = -1 - log(-t)``, so
    ``f*(g_f(v)) = v - 1``: ``D = E[exp(-r)] + E[f] - 1``, ``G = E[exp(-f)]``;
    D* has ``v = log(p/q)``.

    Source: Nowozin, Cseke & Tomioka 2016, "f-GAN" (NeurIPS), table 2.
    """

    meta = gankit.LossMeta(family="f_divergence", divergence="reverse_kl", saturating=False,
                           properties=_F_PROPERTIES, formula="D = E[exp(-r)] + E[f] - 1;  G = E[exp(-f)]",
                           paper=_F_PAPER)

    def real_term(self, ops, r):
        return ops.exp(-r)

    def fake_term(self, ops, f):
        return f - 1.0


class FGanPearson(_FGan):
    """f-GAN with the Pearson chi-squared divergence.

    ``f(u) = (u - 1)^2``; ``g_f(v) = v``; ``f*(t) = t^2/4 + t``:
    ``D = E[f^2/4 + f] - E[r]``, ``G = -E[f]``; D* has ``v = 2 (p/q - 1)``.

    Source: Nowozin, Cseke & Tomioka 2016, "f-GAN" (NeurIPS), table 2.
    """

    meta = gankit.LossMeta(family="f_divergence", divergence="pearson", saturating=False,
                           properties=("finite_at_extremes",) + _F_PROPERTIES[:2] + ("optimal_discriminator",),
                           formula="D = E[f^2/4 + f] - E[r];  G = -E[f]", paper=_F_PAPER)

    def real_term(self, ops, r):
        return -r

    def fake_term(self, ops, f):
        return 0.25 * ops.square(f) + f


class FGanJensenShannon(_FGan):
    """f-GAN with the Jensen-Shannon divergence.

    ``f(u) = u log u - (u + 1) log((u + 1)/2)``; ``g_f(v) = log 2 - softplus(-v)``;
    ``f*(t) = -log(2 - exp(t))``, so ``f*(g_f(v)) = softplus(v) - log 2``:
    ``D = E[softplus(-r)] + E[softplus(f)] - 2 log 2`` (the minimax D loss shifted by
    log 4), ``G = E[softplus(-f)] - log 2``; D* has ``v = log(p/q)``, where the D loss
    is ``-D_f(p || q) = -2 JSD(p, q)``.

    Source: Nowozin, Cseke & Tomioka 2016, "f-GAN" (NeurIPS), table 2.
    """

    meta = gankit.LossMeta(family="f_divergence", divergence="jensen_shannon", saturating=False,
                           properties=_FINITE_MEAN + ("monotone", "optimal_discriminator"),
                           formula="D = E[softplus(-r)] + E[softplus(f)] - 2 log 2;  G = E[softplus(-f)] - log 2",
                           paper=_F_PAPER)

    _LOG2 = 0.6931471805599453

    def real_term(self, ops, r):
        # -g_f(r) = softplus(-r) - log 2
        return ops.softplus(-r) - self._LOG2

    def fake_term(self, ops, f):
        # f*(g_f(f)) = -log(2 - 2 sigmoid(f)) = softplus(f) - log 2
        return ops.softplus(f) - self._LOG2


# -- registration ---------------------------------------------------------------
LOSSES: dict[str, tuple[type[gankit.Loss], str]] = {
    "minimax": (Minimax, "Original saturating GAN loss: G minimises log(1 - D(G(z)))."),
    "non_saturating": (NonSaturating, "Standard GAN loss with the non-saturating generator -log D(G(z))."),
    "wasserstein": (Wasserstein, "Wasserstein critic loss E[f] - E[r]; needs a Lipschitz critic."),
    "hinge": (Hinge, "Hinge loss: D margins at +-1, G maximises the fake logits."),
    "least_squares": (LeastSquares, "Least-squares loss towards targets a (fake), b (real), c (generator)."),
    "relativistic": (Relativistic, "Relativistic standard GAN (RSGAN): real and fake logits compared pairwise."),
    "relativistic_average": (RelativisticAverage, "Relativistic average GAN (RaSGAN): logits compared with the other batch's mean."),
    "f_gan_kl": (FGanKL, "f-GAN, Kullback-Leibler: D = E exp(f - 1) - E r, G = -E f."),
    "f_gan_reverse_kl": (FGanReverseKL, "f-GAN, reverse Kullback-Leibler: D = E exp(-r) + E f - 1, G = E exp(-f)."),
    "f_gan_pearson": (FGanPearson, "f-GAN, Pearson chi^2: D = E[f^2/4 + f] - E r, G = -E f."),
    "f_gan_js": (FGanJensenShannon, "f-GAN, Jensen-Shannon: the minimax D loss less 2 log 2, G = E softplus(-f) - log 2."),
}
"""Every built-in loss: registered name -> (class, one-line description)."""


@gankit.hookimpl
def gankit_register_losses():
    return [
        gankit.LossRecord(
            name=name,
            params=cls.params_model,
            factory=cls,
            description=description,
            metadata={
                "family": cls.meta.family,
                "saturating": cls.meta.saturating,
                "paper": cls.meta.paper,
            },
        )
        for name, (cls, description) in LOSSES.items()
    ]
