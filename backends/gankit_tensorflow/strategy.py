"""TensorFlow's data-parallel machinery (TensorFlow only): this process's
``tf.distribute`` strategy (started once by :func:`gankit_tensorflow.distributed.init`),
where a trainer creates its variables, and its step run by every replica."""

from __future__ import annotations

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

_strategy: tf.distribute.Strategy | None = None


def start_mirrored() -> tf.distribute.Strategy:
    """This process's :class:`tf.distribute.MirroredStrategy` over every visible GPU."""
    global _strategy
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] or None
    _strategy = tf.distribute.MirroredStrategy(devices=devices)
    return _strategy


def start_multi_worker() -> tf.distribute.Strategy:
    """This process's :class:`tf.distribute.MultiWorkerMirroredStrategy` (the cluster of ``TF_CONFIG``)."""
    global _strategy
    options = tf.distribute.experimental.CommunicationOptions(implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    _strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    return _strategy


def current() -> tf.distribute.Strategy | None:
    """The strategy :func:`gankit_tensorflow.distributed.init` started in this process, if any."""
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


_barrier_fn = None


def barrier() -> None:
    """All workers meet (an all-reduce of a scalar, traced once)."""
    global _barrier_fn
    if _strategy is None:
        return
    if _barrier_fn is None:
        _barrier_fn = tf.function(lambda: _strategy.reduce(
            tf.distribute.ReduceOp.SUM, _strategy.run(lambda: tf.constant(1.0)), axis=None))
    _barrier_fn()


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
