"""The speed benchmark runs end to end (a short MLP run; the figures are in docs/benchmarks.md).

Not part of the default test run: `pytest tests/benchmarks/test_speed.py`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import speed  # noqa: E402


def test_speed_benchmark_reports_ratios(tmp_path):
    report = speed.main(["--arch", "mlp", "--steps", "20", "--warmup", "5", "--rounds", "1", "--own-nets",
                         "--threads", "1", "--clock", "cpu", "--json", str(tmp_path / "speed.json")])
    for b in ("torch", "tensorflow"):
        assert report["ratios"][b] > 0 and report["ratios"][f"{b} engine"] > 0
        assert report["peak_rss_mb"][b]["gankit"] > 0
    assert (tmp_path / "speed.json").is_file()


def test_jax_step_within_five_percent_of_a_hand_written_jax_loop(tmp_path):
    """Issue 14's target: gankit's jitted jax step, with the whole driver, at most 1.05 times a
    hand-written jax loop (median of 7 interleaved rounds; one CPU per process, CPU clock).
    Needs a quiet machine: other jobs on the same cores make the rounds noisy."""
    report = speed.main(["--arch", "mlp", "--backends", "jax", "--steps", "200", "--warmup", "20", "--rounds", "7",
                         "--threads", "1", "--clock", "cpu", "--json", str(tmp_path / "speed.json")])
    assert report["ratios"]["jax"] <= 1.05, report["round_ratios"]["jax"]
