"""The default experiment: README's `make run`, timed and scored.

    .venv/bin/python tests/benchmarks/default_experiment.py                  # gankit train, no arguments
    .venv/bin/python tests/benchmarks/default_experiment.py --picture docs/images/mnist-torch.png
    .venv/bin/pytest tests/benchmarks/test_default_experiment.py -s          # the same, asserting the targets

Runs ``gankit train`` exactly as ``make run`` does (no config, no preset: the default
``mnist`` preset on the default backend) in a fresh process and a temporary directory,
and reports its wall time and what the shipped MNIST classifier says of 2,000 samples
of the EMA generator (the preset's evaluation at the last step): classes covered, mean
confidence, FID in the classifier's features. Targets (issue: the default experiment):
at most 3 minutes on a 2-core CPU, all 10 classes. Whether the digits are recognisable
is for a person to judge: ``--picture`` copies the run's ``samples.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 180.0
TARGET_CLASSES = 10


def run(picture: str | None = None, extra: list[str] = ()) -> dict:
    gankit = Path(sys.executable).with_name("gankit")
    command = [str(gankit), "train", "-q", *extra]
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        done = subprocess.run(command, cwd=work, capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        run_dir = next((Path(work) / "runs").iterdir())
        summary = json.loads((run_dir / "summary.json").read_text())
        lines = (run_dir / "eval.jsonl").read_text().splitlines()
        evaluation = json.loads(lines[-1])
        if picture:
            Path(picture).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / "samples.png", picture)
    m = evaluation["metrics"]
    report = {
        "command": "gankit train" + "".join(f" {a}" for a in extra),
        "wall_seconds": round(wall, 1),
        "training_seconds": round(summary.get("seconds", float("nan")), 1),
        "steps": summary.get("steps"),
        "backend": summary.get("backend"),
        "generator": evaluation.get("generator"),
        "num_samples": evaluation.get("num_samples"),
        "classes_covered": m["classes_covered"],
        "mean_confidence": round(m["mean_confidence"], 3),
        "fid": round(m["fid"], 1),
        "cpu_count": os.cpu_count(),
    }
    report["targets_met"] = report["wall_seconds"] <= TARGET_SECONDS and report["classes_covered"] >= TARGET_CLASSES
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--picture", help="copy the run's samples.png here")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="KEY=VALUE passed to gankit train (the benchmark proper uses none)")
    args = parser.parse_args(argv)
    report = run(args.picture, [a for o in args.overrides for a in ("--set", o)])
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["targets_met"] else 1)
