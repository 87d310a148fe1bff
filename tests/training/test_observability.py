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


def test_step_batches_from_memory_are_fresh_and_other_datasets_are_copied():
    from gankit.data import ArrayDataset
    from gankit.streaming import indexed, step_batches

    data = ArrayDataset(np.arange(40 * 3, dtype=np.float32).reshape(40, 3), labels=np.arange(40) % 4)
    assert indexed(data) and indexed(data, labels=True)
    for k in (1, 3):  # one batch a step is a view of a fresh copy: the same values as a stacked copy
        stream = step_batches(data, 8, k, seed=0)
        a, b = next(stream), next(stream)
        assert a.shape == b.shape == (k, 8, 3)
        assert not np.shares_memory(a, b) and not np.shares_memory(a, data.array)
        orders = iter(step_batches(data, 8, 1, seed=0))
        firsts = [next(orders)[0] for _ in range(2 * k)]
        np.testing.assert_array_equal(np.concatenate([a, b]), np.stack(firsts))
    x, y = next(step_batches(data, 8, 1, seed=0, labels=True))
    assert x.shape == (1, 8, 3) and y.shape == (1, 8)
    np.testing.assert_array_equal(y[0], data.labels[(x[0, :, 0] // 3).astype(int)])

    class Reusing(ArrayDataset):  # a plugin that refills one buffer for every batch
        def batches(self, batch_size, seed):
            buf = np.empty((batch_size, 3), np.float32)
            for i in range(1000):
                buf[:] = i
                yield buf

    reusing = Reusing(np.zeros((40, 3), np.float32))
    assert not indexed(reusing)
    stream = step_batches(reusing, 8, 1, seed=0)
    first = next(stream)
    next(stream)
    assert (first == 0).all()  # copied before the buffer was refilled


def test_in_memory_data_is_served_inline_and_other_data_prefetched(tmp_path, monkeypatch):
    from gankit import streaming

    depths = []

    class Recording(streaming.Prefetcher):
        def __init__(self, source, depth):
            depths.append(depth)
            super().__init__(source, depth)

    monkeypatch.setattr(training, "Prefetcher", Recording)
    points = tmp_path / "points.npy"
    np.save(points, np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32))
    tiny(tmp_path, "torch", "training.prefetch=3", "data.name=npy", f"data.params.path={points}",
         name="inline", steps=3)
    assert depths == [0]  # an array in memory: no thread
    tiny(tmp_path, "torch", "training.prefetch=3", name="thread", steps=3)
    assert depths == [0, 3]  # ring8 draws each batch afresh: prepared ahead
