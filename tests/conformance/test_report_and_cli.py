"""`gankit conformance`, the report it prints and writes, and how the suite treats
what does not apply, what is not installed, and plugins that crash."""

import json
import os

import numpy as np
import pytest

import gankit
from gankit.cli import main
from gankit.conformance import CheckResult, Report, Suite


@pytest.fixture
def registry(mutant_registry, monkeypatch):
    """The CLI's registry is the mutant one (real backends + mutants)."""
    import gankit.plugins

    monkeypatch.setattr(gankit.plugins, "_REGISTRY", mutant_registry)
    return mutant_registry


def test_cli_passes_writes_json_and_names_backend_versions(registry, tmp_path, capsys):
    path = tmp_path / "report.json"
    rc = main(["conformance", "--backend", "torch", "--loss", "correct", "--dtype", "float32",
               "--check", "loss.*", "--json", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    import torch

    assert f"torch {torch.__version__}" in out and "hypothesis profile ci" in out
    assert "loss correct" in out and "monotone" in out and "0 failed" in out
    data = json.loads(path.read_text())
    assert data["backends"] == {"torch": torch.__version__} and data["profile"] == "ci"
    assert data["summary"]["fail"] == 0 and data["summary"]["pass"] > 5
    assert {"kind", "subject", "check", "backend", "dtype", "status", "detail"} <= set(data["results"][0])
    assert "loss.monotone" in data["checks"]


def test_cli_exits_1_and_names_the_failed_check(registry, capsys):
    rc = main(["conformance", "--backend", "torch", "--loss", "sum_reduced", "--dtype", "float32",
               "--check", "loss.mean_reduced"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL" in out and "loss.mean_reduced" in out and "duplicated" in out


def test_cli_durations_lists_the_slowest_checks_and_the_time_per_kind(registry, capsys):
    rc = main(["conformance", "--backend", "torch", "--loss", "correct", "--dtype", "float32",
               "--check", "loss.reference", "--check", "loss.monotone", "--check", "loss.saturation",
               "--durations", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    section = out.split("slowest checks", 1)[1]
    assert "CPU by kind: loss " in section
    listed = [line.split()[4] for line in section.splitlines()[1:] if line.strip().endswith(("case)", "cases)"))]
    assert len(listed) == 2 and set(listed) <= {"loss.reference", "loss.monotone", "loss.saturation"}, section
    assert "[torch]" in section
    report = Report(header={}, results=[
        CheckResult("loss", "a", "loss.x", "torch", "float32", "pass", seconds=1.0, cpu_seconds=1.0),
        CheckResult("loss", "b", "loss.x", "torch", "float64", "pass", seconds=2.0, cpu_seconds=1.0),
        CheckResult("loss", "a", "loss.y", "torch", "float32", "pass", seconds=2.5, cpu_seconds=2.5),
        CheckResult("training", "step", "training.z", "tensorflow", "", "pass", seconds=0.5, cpu_seconds=4.0)])
    # Most CPU time first: on a shared machine the wall clock says more about the others' work.
    assert report.durations() == [("training.z", "tensorflow", 0.5, 4.0, 1), ("loss.y", "torch", 2.5, 2.5, 1),
                                  ("loss.x", "torch", 3.0, 2.0, 2)]
    assert report.seconds_by_kind() == {"loss": (5.5, 4.5), "training": (0.5, 4.0)}
    assert main(["conformance", "--durations", "-1"]) == 2  # a usage error


def test_threads_are_set_for_the_run_and_restored_after(monkeypatch):
    import gankit.threads
    from gankit.conformance.suite import THREAD_VARIABLES, thread_environment

    for var in THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(gankit.threads, "usable_cpus", lambda: 2)
    with thread_environment(None):  # 2 CPUs: one thread, as gankit train chooses
        assert {v: os.environ.get(v) for v in THREAD_VARIABLES} == dict.fromkeys(THREAD_VARIABLES, "1")
    assert not any(v in os.environ for v in THREAD_VARIABLES)
    monkeypatch.setattr(gankit.threads, "usable_cpus", lambda: 16)
    with thread_environment(None):  # many CPUs: the frameworks' own default
        assert not any(v in os.environ for v in THREAD_VARIABLES)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    with thread_environment(None):  # the environment's own setting is kept
        assert os.environ["OMP_NUM_THREADS"] == "4"
    with thread_environment(3):  # --threads wins
        assert {v: os.environ.get(v) for v in THREAD_VARIABLES} == dict.fromkeys(THREAD_VARIABLES, "3")
    assert os.environ["OMP_NUM_THREADS"] == "4" and "TF_NUM_INTRAOP_THREADS" not in os.environ


def test_cli_threads_option_reaches_the_report_header(registry, tmp_path, capsys):
    path = tmp_path / "report.json"
    rc = main(["conformance", "--backend", "torch", "--loss", "correct", "--dtype", "float32",
               "--check", "loss.saturation", "--threads", "2", "--json", str(path)])
    assert rc == 0, capsys.readouterr().out
    assert json.loads(path.read_text())["threads"] == {"OMP_NUM_THREADS": "2", "TF_NUM_INTRAOP_THREADS": "2",
                                                      "TF_NUM_INTEROP_THREADS": "2"}
    assert main(["conformance", "--threads", "0"]) == 2  # a usage error


def test_cli_unknown_plugin_is_a_one_line_error(registry, capsys):
    rc = main(["conformance", "--backend", "torch", "--loss", "nope"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown loss 'nope'" in err and "correct" in err and "Traceback" not in err


def test_cli_lists_the_checks(capsys):
    assert main(["conformance", "--list"]) == 0
    out = capsys.readouterr().out
    assert "loss.optimal_discriminator" in out and "training.n_critic" in out and "across backends" in out


def test_cross_backend_checks_do_not_apply_to_one_backend(registry):
    report = Suite(registry=registry, backends=["torch"], losses=["correct"], checks=["loss.backends_agree"],
                   dtypes=["float32"]).run()
    (result,) = report.results
    assert result.status == "n/a" and "two backends" in result.detail and result.backend == "across"


class _NoHalf:
    """A backend whose value_and_grad rejects float16 (as a CPU-only framework might)."""

    name = "no_half"

    def __init__(self):
        from gankit_torch.backend import TorchBackend

        self.inner = TorchBackend()

    def version(self):
        return "1.0"

    def ops(self, dtype="float32", seed=0):
        if dtype == "float16":
            raise TypeError("float16 is not supported on this device")
        return self.inner.ops(dtype=dtype, seed=seed)

    def build_trainer(self, setup):
        return self.inner.build_trainer(setup)


class _Broken(gankit.Loss):
    meta = gankit.LossMeta(family="other", saturating=False, properties=(), formula="", paper="")

    def __init__(self, params=None):
        raise RuntimeError("this loss cannot be built")


class _Plugin:
    @gankit.hookimpl
    def gankit_register_backends(self):
        return [gankit.BackendRecord(name="no_half", factory=_NoHalf),
                gankit.BackendRecord(name="missing", factory=_NoHalf, requires=("no_such_framework_xyz",))]

    @gankit.hookimpl
    def gankit_register_losses(self):
        import gankit_plugins.losses as L

        return [gankit.LossRecord(name="broken", factory=_Broken),
                gankit.LossRecord(name="hinge", factory=L.Hinge)]


def test_unsupported_dtypes_missing_backends_and_broken_plugins():
    pytest.importorskip("torch")
    registry = gankit.Registry.from_plugins([_Plugin()])
    suite = Suite(registry=registry, losses=["hinge", "broken"], checks=["loss.reference", "loss.saturation"],
                  dtypes=["float32", "float16"])
    assert suite.unavailable and "no_such_framework_xyz" in suite.unavailable["missing"]
    report = suite.run()
    assert list(report.header["backends"]) == ["no_half"] and "missing" in report.header["unavailable"]
    half = report.find(subject="hinge", dtype="float16")
    assert half and all(r.status == "n/a" and "float16" in r.detail for r in half)
    assert {r.status for r in report.find(subject="hinge", dtype="float32")} == {"pass"}
    broken = report.find(subject="broken")
    assert broken and all(r.status == "fail" and "cannot be built" in r.detail for r in broken)


def test_selecting_an_uninstalled_backend_is_an_error():
    registry = gankit.Registry.from_plugins([_Plugin()])
    with pytest.raises(gankit.BackendUnavailable, match="no_such_framework_xyz"):
        Suite(registry=registry, backends=["missing"], losses=["hinge"])


def test_bad_selection_is_a_config_error(registry):
    with pytest.raises(gankit.ConfigError, match="no check matches"):
        Suite(registry=registry, backends=["torch"], losses=["correct"], checks=["loss.no_such_check"])
    with pytest.raises(gankit.ConfigError, match="invalid params for loss"):
        Suite(registry=registry, backends=["torch"], losses=['correct:{"label_smoothing": 7}'])
    with pytest.raises(gankit.ConfigError, match="JSON"):
        Suite(registry=registry, backends=["torch"], losses=["correct:{oops"])


def test_report_cells_sum_up_dtypes():
    def r(status, dtype="float32"):
        return CheckResult("loss", "x", "loss.monotone", "torch", dtype, status)

    assert Report.cell([r("pass"), r("pass", "float64")]) == ("pass", "green")
    assert Report.cell([r("pass"), r("fail", "float16")])[0] == "FAIL f16"
    assert Report.cell([r("pass"), r("n/a", "bfloat16")])[0] == "pass (n/a bf16)"
    assert Report.cell([r("n/a"), r("n/a", "float64")])[0] == "n/a"
    report = Report(header={"backends": {"torch": "2"}}, results=[r("pass"), r("fail", "float16")])
    assert report.exit_status == 1 and report.failed_checks() == {"loss.monotone"}


def test_ci_profile_repeats_exactly_and_thorough_shrinks(registry):
    def detail(profile):
        report = Suite(registry=registry, backends=["torch"], losses=["sum_reduced"], checks=["loss.mean_reduced"],
                       dtypes=["float64"], profile=profile).run()
        (result,) = report.results
        assert result.status == "fail"
        return result.detail

    assert detail("ci") == detail("ci")
    # Shrinking finds the smallest batches that show the sum: one logit each.
    assert "real=[0.0], fake=[0.0]" in detail("thorough")


def test_penalty_helper_is_exact_on_a_linear_discriminator(registry):
    from gankit.conformance.regularizers import closed_form, penalty
    from gankit.conformance.suite import BackendHandle

    r1 = registry.get("regularizer", "correct_r1").record.factory(None)
    handle = BackendHandle("torch", registry.backend("torch"))
    w = np.array([3.0, 4.0, 0.0])
    value, grad = penalty(handle, r1, "float64", w, np.ones((2, 3)), np.zeros((2, 3)))
    assert value == pytest.approx(closed_form(r1).value(5.0)) == pytest.approx(125.0)
    np.testing.assert_allclose(grad, 10.0 * w)
