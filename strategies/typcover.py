"""Typical k-center ("typcover"): farthest-point coverage over typical representatives.

1. k-means (k-means++ seeding) the pool into ``M = min(n, oversample * (n_labeled + budget))``
   clusters: more, smaller clusters than TypiClust uses, so a rare class of a handful of images
   gets a cluster of its own.
2. Each cluster of at least ``min_size`` points offers one candidate, its most *typical* point
   (TypiClust's typicality, Hacohen et al., ICML 2022): prototypical images rather than the
   outliers at the edge of a cluster.
3. Greedy k-center (Sener & Savarese, ICLR 2018) over those candidates, started from the labeled
   items (or, with none, the candidate of the largest cluster): each pick is the candidate farthest
   from everything chosen or labeled, weighted by ``size ** density`` of its cluster.

K-center alone covers the space but picks outliers (poor training items on balanced pools);
TypiClust picks typical items but spends its budget in proportion to the mass, so on a long tail it
finds few rare classes. Here the coverage comes from k-center and the typicality from the candidate
set. No class count is needed to choose.

``typical_share`` (default 0.5) of the budget goes first to TypiClust's own picks (k-means into
``n_labeled + share * budget`` clusters, the most typical item of each: the mass of the pool),
and the k-center starts from them; rank order alternates the two kinds. 0 is pure coverage.

Wide embeddings (``d > pca_dim``, default 128: the pretrained backbone's 1,280-d) are chosen on their first
``pca_dim`` principal axes (:func:`selector.cluster.pca_project`: fitted on a seeded sample, an (n, 128) float32
copy, a tenth of the pool's size), every step above included. On the photo folders of the strategy matrix
(``benchmarks/results/strategy_matrix_photos``, same pools and seeds) it covers more classes and trains a better
probe than choosing in the full 1,280 dimensions (mean rank 1.91 against 2.51; on the glyph datasets' 1,330-d
embedding the two are close, 1.59 against 1.52, ``benchmarks/results/strategy_matrix_glyphs_pca``), and at 1M x
1,280 it costs one pass over the pool instead of every k-means and typicality step at ten times the width. The
typicality work of each stage is bounded by ``typicality_pairs`` (candidate x neighbour pairs shared by its
clusters, at least a 500-row sample per cluster; :func:`selector.strategies.typiclust.most_typical`): no pool of the
strategy matrix reaches the bound, and a pool of a million rows cut into 1,000 clusters samples each to about 500
rows.

4. For the report only (``count_classes``, default on): the class count of
   :func:`selector.strategies.class_count.count_classes` (eigengap, silhouette sweep, HDBSCAN, stability: an
   estimate, an interval and whether it is confident), and the spectral group of each pick (``groups``,
   ``n_groups``), drawn from a seed taken after the picks, so they never change the selection.

Chosen as the default strategy by the strategy matrix (``benchmarks/strategy_matrix.py``,
tables in ``benchmarks/results/strategy_matrix``): with ``typical_share=0.5`` it has the best mean rank over
every embedding, dataset, pool shape and budget (2.78, then ``typical_share=0`` 3.23 and
``balanced`` 3.28). No strategy is within 0.5 class of the best everywhere. Its weak cell: a pool
mixing two datasets of different spread (MNIST + notMNIST, balanced, default embedding) where the
covering picks go to the more spread half and it trails TypiClust by 4 classes at B = K; pure
coverage (``typical_share=0``) finds more rare classes on long tails. Weighting the candidates by
cluster size (``density``), fewer clusters (``oversample`` 3) or larger minimum clusters
(``min_size``) traded long-tail coverage for the mixed pool (``benchmarks/results/strategy_variants``).
"""
from __future__ import annotations

import numpy as np

from selector.cluster import group_rows, kmeans, pca_project, sq_dists

from .base import MAX_COUNT, MAX_ITER, Selection, Strategy
from .class_count import count_classes, spectral_groups
from .registry import register
from .typiclust import most_typical


def pairs_per_cluster(total: int, n_clusters: int, floor: int = 250_000) -> int:
    """Typicality work (candidate x neighbour pairs) allowed per cluster when ``total`` is shared by
    ``n_clusters`` clusters, never below ``floor`` (a 500-row sample)."""
    return int(max(int(floor), int(total) // max(1, int(n_clusters))))


def typical_candidates(x: np.ndarray, assign: np.ndarray, free: np.ndarray, k_nn: int, min_size: int,
                       max_points: int, rng: np.random.Generator, max_pairs: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The most typical free row of every cluster with at least ``min_size`` rows (``max_points``,
    ``max_pairs``: see :func:`selector.strategies.typiclust.most_typical`).

    Returns: (rows, cluster ids, cluster sizes), one entry per such cluster that has a free row.
    """
    n_clusters = int(assign.max()) + 1
    sizes = np.bincount(assign, minlength=n_clusters)
    by, bounds = group_rows(assign, n_clusters, np.flatnonzero(free))
    rows, cl = [], []
    for c in np.flatnonzero(sizes >= min_size):
        members = by[bounds[c]:bounds[c + 1]]
        if members.shape[0] == 0:
            continue
        j, _ = most_typical(x, members, k_nn, max_points, rng, max_pairs)
        rows.append(j)
        cl.append(c)
    rows, cl = np.asarray(rows, dtype=np.int64), np.asarray(cl, dtype=np.int64)
    return rows, cl, sizes[cl]


def weighted_kcenter(cand: np.ndarray, weight: np.ndarray, centers: np.ndarray,
                     n: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center over candidate vectors: each step picks argmax ``weight * dist`` to the
    nearest center (the earlier picks and ``centers``).

    Args:
        cand: (m, d) float32 candidates. weight: (m,) > 0. centers: (c, d) float32 (may be empty).
        n: picks, <= m.

    Returns:
        (n,) int64 candidate indices in pick order, (n,) float64 their distance when picked (inf
        for a first pick without centers: then the heaviest candidate is taken).
    """
    m = cand.shape[0]
    if centers.shape[0]:
        md = np.sqrt(np.maximum(sq_dists(cand, centers).min(axis=1).astype(np.float64), 0.0))
    else:
        md = np.full(m, np.inf)
    out = np.empty(n, dtype=np.int64)
    rad = np.empty(n, dtype=np.float64)
    for t in range(n):
        score = np.where(np.isinf(md), weight * 1e30, weight * md)
        j = int(np.argmax(score))
        out[t], rad[t] = j, md[j]
        d = np.sqrt(np.maximum(sq_dists(cand, cand[j:j + 1])[:, 0].astype(np.float64), 0.0))
        md = np.minimum(md, d)
        md[j] = -1.0  # never again
    return out, rad


@register("typcover")
class TypCover(Strategy):
    """Typical k-center; see the module docstring. ``scores`` are the pick's distance to the nearest
    earlier pick or labeled item (0 for the first pick without labels); ``groups`` the estimated
    class group of each pick with ``count_classes`` (else its k-means cluster); ``info`` holds
    ``n_clusters``, ``n_candidates``, ``pca_dim`` (the width chosen in) and, with ``count_classes``, the class
    count's ``classes`` (estimate, low, high, confident), ``k``, ``k_range`` (the interval), ``class_votes``,
    ``k_per_seed`` and ``max_k``.
    """

    #: oversample up to 10^6 (the clusters are capped by max_clusters and by the pool long before); density
    #: within +-8, where cluster sizes to that power stay finite in float64; k_repeats: up to 100 subsamples
    PARAMS = {
        "oversample": (float, 1.0, 1e6), "min_size": (int, 1, MAX_COUNT), "density": (float, -8.0, 8.0),
        "k_nn": (int, 1, MAX_COUNT), "max_cluster_points": (int, 1, MAX_COUNT), "kmeans_iter": (int, 1, MAX_ITER),
        "max_points_per_centroid": (int, 1, MAX_COUNT), "typical_share": (float, 0.0, 1.0),
        "kmeanspp_max": (int, 0, MAX_COUNT), "max_clusters": (int, 1, MAX_COUNT), "max_train": (int, 1, MAX_COUNT),
        "count_classes": (bool, None, None), "k_repeats": (int, 1, 100),
        "pca_dim": (int, 0, MAX_COUNT), "typicality_pairs": (int, 1, 10**15),
        "use_gpu": (bool | None, None, None),
    }

    def __init__(self, oversample: float = 6.0, min_size: int = 2, density: float = 0.0, k_nn: int = 20,
                 max_cluster_points: int = 5_000, kmeans_iter: int = 20, max_points_per_centroid: int = 32,
                 typical_share: float = 0.5, kmeanspp_max: int = 1024, max_clusters: int = 1000,
                 max_train: int = 16_384, count_classes: bool = True,
                 k_repeats: int = 3, pca_dim: int = 128, typicality_pairs: int = 250_000_000,
                 use_gpu: bool | None = None):
        if not 0.0 <= typical_share <= 1.0:
            raise ValueError(f"typical_share must be in [0, 1], got {typical_share}")
        self.typical_share = typical_share
        self.kmeanspp_max = kmeanspp_max
        self.max_clusters = max_clusters
        self.max_train = max_train
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        self.oversample = oversample
        self.min_size = min_size
        self.density = density
        self.k_nn = k_nn
        self.max_cluster_points = max_cluster_points
        self.kmeans_iter = kmeans_iter
        self.max_points_per_centroid = max_points_per_centroid
        self.count_classes = count_classes
        self.k_repeats = k_repeats
        self.pca_dim = pca_dim
        self.typicality_pairs = typicality_pairs
        self.use_gpu = use_gpu

    def _select(self, x, budget, labeled_mask, rng):
        n = x.shape[0]
        n_lab = int(labeled_mask.sum())
        seed = int(rng.integers(2**31 - 1))
        full = x
        if self.pca_dim and x.shape[1] > self.pca_dim and n > 2 * self.pca_dim:  # wide: choose on principal axes
            x = pca_project(x, self.pca_dim, seed=seed + 2)
        b_typ = int(round(self.typical_share * budget))
        first = np.empty(0, dtype=np.int64)
        first_s = np.empty(0)
        if b_typ > 0:  # TypiClust's picks: typical items in proportion to the mass
            from .typiclust import typiclust_pick
            kt = int(min(n, n_lab + b_typ))
            _, ta, _ = kmeans(x, kt, seed=seed + 1, niter=self.kmeans_iter,
                              init="k-means++" if kt <= self.kmeanspp_max else None,
                              max_points_per_centroid=self.max_points_per_centroid, use_gpu=self.use_gpu)
            first, first_s, _ = typiclust_pick(x, ta, labeled_mask, b_typ, self.k_nn, 5, self.max_cluster_points, rng,
                                               pairs_per_cluster(self.typicality_pairs, kt))
        covered = labeled_mask.copy()
        covered[first] = True
        rest = budget - b_typ
        # for scale (no pool of the strategy matrix reaches either cap): at most max_clusters clusters, trained
        # on at most max_train rows; k-means costs clusters x training rows x d per iteration
        m = int(min(n, max(rest + n_lab, min(self.max_clusters, round(self.oversample * (n_lab + budget))))))
        mpc = int(max(1, min(self.max_points_per_centroid, self.max_train // max(m, 1))))
        # k-means++ seeding finds small clusters; above kmeanspp_max clusters its k * log k passes cost more
        # than they find (a pool of 1M at B = 1,000 asks for 6,000), so faiss' seeded random init is used
        _, assign, _ = kmeans(x, m, seed=seed, niter=self.kmeans_iter,
                              init="k-means++" if m <= self.kmeanspp_max else None,
                              max_points_per_centroid=mpc, use_gpu=self.use_gpu)
        rows, cl, sizes = typical_candidates(x, assign, ~covered, self.k_nn, self.min_size,
                                             self.max_cluster_points, rng, pairs_per_cluster(self.typicality_pairs, m))
        picks = np.empty(0, dtype=np.int64)
        radius = np.empty(0)
        if rows.shape[0] and rest > 0:
            take = min(rest, rows.shape[0])
            w = sizes.astype(np.float64) ** self.density
            order, radius = weighted_kcenter(x[rows], w, x[covered], take)
            picks = rows[order]
        if picks.shape[0] < rest:  # fewer candidate clusters than the budget: k-center fills up
            from .kcenter import kcenter_greedy
            more, r2 = kcenter_greedy(x, np.concatenate([np.flatnonzero(covered), picks]), rest - picks.shape[0])
            picks = np.concatenate([picks, more])
            radius = np.concatenate([radius, r2])
        # rank order: typical and covering picks alternate
        slot = np.concatenate([2 * np.arange(b_typ), 2 * np.arange(rest) + 1]) if b_typ else np.arange(rest)
        order = np.argsort(slot, kind="stable")
        picks = np.concatenate([first, picks])[order]
        radius = np.concatenate([np.zeros(b_typ), radius])[order]
        groups = assign[picks]
        radius = np.where(np.isfinite(radius), radius, 0.0)
        info = {"n_clusters": m, "n_candidates": int(rows.shape[0]), "pca_dim": int(x.shape[1])}
        n_groups = None
        if self.count_classes:  # the report's class count: after the picks, from its own seed
            cseed = int(rng.integers(2**31 - 1))
            # the report considers up to report_max_k(n) classes whatever the budget (as the class-count
            # benchmark measured it); a large budget would otherwise buy a 10,000-row graph and 2 B eigenvectors
            count = count_classes(full, seed=cseed, repeats=self.k_repeats)
            _, gassign = spectral_groups(full, count.estimate, estimate=count.eigengap, seed=cseed,
                                         use_gpu=self.use_gpu)
            groups, n_groups = gassign[picks], int(gassign.max()) + 1
            info.update(count.info())
        return Selection(indices=picks, scores=radius, groups=groups, n_groups=n_groups, info=info)
