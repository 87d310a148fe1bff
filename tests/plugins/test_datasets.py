"""Built-in datasets: the PacGAN toys and array files."""

import numpy as np
import pytest

import gankit
from gankit.errors import DataError


def make(name, seed=0, **params):
    rec = gankit.get_registry().get("dataset", name).record
    return rec.factory(rec.params.model_validate(params), seed=seed)


def nearest_mode_distance(x, modes):
    d = np.linalg.norm(x[:, None, :] - np.asarray(modes)[None], axis=-1)
    return d.min(axis=1), d.argmin(axis=1)


@pytest.mark.parametrize("name, n_modes, std", [("ring8", 8, 0.01), ("grid25", 25, 0.05)])
def test_toys_match_pacgan_settings(name, n_modes, std):
    ds = make(name)
    modes = np.asarray(ds.info["modes"])
    assert modes.shape == (n_modes, 2) and ds.info["std"] == std
    x = next(ds.batches(20000, seed=1))
    dist, idx = nearest_mode_distance(x, modes)
    assert np.bincount(idx, minlength=n_modes).min() > 20000 / n_modes * 0.8  # every mode, roughly equally
    assert np.std(x - modes[idx]) == pytest.approx(std, rel=0.05)
    assert (dist < 4 * std).mean() > 0.99


def test_ring_geometry():
    modes = np.asarray(make("ring8").info["modes"])
    np.testing.assert_allclose(np.linalg.norm(modes, axis=1), 1.0)
    modes = np.asarray(make("ring8", radius=2.0, modes=4).info["modes"])
    np.testing.assert_allclose(modes, [[2, 0], [0, 2], [-2, 0], [0, -2]], atol=1e-12)


def test_grid_geometry():
    modes = np.asarray(make("grid25").info["modes"])
    assert sorted(set(modes[:, 0].round(6))) == [-4, -2, 0, 2, 4]


def test_batches_repeat_with_seed():
    a, b, c = (next(make("ring8").batches(64, seed=s)) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("fmt", ["npy", "npz"])
def test_array_file(tmp_path, fmt):
    data = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    path = tmp_path / f"d.{fmt}"
    np.save(path, data) if fmt == "npy" else np.savez(path, points=data)
    ds = make("npy", path=str(path))
    assert ds.sample_shape == (3,) and len(ds) == 50
    it = ds.batches(20, seed=0)
    epoch = np.concatenate([next(it), next(it)])  # 40 of 50 samples, no repeats within an epoch
    assert len({tuple(r) for r in epoch}) == 40


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"garbage", "is not a readable .npy/.npz array"),
        (None, "does not exist"),
    ],
)
def test_bad_array_file(tmp_path, content, expected):
    path = tmp_path / "d.npy"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=expected):
        make("npy", path=str(path))


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a readable"):
        make("npy", path=str(path))


def test_npz_with_several_arrays_needs_key(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, a=np.zeros((4, 2)), b=np.ones((4, 2)))
    with pytest.raises(DataError, match="set data.params.key"):
        make("npy", path=str(path))
    assert make("npy", path=str(path), key="b").array.mean() == 1


def test_nan_data_refused(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(DataError, match="NaN"):
        make("npy", path=str(path))


def test_batch_larger_than_dataset(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.zeros((10, 2)))
    with pytest.raises(DataError, match="larger than the dataset"):
        next(make("npy", path=str(path)).batches(11, seed=0))
