"""A checkpoint written on one backend samples, and exports to ONNX, on the other:
`gankit.load_checkpoint`, `gankit sample`, `gankit export`; broken checkpoints fail in one line."""

import importlib.util
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.torch, pytest.mark.tensorflow]
torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import gankit  # noqa: E402
from gankit import checkpoint  # noqa: E402
from gankit.cli import main  # noqa: E402
from gankit.initializers import initial_weights  # noqa: E402
from gankit.protocol import OptimizerSettings, TrainSetup  # noqa: E402
from gankit.restore import latents  # noqa: E402

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
HAS_TF2ONNX = importlib.util.find_spec("tf2onnx") is not None
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx and onnxruntime are not installed (pip install 'gankit[onnx]')")


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """A tiny class-conditional DCGAN trained 2 steps on MNIST digits with torch."""
    out = tmp_path_factory.mktemp("runs")
    run = gankit.train({
        "name": "cdcgan", "backend": "torch", "data": {"name": "mnist"}, "latent": {"dim": 8},
        "generator": {"name": "cdcgan", "params": {"base_channels": 4, "embedding_dim": 3}},
        "discriminator": {"name": "cdcgan", "params": {"base_channels": 4}},
        "training": {"steps": 2, "batch_size": 8, "num_samples": 16, "tensorboard": False},
        "output": {"dir": str(out), "name": "cd"},
    })
    return run.directory


@pytest.fixture(scope="module")
def sngan_checkpoint(tmp_path_factory):
    """A small SNGAN ResNet (spectral norm, residual blocks, up-sampling, pooling) checkpoint, torch-written."""
    record = gankit.get_registry().get("architecture", "sngan_resnet").record
    params = record.params(generator_channels=8, discriminator_channels=8)
    g = record.factory(params, role="generator", input_shape=(8,), output_shape=(3, 32, 32))
    d = record.factory(params, role="discriminator", input_shape=(3, 32, 32), output_shape=(1,))
    loss = gankit.get_registry().get("loss", "hinge").record
    setup = TrainSetup(generator=g, discriminator=d, loss=loss.factory(loss.params()), regularizers={},
                       g_optimizer=OptimizerSettings("adam", 1e-3), d_optimizer=OptimizerSettings("adam", 1e-3),
                       latent_dim=8, batch_size=4, device="cpu", initial_weights=initial_weights(g, d, "normal", 0))
    trainer = gankit.get_registry().backend("torch").build_trainer(setup)
    trainer.train_step(np.random.default_rng(0).uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32))
    base = tmp_path_factory.mktemp("sngan") / "checkpoint"
    checkpoint.save(base, trainer.state_dict(), step=1, backend="torch", versions={"gankit": "test"},
                    generator=g, discriminator=d, config={"latent": {"dim": 8}, "loss": {"name": "hinge"}})
    return base.parent


def test_torch_checkpoint_samples_identically_on_tensorflow(conditional_run):
    on_torch = gankit.load_checkpoint(conditional_run)
    on_tf = gankit.load_checkpoint(conditional_run, backend="tensorflow", device="cpu")
    assert (on_torch.backend, on_tf.backend) == ("torch", "tensorflow")
    assert on_tf.num_classes == 10 and on_tf.manifest.step == 2 and on_tf.trainer.step_count == 2
    a, b = on_torch.sample(20, seed=3, truncation=1.0), on_tf.sample(20, seed=3, truncation=1.0)
    assert a.shape == (20, 1, 28, 28)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    labels = np.full(20, 7)
    np.testing.assert_allclose(on_torch.sample(20, seed=3, labels=labels), on_tf.sample(20, seed=3, labels=labels),
                               rtol=1e-4, atol=1e-5)
    assert not np.allclose(on_tf.sample(20, seed=3, labels=labels), b)  # the label matters


def test_truncation_redraws_latents_beyond_the_threshold():
    z = latents(500, 16, "normal", seed=1, truncation=0.5)
    assert z.dtype == np.float32 and np.abs(z).max() <= 0.5
    assert np.array_equal(z, latents(500, 16, "normal", seed=1, truncation=0.5))
    untruncated = latents(500, 16, "normal", seed=1)
    assert np.abs(untruncated).max() > 2.0
    kept = np.abs(untruncated) <= 0.5  # coordinates within the threshold are kept as drawn
    np.testing.assert_array_equal(z[kept], untruncated[kept])
    assert np.abs(latents(100, 4, "uniform", seed=2, truncation=0.3)).max() <= 0.3
    with pytest.raises(gankit.ConfigError, match="truncation must be positive"):
        latents(2, 2, truncation=0)


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_cli_sample_on_the_other_backend(conditional_run, tmp_path, capsys, suffix):
    out = tmp_path / f"grid{suffix}"
    rc = main(["sample", str(conditional_run), "--backend", "tensorflow", "-n", "12", "--out", str(out),
               "--seed", "5", "--truncation", "1.5", "--label", "3", "--label", "4"])
    assert rc == 0, capsys.readouterr().err
    assert out.is_file() and "wrote 12 samples of shape (1, 28, 28) from step 2 (tensorflow)" in capsys.readouterr().out
    if suffix == ".npy":
        x = np.load(out)
        expected = gankit.load_checkpoint(conditional_run).sample(12, seed=5, truncation=1.5, labels=[3, 4] * 6)
        np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)


def test_cli_sample_errors_are_one_line(conditional_run, sngan_checkpoint, tmp_path, capsys):
    assert main(["sample", str(conditional_run), "--out", str(tmp_path / "x.jpg")]) == 2
    assert main(["sample", str(sngan_checkpoint), "--label", "1", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors), errors
    assert "must end in .png or .npy" in errors[0] and "unconditional" in errors[1]


def _copy_checkpoint(src, dst):
    dst.mkdir()
    for name in ("checkpoint.json", "checkpoint.safetensors"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


@pytest.mark.parametrize("damage, message", [
    ("truncate", "do not match their manifest"),
    ("unknown_layer", "manifest .* is invalid at generator.layers.0"),
    ("missing_u", "tensor 'discriminator.0.body.0.weight_u' is missing"),
    ("wrong_shape", r"'generator.7.weight' has shape \(3, 8, 3, 3\), the model expects \(3, 8, 5, 5\)"),
])
def test_broken_checkpoints_fail_in_one_line(sngan_checkpoint, tmp_path, capsys, damage, message):
    ckpt = _copy_checkpoint(sngan_checkpoint, tmp_path / "c")
    manifest = json.loads((ckpt / "checkpoint.json").read_text())
    if damage == "truncate":
        (ckpt / "checkpoint.safetensors").write_bytes((ckpt / "checkpoint.safetensors").read_bytes()[:-64])
    elif damage == "unknown_layer":
        manifest["generator"]["layers"][0]["kind"] = "attention"
    elif damage == "missing_u":  # a spectral-norm vector gone from both the weights and the manifest's list
        from safetensors.numpy import load_file
        weights = load_file(ckpt / "checkpoint.safetensors")
        del weights["discriminator.0.body.0.weight_u"]
        checkpoint.save(ckpt / "checkpoint", weights, step=1, backend="torch", versions={}, config={},
                        generator=gankit.NetSpec.model_validate(manifest["generator"]),
                        discriminator=gankit.NetSpec.model_validate(manifest["discriminator"]))
        manifest = json.loads((ckpt / "checkpoint.json").read_text())
    elif damage == "wrong_shape":
        manifest["generator"]["layers"][7].update(kernel_size=5, padding=2)  # a valid spec, other weights
    (ckpt / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.raises(gankit.CheckpointError, match=message):
        gankit.load_checkpoint(ckpt, backend="tensorflow")
    assert main(["sample", str(ckpt), "--out", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


# -- ONNX ---------------------------------------------------------------------------
def _onnx_inputs(gan, n=5, seed=2):
    feeds = {"z": gan.latents(n, seed=seed)}
    if gan.num_classes:
        feeds["labels"] = np.arange(n, dtype=np.int64) % gan.num_classes
    return feeds


@needs_ort
@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
@pytest.mark.parametrize("which", ["conditional_run", "sngan_checkpoint"])
def test_onnx_export_gives_the_same_samples(backend, which, request, tmp_path, capsys):
    if backend == "tensorflow" and not HAS_TF2ONNX:
        pytest.skip("tf2onnx is not installed (pip install 'gankit[onnx]')")
    import onnxruntime as ort

    ckpt = request.getfixturevalue(which)
    out = tmp_path / "g.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out), "--backend", backend]) == 0
    assert f"({backend} exporter, opset 17" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    gan = gankit.load_checkpoint(ckpt)  # the reference: the checkpoint on its own backend
    feeds = _onnx_inputs(gan)
    assert [i.name for i in session.get_inputs()] == list(feeds)
    (samples,) = session.run(["samples"], feeds)
    expected = gan.generate(feeds["z"], feeds.get("labels"))
    assert samples.shape == expected.shape
    np.testing.assert_allclose(samples, expected, rtol=1e-4, atol=1e-5)
    (more,) = session.run(["samples"], _onnx_inputs(gan, n=9, seed=4))  # the batch axis is dynamic
    assert more.shape[0] == 9


def test_export_without_onnx_says_how_to_install(sngan_checkpoint, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    assert main(["export", str(sngan_checkpoint), "--out", str(tmp_path / "g.onnx")]) == 2
    assert "pip install 'gankit[onnx]'" in capsys.readouterr().err
