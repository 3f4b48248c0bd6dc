"""Tests of selector.eval.pools: balanced, long-tailed (CIFAR-10-LT profile) and subset pools, test split."""
import numpy as np
import pytest
from selector.eval.pools import (
    balanced_pool,
    long_tail_counts,
    long_tail_pool,
    parse_pool_spec,
    subset_pool,
    train_test_split_balanced,
)


def labels_with_counts(counts):
    return np.concatenate([np.full(n, c, dtype=np.int64) for c, n in enumerate(counts)])


def class_counts(y, idx, n_classes):
    return np.bincount(y[idx], minlength=n_classes)


def test_long_tail_counts_match_the_written_profile():
    # CIFAR-10-LT: n_r = int(n_max * ratio^(-r/(C-1))), written out as a plain loop.
    for n_max, ratio, C in [(5000, 100, 10), (5000, 10, 10), (1000, 50, 7), (300, 1, 4)]:
        want = [int(n_max * ratio ** (-r / (C - 1)) + 1e-9) for r in range(C)]
        assert long_tail_counts(n_max, ratio, C).tolist() == want


def test_long_tail_pool_gives_requested_ratio():
    y = labels_with_counts([5000] * 10)
    idx = long_tail_pool(y, 100, np.random.default_rng(0))
    counts = class_counts(y, idx, 10)
    assert counts[0] == 5000 and counts[-1] == 50          # CIFAR-10-LT-100 sizes
    assert counts[0] / counts[-1] == 100
    assert (np.diff(counts) < 0).all()                      # label order = rank order
    assert np.unique(idx).size == idx.size and (np.diff(idx) > 0).all()


def test_long_tail_ratio_within_rounding_on_uneven_classes():
    y = labels_with_counts([1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978])  # MNIST-10k counts
    for ratio in (10, 37.5, 100):
        counts = class_counts(y, long_tail_pool(y, ratio, np.random.default_rng(1)), 10)
        head, tail = counts[0], counts[-1]
        # tail = floor(head / ratio), so head/tail lies in [ratio, head / (head/ratio - 1)]
        assert ratio - 1e-9 <= head / tail <= head / (head / ratio - 1) + 1e-9
        assert (counts <= [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]).all()
    # the default n_max is the largest the classes allow: class 0 is the binding one here
    assert class_counts(y, long_tail_pool(y, 10, np.random.default_rng(0)), 10)[0] == 1001


def test_long_tail_shuffled_class_order_is_seeded():
    y = labels_with_counts([400] * 6)
    a = long_tail_pool(y, 20, np.random.default_rng(3), shuffle_classes=True)
    b = long_tail_pool(y, 20, np.random.default_rng(3), shuffle_classes=True)
    np.testing.assert_array_equal(a, b)
    ca = class_counts(y, a, 6)
    assert sorted(ca.tolist(), reverse=True) == long_tail_counts(400, 20, 6).tolist()
    orders = {tuple(np.argsort(-class_counts(y, long_tail_pool(y, 20, np.random.default_rng(s),
                                                                shuffle_classes=True), 6)))
              for s in range(8)}
    assert len(orders) > 1


def test_long_tail_rejects_impossible_requests():
    y = labels_with_counts([100, 100, 5])
    with pytest.raises(ValueError, match="class 2"):
        long_tail_pool(y, 2, np.random.default_rng(0), n_max=100)
    with pytest.raises(ValueError, match="tail class empty"):
        long_tail_pool(labels_with_counts([10, 10]), 100, np.random.default_rng(0), n_max=10)


def test_balanced_pool():
    y = labels_with_counts([30, 50, 20])
    idx = balanced_pool(y, rng=np.random.default_rng(0))
    assert class_counts(y, idx, 3).tolist() == [20, 20, 20]
    idx = balanced_pool(y, 7, np.random.default_rng(0))
    assert class_counts(y, idx, 3).tolist() == [7, 7, 7]
    np.testing.assert_array_equal(idx, balanced_pool(y, 7, np.random.default_rng(0)))
    assert not np.array_equal(idx, balanced_pool(y, 7, np.random.default_rng(1)))
    with pytest.raises(ValueError, match="class 2 has only 20"):
        balanced_pool(y, 21, np.random.default_rng(0))


def test_subset_pool_has_exactly_the_classes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=500)
    idx = subset_pool(y, [0, 1, 2], rng)
    assert set(np.unique(y[idx])) == {0, 1, 2}
    assert idx.size == np.isin(y, [0, 1, 2]).sum()          # all of their items
    idx = subset_pool(y, [7, 3], np.random.default_rng(5), n_per_class=4)
    assert class_counts(y, idx, 10)[[3, 7]].tolist() == [4, 4] and idx.size == 8
    with pytest.raises(ValueError, match=r"\[11\]"):
        subset_pool(y, [1, 11], rng)


def test_parse_pool_spec():
    y = labels_with_counts([60, 80, 100])
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    assert class_counts(y, parse_pool_spec("balanced")(y, rng()), 3).tolist() == [60, 60, 60]
    assert class_counts(y, parse_pool_spec("balanced:10")(y, rng()), 3).tolist() == [10, 10, 10]
    assert class_counts(y, parse_pool_spec("long-tail:4")(y, rng()), 3).tolist() == [60, 30, 15]
    assert class_counts(y, parse_pool_spec("subset:0,2")(y, rng()), 3).tolist() == [60, 0, 100]
    assert parse_pool_spec("all")(y, rng()).tolist() == list(range(240))
    shuffled = class_counts(y, parse_pool_spec("long-tail:4:shuffled")(y, rng()), 3)
    assert sorted(shuffled.tolist()) == sorted(class_counts(y, long_tail_pool(
        y, 4, np.random.default_rng(0), shuffle_classes=True), 3).tolist())
    for bad in ["", "longtail", "long-tail:x", "subset:", "balanced:1:2", "foo:3", "long-tail:4:up"]:
        with pytest.raises(ValueError, match="pool spec"):
            parse_pool_spec(bad)


def test_train_test_split_balanced():
    y = labels_with_counts([30, 12, 50])
    tr, te = train_test_split_balanced(y, 10, np.random.default_rng(0))
    assert class_counts(y, te, 3).tolist() == [10, 10, 10]
    assert np.intersect1d(tr, te).size == 0 and tr.size + te.size == y.size
    tr2, te2 = train_test_split_balanced(y, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(te, te2)
    with pytest.raises(ValueError, match="class 1 has 12"):
        train_test_split_balanced(y, 12, np.random.default_rng(0))
