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
    python eval/quality_strategies.py --data mnist10k --cache-dir .selector-cache
    # raw-pixel stand-in: MNIST-10k, PCA-50, L2-normalised
    python eval/quality_strategies.py --builtin mnist
    # any embeddings + labels
    python eval/quality_strategies.py --embeddings emb.npy --labels y.npy
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from selector.eval.datasets import default_data_dir  # noqa: E402
from selector.eval.metrics import classes_covered, normalised_entropy  # noqa: E402
from selector.eval.pools import balanced_pool, long_tail_pool, train_test_split_balanced  # noqa: E402
from selector.strategies import get_strategy  # noqa: E402

DEFAULT_STRATEGIES = ["random", "stratified-random", "kcenter", "typiclust", "probcover", "balanced"]


def mnist_pca(data_dir: Path, dim: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-10k raw pixels -> PCA-``dim`` -> L2-normalised float32 (a stand-in embedding)."""
    from sklearn.decomposition import PCA
    z = np.load(data_dir / "mnist10k.npz")
    x = z["x"].reshape(len(z["x"]), -1).astype(np.float32) / 255.0
    e = PCA(dim, random_state=0).fit_transform(x).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e, z["y"].astype(np.int64)


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
    """``"balanced"`` or ``"balanced:explore=0,k_nn=10"`` -> a strategy instance (values parsed as
    Python literals: numbers, None, True/False)."""
    from selector.strategies.registry import parse_params

    name, _, params = spec.partition(":")
    try:
        return get_strategy(name, **parse_params(name, filter(None, params.split(","))))
    except ValueError as e:
        raise SystemExit(f"{spec}: {e}") from None


def make_pool(kind: str, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "balanced":
        return balanced_pool(y, rng=rng)
    ratio = float(kind.split(":")[1])
    return long_tail_pool(y, ratio, rng=rng, shuffle_classes=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embeddings", type=Path)
    ap.add_argument("--labels", type=Path)
    ap.add_argument("--builtin", choices=["mnist"], help="MNIST-10k PCA-50 stand-in embedding")
    ap.add_argument("--data", choices=["mnist10k", "cifar10"],
                    help="embed this dataset's training images with the project's encoder (as `selector eval`)")
    ap.add_argument("--cache-dir", type=Path, default=Path(".selector-cache"),
                    help="encoder and embedding cache for --data")
    ap.add_argument("--device", default="auto", help="device that trains the encoder for --data")
    ap.add_argument("--data-dir", type=Path, default=None, help="folder of the shared data (default: ../shared/data beside the checkout)")
    ap.add_argument("--pools", nargs="+", default=["balanced", "long-tail:10", "long-tail:100"])
    ap.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 50, 100])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--strategies", nargs="+", default=DEFAULT_STRATEGIES,
                    help="registered names, optionally with parameters: balanced:explore=0")
    ap.add_argument("--test-per-class", type=int, default=100)
    ap.add_argument("--summary", type=Path, default=None,
                    help="also write the table to this markdown file (e.g. eval/runs/<name>/summary.md), "
                         "headed by the command that produced it")
    raw_args = list(sys.argv[1:] if argv is None else argv)
    a = ap.parse_args(argv)
    if a.builtin == "mnist":
        emb, y = mnist_pca(a.data_dir or default_data_dir())
        source = "MNIST-10k, PCA-50 of raw pixels, L2-normalised"
    elif a.data is not None:
        from selector.eval.cli import embed_dataset, load_split
        cache = a.cache_dir / a.data
        xtr, y, xte, _, name = load_split(a.data, 1000, 200, 0, cache, a.data_dir)
        emb, _, _ = embed_dataset(xtr, xte, name, cache, None, None, "simclr", "resnet-small",
                                  a.device, 0, False)
        source = f"{name} training images, the project's encoder (SimCLR, resnet-small, default epochs)"
    elif a.embeddings is not None and a.labels is not None:
        emb = np.load(a.embeddings).astype(np.float32)
        y = np.load(a.labels).astype(np.int64)
        source = f"{a.embeddings} / {a.labels}"
    else:
        ap.error("give --builtin mnist or --embeddings and --labels")
    train_idx, test_idx = train_test_split_balanced(y, a.test_per_class, rng=np.random.default_rng(12345))
    x_te, y_te = emb[test_idx], y[test_idx]
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    emit(f"embeddings: {source}; n={len(y)}, d={emb.shape[1]}, held-out test {len(test_idx)} (balanced)\n")
    emit("| pool | pool size | B | strategy | classes covered | norm. entropy | probe acc | est. K | time (s) |")
    emit("|---|---|---|---|---|---|---|---|---|")
    for pool_kind in a.pools:
        for b in a.budgets:
            for s in a.strategies:
                cov, ent, acc, ks, secs, sizes, K = [], [], [], [], [], [], None
                for seed in range(a.seeds):
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
    if a.summary is not None:
        write_summary(a.summary, "python eval/quality_strategies.py " + " ".join(map(shlex.quote, raw_args)),
                      lines)


def write_summary(path: Path, command: str, lines: list[str]) -> None:
    """The table as markdown under the command that produced it (atomic write)."""
    from selector.atomic import atomic_write

    with atomic_write(path, "w") as f:
        f.write(f"# Strategy quality\n\nProduced by:\n\n```\n{command}\n```\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
