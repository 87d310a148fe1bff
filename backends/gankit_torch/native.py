"""A plugin's own ``torch.nn.Module`` (a native architecture) as a torch-backend net.

:func:`build_native` calls the plugin's builder for a :class:`gankit.NativeNet`, checks
the model it returns (a module, the declared output shape, no scalar weights) and wraps
it in a :class:`NativeModule`: called like a spec-built :class:`~gankit_torch.nn.Net`
(``net(x, labels=None)``) and named like the plugin's module. Its parameters and
floating-point buffers under their own ``state_dict`` names are the canonical weights
(integer buffers such as batch norm's ``num_batches_tracked`` are not saved), so the
trainer, the optimizer state and checkpoints treat it as any other net.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gankit import ConfigError

from gankit_torch.nn import SpecNet, export_weights

BACKEND = "torch"


class NativeModule(SpecNet, nn.Module):
    """The plugin's module under gankit's calling convention; its names are the module's own."""

    def __init__(self, module: nn.Module, conditional: bool):
        super().__init__()
        self.module = module
        self.takes_labels = conditional

    def forward(self, x, labels=None):
        return self.module(x, labels) if self.takes_labels else self.module(x)

    # The plugin's names are the canonical ones: no "module." prefix.
    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        return self.module.named_parameters(prefix, recurse, remove_duplicate)

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        return self.module.named_buffers(prefix, recurse, remove_duplicate)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)


def _what(spec) -> str:
    return f"the torch builder of architecture {spec.architecture!r} ({spec.role})"


def _state_shapes(spec, module: nn.Module) -> tuple[dict, dict]:
    state = module.state_dict(keep_vars=True)
    trainable = {name for name, _ in module.named_parameters()}
    params = {k: tuple(v.shape) for k, v in state.items() if k in trainable}
    buffers = {k: tuple(v.shape) for k, v in state.items() if k not in trainable and v.is_floating_point()}
    scalars = [k for k, s in {**params, **buffers}.items() if s == ()]
    if scalars:
        raise ConfigError(f"{_what(spec)} made a model with the scalar weight {scalars[0]!r}",
                          hint="give it shape (1,): checkpoints store tensors of one axis or more")
    return params, buffers


@torch.no_grad()
def _check_output(spec, net: NativeModule) -> None:
    """Run two zero samples through the model (eval mode) and compare the output shape."""
    x = torch.zeros((2, *spec.input_shape))
    labels = torch.zeros(2, dtype=torch.long) if spec.conditional else None
    was = net.training
    net.eval()
    try:
        out = net(x, labels)
    except Exception as exc:
        raise ConfigError(f"{_what(spec)} made a model that fails on a batch of shape {tuple(x.shape)}: "
                          f"{type(exc).__name__}: {exc}") from None
    finally:
        net.train(was)
    if not isinstance(out, torch.Tensor) or tuple(out.shape[1:]) != tuple(spec.output_shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{_what(spec)} made a model that maps {tuple(x.shape)} to {got}; "
                          f"the GAN needs (batch, {', '.join(map(str, spec.output_shape))})")


def build_native(spec) -> NativeModule:
    """The plugin's module for ``spec`` (a :class:`gankit.NativeNet`), checked, wrapped,
    float32; records (or checks) its canonical names and shapes on ``spec``."""
    module = spec.build(BACKEND)
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{_what(spec)} returned {type(module).__name__}, not a torch.nn.Module")
    net = NativeModule(module, spec.conditional).float()
    net.spec = spec  # what gankit_torch.nn's weight I/O reads
    params, buffers = _state_shapes(spec, module)
    _check_output(spec, net)
    spec.record_state(params, buffers, BACKEND)
    return net


def native_weights(spec, seed: int) -> dict[str, np.ndarray]:
    """The plugin module's own initialisation of ``spec``, drawn from torch's generator
    seeded with ``seed`` (torch's global generator is left as it was), in canonical names:
    the primitive :func:`gankit.trainer.with_native_weights` calls."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_native(spec)
    return export_weights(net)
