"""Tests of selector.eval.metrics on hand-computed cases and slow references written out here."""
import itertools
import math

import numpy as np
import pytest
from selector.eval.metrics import (
    accuracy,
    balanced_accuracy,
    balancedness_pv,
    classes_covered,
    coupon_collector_bound,
    expected_random_coverage,
    format_counts,
    imbalance_ratio,
    label_counts,
    normalised_entropy,
    parse_counts,
    per_class_accuracy,
    summarise_selection,
)


def test_accuracy_and_balanced_accuracy_by_hand():
    y = np.array([0, 0, 0, 1])
    p = np.array([0, 0, 1, 1])
    assert accuracy(y, p) == 0.75
    assert balanced_accuracy(y, p) == pytest.approx((2 / 3 + 1) / 2)
    np.testing.assert_allclose(per_class_accuracy(y, p), [2 / 3, 1.0])
    pc = per_class_accuracy(y, p, classes=[1, 5, 0])
    assert pc[0] == 1.0 and math.isnan(pc[1]) and pc[2] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        accuracy(y, p[:3])


def test_classes_covered_and_counts():
    assert classes_covered([3, 3, 7, 1]) == 3
    assert classes_covered(np.array([], dtype=int)) == 0
    assert label_counts([3, 3, 7], [1, 3, 7]).tolist() == [0, 2, 1]
    s = format_counts([1, 3, 7], [0, 2, 1])
    assert s == "1:0;3:2;7:1" and parse_counts(s) == {1: 0, 3: 2, 7: 1}


def brute_force_coverage(counts, b):
    """Mean number of classes over every b-subset of the pool (exact enumeration)."""
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    total, n_sets = 0, 0
    for subset in itertools.combinations(range(len(labels)), b):
        total += len({labels[i] for i in subset})
        n_sets += 1
    return total / n_sets


def test_expected_coverage_by_hand_and_by_enumeration():
    assert expected_random_coverage([1, 1], 1) == pytest.approx(1.0)
    assert expected_random_coverage([2, 1], 1) == pytest.approx(1.0)       # 2/3 + 1/3
    assert expected_random_coverage([2, 1], 2) == pytest.approx(5 / 3)     # 1 + 2/3
    assert expected_random_coverage([2, 1], 0) == 0.0
    assert expected_random_coverage([2, 0, 1], 3) == pytest.approx(2.0)    # empty class ignored
    for counts in ([3, 1, 2], [5, 1, 1, 2], [4, 4]):
        for b in range(0, sum(counts) + 1):
            assert expected_random_coverage(counts, b) == pytest.approx(brute_force_coverage(counts, b), abs=1e-12)
    with pytest.raises(ValueError):
        expected_random_coverage([2, 1], 4)


def test_expected_coverage_against_monte_carlo():
    rng = np.random.default_rng(0)
    counts = np.array([500, 200, 80, 30, 10, 5, 2, 1])
    labels = np.repeat(np.arange(counts.size), counts)
    b, trials = 40, 4000
    sims = np.array([np.unique(rng.choice(labels, b, replace=False)).size for _ in range(trials)])
    exact = expected_random_coverage(counts, b)
    assert abs(sims.mean() - exact) < 4 * sims.std() / math.sqrt(trials)


def test_expected_coverage_huge_pool_does_not_overflow():
    counts = [10**6] * 9 + [10]
    v = expected_random_coverage(counts, 5000)
    p_miss_small = (1 - 10 / (9 * 10**6 + 10)) ** 5000   # with-replacement approximation
    assert v == pytest.approx(9 + 1 - p_miss_small, rel=1e-4)


def test_coupon_collector_bound():
    assert coupon_collector_bound(1) == 1.0
    assert coupon_collector_bound(2) == pytest.approx(3.0)
    assert coupon_collector_bound(10) == pytest.approx(10 * sum(1 / k for k in range(1, 11)))
    assert coupon_collector_bound(10) == pytest.approx(29.2896825, abs=1e-6)


def test_normalised_entropy():
    assert normalised_entropy([0, 1], 2) == pytest.approx(1.0)
    assert normalised_entropy([0, 0, 0], 2) == pytest.approx(0.0)
    assert normalised_entropy([0, 1], 4) == pytest.approx(0.5)          # log 2 / log 4
    p = np.array([3, 1]) / 4
    assert normalised_entropy([5, 5, 5, 9], 3) == pytest.approx(-(p * np.log(p)).sum() / math.log(3))
    assert normalised_entropy([], 3) == 0.0
    assert normalised_entropy([2, 2], 1) == 1.0


def test_imbalance_ratio():
    assert imbalance_ratio([0, 0, 1], [0, 1]) == 2.0
    assert imbalance_ratio([0, 1, 2], [0, 1, 2]) == 1.0
    assert imbalance_ratio([0, 0, 1], [0, 1, 2]) == math.inf


def pv_reference(acc, sigma):
    C = len(acc)
    total = 0.0
    for i in range(C):
        for j in range(C):
            total += math.exp(-abs(acc[i] - acc[j]) ** 2 / sigma)
    return total / C**2


def test_balancedness_pv():
    assert balancedness_pv([0.7] * 10) == pytest.approx(1.0)
    assert balancedness_pv([0.0, 1.0], sigma=0.1) == pytest.approx((2 + 2 * math.exp(-10)) / 4)
    acc = np.random.default_rng(0).uniform(size=7)
    for sigma in (0.01, 0.1, 1.0):
        assert balancedness_pv(acc, sigma) == pytest.approx(pv_reference(acc.tolist(), sigma), abs=1e-12)
    assert balancedness_pv([0.5, np.nan, 0.5]) == pytest.approx(1.0)   # absent class dropped
    assert balancedness_pv([0.1, 0.9]) < balancedness_pv([0.4, 0.6]) < 1.0


def test_summarise_selection():
    s = summarise_selection([0, 0, 1], [0] * 5 + [1] * 5 + [2] * 5)
    assert s["classes_covered"] == 2 and s["imbalance_ratio"] == math.inf
    assert s["expected_random_coverage"] == pytest.approx(brute_force_coverage([5, 5, 5], 3))
    assert s["coupon_collector_bound"] == pytest.approx(5.5)
    p = np.array([2, 1]) / 3
    assert s["normalised_entropy"] == pytest.approx(-(p * np.log(p)).sum() / math.log(3))
