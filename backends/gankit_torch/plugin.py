"""Registers the torch backend. Importing this module does not import torch."""

from __future__ import annotations

import gankit


def _make_backend():
    from gankit_torch.backend import TorchBackend

    return TorchBackend()


@gankit.hookimpl
def gankit_register_backends():
    return [
        gankit.BackendRecord(
            name="torch",
            factory=_make_backend,
            requires=("torch",),
            extra="torch",
            description="PyTorch: eager steps, optional torch.compile",
        )
    ]
