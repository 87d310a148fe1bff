"""Image datasets: MNIST-5k, sklearn digits, image folders (streamed), labels."""

import json

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


# -- more than 8 bits per pixel: scaled from their own range, never clipped at 255 ----------
def write_16bit(path, values):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)  # a 16-bit grayscale PNG
    return path


@pytest.mark.parametrize("mode, channels", [("grayscale", 1), ("rgb", 3)])
def test_16bit_png_is_scaled_from_its_own_range(tmp_path, mode, channels):
    values = np.array([[0, 1000, 30000, 65535], [65535, 32768, 255, 12345]], dtype=np.uint16)
    write_16bit(tmp_path / "deep.png", values)
    from PIL import Image

    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")  # what Pillow opens it as
    x = make("image_folder", path=str(tmp_path), mode=mode).sample(1, seed=0)[0]
    expected = values.astype(np.float64) / 65535 * 2 - 1  # 0 -> -1, 65535 -> +1, 30000 -> about -0.084
    assert x.shape == (channels, 2, 4) and x.dtype == np.float32
    for c in range(channels):
        np.testing.assert_allclose(x[c], expected, atol=1e-6)


def test_16bit_png_resized_keeps_its_level(tmp_path):
    # the audit's case: 30000 everywhere loaded as +1.0 (all white) before
    for i in range(3):
        write_16bit(tmp_path / f"{i}.png", np.full((16, 16), 30000))
    for mode in ("grayscale", "rgb"):
        x = next(make("image_folder", path=str(tmp_path), size=8, mode=mode).batches(3, seed=0))
        np.testing.assert_allclose(x, 30000 / 65535 * 2 - 1, atol=1e-5)


def test_16bit_and_8bit_images_of_one_level_agree(tmp_path):
    write_image(tmp_path / "a" / "8.png", np.full((4, 4), 51))  # 51 / 255 = 0.2
    write_16bit(tmp_path / "b" / "16.png", np.full((4, 4), 13107))  # 13107 / 65535 = 0.2
    x, y = next(make("image_folder", path=str(tmp_path), mode="grayscale").labelled_batches(2, seed=0))
    assert sorted(y.tolist()) == [0, 1]
    np.testing.assert_allclose(x[0], x[1], atol=1e-6)
    np.testing.assert_allclose(x, -0.6, atol=1e-6)


def write_tiff_as_png(path, values):
    """Pillow opens files by content: a float or 32-bit TIFF named .png is read as one."""
    from PIL import Image

    Image.fromarray(values).save(path, format="TIFF")
    return path


@pytest.mark.parametrize("values, expected", [
    (np.full((4, 4), 0.25, np.float32), -0.5),  # floats: [0, 1]
    (np.full((4, 4), 30000, np.int32), 30000 / 65535 * 2 - 1),  # 32-bit integers: read as 16-bit
])
def test_float_and_32bit_images_are_scaled(tmp_path, values, expected):
    write_tiff_as_png(tmp_path / "a.png", values)
    for mode in ("grayscale", "rgb"):
        x = make("image_folder", path=str(tmp_path), mode=mode).sample(1, seed=0)
        np.testing.assert_allclose(x, expected, atol=1e-6)


@pytest.mark.parametrize("values, expected", [
    (np.full((4, 4), 3.5, np.float32), "floating-point pixels from 3.5 to 3.5, outside the range 0-1"),
    (np.full((4, 4), np.nan, np.float32), "floating-point pixels from nan"),
    (np.full((4, 4), 70000, np.int32), "32-bit integer pixels from 70000 to 70000, outside the range 0-65535"),
])
def test_pixels_outside_their_range_are_refused_up_front(tmp_path, values, expected):
    write_image(tmp_path / "a.png", np.zeros((4, 4)))
    write_tiff_as_png(tmp_path / "b.png", values)
    with pytest.raises(DataError, match="b.png' holds " + expected.replace("(", r"\(")) as info:
        make("image_folder", path=str(tmp_path), mode="grayscale")
    assert "\n" not in str(info.value)


# -- the up-front check decodes every file ------------------------------------------------------
def truncate(path, keep):
    data = path.read_bytes()
    assert len(data) > keep
    path.write_bytes(data[:keep])


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_check_refuses_a_truncated_file_among_good_ones(tmp_path, ext):
    rng = np.random.default_rng(0)
    for i in range(60):
        write_image(tmp_path / f"{i:02d}.{ext}", rng.integers(0, 256, (32, 32, 3)))
    keep = 300 if ext == "png" else (tmp_path / "37.jpg").stat().st_size * 3 // 4  # a JPEG's header is longer
    truncate(tmp_path / f"37.{ext}", keep)  # its header is whole: only decoding it finds the cut
    from PIL import Image

    with Image.open(tmp_path / f"37.{ext}") as img:
        assert img.size == (32, 32)  # what the header-only check saw, and passed
    with pytest.raises(DataError, match=rf"37\.{ext}' cannot be read \(image file is truncated") as info:
        make("image_folder", path=str(tmp_path), size=16)
    assert "\n" not in str(info.value)
    ds = make("image_folder", path=str(tmp_path), size=16, check=False)  # without the check: found when read
    with pytest.raises(DataError, match=rf"37\.{ext}' cannot be read"):
        for _ in range(8):
            next(ds.batches(60, seed=0))


def test_check_names_the_first_bad_file_in_order(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(80):
        write_image(tmp_path / f"{i:02d}.png", rng.integers(0, 256, (16, 16, 3)))
    for bad in ("71", "13", "40"):
        truncate(tmp_path / f"{bad}.png", 200)
    for _ in range(3):  # the files are decoded on several threads; the answer is still the first
        with pytest.raises(DataError, match=r"13\.png' cannot be read"):
            make("image_folder", path=str(tmp_path))


def test_check_reads_every_file_before_training(folder, monkeypatch):
    from gankit_plugins import image_datasets

    checked = []
    real = image_datasets.check_image
    monkeypatch.setattr(image_datasets, "check_image", lambda f: checked.append(f.name) or real(f))
    make("image_folder", path=str(folder), size=8)
    assert sorted(checked) == sorted(["0.png", "1.png", "2.png"] * 2 + ["x.jpg"])


def test_check_shows_a_progress_bar_on_a_terminal_when_slow(folder, monkeypatch, capsys):
    from gankit_plugins import image_datasets

    monkeypatch.setattr(image_datasets, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(image_datasets.sys.stderr, "isatty", lambda: True)
    make("image_folder", path=str(folder), size=8)
    assert "checking 7 images" in capsys.readouterr().err
    monkeypatch.setattr(image_datasets, "PROGRESS_AFTER_S", 60.0)  # a quick check shows nothing
    make("image_folder", path=str(folder), size=8)
    assert capsys.readouterr().err == ""


def test_truncated_file_stops_gankit_train_before_any_run_directory(tmp_path, capsys):
    from gankit.cli import main

    rng = np.random.default_rng(0)
    for i in range(20):
        write_image(tmp_path / "imgs" / f"{i:02d}.png", rng.integers(0, 256, (16, 16)))
    truncate(tmp_path / "imgs" / "19.png", 150)
    code = main(["train", "--preset", "ring8", "-q", "--set", "data.name=image_folder",
                 "--set", f'data.params={{"path": "{tmp_path / "imgs"}", "size": 8, "mode": "grayscale"}}',
                 "--set", "training.steps=2", "--set", "training.batch_size=4", "--set", "training.threads=1",
                 "--set", f"output.dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "19.png' cannot be read (image file is truncated" in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# -- data paths are stored absolute, so a run's config works from any directory -------------------
@pytest.mark.parametrize("name, relative, more", [("image_folder", "imgs", {"size": 8}), ("npy", "d.npy", {})])
def test_relative_data_path_is_resolved_in_the_config(folder, tmp_path, monkeypatch, name, relative, more):
    np.save(tmp_path / "d.npy", np.zeros((4, 2), np.float32))
    monkeypatch.chdir(tmp_path)
    cfg = gankit.load_config({"data": {"name": name, "params": {"path": relative, **more}}})
    assert cfg.data.params["path"] == str((tmp_path / relative).resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # `gankit evaluate RUN` from another directory
    again = gankit.load_config(json.loads(cfg.model_dump_json()))
    assert again.data.params["path"] == cfg.data.params["path"]
    assert len(make(name, **again.data.params)) > 0


def test_home_in_a_data_path_is_expanded(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = gankit.load_config({"data": {"name": "image_folder", "params": {"path": "~/imgs"}}})
    assert cfg.data.params["path"] == str(folder.resolve())


@pytest.mark.parametrize("name", ["image_folder", "npy"])
def test_empty_data_path_is_refused(name):
    with pytest.raises(gankit.ConfigError, match="data.params.path: .*must not be empty"):
        gankit.load_config({"data": {"name": name, "params": {"path": " "}}})


def test_errors_name_files_as_typed_inside_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.png").write_bytes(b"\x89PNG not really")
    monkeypatch.chdir(tmp_path)
    params = gankit.load_config({"data": {"name": "image_folder", "params": {"path": "data"}}}).data.params
    with pytest.raises(DataError, match=r"^image file 'data/bad.png' cannot be read"):
        make("image_folder", **params)
    monkeypatch.chdir(tmp_path / "data")
    with pytest.raises(DataError, match=r"^image file 'bad.png' cannot be read"):
        make("image_folder", **params)
    monkeypatch.chdir("/")
    with pytest.raises(DataError, match=rf"^image file '{tmp_path.resolve()}/data/bad.png' cannot be read"):
        make("image_folder", **params)


def test_threaded_check_refuses_a_bomb_without_pillows_warning(tmp_path):
    import struct
    import warnings
    import zlib

    def png_claiming(side):  # a header claiming side x side 8-bit gray pixels, a few bytes of data
        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))

    for i in range(40):
        write_image(tmp_path / f"{i:02d}.png", np.zeros((8, 8)))
    (tmp_path / "30.png").write_bytes(png_claiming(12_000))  # 144M pixels: Pillow warns, does not raise
    with warnings.catch_warnings(record=True) as caught, pytest.raises(DataError, match="30.png' is 12000x12000"):
        warnings.simplefilter("always")
        make("image_folder", path=str(tmp_path))
    assert not [w for w in caught if "DecompressionBomb" in w.category.__name__]
