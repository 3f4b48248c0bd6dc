"""How many classes ``random`` covers *in expectation* in a strategy-matrix cell, from the pool's class sizes
alone: B draws without replacement from a pool of N items with class sizes n_c see class c with probability
1 - C(N - n_c, B) / C(N, B), so the expected number of classes covered is the sum of those over the classes.

The matrix runs ``random`` on a few seeds, and a lucky draw can make another strategy look *clearly* below random
in a paired test; this gives the number random's seeds scatter around. The pools are rebuilt exactly as
:mod:`benchmarks.strategy_matrix` builds them (same split, same seeds).

    python -m benchmarks.random_expectation --dataset cifar10 --shape lt10 --budget-mult 2
"""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from benchmarks.common import (
    MATRIX_DATASETS,
    MATRIX_SHAPES,
    dataset_embeddings,
    help_text,
    make_pool,
    matrix_split,
    run,
)


def expected_coverage(counts: np.ndarray, budget: int) -> float:
    """Expected classes covered by ``budget`` uniform draws without replacement from classes of sizes
    ``counts`` (each > 0)."""
    from scipy.special import gammaln

    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if budget >= n:
        return float(counts.shape[0])

    def log_comb(a, k):
        return gammaln(a + 1) - gammaln(k + 1) - gammaln(a - k + 1)

    rest = n - counts
    miss = np.where(rest >= budget, np.exp(log_comb(rest, budget) - log_comb(n, budget)), 0.0)
    return float(np.sum(1.0 - miss))


@click.command("random_expectation", help=help_text(__doc__))
@click.option("--dataset", type=click.Choice(MATRIX_DATASETS), required=True)
@click.option("--shape", type=click.Choice(MATRIX_SHAPES), required=True)
@click.option("--budget-mult", type=float, required=True, help="the budget as a multiple of the pool's classes")
@click.option("--seeds", type=int, default=5, show_default=True)
@click.option("--per-class", type=int, default=200, show_default=True)
@click.option("--n-max", type=int, default=400, show_default=True)
@click.option("--test-per-class", type=int, default=100, show_default=True)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True)
def cli(dataset, shape, budget_mult, seeds, per_class, n_max, test_per_class, cache_dir) -> None:
    _, y = dataset_embeddings(dataset, None, ["none"], cache_dir)
    train, _ = matrix_split(y, test_per_class)
    values = []
    for seed in range(seeds):
        pool = make_pool(shape, y, train, np.random.default_rng(seed), per_class, n_max)
        counts = np.bincount(y[pool])
        counts = counts[counts > 0]
        b = max(1, int(round(budget_mult * counts.shape[0])))
        values.append(expected_coverage(counts, b))
        click.echo(f"seed {seed}: {counts.shape[0]} classes, {int(counts.sum())} items, B = {b}: "
                   f"random covers {values[-1]:.2f} classes in expectation")
    click.echo(f"mean over the seeds: {np.mean(values):.2f}")


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
