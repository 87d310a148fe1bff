"""``TorchTrainer``: the GAN training step on torch, eager or under ``torch.compile``.

Only the primitives of :mod:`gankit.backend_contract` are written here; the neutral half
(checks, state names, schedules, step results) is :class:`gankit.trainer.BaseTrainer`.
Mixed precision: :mod:`gankit_torch.amp`. With ``world_size > 1`` both nets are wrapped in
``DistributedDataParallel`` (:mod:`gankit_torch.distributed`; ``nets`` stay the plain modules,
so weights keep their canonical names); each rank trains on its share of the global batch and
latents, so a distributed step equals one single-process step on the whole batch.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Mapping

import numpy as np
import torch

from gankit.nets import pack_samples
from gankit.trainer import ROLES, BaseTrainer, DUpdate, StepHyper

from gankit_torch import ddp, distributed, native
from gankit_torch.amp import Precision
from gankit_torch.compiled import forwards
from gankit_torch.device import device_name, resolve_device, set_threads
from gankit_torch.layout import transposed_names
from gankit_torch.nn import build_net, export_weights, load_weights
from gankit_torch.ops import TorchOps
from gankit_torch.streams import draw, generator_states, make_generator, set_generator_states
from gankit_torch.optim import build_optimizer
from gankit_torch.update import backward_and_step, export_optimizer_state, load_optimizer_state


def _scalar(x, what: str, device) -> torch.Tensor:
    """A detached float32 0-d tensor; a loss or penalty that is not a scalar is a bug."""
    if not isinstance(x, torch.Tensor):
        return torch.tensor(float(x), dtype=torch.float32, device=device)
    if x.numel() != 1:
        raise ValueError(f"{what} must return a scalar, got shape {tuple(x.shape)}")
    return x.detach().reshape(()).float()


class TorchTrainer(BaseTrainer):
    """Networks, optimizers and the step for one :class:`gankit.TrainSetup` on one torch device.

    Attributes besides :class:`~gankit.trainer.BaseTrainer`'s: ``nets``, ``optimizers``,
    ``optimizer_steps`` and ``parallel`` (DDP wrappers; empty in one process) by role, ``ema``
    (the EMA generator, or None), ``ops`` (:class:`TorchOps` for losses and regularizers,
    drawing from the training noise ``noise``), ``streams`` (the seeded generators), ``torch_device``.
    """

    backend = "torch"

    # -- set-up -------------------------------------------------------------------------
    def init_device(self, device: str, threads: int | None) -> str:
        set_threads(threads)
        self.torch_device = resolve_device(device)
        return device_name(self.torch_device)

    def build(self) -> None:
        s, dev = self.setup, self.torch_device
        self.precision = Precision(s.precision, dev, ROLES)
        torch.manual_seed(s.seed)  # for anything that draws from torch's default generator (dropout)
        self.nets = {role: build_net(spec).to(device=dev, dtype=torch.float32) for role, spec in self.specs.items()}
        self.ema = build_net(s.generator).to(dev, torch.float32).eval().requires_grad_(False) if self.has_ema else None
        self.optimizers = {role: build_optimizer(self.nets[role].parameters(), self.settings(role)) for role in ROLES}
        self.optimizer_steps = {role: 0 for role in ROLES}
        for role, opt in self.optimizers.items():
            opt.register_step_post_hook(lambda *_, role=role: self._count_step(role))
        # Training noise (latents, and the penalties' draws through ops) is one seeded
        # stream; sample(seed=None) draws from a second, so pictures never change training.
        self.noise = make_generator(dev, s.seed)
        self.streams = {"noise": self.noise, "sample_noise": make_generator(
            dev, int(np.random.SeedSequence([s.seed, 1]).generate_state(1)[0]))}
        self.ops = TorchOps(device=dev, dtype="float32", generator=self.noise)
        self._params = {role: list(self.nets[role].parameters()) for role in ROLES}
        self._buffers = [b for role in ROLES for b in self.nets[role].buffers() if b.is_floating_point()]
        self.parallel = {role: ddp.wrap(self.nets[role], dev) for role in ROLES} if self.world_size > 1 else {}
        # ``_g``/``_d`` where each net is trained, ``_g_plain``/``_d_plain`` where it serves the
        # other's update; extras["torch_compile"]: torch.compile's keywords ({"mode": "max-autotune"}).
        options = dict(s.extras.get("torch_compile", {})) if s.compile else None
        (self._g, self._d), (self._g_plain, self._d_plain) = forwards(self.nets, self.parallel, options)
        d_net = self.nets["discriminator"]
        #: Whether the D update's real-batch forward also serves penalties at the real samples
        #: (ops.reuse_forward): only where it is the plain eager module (not compiled, no DDP) and
        #: a second forward would be identical (no buffers: batch norm, spectral norm; no dropout).
        self._share_real_forward = bool(
            any(getattr(getattr(r, "meta", None), "evaluated_at", None) == "real" for r in self.regularizers.values())
            and not s.compile and not self.parallel and not any(True for _ in d_net.buffers())
            and not any(isinstance(m, torch.nn.Dropout) for m in d_net.modules()))

    def _count_step(self, role: str) -> None:
        self.optimizer_steps[role] += 1

    native_weights = staticmethod(native.native_weights)  # the optional primitive: a plugin's torch module

    # -- helpers ------------------------------------------------------------------------
    def _tensor(self, x) -> torch.Tensor:
        """Samples (numpy or torch) as float32 on the device, in one transfer."""
        if not isinstance(x, torch.Tensor):
            x = np.asarray(x, dtype=np.float32)  # torch wants writable, contiguous memory:
            x = torch.from_numpy(x if x.flags.c_contiguous and x.flags.writeable else np.array(x, order="C"))
        return x.to(device=self.torch_device, dtype=torch.float32, non_blocking=True)

    def _labels(self, labels) -> torch.Tensor | None:
        """Checked int64 class labels (numpy or torch) as a long tensor on the device; None stays None."""
        return None if labels is None else torch.as_tensor(labels, dtype=torch.int64, device=self.torch_device)

    def _latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        gen = self.noise if generator is None else generator
        # Training latents across ranks: every rank draws the global batch from the same
        # stream and keeps its own rows, as one process drawing the whole batch would.
        share = generator is None and self.world_size > 1
        shape = (int(n) * (self.world_size if share else 1), self.latent_dim)
        uniform = self.setup.latent_distribution == "uniform"
        z = draw("uniform" if uniform else "normal", shape, gen, self.torch_device, torch.float32)
        z = z * 2 - 1 if uniform else z  # U[-1, 1)
        return z[self.rank * int(n): (self.rank + 1) * int(n)] if share else z

    def _update(self, role: str, loss: torch.Tensor, hyper: StepHyper, **backward_kwargs) -> None:
        opt = self.optimizers[role]
        opt.zero_grad(set_to_none=True)
        for group in opt.param_groups:  # the schedule's learning rate of this step
            group["lr"] = hyper.lr[role]
        backward_and_step(opt, loss, self._params[role], self.settings(role), self.precision.scalers.get(role),
                          **backward_kwargs)

    def _logits(self, d, labels, x) -> torch.Tensor:
        """The logits (batch,) of ``d`` (a D forward) on samples ``x``."""
        return d(x, labels).reshape(x.shape[0])

    # -- updates ------------------------------------------------------------------------
    def d_update(self, real, labels, hyper: StepHyper) -> DUpdate:
        real, labels = self._tensor(real), self._labels(labels)
        z = self._latent(real.shape[0])  # a conditional GAN's fakes take the real batch's labels
        # D for the penalties: the plain module, eager even under compile (penalties
        # differentiate through D twice, which compiled graphs do not support), not the DDP
        # wrapper (the update's one backward averages the gradients, penalty terms included).
        d_fn = functools.partial(self._logits, self.nets["discriminator"], labels)
        shared = contextlib.nullcontext()
        with self.precision.autocast():
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
                raw = self._logits(self._d, labels, leaf)
                shared = self.ops.reuse_forward(d_fn, real, leaf, raw)
                real_logits = raw.float()
            else:
                real_logits = self._logits(self._d, labels, real).float()
            fake_logits = self._logits(self._d, labels, fake).float()
            d_loss = self.loss.discriminator(self.ops, real_logits, fake_logits)
            total, penalties = d_loss, {}
            with shared:
                for name, reg in self.regularizers.items():
                    p = reg(self.ops, d_fn, real, fake.float())
                    if hyper.penalty[name] != 1.0:  # a weight schedule
                        p = p * hyper.penalty[name]
                    penalties[name] = _scalar(p, f"regularizer {name!r}", self.torch_device)
                    total = total + p
        self._update("discriminator", total, hyper)
        return DUpdate(loss=_scalar(d_loss, "the discriminator loss", self.torch_device), penalties=penalties,
                       real_logit=real_logits.detach().mean().float(), fake_logit=fake_logits.detach().mean().float())

    def g_update(self, batch_size: int, real, labels, hyper: StepHyper) -> torch.Tensor:
        labels, needs_real = self._labels(labels), self.needs_real
        real = self._tensor(real) if needs_real else None
        with self.precision.autocast():
            fake = self._g(self._latent(batch_size), labels)
            if self.augment is not None:  # differentiable: G's gradients flow through it
                fake = self.augment(self.ops, fake)
                real = self.augment(self.ops, real) if needs_real else real
            if self.pack > 1:
                fake = pack_samples(self.ops, fake, self.pack)
                real = pack_samples(self.ops, real, self.pack) if needs_real else real
            fake_logits = self._logits(self._d_plain, labels, fake).float()
            real_logits = self._logits(self._d_plain, labels, real).float() if needs_real else None
            g_loss = self.loss.generator(self.ops, fake_logits, real_logits)
        # Into G's parameters only (G's DDP wrapper averages them); D's stay untouched (and cleared).
        self._update("generator", g_loss, hyper, inputs=self._params["generator"])
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        return _scalar(g_loss, "the generator loss", self.torch_device)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        g, ema = self.nets["generator"], self.ema
        if decay == 0.0:
            torch._foreach_copy_(list(ema.parameters()), list(g.parameters()))
        else:
            torch._foreach_lerp_(list(ema.parameters()), list(g.parameters()), 1.0 - decay)
        if any(True for _ in ema.buffers()):
            torch._foreach_copy_(list(ema.buffers()), list(g.buffers()))

    def fused_step(self, batches, labels, hyper: StepHyper):
        """The base class's step on the batches moved to the device in one transfer."""
        return super().fused_step(self._tensor(batches), self._labels(labels), hyper)

    def sync_buffers(self) -> None:
        if self.world_size > 1 and self._buffers:  # rank 0's buffers, once per step (see gankit_torch.ddp)
            ddp.broadcast(self._buffers, self.world_size)

    def to_floats(self, values) -> list[float]:
        """One device -> host sync; under DDP every rank reports (and checks) the global means."""
        values = torch.stack(list(values))
        distributed.all_reduce_mean([values])
        return values.cpu().tolist()

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, net: str, x, labels) -> np.ndarray:
        module = self._module(net)
        was = module.training
        module.eval()
        try:
            out = module(self._tensor(x), self._labels(labels))
        finally:
            module.train(was)
        out = out.reshape(out.shape[0]) if net == "discriminator" else out
        return out.float().cpu().numpy()

    def sample_latents(self, n: int, seed: int | None) -> torch.Tensor:
        return self._latent(n, self.streams["sample_noise"] if seed is None else make_generator(self.torch_device, seed))

    # -- state I/O ------------------------------------------------------------------------
    def _module(self, net: str) -> torch.nn.Module:
        return self.ema if net == "generator_ema" else self.nets[net]

    def export_weights(self, net: str) -> dict[str, np.ndarray]:
        return export_weights(self._module(net))

    def import_weights(self, net: str, weights: Mapping[str, np.ndarray]) -> None:
        load_weights(self._module(net), weights, prefix=f"{net}.")

    def _optimizer_args(self, role: str):
        return (self.optimizers[role], self.settings(role), dict(self.nets[role].named_parameters()),
                transposed_names(self.specs[role]))

    def export_optimizer(self, role: str) -> dict[str, np.ndarray]:
        return export_optimizer_state(*self._optimizer_args(role), self.optimizer_steps[role])

    def import_optimizer(self, role: str, state: Mapping[str, np.ndarray]) -> None:
        self.optimizer_steps[role] = load_optimizer_state(*self._optimizer_args(role), state)

    def export_rng(self) -> dict[str, np.ndarray]:
        """The seeded streams and torch's global generators (uint8), float16's loss scales."""
        return {**generator_states(self.streams, self.torch_device), **self.precision.state()}

    def import_rng(self, state: Mapping[str, np.ndarray]) -> None:
        set_generator_states(self.streams, self.torch_device, state)
        self.precision.load_state(state)
