"""Can the tail classes of a long-tailed pool be found without labels? (issue 13's long-tail bar)

For each pool of the strategy matrix's long-tail shape (:func:`selector.eval.strategy_matrix.make_pool`,
same seeds, so the same pools the strategies saw), classes ranked by their size in the pool, and each
embedding: the share of every image's ``k`` nearest neighbours in the pool (itself excluded) that
belong to its own class, averaged over the class (:func:`neighbour_purity`), then over the seeds.

A class whose images are mostly *not* each other's neighbours forms no group of its own in the
embedding: a clustering, typicality or coverage rule sees its images as the edge of other classes,
and only picks them by chance (or by picking outliers, as k-center does). A class of ``n`` images
can score at most ``min(1, (n - 1) / k)``; the table gives that bound beside the measured share.

    python -m selector.eval.tail_neighbours --emb-dir .bench_data/embeddings --out eval/runs/tail_neighbours

Writes ``summary.md`` (atomic; refuses to overwrite without ``--force``).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np


def neighbour_purity(x: np.ndarray, y: np.ndarray, k: int = 5) -> dict[int, float]:
    """Per class, the mean share of its images' ``k`` nearest neighbours (Euclidean, among the other
    rows of ``x``) that carry its label.

    Args:
        x: (n, d) float32 embeddings of one pool. y: (n,) int labels. k: neighbours, 1 <= k < n.

    Returns:
        {label: share in [0, 1]} for every label in ``y``.
    """
    from selector.cluster import knn
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for a pool of {n} rows, got {k}")
    _, idx = knn(np.ascontiguousarray(x, dtype=np.float32), k, exclude_self=True, flat_max=None)
    same = (y[idx] == y[:, None]).mean(axis=1)
    return {int(c): float(same[y == c].mean()) for c in np.unique(y)}


def by_rank(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Class sizes and neighbour purities ordered from the largest class to the smallest (ties: by
    label), each (C,)."""
    labels, sizes = np.unique(y, return_counts=True)
    order = np.lexsort((labels, -sizes))
    pur = neighbour_purity(x, y, k)
    return sizes[order], np.array([pur[int(c)] for c in labels[order]])


def main(argv=None) -> None:
    from selector.eval import strategy_matrix as sm
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emb-dir", type=Path, default=None, help="folder of {dataset}__{embedding}.npy files")
    ap.add_argument("--embeddings", nargs="+", default=None, help="only these (default: pca50 and every file found)")
    ap.add_argument("--datasets", nargs="+", default=["mnist10k", "notmnist10k", "cifar10"], choices=sm.DATASETS)
    ap.add_argument("--shape", default="lt100", choices=("lt10", "lt100"))
    ap.add_argument("--n-max", type=int, default=400, help="head class size (the matrix's default)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--k", type=int, default=5, help="neighbours per image")
    ap.add_argument("--cache-dir", type=Path, default=Path(".bench_data"), help="decoded CIFAR-10 arrays")
    ap.add_argument("--out", type=Path, default=Path("eval/runs/tail_neighbours"))
    ap.add_argument("--force", action="store_true", help="overwrite an existing summary.md")
    raw = list(sys.argv[1:] if argv is None else argv)
    a = ap.parse_args(argv)
    from selector.atomic import atomic_write
    md_path = a.out / "summary.md"
    if md_path.exists() and not a.force:
        raise SystemExit(f"{md_path} exists; pass --force to overwrite it")
    if a.k < 1:
        raise SystemExit(f"--k must be >= 1, got {a.k}")
    rows = []
    for ds in a.datasets:
        embs, y = sm.dataset_embeddings(ds, a.emb_dir, a.embeddings, a.cache_dir)
        train, _ = sm.split(y)  # the matrix's split and pool draws: the pools its strategies saw
        for ename, emb in embs.items():
            sizes, pur = [], []
            for seed in range(a.seeds):
                # per_class only shapes balanced pools, never these long tails
                pool = sm.make_pool(a.shape, y, train, np.random.default_rng(seed), 200, a.n_max)
                s, p = by_rank(emb[pool], y[pool], a.k)
                sizes.append(s)
                pur.append(p)
            rows.append((ename, ds, np.mean(sizes, axis=0), np.mean(pur, axis=0)))
        print(f"{ds}: done", file=sys.stderr, flush=True)
    c = max(r[2].shape[0] for r in rows)
    command = "python -m selector.eval.tail_neighbours " + " ".join(shlex.quote(r) for r in raw)
    lines = ["# Tail classes and their neighbours", "", "Command:", "", "    " + command, "",
             f"Pools: shape `{a.shape}` of the strategy matrix (head {a.n_max}, or the largest every class can supply "
             f"when that is smaller), seeds 0-{a.seeds - 1}. Classes "
             f"ranked by size in the pool (1 = head). Each cell: mean class size / share of its images' {a.k} "
             f"nearest neighbours in the pool that are of its class (at most min(1, (size - 1) / {a.k})), "
             "means over the seeds.", "",
             "| embedding | dataset | " + " | ".join(f"rank {i + 1}" for i in range(c)) + " |",
             "|---|---|" + "---|" * c]
    for ename, ds, s, p in sorted(rows, key=lambda r: (r[0], r[1])):
        lines.append(f"| {ename} | {ds} | " + " | ".join(f"{si:.0f} / {pi:.2f}" for si, pi in zip(s, p)) + " |")
    a.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(md_path) as fh:
        fh.write("\n".join(lines) + "\n")
    print(md_path)


if __name__ == "__main__":
    main()
