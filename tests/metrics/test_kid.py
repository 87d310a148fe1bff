"""KID: the unbiased MMD² with the cubic kernel, checked against an independent loop
implementation with scikit-learn's kernel, and against closed forms."""

import numpy as np
import pytest
from sklearn.metrics.pairwise import polynomial_kernel as sk_poly

from gankit.metrics import kernel_distance, mmd2_unbiased, polynomial_kernel


def mmd2_by_definition(x, y, degree=3):
    """Unbiased MMD², term by term: off-diagonal pairs within each set, all cross pairs."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** degree  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kernel_matches_scikit_learn():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    np.testing.assert_allclose(polynomial_kernel(x, y), sk_poly(x, y, degree=3, gamma=1 / 5, coef0=1), rtol=1e-12)


def test_unbiased_estimate_matches_the_definition():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 0.3
    k = lambda a, b: sk_poly(a, b, degree=3, gamma=1 / 4, coef0=1)  # noqa: E731
    assert mmd2_unbiased(k(x, x), k(y, y), k(x, y)) == pytest.approx(mmd2_by_definition(x, y), rel=1e-10)
    # one subset of the full size is the plain estimate
    mean, std = kernel_distance(x, y, subsets=1, subset_size=30)
    assert mean == pytest.approx(mmd2_by_definition(x, y), rel=1e-10) and std == 0


def test_linear_kernel_closed_form():
    # degree 1: MMD² = γ ‖μx − μy‖² exactly in expectation
    rng = np.random.default_rng(2)
    d = 3
    x = rng.normal(size=(10_000, d))
    y = rng.normal(size=(10_000, d)) + np.array([1.0, -1.0, 0.5])
    mean, _ = kernel_distance(x, y, subsets=10, subset_size=1000, degree=1, seed=0)
    assert mean == pytest.approx((1 + 1 + 0.25) / d, rel=0.05)


def test_unbiased_around_zero_for_one_distribution():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    mean, std = kernel_distance(x, y, subsets=20, subset_size=300)
    assert abs(mean) < 3 * std / np.sqrt(20) + 1e-3
    far, _ = kernel_distance(x, y + 1, subsets=20, subset_size=300)
    assert far > 20 * std


def test_seeded_and_subset_size_capped():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(50, 2)), rng.normal(size=(40, 2))
    assert kernel_distance(x, y, seed=1) == kernel_distance(x, y, seed=1)
    assert kernel_distance(x, y, subsets=5, subset_size=10**6)[0] == pytest.approx(
        kernel_distance(x, y, subsets=5, subset_size=40)[0])
