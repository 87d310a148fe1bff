"""Native architectures: a plugin's own model for one backend (``native_plugin.py``).

``pixel_shuffle`` (torch only) trains, samples and checkpoints on torch exactly as a
spec-built net does; TensorFlow refuses it, and its checkpoints, in one line before any
work starts. ``depth_to_space`` is the mirror image on TensorFlow.
"""

import importlib.metadata as md
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gankit
from gankit.cli import main
from gankit.errors import CheckpointError, ConfigError
from gankit.training import build

import native_plugin

torch = pytest.importorskip("torch")

HERE = Path(__file__).resolve().parent


def builtin_plugins():
    return [ep.load() for ep in md.entry_points(group="gankit") if ep.dist and ep.dist.metadata["Name"] == "gankit"]


def registry_with(*plugins):
    return gankit.Registry.from_plugins([*builtin_plugins(), *plugins], distribution="gankit-native-example")


@pytest.fixture(scope="module")
def registry():
    return registry_with(native_plugin)


def config(directory, backend="torch", arch="pixel_shuffle", steps=4, name=None, **training):
    return {"name": "native", "backend": backend, "device": "cpu", "seed": 3,
            "data": {"name": "digits"}, "latent": {"dim": 8},
            "generator": {"name": arch}, "discriminator": {"name": arch},
            "training": {"steps": steps, "batch_size": 16, "log_every": 1, "tensorboard": False,
                         "num_samples": 16, "sample_every": 0, **training},
            "output": {"dir": str(directory), "name": name or f"{arch}-{backend}"}}


@pytest.fixture(scope="module")
def torch_run(registry, tmp_path_factory):
    """pixel_shuffle trained 4 steps on torch, with an EMA generator."""
    return gankit.train(config(tmp_path_factory.mktemp("native"), ema_decay=0.5), registry=registry)


# -- the record ---------------------------------------------------------------------
def test_the_record_declares_its_one_backend(registry):
    record = registry.get("architecture", "pixel_shuffle").record
    assert record.backends == ("torch",) and set(record.native) == {"torch"}
    assert record.builds_on("torch") and not record.builds_on("tensorflow")
    assert registry.get("architecture", "mlp").record.backends is None  # a neutral spec builds anywhere
    net = record.factory(record.params(), role="generator", input_shape=(8,), output_shape=(1, 8, 8))
    assert isinstance(net, gankit.NativeNet)
    assert (net.architecture, net.backends, net.role, net.output_shape) == ("pixel_shuffle", ("torch",),
                                                                            "generator", (1, 8, 8))
    assert net.parameter_shapes() == {}  # known once a backend has built it


def test_the_plugin_module_imports_no_framework():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import native_plugin, gankit; "
            "native_plugin.gankit_register_architectures(); "
            "assert not {'torch', 'tensorflow'} & set(sys.modules), sorted(sys.modules)")
    run = subprocess.run([sys.executable, "-c", code, str(HERE)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("kwargs, message", [
    ({"factory": lambda *a, **k: None, "native": {"torch": print}}, "not both"),
    ({"native": {}}, "backend names to builder callables"),
    ({"native": {"torch": "not callable"}}, "backend names to builder callables"),
    ({"native": {"torch": print}, "backends": ("tensorflow",)}, "differ from the backends of its native builders"),
    ({}, "give a factory returning a NetSpec, or native builders"),
])
def test_a_malformed_record_is_refused(kwargs, message):
    with pytest.raises(TypeError, match=message):
        gankit.ArchitectureRecord(name="broken", **kwargs)


# -- torch: trains, samples, checkpoints --------------------------------------------
def test_it_trains_on_torch_under_the_modules_own_names(torch_run):
    assert torch_run.backend == "torch" and torch_run.steps == 4
    assert all(np.isfinite(v) for v in torch_run.metrics.values()), torch_run.metrics
    state = torch_run.trainer.state_dict()
    module = native_plugin.build_torch(native_plugin.PixelShuffleParams(), role="generator", input_shape=(8,),
                                       output_shape=(1, 8, 8))
    own = {k for k, v in module.state_dict().items() if v.is_floating_point()}
    assert {k[len("generator."):] for k in state if k.startswith("generator.")} == own
    assert {k[len("generator_ema."):] for k in state if k.startswith("generator_ema.")} == own
    assert "generator.5.running_mean" in state and not any("num_batches_tracked" in k for k in state)
    assert torch_run.trainer.sample(5, seed=0).shape == (5, 1, 8, 8)


def test_training_moves_the_weights_and_a_seed_repeats_them(registry, torch_run, tmp_path):
    trained = torch_run.trainer.state_dict()
    exp = build(torch_run.config, registry)  # the same config, untrained
    initial = exp.trainer.state_dict()
    assert set(initial) == set(trained)
    moved = [k for k in trained if k.startswith("generator.") and not np.array_equal(initial[k], trained[k])]
    assert moved and [k for k in trained if k.startswith("discriminator.")
                      and not np.array_equal(initial[k], trained[k])]
    again = gankit.train(config(tmp_path, ema_decay=0.5), registry=registry).trainer.state_dict()
    assert all(np.array_equal(trained[k], again[k]) for k in trained)


def test_its_checkpoint_round_trip_is_exact(registry, torch_run):
    manifest = json.loads((torch_run.directory / "checkpoint.json").read_text())
    g = manifest["generator"]
    assert g["kind"] == "native" and g["architecture"] == "pixel_shuffle" and g["backends"] == ["torch"]
    assert g["parameters"]["4.weight"] == [4, 8, 3, 3] and g["buffers"]["5.running_var"] == [4]
    gan = gankit.load_checkpoint(torch_run.directory, registry=registry)
    saved, loaded = torch_run.trainer.state_dict(), gan.trainer.state_dict()
    assert set(saved) == set(loaded) and all(np.array_equal(saved[k], loaded[k]) for k in saved)
    z = gan.latents(6, seed=2)
    np.testing.assert_array_equal(gan.generate(z), torch_run.trainer.generate(z))
    x = torch_run.trainer.generate(z)
    np.testing.assert_array_equal(gan.trainer.discriminate(x), torch_run.trainer.discriminate(x))


def test_it_exports_to_onnx_with_the_same_samples(registry, torch_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from gankit.export import export_onnx

    export_onnx(torch_run.directory, tmp_path / "g.onnx", registry=registry)
    z = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    (out,) = ort.InferenceSession(str(tmp_path / "g.onnx")).run(None, {"z": z})
    np.testing.assert_allclose(out, torch_run.trainer.generate(z), atol=1e-5)


def test_a_run_resumes_from_its_periodic_checkpoint(registry, tmp_path):
    cfg = config(tmp_path, steps=4, checkpoint_every=2, name="resumed")
    full = gankit.train({**cfg, "output": {"dir": str(tmp_path), "name": "full"}}, registry=registry)
    first = gankit.train({**cfg, "training": {**cfg["training"], "steps": 2}}, registry=registry)
    resumed = gankit.train(resume=first.directory, overrides=["training.steps=4"], registry=registry)
    a, b = full.trainer.state_dict(), resumed.trainer.state_dict()
    assert resumed.resumed_from == 2 and all(np.array_equal(a[k], b[k]) for k in a)


# -- the other backend refuses, in one line -----------------------------------------
@pytest.fixture
def cli_registry(registry, monkeypatch):
    import gankit.plugins

    monkeypatch.setattr(gankit.plugins, "_REGISTRY", registry)
    return registry


def test_tensorflow_refuses_it_before_any_work(cli_registry, tmp_path, capsys):
    path = tmp_path / "native.json"
    path.write_text(json.dumps(config(tmp_path / "runs")))
    rc = main(["train", str(path), "--set", "backend=tensorflow"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "generator.name: architecture 'pixel_shuffle' is built natively for torch only" in err
    assert "the tensorflow backend cannot build it" in err and "--set backend=torch" in err
    assert not (tmp_path / "runs").exists()  # refused before a run directory, data or framework
    with pytest.raises(ConfigError, match="built natively for torch only"):
        gankit.load_config(config(tmp_path), overrides=["backend=tensorflow"], registry=cli_registry)
    # `gankit config check` says so too, before anything is built
    path.write_text(json.dumps(config(tmp_path / "runs", backend="tensorflow")))
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "generator.name: architecture 'pixel_shuffle' is built natively for torch only" in err


def test_its_checkpoint_refuses_to_load_on_tensorflow(cli_registry, torch_run, tmp_path, capsys):
    rc = main(["sample", str(torch_run.directory), "--backend", "tensorflow", "--out", str(tmp_path / "x.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "architecture 'pixel_shuffle', built natively for torch only; it cannot load on tensorflow" in err
    assert "--backend torch" in err and not (tmp_path / "x.npy").exists()
    assert main(["sample", str(torch_run.directory), "--out", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape[1:] == (1, 8, 8)


def test_a_checkpoint_needs_its_plugin_installed(torch_run):
    without = registry_with()
    with pytest.raises(CheckpointError, match="native architecture 'pixel_shuffle', which no installed plugin"):
        gankit.load_checkpoint(torch_run.directory, registry=without)


# -- a plugin that changed, or builds something wrong --------------------------------
def _plugin(name, builder, **record):
    class Plugin:
        __name__ = f"plugin_{name}"

        @gankit.hookimpl
        def gankit_register_architectures(self):
            return [gankit.ArchitectureRecord(name=name, params=native_plugin.PixelShuffleParams,
                                              native={"torch": builder}, **record)]

    return Plugin()


def test_a_plugin_that_now_builds_other_weights_is_one_line(torch_run):
    def wider(params, **kwargs):
        return native_plugin.build_torch(params.model_copy(update={"channels": 16}), **kwargs)

    changed = registry_with(_plugin("pixel_shuffle", wider))
    with pytest.raises(CheckpointError, match=r"made a generator whose parameters differ from the recorded ones"):
        gankit.load_checkpoint(torch_run.directory, registry=changed)


def _wrong_shape(params, *, role, input_shape, output_shape):
    from torch import nn

    return nn.Linear(int(np.prod(input_shape)), 3) if role == "generator" else nn.Flatten()


def _not_a_module(params, **kwargs):
    return "a string"


@pytest.mark.parametrize("builder, message", [
    (_wrong_shape, r"made a model that fails on a batch of shape \(2, 8\)|maps \(2, 8\) to \(2, 3\)"),
    (_not_a_module, "returned str, not a torch.nn.Module"),
])
def test_a_builder_that_returns_the_wrong_thing_is_one_line(tmp_path, builder, message):
    reg = registry_with(_plugin("bad", builder))
    with pytest.raises(ConfigError, match=message):
        gankit.train(config(tmp_path, arch="bad"), registry=reg)


# -- class-conditional ----------------------------------------------------------------
class ConditionalParams(gankit.StrictModel):
    num_classes: int = 10


def _conditional(params, *, role, input_shape, output_shape, num_classes):
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(num_classes, 4)
            self.body = nn.Linear(int(np.prod(input_shape)) + 4, int(np.prod(output_shape)))

        def forward(self, x, labels):
            h = torch.cat([x.flatten(1), self.embed(labels)], dim=1)
            return self.body(h).reshape(x.shape[0], *output_shape)

    return Net()


def test_a_class_conditional_native_architecture_reads_the_labels(tmp_path):
    class Plugin:
        @gankit.hookimpl
        def gankit_register_architectures(self):
            return [gankit.ArchitectureRecord(name="cond", params=ConditionalParams, conditional=True,
                                              native={"torch": _conditional})]

    reg = registry_with(Plugin())
    run = gankit.train(config(tmp_path, arch="cond", steps=2), registry=reg)
    z = np.zeros((2, 8), np.float32)
    a, b = (run.trainer.generate(z, np.array([c, c])) for c in (1, 7))
    assert a.shape == (2, 1, 8, 8) and not np.allclose(a, b)
    gan = gankit.load_checkpoint(run.directory, registry=reg)
    assert gan.num_classes == 10
    np.testing.assert_array_equal(gan.generate(z, np.array([7, 7])), b)


# -- the mirror image: a TensorFlow-only architecture -------------------------------
def test_a_tensorflow_native_architecture_trains_checkpoints_and_torch_refuses(registry, tmp_path):
    pytest.importorskip("tensorflow")
    run = gankit.train(config(tmp_path, backend="tensorflow", arch="depth_to_space", steps=3, ema_decay=0.5),
                       registry=registry)
    state = run.trainer.state_dict()
    assert {"generator.hidden.0", "generator.calls", "discriminator.out.1", "generator_ema.calls"} <= set(state)
    assert state["generator.calls"][0] > 0 and all(np.isfinite(v) for v in run.metrics.values())
    gan = gankit.load_checkpoint(run.directory, registry=registry)
    loaded = gan.trainer.state_dict()
    assert all(np.array_equal(state[k], loaded[k]) for k in state)
    z = gan.latents(4, seed=1)
    np.testing.assert_array_equal(gan.generate(z), run.trainer.generate(z))
    with pytest.raises(CheckpointError, match="built natively for tensorflow only; it cannot load on torch"):
        gankit.load_checkpoint(run.directory, backend="torch", registry=registry)
    with pytest.raises(ConfigError, match="built natively for tensorflow only; the torch backend cannot build it"):
        gankit.train(config(tmp_path, arch="depth_to_space"), registry=registry)


def test_gankit_plugins_lists_its_one_backend(cli_registry, capsys):
    assert main(["plugins", "--kind", "architecture", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["pixel_shuffle"]["status"] == "torch only"
    assert rows["mlp"]["status"] == ""

