"""The training loop: a neutral driver around a backend's compiled step.

``train(config)`` assembles the experiment (:func:`gankit.assembly.build`: plugins, specs,
setup, trainer; a config that cannot fit is refused before any work starts) and feeds the
trainer ``n_critic`` real batches per step (:mod:`gankit.streaming`, prepared ahead by a
background thread). This module keeps the loop itself: the run directory, logging,
pictures, the checkpoint cadence, stop signals and the final phase. Into the run directory go
``metrics.jsonl``, TensorBoard event files, sample pictures from a fixed latent batch,
periodic resumable checkpoints (the last ``checkpoint_keep``), and at the end the final
checkpoint, samples and a loss-curve plot. ``train(resume=RUN_DIR)`` continues an
interrupted run from its newest checkpoint, exactly where it stopped: weights, EMA,
optimizer state, random streams and the position in the data stream are restored.

Under a launcher (torchrun, TF_CONFIG) every process runs this loop on its share of each
global batch; only rank 0 writes files.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gankit import checkpoint, evaluation, mode_history, plotting, plugins
from gankit.assembly import Experiment, build
from gankit.config import BACKEND_ENV, ExperimentConfig, check_output_dir, load_config, read_config_file
from gankit.errors import CheckpointError, ConfigError, TrainingError, TrainingInterrupted
from gankit.monitor import (TENSORBOARD_DIR, MetricsLog, Progress, TensorBoard, format_metrics, keep_until,
                            progress_bars_allowed, step_line)
from gankit.plugins import Registry
from gankit.runlock import LOCK_FILE, RunLock
from gankit.streaming import Prefetcher, indexed, step_batches

#: Generated samples in each picture's grid (images) — the scatter plots use num_samples.
GRID_SAMPLES = 64
#: A class-conditional run's picture: this many samples of each of the first this-many classes.
CLASS_ROWS = 10
#: Written last: a run directory with it holds every final artifact.
SUMMARY_FILE = "summary.json"
#: The clock of checkpoints by time (a test can make minutes pass).
_clock = time.monotonic


@dataclass
class Run:
    """The result of :func:`train`."""

    directory: Path
    config: ExperimentConfig
    backend: str
    device: str
    steps: int
    metrics: dict[str, float]
    """The last logged scalars (d_loss, g_loss, extras) and the last step's evaluation
    results (fid, modes_captured, ...; when evaluation.every is set)."""
    seconds: float
    checkpoint: Path
    trainer: Any = field(repr=False, default=None)
    files: dict[str, Path] = field(default_factory=dict)
    resumed_from: int = 0
    """The step this session started from (0 unless resumed)."""
    rank: int = 0
    world_size: int = 1
    evaluation: Any = None
    """The last step's :class:`~gankit.evaluation.Evaluation` (None unless evaluation.every is set)."""
    threads: int | None = None
    """The framework's CPU threads (training.threads, or the default chosen at start)."""

    def generator(self):
        """The trained sampling generator as the backend framework's own object (a
        ``torch.nn.Module``, a ``tf.Module``, a jax function with its params): see
        :func:`gankit.export.generator`."""
        from gankit.export import generator

        return generator(self)

    def report(self) -> list[str]:
        """The lines that end a run's output: what was trained, the evaluation, where things are."""
        m = self.metrics
        procs = f", {self.world_size} processes" if self.world_size > 1 else ""
        if self.resumed_from == self.steps:
            lines = [f"completed the final checkpoint, samples and summary of step {self.steps} on {self.backend} "
                     f"({self.device}{procs})"]
        else:
            since = f" (resumed at step {self.resumed_from})" if self.resumed_from else ""
            lines = [f"trained {self.steps} steps{since} on {self.backend} ({self.device}{procs}) in {self.seconds:.1f}s: "
                     f"d_loss {m.get('d_loss', float('nan')):.4f}, g_loss {m.get('g_loss', float('nan')):.4f}"]
        if self.evaluation is not None:
            lines.append(f"evaluation at step {self.evaluation.step} ({self.evaluation.num_samples} samples): "
                         f"{format_metrics(self.evaluation.metrics)}")
        pictures = [str(self.files[k]) for k in ("samples_png", "loss_curves") if k in self.files]
        if pictures:
            lines.append(f"pictures: {', '.join(pictures)}")
        lines.append(f"run directory: {self.directory}")
        return lines


def _run_directory(cfg: ExperimentConfig, backend: str, create: bool = True, check: bool = True) -> Path:
    check_output_dir(cfg.output)  # a file, or a folder this user cannot write: one line, before any work
    parent = Path(cfg.output.dir)
    if cfg.output.name:
        path = parent / cfg.output.name
        if check and path.exists() and any(p.name != LOCK_FILE for p in path.iterdir()) and not cfg.output.overwrite:
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
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"run directory {str(path)!r} cannot be created ({exc.strerror or exc})",
                              hint="set output.dir to a folder you can write") from None
    return path


# -- pictures, checkpoints -----------------------------------------------------------
def fixed_latents(cfg: ExperimentConfig, n: int) -> np.ndarray:
    """The latent batch every progress picture of a run is drawn from (seeded, numpy, so
    pictures compare across steps and backends)."""
    rng = np.random.default_rng([cfg.seed, 0xF1ED])
    if cfg.latent.distribution == "uniform":
        return rng.uniform(-1.0, 1.0, (n, cfg.latent.dim)).astype(np.float32)
    return rng.standard_normal((n, cfg.latent.dim)).astype(np.float32)


def save_samples(exp: Experiment, path: Path, n: int, step: int, z: np.ndarray | None = None) -> Path:
    """A picture of generated samples (the EMA generator's when there is one), for data of
    any shape: an image grid for images, a scatter over the real data for points (of more
    than 2 coordinates: the first two), histograms for 1-D data. ``z``: the latents to use."""
    classes = exp.dataset.num_classes if exp.generator.conditional and exp.dataset.modality == "images" else None
    if classes:  # a class-conditional image generator: one row per class (the first 10), 10 columns
        rows = min(classes, CLASS_ROWS)
        z = fixed_latents(exp.config, rows * CLASS_ROWS)
        fake = np.asarray(exp.trainer.generate(z, np.repeat(np.arange(rows), CLASS_ROWS)))
        return plotting.image_grid(path, fake, columns=CLASS_ROWS)
    if z is None:
        z = fixed_latents(exp.config, n if exp.dataset.modality == "points" else min(n, GRID_SAMPLES))
    fake = np.asarray(exp.trainer.generate(z))
    if exp.dataset.modality == "images" and fake.ndim in (3, 4):
        if fake.ndim == 4 and fake.shape[1] not in (1, 3) and fake.shape[-1] not in (1, 3):
            fake = fake[:, 0]  # neither grey nor RGB: the first channel, in grey
        return plotting.image_grid(path, fake[:GRID_SAMPLES])
    fake = fake.reshape(len(fake), -1)
    real = np.asarray(exp.dataset.sample(len(z), seed=exp.config.seed)).reshape(len(z), -1)
    title = f"{exp.config.name} · {exp.config.backend} · step {step}"
    if fake.shape[1] == 1:
        return plotting.histogram(path, fake, real, title=title)
    if fake.shape[1] > 2:
        title += f" · coordinates 1-2 of {fake.shape[1]}"
    return plotting.scatter(path, fake[:, :2], real[:, :2], title=title)


def _draw(what: str, draw, *args, **kwargs) -> Path | None:
    """Draw a picture; a failure is a warning, never the run's end (its checkpoint and
    summary are written either way)."""
    try:
        return draw(*args, **kwargs)
    except Exception as exc:  # matplotlib, PIL, a plugin's odd data: the run's results are safe
        warnings.warn(f"could not draw {what}: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
        return None


def _non_finite(arrays: dict[str, np.ndarray]) -> str | None:
    """The first float array holding a NaN or an infinity (integer arrays, e.g. random
    states and step counts, cannot)."""
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            return key
    return None


_OWNERS = {"g_optimizer": "generator optimizer", "d_optimizer": "discriminator optimizer"}


def _check_finite_state(weights: dict[str, np.ndarray], optimizer: dict[str, np.ndarray] | None, step: int) -> None:
    """A checkpoint is written only when every weight and optimizer slot is finite: an Adam
    second moment that overflowed to inf makes the checkpoint as useless as a NaN weight."""
    bad = _non_finite(weights)
    what = "weights"
    if bad is None and optimizer:
        bad, what = _non_finite(optimizer), "optimizer state"
    if bad is None:
        return
    owner = bad.partition(".")[0]
    net = _OWNERS.get(owner, owner.replace("_", " ")).removesuffix(" optimizer")
    verb = "are" if what == "weights" else "is"
    raise TrainingError(f"training diverged by step {step}: the {net} {what} {verb} not finite ({bad})",
                        hint="the last good checkpoint was kept; lower the learning rates or add a penalty")


def save_checkpoint(exp: Experiment, directory: Path, step: int, *, base: Path | None = None,
                    resumable: bool = True) -> Path:
    """Write a checkpoint of the trainer at ``step`` (``directory/checkpoint`` unless
    ``base``), with the optimizer and random state when ``resumable``; returns its
    manifest. Non-finite weights or optimizer state are refused, so the last good
    checkpoint survives."""
    from gankit import __version__

    weights = exp.trainer.state_dict()
    opt_state = rng_state = None
    if resumable and hasattr(exp.trainer, "optimizer_state") and hasattr(exp.trainer, "rng_state"):
        opt_state, rng_state = exp.trainer.optimizer_state(), exp.trainer.rng_state()
    _check_finite_state(weights, opt_state, step)
    versions = {"gankit": __version__, exp.backend.name: exp.backend.version()}
    return checkpoint.save(
        base or directory / "checkpoint", weights, step=step, backend=exp.backend.name,
        versions=versions, generator=exp.generator, discriminator=exp.discriminator,
        config=exp.config.model_dump(mode="json"), optimizer_state=opt_state, rng_state=rng_state,
        data_batches=step * exp.config.training.n_critic,
    )


def check_same_specs(manifest, exp: Experiment, where: str) -> None:
    """Refuse to continue a checkpoint whose networks (the manifest's specs) differ from
    the ones the run's config builds here (an architecture plugin changed, or --set
    changed the nets): its weights belong to the manifest's networks."""
    for role in ("generator", "discriminator"):
        differs = checkpoint.net_difference(getattr(manifest, role), getattr(exp, role))
        if differs:
            raise CheckpointError(f"{where}: its {role} is not the {role} the run's config builds now ({differs}); "
                                  "the weights belong to the checkpoint's networks",
                                  hint="resume with the run's own architecture settings and plugin versions")


def resume_from(exp: Experiment, manifest_path: Path) -> int:
    """Load a resumable checkpoint into ``exp``'s trainer to continue training: weights,
    optimizer and random state, step count; returns its step. (Loading a checkpoint for
    inference is :func:`gankit.restore.load_checkpoint`.)"""
    manifest, weights = checkpoint.load(manifest_path, resume=True)
    opt_state, rng_state = checkpoint.load_state(manifest_path, manifest)
    if manifest.state.rng_backend != exp.backend.name:
        raise CheckpointError(f"checkpoint {str(manifest_path)!r} was written by the {manifest.state.rng_backend} "
                              f"backend; resuming continues on the backend that trained it",
                              hint=f"resume with backend={manifest.state.rng_backend}")
    if manifest.state.data_batches != manifest.step * exp.config.training.n_critic:
        raise CheckpointError(f"checkpoint {str(manifest_path)!r} consumed {manifest.state.data_batches} batches "
                              f"in {manifest.step} steps, which does not match n_critic = {exp.config.training.n_critic}",
                              hint="resume with the run's own training.n_critic")
    check_same_specs(manifest, exp, str(manifest_path))
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


def _restart_hint(directory: Path) -> str:
    return (f"start it again from its config: gankit train {directory / 'config.json'} -s output.overwrite=true "
            "(or -s output.name=NEW for another directory)")


def _what_is_kept(directory: Path, latest: Path | None) -> tuple[str, str]:
    """After a failed run: what its directory still holds, and how to go on from there."""
    if latest is None:
        return "no checkpoint was written", "then " + _restart_hint(directory)
    return f"the last checkpoint is {latest}", f"then continue with: gankit train --resume {directory}"


_OS_REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied"}


def _file_failure(exc: OSError, directory: Path) -> TrainingError:
    """A file the run reads or writes failed (a full disk, a read-only file system, a file
    replaced by a directory): one line naming it, and what the run directory still holds."""
    reason = _OS_REASONS.get(exc.errno) or exc.strerror or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    try:
        latest = checkpoint.latest(directory)
    except (OSError, ValueError, CheckpointError):
        latest = None
    kept, then = _what_is_kept(directory, latest)
    if exc.errno in _OS_REASONS:
        fix = "free disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else f"make {directory} writable"
    else:
        fix = f"repair or remove {exc.filename or 'the file'}"
    return TrainingError(f"run directory {str(directory)!r}: {reason}{where}; {kept}", hint=f"{fix}, {then}")


def _shown(value) -> str:
    """A setting for a message: a table as JSON, a value as its repr."""
    return json.dumps(value.model_dump(mode="json")) if hasattr(value, "model_dump") else repr(value)


def _resume_identity(before: ExperimentConfig, after: ExperimentConfig, run_dir: Path) -> None:
    """--resume continues the same experiment: the settings that make it that experiment
    (its data, seed, latent, batch size, loss and optimizers) cannot change, else the run
    would silently become another one (its optimizer state dropped, its data swapped)."""
    changed = []
    for key, old, new in (
        ("data", before.data, after.data), ("seed", before.seed, after.seed), ("latent", before.latent, after.latent),
        ("training.batch_size", before.training.batch_size, after.training.batch_size),
        ("loss", before.loss, after.loss),
        ("optimizers.generator.name", before.optimizers.generator.name, after.optimizers.generator.name),
        ("optimizers.discriminator.name", before.optimizers.discriminator.name, after.optimizers.discriminator.name),
    ):
        if old != new:
            changed.append(f"{key} {_shown(old)} -> {_shown(new)}")
    if changed:
        raise ConfigError(f"--resume continues the same run and cannot change {'; '.join(changed)}",
                          hint=f"train a new run with other settings: gankit train {run_dir / 'config.json'} "
                               "-s output.name=NEW -s KEY=VALUE")


# -- the loop ------------------------------------------------------------------------
def _resume_config(run_dir: Path, overrides, registry) -> ExperimentConfig:
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run directory (no config.json)",
                          hint="--resume takes the directory a previous `gankit train` wrote")
    moved = [item.partition("=")[0].strip() for item in overrides
             if item.partition("=")[0].strip() in ("output", "output.dir", "output.name")]
    if moved:
        raise ConfigError(f"--resume continues in the run's own directory {str(run_dir)!r}; {moved[0]} cannot be set",
                          hint="to continue a copy elsewhere, copy the run directory and resume the copy")
    env_backend = os.environ.get(BACKEND_ENV, "").strip()
    data = read_config_file(path)
    if env_backend and env_backend != data.get("backend") and not any(
            item.partition("=")[0].strip() == "backend" for item in overrides):
        warnings.warn(f"{BACKEND_ENV}={env_backend} is not used by --resume: the run goes on on its own backend "
                      f"{data.get('backend')!r}, the one that trained it", RuntimeWarning, stacklevel=2)
    data["output"] = {**data.get("output", {}), "dir": str(run_dir.parent), "name": run_dir.name, "overwrite": True}
    cfg = load_config(data, overrides=overrides, registry=registry, environ={})
    if overrides:
        _resume_identity(load_config(data, registry=registry, environ={}), cfg, run_dir)
    return cfg


class _StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM while the loop runs: remembered, so that the loop saves
    a checkpoint after the current step and stops. A second signal acts at once (its
    previous handler is back). Only in the main thread of a single-process run."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        self.received = signum
        self._reinstate_handlers()

    def _reinstate_handlers(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    def __enter__(self) -> "_StopSignals":
        if self.enabled:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._reinstate_handlers()


def _finished(directory: Path, steps: int) -> bool:
    """Whether a run directory holds every final artifact of a run of ``steps`` steps: the
    final checkpoint and summary.json (written last)."""
    try:
        summary = json.loads((directory / SUMMARY_FILE).read_text())
        final = json.loads((directory / "checkpoint.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.get("steps") == steps and final.get("step") == steps


def _clear_previous_run(directory: Path) -> None:
    """A new run in a reused directory (output.overwrite): the old run's checkpoints, summary
    and evaluations go first, so that --resume, pruning and eval.jsonl see only this run's,
    and so do its other artifacts (sample pictures, the modes strip's frames, TensorBoard
    events, samples, loss curves), so that nothing of the old run is mixed into the new
    one's pictures and curves. Only files a run writes are removed; others are left."""
    for manifest in checkpoint.periodic(directory):
        manifest.unlink(missing_ok=True)
    for name in ("checkpoint.json", SUMMARY_FILE, evaluation.EVAL_LOG, "samples.npy", "samples.png", "losses.png",
                 mode_history.STRIP_FILE, mode_history.COUNTS_FILE):
        (directory / name).unlink(missing_ok=True)
    for path in directory.glob("samples_*.png"):
        if path.stem.removeprefix("samples_").isdigit():
            path.unlink(missing_ok=True)
    for path in (directory / TENSORBOARD_DIR).glob("events.out.tfevents.*"):
        path.unlink(missing_ok=True)
    mode_history.drop_frames(directory, after=0)
    checkpoint.clean_partial(directory)  # the data files whose manifests just went


def _write_json(path: Path, data: dict) -> Path:
    return checkpoint.atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def _save_npy(path: Path, array: np.ndarray) -> Path:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return checkpoint.atomic_write(path, buffer.getvalue())


def _last_scalars(records: list[dict]) -> dict[str, float]:
    """The scalars of the last metrics.jsonl record (what the loop calls ``last``)."""
    if not records:
        return {}
    return {k: v for k, v in records[-1].items() if k not in ("step", "time") and not k.startswith("lr_")}


def train(
    config=None,
    *,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    registry: Registry | None = None,
    progress: bool = False,
    resume: str | Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> Run:
    """Train a GAN. ``config`` is a path, dict, :class:`ExperimentConfig` or ``None``
    (the ``preset``, by default ``mnist``). ``resume`` continues the run directory of an
    interrupted (or finished, with more ``training.steps``) run from its newest
    checkpoint, or completes the final checkpoint, samples and summary of a run stopped
    after its last step; ``overrides`` then apply on top of that run's config. ``resume``
    may also be one checkpoint of a run directory (``RUN/checkpoints/step_N.json``): the
    run continues from exactly that one, and what the run wrote after its step (later
    checkpoints, log lines) is dropped, as after a crash.

    ``progress`` shows a progress bar on stderr. ``echo`` receives the run's lines as they
    happen (``print`` them, or log them): a start banner (run directory, backend, device,
    threads, steps), without a progress bar one line every ``log_every`` steps, and at the
    end the evaluation results and where the pictures are. SIGINT and SIGTERM save a
    checkpoint and raise :class:`~gankit.errors.TrainingInterrupted`. Returns the :class:`Run`."""
    with progress_bars_allowed(progress):  # a plugin's own slow work (a dataset's check) shows a bar only then
        return _train(config, preset, overrides, registry, progress, resume, echo)


def _train(config, preset, overrides, registry, progress, resume, echo) -> Run:
    say = echo or (lambda line: None)
    if resume is not None:
        if config is not None or preset is not None:
            raise ConfigError("--resume continues a run with its own config; give no config file or preset",
                              hint="change settings with --set KEY=VALUE")
        run_dir, chosen = checkpoint.resume_target(resume)
        cfg = _resume_config(run_dir, overrides, registry)
        if chosen is None and checkpoint.latest(run_dir) is None:
            raise CheckpointError(f"run directory {str(run_dir)!r} holds no checkpoint to resume from",
                                  hint=_restart_hint(run_dir) + "; runs save a checkpoint every "
                                       "training.checkpoint_every steps and training.checkpoint_minutes")
    else:
        cfg, chosen = load_config(config, preset=preset, overrides=overrides, registry=registry), None
        _run_directory(cfg, cfg.backend, create=False)  # refuse a taken directory before any work
    exp = build(cfg, registry, distributed=True)
    group, t = exp.group, cfg.training
    main = group.is_main
    if main and cfg.evaluation.every:  # an evaluation too large for the machine: refused before any step
        evaluation.check_memory(exp)
    # Only rank 0 creates (and had checked) the directory; the others just name it.
    directory = run_dir if resume is not None else _run_directory(cfg, exp.backend.name, create=main, check=main)
    lock = RunLock(directory).acquire() if main else None  # one run per directory, before any write
    try:
        return _train_locked(exp, directory, resume is not None, progress and main, say if main else (lambda line: None),
                             chosen)
    except OSError as exc:  # a full disk, a read-only or damaged run directory: the user's to fix
        raise _file_failure(exc, directory) from None
    finally:
        if lock is not None:
            lock.release()


def _train_locked(exp: Experiment, directory: Path, resuming: bool, progress: bool, say,
                  chosen: Path | None = None) -> Run:
    cfg, group, t, trainer = exp.config, exp.group, exp.config.training, exp.trainer
    main = group.is_main
    if main:
        if resuming:
            for path in checkpoint.clean_partial(directory):
                say(f"removed {path}, left by an interrupted checkpoint write")
        else:
            _clear_previous_run(directory)
    group.barrier()
    manifest_path = (chosen or checkpoint.latest(directory)) if resuming else None
    if resuming and manifest_path is None:
        raise CheckpointError(f"run directory {str(directory)!r} holds no checkpoint to resume from",
                              hint=_restart_hint(directory))
    start_step = resume_from(exp, manifest_path) if manifest_path is not None else 0
    completing = start_step == t.steps and not _finished(directory, t.steps)
    if start_step >= t.steps and not completing:
        raise ConfigError(f"the run already reached step {start_step} of training.steps = {t.steps}",
                          hint=f"resume with --set training.steps=N for N > {start_step} to train further")
    files: dict[str, Path] = {"config": directory / "config.json", "metrics": directory / "metrics.jsonl"}
    if main:
        _write_json(directory / "config.json", json.loads(cfg.model_dump_json()))
        if resuming:  # checkpoints, evaluations, mode frames and sample pictures after the checkpoint are made again
            for path in checkpoint.discard_after(directory, start_step):
                say(f"removed {path}, a checkpoint after step {start_step}, the one this run continues from")
            keep_until(directory / evaluation.EVAL_LOG, start_step - 1 if completing else start_step)
            mode_history.drop_frames(directory, after=start_step)
    log = MetricsLog(files["metrics"] if main else None, resume_step=start_step)
    board = TensorBoard(directory / TENSORBOARD_DIR if (main and t.tensorboard) else None,
                        purge_step=start_step + 1 if start_step else None)
    z_fixed = fixed_latents(cfg, t.num_samples if exp.dataset.modality == "points" else min(t.num_samples, GRID_SAMPLES))
    labelled = exp.generator.conditional or exp.discriminator.conditional  # class-conditional GAN
    batches = Prefetcher(step_batches(exp.dataset, t.batch_size, t.n_critic, cfg.seed, start_step=start_step,
                                      rank=group.rank, world_size=group.world_size, labels=labelled),
                         0 if indexed(exp.dataset, labelled) else t.prefetch)  # in memory: a thread costs more
    where = f"completing the final checkpoint, samples and summary of step {t.steps}" if completing else (
        f"steps {start_step + 1}-{t.steps}" if start_step else f"{t.steps} steps")
    say(f"{'resuming' if resuming else 'training'} {cfg.name} on {exp.backend.name}, {trainer.device}, "
        f"{exp.threads}: {where}; run directory {directory}")
    last: dict[str, float] = _last_scalars(log.records)
    last_good: Path | None = manifest_path
    start = time.perf_counter()
    last_save = _clock()
    by_time = cfg.training.checkpoint_minutes * 60 if group.world_size == 1 else 0.0
    step = start_step
    try:
        with Progress(progress, t.steps, completed=start_step) as bar, _StopSignals(group.world_size == 1) as stop:
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
                        if not bar.enabled:
                            say(step_line(step, t.steps, last, since_step=start_step,
                                          seconds=time.perf_counter() - start))
                    bar.advance(step, last)
                else:
                    bar.advance(step)
                if t.sample_every and step % t.sample_every == 0 and step != t.steps and main:
                    picture = _draw(f"samples_{step:06d}.png", save_samples, exp,
                                    directory / f"samples_{step:06d}.png", t.num_samples, step, z_fixed)
                    if picture is not None:
                        board.image("samples", step, picture)
                    if mode_history.applies(exp):  # 2-D points: a frame of the modes strip
                        mode_history.record(exp, directory, step, z_fixed)
                by_steps = bool(t.checkpoint_every) and step % t.checkpoint_every == 0
                due = (by_steps or step == t.steps or stop.received is not None
                       or (by_time and _clock() - last_save >= by_time))
                if due and main:  # the last step always gets one: the final phase may be cut short
                    last_good = save_checkpoint(exp, directory, step, base=checkpoint.periodic_base(directory, step))
                    checkpoint.prune(directory, t.checkpoint_keep)
                    last_save = _clock()
                if by_steps:
                    group.barrier()
                if stop.received is not None:
                    name = signal.Signals(stop.received).name
                    raise TrainingInterrupted(
                        f"{name} at step {step} of {t.steps}: saved {last_good}",
                        hint=f"continue with: gankit train --resume {directory}", signum=stop.received)
                if main and step != t.steps:  # the last step's evaluation follows the final checkpoint
                    evaluation.maybe_evaluate(exp, step, directory, board)  # every evaluation.every steps -> eval.jsonl
        seconds = time.perf_counter() - start
        ckpt, result = directory / "checkpoint.json", None
        if main:
            ckpt, result = _finish(exp, directory, files, log, board, z_fixed)
            done = t.steps - start_step
            summary = {"steps": t.steps, "resumed_from": start_step, "seconds": round(seconds, 3),
                       "steps_per_second": round(done / seconds, 2) if done and seconds > 0 else None,
                       "backend": exp.backend.name, "device": trainer.device, "processes": group.world_size,
                       "threads": exp.threads.count if exp.threads else None, **last,
                       "evaluation": result.to_json() if result is not None else None,
                       "pictures": {k: str(v) for k, v in files.items() if k in _PICTURES}}
            files["summary"] = _write_json(directory / SUMMARY_FILE, summary)  # last: the run is complete
        group.barrier()
    except Exception as exc:  # a third-party plugin's own code failed mid-run: name it; the checkpoints stay
        kept, then = _what_is_kept(directory, last_good)
        failure = plugins.plugin_failure(exc, exp.registry, during=f"at step {step}", hint=f"{kept}; once fixed, {then}")
        if failure is None:
            raise
        raise failure from exc
    finally:
        batches.close()
        log.close()
        board.close()
    metrics = {**last, **(result.metrics if result is not None else {})}
    run = Run(directory=directory, config=cfg, backend=exp.backend.name, device=trainer.device,
              steps=t.steps, metrics=metrics, seconds=seconds, checkpoint=ckpt, trainer=trainer, files=files,
              resumed_from=start_step, rank=group.rank, world_size=group.world_size, evaluation=result,
              threads=exp.threads.count if exp.threads else None)
    for line in run.report():
        say(line)
    return run


_PICTURES = ("samples_png", "loss_curves", "modes_strip")


def _finish(exp: Experiment, directory: Path, files: dict[str, Path], log: MetricsLog, board: TensorBoard,
            z_fixed: np.ndarray):
    """The final phase, in the order that loses least to a kill or a failure: the final
    checkpoint, the samples, the last step's evaluation, then the pictures (a picture that
    cannot be drawn is a warning). The caller writes summary.json last."""
    cfg, t, trainer = exp.config, exp.config.training, exp.trainer
    files["checkpoint"] = save_checkpoint(exp, directory, t.steps)
    files["samples_npy"] = _save_npy(directory / "samples.npy", trainer.sample(t.num_samples, seed=cfg.seed))
    result = evaluation.maybe_evaluate(exp, t.steps, directory, board)
    picture = _draw("samples.png", save_samples, exp, directory / "samples.png", t.num_samples, t.steps, z_fixed)
    if picture is not None:
        files["samples_png"] = picture
        _draw("the samples in TensorBoard", board.image, "samples", t.steps, picture)
    if t.sample_every and mode_history.applies(exp):  # the modes over training, as one strip
        mode_history.record(exp, directory, t.steps, z_fixed)
        strip = _draw(mode_history.STRIP_FILE, mode_history.write_strip, exp, directory)
        if strip is not None:
            files["modes_strip"] = strip
    if log.records:
        curves = _draw("losses.png", plotting.loss_curves, directory / "losses.png", log.records)
        if curves is not None:
            files["loss_curves"] = curves
    if t.tensorboard:
        files["tensorboard"] = directory / TENSORBOARD_DIR
    return files["checkpoint"], result
