"""The neutral network spec: an architecture described once, built natively by each backend.

A :class:`NetSpec` is an input shape plus a sequence of layers from a fixed vocabulary.
Each layer names its parameters canonically (``"<index>.<param>"``, e.g. ``"0.weight"``)
and fixes their layouts, so weights move between backends unchanged:

============  ==========================================  ==========================
layer         parameters (layout)                          buffers
============  ==========================================  ==========================
dense         weight (in, out), bias (out,)               -
batch_norm    weight (features,), bias (features,)        running_mean, running_var
layer_norm    weight (features,), bias (features,)        -
============  ==========================================  ==========================

Shapes exclude the batch axis. Same spec + same weights => same function on every
backend (the conformance suite checks it).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from gankit.protocol import StrictModel

Shape = tuple[int, ...]


class _Layer(StrictModel):
    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def parameters(self, input_shape: Shape) -> dict[str, Shape]:
        """Trainable parameters: canonical name -> shape."""
        return {}

    def buffers(self, input_shape: Shape) -> dict[str, Shape]:
        """Non-trainable state that is part of the weights: name -> shape."""
        return {}


def _features(layer: str, input_shape: Shape) -> int:
    if len(input_shape) != 1:
        raise ValueError(f"{layer} takes a flat input (features,), got shape {input_shape}; add a flatten layer")
    return input_shape[0]


class Dense(_Layer):
    """Fully connected: ``y = x @ weight + bias``."""

    kind: Literal["dense"] = "dense"
    units: int = Field(gt=0)
    """Number of output features."""
    bias: bool = True
    """Whether to add a learned bias."""

    def output_shape(self, input_shape):
        _features("dense", input_shape)
        return (self.units,)

    def parameters(self, input_shape):
        n_in = _features("dense", input_shape)
        params = {"weight": (n_in, self.units)}
        if self.bias:
            params["bias"] = (self.units,)
        return params


class Activation(_Layer):
    """An elementwise non-linearity."""

    kind: Literal["activation"] = "activation"
    fn: Literal["relu", "leaky_relu", "tanh", "sigmoid", "identity"]
    """Which function."""
    negative_slope: float = 0.2
    """Slope for x < 0 (leaky_relu only)."""


class BatchNorm(_Layer):
    """Batch normalisation over the batch axis; running statistics in eval mode.

    Running statistics update as ``running = (1 - momentum) * running + momentum * batch``
    with the unbiased batch variance (the PyTorch convention), on every backend.
    """

    kind: Literal["batch_norm"] = "batch_norm"
    momentum: float = Field(default=0.1, gt=0, le=1)
    """Weight of the current batch in the running statistics."""
    eps: float = Field(default=1e-5, gt=0)
    """Added to the variance before the square root."""

    def parameters(self, input_shape):
        n = _features("batch_norm", input_shape)
        return {"weight": (n,), "bias": (n,)}

    def buffers(self, input_shape):
        n = _features("batch_norm", input_shape)
        return {"running_mean": (n,), "running_var": (n,)}


class LayerNorm(_Layer):
    """Layer normalisation over the feature axis, with a learned scale and shift."""

    kind: Literal["layer_norm"] = "layer_norm"
    eps: float = Field(default=1e-5, gt=0)
    """Added to the variance before the square root."""

    def parameters(self, input_shape):
        n = _features("layer_norm", input_shape)
        return {"weight": (n,), "bias": (n,)}


class Reshape(_Layer):
    """Reshape each sample (the batch axis is kept)."""

    kind: Literal["reshape"] = "reshape"
    shape: tuple[int, ...]
    """Target shape, excluding the batch axis."""

    def output_shape(self, input_shape):
        if math.prod(input_shape) != math.prod(self.shape):
            raise ValueError(f"cannot reshape {input_shape} to {self.shape}")
        return tuple(self.shape)


class Flatten(_Layer):
    """Flatten each sample to one axis."""

    kind: Literal["flatten"] = "flatten"

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)


LayerSpec = Annotated[
    Union[Dense, Activation, BatchNorm, LayerNorm, Reshape, Flatten], Field(discriminator="kind")
]


class NetSpec(StrictModel):
    """A network: input shape and a sequence of layers."""

    name: str = "net"
    """A label for messages and checkpoints."""
    input_shape: tuple[int, ...]
    """Shape of one input sample, excluding the batch axis."""
    layers: list[LayerSpec]
    """The layers, applied in order."""

    @model_validator(mode="after")
    def _check_shapes(self):
        self.shapes()  # raises ValueError on an inconsistent spec
        return self

    def shapes(self) -> list[Shape]:
        """Input shape, then the output shape after each layer."""
        shapes = [tuple(self.input_shape)]
        for layer in self.layers:
            shapes.append(layer.output_shape(shapes[-1]))
        return shapes

    @property
    def output_shape(self) -> Shape:
        return self.shapes()[-1]

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
