"""How many classes does a pool hold? The class-count estimators against the truth, on the product's default
embedding of folders of real files (:mod:`benchmarks.folders`: the embedding benchmark's datasets in the full,
small and long-tailed shapes) and on synthetic Gaussian blobs (2 to 1,000 groups of unequal sizes, seeded).

Each real pool is embedded once by :class:`selector.Selector` with its defaults (``selector select``'s
embedding, content-keyed cache under ``--cache-dir``); the embedding is kept in ``<cache-dir>/class_count/`` so
that a rerun only re-estimates. Methods (``--methods``), each giving an estimate and an interval:

* ``eigengap``: the previous default (:func:`selector.strategies.class_count.estimate_class_range`: eigengap of
  a kNN graph, median over three subsamples, interval = their range);
* ``silhouette``: k-means over a geometric k sweep on a subsample, the k of the best silhouette (interval: the
  k whose silhouette is within 0.01 of the best);
* ``calinski``: the same sweep, the best Calinski-Harabasz score;
* ``stability``: k-means partitions of two halves of a subsample compared on the other rows (adjusted Rand
  index), the largest k whose stability stays within 0.05 of the best;
* ``hdbscan``: the clusters :class:`sklearn.cluster.HDBSCAN` finds on a subsample (PCA to 32 dimensions);
* ``eigengap-wide``: the same eigengap, considering up to :func:`~selector.strategies.class_count.report_max_k`
  classes (300 where the pool has 10 rows each) instead of 30;
* ``default``: the product's estimator (:func:`selector.strategies.class_count.count_classes`): the median on a
  log scale of ``eigengap-wide``, ``silhouette``, ``hdbscan`` and ``stability`` (the geometric mean of the middle
  two), the interval their span widened, confident only when the best silhouette shows clear structure and the
  four agree. Its rows are combined from those four rows (:data:`PARTS`; the same seeds and settings as the
  product), its seconds their sum.

Scores per method: median |log(K_est / K)| over the cells, the share of cells whose interval holds the true K
(coverage), the confident cells and those among them whose interval misses K, median seconds.

    python -m benchmarks.bench_class_count --out benchmarks/results/class_count
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import (
    PRINT_ONLY,
    command_line,
    help_text,
    list_option,
    read_rows,
    record_command,
    recorded_commands,
    run,
    write_csv,
    write_page,
)
from benchmarks.folders import DATASETS, SHAPES, dataset_folder, pool_folder

#: the real datasets measured by default: the photo and glyph datasets of the embedding benchmark
REAL = ("caltech101", "natural_images", "eurosat", "cifar10", "mnist10k", "notmnist10k", "digits")
#: synthetic blob pools: number of groups
BLOB_KS = (2, 5, 20, 100, 300, 1000)
FIELDS = ("dataset", "shape", "n", "d", "classes", "method", "estimate", "low", "high", "confident", "log_ratio",
          "covered", "seconds", "load", "structure", "notes")
#: the product's estimator (:func:`selector.strategies.class_count.count_classes`) is these four methods, with the
#: same seeds and settings, combined by :func:`~selector.strategies.class_count.combine_counts`: its rows are made
#: from theirs (its seconds their sum), so that each pool is estimated once per method
PARTS = ("eigengap-wide", "silhouette", "hdbscan", "stability")


def embedding(name: str, shape: str, cache_dir: Path, data_dir) -> tuple[np.ndarray, np.ndarray]:
    """The product's default embedding of a pool shape of a dataset and its true labels, (n, d) and (n,)
    (kept in ``<cache_dir>/class_count/<name>-<shape>.npz``)."""
    path = cache_dir / "class_count" / f"{name}-{shape}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["x"], z["y"]
    from selector import Selector

    ds = dataset_folder(name, cache_dir, data_dir)
    folder, files, labels = pool_folder(ds, shape, cache_dir)
    truth = dict(zip(files, labels.tolist()))
    t = time.perf_counter()
    sel = Selector(cache_dir=cache_dir / "selector-cache", device="cpu").fit(folder)
    x = np.asarray(sel.embeddings_, dtype=np.float32)
    y = np.array([truth[i] for i in sel.pool_.ids], dtype=np.int64)
    print(f"{name} {shape}: embedded {sel.n_embedded_} of {len(y)} in {time.perf_counter() - t:.0f} s",
          file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, path)
    return x, y


def real_cells(datasets, shapes):
    for name in datasets:
        for shape in [s for s in SHAPES if s in shapes]:
            if shape == "lt100" and name.startswith("caltech101"):
                continue
            yield name, shape


def blobs(k: int, seed: int, d: int = 64, ratio: float = 10.0, min_size: int = 20, spread: float = 0.35
          ) -> tuple[np.ndarray, np.ndarray]:
    """``k`` Gaussian blobs around random unit vectors in ``d`` dimensions (noise norm about ``spread``), sizes
    falling geometrically from ``ratio * min_size`` to ``min_size`` (scaled up to 2,000 rows in all), L2-normalised."""
    rng = np.random.default_rng(seed)
    sizes = np.round(min_size * ratio ** (1 - np.arange(k) / max(k - 1, 1))).astype(int)
    if sizes.sum() < 2000:
        sizes = np.round(sizes * 2000 / sizes.sum()).astype(int)
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.repeat(centres, sizes, axis=0) + spread / np.sqrt(d) * rng.normal(size=(int(sizes.sum()), d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(k), sizes)


def _kmeans(z: np.ndarray, k: int, seed: int):
    """Seeded k-means with k-means++ seeding, as the silhouette sweep runs it: (centroids, labels, objective)."""
    from selector.strategies.class_count import kmeanspp

    from selector.cluster import kmeans

    return kmeans(z, k, seed=seed, niter=20, max_points_per_centroid=10**6, use_gpu=False, init=kmeanspp(z, k, seed))


def calinski(x: np.ndarray, max_k: int, seed: int) -> tuple[int, int, int, bool]:
    """k-means sweep (as the silhouette's) scored by Calinski-Harabasz; interval: k within 5 % of the best."""
    from selector.strategies.class_count import SWEEP_ROWS, reduced_sample, sweep_ks
    from sklearn.metrics import calinski_harabasz_score

    z = reduced_sample(x, SWEEP_ROWS, seed, 64)
    score = {}
    for k in sweep_ks(min(max_k, z.shape[0] // 5)):
        _, lab, _ = _kmeans(z, k, seed)
        if np.unique(lab).shape[0] > 1:
            score[k] = calinski_harabasz_score(z, lab)
    best = max(score, key=score.get)
    near = [k for k, v in score.items() if v >= 0.95 * score[best]]
    return best, min(near), max(near), False


def stability(x: np.ndarray, max_k: int, seed: int) -> tuple[int, int, int, bool]:
    """The product's stability vote (:func:`selector.strategies.class_count.stability_count`), never confident."""
    from selector.strategies.class_count import stability_count

    return (*stability_count(x, max_k, seed=seed), False)


def estimate(method: str, x: np.ndarray, seed: int) -> tuple[int, int, int, bool, str]:
    """(estimate, low, high, confident, structure) of one method on ``x`` (structure: the best silhouette of the
    sweep, else "")."""
    from selector.strategies import class_count as cc

    n = x.shape[0]
    max_k = cc.report_max_k(n)
    if method == "eigengap":  # the previous default, as balanced and typcover ran it (no budget: max_k 30)
        e = cc.estimate_class_range(x, seed=seed)
        return e.k, e.k_range[0], e.k_range[1], False, ""
    if method == "eigengap-wide":  # the same, considering up to report_max_k classes
        e = cc.estimate_class_range(x, max_k=max_k, seed=seed)
        return e.k, e.k_range[0], e.k_range[1], False, ""
    if method == "silhouette":
        k, lo, hi, best = cc.silhouette_sweep(x, max_k, seed=seed)
        return k, lo, hi, False, best
    if method == "calinski":
        return (*calinski(x, max_k, seed), "")
    if method == "stability":
        return (*stability(x, max_k, seed), "")
    if method == "hdbscan":
        k = cc.hdbscan_count(x, seed=seed)
        return k, k, k, False, ""
    raise click.BadParameter(f"unknown method {method!r}")


METHODS = ("eigengap", "eigengap-wide", "silhouette", "calinski", "stability", "hdbscan", "default")


def find(rows: list[dict], name: str, shape: str, method: str) -> dict | None:
    """The row of ``method`` on the pool (``name``, ``shape``), or None."""
    return next((r for r in rows if (r["dataset"], r["shape"], r["method"]) == (name, shape, method)), None)


def default_from(parts: dict[str, dict]) -> tuple[int, int, int, bool, str]:
    """The product's count from the rows of :data:`PARTS` on one pool, as ``count_classes`` combines them:
    (estimate, low, high, confident, notes)."""
    from selector.strategies.class_count import combine_counts

    eg, sil, hdb, stab = (parts[m] for m in PARTS)
    votes = {"eigengap": int(eg["estimate"]), "silhouette": int(sil["estimate"]), "hdbscan": int(hdb["estimate"]),
             "stability": int(stab["estimate"])}
    c = combine_counts(votes, (int(eg["low"]), int(eg["high"]), int(sil["low"]), int(sil["high"])),
                       structure=float(sil["structure"]))
    return c.estimate, c.low, c.high, c.confident, " ".join(f"{m}={k}" for m, k in c.votes)


def _median(v) -> float:
    return float(np.median(v)) if len(v) else float("nan")


def summarise(rows: list[dict], commands: list[str]) -> str:
    """The summary page: per method the scores over all cells, then each cell's default and previous estimate."""
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    cells = list(dict.fromkeys((r["dataset"], r["shape"]) for r in rows))
    lines = ["# How many classes: estimators against the truth", "", "Commands (rows are appended to results.csv; "
             "`--summary-only` rewrites this page):", "", *["    " + c for c in commands], "",
             f"{len(cells)} pools: real datasets on the product's default embedding (full, small and long-tailed "
             "shapes) and Gaussian blobs of unequal sizes. |log ratio|: |log(K_est / K)| (0.4 is a factor of "
             "1.5); coverage: the share of pools whose interval holds the true K; confident: pools the method "
             "calls confident, and how many of those intervals miss K. The default's rule (its four votes, their "
             "median on a log scale, confident when every vote is within 1.25x of it) was chosen after seeing these "
             "pools, over three votes and their plain median (0.41, 88 %): an in-sample figure, which the held-out "
             "pools check.", "",
             "| method | median abs log ratio | coverage | confident (missed) | median seconds | max seconds |",
             "|---|---|---|---|---|---|"]
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        conf = [r for r in rs if str(r["confident"]) == "True"]
        miss = sum(str(r["covered"]) != "True" for r in conf)
        cover = np.mean([str(r["covered"]) == "True" for r in rs])
        secs = [float(r["seconds"]) for r in rs]
        lines.append(f"| {m} | {_median([abs(float(r['log_ratio'])) for r in rs]):.2f} | {100 * cover:.0f} % "
                     f"({len(rs)} pools) | {len(conf)} ({miss}) | {_median(secs):.1f} | {max(secs):.1f} |")
    by = {(r["dataset"], r["shape"], r["method"]): r for r in rows}
    lines += ["", "Per pool: true K, then estimate [interval] (c: confident) of each method.", "",
              "| pool | n | K | " + " | ".join(methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    for ds, shape in cells:
        first = next(r for r in rows if r["dataset"] == ds and r["shape"] == shape)
        out = []
        for m in methods:
            r = by.get((ds, shape, m))
            out.append("" if r is None else f"{r['estimate']} [{r['low']}-{r['high']}]"
                       + (" c" if str(r["confident"]) == "True" else ""))
        lines.append(f"| {ds} {shape} | {first['n']} | {first['classes']} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


@click.command("bench_class_count", help=help_text(__doc__))
@list_option("--datasets", default=REAL, type=click.Choice(DATASETS), show_default=True)
@list_option("--shapes", default=SHAPES, type=click.Choice(SHAPES), show_default=True)
@list_option("--blobs", "blob_ks", default=BLOB_KS, type=int, show_default=True, help="numbers of blob groups")
@list_option("--methods", default=METHODS, type=click.Choice(METHODS), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="the shared data folder")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True,
              help="dataset folders, pools, the embedding cache")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/class_count"),
              show_default=True)
@click.option("--redo", is_flag=True, help="recompute rows results.csv already has")
@click.option("--summary-only", is_flag=True, help="rewrite summary.md from results.csv")
def cli(datasets, shapes, blob_ks, methods, seed, data_dir, cache_dir, out, redo, summary_only) -> None:

    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "results.csv"
    rows = read_rows(csv_path)
    if not summary_only:
        record_command(out, command_line(PRINT_ONLY))
        pools = [(name, shape, lambda n=name, s=shape: embedding(n, s, cache_dir, data_dir))
                 for name, shape in real_cells(datasets, shapes)]
        pools += [(f"blobs{k}", "full", lambda k=k: blobs(k, seed=k)) for k in blob_ks]
        for name, shape, load in pools:
            todo = [m for m in methods if redo or find(rows, name, shape, m) is None]
            if "default" in todo:  # made from its parts, run first where missing
                todo = [m for m in PARTS if m not in todo and find(rows, name, shape, m) is None] + todo
            if not todo:
                continue
            x, y = load()
            true_k = int(np.unique(y).shape[0])
            for m in sorted(todo, key=lambda m: m == "default"):
                structure = ""
                if m == "default":
                    parts = {p: find(rows, name, shape, p) for p in PARTS}
                    k, lo, hi, conf, notes = default_from(parts)
                    secs = sum(float(parts[p]["seconds"]) for p in PARTS)
                    structure = parts["silhouette"]["structure"]
                else:
                    t = time.perf_counter()
                    k, lo, hi, conf, structure = estimate(m, x, seed)
                    secs, notes = time.perf_counter() - t, ""
                rows = [r for r in rows if (r["dataset"], r["shape"], r["method"]) != (name, shape, m)]
                rows.append({"dataset": name, "shape": shape, "n": x.shape[0], "d": x.shape[1], "classes": true_k,
                             "method": m, "estimate": int(k), "low": int(lo), "high": int(hi),
                             "confident": bool(conf), "log_ratio": float(np.log(k / true_k)),
                             "covered": bool(lo <= true_k <= hi), "seconds": secs, "load": os.getloadavg()[0],
                             "structure": structure, "notes": notes})
                write_csv(rows, csv_path, FIELDS)
                print(f"{name} {shape} K={true_k} {m}: {k} [{lo}-{hi}]{' confident' if conf else ''} "
                      f"({secs:.1f} s)", file=sys.stderr, flush=True)
    write_page(out / "summary.md", summarise(rows, recorded_commands(out)))


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
