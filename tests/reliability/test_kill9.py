"""kill -9 at random moments, and inside checkpoint writes: every run, resumed as often as it
takes, ends with the same bits as a run never interrupted.

Per backend (every installed one, as the ``backend_name`` fixture picks them): one
uninterrupted run, then runs killed with SIGKILL — at random times from start-up to the last
file, and inside the k-th fsync, rename or deletion of a checkpoint write — each resumed by
the next (``gankit.train(resume=...)``, which cleans what the kill left) until it completes.
Every completed run is compared with the uninterrupted one: the final weights, optimizer
and random state, samples and every logged loss, bit for bit.

The runs are forked from a process that imported the backend once (``zygote.py``), so a
kill costs a fraction of a second. ``GANKIT_KILL_SEED`` repeats a sequence of kills.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gankit import checkpoint

ZYGOTE = Path(__file__).with_name("zygote.py")
STEPS = 24
#: State carried across steps: EMA, a schedule, n_critic with a penalty drawing random
#: numbers (dragan), Adam's slots, batch norm's buffers; checkpoints every 3 steps.
OVERRIDES = ["device=cpu", "training.threads=1", f"training.steps={STEPS}", "training.batch_size=32",
             "training.log_every=2", "training.num_samples=64", "training.tensorboard=false",
             "generator.params.hidden=[16, 16]", "discriminator.params.hidden=[16, 16]",
             "training.checkpoint_every=3", "training.checkpoint_keep=2", "training.ema_decay=0.8"]
MIN_KILLS = 10
TARGETED = ["fsync", "replace", "unlink"]


class Zygote:
    def __init__(self, backend: str, log: Path):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
               "MPLBACKEND": "Agg"}
        self.log = log.open("w")
        self.proc = subprocess.Popen([sys.executable, str(ZYGOTE), backend], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        assert self._read()["ready"] == backend

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the zygote ended: {Path(self.log.name).read_text()[-3000:]}")
        return json.loads(line)

    def run(self, run_dir: Path, kill: dict | None = None, after: float | None = None) -> dict:
        """One child on ``run_dir``; ``after``: kill -9 it after that many seconds."""
        self.proc.stdin.write(json.dumps({"run_dir": str(run_dir), "overrides": OVERRIDES, "kill": kill}) + "\n")
        self.proc.stdin.flush()
        pid = self._read()["pid"]
        start = time.perf_counter()
        if after is not None:
            time.sleep(after)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out = {}
        while "exit" not in out:
            out.update(self._read())
        out["seconds"] = time.perf_counter() - start
        return out

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()


def _metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_bits(run_dir: Path, whole: Path, story: str) -> None:
    for name in ("checkpoint.safetensors", "checkpoint.state.safetensors", "samples.npy"):
        assert (run_dir / name).read_bytes() == (whole / name).read_bytes(), f"{name} differs after {story}"
    assert _metrics(run_dir) == _metrics(whole), f"metrics.jsonl differs after {story}"
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == STEPS
    left = [p.name for folder in (run_dir, run_dir / "checkpoints") for p in folder.iterdir()
            if p.name.startswith(".") and p.name != ".gankit.lock"]
    assert not left, f"temporary files left after {story}: {left}"
    for data in (run_dir / "checkpoints").glob("step_*.safetensors"):
        assert checkpoint.paths(data)[1].is_file(), f"{data.name} has no manifest after {story}"


@pytest.mark.slow
def test_kill9_at_random_moments_resumes_to_the_same_bits(tmp_path, backend_name):
    seed = int(os.environ.get("GANKIT_KILL_SEED") or random.randrange(2**31))  # shown in every failure
    rng = random.Random(seed)
    zygote = Zygote(backend_name, tmp_path / "zygote.log")
    try:
        whole = tmp_path / "whole"
        reference = zygote.run(whole)
        assert reference["exit"] == 0, reference
        duration = reference["seconds"]
        # Half at random times, half inside checkpoint writes (each kind at least once), shuffled;
        # more random ones if some runs ended before their kill.
        plans = ["time"] * (MIN_KILLS // 2) + (TARGETED * MIN_KILLS)[: MIN_KILLS - MIN_KILLS // 2]
        rng.shuffle(plans)
        chain, story, landed, completed, attempts, cpu = 0, [], [], 0, 0, reference["cpu_seconds"]
        while plans or story:
            attempts += 1
            assert attempts < 5 * MIN_KILLS, f"only {len(landed)} kills landed in {attempts} runs (seed {seed})"
            run_dir = tmp_path / f"chain{chain}"
            kind = plans.pop() if plans else None  # none left: let the last chain complete
            kill = after = None
            if kind == "time":
                after = rng.uniform(0.0, duration)
                plan = f"kill -9 after {after:.3f}s"
            elif kind is not None:
                kill = {"on": kind, "at": rng.randint(1, 12)}
                plan = f"kill -9 in {kind} #{kill['at']}"
            else:
                plan = "no kill"
            out = zygote.run(run_dir, kill=kill, after=after)
            cpu += out["cpu_seconds"]
            assert "error" not in out, f"{out['error']} after {story + [plan]} (seed {seed})"
            story.append(plan)
            if out["signal"] == signal.SIGKILL:
                landed.append(kind)
                continue
            assert out["exit"] == 0, f"{out} after {story} (seed {seed})"
            if kind is not None:
                plans.append(kind)  # it finished first: try that kind of kill again
            _assert_same_bits(run_dir, whole, f"{story} (seed {seed})")
            chain, story, completed = chain + 1, [], completed + 1
        assert len(landed) >= MIN_KILLS and set(landed) == {"time", *TARGETED} and completed >= 1
        print(f"{backend_name}: {len(landed)} kills ({', '.join(f'{k} {landed.count(k)}' for k in sorted(set(landed)))}) "
              f"in {attempts} runs, {completed} completed runs identical to the uninterrupted one; "
              f"children's CPU time {cpu:.1f}s (seed {seed})")
    finally:
        zygote.close()
