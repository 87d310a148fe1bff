"""``TorchTrainer``: the GAN training step on torch, eager or under ``torch.compile``."""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

import gankit
from gankit import CheckpointError, ConfigError, DataError, StepResult, TrainSetup
from gankit.nets import class_labels, conditional_classes, pack_samples

from gankit_torch import distributed
from gankit_torch.device import make_generator, resolve_device, set_threads
from gankit_torch.nn import build_net, check_weights, export_weights, load_weights, transposed_names
from gankit_torch.ops import TorchOps, draw
from gankit_torch.optim import (
    build_optimizer,
    check_optimizer_state,
    export_optimizer_state,
    load_optimizer_state,
)

ROLES = ("generator", "discriminator")
_OPT_PREFIX = {"generator": "g_optimizer.", "discriminator": "d_optimizer."}
_PRECISION = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class _Compiled:
    """``torch.compile(module)``, falling back to the eager module (with one warning)
    when compilation fails on this machine (no C compiler, unsupported device, ...)."""

    def __init__(self, module: torch.nn.Module, label: str, options: dict | None = None):
        self.eager = module
        self.compiled = torch.compile(module, **(options or {}))
        self.label = label
        self.failed = False

    def __call__(self, *args):
        if self.failed:
            return self.eager(*args)
        try:
            return self.compiled(*args)
        except Exception as exc:
            out = self.eager(*args)  # a genuine error in the model raises here, unwrapped
            self.failed = True
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            warnings.warn(
                f"torch.compile could not compile the {self.label} ({type(exc).__name__}: {first}); "
                "running it eagerly",
                RuntimeWarning,
                stacklevel=2,
            )
            return out


@dataclass
class _DUpdate:
    """Detached scalars of one discriminator update (still on the device)."""

    loss: torch.Tensor
    penalties: dict[str, torch.Tensor]
    real_logit: torch.Tensor
    fake_logit: torch.Tensor


def _scalar(x, what: str, device) -> torch.Tensor:
    """A detached float32 0-d tensor; a loss or penalty that is not a scalar is a bug."""
    if not isinstance(x, torch.Tensor):
        return torch.tensor(float(x), dtype=torch.float32, device=device)
    if x.numel() != 1:
        raise ValueError(f"{what} must return a scalar, got shape {tuple(x.shape)}")
    return x.detach().reshape(()).float()


def _extra_name(name: str) -> str:
    return "penalty_" + re.sub(r"\W", "_", name)


class TorchTrainer:
    """A GAN built from a :class:`gankit.TrainSetup` on one torch device.

    Attributes: ``nets`` and ``optimizers`` (by role), ``ops`` (the :class:`TorchOps`
    handed to losses and regularizers; it shares the trainer's seeded noise
    generator), ``device`` (resolved, e.g. ``"cpu"``, ``"cuda:0"``), ``step_count``,
    ``ema`` (the EMA generator module, or ``None``).

    Under ``precision = bfloat16 | float16`` the forward passes and losses run under
    ``torch.autocast``; float16 scales each loss with its own ``GradScaler`` (gradients
    are unscaled before clipping). With ``world_size > 1`` (see
    :mod:`gankit_torch.distributed`) both nets are wrapped in ``DistributedDataParallel``
    (``parallel``, by role; ``nets`` stay the plain modules, so weights keep their
    canonical names), which averages the gradients over the ranks in every backward;
    each rank trains on its share of the global batch and of the global latents, so a
    distributed step equals one single-process step on the whole batch.
    """

    backend = "torch"

    def __init__(self, setup: TrainSetup):
        self.setup = setup
        self.specs = {"generator": setup.generator, "discriminator": setup.discriminator}
        self._check_setup()
        set_threads(setup.threads)
        dev = resolve_device(setup.device)
        self.torch_device = dev
        self.device = str(dev)
        self.step_count = 0
        self.loss = setup.loss
        self.regularizers = dict(setup.regularizers)
        #: DiffAugment (or another ``(ops, x) -> x``) before every D call in training, or None.
        self.augment = setup.augment
        #: PacGAN: the discriminator judges packs of this many samples (``NetSpec.pack``).
        self.pack = int(getattr(setup.discriminator, "pack", 1))
        #: Weight schedules of the penalties that have one (see TrainSetup.regularizer_schedules).
        self._penalty_schedules = {n: s for n, s in setup.regularizer_schedules.items() if not s.constant}
        self.world_size, self.rank = int(setup.world_size), int(setup.rank)
        self.has_ema = setup.ema_decay > 0
        self._autocast_dtype = _PRECISION.get(setup.precision)
        if setup.precision == "float16" and dev.type != "cuda":
            raise ConfigError(f"precision float16 needs a CUDA GPU, the trainer runs on {self.device}",
                              hint="use precision = 'bfloat16' on the cpu, or 'float32'")
        if self._autocast_dtype is not None and dev.type == "mps":
            raise ConfigError("mixed precision is not supported on mps", hint="use precision = 'float32'")

        # Seed torch globally too, for anything that draws from the default generator.
        torch.manual_seed(setup.seed)
        self.nets = {role: build_net(spec).to(device=dev, dtype=torch.float32)
                     for role, spec in self.specs.items()}
        self.ema = None
        if self.has_ema:
            self.ema = build_net(setup.generator).to(device=dev, dtype=torch.float32).eval()
            self.ema.requires_grad_(False)
        weights = setup.initial_weights or gankit.initial_weights(
            setup.generator, setup.discriminator, "default", setup.seed)
        self.load_state_dict(weights)
        self.optimizers = {
            "generator": build_optimizer(self.nets["generator"].parameters(), setup.g_optimizer),
            "discriminator": build_optimizer(self.nets["discriminator"].parameters(), setup.d_optimizer),
        }
        self.optimizer_steps = {role: 0 for role in ROLES}
        for role, opt in self.optimizers.items():
            opt.register_step_post_hook(self._counter(role))
        # Training noise (latents, and the penalties' random draws through ops) comes from
        # one seeded stream; sample(seed=None) uses a second stream so that drawing
        # pictures never changes the course of training.
        self.noise = make_generator(dev, setup.seed)
        self._sample_noise = make_generator(dev, int(np.random.SeedSequence([setup.seed, 1]).generate_state(1)[0]))
        self.ops = TorchOps(device=dev, dtype="float32", generator=self.noise)
        self._scalers = {role: torch.amp.GradScaler(dev.type) for role in ROLES} \
            if setup.precision == "float16" else None
        self._params = {role: [p for p in self.nets[role].parameters()] for role in ROLES}
        self._buffers = [b for role in ROLES for b in self.nets[role].buffers() if b.is_floating_point()]
        self._scheduled = any(self._settings(r).schedule != "constant" for r in ROLES)

        #: ``DistributedDataParallel`` wrappers of the nets by role (empty in one process).
        self.parallel: dict[str, torch.nn.parallel.DistributedDataParallel] = {}
        if self.world_size > 1:
            self.parallel = {role: distributed.wrap(self.nets[role], dev) for role in ROLES}
        # Each net has two forwards: ``_g``/``_d`` where it is trained (through its DDP
        # wrapper, whose backward averages its gradients), ``_g_plain``/``_d_plain`` where
        # it only serves the other net's update (no DDP bookkeeping, no all-reduce).
        trained = [self.parallel.get(role, self.nets[role]) for role in ROLES]
        plain = [self.nets[role] for role in ROLES]
        if setup.compile:
            # setup.extras["torch_compile"]: keyword arguments for torch.compile
            # (e.g. {"mode": "max-autotune"} or {"backend": "aot_eager"}).
            options = dict(setup.extras.get("torch_compile", {}))
            trained = [_Compiled(net, role, options) for net, role in zip(trained, ROLES)]
            plain = [_Compiled(net, role, options) for net, role in zip(plain, ROLES)] if self.parallel else trained
        self._g, self._d = trained
        self._g_plain, self._d_plain = plain
        d_net = self.nets["discriminator"]
        #: Whether the discriminator update's real-batch forward also serves penalties
        #: evaluated at the real samples (ops.reuse_forward): only where that forward is
        #: the plain eager module (not compiled, no DDP wrapper) and a second forward
        #: would be identical and leave no trace (no buffers such as batch-norm
        #: statistics or spectral-norm vectors, no dropout).
        self._share_real_forward = bool(
            any(getattr(getattr(r, "meta", None), "evaluated_at", None) == "real"
                for r in self.regularizers.values())
            and not setup.compile and not self.parallel
            and not any(True for _ in d_net.buffers())
            and not any(isinstance(m, torch.nn.Dropout) for m in d_net.modules()))

    # -- setup checks -------------------------------------------------------------
    def _check_setup(self) -> None:
        s = self.setup
        g, d = s.generator, s.discriminator
        if tuple(g.input_shape) != (s.latent_dim,):
            raise ConfigError(
                f"the generator takes input shape {tuple(g.input_shape)} but latent_dim is {s.latent_dim}",
                hint="build the generator with input_shape=(latent_dim,)")
        if tuple(g.output_shape) != tuple(d.input_shape):
            raise ConfigError(
                f"the generator outputs shape {tuple(g.output_shape)} but the discriminator takes "
                f"{tuple(d.input_shape)}", hint="both must match the data's sample shape")
        if math.prod(d.output_shape) != 1:
            raise ConfigError(
                f"the discriminator must output one logit per sample, got shape {tuple(d.output_shape)}",
                hint="end it with a dense layer of 1 unit")
        if s.n_critic < 1:
            raise ConfigError(f"n_critic must be at least 1, got {s.n_critic}")
        unknown = sorted(set(s.regularizer_schedules) - set(s.regularizers))
        if unknown:
            raise ConfigError(f"weight schedules given for regularizers the setup does not have: {', '.join(unknown)}",
                              hint="name each schedule after one of TrainSetup.regularizers")
        try:
            #: Classes of the class-conditional nets' label input (None: unconditional).
            self.num_classes = conditional_classes(g, d)
        except ValueError as exc:
            raise ConfigError(f"generator and discriminator: {exc}") from None
        if not 0 <= s.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {s.ema_decay}")
        if s.world_size < 1 or not 0 <= s.rank < s.world_size:
            raise ConfigError(f"rank {s.rank} does not fit world_size {s.world_size}")
        pack = int(getattr(d, "pack", 1))
        if s.batch_size % (s.world_size * pack):
            raise ConfigError(f"batch_size {s.batch_size} does not divide into packs of {pack} on {s.world_size} rank(s)",
                              hint=f"use a multiple of {s.world_size * pack}")
        if s.batch_size % s.world_size:
            raise ConfigError(f"batch_size {s.batch_size} does not divide among {s.world_size} ranks",
                              hint=f"use a multiple of {s.world_size}")

    # -- helpers ------------------------------------------------------------------
    def _check_pack(self, n: int) -> None:
        """Refuse, before any draw or update, a batch that does not divide into D's packs."""
        if int(n) % self.pack:
            raise DataError(f"a batch of {int(n)} samples does not divide into the discriminator's packs of {self.pack}",
                            hint=f"use a multiple of {self.pack} samples")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.setup.discriminator.input_shape)

    def _tensor(self, x) -> torch.Tensor:
        """Samples (numpy or torch) as float32 on the device, in one transfer."""
        if isinstance(x, torch.Tensor):
            return x.to(device=self.torch_device, dtype=torch.float32)
        arr = np.asarray(x, dtype=np.float32)
        if not (arr.flags.c_contiguous and arr.flags.writeable):
            arr = np.array(arr, dtype=np.float32, order="C")  # torch wants writable memory
        return torch.from_numpy(arr).to(self.torch_device, non_blocking=True)

    def _real(self, real) -> torch.Tensor:
        t = self._tensor(real)
        if tuple(t.shape[1:]) != self.sample_shape or t.ndim < 2:
            raise DataError(
                f"a real batch has shape {tuple(t.shape)} but the discriminator expects "
                f"(batch, {', '.join(map(str, self.sample_shape))})")
        return t

    def _latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        gen = self.noise if generator is None else generator
        # Training latents across ranks: every rank draws the global batch from the same
        # stream and keeps its own rows, as one process drawing the whole batch would.
        share = generator is None and self.world_size > 1
        shape = (int(n) * (self.world_size if share else 1), self.setup.latent_dim)
        if self.setup.latent_distribution == "uniform":
            z = draw("uniform", shape, gen, self.torch_device, torch.float32) * 2 - 1  # U[-1, 1)
        else:
            z = draw("normal", shape, gen, self.torch_device, torch.float32)
        return z[self.rank * int(n): (self.rank + 1) * int(n)] if share else z

    def _autocast(self):
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=self._autocast_dtype)

    def _backward_and_step(self, role: str, loss: torch.Tensor, **backward_kwargs) -> None:
        """backward (which all-reduces the gradients under DDP), unscale, clip, step,
        clip the weights: one network's update."""
        opt = self.optimizers[role]
        params = self._params[role]
        scaler = self._scalers[role] if self._scalers else None
        (scaler.scale(loss) if scaler else loss).backward(**backward_kwargs)
        clip = self._settings(role).clip_grad_norm
        if scaler:
            if clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, clip)
            scaler.step(opt)
            scaler.update()
        else:
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
        clip_weights = self._settings(role).clip_weights
        if clip_weights:  # WGAN weight clipping: every parameter (not buffer) into [-c, c]
            with torch.no_grad():
                torch._foreach_clamp_min_(params, -clip_weights)
                torch._foreach_clamp_max_(params, clip_weights)

    def _set_learning_rates(self) -> None:
        for role in ROLES:
            lr = self._settings(role).lr_at(self.step_count, self.setup.total_steps)
            for group in self.optimizers[role].param_groups:
                group["lr"] = lr

    def learning_rates(self) -> dict[str, float]:
        """The learning rates the next step uses (the schedules' value at ``step_count``)."""
        return {role: self._settings(role).lr_at(self.step_count, self.setup.total_steps) for role in ROLES}

    @torch.no_grad()
    def _update_ema(self) -> None:
        """``ema = decay * ema + (1 - decay) * g`` (a copy before ``ema_start``); buffers copied."""
        g, ema = self.nets["generator"], self.ema
        decay = self.setup.ema_decay if self.step_count >= self.setup.ema_start else 0.0
        ema_params, g_params = list(ema.parameters()), list(g.parameters())
        if decay == 0.0:
            torch._foreach_copy_(ema_params, g_params)
        else:
            torch._foreach_lerp_(ema_params, g_params, 1.0 - decay)
        ema_buffers, g_buffers = list(ema.buffers()), list(g.buffers())
        if ema_buffers:
            torch._foreach_copy_(ema_buffers, g_buffers)

    def _sampler(self) -> torch.nn.Module:
        return self.ema if self.ema is not None else self.nets["generator"]

    def _logits(self, d, x, labels=None) -> torch.Tensor:
        return d(x, labels).reshape(x.shape[0])

    def _labels(self, labels, shape, required: bool = False) -> torch.Tensor | None:
        """Class labels as a long tensor on the device (None for unconditional nets)."""
        arr = class_labels(labels, tuple(shape), self.num_classes, required=required)
        return None if arr is None else torch.from_numpy(arr).to(self.torch_device)

    def _discriminator_fn(self, x):
        """D as a function samples -> logits (batch,), for the regularizers. The plain
        module, eager even under compile: penalties differentiate through D twice, which
        compiled graphs do not support. Not the DDP wrapper: the penalty's input-gradient
        (``autograd.grad`` with respect to the samples) involves no DDP hook either way,
        and the update's one backward averages the gradients, penalty terms included."""
        return self.nets["discriminator"](x).reshape(x.shape[0])

    @contextmanager
    def _eval(self, role: str):
        net = self.nets[role]
        was = net.training
        net.eval()
        try:
            with torch.no_grad():
                yield net
        finally:
            net.train(was)

    # -- updates ------------------------------------------------------------------
    def _d_update(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> _DUpdate:
        # A conditional GAN's fakes take the real batch's labels.
        z = self._latent(real.shape[0])
        d_fn = self._discriminator_fn if labels is None else \
            (lambda x: self.nets["discriminator"](x, labels).reshape(x.shape[0]))
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
            total = d_loss
            penalties = {}
            with shared:
                for name, reg in self.regularizers.items():
                    p = reg(self.ops, d_fn, real, fake.float())
                    schedule = self._penalty_schedules.get(name)
                    if schedule is not None:
                        p = p * schedule.at(self.step_count, self.setup.total_steps)
                    penalties[name] = _scalar(p, f"regularizer {name!r}", self.torch_device)
                    total = total + p
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        self._backward_and_step("discriminator", total)
        return _DUpdate(
            loss=_scalar(d_loss, "the discriminator loss", self.torch_device),
            penalties=penalties,
            real_logit=real_logits.detach().mean().float(),
            fake_logit=fake_logits.detach().mean().float(),
        )

    def _g_update(self, batch_size: int, real: torch.Tensor | None, labels: torch.Tensor | None = None) -> torch.Tensor:
        needs_real = self.loss.meta.generator_needs_real
        if needs_real and real is None:
            raise ValueError(
                f"{type(self.loss).__name__} reads the real logits in the generator loss; "
                "pass real= to generator_step")
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
        self._backward_and_step("generator", g_loss, inputs=self._params["generator"])
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        return _scalar(g_loss, "the generator loss", self.torch_device)

    # -- the Trainer protocol -----------------------------------------------------
    def discriminator_step(self, real, labels=None) -> float:
        """One discriminator update on ``real``; returns its loss (penalties excluded)."""
        real = self._real(real)
        self._check_pack(real.shape[0])
        return float(self._d_update(real, self._labels(labels, real.shape[:1], required=True)).loss.item())

    def generator_step(self, batch_size: int, real=None, labels=None) -> float:
        """One generator update on ``batch_size`` latents; returns its loss."""
        y = self._labels(labels, (batch_size,), required=True)
        self._check_pack(batch_size)
        return float(self._g_update(batch_size, None if real is None else self._real(real), y).item())

    def train_step(self, real_batches, labels=None) -> StepResult:
        """``n_critic`` D updates (one per leading slice of ``real_batches``), then one G
        update with the last real batch. One host sync, at the end. A class-conditional
        GAN needs ``labels`` shaped like the batches' first two axes; its fakes take
        the real batch's labels."""
        k = self.setup.n_critic
        batches = self._tensor(real_batches)
        if k == 1 and tuple(batches.shape[1:]) == self.sample_shape:
            batches = batches.unsqueeze(0)  # a single batch for n_critic = 1
        if batches.ndim < 3 or batches.shape[0] != k or tuple(batches.shape[2:]) != self.sample_shape:
            raise DataError(
                f"train_step expects real batches of shape (n_critic={k}, batch, "
                f"{', '.join(map(str, self.sample_shape))}), got {tuple(batches.shape)}")
        self._check_pack(batches.shape[1])
        if self._scheduled:
            self._set_learning_rates()
        if self.num_classes is not None and labels is not None and k == 1 and np.ndim(labels) == 1:
            labels = np.asarray(labels)[None]
        y = self._labels(labels, tuple(batches.shape[:2]), required=True)
        ys = [None] * k if y is None else list(y)
        for i in range(k):
            d = self._d_update(batches[i], ys[i])
        g_loss = self._g_update(batches.shape[1], batches[-1], ys[-1])
        if self.world_size > 1 and self._buffers:  # rank 0's buffers, once per step (see distributed)
            distributed.broadcast(self._buffers, self.world_size)
        if self.ema is not None:
            self._update_ema()
        self.step_count += 1
        names = [_extra_name(n) for n in d.penalties]
        values = torch.stack([d.loss, g_loss, *d.penalties.values(), d.real_logit, d.fake_logit])
        if self.world_size > 1:  # every rank reports (and checks) the global means
            distributed.all_reduce_mean([values], self.world_size)
        d_loss, g, *rest = values.cpu().tolist()  # the one device -> host sync of the step
        extras = dict(zip([*names, "real_logit", "fake_logit"], rest))
        return StepResult(step=self.step_count, d_loss=d_loss, g_loss=g, extras=extras)

    def sample(self, n: int, seed: int | None = None, labels=None) -> np.ndarray:
        """``n`` samples in eval mode. With ``seed``, the same samples every call;
        without, the next draws of a sampling stream separate from training noise.
        A class-conditional generator takes ``labels`` (default: ``arange(n) % num_classes``)."""
        gen = self._sample_noise if seed is None else make_generator(self.torch_device, seed)
        z = self._latent(n, gen)
        return self._generate(z, self._labels(labels, (int(n),)))

    def _generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> np.ndarray:
        if self.ema is not None:  # always in eval mode
            with torch.no_grad():
                return self.ema(z, labels).float().cpu().numpy()
        with self._eval("generator") as g:
            return g(z, labels).float().cpu().numpy()

    def generate(self, z, labels=None) -> np.ndarray:
        """Generator outputs for latents ``z`` of shape (n, latent_dim), eval mode
        (class-conditional: ``labels`` as in :meth:`sample`)."""
        z = self._tensor(z)
        if z.ndim != 2 or z.shape[1] != self.setup.latent_dim:
            raise DataError(f"latents have shape {tuple(z.shape)}; expected (n, {self.setup.latent_dim})")
        return self._generate(z, self._labels(labels, tuple(z.shape[:1])))

    def discriminate(self, x, labels=None) -> np.ndarray:
        """Discriminator logits, shape (n,), eval mode (class-conditional: ``labels``
        as in :meth:`sample`)."""
        x = self._real(x)
        y = self._labels(labels, tuple(x.shape[:1]))
        x = pack_samples(self.ops, x, self.pack)  # a packed discriminator: one logit per pack
        with self._eval("discriminator") as d:
            return self._logits(d, x, y).cpu().numpy()

    # -- weights ------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers of both nets, canonical layout, float32 numpy copies."""
        out = {f"{role}.{name}": value
               for role in ROLES
               for name, value in export_weights(self.nets[role], self.specs[role]).items()}
        if self.ema is not None:
            out.update({f"generator_ema.{name}": value
                        for name, value in export_weights(self.ema, self.specs["generator"]).items()})
        return out

    def load_state_dict(self, state) -> None:
        """Load canonical weights (all checked before any is copied). ``generator_ema.*``
        entries load into the EMA generator (ignored without one); without them the EMA
        generator starts as a copy of the generator."""
        parts: dict[str, dict[str, np.ndarray]] = {role: {} for role in (*ROLES, "generator_ema")}
        for key, value in state.items():
            role, _, name = key.partition(".")
            if role not in parts or not name:
                raise CheckpointError(
                    f"weights have unexpected parameter {key!r}",
                    hint="names start with 'generator.', 'discriminator.' or 'generator_ema.'")
            parts[role][name] = value
        for role in ROLES:
            check_weights(self.specs[role], parts[role], prefix=f"{role}.")
        if parts["generator_ema"]:
            check_weights(self.specs["generator"], parts["generator_ema"], prefix="generator_ema.")
        for role in ROLES:
            load_weights(self.nets[role], self.specs[role], parts[role], prefix=f"{role}.")
        if self.ema is not None:
            load_weights(self.ema, self.specs["generator"], parts["generator_ema"] or parts["generator"],
                         prefix="generator_ema.")

    def _counter(self, role):
        def hook(optimizer, args, kwargs):
            self.optimizer_steps[role] += 1
        return hook

    def _settings(self, role):
        return self.setup.g_optimizer if role == "generator" else self.setup.d_optimizer

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Both optimizers' step counts and slots (torch slot names, canonical layout),
        prefixed ``g_optimizer.`` / ``d_optimizer.``; for resuming, not part of the weights."""
        out = {}
        for role in ROLES:
            state = export_optimizer_state(
                self.optimizers[role], self._settings(role), dict(self.nets[role].named_parameters()),
                transposed_names(self.specs[role]), self.optimizer_steps[role])
            out.update({_OPT_PREFIX[role] + k: v for k, v in state.items()})
        return out

    def load_optimizer_state(self, state) -> None:
        """Load what :meth:`optimizer_state` (of either backend) wrote."""
        args = {}
        for role in ROLES:
            prefix = _OPT_PREFIX[role]
            part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            args[role] = (self._settings(role), dict(self.nets[role].named_parameters()),
                          transposed_names(self.specs[role]), part, prefix)
            check_optimizer_state(*args[role])  # both checked before either is touched
        for role in ROLES:
            self.optimizer_steps[role] = load_optimizer_state(self.optimizers[role], *args[role])

    # -- random state (for exact resumption) ---------------------------------------
    def rng_state(self) -> dict[str, np.ndarray]:
        """Training noise, sampling noise and torch's global generators (and the
        float16 loss scales), as uint8 / float arrays."""
        out = {"noise": self.noise.get_state().numpy().copy(),
               "sample_noise": self._sample_noise.get_state().numpy().copy(),
               "torch_global": torch.get_rng_state().numpy().copy()}
        if self.torch_device.type == "cuda":
            out["torch_cuda"] = torch.cuda.get_rng_state(self.torch_device).numpy().copy()
        if self._scalers:
            for role, scaler in self._scalers.items():
                st = scaler.state_dict()
                out[f"loss_scale.{role}"] = np.asarray([st.get("scale", 0.0), st.get("_growth_tracker", 0)],
                                                       dtype=np.float64)
        return out

    def load_rng_state(self, state) -> None:
        """Restore what :meth:`rng_state` returned (on this backend)."""
        try:
            self.noise.set_state(torch.as_tensor(np.asarray(state["noise"], dtype=np.uint8)))
            self._sample_noise.set_state(torch.as_tensor(np.asarray(state["sample_noise"], dtype=np.uint8)))
            torch.set_rng_state(torch.as_tensor(np.asarray(state["torch_global"], dtype=np.uint8)))
            if "torch_cuda" in state and self.torch_device.type == "cuda":
                torch.cuda.set_rng_state(torch.as_tensor(np.asarray(state["torch_cuda"], dtype=np.uint8)),
                                         self.torch_device)
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"the random state cannot be restored: {exc}",
                                  hint="it was written by another backend or torch version") from None
        if self._scalers:
            for role, scaler in self._scalers.items():
                key = f"loss_scale.{role}"
                if key in state:
                    scale, tracker = np.asarray(state[key], dtype=np.float64).tolist()
                    scaler.load_state_dict({**scaler.state_dict(), "scale": scale, "_growth_tracker": int(tracker)})

    def parameters_of(self, role: str) -> dict[str, np.ndarray]:
        """Trainable parameters of one net (canonical names, unprefixed, numpy copies)."""
        spec = self.specs[role]
        weights = export_weights(self.nets[role], spec)
        return {name: weights[name] for name in spec.parameter_shapes()}

    def __repr__(self) -> str:
        return (f"TorchTrainer(device={self.device!r}, step={self.step_count}, "
                f"compile={self.setup.compile}, precision={self.setup.precision!r}, ema={self.has_ema})")
