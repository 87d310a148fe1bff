"""`gankit train` end to end on each backend: run directory, metrics, picture, checkpoint."""

import json
import subprocess
import sys

import numpy as np
import pytest

import gankit
from gankit import checkpoint

pytestmark = pytest.mark.slow

TINY = [
    "training.steps=40", "training.batch_size=64", "training.log_every=10", "training.num_samples=200",
    "generator.params.hidden=[32, 32]", "discriminator.params.hidden=[32, 32]", "device=cpu",
]


def tiny_run(tmp_path, backend, *extra, name="run"):
    return gankit.train(preset="ring8", overrides=[*TINY, f"backend={backend}", f"output.dir={tmp_path}",
                                                    f"output.name={name}", *extra])


def test_train_writes_a_complete_run(tmp_path, backend_name):
    run = tiny_run(tmp_path, backend_name)
    d = run.directory
    assert run.backend == backend_name and run.device == "cpu" and run.steps == 40
    for f in ("config.json", "metrics.jsonl", "samples.png", "samples.npy", "losses.png",
              "checkpoint.json", "checkpoint.safetensors", "summary.json"):
        assert (d / f).is_file(), f
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [10, 20, 30, 40]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in lines)
    assert (d / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.load(d / "samples.npy").shape == (200, 2)
    manifest, weights = checkpoint.load(d)
    assert manifest.backend == backend_name and manifest.step == 40
    trained = run.trainer.state_dict()
    for k, v in weights.items():
        np.testing.assert_array_equal(v, trained[k])


def test_same_seed_repeats_exactly_on_cpu(tmp_path, backend_name):
    a = tiny_run(tmp_path, backend_name, name="a").trainer.state_dict()
    b = tiny_run(tmp_path, backend_name, name="b").trainer.state_dict()
    c = tiny_run(tmp_path, backend_name, "seed=1", name="c").trainer.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert any(not np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("loss, regs", [("wasserstein", ["gradient_penalty"]), ("hinge", ["r1"]),
                                        ("relativistic_average", ["dragan"]), ("least_squares", [])])
def test_losses_and_penalties_train(tmp_path, backend_name, loss, regs):
    extra = [f"loss.name={loss}", f"regularizers={json.dumps([{'name': r} for r in regs])}", "training.n_critic=2"]
    run = tiny_run(tmp_path, backend_name, *extra)
    assert np.isfinite(run.metrics["d_loss"])
    for r in regs:
        assert f"penalty_{r}" in run.metrics


def test_cli_train_with_env_backend(tmp_path, backend_name):
    env = {**__import__("os").environ, "GANKIT_BACKEND": backend_name}
    cmd = [sys.executable, "-m", "gankit", "train", "--preset", "ring8", "-q",
           *[a for kv in TINY for a in ("--set", kv)], "--set", f"output.dir={tmp_path}", "--set", "output.name=cli"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"on {backend_name} (cpu)" in proc.stdout
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["backend"] == backend_name


def test_existing_run_directory_is_not_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("precious")
    with pytest.raises(gankit.ConfigError, match="already exists"):
        gankit.train(preset="ring8", overrides=[*TINY, f"output.dir={tmp_path}", "output.name=taken"])
    assert (tmp_path / "taken" / "keep.txt").read_text() == "precious"
