"""Net specs built on torch compute the same function as a numpy forward pass."""

import re

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

import gankit  # noqa: E402
from gankit import Activation, BatchNorm, CheckpointError, Dense, Flatten, LayerNorm, NetSpec, Reshape  # noqa: E402
from gankit.initializers import net_weights  # noqa: E402
from gankit_torch.nn import build_net, export_weights, load_weights  # noqa: E402

SPEC = NetSpec(
    input_shape=(3,),
    layers=[
        Dense(units=8),
        BatchNorm(momentum=0.3, eps=1e-3),
        Activation(fn="leaky_relu", negative_slope=0.1),
        Dense(units=6, bias=False),
        LayerNorm(eps=1e-4),
        Activation(fn="tanh"),
        Reshape(shape=(2, 3)),
        Flatten(),
        Dense(units=4),
        Activation(fn="relu"),
        Dense(units=2),
        Activation(fn="sigmoid"),
        Activation(fn="identity"),
    ],
)


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    w = net_weights(SPEC, "normal", rng)
    # non-trivial norm parameters and running statistics
    for name in w:
        if name.startswith(("1.", "4.")):
            w[name] = rng.normal(size=w[name].shape).astype(np.float32) * 0.5 + (name.endswith("var") or name.endswith("weight"))
    w["1.running_var"] = np.abs(w["1.running_var"]) + 0.1
    w["0.weight"] *= 20  # scale weights up so the net does not stay near linear
    return w


def _numpy_forward(w, x, train):
    """A hand-written forward pass in float64; returns output and new BN running stats."""
    stats = {}
    act = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
           "identity": lambda v: v}
    for i, layer in enumerate(SPEC.layers):
        p = lambda n: w[f"{i}.{n}"].astype(np.float64)  # noqa: E731
        if layer.kind == "dense":
            x = x @ p("weight") + (p("bias") if layer.bias else 0)
        elif layer.kind == "batch_norm":
            if train:
                mean, var = x.mean(0), x.var(0)  # biased variance normalises
                m = layer.momentum  # unbiased variance updates the running estimate
                stats["mean"] = (1 - m) * p("running_mean") + m * mean
                stats["var"] = (1 - m) * p("running_var") + m * x.var(0, ddof=1)
            else:
                mean, var = p("running_mean"), p("running_var")
            x = (x - mean) / np.sqrt(var + layer.eps) * p("weight") + p("bias")
        elif layer.kind == "layer_norm":
            mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
            x = (x - mean) / np.sqrt(var + layer.eps) * p("weight") + p("bias")
        elif layer.kind == "activation":
            if layer.fn == "leaky_relu":
                x = np.where(x >= 0, x, layer.negative_slope * x)
            else:
                x = act[layer.fn](x)
        elif layer.kind == "reshape":
            x = x.reshape(x.shape[0], *layer.shape)
        elif layer.kind == "flatten":
            x = x.reshape(x.shape[0], -1)
    return x, stats


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_forward_matches_numpy(train):
    w = _weights()
    x = np.random.default_rng(1).normal(size=(16, 3)).astype(np.float32)
    net = build_net(SPEC)
    load_weights(net, w)
    net.train(train)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    want, stats = _numpy_forward(w, x.astype(np.float64), train)
    assert got.shape == (16, 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    after = export_weights(net)
    if train:
        np.testing.assert_allclose(after["1.running_mean"], stats["mean"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(after["1.running_var"], stats["var"], rtol=1e-4, atol=1e-5)
    else:  # eval mode leaves the running statistics alone
        np.testing.assert_array_equal(after["1.running_mean"], w["1.running_mean"])


def test_export_uses_canonical_names_and_layouts():
    net = build_net(SPEC)
    out = export_weights(net)
    assert {k: v.shape for k, v in out.items()} == {**SPEC.parameter_shapes(), **SPEC.buffer_shapes()}
    assert all(v.dtype == np.float32 for v in out.values())
    # dense (in, out) is the transpose of torch's (out, in)
    np.testing.assert_array_equal(out["0.weight"], net[0].weight.detach().numpy().T)


def test_round_trip_is_exact_and_exports_are_copies():
    w = _weights(3)
    net = build_net(SPEC)
    load_weights(net, w)
    out = export_weights(net)
    assert out.keys() == w.keys()
    for k in w:
        np.testing.assert_array_equal(out[k], w[k])
    with torch.no_grad():
        net[0].weight.add_(1.0)
    np.testing.assert_array_equal(out["0.weight"], w["0.weight"])  # not a view of the live weights


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda w: w.update({"0.weight": w["0.weight"].T}), "parameter 0.weight has shape (8, 3) but the model expects (3, 8)"),
        (lambda w: w.pop("4.bias"), "missing 4.bias"),
        (lambda w: w.update({"7.weight": np.zeros(2)}), "unexpected parameter 7.weight"),
    ],
    ids=["shape", "missing", "unexpected"],
)
def test_mismatched_weights_raise_one_line_and_change_nothing(edit, message):
    net = build_net(SPEC)
    before = export_weights(net)
    w = _weights()
    edit(w)
    with pytest.raises(CheckpointError, match=re.escape(message)) as err:
        load_weights(net, w)
    assert "\n" not in str(err.value)
    for k, v in export_weights(net).items():
        np.testing.assert_array_equal(v, before[k])


def test_gradients_flow_to_every_parameter():
    net = build_net(SPEC)
    net(torch.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert gankit.NetSpec.model_validate(SPEC.model_dump()).parameter_count() == sum(p.numel() for p in net.parameters())


def test_weight_io_is_net_first_and_copies_share_the_spec():
    import copy

    net = build_net(SPEC)
    assert net.spec is SPEC and load_weights(net, _weights()) is net  # loads in place, returns the net
    twin = copy.deepcopy(net)
    assert twin.spec is SPEC
    for k, v in export_weights(net).items():
        np.testing.assert_array_equal(export_weights(twin)[k], v)
    with pytest.raises(gankit.CheckpointError, match="missing generator.0.weight"):
        load_weights(net, {k: v for k, v in _weights().items() if k != "0.weight"}, prefix="generator.")
