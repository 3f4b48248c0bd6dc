"""Typical k-center (typcover): weighted k-center over typical cluster representatives."""
import numpy as np
import pytest
from selector.strategies import get_strategy
from selector.strategies.typcover import TypCover, typical_candidates, weighted_kcenter

from tests.blobs import sphere_blobs


def brute_weighted_kcenter(cand, weight, centers, n):
    """Reference: recompute every distance at each step (float64)."""
    cand = cand.astype(np.float64)
    chosen_vecs = [c.astype(np.float64) for c in centers]
    out = []
    for _ in range(n):
        best, best_s = -1, -np.inf
        for i in range(cand.shape[0]):
            if i in out:
                continue
            if chosen_vecs:
                d = min(np.linalg.norm(cand[i] - c) for c in chosen_vecs)
                s = weight[i] * d
            else:
                s = weight[i] * 1e30
            if s > best_s:
                best, best_s = i, s
        out.append(best)
        chosen_vecs.append(cand[best])
    return out


@pytest.mark.parametrize("with_centers", [False, True])
@pytest.mark.parametrize("density", [0.0, 0.5])
def test_weighted_kcenter_matches_reference(with_centers, density):
    rng = np.random.default_rng(3)
    cand = rng.standard_normal((60, 4)).astype(np.float32)
    weight = rng.integers(1, 50, size=60).astype(np.float64) ** density
    centers = rng.standard_normal((3, 4)).astype(np.float32) if with_centers else np.zeros((0, 4), np.float32)
    got, rad = weighted_kcenter(cand, weight, centers, 15)
    assert got.tolist() == brute_weighted_kcenter(cand, weight, list(centers), 15)
    assert len(set(got.tolist())) == 15
    if with_centers and density == 0.0:
        assert (np.diff(rad) <= 1e-6).all()  # unweighted greedy radii never increase
    if not with_centers:
        assert np.isinf(rad[0]) and got[0] == int(np.argmax(weight))  # first pick: the heaviest


def test_typical_candidates_are_the_densest_point_of_each_cluster():
    # two clusters: a tight core with one far member each; the candidate is a core point
    x = np.array([[0, 0], [0.01, 0], [0, 0.01], [0.5, 0.5],
                  [5, 5], [5.01, 5], [5, 5.01], [4, 4], [9, 9]], dtype=np.float32)
    assign = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    rows, cl, sizes = typical_candidates(x, assign, np.ones(9, bool), k_nn=2, min_size=2, max_points=100,
                                         rng=np.random.default_rng(0))
    assert cl.tolist() == [0, 1] and sizes.tolist() == [4, 4]  # the singleton cluster 2 offers none
    assert rows[0] in (0, 1, 2) and rows[1] in (4, 5, 6)


def test_finds_rare_blobs_with_typical_picks():
    # a long tail of well-separated blobs: 600 ... 4 points; B = number of blobs
    sizes = [600, 300, 150, 80, 40, 20, 10, 6, 4, 4]
    x, blob = sphere_blobs(sizes, d=32, spread=0.05, seed=1)
    sel = TypCover().select(x, len(sizes), rng=0)
    assert len(set(blob[sel.indices].tolist())) == len(sizes)  # every blob, even the rarest
    # typical, not extreme: the picks sit nearer their blob's mean than plain k-center's picks do
    kc = get_strategy("kcenter").select(x, len(sizes), rng=0)

    def rel_dist(idx):
        out = []
        for i in idx:
            members = x[blob == blob[i]]
            centre = members.mean(0)
            out.append(np.linalg.norm(x[i] - centre) / np.median(np.linalg.norm(members - centre, axis=1)))
        return float(np.mean(out))

    assert rel_dist(sel.indices) < rel_dist(kc.indices)


def test_plain_kcenter_takes_outliers_typcover_does_not():
    rng = np.random.default_rng(2)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float64)
    x = np.concatenate([c + 0.5 * rng.standard_normal((300, 2)) for c in centres]
                       + [np.array([[30.0, 30.0], [-30.0, 0.0], [0.0, -30.0]])]).astype(np.float32)
    blob = np.concatenate([np.repeat([0, 1, 2], 300), [-1, -1, -1]])
    kc = get_strategy("kcenter").select(x, 3, rng=0)
    tc = TypCover().select(x, 3, rng=0)
    assert (blob[kc.indices] == -1).sum() >= 2  # the farthest points are the isolated ones
    assert sorted(blob[tc.indices].tolist()) == [0, 1, 2]  # one typical item per blob


def test_labeled_items_are_covered_not_repicked_and_same_seed_same_picks():
    x, blob = sphere_blobs([200, 200, 200, 200], d=16, spread=0.05, seed=4)
    mask = np.zeros(x.shape[0], bool)
    mask[blob == 0] = True  # blob 0 already labeled
    a = TypCover().select(x, 3, labeled_mask=mask, rng=7)
    b = TypCover().select(x, 3, labeled_mask=mask, rng=7)
    assert a.indices.tolist() == b.indices.tolist()
    assert not mask[a.indices].any()
    assert sorted(blob[a.indices].tolist()) == [1, 2, 3]


def test_budget_above_candidates_is_filled_by_kcenter():
    x, _ = sphere_blobs([30, 30], d=8, spread=0.05, seed=5)
    sel = TypCover(oversample=1.0).select(x, 50, rng=0)
    assert sel.indices.shape[0] == 50 and len(set(sel.indices.tolist())) == 50


def test_rejects_bad_oversample():
    with pytest.raises(ValueError, match="oversample"):
        TypCover(oversample=0.5)


def test_class_count_is_reported_and_never_changes_the_picks():
    x, blob = sphere_blobs([400, 200, 100, 50, 25], d=32, spread=0.05, seed=6)
    with_count = TypCover().select(x, 10, rng=3)
    without = TypCover(count_classes=False).select(x, 10, rng=3)
    assert with_count.indices.tolist() == without.indices.tolist()
    assert without.n_groups is None and "k_range" not in without.info
    assert with_count.n_groups == 5 and with_count.info["k"] == 5
    lo, hi = with_count.info["k_range"]
    assert lo <= 5 <= hi
    # each estimated group is one blob: picks in the same blob share a group
    for g in set(with_count.groups.tolist()):
        assert len(set(blob[with_count.indices[with_count.groups == g]].tolist())) == 1


def test_typical_share_spends_part_of_the_budget_on_typiclust_picks():
    from selector.strategies.typiclust import typiclust_pick  # noqa: F401  (the picks it reuses)

    x, blob = sphere_blobs([500, 300, 100, 20, 10], d=16, spread=0.05, seed=8)
    sel = TypCover(typical_share=0.5, count_classes=False).select(x, 10, rng=1)
    again = TypCover(typical_share=0.5, count_classes=False).select(x, 10, rng=1)
    assert sel.indices.tolist() == again.indices.tolist()
    assert len(set(sel.indices.tolist())) == 10
    assert len(set(blob[sel.indices].tolist())) == 5  # the covering half still reaches the small blobs
    # the typical half sits in slots 0, 2, 4, ...: TypiClust's picks, one per k-means cluster (here: blob)
    typical_slots = blob[sel.indices[0::2]]
    assert sorted(typical_slots.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="typical_share"):
        TypCover(typical_share=1.5)


def test_pairs_per_cluster_shares_the_total_with_a_floor():
    from selector.strategies.typcover import pairs_per_cluster

    assert pairs_per_cluster(250_000_000, 1000) == 250_000
    assert pairs_per_cluster(250_000_000, 10) == 25_000_000
    assert pairs_per_cluster(1000, 10) == 250_000  # never below a 500-row sample
    assert pairs_per_cluster(1000, 10, floor=7) == 100


def test_wide_embeddings_are_chosen_on_their_principal_axes():
    x, y = sphere_blobs([200, 150, 100, 40, 12], d=32, seed=3)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((256, 32)))
    wide = (x @ q.T).astype(np.float32)  # the same pool embedded isometrically in 256 dimensions
    narrow = TypCover(count_classes=False).select(x, 10, rng=0)
    assert np.array_equal(narrow.indices, TypCover(count_classes=False, pca_dim=0).select(x, 10, rng=0).indices)
    picked = TypCover(count_classes=False, pca_dim=16).select(wide, 10, rng=0)
    assert np.unique(y[picked.indices]).shape[0] == 5  # every blob, the rare one of 12 included
    again = TypCover(count_classes=False, pca_dim=16).select(wide, 10, rng=0)
    assert np.array_equal(picked.indices, again.indices)
