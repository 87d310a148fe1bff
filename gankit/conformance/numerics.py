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


def one_sided_differences(
    fn: Callable[..., float], xs: Sequence[np.ndarray], step: float = 1e-6
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Left and right difference quotients of scalar ``fn(*xs)`` for every element.

    At a smooth point both approximate the derivative; at a kink (relu, hinge) they are
    its one-sided derivatives, and any subgradient lies between them.
    """
    xs = [np.array(x, dtype=np.float64) for x in xs]
    f0 = float(fn(*xs))
    out = []
    for i, x in enumerate(xs):
        left, right = np.zeros_like(x), np.zeros_like(x)
        for j in np.ndindex(x.shape):
            h = step * max(1.0, abs(x[j]))
            saved = x[j]
            x[j] = saved + h
            up = float(fn(*xs))
            x[j] = saved - h
            down = float(fn(*xs))
            x[j] = saved
            right[j], left[j] = (up - f0) / h, (f0 - down) / h
        out.append((left, right))
    return out


def within(got: np.ndarray, left: np.ndarray, right: np.ndarray, tol: float) -> np.ndarray:
    """Elementwise: ``got`` lies between the one-sided derivatives (within ``tol``)."""
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    return (got >= lo - tol) & (got <= hi + tol)


def fmt(x) -> str:
    """Compact text for an array or number in a failure message."""
    if np.ndim(x) == 0:
        return f"{float(x):.6g}"
    x = np.asarray(x, dtype=np.float64)
    body = ", ".join(f"{v:.6g}" for v in x.ravel()[:8])
    return f"[{body}{', ...' if x.size > 8 else ''}]"
