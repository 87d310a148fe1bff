"""The default experiment meets its targets: `gankit train` with no arguments finishes in
at most 3 minutes on this 2-core CPU and the shipped classifier finds all 10 digits.

Not part of the default test run (it times a 2.5-minute training run, and the timing
target is for a quiet 2-core machine): `pytest tests/benchmarks/test_default_experiment.py -s`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import default_experiment  # noqa: E402


def test_default_experiment_draws_all_ten_digits_within_three_minutes(tmp_path):
    report = default_experiment.main(["--picture", str(tmp_path / "samples.png"), "--json", str(tmp_path / "r.json")])
    assert report["backend"] == "torch" and report["generator"] == "ema"
    assert report["classes_covered"] == default_experiment.TARGET_CLASSES
    assert report["wall_seconds"] <= default_experiment.TARGET_SECONDS, report
    assert (tmp_path / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
