"""The default class-balanced strategy."""
import numpy as np
import pytest
from selector.strategies.balanced import Balanced, even_allocation
from selector.strategies.typiclust import typicality

from tests.blobs import sphere_blobs


def test_even_allocation():
    assert even_allocation(np.array([100, 100, 100]), np.zeros(3), 9).tolist() == [3, 3, 3]
    # remainder: fewest labeled first, then larger group
    assert even_allocation(np.array([100, 50, 80]), np.array([2, 0, 0]), 5).tolist() == [1, 2, 2]
    assert even_allocation(np.array([100, 50, 80]), np.zeros(3), 2).tolist() == [1, 0, 1]
    # a group with little room gives its excess to the others
    assert even_allocation(np.array([1, 100, 100]), np.zeros(3), 9).tolist() == [1, 4, 4]
    assert even_allocation(np.array([2, 3]), np.zeros(2), 5).tolist() == [2, 3]
    with pytest.raises(ValueError):
        even_allocation(np.array([1, 1]), np.zeros(2), 3)


def test_long_tailed_blobs_picked_evenly():
    # imbalance 100 over 5 blobs
    sizes = [2000, 632, 200, 63, 20]
    x, y = sphere_blobs(sizes)
    s = Balanced(explore=0).select(x, 25, rng=0)
    assert s.n_groups == 5
    assert np.bincount(y[s.indices], minlength=5).tolist() == [5, 5, 5, 5, 5]
    # groups reported are consistent: one group per blob
    for g in np.unique(s.groups):
        assert np.unique(y[s.indices[s.groups == g]]).shape[0] == 1
    # rank order is round-robin: the first 5 picks hit 5 different blobs
    assert np.unique(y[s.indices[:5]]).shape[0] == 5


def test_remainder_goes_to_least_covered_blobs():
    sizes = [500, 300, 200, 100]
    x, y = sphere_blobs(sizes, seed=1)
    mask = np.zeros(len(x), bool)
    mask[:10] = True  # blob 0 holds 10 labels
    mask[500:505] = True  # blob 1 holds 5
    s = Balanced(n_classes=4, explore=0).select(x, 6, labeled_mask=mask, rng=0)
    assert s.info["k_source"] == "given"
    # 6 // 4 = 1 each, remainder 2 to the unlabeled blobs 2 and 3
    assert np.bincount(y[s.indices], minlength=4).tolist() == [1, 1, 2, 2]


def test_picks_are_typical_and_spread():
    # one blob, 4 picks: none is an outlier, and they are not near-duplicates
    rng = np.random.default_rng(2)
    x = rng.standard_normal((800, 8)).astype(np.float32)
    x[:5] *= 6  # outliers
    s = Balanced(n_classes=1, explore=0).select(x, 4, rng=0)
    assert not set(s.indices.tolist()) & set(range(5))
    p = x[s.indices]
    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))[np.triu_indices(4, 1)]
    full = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    # the 4 most typical points overall crowd the centre; sub-clusters spread the picks
    top = np.argsort(-typicality(x, 20))[:4]
    d_top = full[np.ix_(top, top)][np.triu_indices(4, 1)]
    assert d.min() > 1.5 * d_top.min()
    # and more typical than average: mean distance to the pool below the pool's average
    assert full[s.indices].mean() < full.mean()


# --------------------------------------------------------------------------- known labels


def _three_blobs(n_per=60, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.eye(d, dtype=np.float32)[:3] * 4.0
    x = np.concatenate([c + 0.2 * rng.normal(size=(n_per, d)).astype(np.float32) for c in centers])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32), np.repeat(np.arange(3), n_per)


def test_water_fill_levels_up_the_least_labeled():
    from selector.strategies.balanced import water_fill

    np.testing.assert_array_equal(water_fill(np.array([10, 0, 0]), np.array([50, 50, 50]), 12), [0, 6, 6])
    np.testing.assert_array_equal(water_fill(np.array([3, 0, 1]), np.array([50, 2, 50]), 6), [1, 2, 3])


def test_known_labels_send_the_budget_to_under_labeled_classes():
    from selector.strategies.balanced import Balanced

    x, blob = _three_blobs()
    mask = np.zeros(len(x), dtype=bool)
    mask[np.flatnonzero(blob == 0)[:10]] = True  # ten labels, all in blob 0
    labels = np.where(mask, blob, -1)
    with_labels = Balanced(n_classes=3, explore=0).select(x, 12, mask, 0, labels=labels)
    without = Balanced(n_classes=3, explore=0).select(x, 12, mask, 0)
    assert np.bincount(blob[with_labels.indices], minlength=3).tolist() == [0, 6, 6]
    assert np.bincount(blob[without.indices], minlength=3).tolist() == [4, 4, 4]  # the documented even split
    # exploring picks stay out of the class that already has the labels
    explored = Balanced(n_classes=3).select(x, 12, mask, 0, labels=labels)
    assert explored.info["n_explore"] == 6
    assert np.bincount(blob[explored.indices], minlength=3)[0] == 0


def test_groups_of_one_known_class_share_its_level():
    from selector.strategies.balanced import class_allocation

    assign = np.repeat(np.arange(4), 30)
    mask = np.zeros(120, dtype=bool)
    mask[[0, 1, 30, 31, 60]] = True
    labels = np.full(120, -1)
    labels[[0, 1, 30, 31, 60]] = [5, 5, 5, 5, 2]  # groups 0 and 1 are both class 5 (4 labels), group 2 is class 2
    alloc = class_allocation(assign, mask, labels, 4, 9)
    # levels: class 5 -> 4 (groups 0+1), class 2 -> 1 (group 2), unseen group 3 -> 0
    assert alloc.sum() == 9 and alloc[3] > alloc[2] > 0
    assert alloc[0] + alloc[1] <= 1


def test_labels_of_unlabeled_items_are_ignored():
    from selector.strategies.balanced import Balanced

    x, blob = _three_blobs(seed=1)
    mask = np.zeros(len(x), dtype=bool)
    a = Balanced(n_classes=3).select(x, 9, mask, 0, labels=blob)  # true labels of an unlabeled pool: no effect
    b = Balanced(n_classes=3).select(x, 9, mask, 0)
    np.testing.assert_array_equal(a.indices, b.indices)


# --------------------------------------------------------------------------- exploration


def test_default_splits_the_budget_between_typical_and_exploring_picks():
    sizes = [2000, 632, 200, 63, 20]
    x, y = sphere_blobs(sizes)
    s = Balanced().select(x, 25, rng=0)
    assert s.info["n_explore"] == 12  # floor(0.5 * 25)
    assert s.info["allocation"] == [3, 3, 3, 2, 2]  # the 13 typical picks, evenly over the 5 groups
    counts = np.bincount(y[s.indices], minlength=5)
    # the exploring half follows the geometry (widest blobs first), as the module doc says; random
    # would give the largest blob about 17 of 25
    assert counts.tolist() == [12, 4, 5, 2, 2]
    # rank order alternates typical and exploring picks: radii (exploring) at odd ranks
    assert np.unique(y[s.indices[:10:2]]).shape[0] == 5


def test_exploring_picks_find_a_class_the_groups_miss():
    # three big blobs and a rare class of 4 points far from everything: a kNN graph of degree 10
    # cannot make 4 points a group, so the typical picks miss it and k-center reaches it first
    x, y = sphere_blobs([600, 600, 600, 4], spread=0.05, seed=3)
    plain = Balanced(n_classes=3, explore=0).select(x, 6, rng=0)
    explored = Balanced(n_classes=3).select(x, 6, rng=0)
    assert 3 not in y[plain.indices]
    assert 3 in y[explored.indices]
    assert explored.info["n_explore"] == 3
    # exploring scores are k-center radii: the rare blob's pick is the farthest from the rest
    far = explored.indices[explored.scores == explored.scores[1::2].max()]
    assert y[far[0]] == 3


def test_explore_is_validated():
    with pytest.raises(ValueError, match="explore"):
        Balanced(explore=1.0)
    with pytest.raises(ValueError, match="explore"):
        Balanced(explore=-0.1)


def test_budget_of_one_is_a_typical_pick():
    x, y = sphere_blobs([300, 300])
    s = Balanced().select(x, 1, rng=0)
    assert s.info["n_explore"] == 0 and len(s) == 1


def test_explore_picks_stay_in_allowed_rows_then_fall_back():
    from selector.strategies.balanced import explore_picks
    from selector.strategies.kcenter import kcenter_greedy

    x, y = sphere_blobs([50, 50, 50], d=8, seed=5)
    centers = np.array([0, 50])
    allowed = y != 2
    picked, radius = explore_picks(x, centers, 5, allowed)
    assert picked.shape == (5,) and not set(picked.tolist()) & {0, 50}
    assert (y[picked] != 2).all()
    assert np.all(np.diff(radius) <= 1e-6)  # greedy radii never grow
    np.testing.assert_array_equal(explore_picks(x, centers, 5)[0], kcenter_greedy(x, centers, 5)[0])
    # only 3 allowed rows are free: those first, then the farthest of all the others
    few = np.zeros(150, dtype=bool)
    few[[0, 50, 1, 2, 3]] = True
    picked, _ = explore_picks(x, centers, 6, few)
    assert sorted(picked[:3].tolist()) == [1, 2, 3] and len(set(picked.tolist())) == 6
    assert y[picked[3]] == 2  # blob 2 holds no center: its points are the farthest


def test_info_reports_the_class_count_with_its_interval():
    from selector.strategies.class_count import report_max_k

    x, _ = sphere_blobs([900, 700, 500, 300, 200, 100])  # 2,700 rows: the whole pool is the subsample
    s = Balanced(explore=0).select(x, 40, rng=0)
    # the eigengap: the whole pool's K, and it again on two subsamples of 80 % of it
    assert s.info["k"] == 6 and s.info["k_per_seed"] == [6, 6, 6]
    classes = s.info["classes"]
    assert classes["estimate"] == 6 and classes["confident"] is True
    assert s.info["k_range"] == [classes["low"], classes["high"]] and classes["low"] <= 6 <= classes["high"]
    assert s.info["max_k"] == report_max_k(2_700, 40) == 270  # classes of 10 rows, not the old constant 30
    with pytest.raises(ValueError, match="k_repeats"):
        Balanced(k_repeats=0)
