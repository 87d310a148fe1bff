"""plugins/example-plugin is a real, separately installable distribution: installed
(offline, into a temporary directory) its entry point registers a loss and an
architecture, and its own test runs the conformance suite on them."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "plugins" / "example-plugin"


def test_the_main_distribution_does_not_ship_the_example():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    assert not any("example" in p for p in setuptools["packages"])
    assert not any("example" in d for d in setuptools.get("package-dir", {}).values())
    assert not any("example" in v for v in config["project"]["entry-points"]["gankit"].values())
    example = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert example["project"]["name"] == "gankit-example-plugin"
    assert example["project"]["entry-points"]["gankit"] == {"example": "gankit_example_plugin"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example installed with pip into its own directory, as a user would get it."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("example")
    source = tmp / "source"  # build from a copy: the checkout gets no build/ or egg-info
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert list(target.glob("gankit_example_plugin-*.dist-info/entry_points.txt"))
    return target, source


def test_its_own_test_runs_the_conformance_suite_on_its_plugins(site):
    pytest.importorskip("torch")
    target, source = site
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", str(source / "tests"),
         "--rootdir", str(source), "--gankit-backend=torch", "--gankit-dtype=float32",
         "--gankit-loss=focal", "--gankit-architecture=pyramid_mlp",
         "--gankit-check=loss.[!d]*", "--gankit-check=architecture.*",
         # The fixture runs the same checks: deselect the items but for two, to see them.
         "-k", "not gankit_conformance or monotone or shapes_dtypes"],
        capture_output=True, text=True, cwd=source, env=env, timeout=600)
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    for test in ("test_plugins_are_registered_by_entry_point", "test_focal_loss_conforms",
                 "test_pyramid_mlp_conforms", "test_focal_with_gamma_zero_is_the_non_saturating_loss"):
        assert f"PASSED tests/test_conformance.py::{test}" in out, out
    # --gankit-backend also added the checks of the selected plugins as items.
    assert "PASSED gankit-conformance::loss.monotone[focal-torch-float32]" in out
    assert "PASSED gankit-conformance::architecture.shapes_dtypes[pyramid_mlp-torch]" in out
    assert " failed" not in out
