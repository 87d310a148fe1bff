"""Numerics shared by the checks: dtypes, tolerances, rounding, finite differences.

Every comparison happens in float64 numpy. Inputs are first rounded to the dtype under
test, so the reference sees exactly the numbers the backend sees and a difference is
the backend's (or the loss's) own error, never input rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

#: Every dtype a loss is checked at, in report order.
DTYPES = ("float32", "float64", "float16", "bfloat16")
#: The dtypes everything else (regularizers) is checked at.
FULL_PRECISION = ("float32", "float64")


@dataclass(frozen=True)
class Tolerance:
    """How closely a dtype must agree, and the logits it is probed with."""

    #: Relative tolerance of values, against ``1 + |reference| + max|input|``.
    value: float
    #: Relative tolerance of gradients, against ``max|reference gradient| + 1/batch``.
    grad: float
    #: Magnitude of the "extreme" logits the finiteness check uses.
    extreme: float
    #: Generated logits lie in [-bound, bound].
    bound: float


TOLERANCES = {
    "float64": Tolerance(value=1e-8, grad=1e-6, extreme=1e4, bound=20.0),
    "float32": Tolerance(value=2e-5, grad=2e-4, extreme=1e4, bound=20.0),
    # (1e4)^2 overflows float16 (max 65504): a squared loss cannot be finite there, so
    # float16 is probed at +-100 instead. bfloat16 has float32's range.
    "float16": Tolerance(value=2e-2, grad=3e-2, extreme=1e2, bound=10.0),
    "bfloat16": Tolerance(value=8e-2, grad=1e-1, extreme=1e4, bound=10.0),
}


def round_to(x, dtype: str) -> np.ndarray:
    """``x`` rounded to ``dtype`` (round to nearest even) and returned as float64."""
    x = np.asarray(x, dtype=np.float64)
    if dtype == "float64":
        return x.copy()
    if dtype in ("float32", "float16"):
        return x.astype(dtype).astype(np.float64)
    if dtype == "bfloat16":
        # bfloat16 is the top 16 bits of a float32: round the low 16 bits to nearest even.
        bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)
    raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")


def as_float64(x) -> np.ndarray:
    """A backend's numpy output (possibly float16 or an ml_dtypes bfloat16) as float64."""
    return np.asarray(x).astype(np.float64)


def value_tolerance(dtype: str, reference: float, *inputs) -> float:
    scale = 1.0 + abs(reference) + max((float(np.max(np.abs(x))) for x in inputs if np.size(x)), default=0.0)
    return TOLERANCES[dtype].value * scale


def grad_tolerance(dtype: str, reference: np.ndarray, batch: int) -> float:
    top = float(np.max(np.abs(reference))) if np.size(reference) else 0.0
    return TOLERANCES[dtype].grad * (top + 1.0 / max(batch, 1))


#: The largest finite value of each dtype: a reference beyond it cannot be expected.
MAX_FINITE = {"float64": 1.7976931348623157e308, "float32": 3.4028234663852886e38,
              "float16": 65504.0, "bfloat16": 3.3895313892515355e38}
#: Machine epsilon (spacing of numbers near 1) of each dtype.
EPS = {"float64": 2.0 ** -52, "float32": 2.0 ** -23, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}


def representable(dtype: str, *values) -> bool:
    """Every value is finite and a quarter of ``dtype``'s range away from overflow (a
    loss's intermediate terms may be a few times larger than its value)."""
    limit = MAX_FINITE[dtype] / 4
    return all(np.all(np.isfinite(v)) and np.max(np.abs(v), initial=0.0) <= limit for v in values)


@dataclass
class Derivatives:
    """Finite-difference estimates of each element's partial derivative (float64)."""

    #: Richardson-extrapolated central differences: exact for cubics, error O(h^4).
    central: np.ndarray
    #: One-sided difference quotients: at a kink (relu, hinge) any subgradient lies between.
    left: np.ndarray
    right: np.ndarray
    #: An estimate of the error of ``central``: the two step sizes' disagreement plus the
    #: rounding of the function values divided by the step.
    error: np.ndarray


def derivatives(fn: Callable[..., float], xs: Sequence[np.ndarray]) -> list[Derivatives]:
    """Partial derivatives of scalar ``fn(*xs)`` (evaluated in float64) for every element.

    The step is scaled to each element's magnitude (``h = 1e-4 max(1, |x|)``); central
    differences at ``h`` and ``h/2`` are combined by Richardson extrapolation, and their
    disagreement, with the rounding error ``eps |f| / h``, estimates the error. So a
    loss with values near 1e5 or 1e6 is differentiated as accurately as one near 1.
    """
    xs = [np.array(x, dtype=np.float64) for x in xs]
    f0 = float(fn(*xs))
    out = []
    for x in xs:
        central, left, right, error = (np.zeros_like(x) for _ in range(4))
        for j in np.ndindex(x.shape):
            saved = x[j]
            h = 1e-4 * max(1.0, abs(saved))
            values = {}
            for k in (h, -h, h / 2, -h / 2):
                x[j] = saved + k
                values[k] = float(fn(*xs))
            x[j] = saved
            d1 = (values[h] - values[-h]) / (2 * h)
            d2 = (values[h / 2] - values[-h / 2]) / h
            central[j] = (4 * d2 - d1) / 3
            left[j], right[j] = (f0 - values[-h]) / h, (values[h] - f0) / h
            scale = max(abs(f0), *(abs(v) for v in values.values()))
            error[j] = abs(d2 - d1) + 8 * EPS["float64"] * scale / h
        out.append(Derivatives(central, left, right, error))
    return out


def gradient_matches(got: np.ndarray, d: Derivatives, tol: float) -> np.ndarray:
    """Elementwise: ``got`` is the derivative (within ``tol`` plus the estimate's own
    error), or, at a kink, lies between the one-sided derivatives."""
    smooth = np.abs(got - d.central) <= tol + d.error
    return np.isfinite(got) & (smooth | within(got, d.left, d.right, tol + d.error))


def within(got: np.ndarray, left: np.ndarray, right: np.ndarray, tol: float) -> np.ndarray:
    """Elementwise: ``got`` lies between the one-sided derivatives (within ``tol``)."""
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    return (got >= lo - tol) & (got <= hi + tol)


def fmt(x) -> str:
    """An array or number for a failure message, to full precision (``repr``: the 17
    significant digits that tell two float64 values apart)."""
    if np.ndim(x) == 0:
        return repr(float(x))
    x = np.asarray(x, dtype=np.float64)
    body = ", ".join(repr(float(v)) for v in x.ravel()[:16])
    return f"[{body}{', ...' if x.size > 16 else ''}]"
