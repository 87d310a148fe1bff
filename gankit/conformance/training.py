"""Checks every backend's training step must pass (and one every loss must pass on it).

The step is built from a small neutral GAN (MLP specs written here, a non-saturating
loss and an R1 penalty defined here against :class:`gankit.Ops`), so a failure points
at the backend's step, not at a plugin. Optimizers are plain SGD: stateless, so
parameter changes are easy to attribute. Only trainable parameters are compared;
batch-norm buffers may legitimately move on any forward pass in training mode.
"""

from __future__ import annotations

import numpy as np

from gankit.conformance.core import check, fail, require
from gankit.conformance.numerics import fmt
from gankit.initializers import initial_weights
from gankit.nets import Activation, BatchNorm, Dense, NetSpec
from gankit.ops import NumpyOps
from gankit.protocol import Loss, LossMeta, OptimizerSettings, Regularizer, RegularizerMeta, StepResult, TrainSetup

LATENT = 4
BATCH = 16
ROLES = ("generator", "discriminator")


class StepLoss(Loss):
    """The non-saturating loss, written here so the step checks depend on no plugin."""

    meta = LossMeta(family="minimax", saturating=False, properties=(), formula="", paper="")

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(-fake_logits))


class StepPenalty(Regularizer):
    """R1 with gamma = 1, so the step's double-backward path is exercised."""

    meta = RegularizerMeta(evaluated_at="real", formula="1/2 E||grad D(real)||^2", paper="")

    def __call__(self, ops, discriminator, real, fake):
        grad = ops.input_grad(discriminator, ops.stop_gradient(real))
        return 0.5 * ops.mean(ops.batch_sum_squares(grad))


GENERATOR = NetSpec(name="conformance_g", input_shape=(LATENT,),
                    layers=[Dense(units=16), BatchNorm(), Activation(fn="relu"), Dense(units=2)])
DISCRIMINATOR = NetSpec(name="conformance_d", input_shape=(2,),
                        layers=[Dense(units=16), Activation(fn="leaky_relu"), Dense(units=1)])


def real_data(seed: int = 0, batches: int = 1, n: int = BATCH) -> np.ndarray:
    """Real samples far from what the untrained generator makes: easy to tell apart."""
    rng = np.random.default_rng([seed, 17])
    return (rng.normal(size=(batches, n, 2)) * 0.1 + 2.0).astype(np.float32)


def build(handle, *, loss: Loss | None = None, lr: float = 0.05, optimizer: str = "sgd", n_critic: int = 1, seed: int = 0,
          penalty: bool = True, generator: NetSpec = GENERATOR, discriminator: NetSpec = DISCRIMINATOR,
          latent_dim: int = LATENT, batch_size: int = BATCH):
    setup = TrainSetup(
        generator=generator, discriminator=discriminator, loss=loss or StepLoss(),
        regularizers={"r1": StepPenalty()} if penalty else {},
        g_optimizer=OptimizerSettings(optimizer, lr), d_optimizer=OptimizerSettings(optimizer, lr),
        latent_dim=latent_dim, batch_size=batch_size, n_critic=n_critic, seed=seed, device="cpu",
        initial_weights=initial_weights(generator, discriminator, "default", seed),
    )
    return handle.backend.build_trainer(setup)


def trainable(trainer, specs=(GENERATOR, DISCRIMINATOR)) -> dict[str, np.ndarray]:
    """Trainable parameters (canonical, prefixed) from the trainer's state dict."""
    state = trainer.state_dict()
    names = {f"{role}.{k}" for role, spec in zip(ROLES, specs) for k in spec.parameter_shapes()}
    missing = names - set(state)
    require(not missing, f"state_dict lacks the parameters {sorted(missing)}")
    return {k: np.array(state[k], dtype=np.float64) for k in sorted(names)}


def changed(before, after) -> set[str]:
    return {k for k in before if not np.array_equal(before[k], after[k])}


def _roles(names) -> set[str]:
    return {n.split(".", 1)[0] for n in names}


# -- the step -------------------------------------------------------------------------
@check("training.d_update_changes_only_d", "a discriminator update changes D's parameters and no G parameter")
def d_update_changes_only_d(ctx):
    t = build(ctx.backend)
    before = trainable(t)
    t.discriminator_step(real_data()[0])
    moved = changed(before, trainable(t))
    require("generator" not in _roles(moved),
            f"discriminator_step changed generator parameters {sorted(n for n in moved if n.startswith('generator.'))}")
    require("discriminator" in _roles(moved), "discriminator_step changed no discriminator parameter")


@check("training.g_update_changes_only_g", "a generator update changes G's parameters and no D parameter")
def g_update_changes_only_g(ctx):
    t = build(ctx.backend)
    before = trainable(t)
    t.generator_step(BATCH, real_data()[0])
    moved = changed(before, trainable(t))
    require("discriminator" not in _roles(moved),
            f"generator_step changed discriminator parameters {sorted(n for n in moved if n.startswith('discriminator.'))}")
    require("generator" in _roles(moved), "generator_step changed no generator parameter")


@check("training.lr_zero_changes_nothing", "with learning rate 0 a full step changes no parameter")
def lr_zero_changes_nothing(ctx):
    t = build(ctx.backend, lr=0.0)
    before = trainable(t)
    t.train_step(real_data())
    moved = changed(before, trainable(t))
    require(not moved, f"train_step with lr=0 changed {sorted(moved)}")


@check("training.n_critic", "n_critic = k runs exactly k discriminator updates per step")
def n_critic(ctx):
    k = 2
    batches = real_data(batches=k)
    stepped = build(ctx.backend, n_critic=k)
    stepped.train_step(batches)
    got = {n: v for n, v in trainable(stepped).items() if n.startswith("discriminator.")}
    # The same start, the same seed, with explicit discriminator updates counted out.
    manual = build(ctx.backend, n_critic=k)
    distances = {}
    for i in range(k + 1):
        manual.discriminator_step(batches[min(i, k - 1)])
        ref = {n: v for n, v in trainable(manual).items() if n.startswith("discriminator.")}
        distances[i + 1] = max(float(np.max(np.abs(got[n] - ref[n]))) for n in got)
    closest = min(distances, key=distances.get)
    require(closest == k and distances[k] <= 1e-5,
            f"after train_step with n_critic={k}, D's parameters are closest to {closest} explicit D updates "
            f"(max |diff| by count: {', '.join(f'{c}: {d:.3g}' for c, d in distances.items())})")
    return f"n_critic={k}: max |diff| {distances[k]:.2g} vs {k} updates, {distances[k - 1]:.2g} vs {k - 1}"


@check("training.d_steps_lower_d_loss", "a few discriminator updates on a fixed real batch lower the D loss")
def d_steps_lower_d_loss(ctx):
    return _d_learns(ctx.backend, StepLoss(), steps=5)


def _d_learns(handle, loss, steps: int, lr: float = 0.05, optimizer: str = "sgd") -> str:
    t = build(handle, loss=loss, lr=lr, optimizer=optimizer, penalty=False)
    real = real_data()[0]
    z = np.random.default_rng(3).normal(size=(BATCH, LATENT)).astype(np.float32)
    ref = NumpyOps(dtype="float64")

    def d_loss():
        r = np.asarray(t.discriminate(real), np.float64)
        f = np.asarray(t.discriminate(t.generate(z)), np.float64)
        return float(loss.discriminator(ref, r, f))

    before = d_loss()
    for _ in range(steps):
        t.discriminator_step(real)
    after = d_loss()
    require(np.isfinite(after) and after < before,
            f"{steps} discriminator updates ({optimizer}, lr {lr:g}) took the D loss on a fixed batch from "
            f"{fmt(before)} to {fmt(after)}")
    return f"D loss {before:.4g} -> {after:.4g} in {steps} updates"


@check("training.seed_repeats", "the same seed repeats the same parameters and losses on CPU")
def seed_repeats(ctx):
    batches = real_data(batches=3)

    def run(seed):
        t = build(ctx.backend, seed=seed)
        results = [t.train_step(batches[i:i + 1]) for i in range(3)]
        return t.state_dict(), [r.scalars() for r in results]

    (w1, r1), (w2, r2) = run(11), run(11)
    differ = sorted(k for k in w1 if not np.array_equal(w1[k], w2[k]))
    require(not differ, f"two runs with seed 11 differ in {differ}")
    require(r1 == r2, f"two runs with seed 11 report different losses: {r1} vs {r2}")


@check("training.step_result", "train_step returns a valid, finite StepResult and counts steps")
def step_result(ctx):
    t = build(ctx.backend)
    for expected in (1, 2):
        r = t.train_step(real_data(seed=expected))
        require(isinstance(r, StepResult), f"train_step returned {type(r).__name__}, not a StepResult")
        require(r.step == expected and t.step_count == expected,
                f"after {expected} steps StepResult.step is {r.step} and step_count {t.step_count}")
        require(r.is_finite(), f"step {expected} reported non-finite scalars {r.scalars()}")
    require("penalty_r1" in r.extras, f"the r1 penalty is missing from the step's extras {sorted(r.extras)}")


# -- every loss on the step ------------------------------------------------------------
@check("loss.discriminator_learns", "on each backend's training step, a few D updates lower the loss's "
       "D loss on a fixed batch")
def discriminator_learns(ctx):
    loss = ctx.subject.loss
    if loss is None:
        fail("no loss")
    # Adam: its steps do not scale with the gradient, so a loss with values near 1e6
    # learns as one near 1 does (SGD at a fixed rate would diverge on it).
    return _d_learns(ctx.backend, loss, steps=5, lr=0.01, optimizer="adam")
