"""Coarse-to-fine benchmark: when a round's labels are coarse, does the embedding keep the fine
subclasses, so that the next round's picks cover them?

Chen et al. (ICML 2022, "Perfectly Balanced") report that SupCon trained on coarse labels collapses the
subclasses of each coarse class, that a class-conditional spread term alone does not bring them back, and
that spread plus a class-conditional autoencoder does (+11.1 points of coarse-to-fine transfer). This
script measures that claim on this project's encoder, at CPU sizes, and what it means for selection.

Coarse labels (two classes each):

* ``mnist10k``: digits 0-4 against 5-9;
* ``notmnist10k``: letters A-E against F-J;
* ``cifar10``: vehicles (airplane, automobile, ship, truck) against animals.

Per dataset and seed, a balanced pool (``--per-class`` images of each fine class, drawn with the seed) and
a fixed balanced test split (``--test-per-class`` per fine class: held out of MNIST / notMNIST, from the
CIFAR-10 test set). ``--labeled`` pool images (drawn at random with the seed) are the round that was
labeled, coarsely. Two label regimes for the encoder:

* ``labels=round``: the encoder trains with the coarse labels of that round only; every other image is
  unlabeled (SupCon and the spread term treat it as NT-Xent does: its own view is its only positive).
  This is what ``selector select --labeled round1.csv --loss supcon-spread`` does after a coarse round.
* ``labels=all``: every pool image has its coarse label (the paper's setting; as when coarse labels come
  for free, from folders or metadata).

Encoders (``--configs``): ``simclr`` (no labels; temperature 0.2, the project's default), ``supcon``
(supcon-spread with alpha 0), ``spread-A`` (supcon-spread with alpha A), ``spread-A+ae`` (with the
class-conditional autoencoder at the paper's weight 1), all at the paper's temperature 0.5 unless a suffix
``@T`` names another (``spread-0.5@0.2``: SimCLR's temperature, the project's before); ``pca50``
(PCA-50 of the pixels, no training) and ``default`` (the product's default embedding, what ``selector
select`` embeds with no options: ImageNet-pretrained EfficientNet-Lite0 frozen with the pixel view, no
training; the next round of a user who keeps it) as references. resnet-small, batch 256, AdamW, the training loop of
the pipeline (:func:`selector.train.train_encoder`), ``--epochs`` epochs; k-means pseudo-labels are off
(``pseudo_label_every=0``): the pipeline refreshes them every 5 epochs, after the end of runs this short,
so the unlabeled images train as NT-Xent either way.

Scores, all against the **fine** labels the encoder never saw:

* ``fine_knn``: leave-one-out kNN accuracy on the pool (k = 20, cosine, exp(cos / 0.07) votes,
  :func:`selector.eval.retrain.loo_knn_predict`);
* ``fine_linear``: linear probe fitted on the pool's fine labels, accuracy on the test split
  (:func:`selector.eval.retrain.linear_probe`);
* ``coarse_knn``: the same LOO kNN against the coarse labels (did the encoder learn them);
* ``classes_b{B}``, ``entropy_b{B}``: the next round. The product's default strategy (``--strategy``; its
  report-only class count off, which never changes the picks) picks B images with the labeled round as
  labeled (``labeled_mask``; its coarse labels are not passed to the strategy, since
  the next round asks for fine classes); the fine classes among the B picks (of 10) and their normalised
  entropy (1 = evenly spread over all 10).

The CSV is rewritten (atomically) after every cell, and a run started again with the same ``--out`` skips
the cells it holds, so an interrupted run loses at most one cell. Rows made with other sizes or another
strategy are dropped and made again. The embeddings are kept in ``--emb-cache`` (one ``.npz`` per dataset,
labels, encoder, seed and sizes), so scoring another strategy does not train again. ``summary.md``
(mean +- std over seeds, with the command at the top) is rewritten at the end, or alone with ``--summary-only``.

    python -m benchmarks.coarse_to_fine --out benchmarks/results/coarse_to_fine
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np

from benchmarks.common import (
    REPORT_ONLY,
    cifar10_nchw,
    command_line,
    fit_default,
    fit_pca,
    glyph_split,
    help_text,
    list_option,
    parse_strategy,
    product_default,
    read_rows,
    run,
    write_csv,
)

log = logging.getLogger("benchmarks.coarse_to_fine")

DATASETS = ("mnist10k", "notmnist10k", "cifar10")
#: CIFAR-10 labels of the vehicles (airplane, automobile, ship, truck); the other six are animals.
CIFAR_VEHICLES = (0, 1, 8, 9)
COARSE_NAMES = {"mnist10k": ("0-4", "5-9"), "notmnist10k": ("A-E", "F-J"), "cifar10": ("vehicle", "animal")}
REGIMES = ("round", "all")
BUDGETS = (10, 20)
#: The default plan: (regime, config) cells; simclr, pca50 and default use no labels, so they run once.
#: With ``labels=round`` SupCon and every spread weight differ only on the 1 % of anchors with a label (the
#: rest are NT-Xent at temperature 0.5), so one weight there, with and without the autoencoder.
#: ``@0.2``: the same at SimCLR's temperature, the project's before it took the paper's 0.5 for supcon-spread.
PLAN = (("none", "pca50"), ("none", "default"), ("none", "simclr"),
        ("round", "spread-0.5"), ("round", "spread-0.5+ae"),
        ("all", "supcon"), ("all", "spread-0.5"), ("all", "spread-0.75"), ("all", "spread-0.5+ae"),
        ("round", "spread-0.5@0.2"), ("all", "supcon@0.2"), ("all", "spread-0.5@0.2"))
FIELDS = ("dataset", "regime", "config", "seed", "strategy", "loss", "temperature", "alpha", "autoencoder", "n_pool",
          "n_labeled", "n_coarse_labels", "epochs", "images_seen", "fine_knn", "fine_linear", "coarse_knn",
          *[f"{m}_b{b}" for b in BUDGETS for m in ("classes", "entropy")], "train_s", "eval_s")
KEY = ("dataset", "regime", "config", "seed")


def coarse_of(dataset: str, y: np.ndarray) -> np.ndarray:
    """(n,) int64 coarse labels (0 or 1) of fine labels ``y`` (see the module docstring)."""
    y = np.asarray(y, dtype=np.int64)
    if dataset in ("mnist10k", "notmnist10k"):
        return (y >= 5).astype(np.int64)
    if dataset == "cifar10":
        return (~np.isin(y, CIFAR_VEHICLES)).astype(np.int64)
    raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")


@dataclass
class Config:
    """One encoder: a loss and its hyperparameters (``loss=None``: PCA-50 of the pixels, no training)."""

    name: str
    loss: str | None
    temperature: float = 0.5
    alpha: float = 0.0
    autoencoder: float = 0.0


def parse_config(name: str) -> Config:
    """``pca50``, ``default``, ``simclr``, ``supcon``, ``spread-A`` or ``spread-A+ae`` (A in [0, 1]); a suffix
    ``@T`` sets the temperature (``spread-0.5@0.2``; default 0.5 for supcon-spread, 0.2 for simclr)."""
    base, at, temp = name.partition("@")
    t = None
    if at:
        try:
            t = float(temp)
        except ValueError:
            t = -1.0
        if not t > 0:
            raise ValueError(f"unknown encoder {name!r}: the temperature after @ must be a number > 0")
    cfg = None
    if base in ("pca50", "default") and not at:
        cfg = Config(name, None)
    elif base == "simclr":
        cfg = Config(name, "simclr", temperature=0.2)
    elif base == "supcon":
        cfg = Config(name, "supcon-spread", alpha=0.0)
    elif base.startswith("spread-"):
        rest, ae = (base[len("spread-"):-3], 1.0) if base.endswith("+ae") else (base[len("spread-"):], 0.0)
        try:
            alpha = float(rest)
        except ValueError:
            alpha = -1.0
        if 0.0 <= alpha <= 1.0:
            cfg = Config(name, "supcon-spread", alpha=alpha, autoencoder=ae)
    if cfg is None:
        raise ValueError(f"unknown encoder {name!r}: pca50, default, simclr, supcon, spread-A or spread-A+ae "
                         "(A in [0, 1]), optionally @TEMPERATURE")
    if t is not None:
        cfg.temperature = t
    return cfg


@dataclass
class Data:
    """Images (n, C, S, S) uint8 and fine labels: the source the pools are drawn from, and the test split."""

    name: str
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_data(name: str, test_per_class: int, data_dir: str | None, cache_dir: str | None) -> Data:
    """The dataset's pool source and its fixed balanced test split (seed 0)."""
    from selector.eval.pools import balanced_pool

    if name in ("mnist10k", "notmnist10k"):
        return Data(name, *glyph_split(name, data_dir, test_per_class, 0))
    if name == "cifar10":
        x, y, xt, yt = cifar10_nchw(data_dir, cache_dir)
        test = balanced_pool(yt, test_per_class, np.random.default_rng(0))
        return Data(name, x, y, xt[test], yt[test])
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def draw_round(data: Data, per_class: int, n_labeled: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool indices into data.x, (n_pool,) bool mask of the labeled round), both drawn with ``seed``."""
    from selector.eval.pools import balanced_pool

    pool = balanced_pool(data.y, per_class, np.random.default_rng([seed, 1]))
    mask = np.zeros(pool.shape[0], dtype=bool)
    mask[np.random.default_rng([seed, 2]).choice(pool.shape[0], n_labeled, replace=False)] = True
    return pool, mask


def train_labels(regime: str, coarse: np.ndarray, labeled: np.ndarray) -> np.ndarray | None:
    """The encoder's labels: the round's coarse labels (-1 elsewhere), all coarse labels, or None."""
    if regime == "none":
        return None
    if regime == "round":
        return np.where(labeled, coarse, -1)
    if regime == "all":
        return coarse.copy()
    raise ValueError(f"unknown label regime {regime!r}; choose from none, {', '.join(REGIMES)}")


def embed(cfg: Config, x_pool: np.ndarray, x_test: np.ndarray, labels, dataset: str, seed: int, epochs: int,
          device: str, cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(pool embedding, test embedding, training facts) of one encoder trained on ``x_pool``."""
    if cfg.name == "default":
        # exactly what `selector select` embeds with no options; its per-image cache in cache_dir is the one
        # bench_embeddings uses
        fitted = fit_default(x_pool, seed, device, cache_dir)
        return fitted.pool_emb, fitted.transform(x_test), {"epochs": 0, "images_seen": 0}
    if cfg.loss is None:
        fitted = fit_pca(x_pool, seed)
        return fitted.pool_emb, fitted.transform(x_test), {"epochs": 0, "images_seen": 0}
    from selector.backbones import EncoderConfig
    from selector.embed import embed_array
    from selector.train import TrainConfig, train_encoder

    params = {"temperature": cfg.temperature} | ({"alpha": cfg.alpha} if cfg.loss == "supcon-spread" else {})
    tc = TrainConfig(loss=cfg.loss, epochs=epochs, batch_size=256, loss_params=params, pseudo_label_every=0,
                     seed=seed, flip=dataset == "cifar10", autoencoder=cfg.autoencoder)
    enc_cfg = EncoderConfig("resnet-small", int(x_pool.shape[1]), int(x_pool.shape[2]))
    enc = train_encoder(x_pool, enc_cfg, tc, device, labels=labels)
    rep = enc.train_report
    return embed_array(enc, x_pool, device), embed_array(enc, x_test, device), {
        "epochs": epochs, "images_seen": rep["images_seen"]}


def default_strategy() -> str:
    """The product's default strategy as a spec, with its report-only parameters (the class count) off:
    the same picks, without the time the report takes."""
    from selector.strategies import get_strategy

    name = product_default()
    off = [k for k in REPORT_ONLY if k in get_strategy(name).get_params()]
    return name + (":" + ",".join(f"{k}=False" for k in off) if off else "")


def score(emb: np.ndarray, emb_test: np.ndarray, y_fine: np.ndarray, y_test: np.ndarray, coarse: np.ndarray,
          labeled: np.ndarray, seed: int, strategy: str = "balanced") -> dict:
    """The fine-class scores of one embedding and the next round's picks by ``strategy`` (a spec such as
    ``"typcover"`` or ``"balanced:explore=0"``; see the module docstring)."""
    from selector.eval.metrics import accuracy, classes_covered, normalised_entropy
    from selector.eval.retrain import linear_probe, loo_knn_predict

    out = {"fine_knn": accuracy(y_fine, loo_knn_predict(emb, y_fine)),
           "fine_linear": accuracy(y_test, linear_probe(emb, y_fine, emb_test, seed=seed)),
           "coarse_knn": accuracy(coarse, loo_knn_predict(emb, coarse))}
    k = int(np.unique(y_fine).shape[0])
    picker = parse_strategy(strategy)
    for b in BUDGETS:
        sel = picker.select(emb, b, labeled_mask=labeled, rng=seed)
        picked = y_fine[sel.indices]
        out[f"classes_b{b}"] = classes_covered(picked)
        out[f"entropy_b{b}"] = normalised_entropy(picked, k)
    return out


def save_embedding(path: Path, emb: np.ndarray, emb_test: np.ndarray, facts: dict, train_s: float) -> None:
    """Write one encoder's embeddings and training facts to ``path`` atomically."""
    from selector.atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as f:
        np.savez(f, emb=emb, emb_test=emb_test, epochs=facts["epochs"], images_seen=facts["images_seen"],
                 train_s=train_s)


def run_cell(data: Data, regime: str, cfg: Config, seed: int, args) -> dict:
    """Train (or fit) one encoder for one (dataset, regime, seed) and score it: one CSV row."""
    pool, labeled = draw_round(data, args.per_class, args.labeled, seed)
    x_pool, y_fine = data.x[pool], data.y[pool]
    coarse = coarse_of(data.name, y_fine)
    labels = train_labels(regime, coarse, labeled) if cfg.loss not in (None, "simclr") else None
    cache = None
    if args.emb_cache:
        cache = Path(args.emb_cache) / (f"{data.name}__{regime}__{cfg.name}__s{seed}__p{args.per_class}"
                                        f"_l{args.labeled}_e{args.epochs}_t{args.test_per_class}.npz")
    t0 = time.perf_counter()
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            emb, emb_test = z["emb"], z["emb_test"]
            facts = {"epochs": int(z["epochs"]), "images_seen": int(z["images_seen"])}
            train_s = float(z["train_s"])
    else:
        emb, emb_test, facts = embed(cfg, x_pool, data.x_test, labels, data.name, seed, args.epochs, args.device,
                                     Path(args.cache_dir) / "selector-cache")
        train_s = time.perf_counter() - t0
        if cache is not None:
            save_embedding(cache, emb, emb_test, facts, train_s)
    t1 = time.perf_counter()
    row = {"dataset": data.name, "regime": regime, "config": cfg.name, "seed": seed, "strategy": args.strategy,
           "loss": cfg.loss or "",
           "temperature": cfg.temperature if cfg.loss else "",
           "alpha": cfg.alpha if cfg.loss == "supcon-spread" else "",
           "autoencoder": cfg.autoencoder if cfg.loss == "supcon-spread" else "", "n_pool": int(pool.shape[0]),
           "n_labeled": int(labeled.sum()), "n_coarse_labels": 0 if labels is None else int((labels >= 0).sum()),
           **facts, **score(emb, emb_test, y_fine, data.y_test, coarse, labeled, seed, args.strategy),
           "train_s": train_s}
    row["eval_s"] = time.perf_counter() - t1
    return row


# ------------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------------
METRICS = (("fine_knn", "fine kNN %", True), ("fine_linear", "fine linear %", True),
           ("coarse_knn", "coarse kNN %", True), ("classes_b10", "classes @10", False),
           ("entropy_b10", "entropy @10", False), ("classes_b20", "classes @20", False),
           ("entropy_b20", "entropy @20", False))
REGIME_TEXT = {"none": "none", "round": "round", "all": "all"}


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _mean_std(vals: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in vals if not math.isnan(v)], dtype=np.float64)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _fmt(mean: float, std: float, pct: bool) -> str:
    if math.isnan(mean):
        return "–"
    k = 100.0 if pct else 1.0
    return f"{mean * k:.1f} ± {std * k:.1f}" if pct else f"{mean:.2f} ± {std:.2f}"


def _order(rows: list[dict]) -> list[tuple[str, str]]:
    """(regime, config) in plan order, then any others in the order they appear."""
    seen = list(dict.fromkeys((r["regime"], r["config"]) for r in rows))
    rank = {c: i for i, c in enumerate(PLAN)}
    return sorted(seen, key=lambda c: (rank.get(c, len(PLAN)), seen.index(c)))


def markdown_table(rows: list[dict]) -> str:
    """Per dataset and (regime, config): mean ± std over seeds; the best mean of each dataset in bold."""
    head = "| dataset | labels | encoder | seeds | " + " | ".join(t for _, t, _ in METRICS) + " | train s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for ds in datasets:
        sub = [r for r in rows if r["dataset"] == ds]
        cells = {}
        for reg, cfg in _order(sub):
            rs = [r for r in sub if r["regime"] == reg and r["config"] == cfg]
            cells[(reg, cfg)] = (rs, {m: _mean_std([_num(r[m]) for r in rs]) for m, _, _ in METRICS})
        best = {m: max((s[m][0] for _, s in cells.values() if not math.isnan(s[m][0])), default=math.nan)
                for m, _, _ in METRICS}
        for (reg, cfg), (rs, stats) in cells.items():
            vals = []
            for m, _, pct in METRICS:
                txt = _fmt(*stats[m], pct)
                if not math.isnan(stats[m][0]) and np.isclose(stats[m][0], best[m]) and m != "coarse_knn":
                    txt = f"**{txt}**"
                vals.append(txt)
            train = _mean_std([_num(r["train_s"]) for r in rs])[0]
            lines.append(f"| {ds} | {REGIME_TEXT.get(reg, reg)} | {cfg} | {len(rs)} | " + " | ".join(vals)
                         + f" | {train:.0f} |")
    return "\n".join(lines)


def average_table(rows: list[dict]) -> str:
    """Each (regime, config)'s mean over datasets of its per-dataset means (datasets with every seed)."""
    head = "| labels | encoder | datasets | " + " | ".join(t for _, t, _ in METRICS) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for reg, cfg in _order(rows):
        per_ds = {}
        for r in rows:
            if r["regime"] == reg and r["config"] == cfg:
                per_ds.setdefault(r["dataset"], []).append(r)
        vals = []
        for m, _, pct in METRICS:
            means = [_mean_std([_num(r[m]) for r in rs])[0] for rs in per_ds.values()]
            mu = float(np.mean(means)) if means else math.nan
            vals.append("–" if math.isnan(mu) else (f"{mu * 100:.1f}" if pct else f"{mu:.2f}"))
        lines.append(f"| {REGIME_TEXT.get(reg, reg)} | {cfg} | {len(per_ds)} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _sizes(rows: list[dict]) -> str:
    def vals(k):
        return ", ".join(f"{v:,}" for v in sorted({int(_num(r[k])) for r in rows if _num(r[k]) > 0})) or "–"

    return (f"pools of {vals('n_pool')} images (balanced over the 10 fine classes), drawn per seed; a labeled round "
            f"of {vals('n_labeled')} pool images drawn at random per seed; resnet-small, batch 256, "
            f"{vals('epochs')} epochs ({vals('images_seen')} images seen per encoder); seeds "
            f"{', '.join(sorted({str(r['seed']) for r in rows}))}")


def previous_command(path: Path) -> str | None:
    """The command at the top of an existing summary (kept by ``--summary-only``)."""
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index("```")
        return lines[start + 1]
    except (ValueError, IndexError):
        return None


PAIRED = (("fine_knn", "fine kNN", True), ("fine_linear", "fine linear", True), ("classes_b10", "classes @10", False),
          ("classes_b20", "classes @20", False))


def paired_table(rows: list[dict], base: tuple[str, str]) -> str:
    """Each (regime, config) against ``base`` on the same (dataset, seed): the mean difference over the pairs
    (points for accuracies, classes for coverage) and in how many pairs it is ahead / behind."""
    by = {(r["dataset"], str(r["seed"]), r["regime"], r["config"]): r for r in rows}
    head = "| labels | encoder | pairs | " + " | ".join(f"Δ {t} (ahead/behind)" for _, t, _ in PAIRED) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for reg, cfg in _order(rows):
        if (reg, cfg) == base:
            continue
        pairs = [(r, by.get((r["dataset"], str(r["seed"]), *base))) for r in rows
                 if r["regime"] == reg and r["config"] == cfg]
        pairs = [(a, b) for a, b in pairs if b is not None]
        if not pairs:
            continue
        vals = []
        for m, _, pct in PAIRED:
            d = np.array([_num(a[m]) - _num(b[m]) for a, b in pairs])
            k = 100.0 if pct else 1.0
            vals.append(f"{d.mean() * k:+.{1 if pct else 2}f} ({int((d > 0).sum())}/{int((d < 0).sum())})")
        lines.append(f"| {REGIME_TEXT.get(reg, reg)} | {cfg} | {len(pairs)} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def write_summary(rows: list[dict], path: Path, command: str) -> None:
    from selector.atomic import atomic_write

    strategies = ", ".join(sorted({r.get("strategy") or "balanced" for r in rows}))
    text = f"""# Coarse-to-fine: does an encoder trained on coarse labels keep the fine classes?

Command (this folder's `results.csv` and this file):

```
{command}
```

Sizes: {_sizes(rows)}.

A fixed balanced test split per dataset (held out of MNIST and notMNIST; from the CIFAR-10 test set) for the
linear probe. Coarse labels: MNIST 0-4 / 5-9, notMNIST A-E / F-J, CIFAR-10 vehicles
(airplane, automobile, ship, truck) / animals. `benchmarks/coarse_to_fine.py` describes the protocol.

* **labels**: what the encoder trained with. `round`: the coarse labels of the labeled round only (the other
  images are unlabeled); `all`: the coarse label of every pool image (the paper's setting); `none`: no labels
  (`simclr`, `pca50`, `default`).
* **encoder**: `simclr` (temperature 0.2, the project's default), `supcon` (supcon-spread, alpha 0),
  `spread-A` (supcon-spread, alpha A), `+ae` (the class-conditional autoencoder at weight 1), all
  supcon-spread at temperature 0.5 (the paper's code's) unless `@T` names another; `pca50`: PCA-50 of the
  pixels (no training); `default`: the product's default embedding, what `selector select` embeds with no
  options (ImageNet-pretrained EfficientNet-Lite0, frozen, with the pixel view; no training).
* **fine kNN**: leave-one-out kNN accuracy (k = 20) on the pool against the 10 fine classes; **fine linear**:
  linear probe on the pool's fine labels, test-split accuracy; **coarse kNN**: the same kNN against the 2 coarse
  classes; **classes @B**, **entropy @B**: fine classes (of 10) among the B next-round picks of `{strategies}`
  (the product's default strategy when the run was made) with the labeled round excluded, and their normalised entropy.
* mean ± std over seeds; the best mean of each dataset in bold (coarse kNN is not ranked). **train s**: wall
  seconds of training, not a speed measurement.

{markdown_table(rows)}

## Mean over the datasets

{average_table(rows)}

## Paired differences

Each encoder against another on the same dataset and seed (same pool, same labeled round, same test split):
the mean difference over those pairs (accuracy in points, coverage in classes) and in how many pairs it is ahead
and behind (ties are neither).

Against `simclr` (no labels, the project's default loss):

{paired_table(rows, ("none", "simclr"))}

Against `supcon` trained on every coarse label (the paper's baseline):

{paired_table(rows, ("all", "supcon"))}

Against `default` (the product's default embedding, no training: what a user who keeps it gets):

{paired_table(rows, ("none", "default"))}

## Limits

* Short training: every encoder sees the number of images above, a few percent of what the pipeline's default
  (about 300,000) or the paper's (hundreds of epochs) train on. What the paper describes, SupCon collapsing the
  subclasses after long training, may not have set in yet.
* One labeled round of a few images is about 1 % of the anchors of a batch; with `labels=round`, SupCon and the
  spread term are NT-Xent at temperature 0.5 for the other 99 %.
* Coverage at B = 10 and 20 varies by several classes from seed to seed; read it with the paired counts.
"""
    with atomic_write(path, "w") as f:
        f.write(text)


def _key(row: dict) -> tuple:
    return tuple(str(row[k]) for k in KEY)


def same_sizes(row: dict, args) -> bool:
    """Whether a CSV row was made with this run's sizes (pool, labeled round, epochs; PCA has no epochs)."""
    return (int(_num(row["n_pool"])) == args.per_class * 10 and int(_num(row["n_labeled"])) == args.labeled
            and (row["config"] in ("pca50", "default") or int(_num(row["epochs"])) == args.epochs)
            and row.get("strategy", "balanced") == args.strategy)


@click.command("coarse_to_fine", help=help_text(__doc__))
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results/coarse_to_fine"),
              show_default=True, help="folder of results.csv, summary.md")
@list_option("--datasets", default=DATASETS, type=click.Choice(DATASETS), show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True, help="seeds 0..N-1")
@list_option("--cells", default=tuple(f"{r}:{c}" for r, c in PLAN), show_default=True,
             help="REGIME:ENCODER cells (regime none, round or all; see above)")
@click.option("--per-class", type=int, default=200, show_default=True, help="pool images per fine class")
@click.option("--test-per-class", type=int, default=50, show_default=True, help="test images per fine class")
@click.option("--labeled", type=int, default=20, show_default=True, help="images of the coarsely labeled round")
@click.option("--epochs", type=int, default=4, show_default=True, help="training epochs of every encoder")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads")
@click.option("--data-dir", default=None, help="folder of mnist10k.npz, notmnist10k.npz, cifar10-jpeg.tar.gz")
@click.option("--cache-dir", default=".bench_data", show_default=True,
              help="where the decoded CIFAR-10 arrays and (in selector-cache/) the default embedding's per-image "
                   "cache are kept")
@click.option("--strategy", default=None,
              help="strategy spec of the next round's picks (default: the product's default, its class count off)")
@click.option("--emb-cache", default=".bench_data/coarse_to_fine", show_default=True,
              help="folder of the embeddings, one .npz per cell ('' to keep none)")
@click.option("--summary-only", is_flag=True, help="rewrite summary.md from results.csv")
def cli(**params) -> int:
    args = SimpleNamespace(**params)
    if args.strategy is None:
        args.strategy = default_strategy()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    command = command_line()
    csv_path, md_path = args.out / "results.csv", args.out / "summary.md"
    rows = read_rows(csv_path)
    if not args.summary_only:
        import torch

        torch.set_num_threads(args.threads)
        cells = []
        for c in args.cells:
            reg, _, name = c.partition(":")
            if reg not in ("none", *REGIMES) or not name:
                raise SystemExit(f"bad cell {c!r}: REGIME:ENCODER with REGIME none, round or all")
            cells.append((reg, parse_config(name)))
        other = [r for r in rows if not same_sizes(r, args)]
        if other:
            log.warning("dropping %d rows of %s made with other sizes", len(other), csv_path)
            rows = [r for r in rows if same_sizes(r, args)]
        done = {_key(r) for r in rows}
        args.out.mkdir(parents=True, exist_ok=True)
        data: dict[str, Data] = {}
        for seed in range(args.seeds):  # seeds outermost: an early stop still has every dataset
            for ds in args.datasets:
                for reg, cfg in cells:
                    if _key({"dataset": ds, "regime": reg, "config": cfg.name, "seed": seed}) in done:
                        continue
                    if ds not in data:
                        data[ds] = load_data(ds, args.test_per_class, args.data_dir, args.cache_dir)
                    row = run_cell(data[ds], reg, cfg, seed, args)
                    rows.append(row)
                    write_csv(rows, csv_path, FIELDS)  # after every cell: an interrupt loses one cell at most
                    log.info("%s seed %d %s:%s fine kNN %.3f linear %.3f coarse kNN %.3f classes@10 %d @20 %d "
                             "(%.0f s + %.0f s)", ds, seed, reg, cfg.name, row["fine_knn"], row["fine_linear"],
                             row["coarse_knn"], row["classes_b10"], row["classes_b20"], row["train_s"], row["eval_s"])
    if not rows:
        raise SystemExit(f"no results in {csv_path}")
    if args.summary_only:
        command = previous_command(md_path) or command
    write_summary(rows, md_path, command)
    print(md_path)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv)


if __name__ == "__main__":
    sys.exit(main())
