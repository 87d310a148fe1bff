"""Latent interpolation: slerp's formula and degenerate cases, the walks, and
`gankit sample RUN --interpolate STEPS` (per class for a conditional generator)."""

import numpy as np
import pytest
from PIL import Image

import gankit
from gankit.cli import main
from gankit.interpolation import lerp, slerp, walks

RNG = np.random.default_rng(3)
T = np.linspace(0, 1, 9)


def _angle(a, b):
    return np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))


@pytest.mark.parametrize("dim", [2, 3, 100])
def test_slerp_follows_the_great_circle(dim):
    z0, z1 = RNG.normal(size=dim), RNG.normal(size=dim)
    path = slerp(z0, z1, T)
    np.testing.assert_allclose(path[0], z0, atol=1e-12)
    np.testing.assert_allclose(path[-1], z1, atol=1e-12)
    omega = _angle(z0, z1)
    for t, z in zip(T, path):  # the formula, for latents of any lengths
        want = (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)
        np.testing.assert_allclose(z, want, atol=1e-12)
    # Latents of one length: the angle from z0 grows linearly and the length stays.
    z1 = z1 * np.linalg.norm(z0) / np.linalg.norm(z1)
    for t, z in zip(T, slerp(z0, z1, T)):
        assert _angle(z0, z) == pytest.approx(t * omega, abs=1e-7)
        assert np.linalg.norm(z) == pytest.approx(np.linalg.norm(z0), rel=1e-12)
    # Unit vectors stay on the unit sphere (where lerp cuts inside it).
    u0, u1 = z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)
    np.testing.assert_allclose(np.linalg.norm(slerp(u0, u1, T), axis=1), 1.0, atol=1e-12)
    assert np.linalg.norm(lerp(u0, u1, [0.5])) == pytest.approx(np.cos(omega / 2), rel=1e-9)  # inside it


def test_slerp_closed_form_for_orthogonal_unit_vectors():
    got = slerp([1.0, 0.0], [0.0, 1.0], T)
    np.testing.assert_allclose(got, np.stack([np.cos(T * np.pi / 2), np.sin(T * np.pi / 2)], axis=1), atol=1e-12)


@pytest.mark.parametrize("z0, z1", [
    ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]),            # parallel: sin(omega) = 0
    ([1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]),         # antiparallel: no preferred great circle
    ([0.0, 0.0, 0.0], [1.0, -1.0, 0.5]),           # a zero latent: no direction
    ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0 + 1e-15]),    # parallel to rounding
])
def test_slerp_degenerate_cases_are_the_straight_walk(z0, z1):
    got = slerp(z0, z1, T)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, lerp(z0, z1, T), atol=1e-12)


class FakeGAN:
    """Generates its latent itself (and the label as a last coordinate when conditional)."""

    latent_dim = 3

    def __init__(self, num_classes=None):
        self.num_classes = num_classes

    def latents(self, n, seed=0, truncation=None):
        return np.random.default_rng(seed).normal(size=(n, self.latent_dim)).astype(np.float32)

    def generate(self, z, labels=None):
        z = np.asarray(z)
        return z if labels is None else np.concatenate([z, np.asarray(labels, dtype=np.float32)[:, None]], axis=1)


def test_walks_are_straight_then_spherical_between_the_same_latents():
    x = walks(FakeGAN(), steps=6, n_walks=3, seed=1)
    assert x.shape == (3, 2, 6, 3)
    ends = FakeGAN().latents(6, seed=1)
    for i in range(3):
        np.testing.assert_allclose(x[i, 0], lerp(ends[2 * i], ends[2 * i + 1], np.linspace(0, 1, 6)), atol=1e-6)
        np.testing.assert_allclose(x[i, 1], slerp(ends[2 * i], ends[2 * i + 1], np.linspace(0, 1, 6)), atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 steps"):
        walks(FakeGAN(), steps=1, n_walks=1)


def test_conditional_walks_keep_their_class():
    x = walks(FakeGAN(num_classes=10), steps=4, n_walks=3, labels=np.array([7, 0, 7]))
    np.testing.assert_array_equal(x[..., -1], np.array([7, 0, 7])[:, None, None] * np.ones((3, 2, 4)))
    default = walks(FakeGAN(num_classes=2), steps=4, n_walks=3)
    np.testing.assert_array_equal(default[:, 0, 0, -1], [0, 1, 0])
    with pytest.raises(ValueError, match="one label per walk"):
        walks(FakeGAN(num_classes=10), steps=4, n_walks=3, labels=np.array([1, 2]))


def _train(tmp_path, name, **cfg):
    pytest.importorskip("torch")
    base = {"latent": {"dim": 8}, "output": {"dir": str(tmp_path), "name": name}, "evaluation": {"num_samples": 20},
            "training": {"steps": 2, "batch_size": 20, "num_samples": 16, "tensorboard": False, "threads": 1}}
    return gankit.train({**base, **cfg})


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("interp"), "digits", data={"name": "digits", "params": {"limit": 40}},
                  generator={"name": "mlp", "params": {"hidden": [16], "output_activation": "tanh"}},
                  discriminator={"name": "mlp", "params": {"hidden": [16]}})


def test_cli_interpolate_writes_the_grid(digits_run, tmp_path, capsys):
    png, npy = tmp_path / "walks.png", tmp_path / "walks.npy"
    assert main(["sample", str(digits_run.directory), "--interpolate", "8", "--walks", "3", "-o", str(png)]) == 0
    assert "wrote 3 walks of 8 steps" in capsys.readouterr().out
    picture = Image.open(png)
    # image_grid: 8x8 digits enlarged 7x, 2-pixel borders: 8 columns, 6 rows.
    assert picture.size == ((8 * 10 + 2) * 7, (6 * 10 + 2) * 7)
    assert main(["sample", str(digits_run.directory), "--interpolate", "5", "-o", str(npy)]) == 0
    x = np.load(npy)
    assert x.shape == (4, 2, 5, 1, 8, 8)
    np.testing.assert_allclose(x[:, 0, [0, -1]], x[:, 1, [0, -1]], atol=1e-5)  # both walks share their ends
    assert not np.allclose(x[:, 0, 2], x[:, 1, 2], atol=1e-4)  # and differ between them


@pytest.mark.parametrize("args, message", [
    (["--walks", "2"], "--walks applies to --interpolate"),
    (["--interpolate", "4", "--rejection", "drs"], "does not combine with --rejection drs"),
    (["--interpolate", "4", "--label", "3"], "--label applies to class-conditional generators"),
    (["--interpolate", "1"], "Invalid value for '--interpolate'"),
    (["--interpolate", "1000", "--walks", "11"], "11 walks of 1000 steps make 22,000 samples"),
])
def test_cli_interpolate_refusals_are_one_line(digits_run, tmp_path, capsys, args, message):
    code = main(["sample", str(digits_run.directory), *args, "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_interpolate_per_class(tmp_path, capsys):
    run = _train(tmp_path, "cgan", data={"name": "mnist", "params": {"limit": 40}},
                 generator={"name": "cdcgan", "params": {"base_channels": 4}},
                 discriminator={"name": "cdcgan", "params": {"base_channels": 4}})
    npy = tmp_path / "walks.npy"
    assert main(["sample", str(run.directory), "--interpolate", "4", "-o", str(npy)]) == 0
    assert "wrote 10 walks (classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9) of 4 steps" in capsys.readouterr().out
    assert np.load(npy).shape == (10, 2, 4, 1, 28, 28)  # one walk per class
    assert main(["sample", str(run.directory), "--interpolate", "3", "--label", "7", "--label", "1",
                 "-o", str(npy)]) == 0
    assert "(classes 7, 1)" in capsys.readouterr().out
    gan = gankit.load_checkpoint(run.directory)
    x = np.load(npy)
    ends = gan.latents(4, 0)
    np.testing.assert_allclose(x[1, 0, -1], gan.generate(ends[3:4], np.array([1]))[0], atol=1e-5)
