"""Data-parallel training on jax: not provided (an optional part of the backend contract).

The jax backend trains in one process. :func:`init` reports that process as the
group; asked for more — ``training.distributed = "mirrored"``, or ``auto`` under a
launcher that starts several processes (``WORLD_SIZE`` from torchrun, several workers
in ``TF_CONFIG``) — it refuses in one line rather than let each process train alone.
"""

from __future__ import annotations

import json
import os

from gankit.errors import ConfigError
from gankit.protocol import ProcessGroup

#: Why a multi-process or multi-replica run is refused, and what to do instead.
REFUSAL = "the jax backend trains in one process: data-parallel training is optional and this backend has none"
HINT = "train on one process (training.distributed = 'off'), or with backend=torch or tensorflow"


def launcher_world_size() -> int:
    """How many processes a launcher started (``WORLD_SIZE``, or the workers of ``TF_CONFIG``)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        world = 1
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "") or "{}").get("cluster", {})
    except (ValueError, AttributeError):
        cluster = {}
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", [])) if isinstance(cluster, dict) else 0
    return max(world, workers, 1)


def init(mode: str = "auto", device: str = "auto") -> ProcessGroup:
    """This process alone (``mode`` off or auto outside a launcher); anything else is refused."""
    if mode == "mirrored":
        raise ConfigError(f"training.distributed = 'mirrored': {REFUSAL}", hint=HINT)
    if mode != "off" and launcher_world_size() > 1:
        raise ConfigError(f"{launcher_world_size()} processes were launched: {REFUSAL}", hint=HINT)
    return ProcessGroup()
