"""Mixed precision on TensorFlow: bfloat16 / float16 compute with float32 variables,
batch norm in float32, loss scaling for float16, and float16 refused on the CPU as torch
refuses it. (Torch's own bfloat16 run is in test_features.py.)"""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import gankit  # noqa: E402
from gankit import checkpoint  # noqa: E402
from gankit import (  # noqa: E402
    Activation,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Flatten,
    LayerNorm,
    Loss,
    LossMeta,
    NetSpec,
    OptimizerSettings,
    Regularizer,
    RegularizerMeta,
    Reshape,
    SpectralNorm,
    TrainSetup,
    Upsample,
)
from gankit import trainer as base_trainer  # noqa: E402
from gankit_tensorflow.nn import TensorFlowNet, load_weights  # noqa: E402
from gankit_tensorflow.ops import TensorFlowOps  # noqa: E402
from gankit_tensorflow.optim import LossScale, build_optimizer  # noqa: E402

from training_helpers import tiny  # noqa: E402

pytestmark = pytest.mark.tensorflow


class NonSaturating(Loss):
    meta = LossMeta(family="minimax", saturating=False, properties=(), formula="", paper="")

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(-fake_logits))


class R1(Regularizer):
    meta = RegularizerMeta(evaluated_at="real", formula="gamma/2 E|grad D(x)|^2", paper="test")

    def __call__(self, ops, discriminator, real, fake):
        return 0.5 * ops.mean(ops.batch_sum_squares(ops.input_grad(discriminator, real)))


# Small image nets covering the layers whose dtype handling differs: dense, (transposed)
# convolutions, batch norm, layer norm, upsampling, pooling, dropout.
G = NetSpec(name="g", input_shape=(8,), layers=[
    Dense(units=4 * 4 * 4), Reshape(shape=(4, 4, 4)), BatchNorm(), Activation(fn="relu"),
    ConvTranspose2d(channels=4, kernel_size=4, stride=2, padding=1), BatchNorm(), Activation(fn="relu"),
    Upsample(scale_factor=1), Conv2d(channels=1, kernel_size=3, padding=1), Activation(fn="tanh")])
D = NetSpec(name="d", input_shape=(1, 8, 8), layers=[
    Conv2d(channels=4, kernel_size=3, padding=1), Activation(fn="leaky_relu"), Dropout(rate=0.1),
    Conv2d(channels=8, kernel_size=4, stride=2, padding=1), LayerNorm(), Activation(fn="leaky_relu"),
    AvgPool2d(kernel_size=2), Flatten(), Dense(units=1)])
# The same discriminator with spectral norm (its power iteration stays float32).
D_SN = NetSpec(name="d_sn", input_shape=(1, 8, 8), layers=[
    Conv2d(channels=4, kernel_size=3, padding=1, spectral_norm=SpectralNorm()), Activation(fn="leaky_relu"),
    Flatten(), Dense(units=1, spectral_norm=SpectralNorm())])
WEIGHTS = gankit.initial_weights(G, D, "default", 0)
REAL = np.tanh(np.random.default_rng(0).normal(size=(8, 2, 16, 1, 8, 8))).astype(np.float32)  # (steps, n_critic, ...)


def setup(precision, d=D, **kw):
    base = dict(generator=G, discriminator=d, loss=NonSaturating(), regularizers={"r1": R1()},
                g_optimizer=OptimizerSettings("adam", 2e-3, betas=(0.5, 0.999)),
                d_optimizer=OptimizerSettings("adam", 2e-3, betas=(0.5, 0.999)),
                latent_dim=8, batch_size=16, n_critic=2, seed=0, device="cpu",
                initial_weights=gankit.initial_weights(G, d, "default", 0), precision=precision)
    base.update(kw)
    return TrainSetup(**base)


def trainer(precision, **kw):
    return gankit.get_backend("tensorflow").build_trainer(setup(precision, **kw))


@pytest.fixture
def float16_on_cpu(monkeypatch):
    """Lift the GPU requirement of float16 so that its loss-scaled step runs here
    (TensorFlow has float16 CPU kernels; only speed makes the GPU the place for it)."""
    monkeypatch.setattr(base_trainer, "check_precision", lambda precision, device: None)


def ops_of(concrete) -> list:
    """The ops of a traced function (its conditionals' branches hold only optimizer updates)."""
    return list(concrete.graph.get_operations())


def dtypes_of(concrete, types=("MatMul", "Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")) -> set:
    return {op.get_attr("T").name for op in ops_of(concrete) if op.type in types}


def net(spec, compute_dtype, weights):
    n = TensorFlowNet(spec, compute_dtype=compute_dtype)
    load_weights(n, weights)
    return n


def rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / (np.max(np.abs(b)) + 1e-12))


# -- the network ----------------------------------------------------------------------
def test_forward_computes_in_bfloat16_with_float32_batch_norm_and_output():
    g = net(G, "bfloat16", {k[len("generator."):]: v for k, v in WEIGHTS.items() if k.startswith("generator.")})
    concrete = tf.function(lambda z: g(z, training=True)).get_concrete_function(tf.TensorSpec([None, 8], tf.float32))
    # Every matmul and convolution runs in bfloat16 ...
    assert dtypes_of(concrete) == {"bfloat16"}
    # ... while the batch-norm statistics (the net's only means) are float32 ...
    assert {op.get_attr("T").name for op in ops_of(concrete) if op.type == "Mean"} == {"float32"}
    # ... the output comes back float32, and the variables never leave float32.
    assert concrete.outputs[0].dtype == tf.float32
    assert all(v.dtype == tf.float32 for v in g.variables)


def test_bfloat16_forward_is_close_to_float32_but_not_equal():
    z = np.random.default_rng(1).normal(size=(32, 8)).astype(np.float32)
    w = {k[len("generator."):]: v for k, v in WEIGHTS.items() if k.startswith("generator.")}
    full, half = net(G, "float32", w), net(G, "bfloat16", w)
    a = full(z, training=False).numpy()
    b = half(z, training=False).numpy()
    override = full(z, training=False, compute_dtype="bfloat16").numpy()  # the per-call override
    assert b.dtype == np.float32
    err = rel_err(b, a)
    assert 1e-4 < err < 5e-2, err  # bfloat16 keeps 8 bits: ~0.4% per rounding, not float32's 1e-7
    np.testing.assert_array_equal(override, b)


def test_batch_norm_statistics_are_float32_from_bfloat16_activations():
    spec = NetSpec(name="bn", input_shape=(8,), layers=[Dense(units=16), BatchNorm(momentum=0.5)])
    n = TensorFlowNet(spec, compute_dtype="bfloat16")
    x = np.random.default_rng(2).normal(1.0, 3.0, size=(64, 8)).astype(np.float32)
    out = n(x, training=True).numpy()
    # The dense layer in bfloat16 (as the net computes it), then statistics in float64.
    h = (tf.cast(x, tf.bfloat16) @ tf.cast(n.params["0.weight"], tf.bfloat16)
         + tf.cast(n.params["0.bias"], tf.bfloat16)).numpy().astype(np.float64)
    mean, var = h.mean(0), h.var(0)
    # Exact to float32 rounding: statistics computed in bfloat16 would be off by ~1e-3.
    np.testing.assert_allclose(n.buffers["1.running_mean"].numpy(), 0.5 * mean, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(n.buffers["1.running_var"].numpy(), 0.5 + 0.5 * var * 64 / 63, rtol=2e-6)
    assert n.buffers["1.running_mean"].dtype == tf.float32
    # The normalised output was rounded once to bfloat16 on the way out.
    expected = (h - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(out, expected, atol=2e-2)
    assert rel_err(out, expected) > 1e-5


def test_spectral_norm_input_gradient_in_bfloat16_is_close_to_float32():
    w = {k: v for k, v in gankit.initial_weights(G, D_SN, "default", 0).items() if k.startswith("discriminator.")}
    w = {k[len("discriminator."):]: v for k, v in w.items()}
    full, half = net(D_SN, "float32", w), net(D_SN, "bfloat16", w)
    x = tf.constant(REAL[0, 0])
    ops = TensorFlowOps()
    g32 = ops.input_grad(lambda t: full(t, training=False), x).numpy()
    g16 = ops.input_grad(lambda t: half(t, training=False), x)
    assert g16.dtype == tf.float32  # the gradient reaches the float32 input through the cast
    g16 = g16.numpy()
    # A few leaky-relu units change side when their input is rounded to bfloat16, so a
    # few entries differ by much; as a whole the gradient (and R1's |grad|^2) agrees.
    err = np.linalg.norm(g16 - g32) / np.linalg.norm(g32)
    assert 1e-5 < err < 1e-1, err
    np.testing.assert_allclose((g16**2).sum((1, 2, 3)), (g32**2).sum((1, 2, 3)), rtol=1e-1)
    assert half.buffers["0.weight_u"].dtype == tf.float32


# -- the training step ----------------------------------------------------------------
def test_bfloat16_training_runs_with_float32_weights_and_state():
    t = trainer("bfloat16", ema_decay=0.9)
    results = [t.train_step(REAL[i]) for i in range(4)]
    assert all(r.is_finite() for r in results)
    assert results[-1].extras["penalty_r1"] > 0
    assert all(v.dtype == np.float32 for v in t.state_dict().values())
    assert all(v.dtype in (np.float32, np.int64) for v in t.optimizer_state().values())
    assert all(v.dtype == tf.float32 for v in t.nets["generator_ema"].variables)
    assert "loss_scale.generator" not in t.rng_state()  # only float16 scales its loss
    # The compiled step computes in bfloat16 (forward, backward, and the penalty's double backward).
    assert dtypes_of(t._train_fn.get_concrete_function()) == {"bfloat16"}
    # Sampling and evaluation stay float32, as on torch.
    assert dtypes_of(t._forward_fns["generator_ema"].get_concrete_function()) == {"float32"}
    plain_call = tf.function(lambda z: t.nets["generator"](z)).get_concrete_function(tf.TensorSpec([None, 8], tf.float32))
    assert dtypes_of(plain_call) == {"float32"}  # what ONNX export and other callers of the net get
    assert t.sample(4).dtype == np.float32


def test_bfloat16_training_stays_close_to_float32_and_is_not_float32():
    a, b = trainer("float32"), trainer("bfloat16")
    ra, rb = a.train_step(REAL[0]), b.train_step(REAL[0])
    for key in ("d_loss", "g_loss"):
        assert getattr(ra, key) == pytest.approx(getattr(rb, key), rel=3e-2, abs=1e-3)
    assert ra.extras["penalty_r1"] == pytest.approx(rb.extras["penalty_r1"], rel=1e-1)
    assert ra.d_loss != rb.d_loss
    wa, wb = a.state_dict(), b.state_dict()
    assert any(not np.array_equal(wa[k], wb[k]) for k in wa)
    # One step apart (2 Adam updates of D, 1 of G, lr 2e-3). Adam's first update moves a
    # weight by about lr * sign(gradient), so where a gradient is near zero bfloat16 can flip
    # its sign: no weight can differ by more than 2 * lr per update, and nearly all agree closely
    # (measured: 23 of 1,754 beyond 1e-3).
    far = total = 0
    for k in wa:
        updates = 2 if k.startswith("discriminator.") else 1
        diff = np.abs(wb[k].astype(np.float64) - wa[k])
        assert diff.max() <= 2 * 2e-3 * updates + 1e-5, k
        far, total = far + int((diff > 1e-3).sum()), total + diff.size
    assert far <= 0.05 * total, f"{far} of {total} weights differ by more than 1e-3"


def test_bfloat16_runs_under_xla():
    t = trainer("bfloat16", compile=True, ema_decay=0.9)
    assert all(t.train_step(REAL[i]).is_finite() for i in range(2))
    assert all(v.dtype == np.float32 for v in t.state_dict().values())


def test_bfloat16_checkpoint_is_float32_and_loads_into_torch(tmp_path):
    pytest.importorskip("torch")
    run = tiny(tmp_path, "tensorflow", "training.precision=bfloat16", steps=10)
    assert run.trainer.compute_dtype == tf.bfloat16
    loaded = {b: gankit.load_checkpoint(tmp_path / "run", backend=b) for b in ("tensorflow", "torch")}
    _, weights = checkpoint.load(tmp_path / "run")
    assert weights and all(v.dtype == np.float32 for v in weights.values())
    z = loaded["torch"].latents(64, seed=1)
    np.testing.assert_allclose(loaded["torch"].generate(z), loaded["tensorflow"].generate(z), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loaded["tensorflow"].generate(z), run.trainer.generate(z), rtol=1e-6, atol=1e-6)


# -- float16 ----------------------------------------------------------------------------
def test_float16_on_the_cpu_is_refused_with_torchs_message():
    pytest.importorskip("torch")
    errors = {}
    for backend in ("torch", "tensorflow"):
        with pytest.raises(gankit.ConfigError) as info:
            gankit.get_backend(backend).build_trainer(setup("float16"))
        errors[backend] = (str(info.value), getattr(info.value, "hint", None))
    assert errors["tensorflow"] == errors["torch"]
    assert "float16 needs a CUDA GPU" in errors["tensorflow"][0] and "bfloat16" in errors["tensorflow"][1]


def test_float16_step_computes_in_float16_with_float32_penalties(float16_on_cpu):
    t = trainer("float16")
    assert all(t.train_step(REAL[i]).is_finite() for i in range(3))
    assert all(v.dtype == np.float32 for v in t.state_dict().values())
    types = dtypes_of(t._train_fn.get_concrete_function())
    assert types == {"float16", "float32"}  # the nets in float16, the R1 penalty's discriminator in float32
    no_penalty = trainer("float16", regularizers={})
    assert dtypes_of(no_penalty._train_fn.get_concrete_function()) == {"float16"}
    state = t.rng_state()
    np.testing.assert_array_equal(state["loss_scale.discriminator"], [2.0**16, 6])  # n_critic = 2: 6 good steps
    np.testing.assert_array_equal(state["loss_scale.generator"], [2.0**16, 3])


def test_float16_step_with_overflowing_gradients_is_skipped(float16_on_cpu):
    t = trainer("float16")
    t.train_step(REAL[0])
    d_before, g_before = t.parameters_of("discriminator"), t.parameters_of("generator")
    d_steps = int(t.optimizers["discriminator"].iterations.numpy())
    t.loss_scales["discriminator"].scale.assign(2.0**60)  # scaled float16 gradients overflow
    r = t.train_step(REAL[1])
    assert r.is_finite()  # the losses themselves are fine: only the update is skipped
    d_after = t.parameters_of("discriminator")
    for k in d_before:
        np.testing.assert_array_equal(d_after[k], d_before[k], err_msg=k)
    assert int(t.optimizers["discriminator"].iterations.numpy()) == d_steps  # as torch's optimizer step is never called
    assert float(t.loss_scales["discriminator"].scale.numpy()) == 2.0**58  # halved at each of 2 critic steps
    assert int(t.loss_scales["discriminator"].good_steps.numpy()) == 0
    assert any(not np.array_equal(t.parameters_of("generator")[k], g_before[k]) for k in g_before)


def test_float16_loss_scale_is_resumed(float16_on_cpu):
    def run(t, steps):
        for i in steps:
            t.train_step(REAL[i])

    straight = trainer("float16")
    straight.loss_scales["generator"].scale.assign(2.0**40)  # backs off during the first steps
    run(straight, range(4))

    first = trainer("float16")
    first.loss_scales["generator"].scale.assign(2.0**40)
    run(first, range(2))
    scale_mid = first.rng_state()["loss_scale.generator"]
    assert scale_mid[0] < 2.0**40  # the scale has changed: resuming must carry it
    resumed = trainer("float16")
    resumed.load_state_dict(first.state_dict())
    resumed.load_optimizer_state(first.optimizer_state())
    resumed.load_rng_state(first.rng_state())
    resumed.step_count = 2
    np.testing.assert_array_equal(resumed.rng_state()["loss_scale.generator"], scale_mid)
    run(resumed, range(2, 4))
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)
    np.testing.assert_array_equal(resumed.rng_state()["loss_scale.generator"],
                                  straight.rng_state()["loss_scale.generator"])


# -- the loss scale on its own --------------------------------------------------------
def _scaled_sgd(growth_interval=3, init_scale=8.0):
    var = tf.Variable([1.0, 2.0], name="w")
    opt = build_optimizer({"w": var}, OptimizerSettings("sgd", 1.0))
    return var, opt, LossScale(init_scale=init_scale, growth_interval=growth_interval)


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_loss_scale_skips_non_finite_gradients_and_adapts(jit):
    var, opt, scale = _scaled_sgd()
    step = tf.function(lambda g: scale.apply(opt, [g]), jit_compile=jit or None, autograph=False)

    def apply(grad):  # a true gradient `grad`, as the scaled loss would produce it
        return bool(step(tf.constant(grad, tf.float32) * scale.scale).numpy())

    assert apply([1.0, 1.0]) and np.allclose(var.numpy(), [0.0, 1.0])  # unscaled: w -= 1 * grad
    assert (float(scale.scale.numpy()), int(scale.good_steps.numpy())) == (8.0, 1)
    for bad in ([np.inf, 0.0], [0.0, np.nan], [-np.inf, 1.0]):
        assert not apply(bad)
        np.testing.assert_array_equal(var.numpy(), [0.0, 1.0])  # skipped: unchanged ...
        assert int(opt.iterations.numpy()) == 1  # ... and the optimizer did not count a step
        assert int(scale.good_steps.numpy()) == 0
    assert float(scale.scale.numpy()) == 1.0  # 8 halved three times
    for _ in range(3):  # growth_interval good steps in a row double it
        assert apply([0.5, 0.5])
    assert (float(scale.scale.numpy()), int(scale.good_steps.numpy())) == (2.0, 0)
    np.testing.assert_allclose(var.numpy(), [-1.5, -0.5])


def test_loss_scale_does_not_grow_past_float32():
    var, opt, scale = _scaled_sgd(growth_interval=1, init_scale=3e38)
    scale.apply(opt, [tf.constant([1.0, 1.0])])
    assert (float(scale.scale.numpy()), int(scale.good_steps.numpy())) == (pytest.approx(3e38), 0)


def test_loss_scale_clips_the_unscaled_gradient():
    var, opt, scale = _scaled_sgd()
    clip = lambda grads: [g * tf.minimum(1.0, 0.5 / tf.linalg.global_norm(grads)) for g in grads]  # noqa: E731
    scale.apply(opt, [tf.constant([3.0, 4.0]) * scale.scale], clip=clip)
    np.testing.assert_allclose(var.numpy(), [1.0 - 0.3, 2.0 - 0.4], rtol=1e-6)  # norm 0.5 after unscaling


def test_loss_scale_follows_torch_grad_scaler():
    torch = pytest.importorskip("torch")
    flags = [True, False, True, True, True, False, False, True, True, True, True]
    p = torch.nn.Parameter(torch.ones(2))
    opt_t = torch.optim.SGD([p], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=3)
    var, opt, scale = _scaled_sgd(growth_interval=3, init_scale=16.0)
    for finite in flags:
        opt_t.zero_grad()
        scaler.scale((p * (1.0 if finite else float("inf"))).sum()).backward()
        scaler.step(opt_t)
        scaler.update()
        grad = tf.constant([1.0, 1.0] if finite else [np.inf, np.inf]) * scale.scale
        scale.apply(opt, [grad])
        st = scaler.state_dict()
        np.testing.assert_array_equal(scale.state(), [st["scale"], st["_growth_tracker"]])


_MIRRORED = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from gankit import trainer
from gankit_tensorflow import distributed
distributed.init("mirrored")  # one replica on this machine's CPU, through strategy.run
trainer.check_precision = lambda precision, device: None
import test_precision as tp
t = tp.trainer("float16")
assert t.strategy is not None
assert all(t.train_step(tp.REAL[i]).is_finite() for i in range(2))
before, steps = t.parameters_of("discriminator"), int(t.optimizers["discriminator"].iterations.numpy())
t.loss_scales["discriminator"].scale.assign(2.0**60)
t.train_step(tp.REAL[2])
after = t.parameters_of("discriminator")
assert all(np.array_equal(after[k], before[k]) for k in before), "the overflowing step was applied"
assert int(t.optimizers["discriminator"].iterations.numpy()) == steps
assert float(t.loss_scales["discriminator"].scale.numpy()) == 2.0**58
print("ok")
"""


@pytest.mark.slow
def test_float16_skip_works_inside_a_distribution_strategy():
    """Under tf.distribute the skipped update sits in a tf.cond inside strategy.run, where
    a distributed variable's assign is forbidden; a process of its own, as a strategy is
    once per process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", _MIRRORED, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
