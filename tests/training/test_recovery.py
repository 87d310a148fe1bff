"""Runs that are not lost (issue 13, points 1-6): pictures never cost a checkpoint, --resume
completes a run stopped after its last step, signals save a checkpoint, non-finite optimizer
state is never checkpointed, interrupted writes are cleaned up, one run per directory."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import gankit
from gankit import checkpoint, training
from gankit.runlock import RunLock

from training_helpers import TINY, Interrupted, tiny

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


class Killed(BaseException):
    """Stands for a kill where an Exception would be caught (a picture's failure is a warning)."""


def _same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# -- 1. data of any shape gets a picture; a picture failure costs nothing ----------------------
@pytest.mark.parametrize("shape", [(400, 3), (400, 1), (200, 4, 5)], ids=["points3", "points1", "matrices"])
def test_point_data_of_any_shape_gets_a_picture(tmp_path, shape):
    np.save(tmp_path / "d.npy", np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    run = tiny(tmp_path, "torch", "data.name=npy", f"data.params.path={tmp_path / 'd.npy'}", name="p", steps=10)
    d = run.directory
    assert (d / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert checkpoint.load(d / "checkpoint.json")[0].step == 10
    assert json.loads((d / "summary.json").read_text())["pictures"]["samples_png"] == str(d / "samples.png")


def test_images_of_two_channels_get_a_picture(tmp_path):
    np.save(tmp_path / "im.npy", np.random.default_rng(0).uniform(-1, 1, (64, 2, 8, 8)).astype(np.float32))
    run = tiny(tmp_path, "torch", "data.name=npy", f"data.params.path={tmp_path / 'im.npy'}", name="im", steps=4)
    assert (run.directory / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_a_picture_that_fails_costs_neither_checkpoint_nor_summary(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("no picture today")

    monkeypatch.setattr(training.plotting, "scatter", broken)
    with pytest.warns(RuntimeWarning, match="could not draw samples.png: ValueError: no picture today"):
        run = tiny(tmp_path, "torch", name="nopic", steps=10)
    d = run.directory
    assert checkpoint.load(d / "checkpoint.json")[0].step == 10
    summary = json.loads((d / "summary.json").read_text())
    assert summary["steps"] == 10 and "samples_png" not in summary["pictures"]
    assert (d / "samples.npy").is_file() and not (d / "samples.png").exists()
    with pytest.raises(gankit.ConfigError, match="already reached step 10"):
        gankit.train(resume=d)  # the run is complete


# -- 2. --resume completes the final artifacts --------------------------------------------------
def test_resume_completes_a_run_killed_after_its_last_step(tmp_path, monkeypatch):
    whole = tiny(tmp_path, "torch", name="whole", steps=10)
    real = training.save_checkpoint

    def killed_at_the_final_checkpoint(exp, directory, step, *, base=None, **kwargs):
        if base is None:
            raise Interrupted(step)
        return real(exp, directory, step, base=base, **kwargs)

    monkeypatch.setattr(training, "save_checkpoint", killed_at_the_final_checkpoint)
    with pytest.raises(Interrupted):
        tiny(tmp_path, "torch", name="cut", steps=10)
    monkeypatch.setattr(training, "save_checkpoint", real)
    cut = tmp_path / "cut"
    assert not (cut / "checkpoint.json").exists() and not (cut / "summary.json").exists()
    assert checkpoint.latest(cut).name == "step_00000010.json"  # the last step always has a checkpoint

    done = gankit.train(resume=cut)
    assert done.resumed_from == 10 and done.steps == 10
    for name in ("checkpoint.json", "samples.npy", "samples.png", "losses.png", "summary.json"):
        assert (cut / name).is_file(), name
    _same_weights(checkpoint.load(cut)[1], checkpoint.load(whole.directory)[1])
    np.testing.assert_array_equal(np.load(cut / "samples.npy"), np.load(whole.directory / "samples.npy"))
    assert done.metrics["d_loss"] == whole.metrics["d_loss"]  # from metrics.jsonl
    with pytest.raises(gankit.ConfigError, match="already reached step 10"):
        gankit.train(resume=cut)


def test_resume_completes_a_run_killed_while_drawing(tmp_path, monkeypatch):
    def killed(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(training.plotting, "loss_curves", killed)
    with pytest.raises(Killed):
        tiny(tmp_path, "torch", name="draw", steps=10)
    monkeypatch.undo()
    d = tmp_path / "draw"
    assert (d / "checkpoint.json").is_file() and not (d / "summary.json").exists()
    gankit.train(resume=d)
    assert (d / "losses.png").is_file() and json.loads((d / "summary.json").read_text())["steps"] == 10


def test_evaluation_is_not_doubled_when_a_run_is_completed(tmp_path, monkeypatch):
    real = training.plotting.loss_curves
    monkeypatch.setattr(training.plotting, "loss_curves", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        tiny(tmp_path, "torch", "evaluation.every=5", "evaluation.num_samples=100", name="ev", steps=10)
    monkeypatch.setattr(training.plotting, "loss_curves", real)
    run = gankit.train(resume=tmp_path / "ev")
    steps = [json.loads(line)["step"] for line in (tmp_path / "ev" / "eval.jsonl").read_text().splitlines()]
    assert steps == [5, 10]
    assert run.metrics["modes_total"] == 8 and "modes_captured" in run.metrics


# -- 3. signals save a checkpoint; periodic checkpoints by default, by steps and by time ----------
def _start(tmp_path, *extra):
    cmd = [sys.executable, "-m", "gankit", "train", "--preset", "ring8", *[a for o in (*TINY, *extra) for a in ("--set", o)],
           "--set", "training.steps=1000000", "--set", f"output.dir={tmp_path}", "--set", "output.name=sig",
           "--set", "training.log_every=10"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, sig, code):
    proc = _start(tmp_path, "training.checkpoint_every=0", "training.checkpoint_minutes=0")
    try:
        banner = proc.stdout.readline()  # printed at once, though stdout is a pipe
        assert banner.startswith("training ring8 on torch, cpu, 1 thread") and "1000000 steps" in banner
        assert str(tmp_path / "sig") in banner
        assert proc.stdout.readline().startswith("step 10/1000000 (0%)  d_loss ")  # log lines as they happen
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"interrupted: {sig.name} at step "), err
    assert f"continue with: gankit train --resume {tmp_path / 'sig'}" in lines[0]
    step = int(lines[0].split(" at step ")[1].split()[0])
    manifest = checkpoint.latest(tmp_path / "sig")
    assert manifest.name == f"step_{step:08d}.json" and checkpoint.load(manifest)[0].step == step
    run = gankit.train(resume=tmp_path / "sig", overrides=[f"training.steps={step + 5}"])
    assert run.resumed_from == step and run.trainer.step_count == step + 5


def test_checkpoints_by_default():
    t = gankit.load_config(preset="mnist").training
    assert t.checkpoint_every > 0 and 0 < t.checkpoint_minutes <= 10
    for name in ("ring8", "grid25", "ring8_hq", "grid25_hq"):
        t = gankit.load_config(preset=name).training
        assert t.checkpoint_minutes > 0 and 0 < t.checkpoint_every <= t.steps


def test_checkpoints_by_time(tmp_path, monkeypatch):
    clock = {"now": 0.0}

    def monotonic():  # a minute passes at every step
        clock["now"] += 60.0
        return clock["now"]

    monkeypatch.setattr(training, "_clock", monotonic)
    run = tiny(tmp_path, "torch", "training.checkpoint_every=0", "training.checkpoint_minutes=2.5",
               "training.checkpoint_keep=100", name="t", steps=12)
    assert [checkpoint.load(m)[0].step for m in checkpoint.periodic(run.directory)] == [3, 6, 9, 12]


# -- 4. non-finite optimizer state is never checkpointed ------------------------------------------
def test_non_finite_optimizer_state_is_never_checkpointed(tmp_path, monkeypatch):
    real_build = training.build

    def build(*args, **kwargs):
        exp = real_build(*args, **kwargs)
        state = exp.trainer.optimizer_state

        def overflowed():  # Adam's second moment overflowed to inf at step 8
            out = state()
            if exp.trainer.step_count >= 8:
                key = next(k for k in sorted(out) if k.startswith("g_optimizer.") and np.asarray(out[k]).ndim > 0
                           and np.asarray(out[k]).dtype.kind == "f")
                out[key] = np.full_like(out[key], np.inf)
            return out

        exp.trainer.optimizer_state = overflowed
        return exp

    monkeypatch.setattr(training, "build", build)
    with pytest.raises(gankit.TrainingError, match=r"diverged by step 10: the generator optimizer state is not finite"):
        tiny(tmp_path, "torch", "training.checkpoint_every=5", name="inf")
    manifest = checkpoint.latest(tmp_path / "inf")
    assert checkpoint.load(manifest)[0].step == 5
    opt, _ = checkpoint.load_state(manifest, checkpoint.load(manifest)[0])
    assert all(np.all(np.isfinite(v)) for v in opt.values() if v.dtype.kind == "f")


# -- 5. what interrupted writes leave is cleaned up ------------------------------------------------
def test_interrupted_writes_are_cleaned_on_resume(tmp_path, interrupt_at):
    restore = interrupt_at(7)
    with pytest.raises(Interrupted):
        tiny(tmp_path, "torch", "training.checkpoint_every=5", name="tmp", steps=10)
    restore()
    d = tmp_path / "tmp"
    ck = d / "checkpoints"
    debris = [ck / ".step_00000010.safetensors.abc123", ck / ".step_00000010.json.0f0f0f0f.tmp",
              ck / "step_00000010.safetensors", ck / "step_00000010.state.safetensors",  # no manifest
              d / ".checkpoint.safetensors.k2j3h4", d / "checkpoint.state.safetensors",
              d / ".config.json.0a1b2c3d.tmp", d / ".summary.json.deadbeef.tmp"]  # other atomic writes
    for p in debris:
        p.write_bytes(b"partial")
    keep = [d / "notes.txt", d / "checkpoint_backup.safetensors"]  # not gankit's: untouched
    for p in keep:
        p.write_text("mine")
    run = gankit.train(resume=d)
    assert run.resumed_from == 5
    assert not [p for p in debris if p.exists() and p.read_bytes() == b"partial"]
    assert all(p.read_text() == "mine" for p in keep)
    assert not [p.name for p in (*d.iterdir(), *ck.iterdir()) if p.name.endswith(".tmp") or
                p.name.startswith((".step_", ".checkpoint"))]


def test_a_replaced_checkpoint_never_pairs_an_old_manifest_with_new_files(tmp_path, monkeypatch):
    run = tiny(tmp_path, "torch", name="ext", steps=10)
    real = checkpoint.atomic_write

    def killed_before_the_manifest(path, data):
        if path.name == "checkpoint.json":
            raise Interrupted(0)
        return real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write", killed_before_the_manifest)
    monkeypatch.setattr(checkpoint, "_atomic_write", killed_before_the_manifest)
    with pytest.raises(Interrupted):
        gankit.train(resume=run.directory, overrides=["training.steps=15"])
    monkeypatch.undo()
    assert not (run.directory / "checkpoint.json").exists()  # not a step-10 manifest over step-15 weights
    assert checkpoint.latest(run.directory).name == "step_00000015.json"
    done = gankit.train(resume=run.directory, overrides=["training.steps=15"])
    assert done.resumed_from == 15 and checkpoint.load(run.directory)[0].step == 15


# -- 6. one run per directory ---------------------------------------------------------------------
def test_a_second_run_on_a_locked_directory_is_refused(tmp_path):
    run = tiny(tmp_path, "torch", name="busy", steps=10)
    metrics = (run.directory / "metrics.jsonl").read_bytes()
    with RunLock(run.directory):
        with pytest.raises(gankit.ConfigError, match="is in use by another gankit run"):
            tiny(tmp_path, "torch", "output.overwrite=true", name="busy", steps=10)
        with pytest.raises(gankit.ConfigError, match="is in use by another gankit run"):
            gankit.train(resume=run.directory, overrides=["training.steps=15"])
    assert (run.directory / "metrics.jsonl").read_bytes() == metrics  # nothing written
    assert gankit.train(resume=run.directory, overrides=["training.steps=15"]).trainer.step_count == 15


_HOLD = """
import sys, time
from gankit.runlock import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_cli_refuses_a_directory_locked_by_another_process(tmp_path):
    run = tiny(tmp_path, "torch", name="other", steps=10)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run.directory)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = subprocess.run([sys.executable, "-m", "gankit", "train", "--resume", str(run.directory),
                               "--set", "training.steps=15"], capture_output=True, text=True, env=ENV, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: run directory") and "in use" in proc.stderr
    # the lock dies with its process (however it ends): the run resumes now
    assert gankit.train(resume=run.directory, overrides=["training.steps=15"]).trainer.step_count == 15


def test_overwrite_starts_clean(tmp_path):
    old = tiny(tmp_path, "torch", "training.checkpoint_every=5", "evaluation.every=10", "evaluation.num_samples=50",
               name="o", steps=30)
    assert checkpoint.latest(old.directory).name == "checkpoint.json"
    new = tiny(tmp_path, "torch", "output.overwrite=true", "training.checkpoint_every=5", name="o", steps=10)
    assert [p.name for p in checkpoint.periodic(new.directory)] == ["step_00000005.json", "step_00000010.json"]
    assert checkpoint.load(new.directory)[0].step == 10 and not (new.directory / "eval.jsonl").exists()


def test_overwrite_leaves_nothing_of_the_old_run_in_the_new_ones_pictures(tmp_path):
    from gankit import mode_history

    old = tiny(tmp_path, "torch", "training.sample_every=5", "training.tensorboard=true", name="o", steps=20)
    d = old.directory
    (d / "notes.txt").write_text("mine")
    assert [s for s, _ in mode_history.load_frames(d)] == [5, 10, 15, 20] and (d / "samples_000015.png").exists()
    new = tiny(tmp_path, "torch", "output.overwrite=true", "training.sample_every=5", "training.tensorboard=true",
               name="o", steps=10)
    assert new.directory == d
    assert [s for s, _ in mode_history.load_frames(d)] == [5, 10]
    assert [row["step"] for row in json.loads((d / mode_history.COUNTS_FILE).read_text())] == [5, 10]
    assert sorted(p.name for p in d.glob("samples_*.png")) == ["samples_000005.png"]
    assert len(list((d / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (d / "notes.txt").read_text() == "mine"  # not the run's: left alone


def test_mode_frames_are_in_step_order_past_a_million_steps(tmp_path):
    from gankit import mode_history

    (tmp_path / mode_history.FRAMES_DIR).mkdir()
    for step in (999_999, 1_000_000, 20):
        np.save(tmp_path / mode_history.FRAMES_DIR / f"step_{step:06d}.npy", np.full((2, 2), step, np.float32))
    assert [s for s, _ in mode_history.load_frames(tmp_path)] == [20, 999_999, 1_000_000]
    mode_history.drop_frames(tmp_path, after=999_999)
    assert [s for s, _ in mode_history.load_frames(tmp_path)] == [20, 999_999]


def test_a_full_disk_stops_the_run_in_one_line_and_resume_goes_on(tmp_path, monkeypatch):
    import errno

    real = checkpoint._temporary

    def full(path, data):  # the disk fills up while the step-15 checkpoint is written
        if "step_00000015" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(checkpoint, "_temporary", full)
    with pytest.raises(gankit.TrainingError) as info:
        tiny(tmp_path, "torch", "training.checkpoint_every=5", name="full", steps=20)
    d = tmp_path / "full"
    assert "the disk is full; the last checkpoint is" in str(info.value) and "step_00000010.json" in str(info.value)
    assert f"continue with: gankit train --resume {d}" in info.value.hint
    monkeypatch.undo()
    done = gankit.train(resume=d)
    assert done.resumed_from == 10 and checkpoint.load(d)[0].step == 20


def test_an_unwritable_or_damaged_run_directory_is_one_line_on_resume(tmp_path):
    run = tiny(tmp_path, "torch", name="dmg", steps=10)
    d = run.directory
    (d / ".gankit.lock").unlink(missing_ok=True)
    (d / ".gankit.lock").mkdir()  # stands for a file the run cannot open (as on a read-only disk)
    with pytest.raises(gankit.ConfigError, match="cannot be locked for this run"):
        gankit.train(resume=d, overrides=["training.steps=15"])
    (d / ".gankit.lock").rmdir()
    (d / "metrics.jsonl").rename(tmp_path / "metrics.jsonl")
    (d / "metrics.jsonl").mkdir()
    with pytest.raises(gankit.TrainingError, match="metrics.jsonl") as info:
        gankit.train(resume=d, overrides=["training.steps=15"])
    assert "repair or remove" in info.value.hint
    (d / "metrics.jsonl").rmdir()
    lines = (tmp_path / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (d / "metrics.jsonl").write_bytes(lines[0] + b"\xff\xfe garbage \x00\n" + lines[1])
    done = gankit.train(resume=d, overrides=["training.steps=15"])
    steps = [json.loads(line)["step"] for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert done.resumed_from == 10 and steps == [5, 10, 15]


def test_cli_full_disk_is_exit_2_and_one_line(tmp_path):
    # the lock file's place taken by a directory: the CLI's answer is one line, status 2
    run = tiny(tmp_path, "torch", name="cli", steps=10)
    (run.directory / ".gankit.lock").unlink(missing_ok=True)
    (run.directory / ".gankit.lock").mkdir()
    proc = subprocess.run([sys.executable, "-m", "gankit", "train", "--resume", str(run.directory),
                           "--set", "training.steps=15"], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "cannot be locked" in proc.stderr


@pytest.mark.parametrize("override", ["data.name=grid25", "seed=5", "training.batch_size=64",
                                      "latent.distribution=uniform", "loss.name=hinge",
                                      "optimizers.generator.name=sgd", "optimizers.discriminator.name=rmsprop"])
def test_resume_refuses_to_change_which_experiment_it_is(tmp_path, override):
    run = tiny(tmp_path, "torch", name="same", steps=10)
    before = {p.name: p.read_bytes() for p in run.directory.iterdir() if p.is_file()}
    with pytest.raises(gankit.ConfigError, match="--resume continues the same run and cannot change " +
                       override.split("=")[0].split(".")[0]):
        gankit.train(resume=run.directory, overrides=["training.steps=15", override])
    assert {p.name: p.read_bytes() for p in run.directory.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("override", ["output.dir=elsewhere", "output.name=other"])
def test_resume_stays_in_its_own_directory(tmp_path, override):
    run = tiny(tmp_path, "torch", name="here", steps=10)
    with pytest.raises(gankit.ConfigError, match="--resume continues in the run's own directory"):
        gankit.train(resume=run.directory, overrides=["training.steps=15", override])
    assert json.loads((run.directory / "config.json").read_text())["output"]["name"] == "here"


def test_resume_says_it_does_not_use_the_backend_of_the_environment(tmp_path, monkeypatch):
    run = tiny(tmp_path, "torch", name="env", steps=10)
    monkeypatch.setenv("GANKIT_BACKEND", "tensorflow")
    with pytest.warns(RuntimeWarning, match="GANKIT_BACKEND=tensorflow is not used by --resume"):
        done = gankit.train(resume=run.directory, overrides=["training.steps=15"])
    assert done.backend == "torch"


def test_resume_may_change_how_the_run_goes_on(tmp_path):
    run = tiny(tmp_path, "torch", name="on", steps=10)
    done = gankit.train(resume=run.directory, overrides=["training.steps=15", "optimizers.generator.lr=1e-4",
                                                         "training.log_every=1"])
    assert done.resumed_from == 10 and done.config.optimizers.generator.lr == 1e-4


def test_resume_without_a_checkpoint_says_how_to_start_again(tmp_path):
    run = tiny(tmp_path, "torch", name="none", steps=10)
    for path in [*run.directory.glob("checkpoint.*"), *(run.directory / "checkpoints").glob("*")]:
        path.unlink()
    with pytest.raises(gankit.CheckpointError) as info:
        gankit.train(resume=run.directory)
    assert "output.overwrite=true" in info.value.hint
    again = gankit.train(run.directory / "config.json", overrides=["output.overwrite=true"])
    assert again.directory == run.directory and again.steps == 10


def test_metrics_lines_are_appended_by_one_write_each(tmp_path, monkeypatch):
    from gankit import monitor

    writes = []
    real = os.write
    monkeypatch.setattr(monitor.os, "write", lambda fd, data: (writes.append(bytes(data)), real(fd, data))[1])
    run = tiny(tmp_path, "torch", name="w", steps=20)
    lines = (run.directory / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == 4 and writes == lines


def test_every_file_of_a_run_has_the_same_mode(tmp_path):
    old = os.umask(0o022)
    try:
        run = tiny(tmp_path, "torch", "training.checkpoint_every=5", "training.tensorboard=true", name="modes", steps=10)
    finally:
        os.umask(old)
    modes = {str(p.relative_to(run.directory)): oct(p.stat().st_mode & 0o777)
             for p in run.directory.rglob("*") if p.is_file()}
    assert set(modes.values()) == {"0o644"}, modes
