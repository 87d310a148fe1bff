"""``torch.compile`` of a network (with a fallback to eager when this machine cannot compile),
and the forwards a trainer calls: through DDP where a net is trained, plain elsewhere."""

from __future__ import annotations

import warnings

import torch


class Compiled:
    """``torch.compile(module)``, falling back to the eager module (with one warning)
    when compilation fails on this machine (no C compiler, unsupported device, ...)."""

    def __init__(self, module: torch.nn.Module, label: str, options: dict | None = None):
        self.eager = module
        self.compiled = torch.compile(module, **(options or {}))
        self.label = label
        self.failed = False

    def __call__(self, *args):
        if self.failed:
            return self.eager(*args)
        try:
            return self.compiled(*args)
        except Exception as exc:
            out = self.eager(*args)  # a genuine error in the model raises here, unwrapped
            self.failed = True
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            warnings.warn(
                f"torch.compile could not compile the {self.label} ({type(exc).__name__}: {first}); "
                "running it eagerly",
                RuntimeWarning,
                stacklevel=2,
            )
            return out


def forwards(nets: dict, parallel: dict, compile_options: dict | None) -> tuple[list, list]:
    """Each net's two forwards, in the order of ``nets``: where it is trained (through its
    DDP wrapper in ``parallel``, whose backward averages its gradients) and where it only
    serves the other net's update (the plain module: no DDP bookkeeping, no all-reduce);
    both compiled (``torch.compile(**compile_options)``) unless ``compile_options`` is None."""
    trained = [parallel.get(role, net) for role, net in nets.items()]
    plain = list(nets.values())
    if compile_options is not None:
        trained = [Compiled(net, role, compile_options) for net, role in zip(trained, nets)]
        plain = [Compiled(net, role, compile_options) for net, role in zip(plain, nets)] if parallel else trained
    return trained, plain
