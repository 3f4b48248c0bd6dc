"""Which embedding the default uses: frozen pretrained backbones, input sides and the pixel view, on folders of
real files read exactly as ``selector select --pool`` reads a user's folder (:mod:`benchmarks.folders`: photos at
their own sizes, their grayscale copies, and grayscale glyphs), in the full, small and long-tailed shapes.

Each candidate is a :class:`selector.Selector` fitted on the pool folder (the product's code path: listing,
digests, decoding at the side the backbone needs, the content-keyed cache), except ``today``, the previous
release's default, rebuilt from the same library pieces: the pool decoded whole at its own small side (64 px for
photos), EfficientNet-Lite0 at 96 px in float32, plus the pixel view. Scores: leave-one-out kNN accuracy (k = 20,
cosine) on the pool, plain and class-balanced; the embedding's seconds and images per second where it ran (not
from the cache). Candidates (``--candidates``):

* ``today``; ``auto`` (the product's default as it stands: ``selector select``'s embedding);
* ``<backbone>@<side>[+pv][:fp32]``: a backbone (``lite0`` for ``efficientnet-lite0``, ...) at an input side, with
  the pixel view, in float32 instead of the precision ``auto`` picks (bfloat16 where the CPU runs it natively).

Rows are appended to ``results.csv`` as they finish (a rerun skips the rows it has); ``summary.md`` is written from
all rows: per dataset and shape the candidates' scores, the default against today's and against the best
candidate, the float32 parity check, and the speed.

    python -m benchmarks.bench_backbones --out benchmarks/results/backbones
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import (
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

FIELDS = ("dataset", "kind", "shape", "n", "classes", "candidate", "knn", "knn_balanced", "embed_s", "embedded",
          "img_per_s", "threads", "load")
CANDIDATES = ("today", "auto", "lite0@96+pv", "lite0@160", "lite0@224", "lite0@224+pv", "lite1@240", "lite2@260",
              "lite0@224:fp32", "lite0@96+pv:fp32")
ALIASES = {"lite0": "efficientnet-lite0", "lite1": "efficientnet-lite1", "lite2": "efficientnet-lite2"}


def parse_candidate(spec: str) -> dict:
    """``lite0@224+pv:fp32`` -> Selector keywords; ``auto`` -> {} (the defaults)."""
    if spec == "auto":
        return {}
    body, _, precision = spec.partition(":")
    body, plus, view = body.partition("+")
    name, at, side = body.partition("@")
    if not at or (plus and view != "pv") or precision not in ("", "fp32"):
        raise click.BadParameter(f"candidate {spec!r}: expected BACKBONE@SIDE[+pv][:fp32], auto or today")
    return {"backbone": ALIASES.get(name, name), "backbone_size": int(side), "pixel_view": bool(plus),
            "precision": "float32" if precision else "auto"}


def fit_today(folder: Path, cache_dir: Path, device) -> tuple[list[str], np.ndarray, float, int]:
    """The previous default's embedding of a pool folder: (ids, embedding, seconds, images embedded)."""
    from selector.backbones import Encoder
    from selector.embed import embed_pool
    from selector.encoding import encoder_config
    from selector.pixels import PixelPCA, concat_views
    from selector.pool import load_pool

    p = load_pool(folder)  # decoded whole at the pool's own side (choose_size: 64 px for photos)
    t = time.perf_counter()
    enc = Encoder(encoder_config("efficientnet-lite0", p.channels, p.size, "frozen", size=96)).eval()
    emb, n, _ = embed_pool(p.images, p.digests, enc, device, cache_dir=cache_dir, precision="float32")
    emb = concat_views(emb, PixelPCA().fit(p.images, seed=0).transform(p.images))
    return p.ids, emb, time.perf_counter() - t, n


def fit_candidate(spec: str, folder: Path, cache_dir: Path, device) -> tuple[list[str], np.ndarray, float, int]:
    if spec == "today":
        return fit_today(folder, cache_dir, device)
    from selector import Selector

    sel = Selector(cache_dir=cache_dir, device=device, **parse_candidate(spec)).fit(folder)
    return sel.pool_.ids, sel.embeddings_, sel.timings_["embed"], sel.n_embedded_


def scores(emb: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(leave-one-out kNN accuracy, class-balanced), k = 20, in percent."""
    from selector.eval.metrics import accuracy, balanced_accuracy
    from selector.eval.retrain import loo_knn_predict

    pred = loo_knn_predict(emb, y, k=20)
    return 100 * accuracy(y, pred), 100 * balanced_accuracy(y, pred)


def _f(row, key):
    return float(row[key]) if row.get(key) not in (None, "") else float("nan")


def summarise(rows: list[dict], commands: list[str], default: str = "auto") -> str:
    """The summary page from the result rows and the commands that made them."""
    by = {(r["dataset"], r["shape"], r["candidate"]): r for r in rows}
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    cands = [c for c in ("today", default) + CANDIDATES if any(r["candidate"] == c for r in rows)]
    cands = list(dict.fromkeys(cands))
    lines = ["# Frozen backbones on folders of real files", "", "Commands (each run appends its rows to results.csv; "
             "`--summary-only` rewrites this page):", "", *["    " + c for c in commands], "",
             "Leave-one-out kNN accuracy (k = 20) on each pool, in percent (class-balanced in brackets). `today`: "
             "the previous default (pool decoded at 64 px for photos, EfficientNet-Lite0 at 96 px, float32, pixel "
             "view); `auto`: the product's default; `@S`: input side; `+pv`: with the pixel view; `:fp32`: "
             "float32 (the others run in bfloat16 where the CPU has it).", ""]
    for shape in SHAPES:
        present = [d for d in datasets if any(k[0] == d and k[1] == shape for k in by)]
        if not present:
            continue
        lines += [f"## Shape `{shape}`", "", "| candidate | " + " | ".join(present) + " |",
                  "|---|" + "---|" * len(present)]
        for c in cands:
            cells = []
            for d in present:
                r = by.get((d, shape, c))
                cells.append("" if r is None else f"{_f(r, 'knn'):.1f} ({_f(r, 'knn_balanced'):.1f})")
            lines.append(f"| `{c}` | " + " | ".join(cells) + " |")
        sizes = [by.get((d, shape, "today")) or next(r for k, r in by.items() if k[:2] == (d, shape))
                 for d in present]
        lines += ["| images, classes | " + " | ".join(f"{r['n']}, {r['classes']}" for r in sizes) + " |", ""]
    lines += ["## The default against today's and against the best candidate", "",
              "Per dataset and shape: the default's kNN accuracy, the gap to today's default, and the gap to the best "
              "candidate measured (negative: behind).", "",
              "| dataset | kind | shape | default | vs today | vs best (best) |", "|---|---|---|---|---|---|"]
    for d in datasets:
        for shape in SHAPES:
            mine = by.get((d, shape, default))
            if mine is None:
                continue
            here = {c: _f(r, "knn") for (dd, ss, c), r in by.items() if (dd, ss) == (d, shape)}
            best_c = max(here, key=here.get)
            today = here.get("today", float("nan"))
            lines.append(f"| {d} | {mine['kind']} | {shape} | {here[default]:.1f} | {here[default] - today:+.1f} | "
                         f"{here[default] - here[best_c]:+.1f} (`{best_c}` {here[best_c]:.1f}) |")
    lines += ["", "## float32 against bfloat16", "", "| pair | dataset | shape | bfloat16 | float32 | difference |",
              "|---|---|---|---|---|---|"]
    for fp in [c for c in cands if c.endswith(":fp32")]:
        bf = fp[: -len(":fp32")]
        for (d, shape, c), r in sorted(by.items()):
            if c == fp and (d, shape, bf) in by:
                a, b = _f(by[(d, shape, bf)], "knn"), _f(r, "knn")
                lines.append(f"| `{bf}` | {d} | {shape} | {a:.2f} | {b:.2f} | {a - b:+.2f} |")
    lines += ["", "## Speed", "", "Images per second of the embedding where it ran (not from the cache), on the "
              "full pools: each candidate's median over the datasets, with the machine's load average beside it "
              "(the rows ran one after another on this machine; `benchmarks/results/inference` times the paths "
              "side by side).", "", "| candidate | img/s (median) | datasets | load (median) |", "|---|---|---|---|"]
    for c in cands:
        rs = [r for r in rows if r["candidate"] == c and r["shape"] == "full" and _f(r, "embedded") > 0]
        if rs:
            lines.append(f"| `{c}` | {np.median([_f(r, 'img_per_s') for r in rs]):.0f} | {len(rs)} | "
                         f"{np.median([_f(r, 'load') for r in rs]):.1f} |")
    return "\n".join(lines) + "\n"


@click.command("bench_backbones", help=help_text(__doc__))
@list_option("--datasets", default=DATASETS, type=click.Choice(DATASETS), show_default=True)
@list_option("--shapes", default=SHAPES, type=click.Choice(SHAPES), show_default=True)
@list_option("--candidates", default=CANDIDATES, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="the shared data folder")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True,
              help="dataset folders, pools and the embedding cache")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/backbones"),
              show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads [default: torch's]")
@click.option("--device", default="cpu", show_default=True)
@click.option("--summary-only", is_flag=True, help="rewrite summary.md from results.csv")
@click.option("--redo", is_flag=True,
              help="recompute the rows of these datasets, shapes and candidates (after the default changed)")
def cli(datasets, shapes, candidates, data_dir, cache_dir, out, threads, device, summary_only, redo) -> None:
    import torch


    for c in candidates:
        if c != "today":
            parse_candidate(c)
    if threads:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "results.csv"
    rows = read_rows(csv_path) if csv_path.exists() else []
    if redo and not summary_only:
        rows = [r for r in rows if not (r["dataset"] in datasets and r["shape"] in shapes
                                        and r["candidate"] in candidates)]
    done = {(r["dataset"], r["shape"], r["candidate"]) for r in rows}
    if not summary_only:
        record_command(out, command_line())
        emb_cache = cache_dir / "selector-cache"
        for name in datasets:
            ds = dataset_folder(name, cache_dir, data_dir)
            for shape in [s for s in SHAPES if s in shapes]:  # full first: the other shapes reuse its cache
                if shape == "lt100" and name.startswith("caltech101"):
                    continue
                folder, files, labels = pool_folder(ds, shape, cache_dir)
                truth = dict(zip(files, labels.tolist()))
                for cand in candidates:
                    if (name, shape, cand) in done:
                        continue
                    ids, emb, secs, n_run = fit_candidate(cand, folder, emb_cache, device)
                    y = np.array([truth[i] for i in ids])
                    knn, bal = scores(emb, y)
                    rows.append({"dataset": name, "kind": ds.kind, "shape": shape, "n": len(ids),
                                 "classes": len(np.unique(y)), "candidate": cand, "knn": knn, "knn_balanced": bal,
                                 "embed_s": secs, "embedded": n_run, "img_per_s": n_run / secs if n_run else "",
                                 "threads": torch.get_num_threads(), "load": os.getloadavg()[0]})
                    write_csv(rows, csv_path, FIELDS)
                    print(f"{name} {shape} {cand}: kNN {knn:.1f} ({bal:.1f}), {n_run} embedded in {secs:.0f} s",
                          file=sys.stderr, flush=True)
    commands = recorded_commands(out)
    write_page(out / "summary.md", summarise(rows, [c for c in commands if c]))


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
