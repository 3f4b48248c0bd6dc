"""The votes of the reported class count (:func:`selector.strategies.class_count.count_classes`) besides the
eigengap: a silhouette sweep, HDBSCAN and the stability of k-means partitions, each on a fixed seeded subsample
reduced by PCA, so that their cost does not grow with the pool.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from selector.cluster import kmeans, nearest_centroid, sample_rows

#: subsamples of the silhouette sweep and the stability vote (the sweep's m x m distance matrix: 16 MB at 2,000)
#: and of HDBSCAN
SWEEP_ROWS, HDBSCAN_ROWS = 2_000, 2_000


def reduced_sample(x: np.ndarray, m: int, seed: int, dim: int) -> np.ndarray:
    """``m`` seeded rows of ``x``, projected on their first ``dim`` principal axes (float32)."""
    z = np.ascontiguousarray(x[sample_rows(x.shape[0], m, seed)], dtype=np.float32)
    if z.shape[1] > dim and z.shape[0] > dim:
        from sklearn.decomposition import PCA
        z = PCA(dim, svd_solver="randomized", random_state=seed).fit_transform(z).astype(np.float32)
    return np.ascontiguousarray(z)


def mean_silhouette(dist: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from an (m, m) distance matrix, O(m^2) (per-cluster sums through a sparse indicator)."""
    m, k = labels.shape[0], int(labels.max()) + 1
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    ind = sp.csr_matrix((np.ones(m), (labels, np.arange(m))), shape=(k, m))
    sums = np.asarray((ind @ dist).T)  # (m, k): distance of each row to each cluster, summed
    rows = np.arange(m)
    a = sums[rows, labels] / np.maximum(counts[labels] - 1, 1)
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
    mean[rows, labels] = np.inf
    b = mean.min(axis=1)
    s = np.where(counts[labels] > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def kmeanspp(z: np.ndarray, k: int, seed: int, trials: int = 3) -> np.ndarray:
    """Greedy k-means++ seeding of ``z`` (m, d): (k, d) rows, each the best of ``trials`` D^2-sampled candidates
    (a random start can leave two centroids in one well-separated group and none in another)."""
    rng, sq = np.random.default_rng(seed), (z.astype(np.float64) ** 2).sum(axis=1)
    rows = [int(rng.integers(z.shape[0]))]
    near = np.maximum(sq + sq[rows[0]] - 2.0 * (z @ z[rows[0]]), 0.0)
    for _ in range(1, k):
        p = near / near.sum() if near.sum() > 0 else np.full(z.shape[0], 1.0 / z.shape[0])
        cand = rng.choice(z.shape[0], size=trials, p=p)
        d = np.minimum(near[None, :], np.maximum(sq[None, :] + sq[cand, None] - 2.0 * (z[cand] @ z.T), 0.0))
        best = int(np.argmin(d.sum(axis=1)))
        rows, near = rows + [int(cand[best])], d[best]
    return np.ascontiguousarray(z[rows], dtype=np.float32)


def sweep_ks(top: int, steps: int = 12) -> list[int]:
    """The k of a sweep: every k from 2 to 10, then ``steps`` geometric steps to ``top``."""
    return sorted({*range(2, min(top, 10) + 1), *(int(round(v)) for v in np.geomspace(10, top, steps) if top > 10)})


def silhouette_sweep(x: np.ndarray, max_k: int, seed: int = 0, m: int = SWEEP_ROWS, dim: int = 64,
                     steps: int = 12, tol: float = 0.01) -> tuple[int, int, int, float]:
    """Seeded k-means on ``m`` rows (PCA to ``dim``) for the k of :func:`sweep_ks` up to min(max_k, m // 5);
    returns (k of the best mean silhouette, smallest and largest k within ``tol`` of it, the best silhouette)."""
    from selector.cluster import sq_dists

    z = reduced_sample(x, m, seed, dim)
    top = int(min(max_k, z.shape[0] // 5))
    if top < 2:
        return 1, 1, 1, 0.0
    dist = np.sqrt(np.maximum(sq_dists(z, z), 0.0)).astype(np.float32)
    np.fill_diagonal(dist, 0.0)
    score = {}
    for k in sweep_ks(top, steps):
        _, lab, _ = kmeans(z, k, seed=seed, niter=20, max_points_per_centroid=10**6, use_gpu=False,
                           init=kmeanspp(z, k, seed))
        lab = np.unique(lab, return_inverse=True)[1].ravel()
        if lab.max() >= 1:
            score[k] = mean_silhouette(dist, lab)
    if not score:
        return 1, 1, 1, 0.0
    best = max(score, key=score.get)
    near = [k for k, v in score.items() if v >= score[best] - tol]
    return best, min(near), max(near), float(score[best])


def hdbscan_count(x: np.ndarray, seed: int = 0, m: int = HDBSCAN_ROWS, dim: int = 32, min_cluster_size: int = 5
                  ) -> int:
    """Clusters :class:`sklearn.cluster.HDBSCAN` finds on ``m`` seeded rows (PCA to ``dim``); at least 1."""
    from sklearn.cluster import HDBSCAN

    z = reduced_sample(x, m, seed, dim)
    if z.shape[0] <= min_cluster_size:
        return 1
    lab = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=5, copy=True).fit_predict(z)
    return max(1, int(np.unique(lab[lab >= 0]).shape[0]))


def stability_count(x: np.ndarray, max_k: int, seed: int = 0, m: int = SWEEP_ROWS, dim: int = 64,
                    tol: float = 0.05) -> tuple[int, int, int]:
    """The k of the most stable k-means partitions (Ben-Hur, Elisseeff & Guyon, PSB 2002; Lange et al., Neural
    Computation 2004): seeded k-means (k-means++ seeding) on two disjoint halves of ``m`` seeded rows (PCA to
    ``dim``), both partitions extended to all ``m`` rows by the nearest centroid and compared by the adjusted Rand
    index, for the k of :func:`sweep_ks` up to min(max_k, m // 10). Returns (the largest k whose index is within
    ``tol`` of the best, the smallest and largest such k); (1, 1, 1) when the sample is too small."""
    from sklearn.metrics import adjusted_rand_score

    z = reduced_sample(x, m, seed, dim)
    half = np.random.default_rng(seed).permutation(z.shape[0])
    a, b = np.sort(half[: z.shape[0] // 2]), np.sort(half[z.shape[0] // 2:])
    top = int(min(max_k, a.shape[0] // 5))
    if top < 2:
        return 1, 1, 1
    score = {}
    for k in sweep_ks(top):
        ca, _, _ = kmeans(z[a], k, seed=seed, niter=20, max_points_per_centroid=10**6, use_gpu=False,
                          init=kmeanspp(z[a], k, seed))
        cb, _, _ = kmeans(z[b], k, seed=seed + 1, niter=20, max_points_per_centroid=10**6, use_gpu=False,
                          init=kmeanspp(z[b], k, seed + 1))
        score[k] = adjusted_rand_score(nearest_centroid(z, ca, use_gpu=False)[1],
                                       nearest_centroid(z, cb, use_gpu=False)[1])
    best = max(score.values())
    near = [k for k, v in score.items() if v >= best - tol]
    return max(near), min(near), max(near)
