"""Neutral weight initialisation: numpy, seeded, identical for every backend.

Because initial weights are drawn here rather than by each framework, the same seed
gives the same starting network on torch and tensorflow.
"""

from __future__ import annotations

import math

import numpy as np

from gankit.nets import NetSpec

SCHEMES = ("default", "normal", "xavier_uniform")


def _fans(kind: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight in its canonical layout, as PyTorch computes them."""
    if kind in ("conv2d", "conv_transpose2d"):
        # torch reads fan_in from axis 1 and fan_out from axis 0 of every conv weight,
        # so for a transposed conv (in, out, kh, kw) its "fan_in" counts output channels.
        receptive = math.prod(shape[2:])
        return shape[1] * receptive, shape[0] * receptive
    return shape[0], shape[-1]  # dense and projection (in, out); embedding (classes, features)


def _normalized(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.normal(0.0, 1.0, n)
    return u / max(float(np.linalg.norm(u)), 1e-12)


def net_weights(spec: NetSpec, scheme: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Initial parameters and buffers of one network, by canonical name (float32).

    * ``default``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases (the
      PyTorch default for dense and conv layers, with torch's fans); class embeddings
      N(0, 1) (torch's ``nn.Embedding``), a projection head's embedding Xavier uniform
      (as in the projection discriminator);
    * ``normal``: N(0, 0.02) weights and embeddings, zero biases, norm scales N(1, 0.02) (DCGAN);
    * ``xavier_uniform``: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), zero biases.

    Norm layers start at scale 1 and shift 0 (except ``normal``); running statistics at
    mean 0, variance 1; a spectral-norm vector ``u`` is a normalised N(0, 1) draw.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    out: dict[str, np.ndarray] = {}
    for prefix, layer, shape_in in spec.walk():
        if layer.kind == "residual":
            continue  # its sub-layers come next in the walk
        params = layer.parameters(shape_in)
        if layer.kind in ("batch_norm", "layer_norm"):
            n = params["weight"]
            scale = rng.normal(1.0, 0.02, n) if scheme == "normal" else np.ones(n)
            out[f"{prefix}weight"] = scale
            out[f"{prefix}bias"] = np.zeros(n)
        else:
            for name, shape in params.items():
                key = f"{prefix}{name}"
                if name == "embedding" or layer.kind == "embedding":
                    xavier = scheme == "xavier_uniform" or (scheme == "default" and name == "embedding")
                    if xavier:
                        bound = math.sqrt(6.0 / (shape[0] + shape[1]))
                        out[key] = rng.uniform(-bound, bound, shape)
                    else:
                        out[key] = rng.normal(0.0, 1.0 if scheme == "default" else 0.02, shape)
                    continue
                fan_in, fan_out = _fans(layer.kind, params.get("weight", shape))
                if scheme == "default":
                    bound = 1.0 / math.sqrt(fan_in)
                    out[key] = rng.uniform(-bound, bound, shape)
                elif name == "bias":
                    out[key] = np.zeros(shape)
                elif scheme == "normal":
                    out[key] = rng.normal(0.0, 0.02, shape)
                else:
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    out[key] = rng.uniform(-bound, bound, shape)
        for name, shape in layer.buffers(shape_in).items():
            if name.endswith("_u"):
                value = _normalized(rng, shape[0])
            else:
                value = np.ones(shape) if name == "running_var" else np.zeros(shape)
            out[f"{prefix}{name}"] = value
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def initial_weights(generator: NetSpec, discriminator: NetSpec, scheme: str, seed: int) -> dict[str, np.ndarray]:
    """Initial weights of both networks, prefixed ``generator.`` and ``discriminator.``."""
    rng = np.random.default_rng([seed, 0x6A4])
    g = net_weights(generator, scheme, rng)
    d = net_weights(discriminator, scheme, rng)
    return {**{f"generator.{k}": v for k, v in g.items()}, **{f"discriminator.{k}": v for k, v in d.items()}}
