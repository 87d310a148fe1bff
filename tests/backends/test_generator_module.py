"""``gankit.generator`` / ``run.generator()``: the trained generator as each framework's own
object (torch.nn.Module, tf.Module, a jax function with its params), computing what the
trainer samples, as a copy the trainer's further training leaves alone."""

import numpy as np
import pytest

import gankit
from gankit.conformance.training import DISCRIMINATOR, GENERATOR, StepLoss, real_data
from gankit.errors import PluginError
from gankit.initializers import initial_weights
from gankit.protocol import OptimizerSettings, TrainSetup


def trainer(backend):
    setup = TrainSetup(generator=GENERATOR, discriminator=DISCRIMINATOR, loss=StepLoss(), regularizers={},
                       g_optimizer=OptimizerSettings("sgd", 0.1), d_optimizer=OptimizerSettings("sgd", 0.1),
                       latent_dim=4, batch_size=16, device="cpu", ema_decay=0.5,
                       initial_weights=initial_weights(GENERATOR, DISCRIMINATOR, "default", 0))
    t = gankit.get_backend(backend).build_trainer(setup)
    t.train_step(real_data())
    return t


def call(backend, gen, z):
    if backend == "torch":
        import torch

        assert isinstance(gen, torch.nn.Module) and not gen.training
        with torch.no_grad():
            return gen(torch.from_numpy(z)).numpy()
    if backend == "tensorflow":
        import tensorflow as tf

        assert isinstance(gen, tf.Module) and gen.trainable_variables
        return tf.function(gen)(tf.constant(z)).numpy()  # usable inside a traced function
    import jax

    assert set(gen.params) == set(GENERATOR.parameter_shapes())
    return np.asarray(jax.jit(gen.apply)(gen.params, gen.buffers, z))


@pytest.mark.parametrize("backend", ["torch", "tensorflow", "jax"])
def test_the_generator_is_the_frameworks_own_and_a_copy(backend):
    pytest.importorskip(backend)
    t = trainer(backend)
    z = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    gen = gankit.generator(t)
    expected = t.generate(z)  # the EMA generator, eval mode
    np.testing.assert_allclose(call(backend, gen, z), expected, rtol=1e-5, atol=1e-6)
    t.train_step(real_data(seed=1))  # the trainer moves on; the module keeps its weights
    assert not np.allclose(t.generate(z), expected)
    np.testing.assert_allclose(call(backend, gen, z), expected, rtol=1e-5, atol=1e-6)


def test_run_and_loaded_checkpoint_hand_out_their_generator(tmp_path):
    pytest.importorskip("jax")
    run = gankit.train(preset="ring8", overrides=["backend=jax", "training.steps=2", "training.threads=1",
                                                  f"output.dir={tmp_path}", "output.name=r",
                                                  "training.tensorboard=false"])
    z = np.random.default_rng(2).normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(run.generator()(z)), run.trainer.generate(z), rtol=1e-6)
    loaded = gankit.load_checkpoint(run.directory)
    np.testing.assert_allclose(np.asarray(gankit.generator(loaded)(z)), run.trainer.generate(z), rtol=1e-6)
    with pytest.raises(PluginError, match="holds no trainer"):
        gankit.generator(object())
