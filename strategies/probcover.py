"""ProbCover (Yehuda, Dekel, Hacohen & Weinshall, "Active Learning Through a Covering Lens",
NeurIPS 2022).

Every point x owns a ball B_delta(x) = {x' : ||x - x'|| < delta}. Greedily pick the unlabeled
point whose ball covers the most not-yet-covered points (points in a labeled point's ball start
out covered), until the budget is spent; once everything is covered, the rest is drawn at
random (seeded) from the unlabeled points, as in the published code.

Differences from the published code, all for scale:
  * up to ``exact_max`` points (default :data:`selector.cluster.FLAT_MAX`) the delta-ball graph
    is exact (chunked faiss range search), unless it would exceed ``max_edges`` edges. Above
    that, or when it is too dense, it is the sparse kNN graph (``k_graph`` neighbours per point,
    exact up to FLAT_MAX points, IVF above) cut at delta, never an n x n matrix: a ball then
    holds at most ``k_graph`` + 1 points, which caps the degree of points in very dense regions
    (the greedy order there may differ). ``info["graph"]`` says which was used.
  * degrees are kept up to date incrementally through the reverse adjacency instead of a full
    recount per pick: O(|E|) in total instead of O(budget * |E|).
  * delta comes from the purity heuristic without labels: k-means (k-means++ seeding) the
    pool into ``n_clusters`` groups (default: the estimate of :mod:`selector.strategies.class_count`); a
    ball is *pure* when every point in it shares its centre's cluster. With the kNN lists sorted, the ball of x is
    pure iff delta <= r(x), the distance to x's first neighbour in another cluster (+inf when
    none of its k_graph neighbours is), so the purity of delta is the fraction of points with
    r(x) >= delta, and the largest delta with purity >= ``purity`` (0.95) is the (1 - purity)
    quantile of r. The paper scans a grid of deltas; this is the exact answer on the kNN graph.
"""
from __future__ import annotations

import logging

import numpy as np

from selector.cluster import FLAT_MAX, kmeans, knn, range_pairs

from .base import MAX_COUNT, MAX_ITER, Selection, Strategy
from .class_count import estimate_num_classes
from .registry import register

log = logging.getLogger(__name__)


def purity_delta(sqdist: np.ndarray, idx: np.ndarray, assign: np.ndarray, purity: float = 0.95) -> float:
    """Largest delta whose balls are pure for at least ``purity`` of the points.

    Args:
        sqdist: (n, k) squared distances of each point's k nearest neighbours (ascending,
            self excluded). idx: (n, k) their indices (-1 = missing). assign: (n,) cluster ids.

    Returns:
        delta (Euclidean) such that the fraction of points x with r(x) >= delta is >= purity,
        r(x) = distance to x's first neighbour in a different cluster (+inf if none). When more
        than ``1 - purity`` of the points have no impure neighbour, returns the largest finite
        neighbour distance.
    """
    other = (idx >= 0) & (assign[np.maximum(idx, 0)] != assign[:, None])
    has = other.any(axis=1)
    first = np.argmax(other, axis=1)
    r = np.full(idx.shape[0], np.inf)
    r[has] = np.sqrt(np.maximum(sqdist[has, first[has]].astype(np.float64), 0.0))
    i = min(int(np.floor(r.shape[0] * (1.0 - purity) + 1e-9)), r.shape[0] - 1)
    q = float(np.partition(r, i)[i])  # the i-th smallest r: >= purity of the points have r >= q
    if not np.isfinite(q):
        finite = sqdist[np.isfinite(sqdist)]
        q = float(np.sqrt(max(float(finite.max()), 0.0))) if finite.size else 0.0
    return q


def delta_graph(sqdist: np.ndarray, idx: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Edges (centre -> covered point) of the kNN graph with distance < delta, plus self loops.

    Returns:
        src, dst: (E,) int64 arrays; point ``src[e]``'s ball contains ``dst[e]``.
    """
    n, k = idx.shape
    inside = (idx >= 0) & (sqdist < np.float32(delta) ** 2)
    src = np.concatenate([np.arange(n, dtype=np.int64), np.repeat(np.arange(n, dtype=np.int64), k)[inside.ravel()]])
    dst = np.concatenate([np.arange(n, dtype=np.int64), idx.ravel()[inside.ravel()]])
    return src, dst


def ragged_gather(ptr: np.ndarray, data: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Concatenation of ``data[ptr[i]:ptr[i+1]]`` over ``ids`` without a Python loop."""
    starts = ptr[ids]
    lens = ptr[ids + 1] - starts
    total = int(lens.sum())
    if total == 0:
        return data[:0]
    offs = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(total)
    return data[offs]


def max_coverage(src: np.ndarray, dst: np.ndarray, n: int, labeled_mask: np.ndarray, budget: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Greedy maximum coverage over balls given as edges ``src -> dst`` on n points.

    Points covered by a labeled point's ball start covered. Each step picks the unlabeled,
    unpicked point whose ball holds the most uncovered points (ties: lowest index); when no
    ball adds coverage, the remaining picks are drawn uniformly with ``rng``.

    Returns:
        picked (budget,) int64, gain (budget,) float64 (points newly covered by each pick),
        coverage fraction after the picks.
    """
    # CSR of forward (ball members) and reverse (balls containing a point) adjacency
    order = np.argsort(src, kind="stable")
    fwd = dst[order]
    fptr = np.searchsorted(src[order], np.arange(n + 1))
    order_r = np.argsort(dst, kind="stable")
    rev = src[order_r]
    rptr = np.searchsorted(dst[order_r], np.arange(n + 1))

    covered = np.zeros(n, dtype=bool)
    lab = np.flatnonzero(labeled_mask)
    if lab.shape[0]:
        covered[ragged_gather(fptr, fwd, lab)] = True
    # degree = uncovered points in each ball
    deg = np.bincount(src[~covered[dst]], minlength=n).astype(np.int64)
    deg[labeled_mask] = -1  # never pick a labeled point
    picked = np.empty(budget, dtype=np.int64)
    gain = np.zeros(budget, dtype=np.float64)
    t = 0
    while t < budget:
        j = int(np.argmax(deg))
        if deg[j] <= 0:
            break
        new = fwd[fptr[j]:fptr[j + 1]]
        new = new[~covered[new]]
        covered[new] = True
        picked[t], gain[t] = j, float(new.shape[0])
        t += 1
        # every ball containing a newly covered point loses one uncovered member
        if new.shape[0]:
            np.subtract.at(deg, ragged_gather(rptr, rev, new), 1)
        deg[j] = -1  # labeled and picked points stay <= -1: never picked again
    coverage = float(covered.mean())
    if t < budget:
        free = np.ones(n, dtype=bool)
        free[labeled_mask] = False
        free[picked[:t]] = False
        picked[t:] = rng.choice(np.flatnonzero(free), size=budget - t, replace=False)
    return picked, gain, coverage


@register("probcover")
class ProbCover(Strategy):
    """ProbCover (Yehuda et al., NeurIPS 2022); see the module docstring.

    ``scores`` are coverage gains, ``groups`` the purity k-means cluster of each pick,
    ``info`` holds ``delta`` (Euclidean), ``delta_source`` ("purity" or "fixed"),
    ``purity_clusters`` and ``coverage`` (fraction of the pool covered after selection).
    """

    PARAMS = {
        "delta": (float | None, 0.0, None), "purity": (float, 0.0, 1.0), "k_graph": (int, 1, MAX_COUNT),
        "n_clusters": (int | None, 1, MAX_COUNT), "kmeans_iter": (int, 1, MAX_ITER),
        "max_points_per_centroid": (int, 1, MAX_COUNT), "exact_max": (int, 0, MAX_COUNT),
        "max_edges": (int, 0, MAX_COUNT),
        "use_gpu": (bool | None, None, None),
    }

    def __init__(self, delta: float | None = None, purity: float = 0.95, k_graph: int = 32,
                 n_clusters: int | None = None, kmeans_iter: int = 20,
                 max_points_per_centroid: int = 64, exact_max: int = FLAT_MAX, max_edges: int = 10_000_000,
                 use_gpu: bool | None = None):
        self.delta = delta
        self.purity = purity
        self.k_graph = k_graph
        self.n_clusters = n_clusters
        self.kmeans_iter = kmeans_iter
        self.exact_max = exact_max
        self.max_edges = max_edges
        self.max_points_per_centroid = max_points_per_centroid
        self.use_gpu = use_gpu

    def _select(self, x, budget, labeled_mask, rng):
        n = x.shape[0]
        seed = int(rng.integers(2**31 - 1))
        groups = np.full(budget, -1, dtype=np.int64)
        info: dict = {}
        if n == 1:
            return Selection(indices=np.zeros(1, np.int64), scores=np.ones(1), groups=groups,
                             info={"delta": 0.0, "delta_source": "trivial", "coverage": 1.0})
        k = min(self.k_graph, n - 1)
        sq = idx = None
        assign = None
        if self.delta is None:
            sq, idx = knn(x, k, use_gpu=self.use_gpu, seed=seed)
            kc = self.n_clusters if self.n_clusters is not None else estimate_num_classes(x, seed=seed).k
            kc = int(max(2, min(kc, n)))
            _, assign, _ = kmeans(x, kc, seed=seed, niter=self.kmeans_iter, init="k-means++",
                                  max_points_per_centroid=self.max_points_per_centroid, use_gpu=self.use_gpu)
            delta = purity_delta(sq, idx, assign, self.purity)
            info.update(delta_source="purity", purity_clusters=kc)
        else:
            delta = float(self.delta)
            info.update(delta_source="fixed")
        pairs = None
        if n <= self.exact_max:
            pairs = range_pairs(x, delta, max_pairs=self.max_edges)
        if pairs is not None:
            self_loops = np.arange(n, dtype=np.int64)
            src, dst = np.concatenate([self_loops, pairs[0]]), np.concatenate([self_loops, pairs[1]])
            info["graph"] = "exact"
        else:
            if sq is None:
                sq, idx = knn(x, k, use_gpu=self.use_gpu, seed=seed)
            src, dst = delta_graph(sq, idx, delta)
            info["graph"] = f"knn{k}"
        picked, gain, coverage = max_coverage(src, dst, n, labeled_mask, budget, rng)
        if assign is not None:
            groups = assign[picked]
        info.update(delta=float(delta), coverage=coverage, n_edges=int(src.shape[0]))
        return Selection(indices=picked, scores=gain, groups=groups, n_groups=info.get("purity_clusters"),
                         info=info)
