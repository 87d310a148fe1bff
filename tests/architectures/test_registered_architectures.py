"""Every registered architecture, at small sizes: output shapes, the same parameter count
and the same function on torch and TensorFlow (generator and discriminator, eval and
training mode), and an exact round trip torch -> file -> tensorflow -> file -> torch."""

import math

import numpy as np
import pytest

pytestmark = [pytest.mark.torch, pytest.mark.tensorflow]
torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import gankit  # noqa: E402
from gankit import checkpoint  # noqa: E402
from gankit.initializers import initial_weights  # noqa: E402
from gankit.protocol import OptimizerSettings, TrainSetup  # noqa: E402
from pairs import Pair, assert_close  # noqa: E402

REGISTRY = gankit.get_registry()
LATENT = 8
#: Small widths for the built-ins, so the whole table runs in seconds; a third-party
#: architecture runs at its defaults.
SMALL = {
    "mlp": {"hidden": [8, 8], "norm": "batch"},
    "dcgan": {"base_channels": 4},
    "cdcgan": {"base_channels": 4, "embedding_dim": 3},
    "sngan_resnet": {"generator_channels": 8, "discriminator_channels": 8},
}
#: Data shapes per architecture (default: its conformance hint, else points).
SHAPES = {
    "mlp": [(2,), (1, 8, 8)],
    "dcgan": [(1, 28, 28), (3, 32, 32), (2, 64, 64)],
    "cdcgan": [(1, 28, 28), (3, 32, 32), (3, 64, 64)],
    "sngan_resnet": [(3, 32, 32), (1, 32, 32)],
}


def _cases():
    for name in REGISTRY.names("architecture"):
        record = REGISTRY.get("architecture", name).record
        hint = record.metadata.get("conformance", {})
        default = [tuple(hint["data_shape"])] if "data_shape" in hint else [(2,)]
        # A native architecture builds on its own backend only: nothing to compare here
        # (tests/architectures/test_native_architectures.py and the conformance suite check it).
        marks = [pytest.mark.skip(reason=f"single-backend: {name!r} builds on {', '.join(record.backends)} only")] \
            if not (record.builds_on("torch") and record.builds_on("tensorflow")) else []
        for shape in SHAPES.get(name, default):
            yield pytest.param(name, shape, id=f"{name}-{'x'.join(map(str, shape))}", marks=marks)


#: Other built-in designs behind a parameter: case name -> (architecture, params, shapes).
VARIANTS = {
    "dcgan_paper": ("dcgan", {"base_channels": 4, "style": "paper"}, [(1, 28, 28), (3, 28, 28)]),
    "cdcgan_paper": ("cdcgan", {"base_channels": 4, "embedding_dim": 3, "style": "paper"}, [(1, 28, 28)]),
    # The discriminator's normalisation (a WGAN-GP critic's layer norm, or none); the
    # generator keeps its batch norm.
    "dcgan_paper_layer_norm": ("dcgan", {"base_channels": 4, "style": "paper"}, [(1, 28, 28), (3, 32, 32)],
                               {"norm": "layer"}),
    "dcgan_paper_no_norm": ("dcgan", {"base_channels": 4, "style": "paper"}, [(1, 28, 28)], {"norm": "none"}),
}

CASES = list(_cases()) + [pytest.param(case, shape, id=f"{case}-{'x'.join(map(str, shape))}")
                          for case, (_, _, shapes, *_) in VARIANTS.items() for shape in shapes]


def specs(name, shape, num_classes=5):
    name, small, _, *d_only = VARIANTS.get(name, (name, SMALL.get(name, {}), None))
    record = REGISTRY.get("architecture", name).record
    params = record.params.model_validate(small)
    d_params = record.params.model_validate({**small, **(d_only[0] if d_only else {})})
    extra = {"num_classes": num_classes} if record.conditional else {}
    g = record.factory(params, role="generator", input_shape=(LATENT,), output_shape=shape, **extra)
    d = record.factory(d_params, role="discriminator", input_shape=shape, output_shape=(1,), **extra)
    return g, d


def batch(spec, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *spec.input_shape)).astype(np.float32)
    y = rng.integers(0, spec.num_classes, n).astype(np.int64) if spec.conditional else None
    return x, y


@pytest.mark.parametrize("name, shape", CASES)
def test_shapes_and_parameter_counts_agree(name, shape):
    g, d = specs(name, shape)
    assert g.output_shape == shape and g.input_shape == (LATENT,)
    assert math.prod(d.output_shape) == 1 and d.input_shape == shape
    for spec in (g, d):
        pair = Pair(spec)
        x, y = batch(spec)
        a, b, _, _ = pair.run(x, y)
        assert a.shape == b.shape == (4, *spec.output_shape)
        count = spec.parameter_count()
        assert count > 0
        assert sum(p.numel() for p in pair.torch.parameters()) == count
        assert sum(int(np.prod(v.shape)) for v in pair.tf.params.values()) == count


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name, shape", CASES)
def test_same_function_on_both_backends(name, shape, training):
    for spec in specs(name, shape):
        if training and any(layer.kind == "dropout" for _, layer, _ in spec.walk()):
            continue  # dropout masks differ by design: the same function in eval mode only
        pair = Pair(spec)
        x, y = batch(spec)
        a, b, state_t, state_f = pair.run(x, y, training=training)
        assert_close(a, b, f"{spec.name} ({'train' if training else 'eval'})", rtol=2e-4, atol=2e-5)
        for k in state_t:
            assert_close(state_t[k], state_f[k], f"{spec.name} {k}")


def _setup(g, d, seed=0):
    loss = REGISTRY.get("loss", "non_saturating").record
    return TrainSetup(generator=g, discriminator=d, loss=loss.factory(loss.params()), regularizers={},
                      g_optimizer=OptimizerSettings("adam", 1e-3), d_optimizer=OptimizerSettings("adam", 1e-3),
                      latent_dim=LATENT, batch_size=4, seed=seed, device="cpu",
                      initial_weights=initial_weights(g, d, "normal", seed))


def _save(base, trainer, g, d, backend):
    return checkpoint.save(base, trainer.state_dict(), step=1, backend=backend, versions={"gankit": "test"},
                           generator=g, discriminator=d, config={"latent": {"dim": LATENT}})


@pytest.mark.parametrize("name, shape", CASES)
def test_round_trip_torch_file_tensorflow_file_torch_is_exact(name, shape, tmp_path):
    g, d = specs(name, shape)
    torch_backend = REGISTRY.backend("torch")
    first = torch_backend.build_trainer(_setup(g, d))
    x, y = batch(d, n=4, seed=3)
    first.train_step(x, y) if y is not None else first.train_step(x)  # trained weights, moved buffers
    original = first.state_dict()
    _save(tmp_path / "a" / "checkpoint", first, g, d, "torch")

    gan = gankit.load_checkpoint(tmp_path / "a", backend="tensorflow", device="cpu")
    assert gan.backend == "tensorflow" and gan.trainer.backend == "tensorflow"
    _save(tmp_path / "b" / "checkpoint", gan.trainer, g, d, "tensorflow")

    _, weights = checkpoint.load(tmp_path / "b")
    last = torch_backend.build_trainer(_setup(g, d, seed=1))
    last.load_state_dict(weights)
    final = last.state_dict()
    assert set(final) == set(original)
    for k in original:
        assert np.array_equal(final[k], original[k]), k
    # and the generator samples alike on both (eval mode, EMA-free trainers)
    z = np.random.default_rng(4).normal(size=(3, LATENT)).astype(np.float32)
    labels = np.array([0, 1, 2]) if g.conditional else None
    assert_close(first.generate(z, labels) if labels is not None else first.generate(z),
                 gan.generate(z, labels), "generate", rtol=2e-4, atol=2e-5)


# -- default sizes: the published parameter counts -----------------------------------
@pytest.mark.parametrize("name, shape, latent, generator, discriminator", [
    # The TensorFlow DCGAN tutorial's model summaries: 2,330,944 total (2,305,472 trainable
    # + 25,472 batch-norm statistics) and 212,865.
    ("dcgan", (1, 28, 28), 100, 2_305_472, 212_865),
    # The PyTorch DCGAN example (nz=100, ngf=ndf=64, 3 channels).
    ("dcgan", (3, 64, 64), 100, 3_576_704, 2_765_568),
    ("dcgan", (3, 32, 32), 100, 1_068_928, 663_296),
    ("cdcgan", (1, 28, 28), 100, 2_933_172, 275_585),
    ("sngan_resnet", (3, 32, 32), 128, 4_276_739, 1_053_825),
])
def test_parameter_counts_at_default_size(name, shape, latent, generator, discriminator):
    record = REGISTRY.get("architecture", name).record
    extra = {"num_classes": 10} if record.conditional else {}
    g = record.factory(record.params(), role="generator", input_shape=(latent,), output_shape=shape, **extra)
    d = record.factory(record.params(), role="discriminator", input_shape=shape, output_shape=(1,), **extra)
    assert (g.parameter_count(), d.parameter_count()) == (generator, discriminator)


def test_dcgan_28_follows_the_tensorflow_tutorial():
    g, d = specs("dcgan", (1, 28, 28))
    kinds = [layer.kind for layer in g.layers]
    assert kinds == ["dense", "batch_norm", "activation", "reshape", "conv_transpose2d", "batch_norm", "activation",
                     "conv_transpose2d", "batch_norm", "activation", "conv_transpose2d", "activation"]
    convs = [layer for layer in g.layers if layer.kind == "conv_transpose2d"]
    assert [(c.kernel_size, c.stride, c.bias) for c in convs] == [(5, 1, False), (5, 2, False), (5, 2, False)]
    assert g.shapes()[4] == (16, 7, 7) and g.shapes()[5] == (8, 7, 7)  # 4c at 7x7, then 2c
    assert [layer.kind for layer in d.layers] == ["conv2d", "activation", "dropout", "conv2d", "activation", "dropout",
                                                   "flatten", "dense"]
    assert d.layers[2].rate == 0.3 and d.layers[1].negative_slope == 0.3


def test_dcgan_28_paper_style():
    g, d = specs("dcgan_paper", (1, 28, 28))
    convs = [layer for layer in g.layers if layer.kind == "conv_transpose2d"]
    assert [(c.channels, c.kernel_size, c.stride, c.padding) for c in convs] == \
        [(8, 7, 1, 0), (4, 4, 2, 1), (1, 4, 2, 1)]
    assert [shape[1:] for shape in g.shapes()[2::3]] == [(7, 7), (14, 14), (28, 28)]
    assert [layer.kind for layer in d.layers] == ["conv2d", "activation", "conv2d", "batch_norm", "activation",
                                                   "conv2d", "flatten"]
    assert d.layers[1].negative_slope == 0.2 and d.layers[-2].kernel_size == 7
    record = REGISTRY.get("architecture", "dcgan").record
    with pytest.raises(gankit.ConfigError, match="style 'tutorial' exists only for 28x28"):
        record.factory(record.params(style="tutorial"), role="generator", input_shape=(LATENT,),
                       output_shape=(3, 32, 32))


def test_dcgan_discriminator_norm():
    kinds = lambda spec: [layer.kind for layer in spec.layers]  # noqa: E731
    _, d = specs("dcgan_paper_layer_norm", (1, 28, 28))
    assert kinds(d) == ["conv2d", "activation", "conv2d", "layer_norm", "activation", "conv2d", "flatten"]
    assert d.layers[2].bias  # no batch norm to absorb it
    _, d = specs("dcgan_paper_layer_norm", (3, 32, 32))
    assert kinds(d).count("layer_norm") == 2 and "batch_norm" not in kinds(d)
    g, d = specs("dcgan_paper_no_norm", (1, 28, 28))
    assert kinds(d) == ["conv2d", "activation", "conv2d", "activation", "conv2d", "flatten"]
    assert "batch_norm" in kinds(g)
    record = REGISTRY.get("architecture", "dcgan").record
    with pytest.raises(gankit.ConfigError, match="does not apply to the generator"):
        record.factory(record.params(style="paper", norm="layer"), role="generator", input_shape=(LATENT,),
                       output_shape=(1, 28, 28))
    with pytest.raises(gankit.ConfigError, match="tutorial style"):
        record.factory(record.params(norm="none"), role="discriminator", input_shape=(1, 28, 28), output_shape=(1,))
    with pytest.raises(gankit.ConfigError, match="norm"):  # through the config, in one line
        gankit.train({"data": {"name": "mnist"}, "generator": {"name": "dcgan", "params": {"norm": "none"}},
                      "discriminator": {"name": "dcgan"}, "training": {"steps": 1}})


@pytest.mark.parametrize("name", ["dcgan", "cdcgan", "sngan_resnet"])
def test_image_architectures_refuse_other_shapes_in_one_line(name):
    record = REGISTRY.get("architecture", name).record
    for shape in [(2,), (1, 8, 8), (3, 30, 30)]:
        with pytest.raises(ValueError, match="built for square images") as info:
            record.factory(record.params(), role="generator", input_shape=(LATENT,), output_shape=shape)
        assert "\n" not in str(info.value)


def test_conditional_architecture_needs_labelled_data():
    with pytest.raises(gankit.ConfigError, match="class-conditional but the data has no labels"):
        gankit.train({"data": {"name": "ring8"}, "generator": {"name": "cdcgan"},
                      "discriminator": {"name": "cdcgan"}, "training": {"steps": 1}})
