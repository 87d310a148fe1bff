"""``TensorFlowTrainer``: the GAN of a :class:`gankit.TrainSetup` with its step as one ``tf.function``.

``train_step`` is traced once (fixed input signature; only the batch size is left
dynamic): ``n_critic`` discriminator updates unrolled, then one generator update, and
every reported scalar comes back to the host in a single transfer. Steps are traced
with ``autograph=False`` (tracing is several times faster): losses and regularizers
written against :class:`gankit.Ops` need no tensor-dependent Python control flow.
``setup.compile`` turns on XLA (``jit_compile=True``); its random draws differ from
the uncompiled step's, so a seed repeats exactly within one setting.

Every network call inside a training update runs in training mode, as a torch module
in ``train()`` does: batch-norm running statistics update on each call (real, fake,
penalty and generator-update calls alike), matching the torch backend.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.errors import CheckpointError, ConfigError, DataError  # noqa: E402
from gankit.init import initial_weights  # noqa: E402
from gankit.protocol import StepResult, TrainSetup  # noqa: E402

from gankit_tensorflow.device import device_name, resolve_device  # noqa: E402
from gankit_tensorflow.nn import TensorFlowNet, check_weights, export_weights, load_weights  # noqa: E402
from gankit_tensorflow.ops import TensorFlowOps  # noqa: E402
from gankit_tensorflow.optim import make_optimizer  # noqa: E402

PREFIXES = ("generator.", "discriminator.")


class TensorFlowTrainer:
    """Networks, optimizers and compiled updates for one :class:`gankit.TrainSetup`."""

    backend = "tensorflow"

    def __init__(self, setup: TrainSetup):
        _check_setup(setup)
        self.setup = setup
        #: TensorFlow's device string ("/CPU:0", "/GPU:0"); ``device`` is the neutral
        #: name ("cpu", "cuda:0") that runs and summaries report, as on torch.
        self.tf_device = resolve_device(setup.device)
        self.device = device_name(self.tf_device)
        self.step_count = 0
        self.n_critic = int(setup.n_critic)
        self.latent_dim = int(setup.latent_dim)
        self.sample_shape = tuple(setup.discriminator.input_shape)
        self.loss = setup.loss
        self.regularizers = dict(setup.regularizers)
        self.needs_real = bool(getattr(self.loss.meta, "generator_needs_real", False))
        self._has_batch_norm = any(
            layer.kind == "batch_norm" for spec in (setup.generator, setup.discriminator) for layer in spec.layers
        )
        tf.random.set_seed(setup.seed)
        with tf.device(self.tf_device):
            self.G = TensorFlowNet(setup.generator)
            self.D = TensorFlowNet(setup.discriminator)
            # Three independent streams from one seed: training latents, the ops'
            # draws (penalties), and sample() without a seed, so sampling for a
            # preview never changes the training trajectory.
            self._noise = tf.random.Generator.from_seed(setup.seed)
            ops_gen, self._sample_noise = self._noise.split(2)
            self.ops = TensorFlowOps(seed=setup.seed, generator=ops_gen)
            self.g_opt = make_optimizer(setup.g_optimizer, self.G.params)
            self.d_opt = make_optimizer(setup.d_optimizer, self.D.params)
        # Without given weights, gankit's neutral default init: the torch backend
        # starts from the very same networks.
        self.load_state_dict(
            setup.initial_weights or initial_weights(setup.generator, setup.discriminator, "default", setup.seed)
        )
        self._compile(jit=bool(setup.compile))

    # -- building blocks (traced inside tf.function) ----------------------------------
    def _latent(self, n, generator):
        shape = [n, self.latent_dim]
        if self.setup.latent_distribution == "uniform":
            return generator.uniform(shape, minval=-1.0, maxval=1.0, dtype=tf.float32)
        return generator.normal(shape, dtype=tf.float32)

    def _d_logits(self, x, training=True):
        return tf.reshape(self.D(x, training=training), [-1])

    def _d_update(self, real):
        ops = self.ops
        fake = tf.stop_gradient(self.G(self._latent(tf.shape(real)[0], self._noise), training=True))
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.D.parameters)
            real_logits = self._d_logits(real)
            fake_logits = self._d_logits(fake)
            loss = tf.cast(self.loss.discriminator(ops, real_logits, fake_logits), tf.float32)
            penalties = {
                name: tf.cast(reg(ops, self._d_logits, real, fake), tf.float32)
                for name, reg in self.regularizers.items()
            }
            total = loss + tf.math.add_n(list(penalties.values())) if penalties else loss
        grads = tape.gradient(total, self.D.parameters, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        self.d_opt.apply(grads)
        return loss, penalties, tf.math.reduce_mean(real_logits), tf.math.reduce_mean(fake_logits)

    def _g_update(self, n, real=None):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.G.parameters)
            fake = self.G(self._latent(n, self._noise), training=True)
            fake_logits = self._d_logits(fake)
            real_logits = self._d_logits(real) if self.needs_real else None
            loss = tf.cast(self.loss.generator(self.ops, fake_logits, real_logits), tf.float32)
        grads = tape.gradient(loss, self.G.parameters, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        self.g_opt.apply(grads)
        return loss

    def _train_step(self, real_batches):
        for k in range(self.n_critic):  # unrolled: n_critic is fixed per trainer
            d_loss, penalties, real_logit, fake_logit = self._d_update(real_batches[k])
        g_loss = self._g_update(tf.shape(real_batches)[1], real_batches[-1])
        # One vector, so the host fetches every scalar in one transfer.
        return tf.stack([d_loss, g_loss, real_logit, fake_logit, *penalties.values()])

    def _compile(self, jit: bool) -> None:
        sample = tf.TensorSpec([None, *self.sample_shape], tf.float32)
        batches = tf.TensorSpec([self.n_critic, None, *self.sample_shape], tf.float32)
        count = tf.TensorSpec([], tf.int32)
        latent = tf.TensorSpec([None, self.latent_dim], tf.float32)
        fn = lambda f, *sig: tf.function(f, input_signature=sig, jit_compile=jit or None, autograph=False)  # noqa: E731
        self._train_fn = fn(self._train_step, batches)
        self._d_fn = fn(lambda real: tf.stack([self._d_update(real)[0]]), sample)
        if self.needs_real:
            self._g_fn = fn(lambda n, real: self._g_update(n, real), count, sample)
        else:
            self._g_fn = fn(lambda n: self._g_update(n), count)
        evaluate = lambda f, sig: tf.function(f, input_signature=[sig], autograph=False)  # noqa: E731
        self._generate_fn = evaluate(lambda z: self.G(z, training=False), latent)
        self._discriminate_fn = evaluate(lambda x: self._d_logits(x, training=False), sample)

    def _to_tensor(self, x) -> tf.Tensor:
        return tf.convert_to_tensor(np.asarray(x, dtype=np.float32))

    def _check_batch(self, n: int) -> None:
        # Inside the traced step the batch size is dynamic, so batch norm cannot refuse a
        # single sample there (its unbiased variance would be inf); refuse it here, as torch does.
        if self._has_batch_norm and n < 2:
            raise DataError(
                f"a training batch of {n} sample{'' if n == 1 else 's'} cannot be batch-normalised",
                hint="use batches of at least 2 samples",
            )

    def _real(self, x) -> tf.Tensor:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim < 2 or x.shape[1:] != self.sample_shape:
            raise DataError(
                f"a real batch has shape {x.shape} but the discriminator expects "
                f"(batch, {', '.join(map(str, self.sample_shape))})"
            )
        return tf.convert_to_tensor(x)

    # -- the Trainer protocol ---------------------------------------------------------
    def train_step(self, real_batches: np.ndarray) -> StepResult:
        """``n_critic`` discriminator updates (one per leading slice), then one generator update."""
        real_batches = np.asarray(real_batches, dtype=np.float32)
        if self.n_critic == 1 and real_batches.shape[1:] == self.sample_shape:
            real_batches = real_batches[None]  # a single batch for n_critic = 1
        shape = real_batches.shape
        if len(shape) < 3 or shape[0] != self.n_critic or shape[2:] != self.sample_shape:
            raise DataError(
                f"train_step expects real batches of shape (n_critic={self.n_critic}, batch, "
                f"{', '.join(map(str, self.sample_shape))}), got {real_batches.shape}"
            )
        self._check_batch(real_batches.shape[1])
        with tf.device(self.tf_device):
            values = self._train_fn(self._to_tensor(real_batches)).numpy().tolist()
        self.step_count += 1
        d_loss, g_loss, real_logit, fake_logit, *penalties = values
        extras = {_extra_name(name): v for name, v in zip(self.regularizers, penalties)}
        extras.update(real_logit=real_logit, fake_logit=fake_logit)
        return StepResult(step=self.step_count, d_loss=d_loss, g_loss=g_loss, extras=extras)

    def discriminator_step(self, real: np.ndarray) -> float:
        """One discriminator update on ``real``; returns its loss (penalties excluded)."""
        real = self._real(real)
        self._check_batch(int(real.shape[0]))
        with tf.device(self.tf_device):
            return float(self._d_fn(real).numpy()[0])

    def generator_step(self, batch_size: int, real: np.ndarray | None = None) -> float:
        """One generator update on ``batch_size`` latents; ``real`` is required when the
        loss reads real logits. Does not advance ``step_count`` (``train_step`` does)."""
        self._check_batch(int(batch_size))
        n = tf.constant(int(batch_size), tf.int32)
        with tf.device(self.tf_device):
            if self.needs_real:
                if real is None:
                    raise ValueError(
                        f"{type(self.loss).__name__} reads the real logits in the generator loss; "
                        "pass real= to generator_step"
                    )
                return float(self._g_fn(n, self._real(real)).numpy())
            return float(self._g_fn(n).numpy())

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` generator samples in eval mode; a given ``seed`` repeats exactly."""
        with tf.device(self.tf_device):
            gen = tf.random.Generator.from_seed(seed) if seed is not None else self._sample_noise
            z = self._latent(int(n), gen)
            return self._generate_fn(z).numpy()

    def generate(self, z: np.ndarray) -> np.ndarray:
        """Generator outputs for latents ``z`` of shape (n, latent_dim), eval mode."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise DataError(f"latents have shape {z.shape}; expected (n, {self.latent_dim})")
        with tf.device(self.tf_device):
            return self._generate_fn(tf.convert_to_tensor(z)).numpy()

    def discriminate(self, x: np.ndarray) -> np.ndarray:
        """Discriminator logits, shape (n,), eval mode."""
        with tf.device(self.tf_device):
            return self._discriminate_fn(self._real(x)).numpy()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers of both nets, canonical and prefixed, float32 numpy."""
        return {
            **{f"generator.{k}": v for k, v in export_weights(self.G).items()},
            **{f"discriminator.{k}": v for k, v in export_weights(self.D).items()},
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Load canonical weights (from any backend); raises :class:`gankit.CheckpointError`
        on a missing, unexpected or misshapen entry, changing nothing."""
        stray = [k for k in state if not k.startswith(PREFIXES)]
        if stray:
            raise CheckpointError(
                f"weights have unexpected parameter {stray[0]!r}",
                hint="names start with 'generator.' or 'discriminator.'",
            )
        parts = {p: {k[len(p):]: v for k, v in state.items() if k.startswith(p)} for p in PREFIXES}
        # Check both nets before touching either, so a bad checkpoint changes nothing.
        nets = ((self.G, "generator."), (self.D, "discriminator."))
        for net, prefix in nets:
            check_weights(net, parts[prefix], prefix)
        for net, prefix in nets:
            load_weights(net, parts[prefix], prefix)

    def parameters_of(self, role: str) -> dict[str, np.ndarray]:
        """Trainable parameters of ``"generator"`` or ``"discriminator"`` (canonical
        names, unprefixed, numpy copies)."""
        net = {"generator": self.G, "discriminator": self.D}[role]
        return {k: np.array(v.numpy()) for k, v in net.params.items()}

    def __repr__(self) -> str:
        return f"TensorFlowTrainer(device={self.device!r}, step={self.step_count}, compile={self.setup.compile})"

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Both optimizers' step counters and slots (torch slot names), prefixed
        ``g_optimizer.`` / ``d_optimizer.``; for resuming, not part of the canonical weights."""
        return {
            **{f"g_optimizer.{k}": v for k, v in self.g_opt.state_dict().items()},
            **{f"d_optimizer.{k}": v for k, v in self.d_opt.state_dict().items()},
        }

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Load what :meth:`optimizer_state` (of either backend) wrote; both optimizers
        are checked before either changes."""
        parts = [
            (opt, prefix, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            for opt, prefix in ((self.g_opt, "g_optimizer."), (self.d_opt, "d_optimizer."))
        ]
        for opt, prefix, part in parts:
            opt.check_state_dict(part, prefix)
        for opt, prefix, part in parts:
            opt.load_state_dict(part, prefix)


def _extra_name(name: str) -> str:
    return "penalty_" + re.sub(r"\W", "_", name)


def _check_setup(setup: TrainSetup) -> None:
    g, d = setup.generator, setup.discriminator
    if tuple(g.input_shape) != (setup.latent_dim,):
        raise ConfigError(
            f"the generator takes input shape {tuple(g.input_shape)} but latent_dim is {setup.latent_dim}",
            hint="build the generator with input_shape=(latent_dim,)",
        )
    if tuple(g.output_shape) != tuple(d.input_shape):
        raise ConfigError(
            f"the generator outputs shape {tuple(g.output_shape)} but the discriminator takes {tuple(d.input_shape)}",
            hint="both must match the data's sample shape",
        )
    if math.prod(d.output_shape) != 1:
        raise ConfigError(
            f"the discriminator must output one logit per sample, got shape {tuple(d.output_shape)}",
            hint="end it with a dense layer of 1 unit",
        )
    if setup.n_critic < 1:
        raise ConfigError(f"n_critic must be at least 1, got {setup.n_critic}")
