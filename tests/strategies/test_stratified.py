"""Stratified random sampling over k-means clusters."""
import numpy as np
import pytest
from selector.strategies.stratified import StratifiedRandom, proportional_allocation


def test_proportional_allocation_exact_and_largest_remainder():
    assert proportional_allocation(np.array([50, 30, 20]), 10).tolist() == [5, 3, 2]
    assert proportional_allocation(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]  # ties: lower id
    a = proportional_allocation(np.array([5, 100, 0, 3]), 50)
    assert a.sum() == 50 and (a <= [5, 100, 0, 3]).all() and a[2] == 0
    assert proportional_allocation(np.array([2, 3]), 5).tolist() == [2, 3]
    with pytest.raises(ValueError):
        proportional_allocation(np.array([1, 1]), 3)


def test_picks_follow_cluster_proportions():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((2, 8)) * 5
    x = np.concatenate([c[0] + rng.standard_normal((300, 8)), c[1] + rng.standard_normal((100, 8))]).astype(np.float32)
    y = np.repeat([0, 1], [300, 100])
    s = StratifiedRandom(n_clusters=2).select(x, 40, rng=1)
    assert np.bincount(y[s.indices]).tolist() == [30, 10]
    assert set(np.unique(s.groups)) <= {0, 1}
