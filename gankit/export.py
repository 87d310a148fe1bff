"""Export a checkpoint's generator for inference outside gankit (ONNX).

Each backend exports with its framework's own tools (``torch.onnx.export``; tf2onnx
for TensorFlow), so a checkpoint exports from either backend; the exported model
takes latents ``z`` (batch, latent_dim) float32 — plus ``labels`` (batch,) int64 for a
class-conditional generator — and returns ``samples`` in the data's layout (images
NCHW), computing what the generator computes in eval mode (EMA weights when kept).

The exporters are optional: ``pip install 'gankit[onnx]'``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from gankit.errors import PluginError
from gankit.plugins import Registry, get_registry

DEFAULT_OPSET = 17


@dataclass
class ExportInfo:
    """What :func:`export_onnx` wrote."""

    path: Path
    backend: str
    opset: int
    inputs: list[str]


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, *, backend: str | None = None,
                opset: int | None = None, registry: Registry | None = None) -> ExportInfo:
    """Export the generator of ``checkpoint`` (run directory or checkpoint file) to the
    ONNX file ``out`` using ``backend``'s exporter (default: the backend that trained it)."""
    from gankit.restore import load_checkpoint

    if importlib.util.find_spec("onnx") is None:
        raise PluginError("ONNX export needs the onnx package", hint="pip install 'gankit[onnx]'")
    reg = registry or get_registry()
    gan = load_checkpoint(checkpoint, backend=backend, device="cpu", registry=reg)
    exporter = getattr(reg.backend(gan.backend), "export_onnx", None)
    if exporter is None:
        raise PluginError(f"the {gan.backend} backend has no ONNX exporter", hint="export with --backend torch")
    opset = opset or DEFAULT_OPSET
    inputs = exporter(gan.trainer, Path(out), opset=opset)
    return ExportInfo(path=Path(out), backend=gan.backend, opset=opset, inputs=list(inputs))


def generator(source, *, registry: Registry | None = None):
    """The trained sampling generator (the EMA one when kept) as the framework's own object,
    for use outside gankit: on torch a ``torch.nn.Module`` (eval mode), on TensorFlow a
    ``tf.Module`` (callable, its weights as ``trainable_variables``), on jax a
    ``GeneratorFunction`` (``apply(params, buffers, z)``, ``params``, ``buffers``). Each is
    called as ``gen(z)`` or, class-conditional, ``gen(z, labels)``, and holds a copy of the
    weights at the time of the call.

    ``source`` is what :func:`gankit.train` returned (a ``Run``), a loaded checkpoint
    (:func:`gankit.load_checkpoint`) or a trainer. See docs/backends.md."""
    trainer = getattr(source, "trainer", source)
    name = getattr(trainer, "backend", None)
    if not isinstance(name, str):
        raise PluginError(f"{type(source).__name__} holds no trainer",
                          hint="pass what gankit.train or gankit.load_checkpoint returned")
    make = getattr((registry or get_registry()).backend(name), "generator_module", None)
    if make is None:
        raise PluginError(f"the {name} backend does not hand out its generator module (an optional feature)",
                          hint="load the checkpoint on another backend: gankit.load_checkpoint(path, backend=...)")
    return make(trainer)
