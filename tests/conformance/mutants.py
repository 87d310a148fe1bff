"""Broken plugins the conformance suite must catch: test fixtures, never registered for real.

Each mutant is a plausible bug in a loss, a regularizer or a backend. ``MUTANT_LOSSES``
(and the others) map a registered name to the check that must catch it; the tests in
``test_mutants.py`` run the suite on each and assert that check fails, while the
correct version of the same code passes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import gankit
import gankit_plugins.losses
from gankit_plugins.losses import LeastSquaresParams, Minimax, NonSaturating, Wasserstein
from gankit_plugins.regularizers import R1, R2, Dragan, GradientPenalty, _gradient_norm, _per_sample_shape


def _meta(**changes):
    return dataclasses.replace(NonSaturating.meta, **changes)


# -- losses ----------------------------------------------------------------------
class Correct(NonSaturating):
    """The control: the built-in non-saturating loss, unchanged."""


class SaturatingKL(gankit_plugins.losses.FGanKL):
    """Also correct: f-GAN KL with Nowozin et al.'s original (saturating) generator, G = -E exp(f - 1)."""

    meta = dataclasses.replace(gankit_plugins.losses.FGanKL.meta, saturating=True)

    def generator(self, ops, fake_logits, real_logits=None):
        return -ops.mean(self.fake_term(ops, fake_logits))


class KLExpClamped80(gankit_plugins.losses.FGanKL):
    """f-GAN KL with exp(min(f - 1, 80)) "against float32's overflow": D stops pushing fakes down beyond 81."""

    def fake_term(self, ops, f):
        return ops.exp(ops.minimum(f - 1.0, 80.0))


class FlippedSign(NonSaturating):
    """Both losses negated: D and G now climb instead of descend."""

    def discriminator(self, ops, real_logits, fake_logits):
        return -super().discriminator(ops, real_logits, fake_logits)

    def generator(self, ops, fake_logits, real_logits=None):
        return -super().generator(ops, fake_logits, real_logits)


class SwappedArguments(NonSaturating):
    """The discriminator loss called with real and fake logits swapped."""

    def discriminator(self, ops, real_logits, fake_logits):
        return super().discriminator(ops, fake_logits, real_logits)


class NaiveLogSigmoid(NonSaturating):
    """The textbook formula written as is: log(sigmoid(x)) is -inf once x < -104 in float32."""

    def discriminator(self, ops, real_logits, fake_logits):
        return (-ops.mean(ops.log(ops.sigmoid(real_logits)))
                - ops.mean(ops.log(1.0 - ops.sigmoid(fake_logits))))

    def generator(self, ops, fake_logits, real_logits=None):
        return -ops.mean(ops.log(ops.sigmoid(fake_logits)))


class SumReduced(NonSaturating):
    """Sums over the batch instead of averaging."""

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.sum(ops.softplus(-real_logits)) + ops.sum(ops.softplus(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.sum(ops.softplus(-fake_logits))


class BackendDependent(NonSaturating):
    """Computes something slightly different on TensorFlow."""

    def discriminator(self, ops, real_logits, fake_logits):
        value = super().discriminator(ops, real_logits, fake_logits)
        return value * 1.01 if ops.name == "tensorflow" else value


class ClaimsNonSaturating(Minimax):
    """The saturating minimax generator, declared non-saturating."""

    meta = dataclasses.replace(Minimax.meta, saturating=False)


class WrongOptimum(NonSaturating):
    """Weights the fake term twice: D* becomes p / (p + 2q), not p / (p + q)."""

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) + 2.0 * ops.mean(ops.softplus(fake_logits))


class NotShiftInvariant(Wasserstein):
    """A Wasserstein critic with a stray term in the raw real logits."""

    def discriminator(self, ops, real_logits, fake_logits):
        return super().discriminator(ops, real_logits, fake_logits) + 0.1 * ops.mean(ops.softplus(fake_logits))


class HingeWithoutMargin(NonSaturating):
    """A hinge loss with its margin at 0 instead of 1."""

    meta = _meta(family="hinge", properties=("finite_at_extremes", "monotone", "hinge_margin"))

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.relu(-real_logits)) + ops.mean(ops.relu(fake_logits))


class LeastSquaresWrongTarget(gankit.Loss):
    """Least squares whose D pulls fake logits to b instead of a."""

    meta = gankit.LossMeta(family="least_squares", saturating=False, properties=("least_squares_targets",),
                           formula="", paper="")

    params_model = LeastSquaresParams

    def __init__(self, params=None):
        super().__init__(params or LeastSquaresParams())

    def discriminator(self, ops, real_logits, fake_logits):
        p = self.params
        return 0.5 * ops.mean(ops.square(real_logits - p.b)) + 0.5 * ops.mean(ops.square(fake_logits - p.b))

    def generator(self, ops, fake_logits, real_logits=None):
        return 0.5 * ops.mean(ops.square(fake_logits - self.params.c))


class ClampedLogits(NonSaturating):
    """Clamps logits to +-30 "for stability": the gradient vanishes beyond."""

    bound = 30.0

    def clamp(self, ops, x):
        return ops.minimum(ops.maximum(x, -self.bound), self.bound)

    def discriminator(self, ops, real_logits, fake_logits):
        return super().discriminator(ops, self.clamp(ops, real_logits), self.clamp(ops, fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return super().generator(ops, self.clamp(ops, fake_logits), real_logits)


class TensorFlowClamp(ClampedLogits):
    """Clamps at +-20, on TensorFlow only (a workaround for a float32 warning there)."""

    bound = 20.0

    def clamp(self, ops, x):
        return super().clamp(ops, x) if ops.name == "tensorflow" else x


class HingeClamped(gankit_plugins.losses.Hinge):
    """The hinge loss on logits clamped to +-30."""

    def discriminator(self, ops, real_logits, fake_logits):
        return super().discriminator(ops, ClampedLogits.clamp(self, ops, real_logits),
                                     ClampedLogits.clamp(self, ops, fake_logits))

    bound = 30.0


class WassersteinClipped(Wasserstein):
    """A critic loss on logits clipped to +-30."""

    bound = 30.0

    def discriminator(self, ops, real_logits, fake_logits):
        clamp = lambda x: ClampedLogits.clamp(self, ops, x)  # noqa: E731
        return super().discriminator(ops, clamp(real_logits), clamp(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return super().generator(ops, ClampedLogits.clamp(self, ops, fake_logits))


class LeastSquaresClamped(gankit_plugins.losses.LeastSquares):
    """Least squares on logits clamped to +-30."""

    bound = 30.0

    def discriminator(self, ops, real_logits, fake_logits):
        clamp = lambda x: ClampedLogits.clamp(self, ops, x)  # noqa: E731
        return super().discriminator(ops, clamp(real_logits), clamp(fake_logits))


class EpsilonInLog(NonSaturating):
    """-log(sigmoid(x) + 1e-7): the epsilon bounds the loss, and its gradient dies, below x ~ -16."""

    def discriminator(self, ops, real_logits, fake_logits):
        return (-ops.mean(ops.log(ops.sigmoid(real_logits) + 1e-7))
                - ops.mean(ops.log(1.0 - ops.sigmoid(fake_logits) + 1e-7)))

    def generator(self, ops, fake_logits, real_logits=None):
        return -ops.mean(ops.log(ops.sigmoid(fake_logits) + 1e-7))


class ClippedProbabilities(NonSaturating):
    """Binary cross-entropy on probabilities clipped to [1e-7, 1 - 1e-7], Keras style."""

    def _p(self, ops, x):
        return ops.minimum(ops.maximum(ops.sigmoid(x), 1e-7), 1.0 - 1e-7)

    def discriminator(self, ops, real_logits, fake_logits):
        return -ops.mean(ops.log(self._p(ops, real_logits))) - ops.mean(ops.log(1.0 - self._p(ops, fake_logits)))

    def generator(self, ops, fake_logits, real_logits=None):
        return -ops.mean(ops.log(self._p(ops, fake_logits)))


class NaiveLogOneMinusSigmoid(NonSaturating):
    """The fake term as log(1 - sigmoid(f)): -inf once sigmoid(f) rounds to 1."""

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) - ops.mean(ops.log(1.0 - ops.sigmoid(fake_logits)))


class TensorFlowNaiveSoftplus(NonSaturating):
    """log(1 + exp(x)) written out on TensorFlow only: overflows to inf past x ~ 89 in float32."""

    def discriminator(self, ops, real_logits, fake_logits):
        if ops.name != "tensorflow":
            return super().discriminator(ops, real_logits, fake_logits)
        sp = lambda x: ops.log(1.0 + ops.exp(x))  # noqa: E731
        return ops.mean(sp(-real_logits)) + ops.mean(sp(fake_logits))


class Float64InFloat32(NonSaturating):
    """Computes in float32 whatever the input dtype, casting the result back."""

    low = "float32"

    def discriminator(self, ops, real_logits, fake_logits):
        lo = super().discriminator(ops, ops.cast(real_logits, self.low), ops.cast(fake_logits, self.low))
        return ops.cast(lo, real_logits)

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.cast(super().generator(ops, ops.cast(fake_logits, self.low)), fake_logits)


class ComputesInBfloat16(Float64InFloat32):
    """Computes in bfloat16 "to save memory", at every dtype."""

    low = "bfloat16"


class LeastSquaresMissingHalf(gankit_plugins.losses.LeastSquares):
    """The 1/2 forgotten on the fake term only: D* becomes (b p + 2 a q) / (p + 2 q)."""

    def discriminator(self, ops, real_logits, fake_logits):
        p = self.params
        return 0.5 * ops.mean(ops.square(real_logits - p.b)) + ops.mean(ops.square(fake_logits - p.a))


class LeastSquaresSwappedTargets(gankit_plugins.losses.LeastSquares):
    """D pulls real logits to a and fake logits to b."""

    def discriminator(self, ops, real_logits, fake_logits):
        p = self.params
        return 0.5 * ops.mean(ops.square(real_logits - p.a)) + 0.5 * ops.mean(ops.square(fake_logits - p.b))


class LeastSquaresGeneratorTargetA(gankit_plugins.losses.LeastSquares):
    """G pulls fake logits to the fake target a instead of c."""

    def generator(self, ops, fake_logits, real_logits=None):
        return 0.5 * ops.mean(ops.square(fake_logits - self.params.a))


class SmoothsFakesToo(NonSaturating):
    """"One-sided" label smoothing that also smooths the fake targets to alpha."""

    def discriminator(self, ops, real_logits, fake_logits):
        a = self.params.label_smoothing
        fake = (1.0 - a) * ops.softplus(fake_logits) + a * ops.softplus(-fake_logits)
        return gankit_plugins.losses._smoothed_real_term(ops, real_logits, a) + ops.mean(fake)


class SmoothingTargetAlpha(NonSaturating):
    """Smoothing with the real target alpha instead of 1 - alpha."""

    def discriminator(self, ops, real_logits, fake_logits):
        a = self.params.label_smoothing
        return (ops.mean(a * ops.softplus(-real_logits) + (1.0 - a) * ops.softplus(real_logits))
                + ops.mean(ops.softplus(fake_logits)))


class SmoothingIgnored(NonSaturating):
    """Takes label_smoothing but never applies it."""

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))


class MeanOverBothBatches(NonSaturating):
    """One mean over the real and fake terms together: half the loss, batches weighted by size."""

    def discriminator(self, ops, real_logits, fake_logits):
        total = ops.sum(ops.softplus(-real_logits)) + ops.sum(ops.softplus(fake_logits))
        return total / (ops.batch_size(real_logits) + ops.batch_size(fake_logits))


class KLWrongConjugate(gankit_plugins.losses.FGanKL):
    """f-GAN KL with the conjugate exp(t) instead of exp(t - 1)."""

    def fake_term(self, ops, f):
        return ops.exp(f)


class PearsonMissingQuarter(gankit_plugins.losses.FGanPearson):
    """Pearson chi^2 with f*(t) = t^2 + t (the 1/4 forgotten)."""

    def fake_term(self, ops, f):
        return ops.square(f) + f


class JensenShannonHalfRealTerm(gankit_plugins.losses.FGanJensenShannon):
    """f-GAN JS whose real term is halved ("the average of the two terms", done on one only)."""

    def real_term(self, ops, r):
        return 0.5 * (ops.softplus(-r) - self._LOG2)


class ReverseKLWrongActivation(gankit_plugins.losses.FGanReverseKL):
    """Reverse KL whose real term uses exp(r) instead of exp(-r)."""

    def real_term(self, ops, r):
        return ops.exp(r)

    def generator_term(self, ops, f):
        return ops.exp(-f)


class GeneratorSignFlipped(NonSaturating):
    """The generator loss negated: G now pushes D(G(z)) down."""

    def generator(self, ops, fake_logits, real_logits=None):
        return -super().generator(ops, fake_logits, real_logits)


class GeneratorSumReduced(NonSaturating):
    """The generator loss summed over the batch."""

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.sum(ops.softplus(-fake_logits))


class ProbabilitiesAsLogits(NonSaturating):
    """Passes sigmoid(logits) where logits belong (the discriminator already ends in a sigmoid)."""

    def discriminator(self, ops, real_logits, fake_logits):
        return super().discriminator(ops, ops.sigmoid(real_logits), ops.sigmoid(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return super().generator(ops, ops.sigmoid(fake_logits))


class ClaimsSaturating(NonSaturating):
    """The non-saturating loss declared saturating."""

    meta = dataclasses.replace(NonSaturating.meta, saturating=True)


class RelativisticAverageDetachedMeans(gankit_plugins.losses.RelativisticAverage):
    """RaSGAN with the batch means under stop_gradient: no gradient flows through them."""

    @staticmethod
    def _both_ways(ops, ahead, behind):
        mean_b, mean_a = ops.stop_gradient(ops.mean(behind)), ops.stop_gradient(ops.mean(ahead))
        return ops.mean(ops.softplus(mean_b - ahead)) + ops.mean(ops.softplus(behind - mean_a))


class RelativisticGeneratorCopiesD(gankit_plugins.losses.Relativistic):
    """RSGAN whose generator loss is a copy of the discriminator's."""

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(fake_logits - real_logits))


class HingeSwappedMargins(gankit_plugins.losses.Hinge):
    """relu(1 + r) + relu(1 - f): the margins' signs swapped."""

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.relu(1.0 + real_logits)) + ops.mean(ops.relu(1.0 - fake_logits))


class FirstSampleCountedTwice(NonSaturating):
    """Adds the first real sample's term again (an off-by-one in a hand-written mean)."""

    def discriminator(self, ops, real_logits, fake_logits):
        n = ops.batch_size(real_logits)
        first = ops.softplus(-real_logits[0:1])
        return (ops.sum(ops.softplus(-real_logits)) + ops.sum(first)) / (n + 1.0) + ops.mean(ops.softplus(fake_logits))


class ShapeArithmetic(NonSaturating):
    """A mean written as sum / shape[0]: under tf.function the size is an int32 tensor."""

    def discriminator(self, ops, real_logits, fake_logits):
        n, m = ops.shape(real_logits)[0], ops.shape(fake_logits)[0]
        return ops.sum(ops.softplus(-real_logits)) / n + ops.sum(ops.softplus(fake_logits)) / m


class HingeGeneratorRelu(gankit_plugins.losses.Hinge):
    """The generator given a hinge too, relu(1 - f): it stops pushing once D(G(z)) > 1."""

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.relu(1.0 - fake_logits))


class RelativisticAverageGeneratorOneTerm(gankit_plugins.losses.RelativisticAverage):
    """RaSGAN whose generator keeps only its fake term, softplus(E r - f)."""

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(ops.mean(real_logits) - fake_logits))


class RelativisticGeneratorIgnoresReal(gankit_plugins.losses.Relativistic):
    """RSGAN declared generator_needs_real=False, its G comparing with zeros instead."""

    meta = dataclasses.replace(gankit_plugins.losses.Relativistic.meta, generator_needs_real=False)

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(ops.zeros_like(fake_logits) - fake_logits))


class GeneratorReadsRealMean(NonSaturating):
    """A non-saturating G on fake logits minus the real batch's mean (generator_needs_real)."""

    meta = _meta(generator_needs_real=True)

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(ops.mean(real_logits) - fake_logits))


class LeastSquaresGeneratorTargetB(gankit_plugins.losses.LeastSquares):
    """G pulls fake logits to the real target b instead of c (the same at the defaults b = c = 1)."""

    def generator(self, ops, fake_logits, real_logits=None):
        return 0.5 * ops.mean(ops.square(fake_logits - self.params.b))


class SmoothingInGenerator(NonSaturating):
    """Label smoothing applied to the generator's target too (no smoothing at the defaults)."""

    def generator(self, ops, fake_logits, real_logits=None):
        s = self.params.label_smoothing
        return ops.mean((1 - s) * ops.softplus(-fake_logits) + s * ops.softplus(fake_logits))


class SmoothsFakesOnly(NonSaturating):
    """"One-sided" smoothing on the wrong side: fake targets s, real targets 1 (no smoothing at the defaults)."""

    def discriminator(self, ops, real_logits, fake_logits):
        s = self.params.label_smoothing
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(
            (1 - s) * ops.softplus(fake_logits) + s * ops.softplus(-fake_logits))


#: registered name -> (class, the check that must catch it, params or None, the dtype to run at).
#: Every mutant is caught on torch and on tensorflow by that check; those marked in
#: BACKEND_SPECIFIC misbehave on one backend only and are caught there and across backends.
MUTANT_LOSSES = {
    # signs, arguments, reductions
    "flipped_sign": (FlippedSign, "loss.monotone"),
    "swapped_arguments": (SwappedArguments, "loss.monotone"),
    "generator_sign_flipped": (GeneratorSignFlipped, "loss.monotone"),
    "relativistic_generator_copies_d": (RelativisticGeneratorCopiesD, "loss.monotone"),
    "hinge_swapped_margins": (HingeSwappedMargins, "loss.monotone"),
    "sum_reduced": (SumReduced, "loss.mean_reduced"),
    "generator_sum_reduced": (GeneratorSumReduced, "loss.mean_reduced"),
    "first_sample_counted_twice": (FirstSampleCountedTwice, "loss.batch_order_invariant"),
    "relativistic_average_detached_means": (RelativisticAverageDetachedMeans, "loss.reference"),
    "claims_non_saturating": (ClaimsNonSaturating, "loss.saturation"),
    "claims_saturating": (ClaimsSaturating, "loss.saturation"),
    "not_shift_invariant": (NotShiftInvariant, "loss.shift_invariant"),
    "hinge_without_margin": (HingeWithoutMargin, "loss.hinge_margin"),
    "least_squares_wrong_target": (LeastSquaresWrongTarget, "loss.least_squares_targets"),
    "least_squares_generator_target_a": (LeastSquaresGeneratorTargetA, "loss.least_squares_targets"),
    "relativistic_average_generator_one_term": (RelativisticAverageGeneratorOneTerm, "loss.relativistic_roles"),
    "relativistic_generator_ignores_real": (RelativisticGeneratorIgnoresReal, "loss.relativistic_roles"),
    # beyond +-20: clamps, epsilons, naive formulas
    "clamped_logits_30": (ClampedLogits, "loss.asymptotes"),
    "hinge_clamped_30": (HingeClamped, "loss.asymptotes"),
    "wasserstein_clipped_30": (WassersteinClipped, "loss.asymptotes"),
    "least_squares_clamped_30": (LeastSquaresClamped, "loss.asymptotes"),
    "epsilon_in_log": (EpsilonInLog, "loss.asymptotes"),
    "clipped_probabilities": (ClippedProbabilities, "loss.asymptotes"),
    "probabilities_as_logits": (ProbabilitiesAsLogits, "loss.asymptotes"),
    "hinge_generator_relu": (HingeGeneratorRelu, "loss.asymptotes"),
    "kl_exp_clamped_80": (KLExpClamped80, "loss.asymptotes", None, "float64"),
    "generator_reads_real_mean": (GeneratorReadsRealMean, "loss.asymptotes"),
    # wrong only with other params than the defaults (the suite tries the family's variant)
    "least_squares_generator_target_b": (LeastSquaresGeneratorTargetB, "loss.asymptotes", None, "float64"),
    "smoothing_in_generator": (SmoothingInGenerator, "loss.asymptotes", None, "float64"),
    "smooths_fakes_only": (SmoothsFakesOnly, "loss.optimal_discriminator", None, "float64"),
    "naive_log_sigmoid": (NaiveLogSigmoid, "loss.finite_at_extremes"),
    "naive_log_one_minus_sigmoid": (NaiveLogOneMinusSigmoid, "loss.finite_at_extremes"),
    # weights and targets at the optimal discriminator
    "wrong_optimum": (WrongOptimum, "loss.optimal_discriminator"),
    "least_squares_missing_half": (LeastSquaresMissingHalf, "loss.optimal_discriminator"),
    "least_squares_swapped_targets": (LeastSquaresSwappedTargets, "loss.optimal_discriminator"),
    "smooths_fakes_too": (SmoothsFakesToo, "loss.optimal_discriminator", {"label_smoothing": 0.1}),
    "smoothing_target_alpha": (SmoothingTargetAlpha, "loss.optimal_discriminator", {"label_smoothing": 0.1}),
    "smoothing_ignored": (SmoothingIgnored, "loss.optimal_discriminator", {"label_smoothing": 0.2}),
    "mean_over_both_batches": (MeanOverBothBatches, "loss.optimal_discriminator"),
    "kl_wrong_conjugate": (KLWrongConjugate, "loss.optimal_discriminator"),
    "pearson_missing_quarter": (PearsonMissingQuarter, "loss.optimal_discriminator"),
    "jensen_shannon_half_real_term": (JensenShannonHalfRealTerm, "loss.optimal_discriminator"),
    "reverse_kl_wrong_activation": (ReverseKLWrongActivation, "loss.optimal_discriminator"),
    # precision and backends
    "float64_in_float32": (Float64InFloat32, "loss.precision", None, "float64"),
    "computes_in_bfloat16": (ComputesInBfloat16, "loss.precision"),
    "backend_dependent": (BackendDependent, "loss.backends_agree"),
    "tensorflow_clamp_20": (TensorFlowClamp, "loss.backends_agree"),
    "tensorflow_naive_softplus": (TensorFlowNaiveSoftplus, "loss.backends_agree"),
    "shape_arithmetic": (ShapeArithmetic, "loss.reference"),
}
#: Mutants that misbehave on TensorFlow only: the across-backends check (or, for a
#: graph-only failure, the check run on TensorFlow) catches them; torch rightly passes.
BACKEND_SPECIFIC = {"backend_dependent", "tensorflow_clamp_20", "tensorflow_naive_softplus", "shape_arithmetic"}


def mutant_loss(name):
    """(class, check, params, dtype) of a mutant loss, with the defaults filled in."""
    cls, check, *rest = MUTANT_LOSSES[name]
    params = rest[0] if rest else None
    dtype = rest[1] if len(rest) > 1 else "float32"
    return cls, check, params, dtype


# -- regularizers ------------------------------------------------------------------
class PenaltyNotSquared(GradientPenalty):
    """lambda * |(||grad|| - target)| instead of its square."""

    def __call__(self, ops, discriminator, real, fake):
        grad = ops.input_grad(discriminator, ops.stop_gradient(real))
        norm = ops.sqrt(ops.batch_sum_squares(grad) + 1e-12)
        return self.params.weight * ops.mean(ops.abs(norm - self.params.target))


class R1WithoutHalf(R1):
    """gamma * ||grad||^2: the factor 1/2 forgotten."""

    def __call__(self, ops, discriminator, real, fake):
        return 2.0 * super().__call__(ops, discriminator, real, fake)


class R1Detached(R1):
    """The input gradient detached: the right value, but it trains nothing."""

    def __call__(self, ops, discriminator, real, fake):
        grad = ops.stop_gradient(ops.input_grad(discriminator, ops.stop_gradient(real)))
        return 0.5 * self.params.gamma * ops.mean(ops.batch_sum_squares(grad))


class R1AtFakes(R1):
    """R1 computed at the fake samples (the R2 point) while declaring real."""

    def __call__(self, ops, discriminator, real, fake):
        grad = ops.input_grad(discriminator, ops.stop_gradient(fake))
        return 0.5 * self.params.gamma * ops.mean(ops.batch_sum_squares(grad))


class R2AtReals(R2):
    """R2 computed at the real samples while declaring fake."""

    def __call__(self, ops, discriminator, real, fake):
        return R1.__call__(R1(self.params), ops, discriminator, real, fake)


class _GP(GradientPenalty):
    """A gradient penalty at ``self.points(ops, real, fake)``."""

    def __call__(self, ops, discriminator, real, fake):
        p = self.params
        x = self.points(ops, ops.stop_gradient(real), ops.stop_gradient(fake))
        gap = _gradient_norm(ops, discriminator, x) - p.target
        return p.weight * ops.mean(ops.square(ops.relu(gap) if p.one_sided else gap))


class GPNumpyCoefficients(_GP):
    """Coefficients from numpy's global generator: not seeded by gankit, and frozen into a tf.function."""

    def points(self, ops, real, fake):
        eps = ops.cast(ops.asarray(np.random.default_rng().uniform(size=_per_sample_shape(ops, real))), real)
        return eps * real + (1.0 - eps) * fake


class GPCoefficientsShapeN1(_GP):
    """Coefficients of shape (batch, 1), right for flat samples only: on images they broadcast against H, W."""

    def points(self, ops, real, fake):
        eps = ops.random_uniform((ops.shape(real)[0], 1), like=real)
        return eps * real + (1.0 - eps) * fake


class GPNormOverAxis1(GradientPenalty):
    """The gradient's norm over axis 1 only, right for flat samples: on images, per channel column."""

    def __call__(self, ops, discriminator, real, fake):
        p = self.params
        real, fake = ops.stop_gradient(real), ops.stop_gradient(fake)
        eps = ops.random_uniform(_per_sample_shape(ops, real), like=real)
        grad = ops.input_grad(discriminator, eps * real + (1.0 - eps) * fake)
        norm = ops.sqrt(ops.sum(ops.square(grad), axis=1) + 1e-12)
        return p.weight * ops.mean(ops.square(norm - p.target))


class R1SumOverAxis1(R1):
    """R1 summing the squared gradient over axis 1 only, then averaging: on images, divided by H * W."""

    def __call__(self, ops, discriminator, real, fake):
        grad = ops.input_grad(discriminator, ops.stop_gradient(real))
        return 0.5 * self.params.gamma * ops.mean(ops.sum(ops.square(grad), axis=1))


class GPOnlyAtFakes(_GP):
    """The gradient penalty at the fake samples, no interpolation."""

    def points(self, ops, real, fake):
        return fake


class GPOnlyAtReals(_GP):
    """The gradient penalty at the real samples, no interpolation."""

    def points(self, ops, real, fake):
        return real


class GPOneCoefficientPerBatch(_GP):
    """One interpolation coefficient for the whole batch."""

    def points(self, ops, real, fake):
        eps = ops.random_uniform((1,) * len(ops.shape(real)), like=real)
        return eps * real + (1.0 - eps) * fake


class GPCoefficientPerFeature(_GP):
    """A coefficient per element instead of per sample: points off the real-fake segment."""

    def points(self, ops, real, fake):
        eps = ops.random_uniform(ops.shape(real), like=real)
        return eps * real + (1.0 - eps) * fake


class GPNormalCoefficients(_GP):
    """Coefficients drawn from a normal distribution instead of U[0, 1)."""

    def points(self, ops, real, fake):
        eps = ops.sigmoid(ops.random_normal(_per_sample_shape(ops, real), like=real))
        return eps * real + (1.0 - eps) * fake


class GPMidpoints(_GP):
    """Every sample at the midpoint (eps = 1/2) "to reduce variance"."""

    def points(self, ops, real, fake):
        return 0.5 * real + 0.5 * fake


class GPNormOfWholeBatch(GradientPenalty):
    """(||grad|| - 1)^2 with the norm over the whole batch's gradient, not per sample."""

    def __call__(self, ops, discriminator, real, fake):
        p = self.params
        real, fake = ops.stop_gradient(real), ops.stop_gradient(fake)
        eps = ops.random_uniform(_per_sample_shape(ops, real), like=real)
        grad = ops.input_grad(discriminator, eps * real + (1.0 - eps) * fake)
        return p.weight * ops.square(ops.sqrt(ops.sum(ops.square(grad)) + 1e-12) - p.target)


class GPSquareOfMeanNorm(GradientPenalty):
    """(E||grad|| - 1)^2: the mean taken before the square."""

    def __call__(self, ops, discriminator, real, fake):
        p = self.params
        real, fake = ops.stop_gradient(real), ops.stop_gradient(fake)
        eps = ops.random_uniform(_per_sample_shape(ops, real), like=real)
        norm = _gradient_norm(ops, discriminator, eps * real + (1.0 - eps) * fake)
        return p.weight * ops.square(ops.mean(norm) - p.target)


class GPNotDetached(GradientPenalty):
    """The samples not wrapped in stop_gradient: the penalty trains the generator too."""

    def __call__(self, ops, discriminator, real, fake):
        p = self.params
        eps = ops.random_uniform(_per_sample_shape(ops, real), like=real)
        gap = _gradient_norm(ops, discriminator, eps * real + (1.0 - eps) * fake) - p.target
        return p.weight * ops.mean(ops.square(gap))


class R1SumOverBatch(R1):
    """R1 summed over the batch instead of averaged."""

    def __call__(self, ops, discriminator, real, fake):
        grad = ops.input_grad(discriminator, ops.stop_gradient(real))
        return 0.5 * self.params.gamma * ops.sum(ops.batch_sum_squares(grad))


class R1NotDetached(R1):
    """R1 at the real batch without stop_gradient."""

    def __call__(self, ops, discriminator, real, fake):
        grad = ops.input_grad(discriminator, real)
        return 0.5 * self.params.gamma * ops.mean(ops.batch_sum_squares(grad))


class _Dragan(Dragan):
    def __call__(self, ops, discriminator, real, fake):
        p = self.params
        x = self.points(ops, ops.stop_gradient(real), ops.stop_gradient(fake))
        gap = _gradient_norm(ops, discriminator, x) - p.target
        return p.weight * ops.mean(ops.square(gap))


class DraganUnperturbed(_Dragan):
    """DRAGAN with the perturbation forgotten: a gradient penalty at the reals."""

    def points(self, ops, real, fake):
        return real


class DraganPerturbsFakes(_Dragan):
    """DRAGAN perturbing the fake samples."""

    def points(self, ops, real, fake):
        return fake + (self.params.noise * ops.std(fake)) * ops.random_uniform(ops.shape(fake), like=fake)


class DraganFixedNoise(_Dragan):
    """DRAGAN with the noise scale hard-coded to 0.5, ignoring params.noise."""

    def points(self, ops, real, fake):
        return real + (0.5 * ops.std(real)) * ops.random_uniform(ops.shape(real), like=real)


class DraganNoiseWithoutStd(_Dragan):
    """DRAGAN's perturbation noise * u, in absolute units: not scaled by the reals' std."""

    def points(self, ops, real, fake):
        return real + self.params.noise * ops.random_uniform(ops.shape(real), like=real)


class DraganVarianceNotStd(_Dragan):
    """DRAGAN scaled by the reals' variance instead of their standard deviation."""

    def points(self, ops, real, fake):
        return real + (self.params.noise * ops.square(ops.std(real))) * ops.random_uniform(ops.shape(real), like=real)


class DraganStdOfFakes(_Dragan):
    """DRAGAN scaled by the fake batch's standard deviation."""

    def points(self, ops, real, fake):
        return real + (self.params.noise * ops.std(fake)) * ops.random_uniform(ops.shape(real), like=real)


class DraganNoiseTimesTen(_Dragan):
    """DRAGAN with ten times the perturbation params.noise asks for."""

    def points(self, ops, real, fake):
        return real + (10.0 * self.params.noise * ops.std(real)) * ops.random_uniform(ops.shape(real), like=real)


class DraganOneDrawPerSample(_Dragan):
    """DRAGAN with one draw per sample (the gradient penalty's shape): every coordinate moved alike."""

    def points(self, ops, real, fake):
        u = ops.random_uniform(_per_sample_shape(ops, real), like=real)
        return real + (self.params.noise * ops.std(real)) * u


class GPTargetIgnored(GradientPenalty):
    """The gradient penalty with its target hard-coded to 1 (the default), ignoring params.target."""

    def __call__(self, ops, discriminator, real, fake):
        return GradientPenalty(self.params.model_copy(update={"target": 1.0}))(ops, discriminator, real, fake)


#: registered name -> (class, the check that must catch it, params or None)
MUTANT_REGULARIZERS = {
    "r1_at_fakes": (R1AtFakes, "regularizer.evaluated_at"),
    "r2_at_reals": (R2AtReals, "regularizer.evaluated_at"),
    "gp_only_at_fakes": (GPOnlyAtFakes, "regularizer.evaluated_at"),
    "gp_only_at_reals": (GPOnlyAtReals, "regularizer.evaluated_at"),
    "gp_one_coefficient_per_batch": (GPOneCoefficientPerBatch, "regularizer.evaluated_at"),
    "gp_coefficient_per_feature": (GPCoefficientPerFeature, "regularizer.evaluated_at"),
    "gp_midpoints": (GPMidpoints, "regularizer.interpolation"),
    "gp_normal_coefficients": (GPNormalCoefficients, "regularizer.interpolation"),
    "gp_norm_of_whole_batch": (GPNormOfWholeBatch, "regularizer.evaluated_at"),
    "gp_square_of_mean_norm": (GPSquareOfMeanNorm, "regularizer.evaluated_at"),
    "gp_not_detached": (GPNotDetached, "regularizer.samples_detached"),
    "r1_sum_over_batch": (R1SumOverBatch, "regularizer.evaluated_at"),
    "r1_not_detached": (R1NotDetached, "regularizer.samples_detached"),
    "dragan_unperturbed": (DraganUnperturbed, "regularizer.evaluated_at"),
    "dragan_perturbs_fakes": (DraganPerturbsFakes, "regularizer.evaluated_at"),
    "dragan_fixed_noise": (DraganFixedNoise, "regularizer.interpolation", {"noise": 1.0}),
    "dragan_noise_without_std": (DraganNoiseWithoutStd, "regularizer.interpolation"),
    "dragan_variance_not_std": (DraganVarianceNotStd, "regularizer.interpolation"),
    "dragan_std_of_fakes": (DraganStdOfFakes, "regularizer.interpolation"),
    "dragan_noise_times_ten": (DraganNoiseTimesTen, "regularizer.interpolation"),
    "dragan_one_draw_per_sample": (DraganOneDrawPerSample, "regularizer.interpolation"),
    "gp_target_ignored": (GPTargetIgnored, "regularizer.linear_closed_form"),
    "gp_numpy_coefficients": (GPNumpyCoefficients, "regularizer.traced"),
    "gp_coefficients_shape_n1": (GPCoefficientsShapeN1, "regularizer.evaluated_at"),
    "gp_norm_over_axis_1": (GPNormOverAxis1, "regularizer.evaluated_at"),
    "r1_sum_over_axis_1": (R1SumOverAxis1, "regularizer.evaluated_at"),
    "penalty_not_squared": (PenaltyNotSquared, "regularizer.linear_closed_form"),
    "r1_without_half": (R1WithoutHalf, "regularizer.linear_closed_form"),
    "r1_detached": (R1Detached, "regularizer.parameter_gradient"),
}


def mutant_regularizer(name):
    cls, check, *rest = MUTANT_REGULARIZERS[name]
    return cls, check, rest[0] if rest else None


# -- backends ----------------------------------------------------------------------
class _Wrapped:
    """A trainer that delegates everything to a real one, except what a mutant overrides."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)


class DiscriminatorStepTrainsG(_Wrapped):
    def discriminator_step(self, real):
        loss = self.inner.discriminator_step(real)
        self.inner.generator_step(len(real), real)
        return loss


class OneCriticUpdate(_Wrapped):
    """Ignores n_critic: one discriminator update per step."""

    def train_step(self, real_batches):
        real_batches = np.asarray(real_batches)
        d = self.inner.discriminator_step(real_batches[-1])
        g = self.inner.generator_step(real_batches.shape[1], real_batches[-1])
        return gankit.StepResult(step=1, d_loss=d, g_loss=g)


class ShiftedGenerator(_Wrapped):
    def generate(self, z):
        return self.inner.generate(z) + np.float32(0.01)


def _unseeded(setup):
    return dataclasses.replace(setup, seed=int(np.random.default_rng().integers(1 << 30)))


def _lr_floor(setup):
    bump = lambda o: dataclasses.replace(o, lr=max(o.lr, 0.01))  # noqa: E731
    return dataclasses.replace(setup, g_optimizer=bump(setup.g_optimizer), d_optimizer=bump(setup.d_optimizer))


class MutantBackend:
    """A real backend (``inner``: torch or tensorflow) with one of the mutations above."""

    def __init__(self, name, inner, wrap=None, edit_setup=None):
        if inner == "torch":
            from gankit_torch.backend import TorchBackend as Inner
        else:
            from gankit_tensorflow.backend import TensorFlowBackend as Inner
        self.inner = Inner()
        self.name = name
        self.wrap, self.edit_setup = wrap, edit_setup

    def version(self):
        return self.inner.version() + "-mutant"

    def ops(self, dtype="float32", seed=0):
        return self.inner.ops(dtype=dtype, seed=seed)

    def build_trainer(self, setup):
        trainer = self.inner.build_trainer(self.edit_setup(setup) if self.edit_setup else setup)
        return self.wrap(trainer) if self.wrap else trainer


#: mutation -> (wrapper, setup edit, the check that must catch it); registered as
#: ``torch_<mutation>`` and ``tensorflow_<mutation>``.
MUTATIONS = {
    "d_step_trains_g": (DiscriminatorStepTrainsG, None, "training.d_update_changes_only_d"),
    "one_critic": (OneCriticUpdate, None, "training.n_critic"),
    "unseeded": (None, _unseeded, "training.seed_repeats"),
    "lr_floor": (None, _lr_floor, "training.lr_zero_changes_nothing"),
    "shifted_generator": (ShiftedGenerator, None, "architecture.same_function"),
}
#: backend name -> (inner backend, wrapper, setup edit, the check that must catch it)
MUTANT_BACKENDS = {f"{inner}_{name}": (inner, *rest) for name, rest in MUTATIONS.items()
                   for inner in ("torch", "tensorflow")}


# -- the plugin ------------------------------------------------------------------------
def _loss_record(name, cls):
    return gankit.LossRecord(name=name, factory=cls, params=cls.params_model)


@gankit.hookimpl
def gankit_register_losses():
    return [_loss_record("correct", Correct), _loss_record("correct_saturating_kl", SaturatingKL)] + [_loss_record(n, mutant_loss(n)[0]) for n in MUTANT_LOSSES]


@gankit.hookimpl
def gankit_register_regularizers():
    table = {"correct_r1": R1, **{n: mutant_regularizer(n)[0] for n in MUTANT_REGULARIZERS}}
    return [gankit.RegularizerRecord(name=name, factory=cls, params=cls.params_model) for name, cls in table.items()]


@gankit.hookimpl
def gankit_register_backends():
    def maker(name, inner, wrap, edit):
        return lambda: MutantBackend(name, inner, wrap, edit)

    return [gankit.BackendRecord(name=name, factory=maker(name, inner, wrap, edit), requires=(inner,))
            for name, (inner, wrap, edit, _) in MUTANT_BACKENDS.items()]
