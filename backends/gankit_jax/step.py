"""``JaxTrainer``: the GAN of a :class:`gankit.TrainSetup` with its step as one jitted function.

Only the primitives of :mod:`gankit.backend_contract` are written here; the neutral half
(checks, state names, schedules, step results) is :class:`gankit.trainer.BaseTrainer`.

The trainer's whole state — both nets' parameters and buffers, the EMA generator, both
optimizers' states — is one pytree, ``state``. ``train_step`` runs
``jax.jit(step)(state, batches, labels, key, hyper) -> (state, key, scalars)``:
``n_critic`` discriminator updates unrolled, one generator update, the EMA update; the
input state's buffers are donated, so the step updates in place, and every reported
scalar comes back to the host in one transfer. The learning rates, penalty factors and
EMA decay are traced numbers: schedules never recompile. (``setup.compile`` changes
nothing: the step is always compiled by XLA.)

Random numbers: one training key, split once per update (a discriminator update, a
generator update) in the same order by ``train_step`` and by ``discriminator_step`` /
``generator_step``, so counted-out updates repeat a step exactly. Each update's key
gives the latents, the dropout masks and the penalties' draws (through
:class:`~gankit_jax.ops.JaxOps`). ``sample`` without a seed uses a second key.

As on torch and TensorFlow every network call inside a training update runs in
training mode (batch-norm statistics and spectral-norm vectors update on the real,
fake and generator-update calls); calls made by a penalty through ``input_grad`` see
the current buffers but do not update them (a jax function cannot leak its updates
out of ``jax.grad``), a difference from torch only for nets with batch norm or
spectral norm trained with a penalty.

``precision = bfloat16`` computes the training forwards and penalties in bfloat16
(weights, optimizer state and EMA float32; norms in float32; see :mod:`gankit_jax.nn`);
``float16`` (loss scaling) is not implemented on this backend.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

import jax
import jax.numpy as jnp

from gankit.errors import ConfigError
from gankit.trainer import ROLES, BaseTrainer, DUpdate, StepHyper

from gankit_jax import distributed
from gankit_jax.device import device_name, resolve_device, set_threads
from gankit_jax.nn import JaxNet, LoadedNet, build_net, export_weights, load_weights
from gankit_jax.ops import JaxOps
from gankit_jax.optim import Optimizer


class JaxTrainer(BaseTrainer):
    """Networks, optimizers and the jitted step for one :class:`gankit.TrainSetup`.

    Attributes besides :class:`~gankit.trainer.BaseTrainer`'s: ``nets`` (by role,
    :class:`~gankit_jax.nn.JaxNet`), ``state`` (the pytree above), ``optimizers`` (by
    role), ``keys`` (``noise``, ``sample_noise``), ``ops``, ``jax_device``.
    """

    backend = "jax"

    # -- set-up ---------------------------------------------------------------------------
    def init_device(self, device: str, threads: int | None) -> str:
        set_threads(threads)  # before the first array starts jax's runtime
        self.jax_device = resolve_device(device)
        return device_name(self.jax_device)

    def build(self) -> None:
        s = self.setup
        if s.world_size > 1:  # data-parallel training is optional: this backend has none
            raise ConfigError(f"world_size {s.world_size}: {distributed.REFUSAL}", hint=distributed.HINT)
        if s.precision == "float16":
            raise ConfigError("precision float16 (loss scaling) is not implemented on the jax backend",
                              hint="use precision = 'bfloat16', or 'float32'")
        self.compute_dtype = jnp.bfloat16 if s.precision == "bfloat16" else jnp.float32
        self.nets = {role: build_net(spec) for role, spec in self.specs.items()}
        self.optimizers = {role: Optimizer(self.settings(role)) for role in ROLES}
        zeros = {role: {k: np.zeros(v, np.float32) for k, v in spec.parameter_shapes().items()}
                 for role, spec in self.specs.items()}
        self.state = {
            **{net: {"params": {}, "buffers": {}} for net in self._nets()},
            "optimizer": {role: self._put(self.optimizers[role].init(zeros[role])) for role in ROLES},
        }
        self.keys = {"noise": self._put(jax.random.PRNGKey(s.seed)),
                     "sample_noise": self._put(jax.random.PRNGKey(
                         int(np.random.SeedSequence([s.seed, 1]).generate_state(1)[0])))}
        self.ops = JaxOps(seed=s.seed)
        self._compile()

    def _put(self, tree):
        return jax.device_put(tree, self.jax_device)

    def _compile(self) -> None:
        self._step_fn = jax.jit(self._step, donate_argnums=(0,))
        self._d_fn = jax.jit(self._d_step, donate_argnums=(0,))
        self._g_fn = jax.jit(self._g_step, donate_argnums=(0,), static_argnums=(1,))
        self._forward_fns = {role: jax.jit(self.nets[role].__call__) for role in ROLES}

    # -- pure functions (traced) -------------------------------------------------------
    def _latent(self, key, n: int):
        shape = (int(n), self.latent_dim)
        if self.setup.latent_distribution == "uniform":
            return jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
        return jax.random.normal(key, shape, jnp.float32)

    def _train_call(self, role, params, buffers, x, labels, key):
        """A training-mode call: ``(output, updated buffers)``, in the compute dtype."""
        return self.nets[role].apply(params, buffers, x, labels, training=True, key=key,
                                     compute_dtype=self.compute_dtype)

    def _d_view(self, x, key):
        """Samples as the discriminator sees them in training: augmented (DiffAugment,
        differentiable, drawing from ``key``), then packed (PacGAN)."""
        if self.augment is not None:
            with self.ops.using_key(key):
                x = self.augment(self.ops, x)
        if self.pack > 1:
            x = x.reshape(x.shape[0] // self.pack, -1)
        return x

    def _d_pure(self, state, real, labels, key, lr, factors, clip):
        g, d = state["generator"], state["discriminator"]
        k_z, k_g, k_real, k_fake, k_pen, k_ops = jax.random.split(key, 6)
        fake, g_buffers = self._train_call("generator", g["params"], g["buffers"], self._latent(k_z, real.shape[0]),
                                           labels, k_g)
        fake = jax.lax.stop_gradient(fake)  # this update trains D only
        ops = self.ops
        real, fake = self._d_view(real, k_ops), self._d_view(fake, jax.random.fold_in(k_ops, 1))

        def loss_fn(params):
            real_logits, buffers = self._train_call("discriminator", params, d["buffers"], real, labels, k_real)
            fake_logits, buffers = self._train_call("discriminator", params, buffers, fake, labels, k_fake)
            real_logits, fake_logits = real_logits.reshape(-1), fake_logits.reshape(-1)
            loss = jnp.asarray(self.loss.discriminator(ops, real_logits, fake_logits), jnp.float32)

            def d_fn(x):  # D for the penalties: current buffers, no updates kept
                return self._train_call("discriminator", params, buffers, x, labels, k_pen)[0].reshape(x.shape[0])

            penalties = {}
            with ops.using_key(k_ops):
                for i, (name, reg) in enumerate(self.regularizers.items()):
                    value = jnp.asarray(reg(ops, d_fn, real, fake), jnp.float32)
                    if value.size != 1:
                        raise ValueError(f"regularizer {name!r} must return a scalar, got shape {value.shape}")
                    penalties[name] = value.reshape(()) * factors[i]
            total = loss + sum(penalties.values()) if penalties else loss
            return total, (loss, penalties, jnp.mean(real_logits), jnp.mean(fake_logits), buffers)

        grads, (loss, penalties, real_logit, fake_logit, d_buffers) = jax.grad(loss_fn, has_aux=True)(d["params"])
        params, opt = self.optimizers["discriminator"].update(grads, state["optimizer"]["discriminator"],
                                                              d["params"], lr, clip)
        state = {**state, "generator": {"params": g["params"], "buffers": g_buffers},
                 "discriminator": {"params": params, "buffers": d_buffers},
                 "optimizer": {**state["optimizer"], "discriminator": opt}}
        return state, DUpdate(loss, penalties, real_logit, fake_logit)

    def _g_pure(self, state, n: int, real, labels, key, lr, clip):
        g, d = state["generator"], state["discriminator"]
        k_z, k_g, k_fake, k_real, k_ops = jax.random.split(key, 5)
        z = self._latent(k_z, n)
        ops = self.ops

        if self.needs_real:
            real = self._d_view(real, jax.random.fold_in(k_ops, 2))

        def loss_fn(params):
            fake, g_buffers = self._train_call("generator", params, g["buffers"], z, labels, k_g)
            fake = self._d_view(fake, jax.random.fold_in(k_ops, 1))
            fake_logits, d_buffers = self._train_call("discriminator", d["params"], d["buffers"], fake, labels, k_fake)
            real_logits = None
            if self.needs_real:
                real_logits, d_buffers = self._train_call("discriminator", d["params"], d_buffers, real, labels, k_real)
                real_logits = real_logits.reshape(-1)
            with ops.using_key(k_ops):
                loss = jnp.asarray(self.loss.generator(ops, fake_logits.reshape(-1), real_logits), jnp.float32)
            return loss.reshape(()), (g_buffers, d_buffers)

        (loss, (g_buffers, d_buffers)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g["params"])
        params, opt = self.optimizers["generator"].update(grads, state["optimizer"]["generator"], g["params"], lr, clip)
        state = {**state, "generator": {"params": params, "buffers": g_buffers},
                 "discriminator": {"params": d["params"], "buffers": d_buffers},
                 "optimizer": {**state["optimizer"], "generator": opt}}
        return state, loss

    def _ema_pure(self, state, decay):
        """``ema = decay * ema + (1 - decay) * g`` (a copy at decay 0); buffers copied."""
        g, ema = state["generator"], state["generator_ema"]
        params = jax.tree_util.tree_map(lambda e, p: jnp.where(decay == 0, p, e + (1 - decay) * (p - e)),
                                        ema["params"], g["params"])
        return {**state, "generator_ema": {"params": params, "buffers": dict(g["buffers"])}}

    def _step(self, state, batches, labels, key, lr_g, lr_d, factors, ema_decay, clip_g, clip_d):
        for i in range(self.n_critic):  # unrolled: n_critic is fixed per trainer
            key, sub = jax.random.split(key)
            state, d = self._d_pure(state, batches[i], None if labels is None else labels[i], sub, lr_d, factors,
                                    clip_d)
        key, sub = jax.random.split(key)
        state, g_loss = self._g_pure(state, batches.shape[1], batches[-1], None if labels is None else labels[-1],
                                     sub, lr_g, clip_g)
        if self.has_ema:
            state = self._ema_pure(state, ema_decay)
        scalars = jnp.stack([d.loss, g_loss, d.real_logit, d.fake_logit, *d.penalties.values()])
        return state, key, scalars

    def _d_step(self, state, real, labels, key, lr, factors, clip):
        key, sub = jax.random.split(key)
        state, d = self._d_pure(state, real, labels, sub, lr, factors, clip)
        return state, key, jnp.stack([d.loss, d.real_logit, d.fake_logit, *d.penalties.values()])

    def _g_step(self, state, n, real, labels, key, lr, clip):
        key, sub = jax.random.split(key)
        state, loss = self._g_pure(state, n, real, labels, sub, lr, clip)
        return state, key, loss

    # -- primitives ------------------------------------------------------------------------
    def _bound(self, role: str) -> float:
        """The weight-clipping bound of a role's optimizer as a traced number (inf: off)."""
        return float(self.optimizers[role].weight_bound or np.inf)

    # Host inputs of the jitted functions go in as numpy arrays: jit moves them to the device
    # of the (committed) state in its C++ path. An explicit device_put or jnp.asarray per step
    # cost the main thread about as much as the rest of the driver together.
    def _factors(self, hyper: StepHyper):
        return np.asarray([hyper.penalty[n] for n in self.regularizers], np.float32)

    def _x(self, x):
        return None if x is None else np.asarray(x, np.float32)

    def _y(self, labels):
        return None if labels is None else np.asarray(labels, np.int32)

    def fused_step(self, batches, labels, hyper: StepHyper):
        self.state, self.keys["noise"], scalars = self._step_fn(
            self.state, self._x(batches), self._y(labels), self.keys["noise"], hyper.lr["generator"],
            hyper.lr["discriminator"], self._factors(hyper), hyper.ema_decay, self._bound("generator"),
            self._bound("discriminator"))
        return np.asarray(scalars).tolist()  # the one device -> host transfer of the step

    def d_update(self, real, labels, hyper: StepHyper) -> DUpdate:
        self.state, self.keys["noise"], values = self._d_fn(
            self.state, self._x(real), self._y(labels), self.keys["noise"], hyper.lr["discriminator"],
            self._factors(hyper), self._bound("discriminator"))
        loss, real_logit, fake_logit, *penalties = values
        return DUpdate(loss, dict(zip(self.regularizers, penalties)), real_logit, fake_logit)

    def g_update(self, batch_size: int, real, labels, hyper: StepHyper):
        self.state, self.keys["noise"], loss = self._g_fn(
            self.state, int(batch_size), self._x(real) if self.needs_real else None, self._y(labels),
            self.keys["noise"], hyper.lr["generator"], self._bound("generator"))
        return loss

    def update_ema(self, decay: float) -> None:
        self.state = self._ema_pure(self.state, jnp.float32(decay))

    def forward(self, net: str, x, labels) -> np.ndarray:
        role = "generator" if net == "generator_ema" else net
        v = self.state[net]
        out = self._forward_fns[role](v["params"], v["buffers"], self._x(x), self._y(labels))
        out = np.asarray(out, dtype=np.float32)
        return out.reshape(out.shape[0]) if role == "discriminator" else out

    def sample_latents(self, n: int, seed: int | None):
        if seed is None:
            self.keys["sample_noise"], key = jax.random.split(self.keys["sample_noise"])
        else:
            key = jax.random.PRNGKey(int(seed))
        return self._latent(key, n)

    def _net(self, net: str) -> JaxNet:
        return self.nets["generator" if net == "generator_ema" else net]

    def export_weights(self, net: str) -> dict[str, np.ndarray]:
        v = self.state[net]
        return export_weights(LoadedNet(self._net(net), v["params"], v["buffers"]))

    def import_weights(self, net: str, weights: Mapping[str, np.ndarray]) -> None:
        loaded = load_weights(self._net(net), weights, f"{net}.")
        self.state = {**self.state, net: self._put({"params": loaded.params, "buffers": loaded.buffers})}

    def export_optimizer(self, role: str) -> dict[str, np.ndarray]:
        return self.optimizers[role].export_state(self.state["optimizer"][role])

    def import_optimizer(self, role: str, state: Mapping[str, np.ndarray]) -> None:
        opt = self.optimizers[role].load_state(self.state[role]["params"], state)
        self.state = {**self.state, "optimizer": {**self.state["optimizer"], role: self._put(opt)}}

    def export_rng(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(key, dtype=np.uint32) for name, key in self.keys.items()}

    def import_rng(self, state: Mapping[str, np.ndarray]) -> None:
        keys = {}
        for name, key in self.keys.items():
            value = np.asarray(state[name])
            if value.shape != tuple(key.shape):
                raise ValueError(f"{name!r} has shape {value.shape}, a jax key {tuple(key.shape)}")
            keys[name] = self._put(jnp.asarray(value, dtype=jnp.uint32))
        self.keys.update(keys)
