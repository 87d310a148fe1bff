"""The GAN protocol: losses, regularizers, the training step and what a backend provides.

Everything here is framework-neutral. A loss or regularizer is written once against
:class:`~gankit.ops.Ops`; a backend turns the neutral pieces (net specs, loss,
regularizers, optimizer settings) into a compiled training step.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gankit.ops import Array, Ops

LossFamily = Literal["minimax", "wasserstein", "hinge", "least_squares", "relativistic", "f_divergence", "other"]
"""``LossMeta.family``: which mathematics the conformance suite holds a loss to (see
:mod:`gankit.conformance.families` and docs/losses.md). A family fixes the canonical
per-sample terms of the D loss (and where known the G loss), so the suite checks the
optimal discriminator under unequal p, q (``loss.optimal_discriminator``) and the
gradients out to extreme logits (``loss.asymptotes``) against them:

* ``minimax`` — sigmoid cross-entropy: D* = p (1 - s) / (p + q) with one-sided label
  smoothing ``params.label_smoothing`` = s (0 without); the generator is -log D(G(z))
  when ``saturating`` is False, log(1 - D(G(z))) when True.
* ``least_squares`` — D = 1/2 E(r - b)^2 + 1/2 E(f - a)^2, G = 1/2 E(f - c)^2 with
  targets ``params.a``, ``b``, ``c`` (defaults 0, 1, 1): D* = (b p + a q) / (p + q).
* ``hinge`` — D = E relu(1 - r) + E relu(1 + f): D* = sign(p - q) (the generator is open).
* ``wasserstein`` — D = E f - E r, G = -E f: no optimum; the slope per point is q - p.
* ``f_divergence`` — an f-GAN (Nowozin et al. 2016) named by ``LossMeta.divergence``
  (``kl``, ``reverse_kl``, ``pearson``, ``jensen_shannon``): D* = f'(p / q) through the
  output activation, where the expected D loss is -D_f(p || q).
* ``relativistic`` — compares real with fake logits: no per-family optimum or asymptote
  (the generic checks still run).
* ``other`` — anything else: only the declared properties and the generic checks.
"""

#: Names of the mathematical properties a loss can declare (checked by the conformance suite).
LOSS_PROPERTIES = (
    "finite_at_extremes",      # finite values and gradients at logits of +-1e4
    "batch_order_invariant",   # permuting the batch leaves the value unchanged
    "mean_reduced",            # duplicating the batch leaves the value unchanged
    "monotone",                # higher real logits never raise the D loss, etc.
    "optimal_discriminator",   # D loss minimal at the family's D* (implied by a family that has one)
    "shift_invariant",         # adding a constant to every logit changes nothing
    "hinge_margin",            # zero D loss once real >= 1 and fake <= -1
    "least_squares_targets",   # minimised at the configured targets
)


class StrictModel(BaseModel):
    """Base for every gankit pydantic model: unknown keys are errors, and so is a boolean
    where a number belongs (``lr = true`` is not a learning rate of 1)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data):
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if field is not None and _holds_bool(value) and _admits_number(field.annotation) \
                        and not _admits_bool(field.annotation):
                    raise ValueError(f"{name}: a boolean is not a number (got {value!r}); write the number itself")
        return data


def _holds_bool(value) -> bool:
    return isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value))


def _admits_number(annotation) -> bool:
    """Whether a field's type takes an int or a float anywhere (pydantic would take a boolean for it)."""
    import typing

    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) is Literal:
        return False
    return any(_admits_number(a) for a in typing.get_args(annotation) if a is not Ellipsis)


def _admits_bool(annotation) -> bool:
    """Whether a field's type takes booleans anywhere (bool, Any, or a union or container of them)."""
    import typing

    if annotation in (bool, Any, object) or isinstance(annotation, typing.TypeVar):
        return True
    if typing.get_origin(annotation) is Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    return any(_admits_bool(a) for a in typing.get_args(annotation) if a is not Ellipsis)


class NoParams(StrictModel):
    """A plugin that takes no parameters."""


@dataclass(frozen=True)
class LossMeta:
    """What a loss declares about itself; the conformance suite checks these claims."""

    family: LossFamily
    #: True when the generator loss saturates (vanishing gradient as D(G(z)) -> 0).
    saturating: bool
    #: The properties from :data:`LOSS_PROPERTIES` that apply to this loss.
    properties: tuple[str, ...]
    #: The formula, in plain text (shown in ``gankit plugins`` and the docs).
    formula: str
    #: The paper the loss comes from.
    paper: str
    #: Whether the generator loss reads the real logits (relativistic losses do).
    generator_needs_real: bool = False
    #: For family ``f_divergence``: which f (``kl``, ``reverse_kl``, ``pearson``,
    #: ``jensen_shannon``); None otherwise.
    divergence: str | None = None

    def __post_init__(self):
        unknown = set(self.properties) - set(LOSS_PROPERTIES)
        if unknown:
            raise ValueError(f"unknown loss properties {sorted(unknown)}; known: {LOSS_PROPERTIES}")


class Loss:
    """A GAN loss: two scalar functions of logits, written against :class:`Ops`.

    Subclasses set ``meta`` and implement both methods. Inputs are logits (raw
    discriminator outputs), never probabilities; outputs are scalars averaged over
    the batch.

    Example::

        class Hinge(Loss):
            meta = LossMeta(family="hinge", saturating=False, properties=(...),
                            formula="...", paper="...")

            def discriminator(self, ops, real_logits, fake_logits):
                return (ops.mean(ops.relu(1 - real_logits))
                        + ops.mean(ops.relu(1 + fake_logits)))

            def generator(self, ops, fake_logits, real_logits=None):
                return -ops.mean(fake_logits)
    """

    meta: ClassVar[LossMeta]

    def __init__(self, params: BaseModel | None = None):
        self.params = params

    def discriminator(self, ops: Ops, real_logits: Array, fake_logits: Array) -> Array:
        """The loss the discriminator minimises."""
        raise NotImplementedError

    def generator(self, ops: Ops, fake_logits: Array, real_logits: Array | None = None) -> Array:
        """The loss the generator minimises. ``real_logits`` is given when
        ``meta.generator_needs_real`` is true."""
        raise NotImplementedError


Discriminator = Callable[[Array], Array]
"""The discriminator as a function from a batch of samples to logits of shape (batch,)."""


@dataclass(frozen=True)
class RegularizerMeta:
    """What a regularizer declares about itself."""

    #: Which samples the penalty is evaluated at.
    evaluated_at: Literal["real", "fake", "interpolates", "perturbed_real"]
    formula: str
    paper: str


class Regularizer:
    """A penalty added to the discriminator loss, written against :class:`Ops`.

    ``__call__`` returns the weighted penalty (a scalar) for one discriminator update.
    """

    meta: ClassVar[RegularizerMeta]

    def __init__(self, params: BaseModel | None = None):
        self.params = params

    def __call__(self, ops: Ops, discriminator: Discriminator, real: Array, fake: Array) -> Array:
        raise NotImplementedError


class StepResult(BaseModel):
    """What one training step reports: the losses of its last updates, plus extras."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=0)
    """The number of completed steps (generator updates) after this one."""
    d_loss: float
    """Discriminator loss of the last discriminator update (penalties excluded)."""
    g_loss: float
    """Generator loss of the generator update."""
    extras: dict[str, float] = Field(default_factory=dict)
    """Further scalars: each penalty, mean real and fake logits."""

    @field_validator("extras")
    @classmethod
    def _names(cls, v: dict[str, float]) -> dict[str, float]:
        for key in v:
            if not key.isidentifier():
                raise ValueError(f"extra name {key!r} must be an identifier")
        return v

    def is_finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.d_loss, self.g_loss, *self.extras.values()))

    def scalars(self) -> dict[str, float]:
        return {"d_loss": self.d_loss, "g_loss": self.g_loss, **self.extras}


ScheduleKind = Literal["constant", "linear", "cosine"]


def schedule_factor(kind: ScheduleKind, final_fraction: float, step: int, total_steps: int) -> float:
    """The factor a schedule applies during step ``step`` (0-based) of ``total_steps``:
    1 throughout for ``constant`` (or without a step count); ``linear`` and ``cosine``
    decay from 1 at step 0 to ``final_fraction`` at the last step. Learning rates and
    penalty weights follow it (:meth:`gankit.trainer.BaseTrainer.hyper`, on the host)."""
    if kind == "constant" or total_steps <= 0:
        return 1.0
    t = min(max(step, 0), total_steps) / total_steps
    f = final_fraction
    if kind == "linear":
        return 1.0 - (1.0 - f) * t
    return f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass(frozen=True)
class WeightSchedule:
    """How a regularizer's penalty is weighted over the run: ``penalty * factor``, with
    :func:`schedule_factor` (``constant``: the penalty as its plugin computes it)."""

    schedule: ScheduleKind = "constant"
    final_fraction: float = 0.0

    def at(self, step: int, total_steps: int) -> float:
        return schedule_factor(self.schedule, self.final_fraction, step, total_steps)

    @property
    def constant(self) -> bool:
        return self.schedule == "constant"


@dataclass
class OptimizerSettings:
    """Neutral optimizer settings (from :class:`gankit.config.OptimizerConfig`)."""

    name: Literal["adam", "adamw", "rmsprop", "sgd"]
    lr: float
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    momentum: float = 0.0
    eps: float = 1e-8
    #: Learning-rate schedule over the run: ``constant``, ``linear`` decay or ``cosine``
    #: decay, from ``lr`` at step 0 to ``lr * final_lr_fraction`` at the last step.
    schedule: ScheduleKind = "constant"
    final_lr_fraction: float = 0.0
    #: Clip the gradients' global L2 norm to this value before each update (None: off),
    #: with torch's rule: ``g *= min(1, max_norm / (norm + 1e-6))``.
    clip_grad_norm: float | None = None
    #: Clip every trainable parameter of this optimizer's network to ``[-c, c]`` after
    #: each of its updates (None: off): the original WGAN's weight clipping (Arjovsky et
    #: al. 2017), set on the discriminator's optimizer. Parameters only: buffers (batch
    #: norm's running statistics, spectral norm's ``u``) are not weights the optimizer
    #: moves and are left alone; batch norm's learned scale and shift are parameters and
    #: are clipped, as in the paper's code.
    clip_weights: float | None = None

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of the update made during step ``step`` (0-based) of a run of
        ``total_steps`` steps. Every backend's update takes this rate from
        :meth:`gankit.trainer.BaseTrainer.hyper`."""
        if self.schedule == "constant" or total_steps <= 0:
            return self.lr
        return self.lr * schedule_factor(self.schedule, self.final_lr_fraction, step, total_steps)


Precision = Literal["float32", "bfloat16", "float16"]


@dataclass
class TrainSetup:
    """Everything a backend needs to build a trainer, in neutral form.

    A setup checks its own consistency when it is made (and remade by
    ``dataclasses.replace``): the shapes against ``latent_dim`` and each other, one logit
    per sample, ``n_critic``, the regularizers' schedules, ``ema_decay``, ``rank`` and
    ``world_size``, the batch against the processes and the discriminator's packs, batch
    norm's two samples per process, and the precision's name. A setup no backend can
    train raises :class:`~gankit.errors.ConfigError` in one line; this is the one place
    those checks live. Whether the precision runs on the device a backend resolves is
    :func:`gankit.trainer.check_precision`'s to say.
    """

    generator: Any  # gankit.nets.NetSpec
    discriminator: Any  # gankit.nets.NetSpec
    loss: Loss
    #: Penalties by name (the name labels their value in ``StepResult.extras``).
    regularizers: dict[str, Regularizer]
    g_optimizer: OptimizerSettings
    d_optimizer: OptimizerSettings
    latent_dim: int
    batch_size: int
    latent_distribution: Literal["normal", "uniform"] = "normal"
    n_critic: int = 1
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    #: Initial weights in the canonical layout (``generator.<param>``,
    #: ``discriminator.<param>``), from :func:`gankit.initializers.initial_weights`.
    initial_weights: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    #: Steps the run will take (what learning-rate schedules decay over; 0: no schedule).
    total_steps: int = 0
    #: Exponential moving average of the generator's weights: after each generator
    #: update ``ema = decay * ema + (1 - decay) * weights`` (buffers copied). 0 disables
    #: it; when enabled, ``sample`` and ``generate`` use the EMA generator.
    ema_decay: float = 0.0
    #: Steps before the EMA starts averaging (until then it copies the generator).
    ema_start: int = 0
    #: Compute precision of forward and backward passes; weights and optimizer state
    #: stay float32. ``float16`` uses dynamic loss scaling and needs a GPU.
    precision: Precision = "float32"
    #: Data-parallel training: this process's rank among ``world_size`` (see each
    #: backend's ``distributed`` module). ``batch_size`` is the global batch; each rank
    #: trains on its ``batch_size // world_size`` share and draws the same global latents.
    world_size: int = 1
    rank: int = 0
    #: Weight schedules of the penalties by regularizer name (absent: constant). The
    #: discriminator's loss adds ``penalty * schedule.at(step, total_steps)``, and that
    #: weighted value is what ``StepResult.extras`` reports.
    regularizer_schedules: dict[str, WeightSchedule] = field(default_factory=dict)
    #: CPU threads of the framework's intra-op pool, set process-wide when the trainer is
    #: built (TensorFlow: intra- and inter-op, only before its runtime starts; a warning
    #: otherwise). ``None`` keeps the framework's default.
    threads: int | None = None
    #: Differentiable augmentation (e.g. :class:`gankit.augment.DiffAugment`): a callable
    #: ``(ops, samples) -> samples`` the trainer applies, with fresh draws from its seeded
    #: stream, to every real and every generated batch before the discriminator judges it
    #: in a training update (penalties see the augmented batches too). ``None``: off.
    augment: Any = None

    @property
    def num_classes(self) -> int | None:
        """The number of classes the class-conditional nets read (None when unconditional)."""
        from gankit.nets import conditional_classes

        return conditional_classes(self.generator, self.discriminator)

    def __post_init__(self) -> None:
        from gankit.errors import ConfigError

        g, d = self.generator, self.discriminator
        if tuple(g.input_shape) != (self.latent_dim,):
            raise ConfigError(
                f"the generator takes input shape {tuple(g.input_shape)} but latent_dim is {self.latent_dim}",
                hint="build the generator with input_shape=(latent_dim,)")
        if tuple(g.output_shape) != tuple(d.input_shape):
            raise ConfigError(
                f"the generator outputs shape {tuple(g.output_shape)} but the discriminator takes "
                f"{tuple(d.input_shape)}", hint="both must match the data's sample shape")
        if math.prod(d.output_shape) != 1:
            raise ConfigError(
                f"the discriminator must output one logit per sample, got shape {tuple(d.output_shape)}",
                hint="end it with a dense layer of 1 unit")
        if self.n_critic < 1:
            raise ConfigError(f"n_critic must be at least 1, got {self.n_critic}",
                              hint="n_critic counts discriminator updates per generator update")
        unknown = sorted(set(self.regularizer_schedules) - set(self.regularizers))
        if unknown:
            raise ConfigError(f"weight schedules given for regularizers the setup does not have: {', '.join(unknown)}",
                              hint="name each schedule after one of TrainSetup.regularizers")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}",
                              hint="e.g. 0.999, or 0 for no EMA generator")
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank {self.rank} does not fit world_size {self.world_size}",
                              hint="ranks run from 0 to world_size - 1")
        self._check_batch()
        if self.precision not in typing.get_args(Precision):
            raise ConfigError(f"unknown precision {self.precision!r}", hint="use float32, bfloat16 or float16")
        try:
            self.num_classes
        except ValueError as exc:
            raise ConfigError(f"generator and discriminator: {exc}",
                              hint="build both nets for the same number of classes") from None

    def _check_batch(self) -> None:
        """The global batch divides among the processes, each share into the
        discriminator's packs, and batch norm gets at least 2 samples per process."""
        from gankit.errors import ConfigError

        b, w = self.batch_size, self.world_size
        if b % w:
            raise ConfigError(f"batch_size {b} does not divide among {w} processes",
                              hint=f"use a multiple of {w} (training.batch_size is the global batch)")
        share, pack = b // w, int(getattr(self.discriminator, "pack", 1))
        if share % pack:
            on = f" on each of {w} processes" if w > 1 else ""
            raise ConfigError(f"batch_size {b} does not divide into the discriminator's packs of {pack}{on}",
                              hint=f"use a batch size that is a multiple of {pack * w}")
        if share < 2 and any(layer.kind == "batch_norm" for spec in (self.generator, self.discriminator)
                             for _, layer, _ in spec.walk()):
            raise ConfigError(f"batch norm needs at least 2 samples per batch, each process gets {share}",
                              hint="raise batch_size (training.batch_size)")


@runtime_checkable
class Trainer(Protocol):
    """A built GAN on one backend: networks, optimizers and the compiled step."""

    backend: str
    #: The neutral name of the device the trainer runs on: ``"cpu"`` or ``"cuda:N"``
    #: (``"mps"`` on torch), whatever the framework calls it.
    device: str
    #: Completed steps (generator updates); settable when resuming.
    step_count: int
    #: Whether an EMA generator is kept (``TrainSetup.ema_decay > 0``); ``sample`` and
    #: ``generate`` then use it, and ``state_dict`` holds it as ``generator_ema.<param>``.
    has_ema: bool

    def train_step(self, real_batches: np.ndarray) -> StepResult:
        """``n_critic`` discriminator updates (one per real batch in the leading axis
        of ``real_batches``), then one generator update."""

    def discriminator_step(self, real: np.ndarray) -> float:
        """One discriminator update on ``real``; returns its loss."""

    def generator_step(self, batch_size: int, real: np.ndarray | None = None) -> float:
        """One generator update; returns its loss."""

    def sample(self, n: int, seed: int | None = None, labels: np.ndarray | None = None) -> np.ndarray:
        """``n`` generator samples as numpy (eval mode). A conditional generator takes
        ``labels`` (default: ``arange(n) % num_classes``)."""

    def generate(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Generator outputs for the given latents (and labels, when conditional), as
        numpy (eval mode)."""

    def discriminate(self, x: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Discriminator logits for ``x`` (and labels, when conditional), as numpy (eval mode)."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights in the canonical layout: ``generator.<param>``, ``discriminator.<param>``."""

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Load weights in the canonical layout (any backend's checkpoint). Without
        ``generator_ema.*`` entries an EMA generator starts as a copy of the generator."""

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """Both optimizers' step counts and slots, prefixed ``g_optimizer.`` /
        ``d_optimizer.``, in one format shared by every backend (torch slot names,
        canonical layouts)."""

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Load what :meth:`optimizer_state` (of any backend) wrote."""

    def rng_state(self) -> dict[str, np.ndarray]:
        """The state of every random stream the trainer draws from (training noise,
        penalties' draws, unseeded sampling), and the loss scale under float16, as numpy
        arrays; restoring it makes a resumed run draw exactly what an uninterrupted one
        would. Backend specific: it only loads on the backend that wrote it."""

    def load_rng_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`rng_state` returned."""

    def learning_rates(self) -> dict[str, float]:
        """The learning rates the next step will use: ``{"generator": .., "discriminator": ..}``."""


@dataclass
class ProcessGroup:
    """The processes of a data-parallel run, as a backend's ``distributed`` reports them.

    Each process feeds its ``1 / world_size`` share of every global batch (rows
    ``rank * b`` to ``(rank + 1) * b``); only rank 0 writes files.
    """

    rank: int = 0
    world_size: int = 1
    #: How the run is distributed, for messages ("single process", "torchrun, gloo, 2 ranks", ...).
    description: str = "single process"
    #: Device each process should train on ("" keeps the config's).
    device: str = ""
    barrier: Callable[[], None] = lambda: None
    shutdown: Callable[[], None] = lambda: None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@runtime_checkable
class Backend(Protocol):
    """What a backend plugin provides."""

    name: str

    def version(self) -> str:
        """The framework's version string."""

    def ops(self, dtype: str = "float32", seed: int = 0) -> Ops:
        """An :class:`Ops` for standalone evaluation (tests, conformance)."""

    def build_trainer(self, setup: TrainSetup) -> Trainer:
        """Build networks, optimizers and the compiled step for ``setup``."""

    def distributed(self, mode: str, device: str) -> ProcessGroup:
        """Join the launcher's process group (``mode`` is ``training.distributed``) and
        report this process's place in it; a single process outside a launcher."""
