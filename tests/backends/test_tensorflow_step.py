"""The TensorFlow trainer: which variables each update touches, n_critic, seeding,
penalties trained through input gradients, state round trips, errors."""

import dataclasses
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow
tf = pytest.importorskip("tensorflow")

import gankit  # noqa: E402
from gankit import (  # noqa: E402
    Activation,
    BatchNorm,
    CheckpointError,
    ConfigError,
    DataError,
    Dense,
    LayerNorm,
    Loss,
    LossMeta,
    NetSpec,
    OptimizerSettings,
    Regularizer,
    RegularizerMeta,
    StepResult,
    TrainSetup,
)
from gankit_tensorflow.backend import TensorFlowBackend  # noqa: E402


class NonSaturating(Loss):
    meta = LossMeta(family="minimax", saturating=False, properties=(), formula="softplus", paper="test")

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(-fake_logits))


class Relativistic(Loss):
    meta = LossMeta(family="relativistic", saturating=False, properties=(), formula="rp", paper="test",
                    generator_needs_real=True)

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(fake_logits - real_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(real_logits - fake_logits))


class Zero(Loss):
    """A loss with zero value, so a penalty alone drives the update."""

    meta = LossMeta(family="other", saturating=False, properties=(), formula="0", paper="test")

    def discriminator(self, ops, real_logits, fake_logits):
        return 0.0 * ops.mean(real_logits) + 0.0 * ops.mean(fake_logits)

    def generator(self, ops, fake_logits, real_logits=None):
        return 0.0 * ops.mean(fake_logits)


class R1(Regularizer):
    meta = RegularizerMeta(evaluated_at="real", formula="gamma/2 E|grad D(x)|^2", paper="test")

    def __init__(self, gamma=1.0):
        super().__init__()
        self.gamma = gamma

    def __call__(self, ops, discriminator, real, fake):
        grad = ops.input_grad(discriminator, real)
        return 0.5 * self.gamma * ops.mean(ops.batch_sum_squares(grad))


G = NetSpec(name="g", input_shape=(2,), layers=[Dense(units=8), BatchNorm(), Activation(fn="relu"), Dense(units=2)])
D = NetSpec(name="d", input_shape=(2,), layers=[Dense(units=8), LayerNorm(), Activation(fn="leaky_relu"), Dense(units=1)])
BATCH = 16


def make_setup(**changes):
    base = dict(
        generator=G, discriminator=D, loss=NonSaturating(), regularizers={"r1": R1()},
        g_optimizer=OptimizerSettings("adam", lr=1e-2), d_optimizer=OptimizerSettings("adam", lr=1e-2),
        latent_dim=2, batch_size=BATCH, seed=3, device="cpu",
        initial_weights=gankit.initial_weights(G, D, "default", 3),
    )
    base.update(changes)
    return TrainSetup(**base)


def build(**changes):
    return TensorFlowBackend().build_trainer(make_setup(**changes))


def real_batches(n_critic, seed=0, batch=BATCH):
    return np.random.default_rng(seed).normal(2.0, 0.5, size=(n_critic, batch, 2)).astype(np.float32)


def params(trainer, role):
    return trainer.parameters_of(role)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_all_changed(a, b):
    for k in a:
        assert not np.array_equal(a[k], b[k]), f"{k} did not change"


@pytest.fixture(scope="module")
def trainer():
    return build()


def test_is_a_trainer_with_resolved_device(trainer):
    assert isinstance(trainer, gankit.Trainer)
    assert trainer.backend == "tensorflow" and trainer.device == "cpu" and trainer.tf_device == "/CPU:0"


def test_train_step_reports_a_step_result_and_traces_once(trainer):
    start = trainer.step_count
    results = [trainer.train_step(real_batches(1, seed=i)) for i in range(3)]
    results.append(trainer.train_step(real_batches(1, batch=BATCH + 4)))  # another batch size: no retrace
    results.append(trainer.train_step(real_batches(1)[0]))  # one batch for n_critic = 1
    assert all(isinstance(r, StepResult) and r.is_finite() for r in results)
    assert [r.step for r in results] == list(range(start + 1, start + 6)) and trainer.step_count == start + 5
    assert list(results[0].extras) == ["penalty_r1", "real_logit", "fake_logit"]
    assert results[0].extras["penalty_r1"] > 0
    assert trainer._train_fn.experimental_get_tracing_count() == 1


def test_discriminator_step_changes_only_discriminator_parameters(trainer):
    g0, d0 = params(trainer, "generator"), params(trainer, "discriminator")
    loss = trainer.discriminator_step(real_batches(1)[0])
    assert np.isfinite(loss)
    assert_same(params(trainer, "generator"), g0)
    assert_all_changed(params(trainer, "discriminator"), d0)


def test_generator_step_changes_only_generator_parameters(trainer):
    g0, d0 = params(trainer, "generator"), params(trainer, "discriminator")
    assert np.isfinite(trainer.generator_step(BATCH))
    assert_same(params(trainer, "discriminator"), d0)
    assert_all_changed(params(trainer, "generator"), g0)


def test_zero_learning_rate_changes_no_parameter():
    frozen = OptimizerSettings("adamw", lr=0.0, weight_decay=0.1)
    t = build(g_optimizer=frozen, d_optimizer=frozen)
    before = {role: params(t, role) for role in ("generator", "discriminator")}
    t.train_step(real_batches(1))
    for role, p in before.items():
        assert_same(params(t, role), p)


def test_n_critic_gives_that_many_discriminator_updates():
    k = 3
    batches = real_batches(k)
    # SGD, not Adam: Adam rescales the rounding noise in the zero gradient of a bias
    # feeding batch norm to a full step, and the fused and separate graphs round differently.
    sgd = dict(n_critic=k, g_optimizer=OptimizerSettings("sgd", lr=0.1, momentum=0.5),
               d_optimizer=OptimizerSettings("sgd", lr=0.1, momentum=0.5))
    fused = build(**sgd)
    result = fused.train_step(batches)
    assert int(fused.optimizers["discriminator"].iterations.numpy()) == k and int(fused.optimizers["generator"].iterations.numpy()) == 1
    # The same updates one by one, from the same seed, land on the same weights.
    manual = build(**sgd)
    losses = [manual.discriminator_step(b) for b in batches]
    g_loss = manual.generator_step(BATCH)
    assert result.d_loss == pytest.approx(losses[-1], rel=1e-5) and result.g_loss == pytest.approx(g_loss, rel=1e-5)
    a, b = fused.state_dict(), manual.state_dict()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_same_seed_gives_identical_weights_and_another_seed_does_not():
    runs = []
    for seed in (3, 3, 4):
        t = build(seed=seed, n_critic=2, regularizers={})
        for i in range(2):
            t.train_step(real_batches(2, seed=i))
        runs.append(t.state_dict())
    assert_same(runs[0], runs[1])
    assert not np.array_equal(runs[0]["generator.0.weight"], runs[2]["generator.0.weight"])


def test_discriminator_steps_on_a_fixed_batch_lower_its_loss():
    t = build(regularizers={}, g_optimizer=OptimizerSettings("adam", lr=0.0))
    real = real_batches(1)[0]
    losses = [t.discriminator_step(real) for _ in range(40)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_penalty_trains_the_discriminator_through_the_input_gradient():
    # D(x) = x @ w + b, so R1 = gamma/2 |w|^2 and one SGD step gives w (1 - lr gamma), b unchanged.
    linear = NetSpec(name="d", input_shape=(2,), layers=[Dense(units=1)])
    lr, gamma = 0.1, 3.0
    t = build(discriminator=linear, loss=Zero(), regularizers={"r1": R1(gamma)},
              d_optimizer=OptimizerSettings("sgd", lr=lr),
              initial_weights=gankit.initial_weights(G, linear, "default", 0))
    before = params(t, "discriminator")
    t.discriminator_step(real_batches(1)[0])
    after = params(t, "discriminator")
    np.testing.assert_allclose(after["0.weight"], before["0.weight"] * (1 - lr * gamma), rtol=1e-6)
    np.testing.assert_array_equal(after["0.bias"], before["0.bias"])


def test_generator_loss_reading_real_logits_needs_real():
    t = build(loss=Relativistic(), regularizers={})
    with pytest.raises(ValueError, match="pass real= to generator_step"):
        t.generator_step(BATCH)
    assert np.isfinite(t.generator_step(BATCH, real=real_batches(1)[0]))
    assert t.train_step(real_batches(1)).is_finite()


def test_state_dict_round_trip(trainer):
    state = trainer.state_dict()
    assert set(state) == {f"generator.{k}" for k in [*G.parameter_shapes(), *G.buffer_shapes()]} | {
        f"discriminator.{k}" for k in D.parameter_shapes()
    }
    assert all(v.dtype == np.float32 for v in state.values())
    other = build(seed=9, initial_weights=gankit.initial_weights(G, D, "normal", 9))
    z, x = np.random.default_rng(0).normal(size=(2, 5, 2)).astype(np.float32)
    assert not np.allclose(other.generate(z), trainer.generate(z))
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.generate(z), trainer.generate(z))
    np.testing.assert_array_equal(other.discriminate(x), trainer.discriminate(x))
    assert trainer.discriminate(x).shape == (5,) and trainer.generate(z).shape == (5, 2)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s.pop("discriminator.1.bias"), r"weights are missing discriminator\.1\.bias"),
        (lambda s: s.update({"critic.0.weight": np.zeros(1)}), r"unexpected parameter 'critic.0.weight'"),
        (lambda s: s.update({"generator.0.weight": np.zeros((8, 2))}),
         r"generator\.0\.weight has shape \(8, 2\) but the model expects \(2, 8\)"),
    ],
)
def test_bad_checkpoint_raises_and_changes_nothing(trainer, change, match):
    before = trainer.state_dict()
    bad = {k: v + 1 for k, v in before.items()}
    change(bad)
    with pytest.raises(CheckpointError, match=match):
        trainer.load_state_dict(bad)
    assert_same(trainer.state_dict(), before)


@pytest.mark.parametrize("distribution", ["uniform", "normal"])
def test_latents_and_seeded_sampling(distribution):
    identity = NetSpec(name="g", input_shape=(2,), layers=[Activation(fn="identity")])
    t = build(generator=identity, latent_distribution=distribution, regularizers={},
              initial_weights=gankit.initial_weights(identity, D, "default", 0))
    z = t.sample(4000)
    assert z.shape == (4000, 2)
    if distribution == "uniform":
        assert z.min() >= -1 and z.max() <= 1 and abs(z.mean()) < 0.05 and z.std() == pytest.approx(1 / 3**0.5, rel=0.05)
    else:
        assert abs(z.mean()) < 0.05 and z.std() == pytest.approx(1.0, rel=0.05) and np.abs(z).max() > 2.5
    np.testing.assert_array_equal(t.sample(3, seed=5), t.sample(3, seed=5))
    assert not np.array_equal(t.sample(3), t.sample(3))


def test_sampling_does_not_change_the_training_trajectory():
    a, b = build(regularizers={}), build(regularizers={})
    a.sample(7)
    a.train_step(real_batches(1))
    b.train_step(real_batches(1))
    assert_same(a.state_dict(), b.state_dict())


def test_unavailable_device_falls_back_to_cpu_with_a_warning():
    n = len(tf.config.list_physical_devices("GPU"))
    with pytest.warns(RuntimeWarning, match=rf"device 'cuda:{n}' was requested but .*; falling back to cpu"):
        t = build(device=f"cuda:{n}", regularizers={})
    assert t.device == "cpu" and t.tf_device == "/CPU:0"


def test_inconsistent_setup_and_batches_are_clear_errors(trainer):
    with pytest.raises(ConfigError, match="latent_dim is 3"):
        build(latent_dim=3)
    with pytest.raises(DataError, match=r"shape \(n_critic=1, batch, 2\), got \(2, 16, 2\)"):
        trainer.train_step(real_batches(2))
    with pytest.raises(DataError, match="the discriminator expects"):
        trainer.discriminator_step(np.zeros((4, 3), np.float32))
    with pytest.raises(DataError, match="batch of 1 sample cannot be batch-normalised"):
        trainer.train_step(real_batches(1, batch=1))
    with pytest.raises(DataError, match="batch of 1 sample cannot be batch-normalised"):
        trainer.generator_step(1)
    with pytest.raises(DataError, match="latents have shape"):
        trainer.generate(np.zeros((4, 5), np.float32))


def test_xla_compiled_step_runs_on_cpu():
    t = build(compile=True)
    results = [t.train_step(real_batches(1, seed=i)) for i in range(2)]
    assert all(r.is_finite() for r in results) and results[-1].step == 2
    assert t._train_fn.experimental_get_tracing_count() == 1


def test_standalone_updates_use_the_scheduled_rate_of_the_next_step():
    """The rate of step ``step_count`` (what learning_rates() reports) also drives a
    discriminator_step or generator_step, not the rate the last train_step left behind."""
    sched = OptimizerSettings("sgd", lr=0.1, schedule="linear", final_lr_fraction=0.0)
    t = build(regularizers={}, g_optimizer=sched, d_optimizer=sched, total_steps=4)
    t.train_step(real_batches(1))
    t.discriminator_step(real_batches(1)[0])
    t.generator_step(BATCH)
    rates = {role: float(opt.lr.numpy()) for role, opt in t.optimizers.items()}
    assert rates == pytest.approx(t.learning_rates(), rel=1e-6) and rates["generator"] == pytest.approx(0.075)


def test_random_state_keeps_its_names_and_a_damaged_one_is_refused(trainer):
    state = trainer.rng_state()  # the names checkpoints of earlier versions hold
    assert {"noise", "ops_noise", "sample_noise", "step"} <= set(state)
    assert int(state["step"]) == trainer.step_count
    other = build()
    before = other.rng_state()
    with pytest.raises(CheckpointError, match="random state cannot be restored: it lacks a valid 'ops_noise'"):
        other.load_rng_state({k: v for k, v in state.items() if k != "ops_noise"})
    assert_same(other.rng_state(), before)  # nothing restored
    other.load_rng_state(state)
    assert_same({k: v for k, v in other.rng_state().items() if k != "step"},
                {k: v for k, v in state.items() if k != "step"})


def test_optimizer_state_round_trip(trainer):
    state = trainer.optimizer_state()
    assert "d_optimizer.0.weight.exp_avg" in state and "g_optimizer.step" in state
    assert state["d_optimizer.step"].dtype == np.int64 and state["d_optimizer.0.weight.exp_avg"].shape == (2, 8)
    other = build()
    other.load_optimizer_state(state)
    for k, v in other.optimizer_state().items():
        np.testing.assert_array_equal(v, state[k])
    bad = {k: v for k, v in state.items() if k != "d_optimizer.3.bias.exp_avg_sq"}
    before = other.optimizer_state()
    with pytest.raises(CheckpointError, match="optimizer state is missing d_optimizer.3.bias.exp_avg_sq"):
        other.load_optimizer_state({**bad, "g_optimizer.step": np.asarray(99)})
    assert int(other.optimizer_state()["g_optimizer.step"]) == int(before["g_optimizer.step"])  # nothing loaded


def test_same_weights_train_like_the_torch_backend():
    """Discriminator updates (with an input-gradient penalty) match the torch backend
    step for step. G is made constant (zero weights) so no random latents matter."""
    pytest.importorskip("torch")
    torch_step = pytest.importorskip("gankit_torch.step")
    weights = gankit.initial_weights(G, D, "default", 1)
    weights = {k: (np.zeros_like(v) if k == "generator.3.weight" else v) for k, v in weights.items()}
    setup = make_setup(initial_weights=weights, regularizers={"r1": R1(2.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = TensorFlowBackend().build_trainer(setup), torch_step.TorchTrainer(dataclasses.replace(setup))
    batches = real_batches(3, seed=7)
    for b in batches:
        assert ours.discriminator_step(b) == pytest.approx(theirs.discriminator_step(b), rel=1e-4)
    a, b = ours.state_dict(), theirs.state_dict()
    # G's batch-norm statistics saw each backend's own random latents; the rest must agree.
    for key in [k for k in a if k.startswith("discriminator.") or k in ("generator.0.weight", "generator.3.bias")]:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
    x = batches[0]
    np.testing.assert_allclose(ours.discriminate(x), theirs.discriminate(x), rtol=1e-4, atol=1e-5)
    # Optimizer state has one format on both backends, and the same values.
    a, b = ours.optimizer_state(), theirs.optimizer_state()
    assert a.keys() == b.keys() and int(a["d_optimizer.step"]) == 3
    for key in [k for k in a if k.startswith("d_optimizer.")]:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-3, atol=1e-7, err_msg=key)
    ours.load_optimizer_state(b)
