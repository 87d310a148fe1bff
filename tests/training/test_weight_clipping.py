"""WGAN weight clipping (``clip_weights`` on an optimizer) on every backend: the clipped
network's parameters stay in [-c, c] after every update, its buffers and the other
network are untouched, and otherwise the update is the unclipped one."""

import numpy as np
import pytest

import gankit
from gankit import Activation, BatchNorm, Dense, Loss, LossMeta, NetSpec, OptimizerSettings, SpectralNorm, TrainSetup


class Wasserstein(Loss):
    meta = LossMeta(family="ipm", saturating=False, properties=(), formula="", paper="")

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(fake_logits) - ops.mean(real_logits)

    def generator(self, ops, fake_logits, real_logits=None):
        return -ops.mean(fake_logits)


G = NetSpec(name="g", input_shape=(4,), layers=[Dense(units=16), Activation(fn="relu"), Dense(units=2)])
# Batch norm (learned scale and shift: parameters; running statistics: buffers) and a
# spectrally normalised layer (its u: a buffer) in the critic.
D = NetSpec(name="d", input_shape=(2,), layers=[
    Dense(units=16), BatchNorm(), Activation(fn="leaky_relu"),
    Dense(units=16, spectral_norm=SpectralNorm()), Activation(fn="leaky_relu"), Dense(units=1)])
REAL = np.random.default_rng(0).normal(size=(8, 16, 2)).astype(np.float32) * 3 + 2
C = 0.01


def trainer(backend_name, d_opt, n_critic=1, g_opt=None):
    setup = TrainSetup(generator=G, discriminator=D, loss=Wasserstein(), regularizers={},
                       g_optimizer=g_opt or OptimizerSettings("rmsprop", 1e-2), d_optimizer=d_opt,
                       latent_dim=4, batch_size=16, n_critic=n_critic, seed=0, device="cpu",
                       initial_weights=gankit.initial_weights(G, D, "default", 0))
    return gankit.get_backend(backend_name).build_trainer(setup)


def buffers(t, role="discriminator"):
    params = set(t.parameters_of(role))
    return {k: v for k, v in t.state_dict().items() if k.startswith(role + ".") and k[len(role) + 1:] not in params}


def test_every_critic_parameter_stays_within_c_and_nothing_else_is_clipped(backend_name):
    t = trainer(backend_name, OptimizerSettings("rmsprop", 5e-2, clip_weights=C), n_critic=3)
    initial = t.parameters_of("discriminator")
    assert max(float(np.abs(v).max()) for v in initial.values()) > 10 * C  # clipping has work to do
    for batch in REAL[:4].reshape(4, 1, 16, 2).repeat(3, axis=1):
        t.train_step(batch)
        d = t.parameters_of("discriminator")
        for name, value in d.items():
            assert np.all(np.abs(value) <= C * (1 + 1e-6)), name
    # the clip binds (weights sit at the bound) yet the critic still learns inside the box
    assert any(np.any(np.isclose(np.abs(v), C)) for v in d.values())
    assert any(np.any(np.abs(v) < C * 0.99) for v in d.values())
    # the generator is not clipped, nor are the critic's buffers (batch-norm statistics,
    # spectral norm's u), which no optimizer moves
    assert max(float(np.abs(v).max()) for v in t.parameters_of("generator").values()) > 10 * C
    kept = buffers(t)
    assert any("running_var" in k for k in kept) and any(k.endswith(".u") or "_u" in k for k in kept), kept.keys()
    assert max(float(np.abs(v).max()) for v in kept.values()) > 10 * C


def test_a_clipped_update_is_the_unclipped_update_then_clamped(backend_name):
    """One critic update: the same gradients, the same optimizer state, the weights the
    unclipped optimizer wrote, clamped to [-c, c]; the generator identical."""
    plain = trainer(backend_name, OptimizerSettings("rmsprop", 5e-2))
    clipped = trainer(backend_name, OptimizerSettings("rmsprop", 5e-2, clip_weights=C))
    loss_plain = plain.discriminator_step(REAL[0])
    loss_clipped = clipped.discriminator_step(REAL[0])
    assert loss_clipped == pytest.approx(loss_plain, rel=1e-6)
    a, b = plain.parameters_of("discriminator"), clipped.parameters_of("discriminator")
    assert any(np.any(np.abs(v) > C) for v in a.values())
    for name in a:
        np.testing.assert_allclose(b[name], np.clip(a[name], -C, C), rtol=0, atol=1e-7, err_msg=name)
    for name, value in plain.optimizer_state().items():
        np.testing.assert_array_equal(clipped.optimizer_state()[name], value, err_msg=name)
    for name, value in plain.parameters_of("generator").items():
        np.testing.assert_array_equal(clipped.parameters_of("generator")[name], value, err_msg=name)
    for name, value in buffers(plain).items():
        np.testing.assert_allclose(buffers(clipped)[name], value, rtol=1e-6, atol=1e-7, err_msg=name)


def test_a_bound_no_weight_reaches_changes_nothing(backend_name):
    plain = trainer(backend_name, OptimizerSettings("rmsprop", 1e-3), n_critic=2)
    loose = trainer(backend_name, OptimizerSettings("rmsprop", 1e-3, clip_weights=1e3), n_critic=2)
    for batch in REAL[:6].reshape(3, 2, 16, 2):
        plain.train_step(batch)
        loose.train_step(batch)
    for name, value in plain.state_dict().items():
        np.testing.assert_array_equal(loose.state_dict()[name], value, err_msg=name)
    for name, value in plain.optimizer_state().items():
        np.testing.assert_array_equal(loose.optimizer_state()[name], value, err_msg=name)


def test_clipping_the_generator_optimizer_clips_the_generator(backend_name):
    t = trainer(backend_name, OptimizerSettings("rmsprop", 5e-2),
                g_opt=OptimizerSettings("rmsprop", 5e-2, clip_weights=C))
    t.train_step(REAL[:1])
    assert all(np.all(np.abs(v) <= C * (1 + 1e-6)) for v in t.parameters_of("generator").values())
    assert max(float(np.abs(v).max()) for v in t.parameters_of("discriminator").values()) > 10 * C


@pytest.mark.parametrize("value", ["0", "-0.01"])
def test_clip_weights_must_be_positive(value):
    with pytest.raises(gankit.ConfigError, match="clip_weights"):
        gankit.load_config(preset="ring8", overrides=[f"optimizers.discriminator.clip_weights={value}"])


def test_clip_weights_reaches_the_backend_from_the_config():
    cfg = gankit.load_config(preset="mnist_wgan")
    assert cfg.optimizers.discriminator.clip_weights == 0.01
    assert cfg.optimizers.discriminator.settings().clip_weights == 0.01
    assert cfg.optimizers.generator.settings().clip_weights is None
