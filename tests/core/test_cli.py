"""The command line: every user error is one line on stderr and exit status 2."""

import json
import subprocess
import sys

import pytest

from gankit.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args, text, expected",
    [
        (["config", "check", "{f}"], "[training]\nstepz = 1\n", "training.stepz: unknown key"),
        (["config", "check", "{f}"], '[loss]\nname = "nope"\n', "loss.name: unknown loss 'nope'; available:"),
        (["config", "check", "{f}"], "[training\n", "cannot be parsed"),
        (["config", "check", "missing.toml"], None, "does not exist"),
        (["config", "check", "--preset", "nope"], None, "unknown preset 'nope'; available:"),
        (["config", "check", "--preset", "ring8", "--set", "oops"], None, "is not of the form KEY=VALUE"),
        (["train", "{f}"], '[data]\nname = "npy"\nparams = { path = "nowhere.npy" }\n', "data file 'nowhere.npy' does not exist"),
        (["plugins", "--kind", "widget"], None, "unknown plugin kind 'widget'"),
        (["frobnicate"], None, "No such command"),
        (["config", "check", "--preset", ""], None, "unknown preset ''"),
        (["config", "check", "-p", "ring8", "-s", "training.checkpoint_minutes=inf"], None, "should be a finite number"),
        (["config", "check", "-p", "ring8", "-s", "optimizers.generator.lr=nan"], None, "finite number"),
        (["config", "check", "-p", "ring8", "-s", "output.name=2024"], None, "quote it as JSON: 'output.name=\"2024\"'"),
        (["config", "check", "-p", "ring8", "-s", "name=-x"], None, "the experiment name becomes the start of a directory name"),
        (["config", "check", "-p", "ring8", "-s", 'evaluation.metrics=[{"name": "fid", "params": {"features": "nope"}}]'],
         None, "evaluation.metrics.0.params.features: unknown feature extractor 'nope'"),
        (["config", "check", "-s", "foo=1", "--debug"], None, "No such option '--debug'"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch, args, text, expected):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "c.toml"
    if text is not None:
        f.write_text(text)
    code, out, err = run(capsys, *[a.replace("{f}", str(f)) for a in args])
    assert code == 2
    assert err.startswith("error: ") and expected in err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err + out


@pytest.mark.parametrize("args", [[], ["config"]])
def test_a_group_without_a_command_prints_its_help(capsys, args):
    code, out, err = run(capsys, *args)
    assert code == 0 and out.startswith(f"Usage: gankit {' '.join(args)}".rstrip() + " [OPTIONS] COMMAND") and not err


def test_debug_shows_the_traceback(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text("bogus = 1\n")
    from gankit.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", "config", "check", str(f)])


def test_config_check_prints_resolved_config(capsys):
    code, out, _ = run(capsys, "config", "check", "--preset", "ring8", "--set", "loss.name=hinge")
    assert code == 0
    cfg = json.loads(out)
    assert cfg["loss"] == {"name": "hinge", "params": {}}
    assert cfg["data"]["params"] == {"modes": 8, "radius": 1.0, "std": 0.01}


def test_config_schema(capsys):
    code, out, _ = run(capsys, "config", "schema")
    assert code == 0 and json.loads(out)["title"] == "ExperimentConfig"


def test_plugins_lists_distributions(capsys):
    code, out, _ = run(capsys, "plugins", "--json")
    rows = json.loads(out)
    assert code == 0
    names = {(r["kind"], r["name"]): r for r in rows}
    assert names[("backend", "torch")]["distribution"] == "gankit"
    assert names[("loss", "hinge")]["plugin"] == "losses"
    code, out, _ = run(capsys, "plugins", "--kind", "loss")
    assert code == 0 and "relativistic" in out and "ring8" not in out


def test_presets_listed(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0 and "ring8" in out and "grid25" in out


def test_console_script_exit_status():
    proc = subprocess.run([sys.executable, "-m", "gankit", "config", "check", "--preset", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown preset 'nope'")


def test_configuration_reference_is_up_to_date():
    """docs/configuration.md is generated from the models: regenerate with `make docs`."""
    from pathlib import Path

    from gankit.plugins import Registry
    from gankit.reference import config_reference

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    expected = config_reference(Registry.from_environment({"GANKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}))
    assert doc.read_text() == expected, "docs/configuration.md is stale: run `make docs`"
