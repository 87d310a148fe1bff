"""``BaseTrainer``: the neutral half of every backend's trainer, written once.

A backend subclasses :class:`BaseTrainer` and implements only the primitives listed in
:mod:`gankit.backend_contract` (build the nets, one discriminator update, one generator
update, the EMA update, eval-mode forwards, weight / optimizer-slot / random-state I/O,
device set-up). Everything else lives here, the same for every backend:

* the precision check against the resolved device (:func:`check_precision`), once
  (a :class:`~gankit.protocol.TrainSetup` checks the rest of itself when it is made);
* state naming and I/O by prefix: weights as ``generator.<param>``,
  ``discriminator.<param>``, ``generator_ema.<param>``; optimizer state as
  ``g_optimizer.step`` and ``g_optimizer.<param>.<slot>`` (torch's slot names, the
  canonical layout), ``d_optimizer.`` likewise. These are the names of the portable
  checkpoints every backend reads and writes; names and shapes are checked here
  against the specs before any backend touches a weight, so a bad checkpoint changes
  nothing;
* input and label checks, and building the :class:`~gankit.protocol.StepResult`;
* the learning-rate and penalty-weight schedules and the EMA decay of each step
  (:class:`StepHyper`), computed on the host and handed to the backend's update as
  plain numbers;
* initial weights for a plugin's native networks (:func:`with_native_weights`).

The Keras 3 analogue is ``keras/src/trainers/trainer.py`` with one subclass per backend.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gankit.backend_contract import TrainerPrimitives, missing
from gankit.errors import CheckpointError, ConfigError, DataError, PluginError
from gankit.initializers import initial_weights
from gankit.nets import class_labels
from gankit.protocol import OptimizerSettings, StepResult, TrainSetup

ROLES = ("generator", "discriminator")
#: The prefix of each network's weights in a state dict (and a checkpoint).
NETS = ("generator", "discriminator", "generator_ema")
#: The prefix of each optimizer's state, by the role it trains.
OPTIMIZER_PREFIX = {"generator": "g_optimizer.", "discriminator": "d_optimizer."}


# -- set-up checks ---------------------------------------------------------------------
def check_setup(setup: TrainSetup) -> int | None:
    """The number of classes of the class-conditional nets (None when unconditional).
    A :class:`TrainSetup` checked itself when it was made; nothing is checked again here."""
    return setup.num_classes


def check_precision(precision: str, device: str) -> None:
    """float16 (loss-scaled) needs a CUDA GPU; ``device`` is the neutral device name the
    backend resolved (``auto`` may become the cpu). The one place of this rule: the
    config and the assembly leave it to the trainer."""
    if precision == "float16" and not device.startswith("cuda"):
        raise ConfigError(f"precision float16 needs a CUDA GPU, the trainer runs on {device}",
                          hint="use precision = 'bfloat16' on the cpu, or 'float32'")


def extra_name(regularizer: str) -> str:
    """The :attr:`StepResult.extras` key of a penalty: ``penalty_<name>``."""
    return "penalty_" + re.sub(r"\W", "_", regularizer)


# -- canonical state -------------------------------------------------------------------
def weight_shapes(spec) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer of ``spec`` by canonical name."""
    return {**spec.parameter_shapes(), **spec.buffer_shapes()}


def check_weights(spec, weights: Mapping[str, Any], prefix: str = "") -> None:
    """Raise :class:`CheckpointError` unless ``weights`` holds exactly ``spec``'s canonical
    names and shapes (``prefix``, e.g. ``"generator."``, labels names in the message)."""
    expected = weight_shapes(spec)
    hint = "the weights were saved from a different architecture"
    missing = [n for n in expected if n not in weights]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"weights are missing {prefix}{missing[0]}{more} for {spec.name!r}", hint=hint)
    unexpected = [n for n in weights if n not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"weights have unexpected parameter {prefix}{unexpected[0]}{more} for {spec.name!r}",
                              hint=hint)
    for name, shape in expected.items():
        got = tuple(np.shape(weights[name]))
        if got != tuple(shape):
            raise CheckpointError(f"parameter {prefix}{name} has shape {got} but the model expects {tuple(shape)}",
                                  hint=hint)


def split_by_prefix(state: Mapping[str, Any], prefixes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{prefix: {name without prefix: value}}``; a key under none of ``prefixes`` is an error."""
    parts: dict[str, dict[str, Any]] = {p: {} for p in prefixes}
    for key, value in state.items():
        for p in prefixes:
            if key.startswith(p) and len(key) > len(p):
                parts[p][key[len(p):]] = value
                break
        else:
            raise CheckpointError(f"weights have unexpected parameter {key!r}",
                                  hint="names start with " + ", ".join(repr(p) for p in prefixes))
    return parts


def optimizer_slots(settings: OptimizerSettings) -> tuple[str, ...]:
    """The per-parameter state an optimizer keeps, by torch's names: what every backend
    saves as ``<param>.<slot>`` in the canonical layout."""
    if settings.name in ("adam", "adamw"):
        return ("exp_avg", "exp_avg_sq")
    if settings.name == "rmsprop":
        return ("square_avg", "momentum_buffer") if settings.momentum else ("square_avg",)
    return ("momentum_buffer",) if settings.momentum else ()


def check_optimizer_state(settings: OptimizerSettings, spec, state: Mapping[str, Any], label: str = "") -> None:
    """Raise :class:`CheckpointError` unless ``state`` has ``step`` and every slot of every
    parameter of ``spec`` in its canonical shape."""
    wanted = {"step": ()} | {f"{n}.{s}": tuple(shape) for n, shape in spec.parameter_shapes().items()
                             for s in optimizer_slots(settings)}
    for key, shape in wanted.items():
        if key not in state:
            raise CheckpointError(f"optimizer state is missing {label}{key}",
                                  hint=f"it was saved with a different optimizer than {settings.name}")
        if tuple(np.shape(state[key])) != shape:
            raise CheckpointError(f"optimizer state {label}{key} has shape {tuple(np.shape(state[key]))} "
                                  f"but the model expects {shape}")


# -- native networks -------------------------------------------------------------------
def with_native_weights(setup: TrainSetup, native_weights: Callable[[Any, int], dict[str, np.ndarray]]) -> TrainSetup:
    """``setup`` with initial weights for its native nets (a plugin's own model) when it
    has none for them: ``native_weights(spec, seed)`` builds the plugin's model on the
    backend and returns its own initialisation in canonical names. The seed is drawn
    from the setup's seed, the same on every backend."""
    from gankit.native import is_native

    roles = {"generator": setup.generator, "discriminator": setup.discriminator}
    native = {role: spec for role, spec in roles.items() if is_native(spec)}
    if not native:
        return setup
    weights = dict(setup.initial_weights or initial_weights(setup.generator, setup.discriminator, "default",
                                                            setup.seed))
    for i, (role, spec) in enumerate(native.items()):
        if any(k.startswith(f"{role}.") for k in weights):
            continue  # given (a checkpoint's weights)
        seed = int(np.random.SeedSequence([setup.seed, 0x4E41, i]).generate_state(1)[0])
        weights.update({f"{role}.{k}": v for k, v in native_weights(spec, seed).items()})
    return dataclasses.replace(setup, initial_weights=weights)


# -- the trainer -----------------------------------------------------------------------
@dataclass(frozen=True)
class StepHyper:
    """The numbers of one step that change over a run, computed on the host."""

    #: The 0-based index of the step (``step_count`` before it).
    step: int
    #: Learning rate of each role's update (the schedule's value at ``step``).
    lr: dict[str, float]
    #: Factor of each regularizer's penalty (its weight schedule; 1 when constant).
    penalty: dict[str, float]
    #: EMA decay after this step's generator update (0: the EMA copies the generator,
    #: before ``ema_start``).
    ema_decay: float


@dataclass
class DUpdate:
    """What one discriminator update reports; the values may stay on the device until
    :meth:`BaseTrainer.to_floats` fetches them."""

    loss: Any
    penalties: dict[str, Any]
    real_logit: Any
    fake_logit: Any


class BaseTrainer(TrainerPrimitives):
    """The neutral half of a :class:`gankit.Trainer`; see :mod:`gankit.backend_contract`
    for the primitives a subclass implements.

    Attributes: ``setup``, ``specs`` (by role), ``num_classes``, ``n_critic``,
    ``latent_dim``, ``sample_shape``, ``loss``, ``regularizers``, ``needs_real``,
    ``has_ema``, ``world_size``, ``rank``, ``device`` (neutral name), ``step_count``.
    """

    backend = "abstract"

    def __init__(self, setup: TrainSetup):
        lacking = missing(type(self), TrainerPrimitives)
        if lacking:
            raise PluginError(f"the {self.backend} trainer {type(self).__name__} does not implement the primitives "
                              f"{', '.join(lacking)} of gankit.backend_contract.TrainerPrimitives")
        self.num_classes = check_setup(setup)
        if type(self).native_weights is not TrainerPrimitives.native_weights:  # the optional primitive
            setup = with_native_weights(setup, self.native_weights)
        self.setup = setup
        self.specs = {"generator": setup.generator, "discriminator": setup.discriminator}
        self.n_critic = int(setup.n_critic)
        self.latent_dim = int(setup.latent_dim)
        self.sample_shape = tuple(setup.discriminator.input_shape)
        self.loss = setup.loss
        self.regularizers = dict(setup.regularizers)
        self.needs_real = bool(getattr(self.loss.meta, "generator_needs_real", False))
        self.has_ema = setup.ema_decay > 0
        #: Differentiable augmentation before every D call in training (``(ops, x) -> x``), or None.
        self.augment = getattr(setup, "augment", None)
        #: PacGAN: the discriminator judges packs of this many samples (``NetSpec.pack``).
        self.pack = int(getattr(setup.discriminator, "pack", 1))
        self.world_size, self.rank = int(setup.world_size), int(setup.rank)
        self._has_batch_norm = any(layer.kind == "batch_norm" for spec in self.specs.values()
                                   for _, layer, _ in spec.walk())
        self._step_count = 0
        self.device = self.init_device(setup.device, setup.threads)
        check_precision(setup.precision, self.device)
        self.build()
        self.load_state_dict(setup.initial_weights
                             or initial_weights(setup.generator, setup.discriminator, "default", setup.seed))

    # -- the optional primitives' defaults (see gankit.backend_contract) ---------------
    def fused_step(self, batches, labels, hyper: StepHyper) -> Sequence[float]:
        """The default step: ``n_critic`` :meth:`d_update`, one :meth:`g_update`, the EMA.
        Returns ``[d_loss, g_loss, real_logit, fake_logit, *penalties]`` as floats (one
        host transfer, through :meth:`to_floats`). A backend that compiles the whole step
        overrides it."""
        ys = [None] * self.n_critic if labels is None else list(labels)
        for i in range(self.n_critic):
            d = self.d_update(batches[i], ys[i], hyper)
        g_loss = self.g_update(int(np.shape(batches)[1]), batches[-1], ys[-1], hyper)
        self.sync_buffers()
        if self.has_ema:
            self.update_ema(hyper.ema_decay)
        return self.to_floats([d.loss, g_loss, d.real_logit, d.fake_logit, *d.penalties.values()])

    def to_floats(self, values: Sequence[Any]) -> list[float]:
        """Device scalars as Python floats (override to fetch them in one transfer)."""
        return [float(np.asarray(v)) for v in values]

    def on_step_count(self, value: int) -> None:
        """Called when ``step_count`` is set (resuming); a backend that keeps its own
        step index on the device updates it here."""

    def sync_buffers(self) -> None:
        """Called by :meth:`fused_step` after the generator update, before the EMA: a
        data-parallel backend makes its replicas' buffers agree here (torch broadcasts
        rank 0's); nothing by default."""

    # -- steps ---------------------------------------------------------------------------
    @property
    def step_count(self) -> int:
        """Completed steps (generator updates); set when resuming."""
        return self._step_count

    @step_count.setter
    def step_count(self, value: int) -> None:
        self._step_count = int(value)
        self.on_step_count(int(value))

    def settings(self, role: str) -> OptimizerSettings:
        return self.setup.g_optimizer if role == "generator" else self.setup.d_optimizer

    def hyper(self, step: int | None = None) -> StepHyper:
        """The learning rates, penalty factors and EMA decay of step ``step`` (default:
        the next one)."""
        s = self.setup
        step = self.step_count if step is None else int(step)
        schedules = s.regularizer_schedules
        return StepHyper(
            step=step,
            lr={role: self.settings(role).lr_at(step, s.total_steps) for role in ROLES},
            penalty={name: (schedules[name].at(step, s.total_steps) if name in schedules else 1.0)
                     for name in self.regularizers},
            ema_decay=float(s.ema_decay) if step >= s.ema_start else 0.0)

    def learning_rates(self) -> dict[str, float]:
        """The learning rates the next step uses (the schedules' value at ``step_count``)."""
        return dict(self.hyper().lr)

    def train_step(self, real_batches, labels=None) -> StepResult:
        """``n_critic`` D updates (one per leading slice of ``real_batches``), then one G
        update with the last real batch. A class-conditional GAN needs ``labels`` shaped
        like the batches' first two axes; its fakes take the real batch's labels."""
        k = self.n_critic
        shape = tuple(np.shape(real_batches))
        if k == 1 and shape[1:] == self.sample_shape:  # a single batch for n_critic = 1
            real_batches = np.asarray(real_batches)[None]
            if labels is not None and np.ndim(labels) == 1:
                labels = np.asarray(labels)[None]
            shape = (1, *shape)
        if len(shape) < 3 or shape[0] != k or shape[2:] != self.sample_shape:
            raise DataError(f"train_step expects real batches of shape (n_critic={k}, batch, "
                            f"{', '.join(map(str, self.sample_shape))}), got {shape}")
        self.check_batch(shape[1])
        y = class_labels(labels, shape[:2], self.num_classes, required=True)
        values = self.fused_step(real_batches, y, self.hyper())
        self.step_count = self.step_count + 1
        d_loss, g_loss, real_logit, fake_logit, *penalties = values
        extras = {extra_name(n): float(v) for n, v in zip(self.regularizers, penalties)}
        extras.update(real_logit=float(real_logit), fake_logit=float(fake_logit))
        return StepResult(step=self.step_count, d_loss=float(d_loss), g_loss=float(g_loss), extras=extras)

    def discriminator_step(self, real, labels=None) -> float:
        """One discriminator update on ``real``; returns its loss (penalties excluded)."""
        real = self.check_real(real)
        self.check_batch(real.shape[0])
        y = class_labels(labels, real.shape[:1], self.num_classes, required=True)
        return self.to_floats([self.d_update(real, y, self.hyper()).loss])[0]

    def generator_step(self, batch_size: int, real=None, labels=None) -> float:
        """One generator update on ``batch_size`` latents; ``real`` is required when the
        loss reads the real logits. Does not advance ``step_count``."""
        if self.needs_real and real is None:
            raise ValueError(f"{type(self.loss).__name__} reads the real logits in the generator loss; "
                             "pass real= to generator_step")
        self.check_batch(int(batch_size))
        y = class_labels(labels, (int(batch_size),), self.num_classes, required=True)
        real = None if real is None else self.check_real(real)
        return self.to_floats([self.g_update(int(batch_size), real, y, self.hyper())])[0]

    # -- evaluation ------------------------------------------------------------------------
    def sample(self, n: int, seed: int | None = None, labels=None) -> np.ndarray:
        """``n`` samples in eval mode. With ``seed``, the same samples every call; without,
        the next draws of a sampling stream apart from the training noise. A
        class-conditional generator takes ``labels`` (default: ``arange(n) % num_classes``)."""
        y = class_labels(labels, (int(n),), self.num_classes)
        return self.forward(self.sampler, self.sample_latents(int(n), seed), y)

    @property
    def sampler(self) -> str:
        """The network ``sample`` and ``generate`` use: the EMA generator when kept."""
        return "generator_ema" if self.has_ema else "generator"

    def generate(self, z, labels=None) -> np.ndarray:
        """Generator outputs for latents ``z`` of shape (n, latent_dim), eval mode."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise DataError(f"latents have shape {z.shape}; expected (n, {self.latent_dim})")
        return self.forward(self.sampler, z, class_labels(labels, z.shape[:1], self.num_classes))

    def discriminate(self, x, labels=None) -> np.ndarray:
        """Discriminator logits, shape (n,), eval mode."""
        x = self.check_real(x)
        y = class_labels(labels, x.shape[:1], self.num_classes)
        if self.pack > 1:  # a packed discriminator: one logit per pack of consecutive samples
            self.check_pack(x.shape[0])
            x = x.reshape(x.shape[0] // self.pack, -1)
        return self.forward("discriminator", x, y)

    # -- input checks ------------------------------------------------------------------
    def check_real(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim < 2 or tuple(x.shape[1:]) != self.sample_shape:
            raise DataError(f"a real batch has shape {tuple(x.shape)} but the discriminator expects "
                            f"(batch, {', '.join(map(str, self.sample_shape))})")
        return x

    def check_pack(self, n: int) -> None:
        if int(n) % self.pack:
            raise DataError(f"a batch of {int(n)} samples does not divide into the discriminator's packs of {self.pack}",
                            hint=f"use a multiple of {self.pack} samples")

    def check_batch(self, n: int) -> None:
        self.check_pack(n)
        if self._has_batch_norm and n < 2:
            raise DataError(f"a training batch of {n} sample{'' if n == 1 else 's'} cannot be batch-normalised",
                            hint="use batches of at least 2 samples")

    # -- weights ---------------------------------------------------------------------------
    def _nets(self) -> tuple[str, ...]:
        return NETS if self.has_ema else ROLES

    def _spec(self, net: str):
        return self.specs["generator" if net == "generator_ema" else net]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers of every net, canonical layout, float32 numpy, prefixed
        ``generator.`` / ``discriminator.`` / ``generator_ema.``."""
        return {f"{net}.{k}": np.asarray(v, dtype=np.float32)
                for net in self._nets() for k, v in self.export_weights(net).items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Load canonical weights (any backend's), all checked before any is copied.
        Without ``generator_ema.*`` entries an EMA generator starts as the generator."""
        parts = split_by_prefix(state, [f"{net}." for net in NETS])
        for net in ROLES:
            check_weights(self._spec(net), parts[f"{net}."], prefix=f"{net}.")
        if parts["generator_ema."]:
            check_weights(self.specs["generator"], parts["generator_ema."], prefix="generator_ema.")
        for net in ROLES:
            self.import_weights(net, parts[f"{net}."])
        if self.has_ema:
            self.import_weights("generator_ema", parts["generator_ema."] or parts["generator."])

    def parameters_of(self, role: str) -> dict[str, np.ndarray]:
        """Trainable parameters of one net (canonical names, unprefixed, numpy copies)."""
        weights = self.export_weights(role)
        return {name: np.array(weights[name]) for name in self.specs[role].parameter_shapes()}

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Both optimizers' step counts and slots (torch's slot names, canonical layout),
        prefixed ``g_optimizer.`` / ``d_optimizer.``."""
        return {OPTIMIZER_PREFIX[role] + k: v for role in ROLES for k, v in self.export_optimizer(role).items()}

    def load_optimizer_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Load what :meth:`optimizer_state` (of any backend) wrote; both are checked first."""
        parts = {role: {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
                 for role, p in OPTIMIZER_PREFIX.items()}
        for role in ROLES:
            check_optimizer_state(self.settings(role), self.specs[role], parts[role], OPTIMIZER_PREFIX[role])
        for role in ROLES:
            self.import_optimizer(role, parts[role])

    def rng_state(self) -> dict[str, np.ndarray]:
        """Every random stream's state (backend specific; restores only on this backend)."""
        return self.export_rng()

    def load_rng_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`rng_state` returned (on this backend)."""
        try:
            self.import_rng(state)
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"the random state cannot be restored: {exc}",
                                  hint=f"it was written by another backend or {self.backend} version") from None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(device={self.device!r}, step={self.step_count}, "
                f"compile={self.setup.compile}, precision={self.setup.precision!r}, ema={self.has_ema})")
