"""Write the evaluation table: tidy CSV, markdown summary (mean ± std over seeds) and PNG plots.

All writers are atomic (:func:`selector.atomic.atomic_write`): a reader sees the old file or the
whole new one. Plots use matplotlib's object API (``matplotlib.figure.Figure``, rendered by Agg),
so no GUI backend and no global pyplot state are touched.
"""
from __future__ import annotations

import csv
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from selector.atomic import atomic_write

from .metrics import parse_counts

#: Metrics shown in the markdown summary by default.
DEFAULT_METRICS = ("accuracy", "balanced_accuracy", "classes_covered", "expected_random_coverage",
                   "normalised_entropy", "imbalance_ratio", "balancedness_pv", "selection_seconds")

#: Columns that identify a setting; rows that agree on all of them differ only by seed.
GROUP_KEYS = ("dataset", "pool", "retrainer", "strategy", "budget_per_round", "round", "budget")

#: Columns that identify one table / one plot panel.
SECTION_KEYS = ("dataset", "pool", "retrainer")


# ----------------------------------------------------------------------------------------- CSV
def _columns(rows: Sequence[dict]) -> list[str]:
    cols: list[str] = []
    seen = set()
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return repr(float(v))  # shortest round-trip form; inf -> 'inf'
    return str(v)


def write_csv(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """Write rows (dicts) as a CSV with a header (union of keys, first-seen order). None -> empty."""
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = _columns(rows)
    with atomic_write(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in cols])
    return path


def _parse(s: str):
    if s == "":
        return None
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Read a CSV written by :func:`write_csv` back into rows (ints, floats, None, strings)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]


# ------------------------------------------------------------------------------------- summary
def _group(rows: Iterable[dict], keys: Sequence[str]) -> "OrderedDict[tuple, list[dict]]":
    out: OrderedDict[tuple, list[dict]] = OrderedDict()
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def _stats(values: list) -> tuple[float, float, int, int]:
    """(mean, std, n_finite, n_inf) of the non-missing values; std is the sample std (ddof=1)."""
    v = np.array([float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))],
                 dtype=np.float64)
    finite = v[np.isfinite(v)]
    n_inf = int(v.size - finite.size)
    if finite.size == 0:
        return math.nan, math.nan, 0, n_inf
    same = finite.size < 2 or finite.max() == finite.min()  # no float noise for constant values
    std = 0.0 if same else float(finite.std(ddof=1))
    return float(finite.mean()), std, int(finite.size), n_inf


def summarise(rows: Sequence[dict], metrics: Sequence[str] = DEFAULT_METRICS,
              group_keys: Sequence[str] = GROUP_KEYS) -> list[dict]:
    """Aggregate over seeds: one dict per setting with ``<metric>_mean``, ``<metric>_std``,
    ``<metric>_n_inf`` (runs where the metric was infinite, left out of mean/std) and ``n_seeds``."""
    out = []
    for key, grp in _group(rows, group_keys).items():
        d = dict(zip(group_keys, key))
        d["n_seeds"] = len({r.get("seed") for r in grp})
        for m in metrics:
            mean, std, _, n_inf = _stats([r.get(m) for r in grp])
            d[f"{m}_mean"], d[f"{m}_std"], d[f"{m}_n_inf"] = mean, std, n_inf
        out.append(d)
    return out


def _fmt(mean: float, std: float, n_inf: int, n: int) -> str:
    if n_inf == n and n > 0:
        return "inf"
    if math.isnan(mean):
        return "–"
    s = f"{mean:.3g} ± {std:.2g}"
    return s + (f" (inf in {n_inf}/{n})" if n_inf else "")


def markdown_table(rows: Sequence[dict], metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """Markdown: one section per (dataset, pool, retrainer), rows strategy x budget (and round when
    there are several), cells ``mean ± std`` over seeds. An infinite imbalance ratio (a class never
    chosen) is left out of the mean and counted: ``2.1 ± 0.3 (inf in 2/5)``."""
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to summarise")
    lines = []
    for sec, srows in _group(rows, SECTION_KEYS).items():
        dataset, pool, retr = sec
        multi_round = len({r.get("round") for r in srows}) > 1
        lines.append(f"### {dataset} — pool `{pool}` — retrainer `{retr}`")
        lines.append("")
        head = ["strategy", "budget"] + (["per round", "round"] if multi_round else []) + ["seeds"] + list(metrics)
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---" for _ in head) + "|")
        groups = _group(srows, GROUP_KEYS)
        order = sorted(groups.items(), key=lambda kv: (
            [s for s in dict.fromkeys(r["strategy"] for r in srows)].index(kv[1][0]["strategy"]),
            kv[1][0]["budget_per_round"], kv[1][0]["round"]))
        for _, grp in order:
            r0 = grp[0]
            cells = [str(r0["strategy"]), str(r0["budget"])]
            if multi_round:
                cells += [str(r0["budget_per_round"]), str(r0["round"])]
            cells.append(str(len({r.get("seed") for r in grp})))
            for m in metrics:
                vals = [r.get(m) for r in grp]
                mean, std, n_fin, n_inf = _stats(vals)
                cells.append(_fmt(mean, std, n_inf, n_fin + n_inf))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_markdown(rows: Sequence[dict], path: str | os.PathLike,
                   metrics: Sequence[str] = DEFAULT_METRICS, title: str | None = None) -> Path:
    """Write :func:`markdown_table` (with an optional ``# title``) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# {title}\n\n" if title else "") + markdown_table(rows, metrics)
    with atomic_write(path, "w") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------------------- plots
def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    return path


def _figure(n_panels: int, width: float = 5.0, height: float = 3.8):
    from matplotlib.figure import Figure

    cols = min(n_panels, 3)
    nrows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(width * cols, height * nrows), layout="constrained")
    axes = [fig.add_subplot(nrows, cols, i + 1) for i in range(n_panels)]
    return fig, axes


def plot_metric_vs_budget(rows: Sequence[dict], path: str | os.PathLike, metric: str = "accuracy") -> Path:
    """PNG: ``metric`` (mean over seeds, band = ± std) against the number of labeled items, one line
    per strategy (per strategy and per-round budget in multi-round runs), one panel per
    (dataset, pool, retrainer). For ``classes_covered`` the expected coverage of uniform random
    draws is drawn as a dashed black line."""
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to plot")
    sections = _group(rows, SECTION_KEYS)
    fig, axes = _figure(len(sections))
    for ax, (sec, srows) in zip(axes, sections.items()):
        multi_b = len({r["budget_per_round"] for r in srows}) > 1 and len({r["round"] for r in srows}) > 1
        line_keys = ("strategy", "budget_per_round") if multi_b else ("strategy",)
        for lk, lrows in _group(srows, line_keys).items():
            pts = _group(lrows, ("budget",))
            xs = np.array(sorted(k[0] for k in pts), dtype=float)
            stats = [_stats([r.get(metric) for r in pts[(int(b),)]]) for b in xs]
            mean = np.array([s[0] for s in stats])
            std = np.array([s[1] for s in stats])
            label = lk[0] if not multi_b else f"{lk[0]} ({lk[1]}/round)"
            (line,) = ax.plot(xs, mean, marker="o", ms=3, label=label)
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
        if metric == "classes_covered":
            ref = _group(srows, ("budget",))
            xs = np.array(sorted(k[0] for k in ref), dtype=float)
            ax.plot(xs, [ref[(int(b),)][0]["expected_random_coverage"] for b in xs], "k--", lw=1,
                    label="E[random]")
        ax.set_xlabel("labeled items")
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"{sec[0]} · {sec[1]} · {sec[2]}", fontsize=9)
        all_b = sorted({int(r["budget"]) for r in srows})
        if len(all_b) > 1 and all_b[0] > 0:
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.set_xticks(all_b if len(all_b) <= 12 else all_b[:: math.ceil(len(all_b) / 12)])
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_accuracy_vs_budget(rows: Sequence[dict], path: str | os.PathLike) -> Path:
    """PNG of accuracy against the number of labeled items (see :func:`plot_metric_vs_budget`)."""
    return plot_metric_vs_budget(rows, path, "accuracy")


def plot_label_histograms(rows: Sequence[dict], path: str | os.PathLike, budget: int,
                          pool: str | None = None, dataset: str | None = None) -> Path:
    """PNG: per strategy, how many items of each class were labeled at ``budget`` (cumulative),
    bars = mean over seeds, whiskers = ± std; black dots = the expectation under uniform random
    selection (pool share x budget). Needs one (dataset, pool) among the matching rows: pass
    ``pool`` / ``dataset`` when the table holds several. Retrainer is irrelevant to the labels; the
    first retrainer's rows are used."""
    sel = [r for r in rows if int(r["budget"]) == int(budget)
           and (pool is None or r["pool"] == pool) and (dataset is None or r["dataset"] == dataset)]
    if not sel:
        raise ValueError(f"no rows with budget {budget}" + (f" and pool {pool!r}" if pool else ""))
    secs = list(dict.fromkeys((r["dataset"], r["pool"]) for r in sel))
    if len(secs) > 1:
        raise ValueError(f"rows hold several (dataset, pool) pairs {secs}; pass pool= and dataset=")
    first_retr = sel[0]["retrainer"]
    sel = [r for r in sel if r["retrainer"] == first_retr]
    by_strategy = _group(sel, ("strategy", "budget_per_round"))
    fig, axes = _figure(len(by_strategy), width=4.2, height=3.2)
    pool_counts = parse_counts(sel[0]["pool_label_counts"])
    classes = sorted(pool_counts)
    n_pool = sum(pool_counts.values())
    expect = np.array([pool_counts[c] / n_pool * budget for c in classes])
    pos = np.arange(len(classes))
    for ax, ((strategy, bpr), grp) in zip(axes, by_strategy.items()):
        mat = np.array([[parse_counts(r["label_counts"]).get(c, 0) for c in classes] for r in grp], dtype=float)
        std = mat.std(axis=0, ddof=1) if mat.shape[0] > 1 else np.zeros(len(classes))
        ax.bar(pos, mat.mean(axis=0), yerr=std, capsize=2, color="tab:blue", alpha=0.8,
               error_kw={"ecolor": "0.35"})
        ax.scatter(pos, expect, marker="D", s=14, color="tab:orange", zorder=3, label="random (expected)")
        ax.set_xticks(pos)
        ax.set_xticklabels([str(c) for c in classes], fontsize=7)
        title = strategy if bpr == budget else f"{strategy} ({bpr}/round)"
        ax.set_title(f"{title} · {len(grp)} seeds", fontsize=9)
        ax.set_xlabel("class")
        ax.set_ylabel("labeled items")
        ax.legend(fontsize=7)
    fig.suptitle(f"{secs[0][0]} · pool {secs[0][1]} · budget {budget}", fontsize=10)
    return _save(fig, path)


def write_report(rows: Sequence[dict], out_dir: str | os.PathLike, histogram_budget: int | None = None,
                 title: str | None = None) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.md``, ``accuracy.png``, ``coverage.png`` and (for the
    largest budget unless ``histogram_budget`` is given) ``labels_<pool>_b<budget>.png`` per
    (dataset, pool) into ``out_dir``. Returns name -> path."""
    rows = list(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": write_csv(rows, out / "results.csv"),
        "markdown": write_markdown(rows, out / "summary.md", title=title),
        "accuracy": plot_accuracy_vs_budget(rows, out / "accuracy.png"),
        "coverage": plot_metric_vs_budget(rows, out / "coverage.png", "classes_covered"),
    }
    for ds, pool in dict.fromkeys((r["dataset"], r["pool"]) for r in rows):
        prow = [r for r in rows if r["dataset"] == ds and r["pool"] == pool]
        b = int(histogram_budget) if histogram_budget is not None else max(int(r["budget"]) for r in prow)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{ds}_{pool}")
        paths[f"labels:{ds}:{pool}"] = plot_label_histograms(prow, out / f"labels_{safe}_b{b}.png", b,
                                                              pool=pool, dataset=ds)
    return paths
