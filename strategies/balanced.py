"""Class-balanced selection: the project's default strategy.

1. Estimate the number of classes K unless given: the reported class count
   (:func:`selector.strategies.class_count.count_classes`: the median of the eigengap over ``k_repeats`` subsamples,
   a silhouette sweep, HDBSCAN and k-means stability), considering up to ``max_k`` classes (by default from the pool
   size and the budget, up to 1,000); ``info["classes"]`` holds the estimate, its interval and whether it is
   confident, ``info["k_range"]`` the interval.
2. Group the pool into K groups by spectral clustering of a subsample extended to all points
   through the group means (:func:`selector.strategies.class_count.spectral_groups`); unlike k-means on
   the pool this does not split a large class to even out cluster sizes.
3. Split the budget evenly across the groups (:func:`even_allocation`): every group gets
   ``budget // K`` (capped by its unlabeled points, the excess re-split among the others) and
   the remainder goes one each to the groups with the fewest labeled + allocated items (ties:
   larger group first). A large group therefore cannot take more than its share: on a
   long-tailed pool the picks come out as balanced as the groups are pure.
4. Inside each group run TypiClust (Hacohen et al., ICML 2022) with ``labeled_g + b_g``
   sub-clusters: the most typical point (densest kNN neighbourhood) of each sub-cluster, the
   sub-clusters with fewest labeled points first. Typical points are prototypical of their class
   and the sub-clusters keep them far from each other.

5. Spend the ``explore`` share of the budget (default half, rounded down) on greedy k-center
   picks (:func:`selector.strategies.kcenter.kcenter_greedy`, Sener & Savarese, ICLR 2018) started from the
   labeled items and the typical picks: the points farthest from everything chosen. Groups found
   by a kNN graph cannot isolate a class of a handful of images (its members' neighbours are
   mostly other classes), so on a long-tailed pool the rarest classes hide at the edge of a
   group; they are exactly what k-center reaches first. Density cannot tell them from outliers
   (both have sparse neighbourhoods: a density filter on the k-center picks, tried while designing
   this and not kept, lost the rarest MNIST classes), so the split is a hedge: half the budget is
   typical and class-balanced over the groups, half covers the space. Measured on MNIST-10k
   embeddings of the project's encoder (``benchmarks/quality_strategies.py --data mnist10k``, tables in
   ``benchmarks/results/quality_strategies``): at B = 20 on a long-tailed pool (imbalance 100) it covers
   9.2 of 10 classes against 6.4 with ``explore=0``, at a cost of probe accuracy on balanced pools (0.729 against
   0.840 at B = 20), where ``explore=0`` is the better choice. The exploring picks follow the
   geometry, not the groups: on well-separated blobs they favour the widest blobs (five blobs of
   2000 to 20 points, B = 25: 12, 4, 5, 2, 2 picks; ``explore=0``: 5 each). Spreading them
   round-robin over the groups instead evens that out but found fewer rare MNIST classes
   (tried while designing this, not kept).

With known labels (``select(..., labels=y)``, the classes of the labeled items), step 3 balances the
true classes instead (:func:`class_allocation`): groups are mapped to the class most of their labeled
items have, and the budget goes first to the classes with the fewest labels and to groups with no
labeled item yet (classes not seen so far); step 5 then explores outside the groups of the classes
that got no typical pick (:func:`saturated_groups`: they already have more labels than the rest).

Rank order alternates typical and exploring picks (typical ones round-robin over the groups), so
an annotator who stops early has both kinds. ``groups`` are the estimated group ids (exploring
picks get the group they fall in), ``scores`` the typicality of typical picks and the k-center
radius (distance to the nearest earlier pick or labeled item) of exploring ones; ``n_groups`` is
K; ``info`` holds the per-group allocation of the typical picks, the group sizes, ``k_source``
("estimated" or "given") and ``n_explore``.
"""
from __future__ import annotations

import logging

import numpy as np

from selector.cluster import group_rows, kmeans

from .base import MAX_COUNT, MAX_ITER, Open, Selection, Strategy
from .class_count import MAX_K, count_classes, spectral_groups
from .kcenter import kcenter_greedy
from .registry import register
from .typiclust import typiclust_pick

log = logging.getLogger(__name__)


def even_allocation(capacity: np.ndarray, labeled: np.ndarray, budget: int) -> np.ndarray:
    """Split ``budget`` evenly over groups, remainder to the least covered.

    Args:
        capacity: (g,) unlabeled items per group (upper bound on each share).
        labeled: (g,) labeled items per group (coverage that already exists).
        budget: total, <= capacity.sum().

    Returns:
        (g,) int64 allocation summing to ``budget``: each round gives every group with room
        ``remaining // n_open`` (capped by its room); the last ``remaining < n_open`` items go
        one each to the open groups with the smallest labeled + allocated count, ties to the
        larger capacity, then the lower id.
    """
    capacity = np.asarray(capacity, dtype=np.int64)
    labeled = np.asarray(labeled, dtype=np.int64)
    if budget > int(capacity.sum()):
        raise ValueError(f"budget {budget} exceeds the {int(capacity.sum())} unlabeled items")
    alloc = np.zeros_like(capacity)
    remaining = int(budget)
    while remaining > 0:
        open_ = np.flatnonzero(alloc < capacity)
        share = remaining // open_.shape[0]
        if share > 0:
            add = np.minimum(share, capacity[open_] - alloc[open_])
            alloc[open_] += add
            remaining -= int(add.sum())
            continue
        order = open_[np.lexsort((open_, -capacity[open_], labeled[open_] + alloc[open_]))]
        alloc[order[:remaining]] += 1
        remaining = 0
    return alloc


def water_fill(level: np.ndarray, capacity: np.ndarray, budget: int) -> np.ndarray:
    """Give ``budget`` items one at a time to the unit with the lowest ``level + allocated`` that
    still has room (ties: larger capacity, then lower id).

    Args:
        level: (u,) labels each unit already has; capacity: (u,) unlabeled items it can still give.
    Returns (u,) int64 allocation summing to ``budget`` (<= capacity.sum()).
    """
    level = np.asarray(level, dtype=np.int64)
    capacity = np.asarray(capacity, dtype=np.int64)
    if budget > int(capacity.sum()):
        raise ValueError(f"budget {budget} exceeds the {int(capacity.sum())} unlabeled items")
    alloc = np.zeros_like(capacity)
    for _ in range(int(budget)):
        open_ = np.flatnonzero(alloc < capacity)
        best = open_[np.lexsort((open_, -capacity[open_], level[open_] + alloc[open_]))[0]]
        alloc[best] += 1
    return alloc


def class_allocation(assign: np.ndarray, labeled_mask: np.ndarray, labels: np.ndarray, n_groups: int,
                     budget: int) -> np.ndarray:
    """Per-group allocation that balances the *true classes* of the labeled set.

    Each group stands for the class most of its labeled items have (groups with no known label stand
    for a class not seen yet, level 0, or for their labeled items of unknown class). Groups standing for
    the same class share one level, the number of labels that class has; the budget is water-filled over
    these units, so classes with few labels (and unseen ones) get the picks, and each unit's share is
    split evenly over its groups.

    Args:
        assign: (n,) group ids; labeled_mask: (n,) bool; labels: (n,) int64, -1 unknown.
    Returns (n_groups,) int64 allocation summing to ``budget``.
    """
    free = ~labeled_mask
    capacity = np.bincount(assign[free], minlength=n_groups)
    labeled = np.bincount(assign[labeled_mask], minlength=n_groups)
    known = labels >= 0
    class_count = np.bincount(labels[known]) if known.any() else np.zeros(0, dtype=np.int64)
    unit_of = np.empty(n_groups, dtype=np.int64)
    level: list[int] = []
    unit_key: dict[tuple, int] = {}
    for gid in range(n_groups):
        lab = labels[known & (assign == gid)]
        key = ("class", int(np.bincount(lab).argmax())) if lab.size else ("group", gid)
        if key not in unit_key:
            unit_key[key] = len(level)
            level.append(int(class_count[key[1]]) if key[0] == "class" else int(labeled[gid]))
        unit_of[gid] = unit_key[key]
    u_cap = np.bincount(unit_of, weights=capacity, minlength=len(level)).astype(np.int64)
    u_alloc = water_fill(np.array(level), u_cap, budget)
    alloc = np.zeros(n_groups, dtype=np.int64)
    for u in np.flatnonzero(u_alloc):
        members = np.flatnonzero(unit_of == u)
        alloc[members] = even_allocation(capacity[members], labeled[members], int(u_alloc[u]))
    return alloc


def saturated_groups(assign: np.ndarray, labeled_mask: np.ndarray, labels: np.ndarray,
                     alloc: np.ndarray) -> np.ndarray:
    """Groups that stand for a known class which :func:`class_allocation` gave nothing.

    Args:
        assign: (n,) group ids; labeled_mask: (n,) bool; labels: (n,) int64, -1 unknown;
        alloc: (g,) the typical picks' per-group allocation.
    Returns (g,) bool: True for a group whose labeled items mostly have class c when the groups
    standing for c got no pick (c already has more labels than the classes that got them).
    """
    g = alloc.shape[0]
    known = labeled_mask & (labels >= 0)
    cls = np.full(g, -1, dtype=np.int64)
    for gid in np.unique(assign[known]):
        cls[gid] = int(np.bincount(labels[known & (assign == gid)]).argmax())
    if not (cls >= 0).any():
        return np.zeros(g, dtype=bool)
    got = np.zeros(int(cls.max()) + 1, dtype=np.int64)
    np.add.at(got, cls[cls >= 0], alloc[cls >= 0])
    return (cls >= 0) & (got[np.maximum(cls, 0)] == 0)


def explore_picks(x: np.ndarray, centers: np.ndarray, n: int,
                  allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` greedy k-center picks (Sener & Savarese, ICLR 2018) started from ``centers``.

    Args:
        x: (N, d) float32. centers: (c,) unique rows already chosen (they count as coverage wherever
            they are). n: picks wanted. allowed: (N,) bool rows that may be picked (None: all); when
            fewer than ``n`` allowed rows are free, the rest come from all rows.
    Returns:
        picked (n,) int64 in pick order, radius (n,) float64 (distance to the nearest earlier center).
    """
    if allowed is None or allowed.all():
        return kcenter_greedy(x, centers, n)
    m = min(n, int(allowed.sum()) - int(allowed[centers].sum()))
    picked, radius = kcenter_greedy(x, centers, m, allowed=allowed)
    if m < n:
        more, r2 = kcenter_greedy(x, np.concatenate([centers, picked]), n - m)
        picked, radius = np.concatenate([picked, more]), np.concatenate([radius, r2])
    return picked, radius


@register("balanced")
class Balanced(Strategy):
    """Even budget over estimated classes, typical and diverse picks inside each, plus k-center
    exploration for the classes the groups miss; see module doc.

    Args:
        n_classes: K when known; None estimates it.
        explore: share of the budget (``floor(explore * budget)`` picks) spent on k-center
            exploration, in [0, 1); 0 gives the purely typical, group-balanced selection.
        max_k: largest K the estimate considers; None: from the pool size and the budget
            (:func:`selector.strategies.class_count.auto_max_k`, up to 1,000). n_sample / k_graph:
            estimate's subsample size (raised for a large max_k) and graph degree. k_repeats:
            subsample seeds of the estimate; K is their median (or the whole pool's estimate, see
            :func:`~selector.strategies.class_count.estimate_class_range`) and ``info["k_range"]`` their
            range. k_nn, min_cluster_size, max_cluster_points: TypiClust inside groups.
    """

    #: max_k between the 2 classes the eigengap needs and the 1,000 the estimate supports (MAX_K)
    PARAMS = {
        "n_classes": (int | None, 1, MAX_COUNT), "max_k": (int | None, 2, MAX_K), "n_sample": (int, 1, MAX_COUNT),
        "k_graph": (int, 1, MAX_COUNT), "k_nn": (int, 1, MAX_COUNT), "min_cluster_size": (int, 0, MAX_COUNT),
        "max_cluster_points": (int, 1, MAX_COUNT), "kmeans_iter": (int, 1, MAX_ITER),
        "max_points_per_centroid": (int, 1, MAX_COUNT), "kmeanspp_max": (int, 0, MAX_COUNT),
        "explore": (float, 0.0, Open(1.0)),
        "use_gpu": (bool | None, None, None),
        "k_repeats": (int, 1, 100),
    }

    def __init__(self, n_classes: int | None = None, max_k: int | None = None, n_sample: int = 5_000,
                 k_graph: int = 10, k_nn: int = 20, min_cluster_size: int = 5,
                 max_cluster_points: int = 5_000, kmeans_iter: int = 20, max_points_per_centroid: int = 32,
                 kmeanspp_max: int = 256, explore: float = 0.5, use_gpu: bool | None = None,
                 k_repeats: int = 3):
        if not 0.0 <= explore < 1.0:
            raise ValueError(f"explore must be in [0, 1), got {explore}")
        self.kmeanspp_max = kmeanspp_max
        self.explore = explore
        self.n_classes = n_classes
        self.max_k = max_k
        self.n_sample = n_sample
        self.k_graph = k_graph
        self.k_nn = k_nn
        self.min_cluster_size = min_cluster_size
        self.max_cluster_points = max_cluster_points
        self.kmeans_iter = kmeans_iter
        self.max_points_per_centroid = max_points_per_centroid
        self.use_gpu = use_gpu
        if int(k_repeats) < 1:
            raise ValueError(f"k_repeats must be >= 1, got {k_repeats}")
        self.k_repeats = int(k_repeats)

    uses_labels = True

    def _select(self, x, budget, labeled_mask, rng, labels=None):
        n_explore = int(np.floor(self.explore * budget))
        typical, assign = self._typical(x, budget - n_explore, labeled_mask, rng, labels)
        if n_explore == 0:
            return typical
        centers = np.concatenate([np.flatnonzero(labeled_mask), typical.indices])
        allowed = None
        if labels is not None:  # explore outside the groups of classes that already have more labels
            full = saturated_groups(assign, labeled_mask, labels, np.asarray(typical.info["allocation"]))
            allowed = ~full[assign] if full.any() else None
        far, radius = explore_picks(x, centers, n_explore, allowed)
        # rank order alternates typical and exploring picks: t0 e0 t1 e1 ... then the longer tail
        slot = np.concatenate([2 * np.arange(typical.indices.shape[0]), 2 * np.arange(n_explore) + 1])
        order = np.argsort(slot, kind="stable")
        return Selection(indices=np.concatenate([typical.indices, far])[order],
                         scores=np.concatenate([typical.scores, radius])[order],
                         groups=np.concatenate([typical.groups, assign[far]])[order],
                         n_groups=typical.n_groups, info={**typical.info, "n_explore": n_explore})

    def _typical(self, x, budget, labeled_mask, rng, labels) -> tuple[Selection, np.ndarray]:
        """Steps 1-4 of the module doc: ``budget`` typical picks spread evenly over the groups.
        Returns the selection and the group of every row, (n,) int64."""
        seed = int(rng.integers(2**31 - 1))
        est = count = None
        if self.n_classes is None:  # K: the reported count's estimate (eigengap, silhouette, HDBSCAN, stability)
            count = count_classes(x, seed=seed, budget=budget, repeats=self.k_repeats, max_k=self.max_k,
                                  n_sample=self.n_sample, k_graph=self.k_graph)
            est, k, k_source = count.eigengap, count.estimate, "estimated"
        else:
            k, k_source = int(self.n_classes), "given"
            if k < 1:
                raise ValueError(f"n_classes must be >= 1, got {k}")
        _, assign = spectral_groups(x, k, estimate=est, seed=seed, n_sample=self.n_sample,
                                    k_graph=self.k_graph, use_gpu=self.use_gpu)
        g = int(assign.max()) + 1
        free = ~labeled_mask
        capacity = np.bincount(assign[free], minlength=g)
        labeled = np.bincount(assign[labeled_mask], minlength=g)
        if labels is None:
            alloc = even_allocation(capacity, labeled, budget)
        else:
            alloc = class_allocation(assign, labeled_mask, labels, g, budget)

        ordered, bounds = group_rows(assign, g)
        out_i, out_s, out_g, rank = [], [], [], []
        for grp in np.flatnonzero(alloc):
            rows = ordered[bounds[grp]:bounds[grp + 1]]
            b = int(alloc[grp])
            sub_lab = labeled_mask[rows]
            n_sub = int(min(rows.shape[0], int(sub_lab.sum()) + b))
            _, sub_assign, _ = kmeans(x[rows], n_sub, seed=int(rng.integers(2**31 - 1)), niter=self.kmeans_iter,
                                      max_points_per_centroid=self.max_points_per_centroid,
                                      init="k-means++" if n_sub <= self.kmeanspp_max else None,
                                      use_gpu=self.use_gpu)
            local, scores, _ = typiclust_pick(x[rows], sub_assign, sub_lab, b, self.k_nn,
                                              self.min_cluster_size, self.max_cluster_points, rng)
            out_i.append(rows[local])
            out_s.append(scores)
            out_g.append(np.full(b, grp, dtype=np.int64))
            rank.append(np.arange(b))
        idx = np.concatenate(out_i)
        scores = np.concatenate(out_s)
        groups = np.concatenate(out_g)
        # rank order: round-robin over groups (each group's first pick, then each second pick...)
        order = np.lexsort((groups, np.concatenate(rank)))
        return Selection(indices=idx[order], scores=scores[order], groups=groups[order], n_groups=g,
                         info={"k_source": k_source, "k": int(k),
                               **(count.info() if count is not None else  # a K given by the caller is sure
                                  {"classes": {"estimate": int(k), "low": int(k), "high": int(k), "confident": True}}),
                               "allocation": alloc.tolist(),
                               "group_sizes": np.bincount(assign, minlength=g).tolist(), "n_explore": 0}), assign
