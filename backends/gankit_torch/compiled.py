"""``torch.compile`` of a network, with a fallback to eager when this machine cannot compile."""

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
