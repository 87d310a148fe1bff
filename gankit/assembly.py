"""Experiment assembly: a resolved config turned into objects.

config -> registry -> dataset and net specs -> :class:`~gankit.protocol.TrainSetup` ->
the backend's trainer. :func:`build` does it for a new run (``gankit train``, the
conformance and test helpers); :func:`load_run` rebuilds a finished run from its
checkpoint (``gankit evaluate``). Checks that need the dataset or the whole config run
here (:func:`check_experiment`); the setup's own consistency is checked by
:class:`~gankit.protocol.TrainSetup` itself.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from gankit import checkpoint
from gankit.budget import check_resources
from gankit.config import ExperimentConfig, load_config
from gankit.data import Dataset
from gankit.errors import CheckpointError, ConfigError
from gankit.initializers import initial_weights
from gankit.native import not_built_on, switch_hint
from gankit.nets import NetSpec
from gankit.plugins import Registry, call_factory, get_registry
from gankit.protocol import Backend, ProcessGroup, Trainer, TrainSetup
from gankit.threads import Threads, choose_threads


@dataclass
class Experiment:
    """A resolved config turned into objects: backend, trainer, dataset, specs."""

    config: ExperimentConfig
    backend: Backend
    trainer: Trainer
    dataset: Dataset
    generator: NetSpec
    discriminator: NetSpec
    group: ProcessGroup = field(default_factory=ProcessGroup)
    """This process's place in a data-parallel run (a single process by default)."""
    threads: Threads | None = None
    """The CPU threads the trainer was given, and why."""
    registry: Registry | None = None
    """The plugins it was built from (to name a third-party plugin whose code fails later)."""


def build_plugin(registry: Registry, kind: str, choice, **kwargs):
    """The plugin of ``kind`` a config's ``{name, params}`` choice names, with its params
    validated by the plugin's own model (``kwargs`` go to its factory). A third-party
    factory that fails, or returns the wrong kind of object, is a one-line
    :class:`~gankit.errors.PluginError` naming the plugin (:func:`~gankit.plugins.call_factory`)."""
    entry = registry.get(kind, choice.name)
    return call_factory(entry, kind, entry.record.params.model_validate(choice.params), **kwargs)


def build_architecture(registry: Registry, choice, dataset: Dataset, **kwargs) -> NetSpec:
    """An architecture's spec; a class-conditional one also gets the data's class count."""
    entry = registry.get("architecture", choice.name)
    record = entry.record
    if getattr(record, "conditional", False):
        if getattr(dataset, "num_classes", None) is None:
            raise ConfigError(f"architecture {choice.name!r} is class-conditional but the data has no labels",
                              hint="choose a labelled dataset, or an unconditional architecture")
        kwargs["num_classes"] = dataset.num_classes
    try:
        return call_factory(entry, "architecture", record.params.model_validate(choice.params),
                            passthrough=(ValueError,), what=f"the {kwargs.get('role', 'architecture')} "
                            f"architecture {choice.name!r}", **kwargs)
    except ValueError as exc:  # the architecture refuses these shapes or parameters
        first = (str(exc).strip().splitlines() or [""])[0]
        if isinstance(exc, ValidationError) and exc.errors():  # a layer it made refuses its settings
            e = exc.errors()[0]
            first = f"its {exc.title} layer: {'.'.join(map(str, e['loc']))}: {e['msg']}"
        raise ConfigError(f"{kwargs.get('role', 'architecture')} {choice.name!r}: {first}",
                          hint=f"see `gankit plugins --kind architecture` for {choice.name!r}") from None


def check_builds_on(registry: Registry, cfg: ExperimentConfig) -> None:
    """Refuse, in one line, an architecture that the configured backend cannot build (a
    native architecture of another backend), before any work starts."""
    for role in ("generator", "discriminator"):
        name = getattr(cfg, role).name
        record = registry.get("architecture", name).record
        if not record.builds_on(cfg.backend):
            reason = not_built_on(name, record.backends, cfg.backend, native=record.native is not None)
            raise ConfigError(f"{role}.name: {reason}", hint=switch_hint(record.backends))


def check_experiment(cfg: ExperimentConfig, dataset: Dataset, d_spec: NetSpec) -> None:
    """Refuse, in one line each, what only the config and the dataset can tell (before
    any work starts), and warn about settings that do nothing. The setup's own
    consistency (shapes, batch against processes and packs, batch norm, n_critic, EMA,
    precision) is :class:`~gankit.protocol.TrainSetup`'s to check."""
    t = cfg.training
    size = len(dataset) if hasattr(dataset, "__len__") else None
    if size is not None and t.batch_size > size:
        raise ConfigError(f"training.batch_size {t.batch_size} is larger than the dataset ({size} samples)",
                          hint="lower training.batch_size")
    pack = getattr(d_spec, "pack", 1)
    if pack > 1 and cfg.sampling.rejection == "drs":
        raise ConfigError(f"sampling.rejection = 'drs' needs a logit per sample, and the discriminator scores packs of {pack}",
                          hint="set sampling.rejection = 'none' with a packed discriminator")
    for name, opt in (("generator", cfg.optimizers.generator), ("discriminator", cfg.optimizers.discriminator)):
        if opt.schedule != "constant" and opt.lr == 0:
            warnings.warn(f"optimizers.{name}: a {opt.schedule} schedule of a zero learning rate does nothing",
                          RuntimeWarning, stacklevel=3)
    if t.ema_decay and t.ema_start >= t.steps:
        warnings.warn(f"training.ema_start {t.ema_start} is not below training.steps {t.steps}: "
                      "the EMA generator will only copy the generator", RuntimeWarning, stacklevel=3)


def _augment(cfg: ExperimentConfig, sample_shape: tuple[int, ...]):
    """The configured DiffAugment (None when off); images only, refused in one line otherwise."""
    augment = cfg.augment.build()
    if augment is not None:
        try:
            augment.check_shape(sample_shape)
        except ValueError as exc:
            raise ConfigError(f"augment.policy: {exc}", hint="set augment.policy = [] for non-image data") from None
    return augment


def _group(backend: Backend, cfg: ExperimentConfig) -> ProcessGroup:
    join = getattr(backend, "distributed", None)
    if join is None:
        if cfg.training.distributed == "mirrored":
            raise ConfigError(f"the {cfg.backend} backend has no data-parallel training")
        return ProcessGroup()
    return join(cfg.training.distributed, cfg.device)


def build(config: ExperimentConfig, registry: Registry | None = None, *, distributed: bool = False) -> Experiment:
    """Instantiate everything a resolved config names. With ``distributed``, join the
    launcher's process group first (what :func:`gankit.training.train` does)."""
    reg = registry or get_registry()
    cfg = config
    check_builds_on(reg, cfg)
    dataset = build_plugin(reg, "dataset", cfg.data, seed=cfg.seed)
    sample_shape = tuple(dataset.sample_shape)
    g_spec = build_architecture(reg, cfg.generator, dataset, role="generator",
                                input_shape=(cfg.latent.dim,), output_shape=sample_shape)
    d_spec = build_architecture(reg, cfg.discriminator, dataset, role="discriminator",
                                input_shape=sample_shape, output_shape=(1,))
    if tuple(g_spec.output_shape) != sample_shape:
        raise ConfigError(f"generator {cfg.generator.name!r} outputs shape {g_spec.output_shape}, the data has {sample_shape}")
    loss = build_plugin(reg, "loss", cfg.loss)
    regularizers = {r.name: build_plugin(reg, "regularizer", r) for r in cfg.regularizers}
    backend = reg.backend(cfg.backend)
    group = _group(backend, cfg) if distributed else ProcessGroup()
    check_experiment(cfg, dataset, d_spec)
    check_resources(cfg, dataset, g_spec, d_spec, group.world_size)  # threads and memory, before any weights
    t = cfg.training
    threads = choose_threads(cfg, g_spec, d_spec)
    setup = TrainSetup(
        generator=g_spec, discriminator=d_spec, loss=loss, regularizers=regularizers,
        g_optimizer=cfg.optimizers.generator.settings(), d_optimizer=cfg.optimizers.discriminator.settings(),
        latent_dim=cfg.latent.dim, latent_distribution=cfg.latent.distribution,
        batch_size=t.batch_size, n_critic=t.n_critic, seed=cfg.seed,
        device=group.device or cfg.device, compile=t.compiles_on(cfg.backend),
        initial_weights=initial_weights(g_spec, d_spec, t.init, cfg.seed),
        total_steps=t.steps, ema_decay=t.ema_decay, ema_start=t.ema_start, precision=t.precision,
        world_size=group.world_size, rank=group.rank, threads=threads.count,
        regularizer_schedules={r.name: r.weight_schedule() for r in cfg.regularizers if r.schedule != "constant"},
        augment=_augment(cfg, sample_shape),
    )
    trainer = backend.build_trainer(setup)
    return Experiment(cfg, backend, trainer, dataset, g_spec, d_spec, group, threads, reg)


def load_run(run_dir: str | Path, backend: str | None = None, registry: Registry | None = None) -> Experiment:
    """Rebuild a run's experiment from its checkpoint (on its own backend, or ``backend``):
    the networks are the manifest's specs with its weights; the config (checked against
    the installed plugins, so an unknown backend or architecture is refused in one line)
    gives the dataset to compare with."""
    from gankit.restore import rebuild  # the inference loader; it builds no Experiment

    reg = registry or get_registry()
    manifest, weights = checkpoint.load(run_dir)
    data = dict(manifest.config)
    if backend:
        data["backend"] = backend
    where = f"checkpoint {str(run_dir)!r}"
    try:
        cfg = load_config(data, registry=reg, environ={})
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc.message}", hint=exc.hint) from None
    gan = rebuild(manifest, weights, cfg.backend, device=cfg.device, registry=reg, where=where)
    dataset = build_plugin(reg, "dataset", cfg.data, seed=cfg.seed)
    made = tuple(gan.generator.shapes()[-1])
    if made != tuple(dataset.sample_shape):
        raise CheckpointError(f"{where}: its generator makes samples of shape {made}, its data "
                              f"{cfg.data.name!r} has shape {tuple(dataset.sample_shape)}",
                              hint="the data changed since the run; point data.params at the run's own data")
    return Experiment(cfg, reg.backend(cfg.backend), gan.trainer, dataset, gan.generator, gan.discriminator,
                      registry=reg)
