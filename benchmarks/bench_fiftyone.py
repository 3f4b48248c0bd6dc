"""FiftyOne Brain's scores against selector's default strategy, on the same embedding: classes covered at B = K
and 2K (K: the pool's classes).

Each pool (:mod:`benchmarks.folders`: a dataset's folder of real files in one pool shape) is embedded once by the
product's default, ``selector.Selector().fit(folder)`` (cache ``<cache-dir>/selector-cache``), and loaded into a
FiftyOne dataset (one sample per file, in the pool's order). On that one embedding:

* ``typcover``: selector's default strategy, ``select_embeddings(emb, B, None, "typcover", seed)``, per seed;
* ``random``: selector's ``random`` strategy, per seed (what a budget buys without any choosing);
* ``brain-uniqueness``: ``fiftyone.brain.compute_uniqueness(dataset, embeddings=emb)``, the top B by score;
* ``brain-representativeness``: ``compute_representativeness(dataset, embeddings=emb)`` (method
  ``cluster-center``), the top B;
* ``brain-repr-downweight``: the same with ``method="cluster-center-downweight"`` (Brain's more diverse variant).

Brain's scores take no seed; each is computed twice per pool and the run records whether the two top-B sets were
identical (the ``deterministic`` column). Rows go to ``results.csv`` (rewritten by each run), the page to
``summary.md``, with the command at its top. FiftyOne's database lives in ``<cache-dir>/fiftyone-db`` unless
``FIFTYONE_DATABASE_DIR`` says otherwise; the datasets are deleted at the end.

    python -m benchmarks.bench_fiftyone --out benchmarks/results/fiftyone
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import command_line, help_text, list_option, read_rows, run, write_csv, write_page
from benchmarks.folders import DATASETS, SHAPES, dataset_folder, pool_folder

POOLS = ("natural_images-small", "eurosat-small", "cifar10-small", "caltech101-small", "mnist10k-small")
SELECTOR_METHODS = ("typcover", "random")
BRAIN_METHODS = ("brain-uniqueness", "brain-representativeness", "brain-repr-downweight")
METHODS = SELECTOR_METHODS + BRAIN_METHODS
FIELDS = ("pool", "n", "classes", "multiple", "budget", "method", "seed", "covered", "seconds", "deterministic")
POOL_FIELDS = ("pool", "n", "classes", "embed_s", "embedded", "dataset_s", "threads", "load")


def parse_pool(spec: str) -> tuple[str, str]:
    """``natural_images-small`` -> ("natural_images", "small")."""
    name, _, shape = spec.rpartition("-")
    if name not in DATASETS or shape not in SHAPES:
        raise click.BadParameter(f"pool {spec!r}: expected DATASET-SHAPE, DATASET one of {', '.join(DATASETS)}, "
                                 f"SHAPE one of {', '.join(SHAPES)}")
    return name, shape


def top(scores: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` highest scores' rows, as sorting the dataset by the field (descending) and taking the first
    ``budget`` gives them (ties in row order)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:budget]


def brain_scores(fob, dataset, emb: np.ndarray, method: str) -> np.ndarray:
    """One Brain score per sample, in the dataset's order, computed on ``emb``."""
    field = method.replace("-", "_")
    if method == "brain-uniqueness":
        fob.compute_uniqueness(dataset, uniqueness_field=field, embeddings=emb, progress=False)
    else:
        how = "cluster-center-downweight" if method == "brain-repr-downweight" else "cluster-center"
        fob.compute_representativeness(dataset, representativeness_field=field, method=how, embeddings=emb,
                                       progress=False)
    scores = np.asarray(dataset.values(field), dtype=np.float64)
    dataset.delete_brain_run(field)  # the next call under this key starts afresh
    return scores


def covered(labels: np.ndarray, rows: np.ndarray) -> int:
    return int(len(np.unique(labels[rows])))


def _f(row: dict, key: str) -> float:
    return float(row[key]) if row.get(key) not in (None, "") else float("nan")


def summarise(rows: list[dict], pool_rows: list[dict], command: str) -> str:
    """The summary page: classes covered per pool and budget, the mean over pools, and the seconds."""
    pools = list(dict.fromkeys(r["pool"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    seeds = sorted({int(r["seed"]) for r in rows if r["seed"] != ""})
    lines = ["# FiftyOne Brain against selector's default, on the same embedding", "", "Command:", "",
             "    " + command, "",
             "Classes covered by the B chosen images (B = K and 2K; K: the pool's classes), on selector's default "
             "embedding of each pool. `typcover` (selector's default) and `random`: mean over seeds "
             f"{', '.join(map(str, seeds))} (min to max in brackets); Brain's scores take no seed: the top B by "
             "score, one run (each was computed twice; `deterministic` below says whether both gave the same top B).",
             "", "| pool | K | B | " + " | ".join(f"`{m}`" for m in methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    fractions: dict[tuple[str, str], list[float]] = {}
    for p in pools:
        for mult in sorted({r["multiple"] for r in rows if r["pool"] == p}, key=int):
            cell = [r for r in rows if r["pool"] == p and r["multiple"] == mult]
            k, b = int(cell[0]["classes"]), int(cell[0]["budget"])
            out = []
            for m in methods:
                vals = [_f(r, "covered") for r in cell if r["method"] == m]
                if not vals:
                    out.append("")
                    continue
                fractions.setdefault((mult, m), []).append(float(np.mean(vals)) / k)
                out.append(f"{np.mean(vals):.1f} ({min(vals):.0f} to {max(vals):.0f})" if len(vals) > 1
                           else f"{vals[0]:.0f}")
            lines.append(f"| {p} | {k} | {b} | " + " | ".join(out) + " |")
    lines += ["", "Mean over the pools of the fraction of the K classes covered:", "",
              "| B | " + " | ".join(f"`{m}`" for m in methods) + " |", "|---|" + "---|" * len(methods)]
    for mult in sorted({k[0] for k in fractions}, key=int):
        lines.append(f"| {mult}K | " + " | ".join(
            f"{100 * np.mean(fractions[(mult, m)]):.1f}%" if (mult, m) in fractions else "" for m in methods) + " |")
    if "brain-repr-downweight" in methods:
        lines += ["", "`brain-repr-downweight` multiplies by 0.7 the score of each sample within distance 0.5 of a "
                  "higher-ranked one (FiftyOne Brain's `_adjust_rankings`, a fixed radius whatever the embedding's "
                  "scale); equal cells in its column and `brain-representativeness`'s mean equal class counts, "
                  "not necessarily the same images."]
    det = {(r["pool"], r["method"]): r["deterministic"] for r in rows if r["method"].startswith("brain")}
    lines += ["", "## Seconds", "",
              "Per pool: the embedding (`embedded`: images the encoder ran on, 0 when all came from the cache), "
              "loading the FiftyOne dataset, one selection per method (selector's: mean over seeds and budgets; "
              "Brain's: one score computation, which serves every B), and whether Brain's two runs agreed.", "",
              "| pool | images | embed s (embedded) | dataset s | " + " | ".join(f"`{m}` s" for m in methods)
              + " | Brain deterministic | load |", "|---|---|---|---|" + "---|" * len(methods) + "---|---|"]
    for pr in pool_rows:
        p = pr["pool"]
        secs = []
        for m in methods:
            vals = [_f(r, "seconds") for r in rows if r["pool"] == p and r["method"] == m]
            secs.append(f"{np.mean(vals):.2f}" if vals else "")
        agree = ", ".join(f"{m.removeprefix('brain-')}: {det[(p, m)]}" for m in BRAIN_METHODS if (p, m) in det)
        lines.append(f"| {p} | {pr['n']} | {_f(pr, 'embed_s'):.1f} ({pr['embedded']}) | {_f(pr, 'dataset_s'):.1f} | "
                     + " | ".join(secs) + f" | {agree} | {_f(pr, 'load'):.1f} |")
    return "\n".join(lines) + "\n"


@click.command("bench_fiftyone", help=help_text(__doc__))
@list_option("--pools", default=POOLS, show_default=True, help="DATASET-SHAPE (benchmarks.folders)")
@list_option("--seeds", type=int, default=(0, 1, 2), show_default=True)
@list_option("--multiples", type=int, default=(1, 2), show_default=True, help="budgets, as multiples of K")
@list_option("--methods", type=click.Choice(METHODS), default=METHODS, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="the shared data folder")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True,
              help="dataset folders, pools, the embedding cache and FiftyOne's database")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/fiftyone"),
              show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads [default: torch's]")
@click.option("--summary-only", is_flag=True, help="rewrite summary.md from results.csv and pools.csv")
def cli(pools, seeds, multiples, methods, data_dir, cache_dir, out, threads, summary_only) -> None:

    specs = [parse_pool(p) for p in pools]
    out.mkdir(parents=True, exist_ok=True)
    if summary_only:
        rows, pool_rows = read_rows(out / "results.csv"), read_rows(out / "pools.csv")
        command = (out / "command.txt").read_text(encoding="utf-8").strip()
    else:
        command = command_line()
        rows, pool_rows = measure(specs, seeds, multiples, methods, data_dir, cache_dir, threads, out)
        (out / "command.txt").write_text(command + "\n", encoding="utf-8")
    write_page(out / "summary.md", summarise(rows, pool_rows, command))


def measure(specs, seeds, multiples, methods, data_dir, cache_dir: Path, threads, out: Path
            ) -> tuple[list[dict], list[dict]]:
    """Run every pool; rows are written to ``results.csv`` and ``pools.csv`` as each pool finishes."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    os.environ.setdefault("FIFTYONE_DATABASE_DIR", str((cache_dir / "fiftyone-db").resolve()))
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone as fo
    import fiftyone.brain as fob
    import fiftyone.core.odm.database as fodb

    from selector import Selector, select_embeddings

    fo.config.show_progress_bars = False
    fodb.get_db_conn()  # start the database here, not inside the first pool's timing
    rows: list[dict] = []
    pool_rows: list[dict] = []
    for name, shape in specs:
        pool = f"{name}-{shape}"
        folder, files, labels = pool_folder(dataset_folder(name, cache_dir, data_dir), shape, cache_dir)
        truth = dict(zip(files, labels.tolist()))
        sel = Selector(cache_dir=cache_dir / "selector-cache").fit(folder)
        ids, emb = sel.pool_.ids, sel.embeddings_
        y = np.array([truth[i] for i in ids])
        k = len(np.unique(y))
        t = time.perf_counter()
        dataset = fo.Dataset()
        dataset.add_samples([fo.Sample(filepath=str((folder / i).resolve())) for i in ids])
        dataset_s = time.perf_counter() - t
        base = {"pool": pool, "n": len(ids), "classes": k}
        try:
            for m in [m for m in BRAIN_METHODS if m in methods]:
                t = time.perf_counter()
                scores = brain_scores(fob, dataset, emb, m)
                secs = time.perf_counter() - t
                again = brain_scores(fob, dataset, emb, m)
                for mult in multiples:
                    b = mult * k
                    same = set(top(scores, b).tolist()) == set(top(again, b).tolist())
                    rows.append({**base, "multiple": mult, "budget": b, "method": m, "seed": "",
                                 "covered": covered(y, top(scores, b)), "seconds": secs, "deterministic": same})
        finally:
            dataset.delete()
        for m in [m for m in SELECTOR_METHODS if m in methods]:
            for mult in multiples:
                for seed in seeds:
                    r = select_embeddings(emb, mult * k, None, m, seed)
                    rows.append({**base, "multiple": mult, "budget": mult * k, "method": m, "seed": seed,
                                 "covered": covered(y, r.indices), "seconds": r.seconds, "deterministic": ""})
        pool_rows.append({**base, "embed_s": sel.timings_["embed"], "embedded": sel.n_embedded_,
                          "dataset_s": dataset_s, "threads": torch.get_num_threads(), "load": os.getloadavg()[0]})
        write_csv(rows, out / "results.csv", FIELDS)
        write_csv(pool_rows, out / "pools.csv", POOL_FIELDS)
        mine = [r["covered"] for r in rows if r["pool"] == pool and r["method"] == "typcover" and r["multiple"] == 1]
        print(f"{pool}: K {k}, n {len(ids)}, typcover at B=K covers {np.mean(mine) if mine else float('nan'):.1f}",
              file=sys.stderr, flush=True)
    return rows, pool_rows


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
