"""An interrupted run resumed with `--resume` ends exactly where an uninterrupted one does."""

import json

import numpy as np
import pytest

import gankit
from gankit import checkpoint

from training_helpers import Interrupted, tiny

pytestmark = pytest.mark.slow

# Everything that carries state across steps: EMA, schedules, n_critic with a penalty
# drawing random numbers (dragan), Adam slots, batch norm buffers.
FULL = ["training.checkpoint_every=5", "training.checkpoint_keep=2", "training.ema_decay=0.8",
        "optimizers.generator.schedule=cosine", "optimizers.discriminator.schedule=linear",
        "optimizers.discriminator.clip_grad_norm=1.0", "training.n_critic=2",
        'regularizers=[{"name": "dragan"}]', "generator.params.norm=batch"]


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("extra", [[], ["data.name=digits", "training.batch_size=64"]], ids=["sampled", "array"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, backend_name, interrupt_at, extra):
    whole = tiny(tmp_path, backend_name, *FULL, *extra, name="whole")
    restore = interrupt_at(13)  # after the checkpoint of step 10, before the one of step 15
    with pytest.raises(Interrupted):
        tiny(tmp_path, backend_name, *FULL, *extra, name="cut")
    restore()
    cut = tmp_path / "cut"
    assert checkpoint.latest(cut).name == "step_00000010.json"
    resumed = gankit.train(resume=cut)
    assert resumed.resumed_from == 10 and resumed.steps == 20
    _assert_same(whole.trainer.state_dict(), resumed.trainer.state_dict())
    _assert_same(whole.trainer.optimizer_state(), resumed.trainer.optimizer_state())
    steps = [json.loads(line)["step"] for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]  # the lines logged after the checkpoint are not doubled
    assert [p.name for p in checkpoint.periodic(cut)] == ["step_00000015.json", "step_00000020.json"]


def test_resume_extends_a_finished_run(tmp_path):
    tiny(tmp_path, "torch", name="r", steps=10)
    with pytest.raises(gankit.ConfigError, match="already reached step 10"):
        gankit.train(resume=tmp_path / "r")
    run = gankit.train(resume=tmp_path / "r", overrides=["training.steps=15"])
    assert run.resumed_from == 10 and run.trainer.step_count == 15


def test_resume_needs_a_run_directory(tmp_path):
    with pytest.raises(gankit.ConfigError, match="not a run directory"):
        gankit.train(resume=tmp_path)
    with pytest.raises(gankit.ConfigError, match="no config file or preset"):
        gankit.train(preset="ring8", resume=tmp_path)


def test_cli_resume(tmp_path, interrupt_at):
    import subprocess
    import sys

    restore = interrupt_at(7)
    with pytest.raises(Interrupted):
        tiny(tmp_path, "torch", "training.checkpoint_every=5", name="c", steps=10)
    restore()
    proc = subprocess.run([sys.executable, "-m", "gankit", "train", "-q", "--resume", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "resumed at step 5" in proc.stdout
    assert checkpoint.load(tmp_path / "c")[0].step == 10


def test_resume_from_an_earlier_checkpoint_when_the_newest_is_corrupt(tmp_path, capsys):
    from gankit.cli import main

    whole = tiny(tmp_path, "torch", "training.checkpoint_every=5", name="whole")
    run = tiny(tmp_path, "torch", "training.checkpoint_every=5", name="cut").directory
    for name in ("checkpoint.json", "checkpoint.safetensors", "checkpoint.state.safetensors", "summary.json"):
        (run / name).unlink()
    newest = run / "checkpoints" / "step_00000020.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    earlier = run / "checkpoints" / "step_00000015.json"
    assert main(["train", "-q", "--resume", str(run)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"use an earlier checkpoint: gankit train --resume {earlier})")
    assert main(["train", "-q", "--resume", str(earlier)]) == 0, capsys.readouterr().err
    assert "resumed at step 15" in capsys.readouterr().out
    _assert_same(whole.trainer.state_dict(), checkpoint.load(run)[1])  # bit-exact, as from the newest
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]


def test_resume_from_an_older_checkpoint_drops_what_came_after_it(tmp_path):
    run = tiny(tmp_path, "torch", "training.checkpoint_every=5", "training.checkpoint_keep=4", name="r").directory
    lines = []
    resumed = gankit.train(resume=run / "checkpoints" / "step_00000010.json", overrides=["training.steps=15"],
                           echo=lines.append)
    assert resumed.resumed_from == 10 and resumed.trainer.step_count == 15
    removed = [line.split()[1].rstrip(",") for line in lines if line.startswith("removed")]
    assert removed == [str(run / "checkpoints" / "step_00000015.json"), str(run / "checkpoints" / "step_00000020.json"),
                       str(run / "checkpoint.json")]
    assert [p.name for p in checkpoint.periodic(run)] == ["step_00000005.json", "step_00000010.json", "step_00000015.json"]
    assert checkpoint.latest(run) == run / "checkpoint.json" and checkpoint.load(run)[0].step == 15
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15]


def test_resume_into_other_networks_names_the_field_that_differs(tmp_path):
    tiny(tmp_path, "torch", name="n", steps=5)
    with pytest.raises(gankit.CheckpointError) as err:
        gankit.train(resume=tmp_path / "n", overrides=["generator.params.hidden=[8]", "training.steps=10"])
    assert "its generator is not the generator the run's config builds now (layers[0].units: 16 in the " \
           "checkpoint, 8 now)" in err.value.one_line()
    assert checkpoint.load(tmp_path / "n")[0].step == 5  # nothing trained, nothing dropped
