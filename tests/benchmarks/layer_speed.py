"""Layer speed: gankit's TensorFlow nets against the Keras tutorial models, forward + backward.

The DCGAN tutorial's generator and discriminator (as in ``speed.py``) built by gankit
(:class:`gankit_tensorflow.nn.TensorFlowNet`) and by Keras, each a ``tf.function`` that
runs the net in training mode and takes the gradient of ``sum(output ** 2)`` with respect
to its trainable variables; and batch norm alone on the generator's 4D and 2D
activations. One process (imports and tracing untimed), variants interleaved block by
block; the report is each variant's median CPU time per call over the blocks and the op
count of its traced graph. Weights are each side's own initialisation (the timings do not
depend on the values).

    python tests/benchmarks/layer_speed.py --threads 1 --reps 30 --blocks 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))

BATCH = 64


def _fwd_bwd(model, variables, x):
    """A tf.function: the gradient of sum(model(x, training=True) ** 2) w.r.t. ``variables``."""
    import tensorflow as tf

    @tf.function
    def f(x):
        with tf.GradientTape() as tape:
            y = model(x, training=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, variables)

    return f, x


def _op_count(fn, x) -> int:
    return len(fn.get_concrete_function(x).graph.get_operations())


def contestants():
    import numpy as np
    import tensorflow as tf
    from tensorflow.keras import layers

    import speed
    from gankit_tensorflow.nn import TensorFlowNet

    g_spec, d_spec = speed.gankit_specs("dcgan")
    g, d = TensorFlowNet(g_spec), TensorFlowNet(d_spec)
    kg, kd = speed.tf_models("dcgan")
    rng = np.random.default_rng(0)
    z = tf.constant(rng.standard_normal((BATCH, speed.LATENT)), tf.float32)
    img_nchw = tf.constant(rng.uniform(-1, 1, (BATCH, 1, 28, 28)), tf.float32)
    img_nhwc = tf.transpose(img_nchw, [0, 2, 3, 1])
    out = {
        "G gankit": _fwd_bwd(g, g.parameters, z),
        "G keras": _fwd_bwd(kg, kg.trainable_variables, z),
        "D gankit": _fwd_bwd(d, d.parameters, img_nchw),
        "D keras": _fwd_bwd(kd, kd.trainable_variables, img_nhwc),
    }
    # Per layer: batch norm on the generator's 4D and 2D activations, gankit vs Keras.
    x4 = tf.constant(rng.standard_normal((BATCH, 14, 14, 64)), tf.float32)
    kbn = layers.BatchNormalization()
    kbn.build(x4.shape)
    out["BN4d keras"] = _fwd_bwd(kbn, kbn.trainable_variables, x4)

    # gankit's batch norm alone: the generator's layer method on an NHWC tensor.
    bn_layer = g_spec.layers[-4]  # the batch norm after the second transposed conv (64 channels)
    prefix = f"{len(g_spec.layers) - 4}."

    class _GBN:
        def __call__(self, x, training=True):
            return g._layer_batch_norm(prefix, bn_layer, (64, 14, 14), x, training, None)

    gbn_vars = [g.params[prefix + "weight"], g.params[prefix + "bias"]]
    out["BN4d gankit"] = _fwd_bwd(_GBN(), gbn_vars, x4)
    x2 = tf.constant(rng.standard_normal((BATCH, 12544)), tf.float32)
    kbn2 = layers.BatchNormalization()
    kbn2.build(x2.shape)
    out["BN2d keras"] = _fwd_bwd(kbn2, kbn2.trainable_variables, x2)

    class _GBN2:
        def __call__(self, x, training=True):
            return g._layer_batch_norm("1.", g_spec.layers[1], (12544,), x, training, None)

    out["BN2d gankit"] = _fwd_bwd(_GBN2(), [g.params["1.weight"], g.params["1.bias"]], x2)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=30, help="calls per block")
    p.add_argument("--blocks", type=int, default=5, help="interleaved blocks (the report is the median)")
    p.add_argument("--only", default="", help="comma-separated name prefixes to run")
    args = p.parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cs = contestants()
    if args.only:
        cs = {k: v for k, v in cs.items() if any(k.startswith(o) for o in args.only.split(","))}
    for fn, x in cs.values():
        fn(x)
    times = {k: [] for k in cs}
    for _ in range(args.blocks):
        for k, (fn, x) in cs.items():
            start = time.process_time()
            for _ in range(args.reps):
                r = fn(x)
            float(tf.reduce_sum(r[0]))
            times[k].append((time.process_time() - start) / args.reps)
    for k, (fn, x) in cs.items():
        print(f"{k:14s} {statistics.median(times[k]) * 1e3:8.2f} ms  ops {_op_count(fn, x):4d}  "
              f"blocks {' '.join(f'{t * 1e3:.1f}' for t in times[k])}")


if __name__ == "__main__":
    main()
