"""Evaluation: the configured metrics on generated samples, during training or afterwards.

* :func:`evaluate` scores a built :class:`~gankit.assembly.Experiment` (its trainer's
  generator — the EMA generator when the trainer samples from one).
* :func:`maybe_evaluate` is what the training loop calls each step: every
  ``evaluation.every`` steps (and at the last step) it appends a line to ``eval.jsonl``.
* :func:`evaluate_run` rebuilds a finished run from its checkpoint
  (:func:`gankit.assembly.load_run`) and writes ``eval.json`` (``gankit evaluate RUN_DIR``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gankit.assembly import Experiment, load_run
from gankit.budget import EvaluationPlan, MetricStep, _shapes_elements, check_evaluation
from gankit.config import PluginChoice
from gankit.errors import ConfigError, PluginError
from gankit.metrics import EvalContext, Metric
from gankit.plugins import Registry, get_registry

EVAL_FILE = "eval.json"
EVAL_LOG = "eval.jsonl"


@dataclass
class Evaluation:
    """The result of one evaluation."""

    metrics: dict[str, float]
    """Every metric's values, by key (e.g. ``fid``, ``modes_captured``)."""
    step: int
    num_samples: int
    seconds: float
    #: Metric name -> why it did not apply to this data.
    skipped: dict[str, str] = field(default_factory=dict)
    #: Which generator produced the samples: ``ema`` or ``generator``.
    generator: str = "generator"
    #: Higher is better (True), lower is better (False) or neither (None), per key.
    higher_is_better: dict[str, bool | None] = field(default_factory=dict)
    #: How the samples were drawn: ``plain`` or ``drs`` (discriminator rejection sampling).
    sampler: str = "plain"
    #: Under ``drs``: the share of generated candidates that were accepted.
    acceptance: float | None = None
    #: Samples in the dataset the reals were drawn from (None: an endless sampler). When
    #: ``num_samples`` exceeds it, the real set repeats images (drawn with replacement).
    dataset_size: int | None = None

    @property
    def reals_repeated(self) -> bool:
        """Whether the real samples repeat some of the dataset's (more asked than it holds)."""
        return self.dataset_size is not None and self.num_samples > self.dataset_size

    def reals_note(self) -> str | None:
        """One line saying the reals were repeated, or None."""
        if not self.reals_repeated:
            return None
        return (f"the dataset holds {self.dataset_size:,} samples, fewer than the {self.num_samples:,} scored: the real "
                f"set repeats some of them (drawn with replacement), which understates its variety and biases "
                f"FID, KID and precision/recall; use -n {self.dataset_size} or fewer for distinct reals")

    def to_json(self) -> dict[str, Any]:
        out = {"step": self.step, "num_samples": self.num_samples, "generator": self.generator,
               "sampler": self.sampler, "seconds": round(self.seconds, 3), "metrics": self.metrics,
               "skipped": self.skipped}
        if self.acceptance is not None:
            out["acceptance"] = round(self.acceptance, 6)
        if self.reals_repeated:
            out["reals_repeated"] = True
            out["dataset_size"] = self.dataset_size
        return out


def default_metrics(ctx: EvalContext) -> list[PluginChoice]:
    """The metrics used when the config lists none, chosen for the data."""
    if ctx.modality == "points" and "modes" in ctx.info and "std" in ctx.info:
        return [PluginChoice(name="modes"), PluginChoice(name="fid")]
    chosen = [PluginChoice(name=n) for n in ("fid", "kid", "precision_recall")]
    try:
        is_classifier = ctx.extractor("auto").num_classes is not None
    except Exception:  # the suggested extractor is unavailable; the metrics will say why
        is_classifier = False
    if is_classifier:
        chosen += [PluginChoice(name="classes"), PluginChoice(name="inception_score")]
    return chosen


def latents(n: int, dim: int, distribution: str, seed: int) -> np.ndarray:
    """Evaluation latents, drawn in numpy so that every backend scores the same generator
    on the same inputs (a torch run evaluated on tensorflow gives the same numbers)."""
    rng = np.random.default_rng([seed, 0xE7A1])
    if distribution == "uniform":
        return rng.uniform(-1.0, 1.0, (n, dim)).astype(np.float32)
    return rng.standard_normal((n, dim)).astype(np.float32)


def _classes(exp: Experiment) -> int | None:
    if not getattr(exp.generator, "conditional", False):
        return None
    classes = exp.dataset.num_classes or getattr(exp.generator, "num_classes", None)
    if not classes:
        raise ConfigError("a class-conditional generator needs a labelled dataset to be evaluated")
    return int(classes)


def generate(exp: Experiment, n: int, seed: int, batch_size: int = 1000) -> np.ndarray:
    """``n`` generated samples for evaluation, in batches, from numpy latents (and, for a
    class-conditional generator, every class in turn: ``0, 1, ..., k-1, 0, ...``).

    With ``sampling.rejection = "drs"`` the samples are those that pass discriminator
    rejection sampling (:mod:`gankit.rejection`); see :func:`rejection_generate`.
    """
    if exp.config.sampling.rejection == "drs":
        return rejection_generate(exp, n, seed, batch_size).samples
    z = latents(n, exp.config.latent.dim, exp.config.latent.distribution, seed)
    classes = _classes(exp)
    labels = None if classes is None else np.arange(n, dtype=np.int64) % classes
    # one array filled batch by batch: no second copy to concatenate, and each batch (with
    # whatever framework buffer it views) is freed before the next, not kept between them
    out = np.empty((n, *tuple(exp.generator.shapes()[-1])), np.float32)
    for s in range(0, n, batch_size):
        args = (z[s : s + batch_size],) if labels is None else (z[s : s + batch_size], labels[s : s + batch_size])
        out[s : s + batch_size] = exp.trainer.generate(*args)
    return out


def rejection_generate(exp: Experiment, n: int, seed: int, batch_size: int = 1000):
    """``n`` samples through discriminator rejection sampling with the experiment's
    generator (the EMA one when there is one) and discriminator: a
    :class:`gankit.rejection.RejectionResult` (samples, and how many candidates it took)."""
    from gankit.rejection import rejection_sample

    cfg = exp.config
    trainer = exp.trainer

    def draw(k: int, rng: np.random.Generator) -> np.ndarray:
        return latents(k, cfg.latent.dim, cfg.latent.distribution, int(rng.integers(2**31)))

    classes = _classes(exp)
    return rejection_sample(
        lambda z, y: trainer.generate(z) if y is None else trainer.generate(z, y),
        lambda x, y: trainer.discriminate(x) if y is None else trainer.discriminate(x, y),
        draw, n, percentile=cfg.sampling.drs_percentile, seed=seed, batch_size=batch_size,
        label_cycle=None if classes is None else np.arange(classes))


def _extractor_factory(registry: Registry, params_by_name: dict[str, dict[str, Any]]):
    def get(name: str):
        record = registry.get("feature_extractor", name).record
        missing = [m for m in getattr(record, "requires", ()) if importlib.util.find_spec(m) is None]
        if missing:
            raise PluginError(f"the {name} feature extractor needs {', '.join(missing)}, which is not installed",
                              hint="install it, or choose another extractor in the metric's features parameter")
        return registry.make("feature_extractor", name, record.params.model_validate(params_by_name.get(name, {})))

    return get


def _uses_ema(trainer) -> bool:
    """Whether the trainer generates with an EMA generator (``training.ema_decay > 0``)."""
    return bool(getattr(trainer, "has_ema", False))


def _width(ctx: EvalContext, name: str, probabilities: bool, sample_shape: tuple[int, ...]) -> int:
    """The width of the features (or class probabilities) of extractor ``name``; 0 when it
    cannot give them (the metric will be skipped or say why)."""
    from gankit.errors import GankitError

    try:
        extractor = ctx.extractor(name)
    except GankitError:
        return 0
    if probabilities:
        return int(extractor.num_classes or 0)
    try:  # two blank samples tell the width
        return int(np.shape(extractor.features(np.zeros((2, *sample_shape), np.float32)))[-1])
    except Exception:  # the metric will meet it, with its own message; count the samples' width
        return math.prod(sample_shape)


def memory_plan(exp: Experiment, ctx: EvalContext, metrics: list[tuple[str, Metric]],
                registry: Registry | None = None) -> EvaluationPlan:
    """What an evaluation of the experiment with these (name, metric) pairs holds per
    sample, for :func:`gankit.budget.check_evaluation`: gankit's built-in metrics by the
    features they read and what their numpy code builds; another metric by its samples."""
    from gankit.plugins import BUILTIN_DISTRIBUTION

    reg = registry or get_registry()
    shape = tuple(exp.dataset.sample_shape)
    steps = []
    for name, metric in metrics:
        params = metric.params
        reads: tuple[tuple[str, int], ...] = ()
        kwargs: dict[str, Any] = {}
        builtin = reg.get("metric", name).distribution == BUILTIN_DISTRIBUTION
        if builtin and name in ("fid", "kid", "precision_recall"):
            extractor = ctx.extractor_name(getattr(params, "features", "auto"))
            width = _width(ctx, extractor, False, shape)
            reads = ((f"{extractor}/real", width), (f"{extractor}/fake", width))
            kwargs = {"subset_size": getattr(params, "subset_size", 1000)} if name == "kid" else {}
        elif builtin and name in ("inception_score", "classes"):
            extractor = ctx.extractor_name(getattr(params, "classifier", "auto"))
            reads = ((f"{extractor}/fake/probabilities", _width(ctx, extractor, True, shape)),)
            kwargs = {"splits": getattr(params, "splits", 10)} if name == "inception_score" else {}
        elif builtin and name == "modes":
            kwargs = {"modes": len(ctx.info.get("modes", ())), "sample": math.prod(shape)}
        steps.append(MetricStep(name, reads, builtin, kwargs))
    return EvaluationPlan(sample=math.prod(shape), latent=exp.config.latent.dim,
                          generator_activations=_shapes_elements(exp.generator), metrics=tuple(steps))


def check_memory(exp: Experiment, *, num_samples: int | None = None, metrics: list[PluginChoice] | None = None,
                 registry: Registry | None = None,
                 what: str = "evaluation.num_samples") -> tuple[EvalContext, list[tuple[str, Metric]]]:
    """Build the evaluation's metrics (the configured or given ones) and refuse, in one line,
    a number of samples whose evaluation cannot fit in memory; returns the (still empty)
    context and the metrics. :func:`evaluate` calls it before it draws any sample, and a
    training run before its first step, so that an evaluation too large for the machine
    is refused before any training is spent."""
    reg = registry or get_registry()
    cfg = exp.config
    n = num_samples or cfg.evaluation.num_samples
    blank = np.zeros((0, *tuple(exp.dataset.sample_shape)), np.float32)  # the samples come after the check
    ctx = EvalContext(fake=blank, real=blank, modality=exp.dataset.modality, info=dict(exp.dataset.info),
                      seed=cfg.seed, get_extractor=_extractor_factory(reg, cfg.evaluation.features))
    chosen = metrics if metrics is not None else (list(cfg.evaluation.metrics) or default_metrics(ctx))
    built: list[tuple[str, Metric]] = []
    for choice in chosen:
        record = reg.get("metric", choice.name).record
        built.append((choice.name, reg.make("metric", choice.name, record.params.model_validate(choice.params))))
    check_evaluation(memory_plan(exp, ctx, built, reg), n, what)
    return ctx, built


def evaluate(exp: Experiment, *, num_samples: int | None = None, metrics: list[PluginChoice] | None = None,
             step: int | None = None, registry: Registry | None = None,
             what: str = "evaluation.num_samples") -> Evaluation:
    """Score the experiment's generator with the configured (or given) metrics.

    Before it draws any sample it refuses, in one line, a number of samples whose
    evaluation cannot fit in memory (:func:`gankit.budget.check_evaluation`; ``what``
    names the setting in that message)."""
    reg = registry or get_registry()
    cfg = exp.config
    n = num_samples or cfg.evaluation.num_samples
    start = time.perf_counter()
    ctx, built = check_memory(exp, num_samples=n, metrics=metrics, registry=reg, what=what)
    acceptance = None
    if cfg.sampling.rejection == "drs":
        drawn = rejection_generate(exp, n, seed=cfg.seed)
        fake, acceptance = drawn.samples, drawn.acceptance
    else:
        fake = generate(exp, n, seed=cfg.seed)
    ctx.fake = fake
    ctx.real = np.asarray(exp.dataset.sample(n, seed=cfg.seed), dtype=np.float32)
    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    better: dict[str, bool | None] = {}
    for name, metric in built:
        reason = metric.applies(ctx)
        if reason:
            skipped[name] = reason
            continue
        values.update({k: float(v) for k, v in metric(ctx).items()})
        better.update(metric.meta.keys)
    return Evaluation(metrics=values, step=exp.trainer.step_count if step is None else step, num_samples=n,
                      seconds=time.perf_counter() - start, skipped=skipped,
                      generator="ema" if _uses_ema(exp.trainer) else "generator", higher_is_better=better,
                      sampler=cfg.sampling.rejection if cfg.sampling.rejection != "none" else "plain",
                      acceptance=acceptance, dataset_size=_dataset_size(exp.dataset))


def _dataset_size(dataset) -> int | None:
    """How many distinct samples a dataset holds (None for an endless sampler)."""
    try:
        return int(len(dataset))
    except TypeError:
        return None


def maybe_evaluate(exp: Experiment, step: int, directory: Path, board=None) -> Evaluation | None:
    """During training: evaluate every ``evaluation.every`` steps and at the last step,
    appending to ``eval.jsonl`` (and to ``board.scalars(step, {...})``, the TensorBoard
    writer, as ``eval/<key>``); otherwise do nothing."""
    every = exp.config.evaluation.every
    if not every or (step % every and step != exp.config.training.steps):
        return None
    result = evaluate(exp, step=step)
    with (Path(directory) / EVAL_LOG).open("a") as fh:
        fh.write(json.dumps(result.to_json()) + "\n")
    if board is not None:
        board.scalars(step, {f"eval/{k}": v for k, v in result.metrics.items()})
    return result


def evaluate_run(run_dir: str | Path, *, num_samples: int | None = None, metrics: list[str] | None = None,
                 backend: str | None = None, out: str | Path | None = None,
                 registry: Registry | None = None) -> tuple[Evaluation, Path]:
    """``gankit evaluate RUN_DIR``: rebuild from the checkpoint, evaluate, write ``eval.json``."""
    reg = registry or get_registry()
    exp = load_run(run_dir, backend=backend, registry=reg)
    choices = None
    if metrics:
        for name in metrics:
            if not reg.has("metric", name):
                raise ConfigError(f"unknown metric {name!r}; available: {', '.join(reg.names('metric'))}")
        configured = {m.name: m for m in exp.config.evaluation.metrics}
        choices = [configured.get(name, PluginChoice(name=name)) for name in metrics]
    result = evaluate(exp, num_samples=num_samples, metrics=choices, registry=reg,
                      what="--num-samples" if num_samples else "evaluation.num_samples")
    path = Path(out) if out else (Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent) / EVAL_FILE
    if not result.metrics and result.skipped:  # nothing measured: no empty eval.json over a good one
        reasons = "; ".join(f"{name}: {why}" for name, why in result.skipped.items())
        raise ConfigError(f"no metric applies to this run ({reasons}); {str(path)!r} is left as it was",
                          hint="choose metrics that apply (`gankit plugins --kind metric`)")
    payload = {**result.to_json(), "backend": exp.backend.name, "run": str(run_dir),
               "higher_is_better": result.higher_is_better}
    try:
        from gankit.checkpoint import atomic_write

        atomic_write(path, (json.dumps(payload, indent=2) + "\n").encode())
    except OSError as exc:
        raise ConfigError(f"cannot write {str(path)!r} ({exc.strerror or exc})", hint="choose another path with --out") from None
    return result, path
