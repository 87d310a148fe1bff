"""BaseTrainer's optional hooks, on the fake numpy backend: ``sync_buffers`` once per training
step between the generator update and the EMA, and ``native_weights`` asked for the initial
weights of a setup's native nets only when the backend implements it."""

import numpy as np
import pytest

from gankit import Activation, Dense, Loss, LossMeta, NetSpec, OptimizerSettings, TrainSetup
from gankit.backend_contract import TrainerPrimitives, members
from gankit.trainer import BaseTrainer

import fake_backend


class NonSaturating(Loss):
    meta = LossMeta(family="minimax", saturating=False, properties=(), formula="", paper="")

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(-fake_logits))


class Recording(fake_backend.NumpyTrainer):
    """The fake trainer, writing down which primitive ran when."""

    def build(self):
        super().build()
        self.calls = []

    def d_update(self, *args):
        self.calls.append("d")
        return super().d_update(*args)

    def g_update(self, *args):
        self.calls.append("g")
        return super().g_update(*args)

    def update_ema(self, decay):
        self.calls.append("ema")
        super().update_ema(decay)

    def sync_buffers(self):
        self.calls.append("sync")


def setup(**kw):
    g = NetSpec(name="g", input_shape=(2,), layers=[Dense(units=8), Activation(fn="relu"), Dense(units=2)])
    d = NetSpec(name="d", input_shape=(2,), layers=[Dense(units=8), Activation(fn="leaky_relu"), Dense(units=1)])
    return TrainSetup(generator=g, discriminator=d, loss=NonSaturating(), regularizers={},
                      g_optimizer=OptimizerSettings("sgd", 0.01), d_optimizer=OptimizerSettings("sgd", 0.01),
                      latent_dim=2, batch_size=4, **kw)


REAL = np.random.default_rng(0).normal(size=(2, 4, 2)).astype(np.float32)


def test_hooks_are_optional_members_of_the_contract():
    primitives = members(TrainerPrimitives)
    assert primitives["sync_buffers"] and primitives["native_weights"]
    assert BaseTrainer.sync_buffers is not TrainerPrimitives.sync_buffers  # a default that does nothing
    assert not hasattr(BaseTrainer, "native_weights") or BaseTrainer.native_weights is TrainerPrimitives.native_weights


@pytest.mark.parametrize("ema", [0.0, 0.5])
def test_buffers_are_synced_once_per_step_after_the_generator_update_before_the_ema(ema):
    t = Recording(setup(n_critic=2, ema_decay=ema))
    t.train_step(REAL)
    t.train_step(REAL)
    step = ["d", "d", "g", "sync"] + (["ema"] if ema else [])
    assert t.calls == step * 2


def test_single_updates_do_not_sync():
    t = Recording(setup())
    t.discriminator_step(REAL[0])
    t.generator_step(4)
    assert t.calls == ["d", "g"]


def test_native_weights_is_not_asked_for_spec_built_nets():
    class Asking(fake_backend.NumpyTrainer):
        def native_weights(self, spec, seed):
            raise AssertionError("asked for the weights of a spec-built net")

    Asking(setup()).train_step(REAL[0])
