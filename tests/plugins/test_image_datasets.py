"""Image datasets: MNIST-5k, sklearn digits, image folders (streamed), labels."""

import numpy as np
import pytest

import gankit
from gankit.errors import DataError


def make(name, seed=0, **params):
    rec = gankit.get_registry().get("dataset", name).record
    return rec.factory(rec.params.model_validate(params), seed=seed)


def write_image(path, array, mode=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)
    return path


# -- MNIST-5k and digits ---------------------------------------------------------
@pytest.mark.parametrize("name, n, shape", [("mnist", 5000, (1, 28, 28)), ("digits", 1797, (1, 8, 8))])
def test_digit_datasets_are_labelled_images_in_unit_range(name, n, shape):
    ds = make(name)
    assert ds.modality == "images" and ds.sample_shape == shape and len(ds) == n
    assert ds.array.dtype == np.float32
    assert ds.array.min() == -1.0 and ds.array.max() == 1.0
    assert ds.num_classes == 10 and ds.labelled
    assert set(np.unique(ds.labels)) == set(range(10))
    assert ds.array.mean() < -0.3  # mostly background: ink is +1, paper is -1


def test_mnist_has_500_of_each_digit_and_is_not_shuffled_noise():
    ds = make("mnist")
    assert np.bincount(ds.labels).tolist() == [500] * 10
    # the mean "1" is a narrow vertical stroke: its centre column holds more ink than its edges
    ones = ds.array[ds.labels == 1].mean(axis=0)[0]
    assert ones[:, 12:16].mean() > ones[:, :6].mean() + 0.5


def test_class_subset_keeps_digit_values():
    ds = make("mnist", classes=[7, 3])
    assert sorted(set(ds.labels.tolist())) == [3, 7] and len(ds) == 1000 and ds.num_classes == 10


def test_bad_class_subset_is_a_config_error():
    with pytest.raises(gankit.ConfigError, match="classes"):
        gankit.load_config({"data": {"name": "mnist", "params": {"classes": [10]}}})


def test_labelled_batches_match_unlabelled_ones():
    ds = make("digits")
    xs, (xl, yl) = next(ds.batches(32, seed=5)), next(ds.labelled_batches(32, seed=5))
    np.testing.assert_array_equal(xs, xl)
    images, labels = ds.array, ds.labels
    for x, y in zip(xl[:5], yl[:5]):
        assert labels[np.flatnonzero((images == x).all(axis=(1, 2, 3)))[0]] == y
    assert yl.dtype == np.int64 and yl.shape == (32,)


def test_epochs_reshuffle_with_the_seed():
    ds = make("digits")
    it = ds.batches(1797 // 2, seed=1)
    first_epoch = np.concatenate([next(it), next(it)])
    second_epoch = np.concatenate([next(it), next(it)])
    assert not np.array_equal(first_epoch, second_epoch)
    again = ds.batches(1797 // 2, seed=1)
    np.testing.assert_array_equal(next(again), first_epoch[: 1797 // 2])


def test_unlabelled_dataset_refuses_labelled_batches():
    ds = gankit.ArrayDataset(np.zeros((4, 2)))
    assert not ds.labelled
    with pytest.raises(DataError, match="has no labels"):
        next(ds.labelled_batches(2, seed=0))


def test_labels_must_match_samples():
    with pytest.raises(DataError, match="3 labels"):
        gankit.ArrayDataset(np.zeros((4, 2)), labels=[0, 1, 1])


# -- image folder -----------------------------------------------------------------
@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for cls in ("cat", "dog"):
        for i in range(3):
            write_image(root / cls / f"{i}.png", rng.integers(0, 256, (12, 16, 3)))
    write_image(root / "dog" / "deep" / "x.jpg", rng.integers(0, 256, (20, 10, 3)))
    return root


def test_image_folder_resizes_crops_and_labels(folder):
    ds = make("image_folder", path=str(folder), size=8)
    assert ds.sample_shape == (3, 8, 8) and len(ds) == 7 and ds.modality == "images"
    assert ds.info["classes"] == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    x, y = next(ds.labelled_batches(7, seed=0))
    assert x.shape == (7, 3, 8, 8) and x.dtype == np.float32 and -1 <= x.min() and x.max() <= 1
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1, 1]


def test_image_folder_grayscale_and_rectangular_size(folder):
    ds = make("image_folder", path=str(folder), size=[6, 4], mode="grayscale")
    assert ds.sample_shape == (1, 6, 4)
    assert next(ds.batches(3, seed=0)).shape == (3, 1, 6, 4)


def test_image_folder_pixels_are_exact_without_resize(tmp_path):
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
    write_image(tmp_path / "a.png", pixels)
    ds = make("image_folder", path=str(tmp_path))
    assert ds.num_classes is None  # no sub-folders, no labels
    x = ds.sample(1, seed=0)[0]
    np.testing.assert_allclose(x, pixels.transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)


def test_center_crop_keeps_the_middle(tmp_path):
    img = np.zeros((4, 12), dtype=np.uint8)
    img[:, 4:8] = 255  # a white band in the middle third of a wide image
    write_image(tmp_path / "wide.png", img)
    x = make("image_folder", path=str(tmp_path), size=4, mode="grayscale").sample(1, seed=0)[0, 0]
    assert x.min() > 0.9  # the 4x4 center crop is all white


def test_image_folder_streams_batches_from_disk(folder, monkeypatch):
    from gankit_plugins import image_datasets

    reads = []
    real = image_datasets.read_image
    monkeypatch.setattr(image_datasets, "read_image", lambda *a: reads.append(a[0]) or real(*a))
    ds = make("image_folder", path=str(folder), size=8, check=False)
    assert reads == []  # nothing is read up front
    it = ds.batches(2, seed=0)
    next(it)
    assert len(reads) == 2
    next(it)
    assert len(reads) == 4


def test_image_folder_epoch_order_follows_the_seed(folder):
    ds = make("image_folder", path=str(folder), size=4)
    a, b, c = (next(ds.batches(7, seed=s)) for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("setup, expected", [
    ("missing", "does not exist"),
    ("empty", "holds no .png, .jpg or .jpeg files"),
    ("garbage", "bad.png' cannot be read"),
    ("mixed", "images of different sizes need a size"),
])
def test_image_folder_errors_name_the_problem(tmp_path, setup, expected):
    root = tmp_path / "data"
    root.mkdir()
    (root / "notes.txt").write_text("not an image")
    if setup == "garbage":
        write_image(root / "good.png", np.zeros((4, 4, 3)))
        (root / "bad.png").write_bytes(b"\x89PNG not really")
    elif setup == "mixed":
        write_image(root / "a.png", np.zeros((4, 4, 3)))
        write_image(root / "b.png", np.zeros((5, 4, 3)))
    path = tmp_path / "nowhere" if setup == "missing" else root
    with pytest.raises(DataError, match=expected) as info:
        make("image_folder", path=str(path))
    assert "\n" not in str(info.value)


def test_truncated_image_is_reported_when_read(tmp_path):
    good = write_image(tmp_path / "a.png", np.random.default_rng(0).integers(0, 256, (32, 32, 3)))
    data = good.read_bytes()
    (tmp_path / "b.png").write_bytes(data[: len(data) // 2])
    ds = make("image_folder", path=str(tmp_path), check=False)
    with pytest.raises(DataError, match="b.png' cannot be read"):
        next(ds.batches(2, seed=0))


def test_mnist_trains_with_an_mlp_config():
    cfg = gankit.load_config({"data": {"name": "mnist"}, "latent": {"dim": 16}})
    assert cfg.data.params == {"classes": list(range(10)), "limit": None}


def test_npz_images_with_labels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((6, 1, 4, 4), np.float32), y=np.array([0, 1, 2, 0, 1, 2]))
    ds = make("npy", path=str(path), labels_key="y")
    assert ds.modality == "images" and ds.num_classes == 3 and ds.sample_shape == (1, 4, 4)
    with pytest.raises(DataError, match="no array 'z'"):
        make("npy", path=str(path), labels_key="z")
