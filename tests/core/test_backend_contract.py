"""The backend contract (gankit.backend_contract) is enough to build a backend.

``fake_backend.py`` implements it in numpy and registers as a third party would; it
trains through the normal driver (``gankit.train``), writes portable checkpoints that
resume on it and load on the real backends, and a trainer missing a primitive is
refused in one line.
"""

import importlib.metadata as md
import importlib.util
import json

import numpy as np
import pytest

import gankit
from gankit import backend_contract as contract
from gankit.errors import PluginError
from gankit.trainer import BaseTrainer
from gankit.training import build

import fake_backend


def builtin_plugins():
    return [ep.load() for ep in md.entry_points(group="gankit")
            if ep.dist and ep.dist.metadata["Name"] == "gankit" and ep.name not in ("torch", "tensorflow", "jax")]


@pytest.fixture(scope="module")
def registry():
    return gankit.Registry.from_plugins([*builtin_plugins(), fake_backend], distribution="gankit-fake-backend")


def config(tmp_path, steps=12, **training):
    return {
        "backend": fake_backend.NAME, "seed": 3, "data": {"name": "ring8"}, "latent": {"dim": 2},
        "generator": {"name": "mlp", "params": {"hidden": [16, 16], "activation": "relu"}},
        "discriminator": {"name": "mlp", "params": {"hidden": [16], "activation": "leaky_relu"}},
        "loss": {"name": "non_saturating"},
        "optimizers": {r: {"name": "adam", "lr": 2e-3} for r in ("generator", "discriminator")},
        "training": {"steps": steps, "batch_size": 32, "log_every": 4, "ema_decay": 0.9, "ema_start": 4,
                     "prefetch": 0, "tensorboard": False, "sample_every": 0, **training},
        "output": {"dir": str(tmp_path), "name": "run"},
    }


def test_the_contract_lists_required_and_optional_members():
    primitives = contract.members(contract.TrainerPrimitives)
    assert {"init_device", "build", "d_update", "g_update", "update_ema", "forward", "sample_latents",
            "export_weights", "import_weights", "export_optimizer", "import_optimizer", "export_rng",
            "import_rng"} == {n for n, opt in primitives.items() if not opt}
    assert {"fused_step", "native_weights"} <= {n for n, opt in primitives.items() if opt}
    backend = contract.members(contract.BackendSpec)
    assert {n for n, opt in backend.items() if not opt} == {"name", "version", "ops", "build_trainer"}
    assert {n for n, opt in backend.items() if opt} == {"distributed", "export_onnx", "generator_module"}


def test_the_fake_backend_implements_the_contract():
    assert contract.missing(fake_backend.NumpyTrainer, contract.TrainerPrimitives) == []
    assert contract.missing(fake_backend.NumpyBackend(), contract.BackendSpec) == []
    # Missing pieces are found: the base class's own defaults do not count as primitives.
    assert contract.missing(BaseTrainer, contract.TrainerPrimitives)[:2] == ["init_device", "build"]
    assert contract.missing(object(), contract.BackendSpec) == ["name", "version", "ops", "build_trainer"]


def test_a_trainer_missing_a_primitive_is_refused_in_one_line(registry, tmp_path):
    class Incomplete(fake_backend.NumpyTrainer):
        update_ema = contract.TrainerPrimitives.update_ema  # the declaration, not an implementation

    exp_setup = build(gankit.load_config(config(tmp_path), registry=registry), registry).trainer.setup
    with pytest.raises(PluginError, match=r"does not implement the primitives update_ema of"):
        Incomplete(exp_setup)


def test_the_fake_backend_trains_through_the_driver_and_resumes(registry, tmp_path):
    run = gankit.train(config(tmp_path, steps=12, checkpoint_every=6), registry=registry)
    records = [json.loads(line) for line in (run.directory / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in records)
    manifest, weights = gankit.checkpoint.load(run.checkpoint)
    assert manifest.backend == fake_backend.NAME
    # The canonical layout: the same names and shapes any backend writes.
    assert {k: v.shape for k, v in weights.items()} == gankit.checkpoint.expected_shapes(
        manifest.generator, manifest.discriminator, ema=True)
    # The D update lowers the D loss on a fixed batch (the primitives are real updates).
    t = run.trainer
    real = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
    fake = t.sample(32, seed=1)

    def d_loss():
        return float(t.loss.discriminator(gankit.NumpyOps(), t.discriminate(real), t.discriminate(fake)))

    before = d_loss()
    for _ in range(5):
        t.discriminator_step(real)
    assert d_loss() < before
    # Resuming from the step-6 checkpoint repeats the uninterrupted run exactly.
    again = gankit.train(config(tmp_path / "b", steps=6, checkpoint_every=6), registry=registry)
    resumed = gankit.train(resume=again.directory, overrides=["training.steps=12"], registry=registry)
    _, w_resumed = gankit.checkpoint.load(resumed.checkpoint)
    for k, v in weights.items():
        np.testing.assert_array_equal(v, w_resumed[k], err_msg=k)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_a_fake_backend_checkpoint_samples_on_jax(registry, tmp_path):
    run = gankit.train(config(tmp_path, steps=4, ema_start=1), registry=registry)
    on_fake = gankit.load_checkpoint(run.checkpoint, registry=registry)
    on_jax = gankit.load_checkpoint(run.checkpoint, backend="jax")
    np.testing.assert_allclose(on_jax.sample(16, seed=2), on_fake.sample(16, seed=2), rtol=1e-5, atol=1e-6)
