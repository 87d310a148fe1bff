"""The pytest plugin (``pytest11`` entry point ``gankit``), in fresh pytest processes.

Without ``--gankit-*`` options it adds nothing and imports nothing heavy; with
``--gankit-backend`` it adds the planned checks as test items; the
``gankit_conformance`` fixture runs a selection from inside a test.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _pytest(tmp_path, *args, env=None):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path), *args], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, **(env or {})}, timeout=600)


def test_an_ordinary_test_run_is_untouched(tmp_path):
    (tmp_path / "test_plain.py").write_text(
        "import sys\n"
        "def test_plain():\n"
        "    heavy = [m for m in ('gankit.conformance.suite', 'hypothesis.extra', 'torch', 'tensorflow') if m in sys.modules]\n"
        "    assert heavy == []\n")
    run = _pytest(tmp_path, "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout and "gankit" not in run.stdout


def test_the_plugin_is_registered_with_its_options():
    run = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, timeout=600)
    assert "--gankit-backend" in run.stdout and "--gankit-thorough" in run.stdout


def test_checks_become_test_items_and_the_fixture_runs_a_selection(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "test_author.py").write_text(
        "import pytest\n"
        "def test_own():\n"
        "    assert True\n"
        "def test_fixture_catches_a_sum(gankit_conformance):\n"
        "    with pytest.raises(pytest.fail.Exception, match='loss.mean_reduced'):\n"
        "        gankit_conformance(losses=['sum_reduced'], checks=['loss.mean_reduced'])\n"
        "    report = gankit_conformance(losses=['correct'], checks=['loss.mean_reduced'])\n"
        "    assert report.find(subject='correct', status='pass')\n")
    run = _pytest(tmp_path, "-rA", "--gankit-backend=torch", "--gankit-loss=correct", "--gankit-loss=sum_reduced",
                  "--gankit-check=loss.mean_reduced", "--gankit-check=loss.optimal_discriminator",
                  "--gankit-check=loss.hinge_margin", "--gankit-dtype=float32",
                  env={"GANKIT_PLUGINS": "mutants", "PYTHONPATH": str(HERE)})
    out = run.stdout
    assert run.returncode == 1, out + run.stderr  # the mutant's check fails
    assert "gankit conformance: gankit" in out and "torch" in out  # the header names the backend
    assert "PASSED test_author.py::test_own" in out
    assert "PASSED test_author.py::test_fixture_catches_a_sum" in out
    assert "PASSED gankit-conformance::loss.mean_reduced[correct-torch-float32]" in out
    assert "FAILED gankit-conformance::loss.mean_reduced[sum_reduced-torch-float32]" in out
    assert "loss.mean_reduced failed for loss 'sum_reduced'" in out and "duplicated" in out
    assert "SKIPPED" in out and "does not declare 'hinge_margin'" in out
    assert "2 failed, 4 passed, 2 skipped" in out  # sum_reduced's D* is off too


def test_a_bad_option_is_a_usage_error(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    run = _pytest(tmp_path, "--gankit-backend=torch", "--gankit-loss=no_such_loss")
    assert run.returncode == 4 and "unknown loss 'no_such_loss'" in run.stderr
