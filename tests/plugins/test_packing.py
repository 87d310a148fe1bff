"""PacGAN packing (Lin et al. 2018): a flat-input discriminator judges packs of m samples;
its loss and penalties see packs; batch sizes that do not divide are refused in one line."""

import numpy as np
import pytest

import gankit
from gankit import ConfigError, DataError, NumpyOps, OptimizerSettings, TrainSetup
from gankit.nets import pack_samples

MLP = gankit.get_registry().get("architecture", "mlp").record


def _specs(pack, data_shape=(2,), hidden=(8, 8)):
    g = MLP.factory(MLP.params(hidden=list(hidden)), role="generator", input_shape=(3,), output_shape=data_shape)
    d = MLP.factory(MLP.params(hidden=list(hidden), activation="leaky_relu", pack=pack), role="discriminator",
                    input_shape=data_shape, output_shape=(1,))
    return g, d


def test_packed_mlp_spec():
    _, d = _specs(4)
    assert d.pack == 4 and d.input_shape == (2,) and d.output_shape == (1,)
    assert d.parameter_shapes()["0.weight"] == (8, 8)  # the first layer reads 4 samples of 2
    _, img = _specs(3, data_shape=(1, 4, 4))
    assert img.shapes()[0] == (48,) and img.layers[0].kind == "dense"  # a pack arrives flat: no flatten
    with pytest.raises(ValueError, match="applies to the discriminator"):
        MLP.factory(MLP.params(pack=2), role="generator", input_shape=(3,), output_shape=(2,))
    with pytest.raises(ValueError, match="cannot read class labels"):
        gankit.NetSpec(input_shape=(4,), pack=2, layers=[gankit.OneHot(num_classes=3), gankit.Dense(units=1)])


def test_pack_samples_puts_consecutive_samples_side_by_side():
    x = np.arange(24.0).reshape(6, 2, 2)
    packed = pack_samples(NumpyOps(), x, 3)
    np.testing.assert_array_equal(packed, x.reshape(2, 12))
    np.testing.assert_array_equal(packed[1, :4], x[3].ravel())
    assert pack_samples(NumpyOps(), x, 1) is x
    with pytest.raises(DataError, match="a batch of 6 samples does not divide into packs of 4"):
        pack_samples(NumpyOps(), x, 4)


def _mlp_forward(weights, x, prefix="discriminator."):
    """The packed MLP discriminator in numpy: dense, leaky ReLU 0.2, ..., dense."""
    dense = sorted(int(k[len(prefix):].split(".")[0]) for k in weights if k.startswith(prefix) and k.endswith(".weight"))
    h = x
    for j, i in enumerate(dense):
        h = h @ weights[f"{prefix}{i}.weight"] + weights[f"{prefix}{i}.bias"]
        if j < len(dense) - 1:
            h = np.where(h > 0, h, 0.2 * h)
    return h.reshape(-1)


def _static(x):
    """The shape of a tensor, None where unknown (TensorFlow traces the batch axis)."""
    return tuple(None if d is None else int(d) for d in x.shape)


class Recording(gankit.Regularizer):
    """The WGAN-GP penalty, recording the batches it is given."""

    meta = gankit.RegularizerMeta(evaluated_at="interpolates", formula="", paper="")

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def __call__(self, ops, discriminator, real, fake):
        self.seen.append(tuple(_static(x) for x in (real, fake, discriminator(real))))
        return self.inner(ops, discriminator, real, fake)


def _trainer(backend, pack, batch=12, regularizer=None):
    pytest.importorskip(backend)
    reg = gankit.get_registry()
    g, d = _specs(pack)
    loss = reg.get("loss", "wasserstein").record
    gp = reg.get("regularizer", "gradient_penalty").record
    recorder = regularizer or Recording(gp.factory(gp.params()))
    setup = TrainSetup(generator=g, discriminator=d, loss=loss.factory(loss.params()), regularizers={"gp": recorder},
                       g_optimizer=OptimizerSettings(name="adam", lr=1e-3), d_optimizer=OptimizerSettings(name="adam", lr=1e-3),
                       latent_dim=3, batch_size=batch, seed=0, threads=1)
    return reg.backend(backend).build_trainer(setup), recorder


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_packed_discriminator_loss_and_penalties_see_packs(backend):
    trainer, recorder = _trainer(backend, pack=3)
    x = np.random.default_rng(0).normal(size=(12, 2)).astype(np.float32)
    logits = trainer.discriminate(x)
    assert logits.shape == (4,)  # one logit per pack of 3
    np.testing.assert_allclose(logits, _mlp_forward(trainer.state_dict(), x.reshape(4, 6)), rtol=1e-4, atol=1e-5)
    result = trainer.train_step(x[None])
    assert result.is_finite() and "penalty_gp" in result.extras
    # The penalty got packs (4 of 3 x 2 coordinates) and a discriminator over packs, so its
    # gradient norm is taken per pack, as in PacGAN.
    n = 4 if backend == "torch" else None  # TensorFlow traces the batch axis
    assert recorder.seen[-1] == ((n, 6), (n, 6), (n,))


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_batches_that_do_not_divide_are_refused_before_any_update(backend):
    trainer, _ = _trainer(backend, pack=4, batch=12)
    before, step = trainer.state_dict(), trainer.step_count
    x = np.zeros((1, 10, 2), np.float32)
    with pytest.raises(DataError, match="does not divide into the discriminator's packs of 4"):
        trainer.train_step(x)
    with pytest.raises(DataError, match="packs of 4"):
        trainer.discriminate(x[0, :6])
    assert trainer.step_count == step
    for k, v in trainer.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ConfigError, match="batch_size 10 does not divide into the discriminator's packs of 4"):
        _trainer(backend, pack=4, batch=10)


@pytest.mark.parametrize("extra, message", [
    (["training.batch_size=30"], "batch_size 30 does not divide into the discriminator's packs of 4"),
    (["sampling.rejection=drs"], "sampling.rejection = 'drs' needs a logit per sample"),
    (["generator.params.pack=4"], "generator 'mlp': pack = 4 applies to the discriminator"),
])
def test_config_refusals_are_one_line(tmp_path, extra, message):
    pytest.importorskip("torch")
    with pytest.raises(ConfigError, match=message):
        gankit.train(preset="ring8", overrides=["discriminator.params.pack=4", "training.steps=2",
                                                 f"output.dir={tmp_path}", *extra])


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_training_with_packing(tmp_path, backend):
    pytest.importorskip(backend)
    tiny = ["training.batch_size=32", "training.num_samples=64", "generator.params.hidden=[16]",
            "discriminator.params.hidden=[16]", "training.tensorboard=false", "training.threads=1"]
    run = gankit.train(preset="ring8", overrides=[*tiny, "discriminator.params.pack=4", "training.steps=3",
                                                  f"backend={backend}", f"output.dir={tmp_path}"])
    assert run.trainer.discriminate(np.zeros((8, 2), np.float32)).shape == (2,)
    assert np.isfinite(run.metrics["d_loss"])
