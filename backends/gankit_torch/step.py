"""``TorchTrainer``: the GAN training step on torch, eager or under ``torch.compile``.

Only the primitives of :mod:`gankit.backend_contract` are written here; the neutral half
(checks, state names, schedules, step results) is :class:`gankit.trainer.BaseTrainer`.

Under ``precision = bfloat16 | float16`` the forward passes and losses run under
``torch.autocast``; float16 scales each loss with its own ``GradScaler`` (gradients are
unscaled before clipping; the scales are saved with the random state). With
``world_size > 1`` (see :mod:`gankit_torch.distributed`) both nets are wrapped in
``DistributedDataParallel`` (``parallel``, by role; ``nets`` stay the plain modules, so
weights keep their canonical names), which averages the gradients over the ranks in every
backward; each rank trains on its share of the global batch and of the global latents, so
a distributed step equals one single-process step on the whole batch.
"""

from __future__ import annotations

import contextlib
from typing import Mapping

import numpy as np
import torch

from gankit.errors import ConfigError
from gankit.nets import pack_samples
from gankit.trainer import ROLES, BaseTrainer, DUpdate, StepHyper

from gankit_torch import distributed, native
from gankit_torch.compiled import Compiled
from gankit_torch.device import make_generator, resolve_device, set_threads
from gankit_torch.nn import build_net, export_weights, load_weights, transposed_names
from gankit_torch.ops import TorchOps, draw
from gankit_torch.optim import backward_and_step, build_optimizer, export_optimizer_state, load_optimizer_state

_PRECISION = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _scalar(x, what: str, device) -> torch.Tensor:
    """A detached float32 0-d tensor; a loss or penalty that is not a scalar is a bug."""
    if not isinstance(x, torch.Tensor):
        return torch.tensor(float(x), dtype=torch.float32, device=device)
    if x.numel() != 1:
        raise ValueError(f"{what} must return a scalar, got shape {tuple(x.shape)}")
    return x.detach().reshape(()).float()


class TorchTrainer(BaseTrainer):
    """Networks, optimizers and the step for one :class:`gankit.TrainSetup` on one torch device.

    Attributes besides :class:`~gankit.trainer.BaseTrainer`'s: ``nets`` and ``optimizers``
    (by role), ``ema`` (the EMA generator module, or ``None``), ``ops`` (the
    :class:`TorchOps` handed to losses and regularizers; it shares the seeded training
    noise ``noise``), ``torch_device``, ``parallel`` (DDP wrappers by role, empty in one
    process), ``optimizer_steps`` (by role).
    """

    backend = "torch"

    # -- set-up -------------------------------------------------------------------------
    def init_device(self, device: str, threads: int | None) -> str:
        set_threads(threads)
        self.torch_device = resolve_device(device)
        return str(self.torch_device)

    def build(self) -> None:
        s, dev = self.setup, self.torch_device
        self._autocast_dtype = _PRECISION.get(s.precision)
        if self._autocast_dtype is not None and dev.type == "mps":
            raise ConfigError("mixed precision is not supported on mps", hint="use precision = 'float32'")
        torch.manual_seed(s.seed)  # for anything that draws from torch's default generator (dropout)
        self.nets = {role: build_net(spec).to(device=dev, dtype=torch.float32) for role, spec in self.specs.items()}
        self.ema = build_net(s.generator).to(device=dev, dtype=torch.float32).eval() if self.has_ema else None
        if self.ema is not None:
            self.ema.requires_grad_(False)
        self.optimizers = {role: build_optimizer(self.nets[role].parameters(), self.settings(role)) for role in ROLES}
        self.optimizer_steps = {role: 0 for role in ROLES}
        for role, opt in self.optimizers.items():
            opt.register_step_post_hook(self._step_counter(role))
        # Training noise (latents, and the penalties' draws through ops) is one seeded
        # stream; sample(seed=None) draws from a second, so pictures never change training.
        self.noise = make_generator(dev, s.seed)
        self._sample_noise = make_generator(dev, int(np.random.SeedSequence([s.seed, 1]).generate_state(1)[0]))
        self.ops = TorchOps(device=dev, dtype="float32", generator=self.noise)
        self._scalers = {r: torch.amp.GradScaler(dev.type) for r in ROLES} if s.precision == "float16" else {}
        self._params = {role: list(self.nets[role].parameters()) for role in ROLES}
        self._buffers = [b for role in ROLES for b in self.nets[role].buffers() if b.is_floating_point()]
        self.parallel = {role: distributed.wrap(self.nets[role], dev) for role in ROLES} if self.world_size > 1 else {}
        # Each net has two forwards: ``_g``/``_d`` where it is trained (through its DDP
        # wrapper, whose backward averages its gradients), ``_g_plain``/``_d_plain`` where
        # it only serves the other net's update (no DDP bookkeeping, no all-reduce).
        trained = [self.parallel.get(role, self.nets[role]) for role in ROLES]
        plain = [self.nets[role] for role in ROLES]
        if s.compile:  # extras["torch_compile"]: torch.compile's keywords ({"mode": "max-autotune"})
            options = dict(s.extras.get("torch_compile", {}))
            trained = [Compiled(net, role, options) for net, role in zip(trained, ROLES)]
            plain = [Compiled(net, role, options) for net, role in zip(plain, ROLES)] if self.parallel else trained
        (self._g, self._d), (self._g_plain, self._d_plain) = trained, plain
        d_net = self.nets["discriminator"]
        #: Whether the D update's real-batch forward also serves penalties at the real
        #: samples (ops.reuse_forward): only where that forward is the plain eager module
        #: (not compiled, no DDP) and a second forward would be identical and leave no
        #: trace (no buffers such as batch-norm statistics or spectral-norm vectors, no dropout).
        self._share_real_forward = bool(
            any(getattr(getattr(r, "meta", None), "evaluated_at", None) == "real" for r in self.regularizers.values())
            and not s.compile and not self.parallel and not any(True for _ in d_net.buffers())
            and not any(isinstance(m, torch.nn.Dropout) for m in d_net.modules()))

    def _step_counter(self, role: str):
        def count(optimizer, args, kwargs):
            self.optimizer_steps[role] += 1
        return count

    def native_weights(self, spec, seed: int) -> dict[str, np.ndarray]:
        return native.native_weights(spec, seed)

    # -- helpers ------------------------------------------------------------------------
    def _tensor(self, x) -> torch.Tensor:
        """Samples (numpy or torch) as float32 on the device, in one transfer."""
        if isinstance(x, torch.Tensor):
            return x.to(device=self.torch_device, dtype=torch.float32)
        arr = np.asarray(x, dtype=np.float32)
        if not (arr.flags.c_contiguous and arr.flags.writeable):
            arr = np.array(arr, dtype=np.float32, order="C")  # torch wants writable memory
        return torch.from_numpy(arr).to(self.torch_device, non_blocking=True)

    def _labels(self, labels) -> torch.Tensor | None:
        """Checked int64 class labels (numpy or torch) as a long tensor on the device."""
        if labels is None or isinstance(labels, torch.Tensor):
            return labels
        return torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.torch_device)

    def _latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        gen = self.noise if generator is None else generator
        # Training latents across ranks: every rank draws the global batch from the same
        # stream and keeps its own rows, as one process drawing the whole batch would.
        share = generator is None and self.world_size > 1
        shape = (int(n) * (self.world_size if share else 1), self.latent_dim)
        if self.setup.latent_distribution == "uniform":
            z = draw("uniform", shape, gen, self.torch_device, torch.float32) * 2 - 1  # U[-1, 1)
        else:
            z = draw("normal", shape, gen, self.torch_device, torch.float32)
        return z[self.rank * int(n): (self.rank + 1) * int(n)] if share else z

    def _autocast(self):
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=self._autocast_dtype)

    def _update(self, role: str, loss: torch.Tensor, hyper: StepHyper, **backward_kwargs) -> None:
        opt = self.optimizers[role]
        for group in opt.param_groups:  # the schedule's learning rate of this step
            group["lr"] = hyper.lr[role]
        backward_and_step(opt, loss, self._params[role], self.settings(role), self._scalers.get(role),
                          **backward_kwargs)

    def _logits(self, d, x, labels) -> torch.Tensor:
        """The logits (batch,) of ``d`` (a D forward) on samples ``x``."""
        return d(x, labels).reshape(x.shape[0])

    # -- updates ------------------------------------------------------------------------
    def d_update(self, real, labels, hyper: StepHyper) -> DUpdate:
        real, labels = self._tensor(real), self._labels(labels)
        z = self._latent(real.shape[0])  # a conditional GAN's fakes take the real batch's labels
        # D for the penalties: the plain module, eager even under compile (penalties
        # differentiate through D twice, which compiled graphs do not support), not the DDP
        # wrapper (the update's one backward averages the gradients, penalty terms included).
        d_net = self.nets["discriminator"]

        def d_fn(x):
            return self._logits(d_net, x, labels)

        shared = contextlib.nullcontext()
        with self._autocast():
            with torch.no_grad():  # no graph through G: this update trains D only
                fake = self._g_plain(z, labels)
            if self.augment is not None:  # DiffAugment: D only ever sees augmented batches
                real, fake = self.augment(self.ops, real), self.augment(self.ops, fake)
            if self.pack > 1:  # PacGAN: D, its loss and the penalties see packs of samples
                real, fake = pack_samples(self.ops, real, self.pack), pack_samples(self.ops, fake, self.pack)
            if self._share_real_forward:
                # One forward on the real batch serves the loss and a penalty's input
                # gradient there (R1), as a hand-written loop would do it.
                leaf = real.detach().requires_grad_(True)
                raw = self._logits(self._d, leaf, labels)
                shared = self.ops.reuse_forward(d_fn, real, leaf, raw)
                real_logits = raw.float()
            else:
                real_logits = self._logits(self._d, real, labels).float()
            fake_logits = self._logits(self._d, fake, labels).float()
            d_loss = self.loss.discriminator(self.ops, real_logits, fake_logits)
            total, penalties = d_loss, {}
            with shared:
                for name, reg in self.regularizers.items():
                    p = reg(self.ops, d_fn, real, fake.float())
                    if hyper.penalty[name] != 1.0:  # a weight schedule
                        p = p * hyper.penalty[name]
                    penalties[name] = _scalar(p, f"regularizer {name!r}", self.torch_device)
                    total = total + p
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        self._update("discriminator", total, hyper)
        return DUpdate(loss=_scalar(d_loss, "the discriminator loss", self.torch_device), penalties=penalties,
                       real_logit=real_logits.detach().mean().float(), fake_logit=fake_logits.detach().mean().float())

    def g_update(self, batch_size: int, real, labels, hyper: StepHyper) -> torch.Tensor:
        labels, needs_real = self._labels(labels), self.needs_real
        real = self._tensor(real) if needs_real else None
        with self._autocast():
            fake = self._g(self._latent(batch_size), labels)
            if self.augment is not None:  # differentiable: G's gradients flow through it
                fake = self.augment(self.ops, fake)
                real = self.augment(self.ops, real) if needs_real else real
            if self.pack > 1:
                fake = pack_samples(self.ops, fake, self.pack)
                real = pack_samples(self.ops, real, self.pack) if needs_real else real
            fake_logits = self._logits(self._d_plain, fake, labels).float()
            real_logits = self._logits(self._d_plain, real, labels).float() if needs_real else None
            g_loss = self.loss.generator(self.ops, fake_logits, real_logits)
        self.optimizers["generator"].zero_grad(set_to_none=True)
        # Accumulate into G's parameters only (G's DDP wrapper averages them); D's stay
        # untouched (and are cleared).
        self._update("generator", g_loss, hyper, inputs=self._params["generator"])
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        return _scalar(g_loss, "the generator loss", self.torch_device)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        g, ema = self.nets["generator"], self.ema
        ema_params, g_params = list(ema.parameters()), list(g.parameters())
        if decay == 0.0:
            torch._foreach_copy_(ema_params, g_params)
        else:
            torch._foreach_lerp_(ema_params, g_params, 1.0 - decay)
        ema_buffers, g_buffers = list(ema.buffers()), list(g.buffers())
        if ema_buffers:
            torch._foreach_copy_(ema_buffers, g_buffers)

    def fused_step(self, batches, labels, hyper: StepHyper):
        """The base class's step on the batches moved to the device in one transfer."""
        return super().fused_step(self._tensor(batches), self._labels(labels), hyper)

    def sync_buffers(self) -> None:
        if self.world_size > 1 and self._buffers:  # rank 0's buffers, once per step (see distributed)
            distributed.broadcast(self._buffers, self.world_size)

    def to_floats(self, values) -> list[float]:
        """One device -> host sync; under DDP every rank reports (and checks) the global means."""
        values = torch.stack(list(values))
        distributed.all_reduce_mean([values], self.world_size)
        return values.cpu().tolist()

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, net: str, x, labels) -> np.ndarray:
        module = self.ema if net == "generator_ema" else self.nets[net]
        was = module.training
        module.eval()
        try:
            out = module(self._tensor(x), self._labels(labels))
        finally:
            module.train(was)
        out = out.reshape(out.shape[0]) if net == "discriminator" else out
        return out.float().cpu().numpy()

    def sample_latents(self, n: int, seed: int | None) -> torch.Tensor:
        return self._latent(n, self._sample_noise if seed is None else make_generator(self.torch_device, seed))

    # -- state I/O ------------------------------------------------------------------------
    def _module(self, net: str) -> torch.nn.Module:
        return self.ema if net == "generator_ema" else self.nets[net]

    def export_weights(self, net: str) -> dict[str, np.ndarray]:
        return export_weights(self._module(net), self._spec(net))

    def import_weights(self, net: str, weights: Mapping[str, np.ndarray]) -> None:
        load_weights(self._module(net), self._spec(net), weights, prefix=f"{net}.")

    def _optimizer_args(self, role: str):
        return (self.optimizers[role], self.settings(role), dict(self.nets[role].named_parameters()),
                transposed_names(self.specs[role]))

    def export_optimizer(self, role: str) -> dict[str, np.ndarray]:
        return export_optimizer_state(*self._optimizer_args(role), self.optimizer_steps[role])

    def import_optimizer(self, role: str, state: Mapping[str, np.ndarray]) -> None:
        self.optimizer_steps[role] = load_optimizer_state(*self._optimizer_args(role), state)

    def export_rng(self) -> dict[str, np.ndarray]:
        """Training noise, sampling noise and torch's global generators (and the float16
        loss scales), as uint8 / float arrays."""
        out = {"noise": self.noise.get_state().numpy().copy(),
               "sample_noise": self._sample_noise.get_state().numpy().copy(),
               "torch_global": torch.get_rng_state().numpy().copy()}
        if self.torch_device.type == "cuda":
            out["torch_cuda"] = torch.cuda.get_rng_state(self.torch_device).numpy().copy()
        for role, scaler in self._scalers.items():
            st = scaler.state_dict()
            out[f"loss_scale.{role}"] = np.asarray([st.get("scale", 0.0), st.get("_growth_tracker", 0)], np.float64)
        return out

    def import_rng(self, state: Mapping[str, np.ndarray]) -> None:
        def as_state(key):
            return torch.as_tensor(np.asarray(state[key], dtype=np.uint8))

        try:
            self.noise.set_state(as_state("noise"))
            self._sample_noise.set_state(as_state("sample_noise"))
            torch.set_rng_state(as_state("torch_global"))
            if "torch_cuda" in state and self.torch_device.type == "cuda":
                torch.cuda.set_rng_state(as_state("torch_cuda"), self.torch_device)
        except RuntimeError as exc:  # a state of the wrong size: torch's own message
            raise ValueError(str(exc)) from None
        for role, scaler in self._scalers.items():
            if f"loss_scale.{role}" in state:
                scale, tracker = np.asarray(state[f"loss_scale.{role}"], dtype=np.float64).tolist()
                scaler.load_state_dict({**scaler.state_dict(), "scale": scale, "_growth_tracker": int(tracker)})
