"""Data-parallel training with 2 CPU workers per backend: replicas stay identical, and the
result matches one process training on the same global batch. On torch the nets are
wrapped in DistributedDataParallel, also with a double-backward penalty (R1), n_critic > 1
and an EMA generator."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gankit
from gankit import checkpoint

from training_helpers import TINY

pytestmark = pytest.mark.slow

WORKER = str(Path(__file__).with_name("distributed_worker.py"))
# No batch norm (per-rank statistics differ from the global batch's) and no dropout.
SETTINGS = [*TINY, "training.steps=12", "training.batch_size=32", "training.log_every=4", "training.checkpoint_every=6"]
# R1 differentiates D twice and draws no random numbers, so it can match one process exactly.
PENALTY = ['regularizers=[{"name": "r1", "params": {"gamma": 1.0}}]', "training.n_critic=2", "training.ema_decay=0.9"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TF_CONFIG", "GANKIT_BACKEND")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _single(tmp_path, backend, *extra):
    run = gankit.train(preset="ring8", overrides=[*SETTINGS, *extra, f"backend={backend}", f"output.dir={tmp_path}",
                                                   "output.name=single"])
    return run.trainer.state_dict()


def _compare(out: Path, single: dict):
    assert sorted(p.name for p in out.iterdir()) == [f"rank{r}.{ext}" for r in (0, 1) for ext in ("json", "npz", "txt")] + ["run"]
    ranks = [dict(np.load(out / f"rank{r}.npz")) for r in (0, 1)]
    assert sorted(ranks[0]) == sorted(single)
    for k in ranks[0]:
        np.testing.assert_array_equal(ranks[0][k], ranks[1][k], err_msg=f"replicas differ at {k}")
        np.testing.assert_allclose(ranks[0][k], single[k], rtol=1e-4, atol=1e-5, err_msg=f"differs from one process at {k}")
    run = out / "run"
    assert (run / "checkpoint.json").is_file() and (run / "checkpoints").is_dir()
    _, saved = checkpoint.load(run / "checkpoint.json")  # rank 0 wrote it, with canonical names
    assert sorted(saved) == sorted(single)
    for k in saved:
        np.testing.assert_array_equal(saved[k], ranks[0][k], err_msg=f"the checkpoint differs from rank 0 at {k}")
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [4, 8, 12]
    assert (out / "rank1.txt").read_text().split()[:2] == ["1", "2"]


def _torchrun(tmp_path, *extra) -> Path:
    out = tmp_path / "ddp"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), WORKER, str(out), "backend=torch", *SETTINGS, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in (0, 1):  # the trainer really trains through DistributedDataParallel
        wrappers = json.loads((out / f"rank{r}.json").read_text())["wrappers"]
        assert wrappers == {role: {"class": "DistributedDataParallel", "is_ddp": True, "wraps_the_net": True}
                            for role in ("generator", "discriminator")}
    return out


def test_torch_ddp_two_workers_match_one_process(tmp_path):
    pytest.importorskip("torch")
    out = _torchrun(tmp_path)
    _compare(out, _single(tmp_path, "torch"))


def test_torch_ddp_with_r1_n_critic_and_ema_matches_one_process(tmp_path):
    pytest.importorskip("torch")
    out = _torchrun(tmp_path, *PENALTY)
    assert "penalty_r1" in json.loads((out / "rank0.json").read_text())["metrics"]
    single = _single(tmp_path, "torch", *PENALTY)
    assert any(k.startswith("generator_ema.") for k in single)
    _compare(out, single)


def test_tensorflow_multi_worker_two_workers_match_one_process(tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "mw"
    out.mkdir()
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in (0, 1):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen([sys.executable, WORKER, str(out), "backend=tensorflow", *SETTINGS],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=_env(TF_CONFIG=tf_config)))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    _compare(out, _single(tmp_path, "tensorflow"))
