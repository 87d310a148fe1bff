"""An evaluation that cannot fit in memory is refused in one line before any sample is
drawn: the estimate counts the samples, the cached features and the metrics' matrices."""

from types import SimpleNamespace

import numpy as np
import pytest

import gankit
from gankit import budget, evaluation
from gankit.budget import EvaluationPlan, MetricStep, check_evaluation, metric_bytes
from gankit.cli import main
from gankit.errors import ConfigError
from gankit.metrics import EvalContext
from gankit.nets import Activation, Dense, NetSpec
from gankit.plugins import get_registry


def tiny(tmp_path):
    return {"data": {"name": "ring8"}, "latent": {"dim": 2},
            "training": {"steps": 3, "batch_size": 64, "num_samples": 16, "tensorboard": False, "threads": 1},
            "output": {"dir": str(tmp_path), "name": "run"}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("torch")
    return gankit.train(tiny(tmp_path_factory.mktemp("evalmem"))).directory


def no_sampling(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("samples were drawn before the memory check")

    monkeypatch.setattr(evaluation, "generate", fail)
    monkeypatch.setattr(evaluation, "rejection_generate", fail)


def test_a_billion_samples_are_refused_before_any_work(run, monkeypatch):
    """The auditor's case: the samples alone (16 GB) fit under the machine's memory, the
    mode metric's n x modes distance matrices do not."""
    monkeypatch.setenv(budget.MEMORY_ENV, str(25.3e9))
    no_sampling(monkeypatch)
    with pytest.raises(ConfigError) as info:
        evaluation.evaluate_run(run, num_samples=10**9)
    msg = str(info.value)
    assert msg.startswith("--num-samples = 1,000,000,000: evaluating that many samples with modes, fid needs at least"), msg
    assert "and this machine has 25.3 GB" in msg and "samples or fewer" in msg and "GANKIT_MEMORY_LIMIT" in msg


def test_cli_refuses_in_one_line_with_exit_2(run, monkeypatch, capsys):
    monkeypatch.setenv(budget.MEMORY_ENV, str(25.3e9))
    no_sampling(monkeypatch)
    assert main(["evaluate", str(run), "-n", "1000000000"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: --num-samples = 1,000,000,000:"), err


def test_ten_thousand_ring8_samples_evaluate(run, tmp_path):
    result, _ = evaluation.evaluate_run(run, num_samples=10_000, out=tmp_path / "eval.json")
    assert result.num_samples == 10_000 and "modes_captured" in result.metrics and "fid" in result.metrics


@pytest.mark.parametrize("n", [10**6, 10**7, 10**9])
def test_the_most_samples_that_fit_is_the_boundary(run, monkeypatch, n):
    """Under a small limit: the hint's count passes the check, one more is refused."""
    limit = 50e6
    monkeypatch.setenv(budget.MEMORY_ENV, str(limit))
    no_sampling(monkeypatch)
    with pytest.raises(ConfigError, match=r"ask for ([\d,]+) samples or fewer") as info:
        evaluation.evaluate_run(run, num_samples=n)
    fit = int(info.value.hint.split()[2].replace(",", ""))
    exp = evaluation.load_run(run)
    reg = get_registry()
    ctx = EvalContext(fake=np.zeros((0, 2)), real=np.zeros((0, 2)), info=dict(exp.dataset.info))
    plan = evaluation.memory_plan(exp, ctx, [(c.name, reg.make("metric", c.name, reg.get("metric", c.name).record.params()))
                                             for c in evaluation.default_metrics(ctx)], reg)
    assert check_evaluation(plan, fit, limit=int(limit)).total <= limit
    with pytest.raises(ConfigError):
        check_evaluation(plan, fit + 1, limit=int(limit))
    assert 100_000 < fit < n  # ring8 needs about 200 bytes a sample


def test_evaluation_during_training_is_checked_too(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    cfg = tiny(tmp_path)
    cfg["evaluation"] = {"every": 3, "num_samples": 10**6}
    monkeypatch.setenv(budget.MEMORY_ENV, str(50e6))
    monkeypatch.setattr(budget, "check_memory", lambda *a, **k: None)  # the training itself is not the point
    with pytest.raises(ConfigError, match=r"evaluation.num_samples = 1,000,000: evaluating"):
        gankit.train(cfg)


def test_training_is_refused_before_its_first_step(tmp_path, monkeypatch):
    """An evaluation too large for the machine is refused before any training is spent
    (and before the run directory is made), not at the first evaluation."""
    pytest.importorskip("torch")
    from gankit import training

    cfg = tiny(tmp_path)
    cfg["evaluation"] = {"every": 3, "num_samples": 10**6}
    monkeypatch.setenv(budget.MEMORY_ENV, str(50e6))
    monkeypatch.setattr(budget, "check_memory", lambda *a, **k: None)  # the training itself is not the point
    monkeypatch.setattr(training, "_train_locked", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ConfigError, match=r"evaluation.num_samples = 1,000,000: evaluating"):
        gankit.train(cfg)
    assert not (tmp_path / "run").exists()


def test_evaluate_with_no_metric_that_applies_keeps_the_old_eval_json(run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["evaluate", str(run), "-n", "50", "-m", "modes", "-o", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["evaluate", str(run), "-n", "50", "-m", "classes", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no metric applies to this run (classes:") and "is left as it was" in err
    assert out.read_bytes() == before


@pytest.mark.parametrize("value", ["-5", "0", "inf", "nan", "lots"])
def test_a_memory_limit_that_is_no_positive_number_is_refused(monkeypatch, value):
    monkeypatch.setenv(budget.MEMORY_ENV, value)
    with pytest.raises(ConfigError, match="is not a positive number of bytes"):
        budget.memory_limit()


# -- the estimate itself -----------------------------------------------------------------
def g_spec(latent=100, out=784):
    return NetSpec(input_shape=(latent,), layers=[Dense(units=out), Activation(fn="tanh")])


def mnist_plan():
    exp = SimpleNamespace(dataset=SimpleNamespace(sample_shape=(1, 28, 28)), config=SimpleNamespace(latent=SimpleNamespace(dim=100)),
                          generator=g_spec())
    blank = np.zeros((0, 1, 28, 28), np.float32)
    reg = get_registry()
    ctx = EvalContext(fake=blank, real=blank, modality="images", info={"feature_extractor": "mnist_classifier"},
                      get_extractor=evaluation._extractor_factory(reg, {}))
    names = [c.name for c in evaluation.default_metrics(ctx)]
    assert names == ["fid", "kid", "precision_recall", "classes", "inception_score"]
    metrics = [(name, reg.make("metric", name, reg.get("metric", name).record.params())) for name in names]
    return evaluation.memory_plan(exp, ctx, metrics, reg)


def test_mnist_plan_reads_the_classifier_features_once():
    plan = mnist_plan()
    assert plan.sample == 784 and plan.latent == 100
    widths = {key: w for m in plan.metrics for key, w in m.reads}
    assert widths == {"mnist_classifier/real": 128, "mnist_classifier/fake": 128,
                      "mnist_classifier/fake/probabilities": 10}
    est = plan.estimate(2000)
    assert est.total < 1e9  # the default 2,000 fit anywhere
    # precision/recall's 1024 x n distance blocks dominate a large n: about 3 * 8 KB a sample
    big = plan.estimate(10**6)
    assert big.metrics >= 3 * 8 * 1024 * 10**6 and big.total > 25.3e9
    # at that peak the features are cached once, though three metrics read them; the
    # probabilities come later
    assert big.features == 8 * 10**6 * (128 + 128)


def test_precision_recall_grows_with_n_squared_below_the_chunk_and_linearly_above():
    assert metric_bytes("precision_recall", 1000, 2) == 8 * (3 * 1000 * 1000 + 2000)
    assert metric_bytes("precision_recall", 10**6, 2) == 8 * (3 * 1024 * 10**6 + 2 * 10**6)
    assert metric_bytes("modes", 10**9, sample=2, modes=8) > 100e9  # the auditor's case: 2 x n x 8 float64
    assert metric_bytes("somebody_elses_metric", 10**9, 128) == 0


def test_a_third_party_metric_counts_its_samples_only():
    plan = EvaluationPlan(sample=2, latent=2, generator_activations=10,
                          metrics=(MetricStep("precision_recall", (("x/real", 2), ("x/fake", 2)), builtin=False),))
    assert plan.estimate(10**6).total < 1e8
    builtin = EvaluationPlan(sample=2, latent=2, generator_activations=10,
                             metrics=(MetricStep("precision_recall", (("x/real", 2), ("x/fake", 2)), builtin=True),))
    assert builtin.estimate(10**6).total > 2e10
