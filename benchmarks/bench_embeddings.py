"""Embedding benchmark: which embedding should selection use, decided over every dataset and pool shape
here, never one.

For every dataset x pool shape x candidate embedding, the candidate is fitted on the pool (without its
labels), then scored with the labels:

* ``loo_knn``: leave-one-out kNN accuracy on the pool (k = 20, cosine, votes weighted by exp(cos/0.07):
  :func:`selector.eval.retrain.loo_knn_predict`), and ``loo_knn_bal``, its mean over classes (the
  honest figure on long-tailed pools, where the head class dominates the plain accuracy);
* ``linear``: linear-probe accuracy (:func:`selector.eval.retrain.linear_probe`) trained on the pool's
  labels and tested on a held-out balanced split that no candidate ever sees;
* ``fit_s`` (training, or fitting PCA) and ``embed_s`` (embedding the pool) wall seconds, and the 1-minute
  load average when the row was measured.

Datasets (``--datasets``): ``mnist10k``, ``notmnist10k`` (100 per class held out as the test split),
``cifar10`` (the first 1,000 train images per class of the shared JPEG archive; test: 200 per class of
its test split), ``digits`` (scikit-learn's 1,797 8 px digits; 30 per class held out).

Pool shapes (``--shapes``): ``full`` (every non-test image: 9,000-10,000; 1,497 for digits), ``small``
(a seeded balanced 200 per class, 100 for digits), ``lt100`` (long-tailed, ratio 100, CIFAR-10-LT
profile with the head as large as the classes allow).

Candidates (``--candidates``; ``name`` or ``name:key=value,...``; ``a+b`` concatenates the L2-normalised
blocks of two candidates, so kNN on it averages their cosine similarities):

* ``default``: what ``selector select`` does with no options (through :class:`selector.Selector`);
* ``fallback``: what it does without the ``pretrained`` extra: ``resnet-small`` trained on the pool
  (the product's training rule) with the pixel view;
* ``pca``: PCA of the pixels (``dim=50``), fitted on the pool;
* ``random``: the ``resnet-small`` encoder with random weights (no training);
* ``simclr``: ``resnet-small`` trained on the pool by :func:`selector.train.train_encoder`; keys:
  ``images`` (images seen, default: the product's rule), ``loss``, ``flip`` (0/1), ``crop`` (smallest crop
  scale), ``temp``, ``lr``, ``bs``, ``opt``, ``arch``;
* ``pretrained``: a pretrained backbone, frozen (``name=efficientnet-lite0``, ``size`` input pixels);
* ``finetune``: the pretrained backbone fine-tuned contrastively on the pool (``images``, ``size``, ``lr``).

Results go to ``OUT/results.csv`` (one row per dataset x shape x candidate x seed; a rerun skips rows
already there, so an interrupted run resumes) and ``OUT/summary.md`` (tables per dataset, the command,
and the check of the default against PCA).

Example (the table in benchmarks/results/embeddings/)::

    python -m benchmarks.bench_embeddings --out benchmarks/results/embeddings
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Callable

import click
import numpy as np

from benchmarks.common import (
    DATASETS,
    PRINT_ONLY,
    SHAPES,
    Fitted,
    Split,
    command_line,
    encoder_fitted,
    fit_default,
    fit_pca,
    fit_simclr,
    fit_via_selector,
    help_text,
    list_option,
    load_split,
    pool_indices,
    read_rows,
    run,
    score,
    write_csv,
)
from selector.pixels import unit_rows

log = logging.getLogger("benchmarks.bench_embeddings")

#: The default run, in order: (candidates, pool shapes they run on). The encoders trained from scratch
#: run on the smaller pools only, to keep the run short; the fine-tuned backbone (one epoch at least) runs on
#: every shape, its 10,000-image pools last.
#: ``--candidates`` runs any candidate on every shape.
DEFAULT_PLAN = (
    (("default", "pca", "pretrained", "random"), SHAPES),
    (("simclr",), ("small", "lt100")),
    (("finetune:images=4000",), ("small", "lt100")),
    (("pretrained:size=128+pca", "pretrained:size=160+pca"), ("small", "lt100")),  # the default at larger inputs
    (("fallback",), ("small", "lt100")),
    (("finetune:images=4000",), ("full",)),
)
FIELDS = ("dataset", "shape", "candidate", "seed", "n_pool", "n_test", "dim", "loo_knn", "loo_knn_bal", "linear",
          "linear_bal", "rankme", "uniformity", "fit_s", "embed_s", "load", "note")


# -- candidates ----------------------------------------------------------------------------------

def fit_random(x: np.ndarray, seed: int, device, cache_dir=None, arch: str = "resnet-small") -> Fitted:
    """The encoder architecture with random weights (seeded), frozen."""
    import torch

    from selector.backbones import Encoder, EncoderConfig

    torch.manual_seed(seed)
    enc = Encoder(EncoderConfig(arch=arch, in_channels=int(x.shape[1]), image_size=int(x.shape[2]))).eval()
    return encoder_fitted(enc.to(device), x, device, 0.0, f"{arch} random init")


def fit_pretrained(x: np.ndarray, seed: int, device, cache_dir=None, name: str = "efficientnet-lite0",
                   size: str | None = None) -> Fitted:
    """A pretrained backbone, frozen, through :class:`selector.Selector` (``--backbone NAME``)."""
    kw = {"backbone": name, "backbone_mode": "frozen"}
    if size is not None:
        kw["backbone_size"] = int(size)
    fitted = fit_via_selector(x, seed, device, cache_dir, **kw)
    if size is not None:
        fitted.note += f" at {int(size)} px"
    return fitted


def fit_finetune(x: np.ndarray, seed: int, device, cache_dir=None, name: str = "efficientnet-lite0",
                 images: str = "20000", size: str | None = None, lr: str | None = None,
                 loss: str = "simclr") -> Fitted:
    """The pretrained backbone fine-tuned contrastively on the pool, through :class:`selector.Selector`."""
    kw = {"backbone": name, "backbone_mode": "finetune", "loss": loss}
    n = int(x.shape[0])
    kw["epochs"] = max(1, int(round(float(images) / max(1, n))))
    if size is not None:
        kw["image_size"] = int(size)
    fitted = fit_via_selector(x, seed, device, cache_dir, **kw)
    fitted.note = f"{name} fine-tuned ({loss}, {kw['epochs']} epochs)"
    return fitted


def fit_fallback(x: np.ndarray, seed: int, device, cache_dir=None) -> Fitted:
    """What ``selector select`` does with no options when the ``pretrained`` extra is not installed
    (:func:`selector.encoding.choose_backbone`): resnet-small trained on the pool, with the pixel view."""
    from selector.encoding import choose_backbone

    name, _, _ = choose_backbone(int(x.shape[1]), int(x.shape[2]), int(x.shape[0]), installed=False)
    return fit_via_selector(x, seed, device, cache_dir, backbone=name, pixel_view=True)


CANDIDATES: dict[str, Callable[..., Fitted]] = {
    "default": fit_default,
    "fallback": fit_fallback,
    "pca": fit_pca,
    "random": fit_random,
    "simclr": fit_simclr,
    "pretrained": fit_pretrained,
    "finetune": fit_finetune,
}


def parse_candidate(spec: str) -> list[tuple[str, dict]]:
    """``"simclr:flip=0,temp=0.5+pca"`` -> ``[("simclr", {"flip": "0", "temp": "0.5"}), ("pca", {})]``."""
    parts = []
    for part in spec.split("+"):
        name, _, rest = part.partition(":")
        if name not in CANDIDATES:
            raise ValueError(f"unknown candidate {name!r} in {spec!r}; choose from {', '.join(CANDIDATES)}")
        kw = {}
        for item in filter(None, rest.split(",")):
            k, eq, v = item.partition("=")
            if not eq:
                raise ValueError(f"candidate {spec!r}: expected key=value, got {item!r}")
            kw[k] = v
        parts.append((name, kw))
    return parts


def fit_candidate(spec: str, x: np.ndarray, seed: int, device, cache_dir=None) -> Fitted:
    """Fit every part of ``spec`` on ``x``; several parts are concatenated as unit blocks."""
    fitted = [CANDIDATES[name](x, seed, device, cache_dir, **kw) for name, kw in parse_candidate(spec)]
    if len(fitted) == 1:
        return fitted[0]

    from selector.pixels import concat_views

    def transform(z: np.ndarray) -> np.ndarray:
        return concat_views(*(f.transform(z) for f in fitted))

    return Fitted(concat_views(*(f.pool_emb for f in fitted)), transform, sum(f.fit_s for f in fitted),
                  sum(f.embed_s for f in fitted), " + ".join(f.note for f in fitted))


# -- scoring -------------------------------------------------------------------------------------

def rankme(emb: np.ndarray, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al., ICML 2023): exp of the entropy of the normalised singular values of the
    (n, d) embedding (rows L2-normalised): its effective rank, between 1 and min(n, d)."""
    s = np.linalg.svd(unit_rows(emb).astype(np.float64), compute_uv=False)
    p = s / (s.sum() + eps) + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def uniformity(emb: np.ndarray, seed: int = 0, pairs: int = 20_000, t: float = 2.0) -> float:
    """Uniformity (Wang & Isola, ICML 2020): log E exp(-t |z_i - z_j|^2) over random pairs of
    L2-normalised rows (lower is more uniform); sampled pairs, never an n x n matrix."""
    z = unit_rows(emb).astype(np.float64)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, z.shape[0], pairs)
    j = rng.integers(0, z.shape[0], pairs)
    keep = i != j
    d2 = ((z[i[keep]] - z[j[keep]]) ** 2).sum(axis=1)
    return float(np.log(np.mean(np.exp(-t * d2))))


def run_cell(split: Split, shape: str, spec: str, seed: int, device, k: int = 20, cache_dir=None) -> dict:
    idx = pool_indices(split, shape, seed)
    x, y = split.x[idx], split.y[idx]
    log.info("%s/%s/%s: fitting on %d images", split.name, shape, spec, x.shape[0])
    fitted = fit_candidate(spec, x, seed, device, cache_dir)
    test_emb = fitted.transform(split.x_test)
    row = {"dataset": split.name, "shape": shape, "candidate": spec, "seed": seed, "n_pool": int(x.shape[0]),
           "n_test": int(split.x_test.shape[0]), "dim": int(fitted.pool_emb.shape[1]),
           **score(fitted.pool_emb, y, test_emb, split.y_test, k=k, seed=seed),
           "rankme": rankme(fitted.pool_emb), "uniformity": uniformity(fitted.pool_emb, seed),
           "fit_s": fitted.fit_s, "embed_s": fitted.embed_s, "load": os.getloadavg()[0], "note": fitted.note}
    log.info("%s/%s/%s: LOO kNN %.4f (balanced %.4f), linear %.4f, fit %.1f s", split.name, shape, spec,
             row["loo_knn"], row["loo_knn_bal"], row["linear"], row["fit_s"])
    return row


# -- output --------------------------------------------------------------------------------------

def _pct(v) -> str:
    try:
        return f"{100 * float(v):.1f}"
    except (TypeError, ValueError):
        return "–"


def _sec(v) -> str:
    try:
        return f"{float(v):.0f}"
    except (TypeError, ValueError):
        return "–"


def _mean_rows(rows: list[dict]) -> dict[tuple[str, str, str], dict]:
    """Mean over seeds per (dataset, shape, candidate)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["shape"], r["candidate"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        m = {"n": len(rs), "n_pool": rs[0]["n_pool"], "note": rs[0].get("note", "")}
        for f in ("loo_knn", "loo_knn_bal", "linear", "linear_bal", "fit_s", "embed_s", "load"):
            vals = [float(r[f]) for r in rs if r.get(f) not in (None, "")]
            m[f] = float(np.mean(vals)) if vals else float("nan")
        out[key] = m
    return out


def default_check(rows: list[dict], baseline: str = "pca", margin_cifar: float = 0.05,
                  candidate: str = "default") -> list[str]:
    """Lines saying, per dataset and shape, whether ``candidate`` is at least ``baseline`` in LOO kNN
    accuracy (plain and class-balanced), and at least ``margin_cifar`` above it on CIFAR-10."""
    means = _mean_rows(rows)
    lines = []
    for (ds, shape, cand), m in sorted(means.items()):
        if cand != candidate or (ds, shape, baseline) not in means:
            continue
        b = means[(ds, shape, baseline)]
        need = margin_cifar if ds == "cifar10" else 0.0
        ok = m["loo_knn"] >= b["loo_knn"] + need and m["loo_knn_bal"] >= b["loo_knn_bal"] + need
        best_cand, best = max(((c, v["loo_knn"]) for (d, sh, c), v in means.items() if (d, sh) == (ds, shape)),
                              key=lambda cv: cv[1])
        lines.append(f"| {ds} | {shape} | {_pct(m['loo_knn'])} / {_pct(m['loo_knn_bal'])} | "
                     f"{_pct(b['loo_knn'])} / {_pct(b['loo_knn_bal'])} | {'+' if need else '>='}{_pct(need)} | "
                     f"{'yes' if ok else '**no**'} | `{best_cand}` {_pct(best)} ({_pct(m['loo_knn'] - best)}) |")
    return lines


def signal_study(rows: list[dict], signals=("rankme", "uniformity")) -> list[str]:
    """Does an unsupervised signal rank the candidates of a (dataset, shape) cell as LOO kNN does?

    Per signal: the mean Spearman correlation with LOO kNN accuracy over cells with at least three
    candidates (uniformity is negated: lower is more uniform), and in how many cells the signal's
    best candidate is also the most accurate one."""
    from scipy.stats import spearmanr

    means = _mean_rows(rows)
    cells: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for (ds, shape, cand), m in means.items():
        cells.setdefault((ds, shape), []).append((cand, m))
    sig_means: dict[tuple[str, str, str], dict] = {}
    for r in rows:
        sig_means.setdefault((r["dataset"], r["shape"], r["candidate"]), {})
        for s_ in signals:
            if r.get(s_) not in (None, ""):
                sig_means[(r["dataset"], r["shape"], r["candidate"])].setdefault(s_, []).append(float(r[s_]))
    lines = []
    for s_ in signals:
        rhos, hits, n = [], 0, 0
        for (ds, shape), cs in cells.items():
            vals = [(np.mean(sig_means[(ds, shape, c)].get(s_, [np.nan])), m["loo_knn"]) for c, m in cs]
            vals = [(v if s_ != "uniformity" else -v, a) for v, a in vals if np.isfinite(v)]
            if len(vals) < 3:
                continue
            sv, acc = np.array(vals).T
            rhos.append(spearmanr(sv, acc).statistic)
            hits += int(np.argmax(sv) == np.argmax(acc))
            n += 1
        if n:
            lines.append(f"| {s_} | {n} | {np.nanmean(rhos):+.2f} | {hits} of {n} |")
    return lines


def summary_markdown(rows: list[dict], command: str) -> str:
    means = _mean_rows(rows)
    out = ["# Embedding benchmark", "", "Produced by (from the repository root):", "", "```", command, "```", "",
           "LOO kNN: leave-one-out kNN accuracy on the pool (k = 20), plain / mean over classes. Linear: linear probe "
           "trained on the pool's labels, accuracy on the held-out balanced test split. fit: training (or PCA) wall "
           "seconds; embed: embedding the pool; load: 1-minute load average when measured "
           "(times under load are upper bounds). Means over seeds (n).", ""]
    for ds in sorted({k[0] for k in means}):
        out += [f"## {ds}", "",
                "| shape | n pool | candidate | LOO kNN | LOO kNN (bal.) | linear | fit s | embed s | load | n "
                "| what |",
                "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for (d, shape, cand), m in sorted(
                means.items(), key=lambda kv: (SHAPES.index(kv[0][1]) if kv[0][1] in SHAPES else 9, kv[0][2])):
            if d != ds:
                continue
            out.append(f"| {shape} | {m['n_pool']} | `{cand}` | {_pct(m['loo_knn'])} | {_pct(m['loo_knn_bal'])} | "
                       f"{_pct(m['linear'])} | {_sec(m['fit_s'])} | {_sec(m['embed_s'])} | "
                       f"{m['load']:.1f} | {m['n']} | {m['note']} |")
        out.append("")
    check = default_check(rows)
    if check:
        out += ["## The default against PCA-50 of the pixels", "",
                "| dataset | shape | default LOO kNN (plain / bal.) | PCA | needed | holds "
                "| best candidate (default's gap) |",
                "| --- | --- | ---: | ---: | ---: | --- | --- |",
                *check, ""]
    check = default_check(rows, candidate="fallback")
    if check:
        out += ["## Without the pretrained extra: the fallback against PCA-50 of the pixels", "",
                "`pip install selector` without `[pretrained]` embeds with `fallback` (resnet-small trained on the "
                "pool, with the pixel view); the same check.", "",
                "| dataset | shape | fallback LOO kNN (plain / bal.) | PCA | needed | holds "
                "| best candidate (fallback's gap) |",
                "| --- | --- | ---: | ---: | ---: | --- | --- |",
                *check, ""]
    have = {(r["dataset"], r["shape"], r["candidate"]) for r in rows}
    datasets = sorted({r["dataset"] for r in rows})
    missing = [f"`{c}` on {ds}/{sh}" for cands, shapes in DEFAULT_PLAN for ds in datasets for sh in shapes
               for c in cands if (ds, sh, c) not in have]
    if missing:
        out += ["## Cells of the default plan not measured yet", "",
                "The run was stopped before these cells (rerunning the command computes only them): "
                + ", ".join(missing) + ".", ""]
    study = signal_study(rows)
    if study:
        out += ["## Unsupervised signals of embedding quality", "",
                "Does a label-free signal rank the candidates of a cell (dataset x shape) as their LOO kNN accuracy "
                "does? RankMe: effective rank of the embedding (Garrido et al., 2023); uniformity "
                "(Wang & Isola, 2020), negated. Spearman correlation averaged over cells with three or more "
                "candidates.", "",
                "| signal | cells | mean Spearman with LOO kNN | best candidate agrees |",
                "| --- | ---: | ---: | ---: |",
                *study, ""]
    return "\n".join(out)


# -- main ----------------------------------------------------------------------------------------

@click.command("bench_embeddings", help=help_text(__doc__))
@list_option("--datasets", default=DATASETS, type=click.Choice(DATASETS), show_default=True)
@list_option("--shapes", default=SHAPES, type=click.Choice(SHAPES), show_default=True)
@list_option("--candidates", help="candidate specs: name or name:key=value,...; a+b concatenates "
                                  "(default: the plan in DEFAULT_PLAN)")
@click.option("--seeds", type=int, default=1, show_default=True, help="seeds 0..N-1 per cell")
@click.option("--k", type=int, default=20, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="shared data folder (default ../shared/data)")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True,
              help="decoded CIFAR-10 arrays")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="folder for results.csv and summary.md")
@click.option("--redo", is_flag=True, help="recompute rows already in OUT/results.csv")
@click.option("--summary-only", is_flag=True, help="rewrite summary.md from results.csv")
@click.option("-v", "--verbose", is_flag=True)
def cli(datasets, shapes, candidates, seeds, k, device, threads, data_dir, cache_dir, out, redo, summary_only,
        verbose) -> int:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    command = command_line(PRINT_ONLY)
    csv_path = out / "results.csv"
    rows = read_rows(csv_path)
    if not summary_only:
        import torch

        from selector.device import resolve_device

        if threads:
            torch.set_num_threads(threads)
        dev = resolve_device(device)
        plan = DEFAULT_PLAN if not candidates else ((tuple(candidates), SHAPES),)
        for cands, _ in plan:
            for spec in cands:
                parse_candidate(spec)  # fail before any work
        done = {(r["dataset"], r["shape"], r["candidate"], str(r["seed"])) for r in rows}
        splits: dict[str, Split] = {}
        for cands, plan_shapes in plan:
            for ds in datasets:
                if ds not in splits:
                    splits[ds] = load_split(ds, data_dir, cache_dir)
                split = splits[ds]
                for shape, spec in [(sh, c) for sh in shapes if sh in plan_shapes for c in cands]:
                    for seed in range(seeds):
                        key = (ds, shape, spec, str(seed))
                        if key in done and not redo:
                            continue
                        row = run_cell(split, shape, spec, seed, dev, k=k, cache_dir=cache_dir / "selector-cache")
                        rows = [r for r in rows if (r["dataset"], r["shape"], r["candidate"], str(r["seed"])) != key]
                        rows.append(row)
                        write_csv(rows, csv_path, FIELDS)  # after every cell: an interrupted run resumes
                        print(f"{ds}/{shape}/{spec} seed {seed}: LOO kNN {row['loo_knn']:.4f} "
                              f"(bal. {row['loo_knn_bal']:.4f}), linear {row['linear']:.4f}, "
                              f"fit {row['fit_s']:.0f} s, embed {row['embed_s']:.0f} s", flush=True)
    from selector.atomic import atomic_write

    rows = read_rows(csv_path)
    with atomic_write(out / "summary.md", "w") as f:
        f.write(summary_markdown(rows, command) + "\n")
    print(f"wrote {csv_path} and {out / 'summary.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv)


if __name__ == "__main__":
    sys.exit(main())
