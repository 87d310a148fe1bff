"""Improved precision and recall (k-NN manifolds), against a scikit-learn implementation."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from gankit.metrics import knn_radii, precision_recall


def reference(real, fake, k=3):
    """Kynkäänniemi et al. 2019 with scikit-learn's neighbour search."""
    def radii(x):
        dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
        return dist[:, k]  # column 0 is the point itself

    def coverage(points, support):
        r = radii(support)
        d = np.linalg.norm(points[:, None] - support[None], axis=-1)
        return (d <= r[None]).any(axis=1).mean()

    return coverage(fake, real), coverage(real, fake)


def test_matches_reference_implementation():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 5))
    fake = rng.normal(size=(300, 5)) * 1.5 + 0.5
    p, r = precision_recall(real, fake, k=3)
    ep, er = reference(real, fake, k=3)
    assert (p, r) == (pytest.approx(ep), pytest.approx(er))
    assert 0 < p < 1 and 0 < r < 1


def test_radii_are_kth_neighbour_distances():
    x = np.array([[0.0], [1.0], [3.0], [6.0]])
    np.testing.assert_allclose(knn_radii(x, 1), [1, 1, 2, 3])
    np.testing.assert_allclose(knn_radii(x, 2), [3, 2, 3, 5])


def test_identical_sets_are_perfect_and_far_sets_are_zero():
    x = np.random.default_rng(1).normal(size=(200, 3))
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 100) == (0.0, 0.0)


def test_mode_collapse_keeps_precision_and_loses_recall():
    rng = np.random.default_rng(2)
    real = np.concatenate([rng.normal(size=(300, 2)) * 0.1 + c for c in ([0, 0], [5, 0], [0, 5])])
    fake = rng.normal(size=(300, 2)) * 0.05  # one of the three modes
    p, r = precision_recall(real, fake)
    assert p > 0.95 and r < 0.4


def test_chunking_does_not_change_the_result():
    from gankit.metrics import manifold_coverage

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(130, 4)), rng.normal(size=(90, 4))
    radii = knn_radii(b, 3, chunk=7)
    np.testing.assert_array_equal(radii, knn_radii(b, 3))
    assert manifold_coverage(a, b, radii, chunk=11) == manifold_coverage(a, b, radii)
