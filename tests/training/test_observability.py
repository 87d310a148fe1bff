"""What a run shows: metrics.jsonl, TensorBoard files, fixed-latent pictures, loss curves, progress."""

import json

import numpy as np
import pytest

import gankit
from gankit import training

from training_helpers import tiny


def test_run_writes_tensorboard_scalars_and_images(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tiny(tmp_path, "torch", "training.tensorboard=true", "training.sample_every=10", name="tb")
    acc = EventAccumulator(str(run.directory / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/d_loss", "loss/g_loss", "lr/g", "lr/d", "train/real_logit"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("loss/g_loss")] == [5, 10, 15, 20]
    assert "samples" in tags["images"]
    assert [e.step for e in acc.Images("samples")] == [10, 20]
    assert acc.Images("samples")[0].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_pictures_and_curves(tmp_path):
    run = tiny(tmp_path, "torch", "training.sample_every=5", name="m")
    d = run.directory
    records = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    assert {"d_loss", "g_loss", "lr_g", "lr_d", "time"} <= records[0].keys()
    for step in (5, 10, 15):
        assert (d / f"samples_{step:06d}.png").read_bytes()[:4] == b"\x89PNG"
    assert (d / "losses.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((d / "summary.json").read_text())["steps"] == 20


def test_pictures_come_from_one_fixed_latent_batch(tmp_path, monkeypatch):
    seen = []
    real = training.save_samples
    monkeypatch.setattr(training, "save_samples", lambda exp, path, n, step, z=None: (seen.append(z), real(exp, path, n, step, z))[1])
    tiny(tmp_path, "torch", "training.sample_every=5", name="f")
    assert len(seen) == 4
    assert all(z is not None and np.array_equal(z, seen[0]) for z in seen)
    cfg = gankit.load_config(preset="ring8")
    np.testing.assert_array_equal(training.fixed_latents(cfg, 8), training.fixed_latents(cfg, 8))


def test_progress_bar_shows_step_losses_rate():
    import io

    from rich.console import Console

    from gankit.monitor import Progress

    console = Console(file=io.StringIO(), width=120, force_terminal=True)
    with Progress(True, 10, console=console) as p:
        p.advance(4, {"d_loss": 1.25, "g_loss": 0.5})
    text = console.file.getvalue()
    assert "step 4/10" in text and "D 1.2500" in text and "G 0.5000" in text and "steps/s" in text


def test_prefetcher_yields_in_order_and_surfaces_errors():
    from gankit.streaming import Prefetcher

    assert list(Prefetcher(iter(range(50)), 3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad batch")

    p = Prefetcher(broken(), 2)
    assert next(p) == 1
    with pytest.raises(ValueError, match="bad batch"):
        next(p)
