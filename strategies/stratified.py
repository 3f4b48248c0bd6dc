"""Stratified random sampling over k-means clusters.

Cluster the pool with k-means, then draw uniformly at random inside clusters, giving every
cluster a share of the budget proportional to its number of unlabeled points (largest-remainder
rounding, capped by what each cluster holds). It is random sampling with the cluster
proportions enforced exactly: a variance-reduced random baseline, not a balancing strategy (a
long-tailed pool stays long-tailed in the picks).
"""
from __future__ import annotations

import numpy as np

from selector.cluster import group_rows, kmeans

from .base import MAX_COUNT, MAX_ITER, Selection, Strategy
from .registry import register


def proportional_allocation(counts: np.ndarray, budget: int) -> np.ndarray:
    """Split ``budget`` over groups in proportion to ``counts`` (largest remainder, ties to the
    lower group id), never giving a group more than its count.

    Args:
        counts: (g,) non-negative ints with ``counts.sum() >= budget``.

    Returns:
        (g,) int64 allocation summing to ``budget``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if budget > total:
        raise ValueError(f"budget {budget} exceeds the {total} items available")
    alloc = np.zeros_like(counts)
    remaining = budget
    active = counts > 0
    while remaining > 0:
        cap = counts - alloc
        active &= cap > 0
        share = remaining * cap * active / max(int((cap * active).sum()), 1)
        base = np.minimum(np.floor(share).astype(np.int64), cap)
        alloc += base
        remaining -= int(base.sum())
        if remaining == 0:
            break
        frac = np.where(active & (alloc < counts), share - np.floor(share), -1.0)
        order = np.lexsort((np.arange(len(counts)), -frac))
        for g in order[:remaining]:
            if frac[g] < 0:
                break
            alloc[g] += 1
            remaining -= 1
    return alloc


@register("stratified-random")
class StratifiedRandom(Strategy):
    """Random picks stratified over ``n_clusters`` k-means clusters (default ``budget``, capped
    at 1,000 and at n). ``groups`` are the cluster ids, ``scores`` zeros."""

    PARAMS = {
        "n_clusters": (int | None, 1, MAX_COUNT), "max_clusters": (int, 1, MAX_COUNT),
        "kmeans_iter": (int, 1, MAX_ITER), "max_points_per_centroid": (int, 1, MAX_COUNT),
        "use_gpu": (bool | None, None, None),
    }

    def __init__(self, n_clusters: int | None = None, max_clusters: int = 1_000, kmeans_iter: int = 20,
                 max_points_per_centroid: int = 32, use_gpu: bool | None = None):
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.kmeans_iter = kmeans_iter
        self.max_points_per_centroid = max_points_per_centroid
        self.use_gpu = use_gpu

    def _select(self, x, budget, labeled_mask, rng):
        n = x.shape[0]
        k = self.n_clusters if self.n_clusters is not None else min(budget, self.max_clusters)
        k = int(max(1, min(k, n)))
        _, assign, _ = kmeans(x, k, seed=int(rng.integers(2**31 - 1)), niter=self.kmeans_iter,
                              max_points_per_centroid=self.max_points_per_centroid, use_gpu=self.use_gpu)
        free = np.flatnonzero(~labeled_mask)
        counts = np.bincount(assign[free], minlength=k)
        alloc = proportional_allocation(counts, budget)
        ordered, bounds = group_rows(assign, k, free)
        picks, groups = [], []
        for c in np.flatnonzero(alloc):
            rows = ordered[bounds[c]:bounds[c + 1]]
            chosen = rng.choice(rows, size=int(alloc[c]), replace=False)
            picks.append(chosen)
            groups.append(np.full(chosen.shape[0], c, dtype=np.int64))
        idx = np.concatenate(picks)
        grp = np.concatenate(groups)
        order = rng.permutation(budget)  # no cluster ranks first
        return Selection(indices=idx[order], scores=np.zeros(budget), groups=grp[order], n_groups=k,
                         info={"n_clusters": k})
