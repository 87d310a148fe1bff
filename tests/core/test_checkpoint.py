"""The checkpoint format: safetensors + JSON, verified on load, atomic on save."""

import json

import numpy as np
import pytest

from gankit import checkpoint
from gankit.errors import CheckpointError
from gankit.initializers import initial_weights
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


def _rewrite_weights(tmp_path, blob: bytes) -> None:
    """Replace the weights file and make the manifest agree (a hostile pair, not a corrupt one)."""
    import hashlib

    (tmp_path / "checkpoint.safetensors").write_bytes(blob)
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    manifest["sha256"] = hashlib.sha256(blob).hexdigest()
    (tmp_path / "checkpoint.json").write_text(json.dumps(manifest))


def test_weights_file_far_larger_than_its_manifest_is_refused_unread(tmp_path, monkeypatch):
    save(tmp_path / "checkpoint")
    weights = tmp_path / "checkpoint.safetensors"
    with weights.open("r+b") as fh:
        fh.truncate(50 * 2**30)  # a sparse 50 GiB file: reading it whole would exhaust memory
    with pytest.raises(CheckpointError, match=r"is 53,687,091,200 bytes, more than the \d+ bytes of tensors"):
        checkpoint.load(tmp_path)


def test_weights_header_claiming_gigabytes_is_refused(tmp_path):
    save(tmp_path / "checkpoint")
    weights = tmp_path / "checkpoint.safetensors"
    blob = weights.read_bytes()
    _rewrite_weights(tmp_path, (2**40).to_bytes(8, "little") + blob[8:])
    with pytest.raises(CheckpointError, match="has a header of 1,099,511,627,776 bytes, more than a header can be"):
        checkpoint.load(tmp_path)


def test_huge_manifest_is_refused_unread(tmp_path):
    save(tmp_path / "checkpoint")
    with (tmp_path / "checkpoint.json").open("r+b") as fh:
        fh.truncate(checkpoint.MAX_MANIFEST_BYTES + 1)
    with pytest.raises(CheckpointError, match="more than a manifest can be"):
        checkpoint.load(tmp_path)


def test_deeply_nested_manifest_is_one_line(tmp_path):
    save(tmp_path / "checkpoint")
    path = tmp_path / "checkpoint.json"
    path.write_text(path.read_text().replace('"config": {', '"config": {"deep": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1))
    with pytest.raises(CheckpointError, match="recursion limit") as err:
        checkpoint.load(tmp_path)
    assert "\n" not in err.value.one_line()
    assert checkpoint.latest(tmp_path) == path  # the only manifest: load() says what is wrong


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_weights_are_refused(tmp_path, bad):
    from safetensors.numpy import save as st_save

    save(tmp_path / "checkpoint")
    _, weights = checkpoint.load(tmp_path)
    weights["generator.0.weight"] = weights["generator.0.weight"].copy()
    weights["generator.0.weight"][0, 0] = float(bad)
    _rewrite_weights(tmp_path, st_save(dict(sorted(weights.items())), metadata={"format": checkpoint.FORMAT}))
    with pytest.raises(CheckpointError, match="'generator.0.weight' holds NaN or infinite values"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("dtype", [np.int8, np.float16, np.float64])
def test_weights_of_the_wrong_dtype_are_refused(tmp_path, dtype):
    from safetensors.numpy import save as st_save

    save(tmp_path / "checkpoint")
    _, weights = checkpoint.load(tmp_path)
    weights = {k: v.astype(dtype) for k, v in weights.items()}
    blob = st_save(dict(sorted(weights.items())), metadata={"format": checkpoint.FORMAT})
    _rewrite_weights(tmp_path, blob)
    with pytest.raises(CheckpointError, match=f"is {np.dtype(dtype).name}, a gankit checkpoint holds float32"):
        checkpoint.load(tmp_path)
