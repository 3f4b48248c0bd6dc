"""ProbCover (Yehuda et al., NeurIPS 2022)."""
import numpy as np
from selector.strategies.probcover import ProbCover, delta_graph, max_coverage, purity_delta, ragged_gather


def blobs(sizes, d=8, spread=0.02, seed=0):
    rng = np.random.default_rng(seed)
    c = np.eye(d)[: len(sizes)] * 2.0
    x = np.concatenate([c[k] + spread * rng.standard_normal((s, d)) for k, s in enumerate(sizes)])
    return x.astype(np.float32), np.repeat(np.arange(len(sizes)), sizes)


def test_known_delta_covers_each_blob_with_one_pick():
    x, y = blobs([200, 80, 30])
    s = ProbCover(delta=1.0).select(x, 3, rng=0)  # blob diameter ~0.2, blobs 2.8 apart
    assert sorted(y[s.indices].tolist()) == [0, 1, 2]
    assert s.scores.tolist() == [200, 80, 30]  # gains: whole blobs, largest first
    assert s.info["coverage"] == 1.0 and s.info["delta"] == 1.0 and s.info["graph"] == "exact"


def test_knn_graph_fallback_and_labeled_cover():
    x, y = blobs([50, 40, 30])
    mask = np.zeros(len(x), bool)
    mask[0] = True  # blob 0 already covered
    s = ProbCover(delta=1.0, exact_max=0, k_graph=60).select(x, 2, labeled_mask=mask, rng=0)
    assert s.info["graph"] == "knn60"
    assert sorted(y[s.indices].tolist()) == [1, 2]


def test_purity_delta_picks_between_blobs():
    x, y = blobs([100, 100], spread=0.05)
    s = ProbCover(n_clusters=2, k_graph=150).select(x, 2, rng=0)
    assert s.info["delta_source"] == "purity"
    # the largest pure delta is the gap between the blobs (~2.83), not inside them
    assert 2.0 < s.info["delta"] < 3.5
    assert sorted(y[s.indices].tolist()) == [0, 1]


def test_purity_delta_hand_case():
    # 1-D points, two clusters; kNN lists written by hand
    sq = np.array([[1.0, 4.0], [1.0, 9.0], [1.0, 16.0], [1.0, 4.0]], np.float32)
    idx = np.array([[1, 2], [0, 2], [3, 0], [2, 1]])
    assign = np.array([0, 0, 1, 1])
    # r(x) = distance to the first neighbour in the other cluster: [2, 3, 4, 2]
    assert purity_delta(sq, idx, assign, purity=0.5) == 3.0  # r >= 3 for 2 of 4
    assert purity_delta(sq, idx, assign, purity=0.25) == 4.0
    assert purity_delta(sq, idx, assign, purity=1.0) == 2.0
    # no impure neighbour at all: the largest neighbour distance
    assert purity_delta(sq, idx, np.zeros(4, int), purity=0.95) == 4.0


def test_max_coverage_hand_case_and_random_tail():
    # balls: 0 -> {0,1,2}, 1 -> {1}, 2 -> {2,3}, 3 -> {3}, 4 -> {4}
    src = np.array([0, 0, 0, 1, 2, 2, 3, 4])
    dst = np.array([0, 1, 2, 1, 2, 3, 3, 4])
    picked, gain, cov = max_coverage(src, dst, 5, np.zeros(5, bool), 3, np.random.default_rng(0))
    assert picked.tolist() == [0, 2, 4] and gain.tolist() == [3, 1, 1] and cov == 1.0
    picked, gain, cov = max_coverage(src, dst, 5, np.zeros(5, bool), 5, np.random.default_rng(0))
    assert sorted(picked.tolist()) == [0, 1, 2, 3, 4] and gain[3:].tolist() == [0, 0]
    mask = np.array([True, False, False, False, False])
    picked, _, _ = max_coverage(src, dst, 5, mask, 2, np.random.default_rng(0))
    assert picked.tolist() == [2, 4]


def test_delta_graph_and_ragged_gather():
    sq = np.array([[0.5, 2.0], [0.5, 3.0], [2.0, 3.0]], np.float32)
    idx = np.array([[1, 2], [0, 2], [0, 1]])
    src, dst = delta_graph(sq, idx, 1.0)
    assert sorted(zip(src.tolist(), dst.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2)]
    ptr = np.array([0, 2, 2, 5])
    data = np.array([10, 11, 12, 13, 14])
    assert ragged_gather(ptr, data, np.array([2, 0, 1])).tolist() == [12, 13, 14, 10, 11]
