"""Tests of selector.eval.loop.run_eval on scikit-learn digits with a PCA embedding (real data, tiny config)."""
import math

import numpy as np
import pytest
from selector.eval.loop import COLUMNS, run_eval
from selector.eval.metrics import parse_counts
from selector.eval.pools import train_test_split_balanced
from selector.strategies.random import RandomSelection

from selector import strategies


@pytest.fixture(scope="module")
def digits_emb():
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    d = load_digits()
    x, y = d.data.astype(np.float32), d.target.astype(np.int64)
    tr, te = train_test_split_balanced(y, 30, np.random.default_rng(0))
    e = PCA(24, random_state=0).fit(x[tr]).transform(x).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e[tr], y[tr], e[te], y[te]


def drop_timing(rows):
    return [{k: v for k, v in r.items() if k != "selection_seconds"} for r in rows]


def test_rows_are_sane(digits_emb):
    xtr, ytr, xte, yte = digits_emb
    rows = run_eval(xtr, ytr, xte, yte, ["random"], [10, 40], [0, 1], "balanced", progress=False,
                    dataset="digits")
    assert len(rows) == 2 * 2
    for r in rows:
        assert tuple(r) == COLUMNS
        assert r["dataset"] == "digits" and r["pool"] == "balanced" and r["retrainer"] == "linear"
        assert r["round"] == 1 and r["budget"] == r["budget_per_round"] in (10, 40)
        assert r["n_classes_pool"] == 10 and r["n_pool"] == 10 * 144   # 174 - 30 per class (smallest)
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["balanced_accuracy"] <= 1
        assert r["accuracy"] == pytest.approx(r["balanced_accuracy"])  # balanced test split
        counts = parse_counts(r["label_counts"])
        assert sum(counts.values()) == r["budget"]
        assert r["classes_covered"] == sum(v > 0 for v in counts.values()) <= min(10, r["budget"])
        assert 0 < r["expected_random_coverage"] <= 10
        assert r["coupon_collector_bound"] == pytest.approx(29.2896825, abs=1e-6)
        assert 0 <= r["normalised_entropy"] <= 1 + 1e-12
        assert r["imbalance_ratio"] >= 1
        assert (r["imbalance_ratio"] == math.inf) == (r["classes_covered"] < 10)
        assert 0.1 - 1e-12 <= r["balancedness_pv"] <= 1 + 1e-12
        assert r["n_groups_estimated"] is None and r["selection_seconds"] >= 0
    # retraining really uses the labels: 40 labels on digits beat chance by far
    assert np.mean([r["accuracy"] for r in rows if r["budget"] == 40]) > 0.6


def test_same_seed_same_table(digits_emb):
    xtr, ytr, xte, yte = digits_emb
    kw = dict(strategies=["random"], budgets=[10, 20], pool_spec="long-tail:10", rounds=2, progress=False)
    a = run_eval(xtr, ytr, xte, yte, seeds=[3], **kw)
    b = run_eval(xtr, ytr, xte, yte, seeds=[3], **kw)
    c = run_eval(xtr, ytr, xte, yte, seeds=[4], **kw)
    assert drop_timing(a) == drop_timing(b)
    assert [r["label_counts"] for r in a] != [r["label_counts"] for r in c]
    # the seed's run does not depend on which other seeds are in the sweep
    ab = run_eval(xtr, ytr, xte, yte, seeds=[4, 3], **kw)
    assert drop_timing(ab[len(c):]) == drop_timing(a)


class SpyRandom(RandomSelection):
    """Random selection that records every call's labeled mask and choice."""

    name = "random"

    def __init__(self, log):
        self.calls = log

    def _select(self, x, budget, labeled_mask, rng):
        sel = super()._select(x, budget, labeled_mask, rng)
        self.calls.append((labeled_mask.copy(), np.array(sel.indices)))
        return sel


def test_rounds_grow_the_mask_and_never_rechoose(digits_emb, monkeypatch):
    xtr, ytr, xte, yte = digits_emb
    log = []
    monkeypatch.setattr(strategies, "get_strategy", lambda name, **p: SpyRandom(log))
    rows = run_eval(xtr, ytr, xte, yte, ["random"], [15], [0], "subset:1,4,7", rounds=4, progress=False)
    assert [r["round"] for r in rows] == [1, 2, 3, 4]
    assert [r["budget"] for r in rows] == [15, 30, 45, 60]
    assert all(r["n_classes_pool"] == 3 for r in rows)
    assert all(set(parse_counts(r["label_counts"])) == {1, 4, 7} for r in rows)
    seen = np.zeros_like(log[0][0])
    for mask, idx in log:
        np.testing.assert_array_equal(mask, seen)      # round r sees exactly rounds 1..r-1
        assert not mask[idx].any()
        seen[idx] = True
    assert seen.sum() == 60
    prev = None
    for r in rows:                                      # counts only grow
        cur = parse_counts(r["label_counts"])
        if prev is not None:
            assert all(cur[c] >= prev[c] for c in cur)
        prev = cur


class Cheater(RandomSelection):
    """Bypasses Strategy.select's own checks and returns item 0 every time."""

    name = "random"

    def select(self, embeddings, budget, labeled_mask=None, rng=None):
        from selector.strategies.base import Selection

        return Selection(indices=np.arange(budget), scores=np.zeros(budget), groups=np.full(budget, -1))


def test_loop_refuses_a_strategy_that_rechooses(digits_emb, monkeypatch):
    xtr, ytr, xte, yte = digits_emb
    monkeypatch.setattr(strategies, "get_strategy", lambda name, **p: Cheater())
    with pytest.raises(RuntimeError, match="re-chose"):
        run_eval(xtr, ytr, xte, yte, ["random"], [5], [0], "balanced", rounds=2, progress=False)


def test_bad_arguments(digits_emb):
    xtr, ytr, xte, yte = digits_emb
    with pytest.raises(ValueError, match="exceeds the pool"):
        run_eval(xtr, ytr, xte, yte, ["random"], [400], [0], "subset:0", rounds=1, progress=False)
    with pytest.raises(ValueError, match="unknown strategies"):
        run_eval(xtr, ytr, xte, yte, ["no-such"], [5], [0], "balanced", progress=False)
    with pytest.raises(ValueError, match="budgets"):
        run_eval(xtr, ytr, xte, yte, ["random"], [0], [0], "balanced", progress=False)
    with pytest.raises(ValueError, match="d=3"):
        run_eval(xtr, ytr, xte[:, :3], yte, ["random"], [5], [0], "balanced", progress=False)


def test_knn_retrainer_and_test_split_restricted_to_pool_classes(digits_emb):
    xtr, ytr, xte, yte = digits_emb
    rows = run_eval(xtr, ytr, xte, yte, ["random"], [30], [0], "subset:0,1", retrainer="knn", progress=False)
    # two easy digit classes, 30 labels: the retrained kNN separates them on the 60 test items
    assert rows[0]["retrainer"] == "knn" and rows[0]["accuracy"] > 0.9


@pytest.mark.parametrize("name", sorted(strategies.STRATEGIES))
def test_every_registered_strategy_runs_in_the_loop(digits_emb, name):
    xtr, ytr, xte, yte = digits_emb
    rows = run_eval(xtr[::3], ytr[::3], xte, yte, [name], [10], [0], "all", rounds=2, progress=False)
    assert [r["budget"] for r in rows] == [10, 20]
    assert all(sum(parse_counts(r["label_counts"]).values()) == r["budget"] for r in rows)
    again = run_eval(xtr[::3], ytr[::3], xte, yte, [name], [10], [0], "all", rounds=2, progress=False)
    assert drop_timing(again) == drop_timing(rows)
