"""The class count's votes besides the eigengap: silhouette sweep, HDBSCAN, stability of k-means partitions."""
import numpy as np
import pytest
from selector.strategies.count_votes import hdbscan_count, silhouette_sweep

from tests.blobs import geometric_sizes, sphere_blobs


def unequal_blobs(k, n=3000, d=32, ratio=10.0, spread=0.04, seed=0):
    """k Gaussian blobs on the unit sphere, sizes decaying geometrically by ``ratio``."""
    return sphere_blobs(geometric_sizes(k, n, ratio), d, spread, seed)


def test_stability_count_finds_separated_blobs_and_is_seeded():
    from selector.strategies.count_votes import stability_count

    x, _ = sphere_blobs([300, 250, 200, 150, 100, 60], d=16, spread=0.03, seed=4)
    k, lo, hi = stability_count(x, 40, seed=0)
    assert lo <= 6 <= hi and 5 <= k <= 8  # six well-separated blobs: partitions of the two halves agree at k = 6
    assert stability_count(x, 40, seed=0) == (k, lo, hi)
    assert stability_count(x[:15], 40) == (1, 1, 1)  # too few rows for two halves of two groups


def test_silhouette_matches_scikit_learn():
    from selector.strategies.count_votes import mean_silhouette
    from sklearn.metrics import silhouette_score

    from selector.cluster import sq_dists

    x, y = unequal_blobs(4, n=400, spread=0.3, seed=3)
    rng = np.random.default_rng(0)
    lab = np.where(rng.random(len(y)) < 0.2, rng.integers(0, 4, len(y)), y)  # some rows mislabelled
    d = np.sqrt(np.maximum(sq_dists(x, x), 0))
    np.fill_diagonal(d, 0)
    assert mean_silhouette(d, lab) == pytest.approx(silhouette_score(d, lab, metric="precomputed"), abs=1e-4)


@pytest.mark.parametrize("k", [3, 8])
def test_sweep_and_hdbscan_find_well_separated_blobs(k):
    x, _ = sphere_blobs([150] * k, d=32, spread=0.05, seed=k)
    best, lo, hi, score = silhouette_sweep(x, max_k=40, seed=0)
    assert lo <= k <= hi and score > 0.5
    assert hdbscan_count(x, seed=0) == k
