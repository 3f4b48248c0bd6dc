"""The strategy matrix: every strategy on the same embeddings, datasets, pool shapes and
budgets, in one run.

Axes:

* embeddings: ``pca50`` (PCA-50 of the pixels, L2-normalised, computed here) and every
  ``{dataset}__{embedding}.npy`` in ``--emb-dir`` (rows aligned to
  ``selector.eval.datasets.load_dataset(dataset)``, as :func:`benchmarks.common.load_images` gives them;
  mixed20 = mnist10k rows then notmnist10k rows; a photo dataset (caltech101, natural_images, eurosat, cifar10):
  its folder's ``full`` pool of :mod:`benchmarks.folders`, files at their own sizes, in the pool reader's order);
* datasets: mnist10k, notmnist10k, digits, mixed20 (MNIST + notMNIST, labels of notMNIST offset by 10) and the
  four photo folders;
* pool shapes (drawn per seed from the training split, :func:`benchmarks.common.make_pool`): ``balanced``
  (``--per-class`` items of each class), ``lt10`` and ``lt100`` (long tail, head/tail 10 and 100,
  head ``--n-max``, classes ranked by a seeded permutation), ``subset`` (half of the classes, seeded,
  with sizes falling geometrically from ``--n-max`` by 10);
* budgets: K/2, K, 2K, 5K (K = classes in the pool);
* seeds 0 .. ``--seeds`` - 1 (the pool and the strategy's rng).

Metrics per selection: classes covered, normalised entropy of the chosen labels (over the pool's K),
linear-probe accuracy (:func:`selector.eval.retrain.linear_probe` trained on the chosen items, scored
on a held-out balanced split of ``--test-per-class`` items per class of the pool's classes), time.

Output (``--out``, default ``benchmarks/results/strategy_matrix``): ``results.csv`` (one row per selection)
and ``summary.md`` (written by :func:`summarise` from the CSV: the command, mean rank of every
strategy over the cells, the worst cell of each, and the class-coverage gap of each strategy to the
best one per (dataset, embedding, shape) at B = K and 2K). ``--summary-only`` rewrites the summary
from ``results.csv`` and every ``*/results.csv`` under ``--out`` (runs split by dataset, e.g.
``--datasets digits --out benchmarks/results/strategy_matrix/digits``) and under each ``--include`` folder (a
variant's runs summarised beside the matrix: ``--out benchmarks/results/strategy_variants/min_size --include
benchmarks/results/strategy_matrix``).

    nice python -m benchmarks.strategy_matrix --emb-dir .bench_data/embeddings
"""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import (
    MATRIX_DATASETS,
    MATRIX_SHAPES,
    REPORT_ONLY,
    command_line,
    dataset_embeddings,
    help_text,
    list_option,
    make_pool,
    matrix_split,
    parse_strategy,
    product_default,
    read_rows,
    run,
)

DATASETS = MATRIX_DATASETS
SHAPES = MATRIX_SHAPES
BUDGET_MULTS = (0.5, 1, 2, 5)
STRATEGIES = ("random", "typiclust", "kcenter", "probcover", "balanced")
FIELDS = ("embedding", "dataset", "shape", "n_classes", "pool_size", "budget_mult", "budget", "seed", "strategy",
          "covered", "entropy", "probe_acc", "seconds", "est_k")
METRICS = ("covered", "entropy", "probe_acc")


# ---------------------------------------------------------------------------------------------- run

def run_cell(emb: np.ndarray, y: np.ndarray, pool: np.ndarray, test: np.ndarray, budget: int, seed: int,
             spec: str) -> dict:
    from selector.eval.metrics import classes_covered, normalised_entropy
    from selector.eval.retrain import linear_probe
    k = int(np.unique(y[pool]).shape[0])
    t0 = time.perf_counter()
    sel = parse_strategy(spec).select(emb[pool], budget, rng=seed)
    dt = time.perf_counter() - t0
    chosen = pool[sel.indices]
    test = test[np.isin(y[test], np.unique(y[pool]))]  # scored on the pool's classes
    pred = linear_probe(emb[chosen], y[chosen], emb[test], seed=seed)
    return {"covered": classes_covered(y[chosen]), "entropy": round(normalised_entropy(y[chosen], k), 4),
            "probe_acc": round(float((pred == y[test]).mean()), 4), "seconds": round(dt, 3),
            "est_k": sel.info.get("k", "")}


@click.command("strategy_matrix", help=help_text(__doc__))
@click.option("--emb-dir", type=click.Path(path_type=Path), default=None,
              help="folder of {dataset}__{embedding}.npy files")
@list_option("--embeddings", help="only these embeddings (default: pca50 and every file found)")
@list_option("--datasets", default=DATASETS, type=click.Choice(DATASETS), show_default=True)
@list_option("--shapes", default=SHAPES, type=click.Choice(SHAPES), show_default=True)
@list_option("--budget-mults", type=float, help="budgets as multiples of the pool's classes (default: 0.5 1 2 5)")
@click.option("--seeds", type=int, default=5, show_default=True)
@list_option("--strategies", default=STRATEGIES, show_default=True,
             help="registered names, optionally with parameters: balanced:explore=0")
@click.option("--per-class", type=int, default=200, show_default=True, help="items per class of a balanced pool")
@click.option("--n-max", type=int, default=400, show_default=True, help="head class size of long-tail and subset pools")
@click.option("--test-per-class", type=int, default=100, show_default=True)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True,
              help="decoded CIFAR-10 arrays")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/strategy_matrix"),
              show_default=True)
@click.option("--force", is_flag=True, help="overwrite an existing results.csv")
@click.option("--summary-only", is_flag=True, help="rewrite summary.md from results.csv")
@list_option("--include", type=click.Path(path_type=Path),
             help="with --summary-only: also the results.csv and */results.csv of these folders (a variant "
                  "run summarised beside the matrix it is compared with)")
def cli(emb_dir, embeddings, datasets, shapes, budget_mults, seeds, strategies, per_class, n_max, test_per_class,
        cache_dir, out, force, summary_only, include) -> None:
    from selector.atomic import atomic_write

    csv_path, md_path = out / "results.csv", out / "summary.md"
    command = command_line()
    embeddings = list(embeddings) or None
    if include and not summary_only:
        raise SystemExit("--include only goes with --summary-only")
    if summary_only:
        for d in include:
            if not d.is_dir():
                raise SystemExit(f"--include {d}: no such folder")
        parts = sorted({p for d in [out, *include] for p in [d / "results.csv", *d.glob("*/results.csv")]
                        if p.is_file()})
        if not parts:
            raise SystemExit(f"{csv_path}: no results to summarise (nor in {out}/*/results.csv)")
        with atomic_write(md_path) as fh:
            fh.write(summarise([r for p in parts for r in read_matrix_rows(p)], command))
        print(md_path)
        return
    if csv_path.exists() and not force:
        raise SystemExit(f"{csv_path} exists; pass --force to overwrite it")
    for s in strategies:
        try:
            parse_strategy(s)
        except ValueError as e:
            raise SystemExit(f"--strategies {s}: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with atomic_write(csv_path, newline="") as fh:  # results.csv appears whole, at the end
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for ds in datasets:
            embs, y = dataset_embeddings(ds, emb_dir, embeddings, cache_dir)
            train, test = matrix_split(y, test_per_class)
            for shape in shapes:
                for seed in range(seeds):
                    pool = make_pool(shape, y, train, np.random.default_rng(seed), per_class, n_max)
                    k = int(np.unique(y[pool]).shape[0])
                    for mult in budget_mults or BUDGET_MULTS:
                        b = max(1, int(round(mult * k)))
                        if b >= pool.shape[0]:  # a long tail of 102 classes can be smaller than 5K
                            print(f"{ds} {shape} seed {seed}: budget {b} >= the pool's {pool.shape[0]} items, "
                                  "skipped", file=sys.stderr, flush=True)
                            continue
                        for ename, emb in embs.items():
                            for s in strategies:
                                r = {"embedding": ename, "dataset": ds, "shape": shape, "n_classes": k,
                                     "pool_size": int(pool.shape[0]), "budget_mult": mult, "budget": b,
                                     "seed": seed, "strategy": s, **run_cell(emb, y, pool, test, b, seed, s)}
                                w.writerow(r)
                                rows.append(r)
                            fh.flush()
                    print(f"{ds} {shape} seed {seed}: done ({len(rows)} selections)", file=sys.stderr, flush=True)
    with atomic_write(md_path) as fh:
        fh.write(summarise(read_matrix_rows(csv_path), command))
    print(md_path)


def main(argv: list[str] | None = None):
    return run(cli, argv)


# ---------------------------------------------------------------------------------------------- summary

def read_matrix_rows(path: Path) -> list[dict]:
    """The rows of a matrix ``results.csv``, counts as int and measures as float."""
    rows = read_rows(path)
    for r in rows:
        for k in ("n_classes", "pool_size", "budget", "seed", "covered"):
            r[k] = int(r[k])
        for k in ("budget_mult", "entropy", "probe_acc", "seconds"):
            r[k] = float(r[k])
    return rows


def cell_means(rows: list[dict]) -> dict[tuple, dict[str, dict[str, float]]]:
    """{(embedding, dataset, shape, budget_mult): {strategy: {metric: mean over seeds}}}."""
    acc: dict[tuple, dict[str, dict[str, list[float]]]] = {}
    for r in rows:
        key = (r["embedding"], r["dataset"], r["shape"], r["budget_mult"])
        d = acc.setdefault(key, {}).setdefault(r["strategy"], {m: [] for m in METRICS + ("seconds",)})
        for m in METRICS + ("seconds",):
            d[m].append(r[m])
    return {k: {s: {m: float(np.mean(v)) for m, v in d.items()} for s, d in by.items()} for k, by in acc.items()}


def ranks(values: dict[str, float]) -> dict[str, float]:
    """Rank 1 = highest value; ties share the mean of their ranks."""
    names = list(values)
    v = np.array([values[n] for n in names])
    out = {}
    for i, n in enumerate(names):
        better = float((v > v[i] + 1e-12).sum())
        tied = float((np.abs(v - v[i]) <= 1e-12).sum())
        out[n] = better + (tied + 1) / 2.0
    return out


#: the rule's tolerance: the default may trail the best strategy's class coverage by at most this
#: much (5-seed means) in any (dataset, embedding, shape) cell at B = K and 2K
TOLERANCE = 0.5


def is_default(spec: str, default: str) -> bool:
    """Whether the strategy spec ``spec`` selects exactly as the registered ``default`` with its default
    parameters (parameters in :data:`REPORT_ONLY` ignored)."""
    from selector.strategies import get_strategy
    try:
        got = parse_strategy(spec).get_params()
    except ValueError:
        return False
    if spec.partition(":")[0] != default:
        return False
    ref = get_strategy(default).get_params()
    return ({k: v for k, v in got.items() if k not in REPORT_ONLY}
            == {k: v for k, v in ref.items() if k not in REPORT_ONLY})


def paired_gap_ci(best: dict[int, float], other: dict[int, float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean gap ``best - other`` over the seeds both have, and its two-sided ``level`` confidence
    interval (Student t on the per-seed differences: both strategies see the same pool per seed).

    Returns (mean, low, high); with a single seed the interval is (-inf, inf).
    """
    from scipy import stats
    seeds = sorted(set(best) & set(other))
    d = np.array([best[s] - other[s] for s in seeds], dtype=np.float64)
    mean = float(d.mean())
    if d.shape[0] < 2:
        return mean, -np.inf, np.inf
    half = float(stats.t.ppf(0.5 + level / 2, d.shape[0] - 1) * d.std(ddof=1) / np.sqrt(d.shape[0]))
    return mean, mean - half, mean + half


def random_lines(means: dict, per_seed: dict, default: str) -> list[str]:
    """Markdown lines: the default against ``random`` in every cell (every budget) where both ran: how many
    cells its mean class coverage is below random's, and how many *clearly* (the paired 95 % interval of the
    gap default - random wholly below zero), listed."""
    cells, below, clear = 0, [], []
    for key, by in sorted(means.items()):
        if default not in by or "random" not in by:
            continue
        cells += 1
        mean, low, high = paired_gap_ci(per_seed[key][default], per_seed[key]["random"])
        if mean < 0:
            below.append((key, mean, low, high))
        if high < 0:
            clear.append((key, mean, low, high))
    if not cells:
        return []
    lines = ["", "## The default against random", "",
             f"Class coverage of the default (`{default}`) minus random's, per cell (every budget; {cells} cells): "
             f"below random in {len(below)}, *clearly* below (the paired 95 % interval over the seeds wholly below "
             f"zero) in {len(clear)}."]
    if below:
        lines += ["", "| embedding | dataset | shape | B | gap | 95 % CI |", "|---|---|---|---|---|---|"]
        for key, mean, low, high in below:
            lines.append(f"| {' | '.join(map(str, key[:3]))} | {key[3]:g}K | {mean:.2f} | {low:.2f} to {high:.2f}"
                         f"{' (clear)' if high < 0 else ''} |")
    return lines


def rule_table(rows: list[dict], default: str | None = None, tol: float = TOLERANCE) -> list[str]:
    """Markdown lines applying the rule that chooses the default (README, benchmarks/README) to every
    strategy: its mean rank over all complete cells, and the (dataset, embedding, shape) cells at
    B = K and 2K where its class coverage is more than ``tol`` below the best strategy's; then the
    default's failing cells one by one. Each gap also gets a paired 95 % confidence interval over the
    seeds (:func:`paired_gap_ci`); a cell counts as *clearly* behind when the whole interval lies
    above ``tol``, which separates a real loss from seed noise in 5-seed means."""
    default = product_default() if default is None else default
    means = cell_means(rows)
    per_seed: dict[tuple, dict[str, dict[int, float]]] = {}
    for r in rows:
        key = (r["embedding"], r["dataset"], r["shape"], r["budget_mult"])
        per_seed.setdefault(key, {}).setdefault(r["strategy"], {})[int(r["seed"])] = float(r["covered"])
    strategies = sorted({r["strategy"] for r in rows})
    default = next((s for s in strategies if is_default(s, default)), default)
    mean_rank = {s: [] for s in strategies}
    fails: dict[str, list[tuple]] = {s: [] for s in strategies}
    n_checked = 0
    for key, by in sorted(means.items()):
        if set(by) != set(strategies):
            continue
        for m in METRICS:
            rk = ranks({s: by[s][m] for s in strategies})
            for s in strategies:
                mean_rank[s].append(rk[s])
        if key[3] in (1.0, 2.0):
            n_checked += 1
            best_s = max(strategies, key=lambda s: by[s]["covered"])
            for s in strategies:
                gap = by[best_s]["covered"] - by[s]["covered"]
                if gap > tol + 1e-9:
                    _, low, high = paired_gap_ci(per_seed[key][best_s], per_seed[key][s])
                    fails[s].append((gap, key, by[s]["covered"], by[best_s]["covered"], best_s, low, high))
    if not n_checked:
        return []
    avg = {s: float(np.mean(v)) for s, v in mean_rank.items()}
    order = sorted(strategies, key=avg.get)
    lines = ["", "## The rule", "",
             f"The default is the strategy with the best mean rank, and it should never trail the best strategy's "
             f"class coverage by more than {tol:g} class in a (dataset, embedding, shape) cell at B = K and 2K "
             f"({n_checked} such cells here).", "",
             f"A cell is *clearly* behind when the paired 95 % confidence interval of the gap over the seeds "
             f"(same pool per seed) lies wholly above {tol:g}; the others may be seed noise.", "",
             "| strategy | mean rank | cells more than " + f"{tol:g}" + " class behind | of them clearly | "
             "worst gap (cell) |", "|---|---|---|---|---|"]
    for s in order:
        worst = max(fails[s], default=None)
        w = f"{worst[0]:.1f} ({'/'.join(map(str, worst[1][:3]))}, {worst[1][3]:g}K)" if worst else "-"
        clear = sum(f[5] > tol for f in fails[s])
        lines.append(f"| {s}{' (default)' if s == default else ''} | {avg[s]:.2f} | {len(fails[s])} | {clear} | {w} |")
    lines += random_lines(means, per_seed, default)
    if default in fails and fails[default]:
        lines += ["", f"Cells where the default (`{default}`) is more than {tol:g} class behind:", "",
                  "| embedding | dataset | shape | B | default | best | gap | 95 % CI |",
                  "|---|---|---|---|---|---|---|---|"]
        for gap, key, got, best, best_s, low, high in sorted(fails[default], key=lambda f: f[1]):
            lines.append(f"| {' | '.join(map(str, key[:3]))} | {key[3]:g}K | {got:.1f} | {best:.1f} ({best_s}) | "
                         f"{gap:.1f} | {low:.1f} to {high:.1f}{' (clear)' if low > tol else ''} |")
    return lines


def summarise(rows: list[dict], command: str) -> str:
    """The summary markdown of the matrix's rows (see the module docstring)."""
    means = cell_means(rows)
    strategies = sorted({r["strategy"] for r in rows}, key=lambda s: [r["strategy"] for r in rows].index(s))
    per_metric = {s: {m: [] for m in METRICS} for s in strategies}
    worst: dict[str, tuple] = {}
    for key, by in means.items():
        if set(by) != set(strategies):
            continue
        for m in METRICS:
            rk = ranks({s: by[s][m] for s in strategies})
            for s in strategies:
                per_metric[s][m].append(rk[s])
        best = max(by[s]["covered"] for s in strategies)
        for s in strategies:
            gap = best - by[s]["covered"]
            if s not in worst or gap > worst[s][0]:
                worst[s] = (gap, key, by[s]["covered"], best)
    n_cells = len(per_metric[strategies[0]]["covered"]) if strategies else 0
    lines = ["# Strategy matrix", "", "Command:", "", "    " + command, "",
             f"{len(rows)} selections; {n_cells} cells (embedding x dataset x pool shape x budget), "
             f"{len({r['seed'] for r in rows})} seeds each. Ranks are over the strategies' seed means in each cell "
             "(1 = best, ties share); the mean rank averages the three metrics' ranks over all cells.", "",
             "| strategy | mean rank | rank: classes covered | rank: entropy | rank: probe acc | worst coverage cell "
             "(gap to best: strategy / best) |", "|---|---|---|---|---|---|"]
    order = sorted(strategies, key=lambda s: np.mean([np.mean(per_metric[s][m]) for m in METRICS]))
    for s in order:
        pm = {m: float(np.mean(per_metric[s][m])) for m in METRICS}
        gap, key, got, best = worst[s]
        lines.append(f"| {s} | {np.mean(list(pm.values())):.2f} | {pm['covered']:.2f} | {pm['entropy']:.2f} | "
                     f"{pm['probe_acc']:.2f} | {gap:.1f}: {'/'.join(map(str, key))} ({got:.1f} / {best:.1f}) |")
    lines += rule_table(rows)
    for mult in (1.0, 2.0):
        lines += ["", f"## Classes covered at B = {mult:g}K: gap to the best strategy (seed means)", "",
                  "| embedding | dataset | shape | K | best | " + " | ".join(strategies) + " |",
                  "|---|---|---|---|---|" + "---|" * len(strategies)]
        for key in sorted(k for k in means if k[3] == mult):
            by = means[key]
            if set(by) != set(strategies):
                continue
            best = max(by[s]["covered"] for s in strategies)
            k = next(r["n_classes"] for r in rows
                     if (r["embedding"], r["dataset"], r["shape"], r["budget_mult"]) == key)
            cells = " | ".join(f"{by[s]['covered'] - best:+.1f}" for s in strategies)
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {k} | {best:.1f} | {cells} |")
    lines += ["", "## Long-tail 100 at B = 2K: classes covered / entropy (seed means)", "",
              "| embedding | dataset | " + " | ".join(strategies) + " |", "|---|---|" + "---|" * len(strategies)]
    for key in sorted(k for k in means if k[2] == "lt100" and k[3] == 2.0):
        by = means[key]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(
            f"{by[s]['covered']:.1f} / {by[s]['entropy']:.2f}" if s in by else "-" for s in strategies) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
