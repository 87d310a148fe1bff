"""The neutral network spec: an architecture described once, built by each backend in its framework.

A :class:`NetSpec` is an input shape plus a sequence of layers from a fixed vocabulary.
Each layer names its parameters canonically (``"<index>.<param>"``, e.g. ``"0.weight"``;
inside a residual block ``"<index>.body.<j>.<param>"``) and fixes their layouts, so
weights move between backends unchanged. Shapes exclude the batch axis; images are
channel-first, ``(C, H, W)``. A backend whose framework prefers another layout (TensorFlow:
NHWC) converts inside itself: the spec and the checkpoint only ever see these layouts.

==================  ==============================================  =========================
layer               parameters (layout)                              buffers
==================  ==============================================  =========================
dense               weight (in, out), bias (out,)                   [weight_u (out,)]
conv2d              weight (out, in, kh, kw), bias (out,)           [weight_u (out,)]
conv_transpose2d    weight (in, out, kh, kw), bias (out,)           [weight_u (out,)]
embedding           weight (num_classes, features)                  [weight_u (num_classes,)]
projection          weight (in, 1), bias (1,),                      [weight_u (1,),
                    embedding (num_classes, in)                      embedding_u (num_classes,)]
batch_norm          weight (C,), bias (C,)                          running_mean, running_var (C,)
layer_norm          weight, bias (the input shape)                  -
==================  ==============================================  =========================

``[...]`` buffers exist when the layer has ``spectral_norm`` set. Layers without
parameters: activation, dropout, reshape, flatten, upsample, avg_pool2d, global_pool,
one_hot; ``residual`` holds the parameters of its sub-layers.

Class-conditional nets take a second input, integer class labels of shape (batch,):
``embedding``, ``one_hot`` and ``projection`` read them, and the spec's ``num_classes``
says how many classes there are.

Same spec + same weights => same function on every backend (the conformance suite checks it).
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Iterator, Literal, Optional, Union

from pydantic import Field, model_validator

from gankit.protocol import StrictModel

Shape = tuple[int, ...]


class SpectralNorm(StrictModel):
    """Spectral normalisation of a layer's weight (Miyato et al. 2018): the weight is
    divided by an estimate of its largest singular value.

    The weight as a matrix ``W`` has one row per output (dense: ``weight.T``; conv:
    ``weight.reshape(out, -1)``; transposed conv: ``weight`` with its first two axes
    swapped, then reshaped; embedding: ``weight``). ``u`` (one entry per row) is a buffer
    saved with the weights. With ``normalize(a) = a / max(||a||, eps)``:

    * training mode, on every call: ``n_power_iterations`` times
      ``v = normalize(W^T u); u = normalize(W v)``; the new ``u`` is stored;
    * eval mode: ``v = normalize(W^T u)`` with the stored ``u``, nothing stored;

    then ``sigma = u . (W v)`` (``u`` and ``v`` carry no gradient) and the layer uses ``weight / sigma``.
    """

    n_power_iterations: int = Field(default=1, ge=1)
    """Power iterations per training-mode call."""
    eps: float = Field(default=1e-12, gt=0)
    """Floor of the norm when normalising u and v."""


class _Layer(StrictModel):
    #: Whether the layer reads the class labels.
    uses_labels: ClassVar[bool] = False

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def parameters(self, input_shape: Shape) -> dict[str, Shape]:
        """Trainable parameters: canonical name -> shape."""
        return {}

    def buffers(self, input_shape: Shape) -> dict[str, Shape]:
        """Non-trainable state that is part of the weights: name -> shape."""
        return {}

    def sublayers(self, input_shape: Shape) -> Iterator[tuple[str, "_Layer", Shape]]:
        """Nested layers: (name prefix, layer, its input shape). Empty for plain layers."""
        return iter(())


def _features(layer: str, input_shape: Shape) -> int:
    if len(input_shape) != 1:
        raise ValueError(f"{layer} takes a flat input (features,), got shape {input_shape}; add a flatten layer")
    return input_shape[0]


def _image(layer: str, input_shape: Shape) -> Shape:
    if len(input_shape) != 3:
        raise ValueError(f"{layer} takes images (C, H, W), got shape {input_shape}; add a reshape layer")
    return input_shape


def _sn_buffers(layer, rows: int, name: str = "weight") -> dict[str, Shape]:
    return {f"{name}_u": (rows,)} if layer.spectral_norm is not None else {}


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class Dense(_Layer):
    """Fully connected: ``y = x @ weight + bias``."""

    kind: Literal["dense"] = "dense"
    units: int = Field(gt=0)
    """Number of output features."""
    bias: bool = True
    """Whether to add a learned bias."""
    spectral_norm: Optional[SpectralNorm] = None
    """Spectrally normalise the weight (see :class:`SpectralNorm`)."""

    def output_shape(self, input_shape):
        _features("dense", input_shape)
        return (self.units,)

    def parameters(self, input_shape):
        n_in = _features("dense", input_shape)
        params = {"weight": (n_in, self.units)}
        if self.bias:
            params["bias"] = (self.units,)
        return params

    def buffers(self, input_shape):
        return _sn_buffers(self, self.units)


class Conv2d(_Layer):
    """2D convolution (cross-correlation, as every framework computes it) with zero
    padding of ``padding`` pixels on every side: ``out = floor((in + 2p - k) / s) + 1``."""

    kind: Literal["conv2d"] = "conv2d"
    channels: int = Field(gt=0)
    """Output channels."""
    kernel_size: int = Field(gt=0)
    """Square kernel side."""
    stride: int = Field(default=1, gt=0)
    """Step between kernel positions."""
    padding: int = Field(default=0, ge=0)
    """Zeros added on each side of the height and width."""
    bias: bool = True
    """Whether to add a learned bias per output channel."""
    spectral_norm: Optional[SpectralNorm] = None
    """Spectrally normalise the weight."""

    def output_shape(self, input_shape):
        _, h, w = _image("conv2d", input_shape)
        oh, ow = (_conv_out(s, self.kernel_size, self.stride, self.padding) for s in (h, w))
        if oh < 1 or ow < 1:
            raise ValueError(f"conv2d with kernel {self.kernel_size} does not fit input {input_shape}")
        return (self.channels, oh, ow)

    def parameters(self, input_shape):
        c = _image("conv2d", input_shape)[0]
        params = {"weight": (self.channels, c, self.kernel_size, self.kernel_size)}
        if self.bias:
            params["bias"] = (self.channels,)
        return params

    def buffers(self, input_shape):
        return _sn_buffers(self, self.channels)


class ConvTranspose2d(_Layer):
    """Transposed 2D convolution with PyTorch's semantics (the gradient of a conv2d).

    Each input pixel scatters ``x * weight[c_in]`` into a full output of side
    ``(in - 1) * stride + kernel``; then ``padding`` rows/columns are cropped from the
    top/left and ``padding - output_padding`` from the bottom/right (zero rows are
    appended when that is negative):
    ``out = (in - 1) * stride - 2 * padding + kernel + output_padding``.

    TensorFlow's ``padding="same"`` with an even total padding is ``padding = (k - 1) // 2``;
    with an odd one TF crops the extra row at the bottom where this crops it at the top,
    a shift of one pixel: the TF backend reproduces these semantics, not TF's own.
    """

    kind: Literal["conv_transpose2d"] = "conv_transpose2d"
    channels: int = Field(gt=0)
    """Output channels."""
    kernel_size: int = Field(gt=0)
    """Square kernel side."""
    stride: int = Field(default=1, gt=0)
    """Upsampling factor."""
    padding: int = Field(default=0, ge=0)
    """Rows/columns cropped from each side of the full output."""
    output_padding: int = Field(default=0, ge=0)
    """Extra rows/columns kept at the bottom/right (less than ``stride``)."""
    bias: bool = True
    """Whether to add a learned bias per output channel."""
    spectral_norm: Optional[SpectralNorm] = None
    """Spectrally normalise the weight."""

    @model_validator(mode="after")
    def _check(self):
        if self.output_padding >= self.stride:
            raise ValueError(f"conv_transpose2d output_padding ({self.output_padding}) must be less than stride ({self.stride})")
        return self

    def output_shape(self, input_shape):
        _, h, w = _image("conv_transpose2d", input_shape)
        oh, ow = ((s - 1) * self.stride - 2 * self.padding + self.kernel_size + self.output_padding for s in (h, w))
        if oh < 1 or ow < 1:
            raise ValueError(f"conv_transpose2d padding {self.padding} leaves no output for input {input_shape}")
        return (self.channels, oh, ow)

    def parameters(self, input_shape):
        c = _image("conv_transpose2d", input_shape)[0]
        params = {"weight": (c, self.channels, self.kernel_size, self.kernel_size)}
        if self.bias:
            params["bias"] = (self.channels,)
        return params

    def buffers(self, input_shape):
        return _sn_buffers(self, self.channels)


class Upsample(_Layer):
    """Nearest-neighbour up-sampling by an integer factor: each pixel becomes a
    ``scale_factor`` x ``scale_factor`` block."""

    kind: Literal["upsample"] = "upsample"
    scale_factor: int = Field(default=2, gt=0)
    """Integer factor on height and width."""

    def output_shape(self, input_shape):
        c, h, w = _image("upsample", input_shape)
        return (c, h * self.scale_factor, w * self.scale_factor)


class AvgPool2d(_Layer):
    """Average pooling over ``kernel_size`` x ``kernel_size`` windows, no padding."""

    kind: Literal["avg_pool2d"] = "avg_pool2d"
    kernel_size: int = Field(default=2, gt=0)
    """Window side."""
    stride: Optional[int] = Field(default=None, gt=0)
    """Step between windows (default: ``kernel_size``)."""

    def output_shape(self, input_shape):
        c, h, w = _image("avg_pool2d", input_shape)
        s = self.stride or self.kernel_size
        oh, ow = (_conv_out(x, self.kernel_size, s, 0) for x in (h, w))
        if oh < 1 or ow < 1:
            raise ValueError(f"avg_pool2d window {self.kernel_size} does not fit input {input_shape}")
        return (c, oh, ow)


class GlobalPool(_Layer):
    """Sum or mean over height and width: ``(C, H, W) -> (C,)`` (SNGAN's discriminator sums)."""

    kind: Literal["global_pool"] = "global_pool"
    mode: Literal["sum", "mean"] = "sum"
    """Reduction over the spatial axes."""

    def output_shape(self, input_shape):
        return (_image("global_pool", input_shape)[0],)


class Activation(_Layer):
    """An elementwise non-linearity."""

    kind: Literal["activation"] = "activation"
    fn: Literal["relu", "leaky_relu", "tanh", "sigmoid", "identity"]
    """Which function."""
    negative_slope: float = 0.2
    """Slope for x < 0 (leaky_relu only)."""


class Dropout(_Layer):
    """Training mode: zero each value with probability ``rate`` and scale the rest by
    ``1 / (1 - rate)``; eval mode: the identity. The masks come from each backend's own
    random stream, so only eval mode is the same function on every backend."""

    kind: Literal["dropout"] = "dropout"
    rate: float = Field(ge=0, lt=1)
    """Probability of zeroing a value."""


class BatchNorm(_Layer):
    """Batch normalisation over the batch axis (and, for images, height and width: one
    statistic per channel); running statistics in eval mode.

    Running statistics update as ``running = (1 - momentum) * running + momentum * batch``
    with the unbiased batch variance (the PyTorch convention), on every backend.
    """

    kind: Literal["batch_norm"] = "batch_norm"
    momentum: float = Field(default=0.1, gt=0, le=1)
    """Weight of the current batch in the running statistics."""
    eps: float = Field(default=1e-5, gt=0)
    """Added to the variance before the square root."""

    def _channels(self, input_shape) -> int:
        if len(input_shape) not in (1, 3):
            raise ValueError(f"batch_norm takes (features,) or (C, H, W), got shape {input_shape}")
        return input_shape[0]

    def parameters(self, input_shape):
        n = self._channels(input_shape)
        return {"weight": (n,), "bias": (n,)}

    def buffers(self, input_shape):
        n = self._channels(input_shape)
        return {"running_mean": (n,), "running_var": (n,)}


class LayerNorm(_Layer):
    """Layer normalisation over all of a sample's axes, with a learned elementwise scale
    and shift of the input's shape (PyTorch's ``LayerNorm(input_shape)``)."""

    kind: Literal["layer_norm"] = "layer_norm"
    eps: float = Field(default=1e-5, gt=0)
    """Added to the variance before the square root."""

    def parameters(self, input_shape):
        return {"weight": tuple(input_shape), "bias": tuple(input_shape)}


class Reshape(_Layer):
    """Reshape each sample (the batch axis is kept), in row-major order of the canonical layout."""

    kind: Literal["reshape"] = "reshape"
    shape: tuple[int, ...]
    """Target shape, excluding the batch axis."""

    def output_shape(self, input_shape):
        if math.prod(input_shape) != math.prod(self.shape):
            raise ValueError(f"cannot reshape {input_shape} to {self.shape}")
        return tuple(self.shape)


class Flatten(_Layer):
    """Flatten each sample to one axis (row-major over ``(C, H, W)``)."""

    kind: Literal["flatten"] = "flatten"

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)


def _class_features(layer: str, input_shape: Shape) -> tuple[int, bool]:
    if len(input_shape) not in (1, 3):
        raise ValueError(f"{layer} takes (features,) or (C, H, W), got shape {input_shape}")
    return input_shape[0], len(input_shape) == 3


class Embedding(_Layer):
    """A learned class embedding, ``e = weight[label]`` (features,), combined with the
    input: ``concat`` appends it to the features (for images: as ``features`` constant
    channels after the input's channels); ``multiply`` scales the input by it
    (features must equal the input's features or channels)."""

    kind: Literal["embedding"] = "embedding"
    uses_labels: ClassVar[bool] = True
    num_classes: int = Field(gt=1)
    """Number of classes (rows of the table)."""
    features: int = Field(gt=0)
    """Embedding width."""
    combine: Literal["concat", "multiply"] = "concat"
    """How the embedding joins the input."""
    spectral_norm: Optional[SpectralNorm] = None
    """Spectrally normalise the table."""

    def output_shape(self, input_shape):
        c, image = _class_features("embedding", input_shape)
        if self.combine == "multiply":
            if c != self.features:
                raise ValueError(f"embedding with combine='multiply' needs features == {c}, got {self.features}")
            return tuple(input_shape)
        return (c + self.features, *input_shape[1:])

    def parameters(self, input_shape):
        return {"weight": (self.num_classes, self.features)}

    def buffers(self, input_shape):
        return _sn_buffers(self, self.num_classes)


class OneHot(_Layer):
    """Appends the one-hot encoded class label to the features (for images: as
    ``num_classes`` constant channels after the input's channels)."""

    kind: Literal["one_hot"] = "one_hot"
    uses_labels: ClassVar[bool] = True
    num_classes: int = Field(gt=1)
    """Number of classes."""

    def output_shape(self, input_shape):
        c, _ = _class_features("one_hot", input_shape)
        return (c + self.num_classes, *input_shape[1:])


class Projection(_Layer):
    """The projection discriminator's head (Miyato & Koyama 2018): one logit
    ``h @ weight + bias + sum(embedding[label] * h)`` from features ``h`` (in,)."""

    kind: Literal["projection"] = "projection"
    uses_labels: ClassVar[bool] = True
    num_classes: int = Field(gt=1)
    """Number of classes."""
    bias: bool = True
    """Whether the linear term has a bias."""
    spectral_norm: Optional[SpectralNorm] = None
    """Spectrally normalise both the linear weight and the class embedding."""

    def output_shape(self, input_shape):
        _features("projection", input_shape)
        return (1,)

    def parameters(self, input_shape):
        n = _features("projection", input_shape)
        params = {"weight": (n, 1)}
        if self.bias:
            params["bias"] = (1,)
        params["embedding"] = (self.num_classes, n)
        return params

    def buffers(self, input_shape):
        return {**_sn_buffers(self, 1), **_sn_buffers(self, self.num_classes, "embedding")}


class Residual(_Layer):
    """``body(x) + shortcut(x)``: two sub-sequences of layers from the same input (an
    empty shortcut is the identity). Parameters are named ``<i>.body.<j>.<param>`` and
    ``<i>.shortcut.<j>.<param>``."""

    kind: Literal["residual"] = "residual"
    body: list["LayerSpec"] = Field(min_length=1)
    """The residual branch."""
    shortcut: list["LayerSpec"] = Field(default_factory=list)
    """The skip branch (empty: identity)."""

    @property
    def uses_labels(self) -> bool:  # type: ignore[override]
        return any(layer.uses_labels for layer in (*self.body, *self.shortcut))

    def _branch_shapes(self, branch, input_shape) -> list[Shape]:
        shapes = [tuple(input_shape)]
        for layer in branch:
            shapes.append(tuple(layer.output_shape(shapes[-1])))
        return shapes

    def output_shape(self, input_shape):
        body = self._branch_shapes(self.body, input_shape)[-1]
        skip = self._branch_shapes(self.shortcut, input_shape)[-1]
        if body != skip:
            raise ValueError(f"residual body outputs {body} but the shortcut outputs {skip}")
        return body

    def sublayers(self, input_shape):
        for branch in ("body", "shortcut"):
            layers = getattr(self, branch)
            shapes = self._branch_shapes(layers, input_shape)
            for j, layer in enumerate(layers):
                yield f"{branch}.{j}.", layer, shapes[j]

    def parameters(self, input_shape):
        return _nested(self, input_shape, "parameters")

    def buffers(self, input_shape):
        return _nested(self, input_shape, "buffers")


def _nested(layer: _Layer, input_shape: Shape, what: str) -> dict[str, Shape]:
    out = {}
    for prefix, sub, shape in layer.sublayers(input_shape):
        out.update({prefix + k: v for k, v in getattr(sub, what)(shape).items()})
    return out


LayerSpec = Annotated[
    Union[Dense, Conv2d, ConvTranspose2d, Upsample, AvgPool2d, GlobalPool, Activation, Dropout, BatchNorm,
          LayerNorm, Reshape, Flatten, Embedding, OneHot, Projection, Residual],
    Field(discriminator="kind"),
]
Residual.model_rebuild()

#: Every layer kind of the vocabulary.
LAYER_KINDS = tuple(cls.model_fields["kind"].default for cls in LayerSpec.__origin__.__args__)  # type: ignore[attr-defined]


class NetSpec(StrictModel):
    """A network: input shape and a sequence of layers (plus, for a class-conditional
    net, the number of classes of its label input)."""

    name: str = "net"
    """A label for messages and checkpoints."""
    input_shape: tuple[int, ...]
    """Shape of one input sample, excluding the batch axis."""
    layers: list[LayerSpec]
    """The layers, applied in order."""
    num_classes: Optional[int] = Field(default=None, gt=1)
    """Classes of the label input (set from the layers that read labels when omitted)."""
    pack: int = Field(default=1, ge=1)
    """PacGAN packing (Lin et al. 2018), for a discriminator: it judges packs of this many
    samples at once. Its layers then see each pack flattened and concatenated, shape
    ``(pack * prod(input_shape),)``, and it returns one logit per pack; trainers pack
    batches with :func:`pack_samples` (a batch's size must be a multiple of ``pack``).
    ``input_shape`` stays the shape of one sample."""

    @model_validator(mode="after")
    def _check_shapes(self):
        if self.pack > 1 and self.conditional:
            raise ValueError(f"{self.name!r}: a packed net (pack = {self.pack}) cannot read class labels, "
                             "which belong to single samples")
        self.shapes()  # raises ValueError on an inconsistent spec
        counts = {layer.num_classes for _, layer, _ in self.walk() if hasattr(layer, "num_classes")}
        if len(counts) > 1:
            raise ValueError(f"layers of {self.name!r} disagree on num_classes: {sorted(counts)}")
        if counts:
            (n,) = counts
            if self.num_classes is None:
                self.num_classes = n
            elif self.num_classes != n:
                raise ValueError(f"{self.name!r} has num_classes {self.num_classes} but its layers use {n}")
        return self

    @property
    def conditional(self) -> bool:
        """Whether the net reads class labels."""
        return any(layer.uses_labels for layer in self.layers)

    def shapes(self) -> list[Shape]:
        """The layers' input shape (a pack's, when :attr:`pack` > 1), then the output shape
        after each layer."""
        shapes = [tuple(self.input_shape) if self.pack == 1 else (self.pack * math.prod(self.input_shape),)]
        for layer in self.layers:
            shapes.append(tuple(layer.output_shape(shapes[-1])))
        return shapes

    @property
    def output_shape(self) -> Shape:
        return self.shapes()[-1]

    def walk(self) -> Iterator[tuple[str, _Layer, Shape]]:
        """Every layer, nested ones included: (canonical name prefix, layer, input shape),
        e.g. ``("3.body.0.", Conv2d(...), (64, 8, 8))``."""

        def visit(prefix, layer, shape):
            yield prefix, layer, shape
            for sub_prefix, sub, sub_shape in layer.sublayers(shape):
                yield from visit(prefix + sub_prefix, sub, sub_shape)

        shapes = self.shapes()
        for i, layer in enumerate(self.layers):
            yield from visit(f"{i}.", layer, shapes[i])

    def parameter_shapes(self) -> dict[str, Shape]:
        """Every trainable parameter by canonical name (``"<layer index>.<param>"``)."""
        return self._named("parameters")

    def buffer_shapes(self) -> dict[str, Shape]:
        """Every buffer (non-trainable state) by canonical name."""
        return self._named("buffers")

    def parameter_count(self) -> int:
        return sum(math.prod(s) for s in self.parameter_shapes().values())

    def _named(self, what: str) -> dict[str, Shape]:
        out: dict[str, Shape] = {}
        shapes = self.shapes()
        for i, layer in enumerate(self.layers):
            for pname, shape in getattr(layer, what)(shapes[i]).items():
                out[f"{i}.{pname}"] = tuple(shape)
        return out


def pack_samples(ops, x, pack: int):
    """A batch of samples ``(n, *shape)`` as ``n / pack`` packs ``(n / pack, pack * prod(shape))``:
    consecutive samples side by side (PacGAN). ``pack = 1`` returns ``x`` unchanged. ``n``
    must be a multiple of ``pack`` (trainers check it before; a traced batch is not checked)."""
    if pack == 1:
        return x
    shape = ops.shape(x)
    if isinstance(shape[0], int) and shape[0] % pack:
        from gankit.errors import DataError

        raise DataError(f"a batch of {shape[0]} samples does not divide into packs of {pack}",
                        hint=f"use a multiple of {pack} samples (the discriminator's pack)")
    return ops.reshape(x, (-1, pack * math.prod(int(d) for d in shape[1:])))


def conditional_classes(*specs: NetSpec) -> Optional[int]:
    """The number of classes the class-conditional nets among ``specs`` read (``None``
    when none reads labels); a ValueError when they disagree."""
    counts = {spec.num_classes for spec in specs if spec is not None and spec.conditional}
    if len(counts) > 1:
        raise ValueError(f"the nets disagree on num_classes: {sorted(counts)}")
    return counts.pop() if counts else None


def class_labels(labels, shape: tuple[int, ...], num_classes: Optional[int], *, required: bool = False):
    """Class labels for a conditional net as int64 numpy of ``shape``, checked.

    ``None`` when ``num_classes`` is ``None`` (an unconditional net ignores labels). Without
    ``labels``: an error when ``required`` (training), else the default
    ``arange(n) % num_classes`` (sampling cycles through the classes).
    """
    import numpy as np

    from gankit.errors import DataError

    if num_classes is None:
        return None
    if labels is None:
        if required:
            raise DataError("the architecture is class-conditional: training needs a class label per sample",
                            hint="use a labelled dataset (see `gankit plugins --kind dataset`)")
        return (np.arange(math.prod(shape)) % num_classes).reshape(shape).astype(np.int64)
    arr = np.asarray(labels)
    if arr.shape != tuple(shape) or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise DataError(f"class labels have shape {arr.shape} and dtype {arr.dtype}; expected integers of shape {tuple(shape)}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise DataError(f"class labels must lie in [0, {num_classes}), got values from {arr.min()} to {arr.max()}")
    return arr.astype(np.int64)
