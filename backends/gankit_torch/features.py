"""Registers the torch backend's feature extractor ``inception_v3`` (FID Inception pool
features). Importing this module does not import torch; the extractor does, when built.

The extractor is backend-specific because InceptionV3 (parallel branches, concatenation,
max pooling) is outside the neutral layer vocabulary. The TensorFlow backend has no
counterpart yet: metrics run with torch features whatever backend trained the model.
"""

from __future__ import annotations

import os

import numpy as np
from pydantic import Field

import gankit

WEIGHTS_ENV = "GANKIT_INCEPTION_WEIGHTS"


class InceptionParams(gankit.StrictModel):
    """Parameters of ``inception_v3``."""

    weights: str | None = None
    """Path to the FID Inception weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth,
    or the same tensors as .safetensors); default: the GANKIT_INCEPTION_WEIGHTS variable."""
    size: int = Field(default=299, ge=75)
    """Images are resized to size x size; 299 gives FIDs comparable with the published ones."""
    batch_size: int = Field(default=50, gt=0)
    """Images per forward pass."""
    device: str = "cpu"
    """Torch device for the network (cpu, cuda, cuda:N)."""


class InceptionV3(gankit.FeatureExtractor):
    """FID Inception: 2048 pool features; softmax of its 1008 logits as probabilities."""

    num_classes = 1008

    def __init__(self, params: InceptionParams | None = None):
        super().__init__(params or InceptionParams())
        path = self.params.weights or os.environ.get(WEIGHTS_ENV, "").strip()
        if not path:
            raise gankit.DataError(
                "the inception_v3 feature extractor needs a weights file, and none is set",
                hint=f"download pt_inception-2015-12-05-6726825d.pth (pytorch-fid releases), then set "
                     f"evaluation.features.inception_v3.weights or {WEIGHTS_ENV}",
            )
        from gankit_torch.inception import InceptionExtractor, load_model, read_weights

        model = load_model(read_weights(path), self.params.device)
        self.net = InceptionExtractor(model, size=self.params.size, batch_size=self.params.batch_size,
                                      device=self.params.device)
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def check(self, sample_shape, modality):
        if modality != "images" or len(sample_shape) != 3 or sample_shape[0] not in (1, 3):
            raise gankit.DataError(f"inception_v3 takes 1- or 3-channel images (C, H, W), the samples are {tuple(sample_shape)}")

    def _run(self, x):
        # features and probabilities of one batch come from one pass
        if self._last is None or self._last[0] is not x:  # holds x, so identity is safe
            feats, logits = self.net.run(x)
            self._last = (x, feats, logits)
        return self._last[1], self._last[2]

    def features(self, x):
        return self._run(x)[0]

    def probabilities(self, x):
        logits = self._run(x)[1]
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


@gankit.hookimpl
def gankit_register_feature_extractors():
    return [gankit.FeatureExtractorRecord(
        name="inception_v3", params=InceptionParams, factory=InceptionV3, requires=("torch",),
        description="FID InceptionV3 pool features (torch; user-supplied pytorch-fid weights file)",
        metadata={"features": 2048, "classes": 1008, "input": "resized to 299x299"},
    )]
