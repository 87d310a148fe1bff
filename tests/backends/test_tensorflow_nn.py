"""Networks built from a NetSpec compute the hand-written numpy function of their
canonical weights; weights round-trip and mismatches are one-line CheckpointErrors."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow
tf = pytest.importorskip("tensorflow")

import gankit  # noqa: E402
from gankit import Activation, BatchNorm, CheckpointError, Dense, Flatten, LayerNorm, NetSpec, Reshape  # noqa: E402
from gankit.initializers import net_weights  # noqa: E402
from gankit_tensorflow.device import device_name, resolve_device  # noqa: E402
from gankit_tensorflow.nn import TensorFlowNet, export_weights, load_weights  # noqa: E402


def numpy_forward(spec, w, x, training):
    """The reference: each layer written out in numpy (float64), torch semantics.
    Returns the output and the running statistics after the call."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    x = x.astype(np.float64)
    for i, layer in enumerate(spec.layers):
        p = lambda name: w[f"{i}.{name}"]  # noqa: E731
        if layer.kind == "dense":
            x = x @ p("weight") + (p("bias") if layer.bias else 0)
        elif layer.kind == "activation":
            x = {
                "relu": lambda v: np.maximum(v, 0),
                "leaky_relu": lambda v: np.where(v > 0, v, layer.negative_slope * v),
                "tanh": np.tanh,
                "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
                "identity": lambda v: v,
            }[layer.fn](x)
        elif layer.kind == "batch_norm":
            if training:
                mean, var = x.mean(0), x.var(0)  # biased variance normalises
                m = layer.momentum
                w[f"{i}.running_mean"] = (1 - m) * p("running_mean") + m * mean
                w[f"{i}.running_var"] = (1 - m) * p("running_var") + m * x.var(0, ddof=1)  # unbiased tracked
            else:
                mean, var = p("running_mean"), p("running_var")
            x = (x - mean) / np.sqrt(var + layer.eps) * p("weight") + p("bias")
        elif layer.kind == "layer_norm":
            mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
            x = (x - mean) / np.sqrt(var + layer.eps) * p("weight") + p("bias")
        elif layer.kind == "reshape":
            x = x.reshape(len(x), *layer.shape)
        elif layer.kind == "flatten":
            x = x.reshape(len(x), -1)
    return x, w


SPEC = NetSpec(
    name="mix",
    input_shape=(2, 3),
    layers=[
        Flatten(),
        Dense(units=8),
        BatchNorm(momentum=0.3, eps=1e-3),
        Activation(fn="leaky_relu", negative_slope=0.1),
        Dense(units=6, bias=False),
        LayerNorm(eps=1e-4),
        Activation(fn="tanh"),
        Reshape(shape=(2, 3)),
        Flatten(),
        Dense(units=4),
        Activation(fn="sigmoid"),
        Dense(units=3),
        Activation(fn="relu"),
        Dense(units=2),
        Activation(fn="identity"),
    ],
)


def random_weights(spec, seed):
    """Canonical weights with non-trivial norm scales, shifts and running stats."""
    rng = np.random.default_rng(seed)
    w = net_weights(spec, "default", rng)
    for k, v in w.items():
        if k.endswith(("running_var",)):
            w[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        elif not k.endswith(".weight") or v.ndim == 1:
            w[k] = rng.normal(0.0, 0.5, v.shape).astype(np.float32) + (1.0 if k.endswith(".weight") else 0.0)
    return w


@pytest.fixture(scope="module")
def net():
    return TensorFlowNet(SPEC)


@pytest.mark.parametrize("training", [False, True])
def test_forward_matches_numpy_reference(net, training):
    w = random_weights(SPEC, 0)
    load_weights(net, w)
    x = np.random.default_rng(1).normal(size=(5, 2, 3)).astype(np.float32)
    expected, after = numpy_forward(SPEC, w, x, training)
    got = net(x, training=training).numpy()
    assert got.shape == (5, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    state = export_weights(net)
    for k in ("2.running_mean", "2.running_var"):  # updated in training only, torch's rule
        np.testing.assert_allclose(state[k], after[k], rtol=1e-5, atol=1e-6)
        assert np.array_equal(state[k], w[k]) != training


def test_batch_norm_running_stats_follow_torch_exactly():
    spec = NetSpec(input_shape=(3,), layers=[BatchNorm(momentum=0.25)])
    net = TensorFlowNet(spec)
    x = np.random.default_rng(2).normal(2.0, 3.0, size=(6, 3)).astype(np.float32)
    torch = pytest.importorskip("torch")
    ref = torch.nn.BatchNorm1d(3, momentum=0.25)
    for _ in range(3):
        y = net(x, training=True).numpy()
        y_ref = ref(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    state = export_weights(net)
    np.testing.assert_allclose(state["0.running_mean"], ref.running_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(state["0.running_var"], ref.running_var.numpy(), rtol=1e-6)
    ref.eval()
    np.testing.assert_allclose(net(x).numpy(), ref(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_batch_norm_rejects_a_single_sample_in_training():
    net = TensorFlowNet(NetSpec(input_shape=(3,), layers=[BatchNorm()]))
    with pytest.raises(ValueError, match="more than one sample"):
        net(np.ones((1, 3), np.float32), training=True)
    assert net(np.ones((1, 3), np.float32)).shape == (1, 3)  # eval mode is fine


def test_gradients_reach_every_parameter(net):
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(tf.square(net(np.random.default_rng(3).normal(size=(4, 2, 3)), training=True)))
    grads = tape.gradient(out, net.parameters)
    assert len(grads) == len(SPEC.parameter_shapes()) == len(net.trainable_variables)
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)


def test_weights_round_trip_and_layouts(net):
    w = random_weights(SPEC, 4)
    load_weights(net, w)
    out = export_weights(net)
    assert set(out) == set(SPEC.parameter_shapes()) | set(SPEC.buffer_shapes())
    for k, v in out.items():
        assert v.dtype == np.float32 and v.shape == SPEC.parameter_shapes().get(k, SPEC.buffer_shapes().get(k))
        np.testing.assert_array_equal(v, w[k])
    assert net.params["1.weight"].shape == (6, 8)  # dense (in, out), the TF kernel layout


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda w: w.pop("1.bias"), r"lack '1.bias'"),
        (lambda w: w.update({"99.weight": np.zeros(2)}), r"unexpected '99.weight'"),
        (lambda w: w.update({"1.weight": np.zeros((8, 6))}), r"'1.weight' has shape \(6, 8\) but the weights hold shape \(8, 6\)"),
    ],
)
def test_mismatched_weights_raise_one_line_and_change_nothing(net, change, match):
    before = export_weights(net)
    w = random_weights(SPEC, 5)
    change(w)
    with pytest.raises(CheckpointError, match=match) as info:
        load_weights(net, w)
    assert "\n" not in str(info.value)
    for k, v in export_weights(net).items():
        np.testing.assert_array_equal(v, before[k])


def test_unsupported_layer_kind_is_a_clear_error():
    spec = NetSpec(input_shape=(2,), layers=[Dense(units=2)])
    object.__setattr__(spec.layers[0], "kind", "conv")
    with pytest.raises(NotImplementedError, match="cannot build layer kind"):
        TensorFlowNet(spec)


# -- device ----------------------------------------------------------------------------
def test_device_resolution_and_fallback_warning():
    gpus = tf.config.list_physical_devices("GPU")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device("cpu") == "/CPU:0"
        assert resolve_device("auto") == ("/GPU:0" if gpus else "/CPU:0")
    with pytest.warns(RuntimeWarning, match=r"device 'mps' was requested but TensorFlow does not support mps; falling back to cpu"):
        assert resolve_device("mps") == "/CPU:0"
    missing = f"cuda:{len(gpus)}"
    with pytest.warns(RuntimeWarning, match=rf"device '{missing}' was requested but TensorFlow sees {len(gpus)} GPU"):
        assert resolve_device(missing) == "/CPU:0"
    if gpus:
        assert resolve_device("gpu:0") == resolve_device("cuda") == "/GPU:0"
    with pytest.raises(gankit.ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_neutral_device_names_match_the_torch_backend():
    assert [device_name(d) for d in ("/CPU:0", "/GPU:0", "/GPU:2")] == ["cpu", "cuda:0", "cuda:2"]


# -- plugin ----------------------------------------------------------------------------
def test_plugin_registers_lazily_without_importing_tensorflow():
    code = (
        "import sys, gankit_tensorflow.plugin as p\n"
        "recs = p.gankit_register_backends()\n"
        "assert 'tensorflow' not in sys.modules, 'plugin imported tensorflow'\n"
        "print(recs[0].name, recs[0].requires, recs[0].extra)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["tensorflow", "('tensorflow',)", "tensorflow"]


def test_registry_builds_the_backend():
    import gankit_tensorflow.plugin as plugin

    backend = gankit.Registry.from_plugins([plugin]).backend("tensorflow")
    assert isinstance(backend, gankit.Backend)
    assert backend.name == "tensorflow" and backend.version() == tf.__version__
    ops = backend.ops(dtype="float64", seed=3)
    assert ops.name == "tensorflow" and ops.differentiable and ops.asarray([1.0]).dtype == tf.float64
