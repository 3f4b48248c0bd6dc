"""Benchmark of the contrastive encoders: which loss gives the best embedding for selection.

For each loss of :data:`selector.losses.LOSSES` and each dataset, an encoder is trained without labels
on the pool, then frozen and scored with all the labels of a probe split:

* ``balanced`` setting: the encoder trains on the whole (balanced) pool; we report the kNN accuracy
  (k=20, cosine, votes weighted by exp(cos/0.07) as in Wu et al., 2018: :func:`selector.eval.retrain.knn_classifier`)
  and the linear-probe accuracy (:func:`selector.eval.retrain.linear_probe`) on the test split.
* ``lt`` setting (Kang et al., ICLR 2021, "Exploring Balanced Feature Spaces for Representation
  Learning"): the encoder trains on a long-tailed version of the pool (imbalance ratio 100,
  CIFAR-10-LT profile, :func:`selector.eval.pools.long_tail_pool`); the linear probe is then fitted on the
  *balanced* labeled probe set and the per-class test accuracies give the balancedness p(V)
  (:func:`selector.eval.metrics.balancedness_pv`). By default the LT encoder sees as many images as the balanced
  one (more epochs over its smaller pool); ``--lt-epochs`` overrides that.

Datasets (``--datasets``):

* ``mnist10k``: the 10,000 digits of ``mnist10k.npz`` (28 px, 1 channel). There is no test split, so a
  balanced 2,000 (200 per class, seeded) are held out as the test split and the probes train on the other
  8,000. The balanced-setting encoder trains on all 10,000 images *without labels* (the held-out 2,000
  included: it never sees a label); the LT pool is drawn from the 8,000.
* ``cifar10``: the first 1,000 train images per class of ``cifar10-jpeg.tar.gz`` (10,000, 32 px RGB) as pool
  and probe set, the 10,000 test images for scoring.
* ``cifar10-all``: all 50,000 train images as pool and probe set, the 10,000 test images for scoring.
* ``digits``: scikit-learn's 1,797 digits at their 8 px (a balanced 300 held out): the smoke test.

``--pool-per-class N`` keeps a seeded balanced N per class of the probe set (and of the pool) for short runs.

Throughput: every run reports its training wall time and images/s (augmented images per second of
training, pseudo-label refreshes included). ``--throughput`` instead times a short SimCLR run per
architecture and dataset after a warm-up and reports images/s alone.

Examples::

    python -m benchmarks.bench_encoders --quick --out results/enc_quick.csv
    python -m benchmarks.bench_encoders --datasets mnist10k cifar10 --epochs 60 --device cuda \
        --data-dir .bench_data --cache-dir .bench_data/cache --out results/enc.csv
    python -m benchmarks.bench_encoders --throughput --archs resnet-small --datasets mnist10k cifar10 --device cpu
    python -m benchmarks.bench_encoders --merge a.csv b.csv --out all.csv      # merge CSVs, print the table

Results are written as a tidy CSV (one row per dataset x setting x loss) and printed as a markdown table.
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np

from benchmarks.common import (
    cifar10_nchw,
    data_folder,
    held_out,
    help_text,
    list_option,
    nchw,
    read_rows,
    run,
    write_csv,
)

log = logging.getLogger("benchmarks.bench_encoders")

DATASET_NAMES = ("mnist10k", "cifar10", "cifar10-all", "digits")
SETTINGS = ("balanced", "lt")
FIELDS = ("dataset", "setting", "loss", "arch", "epochs", "batch_size", "n_pool", "n_probe", "n_test",
          "knn_acc", "linear_acc", "linear_bal_acc", "min_class_acc", "pv", "per_class_acc",
          "train_s", "img_per_s", "eval_s", "device", "seed")
TP_FIELDS = ("dataset", "arch", "image_size", "channels", "batch_size", "steps", "seconds", "img_per_s",
             "device", "threads")


@dataclass
class BenchData:
    """A dataset split for the benchmark: probe (= pool source) and test images (n, C, S, S) uint8."""

    name: str
    x_probe: np.ndarray
    y_probe: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_pool: np.ndarray  # what the balanced-setting encoder trains on (labels never used)
    y_pool: np.ndarray


def load_bench_data(name: str, data_dir: str | None, cache_dir: str | None, seed: int = 0) -> BenchData:
    """Load one benchmark dataset (see the module docstring for the splits)."""
    from selector.eval import datasets as D

    if name == "mnist10k":
        x, y, _ = D.mnist10k(data_folder(data_dir) / "mnist10k.npz")
        x = nchw(x)
        test, rest = held_out(y, 200, seed)
        return BenchData(name, x[rest], y[rest], x[test], y[test], x, y)
    if name == "digits":
        x, y, _ = D.digits()
        x = nchw(x)
        test, rest = held_out(y, 30, seed)
        return BenchData(name, x[rest], y[rest], x[test], y[test], x[rest], y[rest])
    if name in ("cifar10", "cifar10-all"):
        xtr, ytr, xte, yte = cifar10_nchw(data_dir, cache_dir, 1000 if name == "cifar10" else None)
        return BenchData(name, xtr, ytr, xte, yte, xtr, ytr)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASET_NAMES)}")


def subsample(data: BenchData, per_class: int, seed: int) -> BenchData:
    """Keep a seeded balanced ``per_class`` items per class of the probe set; the pool becomes the same
    subset (the test split is kept whole)."""
    from selector.eval.pools import balanced_pool

    idx = balanced_pool(data.y_probe, per_class, np.random.default_rng(seed + 1))
    xp, yp = data.x_probe[idx], data.y_probe[idx]
    return BenchData(data.name, xp, yp, data.x_test, data.y_test, xp, yp)


def _sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize()


def score_embedding(emb_probe, y_probe, emb_test, y_test, k: int = 20, seed: int = 0) -> dict:
    """kNN and linear-probe accuracies, per-class accuracies of the linear probe and their p(V)."""
    from selector.eval.metrics import accuracy, balancedness_pv, per_class_accuracy
    from selector.eval.retrain import knn_classifier, linear_probe

    knn_pred = knn_classifier(emb_probe, y_probe, emb_test, k=k, seed=seed)
    lin_pred = linear_probe(emb_probe, y_probe, emb_test, seed=seed)
    classes = np.unique(y_test)
    pc = per_class_accuracy(y_test, lin_pred, classes)
    return {
        "knn_acc": accuracy(y_test, knn_pred),
        "linear_acc": accuracy(y_test, lin_pred),
        "linear_bal_acc": float(np.nanmean(pc)),
        "min_class_acc": float(np.nanmin(pc)),
        "pv": balancedness_pv(pc),
        "per_class_acc": ";".join(f"{int(c)}:{a:.4f}" for c, a in zip(classes, pc)),
    }


def run_one(data: BenchData, setting: str, loss: str, args, device) -> dict:
    """Train one encoder (dataset x setting x loss), embed, score; returns a CSV row."""
    from selector.eval.pools import long_tail_pool

    from selector.backbones import EncoderConfig
    from selector.embed import embed_array
    from selector.train import TrainConfig, train_encoder

    n_classes = int(np.unique(data.y_probe).shape[0])
    epochs = args.epochs
    if setting == "balanced":
        x_pool = data.x_pool
    else:
        idx = long_tail_pool(data.y_probe, args.lt_ratio, np.random.default_rng(args.seed))
        x_pool = data.x_probe[idx]
        if args.lt_epochs is not None:
            epochs = args.lt_epochs
        else:  # as many images seen as the balanced encoder
            epochs = max(1, int(round(args.epochs * data.x_pool.shape[0] / x_pool.shape[0])))
    c, s = int(x_pool.shape[1]), int(x_pool.shape[2])
    enc_cfg = EncoderConfig(arch=args.arch, in_channels=c, image_size=s)
    params = {"temperature": args.temperature}
    tcfg = TrainConfig(loss=loss, epochs=epochs, batch_size=args.batch_size, lr=args.lr, loss_params=params,
                       n_pseudo_labels=n_classes, seed=args.seed)
    n = x_pool.shape[0]
    bs = min(args.batch_size, n)
    n_images = epochs * max(1, n // bs) * bs
    log.info("%s/%s/%s: training %s on %d images for %d epochs", data.name, setting, loss, args.arch, n, epochs)
    _sync(device)
    t0 = time.perf_counter()
    ckpt = None
    if args.checkpoint_dir is not None:
        ckpt = Path(args.checkpoint_dir) / f"{data.name}-{setting}-{loss}-{args.arch}-e{epochs}-s{args.seed}.pt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    enc = train_encoder(x_pool, enc_cfg, tcfg, device, progress=args.progress, compile=args.compile,
                        checkpoint_path=ckpt)
    _sync(device)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    emb_probe = embed_array(enc, data.x_probe, device)
    emb_test = embed_array(enc, data.x_test, device)
    scores = score_embedding(emb_probe, data.y_probe, emb_test, data.y_test, k=args.k, seed=args.seed)
    eval_s = time.perf_counter() - t1
    row = {"dataset": data.name, "setting": setting, "loss": loss, "arch": args.arch, "epochs": epochs,
           "batch_size": bs, "n_pool": n, "n_probe": int(data.x_probe.shape[0]), "n_test": int(data.x_test.shape[0]),
           **scores, "train_s": train_s, "img_per_s": n_images / train_s, "eval_s": eval_s,
           "device": _device_name(device), "seed": args.seed}
    log.info("%s/%s/%s: kNN %.4f linear %.4f p(V) %.4f in %.1f s (%.0f img/s)", data.name, setting, loss,
             row["knn_acc"], row["linear_acc"], row["pv"], train_s, row["img_per_s"])
    return row


def measure_throughput(data: BenchData, arch: str, batch_size: int, steps: int, device, seed: int = 0) -> dict:
    """Images/s of SimCLR training steps (augmentation, forward, backward, optimizer) after a warm-up."""
    import torch

    from selector.backbones import EncoderConfig
    from selector.train import TrainConfig, train_encoder

    x = data.x_pool
    c, s = int(x.shape[1]), int(x.shape[2])
    bs = min(batch_size, x.shape[0])
    per_epoch = max(1, x.shape[0] // bs)
    enc_cfg = EncoderConfig(arch=arch, in_channels=c, image_size=s)
    cfg = TrainConfig(loss="simclr", epochs=int(np.ceil(steps / per_epoch)) + 1, batch_size=bs, seed=seed)
    train_encoder(x, enc_cfg, cfg, device, stop_after_steps=3)  # warm-up: allocator, kernels, cuDNN
    _sync(device)
    t0 = time.perf_counter()
    train_encoder(x, enc_cfg, cfg, device, stop_after_steps=steps)
    _sync(device)
    sec = time.perf_counter() - t0
    return {"dataset": data.name, "arch": arch, "image_size": s, "channels": c, "batch_size": bs, "steps": steps,
            "seconds": sec, "img_per_s": steps * bs / sec, "device": _device_name(device),
            "threads": torch.get_num_threads()}


def _device_name(device) -> str:
    import torch

    if getattr(device, "type", "") == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def _f(v, pct: bool = True) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "–"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def markdown_table(rows: list[dict]) -> str:
    """One line per dataset x loss: balanced-pool kNN / linear accuracy / p(V), then the LT-pool encoder's
    linear accuracy (balanced probe), worst-class accuracy and p(V); training time and images/s."""
    keyed: dict[tuple, dict] = {}
    for r in rows:
        keyed.setdefault((r["dataset"], r["loss"], r["arch"]), {})[r["setting"]] = r
    head = ("| dataset | loss | arch | epochs (bal/LT) | kNN % | linear % | p(V) | LT: kNN % | LT: linear % | "
            "LT: worst class % | LT: p(V) | train s (bal/LT) | img/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (ds, loss, arch), d in keyed.items():
        b, lt = d.get("balanced", {}), d.get("lt", {})
        ep = f"{b.get('epochs', '–')}/{lt.get('epochs', '–')}"
        ts = "/".join(f"{float(r['train_s']):.0f}" if r else "–" for r in (b, lt))
        ips = b.get("img_per_s") or lt.get("img_per_s")
        lines.append(f"| {ds} | {loss} | {arch} | {ep} | {_f(b.get('knn_acc'))} | {_f(b.get('linear_acc'))} | "
                     f"{_f(b.get('pv'), False)} | {_f(lt.get('knn_acc'))} | {_f(lt.get('linear_acc'))} | "
                     f"{_f(lt.get('min_class_acc'))} | "
                     f"{_f(lt.get('pv'), False)} | {ts} | {float(ips):.0f} |")
    return "\n".join(lines)


def throughput_table(rows: list[dict]) -> str:
    lines = ["| dataset | arch | px | batch | steps | seconds | img/s | device |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['arch']} | {r['image_size']} | {r['batch_size']} | {r['steps']} | "
                     f"{float(r['seconds']):.1f} | {float(r['img_per_s']):.0f} | {r['device']} |")
    return "\n".join(lines)


@click.command("bench_encoders", help=help_text(__doc__))
@list_option("--datasets", default=("mnist10k", "cifar10"), type=click.Choice(DATASET_NAMES), show_default=True)
@list_option("--losses", help="names of selector.losses.LOSSES (default: all)")
@list_option("--settings", default=SETTINGS, type=click.Choice(SETTINGS), show_default=True)
@click.option("--epochs", type=int, default=50, show_default=True, help="epochs of the balanced-pool encoder")
@click.option("--lt-epochs", type=int, default=None,
              help="epochs of the LT-pool encoder (default: as many images seen as the balanced run)")
@click.option("--lt-ratio", type=float, default=100.0, show_default=True)
@click.option("--arch", default="resnet-small", type=click.Choice(("resnet-small", "resnet18")), show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--temperature", type=float, default=0.2, show_default=True)
@click.option("--k", type=int, default=20, show_default=True, help="neighbours of the kNN probe")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="torch and BLAS CPU threads (default: the libraries' own)")
@click.option("--compile", is_flag=True, help="torch.compile the encoder")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-dir", default=None,
              help="folder with mnist10k.npz and cifar10-jpeg.tar.gz (default: <repo>/../shared/data)")
@click.option("--cache-dir", default=None, help="where decoded CIFAR-10 arrays are cached")
@click.option("--out", default="results/bench_encoders.csv", show_default=True)
@click.option("--quick", is_flag=True,
              help="smoke run: 40 digits per class (8 px), simclr and kcl, 1 epoch, batch 64, LT ratio 10, "
                   "CPU, 1 thread")
@click.option("--pool-per-class", type=int, default=None,
              help="keep a seeded balanced subset of this many probe/pool images per class")
@click.option("--progress", is_flag=True)
@click.option("--checkpoint-dir", default=None,
              help="checkpoint each encoder here (every 2 min and at the end) and resume from it: a run killed by a "
                   "time limit continues where it stopped when the same command runs again (train_s then counts "
                   "only the last call)")
@click.option("--prepare-only", is_flag=True, help="load (and cache) the datasets, then stop")
@click.option("--throughput", is_flag=True, help="only time SimCLR training steps for each of --archs on each dataset")
@list_option("--archs", default=("resnet-small",), type=click.Choice(("resnet-small", "resnet18")), show_default=True)
@click.option("--steps", type=int, default=20, show_default=True, help="timed steps per --throughput measurement")
@list_option("--merge", type=click.Path(exists=True, dir_okay=False), metavar="CSV...",
             help="merge these result CSVs into --out and print the table; no training")
def cli(**params) -> int:
    args = settings(SimpleNamespace(**params))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.merge:
        rows = [r for path in args.merge for r in read_rows(path)]
        write_csv(rows, args.out, FIELDS)
        print(markdown_table(rows))
        return 0

    import contextlib

    import torch

    old_threads = torch.get_num_threads()
    limits = contextlib.nullcontext()
    if args.threads:
        # torch's and the BLAS (numpy/scikit-learn) thread pools: more threads than free cores make both thrash
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        limits = threadpool_limits(args.threads)
    try:
        with limits:
            return _run(args)
    finally:
        torch.set_num_threads(old_threads)


def settings(args: SimpleNamespace) -> SimpleNamespace:
    """The run's settings from the command line: the losses checked (default: all), and ``--quick``'s sizes."""
    from selector.losses import LOSSES

    unknown = [name for name in args.losses if name not in LOSSES]
    if unknown:
        raise click.BadParameter(f"unknown loss {unknown[0]!r}; choose from {', '.join(LOSSES)}", param_hint="--losses")
    args.datasets, args.settings, args.archs = list(args.datasets), list(args.settings), list(args.archs)
    args.losses = list(args.losses) or (None if args.quick else list(LOSSES))
    if args.quick:
        args.datasets = ["digits"]
        args.losses = args.losses or ["simclr", "kcl"]
        args.epochs, args.batch_size, args.pool_per_class = 1, 64, 40
        args.lt_ratio = min(args.lt_ratio, 10.0)
        if args.device == "auto":
            args.device = "cpu"
        if args.threads is None:  # one thread: a smoke run is too small to gain from more
            args.threads = 1
    return args


def _run(args) -> int:
    from selector.device import resolve_device

    device = resolve_device(args.device)
    data = {}
    for name in args.datasets:
        t0 = time.perf_counter()
        data[name] = load_bench_data(name, args.data_dir, args.cache_dir, args.seed)
        if args.pool_per_class:
            data[name] = subsample(data[name], args.pool_per_class, args.seed)
        d = data[name]
        log.info("loaded %s: pool %s, probe %s, test %s in %.1f s", name, d.x_pool.shape, d.x_probe.shape,
                 d.x_test.shape, time.perf_counter() - t0)
    if args.prepare_only:
        return 0

    if args.throughput:
        rows = []
        for name in args.datasets:
            for arch in args.archs:
                r = measure_throughput(data[name], arch, args.batch_size, args.steps, device, args.seed)
                log.info("throughput %s %s: %.0f img/s", name, arch, r["img_per_s"])
                rows.append(r)
        write_csv(rows, args.out, TP_FIELDS)
        print(throughput_table(rows))
        return 0

    rows = []
    for name in args.datasets:
        for setting in args.settings:
            for loss in args.losses:
                rows.append(run_one(data[name], setting, loss, args, device))
                write_csv(rows, args.out, FIELDS)  # after every run: a killed job keeps what finished
    print(markdown_table(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv)


if __name__ == "__main__":
    sys.exit(main())
