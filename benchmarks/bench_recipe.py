"""Training recipe of the encoder trained on the pool, measured across datasets.

The default embedding (frozen EfficientNet-Lite0 + pixel view) trains nothing; the recipe decides the
embedding of ``--backbone resnet-small`` / ``selector train`` and of the fallback used when the
``pretrained`` extra is missing (resnet-small trained on the pool + pixel view). Two parts:

* **quality** (default): one factor at a time away from the product's recipe (:class:`selector.train.TrainConfig`
  and :func:`selector.train.auto_epochs`), on the balanced small pool of every dataset of
  :mod:`benchmarks.bench_embeddings` (:func:`benchmarks.common.load_split`), same seed, same pool, in one run.
  Each trained encoder is scored alone and with the pixel view concatenated (what the fallback embeds):
  leave-one-out kNN (k = 20) on the pool and the linear probe on the held-out test split.
  **The rule** (:func:`verdict`): a variant replaces the default only if, both alone
  (``--backbone resnet-small``) and with the pixel view (what ``selector select`` trains when the extra
  is missing), it raises the mean kNN over datasets by more than the
  default's seed spread (mean over datasets of max - min over seeds) and loses no dataset by more than
  :data:`MAX_LOSS` points.
* **speed** (``--speed``): seconds per training step of resnet-small (batch 256, 32 px, RGB and
  grayscale) on the CPU, eager against channels-last and ``torch.compile``, with 1 and 2 threads,
  alternated and repeated in one process; ratios against eager in the same run.

    python -m benchmarks.bench_recipe --out benchmarks/results/recipe
    python -m benchmarks.bench_recipe --out benchmarks/results/recipe --speed
"""
from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import (
    DATASETS,
    PRINT_ONLY,
    SHAPES,
    command_line,
    fit_pca,
    fit_simclr,
    help_text,
    list_option,
    load_split,
    pool_indices,
    read_rows,
    run,
    score,
    write_csv,
)

log = logging.getLogger("benchmarks.bench_recipe")

#: (name, keyword arguments of :func:`benchmarks.common.fit_simclr`), one factor at a time.
VARIANTS: tuple[tuple[str, dict], ...] = (
    ("default", {}),
    ("crop=0.08", {"crop": "0.08"}),  # smallest crop scale; defaults: 0.2 RGB, 0.5 grayscale
    ("crop=0.8", {"crop": "0.8"}),
    ("temp=0.1", {"temp": "0.1"}),  # default 0.2
    ("temp=0.5", {"temp": "0.5"}),
    ("lr=1e-3", {"lr": "1e-3"}),  # default 2e-3 (AdamW)
    ("lr=4e-3", {"lr": "4e-3"}),
    ("flip=0", {"flip": "0"}),  # default: flips on
    ("sgd", {"opt": "sgd", "lr": "0.06"}),  # default AdamW; SGD + Nesterov momentum 0.9 at SimCLR's small-batch lr
    ("images=25000", {"images": "25000"}),  # the epoch rule gives 30 epochs (53,760 images seen at 2,000)
)
#: the most a variant may lose on any dataset (kNN points) and still replace the default
MAX_LOSS = 1.0
FIELDS = ("dataset", "shape", "variant", "seed", "n_pool", "loo_knn", "linear", "loo_knn_pv", "linear_pv",
          "fit_s", "load", "note")
SPEED_FIELDS = ("arch", "channels", "threads", "mode", "repeat", "step_s", "load", "note")


# -- quality -------------------------------------------------------------------------------------

def run_variant(split, shape: str, name: str, kw: dict, seed: int, device, k: int = 20) -> dict:
    """Train resnet-small on the pool with one variant of the recipe; score it alone and + pixel view."""
    from selector.pixels import concat_views

    idx = pool_indices(split, shape, seed)
    x, y = split.x[idx], split.y[idx]
    fitted = fit_simclr(x, seed, device, **kw)
    test = fitted.transform(split.x_test)
    pv = fit_pca(x, seed, device)
    alone = score(fitted.pool_emb, y, test, split.y_test, k=k, seed=seed)
    both = score(concat_views(fitted.pool_emb, pv.pool_emb), y, concat_views(test, pv.transform(split.x_test)),
                 split.y_test, k=k, seed=seed)
    return {"dataset": split.name, "shape": shape, "variant": name, "seed": seed, "n_pool": int(x.shape[0]),
            "loo_knn": alone["loo_knn"], "linear": alone["linear"], "loo_knn_pv": both["loo_knn"],
            "linear_pv": both["linear"], "fit_s": fitted.fit_s, "load": os.getloadavg()[0], "note": fitted.note}


def paired_deltas(rows: list[dict], variant: str, key: str) -> dict[str, list[float]]:
    """{dataset: [100 * (variant - default) of ``key`` per seed both have]}."""
    by = {(r["dataset"], r["variant"], str(r["seed"])): float(r[key]) for r in rows}
    out: dict[str, list[float]] = {}
    for (d, v, s), val in by.items():
        if v == variant and (d, "default", s) in by:
            out.setdefault(d, []).append(100 * (val - by[(d, "default", s)]))
    return out


def default_spreads(rows: list[dict], key: str) -> dict[str, tuple[float, int]]:
    """{dataset: (max - min of ``key`` over the default recipe's seeds in points, seeds)} for the datasets
    with two or more seeds of the default."""
    per: dict[str, list[float]] = {}
    for r in rows:
        if r["variant"] == "default":
            per.setdefault(r["dataset"], []).append(100 * float(r[key]))
    return {d: (max(v) - min(v), len(v)) for d, v in per.items() if len(v) > 1}


def seed_spread(rows: list[dict], key: str) -> float | None:
    """Mean over datasets (with two or more seeds of the default) of max - min of ``key`` (points)."""
    spreads = [sp for sp, _ in default_spreads(rows, key).values()]
    return float(np.mean(spreads)) if spreads else None


def verdict(rows: list[dict], variant: str) -> str:
    """Whether ``variant`` replaces the default recipe by the rule of the module docstring, and why not."""
    if variant == "default":
        return "the default"
    why = []
    for key, what in (("loo_knn", "alone"), ("loo_knn_pv", "+pv")):
        deltas = paired_deltas(rows, variant, key)
        if not deltas:
            return "not measured"
        means = {d: float(np.mean(v)) for d, v in deltas.items()}
        mean, worst = float(np.mean(list(means.values()))), min(means.values())
        spread = seed_spread(rows, key)
        if spread is None:
            return "no seed spread measured"
        if mean <= spread:
            why.append(f"{what}: mean {mean:+.1f}, not above the seed spread {spread:.1f}")
        if worst < -MAX_LOSS:
            d = min(means, key=means.get)
            why.append(f"{what}: {d} {worst:+.1f}")
    return "replaces the default" if not why else "keeps the default (" + "; ".join(why) + ")"


def quality_markdown(rows: list[dict], command: str) -> str:
    """Per-dataset table of every variant against the default recipe (same seed, same pool)."""
    datasets = sorted({r["dataset"] for r in rows})
    variants = [v for v, _ in VARIANTS if any(r["variant"] == v for r in rows)]
    out = ["## Quality: one factor at a time, small balanced pools", "",
           "Produced by (from the repository root):", "", "```", command, "```", "",
           "kNN: leave-one-out kNN accuracy (k = 20) on the pool, mean over seeds; +pv: with the pixel view "
           "concatenated (the fallback embedding); lin: linear probe on the held-out test split. Δ: the variant "
           "minus `default` (the product's recipe) on the same pool and seed, averaged per dataset and then over "
           "datasets; worst: the dataset where it loses most. fit s: training wall seconds (load: 1-minute load "
           "average).", ""]
    head = ("| variant | " + " | ".join(f"{d} kNN / +pv" for d in datasets)
            + " | mean Δ kNN | worst Δ kNN | mean Δ +pv | worst Δ +pv | mean Δ lin | fit s | verdict |")
    out += [head, "|" + " --- |" * (1 + len(datasets) + 7)]
    for v in variants:
        cells, fits = [], []
        for d in datasets:
            rs = [r for r in rows if r["dataset"] == d and r["variant"] == v]
            if not rs:
                cells.append("")
                continue
            knn = np.mean([float(r["loo_knn"]) for r in rs]) * 100
            pv = np.mean([float(r["loo_knn_pv"]) for r in rs]) * 100
            cells.append(f"{knn:.1f} / {pv:.1f}")
            fits += [float(r["fit_s"]) for r in rs]
        stats = []
        for key in ("loo_knn", "loo_knn_pv", "linear"):
            per = [float(np.mean(x)) for x in paired_deltas(rows, v, key).values()]
            stats.append(f"{np.mean(per):+.1f}" if per else "")
            if key != "linear":
                stats.append(f"{min(per):+.1f}" if per else "")
        out.append(f"| `{v}` | " + " | ".join(cells) + " | " + " | ".join(stats) + f" | {np.mean(fits):.0f} | "
                   f"{verdict(rows, v)} |")
    alone, with_pv = default_spreads(rows, "loo_knn"), default_spreads(rows, "loo_knn_pv")
    spread = [f"{d} {alone[d][0]:.1f} / {with_pv[d][0]:.1f} ({alone[d][1]} seeds)" for d in datasets if d in alone]
    if spread:
        out += ["", "Seed spread of the default recipe (max - min LOO kNN over seeds, alone / +pv; each seed its own "
                "pool and training): " + ", ".join(spread) + ". A difference smaller than that is not a difference."]
    loads = [float(r["load"]) for r in rows]
    out += ["", f"{len(rows)} rows, seeds {sorted({int(r['seed']) for r in rows})}; "
                f"load {min(loads):.1f}-{max(loads):.1f}."]
    return "\n".join(out)


# -- speed ---------------------------------------------------------------------------------------

def _step_fn(channels: int, mode: str, arch: str = "resnet-small", bs: int = 256, size: int = 32):
    """One training step of the product's recipe (:class:`selector.train.TrainConfig`: two augmented views,
    ``arch``, its loss and optimizer), with the model and views in channels-last and/or compiled per ``mode``."""
    import torch

    from selector.augment import make_augment, to_float
    from selector.backbones import Encoder, EncoderConfig
    from selector.losses import get_loss
    from selector.train import TrainConfig, _make_optimizer

    cfg = TrainConfig()  # the product's loss, temperature, optimizer, lr and weight decay
    torch.manual_seed(0)
    model = Encoder(EncoderConfig(arch=arch, in_channels=channels, image_size=size))
    cl = mode in ("channels-last", "compile+channels-last")
    if cl:
        model = model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if mode.startswith("compile") else model
    loss_fn = get_loss(cfg.loss, **cfg.loss_params)
    aug = make_augment(channels, size, flip=cfg.flip, crop_scale=cfg.crop_scale)
    opt = _make_optimizer(model, cfg)
    batch = torch.randint(0, 256, (bs, channels, size, size), dtype=torch.uint8)

    def step():
        x = to_float(batch)
        with torch.no_grad():
            v = torch.cat([aug(x), aug(x)])
        if cl:
            v = v.contiguous(memory_format=torch.channels_last)
        z = fwd(v)
        loss = loss_fn(z[:bs], z[bs:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_steps(channels: int, mode: str, threads: int, steps: int = 5, warmup: int = 2,
               arch: str = "resnet-small") -> float:
    """Median seconds per step after ``warmup`` steps (compilation happens there)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        step = _step_fn(channels, mode, arch)
        for _ in range(warmup):
            step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return statistics.median(times)


def speed_rows(modes, threads_list, channels_list, repeats: int, steps: int, archs=("resnet-small",)) -> list[dict]:
    rows = []
    for rep in range(repeats):
        for ch in channels_list:
            for th in threads_list:
                for arch in archs:
                    for mode in modes:  # alternated: load drift hits every mode alike
                        note = ""
                        try:
                            s = time_steps(ch, mode, th, steps=steps, arch=arch)
                        except Exception as e:  # noqa: BLE001 - a mode that cannot run here is a result
                            s, note = float("nan"), f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
                        rows.append({"arch": arch, "channels": ch, "threads": th, "mode": mode, "repeat": rep,
                                     "step_s": s, "load": os.getloadavg()[0], "note": note})
                        log.info("%s", rows[-1])
    return rows


def speed_markdown(rows: list[dict], command: str) -> str:
    out = ["## Speed: seconds per training step on the CPU (batch 256, 32 px)", "",
           "Produced by (from the repository root):", "", "```", command, "```", "",
           "Median over the repeats of each repeat's median step; ratio: eager resnet-small's time over the row's "
           "(above 1: faster) at the same channels and thread count; the modes of one arch and thread count are "
           "timed in one run, alternated.", "",
           "| channels | threads | arch | mode | s / step | ratio vs eager resnet-small | note |",
           "| ---: | ---: | --- | --- | ---: | ---: | --- |"]

    def key(r):
        return int(r["channels"]), int(r["threads"]), r.get("arch") or "resnet-small", r["mode"]

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    med = {}
    for k, rs in groups.items():
        vals = [float(r["step_s"]) for r in rs if np.isfinite(float(r["step_s"]))]
        med[k] = statistics.median(vals) if vals else float("nan")
    for k in sorted(groups, key=lambda k: (-k[0], k[1], k[2] != "resnet-small", k[2], k[3] != "eager", k[3])):
        ch, th, arch, mode = k
        base = med.get((ch, th, "resnet-small", "eager"), float("nan"))
        notes = sorted({r["note"] for r in groups[k] if r["note"]})
        out.append(f"| {ch} | {th} | {arch} | {mode} | {med[k]:.3f} | {base / med[k]:.2f} | {'; '.join(notes)} |")
    loads = [float(r["load"]) for r in rows]
    out += ["", f"load {min(loads):.1f}-{max(loads):.1f} during the run."]
    return "\n".join(out)


# -- main ----------------------------------------------------------------------------------------

@click.command("bench_recipe", help=help_text(__doc__))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="folder for the CSVs and summary.md")
@list_option("--datasets", default=DATASETS, type=click.Choice(DATASETS), show_default=True)
@click.option("--shape", default="small", type=click.Choice(SHAPES), show_default=True)
@list_option("--variants", help="names from VARIANTS (default: all)")
@click.option("--seeds", type=int, default=1, show_default=True, help="how many seeds, from --seed-start")
@click.option("--seed-start", type=int, default=0, show_default=True, help="first seed")
@click.option("--threads", type=int, default=None, help="torch threads for training")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True)
@click.option("--speed", is_flag=True, help="time training steps instead (writes speed.csv)")
@list_option("--modes", default=("eager", "channels-last", "compile", "compile+channels-last"), show_default=True)
@list_option("--speed-threads", type=int, default=(1, 2), show_default=True)
@list_option("--archs", default=("resnet-small",), show_default=True, help="architectures timed (--speed)")
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--steps", type=int, default=5, show_default=True)
@click.option("--summary-only", is_flag=True, help="rewrite summary.md from the CSVs")
@click.option("-v", "--verbose", is_flag=True)
def cli(out, datasets, shape, variants, seeds, seed_start, threads, data_dir, cache_dir, speed, modes, speed_threads,
        archs, repeats, steps, summary_only, verbose) -> int:
    from selector.atomic import atomic_write

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    command = command_line(PRINT_ONLY)
    out.mkdir(parents=True, exist_ok=True)
    q_path, s_path = out / "results.csv", out / "speed.csv"
    cmd_path = out / "commands.txt"
    commands: dict[str, list[str]] = {}  # the commands that made the rows, per part, in order
    for line in cmd_path.read_text().splitlines() if cmd_path.is_file() else []:
        part, _, cmd = line.partition("\t")
        commands.setdefault(part, []).append(cmd)
    known = dict(VARIANTS)
    names = list(variants) or [v for v, _ in VARIANTS]
    for v in names:
        if v not in known:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(known)}")
    if not summary_only:
        import torch

        if speed:
            new = speed_rows(modes, speed_threads, (3, 1), repeats, steps, archs)

            def skey(r):
                return (r.get("arch") or "resnet-small", str(r["channels"]), str(r["threads"]), r["mode"])
            redone = {skey(r) for r in new}  # a rerun replaces the rows it measures again, keeps the others
            write_csv([r for r in read_rows(s_path) if skey(r) not in redone] + new, s_path, SPEED_FIELDS)
            part = "speed"
        else:
            if threads:
                torch.set_num_threads(threads)
            device = torch.device("cpu")
            rows = read_rows(q_path)
            done = {(r["dataset"], r["shape"], r["variant"], str(r["seed"])) for r in rows}
            for ds in datasets:
                split = load_split(ds, data_dir, cache_dir)
                for seed in range(seed_start, seed_start + seeds):
                    for v in names:
                        key = (ds, shape, v, str(seed))
                        if key in done:
                            continue
                        row = run_variant(split, shape, v, known[v], seed, device)
                        rows.append(row)
                        write_csv(rows, q_path, FIELDS)  # after every row: an interrupted run resumes
                        print(f"{ds}/{shape}/{v} seed {seed}: kNN {row['loo_knn']:.4f} "
                              f"(+pv {row['loo_knn_pv']:.4f}), fit {row['fit_s']:.0f} s", flush=True)
            part = "quality"
        if command not in commands.setdefault(part, []):
            commands[part].append(command)
        with atomic_write(cmd_path, "w") as f:
            f.write("".join(f"{k}\t{c}\n" for k, cs in sorted(commands.items()) for c in cs))
    parts = ["# Training recipe of the encoder trained on the pool", "",
             "See the module docstring of `benchmarks/bench_recipe.py` for what is measured and the decision rule.", ""]
    if q_path.is_file():
        parts += [quality_markdown(read_rows(q_path), "\n".join(commands.get("quality", [command]))), ""]
    if s_path.is_file():
        parts += [speed_markdown(read_rows(s_path), "\n".join(commands.get("speed", [command]))), ""]
    with atomic_write(out / "summary.md", "w") as f:
        f.write("\n".join(parts))
    print(f"wrote {out / 'summary.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv)


if __name__ == "__main__":
    sys.exit(main())
