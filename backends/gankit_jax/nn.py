"""A :class:`gankit.NetSpec` as a pure jax function of canonical weights.

jax has no modules: a net is its spec plus :func:`apply`, a function of the parameters
and buffers (two dicts, canonical name -> array, in the canonical layouts: dense
``(in, out)``, conv ``(out, in, kh, kw)``, transposed conv ``(in, out, kh, kw)``),
the input (NCHW images, as the spec) and, for a class-conditional net, the labels.
Weights therefore move to and from the other backends with no conversion at all.

In training mode a call also returns the buffers it updated (batch-norm running
statistics, spectral-norm vectors ``u``), with torch's rules: running statistics
``(1 - momentum) * running + momentum * batch`` with the unbiased batch variance; one
power iteration per call (see :class:`gankit.nets.SpectralNorm`). Dropout draws its
masks from the ``key`` given to the call.

Layout: the spec's images are NCHW (and so are a net's image inputs and outputs), but
inside a call they are NHWC, channels last, the layout XLA's CPU convolutions chain
fastest (a DCGAN discriminator's gradient took 1.2 times as long in NCHW). Each call
transposes its image input once and its image output back; flattening and reshaping
go through NCHW, so a dense layer after a conv sees torch's order.

Mixed precision: ``compute_dtype`` (``bfloat16``) casts the input and each weight as
it is used, so matmuls and convolutions run in it; batch and layer norm compute in
float32, the spectral norm's power iteration runs on the float32 weights, and the
output comes back as float32 (the rules of the TensorFlow backend and torch's autocast).

:data:`LAYERS` is the table of the layer kinds this backend builds: one function per
kind of :data:`gankit.nets.LAYER_KINDS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

from gankit.nets import NetSpec
from gankit.trainer import check_weights as _check_canonical


@dataclass
class _Call:
    """What the layers of one call share."""

    params: Mapping[str, Any]
    buffers: Mapping[str, Any]
    training: bool
    labels: Any
    key: Any
    compute: Any
    updated: dict = field(default_factory=dict)

    def param(self, name):
        return self.params[name].astype(self.compute)

    def next_key(self):
        self.key, sub = jax.random.split(self.key)
        return sub


def _normalize(x, eps):
    # torch.nn.functional.normalize: x / max(||x||, eps)
    return x / jnp.maximum(jnp.linalg.norm(x), eps)


def _weight(c: _Call, p: str, layer, rows_first: Callable, name: str = "weight"):
    """The layer's weight in the compute dtype, divided by its spectral norm when the
    layer asks for it (gankit's power iteration; ``u`` updated in training mode)."""
    w = c.params[p + name]
    sn = getattr(layer, "spectral_norm", None)
    if sn is None:
        return w.astype(c.compute)
    key = f"{p}{name}_u"
    u = c.updated.get(key, c.buffers[key])
    mat = rows_first(w)
    frozen = lax.stop_gradient(mat)
    if c.training:
        for _ in range(sn.n_power_iterations):
            v = _normalize(frozen.T @ u, sn.eps)
            u = _normalize(frozen @ v, sn.eps)
        u = lax.stop_gradient(u)
        c.updated[key] = u
    else:
        v = _normalize(frozen.T @ u, sn.eps)
    sigma = jnp.dot(u, mat @ lax.stop_gradient(v))
    return (w / sigma).astype(c.compute)


def _rows_dense(w):  # canonical (in, out): one row per output is the transpose
    return w.T


def _rows_conv(w):
    return w.reshape(w.shape[0], -1)


def _rows_conv_t(w):
    return jnp.swapaxes(w, 0, 1).reshape(w.shape[1], -1)


def _rows_table(w):
    return w


def _bias(c, p, layer, y):
    return y + c.param(p + "bias") if layer.bias else y  # the channel axis is the last


def _to_nhwc(x):
    return jnp.transpose(x, (0, 2, 3, 1)) if x.ndim == 4 else x


def _to_nchw(x):
    return jnp.transpose(x, (0, 3, 1, 2)) if x.ndim == 4 else x


#: Convolutions: NHWC images, canonical (OIHW) kernels.
_DIMS = ("NHWC", "OIHW", "NHWC")


# -- layers: f(call, prefix, layer, input shape, x) -> y (images NHWC; shapes NCHW) -------
def _dense(c, p, layer, shape, x):
    return _bias(c, p, layer, x @ _weight(c, p, layer, _rows_dense))


def _conv2d(c, p, layer, shape, x):
    w = _weight(c, p, layer, _rows_conv)
    pad = layer.padding
    y = lax.conv_general_dilated(x, w, (layer.stride, layer.stride), [(pad, pad), (pad, pad)], dimension_numbers=_DIMS)
    return _bias(c, p, layer, y)


def _conv_transpose2d(c, p, layer, shape, x):
    # torch's transposed conv is a conv of the stride-dilated input with the kernel
    # flipped and its in/out axes swapped, padded by k - 1 - padding on each side
    # (+ output_padding at the bottom/right); a negative padding crops.
    w = _weight(c, p, layer, _rows_conv_t)
    k, s, pad, extra = layer.kernel_size, layer.stride, layer.padding, layer.output_padding
    kernel = jnp.flip(jnp.swapaxes(w, 0, 1), axis=(2, 3))  # (out, in, kh, kw)
    lo, hi = k - 1 - pad, k - 1 - pad + extra
    y = lax.conv_general_dilated(x, kernel, (1, 1), [(lo, hi), (lo, hi)], lhs_dilation=(s, s), dimension_numbers=_DIMS)
    return _bias(c, p, layer, y)


def _upsample(c, p, layer, shape, x):
    s = layer.scale_factor
    return jnp.repeat(jnp.repeat(x, s, axis=1), s, axis=2)


def _avg_pool2d(c, p, layer, shape, x):
    k, s = layer.kernel_size, layer.stride or layer.kernel_size
    # A concrete (numpy) zero: jax recognises the windowed sum, which it can differentiate.
    summed = lax.reduce_window(x, np.zeros((), x.dtype), lax.add, (1, k, k, 1), (1, s, s, 1), "VALID")
    return summed / (k * k)


def _global_pool(c, p, layer, shape, x):
    return jnp.sum(x, axis=(1, 2)) if layer.mode == "sum" else jnp.mean(x, axis=(1, 2))


_ACTIVATIONS = {
    "relu": lambda layer, x: jax.nn.relu(x),
    "leaky_relu": lambda layer, x: jnp.where(x >= 0, x, layer.negative_slope * x),
    "tanh": lambda layer, x: jnp.tanh(x),
    "sigmoid": lambda layer, x: jax.nn.sigmoid(x),
    "identity": lambda layer, x: x,
}


def _activation(c, p, layer, shape, x):
    return _ACTIVATIONS[layer.fn](layer, x)


def _dropout(c, p, layer, shape, x):
    if not c.training or layer.rate == 0:
        return x
    if c.key is None:
        raise ValueError("a training-mode call of a net with dropout needs a key")
    # Drawn in float32 whatever the compute dtype: the same masks in every precision.
    keep = jax.random.uniform(c.next_key(), x.shape, dtype=jnp.float32) >= layer.rate
    return x * (keep.astype(x.dtype) * jnp.asarray(1.0 / (1.0 - layer.rate), x.dtype))


def _batch_norm(c, p, layer, shape, x):
    # Statistics and normalisation in float32 whatever the compute dtype.
    x32 = x.astype(jnp.float32)
    weight, bias = c.params[p + "weight"], c.params[p + "bias"]
    if not c.training:
        mean, var = c.buffers[p + "running_mean"], c.buffers[p + "running_var"]
    else:
        axes = tuple(range(x.ndim - 1))  # all but the channels (the last axis)
        mean = jnp.mean(x32, axis=axes)
        var = jnp.mean(jnp.square(x32 - mean), axis=axes)  # biased: what normalises
        n = x.size // shape[0]
        if n < 2:
            raise ValueError(f"batch_norm layer {p[:-1]} needs more than one value per channel in training")
        m = layer.momentum
        # The running variance tracks the unbiased batch variance (torch's convention).
        for name, batch in (("running_mean", mean), ("running_var", var * n / (n - 1))):
            old = c.updated.get(p + name, c.buffers[p + name])
            c.updated[p + name] = lax.stop_gradient((1 - m) * old + m * batch)
    y = (x32 - mean) / jnp.sqrt(var + layer.eps) * weight + bias
    return y.astype(c.compute)


def _layer_norm(c, p, layer, shape, x):
    x32 = x.astype(jnp.float32)
    axes = tuple(range(1, len(shape) + 1))
    mean = jnp.mean(x32, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=axes, keepdims=True)  # biased
    weight, bias = (_to_nhwc(c.params[p + n][None])[0] for n in ("weight", "bias"))  # shaped like a sample
    y = (x32 - mean) / jnp.sqrt(var + layer.eps) * weight + bias
    return y.astype(c.compute)


def _reshape(c, p, layer, shape, x):  # in the canonical (NCHW) order
    return _to_nhwc(_to_nchw(x).reshape(x.shape[0], *layer.shape))


def _flatten(c, p, layer, shape, x):
    return _to_nchw(x).reshape(x.shape[0], math.prod(shape))


def _join(x, extra, combine):
    """Combine per-sample class features (batch, F) with x (batch, C) or (batch, H, W, C)."""
    extra = extra.astype(x.dtype)
    if x.ndim == 4:
        extra = extra[:, None, None, :]
        if combine == "concat":
            extra = jnp.broadcast_to(extra, (*x.shape[:3], extra.shape[-1]))
    return jnp.concatenate([x, extra], axis=-1) if combine == "concat" else x * extra


def _embedding(c, p, layer, shape, x):
    table = _weight(c, p, layer, _rows_table)
    return _join(x, table[c.labels], layer.combine)


def _one_hot(c, p, layer, shape, x):
    return _join(x, jax.nn.one_hot(c.labels, layer.num_classes, dtype=x.dtype), "concat")


def _projection(c, p, layer, shape, x):
    y = _bias(c, p, layer, x @ _weight(c, p, layer, _rows_dense))
    e = _weight(c, p, layer, _rows_table, "embedding")[c.labels]
    return y + jnp.sum(e * x, axis=1, keepdims=True)


def _residual(c, p, layer, shape, x):
    branches = {"body": [], "shortcut": []}
    for sub_prefix, sub, sub_shape in layer.sublayers(shape):
        branches[sub_prefix.split(".")[0]].append((sub_prefix, sub, sub_shape))
    out = {}
    for branch, layers in branches.items():
        y = x
        for sub_prefix, sub, sub_shape in layers:
            y = LAYERS[sub.kind](c, p + sub_prefix, sub, sub_shape, y)
        out[branch] = y
    return out["body"] + out["shortcut"]


#: The layer kinds this backend builds, each by one function.
LAYERS: dict[str, Callable] = {
    "dense": _dense, "conv2d": _conv2d, "conv_transpose2d": _conv_transpose2d, "upsample": _upsample,
    "avg_pool2d": _avg_pool2d, "global_pool": _global_pool, "activation": _activation, "dropout": _dropout,
    "batch_norm": _batch_norm, "layer_norm": _layer_norm, "reshape": _reshape, "flatten": _flatten,
    "embedding": _embedding, "one_hot": _one_hot, "projection": _projection, "residual": _residual,
}
SUPPORTED_LAYERS = tuple(LAYERS)


# -- nets -------------------------------------------------------------------------------
class JaxNet:
    """A spec built for jax: :meth:`apply` is its pure forward function.

    Call ``net.apply(params, buffers, x, labels=None, training=False, key=None,
    compute_dtype=None)``; it returns ``(y, buffers)`` where ``buffers`` holds the
    training-mode updates (the given ones in eval mode). ``y`` is float32.
    """

    def __init__(self, spec: NetSpec):
        if getattr(spec, "kind", None) == "native":
            from gankit.errors import ConfigError

            raise ConfigError(f"net {spec.name!r} is a plugin's native model; the jax backend builds specs only",
                              hint="choose an architecture every backend builds: see `gankit plugins --kind architecture`")
        unknown = sorted({layer.kind for _, layer, _ in spec.walk()} - set(LAYERS))
        if unknown:
            raise NotImplementedError(f"the jax backend cannot build layer kind(s) {unknown} of net {spec.name!r}; "
                                      f"supported: {', '.join(LAYERS)}")
        self.spec = spec
        self.shapes = spec.shapes()
        self.parameter_names = tuple(spec.parameter_shapes())
        self.buffer_names = tuple(spec.buffer_shapes())
        self.conditional = bool(spec.conditional)
        self.has_dropout = any(layer.kind == "dropout" for _, layer, _ in spec.walk())

    def apply(self, params, buffers, x, labels=None, *, training: bool = False, key=None, compute_dtype=None):
        compute = jnp.dtype(compute_dtype or jnp.float32)
        if self.conditional and labels is None:
            raise ValueError(f"net {self.spec.name!r} is class-conditional: call it with labels")
        c = _Call(params, buffers, bool(training), labels, key, compute)
        y = _to_nhwc(jnp.asarray(x).astype(compute))
        for i, layer in enumerate(self.spec.layers):
            y = LAYERS[layer.kind](c, f"{i}.", layer, self.shapes[i], y)
        return _to_nchw(y).astype(jnp.float32), {**buffers, **c.updated}

    def __call__(self, params, buffers, x, labels=None):
        """Eval-mode output (no buffer changes), as the other backends' nets compute it."""
        return self.apply(params, buffers, x, labels)[0]


def build_net(spec: NetSpec) -> JaxNet:
    """The spec as a :class:`JaxNet` (load canonical weights with :func:`load_weights`)."""
    return JaxNet(spec)


@dataclass(frozen=True)
class LoadedNet:
    """A :class:`JaxNet` with its weights (``params``, ``buffers``: dicts of jax arrays by
    canonical name): what :func:`load_weights` returns and :func:`export_weights` reads.
    jax arrays are immutable, so loading makes a new one where torch and TensorFlow assign
    in place. ``loaded(x)`` or ``loaded(x, labels)`` is the net's eval-mode output."""

    net: JaxNet
    params: dict
    buffers: dict

    @property
    def spec(self) -> NetSpec:
        return self.net.spec

    def __call__(self, x, labels=None):
        return self.net(self.params, self.buffers, x, labels)


def check_weights(net: JaxNet | LoadedNet, weights: Mapping[str, np.ndarray], prefix: str = "") -> None:
    """Raise :class:`gankit.CheckpointError` unless ``weights`` has exactly the names and
    shapes of ``net``'s spec; ``prefix`` (e.g. ``"generator."``) labels messages."""
    _check_canonical(net.spec, weights, prefix)


def load_weights(net: JaxNet | LoadedNet, weights: Mapping[str, np.ndarray], prefix: str = "") -> LoadedNet:
    """``net`` with canonical ``weights`` (checked first) as float32 jax arrays on jax's
    default device: a new :class:`LoadedNet` (``net`` itself is unchanged)."""
    check_weights(net, weights, prefix)
    spec = net.spec

    def put(name):
        return jnp.asarray(np.asarray(weights[name], dtype=np.float32))

    return LoadedNet(getattr(net, "net", net), {k: put(k) for k in spec.parameter_shapes()},
                     {k: put(k) for k in spec.buffer_shapes()})


def export_weights(net: LoadedNet) -> dict[str, np.ndarray]:
    """Parameters and buffers of a :class:`LoadedNet` by canonical name, as float32 numpy copies."""
    return {k: np.array(v, dtype=np.float32) for k, v in {**net.params, **net.buffers}.items()}
