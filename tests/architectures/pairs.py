"""Helpers: build one spec on both backends, give both the same weights, compare."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from gankit.initializers import net_weights  # noqa: E402
from gankit_tensorflow import nn as tf_nn  # noqa: E402
from gankit_torch import nn as torch_nn  # noqa: E402
from gankit_torch.layout import transposed_names  # noqa: E402


def random_weights(spec, seed=0):
    """Canonical weights with non-trivial norm scales/shifts, biases and running statistics."""
    rng = np.random.default_rng(seed)
    w = net_weights(spec, "default", rng)
    for k, v in w.items():
        if k.endswith("running_var"):
            w[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        elif k.endswith(("running_mean", "bias")):
            w[k] = rng.normal(0.0, 0.3, v.shape).astype(np.float32)
        elif v.ndim >= 1 and k.endswith("weight") and _is_norm_scale(spec, k):
            w[k] = (1.0 + rng.normal(0.0, 0.3, v.shape)).astype(np.float32)
    return w


def _is_norm_scale(spec, name):
    prefix = name[: -len("weight")]
    return any(p == prefix and layer.kind in ("batch_norm", "layer_norm") for p, layer, _ in spec.walk())


class Pair:
    """The same spec and weights on torch and TensorFlow."""

    def __init__(self, spec, weights=None):
        self.spec = spec
        self.weights = weights if weights is not None else random_weights(spec)
        self.torch = torch_nn.build_net(spec)
        torch_nn.load_weights(self.torch, self.weights)
        self.tf = tf_nn.TensorFlowNet(spec)
        tf_nn.load_weights(self.tf, self.weights)

    def run(self, x, labels=None, training=False):
        """(torch output, tf output, torch state, tf state) after one call."""
        self.torch.train(training)
        args = (torch.from_numpy(x),) + (() if labels is None else (torch.from_numpy(labels),))
        with torch.no_grad():
            a = self.torch(*args).numpy()
        b = self.tf(x, training, labels).numpy()
        return a, b, torch_nn.export_weights(self.torch), tf_nn.export_weights(self.tf)

    def gradients(self, x, labels=None):
        """Gradients of sum(out * r) w.r.t. every parameter and the input, on both, training mode."""
        r = np.random.default_rng(5).normal(size=(x.shape[0], *self.spec.output_shape)).astype(np.float32)
        self.torch.train(True)
        xt = torch.from_numpy(x).requires_grad_(True)
        args = (xt,) + (() if labels is None else (torch.from_numpy(labels),))
        (self.torch(*args) * torch.from_numpy(r)).sum().backward()
        flip = transposed_names(self.spec)
        params = dict(self.torch.named_parameters())
        gt = {k: (params[k].grad.t() if k in flip else params[k].grad).numpy() for k in self.spec.parameter_shapes()}
        gt["input"] = xt.grad.numpy()
        xf = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(xf)
            out = tf.reduce_sum(self.tf(xf, True, labels) * r)
        names = list(self.spec.parameter_shapes())
        grads = tape.gradient(out, [self.tf.params[k] for k in names] + [xf])
        gf = {k: tf.convert_to_tensor(g).numpy() for k, g in zip([*names, "input"], grads)}
        return gt, gf


def assert_close(a, b, what="", rtol=1e-4, atol=1e-5):
    scale = max(1.0, float(np.max(np.abs(a))) if np.size(a) else 1.0)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale, err_msg=what)
