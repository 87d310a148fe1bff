"""Guard rails: divergence stops the run naming step and network; impossible configs are refused up front."""

import dataclasses

import numpy as np
import pytest

import gankit
from gankit import StepResult, checkpoint, training

from training_helpers import TINY, tiny


def _poison(monkeypatch, at_step, key="g_loss"):
    """Make the trainer report a non-finite ``key`` from step ``at_step`` on."""
    real_build = training.build

    def build(*args, **kwargs):
        exp = real_build(*args, **kwargs)
        step = exp.trainer.train_step

        def train_step(batches):
            r = step(batches)
            if r.step >= at_step:
                values = r.model_dump()
                if key in values:
                    values[key] = float("nan")
                else:
                    values["extras"] = {**values["extras"], key: float("inf")}
                return StepResult(**values)
            return r

        exp.trainer.train_step = train_step
        return exp

    monkeypatch.setattr(training, "build", build)


@pytest.mark.parametrize("key, network", [("g_loss", "the generator loss"), ("d_loss", "the discriminator loss"),
                                          ("penalty_r1", "the discriminator's r1 penalty")])
def test_non_finite_loss_stops_with_step_and_network(tmp_path, monkeypatch, key, network):
    _poison(monkeypatch, 13, key)
    with pytest.raises(gankit.TrainingError) as err:
        tiny(tmp_path, "torch", "training.checkpoint_every=5", name="nan")
    msg = str(err.value)
    assert "step 13" in msg and network in msg and "step_00000010.json" in msg
    manifest, _ = checkpoint.load(checkpoint.latest(tmp_path / "nan"))
    assert manifest.step == 10  # the last good checkpoint is kept and readable
    assert not (tmp_path / "nan" / "checkpoint.json").exists()


def test_non_finite_weights_are_never_checkpointed(tmp_path, monkeypatch):
    real_build = training.build

    def build(*args, **kwargs):
        exp = real_build(*args, **kwargs)
        state = exp.trainer.state_dict
        exp.trainer.state_dict = lambda: {k: (np.full_like(v, np.nan) if exp.trainer.step_count >= 10 and k.startswith("discriminator") else v)
                                          for k, v in state().items()}
        return exp

    monkeypatch.setattr(training, "build", build)
    with pytest.raises(gankit.TrainingError, match="discriminator weights are not finite"):
        tiny(tmp_path, "torch", "training.checkpoint_every=5", name="w")
    assert checkpoint.load(checkpoint.latest(tmp_path / "w"))[0].step == 5


def test_a_real_divergence_is_caught(tmp_path, backend_name):
    with pytest.raises(gankit.TrainingError, match=r"diverged at step \d+: the"):
        tiny(tmp_path, backend_name, "optimizers.discriminator.lr=1e30", "optimizers.generator.lr=1e30",
             "optimizers.discriminator.name=sgd", "optimizers.generator.name=sgd", name="boom", steps=50)


@pytest.mark.parametrize("override, message", [
    (["data.name=digits", "training.batch_size=5000"], "larger than the dataset"),
    (["training.n_critic=0"], "n_critic"),
    (["training.precision=float16"], "float16"),
    (["training.ema_decay=1.0"], "ema_decay"),
    (["training.checkpoint_keep=0"], "checkpoint_keep"),
    (["optimizers.generator.clip_grad_norm=0"], "clip_grad_norm"),
    (["optimizers.generator.schedule=exponential"], "schedule"),
    (["training.batch_size=1", "generator.params.norm=batch"], "at least 2 samples"),
])
def test_impossible_configs_are_refused_before_any_work(tmp_path, override, message):
    with pytest.raises(gankit.ConfigError, match=message):
        gankit.train(preset="ring8", overrides=[*TINY, f"output.dir={tmp_path}", "output.name=x", *override])
    assert not (tmp_path / "x").exists()


def test_batch_must_divide_among_processes():
    cfg = gankit.load_config(preset="ring8", overrides=["training.batch_size=10"])
    exp = training.build(cfg)
    with pytest.raises(gankit.ConfigError, match="batch_size 10 does not divide among 3 processes") as err:
        dataclasses.replace(exp.trainer.setup, world_size=3, rank=2)
    assert "\n" not in err.value.one_line() and "multiple of 3" in err.value.hint
