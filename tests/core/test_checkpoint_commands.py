"""`gankit sample`, `evaluate` and `export` read a checkpoint the same way: the backend and
the networks come from its manifest, a manifest whose config contradicts it is refused by
all three in the same line naming the checkpoint, and so is a --backend not installed."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from gankit.cli import main

TINY = ["--preset", "ring8", "-q", "--set", "training.steps=2", "--set", "training.batch_size=8",
        "--set", "training.threads=1", "--set", "training.tensorboard=false", "--set", "training.num_samples=16"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    assert main(["train", *TINY, "--set", f"output.dir={root}", "--set", "output.name=run"]) == 0
    return root / "run"


def commands(run_dir, tmp_path):
    return {"sample": ["sample", str(run_dir), "-o", str(tmp_path / "s.npy")],
            "evaluate": ["evaluate", str(run_dir), "-n", "20", "-m", "modes", "-o", str(tmp_path / "e.json")],
            "export": ["export", str(run_dir), "-o", str(tmp_path / "g.onnx")]}


def errors(capsys, args):
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, (args, code, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in out + err, err
    return err.strip()


def edited(trained, tmp_path, edit):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    path = run_dir / "checkpoint.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    return run_dir


def _backend(m):
    m["backend"] = "mxnet"


def _latent(m):
    m["config"]["latent"]["dim"] = 7


def _ema(m):
    m["config"]["training"]["ema_decay"] = 0.5


@pytest.mark.parametrize("edit, expected", [
    (_backend, "its manifest names the backend 'mxnet' but its config 'torch'"),
    (_latent, "its config's latent.dim is 7 but its generator takes latents of size 2"),
    (_ema, "its weights hold no EMA generator but its config's training.ema_decay is 0.5"),
], ids=["backend", "latent_dim", "ema"])
def test_a_manifest_contradicting_its_config_is_refused_alike(trained, tmp_path, capsys, edit, expected):
    """Before, evaluate used the config's backend and latent size and sample the manifest's:
    one refused what the other loaded, or failed with a line naming neither."""
    run_dir = edited(trained, tmp_path, edit)
    lines = {name: errors(capsys, args) for name, args in commands(run_dir, tmp_path).items()
             if name != "export" or importlib.util.find_spec("onnx")}
    for name, line in lines.items():
        assert line == f"error: checkpoint {str(run_dir)!r}: {expected}; the manifest was edited or is corrupt " \
                       "(use the checkpoint's manifest as gankit wrote it, or an earlier checkpoint of the run)", name
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "s.npy").exists()


def test_a_backend_option_not_installed_is_named_as_the_option(trained, tmp_path, capsys):
    for name, args in commands(trained, tmp_path).items():
        line = errors(capsys, [*args, "--backend", "nosuch"])
        assert line.startswith("error: --backend 'nosuch' is not installed (installed: "), (name, line)
        assert "torch" in line and "checkpoint" not in line, (name, line)


def test_the_manifest_backend_is_the_default_of_all_three(trained, tmp_path, capsys):
    """An unedited checkpoint loads in all three commands, on the backend that wrote it."""
    for name, args in commands(trained, tmp_path).items():
        if name == "export" and not importlib.util.find_spec("onnx"):
            continue
        assert main(args) == 0, (name, capsys.readouterr().err)
        assert "(torch" in capsys.readouterr().out or name == "evaluate"
    assert json.loads((tmp_path / "e.json").read_text())["backend"] == "torch"


@pytest.mark.parametrize("name, expected", [("config.json", "is not a checkpoint but the run's config"),
                                            ("metrics.jsonl", "is not a checkpoint")])
def test_a_run_file_that_is_no_checkpoint_is_named_as_such(trained, tmp_path, capsys, name, expected):
    err = errors(capsys, ["sample", str(trained / name), "-o", str(tmp_path / "s.npy")])
    assert expected in err and f"give the run directory ({trained})" in err
