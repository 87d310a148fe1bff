"""The trained generator for use outside gankit: a jax function with its params.

ONNX export is an optional feature of the backend contract that this backend does not
provide (jax has no ONNX exporter of its own): ``gankit export`` on the jax backend
says so in one line; export the same checkpoint with ``--backend torch`` or
``--backend tensorflow``, which read it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax

from gankit_jax.nn import load_weights


@dataclass(frozen=True)
class GeneratorFunction:
    """A generator as jax sees it: ``apply(params, buffers, z, labels=None)`` is a pure,
    jittable, differentiable function (eval mode, float32); ``params`` and ``buffers``
    are dicts of jax arrays by canonical name. Calling the object applies it to its own
    weights: ``gen(z)`` or, class-conditional, ``gen(z, labels)``."""

    apply: Any
    params: dict
    buffers: dict
    conditional: bool

    def __call__(self, z, labels=None):
        if self.conditional and labels is None:
            raise ValueError("the generator is class-conditional: call it with labels")
        return self.apply(self.params, self.buffers, z, labels if self.conditional else None)


def generator_module(trainer) -> GeneratorFunction:
    """The trainer's sampling generator (the EMA one when it keeps one), its weights a
    snapshot of the trainer's at the time of the call (read through the trainer's public
    ``export_weights``)."""
    loaded = load_weights(trainer.nets["generator"], trainer.export_weights(trainer.sampler))
    return GeneratorFunction(apply=jax.jit(loaded.net.__call__), params=loaded.params, buffers=loaded.buffers,
                             conditional=loaded.net.conditional)
