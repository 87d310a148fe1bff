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
