"""Speed: gankit against hand-written training loops, in one command.

The TensorFlow DCGAN tutorial's networks on 28x28 MNIST (batch 64, Adam 1e-4), trained

* by ``gankit.train`` (the whole driver: data prefetch, step, NaN guard, logging,
  TensorBoard) on the torch and tensorflow backends, and
* by a hand-written loop in plain PyTorch and in plain TensorFlow (Keras layers, the step
  a ``tf.function``, data through ``tf.data``), doing the same algorithm: one
  discriminator update on a fresh fake batch, then one generator update on fresh latents.

Each variant runs in its own process (imports and tracing are not timed); the variants
are interleaved round by round so machine noise hits all alike, and the report is the
median over rounds of gankit's seconds per step divided by the hand-written loop's, for
each backend, after ``--warmup`` steps. ``--compiled`` adds torch.compile and XLA
(``jit_compile``) on both sides. Peak memory: the process's peak RSS, and on a GPU the
framework's peak device allocation.

    python tests/benchmarks/speed.py                      # DCGAN, eager + tf.function
    python tests/benchmarks/speed.py --compiled           # also torch.compile / XLA
    python tests/benchmarks/speed.py --arch mlp --steps 200 --warmup 50   # fast sanity run
    python tests/benchmarks/speed.py --own-nets           # + a loop around gankit's own nets

``--own-nets`` adds a third contestant per backend: the same hand-written loop around
gankit's own networks and optimizer, so "gankit / own-nets" is the overhead of the engine
(driver and step) alone, and "own-nets / hand-written" that of gankit's layer
implementations (which follow torch's numerics exactly on both backends).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH, LR, LATENT = 64, 1e-4, 100
#: The clock the children time steps with: time.perf_counter (wall) or time.process_time
#: (``--clock cpu``: this process's CPU seconds, blind to other processes on a busy
#: machine; use it with ``--threads 1`` so no thread spins while waiting).
clock = time.perf_counter
MLP_HIDDEN = [256, 512]


# -- data ---------------------------------------------------------------------------
def mnist():
    """MNIST-5k as gankit serves it: (n, 1, 28, 28) float32 in [-1, 1]."""
    import gankit

    reg = gankit.get_registry()
    rec = reg.get("dataset", "mnist").record
    return rec.factory(rec.params(), seed=0).array


# -- gankit -----------------------------------------------------------------------------
def run_gankit(backend: str, arch: str, steps: int, warmup: int, compiled: bool, device: str) -> float:
    """Seconds per step of ``gankit.train`` from the driver's own timestamps (metrics.jsonl)."""
    import gankit

    net = ({"name": "dcgan"} if arch == "dcgan" else
           {"name": "mlp", "params": {"hidden": MLP_HIDDEN, "activation": "leaky_relu"}})
    with tempfile.TemporaryDirectory() as out:
        cfg = {
            "backend": backend, "device": device, "seed": 0, "data": {"name": "mnist"},
            "latent": {"dim": LATENT}, "generator": net, "discriminator": net, "loss": {"name": "non_saturating"},
            "optimizers": {r: {"name": "adam", "lr": LR, "betas": [0.9, 0.999]} for r in ("generator", "discriminator")},
            "training": {"steps": warmup + steps, "batch_size": BATCH, "log_every": warmup, "compile": compiled,
                         "num_samples": 64},
            "output": {"dir": out, "name": "bench"},
        }
        if arch == "mlp":
            cfg["generator"] = {"name": "mlp", "params": {"hidden": MLP_HIDDEN, "activation": "leaky_relu",
                                                          "norm": "batch", "output_activation": "tanh"}}
        run = gankit.train(cfg)
        times = {r["step"]: r["time"] for r in map(json.loads, (run.directory / "metrics.jsonl").read_text().splitlines())}
    return (times[warmup + steps] - times[warmup]) / steps


# -- hand-written PyTorch -------------------------------------------------------------------
def torch_models(arch: str):
    import torch
    from torch import nn

    if arch == "mlp":
        g = nn.Sequential(nn.Linear(LATENT, 256), nn.BatchNorm1d(256), nn.LeakyReLU(0.2), nn.Linear(256, 512),
                          nn.BatchNorm1d(512), nn.LeakyReLU(0.2), nn.Linear(512, 784), nn.Tanh(), nn.Unflatten(1, (1, 28, 28)))
        d = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.LeakyReLU(0.2), nn.Linear(256, 512), nn.LeakyReLU(0.2),
                          nn.Linear(512, 1))
        return g, d
    bn = dict(momentum=0.01, eps=1e-3)
    g = nn.Sequential(
        nn.Linear(LATENT, 7 * 7 * 256, bias=False), nn.BatchNorm1d(7 * 7 * 256, **bn), nn.LeakyReLU(0.3),
        nn.Unflatten(1, (256, 7, 7)),
        nn.ConvTranspose2d(256, 128, 5, 1, 2, bias=False), nn.BatchNorm2d(128, **bn), nn.LeakyReLU(0.3),
        nn.ConvTranspose2d(128, 64, 5, 2, 2, output_padding=1, bias=False), nn.BatchNorm2d(64, **bn), nn.LeakyReLU(0.3),
        nn.ConvTranspose2d(64, 1, 5, 2, 2, output_padding=1, bias=False), nn.Tanh())
    d = nn.Sequential(
        nn.Conv2d(1, 64, 5, 2, 2), nn.LeakyReLU(0.3), nn.Dropout(0.3),
        nn.Conv2d(64, 128, 5, 2, 2), nn.LeakyReLU(0.3), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(128 * 7 * 7, 1))
    return g, d


def gankit_specs(arch: str):
    """gankit's own generator and discriminator specs for ``arch`` (the nets it trains)."""
    import gankit

    reg = gankit.get_registry()
    if arch == "dcgan":
        rec, params = reg.get("architecture", "dcgan").record, {}
        gp = dp = params
    else:
        rec = reg.get("architecture", "mlp").record
        gp = {"hidden": MLP_HIDDEN, "activation": "leaky_relu", "norm": "batch", "output_activation": "tanh"}
        dp = {"hidden": MLP_HIDDEN, "activation": "leaky_relu"}
    g = rec.factory(rec.params.model_validate(gp), role="generator", input_shape=(LATENT,), output_shape=(1, 28, 28))
    d = rec.factory(rec.params.model_validate(dp), role="discriminator", input_shape=(1, 28, 28), output_shape=(1,))
    return g, d


def run_torch(arch: str, steps: int, warmup: int, compiled: bool, device: str, own_nets: bool = False) -> float:
    import torch
    import torch.nn.functional as F

    dev = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    if own_nets:  # the loop around gankit's own torch modules: isolates the engine's overhead
        from gankit_torch.nn import build_net

        g, d = (build_net(spec).to(dev) for spec in gankit_specs(arch))
    else:
        g, d = (m.to(dev) for m in torch_models(arch))
    opt_g = torch.optim.Adam(g.parameters(), lr=LR, betas=(0.9, 0.999), fused=True)  # as gankit builds it
    opt_d = torch.optim.Adam(d.parameters(), lr=LR, betas=(0.9, 0.999), fused=True)  # as gankit builds it
    gc, dc = (torch.compile(g), torch.compile(d)) if compiled else (g, d)
    data = torch.from_numpy(mnist()).to(dev)
    n = len(data) // BATCH * BATCH
    perm, pos = torch.randperm(len(data), device=dev), 0

    def step():
        nonlocal perm, pos
        if pos + BATCH > n:
            perm, pos = torch.randperm(len(data), device=dev), 0
        real = data[perm[pos:pos + BATCH]]
        pos += BATCH
        with torch.no_grad():
            fake = gc(torch.randn(BATCH, LATENT, device=dev))
        real_logits, fake_logits = dc(real).view(-1), dc(fake).view(-1)
        d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        fake_logits = dc(gc(torch.randn(BATCH, LATENT, device=dev))).view(-1)
        g_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward(inputs=list(g.parameters()))
        opt_g.step()
        return d_loss, g_loss

    for _ in range(warmup):
        losses = step()
    float(losses[0])
    start = clock()
    for _ in range(steps):
        losses = step()
    float(losses[0]), float(losses[1])  # wait for the device
    return (clock() - start) / steps


# -- hand-written TensorFlow ------------------------------------------------------------------
def tf_models(arch: str):
    from tensorflow import keras
    from tensorflow.keras import layers

    if arch == "mlp":
        g = keras.Sequential([keras.Input((LATENT,)), layers.Dense(256), layers.BatchNormalization(), layers.LeakyReLU(0.2),
                              layers.Dense(512), layers.BatchNormalization(), layers.LeakyReLU(0.2),
                              layers.Dense(784, activation="tanh"), layers.Reshape((28, 28, 1))])
        d = keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(), layers.Dense(256), layers.LeakyReLU(0.2),
                              layers.Dense(512), layers.LeakyReLU(0.2), layers.Dense(1)])
        return g, d
    # The TensorFlow DCGAN tutorial's make_generator_model / make_discriminator_model.
    g = keras.Sequential([
        keras.Input((LATENT,)), layers.Dense(7 * 7 * 256, use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Reshape((7, 7, 256)),
        layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(1, (5, 5), strides=(2, 2), padding="same", use_bias=False, activation="tanh")])
    d = keras.Sequential([
        keras.Input((28, 28, 1)), layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Flatten(), layers.Dense(1)])
    return g, d


class _OwnNet:
    """gankit's TensorFlowNet with the Keras-model surface the hand-written loop uses."""

    def __init__(self, spec):
        from gankit_tensorflow.nn import TensorFlowNet

        self.net = TensorFlowNet(spec)
        self.trainable_variables = list(self.net.parameters)

    def __call__(self, x, training=False):
        return self.net(x, training=training)


class _OwnAdam:
    def __init__(self, net):
        from gankit import OptimizerSettings
        from gankit_tensorflow.optim import build_optimizer

        self.opt = build_optimizer(net.net.params, OptimizerSettings("adam", LR, betas=(0.9, 0.999)))

    def apply_gradients(self, pairs):
        self.opt.apply([g for g, _ in pairs])


def run_tf(arch: str, steps: int, warmup: int, compiled: bool, device: str, own_nets: bool = False) -> float:
    import numpy as np
    import tensorflow as tf

    tf.random.set_seed(0)
    bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    if own_nets:  # the loop around gankit's own nets and optimizer: isolates the engine's overhead
        g, d = (_OwnNet(spec) for spec in gankit_specs(arch))
        opt_g, opt_d = _OwnAdam(g), _OwnAdam(d)
        images = mnist()  # gankit's nets take NCHW
    else:
        g, d = tf_models(arch)
        opt_g, opt_d = tf.keras.optimizers.Adam(LR), tf.keras.optimizers.Adam(LR)
        images = np.transpose(mnist(), (0, 2, 3, 1))  # NHWC, the tutorial's layout
    data = iter(tf.data.Dataset.from_tensor_slices(images).shuffle(len(images)).batch(BATCH, drop_remainder=True)
                .repeat().prefetch(tf.data.AUTOTUNE))

    @tf.function(jit_compile=compiled or None)
    def step(real):
        with tf.GradientTape() as tape:
            fake = g(tf.random.normal([BATCH, LATENT]), training=True)
            real_logits, fake_logits = d(real, training=True), d(tf.stop_gradient(fake), training=True)
            d_loss = bce(tf.ones_like(real_logits), real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
        opt_d.apply_gradients(zip(tape.gradient(d_loss, d.trainable_variables), d.trainable_variables))
        with tf.GradientTape() as tape:
            fake_logits = d(g(tf.random.normal([BATCH, LATENT]), training=True), training=True)
            g_loss = bce(tf.ones_like(fake_logits), fake_logits)
        opt_g.apply_gradients(zip(tape.gradient(g_loss, g.trainable_variables), g.trainable_variables))
        return d_loss, g_loss

    for _ in range(warmup):
        losses = step(next(data))
    float(losses[0])
    start = clock()
    for _ in range(steps):
        losses = step(next(data))
    float(losses[0]), float(losses[1])
    return (clock() - start) / steps


# -- hand-written jax ----------------------------------------------------------------------
def jax_models(arch: str):
    """``(init(key) -> (params, state), apply(params, state, x, train, key) -> (y, state))`` for
    G and D in plain jax (NHWC, as one writes it by hand): the same nets as torch_models."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def dense(key, n_in, n_out, bias=True):
        bound = 1 / n_in ** 0.5
        p = {"w": jax.random.uniform(key, (n_in, n_out), jnp.float32, -bound, bound)}
        if bias:
            p["b"] = jnp.zeros(n_out, jnp.float32)
        return p

    def bn_init(c):
        return {"g": jnp.ones(c), "b": jnp.zeros(c)}, {"m": jnp.zeros(c), "v": jnp.ones(c)}

    def bn(p, s, x, momentum=0.1, eps=1e-5):
        axes = tuple(range(x.ndim - 1))
        mean, var = jnp.mean(x, axes), jnp.var(x, axes)
        n = x.size // x.shape[-1]
        s = {"m": (1 - momentum) * s["m"] + momentum * mean, "v": (1 - momentum) * s["v"] + momentum * var * n / (n - 1)}
        return (x - mean) / jnp.sqrt(var + eps) * p["g"] + p["b"], s

    def leaky(x, a):
        return jnp.where(x >= 0, x, a * x)

    keys = iter(jax.random.split(jax.random.PRNGKey(0), 16))
    if arch == "mlp":
        sizes_g, sizes_d = [LATENT, 256, 512, 784], [784, 256, 512, 1]
        gp = {"l": [dense(next(keys), a, b) for a, b in zip(sizes_g, sizes_g[1:])], "bn": [bn_init(256)[0], bn_init(512)[0]]}
        gs = [bn_init(256)[1], bn_init(512)[1]]
        dp = {"l": [dense(next(keys), a, b) for a, b in zip(sizes_d, sizes_d[1:])]}

        def g_apply(p, s, z, key):
            h, new = z, []
            for i in range(2):
                h, si = bn(p["bn"][i], s[i], h @ p["l"][i]["w"] + p["l"][i]["b"])
                h, new = leaky(h, 0.2), new + [si]
            return jnp.tanh(h @ p["l"][2]["w"] + p["l"][2]["b"]).reshape(-1, 28, 28, 1), new

        def d_apply(p, x, key):
            h = x.reshape(x.shape[0], -1)
            for i in range(2):
                h = leaky(h @ p["l"][i]["w"] + p["l"][i]["b"], 0.2)
            return h @ p["l"][2]["w"] + p["l"][2]["b"]

        return (gp, gs), dp, g_apply, d_apply

    def conv_w(key, k, c_in, c_out):
        bound = 1 / (c_in * k * k) ** 0.5
        return jax.random.uniform(key, (k, k, c_in, c_out), jnp.float32, -bound, bound)

    gp = {"l0": dense(next(keys), LATENT, 7 * 7 * 256, bias=False)["w"], "t1": conv_w(next(keys), 5, 256, 128),
          "t2": conv_w(next(keys), 5, 128, 64), "t3": conv_w(next(keys), 5, 64, 1),
          "bn": [bn_init(c)[0] for c in (7 * 7 * 256, 128, 64)]}
    gs = [bn_init(c)[1] for c in (7 * 7 * 256, 128, 64)]
    dp = {"c1": conv_w(next(keys), 5, 1, 64), "b1": jnp.zeros(64), "c2": conv_w(next(keys), 5, 64, 128),
          "b2": jnp.zeros(128), "l": dense(next(keys), 128 * 7 * 7, 1)}
    dn = ("NHWC", "HWIO", "NHWC")

    def g_apply(p, s, z, key):
        h, s0 = bn(p["bn"][0], s[0], z @ p["l0"], 0.01, 1e-3)
        h = leaky(h, 0.3).reshape(-1, 7, 7, 256)
        new = [s0]
        for i, (name, stride) in enumerate((("t1", 1), ("t2", 2)), start=1):
            h = lax.conv_transpose(h, p[name], (stride, stride), "SAME", dimension_numbers=dn)
            h, si = bn(p["bn"][i], s[i], h, 0.01, 1e-3)
            h, new = leaky(h, 0.3), new + [si]
        return jnp.tanh(lax.conv_transpose(h, p["t3"], (2, 2), "SAME", dimension_numbers=dn)), new

    def d_apply(p, x, key):
        k1, k2 = jax.random.split(key)
        h = x
        for (c, b), k in ((("c1", "b1"), k1), (("c2", "b2"), k2)):
            h = leaky(lax.conv_general_dilated(h, p[c], (2, 2), "SAME", dimension_numbers=dn) + p[b], 0.3)
            h = h * (jax.random.uniform(k, h.shape) >= 0.3) / 0.7
        h = h.reshape(h.shape[0], -1)
        return h @ p["l"]["w"] + p["l"]["b"]

    return (gp, gs), dp, g_apply, d_apply


def run_jax(arch: str, steps: int, warmup: int, compiled: bool, device: str, own_nets: bool = False) -> float:
    """The same algorithm as a hand-written jax loop: one ``jax.jit`` step, optax's Adam."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    def bce(logits, target):  # binary cross-entropy with logits, as torch's
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)))

    images = mnist()
    if own_nets:  # the loop around gankit's own jax nets and optimizer: the engine's overhead alone
        from gankit import OptimizerSettings
        from gankit.initializers import initial_weights
        from gankit_jax.nn import build_net, load_weights
        from gankit_jax.optim import Optimizer

        g_spec, d_spec = gankit_specs(arch)
        w = initial_weights(g_spec, d_spec, "default", 0)
        g_net, d_net = build_net(g_spec), build_net(d_spec)
        (gp, gs), (dp, ds) = ((lambda n: (n.params, n.buffers))(
            load_weights(net, {k[len(r) + 1:]: v for k, v in w.items() if k.startswith(r + ".")}))
            for net, r in ((g_net, "generator"), (d_net, "discriminator")))
        adam = Optimizer(OptimizerSettings("adam", LR, betas=(0.9, 0.999)))

        def g_apply(p, s, z, key):
            return g_net.apply(p, s, z, training=True, key=key)

        def d_apply(p, x, key):  # D's buffers (none in these nets) are not kept
            return d_net.apply(p, ds, x, training=True, key=key)[0]

        opt = (adam.init(gp), adam.init(dp))

        def update(grads, state, params):
            return adam.update(grads, state, params, LR)
    else:
        images = np.transpose(images, (0, 2, 3, 1))  # NHWC
        (gp, gs), dp, g_apply, d_apply = jax_models(arch)
        tx = optax.adam(LR, b1=0.9, b2=0.999)
        opt = (tx.init(gp), tx.init(dp))

        def update(grads, state, params):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

    @jax.jit
    def step(gp, gs, dp, opt, real, key):
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        fake, gs = g_apply(gp, gs, jax.random.normal(k1, (BATCH, LATENT)), k2)
        fake = jax.lax.stop_gradient(fake)

        def d_loss_fn(dp):
            return bce(d_apply(dp, real, k3), 1.0) + bce(d_apply(dp, fake, k3), 0.0)

        d_loss, grads = jax.value_and_grad(d_loss_fn)(dp)
        dp, opt_d = update(grads, opt[1], dp)

        def g_loss_fn(gp):
            out, new = g_apply(gp, gs, jax.random.normal(k4, (BATCH, LATENT)), k5)
            return bce(d_apply(dp, out, k5), 1.0), new

        (g_loss, gs), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(gp)
        gp, opt_g = update(grads, opt[0], gp)
        return gp, gs, dp, (opt_g, opt_d), jnp.stack([d_loss, g_loss])

    rng = np.random.default_rng(0)
    key = jax.random.PRNGKey(0)
    order, pos = rng.permutation(len(images)), 0

    def one():
        nonlocal order, pos, key, gp, gs, dp, opt
        if pos + BATCH > len(images):
            order, pos = rng.permutation(len(images)), 0
        real = images[order[pos:pos + BATCH]]
        pos += BATCH
        key, sub = jax.random.split(key)
        gp, gs, dp, opt, losses = step(gp, gs, dp, opt, real, sub)
        return losses

    for _ in range(warmup):
        losses = one()
    np.asarray(losses)
    start = clock()
    for _ in range(steps):
        losses = np.asarray(one())  # the losses to the host every step, as gankit's driver does
    return (clock() - start) / steps


# -- one variant per process -------------------------------------------------------------
VARIANTS = {
    "gankit-torch": lambda a: run_gankit("torch", a.arch, a.steps, a.warmup, a.compile, a.device),
    "torch": lambda a: run_torch(a.arch, a.steps, a.warmup, a.compile, a.device),
    "gankit-tensorflow": lambda a: run_gankit("tensorflow", a.arch, a.steps, a.warmup, a.compile, a.device),
    "tensorflow": lambda a: run_tf(a.arch, a.steps, a.warmup, a.compile, a.device),
    "torch-own-nets": lambda a: run_torch(a.arch, a.steps, a.warmup, a.compile, a.device, own_nets=True),
    "tensorflow-own-nets": lambda a: run_tf(a.arch, a.steps, a.warmup, a.compile, a.device, own_nets=True),
    "gankit-jax": lambda a: run_gankit("jax", a.arch, a.steps, a.warmup, a.compile, a.device),
    "jax": lambda a: run_jax(a.arch, a.steps, a.warmup, a.compile, a.device),
    "jax-own-nets": lambda a: run_jax(a.arch, a.steps, a.warmup, a.compile, a.device, own_nets=True),
}


def _peak_device_mb(variant: str) -> float | None:
    try:
        if "jax" in variant:
            return None
        if "torch" in variant:
            import torch

            if torch.cuda.is_available():
                return torch.cuda.max_memory_allocated() / 2**20
        else:
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:
        return None
    return None


def child(args) -> None:
    global clock
    if args.clock == "cpu":
        clock = time.process_time
        time.perf_counter = time.process_time  # the gankit driver's timestamps too (this process only)
    seconds = VARIANTS[args.child](args)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print("RESULT " + json.dumps({"variant": args.child, "seconds": seconds, "peak_rss_mb": rss_mb,
                                  "peak_device_mb": _peak_device_mb(args.child)}))


def spawn(variant: str, args, compiled: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--arch", args.arch, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--device", args.device, "--clock", args.clock] + (["--compile"] if compiled else [])
    env = {**os.environ, "GANKIT_BACKEND": ""}
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), TF_NUM_INTRAOP_THREADS=str(args.threads),
                   TF_NUM_INTEROP_THREADS="1")
        if args.threads == 1:  # jax: XLA's one-thread CPU flags, as training.threads = 1 sets them
            env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            # ... and one CPU for the whole process: XLA's runtime sizes its pool by the CPUs the
            # process may use whatever the flags say (jax-ml/jax#1539), and a second pool thread
            # waiting for work spins, which a CPU clock counts. Every variant alike.
    cpus = sorted(os.sched_getaffinity(0)) if args.threads == 1 and hasattr(os, "sched_getaffinity") else []
    pin = (lambda: os.sched_setaffinity(0, {cpus[-1]})) if cpus else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=pin)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{variant} failed:\n{proc.stderr[-3000:]}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=["dcgan", "mlp"], default="dcgan")
    p.add_argument("--steps", type=int, default=20, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (tracing, compiling, caches)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the report is the median)")
    p.add_argument("--backends", default="torch,tensorflow")
    p.add_argument("--compiled", action="store_true", help="also torch.compile and XLA jit_compile")
    p.add_argument("--only-compiled", action="store_true", help="only the compiled variants")
    p.add_argument("--device", default="cpu")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall seconds, or the process's CPU seconds (robust on a busy machine; with --threads 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="intra-op threads per process (0: the frameworks' default); 1 also confines each process "
                        "to one CPU, the only way to give jax's runtime one thread")
    p.add_argument("--own-nets", action="store_true",
                   help="also a hand-written loop around gankit's own nets and optimizer (the engine's overhead alone)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return {}
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    modes = ([] if args.only_compiled else [False]) + ([True] if args.compiled or args.only_compiled else [])
    results: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        for compiled in modes:
            for b in backends:
                pair = [f"gankit-{b}", b] if r % 2 == 0 else [b, f"gankit-{b}"]  # alternate who goes first
                if args.own_nets:
                    pair.append(f"{b}-own-nets")
                for v in pair:
                    res = spawn(v, args, compiled)
                    results.setdefault(f"{v}{' compiled' if compiled else ''}", []).append(res)
                    print(f"round {r + 1}: {v:18s} {'compiled' if compiled else 'eager   '} "
                          f"{res['seconds'] * 1e3:9.2f} ms/step  peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    report = {"arch": args.arch, "batch": BATCH, "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
              "device": args.device, "ratios": {}, "ms_per_step": {}, "peak_rss_mb": {}, "peak_device_mb": {}}
    report["clock"], report["threads"] = args.clock, args.threads or "default"
    print(f"\n{args.arch}, batch {BATCH}, {args.steps} timed steps after {args.warmup}, median of {args.rounds} rounds, "
          f"{args.clock} clock, {args.threads or 'default'} threads")
    print(f"{'backend':28s} {'gankit ms':>10s} {'hand ms':>10s} {'ratio':>7s} {'gankit MB':>10s} {'hand MB':>9s}")
    for compiled in modes:
        suffix = " compiled" if compiled else ""
        for b in backends:
            ours, theirs = results[f"gankit-{b}{suffix}"], results[f"{b}{suffix}"]
            per_round = [o["seconds"] / t["seconds"] for o, t in zip(ours, theirs)]
            ratio = statistics.median(per_round)
            key = f"{b}{suffix}"
            report["ratios"][key] = round(ratio, 4)
            report.setdefault("round_ratios", {})[key] = [round(r, 3) for r in per_round]
            report["ms_per_step"][key] = {"gankit": round(statistics.median(o["seconds"] for o in ours) * 1e3, 3),
                                          "hand_written": round(statistics.median(t["seconds"] for t in theirs) * 1e3, 3)}
            report["peak_rss_mb"][key] = {"gankit": round(max(o["peak_rss_mb"] for o in ours)),
                                          "hand_written": round(max(t["peak_rss_mb"] for t in theirs))}
            dev = [o["peak_device_mb"] for o in ours], [t["peak_device_mb"] for t in theirs]
            if all(x is not None for x in dev[0] + dev[1]):
                report["peak_device_mb"][key] = {"gankit": round(max(dev[0])), "hand_written": round(max(dev[1]))}
            label = f"{b} ({'torch.compile' if b == 'torch' else 'XLA'})" if compiled else b
            if b == "jax":
                label = "jax (jit, both sides)"
            ms = report["ms_per_step"][key]
            mb = report["peak_rss_mb"][key]
            print(f"{label:28s} {ms['gankit']:10.2f} {ms['hand_written']:10.2f} {ratio:7.3f} {mb['gankit']:10d} {mb['hand_written']:9d}")
            own = results.get(f"{b}-own-nets{suffix}")
            if own:
                engine = statistics.median(o["seconds"] / t["seconds"] for o, t in zip(ours, own))
                report["ratios"][f"{key} engine"] = round(engine, 4)
                own_ms = statistics.median(t["seconds"] for t in own) * 1e3
                print(f"{'  vs loop on gankit nets':28s} {ms['gankit']:10.2f} {own_ms:10.2f} {engine:7.3f}")
    for key, rounds in report.get("round_ratios", {}).items():
        print(f"per-round ratios, {key}: {', '.join(f'{r:.3f}' for r in rounds)}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
