"""Hostile and mistaken inputs end in one line and exit status 2, before any training.

Each case here ended as "internal error ... please report it" (or hung, or silently did
something else) before it was refused; the table in the module's cases is the record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from gankit.cli import main

TINY = ["--preset", "ring8", "-q", "--set", "training.steps=1", "--set", "training.batch_size=8",
        "--set", "training.threads=1", "--set", "training.tensorboard=false", "--set", "training.num_samples=16"]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code, out, err, expected):
    assert code == 2, (code, err)
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in out + err and "internal error" not in err
    assert expected in err, err


def sets(*pairs):
    return [a for p in pairs for a in ("--set", p)]


# Each was an internal error (or worse) before: what it was, the fix's expected line.
TRAIN_CASES = {
    # an image architecture on 2-D points: ValueError from the spec builder
    "dcgan_on_points": (sets("generator.name=dcgan", "generator.params={}"), "dcgan is built for square images"),
    "sngan_on_points": (sets("discriminator.name=sngan_resnet", "discriminator.params={}"),
                        "sngan_resnet is built for square images"),
    # a zero or negative layer width: pydantic ValidationError from the Dense layer
    "mlp_width_zero": (sets("generator.params.hidden=[0]"), "generator.params.hidden: every hidden width must be at least 1"),
    "mlp_width_negative": (sets("discriminator.params.hidden=[-1]"), "discriminator.params.hidden: every hidden width"),
    # sizes that cannot fit: MemoryError / allocator RuntimeError after building
    "latent_dim_huge": (sets("latent.dim=100000000"), "of memory (parameters"),
    "batch_size_huge": (sets("training.batch_size=100000000"), "lower training.batch_size"),
    "layer_width_huge": (sets("generator.params.hidden=[100000000]"), "of memory"),
    "num_samples_huge": (sets("training.num_samples=100000000"), "lower training.num_samples"),
    "ring_modes_huge": (sets("data.params.modes=1000000000"), "data.params.modes: Input should be less than or equal"),
    "grid_side_huge": (sets("data.name=grid25", "data.params={\"side\": 100000}"), "data.params.side"),
    # threads far beyond the machine: "can't start new thread" (100000 segfaults TensorFlow)
    "threads_huge": (sets("training.threads=100000"), "training.threads = 100000 is more than this machine can use"),
    # a seed no framework takes: OverflowError in the backend
    "seed_huge": (sets("seed=99999999999999999999999"), "seed: Input should be less than or equal to 2147483647"),
    "steps_huge": (sets("training.steps=1000000000000000000000000000000"), "training.steps: Input should be less than"),
    "n_critic_huge": (sets("training.n_critic=1000000"), "training.n_critic"),
    # a boolean as a number was silently 1.0
    "lr_true": (sets("optimizers.generator.lr=true"), "lr: a boolean is not a number"),
    # names with NUL: ValueError('embedded null byte')
    "output_name_nul": (sets("output.name=a\x00b"), "output.name: a path cannot hold a NUL character"),
    "experiment_name_nul": (sets("name=a\x00"), "name: the experiment name becomes a directory name"),
    # names that leave output.dir (trained into ../../escape before)
    "output_name_escapes": (sets("output.name=../../escape"), "must stay inside output.dir"),
    "output_name_absolute": (sets("output.name=/etc"), "must stay inside output.dir"),
    "experiment_name_path": (sets("name=a/../../x"), "use no '/'"),
    # a new plugin name with params that are not a table: AttributeError in apply_overrides
    "params_not_a_table": (sets("generator.name=dcgan", "generator.params={base_channels:2}"),
                           "generator.params: Input should be a valid dictionary"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_train_refuses_in_one_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra, expected = TRAIN_CASES[case]
    code, out, err = run(capsys, "train", *TINY, *sets(f"output.dir={tmp_path / 'runs'}"), *extra)
    assert_one_line(code, out, err, expected)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing written


def npy(tmp_path, array) -> str:
    path = tmp_path / "data.npy"
    np.save(path, array)
    return str(path)


@pytest.mark.parametrize("array, expected", [
    (np.ones((50, 2), complex), "must hold a real numeric array"),  # was silently cast to real
    (np.random.default_rng(0).normal(size=(20, 1, 8, 8)).astype(np.float32), "dcgan is built for square images"),
])
def test_train_refuses_data_that_does_not_fit(tmp_path, capsys, array, expected):
    arch = sets("generator.name=dcgan", "generator.params={}", "discriminator.name=dcgan", "discriminator.params={}")
    code, out, err = run(capsys, "train", *TINY, *sets(f"output.dir={tmp_path}", "data.name=npy",
                                                       f"data.params={{\"path\": \"{npy(tmp_path, array)}\"}}"),
                         *(arch if array.ndim == 4 else []))
    assert_one_line(code, out, err, expected)


def test_conditional_nets_on_data_of_one_class(tmp_path, capsys):
    path = tmp_path / "one.npz"
    np.savez(path, x=np.zeros((20, 1, 28, 28), np.float32), y=np.zeros(20, np.int64))
    arch = sets("generator.name=cdcgan", "discriminator.name=cdcgan", "generator.params.base_channels=2",
                "discriminator.params.base_channels=2")
    code, out, err = run(capsys, "train", *TINY, *arch, *sets(
        f"output.dir={tmp_path}", "data.name=npy", f"data.params={{\"path\": \"{path}\", \"key\": \"x\", \"labels_key\": \"y\"}}"))
    assert_one_line(code, out, err, "needs at least 2 classes, the data's labels hold 1")  # was "1 validation error for Embedding"


def test_output_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, out, err = run(capsys, "train", *TINY, *sets(f"output.dir={tmp_path / 'file'}"))
    assert_one_line(code, out, err, "is a file")  # was NotADirectoryError after building


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
def test_output_dir_that_cannot_be_created(tmp_path, capsys):
    code, out, err = run(capsys, "train", *TINY, *sets("output.dir=/proc/gankit-cannot-be-here"))
    assert_one_line(code, out, err, "cannot be created")  # was FileNotFoundError


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_output_dir_not_writable(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, out, err = run(capsys, "train", *TINY, *sets(f"output.dir={locked / 'runs'}"))
    assert_one_line(code, out, err, "not writable by you")


def test_deeply_nested_config_file(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text('{"name": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code, out, err = run(capsys, "config", "check", str(path))
    assert_one_line(code, out, err, "nested too deeply")  # was RecursionError


# -- commands on a trained run ----------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    assert main(["train", *TINY, *sets(f"output.dir={root}", "output.name=run")]) == 0
    return root / "run"


def test_sample_too_many(trained, tmp_path, capsys):
    code, out, err = run(capsys, "sample", str(trained), "-o", str(tmp_path / "s.npy"), "-n", "100000000000")
    assert_one_line(code, out, err, "--num-samples = 100,000,000,000 needs at least")  # was an allocator error


def test_evaluate_too_many(trained, capsys):
    code, out, err = run(capsys, "evaluate", str(trained), "-n", "100000000000")
    assert_one_line(code, out, err, "needs at least")


def test_sample_out_under_a_file(trained, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, out, err = run(capsys, "sample", str(trained), "-o", str(tmp_path / "f" / "s.png"))
    assert_one_line(code, out, err, "its folder cannot be created")  # was FileExistsError


def test_evaluate_out_is_a_folder(trained, tmp_path, capsys):
    code, out, err = run(capsys, "evaluate", str(trained), "-o", str(tmp_path))
    assert_one_line(code, out, err, "is a folder")  # was IsADirectoryError after evaluating


def test_tiny_truncation_does_not_hang(trained, tmp_path, capsys):
    from gankit.restore import latents

    z = latents(64, 2, "normal", seed=0, truncation=1e-30)  # rejection alone loops for ever
    assert z.shape == (64, 2) and np.all(np.abs(z) <= 1e-30)
    z = latents(4000, 2, "normal", seed=0, truncation=0.01)
    assert np.all(np.abs(z) <= 0.01) and abs(float(z.mean())) < 0.001 and z.std() > 0.004  # spread over the range
    assert np.array_equal(latents(50, 3, seed=1, truncation=1.5), latents(50, 3, seed=1, truncation=1.5))
    code, out, err = run(capsys, "sample", str(trained), "-o", str(tmp_path / "s.npy"), "--truncation", "1e-30")
    assert code == 0, err


def test_resume_with_a_deeply_nested_manifest(trained, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    for manifest in [run_dir / "checkpoint.json", *(run_dir / "checkpoints").glob("*.json")]:
        text = manifest.read_text()
        manifest.write_text(text.replace('"config": {', '"config": {"deep": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1))
    code, out, err = run(capsys, "train", "--resume", str(run_dir), "--set", "training.steps=2")
    assert_one_line(code, out, err, "recursion limit")  # was RecursionError
    code, out, err = run(capsys, "sample", str(run_dir), "-o", str(tmp_path / "s.png"))
    assert_one_line(code, out, err, "recursion limit")


def test_manifest_naming_an_unknown_backend_or_architecture(trained, tmp_path, capsys):
    import shutil

    for field, value, expected in [("backend", "mxnet", "backend 'mxnet'"),
                                   ("architecture", "resnet9000", "unknown architecture 'resnet9000'")]:
        run_dir = tmp_path / field
        shutil.copytree(trained, run_dir)
        path = run_dir / "checkpoint.json"
        manifest = json.loads(path.read_text())
        if field == "backend":
            manifest["backend"] = manifest["config"]["backend"] = value
        else:
            manifest["config"]["generator"]["name"] = value
        path.write_text(json.dumps(manifest))
        for command in (["evaluate", str(run_dir)], ["sample", str(run_dir), "-o", str(tmp_path / "s.png")]):
            code, out, err = run(capsys, *command)
            if command[0] == "sample" and field == "architecture":
                assert code == 0, err  # sampling needs only the manifest's specs
                continue
            assert_one_line(code, out, err, expected)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims width x height grey pixels (a decompression bomb's
    header; the few compressed rows it holds decode to zeros)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [12_000, 100_000])  # Pillow warns above 89M pixels, raises above twice that
def test_decompression_bomb_image_is_refused(tmp_path, capsys, side):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        (folder / f"ok{i}.png").write_bytes(png_claiming(8, 8))
    (folder / "bomb.png").write_bytes(png_claiming(side, side))
    data = sets("data.name=image_folder", f"data.params={{\"path\": \"{folder}\", \"size\": 8, \"mode\": \"grayscale\"}}")
    code, out, err = run(capsys, "train", *TINY, *sets(f"output.dir={tmp_path / 'runs'}"), *data)
    assert_one_line(code, out, err, "bomb.png")
    assert "decompression bomb" in err


def test_an_architecture_whose_layer_refuses_its_settings():
    """A plugin's spec builder that makes an invalid layer: one line naming the layer and
    the setting, not pydantic's multi-line report (or its first line, "1 validation error")."""
    from types import SimpleNamespace

    import gankit
    from gankit.config import PluginChoice
    from gankit.errors import ConfigError
    from gankit.assembly import build_architecture

    def factory(params, **kwargs):
        return gankit.NetSpec(input_shape=(2,), layers=[gankit.Dense(units=0)])

    record = SimpleNamespace(params=gankit.NoParams, factory=factory, conditional=False)
    registry = SimpleNamespace(get=lambda kind, name: SimpleNamespace(record=record))
    with pytest.raises(ConfigError) as err:
        build_architecture(registry, PluginChoice(name="broken"), SimpleNamespace(num_classes=None), role="generator")
    assert "generator 'broken': its Dense layer: units: Input should be greater than 0" in err.value.one_line()


def test_evaluate_and_resume_use_the_manifest_specs(trained, tmp_path, capsys):
    """The checkpoint's networks are its manifest's specs: a config that now builds other
    networks (edited, or a plugin that changed) neither breaks evaluate nor silently
    resumes into other networks."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    for path in [run_dir / "checkpoint.json", *(run_dir / "checkpoints").glob("*.json")]:
        manifest = json.loads(path.read_text())
        manifest["config"]["generator"]["params"]["hidden"] = [16]  # the specs and weights stay
        path.write_text(json.dumps(manifest))
    code, out, err = run(capsys, "evaluate", str(run_dir), "-n", "50", "-m", "modes")
    assert code == 0, err  # was refused: it built the config's nets, which the manifest's weights do not fit
    assert json.loads((run_dir / "eval.json").read_text())["metrics"]
    config = json.loads((run_dir / "config.json").read_text())
    config["generator"]["params"]["hidden"] = [16]
    (run_dir / "config.json").write_text(json.dumps(config))
    code, out, err = run(capsys, "train", "--resume", str(run_dir), "--set", "training.steps=2")
    assert_one_line(code, out, err, "is not the generator the run's config builds now")
    pytest.importorskip("onnx")  # export, too, builds the manifest's networks
    code, out, err = run(capsys, "export", str(run_dir), "-o", str(tmp_path / "g.onnx"))
    assert code == 0 and (tmp_path / "g.onnx").stat().st_size > 0, err
