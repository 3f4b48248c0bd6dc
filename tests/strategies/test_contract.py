"""Every registered strategy keeps the contract of selector.strategies.base.Strategy.select."""
from __future__ import annotations

import numpy as np
import pytest
from selector.strategies import STRATEGIES, SelectionError, get_strategy

# Every registered strategy by name: registering or removing one changes this list too.
EXPECTED = {"random", "stratified-random", "kcenter", "typiclust", "probcover", "balanced", "typcover"}


def pool(n=240, d=12, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((4, d))
    x = np.concatenate([c[k] + 0.3 * rng.standard_normal((s, d)) for k, s in enumerate([120, 60, 40, 20])])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def test_all_expected_strategies_registered():
    assert set(STRATEGIES) == EXPECTED


@pytest.fixture(params=sorted(STRATEGIES))
def name(request):
    return request.param


@pytest.mark.parametrize("with_mask", [False, True])
def test_count_unique_never_labeled_seeded(name, with_mask):
    x = pool()
    mask = None
    if with_mask:
        mask = np.zeros(len(x), bool)
        mask[np.random.default_rng(1).choice(len(x), 30, replace=False)] = True
    s1 = get_strategy(name).select(x, 17, labeled_mask=mask, rng=5)
    assert s1.indices.shape == (17,) and s1.indices.dtype == np.int64
    assert np.unique(s1.indices).shape == (17,)
    assert s1.scores.shape == (17,) and s1.groups.shape == (17,)
    if with_mask:
        assert not mask[s1.indices].any()
    s2 = get_strategy(name).select(x, 17, labeled_mask=mask, rng=5)
    np.testing.assert_array_equal(s1.indices, s2.indices)
    np.testing.assert_array_equal(s1.scores, s2.scores)
    s3 = get_strategy(name).select(x, 17, labeled_mask=mask, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(s1.indices, s3.indices)


def test_input_not_mutated(name):
    x = pool()
    x.setflags(write=True)
    mask = np.zeros(len(x), bool)
    mask[:10] = True
    x0, m0 = x.copy(), mask.copy()
    get_strategy(name).select(x, 12, labeled_mask=mask, rng=0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(mask, m0)
    assert x.flags.writeable and x.flags.c_contiguous
    # read-only input works (strategies never write into it)
    x.setflags(write=False)
    get_strategy(name).select(x, 12, labeled_mask=mask, rng=0)


def test_float64_and_non_contiguous_input(name):
    x = pool().astype(np.float64)
    xt = np.asfortranarray(x)
    s = get_strategy(name).select(xt, 9, rng=2)
    assert np.unique(s.indices).shape == (9,)


def test_budget_equals_unlabeled(name):
    x = pool(n=240)
    mask = np.zeros(len(x), bool)
    mask[::3] = True
    n_free = int((~mask).sum())
    s = get_strategy(name).select(x, n_free, labeled_mask=mask, rng=0)
    assert sorted(s.indices.tolist()) == np.flatnonzero(~mask).tolist()


def test_small_pool_budget_one(name):
    x = pool()[:12]
    s = get_strategy(name).select(x, 1, rng=0)
    assert s.indices.shape == (1,)
    s = get_strategy(name).select(x, 12, rng=0)
    assert sorted(s.indices.tolist()) == list(range(12))


@pytest.mark.parametrize("budget", [0, -1, 241, 2.5, True, "3"])
def test_bad_budget_raises(name, budget):
    with pytest.raises(SelectionError):
        get_strategy(name).select(pool(), budget, rng=0)


def test_bad_budget_with_mask_raises(name):
    x = pool()
    mask = np.ones(len(x), bool)
    mask[:5] = False
    with pytest.raises(SelectionError, match="5 unlabeled"):
        get_strategy(name).select(x, 6, labeled_mask=mask, rng=0)


def test_known_labels_keep_the_contract(name):
    x = pool()
    mask = np.zeros(len(x), dtype=bool)
    mask[:30] = True
    labels = np.where(mask, np.arange(len(x)) % 4, -1)
    before = labels.copy()
    a = get_strategy(name).select(x, 15, mask, np.random.default_rng(2), labels=labels)
    b = get_strategy(name).select(x, 15, mask, np.random.default_rng(2), labels=labels)
    assert len(np.unique(a.indices)) == 15 and not mask[a.indices].any()
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(labels, before)


def test_bad_labels_raise(name):
    x = pool()
    with pytest.raises(SelectionError, match="labels has 3 entries"):
        get_strategy(name).select(x, 5, None, 0, labels=np.array([0, 1, 2]))
    with pytest.raises(SelectionError, match="integer class ids"):
        get_strategy(name).select(x, 5, None, 0, labels=np.full(len(x), 0.5))
