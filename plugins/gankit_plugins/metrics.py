"""Built-in metrics, written against :mod:`gankit.metrics` (numpy/scipy only).

Every metric that compares distributions takes ``features``: the feature extractor to
compare them in (``auto`` = the dataset's suggestion — ``mnist_classifier`` for MNIST,
``identity`` otherwise). Metrics that read class probabilities take ``classifier``.

==================  =====================================  ===============================
metric              keys (↑ higher is better, ↓ lower)      source
==================  =====================================  ===============================
fid                 fid ↓                                  Heusel et al. 2017
kid                 kid ↓, kid_std                         Bińkowski et al. 2018
precision_recall    precision ↑, recall ↑                  Kynkäänniemi et al. 2019
inception_score     inception_score ↑, inception_score_std Salimans et al. 2016
classes             classes_covered ↑, mean_confidence ↑,  (class coverage of samples)
                    class_kl ↓
modes               modes_captured ↑, high_quality ↑,       VEEGAN (Srivastava et al. 2017),
                    mode_kl ↓                              PacGAN (Lin et al. 2018)
==================  =====================================  ===============================
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

import gankit


class FeaturesParams(gankit.StrictModel):
    """Parameters of ``fid``."""

    features: str = "auto"
    """Feature extractor (see `gankit plugins --kind feature_extractor`); auto: the dataset's suggestion."""


class KIDParams(FeaturesParams):
    """Parameters of ``kid``."""

    subsets: int = Field(default=100, gt=0)
    """Number of random subsets the MMD² is averaged over."""
    subset_size: int = Field(default=1000, ge=2)
    """Samples per subset (capped at the number of samples)."""
    degree: int = Field(default=3, ge=1)
    """Degree of the polynomial kernel (x·y / d + 1)^degree."""


class PRParams(FeaturesParams):
    """Parameters of ``precision_recall``."""

    k: int = Field(default=3, ge=1)
    """Neighbourhood size of the k-NN manifold estimate."""


class ClassifierParams(gankit.StrictModel):
    """Parameters of ``inception_score`` and ``classes``."""

    classifier: str = "auto"
    """Classifier feature extractor; auto: the dataset's suggestion (mnist_classifier for MNIST)."""


class ISParams(ClassifierParams):
    """Parameters of ``inception_score``."""

    splits: int = Field(default=10, ge=1)
    """Number of splits the score is averaged over."""


class ClassesParams(ClassifierParams):
    """Parameters of ``classes``."""

    min_share: float = Field(default=0.2, gt=0, le=1)
    """A class counts as covered when at least this share of its uniform frequency
    (min_share / classes of all samples) is classified as it."""


class ModesParams(gankit.StrictModel):
    """Parameters of ``modes``."""

    threshold: float = Field(default=3.0, gt=0)
    """A sample is high quality within this many standard deviations of its nearest mode."""


class FID(gankit.Metric):
    meta = gankit.MetricMeta(keys={"fid": False}, paper="Heusel et al. 2017, GANs Trained by a Two Time-Scale Update Rule")

    def __call__(self, ctx):
        f = self.params.features
        return {"fid": gankit.frechet_distance_features(ctx.features("real", f), ctx.features("fake", f))}


class KID(gankit.Metric):
    meta = gankit.MetricMeta(keys={"kid": False, "kid_std": False}, paper="Bińkowski et al. 2018, Demystifying MMD GANs")

    def __call__(self, ctx):
        p = self.params
        mean, std = gankit.kernel_distance(ctx.features("real", p.features), ctx.features("fake", p.features),
                                      subsets=p.subsets, subset_size=p.subset_size, degree=p.degree, seed=ctx.seed)
        return {"kid": mean, "kid_std": std}


class PrecisionRecall(gankit.Metric):
    meta = gankit.MetricMeta(keys={"precision": True, "recall": True},
                             paper="Kynkäänniemi et al. 2019, Improved Precision and Recall Metric")

    def __call__(self, ctx):
        p = self.params
        precision, recall = gankit.precision_recall(ctx.features("real", p.features), ctx.features("fake", p.features), k=p.k)
        return {"precision": precision, "recall": recall}


def _classifier_missing(ctx, name: str) -> str | None:
    """Why the classifier ``name`` cannot score this data, or None."""
    try:
        extractor = ctx.extractor(name)
    except gankit.GankitError as exc:
        return exc.one_line()
    if extractor.num_classes is None:
        return f"feature extractor {ctx.extractor_name(name)!r} is not a classifier (set classifier = 'mnist_classifier' or another)"
    return None


class InceptionScore(gankit.Metric):
    meta = gankit.MetricMeta(keys={"inception_score": True, "inception_score_std": False},
                             paper="Salimans et al. 2016, Improved Techniques for Training GANs")

    def applies(self, ctx):
        return super().applies(ctx) or _classifier_missing(ctx, self.params.classifier)

    def __call__(self, ctx):
        mean, std = gankit.inception_score(ctx.probabilities("fake", self.params.classifier), splits=self.params.splits)
        return {"inception_score": mean, "inception_score_std": std}


class Classes(gankit.Metric):
    meta = gankit.MetricMeta(keys={"classes_covered": True, "mean_confidence": True, "class_kl": False})

    def applies(self, ctx):
        return super().applies(ctx) or _classifier_missing(ctx, self.params.classifier)

    def __call__(self, ctx):
        probs = ctx.probabilities("fake", self.params.classifier)
        k = probs.shape[1]
        counts = np.bincount(probs.argmax(axis=1), minlength=k)
        covered = int((counts >= self.params.min_share * len(probs) / k).sum())
        return {"classes_covered": float(covered), "mean_confidence": float(probs.max(axis=1).mean()),
                "class_kl": gankit.kl_to_uniform(counts)}


class Modes(gankit.Metric):
    meta = gankit.MetricMeta(keys={"modes_captured": True, "modes_total": None, "high_quality": True, "mode_kl": False},
                             modalities=("points",), paper="Srivastava et al. 2017 (VEEGAN); Lin et al. 2018 (PacGAN)")

    def applies(self, ctx):
        if "modes" not in ctx.info or "std" not in ctx.info:
            return "needs a Gaussian-mixture dataset (its info gives modes and std)"
        return super().applies(ctx)

    def __call__(self, ctx):
        return gankit.mode_statistics(ctx.fake, np.asarray(ctx.info["modes"]), float(ctx.info["std"]), self.params.threshold)


@gankit.hookimpl
def gankit_register_metrics():
    R = gankit.MetricRecord
    return [
        R(name="fid", params=FeaturesParams, factory=FID,
          description="Fréchet distance between Gaussians fitted to real and generated features"),
        R(name="kid", params=KIDParams, factory=KID,
          description="Kernel (Inception) distance: unbiased MMD² with a cubic kernel, over subsets"),
        R(name="precision_recall", params=PRParams, factory=PrecisionRecall,
          description="Improved precision and recall on k-NN manifolds"),
        R(name="inception_score", params=ISParams, factory=InceptionScore,
          description="Inception-style score from a classifier's probabilities"),
        R(name="classes", params=ClassesParams, factory=Classes,
          description="Class coverage, mean confidence and class-histogram KL by a classifier"),
        R(name="modes", params=ModesParams, factory=Modes,
          description="Modes captured, % high-quality samples, mode KL (Gaussian-mixture toys)"),
    ]
