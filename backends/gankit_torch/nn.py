"""Build a :class:`gankit.NetSpec` as a ``torch.nn.Module``; canonical weights in and out.

The module is an ``nn.Sequential`` whose child ``i`` is layer ``i`` of the spec, so
torch's own names (``"0.weight"``, ``"2.running_var"``) are the canonical names. The
one layout difference: a canonical dense weight is (in, out), ``nn.Linear`` stores
(out, in), so dense weights are transposed on the way in and out.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from gankit import CheckpointError, NetSpec


class Reshape(nn.Module):
    """Reshape each sample, keeping the batch axis."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


_ACTIVATIONS = {
    "relu": lambda layer: nn.ReLU(),
    "leaky_relu": lambda layer: nn.LeakyReLU(layer.negative_slope),
    "tanh": lambda layer: nn.Tanh(),
    "sigmoid": lambda layer: nn.Sigmoid(),
    "identity": lambda layer: nn.Identity(),
}


def _build_layer(layer, input_shape) -> nn.Module:
    kind = layer.kind
    if kind == "dense":
        return nn.Linear(input_shape[0], layer.units, bias=layer.bias)
    if kind == "activation":
        return _ACTIVATIONS[layer.fn](layer)
    if kind == "batch_norm":
        # torch semantics are the canonical ones: normalise with the biased batch
        # variance; running = (1 - momentum) * running + momentum * batch, with the
        # unbiased batch variance; eval mode uses the running statistics.
        return nn.BatchNorm1d(input_shape[0], eps=layer.eps, momentum=layer.momentum)
    if kind == "layer_norm":
        return nn.LayerNorm(input_shape[0], eps=layer.eps)
    if kind == "reshape":
        return Reshape(layer.shape)
    if kind == "flatten":
        return nn.Flatten(start_dim=1)
    raise NotImplementedError(f"the torch backend cannot build layer kind {kind!r} yet")


def build_net(spec: NetSpec) -> nn.Sequential:
    """The spec as an ``nn.Sequential`` (float32, on cpu, torch's default init)."""
    shapes = spec.shapes()
    return nn.Sequential(*(_build_layer(layer, shapes[i]) for i, layer in enumerate(spec.layers)))


def transposed_names(spec: NetSpec) -> set[str]:
    """Canonical names whose torch layout is the transpose of the canonical one."""
    return {f"{i}.weight" for i, layer in enumerate(spec.layers) if layer.kind == "dense"}


def canonical_shapes(spec: NetSpec) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer of the spec, by canonical name."""
    return {**spec.parameter_shapes(), **spec.buffer_shapes()}


def export_weights(module: nn.Module, spec: NetSpec) -> dict[str, np.ndarray]:
    """The module's parameters and buffers in the canonical layout (float32 copies)."""
    state = module.state_dict()
    flip = transposed_names(spec)
    out = {}
    for name in canonical_shapes(spec):
        t = state[name].detach()
        if name in flip:
            t = t.t()
        out[name] = t.to("cpu", torch.float32).numpy().copy()  # copy: never alias live weights
    return out


def check_weights(spec: NetSpec, weights: Mapping[str, np.ndarray], prefix: str = "") -> None:
    """Raise :class:`gankit.CheckpointError` unless ``weights`` has exactly the spec's
    names and shapes. ``prefix`` labels names in the message (e.g. ``"generator."``)."""
    expected = canonical_shapes(spec)
    missing = [n for n in expected if n not in weights]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(
            f"weights are missing {prefix}{missing[0]}{more} for {spec.name!r}",
            hint="the weights were saved from a different architecture",
        )
    unexpected = [n for n in weights if n not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(
            f"weights have unexpected parameter {prefix}{unexpected[0]}{more} for {spec.name!r}",
            hint="the weights were saved from a different architecture",
        )
    for name, shape in expected.items():
        got = tuple(np.shape(weights[name]))
        if got != tuple(shape):
            raise CheckpointError(
                f"parameter {prefix}{name} has shape {got} but the model expects {tuple(shape)}",
                hint="the weights were saved from a different architecture",
            )


@torch.no_grad()
def load_weights(module: nn.Module, spec: NetSpec, weights: Mapping[str, np.ndarray], prefix: str = "") -> None:
    """Copy canonical ``weights`` into the module (checked first; nothing is changed
    if they do not match)."""
    check_weights(spec, weights, prefix)
    state = module.state_dict()  # tensors share storage with the module's
    flip = transposed_names(spec)
    for name in canonical_shapes(spec):
        target = state[name]
        value = torch.as_tensor(np.asarray(weights[name]), dtype=target.dtype)
        if name in flip:
            value = value.t()
        target.copy_(value.to(target.device))
