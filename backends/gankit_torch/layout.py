"""Where torch's parameter layouts differ from gankit's canonical ones (torch only: the
TensorFlow and jax backends keep the canonical layouts, or convert inside each layer)."""

from __future__ import annotations

from gankit import NetSpec


def transposed_names(spec: NetSpec) -> set[str]:
    """Canonical names whose torch layout is the transpose of the canonical one:
    ``nn.Linear`` stores a dense weight as ``(out, in)``, the canonical layout is ``(in, out)``."""
    return {f"{prefix}weight" for prefix, layer, _ in spec.walk() if layer.kind == "dense"}
