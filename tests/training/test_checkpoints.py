"""Periodic checkpoints: what they hold, how many are kept, and that a write cut short
leaves the previous one readable."""

import os

import numpy as np
import pytest

import gankit
from gankit import checkpoint

from training_helpers import tiny


def test_periodic_checkpoints_hold_everything_to_resume(tmp_path):
    run = tiny(tmp_path, "torch", "training.checkpoint_every=5", "training.checkpoint_keep=2",
               "training.ema_decay=0.5", name="c")
    kept = checkpoint.periodic(run.directory)
    assert [p.name for p in kept] == ["step_00000015.json", "step_00000020.json"]
    assert not list((run.directory / "checkpoints").glob("step_00000005*"))  # pruned, all three files
    manifest, weights = checkpoint.load(kept[-1])
    assert manifest.step == 20 and manifest.ema and manifest.state.data_batches == 20
    assert {k.partition(".")[0] for k in weights} == {"generator", "discriminator", "generator_ema"}
    opt, rng = checkpoint.load_state(kept[-1], manifest)
    assert opt["g_optimizer.step"].shape == () and int(opt["g_optimizer.step"]) == 20
    assert rng["noise"].dtype == np.uint8  # torch generator state, bit for bit
    assert checkpoint.latest(run.directory) == run.directory / "checkpoint.json"


def test_a_checkpoint_write_cut_short_keeps_the_previous_one(tmp_path, monkeypatch):
    real_replace = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if "step_00000010" in str(dst) and str(dst).endswith(".safetensors") and ".state" not in str(dst):
            raise KeyboardInterrupt  # killed while renaming the new weights into place
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        tiny(tmp_path, "torch", "training.checkpoint_every=5", name="k")
    run_dir = tmp_path / "k"
    assert checkpoint.latest(run_dir).name == "step_00000005.json"
    manifest, _ = checkpoint.load(checkpoint.latest(run_dir))
    assert manifest.step == 5
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp file left
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    resumed = gankit.train(resume=run_dir)
    assert resumed.resumed_from == 5 and resumed.trainer.step_count == 20


def test_a_corrupt_state_file_is_refused(tmp_path):
    run = tiny(tmp_path, "torch", "training.checkpoint_every=10", name="x", steps=10)
    state = checkpoint.state_path(checkpoint.periodic(run.directory)[-1])
    state.write_bytes(state.read_bytes()[:-7])
    (run.directory / "checkpoint.json").unlink()
    with pytest.raises(gankit.CheckpointError, match="sha256"):
        gankit.train(resume=run.directory, overrides=["training.steps=15"])
