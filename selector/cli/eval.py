"""``selector eval``: compare strategies on a labeled dataset. Parses the options, calls
:func:`selector.eval.experiment.run_experiment` and prints what it did."""
from __future__ import annotations

import time
from pathlib import Path

import click

from selector.eval.experiment import DATASETS

from .errors import Command
from .options import EncoderOptions, echo_summary, encoder_options, progress_bars, setup_logging


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


@click.command("eval", cls=Command, inputs=("data",))
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
@click.option("--encoder", type=click.Path(path_type=Path), default=None,
              help="Use this encoder checkpoint (from 'selector train') instead of the --backbone.")
@encoder_options
@click.option("--train-per-class", type=click.IntRange(min=1), default=1000, show_default=True,
              help="CIFAR-10: training images per class (what the strategies choose from).")
@click.option("--test-per-class", type=click.IntRange(min=1), default=200, show_default=True,
              help="Datasets without a test split: held-out balanced test images per class.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Folder holding mnist10k.npz, notmnist10k.npz, cifar10-jpeg.tar.gz [default: ../shared/data].")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Encoder/embedding/dataset cache [default: OUT/.selector-cache].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress and no info messages (progress is a bar on a terminal, else a log line every 30 s "
                   "or tenth of the work).")
def eval_cmd(data, pool_spec, strategy_names, budgets, seeds, rounds, retrainer, out, encoder,
             embedding: EncoderOptions, train_per_class, test_per_class, data_dir, cache_dir, device, verbose, quiet):
    """Compare strategies: hide the labels, embed the images as 'selector select' does (--backbone auto by
    default), let each strategy choose, retrain on the chosen labels, score on a balanced test split; writes a
    tidy CSV, a markdown table and PNG plots."""
    setup_logging(verbose, quiet)
    from selector.eval.experiment import run_experiment
    from selector.eval.pools import parse_pool_spec

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
    t0 = time.perf_counter()
    ex = run_experiment(data, out, strategies=names, budgets=budget_list, seeds=seeds, pool_spec=pool_spec,
                        rounds=rounds, retrainer=retrainer, encoder=encoder, epochs=embedding.epochs,
                        loss=embedding.loss, arch=embedding.arch, image_size=embedding.image_size,
                        train_per_class=train_per_class, test_per_class=test_per_class, data_dir=data_dir,
                        cache_dir=cache_dir, device=device, progress=progress_bars(quiet),
                        **embedding.selector_kwargs())
    runs = (f"{len(ex.rows)} rows ({len(names)} strategies x {len(budget_list)} budgets x {seeds} seeds"
            f"{f' x {rounds} rounds' if rounds > 1 else ''})")
    echo_summary([("dataset", f"{ex.name}: {ex.n_train} training images (labels hidden), {ex.n_test} test images"),
                  ("encoder", ex.encoder), ("runs", runs),
                  ("written", ", ".join(str(f) for f in ex.files.values())),
                  ("time", f"{time.perf_counter() - t0:.1f} s")])
