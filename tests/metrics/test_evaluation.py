"""Evaluation: the config section, evaluation during training, `gankit evaluate RUN_DIR`."""

import json

import numpy as np
import pytest

import gankit
from gankit.cli import main
from gankit.evaluation import default_metrics, evaluate, evaluate_run, load_run
from gankit.metrics import EvalContext


def tiny(tmp_path, **evaluation):
    return {
        "data": {"name": "ring8"},
        "training": {"steps": 20, "batch_size": 64, "num_samples": 100, "tensorboard": False},
        "evaluation": {"num_samples": 200, **evaluation},
        "output": {"dir": str(tmp_path), "name": "run"},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny torch run, shared by the tests that only read it."""
    pytest.importorskip("torch")
    return gankit.train(tiny(tmp_path_factory.mktemp("evaluation")))


def test_evaluation_config_is_checked_against_the_registry():
    cfg = gankit.load_config({"evaluation": {"metrics": [{"name": "kid", "params": {"subsets": 5}}]}})
    assert cfg.evaluation.metrics[0].params["subset_size"] == 1000  # defaults filled in
    with pytest.raises(gankit.ConfigError, match="evaluation.metrics.0.name: unknown metric 'fidd'; available:"):
        gankit.load_config({"evaluation": {"metrics": [{"name": "fidd"}]}})
    with pytest.raises(gankit.ConfigError, match="evaluation.metrics.0.params.k"):
        gankit.load_config({"evaluation": {"metrics": [{"name": "precision_recall", "params": {"k": 0}}]}})
    with pytest.raises(gankit.ConfigError, match="metric listed twice: fid"):
        gankit.load_config({"evaluation": {"metrics": [{"name": "fid"}, {"name": "fid"}]}})
    with pytest.raises(gankit.ConfigError, match="unknown feature_extractor 'nope'"):
        gankit.load_config({"evaluation": {"features": {"nope": {}}}})


def test_defaults_follow_the_data():
    ring = EvalContext(fake=np.zeros((4, 2)), real=np.zeros((4, 2)), info={"modes": [[0, 0]], "std": 1.0})
    assert [m.name for m in default_metrics(ring)] == ["modes", "fid"]
    digits = EvalContext(fake=np.zeros((4, 1, 28, 28)), real=np.zeros((4, 1, 28, 28)), modality="images",
                         info={"feature_extractor": "mnist_classifier"})
    assert [m.name for m in default_metrics(digits)] == ["fid", "kid", "precision_recall", "classes", "inception_score"]
    plain = EvalContext(fake=np.zeros((4, 3)), real=np.zeros((4, 3)))
    assert [m.name for m in default_metrics(plain)] == ["fid", "kid", "precision_recall"]


@pytest.mark.torch
def test_training_evaluates_every_k_steps_and_at_the_end(tmp_path):
    pytest.importorskip("torch")
    run = gankit.train(tiny(tmp_path, every=8, metrics=[{"name": "modes"}]))
    lines = [json.loads(x) for x in (run.directory / "eval.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [8, 16, 20]
    assert all(x["num_samples"] == 200 and set(x["metrics"]) >= {"modes_captured", "high_quality"} for x in lines)


@pytest.mark.torch
def test_no_evaluation_by_default(tmp_path):
    pytest.importorskip("torch")
    run = gankit.train(tiny(tmp_path))
    assert not (run.directory / "eval.jsonl").exists()


@pytest.mark.torch
def test_evaluate_run_matches_evaluating_the_trained_generator(trained, tmp_path):
    run = trained
    result, path = evaluate_run(run.directory)
    assert path == run.directory / "eval.json"
    saved = json.loads(path.read_text())
    assert saved["step"] == 20 and saved["backend"] == "torch" and saved["num_samples"] == 200
    assert set(saved["metrics"]) == {"modes_captured", "modes_total", "high_quality", "mode_kl", "fid"}
    assert saved["higher_is_better"]["fid"] is False
    # the rebuilt generator is the trained one: same samples, same numbers
    exp = load_run(run.directory)
    np.testing.assert_allclose(exp.trainer.sample(50, seed=3), run.trainer.sample(50, seed=3), atol=1e-6)
    again = evaluate(exp)
    assert again.metrics == pytest.approx(result.metrics)


@pytest.mark.torch
def test_cli_evaluate(trained, tmp_path, capsys):
    run = trained
    out = tmp_path / "e.json"
    code = main(["evaluate", str(run.directory), "-n", "150", "-m", "kid", "-m", "classes", "-o", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    saved = json.loads(out.read_text())
    assert saved["num_samples"] == 150 and set(saved["metrics"]) == {"kid", "kid_std"}
    assert "classes" in saved["skipped"] and "metric 'classes' skipped" in stderr
    assert "kid ↓" in stdout


def test_cli_evaluate_errors_are_one_line(tmp_path, capsys):
    code = main(["evaluate", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2 and "holds no checkpoint.json" in err and err.count("\n") == 1


@pytest.mark.torch
def test_cli_evaluate_unknown_metric(trained, tmp_path, capsys):
    run = trained
    code = main(["evaluate", str(run.directory), "-m", "nope"])
    _, err = capsys.readouterr()
    assert code == 2 and "unknown metric 'nope'; available:" in err


@pytest.mark.torch
@pytest.mark.tensorflow
def test_a_torch_run_evaluates_on_tensorflow(trained, tmp_path):
    pytest.importorskip("tensorflow")
    run = trained
    torch_result, _ = evaluate_run(run.directory, out=tmp_path / "t.json")
    tf_result, _ = evaluate_run(run.directory, backend="tensorflow", out=tmp_path / "tf.json")
    assert tf_result.metrics == pytest.approx(torch_result.metrics, rel=1e-3, abs=1e-4)


@pytest.mark.torch
def test_evaluation_results_go_to_the_board(tmp_path):
    pytest.importorskip("torch")
    from gankit.evaluation import maybe_evaluate
    from gankit.training import build

    class Board:
        def __init__(self):
            self.logged = []

        def scalars(self, step, values):
            self.logged.append((step, values))

    exp = build(gankit.load_config(tiny(tmp_path, every=5, metrics=[{"name": "modes"}])))
    board = Board()
    assert maybe_evaluate(exp, 3, tmp_path, board) is None and board.logged == []
    result = maybe_evaluate(exp, 5, tmp_path, board)
    assert board.logged == [(5, {f"eval/{k}": v for k, v in result.metrics.items()})]
    assert "eval/high_quality" in board.logged[0][1]


@pytest.mark.torch
def test_the_ema_generator_is_evaluated_when_there_is_one(tmp_path):
    pytest.importorskip("torch")
    cfg = tiny(tmp_path)
    cfg["training"]["ema_decay"] = 0.9
    run = gankit.train(cfg)
    result, _ = evaluate_run(run.directory)
    assert result.generator == "ema"
    exp = load_run(run.directory)
    from gankit.evaluation import generate, latents

    z = latents(5, 2, "normal", seed=0)
    np.testing.assert_allclose(generate(exp, 5, seed=0), run.trainer.generate(z), atol=1e-6)
