"""Up-front resource checks: refuse, in one line, a run that cannot fit this machine
before a backend builds anything.

:func:`check_resources` runs after the dataset and the net specs exist and before any
weights are made. It bounds ``training.threads`` by the machine's CPUs and estimates the
memory a training run needs from the specs, the batch and the run's sampling, refusing
one that cannot fit in this machine's memory with the estimate and what to lower.

The estimate is deliberately simple and on the low side (it counts what must exist, not
a framework's workspace), so that a refused run could never have run, while a run near
the limit is still tried:

* parameters: each net's weights and buffers, 4 bytes each (float32), times 4 for a
  trained parameter (weight, gradient, two Adam moments), plus the EMA generator;
* activations: one training step keeps every layer's output for the backward pass, for
  the generator's batch and the discriminator's real and fake batches (per process),
  and as much again for their gradients;
* data: the ``n_critic`` real batches of a step, for each batch the prefetcher holds;
* samples: the final ``training.num_samples`` (and ``evaluation.num_samples``) samples,
  generated in one pass: the generator's activations for that many samples.

:func:`check_evaluation` does the same for one evaluation of ``n`` samples
(:func:`gankit.evaluation.evaluate` calls it before it draws any), with an
:class:`EvaluationPlan`: the generated and real samples and the latents, the features
(float64) the metrics read, cached for the whole evaluation, and the largest working
memory of the metric running at the peak — the copies and matrices its numpy code
builds, which for precision/recall (``n`` x 1024 distance blocks), the mode metrics
(``n`` x modes) and FID (a centred copy of the features) grow with ``n`` (see
:func:`metric_bytes`). Like the training estimate it counts what must exist at the same
time, not a framework's own memory or the allocator's slack.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from gankit.errors import ConfigError

#: training.threads may be at most this many times the usable CPUs.
THREADS_PER_CPU = 4
#: Bytes of one float32.
FLOAT_BYTES = 4
#: Copies of each trained parameter: weight, gradient and Adam's two moments.
COPIES_PER_PARAMETER = 4
#: Environment variable that sets the memory budget in bytes (default: this machine's RAM).
MEMORY_ENV = "GANKIT_MEMORY_LIMIT"


def max_threads(cpus: int | None = None) -> int:
    """The most CPU threads a run may ask for on this machine."""
    if cpus is None:
        from gankit.threads import usable_cpus

        cpus = usable_cpus()
    return THREADS_PER_CPU * max(1, cpus)


def check_threads(threads: int | None, cpus: int | None = None) -> None:
    """Refuse a ``training.threads`` far beyond the machine (thousands of threads hang or
    crash the frameworks' thread pools)."""
    if threads is None:
        return
    if cpus is None:
        from gankit.threads import usable_cpus

        cpus = usable_cpus()
    limit = max_threads(cpus)
    if threads > limit:
        raise ConfigError(f"training.threads = {threads} is more than this machine can use: it has {cpus} usable "
                          f"CPU{'s' if cpus != 1 else ''}, so at most {limit} threads",
                          hint=f"set training.threads to {min(cpus, limit)} or fewer, or leave it unset to let gankit choose")


def memory_limit() -> int | None:
    """The memory a run may use, in bytes: ``GANKIT_MEMORY_LIMIT`` if set, else this
    machine's physical memory (None where it cannot be read)."""
    value = os.environ.get(MEMORY_ENV, "").strip()
    if value:
        try:
            limit = float(value)
        except ValueError:
            limit = float("nan")
        if not (limit > 0 and math.isfinite(limit)):
            raise ConfigError(f"{MEMORY_ENV}={value!r} is not a positive number of bytes",
                              hint="e.g. 8e9, or unset it") from None
        return int(limit)
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _shapes_elements(spec) -> int:
    """Elements of every layer output (nested ones included) of one sample's forward pass."""
    walk = list(spec.walk())
    if not walk:  # a native net (a plugin's own model): its input and output only
        return sum(math.prod(s) for s in spec.shapes())
    return sum(math.prod(shape) for _, _, shape in walk) + math.prod(spec.shapes()[-1])


def _state_elements(spec) -> tuple[int, int]:
    params = sum(math.prod(s) for s in spec.parameter_shapes().values())
    buffers = sum(math.prod(s) for s in spec.buffer_shapes().values())
    return params, buffers


@dataclass(frozen=True)
class Estimate:
    """Bytes a training run needs, by part."""

    parameters: int
    activations: int
    data: int
    samples: int

    @property
    def total(self) -> int:
        return self.parameters + self.activations + self.data + self.samples

    def largest(self) -> str:
        parts = {"parameters": self.parameters, "activations": self.activations, "data": self.data,
                 "samples": self.samples}
        return max(parts, key=parts.get)


def estimate(cfg, sample_shape, g_spec, d_spec, world_size: int = 1) -> Estimate:
    """The memory one process of a training run needs (see the module docstring)."""
    t = cfg.training
    g_params, g_buffers = _state_elements(g_spec)
    d_params, d_buffers = _state_elements(d_spec)
    ema = g_params + g_buffers if t.ema_decay else 0
    parameters = FLOAT_BYTES * (COPIES_PER_PARAMETER * (g_params + d_params) + g_buffers + d_buffers + ema)
    g_act, d_act = _shapes_elements(g_spec), _shapes_elements(d_spec)
    batch = max(1, t.batch_size // max(1, world_size))
    # Forward outputs kept for backward and as much again for their gradients: G's batch,
    # D on a real and a fake batch.
    activations = FLOAT_BYTES * 2 * batch * (g_act + 2 * d_act)
    sample = math.prod(sample_shape)
    data = FLOAT_BYTES * (t.prefetch + 1) * t.n_critic * batch * sample
    evaluation = cfg.evaluation.num_samples if cfg.evaluation.every else 0
    # Generated in one pass; evaluation generates in batches of 1000, and holds as many real samples.
    samples = FLOAT_BYTES * max(t.num_samples * (g_act + sample),
                                min(evaluation, 1000) * g_act + 2 * evaluation * sample)
    return Estimate(int(parameters), int(activations), int(data), int(samples))


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


_FIX = {
    "parameters": "make the nets smaller (layer widths, base channels, latent.dim)",
    "activations": "lower training.batch_size, or make the nets smaller",
    "data": "lower training.batch_size, training.n_critic or training.prefetch",
    "samples": "lower training.num_samples (and evaluation.num_samples)",
}


def check_memory(cfg, sample_shape, g_spec, d_spec, world_size: int = 1, limit: int | None = None) -> Estimate:
    """Refuse a run whose estimated memory exceeds the machine's (or ``limit`` bytes)."""
    est = estimate(cfg, sample_shape, g_spec, d_spec, world_size)
    limit = memory_limit() if limit is None else limit
    if limit is not None and est.total > limit:
        parts = ", ".join(f"{k} {_gb(getattr(est, k))}" for k in ("parameters", "activations", "data", "samples")
                          if getattr(est, k) >= 0.01 * est.total)
        raise ConfigError(f"this run needs at least {_gb(est.total)} of memory ({parts}) and this machine has "
                          f"{_gb(limit)}", hint=f"{_FIX[est.largest()]}; {MEMORY_ENV} sets the limit in bytes")
    return est


def check_resources(cfg, dataset, g_spec, d_spec, world_size: int = 1) -> Estimate:
    """Every up-front check of this module: threads, then memory."""
    check_threads(cfg.training.threads)
    return check_memory(cfg, tuple(dataset.sample_shape), g_spec, d_spec, world_size)


def check_samples(n: int, g_spec, what: str = "the number of samples", batch: int | None = None) -> int:
    """Refuse generating ``n`` samples (in one pass, or ``batch`` at a time) that cannot fit
    in memory: the samples themselves and the generator's activations."""
    per_sample = math.prod(g_spec.shapes()[-1])
    act = _shapes_elements(g_spec)
    need = FLOAT_BYTES * (n * per_sample + min(n, batch or n) * act)
    limit = memory_limit()
    if limit is not None and need > limit:
        raise ConfigError(f"{what} = {n:,} needs at least {_gb(need)} of memory and this machine has {_gb(limit)}",
                          hint=f"ask for fewer samples; {MEMORY_ENV} sets the limit in bytes")
    return need


# -- evaluation --------------------------------------------------------------------------
#: Bytes of one float64 (features, distances: gankit.metrics computes in float64).
FLOAT64_BYTES = 8
#: Rows of the distance blocks gankit.metrics' k-NN code computes at a time.
DISTANCE_CHUNK = 1024
#: Samples generated per batch in an evaluation.
EVAL_BATCH = 1000


def metric_bytes(name: str, n: int, width: int = 0, *, subset_size: int = 1000, splits: int = 10,
                 modes: int = 0, sample: int = 0) -> int:
    """Working memory of gankit's built-in metric ``name`` on ``n`` generated and ``n``
    real samples, beyond the samples and the features it reads (``width`` wide; the
    classes, for the classifier metrics): the copies and matrices its numpy code builds
    (see :mod:`gankit.metrics`). 0 for another metric (its working memory is not known)."""
    b = FLOAT64_BYTES
    if name == "fid":  # np.cov's centred copy of one set; the d x d covariances and their square roots
        return b * (n * width + 6 * width**2)
    if name == "kid":  # 3 kernel matrices of a subset, the 2 subsets, an index draw
        m = min(subset_size, n)
        return b * (3 * m * m + 2 * m * width + n)
    if name == "precision_recall":  # 3 distance blocks of 1024 x n at once, the radii
        return b * (3 * min(n, DISTANCE_CHUNK) * n + 2 * n)
    if name == "modes":  # the generated samples in float64, 2 n x modes distance matrices, the nearest modes
        return b * (n * sample + 2 * n * modes + 3 * n)
    if name == "inception_score":  # a split's logs and products
        return b * 4 * -(-n // max(1, splits)) * width
    if name == "classes":  # each sample's class and confidence
        return b * 2 * n
    return 0


@dataclass(frozen=True)
class EvaluationEstimate:
    """Bytes one evaluation of ``n`` samples needs at its peak, by part."""

    samples: int
    """The generated and real samples (and, while generating, the latents)."""
    features: int
    """The features the metrics read, cached for the rest of the evaluation."""
    metrics: int
    """The working memory of the step at the peak: a metric's copies and matrices."""

    @property
    def total(self) -> int:
        return self.samples + self.features + self.metrics

    def parts(self) -> str:
        return ", ".join(f"{k} {_gb(getattr(self, k))}" for k in ("samples", "features", "metrics")
                         if getattr(self, k) >= 0.01 * self.total)


@dataclass(frozen=True)
class MetricStep:
    """One metric of an evaluation, as :class:`EvaluationPlan` counts it."""

    name: str
    reads: tuple[tuple[str, int], ...] = ()
    """The feature arrays it reads (a key naming extractor and set, and the width): the
    first metric to read one computes it, and it stays cached."""
    builtin: bool = False
    """gankit's own metric, whose working memory :func:`metric_bytes` knows."""
    params: dict = field(default_factory=dict)
    """Keyword arguments of :func:`metric_bytes` (the width is the first array's)."""


@dataclass(frozen=True)
class EvaluationPlan:
    """What an evaluation holds, per sample: what :meth:`estimate` scales by ``n``. The
    steps run in order: generate, draw the reals, then each metric."""

    sample: int
    """Elements of one sample."""
    latent: int
    """Elements of one latent."""
    generator_activations: int
    """Elements of every layer output of the generator for one sample."""
    metrics: tuple[MetricStep, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def estimate(self, n: int) -> EvaluationEstimate:
        s, b, f = self.sample, FLOAT64_BYTES, FLOAT_BYTES
        steps = [
            # generating: the output array, the latents, the generator's activations of one batch
            EvaluationEstimate(f * n * s, 0, f * (n * self.latent + min(n, EVAL_BATCH) * self.generator_activations)),
            # drawing the reals: a sampler draws in float64 and casts
            EvaluationEstimate(2 * f * n * s, 0, b * n * s),
        ]
        cached: dict[str, int] = {}
        for m in self.metrics:
            cached.update(m.reads)
            width = m.reads[0][1] if m.reads else 0
            work = metric_bytes(m.name, n, width, **m.params) if m.builtin else 0
            steps.append(EvaluationEstimate(2 * f * n * s, b * n * sum(cached.values()), work))
        return max(steps, key=lambda e: e.total)

    def most_samples(self, limit: int) -> int:
        """The largest ``n`` whose estimate fits in ``limit`` bytes (0 if none does)."""
        lo, hi = 0, 1
        while self.estimate(hi).total <= limit:
            lo, hi = hi, 2 * hi
            if hi > 2**62:
                return lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.estimate(mid).total <= limit else (lo, mid)
        return lo


def check_evaluation(plan: EvaluationPlan, n: int, what: str = "the number of samples",
                     limit: int | None = None) -> EvaluationEstimate:
    """Refuse an evaluation of ``n`` samples whose estimate exceeds the machine's memory
    (or ``limit`` bytes), naming the estimate and the most samples that fit."""
    est = plan.estimate(n)
    limit = memory_limit() if limit is None else limit
    if limit is not None and est.total > limit:
        metrics = f" with {', '.join(plan.names)}" if plan.names else ""
        fit = plan.most_samples(limit)
        fix = f"ask for {fit:,} samples or fewer" if fit >= 2 else "choose fewer or cheaper metrics"
        raise ConfigError(f"{what} = {n:,}: evaluating that many samples{metrics} needs at least {_gb(est.total)} of "
                          f"memory ({est.parts()}) and this machine has {_gb(limit)}",
                          hint=f"{fix}; {MEMORY_ENV} sets the limit in bytes")
    return est
