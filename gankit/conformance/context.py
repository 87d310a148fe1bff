"""What a check function receives: the case, and helpers to evaluate on a backend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gankit.conformance.core import NotApplicable
from gankit.conformance.numerics import TOLERANCES, Tolerance, as_float64, representable, round_to
from gankit.conformance.strategies import LOW_PRECISION_SHARE, PROFILES, draw_examples, run_property
from gankit.ops import NumpyOps

#: The numpy reference every loss is evaluated with (forward only, float64).
REFERENCE_OPS = NumpyOps(seed=0, dtype="float64")
SIDES = ("discriminator", "generator")


def call_loss(loss, ops, side: str, real, fake):
    """One side of a loss. The generator gets the real logits only when its metadata
    says it reads them, as a trainer would call it."""
    if side == "discriminator":
        return loss.discriminator(ops, real, fake)
    return loss.generator(ops, fake, real if loss.meta.generator_needs_real else None)


@dataclass
class Evaluation:
    """A loss value and its gradients with respect to both logit batches (float64)."""

    value: float
    real: np.ndarray
    fake: np.ndarray


def reference(loss, side: str, real, fake) -> float:
    """The loss evaluated with the numpy reference ops in float64."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return float(np.asarray(call_loss(loss, REFERENCE_OPS, side, np.asarray(real, np.float64),
                                          np.asarray(fake, np.float64))))


class OutOfRange(NotApplicable):
    """The example's exact loss is beyond the range of the dtype under test (a loss with
    values near 1e6 in float16): the example is skipped, not failed (and a check with no
    example left does not apply)."""


def traced(handle, dtype: str, key, make):
    """``ops.trace(make(ops))`` for a backend and dtype, made once per ``key`` and reused:
    plugins run under the tracing the backend's trainers use (a ``tf.function`` on
    TensorFlow), and each is traced once, not once per example."""
    cache = handle.__dict__.setdefault("_traced", {})
    full = (dtype, key)
    if full not in cache:
        ops = handle.ops(dtype)
        cache[full] = (ops, ops.trace(make(ops)))
    return cache[full]


class Context:
    """The case being run, with evaluation helpers bound to its backend and dtype."""

    def __init__(self, case):
        self.case = case
        self.spec = case.spec
        self.subject = case.subject
        self.backends = case.backends
        self.backend = case.backends[0] if case.backends else None
        self.dtype = case.dtype
        self.suite = case.suite

    @property
    def tol(self) -> Tolerance:
        return TOLERANCES[self.dtype or "float32"]

    @property
    def where(self) -> str:
        b = "across " + "/".join(h.name for h in self.backends) if self.spec.across else self.backend.name
        return f"{b} {self.dtype}".strip()

    def round(self, *xs):
        return tuple(round_to(x, self.dtype) for x in xs)

    def forall(self, strategy, body, *, share: float = 1.0, key: str = "", examples_of: str = "") -> None:
        """Run ``body`` over hypothesis examples under the suite's profile.

        Under the derandomised ``ci`` profile the examples depend only on the check,
        the dtype, whether batch sizes may differ, and ``key`` (which names the
        strategy when a check uses several): they are drawn once and replayed for
        every backend and subject, so hypothesis's own cost is paid once per check.
        Other profiles run a fresh ``@given`` per case, with shrinking. ``examples_of``
        names another check whose examples to replay (their evaluations are reused).
        """
        profile = self.suite.profile
        n = int(round(max(1.0, PROFILES[profile]["max_examples"] * share
                          * (LOW_PRECISION_SHARE if self.dtype in ("float16", "bfloat16") else 1.0))))
        skipped, ran = [], []

        def guarded(example):
            try:
                body(example)
                ran.append(1)
            except OutOfRange as exc:
                skipped.append(str(exc))

        if not PROFILES[profile]["derandomize"]:
            run_property(strategy, guarded, profile=profile, key=self.case.id, examples=n)
        else:
            self._replay(strategy, guarded, key, n, examples_of or self.spec.name)
        if skipped and not ran:
            raise NotApplicable(f"every example is out of {self.dtype}'s range ({skipped[0]})")

    def _replay(self, strategy, body, key, n, name):
        equal = getattr(self.subject, "unequal_sizes_ok", None)
        cache_key = (name, key, self.dtype, equal, n)
        examples = self.suite.cache.get(cache_key)
        if examples is None:
            examples = draw_examples(strategy, profile=self.suite.profile, key="/".join(map(str, cache_key)), examples=n)
            self.suite.cache[cache_key] = examples
        for example in examples:
            body(example)

    # -- losses -------------------------------------------------------------------
    def evaluate(self, side: str, real, fake, backend=None, dtype: str | None = None, loss=None) -> Evaluation:
        """Value and gradients of one side of the subject loss (or ``loss``, the subject's
        class with other params, kept alive by the caller) on a backend."""
        handle = backend or self.backend
        dtype = dtype or self.dtype
        loss = loss if loss is not None else self.subject.loss
        real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
        # Checks share examples (the across-backends check replays loss.reference's):
        # an evaluation is made once per backend, dtype, loss, side and inputs.
        memo = self.suite.cache.setdefault("evaluations", {})
        key = (handle.name, dtype, id(loss), side, real.shape, real.tobytes(), fake.shape, fake.tobytes())
        if key not in memo:
            memo[key] = self._evaluate(handle, dtype, loss, side, real, fake)
        return memo[key]

    def _evaluate(self, handle, dtype, loss, side, real, fake) -> Evaluation:
        ops, fn = traced(handle, dtype, (id(loss), side),
                         lambda ops: lambda r, f: call_loss(loss, ops, side, r, f))
        value, grads = ops.value_and_grad(fn, np.asarray(real, np.float64), np.asarray(fake, np.float64),
                                          dtype=dtype)
        g_real, g_fake = (as_float64(g) for g in grads)
        got = Evaluation(float(value), g_real.reshape(np.shape(real)), g_fake.reshape(np.shape(fake)))
        if not representable(dtype, got.value, got.real, got.fake):
            exact = reference(loss, side, real, fake)
            if self.excused(exact, max(np.size(real), np.size(fake))):
                raise OutOfRange(f"the exact {side} loss is {exact!r}")
        return got

    def excused(self, exact: float, batch: int = 1) -> bool:
        """Whether a non-representable result is excused by the exact value: it, or the
        batch sum a mean accumulates (``batch`` times it), is beyond the dtype's range, or
        it is not finite even in float64 where the loss does not declare
        ``finite_at_extremes`` (exp(1e3) in an f-GAN loss). A loss that declares finite
        values is not excused by its own formula overflowing."""
        if np.isfinite(exact):
            return not representable(self.dtype, abs(exact) * max(batch, 1))
        meta = getattr(self.subject, "meta", None)
        return meta is None or "finite_at_extremes" not in meta.properties

    def reference(self, side: str, real, fake) -> float:
        return reference(self.subject.loss, side, real, fake)
