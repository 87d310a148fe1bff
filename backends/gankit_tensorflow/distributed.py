"""Data-parallel training on TensorFlow: ``tf.distribute`` strategies.

* ``training.distributed = "mirrored"``: :class:`tf.distribute.MirroredStrategy` over every
  visible GPU of this machine (one process; the global batch is split among the GPUs).
* ``"auto"`` with ``TF_CONFIG`` naming several workers:
  :class:`tf.distribute.MultiWorkerMirroredStrategy`, one process per worker (the
  worker's task index is its rank; each worker feeds its share of the global batch).

:func:`init` starts the strategy (:mod:`gankit_tensorflow.strategy`) once per process (TensorFlow allows one
collective-ops configuration per process); the trainer builds its variables in the
strategy's scope, runs its step with ``strategy.run``, averages gradients across
replicas with the replica context's ``all_reduce`` and lets the first replica's
updates stand for all (``VariableAggregation.ONLY_FIRST_REPLICA``), so replicas stay
identical — batch-norm running statistics included, as on torch, whose trainer broadcasts
rank 0's buffers after each step.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.errors import ConfigError  # noqa: E402
from gankit.protocol import ProcessGroup  # noqa: E402

from gankit_tensorflow import strategy  # noqa: E402

_group: ProcessGroup | None = None


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise ConfigError("TF_CONFIG is not valid JSON", hint='e.g. {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}') from None


def launcher_world_size() -> int:
    """How many processes a launcher started: the workers ``TF_CONFIG`` names (1 without it)."""
    cluster = _tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", [])) or 1


def init(mode: str = "auto", device: str = "auto") -> ProcessGroup:
    """Create this process's strategy for ``mode`` (once) and report the process group."""
    global _group
    if _group is not None:
        return _group
    if mode == "off" or (mode == "auto" and launcher_world_size() <= 1):
        return ProcessGroup()
    if mode == "mirrored":
        strat = strategy.start_mirrored()
        _group = ProcessGroup(description=f"MirroredStrategy, {strat.num_replicas_in_sync} replicas")
        return _group
    cfg = _tf_config()
    task = cfg.get("task", {})
    if task.get("type", "worker") != "worker" or "chief" in cfg.get("cluster", {}):
        raise ConfigError("gankit's TF_CONFIG clusters are workers only (worker 0 writes the run)",
                          hint='use {"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}')
    strat = strategy.start_multi_worker()
    n = launcher_world_size()
    rank = int(task.get("index", 0))
    _group = ProcessGroup(rank=rank, world_size=n,
                          description=f"MultiWorkerMirroredStrategy, {n} workers, {strat.num_replicas_in_sync} replicas",
                          barrier=strategy.barrier)
    return _group


def all_reduce_mean(values):
    """``values`` averaged over the replicas in sync (returned; unchanged outside a strategy)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return values
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, values)


