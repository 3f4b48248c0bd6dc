"""The default class-balanced strategy."""
import numpy as np
import pytest

from strategies.balanced import Balanced, even_allocation
from strategies.typiclust import typicality

from .blobs import sphere_blobs




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
    s = Balanced().select(x, 25, rng=0)
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
    s = Balanced(n_classes=4).select(x, 6, labeled_mask=mask, rng=0)
    assert s.info["k_source"] == "given"
    # 6 // 4 = 1 each, remainder 2 to the unlabeled blobs 2 and 3
    assert np.bincount(y[s.indices], minlength=4).tolist() == [1, 1, 2, 2]


def test_picks_are_typical_and_spread():
    # one blob, 4 picks: none is an outlier, and they are not near-duplicates
    rng = np.random.default_rng(2)
    x = rng.standard_normal((800, 8)).astype(np.float32)
    x[:5] *= 6  # outliers
    s = Balanced(n_classes=1).select(x, 4, rng=0)
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
    from strategies.balanced import water_fill

    np.testing.assert_array_equal(water_fill(np.array([10, 0, 0]), np.array([50, 50, 50]), 12), [0, 6, 6])
    np.testing.assert_array_equal(water_fill(np.array([3, 0, 1]), np.array([50, 2, 50]), 6), [1, 2, 3])


def test_known_labels_send_the_budget_to_under_labeled_classes():
    from strategies.balanced import Balanced

    x, blob = _three_blobs()
    mask = np.zeros(len(x), dtype=bool)
    mask[np.flatnonzero(blob == 0)[:10]] = True  # ten labels, all in blob 0
    labels = np.where(mask, blob, -1)
    with_labels = Balanced(n_classes=3).select(x, 12, mask, 0, labels=labels)
    without = Balanced(n_classes=3).select(x, 12, mask, 0)
    assert np.bincount(blob[with_labels.indices], minlength=3).tolist() == [0, 6, 6]
    assert np.bincount(blob[without.indices], minlength=3).tolist() == [4, 4, 4]  # the documented even split


def test_groups_of_one_known_class_share_its_level():
    from strategies.balanced import class_allocation

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
    from strategies.balanced import Balanced

    x, blob = _three_blobs(seed=1)
    mask = np.zeros(len(x), dtype=bool)
    a = Balanced(n_classes=3).select(x, 9, mask, 0, labels=blob)  # true labels of an unlabeled pool: no effect
    b = Balanced(n_classes=3).select(x, 9, mask, 0)
    np.testing.assert_array_equal(a.indices, b.indices)
