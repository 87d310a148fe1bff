"""``TensorFlowTrainer``: the primitives of :mod:`gankit.backend_contract` on TensorFlow,
the whole step as one ``tf.function`` (the neutral half is :class:`gankit.trainer.BaseTrainer`).

The step is traced once (only the batch size is dynamic; ``autograph=False`` traces
several times faster): ``n_critic`` discriminator updates unrolled, one generator update,
the EMA. Its learning rates, penalty factors and EMA weight come in as one float32 vector
(schedules never retrace); its scalars go back in one transfer. ``setup.compile`` turns on
XLA, whose random draws differ from the uncompiled step's. Networks run in training mode
in every update (batch-norm statistics update on each call), as on torch.

``precision = bfloat16 | float16``: the nets compute in that dtype, variables, optimizer slots
and the EMA stay float32 (:mod:`gankit_tensorflow.nn`); under float16 (GPU only) penalties
differentiate D in float32 and each network's loss has its own dynamic
:class:`~gankit_tensorflow.optim.LossScale` (saved in the random state). Evaluation: float32.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.nets import pack_samples  # noqa: E402
from gankit.trainer import ROLES, BaseTrainer, DUpdate, StepHyper  # noqa: E402

from gankit_tensorflow import distributed as tf_distributed, strategy as tf_strategy  # noqa: E402
from gankit_tensorflow.device import device_name, resolve_device, set_threads  # noqa: E402
from gankit_tensorflow.native import native_weights  # noqa: E402
from gankit_tensorflow.nn import TensorFlowNet, export_weights, load_weights  # noqa: E402
from gankit_tensorflow.ops import TensorFlowOps  # noqa: E402
from gankit_tensorflow.optim import LossScale, build_optimizer  # noqa: E402

#: The step's hyper-parameter vector: each role's learning rate (in ROLES' order), the
#: EMA's weight ``1 - decay`` and whether it copies, then the penalties' weight factors.
EMA_WEIGHT, EMA_COPY, FACTORS = 2, 3, 4


class TensorFlowTrainer(BaseTrainer):
    """Networks, optimizers and compiled updates for one :class:`gankit.TrainSetup`. Besides
    :class:`~gankit.trainer.BaseTrainer`'s attributes: ``nets`` (by net name), ``optimizers`` (by
    role), ``loss_scales`` (by role under float16, else None), ``strategy`` (data-parallel, else
    None), ``compute_dtype``, ``tf_device``."""

    backend = "tensorflow"
    native_weights = staticmethod(native_weights)  # a plugin's own tf.Module or Keras model

    # -- set-up ---------------------------------------------------------------------------
    def init_device(self, device: str, threads: int | None) -> str:
        set_threads(threads)  # before the first op starts TensorFlow's runtime
        self.tf_device = resolve_device(device)  # "/CPU:0", "/GPU:0"
        return device_name(self.tf_device)

    def build(self) -> None:
        s = self.setup
        self.compute_dtype = tf.as_dtype(s.precision)  # of the training forwards only
        # float16 input gradients are not loss-scaled: penalties differentiate in float32.
        self._penalty_dtype = tf.float32 if s.precision == "float16" else self.compute_dtype
        tf.random.set_seed(s.seed)
        self.strategy = tf_strategy.current()
        with tf_strategy.variable_scope(self.strategy, self.tf_device):
            self.nets = {net: TensorFlowNet(self._spec(net)) for net in self._nets()}
            self.optimizers = {role: build_optimizer(self.nets[role].params, self.settings(role)) for role in ROLES}
            self.loss_scales = {role: LossScale(name=f"{role}_loss_scale") for role in ROLES} \
                if s.precision == "float16" else None
        with tf.device(self.tf_device):
            # Streams for training latents, the ops' draws, and sample() without a seed (which so never
            # changes training); outside any strategy's scope: every worker draws the same latents.
            self._noise = tf.random.Generator.from_seed(s.seed)
            ops_gen, self._sample_noise = self._noise.split(2)
            self.ops = TensorFlowOps(seed=s.seed, generator=ops_gen)
        self._compile(jit=bool(s.compile))

    def _compile(self, jit: bool) -> None:
        sample = tf.TensorSpec([None, *self.sample_shape], tf.float32)
        hyper = tf.TensorSpec([FACTORS + len(self.regularizers)], tf.float32)
        fn = lambda f, *sig: tf.function(f, input_signature=sig, jit_compile=jit or None, autograph=False)  # noqa: E731
        # Class-conditional nets take int32 labels as one more input of every function.
        ys = (tf.TensorSpec([None], tf.int32),) if self.num_classes else ()
        ys_k = (tf.TensorSpec([self.n_critic, None], tf.int32),) if self.num_classes else ()
        step = self._train_step if self.strategy is None else \
            tf_strategy.replicated(self.strategy, self._train_step, self.rank, self.world_size)
        self._train_fn = fn(step, tf.TensorSpec([self.n_critic, None, *self.sample_shape], tf.float32), hyper, *ys_k)
        self._d_fn = fn(lambda real, h, *y: _stack(self._d_update(real, h, *y)), sample, hyper, *ys)
        reals = (sample,) if self.needs_real else ()  # else real is None
        self._g_fn = fn(lambda n, *a: self._g_update(n, *a) if self.needs_real else self._g_update(n, None, *a),
                        tf.TensorSpec([], tf.int32), *reals, hyper, *ys)
        self._ema_fn = fn(self._update_ema, tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.bool))
        # Evaluation computes in float32 whatever the training precision (as torch's does).
        inputs = {net: tf.TensorSpec([None, self.latent_dim], tf.float32) for net in self._nets()}
        inputs["discriminator"] = sample if self.pack == 1 else \
            tf.TensorSpec([None, self.pack * int(np.prod(self.sample_shape))], tf.float32)  # packs
        self._forward_fns = {net: tf.function(lambda x, *y, net=net: self.nets[net](x, False, *y),
                                              input_signature=(spec, *ys), autograph=False)
                             for net, spec in inputs.items()}

    # -- the traced updates ---------------------------------------------------------------
    def _latent(self, n, generator):
        # Training latents across processes: each draws the global batch from the same
        # stream and keeps its own rows, as one process drawing the whole batch would.
        share = generator is self._noise and self.world_size > 1
        shape = [n * self.world_size if share else n, self.latent_dim]
        z = generator.uniform(shape, minval=-1.0, maxval=1.0, dtype=tf.float32) \
            if self.setup.latent_distribution == "uniform" else generator.normal(shape, dtype=tf.float32)
        return z[self.rank * n: (self.rank + 1) * n] if share else z

    def _d_logits(self, x, labels=None, compute_dtype=None):  # training mode, shape (batch,), float32
        return tf.reshape(self.nets["discriminator"](x, True, labels, compute_dtype=compute_dtype or self.compute_dtype), [-1])

    def _scaled(self, role, loss):
        """The loss to differentiate: ``loss * scale`` under float16, else ``loss``."""
        return loss if self.loss_scales is None else self.loss_scales[role].scale_loss(loss)

    def _apply(self, role, scaled_loss, tape, hyper):
        """Differentiate, average over replicas, and step one network's optimizer (at the
        scheduled rate; a constant one stays as built)."""
        grads = tape.gradient(scaled_loss, self.nets[role].parameters,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        grads = tf_distributed.all_reduce_mean(grads) if self.strategy is not None else grads
        scheduled = self.settings(role).schedule != "constant" and self.setup.total_steps > 0
        self.optimizers[role].step(grads, hyper[ROLES.index(role)] if scheduled else None,
                                   (self.loss_scales or {}).get(role))

    def _d_update(self, real, hyper, labels=None):
        ops = self.ops  # a conditional GAN's fakes take the real batch's labels
        fake = tf.stop_gradient(self.nets["generator"](self._latent(tf.shape(real)[0], self._noise), True, labels,
                                                       compute_dtype=self.compute_dtype))
        d_fn = lambda x: self._d_logits(x, labels, self._penalty_dtype)  # noqa: E731
        if self.augment is not None:  # DiffAugment: D only ever sees augmented batches (in float32)
            real, fake = self.augment(ops, real), self.augment(ops, tf.cast(fake, tf.float32))
        real, fake = pack_samples(ops, real, self.pack), pack_samples(ops, fake, self.pack)  # PacGAN
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.nets["discriminator"].parameters)
            real_logits, fake_logits = self._d_logits(real, labels), self._d_logits(fake, labels)
            loss = tf.cast(self.loss.discriminator(ops, real_logits, fake_logits), tf.float32)
            penalties = {name: tf.cast(reg(ops, d_fn, real, fake), tf.float32) * hyper[FACTORS + i]
                         for i, (name, reg) in enumerate(self.regularizers.items())}
            total = self._scaled("discriminator", loss + tf.math.add_n(list(penalties.values())) if penalties else loss)
        self._apply("discriminator", total, tape, hyper)
        return DUpdate(loss, penalties, tf.math.reduce_mean(real_logits), tf.math.reduce_mean(fake_logits))

    def _g_update(self, n, real, hyper, labels=None):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self.nets["generator"].parameters)
            fake = self.nets["generator"](self._latent(n, self._noise), True, labels, compute_dtype=self.compute_dtype)
            if self.augment is not None:  # differentiable: G's gradients flow through it
                fake = self.augment(self.ops, tf.cast(fake, tf.float32))
                real = self.augment(self.ops, real) if self.needs_real else real
            fake = pack_samples(self.ops, fake, self.pack)
            real = pack_samples(self.ops, real, self.pack) if self.needs_real else real
            fake_logits = self._d_logits(fake, labels)
            real_logits = self._d_logits(real, labels) if self.needs_real else None
            loss = tf.cast(self.loss.generator(self.ops, fake_logits, real_logits), tf.float32)
            scaled = self._scaled("generator", loss)
        self._apply("generator", scaled, tape, hyper)
        return loss

    def _update_ema(self, w, copy):
        """``ema += w * (g - ema)``, ``w = 1 - decay`` from the host (``copy``: before
        ``ema_start``); buffers copied."""
        G, ema = self.nets["generator"], self.nets["generator_ema"]
        for name, e in ema.params.items():
            e.assign(tf.where(copy, G.params[name], e + w * (G.params[name] - e)))
        for name, e in ema.buffers.items():
            e.assign(G.buffers[name])

    def _train_step(self, real_batches, hyper, labels=None):
        for k in range(self.n_critic):  # unrolled: n_critic is fixed per trainer
            d = self._d_update(real_batches[k], hyper, None if labels is None else labels[k])
        g_loss = self._g_update(tf.shape(real_batches)[1], real_batches[-1], hyper,
                                None if labels is None else labels[-1])
        if self.has_ema:
            self._update_ema(hyper[EMA_WEIGHT], hyper[EMA_COPY] > 0)
        return tf.stack([d.loss, g_loss, d.real_logit, d.fake_logit, *d.penalties.values()])  # one transfer

    # -- primitives ------------------------------------------------------------------------
    def _hyper(self, h: StepHyper) -> tf.Tensor:  # 1 - decay in float64, then float32
        return self._x([*(h.lr[r] for r in ROLES), 1.0 - h.ema_decay, float(h.ema_decay == 0),
                        *(h.penalty[n] for n in self.regularizers)])

    _x = staticmethod(lambda x: tf.convert_to_tensor(np.asarray(x, dtype=np.float32)))
    #: ``()`` for unconditional nets, else ``(int32 labels,)`` to append to a call.
    _y = staticmethod(lambda y: () if y is None else (tf.convert_to_tensor(np.asarray(y, dtype=np.int32)),))

    def fused_step(self, batches, labels, hyper: StepHyper):
        with tf.device(self.tf_device):
            return self._train_fn(self._x(batches), self._hyper(hyper), *self._y(labels)).numpy().tolist()

    def d_update(self, real, labels, hyper: StepHyper) -> DUpdate:
        with tf.device(self.tf_device):
            loss, real_logit, fake_logit, *penalties = \
                self._d_fn(self._x(real), self._hyper(hyper), *self._y(labels)).numpy().tolist()
        return DUpdate(loss, dict(zip(self.regularizers, penalties)), real_logit, fake_logit)

    def g_update(self, batch_size: int, real, labels, hyper: StepHyper):
        reals = (self._x(real),) if self.needs_real else ()
        with tf.device(self.tf_device):
            return float(self._g_fn(tf.constant(int(batch_size), tf.int32), *reals, self._hyper(hyper),
                                    *self._y(labels)).numpy())

    def update_ema(self, decay: float) -> None:
        with tf.device(self.tf_device):
            self._ema_fn(tf.constant(1.0 - decay, tf.float32), tf.constant(decay == 0))

    def forward(self, net: str, x, labels) -> np.ndarray:
        with tf.device(self.tf_device):
            out = self._forward_fns[net](self._x(x), *self._y(labels)).numpy()
        return out.reshape(-1) if net == "discriminator" else out

    def sample_latents(self, n: int, seed: int | None):
        with tf.device(self.tf_device):
            return self._latent(int(n), self._sample_noise if seed is None else tf.random.Generator.from_seed(seed))

    def export_weights(self, net: str) -> dict[str, np.ndarray]:
        return export_weights(self.nets[net])

    def import_weights(self, net: str, weights: Mapping[str, np.ndarray]) -> None:
        load_weights(self.nets[net], dict(weights), f"{net}.")

    def export_optimizer(self, role: str) -> dict[str, np.ndarray]:
        return self.optimizers[role].state_dict()

    def import_optimizer(self, role: str, state: Mapping[str, np.ndarray]) -> None:
        self.optimizers[role].load_state_dict(state)

    def _generators(self) -> dict[str, tf.random.Generator]:
        gens = {"noise": self._noise, "ops_noise": self.ops.generator, "sample_noise": self._sample_noise}
        gens.update({f"{role}_dropout": self.nets[role]._dropout_rng for role in ROLES  # the nets' dropout masks
                     if getattr(self.nets[role], "_dropout_rng", None) is not None})
        return gens

    def export_rng(self) -> dict[str, np.ndarray]:
        """The generators' states, ``step`` (older versions read it back) and under
        float16 the loss scales (``loss_scale.<role>``: scale, good steps)."""
        out = {name: np.asarray(g.state.numpy()) for name, g in self._generators().items()}
        out["step"] = np.asarray(self.step_count, dtype=np.int64)
        return {**out, **{f"loss_scale.{role}": scale.state() for role, scale in (self.loss_scales or {}).items()}}

    def import_rng(self, state: Mapping[str, np.ndarray]) -> None:
        gens = self._generators()
        for name in [n for n, g in gens.items() if n not in state or np.shape(state[n]) != tuple(g.state.shape)][:1]:
            raise ValueError(f"it lacks a valid {name!r}")
        for name, g in gens.items():
            g.state.assign(np.asarray(state[name], dtype=g.state.dtype.as_numpy_dtype))
        for role, scale in (self.loss_scales or {}).items():
            if f"loss_scale.{role}" in state:  # a float32 or bfloat16 run has none: keep the initial scale
                scale.load_state(state[f"loss_scale.{role}"])


def _stack(d: DUpdate):
    """A discriminator update's scalars as one float32 vector (one host transfer)."""
    return tf.stack([d.loss, d.real_logit, d.fake_logit, *d.penalties.values()])
