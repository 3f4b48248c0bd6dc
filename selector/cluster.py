"""FAISS helpers for the selection strategies: seeded k-means and chunked k-nearest-neighbours.

Everything here takes and returns numpy arrays; faiss indexes never escape. Embeddings are
usually L2-normalised, so a squared L2 distance ``s`` equals ``2 - 2 cos``; the helpers do not
rely on it and work for any float32 vectors.

GPU: every entry point takes ``use_gpu``. ``None`` means "use a GPU when faiss sees one"
(``faiss.get_num_gpus() > 0``), ``False`` forces the CPU, ``True`` requires a GPU and raises
when there is none. With the ``faiss-cpu`` wheel everything runs on the CPU.

Threads: faiss parallelises with OpenMP. :func:`set_threads` sets the OpenMP thread count;
:func:`default_threads` is the number of CPUs this process may run on (``sched_getaffinity``,
which respects container/cgroup CPU sets better than ``os.cpu_count``), capped by
``OMP_NUM_THREADS`` when that is set. The module applies it once on import so faiss does not
oversubscribe a small machine.

Scaling (measured on a 2-core CPU, ``benchmarks/bench_strategies.py``): k-means trains on at most
``k * max_points_per_centroid`` seeded-sampled points and then assigns all n points, so k=1,000
on 1M x 128 takes ~3 s instead of ~11 s for full training. :func:`knn` uses an exact flat
index up to ``flat_max`` database points and an IVF index above it.
"""
from __future__ import annotations

import logging
import os

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

#: database size above which :func:`knn` switches from an exact flat index to IVF. Exact
#: self-kNN costs n^2 d flops: ~1 s at 10k x 128 on 2 cores, ~25 s (estimated) at 100k, ~40 min
#: at 1M; the IVF path does a 100k x 128 self-search in ~2 s (ProbCover at 100k in the benchmark).
FLAT_MAX = 50_000

#: rows of queries searched at once (bounds the (chunk, k) result buffers and faiss' internal
#: (chunk, block) distance tiles).
QUERY_CHUNK = 16_384


def default_threads() -> int:
    """CPUs this process may use, capped by ``OMP_NUM_THREADS`` when it is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        n = min(n, int(env))
    return max(1, n)


def set_threads(n: int | None = None) -> int:
    """Set faiss' OpenMP thread count (``None`` = :func:`default_threads`); returns it."""
    n = default_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    faiss.omp_set_num_threads(n)
    return n


set_threads()


def one_blas_thread():
    """Context manager: BLAS on one thread inside it (:func:`threadpoolctl.threadpool_limits`).

    For loops of small products (k-center's matrix-vector product per pick, k-means++'s distances
    per seeding step): far too little work to share between threads, so with several BLAS threads
    each step mostly pays for waking and synchronising them. With a full pass per pick, 1,000 k-center
    picks from 10,000 x 128 took several times as long on every BLAS thread as on one
    (``python -m benchmarks.bench_kcenter --compare``, ``benchmarks/results/bench_kcenter/summary.md``).
    """
    return threadpool_limits(limits=1, user_api="blas")


def gpu_wanted(use_gpu: bool | None) -> bool:
    """Resolve the ``use_gpu`` argument: True only when a GPU is allowed and faiss sees one."""
    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu is None:
        return n_gpus > 0
    if use_gpu and n_gpus == 0:
        raise RuntimeError("use_gpu=True but faiss sees no GPU (is faiss-gpu installed?)")
    return bool(use_gpu)


def _as_f32(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) array, got shape {x.shape}")
    return x


def _to_gpu(index):
    return faiss.index_cpu_to_all_gpus(index)


def sample_rows(n: int, m: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(n, m)`` distinct rows of ``range(n)`` drawn with ``seed``."""
    if m >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)


def pca_project(x: np.ndarray, dim: int, seed: int = 0, max_train: int = 16_384, chunk: int = QUERY_CHUNK
                ) -> np.ndarray:
    """``x`` (n, d) projected on its first ``dim`` principal axes: (n, dim) float32, centred.

    The axes are fitted (``faiss.PCAMatrix``) on a ``seed``-ed sample of ``max_train`` rows and applied in
    chunks of ``chunk`` rows, so the only full-size allocation is the (n, dim) result. Returns a float32
    copy of ``x`` when ``dim >= d``; needs more than ``dim`` rows otherwise.
    """
    x = _as_f32(x)
    n, d = x.shape
    dim = int(dim)
    if not 1 <= dim:
        raise ValueError(f"dim must be at least 1, got {dim}")
    if dim >= d:
        return x.copy()
    if n <= dim:
        raise ValueError(f"a projection on {dim} axes needs more than {dim} rows, got {n}")
    pca = faiss.PCAMatrix(d, dim)
    pca.train(np.ascontiguousarray(x[sample_rows(n, max(int(max_train), dim + 1), seed)]))
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, max(1, int(chunk))):
        out[s:s + chunk] = pca.apply(x[s:s + chunk])
    return out


def kmeans(
    x: np.ndarray,
    k: int,
    seed: int = 0,
    niter: int = 20,
    max_points_per_centroid: int = 64,
    nredo: int = 1,
    use_gpu: bool | None = None,
    init: np.ndarray | str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded k-means (faiss, Lloyd iterations from a random sample of points).

    Trains on at most ``k * max_points_per_centroid`` rows drawn with ``seed`` (all rows when
    there are fewer), then assigns every row to its nearest centroid.

    Args:
        x: (n, d) float32 data.
        k: number of clusters, 1 <= k <= n.
        seed: seeds both the training subsample and faiss' centroid initialisation.
        niter: Lloyd iterations.
        max_points_per_centroid: training-set cap per centroid.
        nredo: restarts; faiss keeps the run with the lowest training objective.
        use_gpu: see module docstring.
        init: optional (k, d) initial centroids, or ``"k-means++"`` for seeded greedy k-means++
            seeding on the training sample (:func:`kmeanspp_init`; finds small well-separated
            clusters that a random init misses; costs k * (2 + log k) passes over the training
            sample); ``nredo`` is then ignored. Default: faiss' seeded random sample
            of training points.

    Returns:
        centroids (k, d) float32, assign (n,) int64 in [0, k), sqdist (n,) float32 squared L2
        distance of each row to its centroid. Every cluster of the training run exists as a
        centroid, but a cluster may receive no rows in ``assign`` (rare).
    """
    x = _as_f32(x)
    n, d = x.shape
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    if k == 1:
        c = x.mean(axis=0, keepdims=True).astype(np.float32)
        sq = ((x - c) ** 2).sum(axis=1).astype(np.float32)
        return c, np.zeros(n, dtype=np.int64), sq
    cap = max(1, int(max_points_per_centroid)) * k
    train = x[sample_rows(n, cap, seed)] if n > cap else x
    km = faiss.Kmeans(
        d, k, niter=int(niter), nredo=int(nredo), seed=int(seed) & 0x7FFFFFFF,
        max_points_per_centroid=train.shape[0] // k + 1,  # already subsampled above
        min_points_per_centroid=1, verbose=False, gpu=gpu_wanted(use_gpu),
    )
    if isinstance(init, str):
        if init != "k-means++":
            raise ValueError(f"init must be an array or 'k-means++', got {init!r}")
        init = kmeanspp_init(train, k, seed)
    if init is not None:
        init = _as_f32(init, "init")
        if init.shape != (k, d):
            raise ValueError(f"init must have shape {(k, d)}, got {init.shape}")
        km.cp.nredo = 1
        km.train(train, init_centroids=init)
    else:
        km.train(train)
    centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
    sq, assign = nearest_centroid(x, centroids, use_gpu=use_gpu)
    return centroids, assign, sq


def kmeanspp_init(x: np.ndarray, k: int, seed: int, n_local_trials: int | None = None) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, SODA 2007, with the greedy variant of
    scikit-learn's :func:`sklearn.cluster.kmeans_plusplus`): (k, d) float32 distinct rows of ``x``.

    Each step draws ``n_local_trials`` candidates (default ``2 + int(log k)``) with probability
    proportional to their squared distance to the nearest row already chosen and keeps the one
    that lowers the k-means potential most. Chosen by measurement (``python -m benchmarks.bench_strategies
    --coverage``, ``benchmarks/results/typiclust_parity/summary.md``): on 50 clusters of unequal sizes
    (10,000 x 128), plain D^2 sampling (``n_local_trials=1``) seeded TypiClust to 41 of 50 clusters
    covered at B = 50, the greedy variant to 45 (the published TypiClust code, scikit-learn ``KMeans``,
    covers 45.6 on average); training on more points or for more iterations changed nothing. O(k * trials * n * d) time,
    O(trials * n) extra memory.
    """
    from sklearn.cluster import kmeans_plusplus

    x = _as_f32(x)
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in [1, n={x.shape[0]}], got {k}")
    with one_blas_thread():  # one small product per step: threads only add synchronisation
        _, rows = kmeans_plusplus(x, int(k), random_state=int(seed) & 0x7FFFFFFF, n_local_trials=n_local_trials)
    if np.unique(rows).shape[0] < k:  # fewer distinct rows than k: fill with unused rows
        rows = np.unique(rows)
        rows = np.concatenate([rows, np.setdiff1d(np.arange(x.shape[0]), rows)[: k - rows.shape[0]]])
    return np.ascontiguousarray(x[rows], dtype=np.float32)


def nearest_centroid(x: np.ndarray, centroids: np.ndarray, use_gpu: bool | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Squared L2 distance (n,) float32 and index (n,) int64 of each row's nearest centroid."""
    sq, idx = knn(centroids, 1, queries=x, use_gpu=use_gpu, flat_max=None)
    return sq[:, 0], idx[:, 0]


def knn(
    x: np.ndarray,
    k: int,
    queries: np.ndarray | None = None,
    use_gpu: bool | None = None,
    exclude_self: bool | None = None,
    flat_max: int | None = FLAT_MAX,
    nprobe: int = 8,
    seed: int = 0,
    chunk: int = QUERY_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of ``queries`` (default: of every row of ``x``) among rows of ``x``.

    Exact (flat L2 index) when ``x`` has at most ``flat_max`` rows (``None`` = always exact),
    approximate above it: an IVF-flat index with ``4 * sqrt(n)`` lists, trained (10 k-means
    iterations) on a ``seed``-ed sample of 32 points per list, searched with ``nprobe`` lists.
    Measured at n = 1M, d = 128: recall@10 ~0.5-0.6 on clustered data with
    nprobe = 8 (~0.75 with 16, at twice the search time); on isotropic random vectors kNN is
    nearly meaningless and IVF recall is < 0.1. Queries are searched in chunks of ``chunk`` rows.

    Args:
        x: (n, d) database rows.
        k: neighbours per query (1 <= k <= n, minus one when excluding self).
        queries: (m, d) rows to search; None searches ``x`` against itself.
        exclude_self: drop each query's own row from its list (only meaningful when
            ``queries`` is None; that is the default then). Works with duplicate rows too:
            the query's own index is removed wherever it appears in the list.

    Returns:
        sqdist (m, k) float32 squared L2 distances, ascending; idx (m, k) int64 row indices
        into ``x`` (-1 where an approximate search found fewer than k neighbours, with
        sqdist = inf there).
    """
    x = _as_f32(x)
    n, d = x.shape
    self_search = queries is None
    q = x if self_search else _as_f32(queries, "queries")
    if q.shape[1] != d:
        raise ValueError(f"queries have dimension {q.shape[1]}, database has {d}")
    if exclude_self is None:
        exclude_self = self_search
    if exclude_self and not self_search:
        raise ValueError("exclude_self needs queries=None (a self search)")
    k = int(k)
    kk = k + 1 if exclude_self else k
    if not 1 <= k or kk > n:
        raise ValueError(f"k={k} neighbours asked among {n} rows (exclude_self={exclude_self})")

    if flat_max is None or n <= flat_max:
        index = faiss.IndexFlatL2(d)
    else:
        nlist = int(min(max(16, 4 * np.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
        index.cp.seed = int(seed) & 0x7FFFFFFF
        index.cp.min_points_per_centroid = 1
        index.cp.niter = 10
        index.train(x[sample_rows(n, 32 * nlist, seed)])
        index.nprobe = int(min(nprobe, nlist))
    if gpu_wanted(use_gpu):
        index = _to_gpu(index)
    index.add(x)

    m = q.shape[0]
    out_d = np.empty((m, k), dtype=np.float32)
    out_i = np.empty((m, k), dtype=np.int64)
    for s in range(0, m, max(1, int(chunk))):
        e = min(m, s + chunk)
        dd, ii = index.search(q[s:e], kk)
        if exclude_self:
            dd, ii = _drop_self(dd, ii, np.arange(s, e))
        out_d[s:e] = dd
        out_i[s:e] = ii
    missing = out_i < 0
    if missing.any():
        out_d[missing] = np.inf
        log.debug("knn: %d of %d neighbour slots not found (approximate search)", missing.sum(), m * k)
    return out_d, out_i


def _drop_self(dd: np.ndarray, ii: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index from (rows, k+1) results; drop the last column otherwise."""
    is_self = ii == own[:, None]
    # keep the first k entries that are not self: when self is absent, drop the last column
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True
    # rows may hold self more than once only if faiss returned a duplicate id; keep it simple
    first = np.argmax(is_self, axis=1)
    drop = np.zeros_like(is_self)
    drop[np.arange(ii.shape[0]), first] = True
    keep = ~drop
    k = ii.shape[1] - 1
    return dd[keep].reshape(-1, k), ii[keep].reshape(-1, k)


def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense squared L2 distances (len(a), len(b)) float32 between two *small* sets, clipped at 0.

    For within-cluster work only (callers bound both sizes); never for the whole pool.
    """
    an = np.einsum("ij,ij->i", a, a)
    bn = np.einsum("ij,ij->i", b, b)
    d = an[:, None] + bn[None, :] - 2.0 * (a @ b.T)
    np.maximum(d, 0.0, out=d)
    return d.astype(np.float32, copy=False)


def group_rows(labels: np.ndarray, n_groups: int, rows: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by label without a scan per group.

    Args:
        labels: (n,) int labels in [0, n_groups). rows: (r,) int subset of ``range(n)`` to
            group (default: all).

    Returns:
        (ordered, bounds): ``ordered[bounds[g]:bounds[g + 1]]`` are the rows with label g, in
        increasing row order; bounds is (n_groups + 1,) int64.
    """
    rows = np.arange(labels.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    lab = labels[rows]
    order = np.argsort(lab, kind="stable")
    ordered = rows[order]
    bounds = np.searchsorted(lab[order], np.arange(n_groups + 1)).astype(np.int64)
    return ordered, bounds


def range_pairs(x: np.ndarray, radius: float, max_pairs: int = 10_000_000, chunk: int = 4_096,
                use_gpu: bool | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """All ordered pairs (i, j), i != j, with ``||x_i - x_j|| < radius`` (exact, flat index).

    Searches queries in chunks and gives up, returning None, as soon as more than ``max_pairs``
    pairs are found (so a radius that is too large never builds a dense graph). The GPU is not
    used (faiss has no GPU range search for flat indexes); ``use_gpu`` is accepted for symmetry.

    Returns:
        (src, dst) int64 arrays of the pairs, grouped by src ascending; or None.
    """
    x = _as_f32(x)
    n, d = x.shape
    index = faiss.IndexFlatL2(d)
    index.add(x)
    r2 = float(radius) ** 2
    srcs, dsts = [], []
    total = 0
    for s in range(0, n, max(1, int(chunk))):
        e = min(n, s + chunk)
        lims, _, ii = index.range_search(x[s:e], r2)
        src = np.repeat(np.arange(s, e, dtype=np.int64), np.diff(lims).astype(np.int64))
        dst = ii.astype(np.int64)
        keep = src != dst
        srcs.append(src[keep])
        dsts.append(dst[keep])
        total += int(keep.sum())
        if total > max_pairs:
            return None
    return np.concatenate(srcs), np.concatenate(dsts)
