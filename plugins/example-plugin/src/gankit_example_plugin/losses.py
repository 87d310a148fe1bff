"""The focal GAN loss: the non-saturating loss with focal modulation.

Focal modulation (Lin et al. 2017) scales each sample's cross-entropy by
``(1 - p_t)^gamma``, where ``p_t`` is the probability the discriminator gives the
correct label: confidently classified samples count less, hard ones more. With
``gamma = 0`` this is exactly gankit's ``non_saturating`` loss.

Written once against ``gankit.Ops``, so it runs on every backend. Probabilities are
never formed: ``sigmoid(x)^gamma = exp(gamma * log_sigmoid(x))`` and
``-log(sigmoid(x)) = softplus(-x)`` stay finite for logits of any size.
"""

from __future__ import annotations

from pydantic import Field

import gankit


class FocalParams(gankit.StrictModel):
    """Parameters of the focal GAN loss."""

    gamma: float = Field(2.0, ge=0.0, le=5.0)
    """Focusing strength: 0 is the non-saturating loss; larger values down-weight
    samples the discriminator already classifies confidently."""


class Focal(gankit.Loss):
    """``D = E[(1 - sigmoid(r))^g softplus(-r)] + E[sigmoid(f)^g softplus(f)]``,
    ``G = E[(1 - sigmoid(f))^g softplus(-f)]``.

    For a real sample ``p_t = sigmoid(r)``, so ``(1 - p_t)^g = sigmoid(-r)^g``; for a
    fake one ``p_t = 1 - sigmoid(f)``, so ``(1 - p_t)^g = sigmoid(f)^g``. The
    generator wants its fakes labelled real: ``p_t = sigmoid(f)``.
    """

    params_model = FocalParams
    meta = gankit.LossMeta(
        family="other",
        saturating=False,
        # What the conformance suite will hold this loss to:
        properties=("finite_at_extremes", "batch_order_invariant", "mean_reduced", "monotone"),
        formula="D = E[sigmoid(-r)^g softplus(-r)] + E[sigmoid(f)^g softplus(f)];  G = E[sigmoid(-f)^g softplus(-f)]",
        paper="Lin et al. 2017, Focal Loss for Dense Object Detection (ICCV), applied to the GAN discriminator",
    )

    def __init__(self, params: FocalParams | None = None):
        super().__init__(params if params is not None else FocalParams())

    def _weight(self, ops, x):
        # sigmoid(x)^gamma = exp(gamma * log_sigmoid(x)): no 0^gamma, no overflow.
        return ops.exp(self.params.gamma * ops.log_sigmoid(x))

    def discriminator(self, ops, real_logits, fake_logits):
        # real target 1: -log(sigmoid(r)) = softplus(-r); fake target 0: -log(1 - sigmoid(f)) = softplus(f)
        real = self._weight(ops, -real_logits) * ops.softplus(-real_logits)
        fake = self._weight(ops, fake_logits) * ops.softplus(fake_logits)
        return ops.mean(real) + ops.mean(fake)

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(self._weight(ops, -fake_logits) * ops.softplus(-fake_logits))
