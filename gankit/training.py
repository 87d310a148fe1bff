"""The training driver: a neutral loop around a backend's compiled step.

``train(config)`` resolves the plugins, refuses a config that cannot fit before any work
starts, builds the trainer on the configured backend and feeds it ``n_critic`` real
batches per step (prepared ahead by a background thread). Into the run directory go
``metrics.jsonl``, TensorBoard event files, sample pictures from a fixed latent batch,
periodic resumable checkpoints (the last ``checkpoint_keep``), and at the end the final
checkpoint, samples and a loss-curve plot. ``train(resume=RUN_DIR)`` continues an
interrupted run from its newest checkpoint, exactly where it stopped: weights, EMA,
optimizer state, random streams and the position in the data stream are restored.

Under a launcher (torchrun, TF_CONFIG) every process runs this loop on its share of each
global batch; only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from gankit import checkpoint, evaluation, plotting
from gankit.config import ExperimentConfig, load_config, read_config_file
from gankit.data import ArrayDataset, Dataset, epoch_orders
from gankit.errors import CheckpointError, ConfigError, TrainingError
from gankit.init import initial_weights
from gankit.monitor import TENSORBOARD_DIR, MetricsLog, Progress, TensorBoard
from gankit.native import not_built_on, switch_hint
from gankit.nets import NetSpec
from gankit.plugins import Registry, get_registry
from gankit.protocol import Backend, ProcessGroup, Trainer, TrainSetup

#: Generated samples in each picture's grid (images) — the scatter plots use num_samples.
GRID_SAMPLES = 64


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


@dataclass
class Run:
    """The result of :func:`train`."""

    directory: Path
    config: ExperimentConfig
    backend: str
    device: str
    steps: int
    metrics: dict[str, float]
    """The last logged scalars (d_loss, g_loss, extras)."""
    seconds: float
    checkpoint: Path
    trainer: Any = field(repr=False, default=None)
    files: dict[str, Path] = field(default_factory=dict)
    resumed_from: int = 0
    """The step this session started from (0 unless resumed)."""
    rank: int = 0
    world_size: int = 1


def _build_plugin(registry: Registry, kind: str, choice, **kwargs):
    record = registry.get(kind, choice.name).record
    return record.factory(record.params.model_validate(choice.params), **kwargs)


def _build_architecture(registry: Registry, choice, dataset: Dataset, **kwargs) -> NetSpec:
    """An architecture's spec; a class-conditional one also gets the data's class count."""
    record = registry.get("architecture", choice.name).record
    if getattr(record, "conditional", False):
        if getattr(dataset, "num_classes", None) is None:
            raise ConfigError(f"architecture {choice.name!r} is class-conditional but the data has no labels",
                              hint="choose a labelled dataset, or an unconditional architecture")
        kwargs["num_classes"] = dataset.num_classes
    return record.factory(record.params.model_validate(choice.params), **kwargs)


def check_builds_on(registry: Registry, cfg: ExperimentConfig) -> None:
    """Refuse, in one line, an architecture that the configured backend cannot build (a
    native architecture of another backend), before any work starts."""
    for role in ("generator", "discriminator"):
        name = getattr(cfg, role).name
        record = registry.get("architecture", name).record
        if not record.builds_on(cfg.backend):
            reason = not_built_on(name, record.backends, cfg.backend, native=record.native is not None)
            raise ConfigError(f"{role}.name: {reason}", hint=switch_hint(record.backends))


def check_fits(cfg: ExperimentConfig, dataset: Dataset, g_spec: NetSpec, d_spec: NetSpec, world_size: int = 1) -> None:
    """Refuse, with one line each, a config that cannot train (before any work starts)."""
    t = cfg.training
    size = len(dataset) if hasattr(dataset, "__len__") else None
    if size is not None and t.batch_size > size:
        raise ConfigError(f"training.batch_size {t.batch_size} is larger than the dataset ({size} samples)",
                          hint="lower training.batch_size")
    if t.n_critic < 1:
        raise ConfigError(f"training.n_critic must be at least 1, got {t.n_critic}")
    if t.batch_size % world_size:
        raise ConfigError(f"training.batch_size {t.batch_size} does not divide among {world_size} processes",
                          hint=f"use a multiple of {world_size}: batch_size is the global batch")
    per_process = t.batch_size // world_size
    has_bn = any(layer.kind == "batch_norm" for spec in (g_spec, d_spec) for layer in spec.layers)
    if has_bn and per_process < 2:
        raise ConfigError(f"batch norm needs at least 2 samples per batch, each process gets {per_process}",
                          hint="raise training.batch_size")
    if t.precision == "float16" and cfg.device == "cpu":
        raise ConfigError("training.precision float16 needs a GPU (loss scaling on CUDA)",
                          hint="use bfloat16 on the cpu, or float32")
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
    launcher's process group first (what :func:`train` does)."""
    reg = registry or get_registry()
    cfg = config
    check_builds_on(reg, cfg)
    dataset = _build_plugin(reg, "dataset", cfg.data, seed=cfg.seed)
    sample_shape = tuple(dataset.sample_shape)
    g_spec = _build_architecture(reg, cfg.generator, dataset, role="generator",
                                 input_shape=(cfg.latent.dim,), output_shape=sample_shape)
    d_spec = _build_architecture(reg, cfg.discriminator, dataset, role="discriminator",
                                 input_shape=sample_shape, output_shape=(1,))
    if tuple(g_spec.output_shape) != sample_shape:
        raise ConfigError(f"generator {cfg.generator.name!r} outputs shape {g_spec.output_shape}, the data has {sample_shape}")
    loss = _build_plugin(reg, "loss", cfg.loss)
    regularizers = {r.name: _build_plugin(reg, "regularizer", r) for r in cfg.regularizers}
    backend = reg.backend(cfg.backend)
    group = _group(backend, cfg) if distributed else ProcessGroup()
    check_fits(cfg, dataset, g_spec, d_spec, group.world_size)
    t = cfg.training
    setup = TrainSetup(
        generator=g_spec, discriminator=d_spec, loss=loss, regularizers=regularizers,
        g_optimizer=cfg.optimizers.generator.settings(), d_optimizer=cfg.optimizers.discriminator.settings(),
        latent_dim=cfg.latent.dim, latent_distribution=cfg.latent.distribution,
        batch_size=t.batch_size, n_critic=t.n_critic, seed=cfg.seed,
        device=group.device or cfg.device, compile=t.compile,
        initial_weights=initial_weights(g_spec, d_spec, t.init, cfg.seed),
        total_steps=t.steps, ema_decay=t.ema_decay, ema_start=t.ema_start, precision=t.precision,
        world_size=group.world_size, rank=group.rank, threads=t.threads,
        regularizer_schedules={r.name: r.weight_schedule() for r in cfg.regularizers if r.schedule != "constant"},
        augment=_augment(cfg, sample_shape),
    )
    trainer = backend.build_trainer(setup)
    return Experiment(cfg, backend, trainer, dataset, g_spec, d_spec, group)


def _run_directory(cfg: ExperimentConfig, backend: str, create: bool = True, check: bool = True) -> Path:
    parent = Path(cfg.output.dir)
    if cfg.output.name:
        path = parent / cfg.output.name
        if check and path.exists() and any(path.iterdir()) and not cfg.output.overwrite:
            raise ConfigError(f"run directory {str(path)!r} already exists and is not empty",
                              hint="choose another output.name, set output.overwrite=true, or continue it with --resume")
    else:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        path = parent / f"{cfg.name}-{backend}-{stamp}"
        i = 1
        while path.exists():
            i += 1
            path = parent / f"{cfg.name}-{backend}-{stamp}-{i}"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


# -- data ----------------------------------------------------------------------------
def batch_stream(dataset: Dataset, batch_size: int, seed: int, skip: int = 0,
                 labels: bool = False) -> Iterator[np.ndarray]:
    """The dataset's batches from position ``skip`` on, as an uninterrupted run would see
    them. An :class:`ArrayDataset` skips by index (no copies); other datasets draw and
    drop ``skip`` batches. With ``labels``, ``(x, y)`` pairs (class-conditional GANs)."""
    if type(dataset).batches is ArrayDataset.batches and (not labels or dataset.labels is not None):
        orders = epoch_orders(len(dataset), batch_size, seed)
        for _ in range(skip):
            next(orders)
        if labels:
            return ((dataset.array[idx], dataset.labels[idx]) for idx in orders)
        return (dataset.array[idx] for idx in orders)
    stream = dataset.labelled_batches(batch_size, seed) if labels else dataset.batches(batch_size, seed)
    for _ in range(skip):
        next(stream)
    return stream


def step_batches(dataset: Dataset, batch_size: int, n_critic: int, seed: int, *, start_step: int = 0,
                 rank: int = 0, world_size: int = 1, labels: bool = False) -> Iterator[np.ndarray]:
    """What each step trains on: ``(n_critic, batch_size // world_size, *sample_shape)``,
    this process's rows of the next ``n_critic`` global batches, from step ``start_step`` on.
    With ``labels``: ``(batches, labels)``, labels of shape ``(n_critic, batch_size // world_size)``."""
    stream = batch_stream(dataset, batch_size, seed, skip=start_step * n_critic, labels=labels)
    share = batch_size // world_size
    lo, hi = rank * share, (rank + 1) * share
    while True:
        if labels:
            pairs = [next(stream) for _ in range(n_critic)]
            yield np.stack([x[lo:hi] for x, _ in pairs]), np.stack([y[lo:hi] for _, y in pairs])
        else:
            yield np.stack([next(stream)[lo:hi] for _ in range(n_critic)])


class Prefetcher:
    """Runs an iterator in a background thread, ``depth`` items ahead (0: inline)."""

    _END = object()

    def __init__(self, source: Iterator, depth: int):
        self.source, self.depth = source, depth
        self.error: BaseException | None = None
        if depth <= 0:
            return
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._fill, name="gankit-prefetch", daemon=True)
        self.thread.start()

    def _fill(self) -> None:
        try:
            for item in self.source:
                while not self.stop.is_set():
                    try:
                        self.queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
        except BaseException as exc:  # surfaced in the training thread
            self.error = exc
        self.queue.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        if self.depth <= 0:
            return next(self.source)
        item = self.queue.get()
        if item is self._END:
            if self.error is not None:
                raise self.error
            raise StopIteration
        return item

    def close(self) -> None:
        if self.depth > 0:
            self.stop.set()
            self.thread.join(timeout=5)


# -- pictures, checkpoints -----------------------------------------------------------
def fixed_latents(cfg: ExperimentConfig, n: int) -> np.ndarray:
    """The latent batch every progress picture of a run is drawn from (seeded, numpy, so
    pictures compare across steps and backends)."""
    rng = np.random.default_rng([cfg.seed, 0xF1ED])
    if cfg.latent.distribution == "uniform":
        return rng.uniform(-1.0, 1.0, (n, cfg.latent.dim)).astype(np.float32)
    return rng.standard_normal((n, cfg.latent.dim)).astype(np.float32)


def save_samples(exp: Experiment, path: Path, n: int, step: int, z: np.ndarray | None = None) -> Path:
    """A picture of generated samples (the EMA generator's when there is one): a scatter
    over the real data for 2D points, a grid for images. ``z``: the latents to use."""
    if z is None:
        z = fixed_latents(exp.config, n if exp.dataset.modality == "points" else min(n, GRID_SAMPLES))
    fake = exp.trainer.generate(z)
    if exp.dataset.modality == "points" and fake.ndim == 2 and fake.shape[1] == 2:
        real = exp.dataset.sample(len(z), seed=exp.config.seed)
        return plotting.scatter(path, fake, real, title=f"{exp.config.name} · {exp.config.backend} · step {step}")
    if exp.dataset.modality == "images":
        return plotting.image_grid(path, fake[:GRID_SAMPLES])
    return path


def _check_finite_weights(weights: dict[str, np.ndarray], step: int) -> None:
    bad = [k for k, v in weights.items() if not np.all(np.isfinite(v))]
    if bad:
        net = bad[0].partition(".")[0].replace("_", " ")
        raise TrainingError(f"training diverged by step {step}: the {net} weights are not finite ({bad[0]})",
                            hint="the last good checkpoint was kept; lower the learning rates or add a penalty")


def save_checkpoint(exp: Experiment, directory: Path, step: int, *, base: Path | None = None,
                    resumable: bool = True) -> Path:
    """Write a checkpoint of the trainer at ``step`` (``directory/checkpoint`` unless
    ``base``), with the optimizer and random state when ``resumable``; returns its
    manifest. Non-finite weights are refused, so the last good checkpoint survives."""
    from gankit import __version__

    weights = exp.trainer.state_dict()
    _check_finite_weights(weights, step)
    opt_state = rng_state = None
    if resumable and hasattr(exp.trainer, "optimizer_state") and hasattr(exp.trainer, "rng_state"):
        opt_state, rng_state = exp.trainer.optimizer_state(), exp.trainer.rng_state()
    versions = {"gankit": __version__, exp.backend.name: exp.backend.version()}
    return checkpoint.save(
        base or directory / "checkpoint", weights, step=step, backend=exp.backend.name,
        versions=versions, generator=exp.generator, discriminator=exp.discriminator,
        config=exp.config.model_dump(mode="json"), optimizer_state=opt_state, rng_state=rng_state,
        data_batches=step * exp.config.training.n_critic,
    )


def restore(exp: Experiment, manifest_path: Path) -> int:
    """Load a resumable checkpoint into ``exp``'s trainer; returns its step."""
    manifest, weights = checkpoint.load(manifest_path)
    opt_state, rng_state = checkpoint.load_state(manifest_path, manifest)
    if manifest.state.rng_backend != exp.backend.name:
        raise CheckpointError(f"checkpoint {str(manifest_path)!r} was written by the {manifest.state.rng_backend} "
                              f"backend; resuming continues on the backend that trained it",
                              hint=f"resume with backend={manifest.state.rng_backend}")
    if manifest.state.data_batches != manifest.step * exp.config.training.n_critic:
        raise CheckpointError(f"checkpoint {str(manifest_path)!r} consumed {manifest.state.data_batches} batches "
                              f"in {manifest.step} steps, which does not match n_critic = {exp.config.training.n_critic}",
                              hint="resume with the run's own training.n_critic")
    exp.trainer.load_state_dict(weights)
    exp.trainer.load_optimizer_state(opt_state)
    exp.trainer.load_rng_state(rng_state)
    exp.trainer.step_count = manifest.step
    return manifest.step


_NETWORK_OF = {"d_loss": "the discriminator loss", "g_loss": "the generator loss"}


def _diverged(step: int, scalars: dict[str, float], last_good: Path | None) -> TrainingError:
    bad = [k for k, v in scalars.items() if not math.isfinite(v)]
    what = ", ".join(_NETWORK_OF.get(k, f"the discriminator's {k[len('penalty_'):]} penalty" if k.startswith("penalty_") else k)
                     + f" ({k} = {scalars[k]})" for k in bad)
    kept = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written before it"
    return TrainingError(f"training diverged at step {step}: {what} is not finite; {kept}",
                         hint="lower the learning rates, clip gradients, add a gradient penalty, or change the loss")


# -- the loop ------------------------------------------------------------------------
def _resume_config(run_dir: Path, overrides, registry) -> ExperimentConfig:
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory (no config.json)",
                          hint="--resume takes the directory a previous `gankit train` wrote")
    data = read_config_file(path)
    data["output"] = {**data.get("output", {}), "dir": str(run_dir.parent), "name": run_dir.name, "overwrite": True}
    return load_config(data, overrides=overrides, registry=registry, environ={})


def train(
    config=None,
    *,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    registry: Registry | None = None,
    progress: bool = False,
    resume: str | Path | None = None,
) -> Run:
    """Train a GAN. ``config`` is a path, dict, :class:`ExperimentConfig` or ``None``
    (the ``preset``, by default ``mnist``). ``resume`` continues the run directory of an
    interrupted (or finished, with more ``training.steps``) run from its newest
    checkpoint; ``overrides`` then apply on top of that run's config. Returns the :class:`Run`."""
    if resume is not None:
        if config is not None or preset is not None:
            raise ConfigError("--resume continues a run with its own config; give no config file or preset",
                              hint="change settings with --set KEY=VALUE")
        run_dir = Path(resume)
        cfg = _resume_config(run_dir, overrides, registry)
        manifest_path = checkpoint.latest(run_dir)
        if manifest_path is None:
            raise CheckpointError(f"run directory {str(run_dir)!r} holds no checkpoint to resume from",
                                  hint="set training.checkpoint_every so runs write periodic checkpoints")
    else:
        cfg = load_config(config, preset=preset, overrides=overrides, registry=registry)
        _run_directory(cfg, cfg.backend, create=False)  # refuse a taken directory before any work
        manifest_path = None
    exp = build(cfg, registry, distributed=True)
    group, t = exp.group, cfg.training
    start_step = restore(exp, manifest_path) if manifest_path is not None else 0
    if start_step >= t.steps:
        raise ConfigError(f"the run already reached step {start_step} of training.steps = {t.steps}",
                          hint=f"resume with --set training.steps=N for N > {start_step} to train further")
    main = group.is_main
    # Only rank 0 creates (and had checked) the directory; the others just name it.
    directory = run_dir if resume is not None else _run_directory(cfg, exp.backend.name, create=main, check=main)
    files: dict[str, Path] = {"config": directory / "config.json", "metrics": directory / "metrics.jsonl"}
    if main:
        (directory / "config.json").write_text(cfg.model_dump_json(indent=2))
    log = MetricsLog(files["metrics"] if main else None, resume_step=start_step)
    board = TensorBoard(directory / TENSORBOARD_DIR if (main and t.tensorboard) else None,
                        purge_step=start_step + 1 if start_step else None)
    z_fixed = fixed_latents(cfg, t.num_samples if exp.dataset.modality == "points" else min(t.num_samples, GRID_SAMPLES))
    labelled = exp.generator.conditional or exp.discriminator.conditional  # class-conditional GAN
    batches = Prefetcher(step_batches(exp.dataset, t.batch_size, t.n_critic, cfg.seed, start_step=start_step,
                                      rank=group.rank, world_size=group.world_size, labels=labelled), t.prefetch)
    last: dict[str, float] = {}
    last_good: Path | None = manifest_path
    trainer = exp.trainer
    start = time.perf_counter()
    try:
        with Progress(progress and main, t.steps, completed=start_step) as bar:
            for step in range(start_step + 1, t.steps + 1):
                batch = next(batches)
                result = trainer.train_step(*batch) if labelled else trainer.train_step(batch)
                if not result.is_finite():  # every step: the scalars are on the host already
                    raise _diverged(step, result.scalars(), last_good)
                logged = step % t.log_every == 0 or step == t.steps
                if logged:
                    last = result.scalars()
                    if main:
                        lrs = trainer.learning_rates() if hasattr(trainer, "learning_rates") else {}
                        record = {"step": step, **last, **{f"lr_{k[0]}": v for k, v in lrs.items()},
                                  "time": round(time.perf_counter() - start, 4)}
                        log.write(record)
                        board.scalars(step, {k: v for k, v in record.items() if k not in ("step", "time")})
                    bar.advance(step, last)
                else:
                    bar.advance(step)
                if t.sample_every and step % t.sample_every == 0 and step != t.steps and main:
                    picture = save_samples(exp, directory / f"samples_{step:06d}.png", t.num_samples, step, z_fixed)
                    board.image("samples", step, picture)
                if t.checkpoint_every and step % t.checkpoint_every == 0:
                    if main:
                        last_good = save_checkpoint(exp, directory, step, base=checkpoint.periodic_base(directory, step))
                        checkpoint.prune(directory, t.checkpoint_keep)
                    group.barrier()
                if main:
                    evaluation.maybe_evaluate(exp, step, directory, board)  # every evaluation.every steps -> eval.jsonl
        seconds = time.perf_counter() - start
        ckpt = directory / "checkpoint.json"
        if main:
            files["samples_png"] = save_samples(exp, directory / "samples.png", t.num_samples, t.steps, z_fixed)
            board.image("samples", t.steps, files["samples_png"])
            samples = trainer.sample(t.num_samples, seed=cfg.seed)
            np.save(directory / "samples.npy", samples, allow_pickle=False)
            files["samples_npy"] = directory / "samples.npy"
            if log.records:
                files["loss_curves"] = plotting.loss_curves(directory / "losses.png", log.records)
            ckpt = save_checkpoint(exp, directory, t.steps)
            files["checkpoint"] = ckpt
            if t.tensorboard:
                files["tensorboard"] = directory / TENSORBOARD_DIR
            done = t.steps - start_step
            summary = {"steps": t.steps, "resumed_from": start_step, "seconds": round(seconds, 3),
                       "steps_per_second": round(done / seconds, 2), "backend": exp.backend.name,
                       "device": trainer.device, "processes": group.world_size, **last}
            (directory / "summary.json").write_text(json.dumps(summary, indent=2))
        group.barrier()
    finally:
        batches.close()
        log.close()
        board.close()
    return Run(directory=directory, config=cfg, backend=exp.backend.name, device=trainer.device,
               steps=t.steps, metrics=last, seconds=seconds, checkpoint=ckpt, trainer=trainer, files=files,
               resumed_from=start_step, rank=group.rank, world_size=group.world_size)
