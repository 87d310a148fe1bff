"""The framework's CPU threads for a run: ``training.threads``, or a default that is safe
on a shared machine, chosen from the usable CPUs and the size of the nets."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gankit.nets import NetSpec

if TYPE_CHECKING:
    from gankit.config import ExperimentConfig

#: Multiply-adds per training step from which a net counts as large: below it, a second
#: thread costs more in synchronisation than it saves (ring8's MLPs: 1.3e8; the mnist
#: DCGAN: 2.6e9), and on a CPU shared with other processes many times more.
LARGE_STEP_MACS = 1e9
#: The most threads chosen by default.
MAX_DEFAULT_THREADS = 8


@dataclass(frozen=True)
class Threads:
    """The framework's CPU threads for a run: how many and why (shown in the start banner)."""

    count: int
    reason: str

    def __str__(self) -> str:
        return f"{self.count} thread{'s' if self.count != 1 else ''} ({self.reason})"


def usable_cpus() -> int:
    """CPUs this process may use: its CPU affinity, capped by a cgroup CPU quota (a container)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def _layer_macs(spec) -> float | None:
    """Multiply-adds of one forward pass for one sample: each layer's parameters times the
    positions they apply at (a conv's output pixels, a transposed conv's input pixels).
    None for a native net (a plugin's own framework model: no layers to count)."""
    if not isinstance(spec, NetSpec):
        return None

    def positions(shape) -> int:
        return int(shape[-1] * shape[-2]) if len(shape) == 3 else 1

    total = 0.0
    for _, layer, shape in spec.walk():
        if any(True for _ in layer.sublayers(shape)):
            continue  # counted through its sublayers
        weights = sum(math.prod(s) for s in layer.parameters(shape).values())
        total += weights * min(positions(shape), positions(tuple(layer.output_shape(shape))))
    return total


def step_macs(cfg: ExperimentConfig, g_spec, d_spec) -> float | None:
    """Multiply-adds of one training step (forward and backward, ~3 passes), or None."""
    g, d = _layer_macs(g_spec), _layer_macs(d_spec)
    if g is None or d is None:
        return None
    t = cfg.training
    return 3.0 * t.batch_size * (t.n_critic * (g + 2 * d) + g + d)


def choose_threads(cfg: ExperimentConfig, g_spec, d_spec, cpus: int | None = None) -> Threads:
    """``training.threads`` when set; otherwise a default that is safe on a shared machine:
    1 for small nets or on 2 CPUs or fewer, else half the usable CPUs (at most 8). On a busy
    2-core machine the framework's default (a thread per core) ran 10-27x slower than 1."""
    if cfg.training.threads is not None:
        return Threads(cfg.training.threads, "training.threads")
    cpus = usable_cpus() if cpus is None else cpus
    if cpus <= 2:
        return Threads(1, f"auto: {cpus} usable CPU{'s' if cpus != 1 else ''}")
    macs = step_macs(cfg, g_spec, d_spec)
    if macs is not None and macs < LARGE_STEP_MACS:
        return Threads(1, f"auto: small nets, {macs:.2g} multiply-adds per step")
    size = "native nets" if macs is None else f"{macs:.2g} multiply-adds per step"
    return Threads(min(MAX_DEFAULT_THREADS, cpus // 2), f"auto: {size}, {cpus} usable CPUs")
