"""The hand-written optimizers follow torch.optim's update rules step for step."""

import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow
tf = pytest.importorskip("tensorflow")

from gankit import OptimizerSettings  # noqa: E402
from gankit_tensorflow.optim import RMSPROP_ALPHA, build_optimizer  # noqa: E402

SETTINGS = {
    "adam": OptimizerSettings("adam", lr=1e-2, betas=(0.5, 0.999)),
    "adam_l2": OptimizerSettings("adam", lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, eps=1e-3),
    "adamw": OptimizerSettings("adamw", lr=1e-2, betas=(0.5, 0.9), weight_decay=0.3),
    "rmsprop": OptimizerSettings("rmsprop", lr=1e-2, eps=1e-4),
    "rmsprop_momentum": OptimizerSettings("rmsprop", lr=1e-2, momentum=0.9, weight_decay=0.05),
    "sgd": OptimizerSettings("sgd", lr=0.1),
    "sgd_momentum": OptimizerSettings("sgd", lr=0.1, momentum=0.8, weight_decay=0.01),
}
STEPS = 5


def numpy_reference(s, p, grads):
    """torch.optim's update rules, written out in float64."""
    p = p.astype(np.float64).copy()
    m = v = buf = np.zeros_like(p)
    b1, b2 = s.betas
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if s.name == "adamw":
            p = p * (1 - s.lr * s.weight_decay)  # decoupled decay first
        elif s.weight_decay:
            g = g + s.weight_decay * p  # L2 in the gradient
        if s.name in ("adam", "adamw"):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            denom = np.sqrt(v) / np.sqrt(1 - b2**t) + s.eps  # eps outside the sqrt
            p = p - s.lr / (1 - b1**t) * m / denom
        elif s.name == "rmsprop":
            v = RMSPROP_ALPHA * v + (1 - RMSPROP_ALPHA) * g * g
            step = g / (np.sqrt(v) + s.eps)
            buf = s.momentum * buf + step if s.momentum else step
            p = p - s.lr * buf
        else:
            buf = s.momentum * buf + g if s.momentum else g
            p = p - s.lr * buf
    return p


def gradient_sequence(seed=0):
    rng = np.random.default_rng(seed)
    # Mixed scales, exercising the adaptive denominators.
    return [rng.normal(size=(3, 4)) * np.array([1e-3, 1.0, 10.0, 0.1]) for _ in range(STEPS)]


def run_tensorflow(s, p0, grads, compiled=False):
    var = tf.Variable(p0.astype(np.float32))
    opt = build_optimizer({"w": var}, s)
    step = tf.function(lambda g: opt.apply([g])) if compiled else (lambda g: opt.apply([g]))
    for g in grads:
        step(tf.constant(g, tf.float32))
    return var.numpy(), opt


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_matches_numpy_reference_of_torch_rules(name):
    s = SETTINGS[name]
    p0 = np.random.default_rng(1).normal(size=(3, 4))
    grads = gradient_sequence()
    got, opt = run_tensorflow(s, p0, grads, compiled=name.endswith("momentum"))
    np.testing.assert_allclose(got, numpy_reference(s, p0, grads), rtol=1e-5, atol=1e-6)
    assert int(opt.iterations.numpy()) == STEPS
    assert np.all(got != p0)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_matches_torch_optim(name):
    torch = pytest.importorskip("torch")
    s = SETTINGS[name]
    p0 = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    grads = gradient_sequence(3)
    param = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    kw = dict(lr=s.lr, weight_decay=s.weight_decay)
    ref = {
        "adam": lambda: torch.optim.Adam([param], betas=s.betas, eps=s.eps, **kw),
        "adamw": lambda: torch.optim.AdamW([param], betas=s.betas, eps=s.eps, **kw),
        "rmsprop": lambda: torch.optim.RMSprop([param], alpha=RMSPROP_ALPHA, eps=s.eps, momentum=s.momentum, **kw),
        "sgd": lambda: torch.optim.SGD([param], momentum=s.momentum, **kw),
    }[s.name]()
    for g in grads:
        param.grad = torch.from_numpy(g.astype(np.float32))
        ref.step()
    got, opt = run_tensorflow(s, p0, grads)
    np.testing.assert_allclose(got, param.detach().numpy(), rtol=1e-5, atol=1e-6)
    # Slot names and values follow torch's optimizer state (Adam's fused kernel updates
    # its moments as m += (g - m)(1 - beta1), torch as a lerp: rounding differs ~1e-5).
    state = opt.state_dict()
    for slot, value in ref.state[param].items():
        if slot != "step":
            np.testing.assert_allclose(state[f"w.{slot}"], value.numpy(), rtol=5e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_zero_learning_rate_changes_nothing(name):
    s = SETTINGS[name]
    s0 = OptimizerSettings(s.name, lr=0.0, betas=s.betas, weight_decay=s.weight_decay, momentum=s.momentum, eps=s.eps)
    p0 = np.random.default_rng(4).normal(size=(3, 4)).astype(np.float32)
    got, _ = run_tensorflow(s0, p0, gradient_sequence())
    np.testing.assert_array_equal(got, p0)


def test_state_round_trip_continues_identically():
    s = SETTINGS["adam_l2"]
    p0 = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    grads = gradient_sequence(6)
    full, _ = run_tensorflow(s, p0, grads)
    half, opt = run_tensorflow(s, p0, grads[:2])
    var = tf.Variable(half)
    resumed = build_optimizer({"w": var}, s)
    resumed.load_state_dict(opt.state_dict())
    for g in grads[2:]:
        resumed.apply([tf.constant(g, tf.float32)])
    np.testing.assert_array_equal(var.numpy(), full)


def test_unknown_optimizer_is_an_error():
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        build_optimizer({"w": tf.Variable([1.0])}, OptimizerSettings("lion", lr=1.0))
