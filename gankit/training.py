"""The training driver: a neutral loop around a backend's compiled step.

``train(config)`` resolves the plugins, builds the trainer on the configured backend,
feeds ``n_critic`` real batches per step, logs to ``metrics.jsonl``, saves pictures and
a final checkpoint into the run directory, and returns a :class:`Run`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gankit import checkpoint, evaluation, plotting
from gankit.config import ExperimentConfig, load_config
from gankit.data import Dataset
from gankit.errors import ConfigError, TrainingError
from gankit.init import initial_weights
from gankit.nets import NetSpec
from gankit.plugins import Registry, get_registry
from gankit.protocol import Backend, Trainer, TrainSetup


@dataclass
class Experiment:
    """A resolved config turned into objects: backend, trainer, dataset, specs."""

    config: ExperimentConfig
    backend: Backend
    trainer: Trainer
    dataset: Dataset
    generator: NetSpec
    discriminator: NetSpec


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


def _build_plugin(registry: Registry, kind: str, choice, **kwargs):
    record = registry.get(kind, choice.name).record
    return record.factory(record.params.model_validate(choice.params), **kwargs)


def build(config: ExperimentConfig, registry: Registry | None = None) -> Experiment:
    """Instantiate everything a resolved config names."""
    reg = registry or get_registry()
    cfg = config
    dataset = _build_plugin(reg, "dataset", cfg.data, seed=cfg.seed)
    if hasattr(dataset, "__len__") and cfg.training.batch_size > len(dataset):
        raise ConfigError(
            f"training.batch_size {cfg.training.batch_size} is larger than the dataset ({len(dataset)} samples)",
            hint="lower training.batch_size",
        )
    sample_shape = tuple(dataset.sample_shape)
    g_spec = _build_plugin(reg, "architecture", cfg.generator, role="generator",
                           input_shape=(cfg.latent.dim,), output_shape=sample_shape)
    d_spec = _build_plugin(reg, "architecture", cfg.discriminator, role="discriminator",
                           input_shape=sample_shape, output_shape=(1,))
    if tuple(g_spec.output_shape) != sample_shape:
        raise ConfigError(f"generator {cfg.generator.name!r} outputs shape {g_spec.output_shape}, the data has {sample_shape}")
    loss = _build_plugin(reg, "loss", cfg.loss)
    regularizers = {r.name: _build_plugin(reg, "regularizer", r) for r in cfg.regularizers}
    backend = reg.backend(cfg.backend)
    setup = TrainSetup(
        generator=g_spec, discriminator=d_spec, loss=loss, regularizers=regularizers,
        g_optimizer=cfg.optimizers.generator.settings(), d_optimizer=cfg.optimizers.discriminator.settings(),
        latent_dim=cfg.latent.dim, latent_distribution=cfg.latent.distribution,
        batch_size=cfg.training.batch_size, n_critic=cfg.training.n_critic, seed=cfg.seed,
        device=cfg.device, compile=cfg.training.compile,
        initial_weights=initial_weights(g_spec, d_spec, cfg.training.init, cfg.seed),
    )
    trainer = backend.build_trainer(setup)
    return Experiment(cfg, backend, trainer, dataset, g_spec, d_spec)


def _run_directory(cfg: ExperimentConfig, backend: str, create: bool = True) -> Path:
    parent = Path(cfg.output.dir)
    if cfg.output.name:
        path = parent / cfg.output.name
        if path.exists() and any(path.iterdir()) and not cfg.output.overwrite:
            raise ConfigError(f"run directory {str(path)!r} already exists and is not empty",
                              hint="choose another output.name, or set output.overwrite=true")
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


def save_samples(exp: Experiment, path: Path, n: int, step: int) -> Path:
    fake = exp.trainer.sample(n, seed=exp.config.seed)
    if exp.dataset.modality == "points" and fake.ndim == 2 and fake.shape[1] == 2:
        real = exp.dataset.sample(n, seed=exp.config.seed)
        return plotting.scatter(path, fake, real, title=f"{exp.config.name} · {exp.config.backend} · step {step}")
    if exp.dataset.modality == "images":
        return plotting.image_grid(path, fake[:64])
    return path


def save_checkpoint(exp: Experiment, directory: Path, step: int) -> Path:
    from gankit import __version__

    versions = {"gankit": __version__, exp.backend.name: exp.backend.version()}
    return checkpoint.save(
        directory / "checkpoint", exp.trainer.state_dict(), step=step, backend=exp.backend.name,
        versions=versions, generator=exp.generator, discriminator=exp.discriminator,
        config=exp.config.model_dump(mode="json"),
    )


def _progress(enabled: bool, total: int):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]step {task.completed}/{task.total}"), BarColumn(),
        TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )


def train(
    config=None,
    *,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    registry: Registry | None = None,
    progress: bool = False,
) -> Run:
    """Train a GAN. ``config`` is a path, dict, :class:`ExperimentConfig` or ``None``
    (the ``preset``, by default ``ring8``). Returns the finished :class:`Run`."""
    cfg = load_config(config, preset=preset, overrides=overrides, registry=registry)
    _run_directory(cfg, cfg.backend, create=False)  # refuse a taken directory before any work
    exp = build(cfg, registry)
    t = cfg.training
    directory = _run_directory(cfg, exp.backend.name)
    (directory / "config.json").write_text(cfg.model_dump_json(indent=2))
    metrics_path = directory / "metrics.jsonl"
    batches = exp.dataset.batches(t.batch_size, cfg.seed)
    logged: list[dict] = []
    last: dict[str, float] = {}
    files: dict[str, Path] = {"config": directory / "config.json", "metrics": metrics_path}
    start = time.perf_counter()
    with metrics_path.open("w") as log, _progress(progress, t.steps) as bar:
        task = bar.add_task("train", total=t.steps, losses="", rate="")
        for step in range(1, t.steps + 1):
            real = np.stack([next(batches) for _ in range(t.n_critic)])
            result = exp.trainer.train_step(real)
            if step % t.log_every == 0 or step == t.steps:
                scalars = result.scalars()
                if not all(math.isfinite(v) for v in scalars.values()):
                    bad = ", ".join(k for k, v in scalars.items() if not math.isfinite(v))
                    raise TrainingError(
                        f"training diverged at step {step}: {bad} is not finite",
                        hint="lower the learning rates, add a gradient penalty, or change the loss",
                    )
                elapsed = time.perf_counter() - start
                record = {"step": step, **scalars, "time": round(elapsed, 4)}
                log.write(json.dumps(record) + "\n")
                log.flush()
                logged.append(record)
                last = scalars
                bar.update(task, losses=f"D {scalars['d_loss']:.4f}  G {scalars['g_loss']:.4f}",
                           rate=f"{step / max(elapsed, 1e-9):.0f} steps/s")
            if t.sample_every and step % t.sample_every == 0 and step != t.steps:
                save_samples(exp, directory / f"samples_{step:06d}.png", t.num_samples, step)
            if t.checkpoint_every and step % t.checkpoint_every == 0:
                save_checkpoint(exp, directory, step)
            evaluation.maybe_evaluate(exp, step, directory)  # every evaluation.every steps -> eval.jsonl
            bar.update(task, advance=1)
    seconds = time.perf_counter() - start
    files["samples_png"] = save_samples(exp, directory / "samples.png", t.num_samples, t.steps)
    samples = exp.trainer.sample(t.num_samples, seed=cfg.seed)
    np.save(directory / "samples.npy", samples, allow_pickle=False)
    files["samples_npy"] = directory / "samples.npy"
    if logged:
        files["loss_curves"] = plotting.loss_curves(directory / "losses.png", logged)
    ckpt = save_checkpoint(exp, directory, t.steps)
    files["checkpoint"] = ckpt
    summary = {"steps": t.steps, "seconds": round(seconds, 3), "steps_per_second": round(t.steps / seconds, 2),
               "backend": exp.backend.name, "device": exp.trainer.device, **last}
    (directory / "summary.json").write_text(json.dumps(summary, indent=2))
    return Run(directory=directory, config=cfg, backend=exp.backend.name, device=exp.trainer.device,
               steps=t.steps, metrics=last, seconds=seconds, checkpoint=ckpt, trainer=exp.trainer, files=files)
