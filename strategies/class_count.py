"""Estimate the number of classes K in an unlabeled embedding, and the spectral grouping that goes with it.

The *eigengap* of a kNN affinity graph on a seeded subsample of ``n_sample`` points (von Luxburg, "A Tutorial
on Spectral Clustering", 2007, sec. 8.3): a symmetric kNN graph (k = 10) with self-tuning weights
``w_ij = exp(-||x_i - x_j||^2 / (s_i s_j))``, s_i the distance to the 7th neighbour (Zelnik-Manor & Perona,
NIPS 2004); the smallest ``max_k + 1`` eigenvalues of the normalised Laplacian ``L = I - D^-1/2 W D^-1/2``;
K = argmax over K in [2, max_k] of ``lambda_{K+1} - lambda_K``. With K well-separated groups L has K
near-zero eigenvalues and a jump after them, whatever the group sizes.

The eigengap alone is not what the product reports: on real embeddings it is often wrong by a factor of 2
to 5 with a narrow range (``benchmarks/results/class_count``). :func:`count_classes` combines it with a
silhouette sweep, HDBSCAN and the stability of k-means partitions into an interval and says whether the pool
shows clear class structure.

The subsample's spectral embedding is also the best available grouping: :func:`spectral_groups` clusters it
(Ng, Jordan & Weiss, NIPS 2001; k-means started from farthest points) and extends the groups to the whole
pool through the group means, which k-means on the whole pool (biased towards equal-size clusters) would not.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, splu

from selector.cluster import kmeans, knn, nearest_centroid, sample_rows

from .count_votes import (  # noqa: F401  (the votes of count_classes, importable from here as before)
    HDBSCAN_ROWS,
    SWEEP_ROWS,
    hdbscan_count,
    kmeanspp,
    mean_silhouette,
    reduced_sample,
    silhouette_sweep,
    stability_count,
    sweep_ks,
)

log = logging.getLogger(__name__)

#: eigenvalues below this count as zero (one per connected component)
ZERO_EIG = 1e-9

#: shift of the shift-invert eigensolver: the Laplacian's eigenvalues nearest -SHIFT are its smallest
SHIFT = 1e-3
#: Lanczos restarts allowed on the largest eigenvalues of S before the shift-invert solver takes over.
#: Measured (wall time): 31 eigenpairs of a 5,000-row CIFAR-10 graph converge within 20 restarts (0.2 s;
#: shift-invert takes 26 s there, its factorisation fills in), 91 within 100 (1.7 s); a 7,754-row component
#: of a graph of 500 blobs (eigenvalues in tight clusters) had not converged after 300 (13 s for 31
#: eigenpairs; over 590 s for 91 without a limit), where shift-invert gives 271 eigenpairs in 6.5 s.
LANCZOS_MAXITER = 100


#: the largest class count the estimate ever considers (pools of up to 1,000 classes are supported).
MAX_K = 1_000


def auto_max_k(n: int, budget: int | None = None, min_class_size: int = 10) -> int:
    """The largest K worth considering for a pool of ``n`` rows and a labeling budget.

    ``min(1000, n // min_class_size, max(30, 2 * budget))``: a class needs about ``min_class_size``
    rows (the kNN graph's degree) to form a group of its own, and more than twice the budget in
    groups cannot change a class-balanced allocation (most groups would get no pick either way)
    while it costs eigenvectors. Never below 2.
    """
    want = 30 if budget is None else max(30, 2 * int(budget))
    return int(max(2, min(MAX_K, int(n) // max(1, int(min_class_size)), want)))


def sample_size(n_sample: int, max_k: int, per_class: int = 10) -> int:
    """Subsample size for the estimate: ``n_sample``, raised to ``per_class * max_k`` so that each of
    ``max_k`` classes can have about ``per_class`` sampled rows (5,000 covers max_k <= 500)."""
    return int(max(int(n_sample), int(per_class) * int(max_k)))


@dataclass(frozen=True)
class ClassCountEstimate:
    """Result of :func:`estimate_num_classes`.

    Attributes:
        k: estimated number of classes.
        eigenvalues: (r,) ascending smallest eigenvalues of the normalised Laplacian.
        gaps: (r - 1,) ``eigenvalues[j+1] - eigenvalues[j]``; K = argmax of gaps[K-1] over range.
        sample: (m,) int64 rows of the input used.
        vectors: (m, r) eigenvectors matching ``eigenvalues`` (spectral embedding of ``sample``).
    """

    k: int
    eigenvalues: np.ndarray
    gaps: np.ndarray
    sample: np.ndarray
    vectors: np.ndarray
    #: (low, high): the smallest and largest K found over the subsample seeds of
    #: :func:`estimate_class_range` (``(k, k)`` for a single estimate).
    k_range: tuple[int, int] | None = None
    #: K found with each subsample seed (:func:`estimate_class_range`); empty for a single estimate.
    k_per_seed: tuple[int, ...] = ()
    #: the largest K that was considered.
    max_k: int | None = None


def affinity_graph(x: np.ndarray, k: int = 10, scale_nn: int = 7) -> sp.csr_matrix:
    """Symmetric kNN affinity graph with self-tuning weights (Zelnik-Manor & Perona, 2004).

    Args:
        x: (m, d) float32 (a subsample: the kNN search is exact).
        k: neighbours per point (capped at m - 1).
        scale_nn: neighbour whose distance sets each point's local scale.

    Returns:
        (m, m) sparse float64 matrix, W = max(W, W^T), zero diagonal.
    """
    m = x.shape[0]
    k = min(k, m - 1)
    sq, idx = knn(x, k, flat_max=None)
    sq = np.maximum(sq.astype(np.float64), 0.0)
    s = np.sqrt(sq[:, min(scale_nn, k) - 1])
    s = np.maximum(s, 1e-12)
    w = np.exp(-sq / (s[:, None] * s[idx]))
    rows = np.repeat(np.arange(m), k)
    W = sp.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(m, m))
    return W.maximum(W.T).tocsr()


def laplacian_spectrum(W: sp.csr_matrix, r: int, cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``r`` smallest eigenvalues (ascending) and eigenvectors (m, r) of the normalised
    Laplacian ``I - D^-1/2 W D^-1/2`` (isolated points get degree 1e-12).

    The graph is split into connected components first and each is solved on its own (the
    spectrum of a block-diagonal matrix is the union of the blocks' spectra): with several
    components eigenvalue 0 is repeated, and Lanczos does not resolve repeated eigenvalues.
    ``cache``: a dict kept between calls on the same ``W`` (a wider spectrum after a narrower one): the
    components and each component's eigenpairs are reused when they hold enough of them.
    """
    m = W.shape[0]
    r = min(r, m)
    cache = {} if cache is None else cache
    if "components" not in cache:
        cache["components"] = connected_components(W, directed=False)
    n_comp, comp = cache["components"]
    if n_comp == 1:
        return _connected_spectrum(W, r)
    parts = []  # (eigenvalues, rows, eigenvectors) of each component: (m, r) memory in all, not m x r per component
    for c in range(n_comp):
        rows = np.flatnonzero(comp == c)
        need = min(r, rows.shape[0])
        v, u = cache.get(c, (np.zeros(0), None))
        if v.shape[0] < need:
            # a small component's dense solve gives every eigenpair at the same cost: keep them all
            v, u = _connected_spectrum(W[rows][:, rows], rows.shape[0] if rows.shape[0] <= DENSE_ROWS else need)
            cache[c] = (v, u)
        parts.append((v[:need], rows, u[:, :need]))
    vals_all = np.concatenate([p[0] for p in parts])
    owner = np.concatenate([np.full(p[0].shape[0], i) for i, p in enumerate(parts)])
    column = np.concatenate([np.arange(p[0].shape[0]) for p in parts])
    order = np.argsort(vals_all, kind="stable")[:r]
    vecs = np.zeros((m, order.shape[0]))
    for j, o in enumerate(order):
        v, rows, u = parts[owner[o]]
        vecs[rows, j] = u[:, column[o]]
    return vals_all[order], vecs


#: components of at most this many rows are solved densely (every eigenpair at once)
DENSE_ROWS = 600


def _connected_spectrum(W: sp.csr_matrix, r: int) -> tuple[np.ndarray, np.ndarray]:
    m = W.shape[0]
    if m == 1:
        return np.zeros(1), np.ones((1, 1))
    deg = np.asarray(W.sum(axis=1)).ravel()
    dinv = 1.0 / np.sqrt(np.maximum(deg, 1e-12))
    S = sp.diags(dinv) @ W @ sp.diags(dinv)
    r = min(r, m)
    if m <= DENSE_ROWS or r >= m - 1:
        vals, vecs = np.linalg.eigh(S.toarray())
        vals, vecs = vals[::-1][:r], vecs[:, ::-1][:, :r]
        return np.clip(1.0 - vals, 0.0, 2.0), vecs
    v0 = np.full(m, 1.0 / np.sqrt(m))  # fixed start vector: deterministic
    try:
        vals, vecs = eigsh(S.astype(np.float64), k=r, which="LA", tol=1e-8, v0=v0, maxiter=LANCZOS_MAXITER)
        order = np.argsort(-vals)
        return np.clip(1.0 - vals[order], 0.0, 2.0), vecs[:, order]
    except ArpackNoConvergence:
        pass
    # eigenvalues in tight clusters (many well-separated groups): the smallest of L = I - S by
    # shift-invert Lanczos. L + SHIFT * I is positive definite and sparse; its factorisation is what
    # costs (seconds, much fill-in on a graph without clusters), so it only runs when the above fails
    L = (sp.identity(m, format="csc") - S.tocsc()).astype(np.float64)
    lu = splu((L + SHIFT * sp.identity(m, format="csc")).tocsc(), permc_spec="MMD_AT_PLUS_A",
              options={"SymmetricMode": True})
    op = LinearOperator((m, m), matvec=lu.solve, dtype=np.float64)
    vals, vecs = eigsh(L, k=r, sigma=-SHIFT, which="LM", OPinv=op, tol=1e-8, v0=v0)
    order = np.argsort(vals)
    return np.clip(vals[order], 0.0, 2.0), vecs[:, order]


def eigengap_k(eigenvalues: np.ndarray, k_min: int = 2, k_max: int | None = None, warn: bool = True) -> int:
    """K in [k_min, k_max] maximising ``eigenvalues[K] - eigenvalues[K-1]`` (0-based array:
    the gap after the K-th smallest eigenvalue). Ties go to the smaller K. K is never below the
    number of (numerically) zero eigenvalues, i.e. connected components; with more components
    than ``k_max`` it returns ``k_max``."""
    ev = np.asarray(eigenvalues, dtype=np.float64)
    k_max = len(ev) - 1 if k_max is None else min(k_max, len(ev) - 1)
    if k_max < k_min:
        return max(1, min(k_min, len(ev)))
    # K is at least the number of connected components (zero eigenvalues)
    n_zero = int((ev < ZERO_EIG).sum())
    if n_zero > k_max:
        if warn:
            log.warning("kNN graph has %d components > max_k=%d; K capped at max_k", n_zero, k_max)
        return int(k_max)
    k_min = max(k_min, n_zero)
    ks = np.arange(k_min, k_max + 1)
    gaps = ev[ks] - ev[ks - 1]
    return int(ks[int(np.argmax(gaps))])


def estimate_num_classes(x: np.ndarray, max_k: int = 30, n_sample: int = 5_000, k_graph: int = 10,
                         seed: int = 0, k_min: int = 2) -> ClassCountEstimate:
    """Estimate the number of classes of ``x`` (n, d) by the eigengap; see module docstring.

    Args:
        x: (n, d) float32 embeddings. max_k: largest K considered (capped at m // 2). The first
            :data:`FIRST_K` eigenvalues are computed; while the gap found lies in the upper half of
            those computed, three times as many are (up to ``max_k``).
        n_sample: subsample size m (seeded). k_graph: kNN graph degree. seed: subsample seed.
        k_min: smallest K considered.

    Returns:
        :class:`ClassCountEstimate`. Pools of fewer than 4 points get k = 1.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    sample = sample_rows(n, n_sample, seed)
    m = sample.shape[0]
    if m < 4:
        return ClassCountEstimate(1, np.zeros(1), np.zeros(0), sample, np.ones((m, 1)) / np.sqrt(max(m, 1)),
                                  k_range=(1, 1), max_k=1)
    max_k = max(k_min, min(max_k, m // 2))
    W = affinity_graph(x[sample], k=k_graph)
    # widen the spectrum only when the gap sits in its upper half: K up to 30 costs what it always did,
    # and a pool of hundreds of classes pays for hundreds of eigenvectors only when it has them
    r = min(max_k, FIRST_K)
    cache: dict = {}
    while True:
        vals, vecs = laplacian_spectrum(W, r + 1, cache)
        k = eigengap_k(vals, k_min=k_min, k_max=r, warn=r >= max_k)
        if r >= max_k or k <= r // 2:
            break
        r = min(max_k, 3 * r)
    log.debug("class count: K=%d from eigenvalues %s", k, np.round(vals, 4))
    return ClassCountEstimate(k, vals, np.diff(vals), sample, vecs, k_range=(k, k), max_k=max_k)


#: eigenvectors computed first; :func:`estimate_num_classes` widens the spectrum (x3 at a time, up to
#: max_k) while the eigengap falls in the upper half of what it has.
FIRST_K = 30


def estimate_class_range(x: np.ndarray, max_k: int | None = None, n_sample: int = 5_000, k_graph: int = 10,
                         seed: int = 0, repeats: int = 3, budget: int | None = None) -> ClassCountEstimate:
    """The eigengap estimate repeated on ``repeats`` subsamples (seeds ``seed, seed + 1, ...``):
    K is the median of the per-seed estimates, ``k_range`` their (min, max).

    Args:
        x: (n, d) float32. max_k: largest K considered; None: :func:`auto_max_k` of the pool size
            and ``budget``. n_sample: subsample size, raised by :func:`sample_size` for a large
            max_k. When the pool is no larger than that, K is the whole pool's estimate and the
            range spans it and ``repeats - 1`` subsamples of :data:`SUBSAMPLE_FRACTION` of the pool
            (pools under :data:`MIN_RANGE_ROWS` rows: the whole pool's estimate alone).
        repeats: subsample seeds (>= 1).

    Returns:
        The :class:`ClassCountEstimate` of the seed whose K is the median (lower median for an
        even count), or of the whole pool (see above), with ``k_range`` and ``k_per_seed`` filled in.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    max_k = auto_max_k(n, budget) if max_k is None else int(max_k)
    m = sample_size(n_sample, max_k)
    whole = m >= n
    if whole:
        # every subsample would be the whole pool: K comes from the whole pool, and the range from it and
        # repeats - 1 seeded subsamples of SUBSAMPLE_FRACTION of it, so that the range still says how
        # stable K is (a single estimate of a 1,797-row pool with no clear gap reads "26, range 26-26")
        sizes = [n] + [int(SUBSAMPLE_FRACTION * n)] * (repeats - 1 if n >= MIN_RANGE_ROWS else 0)
    else:
        sizes = [m] * repeats
    ests = [estimate_num_classes(x, max_k=max_k, n_sample=s, k_graph=k_graph, seed=seed + r)
            for r, s in enumerate(sizes)]
    ks = [e.k for e in ests]
    order = np.argsort(ks, kind="stable")
    rep = ests[0] if whole else ests[int(order[(len(ks) - 1) // 2])]
    log.debug("class count: K=%d, range %d-%d over %d samples of %s rows (max_k=%d)", rep.k, min(ks), max(ks),
              len(ks), sizes, max_k)
    return ClassCountEstimate(rep.k, rep.eigenvalues, rep.gaps, rep.sample, rep.vectors,
                              k_range=(min(ks), max(ks)), k_per_seed=tuple(ks), max_k=rep.max_k)


#: share of a small pool (no larger than the subsample) that each further repeat of
#: :func:`estimate_class_range` sees
SUBSAMPLE_FRACTION = 0.8

#: pools smaller than this get a single estimate (a subsample of a handful of rows says nothing)
MIN_RANGE_ROWS = 50


def spectral_groups(x: np.ndarray, k: int, estimate: ClassCountEstimate | None = None, seed: int = 0,
                    n_sample: int = 5_000, k_graph: int = 10, use_gpu: bool | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Group the whole pool into ``k`` groups by spectral clustering of a subsample.

    Clusters the rows of the subsample's first ``k`` Laplacian eigenvectors (row-normalised,
    Ng-Jordan-Weiss) with seeded k-means, takes each group's mean embedding, and assigns every
    row of ``x`` to the nearest mean.

    Args:
        x: (n, d) float32. k: number of groups (1 <= k).
        estimate: a :class:`ClassCountEstimate` of ``x`` to reuse (its eigenvectors); computed
            with (n_sample, k_graph, seed) when None or when it holds fewer than k vectors.

    Returns:
        means (g, d) float32 with g <= k (groups left empty are dropped), assign (n,) int64 in
        [0, g).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    k = int(max(1, min(k, n)))
    if k == 1:
        return x.mean(axis=0, keepdims=True), np.zeros(n, dtype=np.int64)
    if estimate is None or estimate.vectors.shape[1] < k:
        estimate = estimate_num_classes(x, max_k=k, n_sample=n_sample, k_graph=k_graph, seed=seed,
                                        k_min=min(2, k))
    sample = estimate.sample
    k = min(k, sample.shape[0])
    v = np.ascontiguousarray(estimate.vectors[:, :k], dtype=np.float32)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    # farthest-point initialisation: in the row-normalised spectral embedding well-separated
    # groups sit near orthogonal points, and a random init can miss a small group entirely
    from .kcenter import kcenter_greedy

    init_rows, _ = kcenter_greedy(v, np.zeros(0, dtype=np.int64), k)
    _, lab, _ = kmeans(v, k, seed=seed, niter=30, max_points_per_centroid=10**6, use_gpu=False,
                       init=v[init_rows])
    xs = x[sample]
    means = np.stack([xs[lab == g].mean(axis=0) for g in range(k) if np.any(lab == g)]).astype(np.float32)
    _, assign = nearest_centroid(x, means, use_gpu=use_gpu)
    used = np.unique(assign)
    if used.shape[0] < means.shape[0]:  # a mean that wins no row: drop it and relabel 0..g-1
        remap = np.full(means.shape[0], -1, dtype=np.int64)
        remap[used] = np.arange(used.shape[0])
        means, assign = means[used], remap[assign]
    return means, assign.astype(np.int64)


# -- the reported class count: an interval from four estimators, and whether they agree -----------------

#: confident only when the best silhouette reaches MIN_SILHOUETTE (real embeddings without clear classes stay
#: below it) and every estimate is within a factor AGREE of their median; the interval is their span (with the
#: eigengap's range and the k of near-best silhouette) widened by WIDEN (CONFIDENT_WIDEN when confident)
MIN_SILHOUETTE, AGREE, WIDEN, CONFIDENT_WIDEN = 0.3, 1.25, 1.5, 1.1
#: the eigengap of the reported count considers at least this many classes (when the pool has 10 rows each)
REPORT_MAX_K = 300


@dataclass(frozen=True)
class ClassCount:
    """The reported class count: ``estimate`` in [``low``, ``high``], ``confident``; ``votes``: each estimator's K."""

    estimate: int
    low: int
    high: int
    confident: bool
    votes: tuple[tuple[str, int], ...] = ()
    structure: float = 0.0  # the best silhouette of the sweep
    #: the eigengap estimate behind the eigengap vote (its spectral embedding serves :func:`spectral_groups`)
    eigengap: ClassCountEstimate | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "confident": self.confident}

    def info(self) -> dict:
        """``Selection.info``'s class count: ``classes``, ``k``, ``k_range`` (the interval), ``class_votes``..."""
        e = self.eigengap
        return {"k": self.estimate, "k_range": [self.low, self.high], "classes": self.as_dict(),
                "class_votes": dict(self.votes), "k_per_seed": list(e.k_per_seed) if e else [],
                "max_k": e.max_k if e else None}


def combine_counts(votes: dict[str, int], spans: tuple[int, ...] = (), structure: float = 0.0,
                   min_structure: float = MIN_SILHOUETTE, agree: float = AGREE, widen: float = WIDEN,
                   confident_widen: float = CONFIDENT_WIDEN) -> ClassCount:
    """Combine per-estimator class counts into a :class:`ClassCount` (a pure function).

    Args:
        votes: estimator name -> K (>= 1). spans: further plausible K (the ends of each estimator's own range).
        structure: the strength of the group structure (the best silhouette of the sweep, in [-1, 1]).

    The estimate is the median of the votes on a log scale (for an even count the geometric mean of the two middle
    votes, rounded up): counts are ratios, so 5 and 20 average to 10, not 12, and estimators that work on
    subsamples merge small groups more often than they split large ones, so a fraction goes up. The interval
    spans the votes and ``spans``, divided and multiplied by ``widen`` (``confident_widen`` when confident);
    confident when ``structure >= min_structure`` and every vote is within a factor ``agree`` of the estimate.
    """
    ks = sorted(int(v) for v in votes.values())
    if not ks:
        raise ValueError("no class count to combine")
    mid = len(ks) // 2
    est = ks[mid] if len(ks) % 2 else int(np.ceil(np.sqrt(ks[mid - 1] * ks[mid]) - 1e-9))
    confident = bool(structure >= min_structure and ks[-1] <= agree * est and est <= agree * ks[0])
    f = confident_widen if confident else widen
    every = ks + [int(s) for s in spans]
    low = max(1, int(np.floor(min(every) / f)))
    high = max(est, int(np.ceil(max(every) * f)))
    return ClassCount(int(est), min(low, est), high, confident, tuple((k, int(v)) for k, v in votes.items()),
                      float(structure))


def report_max_k(n: int, budget: int | None = None) -> int:
    """The largest K the reported count considers: :func:`auto_max_k`, raised to REPORT_MAX_K classes of 10 rows."""
    return int(max(auto_max_k(n, budget), min(REPORT_MAX_K, n // 10)))


def count_classes(x: np.ndarray, seed: int = 0, budget: int | None = None, repeats: int = 3,
                  max_k: int | None = None, n_sample: int = 5_000, k_graph: int = 10) -> ClassCount:
    """The class count of ``x`` (n, d) as reported: the eigengap (:func:`estimate_class_range` with ``repeats``,
    ``n_sample``, ``k_graph``, up to ``max_k`` classes, default :func:`report_max_k`), a silhouette sweep, HDBSCAN
    and the stability of k-means partitions, combined by :func:`combine_counts`. Memory O(n d) plus fixed
    subsamples. Pools under 20 rows: the eigengap alone, never confident."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    max_k = report_max_k(n, budget) if max_k is None else int(max_k)
    eig = estimate_class_range(x, max_k=max_k, n_sample=n_sample, k_graph=k_graph, seed=seed, repeats=repeats)
    lo, hi = eig.k_range or (eig.k, eig.k)
    if n < 20:
        return replace(combine_counts({"eigengap": eig.k}, (lo, hi), structure=0.0), eigengap=eig)
    k_sil, s_lo, s_hi, best = silhouette_sweep(x, max_k, seed=seed)
    votes = {"eigengap": eig.k, "silhouette": k_sil, "hdbscan": hdbscan_count(x, seed=seed),
             "stability": stability_count(x, max_k, seed=seed)[0]}
    log.debug("class count votes %s, silhouette %.3f", votes, best)
    return replace(combine_counts(votes, (lo, hi, s_lo, s_hi), structure=best), eigengap=eig)
