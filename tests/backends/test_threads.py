"""training.threads: the framework's CPU thread pools follow the config (None: a default chosen at start)."""

import json
import os
import subprocess
import sys

import pytest

from gankit import ConfigError
from gankit.config import load_config
from gankit.training import build

TINY = ["device=cpu", "training.batch_size=16", "generator.params.hidden=[8]", "discriminator.params.hidden=[8]"]


def test_threads_validates():
    assert load_config(preset="ring8", overrides=["training.threads=1"]).training.threads == 1
    assert load_config(preset="ring8").training.threads is None
    with pytest.raises(ConfigError, match="training.threads"):
        load_config(preset="ring8", overrides=["training.threads=0"])


@pytest.mark.torch
def test_torch_trainer_sets_num_threads():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        build(load_config(preset="ring8", overrides=[*TINY, "backend=torch", "training.threads=1"]))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(3)
        exp = build(load_config(preset="ring8", overrides=[*TINY, "backend=torch"]))  # None: chosen at start
        assert exp.threads.reason.startswith("auto:") and torch.get_num_threads() == exp.threads.count
    finally:
        torch.set_num_threads(before)


# TensorFlow fixes its pools when its runtime starts, so this runs in a fresh process.
_TF_SCRIPT = """
import json, warnings
import tensorflow as tf
from gankit.config import load_config
from gankit.training import build
overrides = json.loads(__import__("sys").argv[1])
build(load_config(preset="ring8", overrides=[*overrides, "backend=tensorflow", "training.threads=1"]))
pools = [tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads()]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    build(load_config(preset="ring8", overrides=[*overrides, "backend=tensorflow", "training.threads=2"]))
late = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning) and "threads" in str(w.message)]
print(json.dumps({"pools": pools, "late": late,
                  "after": [tf.config.threading.get_intra_op_parallelism_threads(),
                            tf.config.threading.get_inter_op_parallelism_threads()]}))
"""


@pytest.mark.tensorflow
def test_tensorflow_trainer_sets_pools_or_warns_once_started():
    pytest.importorskip("tensorflow")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("GANKIT_BACKEND", None)
    proc = subprocess.run([sys.executable, "-c", _TF_SCRIPT, json.dumps(TINY)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["pools"] == [1, 1]
    # The second trainer comes after TensorFlow started: a warning that says so, pools unchanged.
    assert len(out["late"]) == 1 and "already started" in out["late"][0]
    assert out["after"] == [1, 1]
