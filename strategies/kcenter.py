"""Greedy k-center coreset selection (Sener & Savarese, "Active Learning for Convolutional Neural
Networks: A Core-Set Approach", ICLR 2018).

Repeatedly pick the unlabeled point farthest from every chosen or labeled point. The greedy rule
is a 2-approximation of the minimax-radius k-center problem. It covers the embedding space
evenly, which means it also picks outliers and has no notion of density or class balance.

Cost: the plain greedy makes one pass over the pool per pick (a chunked matrix-vector product
and a running minimum, on one BLAS thread: :func:`one_blas_thread`), ~12 ms per pick at n = 1M,
d = 128 on two CPU cores. :func:`kcenter_greedy` keeps an exact shortlist of the farthest rows instead
and applies the picks to the whole pool in batched passes only when the shortlist is used up (see its
docstring); O(n) extra memory, no n x n matrix. Timings: ``benchmarks/results/bench_strategies/summary.md``
(``python -m benchmarks.bench_strategies``).
"""
from __future__ import annotations

import logging

import numpy as np

from selector.cluster import knn, one_blas_thread

from .base import MAX_COUNT, Selection, Strategy
from .registry import register

log = logging.getLogger(__name__)

#: rows per block of the min-distance update (fits the block's vectors in L2 cache-ish sizes;
#: 16k-64k rows measured equally fast, larger blocks slower).
CHUNK = 65_536


def kcenter_greedy(x: np.ndarray, centers: np.ndarray, n: int, chunk: int = CHUNK,
                   shortlist: int | None = None, allowed: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy farthest-point selection of ``n`` new rows of ``x``.

    Args:
        x: (N, d) float32, C-contiguous (read only).
        centers: (c,) int indices of rows already chosen (e.g. labeled); may be empty. With no
            centers the first pick is the most central row (the one nearest the mean of ``x``).
        n: how many new rows to pick, 0 <= n <= N - len(unique(centers)).
        chunk: rows per block of the distance update.
        shortlist: rows kept as candidates between full passes (see below); None chooses
            ``max(1024, 2 n)``; pools of at most twice that are searched in full at every pick.
            Measured (``python -m benchmarks.bench_kcenter --n 100000 --shortlist 1000000000 16384 2000``,
            CPU seconds per process, ``benchmarks/results/bench_kcenter/summary.md``): 1,000 picks from
            100k x 128 take 1.2-1.6 s with 2,000, 1.9-2.0 s with 16,384 and 5.9-6.0 s with a full
            pass at every pick.
        allowed: (N,) bool, rows that may be picked (None: all); the others still count as
            covered by the centers but are never chosen. Needs ``n`` <= the allowed rows that are
            not centers.

    Returns:
        picked (n,) int64 in pick order, never one of ``centers``; radius (n,) float64, the
        Euclidean distance from each pick to its nearest earlier center at the time it was
        picked (non-increasing). For a first pick made without centers it is the coverage
        radius that pick alone leaves (its distance to the farthest row).

    Shortlist (exact, not an approximation, up to float32 rounding: a near-tie between two rows,
    ~1e-7 apart in distance, can go either way): distances to the nearest center only shrink, so once
    the ``S`` rows farthest from the centers are known, with the S-th distance ``T``, no other row
    can become the farthest while some shortlisted row is still farther than ``T``. Picks are made
    among the S rows (``S x d`` work each) and applied to the whole pool in one batched pass when
    the shortlist runs out, instead of one pass over the pool per pick (at n = 1M that pass
    dominates: ~12 ms per pick). Ties at ``T`` fall back to a full pass.
    """
    N = x.shape[0]
    centers = np.unique(np.asarray(centers, dtype=np.int64).reshape(-1))
    n_free = N - centers.shape[0]
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        n_free = int(allowed.sum()) - int(allowed[centers].sum())
    if n < 0 or n > n_free:
        raise ValueError(f"cannot pick {n} new centers from {n_free} free rows ({N} rows, {centers.shape[0]} "
                         f"centers{'' if allowed is None else ', the rest not allowed'})")
    xn = np.einsum("ij,ij->i", x, x)
    buf = np.empty(min(chunk, N), dtype=np.float32)
    picked = np.empty(n, dtype=np.int64)
    radius = np.empty(n, dtype=np.float64)
    if n == 0:
        return picked, radius

    def update(md: np.ndarray, j: int) -> None:
        c = x[j]
        cn = np.float32(xn[j])
        for s in range(0, N, chunk):
            e = min(N, s + chunk)
            b = buf[: e - s]
            np.dot(x[s:e], c, out=b)
            b *= -2.0
            b += xn[s:e]
            b += cn
            np.minimum(md[s:e], b, out=md[s:e])

    start = 0
    if centers.shape[0] > 0:
        sq, _ = knn(x[centers], 1, queries=x)
        md = np.maximum(sq[:, 0], 0.0).astype(np.float32)
        md[centers] = -1.0  # never pick a center again
    else:
        mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        score = xn - 2.0 * (x @ mean)
        if allowed is not None:
            score[~allowed] = np.inf
        j = int(np.argmin(score))  # nearest the mean
        md = np.full(N, np.inf, dtype=np.float32)
        update(md, j)
        md[j] = -1.0
        picked[0] = j
        radius[0] = float(np.sqrt(max(md.max(), 0.0)))
        start = 1
    if allowed is not None:
        md[~allowed] = -1.0  # covered or not, never picked
    S = max(1_024, 2 * n) if shortlist is None else int(shortlist)
    if N <= 2 * S:
        with one_blas_thread():
            for t in range(start, n):
                j = int(np.argmax(md))
                picked[t] = j
                radius[t] = float(np.sqrt(max(md[j], 0.0)))
                update(md, j)
                md[j] = -1.0
        return picked, radius
    t = start
    while t < n:
        cand = np.sort(np.argpartition(md, N - S)[N - S:])
        threshold = md[cand].min()
        xs, xns, mdc = x[cand], xn[cand], md[cand]
        pending: list[int] = []
        with one_blas_thread():
            while t < n:
                j = int(np.argmax(mdc))
                if mdc[j] <= threshold:
                    break  # a row outside the shortlist may be as far: refresh
                p = int(cand[j])
                picked[t] = p
                radius[t] = float(np.sqrt(max(mdc[j], 0.0)))
                t += 1
                d = xs @ x[p]
                d *= -2.0
                d += xns
                d += np.float32(xn[p])
                np.minimum(mdc, d, out=mdc)
                mdc[j] = -1.0
                pending.append(p)
        if pending:  # a matrix-matrix product: all BLAS threads
            _apply_centers(x, xn, md, np.array(pending), chunk)
        elif t < n:  # the farthest rows tie at the threshold: one exact full-pool step
            j = int(np.argmax(md))
            picked[t] = j
            radius[t] = float(np.sqrt(max(md[j], 0.0)))
            t += 1
            with one_blas_thread():
                update(md, j)
            md[j] = -1.0
    return picked, radius


def _apply_centers(x: np.ndarray, xn: np.ndarray, md: np.ndarray, new: np.ndarray, chunk: int) -> None:
    """md[i] = min(md[i], min_c ||x_i - x_c||^2) over the rows ``new`` (in place, blocks of rows so
    that a block's distance matrix stays at most ``chunk`` x 64 floats); md[new] = -1."""
    c = x[new]
    cn = xn[new]
    rows = max(1, (chunk * 64) // max(1, new.shape[0]))
    for s in range(0, x.shape[0], rows):
        e = min(x.shape[0], s + rows)
        d = x[s:e] @ c.T
        d *= -2.0
        d += xn[s:e, None]
        d += cn[None, :]
        np.minimum(md[s:e], d.min(axis=1), out=md[s:e])
    md[new] = -1.0


@register("kcenter")
class KCenter(Strategy):
    """Greedy k-center coreset (Sener & Savarese, ICLR 2018) seeded with the labeled set.

    ``scores`` are the pick radii (distance to the nearest earlier center), ``groups`` are -1,
    ``info["radius"]`` is the coverage radius left after the last pick (max over the pool of
    the distance to the nearest center; computed only when ``report_radius``). ``chunk`` and
    ``shortlist`` are passed to :func:`kcenter_greedy` (speed only: the picks are the same).
    """

    PARAMS = {"chunk": (int, 1, MAX_COUNT), "report_radius": (bool, None, None),
              "shortlist": (int | None, 1, MAX_COUNT)}

    def __init__(self, chunk: int = CHUNK, report_radius: bool = False, shortlist: int | None = None):
        self.chunk = chunk
        self.report_radius = report_radius
        self.shortlist = shortlist

    def _select(self, x, budget, labeled_mask, rng):
        centers = np.flatnonzero(labeled_mask)
        picked, radius = kcenter_greedy(x, centers, budget, chunk=self.chunk, shortlist=self.shortlist)
        info = {"n_labeled_centers": int(centers.shape[0])}
        if self.report_radius:
            sq, _ = knn(x[np.concatenate([centers, picked])], 1, queries=x)
            info["radius"] = float(np.sqrt(max(float(sq.max()), 0.0)))
        return Selection(indices=picked, scores=radius, groups=np.full(budget, -1, dtype=np.int64),
                         info=info)
