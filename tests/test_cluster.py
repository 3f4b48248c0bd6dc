"""selector.cluster: seeded faiss k-means, chunked kNN, range pairs, grouping helpers."""
import functools

import numpy as np
import pytest

from selector.cluster import (
    group_rows,
    kmeans,
    kmeanspp_init,
    knn,
    nearest_centroid,
    range_pairs,
    sample_rows,
    set_threads,
    sq_dists,
)
from tests.blobs import sphere_blobs

blobs = functools.partial(sphere_blobs, d=16, spread=0.05)


def brute_knn(x, q, k, exclude_self):
    d = ((q[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


def test_kmeans_finds_separated_blobs_and_is_seeded():
    x, y = blobs([200, 200, 200])
    c, a, sq = kmeans(x, 3, seed=1, init="k-means++")
    assert c.shape == (3, 16) and c.dtype == np.float32
    assert a.shape == (600,) and a.dtype == np.int64 and sq.dtype == np.float32
    # each blob is one cluster
    for k in range(3):
        assert np.unique(a[y == k]).shape[0] == 1
    assert np.unique(a).shape[0] == 3
    # sqdist is the distance to the assigned centroid, and that centroid is the nearest
    ref = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    np.testing.assert_allclose(sq, ref[np.arange(600), a], atol=1e-5)
    assert (a == ref.argmin(1)).all()
    c2, a2, _ = kmeans(x, 3, seed=1, init="k-means++")
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(c, c2)


def test_kmeans_subsampled_training_assigns_all_points():
    x, _ = blobs([3000, 1000], d=8)
    c, a, sq = kmeans(x, 10, seed=0, max_points_per_centroid=20)  # trains on 200 of 4000
    assert a.shape == (4000,) and a.min() >= 0 and a.max() < 10
    ref = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    assert (a == ref.argmin(1)).mean() > 0.999  # ties aside, nearest centroid
    _, a2, _ = kmeans(x, 10, seed=0, max_points_per_centroid=20)
    np.testing.assert_array_equal(a, a2)


def test_kmeans_bad_k_and_k1():
    x, _ = blobs([10, 10])
    with pytest.raises(ValueError, match="k must be"):
        kmeans(x, 21)
    c, a, sq = kmeans(x, 1)
    np.testing.assert_allclose(c[0], x.mean(0), atol=1e-6)
    assert (a == 0).all()


def test_kmeanspp_init_picks_distinct_rows_and_covers_small_blob():
    x, y = blobs([500, 5], d=8, spread=0.005)
    hit = 0
    for seed in range(10):
        init = kmeanspp_init(x, 2, seed)
        rows = [int(np.flatnonzero((x == r).all(1))[0]) for r in init]
        assert len(set(rows)) == 2
        hit += int(set(y[rows]) == {0, 1})
    assert hit >= 9  # D^2 sampling almost always seeds the 5-point blob


@pytest.mark.parametrize("exclude_self", [True, False])
def test_knn_flat_matches_brute_force(exclude_self):
    x, _ = blobs([150, 100], d=8, spread=0.3)
    sq, idx = knn(x, 5, exclude_self=exclude_self)
    rsq, ridx = brute_knn(x, x, 5, exclude_self)
    np.testing.assert_allclose(sq, rsq, atol=1e-5)
    # indices may differ only on exact distance ties
    np.testing.assert_allclose(((x[idx] - x[:, None]) ** 2).sum(-1), rsq, atol=1e-5)
    if exclude_self:
        assert not (idx == np.arange(250)[:, None]).any()


def test_knn_queries_chunked_and_ivf():
    x, _ = blobs([800, 700, 500], d=8, spread=0.2)
    q = x[::7] + 0.01
    sq, idx = knn(x, 3, queries=q, chunk=17)
    rsq, _ = brute_knn(x, q, 3, False)
    np.testing.assert_allclose(sq, rsq, atol=1e-5)
    # IVF branch (forced by a small flat_max): approximate but mostly right, seeded
    sq2, idx2 = knn(x, 3, queries=q, flat_max=100, nprobe=8, seed=3)
    assert (idx2[:, 0] == idx[:, 0]).mean() > 0.9
    sq3, idx3 = knn(x, 3, queries=q, flat_max=100, nprobe=8, seed=3)
    np.testing.assert_array_equal(idx2, idx3)


def test_knn_exclude_self_with_duplicates():
    x = np.zeros((4, 3), np.float32)
    x[3] = 1
    sq, idx = knn(x, 2)
    for i in range(4):
        assert i not in idx[i]
    assert set(idx[0]) == {1, 2}


def test_knn_validates():
    x, _ = blobs([5, 5])
    with pytest.raises(ValueError):
        knn(x, 10)  # 10 + self > 10 rows
    with pytest.raises(ValueError):
        knn(x, 2, queries=np.zeros((3, 4), np.float32))


def test_nearest_centroid_and_sq_dists():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 6)).astype(np.float32)
    b = rng.standard_normal((7, 6)).astype(np.float32)
    d = sq_dists(a, b)
    ref = ((a[:, None, :].astype(np.float64) - b[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d, ref, atol=1e-4)
    sq, i = nearest_centroid(a, b)
    np.testing.assert_array_equal(i, ref.argmin(1))
    np.testing.assert_allclose(sq, ref.min(1), atol=1e-4)


def test_range_pairs_matches_brute_force_and_caps():
    x, _ = blobs([60, 40], d=4, spread=0.3)
    r = 0.3
    src, dst = range_pairs(x, r, chunk=13)
    d = np.sqrt(((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1))
    ref = {(i, j) for i, j in zip(*np.nonzero(d < r)) if i != j}
    got = set(zip(src.tolist(), dst.tolist()))
    # float32 vs float64 may disagree only at the boundary
    assert len(got ^ ref) <= 2
    assert range_pairs(x, 10.0, max_pairs=100) is None


def test_group_rows_and_sample_rows():
    labels = np.array([2, 0, 2, 1, 0, 2])
    ordered, bounds = group_rows(labels, 4)
    assert ordered[bounds[0]:bounds[1]].tolist() == [1, 4]
    assert ordered[bounds[2]:bounds[3]].tolist() == [0, 2, 5]
    assert bounds[3] == bounds[4]  # empty group 3
    ordered, bounds = group_rows(labels, 3, rows=np.array([0, 3, 5]))
    assert ordered.tolist() == [3, 0, 5]
    s = sample_rows(100, 10, 0)
    assert s.shape == (10,) and np.unique(s).shape == (10,) and (np.diff(s) > 0).all()
    np.testing.assert_array_equal(s, sample_rows(100, 10, 0))
    assert sample_rows(5, 10, 0).tolist() == [0, 1, 2, 3, 4]


def test_set_threads():
    assert set_threads(1) == 1
    assert set_threads() >= 1
    with pytest.raises(ValueError):
        set_threads(0)


def test_greedy_kmeanspp_covers_more_unequal_blobs_than_plain_d2_sampling():
    # 30 blobs whose sizes fall from 300 to 10: seeds of 30 centroids land in more distinct blobs with
    # the greedy variant (best of 2 + log k candidates per step) than with plain D^2 sampling
    from tests.blobs import geometric_sizes
    x, y = sphere_blobs(geometric_sizes(30, n=2500, ratio=30, minimum=10), d=16, spread=0.1, seed=4)
    def hit(trials):
        out = []
        for seed in range(8):
            init = kmeanspp_init(x, 30, seed, n_local_trials=trials)
            rows = [int(np.flatnonzero((x == r).all(1))[0]) for r in init]
            assert len(set(rows)) == 30
            out.append(np.unique(y[rows]).shape[0])
        return np.mean(out)
    assert hit(None) >= hit(1) + 2  # measured 24.8 against 20.1 blobs


def test_kmeanspp_init_rejects_bad_k():
    x, _ = blobs([5, 5])
    with pytest.raises(ValueError, match="k must be in"):
        kmeanspp_init(x, 11, 0)


def test_pca_project_matches_sklearn_and_keeps_narrow_input():
    from sklearn.decomposition import PCA

    from selector.cluster import pca_project

    rng = np.random.default_rng(0)
    # three directions of falling variance plus small noise in 20 dimensions
    x = (rng.standard_normal((3000, 3)) * [5.0, 2.0, 1.0]) @ rng.standard_normal((3, 20))
    x = (x + 0.01 * rng.standard_normal((3000, 20))).astype(np.float32)
    z = pca_project(x, 3, seed=1, max_train=3000, chunk=700)  # chunked apply, the whole pool as the fit
    ref = PCA(3).fit_transform(x.astype(np.float64))
    assert z.shape == (3000, 3) and z.dtype == np.float32
    for j in range(3):  # each axis equal up to its sign
        err = min(np.abs(z[:, j] - ref[:, j]).max(), np.abs(z[:, j] + ref[:, j]).max())
        assert err < 1e-2 * np.abs(ref[:, j]).max()
    # a seeded sample fit: same seed, same projection; distances between rows nearly kept (3 of 20 axes hold them)
    z1, z2 = pca_project(x, 3, seed=5, max_train=500), pca_project(x, 3, seed=5, max_train=500)
    assert np.array_equal(z1, z2)
    d_full, d_red = np.linalg.norm(x[:100] - x[100:200], axis=1), np.linalg.norm(z1[:100] - z1[100:200], axis=1)
    assert np.allclose(d_full, d_red, rtol=0.02, atol=0.05)
    wide = pca_project(x, 20)
    assert np.array_equal(wide, x) and not np.shares_memory(wide, x)
    with pytest.raises(ValueError, match="dim must be at least 1, got 0"):
        pca_project(x, 0)
    with pytest.raises(ValueError, match="needs more than 3 rows, got 3"):
        pca_project(x[:3], 3)
