"""What a run says on a shared machine (issue 13): the threads it chose, a start banner at once,
a line every log_every steps without a terminal, the progress bar on stderr, and at the end
the evaluation results and where the pictures are."""

import json
import os
import subprocess
import sys

import pytest

import gankit
from gankit import threads
from gankit.assembly import build_architecture, build_plugin
from gankit.threads import Threads, choose_threads

from training_helpers import tiny


def _specs(preset, *overrides):
    cfg = gankit.load_config(preset=preset, overrides=list(overrides))
    reg = gankit.get_registry()
    data = build_plugin(reg, "dataset", cfg.data, seed=0)
    shape = tuple(data.sample_shape)
    g = build_architecture(reg, cfg.generator, data, role="generator", input_shape=(cfg.latent.dim,),
                           output_shape=shape)
    d = build_architecture(reg, cfg.discriminator, data, role="discriminator", input_shape=shape,
                           output_shape=(1,))
    return cfg, g, d


@pytest.mark.parametrize("preset, cpus, expected", [
    ("ring8", 1, 1), ("ring8", 2, 1), ("ring8", 64, 1),      # small nets: one thread
    ("mnist", 2, 1),                                          # a 2-CPU machine: one thread (27x on a busy one)
    ("mnist", 4, 2), ("mnist", 16, 8), ("mnist", 128, 8),     # large nets: half the CPUs, at most 8
])
def test_default_threads_from_cpus_and_net_size(preset, cpus, expected):
    cfg, g, d = _specs(preset)
    chosen = choose_threads(cfg, g, d, cpus=cpus)
    assert chosen.count == expected and chosen.reason.startswith("auto:")


def test_the_configured_threads_win():
    cfg, g, d = _specs("mnist", "training.threads=3")
    assert choose_threads(cfg, g, d, cpus=64) == Threads(3, "training.threads")


def test_step_size_estimate_grows_with_the_nets():
    small, big = (threads.step_macs(*_specs("ring8", f"generator.params.hidden=[{w}, {w}]")) for w in (16, 256))
    assert 0 < small < big < threads.LARGE_STEP_MACS
    assert threads.step_macs(*_specs("mnist")) > threads.LARGE_STEP_MACS


def test_usable_cpus_is_positive_and_within_the_machine():
    assert 1 <= threads.usable_cpus() <= (os.cpu_count() or 1)


def test_lines_of_a_run_without_a_terminal(tmp_path):
    lines = []
    run = tiny(tmp_path, "torch", "evaluation.every=10", "evaluation.num_samples=100", name="log", echo=lines.append)
    assert lines[0].startswith("training ring8 on torch, cpu, 1 thread (auto: ")  # small nets: 1 on any machine
    assert lines[0].endswith(f"): 20 steps; run directory {run.directory}")
    steps = [line for line in lines if line.startswith("step ")]
    assert [s.split()[1] for s in steps] == ["5/20", "10/20", "15/20", "20/20"]
    assert "d_loss" in steps[0] and "steps/s" in steps[0]
    evaluation = next(line for line in lines if line.startswith("evaluation at step 20"))
    assert "modes_captured" in evaluation and "fid" in evaluation
    assert f"pictures: {run.directory / 'samples.png'}, {run.directory / 'losses.png'}" in lines
    assert lines[-1] == f"run directory: {run.directory}"
    summary = json.loads((run.directory / "summary.json").read_text())
    assert summary["evaluation"]["metrics"] == run.evaluation.metrics
    assert run.metrics["fid"] == summary["evaluation"]["metrics"]["fid"] and "d_loss" in run.metrics
    assert summary["threads"] == run.threads


def test_no_step_lines_under_a_progress_bar(tmp_path):
    lines = []
    tiny(tmp_path, "torch", name="bar", progress=True, echo=lines.append)
    assert not [line for line in lines if line.startswith("step ")]
    assert lines[0].startswith("training ring8") and lines[-1].startswith("run directory:")


def test_the_progress_bar_is_on_stderr():
    from gankit.monitor import Progress

    bar = Progress(True, 10)
    assert bar.bar.console.stderr


def test_cli_prints_the_run_on_stdout_as_it_goes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "gankit", "train", "--preset", "ring8", "--set", "training.steps=10",
                           "--set", "training.log_every=5", "--set", "training.batch_size=32", "--set", "device=cpu",
                           "--set", "training.num_samples=64", "--set", f"output.dir={tmp_path}", "--set", "output.name=c"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].startswith("training ring8 on torch, cpu, 1 thread")
    assert out[1].startswith("step 5/10 (50%)") and out[2].startswith("step 10/10 (100%)")
    assert out[3].startswith("trained 10 steps on torch (cpu)") and out[-1] == f"run directory: {tmp_path / 'c'}"
    assert proc.stderr == ""


_TF_ENV = """
import os, sys
import gankit_tensorflow
print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
"""


@pytest.mark.parametrize("debug, level", [("", "3"), ("1", "None")])
def test_tensorflow_start_up_logs_are_silenced_unless_debugging(debug, level):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GANKIT_DEBUG")}
    if debug:
        env["GANKIT_DEBUG"] = debug
    proc = subprocess.run([sys.executable, "-c", _TF_ENV], capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip() == level, proc.stderr


_CLI_ENV = """
import os, sys
from gankit.cli import main
main([*sys.argv[1:], "plugins", "--kind", "backend"])  # loads the backends' plugins
print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
"""


@pytest.mark.parametrize("args, level", [([], "3"), (["--debug"], "None")], ids=["quiet", "debug"])
def test_cli_debug_reaches_the_backends(args, level):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GANKIT_DEBUG")}
    proc = subprocess.run([sys.executable, "-c", _CLI_ENV, *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == level


def test_a_reader_that_goes_away_does_not_end_the_run(tmp_path):
    """`gankit train | head -1`: the pipe closes after the first line; the run goes on."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gankit", "train", "--preset", "ring8", "--set", "training.steps=60",
                             "--set", "training.log_every=1", "--set", "training.batch_size=32", "--set", "device=cpu",
                             "--set", "training.num_samples=64", "--set", f"output.dir={tmp_path}", "--set", "output.name=h"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().startswith("training ring8")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0 and err == "", err
    assert json.loads((tmp_path / "h" / "summary.json").read_text())["steps"] == 60
