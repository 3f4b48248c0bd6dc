"""Selection quality of every strategy on balanced and long-tailed pools.

For each pool (balanced, long-tailed with imbalance 10 and 100, exponential profile from
:mod:`selector.eval.pools`), budget and seed: select from the pool's embeddings, then report

* classes covered by the chosen items (out of the pool's K),
* normalised entropy of the chosen labels (1 = perfectly balanced over all K classes),
* linear-probe accuracy: scikit-learn LogisticRegression trained on the chosen items' embeddings
  and labels, scored on a balanced held-out split (never part of any pool).

Mean (and std over seeds) are printed as a markdown table.

    # the project's encoder (SimCLR, resnet-small, the selector's defaults) trained without labels
    # on the dataset's training images (cached in --cache-dir), then the strategies on its embedding
    python -m benchmarks.quality_strategies --data mnist10k --cache-dir .selector-cache
    # raw-pixel stand-in: MNIST-10k, PCA-50, L2-normalised
    python -m benchmarks.quality_strategies --builtin mnist
    # any embeddings + labels
    python -m benchmarks.quality_strategies --embeddings emb.npy --labels y.npy
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import click
import numpy as np
from selector.eval.metrics import classes_covered, normalised_entropy
from selector.eval.pools import balanced_pool, long_tail_pool, train_test_split_balanced

from benchmarks import common
from benchmarks.common import command_line, data_folder, flat_pixels, help_text, list_option, pca_rows, run

DEFAULT_STRATEGIES = ["random", "stratified-random", "kcenter", "typiclust", "probcover", "balanced"]


def mnist_pca(data_dir: Path, dim: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-10k raw pixels -> PCA-``dim`` -> L2-normalised float32 (a stand-in embedding)."""
    from selector.eval.datasets import mnist10k

    x, y, _ = mnist10k(data_dir / "mnist10k.npz")
    return pca_rows(flat_pixels(x), dim), y


def linear_probe(x_tr, y_tr, x_te, y_te) -> float:
    """Accuracy of LogisticRegression fit on (x_tr, y_tr); a single class predicts itself."""
    from sklearn.linear_model import LogisticRegression
    if np.unique(y_tr).shape[0] < 2:
        return float((y_te == y_tr[0]).mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(max_iter=2000, C=10.0).fit(x_tr, y_tr)
    return float((clf.predict(x_te) == y_te).mean())


def parse_strategy(spec: str):
    """:func:`benchmarks.common.parse_strategy`; a bad spec ends the run with its message."""
    try:
        return common.parse_strategy(spec)
    except ValueError as e:
        raise SystemExit(f"{spec}: {e}") from None


def make_pool(kind: str, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "balanced":
        return balanced_pool(y, rng=rng)
    ratio = float(kind.split(":")[1])
    return long_tail_pool(y, ratio, rng=rng, shuffle_classes=True)


@click.command("quality_strategies", help=help_text(__doc__))
@click.option("--embeddings", type=click.Path(path_type=Path), default=None)
@click.option("--labels", type=click.Path(path_type=Path), default=None)
@click.option("--builtin", type=click.Choice(["mnist"]), default=None, help="MNIST-10k PCA-50 stand-in embedding")
@click.option("--data", type=click.Choice(["mnist10k", "cifar10"]), default=None,
              help="embed this dataset's training images with the project's encoder (as `selector eval`)")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".selector-cache"), show_default=True,
              help="encoder and embedding cache for --data")
@click.option("--device", default="auto", show_default=True, help="device that trains the encoder for --data")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="folder of the shared data (default: ../shared/data beside the checkout)")
@list_option("--pools", default=("balanced", "long-tail:10", "long-tail:100"), show_default=True)
@list_option("--budgets", type=int, default=(10, 20, 50, 100), show_default=True)
@click.option("--seeds", type=int, default=5, show_default=True)
@list_option("--strategies", default=tuple(DEFAULT_STRATEGIES), show_default=True,
             help="registered names, optionally with parameters: balanced:explore=0")
@click.option("--test-per-class", type=int, default=100, show_default=True)
@click.option("--summary", type=click.Path(path_type=Path), default=None,
              help="also write the table to this markdown file (e.g. benchmarks/results/<name>/summary.md), "
                   "headed by the command that produced it")
def cli(embeddings, labels, builtin, data, cache_dir, device, data_dir, pools, budgets, seeds, strategies,
        test_per_class, summary) -> None:
    if builtin == "mnist":
        emb, y = mnist_pca(data_folder(data_dir))
        source = "MNIST-10k, PCA-50 of raw pixels, L2-normalised"
    elif data is not None:
        from selector.eval.experiment import embed_dataset, load_split
        cache = cache_dir / data
        xtr, y, xte, _, name = load_split(data, 1000, 200, 0, cache, data_dir)
        emb, _, _ = embed_dataset(xtr, xte, name, cache, None, None, "simclr", "resnet-small", device, 0, False)
        source = f"{name} training images, the project's encoder (SimCLR, resnet-small, default epochs)"
    elif embeddings is not None and labels is not None:
        emb = np.load(embeddings).astype(np.float32)
        y = np.load(labels).astype(np.int64)
        source = f"{embeddings} / {labels}"
    else:
        raise click.UsageError("give --builtin mnist or --embeddings and --labels")
    train_idx, test_idx = train_test_split_balanced(y, test_per_class, rng=np.random.default_rng(12345))
    x_te, y_te = emb[test_idx], y[test_idx]
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    emit(f"embeddings: {source}; n={len(y)}, d={emb.shape[1]}, held-out test {len(test_idx)} (balanced)\n")
    emit("| pool | pool size | B | strategy | classes covered | norm. entropy | probe acc | est. K | time (s) |")
    emit("|---|---|---|---|---|---|---|---|---|")
    for pool_kind in pools:
        for b in budgets:
            for s in strategies:
                cov, ent, acc, ks, secs, sizes, K = [], [], [], [], [], [], None
                for seed in range(seeds):
                    rng = np.random.default_rng(seed)
                    pool = train_idx[make_pool(pool_kind, y[train_idx], rng)]
                    K = np.unique(y[pool]).shape[0]
                    sizes.append(len(pool))
                    t0 = time.perf_counter()
                    sel = parse_strategy(s).select(emb[pool], b, rng=seed)
                    secs.append(time.perf_counter() - t0)
                    chosen = pool[sel.indices]
                    cov.append(classes_covered(y[chosen]))
                    ent.append(normalised_entropy(y[chosen], K))
                    acc.append(linear_probe(emb[chosen], y[chosen], x_te, y_te))
                    if sel.n_groups is not None and s.startswith("balanced"):
                        ks.append(sel.n_groups)
                kstr = f"{np.mean(ks):.1f}" if ks else "-"
                emit(f"| {pool_kind} | {int(np.mean(sizes))} | {b} | {s} | {np.mean(cov):.1f}/{K} "
                     f"(min {min(cov)}) | {np.mean(ent):.3f} ± {np.std(ent):.3f} | "
                     f"{np.mean(acc):.3f} ± {np.std(acc):.3f} | {kstr} | {np.mean(secs):.2f} |")
    if summary is not None:
        write_summary(summary, command_line(), lines)


def write_summary(path: Path, command: str, lines: list[str]) -> None:
    """The table as markdown under the command that produced it (atomic write)."""
    from selector.atomic import atomic_write

    with atomic_write(path, "w") as f:
        f.write(f"# Strategy quality\n\nProduced by:\n\n```\n{command}\n```\n\n" + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
