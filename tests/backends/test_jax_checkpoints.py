"""Portable checkpoints with the jax backend: a torch-trained run samples on jax, a
jax-trained run samples on TensorFlow (and torch), optimizer state moves between
backends, a jax run resumes exactly, and ONNX export says in one line that jax has none."""

import numpy as np
import pytest

pytestmark = [pytest.mark.jax]
pytest.importorskip("jax")

import gankit  # noqa: E402
from gankit import checkpoint  # noqa: E402
from gankit.cli import main  # noqa: E402


def cdcgan(backend, out, steps=2):
    """A tiny class-conditional DCGAN on MNIST digits (conv, transposed conv, batch norm, embedding)."""
    return gankit.train({
        "name": "cdcgan", "backend": backend, "data": {"name": "mnist"}, "latent": {"dim": 8},
        "generator": {"name": "cdcgan", "params": {"base_channels": 4, "embedding_dim": 3}},
        "discriminator": {"name": "cdcgan", "params": {"base_channels": 4}},
        "optimizers": {r: {"name": "adam", "lr": 1e-3} for r in ("generator", "discriminator")},
        "training": {"steps": steps, "batch_size": 8, "num_samples": 16, "tensorboard": False, "ema_decay": 0.5,
                     "threads": 1, "checkpoint_every": 1},
        "output": {"dir": str(out), "name": backend},
    })


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    return cdcgan("jax", tmp_path_factory.mktemp("runs"))


def test_a_torch_trained_run_samples_identically_on_jax(tmp_path):
    pytest.importorskip("torch")
    run = cdcgan("torch", tmp_path)
    on_torch, on_jax = gankit.load_checkpoint(run.directory), gankit.load_checkpoint(run.directory, backend="jax")
    assert on_jax.backend == "jax" and on_jax.manifest.step == 2 and on_jax.trainer.step_count == 2
    labels = np.arange(12) % 10
    a, b = on_torch.sample(12, seed=3, labels=labels), on_jax.sample(12, seed=3, labels=labels)
    assert b.shape == (12, 1, 28, 28)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    x = on_torch.sample(6, seed=4)
    np.testing.assert_allclose(on_torch.trainer.discriminate(x, labels[:6]), on_jax.trainer.discriminate(x, labels[:6]),
                               rtol=1e-4, atol=1e-4)
    # The optimizer state moves too (torch slot names, canonical layouts).
    manifest, _ = checkpoint.load(run.checkpoint)
    opt, _ = checkpoint.load_state(run.checkpoint, manifest)
    on_jax.trainer.load_optimizer_state(opt)
    for k, v in on_jax.trainer.optimizer_state().items():
        np.testing.assert_allclose(v, opt[k], rtol=1e-6, err_msg=k)


def test_a_jax_trained_run_samples_identically_on_tensorflow_and_torch(jax_run):
    pytest.importorskip("tensorflow")
    on_jax = gankit.load_checkpoint(jax_run.directory)
    on_tf = gankit.load_checkpoint(jax_run.directory, backend="tensorflow", device="cpu")
    manifest, weights = checkpoint.load(jax_run.checkpoint)
    assert manifest.backend == "jax" and manifest.ema and any(k.startswith("generator_ema.") for k in weights)
    labels = np.arange(12) % 10
    a = on_jax.sample(12, seed=3, labels=labels)
    np.testing.assert_allclose(a, jax_run.trainer.generate(on_jax.latents(12, seed=3), labels), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(on_tf.sample(12, seed=3, labels=labels), a, rtol=1e-4, atol=1e-5)
    if pytest.importorskip("torch"):
        np.testing.assert_allclose(gankit.load_checkpoint(jax_run.directory, backend="torch").sample(
            12, seed=3, labels=labels), a, rtol=1e-4, atol=1e-5)


def test_gankit_sample_reads_a_jax_run_on_tensorflow(jax_run, tmp_path, capsys):
    pytest.importorskip("tensorflow")
    out = tmp_path / "s.npy"
    assert main(["sample", str(jax_run.directory), "--backend", "tensorflow", "-n", "4", "--out", str(out)]) == 0
    assert np.load(out).shape == (4, 1, 28, 28)


def test_a_jax_run_resumes_exactly(jax_run, tmp_path):
    resumed = gankit.train(resume=jax_run.directory, overrides=["training.steps=3"])
    assert resumed.resumed_from == 2
    straight = cdcgan("jax", tmp_path, steps=3)
    _, w_resumed = checkpoint.load(resumed.checkpoint)
    _, w_straight = checkpoint.load(straight.checkpoint)
    assert set(w_resumed) == set(w_straight)
    for k in w_straight:
        np.testing.assert_array_equal(w_resumed[k], w_straight[k], err_msg=k)


def test_onnx_export_on_jax_says_in_one_line_that_it_is_not_available(jax_run, tmp_path, capsys):
    assert main(["export", str(jax_run.directory), "--backend", "jax", "--out", str(tmp_path / "g.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "jax" in err and "ONNX" in err
