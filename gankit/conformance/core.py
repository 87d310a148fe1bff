"""The vocabulary of the suite: checks, their outcomes, and one planned case.

A *check* is a named property (``loss.monotone``) of one kind of subject (a loss, a
regularizer, a backend's training step, an architecture). A *case* is one check on
one subject, on one backend (or across all of them) at one dtype. Running a case
never raises: it returns a :class:`CheckResult` that passed, failed, or does not apply
with a reason.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

Status = Literal["pass", "fail", "n/a"]
Kind = Literal["loss", "regularizer", "training", "architecture"]
KINDS: tuple[str, ...] = ("loss", "regularizer", "training", "architecture")
ACROSS = "across"
"""The backend label of a check that compares every selected backend with the first."""


class CheckFailed(AssertionError):
    """The property does not hold; the message says where and by how much."""


class NotApplicable(Exception):
    """The check does not apply to this subject, backend or dtype; the message says why."""


def fail(message: str) -> None:
    raise CheckFailed(message)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass(frozen=True)
class CheckSpec:
    """One named check."""

    name: str
    """Dotted name, ``<kind>.<property>``; what the report and tests call it."""
    kind: str
    doc: str
    """One line: the property, as the report's legend shows it."""
    fn: Callable[..., Any] = field(repr=False)
    """``fn(ctx)``: raises :class:`CheckFailed` or :class:`NotApplicable`, else passes
    (a returned string is kept as the pass detail)."""
    dtypes: tuple[str, ...] = ()
    """The dtypes it runs at; empty when it has none (float32 trainers, architectures)."""
    across: bool = False
    """Compares the selected backends with each other instead of running on one."""
    applies: Callable[[Any], str | None] | None = field(default=None, repr=False)
    """``applies(subject)``: a reason it does not apply, or None."""

    @property
    def title(self) -> str:
        return self.name.split(".", 1)[1]


CHECKS: dict[str, CheckSpec] = {}
"""Every check, by name, in definition order."""


def check(name: str, doc: str, *, dtypes=(), across=False, applies=None):
    """Register the decorated function as the check ``name`` (``<kind>.<property>``)."""
    kind = name.split(".", 1)[0]
    if kind not in KINDS:
        raise ValueError(f"check {name!r}: kind must be one of {KINDS}")

    def register(fn):
        if name in CHECKS:
            raise ValueError(f"check {name!r} is defined twice")
        CHECKS[name] = CheckSpec(name, kind, doc, fn, tuple(dtypes), across, applies)
        return fn

    return register


def declared(prop: str):
    """An ``applies`` function: the loss must declare ``prop`` in its metadata."""

    def applies(subject) -> str | None:
        meta = subject.meta
        if meta is None or prop in meta.properties:
            return None
        return f"the loss does not declare {prop!r} in meta.properties"

    return applies


def single_backend(subject, across: bool, backends: list[str]) -> str | None:
    """Why a check does not apply to a subject that builds on some backends only (a native
    architecture), or None. Such a subject runs its checks on those backends; the checks
    that compare backends do not apply to it."""
    only = getattr(subject, "backends", None)
    if only is None:
        return None
    what = (f"single-backend: {subject.kind} {subject.name!r} is built natively for {' and '.join(only)} only"
            if getattr(subject, "native", False) else
            f"single-backend: {subject.kind} {subject.name!r} builds on {' and '.join(only)} only")
    if across:
        if getattr(subject, "native", False) and len(only) > 1:
            return f"{what}; each builds its own model, so there is nothing to compare across backends"
        if getattr(subject, "native", False) or len([b for b in backends if b in only]) < 2:
            return f"{what}; there is nothing to compare across backends"
        return None
    if backends and backends[0] not in only:
        return f"{what}, not {backends[0]}"
    return None


@dataclass
class CheckResult:
    """The outcome of one case."""

    kind: str
    subject: str
    check: str
    backend: str
    dtype: str
    status: Status
    detail: str = ""
    seconds: float = 0.0
    """Wall-clock time of the case."""
    distribution: str = ""
    cpu_seconds: float = 0.0
    """CPU time of the case (the process's, every thread): unlike the wall clock, not
    stretched by other work on a shared machine."""

    def to_json(self) -> dict:
        return {
            "kind": self.kind, "subject": self.subject, "check": self.check, "backend": self.backend,
            "dtype": self.dtype, "status": self.status, "detail": self.detail,
            "seconds": round(self.seconds, 4), "cpu_seconds": round(self.cpu_seconds, 4),
            "distribution": self.distribution,
        }


@dataclass
class Case:
    """One check on one subject, on one backend (or across several) at one dtype."""

    spec: CheckSpec
    subject: Any
    backends: tuple[Any, ...]
    dtype: str
    suite: Any = field(repr=False)

    @property
    def backend(self):
        return self.backends[0]

    @property
    def backend_label(self) -> str:
        return ACROSS if self.spec.across else self.backends[0].name

    @property
    def id(self) -> str:
        parts = [self.subject.label, self.backend_label] + ([self.dtype] if self.dtype else [])
        return f"{self.spec.name}[{'-'.join(parts)}]"

    def run(self) -> CheckResult:
        start, cpu_start = time.perf_counter(), time.process_time()
        status: Status = "pass"
        try:
            detail = self._run() or ""
        except NotApplicable as exc:
            status, detail = "n/a", str(exc)
        except CheckFailed as exc:
            status, detail = "fail", str(exc) or "the property does not hold"
        except Exception as exc:  # a broken plugin fails its own check, never the run
            status = "fail"
            where = traceback.extract_tb(exc.__traceback__)[-1]
            detail = (f"raised {type(exc).__name__}: {' '.join(str(exc).split())[:500]} "
                      f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
        return CheckResult(
            kind=self.spec.kind, subject=self.subject.label, check=self.spec.name,
            backend=self.backend_label, dtype=self.dtype, status=status, detail=detail,
            seconds=time.perf_counter() - start, distribution=getattr(self.subject, "distribution", ""),
            cpu_seconds=time.process_time() - cpu_start,
        )

    def _run(self):
        subject = self.subject
        if getattr(subject, "error", None):
            raise CheckFailed(subject.error)
        if self.spec.applies is not None:
            reason = self.spec.applies(subject)
            if reason:
                raise NotApplicable(reason)
        reason = single_backend(subject, self.spec.across, [b.name for b in self.backends])
        if reason:
            raise NotApplicable(reason)
        if self.spec.across and len(self.backends) < 2:
            raise NotApplicable("needs two backends; only " + (self.backends[0].name if self.backends else "none") + " selected")
        if self.dtype:
            for b in self.backends:
                reason = b.dtype_unsupported(self.dtype)
                if reason:
                    raise NotApplicable(reason)
        from gankit.conformance.context import Context

        return self.spec.fn(Context(self))
