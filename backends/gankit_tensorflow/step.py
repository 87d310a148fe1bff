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

``precision = bfloat16 | float16`` (mixed precision): the generator and discriminator
compute in that dtype while their variables, the optimizers' slots and the EMA stay
float32 (see :mod:`gankit_tensorflow.nn`: batch/layer norm in float32, outputs cast to
float32), so losses and penalties are float32 formulas on float32 logits. Penalties
differentiate the discriminator in the compute dtype under bfloat16 (float32's range)
and in float32 under float16, whose input gradients are not loss-scaled and would
underflow. float16 needs a GPU and scales each network's loss with its own dynamic
:class:`~gankit_tensorflow.optim.LossScale` (torch's GradScaler rule: a step with
non-finite gradients is skipped and halves the scale; 2000 good steps double it),
whose state is part of :meth:`TensorFlowTrainer.rng_state`. Sampling, ``generate`` and
``discriminate`` run in float32, as on torch.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.errors import CheckpointError, ConfigError, DataError  # noqa: E402
from gankit.nets import class_labels, conditional_classes, pack_samples  # noqa: E402
from gankit.initializers import initial_weights  # noqa: E402
from gankit.protocol import StepResult, TrainSetup  # noqa: E402

from gankit_tensorflow import distributed as tf_distributed  # noqa: E402
from gankit_tensorflow.device import device_name, resolve_device, set_threads  # noqa: E402
from gankit_tensorflow.nn import TensorFlowNet, check_weights, export_weights, load_weights  # noqa: E402
from gankit_tensorflow.ops import TensorFlowOps  # noqa: E402
from gankit_tensorflow.optim import LossScale, make_optimizer  # noqa: E402

PREFIXES = ("generator.", "discriminator.")
EMA_PREFIX = "generator_ema."


class TensorFlowTrainer:
    """Networks, optimizers and compiled updates for one :class:`gankit.TrainSetup`."""

    backend = "tensorflow"

    def __init__(self, setup: TrainSetup):
        _check_setup(setup)
        self.setup = setup
        set_threads(setup.threads)  # before the first op starts TensorFlow's runtime
        #: TensorFlow's device string ("/CPU:0", "/GPU:0"); ``device`` is the neutral
        #: name ("cpu", "cuda:0") that runs and summaries report, as on torch.
        self.tf_device = resolve_device(setup.device)
        self.device = device_name(self.tf_device)
        _check_precision(setup.precision, self.device)
        #: The dtype the networks compute in during training (variables stay float32).
        self.compute_dtype = tf.as_dtype(setup.precision)
        # float16 input gradients are not loss-scaled: penalties differentiate in float32.
        self._penalty_dtype = tf.float32 if setup.precision == "float16" else self.compute_dtype
        self._step_count = 0
        self.n_critic = int(setup.n_critic)
        self.latent_dim = int(setup.latent_dim)
        self.sample_shape = tuple(setup.discriminator.input_shape)
        #: Classes of the class-conditional nets' label input (None: unconditional).
        try:
            self.num_classes = conditional_classes(setup.generator, setup.discriminator)
        except ValueError as exc:
            raise ConfigError(f"generator and discriminator: {exc}") from None
        self.loss = setup.loss
        self.regularizers = dict(setup.regularizers)
        #: DiffAugment (or another ``(ops, x) -> x``) before every D call in training, or None.
        self.augment = setup.augment
        #: PacGAN: the discriminator judges packs of this many samples (``NetSpec.pack``).
        self.pack = int(getattr(setup.discriminator, "pack", 1))
        self.needs_real = bool(getattr(self.loss.meta, "generator_needs_real", False))
        self._has_batch_norm = any(
            layer.kind == "batch_norm" for spec in (setup.generator, setup.discriminator) for _, layer, _ in spec.walk()
        )
        self.has_ema = setup.ema_decay > 0
        self.world_size, self.rank = int(setup.world_size), int(setup.rank)
        tf.random.set_seed(setup.seed)
        #: The tf.distribute strategy of a data-parallel run (see gankit_tensorflow.distributed).
        self.strategy = tf_distributed.strategy()
        with tf_distributed.variable_scope(self.strategy, self.tf_device):
            # The nets compute in float32 unless a call says otherwise: the training
            # updates pass compute_dtype; sampling, evaluation and export stay float32.
            self.G = TensorFlowNet(setup.generator)
            self.D = TensorFlowNet(setup.discriminator)
            self.G_ema = TensorFlowNet(setup.generator) if self.has_ema else None
            # The step index inside the compiled step (schedules, EMA start).
            self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.g_opt = make_optimizer(setup.g_optimizer, self.G.params)
            self.d_opt = make_optimizer(setup.d_optimizer, self.D.params)
            #: float16's dynamic loss scales by role (None in other precisions).
            self.loss_scales = {role: LossScale(name=f"{role}_loss_scale") for role in ("generator", "discriminator")} \
                if setup.precision == "float16" else None
        with tf.device(self.tf_device):
            # Three independent streams from one seed: training latents, the ops'
            # draws (penalties), and sample() without a seed, so sampling for a
            # preview never changes the training trajectory. Outside any strategy's
            # scope: each worker draws the same global latents and keeps its rows.
            self._noise = tf.random.Generator.from_seed(setup.seed)
            ops_gen, self._sample_noise = self._noise.split(2)
            self.ops = TensorFlowOps(seed=setup.seed, generator=ops_gen)
        # Without given weights, gankit's neutral default init: the torch backend
        # starts from the very same networks.
        self.load_state_dict(
            setup.initial_weights or initial_weights(setup.generator, setup.discriminator, "default", setup.seed)
        )
        self._compile(jit=bool(setup.compile))

    @property
    def step_count(self) -> int:
        """Completed steps; setting it (when resuming) moves the compiled step's index too."""
        return self._step_count

    @step_count.setter
    def step_count(self, value: int) -> None:
        self._step_count = int(value)
        self._step.assign(int(value))

    # -- building blocks (traced inside tf.function) ----------------------------------
    def _latent(self, n, generator):
        # Training latents across processes: each draws the global batch from the same
        # stream and keeps its own rows, as one process drawing the whole batch would.
        share = generator is self._noise and self.world_size > 1
        shape = [n * self.world_size if share else n, self.latent_dim]
        if self.setup.latent_distribution == "uniform":
            z = generator.uniform(shape, minval=-1.0, maxval=1.0, dtype=tf.float32)
        else:
            z = generator.normal(shape, dtype=tf.float32)
        return z[self.rank * n: (self.rank + 1) * n] if share else z

    def _schedule_factor(self, kind, final_fraction):
        """``gankit.protocol.schedule_factor`` in float64 graph ops, at the current step
        (a non-constant schedule with ``total_steps > 0``)."""
        total = float(self.setup.total_steps)
        t = tf.minimum(tf.cast(self._step, tf.float64), total) / total
        f = final_fraction
        if kind == "linear":
            return 1.0 - (1.0 - f) * t
        return f + (1.0 - f) * 0.5 * (1.0 + tf.math.cos(np.pi * t))

    def _scheduled_lr(self, settings):
        """``OptimizerSettings.lr_at`` in float64 graph ops, at the current step."""
        return tf.cast(settings.lr * self._schedule_factor(settings.schedule, settings.final_lr_fraction), tf.float32)

    def _penalty(self, name, value):
        """A penalty times its weight schedule's factor at the current step, float32."""
        value = tf.cast(value, tf.float32)
        schedule = self.setup.regularizer_schedules.get(name)
        if schedule is None or schedule.constant or self.setup.total_steps <= 0:
            return value
        return value * tf.cast(self._schedule_factor(schedule.schedule, schedule.final_fraction), tf.float32)

    def _set_learning_rates(self):
        for settings, opt in ((self.setup.g_optimizer, self.g_opt), (self.setup.d_optimizer, self.d_opt)):
            if settings.schedule != "constant" and self.setup.total_steps > 0:
                opt.lr.assign(self._scheduled_lr(settings))

    @staticmethod
    def _clip(grads, settings):
        """torch.nn.utils.clip_grad_norm_: ``g *= min(1, max_norm / (norm + 1e-6))``."""
        if not settings.clip_grad_norm:
            return grads
        norm = tf.linalg.global_norm(grads)
        coef = tf.minimum(settings.clip_grad_norm / (norm + 1e-6), 1.0)
        return [g * coef for g in grads]

    def _update_ema(self):
        """``ema = decay * ema + (1 - decay) * g`` (a copy before ``ema_start``); buffers copied."""
        copy = self._step < self.setup.ema_start
        w = tf.constant(1.0 - self.setup.ema_decay, tf.float32)
        for name, e in self.G_ema.params.items():
            p = self.G.params[name]
            e.assign(tf.where(copy, p, e + w * (p - e)))
        for name, e in self.G_ema.buffers.items():
            e.assign(self.G.buffers[name])

    def learning_rates(self) -> dict[str, float]:
        """The learning rates the next step uses (the schedules' value at ``step_count``)."""
        return {"generator": self.setup.g_optimizer.lr_at(self.step_count, self.setup.total_steps),
                "discriminator": self.setup.d_optimizer.lr_at(self.step_count, self.setup.total_steps)}

    def _d_logits(self, x, training=True, labels=None, compute_dtype=None):
        """D's logits, shape (batch,), float32; training calls compute in the training precision."""
        if compute_dtype is None and training:
            compute_dtype = self.compute_dtype
        return tf.reshape(self.D(x, training=training, labels=labels, compute_dtype=compute_dtype), [-1])

    def _apply(self, role, grads):
        """All-reduce, (unscale,) clip and apply one network's gradients, then clip its
        weights (``clip_weights``); under float16 the loss scale skips a step with
        non-finite gradients."""
        opt, settings = (self.g_opt, self.setup.g_optimizer) if role == "generator" else \
            (self.d_opt, self.setup.d_optimizer)
        grads = self._all_reduce(grads)
        if self.loss_scales is None:
            opt.apply(self._clip(grads, settings))
        else:
            self.loss_scales[role].apply(opt, grads, clip=lambda g: self._clip(g, settings))
        if settings.clip_weights:
            opt.clip_weights(settings.clip_weights)

    def _scaled(self, role, loss):
        """The loss to differentiate: ``loss * scale`` under float16, else ``loss``."""
        return loss if self.loss_scales is None else self.loss_scales[role].scale_loss(loss)

    def _d_update(self, real, labels=None):
        # A conditional GAN's fakes take the real batch's labels.
        ops = self.ops
        fake = tf.stop_gradient(self.G(self._latent(tf.shape(real)[0], self._noise), training=True, labels=labels,
                                       compute_dtype=self.compute_dtype))
        d_fn = lambda x: self._d_logits(x, labels=labels, compute_dtype=self._penalty_dtype)  # noqa: E731
        if self.augment is not None:  # DiffAugment: D only ever sees augmented batches (in float32)
            real, fake = self.augment(ops, real), self.augment(ops, tf.cast(fake, tf.float32))
        if self.pack > 1:  # PacGAN: D, its loss and the penalties see packs of samples
            real, fake = pack_samples(ops, real, self.pack), pack_samples(ops, fake, self.pack)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.D.parameters)
            real_logits = self._d_logits(real, labels=labels)
            fake_logits = self._d_logits(fake, labels=labels)
            loss = tf.cast(self.loss.discriminator(ops, real_logits, fake_logits), tf.float32)
            penalties = {
                name: self._penalty(name, reg(ops, d_fn, real, fake))
                for name, reg in self.regularizers.items()
            }
            total = loss + tf.math.add_n(list(penalties.values())) if penalties else loss
            total = self._scaled("discriminator", total)
        grads = tape.gradient(total, self.D.parameters, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        self._apply("discriminator", grads)
        return loss, penalties, tf.math.reduce_mean(real_logits), tf.math.reduce_mean(fake_logits)

    def _g_update(self, n, real=None, labels=None):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.G.parameters)
            fake = self.G(self._latent(n, self._noise), training=True, labels=labels, compute_dtype=self.compute_dtype)
            if self.augment is not None:  # differentiable: G's gradients flow through it
                fake = self.augment(self.ops, tf.cast(fake, tf.float32))
                real = self.augment(self.ops, real) if self.needs_real else real
            if self.pack > 1:
                fake = pack_samples(self.ops, fake, self.pack)
                real = pack_samples(self.ops, real, self.pack) if self.needs_real else real
            fake_logits = self._d_logits(fake, labels=labels)
            real_logits = self._d_logits(real, labels=labels) if self.needs_real else None
            loss = tf.cast(self.loss.generator(self.ops, fake_logits, real_logits), tf.float32)
            scaled = self._scaled("generator", loss)
        grads = tape.gradient(scaled, self.G.parameters, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        self._apply("generator", grads)
        return loss

    def _all_reduce(self, grads):
        """Mean over replicas (inside a distribution strategy's replica context)."""
        return tf_distributed.all_reduce_mean(grads) if self.strategy is not None else grads

    def _replica_step(self, real_batches, labels=None):
        """One replica's step: with several replicas on this worker (MirroredStrategy),
        each takes its slice of the worker's batch."""
        g, replicas = tf_distributed.replica_position()
        local = replicas // self.world_size
        if local > 1:
            i = g - self.rank * local
            b = tf.shape(real_batches)[1] // local
            real_batches = real_batches[:, i * b:(i + 1) * b]
            labels = None if labels is None else labels[:, i * b:(i + 1) * b]
        return self._train_step(real_batches, labels)

    def _distributed_step(self, real_batches, *labels):
        per_replica = self.strategy.run(self._replica_step, args=(real_batches, *labels))
        return self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    def _train_step(self, real_batches, labels=None):
        self._set_learning_rates()
        for k in range(self.n_critic):  # unrolled: n_critic is fixed per trainer
            d_loss, penalties, real_logit, fake_logit = self._d_update(
                real_batches[k], None if labels is None else labels[k])
        g_loss = self._g_update(tf.shape(real_batches)[1], real_batches[-1], None if labels is None else labels[-1])
        if self.has_ema:
            self._update_ema()
        self._step.assign_add(1)
        # One vector, so the host fetches every scalar in one transfer.
        return tf.stack([d_loss, g_loss, real_logit, fake_logit, *penalties.values()])

    def _compile(self, jit: bool) -> None:
        sample = tf.TensorSpec([None, *self.sample_shape], tf.float32)
        batches = tf.TensorSpec([self.n_critic, None, *self.sample_shape], tf.float32)
        count = tf.TensorSpec([], tf.int32)
        latent = tf.TensorSpec([None, self.latent_dim], tf.float32)
        fn = lambda f, *sig: tf.function(f, input_signature=sig, jit_compile=jit or None, autograph=False)  # noqa: E731
        # Class-conditional nets take int32 labels as one more input of every function.
        ys = (tf.TensorSpec([None], tf.int32),) if self.num_classes else ()
        ys_k = (tf.TensorSpec([self.n_critic, None], tf.int32),) if self.num_classes else ()
        self._train_fn = fn(self._distributed_step if self.strategy is not None else self._train_step, batches, *ys_k)
        self._d_fn = fn(lambda real, *y: tf.stack([self._d_update(real, *y)[0]]), sample, *ys)
        if self.needs_real:
            self._g_fn = fn(lambda n, real, *y: self._g_update(n, real, *y), count, sample, *ys)
        else:
            self._g_fn = fn(lambda n, *y: self._g_update(n, None, *y), count, *ys)
        evaluate = lambda f, *sig: tf.function(f, input_signature=sig, autograph=False)  # noqa: E731
        sampler = self.G_ema if self.has_ema else self.G
        # Evaluation computes in float32 whatever the training precision (as torch's does).
        self._generate_fn = evaluate(lambda z, *y: sampler(z, False, *y), latent, *ys)
        self._discriminate_fn = evaluate(lambda x, *y: self._d_logits(pack_samples(self.ops, x, self.pack), False, *y),
                                         sample, *ys)

    def _labels(self, labels, shape, required: bool = False) -> tuple:
        """``()`` for unconditional nets, else ``(int32 labels,)`` to append to a call."""
        arr = class_labels(labels, tuple(shape), self.num_classes, required=required)
        return () if arr is None else (tf.convert_to_tensor(arr.astype(np.int32)),)

    def _to_tensor(self, x) -> tf.Tensor:
        return tf.convert_to_tensor(np.asarray(x, dtype=np.float32))

    def _check_batch(self, n: int) -> None:
        # Inside the traced step the batch size is dynamic, so batch norm cannot refuse a
        # single sample there (its unbiased variance would be inf); refuse it here, as torch does.
        if int(n) % self.pack:
            raise DataError(f"a batch of {int(n)} samples does not divide into the discriminator's packs of {self.pack}",
                            hint=f"use a multiple of {self.pack} samples")
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
    def train_step(self, real_batches: np.ndarray, labels=None) -> StepResult:
        """``n_critic`` discriminator updates (one per leading slice), then one generator update.
        A class-conditional GAN needs ``labels`` shaped like the batches' first two axes;
        its fakes take the real batch's labels."""
        real_batches = np.asarray(real_batches, dtype=np.float32)
        if self.n_critic == 1 and real_batches.shape[1:] == self.sample_shape:
            real_batches = real_batches[None]  # a single batch for n_critic = 1
            labels = None if labels is None else np.asarray(labels)[None]
        shape = real_batches.shape
        if len(shape) < 3 or shape[0] != self.n_critic or shape[2:] != self.sample_shape:
            raise DataError(
                f"train_step expects real batches of shape (n_critic={self.n_critic}, batch, "
                f"{', '.join(map(str, self.sample_shape))}), got {real_batches.shape}"
            )
        self._check_batch(real_batches.shape[1])
        with tf.device(self.tf_device):
            y = self._labels(labels, shape[:2], required=True)
            values = self._train_fn(self._to_tensor(real_batches), *y).numpy().tolist()
        self._step_count += 1  # the compiled step advanced self._step itself
        d_loss, g_loss, real_logit, fake_logit, *penalties = values
        extras = {_extra_name(name): v for name, v in zip(self.regularizers, penalties)}
        extras.update(real_logit=real_logit, fake_logit=fake_logit)
        return StepResult(step=self.step_count, d_loss=d_loss, g_loss=g_loss, extras=extras)

    def discriminator_step(self, real: np.ndarray, labels=None) -> float:
        """One discriminator update on ``real``; returns its loss (penalties excluded)."""
        real = self._real(real)
        self._check_batch(int(real.shape[0]))
        with tf.device(self.tf_device):
            return float(self._d_fn(real, *self._labels(labels, real.shape[:1], required=True)).numpy()[0])

    def generator_step(self, batch_size: int, real: np.ndarray | None = None, labels=None) -> float:
        """One generator update on ``batch_size`` latents; ``real`` is required when the
        loss reads real logits. Does not advance ``step_count`` (``train_step`` does)."""
        self._check_batch(int(batch_size))
        n = tf.constant(int(batch_size), tf.int32)
        with tf.device(self.tf_device):
            y = self._labels(labels, (int(batch_size),), required=True)
            if self.needs_real:
                if real is None:
                    raise ValueError(
                        f"{type(self.loss).__name__} reads the real logits in the generator loss; "
                        "pass real= to generator_step"
                    )
                return float(self._g_fn(n, self._real(real), *y).numpy())
            return float(self._g_fn(n, *y).numpy())

    def sample(self, n: int, seed: int | None = None, labels=None) -> np.ndarray:
        """``n`` generator samples in eval mode; a given ``seed`` repeats exactly. A
        class-conditional generator takes ``labels`` (default: ``arange(n) % num_classes``)."""
        with tf.device(self.tf_device):
            gen = tf.random.Generator.from_seed(seed) if seed is not None else self._sample_noise
            z = self._latent(int(n), gen)
            return self._generate_fn(z, *self._labels(labels, (int(n),))).numpy()

    def generate(self, z: np.ndarray, labels=None) -> np.ndarray:
        """Generator outputs for latents ``z`` of shape (n, latent_dim), eval mode
        (class-conditional: ``labels`` as in :meth:`sample`)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise DataError(f"latents have shape {z.shape}; expected (n, {self.latent_dim})")
        with tf.device(self.tf_device):
            return self._generate_fn(tf.convert_to_tensor(z), *self._labels(labels, z.shape[:1])).numpy()

    def discriminate(self, x: np.ndarray, labels=None) -> np.ndarray:
        """Discriminator logits, shape (n,), eval mode (class-conditional: ``labels``
        as in :meth:`sample`)."""
        x = self._real(x)
        if int(x.shape[0]) % self.pack:  # a packed discriminator: one logit per pack
            raise DataError(f"{int(x.shape[0])} samples do not divide into the discriminator's packs of {self.pack}",
                            hint=f"give a multiple of {self.pack} samples")
        with tf.device(self.tf_device):
            return self._discriminate_fn(x, *self._labels(labels, tuple(x.shape[:1]))).numpy()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers of both nets (and the EMA generator's, as
        ``generator_ema.*``), canonical and prefixed, float32 numpy."""
        out = {
            **{f"generator.{k}": v for k, v in export_weights(self.G).items()},
            **{f"discriminator.{k}": v for k, v in export_weights(self.D).items()},
        }
        if self.G_ema is not None:
            out.update({f"generator_ema.{k}": v for k, v in export_weights(self.G_ema).items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Load canonical weights (from any backend); raises :class:`gankit.CheckpointError`
        on a missing, unexpected or misshapen entry, changing nothing."""
        stray = [k for k in state if not k.startswith((*PREFIXES, EMA_PREFIX))]
        if stray:
            raise CheckpointError(
                f"weights have unexpected parameter {stray[0]!r}",
                hint="names start with 'generator.', 'discriminator.' or 'generator_ema.'",
            )
        parts = {p: {k[len(p):]: v for k, v in state.items() if k.startswith(p)} for p in (*PREFIXES, EMA_PREFIX)}
        # Check every net before touching any, so a bad checkpoint changes nothing.
        nets = [(self.G, "generator."), (self.D, "discriminator.")]
        for net, prefix in nets:
            check_weights(net, parts[prefix], prefix)
        if parts[EMA_PREFIX]:
            check_weights(self.G, parts[EMA_PREFIX], EMA_PREFIX)
        for net, prefix in nets:
            load_weights(net, parts[prefix], prefix)
        if self.G_ema is not None:  # without saved EMA weights, start from the generator
            load_weights(self.G_ema, parts[EMA_PREFIX] or parts["generator."], EMA_PREFIX)

    # -- random state (for exact resumption) ------------------------------------------
    def _generators(self):
        gens = {"noise": self._noise, "ops_noise": self.ops.generator, "sample_noise": self._sample_noise}
        for role, net in (("generator", self.G), ("discriminator", self.D)):
            if getattr(net, "_dropout_rng", None) is not None:  # the nets' dropout masks
                gens[f"{role}_dropout"] = net._dropout_rng
        return gens

    def rng_state(self) -> dict[str, np.ndarray]:
        """The states of the training-noise, penalty-noise and sampling generators, the
        step index, and under float16 the loss scales (``loss_scale.<role>``: scale, good steps)."""
        out = {name: np.asarray(g.state.numpy()) for name, g in self._generators().items()}
        out["step"] = np.asarray(self._step.numpy(), dtype=np.int64)
        for role, scale in (self.loss_scales or {}).items():
            out[f"loss_scale.{role}"] = scale.state()
        return out

    def load_rng_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`rng_state` returned (on this backend)."""
        gens = self._generators()
        for name, g in gens.items():
            if name not in state or tuple(np.shape(state[name])) != tuple(g.state.shape):
                raise CheckpointError(f"the random state lacks a valid {name!r}",
                                      hint="it was written by another backend or TensorFlow version")
        for name, g in gens.items():
            g.state.assign(np.asarray(state[name], dtype=g.state.dtype.as_numpy_dtype))
        self._step.assign(int(np.asarray(state.get("step", self.step_count))))
        for role, scale in (self.loss_scales or {}).items():
            if f"loss_scale.{role}" in state:  # a float32 or bfloat16 run has none: keep the initial scale
                scale.load_state(state[f"loss_scale.{role}"])

    def parameters_of(self, role: str) -> dict[str, np.ndarray]:
        """Trainable parameters of ``"generator"`` or ``"discriminator"`` (canonical
        names, unprefixed, numpy copies)."""
        net = {"generator": self.G, "discriminator": self.D}[role]
        return {k: np.array(v.numpy()) for k, v in net.params.items()}

    def __repr__(self) -> str:
        return (f"TensorFlowTrainer(device={self.device!r}, step={self.step_count}, "
                f"compile={self.setup.compile}, precision={self.setup.precision!r}, ema={self.has_ema})")

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
    unknown = sorted(set(setup.regularizer_schedules) - set(setup.regularizers))
    if unknown:
        raise ConfigError(f"weight schedules given for regularizers the setup does not have: {', '.join(unknown)}",
                          hint="name each schedule after one of TrainSetup.regularizers")
    if not 0 <= setup.ema_decay < 1:
        raise ConfigError(f"ema_decay must be in [0, 1), got {setup.ema_decay}")
    if setup.world_size < 1 or not 0 <= setup.rank < setup.world_size:
        raise ConfigError(f"rank {setup.rank} does not fit world_size {setup.world_size}")
    pack = int(getattr(d, "pack", 1))
    if setup.batch_size % (setup.world_size * pack):
        raise ConfigError(f"batch_size {setup.batch_size} does not divide into packs of {pack} on {setup.world_size} worker(s)",
                          hint=f"use a multiple of {setup.world_size * pack}")
    if setup.batch_size % setup.world_size:
        raise ConfigError(f"batch_size {setup.batch_size} does not divide among {setup.world_size} workers",
                          hint=f"use a multiple of {setup.world_size}")
    if setup.precision not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"unknown precision {setup.precision!r}", hint="use float32, bfloat16 or float16")


def _check_precision(precision: str, device: str) -> None:
    """float16 (loss-scaled) needs a GPU: the torch backend's rule and message."""
    if precision == "float16" and not device.startswith("cuda"):
        raise ConfigError(f"precision float16 needs a CUDA GPU, the trainer runs on {device}",
                          hint="use precision = 'bfloat16' on the cpu, or 'float32'")
