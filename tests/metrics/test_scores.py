"""Inception-style score and the VEEGAN/PacGAN mode metrics, on constructed cases."""

import numpy as np
import pytest

from gankit.metrics import inception_score, kl_to_uniform, mode_statistics


def test_inception_score_bounds():
    k, n = 10, 1000
    confident_and_diverse = np.eye(k)[np.arange(n) % k]
    assert inception_score(confident_and_diverse)[0] == pytest.approx(k, rel=1e-6)
    assert inception_score(np.full((n, k), 1 / k))[0] == pytest.approx(1.0)
    assert inception_score(np.eye(k)[np.zeros(n, int)])[0] == pytest.approx(1.0)  # collapsed


def test_inception_score_matches_direct_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 4)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    py = p.mean(0)
    expected = np.exp(np.mean([np.sum(pi * np.log(pi / py)) for pi in p]))
    assert inception_score(p, splits=1)[0] == pytest.approx(expected, rel=1e-9)


def test_kl_to_uniform():
    assert kl_to_uniform([5, 5, 5, 5]) == 0.0
    assert kl_to_uniform([5, 5, 0, 0]) == pytest.approx(np.log(2))
    assert kl_to_uniform([1, 0, 0, 0, 0, 0, 0, 0]) == pytest.approx(np.log(8))


def ring(n_modes=8):
    a = 2 * np.pi * np.arange(n_modes) / n_modes
    return np.stack([np.cos(a), np.sin(a)], 1)


def test_perfect_samples():
    modes = ring()
    rng = np.random.default_rng(0)
    x = modes[np.arange(2400) % 8] + 0.01 * rng.normal(size=(2400, 2))
    s = mode_statistics(x, modes, std=0.01)
    assert s["modes_captured"] == 8 and s["modes_total"] == 8
    assert s["high_quality"] > 98  # 3σ in 2D holds 98.9% of a Gaussian
    assert s["mode_kl"] == pytest.approx(0.0, abs=1e-9)


def test_collapsed_and_off_manifold_samples():
    modes = ring()
    half = np.repeat(modes[:4], 100, axis=0)
    s = mode_statistics(half, modes, std=0.01)
    assert s["modes_captured"] == 4 and s["high_quality"] == 100 and s["mode_kl"] == pytest.approx(np.log(2))
    off = half * 0.9  # 0.1 from each mode = 10σ
    s = mode_statistics(off, modes, std=0.01)
    assert s["modes_captured"] == 0 and s["high_quality"] == 0


def test_threshold_is_in_standard_deviations():
    modes = np.zeros((1, 2))
    x = np.array([[0.029, 0.0], [0.031, 0.0]])
    assert mode_statistics(x, modes, std=0.01)["high_quality"] == 50
    assert mode_statistics(x, modes, std=0.01, threshold=4)["high_quality"] == 100
