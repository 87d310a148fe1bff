"""``pyramid_mlp``: an MLP whose hidden widths halve layer by layer.

An architecture is a function returning a ``gankit.NetSpec`` — a neutral list of
layers that every backend builds natively, with canonical parameter names, so the
same weights give the same network on PyTorch and TensorFlow.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

import gankit


class PyramidParams(gankit.StrictModel):
    """Parameters of the ``pyramid_mlp`` architecture."""

    width: int = Field(64, ge=4, le=4096)
    """Width of the widest hidden layer."""
    depth: int = Field(3, ge=1, le=8)
    """Number of hidden layers; each is half as wide as the one before it."""
    norm: Literal["none", "layer"] = "layer"
    """Layer normalisation after each hidden dense layer."""


def build_pyramid_mlp(params: PyramidParams, *, role: str, input_shape, output_shape) -> gankit.NetSpec:
    """Widths ``width, width/2, ...`` for the discriminator, reversed for the generator."""
    widths = [max(params.width >> i, 1) for i in range(params.depth)]
    if role == "generator":
        widths.reverse()
    layers: list = [gankit.Flatten()] if len(input_shape) > 1 else []
    for w in widths:
        layers.append(gankit.Dense(units=w))
        if params.norm == "layer":
            layers.append(gankit.LayerNorm())
        layers.append(gankit.Activation(fn="leaky_relu", negative_slope=0.2))
    layers.append(gankit.Dense(units=math.prod(output_shape)))
    if len(output_shape) > 1:
        layers.append(gankit.Reshape(shape=tuple(output_shape)))
    return gankit.NetSpec(name=f"pyramid_mlp_{role}", input_shape=tuple(input_shape), layers=layers)
