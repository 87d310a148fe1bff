"""Neutral weight initialisation: numpy, seeded, identical for every backend.

Because initial weights are drawn here rather than by each framework, the same seed
gives the same starting network on torch and tensorflow.
"""

from __future__ import annotations

import math

import numpy as np

from gankit.nets import NetSpec

SCHEMES = ("default", "normal", "xavier_uniform")


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    # dense weights are (in, out)
    return shape[0], shape[-1]


def net_weights(spec: NetSpec, scheme: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Initial parameters and buffers of one network, by canonical name (float32).

    * ``default``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases (the
      PyTorch default for dense layers);
    * ``normal``: N(0, 0.02) weights, zero biases, norm scales N(1, 0.02) (DCGAN);
    * ``xavier_uniform``: U(-a, a), a = sqrt(6 / (fan_in + fan_out)), zero biases.

    Norm layers start at scale 1 and shift 0 (except ``normal``); running
    statistics at mean 0, variance 1.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    out: dict[str, np.ndarray] = {}
    shapes = spec.shapes()
    for i, layer in enumerate(spec.layers):
        params = layer.parameters(shapes[i])
        if layer.kind in ("batch_norm", "layer_norm"):
            n = params["weight"]
            scale = rng.normal(1.0, 0.02, n) if scheme == "normal" else np.ones(n)
            out[f"{i}.weight"] = scale
            out[f"{i}.bias"] = np.zeros(n)
        else:
            for name, shape in params.items():
                fan_in, fan_out = _fans(params.get("weight", shape))
                if scheme == "default":
                    bound = 1.0 / math.sqrt(fan_in)
                    out[f"{i}.{name}"] = rng.uniform(-bound, bound, shape)
                elif name == "bias":
                    out[f"{i}.{name}"] = np.zeros(shape)
                elif scheme == "normal":
                    out[f"{i}.{name}"] = rng.normal(0.0, 0.02, shape)
                else:
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    out[f"{i}.{name}"] = rng.uniform(-bound, bound, shape)
        for name, shape in layer.buffers(shapes[i]).items():
            out[f"{i}.{name}"] = np.ones(shape) if name == "running_var" else np.zeros(shape)
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def initial_weights(generator: NetSpec, discriminator: NetSpec, scheme: str, seed: int) -> dict[str, np.ndarray]:
    """Initial weights of both networks, prefixed ``generator.`` and ``discriminator.``."""
    rng = np.random.default_rng([seed, 0x6A4])
    g = net_weights(generator, scheme, rng)
    d = net_weights(discriminator, scheme, rng)
    return {**{f"generator.{k}": v for k, v in g.items()}, **{f"discriminator.{k}": v for k, v in d.items()}}
