"""DiffAugment: the reference code's transforms, the same function on every backend for
the same random draws, differentiable for the generator, and wired into training."""

import numpy as np
import pytest

import gankit
from gankit import ConfigError, NumpyOps
from gankit.augment import DiffAugment

RNG = np.random.default_rng(0)


def reference(x, u, policy, translation_ratio=0.125, cutout_ratio=0.5):
    """The paper's reference code (DiffAugment-pytorch) with its randint draws replaced by
    the same integers derived from ``u``, written with loops and padding."""
    x = x.astype(np.float64).copy()
    b, c, h, w = x.shape
    col = 0
    for t in ("color", "translation", "cutout"):
        if t not in policy:
            continue
        if t == "color":
            x = x + (u[:, col, None, None, None] - 0.5)
            m = x.mean(axis=1, keepdims=True)
            x = (x - m) * (u[:, col + 1, None, None, None] * 2) + m
            m = x.mean(axis=(1, 2, 3), keepdims=True)
            x = (x - m) * (u[:, col + 2, None, None, None] + 0.5) + m
            col += 3
        elif t == "translation":
            sh, sw = int(h * translation_ratio + 0.5), int(w * translation_ratio + 0.5)
            out = np.zeros_like(x)
            for i in range(b):
                s = min(int(np.floor(u[i, col] * (2 * sh + 1))), 2 * sh) - sh
                r = min(int(np.floor(u[i, col + 1] * (2 * sw + 1))), 2 * sw) - sw
                pad = np.pad(x[i], ((0, 0), (sh, sh), (sw, sw)))
                out[i] = pad[:, sh + s: sh + s + h, sw + r: sw + r + w]  # out[y, x] = x[y + s, x + r]
            x = out
            col += 2
        else:
            ch, cw = int(h * cutout_ratio + 0.5), int(w * cutout_ratio + 0.5)
            for i in range(b):
                oy = min(int(np.floor(u[i, col] * (h + 1 - ch % 2))), h - ch % 2)
                ox = min(int(np.floor(u[i, col + 1] * (w + 1 - cw % 2))), w - cw % 2)
                ys = np.clip(np.arange(ch) + oy - ch // 2, 0, h - 1)
                xs = np.clip(np.arange(cw) + ox - cw // 2, 0, w - 1)
                x[i][:, ys[:, None], xs[None, :]] = 0
            col += 2
    return x


POLICIES = [("color",), ("translation",), ("cutout",), ("color", "translation", "cutout")]
SHAPES = [(5, 1, 28, 28), (4, 3, 8, 8), (3, 2, 7, 9)]


def _draws(aug, n):
    u = RNG.random((n, aug.draws))
    u[0] = 0.0
    u[-1] = np.nextafter(1.0, 0.0)  # the extremes of U[0, 1)
    return u


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: "+".join(p))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_numpy_matches_the_reference_code(policy, shape):
    aug = DiffAugment(policy)
    x = RNG.uniform(-1, 1, shape)
    u = _draws(aug, shape[0])
    np.testing.assert_allclose(aug.apply(NumpyOps(dtype="float64"), x, u), reference(x, u, policy), atol=1e-12)


def test_shifts_and_cutouts_cover_their_whole_range():
    # Over many draws every shift in [-4, 4] occurs at 28x28 and none beyond.
    aug = DiffAugment(("translation",))
    x = np.zeros((1, 1, 28, 28))
    x[0, 0, 14, 14] = 1
    u = np.linspace(0, np.nextafter(1.0, 0.0), 200)
    rows = set()
    for v in u:
        out = aug.apply(NumpyOps(), x, np.array([[v, 0.5]]))
        rows.add(14 - int(np.argwhere(out[0, 0])[0, 0]))
    assert rows == set(range(-4, 5))


def test_policy_is_checked():
    with pytest.raises(ValueError, match="unknown DiffAugment transforms"):
        DiffAugment(("colour",))
    with pytest.raises(ValueError, match="at least one"):
        DiffAugment(())
    assert DiffAugment(("cutout", "color")).policy == ("color", "cutout")
    with pytest.raises(ValueError, match="transforms images"):
        DiffAugment().check_shape((2,))


def _backend_ops(name):
    pytest.importorskip(name)
    return gankit.get_registry().backend(name).ops(dtype="float32", seed=0)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_same_function_on_every_backend_for_the_same_draws(backend):
    ops = _backend_ops(backend)
    aug = DiffAugment()
    x = RNG.uniform(-1, 1, (6, 3, 12, 12)).astype(np.float32)
    u = _draws(aug, 6).astype(np.float32)
    want = aug.apply(NumpyOps(dtype="float32"), x, u)
    got = ops.to_numpy(aug.apply(ops, ops.asarray(x), ops.asarray(u)))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Traced as the trainers run it (TensorFlow: a tf.function of unknown batch size).
    traced = ops.to_numpy(ops.trace(lambda a, b: aug.apply(ops, a, b))(ops.asarray(x), ops.asarray(u)))
    np.testing.assert_allclose(traced, want, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_differentiable_with_respect_to_the_images(backend):
    ops = _backend_ops(backend)
    aug = DiffAugment()
    x = RNG.uniform(-1, 1, (4, 1, 8, 8)).astype(np.float32)
    u = _draws(aug, 4).astype(np.float32)
    weights = RNG.normal(size=x.shape)

    def f(images):
        return ops.sum(aug.apply(ops, images, ops.asarray(u)) * ops.asarray(weights))

    _, (grad,) = ops.value_and_grad(f, x)
    # Central differences of the numpy reference (float64) at a few pixels.
    np_ops = NumpyOps(dtype="float64")
    g = lambda z: float(np.sum(aug.apply(np_ops, z, u.astype(np.float64)) * weights))  # noqa: E731
    for idx in [(0, 0, 3, 4), (1, 0, 0, 0), (2, 0, 7, 7), (3, 0, 4, 1)]:
        e = np.zeros_like(x, dtype=np.float64)
        e[idx] = 1e-4
        numeric = (g(x + e) - g(x - e)) / 2e-4
        assert grad[idx] == pytest.approx(numeric, abs=1e-3)
    assert np.abs(grad).sum() > 0


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_draws_come_from_the_seeded_generator(backend):
    aug = DiffAugment()
    x = np.zeros((3, 1, 8, 8), np.float32)
    a = _backend_ops(backend)
    b = gankit.get_registry().backend(backend).ops(dtype="float32", seed=0)
    first, second = a.to_numpy(aug.draw(a, a.asarray(x))), a.to_numpy(aug.draw(a, a.asarray(x)))
    assert first.shape == (3, 7) and 0 <= first.min() and first.max() < 1
    np.testing.assert_array_equal(first, b.to_numpy(aug.draw(b, b.asarray(x))))  # same seed, same draws
    assert not np.array_equal(first, second)  # fresh draws each batch


TINY_IMAGES = ["data.name=digits", "data.params.limit=200", "generator.name=mlp", "discriminator.name=mlp",
               "latent.dim=8", "generator.params.output_activation=tanh"]


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_training_with_diffaugment(tmp_path, backend):
    pytest.importorskip(backend)
    from training_helpers import tiny

    on = tiny(tmp_path, backend, *TINY_IMAGES, 'augment.policy=["color", "translation", "cutout"]',
              name="on", steps=4)
    again = tiny(tmp_path, backend, *TINY_IMAGES, 'augment.policy=["color", "translation", "cutout"]',
                 name="again", steps=4)
    off = tiny(tmp_path, backend, *TINY_IMAGES, name="off", steps=4)
    assert on.config.augment.policy == ["color", "translation", "cutout"]
    assert on.metrics == again.metrics  # seeded: a repeat draws the same augmentations
    assert on.metrics["d_loss"] != off.metrics["d_loss"]  # and they change what D sees


def test_augmenting_points_is_refused(tmp_path):
    from training_helpers import tiny

    with pytest.raises(ConfigError, match="augment.policy: DiffAugment transforms images"):
        tiny(tmp_path, "torch", 'augment.policy=["cutout"]', steps=2)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_floor_and_matmul_ops(backend):
    ops = _backend_ops(backend)
    x = np.array([-2.5, -1.0, -0.2, 0.0, 0.7, 3.999], np.float32)
    np.testing.assert_array_equal(ops.to_numpy(ops.floor(ops.asarray(x))), np.floor(x))
    a = RNG.normal(size=(3, 1, 4, 5)).astype(np.float32)
    b = RNG.normal(size=(3, 2, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(ops.to_numpy(ops.matmul(ops.asarray(a), ops.asarray(b))), np.matmul(a, b), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.to_numpy(ops.matmul(ops.asarray(a), b)), np.matmul(a, b), rtol=1e-5, atol=1e-5)  # numpy operand
    _, (ga, gb) = ops.value_and_grad(lambda p, q: ops.sum(ops.matmul(p, q)), a, b)
    np.testing.assert_allclose(ga, np.matmul(np.ones((3, 2, 4, 6)), np.swapaxes(b, -1, -2)).sum(axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gb, np.matmul(np.swapaxes(a, -1, -2), np.ones((3, 2, 4, 6))), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_resumed_run_draws_the_augmentations_an_uninterrupted_one_would(tmp_path, backend, interrupt_at):
    pytest.importorskip(backend)
    from training_helpers import Interrupted, tiny

    extra = [*TINY_IMAGES, 'augment.policy=["color", "translation", "cutout"]', "training.checkpoint_every=3"]
    whole = tiny(tmp_path, backend, *extra, name="whole", steps=6)
    restore = interrupt_at(4)
    with pytest.raises(Interrupted):
        tiny(tmp_path, backend, *extra, name="cut", steps=6)
    restore()
    resumed = gankit.train(resume=tmp_path / "cut")
    assert resumed.resumed_from == 3
    a, b = whole.trainer.state_dict(), resumed.trainer.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
