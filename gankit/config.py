"""The experiment configuration: one strict pydantic model tree.

Load a file (TOML, YAML or JSON) or a shipped preset, apply ``--set`` overrides and
``GANKIT_BACKEND``, then :func:`resolve` checks every plugin name against the registry
and every plugin's ``params`` against that plugin's own model, filling in defaults.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from gankit.errors import ConfigError, PluginError
from gankit.protocol import OptimizerSettings, StrictModel, WeightSchedule

BACKEND_ENV = "GANKIT_BACKEND"
DEFAULT_BACKEND = "torch"
DEFAULT_PRESET = "mnist"
#: The most generator updates a run may ask for (a billion: days at a millisecond a step).
MAX_STEPS = 10**9
#: Seeds fit every framework's seed type (a non-negative int32).
MAX_SEED = 2**31 - 1
_DEVICE = re.compile(r"^(auto|cpu|mps|(cuda|gpu)(:\d+)?)$")


def default_backend() -> str:
    """``GANKIT_BACKEND`` if set, else ``torch``."""
    return os.environ.get(BACKEND_ENV, "").strip() or DEFAULT_BACKEND


def _no_effect(message: str) -> None:
    """A setting the rest of the config makes ineffective: a warning, not an error (a
    config may keep it for when it is switched on)."""
    warnings.warn(message, UserWarning, stacklevel=2)


class PluginChoice(StrictModel):
    """A plugin by registered name, with the parameters its own model accepts."""

    name: str
    """Registered plugin name (see `gankit plugins`)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters, validated against the plugin's own pydantic model."""


class RegularizerChoice(PluginChoice):
    """A regularizer plugin, its parameters, and how its penalty is weighted over training."""

    schedule: Literal["constant", "linear", "cosine"] = "constant"
    """The penalty's weight over training.steps: constant (1), or decayed linearly or by a
    cosine from 1 to final_weight_fraction at the last step (e.g. a strong R1 early, to
    keep every mode, and none at the end, so the discriminator can resolve the modes' shape)."""
    final_weight_fraction: float = Field(default=0.0, ge=0, le=1)
    """Where linear and cosine schedules end, as a fraction of the penalty."""

    def weight_schedule(self) -> WeightSchedule:
        return WeightSchedule(self.schedule, self.final_weight_fraction)

    @model_validator(mode="after")
    def _unused_fraction(self):
        if self.schedule == "constant" and self.final_weight_fraction:
            _no_effect(f"regularizer {self.name!r}: final_weight_fraction = {self.final_weight_fraction} has no "
                       "effect with the constant schedule (set schedule = \"linear\" or \"cosine\")")
        return self


class LatentConfig(StrictModel):
    """The generator's input noise."""

    dim: int = Field(default=2, gt=0)
    """Dimension of the latent vector z."""
    distribution: Literal["normal", "uniform"] = "normal"
    """Standard normal, or uniform on [-1, 1]."""


class OptimizerConfig(StrictModel):
    """One network's optimizer."""

    name: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    """Algorithm: adam, adamw, rmsprop or sgd."""
    lr: float = Field(default=2e-4, ge=0)
    """Learning rate (0 freezes the network)."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam/AdamW moment decay rates (beta1, beta2)."""
    weight_decay: float = Field(default=0.0, ge=0)
    """L2 penalty (adam, rmsprop, sgd) or decoupled decay (adamw)."""
    momentum: float = Field(default=0.0, ge=0, lt=1)
    """Momentum (rmsprop and sgd)."""
    eps: float = Field(default=1e-8, gt=0)
    """Numerical epsilon in the denominator (adam, adamw, rmsprop)."""
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    """Learning-rate schedule over training.steps: constant, linear decay or cosine decay
    (from lr down to lr * final_lr_fraction at the last step)."""
    final_lr_fraction: float = Field(default=0.0, ge=0, le=1)
    """Where linear and cosine schedules end, as a fraction of lr."""
    clip_grad_norm: float | None = Field(default=None, gt=0)
    """Clip the gradients' global L2 norm to this value before each update (unset: no clipping)."""
    clip_weights: float | None = Field(default=None, gt=0)
    """Clip every trainable parameter of the network to [-c, c] after each update (unset: no
    clipping): the original WGAN's weight clipping, on the discriminator's optimizer (0.01 in
    the paper). Buffers (batch-norm statistics, spectral norm's u) are not clipped."""

    @field_validator("betas")
    @classmethod
    def _betas(cls, v):
        if not all(0 <= b < 1 for b in v):
            raise ValueError("each beta must be in [0, 1)")
        return v

    def unused(self) -> list[str]:
        """The settings that differ from their defaults and have no effect on this optimizer."""
        default = OptimizerConfig.model_construct()
        ignored = {
            "betas": (self.name not in ("adam", "adamw"), f"on {self.name}"),
            "momentum": (self.name not in ("rmsprop", "sgd"), f"on {self.name}"),
            "eps": (self.name == "sgd", "on sgd"),
            "final_lr_fraction": (self.schedule == "constant", "with the constant schedule"),
        }
        return [f"{key} = {getattr(self, key)} has no effect {why}" for key, (off, why) in ignored.items()
                if off and getattr(self, key) != getattr(default, key)]

    def settings(self) -> OptimizerSettings:
        return OptimizerSettings(
            name=self.name, lr=self.lr, betas=tuple(self.betas), weight_decay=self.weight_decay,
            momentum=self.momentum, eps=self.eps, schedule=self.schedule,
            final_lr_fraction=self.final_lr_fraction, clip_grad_norm=self.clip_grad_norm,
            clip_weights=self.clip_weights,
        )


class OptimizersConfig(StrictModel):
    """An optimizer per network (different learning rates give TTUR)."""

    generator: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """The generator's optimizer."""
    discriminator: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """The discriminator's optimizer."""

    @model_validator(mode="after")
    def _unused_settings(self):
        for role in ("generator", "discriminator"):
            for what in getattr(self, role).unused():
                _no_effect(f"optimizers.{role}.{what}")
        return self


class TrainingConfig(StrictModel):
    """The training loop."""

    steps: int = Field(default=2000, gt=0, le=MAX_STEPS)
    """Number of generator updates."""
    batch_size: int = Field(default=256, gt=0)
    """Samples per batch, for each network."""
    n_critic: int = Field(default=1, ge=1, le=1000)
    """Discriminator updates per generator update."""
    log_every: int = Field(default=100, ge=1)
    """Write losses to metrics.jsonl every this many steps."""
    sample_every: int = Field(default=0, ge=0)
    """Save a sample picture every this many steps (0: only at the end)."""
    checkpoint_every: int = Field(default=1000, ge=0)
    """Save a resumable checkpoint every this many steps (0: not by steps)."""
    checkpoint_minutes: float = Field(default=5.0, ge=0)
    """Also save one when this many minutes passed since the last (0: not by time; a
    single-process run only). Ctrl-C and SIGTERM save one too, and the last step always has one."""
    num_samples: int = Field(default=2500, gt=0)
    """Samples drawn for the pictures and the final samples file."""
    compile: bool | list[str] = False
    """Compile: torch.compile the networks on torch; XLA (jit_compile) for the whole step on
    TensorFlow, whose steps are a tf.function either way. A list of backend names compiles
    on those backends only, e.g. ``["tensorflow"]`` (a recipe that XLA makes cheaper and
    torch.compile does not)."""
    init: Literal["default", "normal", "xavier_uniform"] = "default"
    """Weight initialisation: the framework's default, N(0, 0.02) (DCGAN), or Xavier uniform."""
    ema_decay: float = Field(default=0.0, ge=0, lt=1)
    """Keep an exponential moving average of the generator's weights with this decay
    (e.g. 0.999; 0: off). When on, samples, pictures and evaluation use the EMA generator,
    and checkpoints hold it as generator_ema.*."""
    ema_start: int = Field(default=0, ge=0)
    """Steps before the EMA starts averaging (until then it copies the generator)."""
    precision: Literal["float32", "bfloat16", "float16"] = "float32"
    """Compute precision (weights stay float32): bfloat16 on GPU or CPU, float16 with
    dynamic loss scaling on GPU only."""
    checkpoint_keep: int = Field(default=3, ge=1)
    """How many periodic checkpoints (checkpoints/step_*.json) to keep; older ones are deleted."""
    tensorboard: bool = True
    """Write TensorBoard event files (scalars and sample grids) into RUN_DIR/tensorboard."""
    prefetch: int = Field(default=2, ge=0, le=64)
    """Batches prepared ahead of the step by a background thread (0: prepare them inline).
    Datasets held as arrays in memory (the built-in ones, ``ArrayDataset``) are always
    served inline: their batch is one indexed copy, cheaper than a thread's hand-over."""
    threads: int | None = Field(default=None, ge=1)
    """CPU threads for the framework's intra-op pool (torch.set_num_threads; TensorFlow's
    intra- and inter-op pools, set before TensorFlow starts). None: chosen at start from the
    usable CPUs and the nets' size (1 for small nets or a machine of 2 CPUs or fewer; up to
    half the CPUs, at most 8, for large nets), and printed in the run's first line."""
    distributed: Literal["auto", "off", "mirrored"] = "auto"
    """Data-parallel training. auto: under torchrun (WORLD_SIZE > 1) torch trains with one
    process per rank; with TF_CONFIG naming several workers TensorFlow uses
    MultiWorkerMirroredStrategy. mirrored: TensorFlow's MirroredStrategy over every visible
    GPU of this machine. off: one process, one device. batch_size is the global batch."""

    @field_validator("compile", mode="before")
    @classmethod
    def _compile(cls, v):
        if isinstance(v, str):
            raise ValueError(f'true, false or a list of backend names, e.g. ["{v}"]')
        if isinstance(v, list) and len(set(map(repr, v))) != len(v):
            raise ValueError("name each backend once")
        return v

    def compiles_on(self, backend: str) -> bool:
        """Whether a run on ``backend`` compiles (``compile`` true, or a list naming it)."""
        return self.compile if isinstance(self.compile, bool) else backend in self.compile


class EvaluationConfig(StrictModel):
    """Sample-quality metrics: during training (every K steps) and by `gankit evaluate RUN_DIR`."""

    metrics: list[PluginChoice] = Field(default_factory=list)
    """Metric plugins (see `gankit plugins --kind metric`). Empty: the defaults for the
    data: modes and fid for the 2D toys; fid, kid, precision_recall for other data, plus
    classes and inception_score when the data's feature extractor is a classifier (MNIST)."""
    num_samples: int = Field(default=2500, ge=10)
    """Generated samples (and as many real ones) per evaluation."""
    every: int = Field(default=0, ge=0)
    """Evaluate every this many steps during training, and at the last step (0: never);
    results go to eval.jsonl in the run directory."""
    features: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Parameters of feature extractors, by name, e.g. inception_v3 = { weights = "pt_inception.pth" }."""

    @model_validator(mode="after")
    def _metrics_unique(self):
        names = [m.name for m in self.metrics]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"metric listed twice: {', '.join(sorted(dup))}")
        return self


class SamplingConfig(StrictModel):
    """How samples are drawn for evaluation and `gankit sample` (pictures during training
    always show the generator itself, from the fixed latent batch)."""

    rejection: Literal["none", "drs"] = "none"
    """none: every generated sample. drs: discriminator rejection sampling (Azadi et al.
    2019) — the trained discriminator's logits accept or reject each generated sample, which
    removes samples it finds unrealistic (e.g. between the modes of a mixture)."""
    drs_percentile: float | None = Field(default=None, ge=0, lt=1)
    """Unset: exact rejection sampling, accepting with exp(l(x) - l_max) (keeps the balance
    between modes). A number in [0, 1): the paper's shift gamma, that percentile of F(x)
    over each batch; higher is stricter and may favour the modes the discriminator scores
    highest (see docs/evaluation.md)."""

    @model_validator(mode="after")
    def _unused_percentile(self):
        if self.rejection == "none" and self.drs_percentile is not None:
            _no_effect(f"sampling.drs_percentile = {self.drs_percentile} has no effect with rejection = \"none\" "
                       "(set sampling.rejection = \"drs\")")
        return self


class AugmentConfig(StrictModel):
    """Differentiable augmentation (DiffAugment, Zhao et al. 2020) of every batch the
    discriminator sees in training, real and generated alike (images only; see
    docs/training.md)."""

    policy: list[Literal["color", "translation", "cutout"]] = Field(default_factory=list)
    """The transforms, e.g. ["color", "translation", "cutout"] (the paper's choice for
    small data); empty: no augmentation. They apply in the order color, translation, cutout."""
    translation_ratio: float = Field(default=0.125, gt=0, le=0.5)
    """Largest shift, as a fraction of the image side (0.125: 4 pixels at 28x28)."""
    cutout_ratio: float = Field(default=0.5, gt=0, le=1)
    """Side of the zeroed square, as a fraction of the image side."""

    def build(self):
        """The :class:`gankit.augment.DiffAugment` of this policy, or None when empty."""
        from gankit.augment import DiffAugment

        return DiffAugment(self.policy, self.translation_ratio, self.cutout_ratio) if self.policy else None


class OutputConfig(StrictModel):
    """Where results go."""

    dir: str = "runs"
    """Parent directory of run directories."""
    name: str | None = None
    """Run directory name, a relative path inside ``dir`` (default: experiment name,
    backend and a timestamp)."""
    overwrite: bool = False
    """Allow a new run in an existing run directory: what the old run wrote there
    (checkpoints, summary, evaluations, pictures, samples, TensorBoard events) is deleted
    first; other files stay."""

    @field_validator("dir")
    @classmethod
    def _dir(cls, v: str) -> str:
        if "\x00" in v:
            raise ValueError("a path cannot hold a NUL character")
        if not v.strip():
            raise ValueError("give a directory (e.g. runs)")
        return os.path.expanduser(v)  # the shell does not expand a '~' inside --set output.dir=~/runs

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if "\x00" in v:
            raise ValueError("a path cannot hold a NUL character")
        parts = v.replace("\\", "/").split("/")
        if v.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", v) or ".." in parts:
            raise ValueError("a run directory name must stay inside output.dir: no absolute path, '~' or '..' "
                             "(set output.dir to choose where runs go)")
        return v


def check_output_dir(output: OutputConfig) -> None:
    """Refuse, in one line, an ``output.dir`` that cannot hold run directories: a file,
    or a folder (or the nearest existing parent of a new one) this user cannot write."""
    target = Path(output.dir).expanduser()
    if output.name:
        target = target / output.name
    probe = target
    while not probe.exists():
        if probe.is_symlink() or probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"output directory {str(target)!r} cannot be created: {str(probe)!r} is a file",
                          hint="set output.dir (or output.name) to a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"output directory {str(target)!r} cannot be written: {str(probe)!r} is not writable by you",
                          hint="set output.dir to a folder you can write")


class ExperimentConfig(StrictModel):
    """A whole experiment. Every table and key is documented below; unknown keys are errors."""

    name: str = "experiment"
    """A label for the run directory and logs."""
    description: str = ""
    """What the experiment is for (shown by `gankit presets`)."""
    backend: str = DEFAULT_BACKEND
    """Backend plugin: torch, tensorflow or jax, or a third-party backend's name (GANKIT_BACKEND overrides the file)."""
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    """Seed for weights, noise and data order: a CPU run with the same seed repeats exactly."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N, gpu, gpu:N or mps (falls back to cpu with a warning)."""
    data: PluginChoice = Field(default_factory=lambda: PluginChoice(name="ring8"))
    """Dataset plugin."""
    latent: LatentConfig = Field(default_factory=LatentConfig)
    """Latent noise."""
    generator: PluginChoice = Field(default_factory=lambda: PluginChoice(name="mlp"))
    """Generator architecture plugin."""
    discriminator: PluginChoice = Field(default_factory=lambda: PluginChoice(name="mlp"))
    """Discriminator architecture plugin."""
    loss: PluginChoice = Field(default_factory=lambda: PluginChoice(name="non_saturating"))
    """Loss plugin."""
    regularizers: list[RegularizerChoice] = Field(default_factory=list)
    """Discriminator penalties, added to its loss (each with an optional weight schedule)."""
    optimizers: OptimizersConfig = Field(default_factory=OptimizersConfig)
    """One optimizer per network."""
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    """The training loop."""
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    """Sample-quality metrics."""
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    """How evaluation and `gankit sample` draw samples (plain, or discriminator rejection sampling)."""
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    """Differentiable augmentation of the discriminator's inputs (off by default)."""
    output: OutputConfig = Field(default_factory=OutputConfig)
    """Where results go."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if "\x00" in v or "/" in v or "\\" in v or v in (".", ".."):
            raise ValueError("the experiment name becomes a directory name: use no '/', '\\' or NUL, and not '.' or '..'")
        if not v.strip() or v != v.strip() or v.startswith(("-", ".")):
            raise ValueError("the experiment name becomes the start of a directory name: give a non-empty name "
                             "without surrounding spaces or a leading '-' or '.'")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        v = v.strip().lower()
        if not _DEVICE.match(v):
            raise ValueError("device must be auto, cpu, cuda, cuda:N, gpu, gpu:N or mps")
        return v

    @model_validator(mode="after")
    def _regularizers_unique(self):
        names = [r.name for r in self.regularizers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"regularizer listed twice: {', '.join(sorted(dup))}")
        return self


# -- loading --------------------------------------------------------------------
def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file into a dict (never executes code)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist", hint="check the path, or use --preset NAME")
    suffix = p.suffix.lower()
    try:
        text = p.read_text(encoding="utf-8")
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {str(p)!r} has unknown extension {suffix!r}", hint="use .toml, .yaml, .yml or .json")
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"config file {str(p)!r} is nested too deeply to be a config", hint="a config is a few levels of tables") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"config file {str(p)!r} cannot be parsed: {detail}", hint=f"fix the {suffix[1:].upper()} syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a table of settings, not a {type(data).__name__}")
    return data


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("gankit.presets").iterdir() if p.name.endswith(".toml"))


def read_preset(name: str) -> dict[str, Any]:
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(names)}")
    return tomllib.loads(resources.files("gankit.presets").joinpath(f"{name}.toml").read_text("utf-8"))


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as JSON, else a string)."""
    data = json.loads(json.dumps(data))  # a deep copy of plain data
    # Setting a plugin choice's name to another plugin resets its params to that
    # plugin's defaults: the old plugin's params would be unknown keys for the new one.
    switched: list[tuple[tuple[str, ...], dict]] = []
    explicit: set[tuple[str, ...]] = set()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not of the form KEY=VALUE", hint="e.g. --set training.steps=500")
        parts = key.strip().split(".")
        if not all(part.strip() for part in parts):
            raise ConfigError(f"--set {item!r}: the key {key.strip()!r} has an empty part",
                              hint="keys are names joined by single dots, e.g. --set training.steps=500")
        node = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                where = '.'.join(parts[: i + 1])
                raise ConfigError(f"--set {item!r}: {where} is not a table",
                                  hint=f"set it whole, e.g. --set '{where}=[...]' for a list" if isinstance(nxt, list)
                                  else f"{where} holds {json.dumps(nxt)}; set it whole with --set {where}=VALUE")
            node = nxt
        value = _parse_value(raw)
        if parts[-1] == "name" and isinstance(node.get("params"), dict) and node.get("name") != value:
            switched.append((tuple(parts[:-1]), node))
        node[parts[-1]] = value
        explicit.add(tuple(parts))
    for path, node in switched:
        # Another plugin: its params start from its own defaults, plus those set here, one
        # key at a time or as a whole table (``generator.params={...}``, before or after
        # the name: the table is the user's own, every key of it kept).
        if path + ("params",) in explicit:
            continue
        kept = {e[-1] for e in explicit if len(e) == len(path) + 2 and e[:-1] == path + ("params",)}
        if isinstance(node.get("params"), dict):  # else validation says what is wrong with it
            node["params"] = {k: v for k, v in node["params"].items() if k in kept}
    return data


def _format_validation_error(err: ValidationError, source: str, prefix: str = "") -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in (prefix, *e["loc"]) if x != "")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], (dict, list)):
            msg += f" (got {e['input']!r})"
            if e["type"] == "string_type" and isinstance(e["input"], (int, float)):
                msg += f"; with --set, quote it as JSON: '{loc}=\"{e['input']}\"'"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: " + "; ".join(parts)


def validate(data: Mapping[str, Any], source: str = "config") -> ExperimentConfig:
    """Structural validation only (no registry look-ups)."""
    try:
        return ExperimentConfig.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source), hint="see docs/configuration.md or `gankit config schema`") from None


def resolve(cfg: ExperimentConfig, registry=None, source: str = "config") -> ExperimentConfig:
    """Check every plugin name against the registry and every ``params`` against the
    plugin's model; return a copy with all defaults filled in."""
    from gankit.plugins import get_registry

    reg = registry or get_registry()

    def check(kind: str, choice: PluginChoice, where: str) -> PluginChoice:
        try:
            entry = reg.get(kind, choice.name)
        except PluginError as exc:
            raise ConfigError(f"{source}: {where}.name: {exc.message}", hint=exc.hint) from None
        try:
            params = entry.record.params.model_validate(choice.params)
        except ValidationError as err:
            raise ConfigError(
                _format_validation_error(err, source, prefix=f"{where}.params"),
                hint=f"see `gankit plugins --kind {kind}` for the parameters of {choice.name!r}",
            ) from None
        # model_copy keeps a choice's own keys (a regularizer's weight schedule)
        return choice.model_copy(update={"params": params.model_dump(mode="json")})

    try:
        reg.get("backend", cfg.backend)
    except PluginError as exc:
        raise ConfigError(f"{source}: backend: {exc.message}", hint=exc.hint) from None
    for name in cfg.training.compile if isinstance(cfg.training.compile, list) else ():
        try:
            reg.get("backend", name)
        except PluginError as exc:
            raise ConfigError(f"{source}: training.compile: {exc.message}", hint=exc.hint) from None
    for role in ("generator", "discriminator"):
        entry = reg.get("architecture", getattr(cfg, role).name) if reg.has("architecture", getattr(cfg, role).name) else None
        if entry is not None and role not in entry.record.roles:
            raise ConfigError(f"{source}: {role}.name: architecture {entry.name!r} cannot be a {role}")
        if entry is not None and not entry.record.builds_on(cfg.backend):
            from gankit.native import not_built_on, switch_hint

            reason = not_built_on(entry.name, entry.record.backends, cfg.backend,
                                  native=entry.record.native is not None)
            raise ConfigError(f"{source}: {role}.name: {reason}", hint=switch_hint(entry.record.backends))
    metrics = [check("metric", m, f"evaluation.metrics.{i}") for i, m in enumerate(cfg.evaluation.metrics)]
    for i, m in enumerate(metrics):  # a metric's feature extractor, checked now rather than at the first evaluation
        features = m.params.get("features")
        if isinstance(features, str) and features != "auto" and not reg.has("feature_extractor", features):
            known = ", ".join(["auto", *sorted(reg.names("feature_extractor"))])
            raise ConfigError(f"{source}: evaluation.metrics.{i}.params.features: unknown feature extractor {features!r}",
                              hint=f"use one of {known} (`gankit plugins --kind feature_extractor`)")
    evaluation = cfg.evaluation.model_copy(update={
        "metrics": metrics,
        "features": {
            name: check("feature_extractor", PluginChoice(name=name, params=params), f"evaluation.features.{name}").params
            for name, params in cfg.evaluation.features.items()
        },
    })
    return cfg.model_copy(
        update={
            "evaluation": evaluation,
            "data": check("dataset", cfg.data, "data"),
            "generator": check("architecture", cfg.generator, "generator"),
            "discriminator": check("architecture", cfg.discriminator, "discriminator"),
            "loss": check("loss", cfg.loss, "loss"),
            "regularizers": [check("regularizer", r, f"regularizers.{i}") for i, r in enumerate(cfg.regularizers)],
        }
    )


def load_config(
    source: str | os.PathLike | Mapping[str, Any] | ExperimentConfig | None = None,
    *,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    registry=None,
    environ: Mapping[str, str] | None = None,
) -> ExperimentConfig:
    """Load, override and fully resolve a config.

    ``source`` is a file path, a dict, an :class:`ExperimentConfig`, or ``None`` for
    ``preset`` (default: the ``mnist`` preset). Precedence, lowest first: the file or
    preset, ``GANKIT_BACKEND``, then ``overrides``.
    """
    env = os.environ if environ is None else environ
    if isinstance(source, ExperimentConfig):
        data, label = source.model_dump(mode="json"), "config"
    elif isinstance(source, Mapping):
        data, label = dict(source), "config"
    elif source is not None:
        if preset is not None:
            raise ConfigError("give a config file or --preset, not both")
        data, label = read_config_file(source), str(source)
    else:
        name = DEFAULT_PRESET if preset is None else preset  # '' is no preset's name, not the default
        data, label = read_preset(name), f"preset {name!r}"
    env_backend = env.get(BACKEND_ENV, "").strip()
    if env_backend:
        data = {**data, "backend": env_backend}
        if not any(item.partition("=")[0].strip() == "backend" for item in overrides):
            label = f"{label} with {BACKEND_ENV}={env_backend}"  # an error about the backend names its source
    if overrides:
        data = apply_overrides(data, overrides)
    return resolve(validate(data, label), registry=registry, source=label)


def schema() -> dict[str, Any]:
    """JSON Schema of the config, for editors."""
    return ExperimentConfig.model_json_schema()
