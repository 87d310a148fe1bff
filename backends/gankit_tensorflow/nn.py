"""Build a :class:`gankit.NetSpec` natively as a ``tf.Module`` of ``tf.Variable`` s.

No Keras layers: each layer is a few TensorFlow ops on variables stored under their
canonical names (``"<layer index>.<param>"``) in the canonical layouts, so weights move
to and from the torch backend unchanged and both compute the same function.

Images: the spec and the checkpoint are channel-first (NCHW); TensorFlow's CPU
convolutions want NHWC. A net takes and returns NCHW tensors and works in NHWC inside:
inputs are transposed once on the way in, outputs once on the way out, and flatten /
reshape go through the canonical order so that flattened features line up with
torch's. Conv kernels stay canonical in the variables (so optimizer slots, EMA and
checkpoints need no conversion) and are transposed to TF's layout inside the graph.

Mixed precision: a net has a *compute dtype* (``float32``, ``bfloat16`` or ``float16``)
apart from its variables' dtype (always float32 in training). The input and every
weight are cast to the compute dtype as they enter the graph, so matmuls, convolutions
and activations run in it while gradients reach the float32 variables through the
casts. Batch and layer normalisation compute their statistics and normalise in float32
(as Keras' mixed-precision policies and torch's autocast do), spectral normalisation's
power iteration runs on the float32 weights, and the net's output comes back as float32.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.errors import CheckpointError  # noqa: E402
from gankit.initializers import net_weights  # noqa: E402
from gankit.nets import NetSpec  # noqa: E402

SUPPORTED_LAYERS = (
    "dense", "conv2d", "conv_transpose2d", "upsample", "avg_pool2d", "global_pool", "activation", "dropout",
    "batch_norm", "layer_norm", "reshape", "flatten", "embedding", "one_hot", "projection", "residual",
)

_TO_NHWC, _TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
_KERNEL = [2, 3, 1, 0]  # canonical (out, in, kh, kw) -> (kh, kw, in, out); (in, out, kh, kw) -> (kh, kw, out, in)


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if ident and not ident[0].isdigit() else f"net_{ident}"


def _is_image(shape) -> bool:
    return len(shape) == 3


def _l2_normalize(x, eps):
    # torch.nn.functional.normalize: x / max(||x||, eps)
    return x / tf.math.maximum(tf.norm(x), eps)


class TensorFlowNet(tf.Module):
    """A network built from a spec. Call it as ``net(x, training=False)``, or
    ``net(x, training, labels)`` when the spec is class-conditional.

    ``params`` and ``buffers`` map canonical names to variables; ``parameters`` lists the
    trainable variables in canonical order (what optimizers update). The net starts
    from gankit's ``default`` initialisation drawn with ``seed``; dropout masks come
    from a generator seeded with ``seed`` too.

    ``dtype`` is the variables' dtype; ``compute_dtype`` (default: ``dtype``) the dtype
    the forward computes in, overridable per call with ``compute_dtype=``. The output
    is always in ``dtype``.
    """

    def __new__(cls, spec, *args, **kwargs):
        # A plugin's own model (a gankit.NativeNet) is built by gankit_tensorflow.native.
        if cls is TensorFlowNet and getattr(spec, "kind", None) == "native":
            from gankit_tensorflow.native import NativeTensorFlowNet

            cls = NativeTensorFlowNet
        return super().__new__(cls)

    def __init__(self, spec: NetSpec, dtype: str = "float32", seed: int = 0, compute_dtype: str | None = None):
        super().__init__(name=_identifier(spec.name))
        unknown = sorted({layer.kind for _, layer, _ in spec.walk()} - set(SUPPORTED_LAYERS))
        if unknown:
            raise NotImplementedError(
                f"the tensorflow backend cannot build layer kind(s) {unknown} of net {spec.name!r}; "
                f"supported: {', '.join(SUPPORTED_LAYERS)}"
            )
        self.spec = spec
        self.dtype = tf.as_dtype(dtype)
        self.compute_dtype = tf.as_dtype(compute_dtype or dtype)
        self._compute = self.compute_dtype  # the current call's compute dtype
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
            if any(layer.kind == "dropout" for _, layer, _ in spec.walk()):
                self._dropout_rng = tf.random.Generator.from_seed(int(np.random.SeedSequence([seed, 0xD80]).generate_state(1)[0]))
        self.parameters = tuple(self.params[k] for k in spec.parameter_shapes())

    def __call__(self, x, training: bool = False, labels=None, *, compute_dtype=None):
        # The dtype every layer computes in while this call is traced (read by _cast).
        self._compute = tf.as_dtype(compute_dtype) if compute_dtype is not None else self.compute_dtype
        if not isinstance(x, (tf.Tensor, tf.Variable)):
            x = tf.convert_to_tensor(x, dtype=self.dtype)
        x = tf.cast(x, self._compute)
        if self.spec.conditional:
            if labels is None:
                raise ValueError(f"net {self.spec.name!r} is class-conditional: call it with labels")
            labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
        if _is_image(self._shapes[0]):
            x = tf.transpose(x, _TO_NHWC)
        x = self._sequence(self.spec.layers, self._shapes, "", x, bool(training), labels)
        if _is_image(self._shapes[-1]):
            x = tf.transpose(x, _TO_NCHW)
        return tf.cast(x, self.dtype)

    def _cast(self, t):
        """A weight (or float32 result) in this call's compute dtype; a no-op in float32."""
        return tf.cast(t, self._compute)

    def _param(self, name):
        return self._cast(self.params[name])

    def _sequence(self, layers, shapes, prefix, x, training, labels):
        for i, layer in enumerate(layers):
            x = getattr(self, f"_layer_{layer.kind}")(f"{prefix}{i}.", layer, shapes[i], x, training, labels)
        return x

    # -- spectral normalisation ---------------------------------------------------
    def _weight(self, p, layer, training, rows_first, name="weight"):
        """The layer's weight, divided by its spectral norm when the layer asks for it
        (gankit's power iteration, see :class:`gankit.nets.SpectralNorm`)."""
        w = self.params[p + name]
        sn = getattr(layer, "spectral_norm", None)
        if sn is None:
            return self._cast(w)
        u_var = self.buffers[f"{p}{name}_u"]
        mat = rows_first(w)
        frozen = tf.stop_gradient(mat)
        u = tf.identity(u_var)
        if training:
            for _ in range(sn.n_power_iterations):
                v = _l2_normalize(tf.linalg.matvec(frozen, u, transpose_a=True), sn.eps)
                u = _l2_normalize(tf.linalg.matvec(frozen, v), sn.eps)
            u = tf.stop_gradient(u)
            u_var.assign(u)
        else:
            v = _l2_normalize(tf.linalg.matvec(frozen, u, transpose_a=True), sn.eps)
        sigma = tf.reduce_sum(u * tf.linalg.matvec(mat, tf.stop_gradient(v)))
        return self._cast(w / sigma)  # the power iteration and sigma stay in float32

    # -- layers (x is NHWC for images) ----------------------------------------------
    def _layer_dense(self, p, layer, shape, x, training, labels):
        w = self._weight(p, layer, training, tf.transpose)  # weight is (in, out): rows are outputs
        y = tf.linalg.matmul(x, w)
        return y + self._param(p + "bias") if layer.bias else y

    def _layer_conv2d(self, p, layer, shape, x, training, labels):
        w = self._weight(p, layer, training, lambda m: tf.reshape(m, [m.shape[0], -1]))
        pad, kernel = layer.padding, tf.transpose(w, _KERNEL)
        plans = [_conv_same_plan(n, layer.kernel_size, layer.stride, pad) for n in shape[1:]] if pad else [None]
        if None not in plans:
            # SAME where its padding is torch's (with the image reversed along the axes where
            # SAME would put the odd padding row after the image and torch puts it before):
            # the same sums as tf.pad + VALID, about 1.2x faster on CPU (forward + backward).
            axes = [axis for axis, plan in zip((1, 2), plans) if plan == "reversed"]
            if axes:
                x, kernel = tf.reverse(x, axes), tf.reverse(kernel, [a - 1 for a in axes])
            y = tf.nn.conv2d(x, kernel, strides=layer.stride, padding="SAME")
            y = tf.reverse(y, axes) if axes else y
        else:
            if pad:  # tf.pad + VALID: the same numbers as EXPLICIT padding, 2-3x faster on CPU
                x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            y = tf.nn.conv2d(x, kernel, strides=layer.stride, padding="VALID")
        return tf.nn.bias_add(y, self._param(p + "bias")) if layer.bias else y

    def _layer_conv_transpose2d(self, p, layer, shape, x, training, labels):
        w = self._weight(p, layer, training, lambda m: tf.reshape(tf.transpose(m, [1, 0, 2, 3]), [m.shape[1], -1]))
        _, h, wd = shape
        k, s, pad, extra = layer.kernel_size, layer.stride, layer.padding, layer.output_padding
        # The full scatter is (in - 1) * s + k; torch crops `pad` at the top/left and
        # `pad - output_padding` at the bottom/right, so grow the full output by the
        # rows that crop would lack (fewer than s: TF accepts them for VALID padding).
        grow = max(0, extra - pad)
        full_h, full_w = (h - 1) * s + k + grow, (wd - 1) * s + k + grow
        out_h, out_w = (h - 1) * s - 2 * pad + k + extra, (wd - 1) * s - 2 * pad + k + extra
        batch = tf.shape(x)[0]
        kernel = tf.transpose(w, _KERNEL)
        plan = _same_padding_plan(k, s, pad, extra)
        if plan is not None and out_h == h * s and out_w == wd * s:
            # torch's output is TF's SAME output for this kernel (same alignment, same
            # sums), without the larger VALID output and its crop: about 1.5x faster on CPU.
            output_shape = tf.stack([batch, out_h, out_w, layer.channels])
            if plan == "reversed":
                # SAME puts the odd padding row after the image, torch before it: computed on
                # the spatially reversed image with the reversed kernel, the alignment is
                # torch's, with no zero taps (stride 2, kernel 5: 25 taps instead of 36).
                kernel = tf.reverse(kernel, [0, 1])
                y = tf.nn.conv2d_transpose(tf.reverse(x, [1, 2]), kernel, output_shape=output_shape, strides=s,
                                           padding="SAME")
                y = tf.reverse(y, [1, 2])
            else:  # `plan` zero taps appended to the kernel shift SAME's alignment to torch's
                kernel = tf.pad(kernel, [[0, plan], [0, plan], [0, 0], [0, 0]]) if plan else kernel
                y = tf.nn.conv2d_transpose(x, kernel, output_shape=output_shape, strides=s, padding="SAME")
            return tf.nn.bias_add(y, self._param(p + "bias")) if layer.bias else y
        y = tf.nn.conv2d_transpose(x, kernel, output_shape=tf.stack([batch, full_h, full_w, layer.channels]),
                                   strides=s, padding="VALID")
        if pad or grow:
            y = y[:, pad : pad + out_h, pad : pad + out_w, :]
        return tf.nn.bias_add(y, self._param(p + "bias")) if layer.bias else y

    def _layer_upsample(self, p, layer, shape, x, training, labels):
        c, h, w = shape
        s = layer.scale_factor
        y = tf.broadcast_to(x[:, :, None, :, None, :], tf.stack([tf.shape(x)[0], h, s, w, s, c]))
        return tf.reshape(y, [-1, h * s, w * s, c])

    def _layer_avg_pool2d(self, p, layer, shape, x, training, labels):
        return tf.nn.avg_pool2d(x, layer.kernel_size, layer.stride or layer.kernel_size, "VALID")

    def _layer_global_pool(self, p, layer, shape, x, training, labels):
        reduce = tf.math.reduce_sum if layer.mode == "sum" else tf.math.reduce_mean
        return reduce(x, axis=[1, 2])

    def _layer_activation(self, p, layer, shape, x, training, labels):
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

    def _layer_dropout(self, p, layer, shape, x, training, labels):
        if not training or layer.rate == 0:
            return x
        # Drawn in float32 whatever the compute dtype: the same masks in every precision.
        keep = self._dropout_rng.uniform(tf.shape(x), dtype=tf.float32) >= layer.rate
        # x * (mask / (1 - rate)), as torch: one multiplication forward and backward
        # (tf.where with a division costs about 1.25x as much).
        return x * (tf.cast(keep, x.dtype) * tf.constant(1.0 / (1.0 - layer.rate), x.dtype))

    def _layer_batch_norm(self, p, layer, shape, x, training, labels):
        # Statistics and normalisation in the variables' dtype (float32), whatever the
        # compute dtype: a bfloat16 mean/variance loses the small differences that matter.
        return self._cast(self._batch_norm(p, layer, shape, tf.cast(x, self.dtype), training))

    def _batch_norm(self, p, layer, shape, x, training):
        weight, bias = self.params[p + "weight"], self.params[p + "bias"]
        running_mean, running_var = self.buffers[p + "running_mean"], self.buffers[p + "running_var"]
        if training and x.shape[0] == 1 and not _is_image(shape):
            raise ValueError(
                f"batch_norm layer {p[:-1]} of {self.spec.name!r} needs more than one sample per batch in training"
            )
        # The fused kernel in float32 (mixed precision keeps the ops below: its tests look
        # for their float32 means), with more than one value per feature in training (one
        # has no unbiased variance).
        single = x.shape.num_elements() == shape[0]
        if self.dtype == tf.float32 and self._compute == tf.float32 and not (training and single):
            return self._fused_batch_norm(layer, shape, x, training, weight, bias, running_mean, running_var)
        if not training:
            return (x - running_mean) / tf.math.sqrt(running_var + layer.eps) * weight + bias
        axes = [0, 1, 2] if _is_image(shape) else [0]  # one statistic per channel (last axis in NHWC)
        mean = tf.math.reduce_mean(x, axis=axes)
        # Normalise with the biased batch variance (divide by n), as torch does ...
        var = tf.math.reduce_mean(tf.math.square(x - mean), axis=axes)
        # ... but track the unbiased one (divide by n - 1) in the running statistics.
        n = tf.cast(tf.size(x) // tf.shape(x)[-1], self.dtype)
        momentum = tf.constant(layer.momentum, self.dtype)
        running_mean.assign((1 - momentum) * running_mean + momentum * tf.stop_gradient(mean))
        running_var.assign((1 - momentum) * running_var + momentum * tf.stop_gradient(var * n / (n - 1)))
        return (x - mean) / tf.math.sqrt(var + layer.eps) * weight + bias

    def _fused_batch_norm(self, layer, shape, x, training, weight, bias, running_mean, running_var):
        """The same batch norm as one TensorFlow kernel forward and one backward (2.5-4x
        faster on CPU than the ops of :meth:`_batch_norm`'s general path). In training,
        ``exponential_avg_factor=momentum`` makes the kernel return the running statistics
        updated as torch does: ``(1 - momentum) * running + momentum * batch``, with the
        unbiased batch variance in the running variance and the biased one in the output."""
        x4 = x if _is_image(shape) else tf.reshape(x, [-1, 1, 1, shape[0]])  # features as NHWC channels
        y, mean, var, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x4, scale=weight, offset=bias, mean=running_mean, variance=running_var, epsilon=layer.eps,
            exponential_avg_factor=layer.momentum if training else 1.0, data_format="NHWC", is_training=training)
        if training:
            running_mean.assign(mean)
            running_var.assign(var)
        return y if _is_image(shape) else tf.reshape(y, tf.shape(x))

    def _layer_layer_norm(self, p, layer, shape, x, training, labels):
        return self._cast(self._layer_norm(p, layer, shape, tf.cast(x, self.dtype)))  # float32, as batch norm

    def _layer_norm(self, p, layer, shape, x):
        weight, bias = self.params[p + "weight"], self.params[p + "bias"]
        axes = list(range(1, len(shape) + 1))
        if _is_image(shape):  # canonical (C, H, W) scale and shift, NHWC tensor
            weight, bias = tf.transpose(weight, [1, 2, 0]), tf.transpose(bias, [1, 2, 0])
        mean = tf.math.reduce_mean(x, axis=axes, keepdims=True)
        var = tf.math.reduce_mean(tf.math.square(x - mean), axis=axes, keepdims=True)  # biased
        return (x - mean) / tf.math.sqrt(var + layer.eps) * weight + bias

    def _to_canonical(self, x, shape):
        return tf.transpose(x, _TO_NCHW) if _is_image(shape) else x

    def _layer_reshape(self, p, layer, shape, x, training, labels):
        # Row-major in the canonical (C, H, W) order, like torch.
        y = tf.reshape(self._to_canonical(x, shape), [-1, *layer.shape])
        return tf.transpose(y, _TO_NHWC) if _is_image(layer.shape) else y

    def _layer_flatten(self, p, layer, shape, x, training, labels):
        return tf.reshape(self._to_canonical(x, shape), [-1, math.prod(shape)])

    def _join(self, x, extra, shape, combine):
        extra = tf.cast(extra, x.dtype)
        if _is_image(shape):
            extra = extra[:, None, None, :]
            if combine == "concat":
                extra = tf.broadcast_to(extra, tf.stack([tf.shape(x)[0], shape[1], shape[2], tf.shape(extra)[-1]]))
        return tf.concat([x, extra], axis=-1) if combine == "concat" else x * extra

    def _layer_embedding(self, p, layer, shape, x, training, labels):
        table = self._weight(p, layer, training, lambda m: m)
        return self._join(x, tf.gather(table, labels), shape, layer.combine)

    def _layer_one_hot(self, p, layer, shape, x, training, labels):
        return self._join(x, tf.one_hot(labels, layer.num_classes, dtype=x.dtype), shape, "concat")

    def _layer_projection(self, p, layer, shape, x, training, labels):
        y = tf.linalg.matmul(x, self._weight(p, layer, training, tf.transpose))
        if layer.bias:
            y = y + self._param(p + "bias")
        e = tf.gather(self._weight(p, layer, training, lambda m: m, "embedding"), labels)  # compute dtype
        return y + tf.math.reduce_sum(e * x, axis=1, keepdims=True)

    def _layer_residual(self, p, layer, shape, x, training, labels):
        branches = {"body": ([], []), "shortcut": ([], [])}
        for sub_prefix, sub, sub_shape in layer.sublayers(shape):
            layers, shapes = branches[sub_prefix.split(".")[0]]
            layers.append(sub)
            shapes.append(sub_shape)
        body = self._sequence(branches["body"][0], branches["body"][1], p + "body.", x, training, labels)
        skip = self._sequence(branches["shortcut"][0], branches["shortcut"][1], p + "shortcut.", x, training, labels)
        return body + skip


def _conv_same_plan(n: int, k: int, s: int, pad: int) -> str | None:
    """How TensorFlow's SAME padding reproduces torch's symmetric ``pad`` along an axis of
    ``n`` pixels for a convolution: ``"same"`` when it does as it is, ``"reversed"`` when
    it does on the reversed axis, None when neither. SAME gives ``ceil(n / s)`` outputs
    with ``P // 2`` of its ``P = (out - 1) * s + k - n`` padding rows before the image (the
    other ``P - P // 2`` before it when reversed); torch gives ``(n + 2 pad - k) // s + 1``
    outputs with ``pad`` rows before."""
    out = -(-n // s)
    padding = (out - 1) * s + k - n
    if padding < 0 or out != (n + 2 * pad - k) // s + 1:
        return None
    if padding // 2 == pad:
        return "same"
    if padding - padding // 2 == pad:
        return "reversed"
    return None


def _same_padding_plan(k: int, s: int, pad: int, output_padding: int) -> int | str | None:
    """How TensorFlow's SAME padding reproduces torch's ``padding`` / ``output_padding``
    exactly: a number of zero taps to append to the kernel (0 when SAME already agrees),
    ``"reversed"`` when SAME agrees on the spatially reversed problem, or None when neither
    works. SAME gives ``in * s`` outputs with ``(k' - s) // 2`` of its ``k' - s`` padding
    rows before the image (``ceil`` of it when reversed); torch gives
    ``(in - 1) * s - 2 * pad + k + output_padding`` outputs with ``pad`` before."""
    if k + output_padding - 2 * pad != s:
        return None
    if k >= s and (k - s) // 2 == pad:
        return 0
    if k >= s and (k - s + 1) // 2 == pad:
        return "reversed"
    for zeros in range(1, s + 1):
        if k + zeros >= s and (k + zeros - s) // 2 == pad:
            return zeros
    return None


def build_net(spec: NetSpec) -> TensorFlowNet:
    """Build ``spec`` as a :class:`TensorFlowNet` (float32, seed 0; load canonical weights
    next). The class itself takes a dtype, a seed and a compute dtype."""
    return TensorFlowNet(spec)


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


def load_weights(net: TensorFlowNet, weights: dict[str, np.ndarray], prefix: str = "") -> TensorFlowNet:
    """Assign canonical weights to ``net`` in place; returns ``net``. Names and shapes are
    checked first (:func:`check_weights`), so a mismatch changes nothing."""
    check_weights(net, weights, prefix)
    for k, var in {**net.params, **net.buffers}.items():
        var.assign(np.asarray(weights[k], dtype=var.dtype.as_numpy_dtype))
    return net
