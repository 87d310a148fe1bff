"""A run directory's checkpoints: listed, pruned and chosen by step; what `--resume PATH`
continues from; which earlier checkpoint a refusal points to; what differs between nets."""

import json
import os

import numpy as np
import pytest

from gankit import checkpoint
from gankit.errors import CheckpointError, ConfigError
from gankit.initializers import initial_weights
from gankit.nets import Activation, Dense, NetSpec

G = NetSpec(input_shape=(2,), layers=[Dense(units=4), Activation(fn="relu"), Dense(units=2)])
D = NetSpec(input_shape=(2,), layers=[Dense(units=4), Activation(fn="leaky_relu"), Dense(units=1)])


def save(base, step: int, resumable: bool = True):
    """A real checkpoint of ``step`` (with training state unless not ``resumable``)."""
    state = {"optimizer_state": {"g.step": np.array(step)}, "rng_state": {"seed": np.arange(3, dtype=np.uint8)}}
    return checkpoint.save(base, initial_weights(G, D, "normal", step), step=step, backend="numpy",
                           versions={"gankit": "0"}, generator=G, discriminator=D, config={"name": "t"},
                           **(state if resumable else {}))


def stub(run_dir, *steps):
    """Periodic checkpoints that are only names and a step (enough to list and prune)."""
    for step in steps:
        base = checkpoint.periodic_base(run_dir, step)
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_name(base.name + ".json").write_text(json.dumps({"step": step}))
        for suffix in (".safetensors", ".state.safetensors"):
            base.with_name(base.name + suffix).write_bytes(b"")


def names(manifests):
    return [p.name for p in manifests]


# -- ordered by step, not by name -------------------------------------------------------
def test_checkpoints_past_ten_to_the_eighth_steps_are_ordered_by_step(tmp_path):
    stub(tmp_path, 99_999_998, 99_999_999, 100_000_000)  # 100000000 sorts first by name
    assert names(checkpoint.periodic(tmp_path)) == ["step_99999998.json", "step_99999999.json", "step_100000000.json"]
    assert checkpoint.latest(tmp_path).name == "step_100000000.json"
    assert checkpoint.find(tmp_path).name == "step_100000000.json"


def test_pruning_past_ten_to_the_eighth_steps_keeps_the_newest(tmp_path):
    stub(tmp_path, 99_999_998, 99_999_999, 100_000_000, 1_000_000_000)
    assert names(checkpoint.prune(tmp_path, 2)) == ["step_99999998.json", "step_99999999.json"]
    assert names(checkpoint.periodic(tmp_path)) == ["step_100000000.json", "step_1000000000.json"]
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == sorted(f"step_{s}{x}" for s in (100000000, 1000000000) for x in (".json", ".safetensors", ".state.safetensors"))


def test_only_step_manifests_are_periodic_checkpoints(tmp_path):
    stub(tmp_path, 5)
    for name in ("step_latest.json", ".step_00000009.json.1a2b3c4d.tmp", "step_.json"):
        (tmp_path / "checkpoints" / name).write_text("{}")
    assert names(checkpoint.periodic(tmp_path)) == ["step_00000005.json"]
    assert checkpoint.periodic_step(tmp_path / "checkpoints" / "step_00000005.json") == 5
    assert checkpoint.periodic_step(tmp_path / "checkpoint.json") is None


# -- discarding what follows the checkpoint a run continues from ----------------------------
def test_discard_after_removes_later_checkpoints_only(tmp_path):
    stub(tmp_path, 100, 200, 300, 400)
    save(tmp_path / "checkpoint", 400)
    gone = checkpoint.discard_after(tmp_path, 200)
    assert names(gone) == ["step_00000300.json", "step_00000400.json", "checkpoint.json"]
    assert names(checkpoint.periodic(tmp_path)) == ["step_00000100.json", "step_00000200.json"]
    assert sorted(p.name for p in tmp_path.glob("checkpoint*")) == ["checkpoints"]  # all three files of each
    assert not list((tmp_path / "checkpoints").glob("step_00000[34]00*"))
    save(tmp_path / "checkpoint", 200)  # the final checkpoint of the step itself stays
    assert checkpoint.discard_after(tmp_path, 200) == [] and (tmp_path / "checkpoint.json").is_file()


# -- what --resume PATH continues from --------------------------------------------------------
def test_resume_target_of_a_directory_or_a_checkpoint_of_it(tmp_path, monkeypatch):
    run = tmp_path / "run"
    stub(run, 100, 300)
    (run / "checkpoint.json").write_text(json.dumps({"step": 300}))
    chosen = run / "checkpoints" / "step_00000100.json"
    assert checkpoint.resume_target(run) == (run, None)
    assert checkpoint.resume_target(chosen) == (run, chosen)
    assert checkpoint.resume_target(run / "checkpoints" / "step_00000100.safetensors") == (run, chosen)
    assert checkpoint.resume_target(run / "checkpoint.json") == (run, run / "checkpoint.json")
    monkeypatch.chdir(run / "checkpoints")  # a bare file name inside the run's checkpoints/
    target, manifest = checkpoint.resume_target("step_00000100.json")
    assert target.resolve() == run.resolve() and manifest.name == "step_00000100.json"


@pytest.mark.parametrize("path, message", [
    ("nothing", "does not exist"),
    ("run/notes.txt", "neither a run directory nor a checkpoint"),
    ("run/config.json", "not a checkpoint of a run directory"),
    ("loose.json", "not a checkpoint of a run directory"),
])
def test_resume_target_refuses_what_is_no_checkpoint_of_a_run(tmp_path, path, message):
    stub(tmp_path / "run", 100)
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "loose.json").write_text("{}")
    (tmp_path / "run" / "notes.txt").write_text("")
    with pytest.raises(ConfigError, match=message) as err:
        checkpoint.resume_target(tmp_path / path)
    assert "--resume takes a run directory" in err.value.one_line() or "resume a run directory" in err.value.one_line()


# -- a checkpoint that cannot be loaded points to the earlier one -------------------------------
def _truncate(manifest):
    weights = checkpoint.paths(manifest)[0]
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def test_a_corrupt_checkpoint_names_the_earlier_one_and_the_command(tmp_path):
    first, second = (save(checkpoint.periodic_base(tmp_path, s), s) for s in (300, 400))
    _truncate(second)
    with pytest.raises(CheckpointError, match="sha256 differs") as err:
        checkpoint.load(second, resume=True)
    assert err.value.one_line().endswith(f"(the file is truncated or corrupt; use an earlier checkpoint: "
                                         f"gankit train --resume {first})")
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(tmp_path)  # sample, evaluate: the path to load instead
    assert err.value.one_line().endswith(f"use an earlier checkpoint: {first})")
    assert checkpoint.earlier(second) == first and checkpoint.earlier(first) is None


def test_the_earlier_checkpoint_named_must_load(tmp_path):
    oldest, middle, newest = (save(checkpoint.periodic_base(tmp_path, s), s) for s in (200, 300, 400))
    _truncate(newest)
    state = checkpoint.state_path(middle)
    state.write_bytes(state.read_bytes()[:-7])  # loads for inference, cannot resume
    assert checkpoint.earlier(newest) == middle
    assert checkpoint.earlier(newest, resume=True) == oldest
    with pytest.raises(CheckpointError, match=f"gankit train --resume {oldest}"):
        checkpoint.load(newest, resume=True)
    with pytest.raises(CheckpointError, match=f"sha256 differs.*gankit train --resume {oldest}"):
        checkpoint.load_state(middle, checkpoint.load(middle)[0])
    _truncate(oldest)
    with pytest.raises(CheckpointError, match="the run has no earlier checkpoint that loads"):
        checkpoint.load(newest, resume=True)


def test_a_broken_final_checkpoint_names_the_periodic_one_of_its_step(tmp_path):
    periodic = save(checkpoint.periodic_base(tmp_path, 400), 400)
    final = save(tmp_path / "checkpoint", 400)
    _truncate(final)
    with pytest.raises(CheckpointError, match=f"use an earlier checkpoint: {periodic}"):
        checkpoint.load(tmp_path)


def test_a_checkpoint_outside_a_run_directory_names_no_earlier_one(tmp_path):
    manifest = save(tmp_path / "model", 5)
    _truncate(manifest)
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(manifest, resume=True)
    assert err.value.one_line().endswith("(the file is truncated or corrupt)")


def test_paths_with_spaces_are_quoted_in_the_command(tmp_path):
    run = tmp_path / "my run"
    first, second = (save(checkpoint.periodic_base(run, s), s) for s in (1, 2))
    _truncate(second)
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(second, resume=True)
    assert f"gankit train --resume '{first}'" in err.value.one_line()


# -- which field of a network differs --------------------------------------------------------
def test_net_difference_names_the_first_differing_field():
    narrower = NetSpec(input_shape=(2,), layers=[Dense(units=8), Activation(fn="relu"), Dense(units=2)])
    assert checkpoint.net_difference(G, narrower) == "layers[0].units: 4 in the checkpoint, 8 now"
    shallower = NetSpec(input_shape=(2,), layers=[Dense(units=4), Activation(fn="relu")])
    assert checkpoint.net_difference(G, shallower) == "layers: 3 entries in the checkpoint, 2 now"
    other = NetSpec(input_shape=(2,), layers=[Dense(units=4), Activation(fn="tanh"), Dense(units=2)])
    assert checkpoint.net_difference(G, other) == 'layers[1].fn: "relu" in the checkpoint, "tanh" now'
    assert checkpoint.net_difference(G, NetSpec.model_validate(G.model_dump())) is None


def test_first_difference_of_keys_present_on_one_side():
    assert checkpoint.first_difference({"a": 1}, {"a": 1, "b": [2]}) == "b: absent in the checkpoint, [2] now"
    assert checkpoint.first_difference({"a": {"x": 1}}, {"a": {}}) == "a.x: 1 in the checkpoint, absent now"
    long = "x" * 100
    assert checkpoint.first_difference({"a": long}, {"a": "y"}).startswith('a: "xxxx')
    assert len(checkpoint.first_difference({"a": long}, {"a": "y"})) < 100
