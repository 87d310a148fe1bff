"""Every layer of the vocabulary on jax is torch's function: the same outputs in eval and
training mode, the same buffers after the call (running statistics, spectral-norm
vectors), the same gradients — over the cases of tests/architectures/test_layers.py."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.jax, pytest.mark.torch]
jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "architectures"))

import jax.numpy as jnp  # noqa: E402

import gankit  # noqa: E402
from gankit import nets as n  # noqa: E402
from gankit_jax import nn as jax_nn  # noqa: E402
from gankit_torch import nn as torch_nn  # noqa: E402
from gankit_torch.layout import transposed_names  # noqa: E402
from test_layers import CASES, inputs, spec_of  # noqa: E402
from pairs import assert_close, random_weights  # noqa: E402


class JaxTorch:
    """One spec with the same weights on jax and torch."""

    def __init__(self, spec, weights=None):
        self.spec = spec
        self.weights = weights if weights is not None else random_weights(spec)
        self.net = jax_nn.build_net(spec)
        loaded = jax_nn.load_weights(self.net, self.weights)
        self.params, self.buffers = loaded.params, loaded.buffers
        self.torch = torch_nn.build_net(spec)
        torch_nn.load_weights(self.torch, self.weights)

    def run(self, x, labels=None, training=False):
        self.torch.train(training)
        with torch.no_grad():
            a = self.torch(torch.from_numpy(x), None if labels is None else torch.from_numpy(labels)).numpy()
        b, buffers = self.net.apply(self.params, self.buffers, x, labels, training=training,
                                    key=jax.random.PRNGKey(0))
        return a, np.asarray(b), torch_nn.export_weights(self.torch), \
            jax_nn.export_weights(jax_nn.LoadedNet(self.net, self.params, buffers))


@pytest.mark.parametrize("case", CASES)
def test_same_function_as_torch(case):
    spec = spec_of(case)
    pair = JaxTorch(spec)
    x, y = inputs(spec)
    for training in (False, True):
        a, b, state_t, state_j = pair.run(x, y, training=training)
        assert b.shape == (len(x), *spec.output_shape) and b.dtype == np.float32
        if training and any(layer.kind == "dropout" for _, layer, _ in spec.walk()):
            continue  # masks differ between backends by design
        assert_close(a, b, f"{case} output ({'train' if training else 'eval'})")
        assert set(state_t) == set(state_j)
        for k in state_t:  # the buffers after the call: updated in training mode only
            assert_close(state_t[k], state_j[k], f"{case} {k}")
            if k.endswith(("running_mean", "running_var", "_u")) and state_t[k].size > 1:
                assert (not np.array_equal(state_j[k], pair.weights[k])) == training, k
        torch_nn.load_weights(pair.torch, pair.weights)  # the next mode starts from the same buffers


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith("dropout")])
def test_same_gradients_as_torch(case):
    spec = spec_of(case)
    pair = JaxTorch(spec)
    x, y = inputs(spec)
    r = np.random.default_rng(5).normal(size=(x.shape[0], *spec.output_shape)).astype(np.float32)
    pair.torch.train(True)
    xt = torch.from_numpy(x).requires_grad_(True)
    (pair.torch(xt, None if y is None else torch.from_numpy(y)) * torch.from_numpy(r)).sum().backward()
    flip = transposed_names(spec)
    params = dict(pair.torch.named_parameters())
    want = {k: (params[k].grad.t() if k in flip else params[k].grad).numpy() for k in spec.parameter_shapes()}
    want["input"] = xt.grad.numpy()

    def total(p, x_):
        out, _ = pair.net.apply(p, pair.buffers, x_, y, training=True)
        return jnp.sum(out * r)

    g_params, g_input = jax.grad(total, argnums=(0, 1))(pair.params, jnp.asarray(x))
    got = {**{k: np.asarray(v) for k, v in g_params.items()}, "input": np.asarray(g_input)}
    assert set(got) == set(want)
    for k in want:
        assert_close(want[k], got[k], f"{case} d/d{k}", rtol=2e-4, atol=2e-5)


def test_dropout_trains_with_inverted_scaling_and_is_identity_in_eval():
    spec = n.NetSpec(input_shape=(20000,), layers=[n.Dropout(rate=0.25)])
    net, x = jax_nn.build_net(spec), np.ones((2, 20000), np.float32)
    train = np.asarray(net.apply({}, {}, x, training=True, key=jax.random.PRNGKey(1))[0])
    np.testing.assert_array_equal(np.asarray(net({}, {}, x)), x)
    assert set(np.unique(train)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((train == 0).mean() - 0.25) < 0.02
    with pytest.raises(ValueError, match="needs a key"):
        net.apply({}, {}, x, training=True)


def test_bfloat16_compute_keeps_norms_in_float32_and_returns_float32():
    spec = spec_of("residual_identity_skip")
    pair = JaxTorch(spec)
    x, _ = inputs(spec)
    full, _ = pair.net.apply(pair.params, pair.buffers, x, training=True)
    low, buffers = pair.net.apply(pair.params, pair.buffers, x, training=True, compute_dtype=jnp.bfloat16)
    assert low.dtype == jnp.float32 and buffers["0.body.0.running_mean"].dtype == jnp.float32
    assert 0 < float(jnp.max(jnp.abs(low - full))) < 0.1 * float(jnp.max(jnp.abs(full)))


def test_layer_table_covers_the_vocabulary_and_refuses_what_it_lacks(monkeypatch):
    assert set(jax_nn.LAYERS) == set(n.LAYER_KINDS) == set(jax_nn.SUPPORTED_LAYERS)
    monkeypatch.delitem(jax_nn.LAYERS, "upsample")
    with pytest.raises(NotImplementedError, match=r"cannot build layer kind\(s\) \['upsample'\]"):
        jax_nn.build_net(spec_of("upsample"))


def test_load_weights_returns_a_loaded_net_and_export_reads_it():
    spec = spec_of("dense")
    net, weights = jax_nn.build_net(spec), random_weights(spec)
    loaded = jax_nn.load_weights(net, weights, prefix="generator.")
    assert isinstance(loaded, jax_nn.LoadedNet) and loaded.net is net and loaded.spec is spec
    out = jax_nn.export_weights(loaded)
    assert set(out) == set(weights)
    for k, v in weights.items():
        np.testing.assert_array_equal(out[k], np.asarray(v, np.float32))
    x, y = inputs(spec)
    np.testing.assert_array_equal(np.asarray(loaded(x, y)), np.asarray(net(loaded.params, loaded.buffers, x, y)))
    again = jax_nn.load_weights(loaded, {k: v * 0 for k, v in weights.items()})  # a new one; loaded unchanged
    assert again.net is net and not any(np.any(a) for a in jax_nn.export_weights(again).values())
    np.testing.assert_array_equal(jax_nn.export_weights(loaded)[next(iter(weights))], out[next(iter(weights))])
    with pytest.raises(gankit.CheckpointError, match="generator."):
        jax_nn.load_weights(net, dict(list(weights.items())[1:]), prefix="generator.")
