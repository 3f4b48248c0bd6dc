"""``selector eval``: compare strategies on a labeled dataset with the project's own encoder.

The encoder is trained (without labels) on the dataset's training images, exactly as ``selector
select`` would train it on a user's pool, and cached; the training images and the held-out test
images are embedded with it; then :func:`selector.eval.loop.run_eval` builds the pools, lets each strategy
choose, retrains on the chosen labels only and scores on the balanced test split.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

log = logging.getLogger(__name__)

DATASETS = ("digits", "mnist10k", "notmnist10k", "cifar10")


def _strategy_names() -> list[str]:
    from selector.strategies import STRATEGIES  # here, not at the top: `selector --help` stays light

    return sorted(STRATEGIES)


def _int_list(text: str, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated whole numbers, got {text!r}") from None
    if not vals or min(vals) <= 0:
        raise click.BadParameter(f"{what} must be positive whole numbers, got {text!r}")
    return vals


def load_split(data: str, n_train_per_class: int | None, n_test_per_class: int, seed: int, cache: Path,
               data_dir: Path | None):
    """(x_train, y_train, x_test, y_test, name): CIFAR-10 uses its official test split; the others
    hold out a balanced ``n_test_per_class`` per class (seeded)."""
    import numpy as np

    from .datasets import cifar10, load_dataset
    from .pools import train_test_split_balanced

    if data == "cifar10":
        tar = None if data_dir is None else data_dir / "cifar10-jpeg.tar.gz"
        xtr, ytr, name = cifar10("train", n_per_class=n_train_per_class, tar_path=tar, cache_dir=cache)
        xte, yte, _ = cifar10("test", tar_path=tar, cache_dir=cache)
        return xtr, ytr, xte, yte, name
    kw = {} if data == "digits" or data_dir is None else {"path": data_dir / f"{data}.npz"}
    x, y, name = load_dataset(data, **kw)
    train, test = train_test_split_balanced(y, n_test_per_class, np.random.default_rng(seed))
    return x[train], y[train], x[test], y[test], name


def embed_dataset(x_train, x_test, name: str, cache: Path, encoder, epochs, loss, arch, device, seed, progress):
    """Train (or load) the encoder on the unlabeled training images; embed train and test."""
    from selector import Selector

    cache.mkdir(parents=True, exist_ok=True)
    tr, te = cache / f"{name}-train.npz", cache / f"{name}-test.npz"
    for path, x in ((tr, x_train), (te, x_test)):
        if not path.exists():
            import numpy as np

            from selector.atomic import atomic_write

            with atomic_write(path, "wb") as f:
                np.savez(f, x=x)
    sel = Selector(encoder=encoder, strategy="random", seed=seed, device=device, epochs=epochs, loss=loss,
                   arch=arch, cache_dir=cache, progress=progress).fit(tr)
    return sel.embeddings_, sel.embed(te), sel


@click.command("eval")
@click.option("--data", type=click.Choice(DATASETS), default="mnist10k", show_default=True,
              help="Labeled dataset (from ../shared/data, or scikit-learn's digits).")
@click.option("--pool", "pool_spec", default="balanced", show_default=True,
              help="Pool built from the training split: all, balanced[:N], long-tail:R[:shuffled], subset:0,1,2.")
@click.option("--strategies", "strategy_names", default=lambda: ",".join(_strategy_names()),
              show_default="all registered strategies",
              help="Comma-separated strategy names.")
@click.option("--budgets", default="10,20,50,100", show_default=True, help="Comma-separated budgets.")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="Seeds 0..N-1.")
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Rounds of BUDGET each; each round sees the previous rounds' labels.")
@click.option("--retrainer", type=click.Choice(["linear", "knn", "finetune"]), default="linear", show_default=True,
              help="Classifier retrained on the chosen labels: linear probe or kNN on the frozen embedding, or "
                   "finetune (the encoder fine-tuned end to end with cross-entropy on the chosen images; slower).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder for results.csv, summary.md and the plots.")
@click.option("--encoder", type=click.Path(path_type=Path), default=None, help="Use this encoder checkpoint.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Encoder training epochs [default: auto].")
@click.option("--loss", default="simclr", show_default=True, help="Contrastive loss for the encoder.")
@click.option("--arch", default="resnet-small", show_default=True, help="Encoder architecture.")
@click.option("--train-per-class", type=click.IntRange(min=1), default=1000, show_default=True,
              help="CIFAR-10: training images per class (the pool the encoder is trained on).")
@click.option("--test-per-class", type=click.IntRange(min=1), default=200, show_default=True,
              help="Datasets without a test split: held-out balanced test images per class.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Folder holding mnist10k.npz, notmnist10k.npz, cifar10-jpeg.tar.gz [default: ../shared/data].")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Encoder/embedding/dataset cache [default: OUT/.selector-cache].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars (they show only when stderr is a terminal).")
def eval_cmd(data, pool_spec, strategy_names, budgets, seeds, rounds, retrainer, out, encoder, epochs, loss, arch,
             train_per_class, test_per_class, data_dir, cache_dir, device, quiet):
    """Compare strategies: hide the labels, let each strategy choose, retrain on the chosen labels,
    score on a balanced test split; writes a tidy CSV, a markdown table and PNG plots."""
    from .loop import run_eval
    from .pools import parse_pool_spec
    from .report import write_report

    progress = not quiet and sys.stderr.isatty()  # no bars in logs
    names = [s.strip() for s in strategy_names.split(",") if s.strip()]
    unknown = [s for s in names if s not in _strategy_names()]
    if unknown:
        raise click.BadParameter(f"unknown strategies {', '.join(unknown)}; choose from {', '.join(_strategy_names())}",
                                 param_hint="--strategies")
    budget_list = _int_list(budgets, "--budgets")
    try:
        parse_pool_spec(pool_spec)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--pool") from None
    out.mkdir(parents=True, exist_ok=True)
    cache = cache_dir if cache_dir is not None else out / ".selector-cache"
    t0 = time.perf_counter()
    try:
        xtr, ytr, xte, yte, name = load_split(data, train_per_class if data == "cifar10" else None, test_per_class,
                                              0, cache, data_dir)
        etr, ete, sel = embed_dataset(xtr, xte, name, cache, encoder, epochs, loss, arch, device, 0, progress)
        retrain = retrainer
        if retrainer == "finetune":
            from selector.pool import load_pool

            from .finetune import finetune_retrainer

            test_pool = load_pool(cache / f"{name}-test.npz", image_size=sel.pool_.size, channels=sel.pool_.channels)
            retrain = finetune_retrainer(sel.encoder_, sel.pool_.images, etr, test_pool.images, ete,
                                         device=sel.encoder_.head[0].weight.device)
            retrain.__name__ = "finetune"
        rows = run_eval(etr, ytr, ete, yte, strategies=names, budgets=budget_list, seeds=list(range(seeds)),
                        pool_spec=pool_spec, rounds=rounds, retrainer=retrain, progress=progress, dataset=name)
        files = write_report(rows, out, title=f"{name}, pool {pool_spec}")
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
    click.echo(f"dataset:  {name}: {len(xtr)} train images (encoder trained on them without labels), "
               f"{len(xte)} test images")
    click.echo(f"encoder:  {encoder or f'{arch}, {loss}, {sel.train_config(len(xtr)).epochs} epochs'}")
    click.echo(f"runs:     {len(rows)} rows ({len(names)} strategies x {len(budget_list)} budgets x {seeds} seeds"
               f"{f' x {rounds} rounds' if rounds > 1 else ''})")
    click.echo(f"written:  {', '.join(str(f) for f in files.values())}")
    click.echo(f"time:     {time.perf_counter() - t0:.1f} s")
