"""The MNIST recipe presets train on every backend (a few steps each: the full runs and
their quality targets are tests/benchmarks/recipes.py), and the conditional one samples a
chosen digit through `gankit sample --label`."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import gankit
from gankit import checkpoint
from gankit.cli import app

pytestmark = pytest.mark.slow

RECIPES = ("mnist_mlp", "mnist_wgan", "mnist_wgan_gp", "mnist_hinge_sn", "mnist_cgan")
FEW_STEPS = ["training.steps=2", "training.batch_size=16", "training.num_samples=20", "training.sample_every=0",
             "training.log_every=1", "training.threads=1", "training.tensorboard=false", "device=cpu",
             "evaluation.every=2", "evaluation.num_samples=50"]


def few_steps(tmp_path, preset, backend, *extra):
    return gankit.train(preset=preset, overrides=[*FEW_STEPS, f"backend={backend}", f"output.dir={tmp_path}",
                                                  f"output.name={preset}", *extra])


def test_the_recipes_are_presets():
    assert set(RECIPES) <= set(gankit.config.preset_names())


@pytest.mark.parametrize("preset", RECIPES)
def test_recipe_trains_and_is_scored_by_the_classifier(tmp_path, backend_name, preset):
    run = few_steps(tmp_path, preset, backend_name)
    d = run.directory
    assert run.steps == 2 and (d / "samples.png").is_file()
    metrics = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(np.isfinite(m["d_loss"]) and np.isfinite(m["g_loss"]) for m in metrics)
    evaluation = json.loads((d / "eval.jsonl").read_text().splitlines()[-1])["metrics"]
    assert 1 <= evaluation["classes_covered"] <= 10
    assert 0 < evaluation["mean_confidence"] <= 1 and np.isfinite(evaluation["fid"])


def test_mnist_wgan_clips_the_critic_and_not_the_generator(tmp_path, backend_name):
    run = few_steps(tmp_path, "mnist_wgan", backend_name)
    _, weights = checkpoint.load(run.directory)
    critic = [name[len("discriminator."):] for name in weights if name.startswith("discriminator.")]
    params = set(run.trainer.parameters_of("discriminator"))
    assert params and params <= set(critic)
    assert all(np.abs(weights[f"discriminator.{n}"]).max() <= 0.01 + 1e-7 for n in params)
    assert max(np.abs(v).max() for v in run.trainer.parameters_of("generator").values()) > 0.01
    # the critic normalises with layer norm: no running statistics, so every tensor it has
    # is a clipped parameter (buffers, which are not clipped, are tested with batch norm in
    # tests/training/test_weight_clipping.py)
    assert set(critic) == params
    # the generator's batch norm keeps running statistics, never clipped
    generator = {name[len("generator."):] for name in weights if name.startswith("generator.")}
    assert generator - set(run.trainer.parameters_of("generator"))


def _dcgan(role, **params):
    record = gankit.get_registry().get("architecture", "dcgan").record
    shapes = ((100,), (1, 28, 28)) if role == "generator" else ((1, 28, 28), (1,))
    return record.factory(record.params(**params), role=role, input_shape=shapes[0], output_shape=shapes[1])


def test_hinge_sn_discriminator_is_spectrally_normalised_without_batch_norm():
    params = gankit.load_config(preset="mnist_hinge_sn").discriminator.params
    assert params["spectral_norm"] is True
    layers = [layer for _, layer, _ in _dcgan("discriminator", **params).walk()]
    plain = [layer for _, layer, _ in _dcgan("discriminator", **{**params, "spectral_norm": False}).walk()]
    assert any(layer.kind == "batch_norm" for layer in plain)
    assert not any(layer.kind == "batch_norm" for layer in layers)
    weighted = [layer for layer in layers if layer.kind in ("conv2d", "dense", "projection")]
    assert len(weighted) == 3 and all(layer.spectral_norm is not None for layer in weighted)


def test_wgan_gp_critic_has_layer_norm_and_no_batch_norm():
    # the penalty is per sample: batch norm would couple the samples (Gulrajani et al. 2017)
    params = gankit.load_config(preset="mnist_wgan_gp").discriminator.params
    kinds = [layer.kind for _, layer, _ in _dcgan("discriminator", **params).walk()]
    assert "layer_norm" in kinds and "batch_norm" not in kinds


def test_spectral_norm_on_a_dcgan_generator_is_a_config_error():
    with pytest.raises(gankit.ConfigError, match="spectral_norm applies to the discriminator"):
        _dcgan("generator", style="paper", spectral_norm=True)


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    return few_steps(tmp_path_factory.mktemp("cgan"), "mnist_cgan", "torch")


def test_sample_label_draws_the_chosen_class(tmp_path, cgan_run):
    run = cgan_run
    runner = CliRunner()
    paths = {}
    for label in (7, 3):
        paths[label] = tmp_path / f"label{label}.npy"
        result = runner.invoke(app, ["sample", str(run.directory), "--label", str(label), "-n", "6",
                                     "-o", str(paths[label])])
        assert result.exit_code == 0, result.output
    sevens, threes = np.load(paths[7]), np.load(paths[3])
    assert sevens.shape == threes.shape == (6, 1, 28, 28)
    # the same latents (seed 0) under another label give other images: the label is used
    assert not np.allclose(sevens, threes, atol=1e-3)
    gan = gankit.load_checkpoint(run.directory)
    np.testing.assert_allclose(sevens, gan.sample(6, seed=0, labels=np.full(6, 7)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("label", ["10", "-1"])
def test_sample_label_out_of_range_is_one_clear_line(tmp_path, cgan_run, label):
    run = cgan_run
    result = subprocess.run([sys.executable, "-m", "gankit", "sample", str(run.directory), "--label", label,
                             "-o", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "label" in result.stderr.lower()
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "x.png").exists()
