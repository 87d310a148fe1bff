"""Training features on both backends: schedules, clipping, EMA, mixed precision."""

import math

import numpy as np
import pytest

import gankit
from gankit import Activation, BatchNorm, Dense, Loss, LossMeta, NetSpec, OptimizerSettings, TrainSetup


class NonSaturating(Loss):
    meta = LossMeta(family="minimax", saturating=False, properties=(), formula="", paper="")

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(-fake_logits))


G = NetSpec(name="g", input_shape=(4,), layers=[Dense(units=16), BatchNorm(), Activation(fn="relu"), Dense(units=2)])
D = NetSpec(name="d", input_shape=(2,), layers=[Dense(units=16), Activation(fn="leaky_relu"), Dense(units=1)])
REAL = np.random.default_rng(0).normal(size=(12, 1, 16, 2)).astype(np.float32) + 2


def trainer(backend_name, g_opt=None, d_opt=None, **kw):
    setup = TrainSetup(generator=G, discriminator=D, loss=NonSaturating(), regularizers={},
                       g_optimizer=g_opt or OptimizerSettings("adam", 1e-2), d_optimizer=d_opt or OptimizerSettings("adam", 1e-2),
                       latent_dim=4, batch_size=16, seed=0, device="cpu",
                       initial_weights=gankit.initial_weights(G, D, "default", 0), **kw)
    return gankit.get_backend(backend_name).build_trainer(setup)


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_schedule_formula(schedule):
    s = OptimizerSettings("adam", 1.0, schedule=schedule, final_lr_fraction=0.1)
    lrs = [s.lr_at(i, 10) for i in range(12)]
    assert lrs[0] == 1.0
    if schedule == "constant":
        assert lrs == [1.0] * 12
    else:
        assert lrs[10] == pytest.approx(0.1) and lrs[11] == pytest.approx(0.1)  # held after the end
        assert all(a >= b for a, b in zip(lrs, lrs[1:]))
        mid = 0.55 if schedule == "linear" else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2))
        assert lrs[5] == pytest.approx(mid)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_backends_follow_the_schedule(backend_name, schedule):
    """SGD without momentum: the update is exactly lr * grad, so the lr each step used
    can be read back from the parameters... here, compared with the trainer's own view
    and the optimizer's live value."""
    g = OptimizerSettings("sgd", 0.1, schedule=schedule, final_lr_fraction=0.0)
    d = OptimizerSettings("adam", 0.01, schedule="constant")
    t = trainer(backend_name, g, d, total_steps=4)
    for i in range(4):
        assert t.learning_rates() == {"generator": pytest.approx(g.lr_at(i, 4)), "discriminator": 0.01}
        t.train_step(REAL[i])
        if backend_name == "jax":
            continue  # no live value to read: jax's step takes the rate as a traced number
        live = (t.optimizers["generator"].param_groups[0]["lr"] if backend_name == "torch"
                else float(t.optimizers["generator"].lr.numpy()))
        assert live == pytest.approx(g.lr_at(i, 4), rel=1e-6)  # what step i used


def test_gradient_clipping_bounds_the_update(backend_name):
    clip = 1e-3
    opt = OptimizerSettings("sgd", 1.0, clip_grad_norm=clip)
    t = trainer(backend_name, opt, opt)
    before = {r: t.parameters_of(r) for r in ("generator", "discriminator")}
    t.train_step(REAL[0])
    for role in ("generator", "discriminator"):
        after = t.parameters_of(role)
        step = math.sqrt(sum(float(np.sum((after[k] - before[role][k]) ** 2)) for k in after))
        assert 0 < step <= clip * (1 + 1e-4), role


def test_ema_is_the_moving_average_of_the_generator(backend_name):
    decay, start = 0.75, 2
    t = trainer(backend_name, ema_decay=decay, ema_start=start)
    assert t.has_ema
    expected = {k[len("generator."):]: v for k, v in t.state_dict().items() if k.startswith("generator.")}
    for i in range(6):
        t.train_step(REAL[i])
        g = {k[len("generator."):]: v for k, v in t.state_dict().items() if k.startswith("generator.")}
        params = set(G.parameter_shapes())
        expected = {k: (g[k] if (i < start or k not in params) else decay * expected[k] + (1 - decay) * g[k])
                    for k in g}
    ema = {k[len("generator_ema."):]: v for k, v in t.state_dict().items() if k.startswith("generator_ema.")}
    assert ema.keys() == expected.keys()
    for k in ema:
        np.testing.assert_allclose(ema[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_sampling_uses_the_ema_generator(backend_name):
    t = trainer(backend_name, ema_decay=0.9)
    for i in range(4):
        t.train_step(REAL[i])
    z = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    plain = trainer(backend_name)
    state = t.state_dict()
    plain.load_state_dict({**{k: v for k, v in state.items() if not k.startswith("generator")},
                           **{"generator." + k[len("generator_ema."):]: v for k, v in state.items()
                              if k.startswith("generator_ema.")}})
    np.testing.assert_allclose(t.generate(z), plain.generate(z), rtol=1e-5, atol=1e-6)
    raw = trainer(backend_name)
    raw.load_state_dict({k: v for k, v in state.items() if not k.startswith("generator_ema.")})
    assert not np.allclose(t.generate(z), raw.generate(z))


def test_ema_starts_from_the_generator_when_the_weights_have_none(backend_name):
    t = trainer(backend_name, ema_decay=0.9)
    w = gankit.initial_weights(G, D, "normal", 3)
    t.load_state_dict(w)
    s = t.state_dict()
    for k in G.parameter_shapes():
        np.testing.assert_array_equal(s[f"generator_ema.{k}"], w[f"generator.{k}"])


def test_bfloat16_trains_on_torch_cpu():
    pytest.importorskip("torch")
    t = trainer("torch", precision="bfloat16")
    for i in range(3):
        r = t.train_step(REAL[i])
    assert r.is_finite()
    assert all(v.dtype == np.float32 for v in t.state_dict().values())  # master weights stay float32


@pytest.mark.parametrize("precision", ["float16"])
def test_float16_needs_a_gpu(backend_name, precision):
    with pytest.raises(gankit.ConfigError, match="float16|precision"):
        trainer(backend_name, precision=precision)
