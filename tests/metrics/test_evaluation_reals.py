"""`gankit evaluate -n N` with N larger than the dataset says that the reals repeat."""

import json

import pytest

import gankit
from gankit.cli import main
from gankit.evaluation import Evaluation


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A tiny torch GAN on 60 digits (8x8 images)."""
    pytest.importorskip("torch")
    return gankit.train({
        "data": {"name": "digits", "params": {"limit": 60}},
        "latent": {"dim": 8},
        "generator": {"name": "mlp", "params": {"hidden": [16], "output_activation": "tanh"}},
        "discriminator": {"name": "mlp", "params": {"hidden": [16]}},
        "training": {"steps": 3, "batch_size": 30, "num_samples": 16, "tensorboard": False, "threads": 1},
        "evaluation": {"num_samples": 40},
        "output": {"dir": str(tmp_path_factory.mktemp("reals")), "name": "run"},
    })


@pytest.mark.parametrize("n, repeated", [(200, True), (61, True), (60, False), (20, False)])
def test_evaluate_says_when_reals_repeat(small_run, tmp_path, capsys, n, repeated):
    out = tmp_path / "eval.json"
    code = main(["evaluate", str(small_run.directory), "-n", str(n), "-m", "fid", "-o", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    payload = json.loads(out.read_text())
    assert payload["num_samples"] == n
    if repeated:
        assert "warning: the dataset holds 60 samples, fewer than the" in stderr
        assert f"use -n 60 or fewer" in stderr
        assert payload["reals_repeated"] is True and payload["dataset_size"] == 60
    else:
        assert "repeats" not in stderr
        assert "reals_repeated" not in payload


def test_endless_samplers_never_repeat():
    e = Evaluation(metrics={}, step=0, num_samples=10_000, seconds=0.0, dataset_size=None)
    assert not e.reals_repeated and e.reals_note() is None
    assert Evaluation(metrics={}, step=0, num_samples=11, seconds=0.0, dataset_size=10).reals_repeated
