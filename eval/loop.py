"""The evaluation loop: hide the labels, let each strategy choose, retrain on the chosen labels only,
score on a held-out balanced test split, and return a tidy table (one dict per row).

Protocol (cold start, as in TypiClust, Hacohen et al., ICML 2022, and ProbCover, Yehuda et al.,
NeurIPS 2022): for every seed the pool is built from the training labels by ``pool_spec``
(:func:`selector.eval.pools.parse_pool_spec`); strategies see only the pool's embeddings. For every
strategy and every budget B:

* ``rounds == 1``: an independent cold start choosing B items (a sweep over budgets);
* ``rounds > 1``: ``rounds`` successive rounds of B new items each; round r sees the items of
  rounds 1..r-1 as labeled (``labeled_mask`` grows) and the row's ``budget`` is the cumulative
  number of labeled items, r * B (``budget_per_round`` is B).

After each selection the retrainer (:data:`selector.eval.retrain.RETRAINERS`) fits on every labeled item and
predicts the test split, restricted to the pool's classes. Same seeds give the same table except
``selection_seconds``.
"""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from typing import Callable, Mapping, Sequence

import numpy as np

from selector.progress import progress as progress_bar

from .metrics import (
    accuracy,
    balanced_accuracy,
    balancedness_pv,
    format_counts,
    label_counts,
    per_class_accuracy,
    summarise_selection,
)
from .pools import parse_pool_spec
from .retrain import get_retrainer

log = logging.getLogger(__name__)

#: Columns of every row, in order.
COLUMNS = (
    "dataset", "pool", "strategy", "retrainer", "budget", "budget_per_round", "round", "seed",
    "n_pool", "n_classes_pool", "accuracy", "balanced_accuracy", "classes_covered",
    "expected_random_coverage", "coupon_collector_bound", "normalised_entropy", "imbalance_ratio",
    "balancedness_pv", "n_groups_estimated", "selection_seconds", "label_counts", "pool_label_counts",
)

#: Seed-stream tag for pool construction, so the pool draw and the strategy draw are independent.
_POOL_STREAM = 1


def _as_int_list(values, name: str, minimum: int) -> list[int]:
    if isinstance(values, (int, np.integer)):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ValueError(f"{name} must be integers >= {minimum}, got {v!r}")
        out.append(int(v))
    if not out:
        raise ValueError(f"{name} is empty")
    return out


def _check_data(embeddings, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    y = np.asarray(labels).reshape(-1)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} embeddings must be a non-empty (n, d) array, got shape {x.shape}")
    if y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels must be (n,) integers for {x.shape[0]} embeddings, "
                         f"got shape {y.shape}, dtype {y.dtype}")
    return x, y.astype(np.int64)


def pool_rng(seed: int) -> np.random.Generator:
    """The generator that builds the pool for ``seed`` (a stream separate from the strategy's)."""
    return np.random.default_rng([int(seed), _POOL_STREAM])


def run_eval(
    embeddings,
    labels,
    test_embeddings,
    test_labels,
    strategies: Sequence[str],
    budgets: Sequence[int],
    seeds: Sequence[int],
    pool_spec: str,
    rounds: int = 1,
    retrainer: str | Callable = "linear",
    strategy_params: Mapping[str, Mapping] | None = None,
    progress: bool = True,
    dataset: str = "unnamed",
) -> list[dict]:
    """Evaluate selection strategies on a labeled dataset with hidden labels.

    Args:
        embeddings: (n, d) float training embeddings (the candidates; pools are drawn from them).
        labels: (n,) int true labels of ``embeddings`` (used only to build pools and score).
        test_embeddings: (m, d) float held-out embeddings (e.g. from
            :func:`selector.eval.pools.train_test_split_balanced`); only classes present in the pool are
            scored.
        test_labels: (m,) int.
        strategies: names registered in ``strategies.STRATEGIES``.
        budgets: items chosen per run (``rounds == 1``) or per round (``rounds > 1``).
        seeds: one pool draw and one strategy generator (``np.random.default_rng(seed)``) each.
        pool_spec: e.g. ``"balanced"``, ``"long-tail:100"``, ``"subset:0,1,2"``, ``"all"``.
        rounds: number of successive selection rounds per budget (1 = cold start only).
        retrainer: a name in :data:`selector.eval.retrain.RETRAINERS` or a function with that signature.
        strategy_params: optional ``{strategy_name: {hyperparameter: value}}``.
        progress: show progress (:func:`selector.progress.progress`: a bar on a terminal, else log lines;
            one tick per strategy x budget x seed run).
        dataset: name written in the ``dataset`` column.
    Returns:
        list of dicts with keys :data:`COLUMNS`, one per (seed, strategy, budget, round), in
        that loop order. ``imbalance_ratio`` is ``inf`` when a pool class was never chosen;
        ``n_groups_estimated`` is None for strategies that do not estimate groups.
    """
    from selector.strategies import STRATEGIES, get_strategy

    x, y = _check_data(embeddings, labels, "training")
    xt, yt = _check_data(test_embeddings, test_labels, "test")
    if xt.shape[1] != x.shape[1]:
        raise ValueError(f"test embeddings have d={xt.shape[1]}, training embeddings d={x.shape[1]}")
    if isinstance(strategies, str):
        strategies = [strategies]
    strategies = list(strategies)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ValueError(f"unknown strategies {unknown}; registered: {', '.join(sorted(STRATEGIES))}")
    budgets = _as_int_list(budgets, "budgets", 1)
    seeds = _as_int_list(seeds, "seeds", 0)
    rounds = _as_int_list(rounds, "rounds", 1)[0]
    params = {k: dict(v) for k, v in (strategy_params or {}).items()}
    stray = set(params) - set(strategies)
    if stray:
        raise ValueError(f"strategy_params given for strategies not evaluated: {sorted(stray)}")
    build_pool = parse_pool_spec(pool_spec)
    retrain_name = retrainer if isinstance(retrainer, str) else getattr(retrainer, "__name__", "custom")
    retrain_fn = get_retrainer(retrainer) if isinstance(retrainer, str) else retrainer

    rows: list[dict] = []
    total = len(seeds) * len(strategies) * len(budgets)
    bar = progress_bar(total, f"eval {dataset} {pool_spec}", "run", enabled=progress)
    with bar if bar is not None else nullcontext():
        for seed in seeds:
            pool = build_pool(y, pool_rng(seed))
            xp, yp = np.ascontiguousarray(x[pool]), y[pool]
            classes, counts = np.unique(yp, return_counts=True)
            need = max(budgets) * rounds
            if need > pool.shape[0]:
                raise ValueError(f"budget {max(budgets)} x {rounds} rounds = {need} exceeds the pool "
                                 f"({pool.shape[0]} items, spec {pool_spec!r}, seed {seed})")
            in_pool = np.isin(yt, classes)
            xtp, ytp = np.ascontiguousarray(xt[in_pool]), yt[in_pool]
            if ytp.size == 0:
                raise ValueError(f"the test split has no item of the pool's classes {classes.tolist()}")
            pool_counts_str = format_counts(classes, counts)
            log.info("seed %d: pool %r has %d items in %d classes; %d test items", seed, pool_spec,
                     pool.shape[0], classes.size, ytp.size)
            for name in strategies:
                for b in budgets:
                    strategy = get_strategy(name, **params.get(name, {}))
                    rng = np.random.default_rng(seed)
                    labeled = np.zeros(pool.shape[0], dtype=bool)
                    for r in range(1, rounds + 1):
                        t0 = time.perf_counter()
                        sel = strategy.select(xp, b, labeled, rng)
                        dt = time.perf_counter() - t0
                        idx = np.asarray(sel.indices, dtype=np.int64)
                        if labeled[idx].any() or np.unique(idx).size != b:
                            raise RuntimeError(f"strategy {name!r} re-chose labeled or duplicate items "
                                               f"in round {r} (seed {seed}, budget {b})")
                        labeled[idx] = True
                        chosen = np.flatnonzero(labeled)
                        chosen_y = yp[chosen]
                        pred = np.asarray(retrain_fn(xp[chosen], chosen_y, xtp, seed=seed))
                        pca = per_class_accuracy(ytp, pred, classes)
                        row = {
                            "dataset": dataset, "pool": pool_spec, "strategy": name,
                            "retrainer": retrain_name, "budget": int(chosen.size),
                            "budget_per_round": b, "round": r, "seed": seed,
                            "n_pool": int(pool.shape[0]), "n_classes_pool": int(classes.size),
                            "accuracy": accuracy(ytp, pred),
                            "balanced_accuracy": balanced_accuracy(ytp, pred),
                        }
                        row.update(summarise_selection(chosen_y, yp))
                        row.update({
                            "balancedness_pv": balancedness_pv(pca),
                            "n_groups_estimated": None if sel.n_groups is None else int(sel.n_groups),
                            "selection_seconds": dt,
                            "label_counts": format_counts(classes, label_counts(chosen_y, classes)),
                            "pool_label_counts": pool_counts_str,
                        })
                        rows.append({k: row[k] for k in COLUMNS})
                    if bar is not None:
                        bar.update(1)
    return rows
