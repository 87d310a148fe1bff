"""Export a trainer's generator: to ONNX with ``torch.onnx.export``, or as a ``torch.nn.Module``."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import torch

from gankit.errors import ConfigError


class _Sampler(torch.nn.Module):
    """The generator as ONNX sees it: ``z`` (and ``labels``) in, ``samples`` out."""

    def __init__(self, net: torch.nn.Module, conditional: bool):
        super().__init__()
        self.net, self.conditional = net, conditional

    def forward(self, z, labels=None):
        return self.net(z, labels) if self.conditional else self.net(z)


def _sampling_net(trainer) -> torch.nn.Module:
    """The trainer's live sampling generator: its EMA one (``trainer.ema``) when it keeps one."""
    return trainer.ema if trainer.sampler == "generator_ema" else trainer.nets["generator"]


def export_generator(trainer, path: str | Path, opset: int = 17) -> list[str]:
    """Write the trainer's sampling generator (the EMA one when it keeps one) in eval
    mode as ONNX; returns the input names. The batch axis is dynamic."""
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as most

    if opset > most:
        raise ConfigError(f"the torch exporter writes ONNX opsets up to {most}, not {opset}",
                          hint=f"leave out --opset for opset 17, or choose one up to {most}")
    net = _sampling_net(trainer)
    spec = trainer.setup.generator
    conditional = bool(spec.conditional)
    model = _Sampler(copy.deepcopy(net).to("cpu").float(), conditional).eval()
    z = torch.zeros(2, int(spec.input_shape[0]))
    args = (z, torch.zeros(2, dtype=torch.int64)) if conditional else (z,)
    names = ["z", "labels"] if conditional else ["z"]
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        # The TorchScript-based exporter: quick, and exact for every layer of the vocabulary.
        torch.onnx.export(model, args, buffer, input_names=names, output_names=["samples"],
                          dynamic_axes={name: {0: "batch"} for name in (*names, "samples")},
                          opset_version=opset, dynamo=False)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(buffer.getvalue())
    return names


def generator_module(trainer) -> torch.nn.Module:
    """The trainer's sampling generator (the EMA one when it keeps one) as a
    ``torch.nn.Module`` in eval mode: a copy, so using or training it leaves the trainer
    alone. Call it as ``gen(z)`` or, class-conditional, ``gen(z, labels)``."""
    net = _sampling_net(trainer)
    return copy.deepcopy(net).eval()
