"""Can the tail classes of a long-tailed pool be found without labels?

For each pool of the strategy matrix's long-tail shape (:func:`benchmarks.common.make_pool`,
same seeds, so the same pools the strategies saw), classes ranked by their size in the pool, and each
embedding: the share of every image's ``k`` nearest neighbours in the pool (itself excluded) that
belong to its own class, averaged over the class (:func:`neighbour_purity`), then over the seeds.

A class whose images are mostly *not* each other's neighbours forms no group of its own in the
embedding: a clustering, typicality or coverage rule sees its images as the edge of other classes,
and only picks them by chance (or by picking outliers, as k-center does). A class of ``n`` images
can score at most ``min(1, (n - 1) / k)``; the table gives that bound beside the measured share.

    python -m benchmarks.tail_neighbours --emb-dir .bench_data/embeddings --out benchmarks/results/tail_neighbours

Writes ``summary.md`` (atomic; refuses to overwrite without ``--force``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from benchmarks.common import (
    MATRIX_DATASETS,
    command_line,
    dataset_embeddings,
    help_text,
    list_option,
    make_pool,
    matrix_split,
    run,
)


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


@click.command("tail_neighbours", help=help_text(__doc__))
@click.option("--emb-dir", type=click.Path(path_type=Path), default=None,
              help="folder of {dataset}__{embedding}.npy files")
@list_option("--embeddings", help="only these (default: pca50 and every file found)")
@list_option("--datasets", default=("mnist10k", "notmnist10k", "cifar10"), type=click.Choice(MATRIX_DATASETS),
             show_default=True)
@click.option("--shape", default="lt100", type=click.Choice(("lt10", "lt100")), show_default=True)
@click.option("--n-max", type=int, default=400, show_default=True, help="head class size (the matrix's default)")
@click.option("--seeds", type=int, default=5, show_default=True)
@click.option("--k", type=int, default=5, show_default=True, help="neighbours per image")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True,
              help="decoded CIFAR-10 arrays")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/tail_neighbours"),
              show_default=True)
@click.option("--force", is_flag=True, help="overwrite an existing summary.md")
def cli(emb_dir, embeddings, datasets, shape, n_max, seeds, k, cache_dir, out, force) -> None:
    from selector.atomic import atomic_write

    embeddings = list(embeddings) or None
    md_path = out / "summary.md"
    if md_path.exists() and not force:
        raise SystemExit(f"{md_path} exists; pass --force to overwrite it")
    if k < 1:
        raise SystemExit(f"--k must be >= 1, got {k}")
    rows = []
    for ds in datasets:
        embs, y = dataset_embeddings(ds, emb_dir, embeddings, cache_dir)
        train, _ = matrix_split(y)  # the matrix's split and pool draws: the pools its strategies saw
        for ename, emb in embs.items():
            sizes, pur = [], []
            for seed in range(seeds):
                # per_class only shapes balanced pools, never these long tails
                pool = make_pool(shape, y, train, np.random.default_rng(seed), 200, n_max)
                s, p = by_rank(emb[pool], y[pool], k)
                sizes.append(s)
                pur.append(p)
            rows.append((ename, ds, np.mean(sizes, axis=0), np.mean(pur, axis=0)))
        print(f"{ds}: done", file=sys.stderr, flush=True)
    c = max(r[2].shape[0] for r in rows)
    command = command_line()
    lines = ["# Tail classes and their neighbours", "", "Command:", "", "    " + command, "",
             f"Pools: shape `{shape}` of the strategy matrix (head {n_max}, or the largest every class can supply "
             f"when that is smaller), seeds 0-{seeds - 1}. Classes "
             f"ranked by size in the pool (1 = head). Each cell: mean class size / share of its images' {k} "
             f"nearest neighbours in the pool that are of its class (at most min(1, (size - 1) / {k})), "
             "means over the seeds.", "",
             "| embedding | dataset | " + " | ".join(f"rank {i + 1}" for i in range(c)) + " |",
             "|---|---|" + "---|" * c]
    for ename, ds, s, p in sorted(rows, key=lambda r: (r[0], r[1])):
        lines.append(f"| {ename} | {ds} | " + " | ".join(f"{si:.0f} / {pi:.2f}" for si, pi in zip(s, p)) + " |")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(md_path) as fh:
        fh.write("\n".join(lines) + "\n")
    print(md_path)


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
