"""Build a :class:`gankit.NetSpec` natively as a ``tf.Module`` of ``tf.Variable`` s.

No Keras layers: each layer is a few TensorFlow ops on variables stored under their
canonical names (``"<layer index>.<param>"``) in the canonical layouts, so weights move
to and from the torch backend unchanged and both compute the same function.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.errors import CheckpointError  # noqa: E402
from gankit.init import net_weights  # noqa: E402
from gankit.nets import NetSpec  # noqa: E402

SUPPORTED_LAYERS = ("dense", "activation", "batch_norm", "layer_norm", "reshape", "flatten")


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if ident and not ident[0].isdigit() else f"net_{ident}"


class TensorFlowNet(tf.Module):
    """A network built from a spec. Call it as ``net(x, training=False)``.

    ``params`` and ``buffers`` map canonical names to variables; ``parameters`` lists the
    trainable variables in canonical order (what optimizers update). The net starts
    from gankit's ``default`` initialisation drawn with ``seed``.
    """

    def __init__(self, spec: NetSpec, dtype: str = "float32", seed: int = 0):
        super().__init__(name=_identifier(spec.name))
        unknown = sorted({layer.kind for layer in spec.layers} - set(SUPPORTED_LAYERS))
        if unknown:
            raise NotImplementedError(
                f"the tensorflow backend cannot build layer kind(s) {unknown} of net {spec.name!r}; "
                f"supported: {', '.join(SUPPORTED_LAYERS)}"
            )
        self.spec = spec
        self.dtype = tf.as_dtype(dtype)
        self._shapes = spec.shapes()
        init = net_weights(spec, "default", np.random.default_rng(seed))
        with self.name_scope:
            self.params = {
                k: tf.Variable(init[k], dtype=self.dtype, trainable=True, name=_identifier(k))
                for k in spec.parameter_shapes()
            }
            self.buffers = {
                k: tf.Variable(init[k], dtype=self.dtype, trainable=False, name=_identifier(k))
                for k in spec.buffer_shapes()
            }
        self.parameters = tuple(self.params[k] for k in spec.parameter_shapes())

    def __call__(self, x, training: bool = False):
        x = tf.convert_to_tensor(x, dtype=self.dtype)
        for i, layer in enumerate(self.spec.layers):
            x = getattr(self, f"_layer_{layer.kind}")(i, layer, x, bool(training))
        return x

    # -- layers -------------------------------------------------------------------
    def _layer_dense(self, i, layer, x, training):
        y = tf.linalg.matmul(x, self.params[f"{i}.weight"])  # weight is (in, out)
        return y + self.params[f"{i}.bias"] if layer.bias else y

    def _layer_activation(self, i, layer, x, training):
        fn = layer.fn
        if fn == "relu":
            return tf.nn.relu(x)
        if fn == "leaky_relu":
            return tf.nn.leaky_relu(x, alpha=layer.negative_slope)
        if fn == "tanh":
            return tf.math.tanh(x)
        if fn == "sigmoid":
            return tf.math.sigmoid(x)
        return tf.identity(x)

    def _layer_batch_norm(self, i, layer, x, training):
        weight, bias = self.params[f"{i}.weight"], self.params[f"{i}.bias"]
        running_mean, running_var = self.buffers[f"{i}.running_mean"], self.buffers[f"{i}.running_var"]
        if not training:
            return (x - running_mean) / tf.math.sqrt(running_var + layer.eps) * weight + bias
        if x.shape[0] == 1:
            raise ValueError(
                f"batch_norm layer {i} of {self.spec.name!r} needs more than one sample per batch in training"
            )
        mean = tf.math.reduce_mean(x, axis=0)
        # Normalise with the biased batch variance (divide by n), as torch does ...
        var = tf.math.reduce_mean(tf.math.square(x - mean), axis=0)
        # ... but track the unbiased one (divide by n - 1) in the running statistics.
        n = tf.cast(tf.shape(x)[0], self.dtype)
        momentum = tf.constant(layer.momentum, self.dtype)
        running_mean.assign((1 - momentum) * running_mean + momentum * tf.stop_gradient(mean))
        running_var.assign((1 - momentum) * running_var + momentum * tf.stop_gradient(var * n / (n - 1)))
        return (x - mean) / tf.math.sqrt(var + layer.eps) * weight + bias

    def _layer_layer_norm(self, i, layer, x, training):
        mean = tf.math.reduce_mean(x, axis=-1, keepdims=True)
        var = tf.math.reduce_mean(tf.math.square(x - mean), axis=-1, keepdims=True)  # biased
        return (x - mean) / tf.math.sqrt(var + layer.eps) * self.params[f"{i}.weight"] + self.params[f"{i}.bias"]

    def _layer_reshape(self, i, layer, x, training):
        # Row-major, like torch, so (C, H, W) layouts agree between backends.
        return tf.reshape(x, [tf.shape(x)[0], *layer.shape])

    def _layer_flatten(self, i, layer, x, training):
        return tf.reshape(x, [tf.shape(x)[0], math.prod(self._shapes[i])])


def build_net(spec: NetSpec, dtype: str = "float32", seed: int = 0) -> TensorFlowNet:
    """Build ``spec`` as a :class:`TensorFlowNet`."""
    return TensorFlowNet(spec, dtype=dtype, seed=seed)


def export_weights(net: TensorFlowNet) -> dict[str, np.ndarray]:
    """Parameters and buffers by canonical name, as float32 numpy arrays."""
    return {k: np.asarray(v.numpy(), dtype=np.float32) for k, v in {**net.params, **net.buffers}.items()}


def check_weights(net: TensorFlowNet, weights: dict[str, np.ndarray], prefix: str = "") -> None:
    """Raise :class:`gankit.CheckpointError` unless ``weights`` holds exactly ``net``'s
    canonical names with their shapes. ``prefix`` (e.g. ``"generator."``) labels messages."""
    expected = {k: tuple(v.shape.as_list()) for k, v in {**net.params, **net.buffers}.items()}
    hint = "the checkpoint was saved from a different architecture"
    missing = [prefix + k for k in expected if k not in weights]
    if missing:
        raise CheckpointError(f"the weights lack {', '.join(map(repr, missing))}", hint=hint)
    unexpected = [prefix + k for k in weights if k not in expected]
    if unexpected:
        raise CheckpointError(f"the weights hold unexpected {', '.join(map(repr, unexpected))}", hint=hint)
    for k, shape in expected.items():
        got = tuple(np.shape(weights[k]))
        if got != shape:
            raise CheckpointError(
                f"parameter {prefix + k!r} has shape {shape} but the weights hold shape {got}", hint=hint
            )


def load_weights(net: TensorFlowNet, weights: dict[str, np.ndarray], prefix: str = "") -> None:
    """Assign canonical weights to ``net``. Names and shapes are checked first
    (:func:`check_weights`), so a mismatch changes nothing."""
    check_weights(net, weights, prefix)
    for k, var in {**net.params, **net.buffers}.items():
        var.assign(np.asarray(weights[k], dtype=var.dtype.as_numpy_dtype))
