"""Every layer of the vocabulary: shape, parameter count, and the same function on torch
and TensorFlow given the same weights (eval and training mode, values, running
statistics and spectral-norm vectors after the call, gradients)."""

import numpy as np
import pytest

pytestmark = [pytest.mark.torch, pytest.mark.tensorflow]
torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from gankit import nets as n  # noqa: E402
from gankit_tensorflow.nn import TensorFlowNet  # noqa: E402
from gankit_torch.nn import build_net  # noqa: E402
from pairs import Pair, assert_close, random_weights  # noqa: E402

SN = n.SpectralNorm(n_power_iterations=2)
IMG = (3, 6, 6)

#: id -> (input shape, layers). Every layer kind and option appears at least once.
CASES = {
    "dense": ((5,), [n.Dense(units=4)]),
    "dense_no_bias_sn": ((5,), [n.Dense(units=4, bias=False, spectral_norm=SN)]),
    "conv2d": (IMG, [n.Conv2d(channels=4, kernel_size=3)]),
    "conv2d_stride_pad": (IMG, [n.Conv2d(channels=4, kernel_size=5, stride=2, padding=2)]),
    "conv2d_sn_no_bias": (IMG, [n.Conv2d(channels=2, kernel_size=3, padding=1, bias=False, spectral_norm=SN)]),
    "conv_transpose2d": (IMG, [n.ConvTranspose2d(channels=2, kernel_size=3)]),
    "conv_transpose2d_s2_p1": (IMG, [n.ConvTranspose2d(channels=4, kernel_size=4, stride=2, padding=1)]),
    "conv_transpose2d_same5": (IMG, [n.ConvTranspose2d(channels=2, kernel_size=5, stride=2, padding=2, output_padding=1)]),
    "conv_transpose2d_outpad_gt_pad": (IMG, [n.ConvTranspose2d(channels=2, kernel_size=3, stride=3, output_padding=2)]),
    "conv_transpose2d_sn": (IMG, [n.ConvTranspose2d(channels=2, kernel_size=4, stride=2, padding=1, bias=False, spectral_norm=SN)]),
    "upsample": (IMG, [n.Upsample(scale_factor=3)]),
    "avg_pool2d": (IMG, [n.AvgPool2d(kernel_size=2)]),
    "avg_pool2d_stride": (IMG, [n.AvgPool2d(kernel_size=3, stride=1)]),
    "global_pool_sum": (IMG, [n.GlobalPool(mode="sum")]),
    "global_pool_mean": (IMG, [n.GlobalPool(mode="mean")]),
    "activations": ((6,), [n.Activation(fn="leaky_relu", negative_slope=0.1), n.Dense(units=6), n.Activation(fn="relu"),
                           n.Dense(units=6), n.Activation(fn="tanh"), n.Dense(units=6), n.Activation(fn="sigmoid"),
                           n.Activation(fn="identity")]),
    "dropout_eval": ((6,), [n.Dropout(rate=0.5)]),
    "batch_norm_flat": ((5,), [n.BatchNorm(momentum=0.3, eps=1e-3)]),
    "batch_norm_image": (IMG, [n.BatchNorm(momentum=0.2)]),
    "layer_norm_flat": ((5,), [n.LayerNorm()]),
    "layer_norm_image": (IMG, [n.LayerNorm(eps=1e-3)]),
    "flatten_image": (IMG, [n.Flatten(), n.Dense(units=3)]),
    "reshape_to_image": ((48,), [n.Reshape(shape=(3, 4, 4)), n.Conv2d(channels=2, kernel_size=3)]),
    "reshape_image_to_image": (IMG, [n.Reshape(shape=(2, 9, 6)), n.Conv2d(channels=2, kernel_size=2)]),
    "embedding_concat_flat": ((5,), [n.Embedding(num_classes=3, features=4), n.Dense(units=2)]),
    "embedding_concat_image": (IMG, [n.Embedding(num_classes=3, features=2), n.Conv2d(channels=2, kernel_size=3)]),
    "embedding_multiply_sn": ((5,), [n.Embedding(num_classes=3, features=5, combine="multiply", spectral_norm=SN)]),
    "embedding_multiply_image": (IMG, [n.Embedding(num_classes=3, features=3, combine="multiply")]),
    "one_hot_flat": ((5,), [n.OneHot(num_classes=4), n.Dense(units=2)]),
    "one_hot_image": (IMG, [n.OneHot(num_classes=3), n.Conv2d(channels=2, kernel_size=1)]),
    "projection": ((7,), [n.Projection(num_classes=3)]),
    "projection_sn_no_bias": ((7,), [n.Projection(num_classes=3, bias=False, spectral_norm=SN)]),
    "residual_identity_skip": (IMG, [n.Residual(body=[n.BatchNorm(), n.Activation(fn="relu"),
                                                     n.Conv2d(channels=3, kernel_size=3, padding=1)])]),
    "residual_up": (IMG, [n.Residual(body=[n.Upsample(), n.Conv2d(channels=2, kernel_size=3, padding=1, spectral_norm=SN)],
                                     shortcut=[n.Upsample(), n.Conv2d(channels=2, kernel_size=1)])]),
    "residual_nested_conditional": ((5,), [n.Residual(body=[n.Embedding(num_classes=3, features=5, combine="multiply"),
                                                             n.Residual(body=[n.Dense(units=5)])],
                                                       shortcut=[n.LayerNorm()])]),
}
BATCH = 4


def spec_of(case):
    shape, layers = CASES[case]
    return n.NetSpec(name=case, input_shape=shape, layers=layers)


def inputs(spec, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, *spec.input_shape)).astype(np.float32)
    y = rng.integers(0, spec.num_classes, BATCH).astype(np.int64) if spec.conditional else None
    return x, y


def test_every_layer_kind_is_covered():
    kinds = {layer.kind for case in CASES for _, layer, _ in spec_of(case).walk()}
    assert kinds == set(n.LAYER_KINDS)


@pytest.mark.parametrize("case", CASES)
def test_output_shape_and_parameter_count(case):
    spec = spec_of(case)
    pair = Pair(spec)
    x, y = inputs(spec)
    a, b, _, _ = pair.run(x, y)
    assert a.shape == b.shape == (BATCH, *spec.output_shape)
    assert a.dtype == b.dtype == np.float32
    count = spec.parameter_count()
    assert sum(p.numel() for p in pair.torch.parameters()) == count
    assert sum(int(np.prod(v.shape)) for v in pair.tf.params.values()) == count
    assert set(pair.tf.buffers) == set(spec.buffer_shapes())


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("case", CASES)
def test_same_function_on_both_backends(case, training):
    spec = spec_of(case)
    pair = Pair(spec)
    x, y = inputs(spec)
    a, b, state_t, state_f = pair.run(x, y, training=training)
    if training and any(layer.kind == "dropout" for _, layer, _ in spec.walk()):
        return  # masks differ between backends by design: the same function only in eval mode
    assert_close(a, b, f"{case} output")
    for k in state_t:  # running statistics and spectral-norm vectors after the call
        assert_close(state_t[k], state_f[k], f"{case} {k}")
        if k.endswith(("running_mean", "running_var", "_u")) and state_t[k].size > 1:  # updated in training only
            assert (not np.array_equal(state_t[k], pair.weights[k])) == training, k


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("dropout")])
def test_same_gradients_on_both_backends(case):
    spec = spec_of(case)
    pair = Pair(spec)
    x, y = inputs(spec)
    gt, gf = pair.gradients(x, y)
    assert set(gt) == set(gf)
    for k in gt:
        assert_close(gt[k], gf[k], f"{case} d/d{k}", rtol=2e-4, atol=2e-5)


def _power_iteration_reference(w_rows, u, iterations, eps, training):
    norm = lambda a: a / max(np.linalg.norm(a), eps)  # noqa: E731
    if training:
        for _ in range(iterations):
            v = norm(w_rows.T @ u)
            u = norm(w_rows @ v)
    else:
        v = norm(w_rows.T @ u)
    return u, float(u @ w_rows @ v)


@pytest.mark.parametrize("training", [False, True])
def test_spectral_norm_follows_the_documented_power_iteration(training):
    spec = n.NetSpec(input_shape=(6,), layers=[n.Dense(units=4, bias=False, spectral_norm=SN)])
    pair = Pair(spec)
    w = pair.weights["0.weight"].astype(np.float64)  # canonical (in, out): rows are w.T
    u, sigma = _power_iteration_reference(w.T, pair.weights["0.weight_u"].astype(np.float64), 2, 1e-12, training)
    x = np.eye(6, dtype=np.float32)
    a, b, state_t, state_f = pair.run(x, training=training)
    np.testing.assert_allclose(a, w / sigma, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, w / sigma, rtol=1e-5, atol=1e-6)
    for state in (state_t, state_f):
        np.testing.assert_allclose(state["0.weight_u"], u if training else pair.weights["0.weight_u"], rtol=1e-5, atol=1e-6)
    # many iterations converge to the largest singular value
    s_max = np.linalg.svd(w, compute_uv=False)[0]
    for _ in range(50):
        pair.run(x, training=True)
    a, b, _, _ = pair.run(x, training=False)
    np.testing.assert_allclose(np.linalg.svd(a.astype(np.float64), compute_uv=False)[0], 1.0, rtol=1e-3)
    assert s_max != pytest.approx(1.0)


def test_conv_transpose_crop_semantics_match_a_numpy_scatter():
    layer = n.ConvTranspose2d(channels=2, kernel_size=3, stride=2, padding=1, output_padding=1)
    spec = n.NetSpec(input_shape=(2, 3, 3), layers=[layer])
    pair = Pair(spec)
    x = np.random.default_rng(3).normal(size=(1, 2, 3, 3)).astype(np.float32)
    w, bias = pair.weights["0.weight"].astype(np.float64), pair.weights["0.bias"].astype(np.float64)
    full = np.zeros((2, (3 - 1) * 2 + 3 + 1, (3 - 1) * 2 + 3 + 1))  # one spare row/column for output_padding
    for ci in range(2):
        for i in range(3):
            for j in range(3):
                full[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += x[0, ci, i, j] * w[ci]
    out = full[:, 1 : 1 + 6, 1 : 1 + 6] + bias[:, None, None]  # crop `padding` at the top/left
    a, b, _, _ = pair.run(x)
    assert a.shape == (1, *spec.output_shape) == (1, 2, 6, 6)
    np.testing.assert_allclose(a[0], out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b[0], out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_dropout_trains_with_inverted_scaling_and_is_identity_in_eval(backend):
    spec = n.NetSpec(input_shape=(20000,), layers=[n.Dropout(rate=0.25)])
    x = np.ones((2, 20000), np.float32)
    if backend == "torch":
        net = build_net(spec)
        net.train(True)
        train, net_eval = net(torch.from_numpy(x)).numpy(), net.eval()(torch.from_numpy(x)).numpy()
    else:
        net = TensorFlowNet(spec)
        train, net_eval = net(x, True).numpy(), net(x, False).numpy()
    np.testing.assert_array_equal(net_eval, x)
    assert set(np.unique(train)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((train == 0).mean() - 0.25) < 0.02


def test_conditional_specs_infer_and_check_num_classes():
    spec = n.NetSpec(input_shape=(4,), layers=[n.OneHot(num_classes=5), n.Dense(units=1)])
    assert spec.conditional and spec.num_classes == 5
    assert not spec_of("dense").conditional and spec_of("dense").num_classes is None
    with pytest.raises(ValueError, match="disagree on num_classes"):
        n.NetSpec(input_shape=(4,), layers=[n.OneHot(num_classes=5), n.Flatten(), n.Projection(num_classes=3)])
    with pytest.raises(ValueError, match="output_padding"):
        n.ConvTranspose2d(channels=1, kernel_size=3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="body outputs"):
        n.NetSpec(input_shape=IMG, layers=[n.Residual(body=[n.Conv2d(channels=2, kernel_size=1)])])
    with pytest.raises(ValueError, match="takes images"):
        n.NetSpec(input_shape=(5,), layers=[n.Conv2d(channels=2, kernel_size=1)])


def test_spec_round_trips_through_json():
    for case in CASES:
        spec = spec_of(case)
        assert n.NetSpec.model_validate_json(spec.model_dump_json()) == spec


def test_random_weights_helper_touches_norm_scales():
    spec = spec_of("batch_norm_image")
    assert not np.all(random_weights(spec)["0.weight"] == 1.0)
