"""Planning and running the suite: which subjects, which backends, which checks.

``Suite(...)`` resolves a selection against the plugin registry; ``suite.cases()`` is
the plan (every applicable check x subject x backend x dtype), ``suite.run()`` runs it
into a :class:`~gankit.conformance.report.Report`. The CLI and the pytest plugin use
exactly this.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from gankit.conformance import architectures, losses, regularizers, training  # noqa: F401  (registers checks)
from gankit.conformance.core import CHECKS, Case, CheckResult
from gankit.conformance.context import REFERENCE_OPS, call_loss
from gankit.errors import BackendUnavailable, ConfigError
from gankit.plugins import Registry, get_registry


# -- backends -----------------------------------------------------------------------
#: The environment variables that size torch's and TensorFlow's CPU thread pools, read
#: when each framework starts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


#: Set (unless already set) while worker processes share a machine: each framework takes
#: GPU memory as it needs it instead of all of it up front.
SHARED_DEVICE_VARIABLES = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


@contextmanager
def thread_environment(threads: int | None = None, jobs: int = 1):
    """The frameworks' CPU threads for a suite run in a process of its own (the CLI), set
    in the environment before torch or TensorFlow starts: ``threads`` when given; else a
    variable the environment already sets; else 1 on a machine with 2 usable CPUs or fewer,
    or when ``jobs`` > 1 processes share the machine, as ``gankit train`` chooses (the
    checks run small nets, and on a busy 2-core machine a thread per core costs more than
    it saves), the frameworks' own default otherwise. With ``jobs`` > 1 the frameworks
    also take GPU memory as needed (:data:`SHARED_DEVICE_VARIABLES`). Worker processes
    inherit this environment. It is restored afterwards; a framework already started
    keeps its pools."""
    from gankit.threads import usable_cpus

    names = THREAD_VARIABLES + tuple(SHARED_DEVICE_VARIABLES)
    saved = {var: os.environ.get(var) for var in names}
    count = threads if threads is not None else (1 if usable_cpus() <= 2 or jobs > 1 else None)
    try:
        for var in THREAD_VARIABLES:
            if count is not None and (threads is not None or var not in os.environ):
                os.environ[var] = str(count)
        if jobs > 1:
            for var, value in SHARED_DEVICE_VARIABLES.items():
                os.environ.setdefault(var, value)
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


#: Processes ``gankit conformance`` starts at most by default, and the estimated CPU
#: seconds of work (see :data:`gankit.conformance.parallel.COST`) that make one more worth
#: its start-up (a worker imports the frameworks again: about 10 s on a small machine).
MAX_DEFAULT_JOBS = 4
SECONDS_PER_JOB = 15.0


def default_jobs(suite: "Suite") -> int:
    """Processes for a run: one per usable CPU (at most :data:`MAX_DEFAULT_JOBS`), fewer
    when the plan is too small to repay a worker's start-up; 1 on one CPU."""
    from gankit.conformance.parallel import estimated_seconds
    from gankit.threads import usable_cpus

    worth = int(estimated_seconds(suite.cases()) // SECONDS_PER_JOB)
    return max(1, min(usable_cpus(), MAX_DEFAULT_JOBS, worth))


class BackendHandle:
    """A backend under test: its object, version, cached ops and dtype support."""

    def __init__(self, name: str, backend):
        self.name = name
        self.backend = backend
        self.version = str(backend.version())
        self._ops: dict[tuple[str, int], Any] = {}
        self._dtype: dict[str, str | None] = {}

    def ops(self, dtype: str = "float32", seed: int = 0):
        key = (dtype, seed)
        if key not in self._ops:
            self._ops[key] = self.backend.ops(dtype=dtype, seed=seed)
        return self._ops[key]

    def dtype_unsupported(self, dtype: str) -> str | None:
        """Why this backend cannot differentiate at ``dtype``, or None if it can."""
        if dtype not in self._dtype:
            reason = None
            try:
                ops = self.ops(dtype)
                value, (grad,) = ops.value_and_grad(lambda x: ops.sum(ops.softplus(x) * x), np.array([0.5, -1.0]),
                                                    dtype=dtype)
                if not np.all(np.isfinite(np.asarray(grad).astype(np.float64))):
                    reason = f"{self.name} value_and_grad gives non-finite gradients at {dtype}"
            except Exception as exc:
                reason = f"{self.name} value_and_grad does not support {dtype} ({type(exc).__name__}: {str(exc)[:120]})"
            self._dtype[dtype] = reason
        return self._dtype[dtype]


# -- subjects -------------------------------------------------------------------------
def _label(name: str, params: dict) -> str:
    if not params:
        return name
    return name + "(" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(params.items())) + ")"


def parse_choice(text: str) -> tuple[str, dict]:
    """``NAME`` or ``NAME:{json params}`` (e.g. ``least_squares:{"a": -1, "c": 0}``)."""
    name, sep, rest = text.partition(":")
    if not sep:
        return text.strip(), {}
    try:
        params = json.loads(rest)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"cannot read the params of {text!r}: {exc.msg}",
                          hint='write NAME:{"key": value}, with JSON after the colon') from None
    if not isinstance(params, dict):
        raise ConfigError(f"the params of {text!r} must be a JSON object", hint='write NAME:{"key": value}')
    return name.strip(), params


@dataclass
class Subject:
    """A plugin under test (or a backend's training step)."""

    kind: str
    name: str
    label: str
    distribution: str = ""
    params: Any = None
    error: str | None = None


@dataclass
class LossSubject(Subject):
    loss: Any = None
    unequal_sizes_ok: bool = True

    @property
    def meta(self):
        return getattr(self.loss, "meta", None)


@dataclass
class RegularizerSubject(Subject):
    regularizer: Any = None


@dataclass
class ArchitectureSubject(Subject):
    generator: Any = None
    discriminator: Any = None
    data_shape: tuple = ()
    latent_dim: int = 0
    backends: tuple[str, ...] | None = None
    """The backends that build it, when not every one (a single-backend architecture)."""
    native: bool = False
    """Built natively (a plugin's own framework model), not from a neutral spec."""
    registry: Any = field(default=None, repr=False)


def _validated(registry: Registry, kind: str, name: str, params: dict):
    entry = registry.get(kind, name)
    try:
        model = entry.record.params.model_validate(params)
    except Exception as exc:
        raise ConfigError(f"invalid params for {kind} {name!r}: {' '.join(str(exc).split())[:300]}",
                          hint=f"see `gankit plugins --kind {kind}` for its parameters") from None
    return entry, model


def loss_subject(registry: Registry, name: str, params: dict | None = None) -> LossSubject:
    entry, model = _validated(registry, "loss", name, params or {})
    s = LossSubject("loss", name, _label(name, params or {}), entry.distribution, model)
    try:
        s.loss = entry.record.factory(model)
        from gankit.protocol import LossMeta

        if not isinstance(getattr(s.loss, "meta", None), LossMeta):
            s.error = f"loss {name!r} has no LossMeta `meta` (got {type(getattr(s.loss, 'meta', None)).__name__})"
            return s
    except Exception as exc:
        s.error = f"the factory of loss {name!r} raised {type(exc).__name__}: {exc}"
        return s
    # Pairwise losses (relativistic) need equal batch sizes: find out on the reference.
    try:
        for side in ("discriminator", "generator"):
            call_loss(s.loss, REFERENCE_OPS, side, np.zeros(2), np.zeros(3))
    except Exception:
        s.unequal_sizes_ok = False
    return s


def regularizer_subject(registry: Registry, name: str, params: dict | None = None) -> RegularizerSubject:
    entry, model = _validated(registry, "regularizer", name, params or {})
    s = RegularizerSubject("regularizer", name, _label(name, params or {}), entry.distribution, model)
    try:
        s.regularizer = entry.record.factory(model)
    except Exception as exc:
        s.error = f"the factory of regularizer {name!r} raised {type(exc).__name__}: {exc}"
    return s


def architecture_subject(registry: Registry, name: str, params: dict | None = None) -> ArchitectureSubject:
    entry, model = _validated(registry, "architecture", name, params or {})
    s = ArchitectureSubject("architecture", name, _label(name, params or {}), entry.distribution, model)
    s.backends = getattr(entry.record, "backends", None)
    s.native = getattr(entry.record, "native", None) is not None
    s.registry = registry
    hints = dict((entry.record.metadata or {}).get("conformance", {}))
    try:
        s.generator, s.discriminator, s.data_shape, s.latent_dim = architectures.build_specs(entry.record, model, hints)
        if s.generator is None or s.discriminator is None:
            s.error = f"architecture {name!r} provides only the roles {entry.record.roles}; the suite needs both"
    except Exception as exc:
        s.error = f"architecture {name!r}: {exc}"
    return s


# -- the suite --------------------------------------------------------------------------
Selection = Sequence[str] | None
"""Names (or ``NAME:{json}``) of one kind of plugin; None means "every registered one"
when nothing else is selected, and "none" when another kind is."""


@dataclass
class Suite:
    """A resolved selection of backends and subjects, ready to plan and run."""

    backends: Sequence[str] | None = None
    losses: Selection = None
    regularizers: Selection = None
    architectures: Selection = None
    training: bool | None = None
    """Run the training-step checks; by default only when no plugin is selected."""
    checks: Sequence[str] | None = None
    """Glob patterns on check names (``loss.*``, ``*.monotone``); None runs every check."""
    dtypes: Sequence[str] | None = None
    """Only these dtypes (of those a check runs at); None runs every one."""
    profile: str = "ci"
    registry: Registry | None = None
    handles: list[BackendHandle] = field(default_factory=list, init=False)
    unavailable: dict[str, str] = field(default_factory=dict, init=False)
    subjects: list[Subject] = field(default_factory=list, init=False)
    cache: dict = field(default_factory=dict, init=False)
    _installed: bool = field(default=False, init=False, repr=False)
    """Whether the registry is the installed plugins' read from this environment (which a
    worker process reads again the same way), not one built from plugin objects."""

    def __post_init__(self):
        from gankit.conformance.strategies import PROFILES

        if self.profile not in PROFILES:
            raise ConfigError(f"unknown conformance profile {self.profile!r}; known: {', '.join(PROFILES)}")
        self.registry = self.registry or get_registry()
        self._installed = self.registry.environ is not None
        self._resolve_subjects()  # first: a misspelt plugin fails before any framework loads
        self._resolve_backends()
        if self.dtypes:
            from gankit.conformance.numerics import DTYPES

            bad = [d for d in self.dtypes if d not in DTYPES]
            if bad:
                raise ConfigError(f"unknown dtype {bad[0]!r}", hint=f"choose from {', '.join(DTYPES)}")
        if self.checks:
            unknown = [p for p in self.checks if not fnmatch.filter(CHECKS, p)]
            if unknown:
                raise ConfigError(f"no check matches {', '.join(map(repr, unknown))}",
                                  hint="check names look like loss.monotone; see `gankit conformance --list`")

    def _resolve_backends(self):
        reg = self.registry
        names = list(self.backends) if self.backends else reg.names("backend")
        for name in names:
            reg.get("backend", name)  # an unknown name is an error listing the known ones
            try:
                self.handles.append(BackendHandle(name, reg.backend(name)))
            except BackendUnavailable as exc:
                if self.backends:
                    raise
                self.unavailable[name] = exc.one_line() if hasattr(exc, "one_line") else str(exc)
        if not self.handles:
            raise BackendUnavailable("no backend is installed to run the conformance suite on",
                                     hint="pip install 'gankit[torch]' or 'gankit[tensorflow]'")

    def _resolve_subjects(self):
        reg = self.registry
        nothing = self.losses is None and self.regularizers is None and self.architectures is None
        training = nothing if self.training is None else self.training
        plan: list[tuple[Callable, str, Iterable[str] | None]] = [
            (loss_subject, "loss", self.losses),
            (regularizer_subject, "regularizer", self.regularizers),
            (architecture_subject, "architecture", self.architectures),
        ]
        for make, kind, chosen in plan:
            if chosen is None and not nothing:
                continue
            for text in (reg.names(kind) if chosen is None else chosen):
                name, params = parse_choice(text)
                self.subjects.append(make(reg, name, params))
        if training:
            self.subjects.append(Subject("training", "step", "step"))

    # -- planning ---------------------------------------------------------------------
    def _wanted(self, name: str) -> bool:
        return not self.checks or any(fnmatch.fnmatchcase(name, p) for p in self.checks)

    def _across(self, subject) -> tuple:
        """The backends an across-backends check compares for ``subject``: the selected
        ones that build it, when it builds on some only (and two of them are selected)."""
        only = getattr(subject, "backends", None)
        usable = tuple(h for h in self.handles if only is None or h.name in only)
        return usable if len(usable) >= 2 else tuple(self.handles)

    def cases(self) -> list[Case]:
        out = []
        for subject in self.subjects:
            for spec in CHECKS.values():
                if spec.kind != subject.kind or not self._wanted(spec.name):
                    continue
                groups = [self._across(subject)] if spec.across else [(h,) for h in self.handles]
                for group in groups:
                    for dtype in spec.dtypes or ("",):
                        if dtype and self.dtypes and dtype not in self.dtypes:
                            continue
                        out.append(Case(spec, subject, group, dtype, self))
        return out

    def header(self) -> dict:
        import platform
        import sys

        from gankit import __version__

        return {
            "gankit": __version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(terse=True),
            "profile": self.profile,
            "threads": {var: os.environ[var] for var in THREAD_VARIABLES if var in os.environ},
            "backends": {h.name: h.version for h in self.handles},
            "unavailable": dict(self.unavailable),
            "single_backend": {s.label: list(s.backends) for s in self.subjects
                               if getattr(s, "backends", None) is not None},
        }

    def selection(self) -> dict:
        """The arguments that plan this suite again in another process."""
        return {"backends": list(self.backends) if self.backends else None,
                "losses": _listed(self.losses), "regularizers": _listed(self.regularizers),
                "architectures": _listed(self.architectures), "training": self.training,
                "checks": _listed(self.checks), "dtypes": _listed(self.dtypes), "profile": self.profile}

    @contextmanager
    def quiet_frameworks(self):
        """Each trainer traces its own tf.function: TensorFlow's retracing warnings are noise here."""
        tf_logger = logging.getLogger("tensorflow")
        level = tf_logger.level
        tf_logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            tf_logger.setLevel(level)

    def run(self, on_result: Callable[[CheckResult], None] | None = None, jobs: int = 1):
        """Run every case into a Report; ``on_result`` sees each result as it is made.

        ``jobs`` > 1 runs the cases in this process and ``jobs - 1`` worker processes
        (see :mod:`gankit.conformance.parallel`); the results are the same, in the same
        order. A suite built on a registry the caller made (not the installed plugins')
        runs here alone, since a worker could not rebuild it."""
        from gankit.conformance.report import Report

        start, cpu_start = time.perf_counter(), time.process_time()
        cases = self.cases()
        workers_cpu, errors = 0.0, []
        with self.quiet_frameworks():
            if jobs > 1 and self._installed and len(cases) > 1:
                from gankit.conformance.parallel import run_parallel

                results, workers_cpu, errors = run_parallel(self, cases, jobs, on_result)
            else:
                jobs, results = 1, []
                for case in cases:
                    result = case.run()
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
        header = {**self.header(), "jobs": jobs, **({"worker_errors": errors} if errors else {})}
        return Report(header=header, results=results,
                      seconds=time.perf_counter() - start,
                      cpu_seconds=time.process_time() - cpu_start + workers_cpu)


def _listed(selection: Selection) -> list[str] | None:
    return None if selection is None else list(selection)


def run_suite(**selection):
    """Plan and run the suite; keyword arguments as :class:`Suite`. Returns the Report."""
    return Suite(**selection).run()


def assert_conforms(**selection) -> None:
    """Run the suite and raise AssertionError listing every failed check (for tests)."""
    report = run_suite(**selection)
    if report.failures:
        lines = [f"{len(report.failures)} conformance check(s) failed:"]
        lines += [f"  {r.check} [{r.subject} {r.backend} {r.dtype}]: {r.detail}" for r in report.failures]
        raise AssertionError("\n".join(lines))


__all__ = ["BackendHandle", "Suite", "run_suite", "assert_conforms", "parse_choice", "thread_environment",
           "default_jobs"]
