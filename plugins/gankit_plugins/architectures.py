"""Built-in architectures, as neutral net specs.

``mlp``: a multilayer perceptron for low-dimensional data (the 2D toys) or flattened
images. The generator maps a latent vector to a sample of the data's shape; the
discriminator maps a sample to one logit.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

import gankit


class MLPParams(gankit.StrictModel):
    """Parameters of the ``mlp`` architecture."""

    hidden: list[int] = Field(default_factory=lambda: [128, 128, 128], min_length=1)
    """Width of each hidden layer."""
    activation: Literal["relu", "leaky_relu", "tanh"] = "relu"
    """Hidden-layer non-linearity."""
    negative_slope: float = Field(default=0.2, ge=0, lt=1)
    """Slope for x < 0 when activation is leaky_relu."""
    norm: Literal["none", "batch", "layer"] = "none"
    """Normalisation after each hidden dense layer."""
    output_activation: Literal["identity", "tanh", "sigmoid"] = "identity"
    """Non-linearity on the generator's output (the discriminator always outputs a raw logit)."""


def build_mlp(params: MLPParams, *, role: str, input_shape, output_shape) -> gankit.NetSpec:
    """An MLP from ``input_shape`` to ``output_shape`` (flattening and reshaping as needed)."""
    layers: list = []
    if len(input_shape) > 1:
        layers.append(gankit.Flatten())
    for width in params.hidden:
        layers.append(gankit.Dense(units=width))
        if params.norm == "batch":
            layers.append(gankit.BatchNorm())
        elif params.norm == "layer":
            layers.append(gankit.LayerNorm())
        layers.append(gankit.Activation(fn=params.activation, negative_slope=params.negative_slope))
    layers.append(gankit.Dense(units=math.prod(output_shape)))
    if role == "generator" and params.output_activation != "identity":
        layers.append(gankit.Activation(fn=params.output_activation))
    if len(output_shape) > 1:
        layers.append(gankit.Reshape(shape=tuple(output_shape)))
    return gankit.NetSpec(name=f"mlp_{role}", input_shape=tuple(input_shape), layers=layers)


@gankit.hookimpl
def gankit_register_architectures():
    return [
        gankit.ArchitectureRecord(
            name="mlp",
            params=MLPParams,
            factory=build_mlp,
            description="Multilayer perceptron (toy data, flattened images)",
            metadata={"paper": "Goodfellow et al. 2014, Generative Adversarial Nets"},
        )
    ]
