"""The shipped MNIST classifier, in numpy: a 784-256-128-10 ReLU network.

Inference and training both live here so the training script and the feature
extractor share one definition. Inputs are MNIST images in gankit's layout,
``(n, 1, 28, 28)`` in [-1, 1]; the 128 penultimate activations are the features
(for a digits FID), the softmax of the logits the class probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "mnist_classifier.safetensors"
CARD = HERE / "mnist_classifier.json"
LAYERS = (784, 256, 128, 10)


def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """He-uniform weights, zero biases."""
    params = {}
    for i, (n_in, n_out) in enumerate(zip(LAYERS[:-1], LAYERS[1:])):
        bound = np.sqrt(6.0 / n_in)
        params[f"{i}.weight"] = rng.uniform(-bound, bound, (n_in, n_out)).astype(np.float32)
        params[f"{i}.bias"] = np.zeros(n_out, np.float32)
    return params


def forward(params: dict[str, np.ndarray], x: np.ndarray, keep: bool = False):
    """Logits (and, with ``keep``, every layer's input for backprop)."""
    h = np.asarray(x, np.float32).reshape(len(x), -1)
    acts = [h]
    n = len(LAYERS) - 1
    for i in range(n):
        h = h @ params[f"{i}.weight"] + params[f"{i}.bias"]
        if i < n - 1:
            h = np.maximum(h, 0)
            acts.append(h)
    return (h, acts) if keep else h


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def load_params(path: Path = WEIGHTS) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def card(path: Path = CARD) -> dict:
    return json.loads(path.read_text())


class Classifier:
    """Features and probabilities of the shipped model, in batches."""

    def __init__(self, params: dict[str, np.ndarray] | None = None, batch_size: int = 1000):
        self.params = params if params is not None else load_params()
        self.batch_size = batch_size

    def _map(self, x: np.ndarray, fn) -> np.ndarray:
        x = np.asarray(x, np.float32)
        return np.concatenate([fn(x[s : s + self.batch_size]) for s in range(0, max(len(x), 1), self.batch_size)])

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._map(x, lambda b: forward(self.params, b))

    def features(self, x: np.ndarray) -> np.ndarray:
        return self._map(x, lambda b: forward(self.params, b, keep=True)[1][-1])

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x).astype(np.float64))
