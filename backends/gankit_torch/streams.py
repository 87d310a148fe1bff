"""torch's seeded random streams: a ``torch.Generator`` per stream on a device, draws from
it, and its state saved and restored (with torch's global generators) for a resumed run.
torch only: TensorFlow's and jax's random states are arrays already."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded ``torch.Generator`` on ``device`` (on cpu where the device has none)."""
    try:
        gen = torch.Generator(device=device)
    except (RuntimeError, TypeError):  # a device type without its own generator
        gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


def generator_states(generators: Mapping[str, torch.Generator], device: torch.device) -> dict[str, np.ndarray]:
    """The state of each named generator and of torch's global ones (``torch_global``, and
    ``torch_cuda`` on a GPU), as uint8 arrays: what a resumed run needs to draw the same numbers."""
    out = {name: gen.get_state().numpy().copy() for name, gen in generators.items()}
    out["torch_global"] = torch.get_rng_state().numpy().copy()
    if device.type == "cuda":
        out["torch_cuda"] = torch.cuda.get_rng_state(device).numpy().copy()
    return out


def set_generator_states(generators: Mapping[str, torch.Generator], device: torch.device,
                         state: Mapping[str, np.ndarray]) -> None:
    """Restore what :func:`generator_states` returned; KeyError for a missing stream,
    ValueError for a state torch cannot take (another torch version's, another backend's)."""
    def as_state(key):
        return torch.as_tensor(np.asarray(state[key], dtype=np.uint8))

    try:
        for name, gen in generators.items():
            gen.set_state(as_state(name))
        torch.set_rng_state(as_state("torch_global"))
        if "torch_cuda" in state and device.type == "cuda":
            torch.cuda.set_rng_state(as_state("torch_cuda"), device)
    except RuntimeError as exc:  # a state of the wrong size: torch's own message
        raise ValueError(str(exc)) from None


def draw(kind: str, shape, generator: torch.Generator, device: torch.device, dtype: torch.dtype):
    """Uniform [0, 1) or standard normal samples from ``generator``, placed on ``device``.

    Drawn on the generator's own device (a cpu generator serves devices without one)."""
    fn = torch.rand if kind == "uniform" else torch.randn
    out = fn(tuple(int(s) for s in shape), generator=generator, device=generator.device, dtype=dtype)
    return out if out.device == device else out.to(device)
