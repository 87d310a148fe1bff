"""TorchTrainer: which parameters each update changes, seeding, n_critic, penalties, weights."""

import dataclasses
import os
import re
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

import gankit  # noqa: E402
from gankit import (  # noqa: E402
    Activation, BatchNorm, CheckpointError, DataError, Dense, Dropout, Loss, LossMeta, NetSpec,
    OptimizerSettings, Regularizer, RegularizerMeta, StepResult, TrainSetup,
)
from gankit_torch.backend import TorchBackend  # noqa: E402
from gankit_torch.step import TorchTrainer  # noqa: E402


class NonSaturating(Loss):
    meta = LossMeta(family="minimax", saturating=False, properties=(), formula="", paper="")

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(-fake_logits))


class Relativistic(NonSaturating):
    meta = LossMeta(family="relativistic", saturating=False, properties=(), formula="", paper="",
                    generator_needs_real=True)

    def generator(self, ops, fake_logits, real_logits=None):
        assert real_logits is not None
        return ops.mean(ops.softplus(real_logits - fake_logits))


class NoLoss(NonSaturating):
    def discriminator(self, ops, real_logits, fake_logits):
        return 0.0 * ops.mean(real_logits)


class R1(Regularizer):
    meta = RegularizerMeta(evaluated_at="real", formula="gamma/2 E|grad D(x)|^2", paper="")

    def __call__(self, ops, discriminator, real, fake):
        grad = ops.input_grad(discriminator, real)
        return 5.0 * ops.mean(ops.batch_sum_squares(grad))


G_SPEC = NetSpec(name="g", input_shape=(4,), layers=[Dense(units=16), BatchNorm(), Activation(fn="relu"), Dense(units=2)])
D_SPEC = NetSpec(name="d", input_shape=(2,), layers=[Dense(units=16), Activation(fn="leaky_relu"), Dense(units=1)])
REAL = np.random.default_rng(0).normal(size=(3, 8, 2)).astype(np.float32) + 2


def make(seed=0, n_critic=1, lr=1e-2, opt="adam", loss=None, regularizers=None, **kw):
    setup = TrainSetup(
        generator=G_SPEC, discriminator=D_SPEC, loss=loss or NonSaturating(),
        regularizers={"r1": R1()} if regularizers is None else regularizers,
        g_optimizer=OptimizerSettings(opt, lr, momentum=0.5 if opt != "adam" else 0.0),
        d_optimizer=OptimizerSettings(opt, lr, momentum=0.5 if opt != "adam" else 0.0),
        latent_dim=4, batch_size=8, n_critic=n_critic, seed=seed, device="cpu",
        initial_weights=gankit.initial_weights(G_SPEC, D_SPEC, "default", seed), **kw)
    return TorchBackend().build_trainer(setup)


def _changed(before, after, role):
    return {k for k in before if k.startswith(role) and not np.array_equal(before[k], after[k])}


def _params(trainer):
    return {f"{r}.{k}": v for r in ("generator", "discriminator") for k, v in trainer.parameters_of(r).items()}


def test_builds_a_protocol_trainer():
    t = make()
    assert isinstance(t, gankit.Trainer) and isinstance(TorchBackend(), gankit.Backend)
    assert (t.backend, t.device, t.step_count) == ("torch", "cpu", 0)
    assert TorchBackend().version() == torch.__version__
    assert TorchBackend().ops().name == "torch"


def test_optimizers_use_the_fused_and_multi_tensor_kernels_on_the_cpu():
    from gankit_torch.optim import build_optimizer

    params = [torch.nn.Parameter(torch.zeros(3))]
    for name, key in [("adam", "fused"), ("adamw", "fused"), ("rmsprop", "foreach"), ("sgd", "foreach")]:
        assert build_optimizer(params, OptimizerSettings(name, 1e-3)).defaults[key] is True, name
    # the trainer's own (test_optimizer_state_round_trip_resumes_identically resumes them)
    t = make(opt="adam")
    assert t.optimizers["generator"].defaults["fused"]


def test_initial_weights_are_loaded():
    w = gankit.initial_weights(G_SPEC, D_SPEC, "normal", 7)
    t = make()
    t.load_state_dict(w)
    state = t.state_dict()
    assert state.keys() == w.keys()
    for k in w:
        np.testing.assert_array_equal(state[k], w[k])


def test_discriminator_step_changes_only_the_discriminator():
    t = make()
    before = _params(t)
    loss = t.discriminator_step(REAL[0])
    after = _params(t)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert _changed(before, after, "discriminator") == {k for k in before if k.startswith("discriminator")}
    assert not _changed(before, after, "generator")


@pytest.mark.parametrize("loss", [NonSaturating(), Relativistic()], ids=["ns", "relativistic"])
def test_generator_step_changes_only_the_generator(loss):
    t = make(loss=loss)
    t.discriminator_step(REAL[0])  # D grads exist from the last D update
    before = _params(t)
    t.generator_step(8, real=REAL[1])
    after = _params(t)
    assert _changed(before, after, "generator") == {k for k in before if k.startswith("generator")}
    assert not _changed(before, after, "discriminator")
    assert all(p.grad is None for p in t.nets["discriminator"].parameters())


def test_generator_step_without_real_for_relativistic_loss_says_what_to_pass():
    with pytest.raises(ValueError, match="pass real="):
        make(loss=Relativistic()).generator_step(8)


@pytest.mark.parametrize("opt", ["adam", "adamw", "rmsprop", "sgd"])
def test_zero_learning_rate_changes_no_parameter(opt):
    t = make(lr=0.0, opt=opt)
    before = _params(t)
    t.train_step(REAL[:1])
    after = _params(t)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


@pytest.mark.parametrize("k", [1, 3])
def test_n_critic_discriminator_updates_per_generator_update(k):
    t = make(n_critic=k)
    calls = []
    t.optimizers["discriminator"].register_step_post_hook(lambda *a: calls.append("d"))
    t.optimizers["generator"].register_step_post_hook(lambda *a: calls.append("g"))
    result = t.train_step(REAL[:k])
    assert calls == ["d"] * k + ["g"]
    assert result.step == t.step_count == 1
    assert t.optimizer_steps == {"generator": 1, "discriminator": k}


def test_train_step_reports_losses_penalties_and_logits():
    result = make().train_step(REAL[:1])
    assert isinstance(result, StepResult) and result.is_finite()
    assert set(result.extras) == {"penalty_r1", "real_logit", "fake_logit"}
    assert result.extras["penalty_r1"] > 0


def test_train_step_accepts_one_batch_when_n_critic_is_one_and_rejects_bad_shapes():
    t = make()
    assert t.train_step(REAL[0]).step == 1
    with pytest.raises(DataError, match=re.escape("(n_critic=1, batch, 2)")):
        t.train_step(REAL[:2])
    with pytest.raises(DataError, match="expects"):
        t.discriminator_step(np.zeros((8, 3)))


def test_same_seed_repeats_exactly_and_another_seed_differs():
    runs = []
    for seed in (0, 0, 1):
        t = make(seed=seed, n_critic=2)
        for _ in range(3):
            t.train_step(REAL[:2])
        runs.append(t.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    assert any(not np.array_equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_sampling_does_not_change_the_course_of_training():
    a, b = make(), make()
    for t in (a, b):
        t.train_step(REAL[:1])
    b.sample(5)
    b.sample(5, seed=3)
    for t in (a, b):
        t.train_step(REAL[:1])
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_discriminator_steps_on_a_fixed_batch_lower_its_loss():
    t = make(lr=1e-2, regularizers={})
    losses = [t.discriminator_step(REAL[0]) for _ in range(30)]
    assert losses[-1] < losses[0] - 0.1


def test_gradient_penalty_trains_the_discriminator():
    # With a loss that is identically zero, only the penalty's gradient (a second
    # derivative through input_grad) moves D, and the penalty goes down.
    t = make(loss=NoLoss(), lr=1e-2)
    before = _params(t)
    penalties = [t.train_step(REAL[:1]).extras["penalty_r1"] for _ in range(20)]
    assert _changed(before, _params(t), "discriminator")
    assert penalties[-1] < penalties[0]


def _d_forwards(trainer, steps=1):
    calls = []
    handle = trainer.nets["discriminator"].register_forward_hook(lambda *a: calls.append(1))
    try:
        results = [trainer.train_step(REAL[i:i + 1]) for i in range(steps)]
    finally:
        handle.remove()
    return len(calls), results


def test_r1_shares_the_real_forward_and_gives_the_same_update():
    # The D update's forward on the real batch also serves R1's input gradient: three
    # D forwards per step (real, fake, and the G update's fake) instead of four, and
    # the same losses, penalty and weights up to float rounding.
    shared, plain = make(), make()
    assert shared._share_real_forward
    plain._share_real_forward = False
    n_shared, r_shared = _d_forwards(shared, 3)
    n_plain, r_plain = _d_forwards(plain, 3)
    assert (n_shared, n_plain) == (9, 12)
    for a, b in zip(r_shared, r_plain):
        assert a.d_loss == pytest.approx(b.d_loss, rel=1e-5) and a.g_loss == pytest.approx(b.g_loss, rel=1e-5)
        assert a.extras["penalty_r1"] == pytest.approx(b.extras["penalty_r1"], rel=1e-4)
    # Not G's first bias: batch norm right after it makes its true gradient zero, and
    # Adam turns the rounding noise left there into steps of size lr (the running mean
    # follows it); every weight that matters agrees.
    noise = {"generator.0.bias", "generator.1.running_mean"}
    for k, v in plain.state_dict().items():
        if k not in noise:
            np.testing.assert_allclose(shared.state_dict()[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


class PerturbedR1(R1):
    meta = RegularizerMeta(evaluated_at="real", formula="", paper="")

    def __call__(self, ops, discriminator, real, fake):
        return 5.0 * ops.mean(ops.batch_sum_squares(ops.input_grad(discriminator, real + 0.1)))


def test_penalty_at_other_samples_gets_its_own_forward():
    # Samples that only look like the real batch (a new tensor) are evaluated afresh.
    t = make(regularizers={"r1": PerturbedR1()})
    assert t._share_real_forward
    assert _d_forwards(t)[0] == 4


@pytest.mark.parametrize("layer", [BatchNorm(), Dropout(rate=0.5)])
def test_no_sharing_where_a_second_forward_differs(layer):
    # Batch-norm statistics (buffers) and dropout masks make each forward its own.
    d = NetSpec(name="d", input_shape=(2,), layers=[Dense(units=16), layer, Activation(fn="leaky_relu"),
                                                     Dense(units=1)])
    t = TorchBackend().build_trainer(dataclasses.replace(make().setup, discriminator=d, initial_weights=None))
    assert not t._share_real_forward
    assert _d_forwards(t)[0] == 4


def test_no_sharing_without_a_penalty_at_real_samples():
    assert not make(regularizers={})._share_real_forward


def test_sample_generate_discriminate_are_eval_mode_numpy():
    t = make()
    t.train_step(REAL[:1])
    s1, s2 = t.sample(6, seed=5), t.sample(6, seed=5)
    assert s1.shape == (6, 2) and s1.dtype == np.float32
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(t.sample(6), t.sample(6))
    z = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(t.generate(z)[:1], t.generate(z[:1]), rtol=1e-6)  # eval: no batch statistics
    assert t.discriminate(REAL[0]).shape == (8,)
    assert t.nets["generator"].training and t.nets["discriminator"].training


def test_uniform_latents_lie_in_minus_one_one():
    z = make(latent_distribution="uniform")._latent(2000).numpy()
    assert z.min() >= -1 and z.max() < 1 and z.min() < -0.95 and z.max() > 0.95


def test_state_dict_round_trip_between_trainers():
    a = make(seed=0)
    a.train_step(REAL[:1])
    b = make(seed=1)
    b.load_state_dict(a.state_dict())
    x = REAL[0]
    np.testing.assert_array_equal(a.discriminate(x), b.discriminate(x))
    z = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(a.generate(z), b.generate(z))
    assert all(v.dtype == np.float32 for v in a.state_dict().values())


def test_load_state_dict_rejects_foreign_names_and_shapes_changing_nothing():
    t = make()
    good = t.state_dict()
    bad = dict(good, **{"generator.0.weight": np.zeros((16, 4), np.float32)})
    bad["discriminator.0.bias"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"generator\.0\.weight has shape \(16, 4\) but the model expects \(4, 16\)"):
        t.load_state_dict(bad)
    with pytest.raises(CheckpointError, match="encoder.0.weight"):
        t.load_state_dict(dict(good, **{"encoder.0.weight": np.zeros(1)}))
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(v, good[k])


def test_optimizer_state_round_trip_resumes_identically():
    # With a zero loss the D update depends only on weights, Adam moments and the real
    # batch (the R1 penalty), not on the noise: resumed and original runs must agree.
    a = make(loss=NoLoss(), n_critic=2)
    a.train_step(REAL[:2])
    state = a.optimizer_state()
    assert int(state["d_optimizer.step"]) == 2 and int(state["g_optimizer.step"]) == 1
    assert state["d_optimizer.0.weight.exp_avg"].shape == (2, 16)  # canonical (in, out)
    resumed, fresh = make(seed=5, loss=NoLoss()), make(seed=5, loss=NoLoss())
    for t in (resumed, fresh):
        t.load_state_dict(a.state_dict())
    resumed.load_optimizer_state(state)
    for t in (a, resumed, fresh):
        t.discriminator_step(REAL[0])
    pa, pr, pf = (t.parameters_of("discriminator") for t in (a, resumed, fresh))
    for k in pa:
        np.testing.assert_array_equal(pr[k], pa[k])
    assert any(not np.array_equal(pf[k], pa[k]) for k in pa)  # without the moments it differs
    with pytest.raises(CheckpointError, match="missing d_optimizer.0.weight.exp_avg"):
        fresh.load_optimizer_state({k: v for k, v in state.items() if k != "d_optimizer.0.weight.exp_avg"})


def test_setup_mismatches_are_config_errors():
    with pytest.raises(gankit.ConfigError, match="latent_dim is 5"):
        TorchTrainer(TrainSetup(generator=G_SPEC, discriminator=D_SPEC, loss=NonSaturating(), regularizers={},
                                g_optimizer=OptimizerSettings("adam", 1e-3), d_optimizer=OptimizerSettings("adam", 1e-3),
                                latent_dim=5, batch_size=8))


def test_compiled_step_matches_eager():
    # backend="eager" runs dynamo's graph capture without inductor codegen: fast, and it
    # checks the wiring (compiled nets, eager D for the double-backward penalty).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            compiled = make(compile=True, extras={"torch_compile": {"backend": "eager"}})
            rc = [compiled.train_step(REAL[:1]) for _ in range(2)]
        except Exception as exc:  # pragma: no cover - depends on the machine
            pytest.skip(f"torch.compile does not work here: {type(exc).__name__}: {exc}")
    failed = [w for w in caught if "torch.compile could not compile" in str(w.message)]
    if failed:
        pytest.skip(f"torch.compile does not work here: {failed[0].message}")
    eager = make()
    re_ = [eager.train_step(REAL[:1]) for _ in range(2)]
    for a, b in zip(rc, re_):
        assert a.d_loss == pytest.approx(b.d_loss, rel=1e-5) and a.g_loss == pytest.approx(b.g_loss, rel=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("GANKIT_TEST_INDUCTOR"),
                    reason="inductor compiles for about a minute on CPU; set GANKIT_TEST_INDUCTOR=1 to run")
def test_inductor_compiled_step_matches_eager():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent fallback to eager
        compiled = [make(compile=True).train_step(REAL[:1]) for _ in range(1)]
    eager = [make().train_step(REAL[:1])]
    for a, b in zip(compiled, eager):
        assert a.d_loss == pytest.approx(b.d_loss, rel=1e-5) and a.g_loss == pytest.approx(b.g_loss, rel=1e-5)
