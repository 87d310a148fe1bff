"""The checkpoint format: safetensors + JSON, verified on load, atomic on save."""

import json

import numpy as np
import pytest

from gankit import checkpoint
from gankit.errors import CheckpointError
from gankit.init import initial_weights
from gankit.nets import Activation, BatchNorm, Dense, NetSpec

G = NetSpec(input_shape=(2,), layers=[Dense(units=4), BatchNorm(), Activation(fn="relu"), Dense(units=2)])
D = NetSpec(input_shape=(2,), layers=[Dense(units=4), Activation(fn="leaky_relu"), Dense(units=1)])


def save(base, weights=None):
    weights = weights if weights is not None else initial_weights(G, D, "default", 0)
    return checkpoint.save(base, weights, step=5, backend="numpy", versions={"gankit": "0"},
                           generator=G, discriminator=D, config={"name": "t"})


def test_round_trip(tmp_path):
    w = initial_weights(G, D, "normal", 1)
    save(tmp_path / "checkpoint", w)
    manifest, loaded = checkpoint.load(tmp_path)
    assert manifest.step == 5 and manifest.generator == G
    assert set(loaded) == set(w)
    for k in w:
        np.testing.assert_array_equal(loaded[k], w[k])


def test_no_pickle_in_files(tmp_path):
    save(tmp_path / "checkpoint")
    for p in tmp_path.iterdir():
        assert b"\x80\x04\x95" not in p.read_bytes()  # pickle protocol 4 header
    json.loads((tmp_path / "checkpoint.json").read_text())


def test_truncated_weights(tmp_path):
    save(tmp_path / "checkpoint")
    p = tmp_path / "checkpoint.safetensors"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="do not match their manifest"):
        checkpoint.load(tmp_path)


def test_corrupt_manifest(tmp_path):
    save(tmp_path / "checkpoint")
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest .* is invalid"):
        checkpoint.load(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="holds no checkpoint.json"):
        checkpoint.load(tmp_path)
    save(tmp_path / "checkpoint")
    (tmp_path / "checkpoint.safetensors").unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        checkpoint.load(tmp_path)


def test_shape_mismatch_names_the_tensor(tmp_path):
    w = initial_weights(G, D, "default", 0)
    w["generator.0.weight"] = np.zeros((3, 4), np.float32)
    save(tmp_path / "checkpoint", w)
    with pytest.raises(CheckpointError, match=r"'generator.0.weight' has shape \(3, 4\), the model expects \(2, 4\)"):
        checkpoint.load(tmp_path)


def test_missing_tensor(tmp_path):
    w = initial_weights(G, D, "default", 0)
    del w["discriminator.2.bias"]
    save(tmp_path / "checkpoint", w)
    with pytest.raises(CheckpointError, match="'discriminator.2.bias' is missing"):
        checkpoint.load(tmp_path)


def test_failed_write_keeps_previous(tmp_path, monkeypatch):
    save(tmp_path / "checkpoint")
    before = (tmp_path / "checkpoint.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "fsync", boom)
    with pytest.raises(OSError):
        save(tmp_path / "checkpoint", initial_weights(G, D, "normal", 7))
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before
    checkpoint.load(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
