"""``selector select``: choose BUDGET images of a pool (or of your own embeddings) and write them for the
annotators. Parses the options, calls :func:`selector.workflow.select_from_pool` or
:func:`selector.workflow.select_from_embeddings`, writes the selection and prints the summary."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from .errors import Command
from .options import (
    DistOptions,
    EncoderOptions,
    OptionGroup,
    OutputOptions,
    RunOptions,
    cache_folder,
    dist_options,
    echo_summary,
    encoder_options,
    output_options,
    progress_bars,
    run_options,
    setup_logging,
)
from .torchrun import RankErrors, agree, is_main, start_distributed, under_torchrun
from .types import Budget, LazyChoice, names_of


@dataclass(frozen=True)
class ChoiceOptions:
    """How many, chosen how."""

    budget: int
    strategy: str
    params: tuple[str, ...]
    allow_smaller: bool


@dataclass(frozen=True)
class SourceOptions:
    """Where the embedding comes from: a pool (and an encoder file, the cache) or an embeddings file."""

    pool: Path | None
    embeddings: Path | None
    ids: Path | None
    normalize: bool
    image_root: Path | None
    encoder: Path | None
    cache_dir: Path | None
    batch_size: int
    embed_chunk: int | None


@dataclass(frozen=True)
class LabelOptions:
    """The labels of earlier rounds and the images sent out."""

    labeled: tuple[Path, ...]
    exclude: tuple[Path, ...]
    skipped: str


choice_options = OptionGroup(
    ChoiceOptions, "choice",
    click.option("--budget", "-b", type=Budget(), required=True, help="How many images to choose for labeling."),
    click.option("--strategy", "-s", type=LazyChoice(names_of("selector.strategies", "STRATEGIES")),
                 default="typcover", show_default=True,
                 help="Selection strategy (the default, typcover, was chosen by benchmarks/strategy_matrix.py; "
                      "balanced evens out known labels across classes)."),
    click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                 help="A hyperparameter of the strategy, repeatable: --param oversample=3 (typcover: fewer, larger "
                      "clusters), --param explore=0 (balanced without exploration), --param k_nn=10."),
    click.option("--allow-smaller", is_flag=True, help="If the budget exceeds the unlabeled pool, take all of it."),
)

source_options = OptionGroup(
    SourceOptions, "source",
    click.option("--pool", "-p", type=click.Path(path_type=Path), default=None,
                 help="Folder of images (searched recursively) or an .npz with an array x."),
    click.option("--embeddings", type=click.Path(path_type=Path), default=None,
                 help="Select from your own embeddings instead of a pool: .npy, .npz (embeddings [+ ids]), "
                      "Lightly's embeddings .csv, .pt/.pth (tensor or dict), .parquet."),
    click.option("--ids", type=click.Path(path_type=Path), default=None,
                 help="With --embeddings: a text file of n item ids (paths), one per line [default: the ids in "
                      "the file, else row numbers]."),
    click.option("--normalize", is_flag=True,
                 help="With --embeddings: scale rows to unit length (the encoder's embeddings are; others are "
                      "warned about)."),
    click.option("--image-root", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
                 help="With --embeddings: the folder the ids are relative to (image URLs, CVAT sizes, absolute "
                      "paths)."),
    click.option("--encoder", type=click.Path(path_type=Path), default=None,
                 help="Use this encoder checkpoint (from 'selector train') instead of training one."),
    click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                 help="Where trained encoders and embeddings are cached, keyed by content [default: the user "
                      "cache folder, $XDG_CACHE_HOME/selector or ~/.cache/selector; see 'selector cache info']."),
    click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True,
                 help="Training batch size."),
    click.option("--embed-chunk", type=click.IntRange(min=1), default=None, hidden=True,
                 help="Images per embedding-cache file (the unit of resume after an interrupt)."),
)

label_options = OptionGroup(
    LabelOptions, "labels",
    click.option("--labeled", type=click.Path(path_type=Path), multiple=True,
                 help="Already-labeled files to exclude (.csv path[,label], .txt, .jsonl, Label Studio .json, "
                      "CVAT .xml); repeatable (one per round): their union, an image labeled differently in two "
                      "files is an error."),
    click.option("--exclude", type=click.Path(path_type=Path), multiple=True,
                 help="Files of images sent to annotators but not annotated yet (e.g. the last round's tasks.json "
                      "or selection.csv): never chosen again, not counted as labeled; repeatable."),
    click.option("--skipped", type=click.Choice(["seen", "unseen"]), default="seen", show_default=True,
                 help="Label Studio tasks in a --labeled export without a finished annotation (skipped, or not "
                      "annotated yet): seen = never chosen again; unseen = may be chosen again."),
)

#: Formats that are one text file, which `-o -` can stream, and the suffix each is written with.
STDOUT_FORMATS = {"csv": ".csv", "jsonl": ".jsonl", "paths": ".txt"}


@click.command("select", cls=Command, inputs=("pool", "embeddings"))
@choice_options
@source_options
@label_options
@output_options
@dist_options
@encoder_options
@run_options
def select_cmd(choice: ChoiceOptions, source: SourceOptions, labels: LabelOptions, output: OutputOptions,
               dist: DistOptions, embedding: EncoderOptions, run: RunOptions):
    """Choose BUDGET images of a pool to send to annotators and write them to --out."""
    setup_logging(run.verbose, run.quiet)
    if (source.pool is None) == (source.embeddings is None):
        raise click.UsageError("give exactly one of --pool DIR or --embeddings FILE.npy")
    if source.embeddings is None and (source.normalize or source.image_root is not None or source.ids is not None):
        raise click.UsageError("--ids, --normalize and --image-root go with --embeddings")
    names = _parse_class_names(output.class_names)
    from selector.strategies import get_strategy
    from selector.strategies.registry import parse_params

    try:  # values checked by the constructor, before any slow work
        strat = get_strategy(choice.strategy, **parse_params(choice.strategy, choice.params))
    except (ValueError, TypeError) as e:
        raise click.BadParameter(str(e), param_hint="--param") from None
    to_stdout = str(output.out) == "-"
    if to_stdout and output.as_json:
        raise click.UsageError("--json and -o - both write to stdout; give --out a file name")
    suffix = _stdout_suffix(output.fmt) if to_stdout else None
    if source.embeddings is not None:
        if dist.nproc is not None:
            raise click.UsageError("--nproc trains and embeds a pool on several processes; with --embeddings "
                                   "there is nothing to share")
        if under_torchrun() and os.environ.get("RANK", "0") != "0":
            return  # selecting from given embeddings is rank 0's work alone
    d = start_distributed(dist, run.device) if source.embeddings is None else None
    with RankErrors(d):
        from selector import workflow

        if not to_stdout:
            agree(d, lambda: workflow.check_output(output.out, output.force, export=True, fmt=output.fmt),
                  main_only=True)
        t0 = time.perf_counter()
        label_files = workflow.LabelFiles(labeled=labels.labeled, exclude=labels.exclude, skipped=labels.skipped,
                                          document_root=output.document_root,
                                          url_prefix=None if output.url_prefix in (None, "none") else output.url_prefix)
        quiet = run.quiet or not is_main(d)
        if source.embeddings is not None:
            result, rows = workflow.select_from_embeddings(
                source.embeddings, choice.budget, strat, ids=source.ids, normalize=source.normalize,
                image_root=source.image_root, labels=label_files, allow_smaller=choice.allow_smaller, seed=run.seed)
        else:
            from selector import Selector

            sel = Selector(encoder=source.encoder, strategy=strat, seed=run.seed, device=run.device,
                           epochs=embedding.epochs, loss=embedding.loss, arch=embedding.arch,
                           batch_size=source.batch_size, image_size=embedding.image_size,
                           cache_dir=cache_folder(source.cache_dir), on_bad=run.on_bad_image,
                           progress=progress_bars(quiet), embed_chunk=source.embed_chunk, dist=d,
                           **embedding.selector_kwargs())
            result, rows = workflow.select_from_pool(sel, source.pool, choice.budget, labels=label_files,
                                                     reading=run.reading(), allow_smaller=choice.allow_smaller)
        if result is None:  # a rank other than 0: its share of training and embedding is done
            return
        export_kw = dict(class_names=names, predictions=not output.no_predictions,
                         predict_groups=output.predict_groups, round=output.round_,
                         document_root=output.document_root)
        if output.url_prefix is not None:
            export_kw["url_prefix"] = None if output.url_prefix == "none" else output.url_prefix
        if to_stdout:
            data = workflow.selection_bytes(result, output.fmt, suffix, **export_kw)
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            files = ["<stdout>"]
        else:
            files = workflow.write_selection(result, output.out, output.fmt, force=output.force, **export_kw)
    from selector.summary import result_rows, summary_json

    seconds = time.perf_counter() - t0
    rows += result_rows(result, files, seconds)
    if output.as_json:
        click.echo(json.dumps(summary_json(rows, result, files, seconds), default=str))
    else:
        echo_summary(rows, err=to_stdout)


def _stdout_suffix(fmt: str | None) -> str:
    key = fmt or "csv"
    if key not in STDOUT_FORMATS:
        raise click.BadParameter(f"-o - writes {', '.join(STDOUT_FORMATS)}; {key} is written to a file",
                                 param_hint="--format")
    return STDOUT_FORMATS[key]


def _parse_class_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise click.BadParameter(f"expected distinct, non-empty names separated by commas, got {text!r}",
                                 param_hint="--class-names")
    return names
