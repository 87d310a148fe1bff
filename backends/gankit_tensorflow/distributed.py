"""Data-parallel training on TensorFlow: ``tf.distribute`` strategies.

* ``training.distributed = "mirrored"``: :class:`tf.distribute.MirroredStrategy` over every
  visible GPU of this machine (one process; the global batch is split among the GPUs).
* ``"auto"`` with ``TF_CONFIG`` naming several workers:
  :class:`tf.distribute.MultiWorkerMirroredStrategy`, one process per worker (the
  worker's task index is its rank; each worker feeds its share of the global batch).

:func:`init` creates the strategy once per process (TensorFlow allows one
collective-ops configuration per process); the trainer builds its variables in the
strategy's scope, runs its step with ``strategy.run``, averages gradients across
replicas with the replica context's ``all_reduce`` and lets the first replica's
updates stand for all (``VariableAggregation.ONLY_FIRST_REPLICA``), so replicas stay
identical — batch-norm running statistics included, as on torch, whose trainer broadcasts
rank 0's buffers after each step.
"""

from __future__ import annotations

import contextlib
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.errors import ConfigError  # noqa: E402
from gankit.protocol import ProcessGroup  # noqa: E402

_strategy: tf.distribute.Strategy | None = None
_group: ProcessGroup | None = None


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise ConfigError("TF_CONFIG is not valid JSON", hint='e.g. {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}') from None


def workers() -> int:
    """The number of workers ``TF_CONFIG`` names (1 without it)."""
    cluster = _tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", [])) or 1


def init(mode: str = "auto", device: str = "auto") -> ProcessGroup:
    """Create this process's strategy for ``mode`` (once) and report the process group."""
    global _strategy, _group
    if _group is not None:
        return _group
    if mode == "off" or (mode == "auto" and workers() <= 1):
        return ProcessGroup()
    if mode == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or None
        _strategy = tf.distribute.MirroredStrategy(devices=devices)
        _group = ProcessGroup(description=f"MirroredStrategy, {_strategy.num_replicas_in_sync} replicas")
        return _group
    cfg = _tf_config()
    task = cfg.get("task", {})
    if task.get("type", "worker") != "worker" or "chief" in cfg.get("cluster", {}):
        raise ConfigError("gankit's TF_CONFIG clusters are workers only (worker 0 writes the run)",
                          hint='use {"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}')
    options = tf.distribute.experimental.CommunicationOptions(implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    _strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    n = workers()
    rank = int(task.get("index", 0))
    _group = ProcessGroup(rank=rank, world_size=n,
                          description=f"MultiWorkerMirroredStrategy, {n} workers, {_strategy.num_replicas_in_sync} replicas",
                          barrier=_barrier)
    return _group


_barrier_fn = None


def _barrier() -> None:
    """All workers meet (an all-reduce of a scalar, traced once)."""
    global _barrier_fn
    if _strategy is None:
        return
    if _barrier_fn is None:
        _barrier_fn = tf.function(lambda: _strategy.reduce(
            tf.distribute.ReduceOp.SUM, _strategy.run(lambda: tf.constant(1.0)), axis=None))
    _barrier_fn()


def strategy() -> tf.distribute.Strategy | None:
    """The strategy :func:`init` created in this process, if any."""
    return _strategy


def _first_replica(next_creator, **kwargs):
    # Updates happen in replica context with identical values on every replica (the
    # gradients are all-reduced first): the first replica's stand for all.
    kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
    return next_creator(**kwargs)


@contextlib.contextmanager
def variable_scope(strat: tf.distribute.Strategy | None, device: str):
    """Where a trainer creates its variables: the strategy's scope (mirrored, first-replica
    aggregation), or simply ``device``."""
    if strat is None:
        with tf.device(device):
            yield
        return
    with strat.scope(), tf.variable_creator_scope(_first_replica):
        yield


def all_reduce_mean(values):
    """Mean over the replicas in sync (identity outside a strategy)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return values
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, values)


def replicated(strat: tf.distribute.Strategy, step, rank: int, world_size: int):
    """``step(real_batches, hyper, *labels)`` run by every replica of ``strat`` (each with
    its slice of this worker's batches and labels), its results averaged over replicas."""

    def run(*args):
        per_replica = strat.run(lambda *a: _replica_step(step, rank, world_size, *a), args=args)
        return strat.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    return run


def _replica_step(step, rank: int, world_size: int, real_batches, hyper, *labels):
    """``step`` as one replica: with several replicas on this worker (MirroredStrategy),
    each takes its slice of the worker's batches and labels."""
    ctx = tf.distribute.get_replica_context()
    replica, replicas = (0, 1) if ctx is None else (ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync)
    local = replicas // world_size
    if local > 1:
        i = replica - rank * local
        b = tf.shape(real_batches)[1] // local
        real_batches = real_batches[:, i * b:(i + 1) * b]
        labels = tuple(y[:, i * b:(i + 1) * b] for y in labels)
    return step(real_batches, hyper, *labels)
