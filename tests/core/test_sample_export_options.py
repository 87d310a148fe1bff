"""`gankit sample` and `gankit export` refuse options they would ignore, and write their
output whole or not at all: an unwritable --out, a name too long or an exporter's error is
one line with exit status 2, and an existing file is left as it was."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from gankit.cli import main

TINY = ["-q", "--set", "training.steps=2", "--set", "training.batch_size=8", "--set", "training.threads=1",
        "--set", "training.tensorboard=false", "--set", "training.num_samples=16"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main(["train", "--preset", "ring8", *TINY, "--set", f"output.dir={root}", "--set", "output.name=points"]) == 0
    assert main(["train", "--preset", "mnist_cgan", *TINY, "--set", f"output.dir={root}", "--set", "output.name=cgan",
                 "--set", "generator.params.base_channels=4", "--set", "discriminator.params.base_channels=4",
                 "--set", "evaluation.every=0", "--set", "training.ema_start=0"]) == 0
    return root


def refused(capsys, args, expected):
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and expected in err, (code, err)


@pytest.mark.parametrize("run, extra, expected", [
    ("points", ["--drs-percentile", "0.5"], "--drs-percentile applies to discriminator rejection sampling"),
    ("points", ["--interpolate", "3", "-n", "500"], "-n does not apply to --interpolate"),
    ("points", ["--interpolate", "3", "--drs-percentile", "0.5"], "does not combine with --rejection drs or --drs-percentile"),
    ("cgan", ["--interpolate", "3", "--walks", "2", "--label", "1", "--label", "2", "--label", "3"],
     "3 labels for 2 walks: the walks would leave out 3"),
    ("cgan", ["-n", "3", "--label", "1", "--label", "2", "--label", "3", "--label", "4"],
     "4 labels for 3 samples: the samples would leave out 4"),
])
def test_sample_refuses_options_it_would_ignore(runs, tmp_path, capsys, run, extra, expected):
    refused(capsys, ["sample", str(runs / run), "-o", str(tmp_path / "x.npy"), *extra], expected)
    assert not (tmp_path / "x.npy").exists()


def test_the_options_that_apply_still_work(runs, tmp_path, capsys):
    assert main(["sample", str(runs / "points"), "--rejection", "drs", "--drs-percentile", "0.5", "-n", "8",
                 "-o", str(tmp_path / "d.npy")]) == 0
    assert main(["sample", str(runs / "cgan"), "-n", "4", "--label", "1", "--label", "2", "-o", str(tmp_path / "l.npy")]) == 0
    assert np.load(tmp_path / "l.npy").shape[0] == 4
    assert main(["sample", str(runs / "cgan"), "--interpolate", "3", "--label", "5", "-o", str(tmp_path / "w.png")]) == 0


@pytest.mark.parametrize("command", ["sample", "export"])
def test_an_output_that_cannot_be_written_is_one_line(runs, tmp_path, capsys, command):
    if command == "export" and importlib.util.find_spec("onnx") is None:
        pytest.skip("onnx is not installed")
    suffix = ".png" if command == "sample" else ".onnx"
    refused(capsys, [command, str(runs / "points"), "-o", str(tmp_path / ("a" * 300 + suffix))], "cannot be written")
    (tmp_path / "file").write_text("a file")
    refused(capsys, [command, str(runs / "points"), "-o", str(tmp_path / "file" / ("x" + suffix))], "cannot be written")


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(runs, tmp_path, capsys, monkeypatch):
    from gankit import plotting

    old = tmp_path / "grid.png"
    old.write_bytes(b"the old picture")

    def broken(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a pic")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plotting, "scatter", broken)
    refused(capsys, ["sample", str(runs / "points"), "-o", str(old)], "No space left on device")
    assert old.read_bytes() == b"the old picture" and sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]


def test_export_refuses_a_wrong_extension_and_an_opset_the_exporter_lacks(runs, tmp_path, capsys):
    if importlib.util.find_spec("onnx") is None:
        pytest.skip("onnx is not installed")
    refused(capsys, ["export", str(runs / "points"), "-o", str(tmp_path / "g.txt")], "must end in .onnx")
    refused(capsys, ["export", str(runs / "points"), "-o", str(tmp_path / "g.onnx"), "--opset", "99"],
            "the torch exporter writes ONNX opsets up to")
    assert not (tmp_path / "g.onnx").exists()
