"""Built-in feature extractors for metrics (numpy only).

* ``identity``: each sample flattened — for low-dimensional data (the 2D toys, 8x8 digits).
* ``mnist_classifier``: the MNIST classifier shipped with gankit (a numpy MLP trained by
  ``python -m gankit_plugins.mnist_classifier.train``, about 95% validation accuracy):
  128 penultimate activations as features (a digits FID), softmax probabilities for the
  inception score and class coverage. Takes ``(1, 28, 28)`` images in [-1, 1].

The InceptionV3 extractor needs a framework; the torch backend registers it
(``inception_v3``, see ``gankit_torch.inception``).
"""

from __future__ import annotations

import numpy as np

import gankit


class Identity(gankit.FeatureExtractor):
    """Samples as feature vectors, flattened."""

    def features(self, x):
        x = np.asarray(x, np.float64)
        return x.reshape(len(x), -1)


class MNISTClassifier(gankit.FeatureExtractor):
    """The shipped MNIST classifier (numpy inference)."""

    num_classes = 10

    def __init__(self, params=None):
        super().__init__(params)
        from gankit_plugins.mnist_classifier.model import Classifier

        self.model = Classifier()

    def check(self, sample_shape, modality):
        if tuple(sample_shape) != (1, 28, 28):
            raise gankit.DataError(
                f"the mnist_classifier feature extractor takes (1, 28, 28) images, the samples are {tuple(sample_shape)}",
                hint="use features = 'identity' or another extractor for this data",
            )

    def features(self, x):
        return self.model.features(x)

    def probabilities(self, x):
        return self.model.probabilities(x)


@gankit.hookimpl
def gankit_register_feature_extractors():
    R = gankit.FeatureExtractorRecord
    return [
        R(name="identity", factory=Identity, description="Samples flattened (low-dimensional data)"),
        R(name="mnist_classifier", factory=MNISTClassifier,
          description="gankit's MNIST classifier (numpy): 128-d features, 10-class probabilities",
          metadata={"input": "(1, 28, 28) in [-1, 1]"}),
    ]
