"""Fréchet distance: closed forms for Gaussians, and two independent square-root routes."""

import numpy as np
import pytest
from scipy import linalg

import gankit
from gankit.metrics import frechet_distance, frechet_distance_features, trace_sqrt_product


def random_cov(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / (rank or d)


def ttur_reference(mu1, s1, mu2, s2, eps=1e-6):
    """The formula of the TTUR / pytorch-fid reference code, written out independently."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def test_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    for method in ("eig", "sqrtm"):
        assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method) == pytest.approx(expected, rel=1e-10)


def test_scaled_covariance_closed_form():
    # Σ2 = c² Σ1  =>  tr((Σ1 Σ2)^½) = c tr Σ1  =>  FD = ‖Δμ‖² + (1 - c)² tr Σ1
    rng = np.random.default_rng(1)
    s = random_cov(rng, 20)
    mu = rng.normal(size=20)
    for c in (0.5, 1.0, 3.0):
        expected = 4.0 + (1 - c) ** 2 * np.trace(s)
        assert frechet_distance(mu, s, mu + np.r_[2.0, np.zeros(19)], c**2 * s) == pytest.approx(expected, rel=1e-9)


def test_one_dimensional_is_w2_squared():
    assert frechet_distance([0.0], [[4.0]], [1.0], [[1.0]]) == pytest.approx(1.0 + (2.0 - 1.0) ** 2)


@pytest.mark.parametrize("d, rank", [(8, None), (64, None), (64, 10)])
def test_eigenvalue_route_matches_scipy_sqrtm(d, rank):
    rng = np.random.default_rng(d + (rank or 0))
    s1, s2 = random_cov(rng, d, rank), random_cov(rng, d, rank)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    eig = frechet_distance(mu1, s1, mu2, s2, method="eig")
    assert eig == pytest.approx(ttur_reference(mu1, s1, mu2, s2), rel=1e-6, abs=1e-6)
    assert eig == pytest.approx(frechet_distance(mu1, s1, mu2, s2, method="sqrtm"), rel=1e-6, abs=1e-6)
    assert trace_sqrt_product(s1, s2) == pytest.approx(trace_sqrt_product(s2, s1), rel=1e-8)


def test_sample_estimate_converges_to_the_gaussians_distance():
    rng = np.random.default_rng(2)
    d = 4
    s1, s2 = random_cov(rng, d), random_cov(rng, d)
    mu1, mu2 = np.zeros(d), np.ones(d)
    x = rng.multivariate_normal(mu1, s1, size=200_000)
    y = rng.multivariate_normal(mu2, s2, size=200_000)
    assert frechet_distance_features(x, y) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=0.02)


def test_properties():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(500, 6)), rng.normal(size=(400, 6)) * 2 + 1
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance_features(x, y) == pytest.approx(frechet_distance_features(y, x), rel=1e-9)
    assert frechet_distance_features(x + 5, y + 5) == pytest.approx(frechet_distance_features(x, y), rel=1e-9)
    assert gankit.frechet_distance is frechet_distance  # public API


def test_mismatched_statistics_are_a_data_error():
    with pytest.raises(gankit.DataError, match="mismatched"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
