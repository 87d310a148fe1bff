"""The modes over training: frames every sample_every steps, one strip and the counts per
frame at the end, kept across a resume; the ring8_collapse preset."""

import json

import numpy as np
import pytest
from PIL import Image

import gankit
from gankit import mode_history
from training_helpers import tiny


def test_counts_match_the_modes_metric():
    modes = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    on_two = np.repeat(modes[:2], 50, axis=0) + 0.001
    frames = [(10, on_two), (20, np.repeat(modes, 25, axis=0))]
    rows = mode_history.counts(frames, {"modes": modes.tolist(), "std": 0.01})
    assert [r["step"] for r in rows] == [10, 20]
    assert [r["modes_captured"] for r in rows] == [2, 4]
    assert rows[0]["mode_kl"] == pytest.approx(np.log(2)) and rows[1]["mode_kl"] == pytest.approx(0, abs=1e-12)
    assert mode_history.counts(frames, {}) == [{"step": 10}, {"step": 20}]  # no mixture: steps only


def test_a_run_writes_the_strip_and_keeps_its_frames_across_resume(tmp_path, interrupt_at):
    disarm = interrupt_at(10)
    with pytest.raises(Exception):
        tiny(tmp_path, "torch", "training.sample_every=5", "training.checkpoint_every=5", steps=20)
    disarm()
    run_dir = tmp_path / "run"
    assert sorted(p.name for p in (run_dir / "modes").iterdir()) == ["step_000005.npy", "step_000010.npy"]
    run = gankit.train(resume=run_dir)
    frames = sorted(p.name for p in (run_dir / "modes").iterdir())
    assert frames == [f"step_{s:06d}.npy" for s in (5, 10, 15, 20)]
    strip = run.files["modes_strip"]
    assert strip == run_dir / "modes_over_training.png"
    width, height = Image.open(strip).size
    assert width > 3 * height  # four panels side by side
    rows = json.loads((run_dir / "modes_over_training.json").read_text())
    assert [r["step"] for r in rows] == [5, 10, 15, 20] and all(r["modes_total"] == 8 for r in rows)
    final = np.load(run_dir / "modes" / "step_000020.npy")
    assert final.shape == (64, 2)
    np.testing.assert_allclose(final, run.trainer.generate(gankit.training.fixed_latents(run.config, 64)), atol=1e-6)


def test_no_strip_without_sample_every(tmp_path):
    run = tiny(tmp_path, "torch", steps=4)
    assert "modes_strip" not in run.files and not (run.directory / "modes").exists()


def test_ring8_collapse_preset_trains_on_both_backends(tmp_path):
    for backend in ("torch", "tensorflow"):
        pytest.importorskip(backend)
        run = gankit.train(preset="ring8_collapse", overrides=[
            f"backend={backend}", "training.steps=4", "training.sample_every=2", "training.batch_size=32",
            "training.tensorboard=false", "evaluation.every=4", "evaluation.num_samples=100", "training.threads=1",
            f"output.dir={tmp_path}", f"output.name={backend}"])
        assert run.config.loss.name == "minimax" and run.config.training.n_critic == 5
        assert (run.directory / "modes_over_training.png").is_file()
        assert "modes_captured" in run.metrics
