"""The strategy registry (selector.strategies.registry): parameters are type-checked by ``get_strategy`` and
by the ``Selector`` at construction, before any work. The command line's ``--param`` check is in
tests/test_bad_input.py; every registered strategy's contract is in test_contract.py."""
from __future__ import annotations

import re

import numpy as np
import pytest


def test_strategy_parameters_type_checked_in_the_api():
    from selector.strategies import get_strategy

    with pytest.raises(ValueError, match="k_nn must be a whole number"):
        get_strategy("typiclust", k_nn="abc")
    with pytest.raises(ValueError, match="explore must be a finite number"):
        get_strategy("balanced", explore=float("nan"))
    assert get_strategy("balanced", explore=0, k_nn=np.int64(10)).k_nn == 10  # ints are numbers too
    from selector.api import Selector

    with pytest.raises(ValueError, match="k_nn must be a whole number, got 'abc'"):  # at construction, before fit
        Selector(strategy="typiclust", strategy_params={"k_nn": "abc"})


# -- the parameter tables: every parameter declared with its type and range, checked before any work -----

def _registered():
    from selector.strategies import STRATEGIES

    return sorted(STRATEGIES.items())


def _beyond(kind, bound, below: bool):
    """The nearest value past ``bound`` (below it, or above it): the next whole number for a count."""
    from selector.strategies.base import Open

    if isinstance(bound, Open):
        return bound.value
    if kind is float or float in getattr(kind, "__args__", ()):
        return float(np.nextafter(bound, -np.inf if below else np.inf))
    return bound - 1 if below else bound + 1


def test_every_strategy_declares_every_constructor_parameter():
    import inspect
    import types

    from selector.strategies.base import Open

    for name, cls in _registered():
        taken = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        if cls.__init__ is object.__init__:  # no hyperparameters (random)
            taken = []
        assert sorted(cls.PARAMS) == sorted(taken), name
        for key, (kind, low, high) in cls.PARAMS.items():
            assert kind in (int, float, bool) or isinstance(kind, types.UnionType), (name, key)
            if low is not None and high is not None:
                lo = low.value if isinstance(low, Open) else low
                hi = high.value if isinstance(high, Open) else high
                assert lo < hi, (name, key)


def test_every_declared_bound_is_checked_at_its_edge():
    """At each bound a value is accepted; one step past it (or at an open bound) it is refused, in one line
    naming the parameter, by get_strategy and by the Selector's constructor."""
    from selector.strategies import get_strategy
    from selector.strategies.base import Open

    from selector.api import Selector

    checked = 0
    for name, cls in _registered():
        for key, (kind, low, high) in cls.PARAMS.items():
            for bound, below in ((low, True), (high, False)):
                if bound is None:
                    continue
                if not isinstance(bound, Open):
                    assert getattr(get_strategy(name, **{key: bound}), key) == bound
                bad = {key: _beyond(kind, bound, below)}
                with pytest.raises(ValueError) as e:
                    get_strategy(name, **bad)
                msg = str(e.value)
                assert msg.startswith(f"{key} must be ") and "\n" not in msg, msg
                with pytest.raises(ValueError, match=f"^{key} must be "):
                    Selector(strategy=name, strategy_params=bad)
                checked += 1
    assert checked > 60  # every strategy with parameters was looked at


def test_every_low_bound_selects(digits_images):
    """A declared lower bound is a value the strategy runs with (so nothing accepted fails after the work)."""
    from selector.strategies import get_strategy
    from selector.strategies.base import Open

    x = digits_images.reshape(len(digits_images), -1).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    mask = np.zeros(len(x), dtype=bool)
    mask[:4] = True
    ran = []
    for name, cls in _registered():
        for key, (_, low, _) in cls.PARAMS.items():
            if low is None or isinstance(low, Open) or key == "use_gpu":
                continue
            sel = get_strategy(name, **{key: low}).select(x, 5, mask, rng=0)
            assert len(sel) == 5 and not mask[sel.indices].any(), (name, key)
            ran.append((name, key))
    assert ("typcover", "max_cluster_points") in ran and ("balanced", "n_sample") in ran


@pytest.mark.parametrize("key, value, msg", [
    ("oversample", 1e308, "oversample must be in [1, 1e+06], got 1e+308"),
    ("k_nn", 0, "k_nn must be at least 1, got 0"),
    ("k_nn", -3, "k_nn must be at least 1, got -3"),
    ("min_size", -5, "min_size must be at least 1, got -5"),
    ("kmeans_iter", -1, "kmeans_iter must be in [1, 10000], got -1"),
    ("max_points_per_centroid", -1, "max_points_per_centroid must be at least 1, got -1"),
    ("max_clusters", -5, "max_clusters must be at least 1, got -5"),
    ("max_cluster_points", 0, "max_cluster_points must be at least 1, got 0"),
    ("k_repeats", 0, "k_repeats must be in [1, 100], got 0"),
])
def test_typcover_parameters_refused_before_any_work(monkeypatch, key, value, msg):
    """Values typcover used to accept (or to fail on after the work, or overflow on): refused by get_strategy,
    and by select() of a strategy built directly, before k-means runs."""
    import selector.strategies.typcover as typcover
    from selector.strategies import get_strategy

    with pytest.raises(ValueError, match=re.escape(msg)):
        get_strategy("typcover", **{key: value})
    strat = typcover.TypCover(**{key: value})  # built directly: its own checks cover typical_share, oversample < 1
    monkeypatch.setattr(typcover, "kmeans", lambda *a, **k: pytest.fail("k-means ran"))
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=re.escape(msg)):
        strat.select(x, 3, rng=0)


def test_use_gpu_true_without_a_gpu_is_one_line_before_any_work(monkeypatch):
    import faiss
    from selector.strategies import get_strategy

    from selector.api import Selector

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    for name in ("typcover", "balanced", "typiclust", "probcover", "stratified-random"):
        with pytest.raises(ValueError, match="use_gpu=True but faiss sees no GPU") as e:
            get_strategy(name, use_gpu=True)
        assert "\n" not in str(e.value)
        with pytest.raises(ValueError, match="use_gpu=True but faiss sees no GPU"):
            Selector(strategy=name, strategy_params={"use_gpu": True})
        assert get_strategy(name, use_gpu=False).use_gpu is False and get_strategy(name, use_gpu=None).use_gpu is None
