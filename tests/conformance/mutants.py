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
from gankit_plugins.losses import LeastSquaresParams, Minimax, NonSaturating, Wasserstein
from gankit_plugins.regularizers import GradientPenalty, R1


def _meta(**changes):
    return dataclasses.replace(NonSaturating.meta, **changes)


# -- losses ----------------------------------------------------------------------
class Correct(NonSaturating):
    """The control: the built-in non-saturating loss, unchanged."""


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


#: registered name -> (class, the check that must catch it)
MUTANT_LOSSES = {
    "flipped_sign": (FlippedSign, "loss.monotone"),
    "swapped_arguments": (SwappedArguments, "loss.monotone"),
    "naive_log_sigmoid": (NaiveLogSigmoid, "loss.finite_at_extremes"),
    "sum_reduced": (SumReduced, "loss.mean_reduced"),
    "backend_dependent": (BackendDependent, "loss.backends_agree"),
    "claims_non_saturating": (ClaimsNonSaturating, "loss.saturation"),
    "wrong_optimum": (WrongOptimum, "loss.optimal_discriminator"),
    "not_shift_invariant": (NotShiftInvariant, "loss.shift_invariant"),
    "hinge_without_margin": (HingeWithoutMargin, "loss.hinge_margin"),
    "least_squares_wrong_target": (LeastSquaresWrongTarget, "loss.least_squares_targets"),
}


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


MUTANT_REGULARIZERS = {
    "penalty_not_squared": (PenaltyNotSquared, "regularizer.linear_closed_form"),
    "r1_without_half": (R1WithoutHalf, "regularizer.linear_closed_form"),
    "r1_detached": (R1Detached, "regularizer.parameter_gradient"),
}


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
    def __init__(self, name, wrap=None, edit_setup=None):
        from gankit_torch.backend import TorchBackend

        self.inner = TorchBackend()
        self.name = name
        self.wrap, self.edit_setup = wrap, edit_setup

    def version(self):
        return self.inner.version() + "-mutant"

    def ops(self, dtype="float32", seed=0):
        return self.inner.ops(dtype=dtype, seed=seed)

    def build_trainer(self, setup):
        trainer = self.inner.build_trainer(self.edit_setup(setup) if self.edit_setup else setup)
        return self.wrap(trainer) if self.wrap else trainer


#: backend name -> (wrapper, setup edit, the check that must catch it)
MUTANT_BACKENDS = {
    "torch_d_step_trains_g": (DiscriminatorStepTrainsG, None, "training.d_update_changes_only_d"),
    "torch_one_critic": (OneCriticUpdate, None, "training.n_critic"),
    "torch_unseeded": (None, _unseeded, "training.seed_repeats"),
    "torch_lr_floor": (None, _lr_floor, "training.lr_zero_changes_nothing"),
    "torch_shifted_generator": (ShiftedGenerator, None, "architecture.same_function"),
}


# -- the plugin ------------------------------------------------------------------------
@gankit.hookimpl
def gankit_register_losses():
    table = {"correct": (Correct, None), **MUTANT_LOSSES}
    return [gankit.LossRecord(name=name, factory=cls, params=cls.params_model) for name, (cls, _) in table.items()]


@gankit.hookimpl
def gankit_register_regularizers():
    return [gankit.RegularizerRecord(name=name, factory=cls, params=cls.params_model)
            for name, (cls, _) in {"correct_r1": (R1, None), **MUTANT_REGULARIZERS}.items()]


@gankit.hookimpl
def gankit_register_backends():
    def maker(name, wrap, edit):
        return lambda: MutantBackend(name, wrap, edit)

    return [gankit.BackendRecord(name=name, factory=maker(name, wrap, edit), requires=("torch",))
            for name, (wrap, edit, _) in MUTANT_BACKENDS.items()]
