"""TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget: Opposite Strategies Suit
High and Low Budgets", ICML 2022).

Cluster the pool into ``n_labeled + budget`` clusters, drop clusters of ``min_cluster_size`` or
fewer points, then repeatedly take the cluster holding the fewest labeled points (ties: the
largest cluster) and label its most *typical* unlabeled point, where

    typicality(x) = 1 / mean_{x_i in kNN(x)} ||x - x_i||_2,   K = min(k_nn, cluster_size // 2)

with the neighbours taken inside the cluster. When every cluster has been visited the order
cycles (as in the published code).

Differences from the published code (github.com/avihu111/TypiClust), all deliberate:
  * distances are Euclidean as in the paper; the code averages *squared* distances (faiss'
    output). On L2-normalised embeddings both rank points almost identically.
  * k-means is faiss k-means with the full number of clusters, trained on a capped seeded
    sample and then assigning every point; k-means++ seeding (as sklearn's KMeans in the
    published code) up to ``kmeanspp_max`` clusters, faiss' random seeding above (k-means++
    costs ~4 s for k = 1,000 on two CPU cores, and small missed clusters matter less at large k)
    (the published code caps at 500 clusters of sklearn MiniBatchKMeans to stay fast).
  * clusters above ``max_cluster_points`` points score a seeded sample of that many candidate
    points (each still against *all* points of its cluster), so a low budget on a huge pool
    does not need an exact kNN over clusters of 100k points.
"""
from __future__ import annotations

import logging

import numpy as np

from selector.cluster import group_rows, kmeans, knn, sample_rows, sq_dists

from .base import MAX_COUNT, MAX_ITER, Selection, Strategy
from .registry import register

log = logging.getLogger(__name__)

EPS = 1e-8

#: largest (candidates x cluster) distance block computed densely (2 MB of float32); above it faiss' exact
#: search is faster (measured: 1,000 x 1,000 rows at d = 128 take 14 ms dense, 10 ms with faiss; 500 x 500
#: 2.8 ms dense, 3.4 ms with faiss)
DENSE_MAX = 500_000


def typicality(x: np.ndarray, k: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """Typicality of rows of ``x``: 1 / (mean Euclidean distance to their ``k`` nearest
    neighbours among the other rows of ``x`` + 1e-8).

    Args:
        x: (m, d) float32 (one cluster's points).
        k: neighbours, 1 <= k <= m - 1.
        candidates: (c,) int rows to score (default: all rows); their neighbours are still
            searched among all rows of ``x``.

    Returns:
        (c,) float64 typicality, higher = denser neighbourhood.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    m = x.shape[0]
    if not 1 <= k <= m - 1:
        raise ValueError(f"typicality needs 1 <= k <= m-1, got k={k} for m={m} rows")
    rows = np.arange(m) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if rows.shape[0] * m <= DENSE_MAX:
        # small cluster: one BLAS product and a partial sort (many tiny faiss calls would each open an
        # OpenMP parallel region, whose start-up costs more than the work inside it)
        d = sq_dists(x[rows], x)
        d[np.arange(rows.shape[0]), rows] = np.inf  # exclude self
        sq = np.partition(d, k - 1, axis=1)[:, :k]
    elif candidates is None:
        sq, _ = knn(x, k, exclude_self=True, flat_max=None)
    else:
        sq, idx = knn(x, k + 1, queries=x[rows], flat_max=None)
        # drop each candidate's own row (present with distance ~0; duplicates handled as knn does)
        is_self = idx == rows[:, None]
        is_self[~is_self.any(axis=1), -1] = True
        first = np.argmax(is_self, axis=1)
        keep = np.ones_like(is_self)
        keep[np.arange(rows.shape[0]), first] = False
        sq = sq[keep].reshape(rows.shape[0], k)
    dist = np.sqrt(np.maximum(sq.astype(np.float64), 0.0))
    return 1.0 / (dist.mean(axis=1) + EPS)


def most_typical(x: np.ndarray, rows: np.ndarray, k_nn: int, max_points: int,
                 rng: np.random.Generator, max_pairs: int | None = None) -> tuple[int, float]:
    """The most typical of ``rows`` (indices into ``x``) with TypiClust's K = min(k_nn, m // 2).

    Returns (row index into ``x``, typicality). A single row is returned with typicality 0.
    Above ``max_points`` rows, scores a seeded sample of ``max_points`` candidates (against every row).
    With ``max_pairs``, when (candidates x rows) would exceed it, the cluster is represented by a seeded
    sample of ``max(sqrt(max_pairs), 2 k_nn + 1)`` rows, which are both the candidates and their possible
    neighbours (the density is then estimated at the sample's resolution): this bounds the work per
    cluster when a huge pool is cut into many large clusters.
    """
    m = rows.shape[0]
    if m == 1:
        return int(rows[0]), 0.0
    if max_pairs is not None and min(m, max_points) * m > max_pairs:
        s = int(max(np.sqrt(max_pairs), 2 * k_nn + 1))
        if s < m:
            rows = rows[sample_rows(m, s, int(rng.integers(2**31 - 1)))]
            m = s
    k = max(1, min(k_nn, m // 2))
    pts = x[rows]
    cand = None
    if m > max_points:
        cand = sample_rows(m, max_points, int(rng.integers(2**31 - 1)))
    t = typicality(pts, k, candidates=cand)
    best = int(np.argmax(t))
    local = best if cand is None else int(cand[best])
    return int(rows[local]), float(t[best])


def typiclust_pick(x: np.ndarray, assign: np.ndarray, labeled_mask: np.ndarray, budget: int,
                   k_nn: int, min_cluster_size: int, max_cluster_points: int,
                   rng: np.random.Generator, max_pairs: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TypiClust's selection loop over a given clustering.

    Args:
        x: (n, d) float32. assign: (n,) int64 cluster of each row. labeled_mask: (n,) bool.
        max_pairs: bound on each cluster's typicality work (see :func:`most_typical`); None: no bound.

    Returns:
        (indices, typicality scores, cluster ids), each (budget,).
    """
    n_clusters = int(assign.max()) + 1
    sizes = np.bincount(assign, minlength=n_clusters)
    labeled_counts = np.bincount(assign[labeled_mask], minlength=n_clusters)
    keep = np.flatnonzero(sizes > min_cluster_size)
    if keep.shape[0] == 0:  # tiny pool: every cluster is "too small"; use them all
        keep = np.flatnonzero(sizes > 0)
    # fewest labeled first, then largest first; stable by cluster id
    order = keep[np.lexsort((keep, -sizes[keep], labeled_counts[keep]))]

    free = ~labeled_mask
    # free rows grouped by cluster (one argsort, no per-cluster scans of the pool)
    by_cluster, bounds = group_rows(assign, n_clusters, np.flatnonzero(free))
    members = {int(c): by_cluster[bounds[c]:bounds[c + 1]] for c in order}
    taken = np.zeros(x.shape[0], dtype=bool)

    out_i = np.empty(budget, dtype=np.int64)
    out_s = np.empty(budget, dtype=np.float64)
    out_g = np.empty(budget, dtype=np.int64)
    t = 0
    # clusters dropped for size are used only if the kept ones run out of unlabeled points
    dropped = np.setdiff1d(np.flatnonzero(sizes > 0), keep)
    dropped = dropped[np.lexsort((dropped, -sizes[dropped], labeled_counts[dropped]))]
    for c in dropped:
        members[int(c)] = by_cluster[bounds[c]:bounds[c + 1]]
    for pool in (order, dropped):
        while t < budget and pool.shape[0] > 0:
            progressed = False
            for c in pool:
                if t >= budget:
                    break
                rows = members[int(c)]
                rows = rows[~taken[rows]]
                members[int(c)] = rows
                if rows.shape[0] == 0:
                    continue
                j, s = most_typical(x, rows, k_nn, max_cluster_points, rng, max_pairs)
                taken[j] = True
                out_i[t], out_s[t], out_g[t] = j, s, c
                t += 1
                progressed = True
            if not progressed:
                break
    if t < budget:  # only rows in no cluster remain (impossible with a full assignment)
        rest = np.flatnonzero(free & ~taken)[: budget - t]
        out_i[t:], out_s[t:], out_g[t:] = rest, 0.0, -1
    return out_i, out_s, out_g


@register("typiclust")
class TypiClust(Strategy):
    """TypiClust (Hacohen et al., ICML 2022); see the module docstring.

    ``scores`` are typicalities, ``groups`` the k-means cluster of each pick, ``n_groups`` the
    number of clusters used.
    """

    PARAMS = {
        "k_nn": (int, 1, MAX_COUNT), "min_cluster_size": (int, 0, MAX_COUNT),
        "max_clusters": (int | None, 1, MAX_COUNT), "max_cluster_points": (int, 1, MAX_COUNT),
        "kmeans_iter": (int, 1, MAX_ITER), "max_points_per_centroid": (int, 1, MAX_COUNT),
        "kmeanspp_max": (int, 0, MAX_COUNT), "use_gpu": (bool | None, None, None),
    }

    def __init__(self, k_nn: int = 20, min_cluster_size: int = 5, max_clusters: int | None = None,
                 max_cluster_points: int = 5_000, kmeans_iter: int = 20,
                 max_points_per_centroid: int = 32, kmeanspp_max: int = 256,
                 use_gpu: bool | None = None):
        self.kmeanspp_max = kmeanspp_max
        self.k_nn = k_nn
        self.min_cluster_size = min_cluster_size
        self.max_clusters = max_clusters
        self.max_cluster_points = max_cluster_points
        self.kmeans_iter = kmeans_iter
        self.max_points_per_centroid = max_points_per_centroid
        self.use_gpu = use_gpu

    def _select(self, x, budget, labeled_mask, rng):
        n = x.shape[0]
        k = int(labeled_mask.sum()) + budget
        if self.max_clusters is not None:
            k = min(k, int(self.max_clusters))
        k = max(1, min(k, n))
        seed = int(rng.integers(2**31 - 1))
        _, assign, _ = kmeans(x, k, seed=seed, niter=self.kmeans_iter,
                              max_points_per_centroid=self.max_points_per_centroid,
                              init="k-means++" if k <= self.kmeanspp_max else None, use_gpu=self.use_gpu)
        idx, scores, groups = typiclust_pick(x, assign, labeled_mask, budget, self.k_nn,
                                             self.min_cluster_size, self.max_cluster_points, rng)
        return Selection(indices=idx, scores=scores, groups=groups, n_groups=k,
                         info={"n_clusters": k})
