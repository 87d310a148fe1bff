"""``TorchTrainer``: the GAN training step on torch, eager or under ``torch.compile``."""

from __future__ import annotations

import math
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

import gankit
from gankit import CheckpointError, ConfigError, DataError, StepResult, TrainSetup

from gankit_torch.device import make_generator, resolve_device
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


class _Compiled:
    """``torch.compile(module)``, falling back to the eager module (with one warning)
    when compilation fails on this machine (no C compiler, unsupported device, ...)."""

    def __init__(self, module: torch.nn.Module, label: str, options: dict | None = None):
        self.eager = module
        self.compiled = torch.compile(module, **(options or {}))
        self.label = label
        self.failed = False

    def __call__(self, x):
        if self.failed:
            return self.eager(x)
        try:
            return self.compiled(x)
        except Exception as exc:
            out = self.eager(x)  # a genuine error in the model raises here, unwrapped
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
    generator), ``device`` (resolved, e.g. ``"cpu"``, ``"cuda:0"``), ``step_count``.
    """

    backend = "torch"

    def __init__(self, setup: TrainSetup):
        self.setup = setup
        self.specs = {"generator": setup.generator, "discriminator": setup.discriminator}
        self._check_setup()
        dev = resolve_device(setup.device)
        self.torch_device = dev
        self.device = str(dev)
        self.step_count = 0
        self.loss = setup.loss
        self.regularizers = dict(setup.regularizers)

        # Seed torch globally too, for anything that draws from the default generator.
        torch.manual_seed(setup.seed)
        self.nets = {role: build_net(spec).to(device=dev, dtype=torch.float32)
                     for role, spec in self.specs.items()}
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

        if setup.compile:
            # setup.extras["torch_compile"]: keyword arguments for torch.compile
            # (e.g. {"mode": "max-autotune"} or {"backend": "aot_eager"}).
            options = dict(setup.extras.get("torch_compile", {}))
            self._g = _Compiled(self.nets["generator"], "generator", options)
            self._d = _Compiled(self.nets["discriminator"], "discriminator", options)
        else:
            self._g, self._d = self.nets["generator"], self.nets["discriminator"]

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

    # -- helpers ------------------------------------------------------------------
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
        shape = (int(n), self.setup.latent_dim)
        if self.setup.latent_distribution == "uniform":
            return draw("uniform", shape, gen, self.torch_device, torch.float32) * 2 - 1  # U[-1, 1)
        return draw("normal", shape, gen, self.torch_device, torch.float32)

    def _logits(self, d, x) -> torch.Tensor:
        return d(x).reshape(x.shape[0])

    def _discriminator_fn(self, x):
        """D as a function samples -> logits (batch,), for the regularizers. Eager even
        under compile: penalties differentiate through D twice, which compiled graphs
        do not support."""
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
    def _d_update(self, real: torch.Tensor) -> _DUpdate:
        z = self._latent(real.shape[0])
        with torch.no_grad():  # no graph through G: this update trains D only
            fake = self._g(z)
        real_logits = self._logits(self._d, real)
        fake_logits = self._logits(self._d, fake)
        d_loss = self.loss.discriminator(self.ops, real_logits, fake_logits)
        total = d_loss
        penalties = {}
        for name, reg in self.regularizers.items():
            p = reg(self.ops, self._discriminator_fn, real, fake)
            penalties[name] = _scalar(p, f"regularizer {name!r}", self.torch_device)
            total = total + p
        opt = self.optimizers["discriminator"]
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return _DUpdate(
            loss=_scalar(d_loss, "the discriminator loss", self.torch_device),
            penalties=penalties,
            real_logit=real_logits.detach().mean().float(),
            fake_logit=fake_logits.detach().mean().float(),
        )

    def _g_update(self, batch_size: int, real: torch.Tensor | None) -> torch.Tensor:
        needs_real = self.loss.meta.generator_needs_real
        if needs_real and real is None:
            raise ValueError(
                f"{type(self.loss).__name__} reads the real logits in the generator loss; "
                "pass real= to generator_step")
        fake = self._g(self._latent(batch_size))
        fake_logits = self._logits(self._d, fake)
        real_logits = self._logits(self._d, real) if needs_real else None
        g_loss = self.loss.generator(self.ops, fake_logits, real_logits)
        g_params = list(self.nets["generator"].parameters())
        opt = self.optimizers["generator"]
        opt.zero_grad(set_to_none=True)
        # Accumulate into G's parameters only; D's stay untouched (and are cleared).
        g_loss.backward(inputs=g_params)
        opt.step()
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        return _scalar(g_loss, "the generator loss", self.torch_device)

    # -- the Trainer protocol -----------------------------------------------------
    def discriminator_step(self, real) -> float:
        """One discriminator update on ``real``; returns its loss (penalties excluded)."""
        return float(self._d_update(self._real(real)).loss.item())

    def generator_step(self, batch_size: int, real=None) -> float:
        """One generator update on ``batch_size`` latents; returns its loss."""
        return float(self._g_update(batch_size, None if real is None else self._real(real)).item())

    def train_step(self, real_batches) -> StepResult:
        """``n_critic`` D updates (one per leading slice of ``real_batches``), then one G
        update with the last real batch. One host sync, at the end."""
        k = self.setup.n_critic
        batches = self._tensor(real_batches)
        if k == 1 and tuple(batches.shape[1:]) == self.sample_shape:
            batches = batches.unsqueeze(0)  # a single batch for n_critic = 1
        if batches.ndim < 3 or batches.shape[0] != k or tuple(batches.shape[2:]) != self.sample_shape:
            raise DataError(
                f"train_step expects real batches of shape (n_critic={k}, batch, "
                f"{', '.join(map(str, self.sample_shape))}), got {tuple(batches.shape)}")
        for i in range(k):
            d = self._d_update(batches[i])
        g_loss = self._g_update(batches.shape[1], batches[-1])
        self.step_count += 1
        names = [_extra_name(n) for n in d.penalties]
        values = torch.stack([d.loss, g_loss, *d.penalties.values(), d.real_logit, d.fake_logit])
        d_loss, g, *rest = values.cpu().tolist()  # the one device -> host sync of the step
        extras = dict(zip([*names, "real_logit", "fake_logit"], rest))
        return StepResult(step=self.step_count, d_loss=d_loss, g_loss=g, extras=extras)

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` samples in eval mode. With ``seed``, the same samples every call;
        without, the next draws of a sampling stream separate from training noise."""
        gen = self._sample_noise if seed is None else make_generator(self.torch_device, seed)
        z = self._latent(n, gen)
        with self._eval("generator") as g:
            return g(z).cpu().numpy()

    def generate(self, z) -> np.ndarray:
        """Generator outputs for latents ``z`` of shape (n, latent_dim), eval mode."""
        z = self._tensor(z)
        if z.ndim != 2 or z.shape[1] != self.setup.latent_dim:
            raise DataError(f"latents have shape {tuple(z.shape)}; expected (n, {self.setup.latent_dim})")
        with self._eval("generator") as g:
            return g(z).cpu().numpy()

    def discriminate(self, x) -> np.ndarray:
        """Discriminator logits, shape (n,), eval mode."""
        x = self._real(x)
        with self._eval("discriminator") as d:
            return self._logits(d, x).cpu().numpy()

    # -- weights ------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers of both nets, canonical layout, float32 numpy copies."""
        return {f"{role}.{name}": value
                for role in ROLES
                for name, value in export_weights(self.nets[role], self.specs[role]).items()}

    def load_state_dict(self, state) -> None:
        """Load canonical weights (all checked before any is copied)."""
        parts: dict[str, dict[str, np.ndarray]] = {role: {} for role in ROLES}
        for key, value in state.items():
            role, _, name = key.partition(".")
            if role not in parts or not name:
                raise CheckpointError(
                    f"weights have unexpected parameter {key!r}",
                    hint="names start with 'generator.' or 'discriminator.'")
            parts[role][name] = value
        for role in ROLES:
            check_weights(self.specs[role], parts[role], prefix=f"{role}.")
        for role in ROLES:
            load_weights(self.nets[role], self.specs[role], parts[role], prefix=f"{role}.")

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

    def parameters_of(self, role: str) -> dict[str, np.ndarray]:
        """Trainable parameters of one net (canonical names, unprefixed, numpy copies)."""
        spec = self.specs[role]
        weights = export_weights(self.nets[role], spec)
        return {name: weights[name] for name in spec.parameter_shapes()}

    def __repr__(self) -> str:
        return (f"TorchTrainer(device={self.device!r}, step={self.step_count}, "
                f"compile={self.setup.compile})")
