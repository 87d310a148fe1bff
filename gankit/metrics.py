"""Sample-quality metrics in numpy/scipy, and the interfaces metric plugins implement.

The numerics (every function works on numpy arrays of features or samples):

* :func:`frechet_distance` — the Fréchet (2-Wasserstein) distance between two Gaussians
  fitted to features; FID when the features are Inception pool features.
* :func:`kernel_distance` — KID: the unbiased MMD² estimate with the cubic polynomial
  kernel ``k(x, y) = (x·y / d + 1)^3``, averaged over random subsets.
* :func:`precision_recall` — improved precision and recall (Kynkäänniemi et al. 2019):
  k-NN balls around each real (fake) point approximate the real (fake) manifold.
* :func:`inception_score` — ``exp E_x KL(p(y|x) || p(y))`` from any classifier's probabilities.
* :func:`mode_statistics` — the VEEGAN/PacGAN mode metrics for Gaussian-mixture toys.

Plugins wrap these as :class:`Metric` objects (registered with ``gankit_register_metrics``)
that read an :class:`EvalContext`: the generated and real samples plus cached features
from :class:`FeatureExtractor` plugins (``gankit_register_feature_extractors``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

import numpy as np

from gankit.errors import DataError

__all__ = [
    "EvalContext", "FeatureExtractor", "Metric", "MetricMeta", "feature_statistics", "frechet_distance",
    "frechet_distance_features", "inception_score", "kernel_distance", "kl_to_uniform", "mode_statistics",
    "precision_recall",
]


# -- Fréchet distance ---------------------------------------------------------------
def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``features`` of shape (n, d), in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise DataError(f"statistics need features of shape (n >= 2, d), got {x.shape}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _sym_sqrt(a: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix (negative round-off eigenvalues clipped)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, method: Literal["eig", "sqrtm"] = "eig") -> float:
    """``tr((Σ1 Σ2)^½)`` for covariance matrices.

    ``eig``: Σ1 Σ2 is similar to the symmetric PSD matrix ``S Σ2 S`` with ``S = Σ1^½``,
    so the trace of its square root is the sum of square roots of that matrix's
    eigenvalues — real, stable, no complex round-off. ``sqrtm``: scipy's matrix square
    root of the product, as pytorch-fid and the TTUR reference code compute it (with their
    diagonal offset when the product is near-singular).
    """
    if method == "eig":
        s = _sym_sqrt(sigma1)
        w = np.linalg.eigvalsh(s @ sigma2 @ s)
        return float(np.sqrt(np.clip(w, 0, None)).sum())
    if method == "sqrtm":
        from scipy import linalg

        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(sigma1)) * 1e-6
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        return float(np.real(np.trace(covmean)))
    raise ValueError(f"unknown method {method!r}; use 'eig' or 'sqrtm'")


def frechet_distance(mu1, sigma1, mu2, sigma2, method: Literal["eig", "sqrtm"] = "eig") -> float:
    """``‖μ1 − μ2‖² + tr(Σ1) + tr(Σ2) − 2 tr((Σ1 Σ2)^½)``: the squared 2-Wasserstein
    distance between N(μ1, Σ1) and N(μ2, Σ2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise DataError(f"Fréchet distance: mismatched statistics {mu1.shape}, {sigma1.shape} vs {mu2.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2, method)
    return float(max(value, 0.0))


def frechet_distance_features(a: np.ndarray, b: np.ndarray, method: Literal["eig", "sqrtm"] = "eig") -> float:
    """Fréchet distance between Gaussians fitted to two feature sets."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b), method=method)


# -- kernel (Inception) distance ----------------------------------------------------
def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> np.ndarray:
    """``(γ x·y + c)^degree`` with ``γ = 1 / d`` by default (the KID kernel)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD² from kernel matrices: the diagonals of K_xx and K_yy are excluded."""
    m, n = len(kxx), len(kyy)
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2 * kxy.mean())


def kernel_distance(
    real: np.ndarray, fake: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
    degree: int = 3, gamma: float | None = None, coef0: float = 1.0, seed: int = 0,
) -> tuple[float, float]:
    """KID: mean and standard deviation over ``subsets`` random subsets (drawn without
    replacement, ``subset_size`` capped at the smaller set) of the unbiased MMD²."""
    x, y = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise DataError(f"kernel distance needs two feature sets (n, d) of one width, got {x.shape} and {y.shape}")
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise DataError("kernel distance needs at least 2 samples in each set")
    rng = np.random.default_rng([seed, 0x41D])
    values = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        k = lambda p, q: polynomial_kernel(p, q, degree, gamma, coef0)  # noqa: E731
        values.append(mmd2_unbiased(k(a, a), k(b, b), k(a, b)))
    return float(np.mean(values)), float(np.std(values))


# -- precision and recall -----------------------------------------------------------
def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0)


def knn_radii(x: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour among the others."""
    if len(x) <= k:
        raise DataError(f"k-NN radii need more than k = {k} samples, got {len(x)}")
    radii = np.empty(len(x))
    for s in range(0, len(x), chunk):
        d = _pairwise_sq(x[s : s + chunk], x)
        # the point itself is at distance 0 and sorts first: the k-th neighbour is index k
        radii[s : s + chunk] = np.sqrt(np.partition(d, k, axis=1)[:, k])
    return radii


def manifold_coverage(points: np.ndarray, support: np.ndarray, radii: np.ndarray, chunk: int = 1024) -> float:
    """Fraction of ``points`` inside at least one ball ``(support[j], radii[j])``."""
    inside = np.zeros(len(points), dtype=bool)
    r2 = radii**2
    for s in range(0, len(points), chunk):
        inside[s : s + chunk] = (_pairwise_sq(points[s : s + chunk], support) <= r2[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision (fake samples on the real manifold) and recall (real samples
    on the fake manifold), each manifold the union of k-NN balls around its samples."""
    x = np.asarray(real, np.float64).reshape(len(real), -1)
    y = np.asarray(fake, np.float64).reshape(len(fake), -1)
    precision = manifold_coverage(y, x, knn_radii(x, k))
    recall = manifold_coverage(x, y, knn_radii(y, k))
    return precision, recall


# -- Inception-style score ----------------------------------------------------------
def inception_score(probabilities: np.ndarray, splits: int = 10, eps: float = 1e-12) -> tuple[float, float]:
    """``exp(E_x KL(p(y|x) || p(y)))`` per split of the samples: mean and std over splits."""
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or len(p) < splits:
        raise DataError(f"inception score needs probabilities (n >= splits = {splits}, classes), got {p.shape}")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + eps) - np.log(marginal + eps))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def kl_to_uniform(counts: np.ndarray) -> float:
    """``KL(q || uniform)`` for the histogram ``counts`` (0 log 0 = 0)."""
    counts = np.asarray(counts, np.float64)
    if counts.sum() == 0:
        return float("inf")
    q = counts / counts.sum()
    nz = q > 0
    return float((q[nz] * np.log(q[nz] * len(q))).sum())


# -- mode statistics for Gaussian mixtures --------------------------------------------
def mode_statistics(samples: np.ndarray, modes: np.ndarray, std: float, threshold: float = 3.0) -> dict[str, float]:
    """VEEGAN/PacGAN metrics for a mixture of isotropic Gaussians.

    A sample is *high quality* when it lies within ``threshold`` standard deviations of
    its nearest mode; a mode is *captured* when it is the nearest mode of at least one
    high-quality sample; ``mode_kl`` is the reverse KL divergence ``KL(q || uniform)``
    between the histogram ``q`` of samples over their nearest modes and the uniform
    distribution of the true mixture.
    """
    x = np.asarray(samples, np.float64)
    m = np.asarray(modes, np.float64)
    d = np.sqrt(_pairwise_sq(x, m))
    nearest = d.argmin(axis=1)
    good = d[np.arange(len(x)), nearest] <= threshold * std
    captured = np.unique(nearest[good])
    return {
        "modes_captured": float(len(captured)),
        "modes_total": float(len(m)),
        "high_quality": float(100.0 * good.mean()),
        "mode_kl": kl_to_uniform(np.bincount(nearest, minlength=len(m))),
    }


# -- plugin interfaces -----------------------------------------------------------------
class FeatureExtractor:
    """Maps samples to feature vectors (and, for a classifier, class probabilities).

    Subclasses implement :meth:`features`; classifiers also set ``num_classes`` and
    implement :meth:`probabilities`. Inputs are batches in the neutral layout
    (images ``(n, C, H, W)`` in [-1, 1]); outputs are numpy arrays.
    """

    #: Number of classes when :meth:`probabilities` is available.
    num_classes: int | None = None

    def __init__(self, params: Any = None):
        self.params = params

    def check(self, sample_shape: tuple[int, ...], modality: str) -> None:
        """Raise :class:`~gankit.errors.DataError` when samples of this shape do not fit."""

    def features(self, x: np.ndarray) -> np.ndarray:
        """Features of shape ``(n, d)``."""
        raise NotImplementedError

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of shape ``(n, num_classes)``."""
        raise DataError(f"feature extractor {type(self).__name__} is not a classifier",
                        hint="choose a classifier, e.g. mnist_classifier")


@dataclass(frozen=True)
class MetricMeta:
    """What a metric declares: its output keys and which direction is better."""

    #: Output key -> True when higher is better, False when lower is, None for a plain count.
    keys: dict[str, bool | None]
    #: Sample kinds it applies to.
    modalities: tuple[str, ...] = ("points", "images")
    paper: str = ""


class Metric:
    """A sample-quality metric: ``metric(ctx)`` returns ``{key: value}`` for the keys
    declared in ``meta``. It reads samples and features from the :class:`EvalContext`."""

    meta: ClassVar[MetricMeta]

    def __init__(self, params: Any = None):
        self.params = params

    def applies(self, ctx: "EvalContext") -> str | None:
        """``None`` when the metric applies to this data, else the reason it does not."""
        if ctx.modality not in self.meta.modalities:
            return f"needs {' or '.join(self.meta.modalities)} data, not {ctx.modality}"
        return None

    def __call__(self, ctx: "EvalContext") -> dict[str, float]:
        raise NotImplementedError


@dataclass
class EvalContext:
    """Generated and real samples for one evaluation, with features computed once per
    extractor and shared by every metric."""

    fake: np.ndarray
    real: np.ndarray
    modality: str = "points"
    info: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    #: ``name -> FeatureExtractor``; defaults to the global plugin registry.
    get_extractor: Callable[[str], FeatureExtractor] | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def extractor_name(self, name: str = "auto") -> str:
        """``auto`` means the dataset's suggestion (``info["feature_extractor"]``), else identity."""
        return self.info.get("feature_extractor", "identity") if name == "auto" else name

    def extractor(self, name: str = "auto") -> FeatureExtractor:
        name = self.extractor_name(name)
        key = ("extractor", name)
        if key not in self._cache:
            if self.get_extractor is not None:
                ext = self.get_extractor(name)
            else:
                from gankit.plugins import get_registry

                record = get_registry().get("feature_extractor", name).record
                ext = record.factory(record.params())
            ext.check(tuple(self.real.shape[1:]), self.modality)
            self._cache[key] = ext
        return self._cache[key]

    def features(self, which: Literal["fake", "real"], name: str = "auto") -> np.ndarray:
        key = ("features", self.extractor_name(name), which)
        if key not in self._cache:
            self._cache[key] = np.asarray(self.extractor(name).features(getattr(self, which)), np.float64)
        return self._cache[key]

    def probabilities(self, which: Literal["fake", "real"], name: str = "auto") -> np.ndarray:
        key = ("probabilities", self.extractor_name(name), which)
        if key not in self._cache:
            self._cache[key] = np.asarray(self.extractor(name).probabilities(getattr(self, which)), np.float64)
        return self._cache[key]
