"""TypiClust (Hacohen et al., ICML 2022)."""
import numpy as np
import pytest
from selector.strategies.typiclust import TypiClust, typicality, typiclust_pick


def brute_typicality(x, k):
    x = x.astype(np.float64)
    out = []
    for i in range(len(x)):
        d = sorted(np.sqrt(((x[i] - x[j]) ** 2).sum()) for j in range(len(x)) if j != i)
        out.append(1.0 / (np.mean(d[:k]) + 1e-8))
    return np.array(out)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_typicality_matches_loop(k):
    x = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    np.testing.assert_allclose(typicality(x, k), brute_typicality(x, k), rtol=1e-5)


def test_typicality_candidates_match_full():
    x = np.random.default_rng(1).standard_normal((60, 4)).astype(np.float32)
    cand = np.array([0, 5, 59, 17])
    np.testing.assert_allclose(typicality(x, 5, candidates=cand), typicality(x, 5)[cand], rtol=1e-5)


def test_typicality_hand_case():
    # a tight triple and one far point: the middle of the triple is the most typical
    x = np.array([[0, 0], [0.1, 0], [-0.1, 0], [3, 0]], dtype=np.float32)
    t = typicality(x, 2)
    assert int(np.argmax(t)) == 0
    np.testing.assert_allclose(t[0], 1 / 0.1, rtol=1e-5)
    with pytest.raises(ValueError):
        typicality(x, 4)


def test_pick_order_fewest_labeled_then_largest_and_drops_small():
    rng = np.random.default_rng(2)
    sizes = [30, 50, 4, 20]  # cluster 2 has <= 5 points: dropped
    x = np.concatenate([rng.standard_normal((s, 3)) + 10 * k for k, s in enumerate(sizes)]).astype(np.float32)
    assign = np.repeat(np.arange(4), sizes)
    mask = np.zeros(len(x), bool)
    mask[0] = True  # cluster 0 has one labeled point
    idx, scores, groups = typiclust_pick(x, assign, mask, 4, k_nn=20, min_cluster_size=5,
                                         max_cluster_points=10_000, rng=np.random.default_rng(0))
    # unlabeled clusters first, largest first (1 then 3), then cluster 0, then cycle to 1
    assert groups.tolist() == [1, 3, 0, 1]
    assert 2 not in groups
    # first pick is the most typical point of cluster 1 (K = min(20, 50 // 2))
    rows = np.flatnonzero(assign == 1)
    assert idx[0] == rows[np.argmax(brute_typicality(x[rows], 20))]
    assert not mask[idx].any()


def test_strategy_one_pick_per_blob():
    rng = np.random.default_rng(3)
    c = rng.standard_normal((6, 16)) * 3
    x = np.concatenate([c[k] + 0.1 * rng.standard_normal((80, 16)) for k in range(6)]).astype(np.float32)
    y = np.repeat(np.arange(6), 80)
    s = TypiClust().select(x, 6, rng=0)
    assert s.n_groups == 6
    # k-means may split a blob and merge two others, but typical picks land in >= 5 blobs
    assert np.unique(y[s.indices]).shape[0] >= 5


def test_typicality_faiss_path_matches_dense_path(monkeypatch):
    import selector.strategies.typiclust as tc
    x = np.random.default_rng(4).standard_normal((50, 5)).astype(np.float32)
    dense = typicality(x, 6)
    dense_c = typicality(x, 6, candidates=np.array([3, 7, 49]))
    monkeypatch.setattr(tc, "DENSE_MAX", 0)
    np.testing.assert_allclose(typicality(x, 6), dense, rtol=1e-5)
    np.testing.assert_allclose(typicality(x, 6, candidates=np.array([3, 7, 49])), dense_c, rtol=1e-5)
    np.testing.assert_allclose(dense, brute_typicality(x, 6), rtol=1e-5)


def test_most_typical_with_a_pair_bound_samples_the_cluster_and_still_finds_its_core():
    from selector.strategies.typiclust import most_typical

    rng = np.random.default_rng(0)
    # one dense core of 300 rows inside a wide halo of 2,700: the most typical row is a core row
    x = np.concatenate([0.05 * rng.standard_normal((300, 8)), 2.0 * rng.standard_normal((2700, 8))]).astype(np.float32)
    rows = np.arange(3000)
    exact, _ = most_typical(x, rows, 20, 5000, np.random.default_rng(1))
    bounded, _ = most_typical(x, rows, 20, 5000, np.random.default_rng(1), max_pairs=400 ** 2)
    assert exact < 300 and bounded < 300
    # under the bound nothing changes: the same row as without one, and the rng is not drawn from
    r1, r2 = np.random.default_rng(2), np.random.default_rng(2)
    assert most_typical(x, rows[:500], 20, 5000, r1, max_pairs=500 ** 2) == most_typical(x, rows[:500], 20, 5000, r2)
    assert r1.integers(10**9) == r2.integers(10**9)
    # the sample never drops below 2 k_nn + 1 rows, so a tiny bound still leaves neighbours to count
    j, t = most_typical(x, rows, 20, 5000, np.random.default_rng(3), max_pairs=1)
    assert 0 <= j < 3000 and t > 0
