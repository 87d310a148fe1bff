"""The jax trainer: optimizers with torch's numbers, the jitted step and its counted-out
updates, schedules, weight clipping, precision, refusals in one line, the generator as a
jax function."""

import warnings

import numpy as np
import pytest

pytestmark = [pytest.mark.jax]
jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

import gankit  # noqa: E402
from gankit.conformance.training import DISCRIMINATOR, GENERATOR, StepLoss, StepPenalty, real_data  # noqa: E402
from gankit.errors import ConfigError  # noqa: E402
from gankit.initializers import initial_weights  # noqa: E402
from gankit.protocol import OptimizerSettings, TrainSetup, WeightSchedule  # noqa: E402
from gankit_jax import distributed, optim  # noqa: E402
from gankit_jax.backend import JaxBackend  # noqa: E402
from gankit_jax.device import resolve_device, set_threads  # noqa: E402


def setup(**kw):
    opts = dict(g_optimizer=OptimizerSettings("adam", 1e-3), d_optimizer=OptimizerSettings("adam", 1e-3))
    base = dict(generator=GENERATOR, discriminator=DISCRIMINATOR, loss=StepLoss(), regularizers={"r1": StepPenalty()},
                latent_dim=4, batch_size=16, device="cpu", initial_weights=initial_weights(GENERATOR, DISCRIMINATOR,
                                                                                          "default", 0))
    return TrainSetup(**{**base, **opts, **kw})


@pytest.fixture(scope="module")
def backend():
    return JaxBackend()


SETTINGS = [
    OptimizerSettings("adam", 0.01, betas=(0.5, 0.9), weight_decay=0.1, clip_grad_norm=0.5),
    OptimizerSettings("adamw", 0.01, weight_decay=0.3),
    OptimizerSettings("rmsprop", 0.01, momentum=0.9, weight_decay=0.05, eps=1e-6),
    OptimizerSettings("rmsprop", 0.003),
    OptimizerSettings("sgd", 0.1, momentum=0.8, weight_decay=0.01, clip_grad_norm=0.1),
    OptimizerSettings("sgd", 0.1),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s.name}-wd{s.weight_decay}-m{s.momentum}")
def test_optimizers_take_torch_optims_steps_and_share_its_state(settings):
    torch = pytest.importorskip("torch")
    from gankit_torch.optim import build_optimizer
    from gankit_torch.update import export_optimizer_state

    rng = np.random.default_rng(0)
    w0 = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=(4,)).astype(np.float32)}
    grads = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in w0.items()} for _ in range(4)]
    tp = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in w0.items()}
    topt = build_optimizer(tp.values(), settings)
    opt, state = optim.build_optimizer(w0, settings)
    params = {k: jnp.asarray(v) for k, v in w0.items()}
    for g in grads:
        for k, p in tp.items():
            p.grad = torch.from_numpy(g[k].copy())
        if settings.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(list(tp.values()), settings.clip_grad_norm)
        topt.step()
        params, state = opt.update({k: jnp.asarray(v) for k, v in g.items()}, state, params, settings.lr)
    for k in w0:
        np.testing.assert_allclose(np.asarray(params[k]), tp[k].detach().numpy(), rtol=2e-5, atol=2e-6, err_msg=k)
    want = export_optimizer_state(topt, settings, tp, set(), 4)
    got = opt.export_state(state)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=1e-7, err_msg=k)
    again = opt.export_state(opt.load_state(params, want))  # torch's state loads and exports unchanged
    for k in want:
        np.testing.assert_allclose(again[k], want[k], rtol=1e-7, err_msg=k)


def test_weight_clipping_clamps_parameters_after_the_update_and_keeps_the_slots():
    s = OptimizerSettings("rmsprop", 0.05, clip_weights=0.01)
    w = {"a": jnp.asarray(np.linspace(-0.5, 0.5, 12, dtype=np.float32).reshape(3, 4))}
    g = {"a": jnp.ones((3, 4), jnp.float32)}
    opt, state = optim.build_optimizer(w, s)
    clipped, st1 = opt.update(g, state, w, s.lr)
    free = optim.Optimizer(OptimizerSettings("rmsprop", 0.05))
    unclipped, st2 = free.update(g, free.init(w), w, s.lr)
    np.testing.assert_array_equal(np.asarray(clipped["a"]), np.clip(np.asarray(unclipped["a"]), -0.01, 0.01))
    np.testing.assert_array_equal(opt.export_state(st1)["a.square_avg"], free.export_state(st2)["a.square_avg"])


def test_counted_out_updates_repeat_a_step_and_seeds_repeat(backend):
    batches = real_data(batches=2)
    stepped = backend.build_trainer(setup(n_critic=2, seed=5))
    result = stepped.train_step(batches)
    manual = backend.build_trainer(setup(n_critic=2, seed=5))
    d0 = manual.discriminator_step(batches[0])
    manual.discriminator_step(batches[1])
    manual.generator_step(16)
    for k, v in stepped.state_dict().items():
        np.testing.assert_allclose(manual.state_dict()[k], v, rtol=1e-6, atol=1e-7, err_msg=k)
    assert result.step == 1 and set(result.extras) == {"penalty_r1", "real_logit", "fake_logit"}
    assert np.isfinite(d0) and result.is_finite()
    again = backend.build_trainer(setup(n_critic=2, seed=5)).train_step(batches)
    assert again == result


def test_schedules_reach_the_compiled_step_without_recompiling(backend):
    # D's learning rate 0 keeps D, so R1 on a fixed real batch is the same raw value each step
    # and the reported (weighted) penalty follows its linear schedule: 1, 0.75, 0.5, 0.25.
    s = setup(total_steps=4, g_optimizer=OptimizerSettings("sgd", 0.1, schedule="linear", final_lr_fraction=0.0),
              d_optimizer=OptimizerSettings("sgd", 0.0), regularizer_schedules={"r1": WeightSchedule("linear", 0.0)})
    t = backend.build_trainer(s)
    lrs, penalties = [], []
    for _ in range(4):
        lrs.append(t.learning_rates()["generator"])
        penalties.append(t.train_step(real_data()).extras["penalty_r1"])
    np.testing.assert_allclose(lrs, [0.1, 0.075, 0.05, 0.025], rtol=1e-12)
    assert penalties[0] > 0
    np.testing.assert_allclose(penalties, penalties[0] * np.array([1.0, 0.75, 0.5, 0.25]), rtol=1e-5)
    assert t._step_fn._cache_size() == 1  # one compilation for every learning rate and factor


def test_ema_copies_then_averages(backend):
    t = backend.build_trainer(setup(ema_decay=0.5, ema_start=1))
    t.train_step(real_data())
    state = t.state_dict()
    for k in GENERATOR.parameter_shapes():
        np.testing.assert_array_equal(state[f"generator_ema.{k}"], state[f"generator.{k}"])
    before = {k: state[f"generator_ema.{k}"] for k in GENERATOR.parameter_shapes()}
    t.train_step(real_data(seed=1))
    after = t.state_dict()
    for k in GENERATOR.parameter_shapes():
        np.testing.assert_allclose(after[f"generator_ema.{k}"], 0.5 * before[k] + 0.5 * after[f"generator.{k}"],
                                   rtol=1e-6, atol=1e-7)
    z = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    gen = backend.generator_module(t)  # the sampling (EMA) generator as a jax function
    np.testing.assert_allclose(np.asarray(gen(z)), t.generate(z), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(gen.apply)(gen.params, gen.buffers, z)), t.generate(z), rtol=1e-6)


def test_bfloat16_trains_close_to_float32(backend):
    full, low = backend.build_trainer(setup()), backend.build_trainer(setup(precision="bfloat16"))
    a, b = full.train_step(real_data()), low.train_step(real_data())
    assert b.is_finite() and a.d_loss == pytest.approx(b.d_loss, rel=0.05)
    assert a.d_loss != b.d_loss
    assert all(v.dtype == np.float32 for v in low.state_dict().values())


@pytest.mark.parametrize("kw, match", [
    (dict(precision="float16"), "float16 needs a CUDA GPU"),
    (dict(world_size=2, batch_size=16), "trains in one process"),
    (dict(device="banana"), "unknown device 'banana'"),
    (dict(n_critic=0), "n_critic must be at least 1"),
])
def test_refusals_are_one_line(backend, kw, match):
    with pytest.raises(ConfigError, match=match) as err:
        backend.build_trainer(setup(**kw))
    assert "\n" not in str(err.value)


def test_data_parallel_modes_are_refused_in_one_line(monkeypatch):
    assert distributed.init("auto").world_size == 1 and distributed.init("off").world_size == 1
    with pytest.raises(ConfigError, match="mirrored.*one process"):
        distributed.init("mirrored")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match="4 processes were launched"):
        distributed.init("auto")
    assert distributed.init("off").world_size == 1


def test_devices_fall_back_with_a_warning():
    with pytest.warns(RuntimeWarning, match="falling back to cpu"):
        assert resolve_device("mps").platform == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device("cpu").platform == "cpu"


def test_threads_after_the_runtime_started_warn(monkeypatch):
    jnp.zeros(1).block_until_ready()  # the runtime runs
    monkeypatch.setenv("XLA_FLAGS", "")
    with pytest.warns(RuntimeWarning, match="set XLA_FLAGS"):
        set_threads(1)
    set_threads(None)  # nothing asked, nothing said
