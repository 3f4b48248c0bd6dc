"""Command line: ``selector select``, ``selector train``, ``selector embed``, ``selector demo-pool``.

A thin layer over :class:`selector.api.Selector`: it parses options, turns every known failure into a
one-line ``Error: ...`` with exit status 1, and prints the summary. Paths and I/O live here.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import click

from .clitypes import LazyChoice, LazyHelpOption, names_of, text_of
from .device import DEVICES

# numpy, torch, faiss and the strategies load inside the commands (LazyChoice for option choices), so
# that --help, --version and shell completion stay fast.

log = logging.getLogger("selector")

CACHE_DIRNAME = ".selector-cache"


def _known_errors() -> tuple[type[BaseException], ...]:
    from .distributed import DistributedError
    from .formats import ExportError, LabelFileError
    from .pool import PoolError
    from .checkpoint import CheckpointError
    from selector.strategies import SelectionError

    return (PoolError, CheckpointError, SelectionError, LabelFileError, ExportError, DistributedError, ValueError,
            OSError)


def _setup_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr: warnings and errors by default and with --quiet, info with -v, debug with -vv."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)


def _progress(quiet: bool) -> bool:
    """Progress bars only on a terminal: a redirected stderr (a log file, CI) gets none."""
    return not quiet and sys.stderr.isatty()


class Budget(click.ParamType):
    """A positive whole number, with a clear message for anything else."""

    name = "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            n = value
        else:
            try:
                n = int(str(value).strip())
            except ValueError:
                self.fail(f"budget must be a whole number, got {value!r}", param, ctx)
        if n <= 0:
            self.fail(f"budget must be positive, got {n}", param, ctx)
        return n


def _check_out(out: Path, force: bool, export_format: bool = False, fmt: str | None = None,
               embeddings: bool = False) -> None:
    """Refuse an output before any work: any file the run will write (``selector.formats.output_paths``:
    the main file and its side files) exists without --force or is a folder, the suffix is unknown, or
    the folder is missing or not writable (tried by creating a temporary file there)."""
    from .atomic import OutputExistsError, check_outputs
    from .formats import ExportError, format_for, output_paths

    try:
        check_outputs([out], force)
        paths = [out]
        if export_format:
            try:
                paths = output_paths(out, format_for(out, fmt))
            except ExportError as e:
                raise click.ClickException(str(e)) from e
        elif embeddings:
            paths = output_paths(out, "embeddings")
        check_outputs(paths, force)
    except OutputExistsError as e:
        raise click.ClickException(str(e)) from e
    if not out.parent.is_dir():
        raise click.ClickException(f"output folder {out.parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise click.ClickException(f"output folder {out.parent} is not writable: {e.strerror or e}") from e


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="selector")
def main() -> None:
    """Pick which images to label: a contrastive encoder trained on the pool, FAISS clustering and a
    class-balanced, typical and diverse choice.

    \b
    Start with:  selector demo-pool demo_pool && selector select --budget 50 --pool demo_pool
    """


common_pool_options = [
    click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                 help="Where to train and embed: auto uses a CUDA GPU when present."),
    click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                 help="Seeds training, k-means and the strategy: the same seed gives the same selection."),
    click.option("--on-bad-image", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
                 help="Unreadable image files: skip them with a warning (counted in the summary) or stop."),
    click.option("--workers", type=click.IntRange(min=0), default=None,
                 help="Processes decoding images [default: from the CPU count]; 0 decodes in this process "
                      "(no --decode-timeout)."),
    click.option("--decode-timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
                 help="Seconds one image may take to decode before it counts as unreadable."),
    click.option("--max-pixels", type=click.IntRange(min=1), default=89_478_485, show_default=True,
                 help="Larger images are refused as unreadable (decompression-bomb guard)."),
    click.option("--follow-links", is_flag=True, expose_value=False,
                 callback=lambda ctx, param, value: ctx.meta.__setitem__("follow_links", value),
                 help="Also read folders that symbolic links in the pool lead to outside it (/proc, /sys "
                      "and /dev are never read)."),
    click.option("-v", "--verbose", count=True, help="More log output (-vv for debug)."),
    click.option("-q", "--quiet", is_flag=True,
                 help="No progress bars and no info messages; warnings, errors and the result still show "
                      "(progress bars show only when stderr is a terminal)."),
]


def pool_options(f):
    for opt in reversed(common_pool_options):
        f = opt(f)
    return f


def _meta(key: str):
    """A click callback storing an option's value in ``ctx.meta[key]`` (options shared by several
    commands without a parameter in each signature); read back with :func:`_backbone_kwargs`."""
    def store(ctx, param, value):
        ctx.meta[key] = value
        return value

    return store


def _check_backbone_option(ctx, param, value):
    if value is not None:
        from .encoding import check_backbone

        try:
            check_backbone(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    ctx.meta["backbone"] = value
    return value


def backbone_options(f):
    """--backbone, --backbone-mode, --weights, --backbone-size (values in ctx.meta, see _backbone_kwargs)."""
    opts = [
        click.option("--backbone", default=None, metavar="NAME", expose_value=False, callback=_check_backbone_option,
                     cls=LazyHelpOption, more=text_of("selector.backbones", "describe_backbones"),
                     help="Encoder: auto (chosen from the pool's kind; the reason is printed) [default: --arch], "
                          "or one of the registered backbones:"),
        click.option("--backbone-mode", type=click.Choice(["auto", "frozen", "finetune"]), default="auto",
                     show_default=True, expose_value=False, callback=_meta("backbone_mode"),
                     help="frozen: a pretrained backbone's features as they are (no training); finetune: "
                          "contrastive training on the pool from its weights; auto: frozen for a pretrained "
                          "backbone (finetune in selector train), trained for those trained on the pool (--arch)."),
        click.option("--weights", type=click.Path(path_type=Path), default=None, expose_value=False,
                     callback=_meta("weights"),
                     help="Weights file of a pretrained backbone [default: the package's (efficientnet-lite0) "
                          "or torchvision's cache (torchvision:NAME)]."),
        click.option("--backbone-size", type=click.IntRange(min=32, max=512), default=None, expose_value=False,
                     callback=_meta("backbone_size"),
                     help="Input side of a pretrained backbone; the pool's images are resized to it [default: 96]."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _backbone_kwargs(train: bool = False) -> dict:
    """Selector keyword arguments of the options of :func:`backbone_options` and --time-budget."""
    meta = click.get_current_context().meta
    mode = meta.get("backbone_mode", "auto")
    if train and mode == "auto":
        mode = "finetune"  # selector train trains: a pretrained backbone is fine-tuned
    budget = meta.get("time_budget")
    out = {"backbone": meta.get("backbone"), "backbone_mode": mode, "weights": meta.get("weights"),
           "backbone_size": meta.get("backbone_size"), "time_budget": budget, "flip": meta.get("flip", True),
           "autoencoder": meta.get("autoencoder") or 0.0}
    if not train:
        out["pixel_view"] = meta.get("pixel_view")
    return out


def dist_options(f):
    """--nproc and --dist-timeout (values in ctx.meta, read by :func:`_start_distributed`)."""
    f = click.option("--dist-timeout", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
                     expose_value=False, callback=_meta("dist_timeout"),
                     help="Several processes: how long one waits for the others (joining, exchanging results) "
                          "before the run stops with an error [default: 1800, or $SELECTOR_DIST_TIMEOUT_S].")(f)
    f = click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N", expose_value=False,
                     callback=_meta("nproc"),
                     help="Train and embed with N processes of this machine under torchrun (N CPU processes "
                          "with gloo, or N GPUs with NCCL; the batch size is per process). Several machines: "
                          "run torchrun -m selector yourself (docs/distributed.md).")(f)
    return f


def _start_distributed(device: str):
    """--nproc: run this same command under torchrun, exit with its status. Under torchrun: join the
    process group (a :class:`selector.distributed.Dist`; None for one process). The ranks die with
    torchrun; only rank 0 logs below errors."""
    ctx = click.get_current_context()
    from .launch import under_torchrun

    nproc = ctx.meta.get("nproc")
    if nproc is not None:
        if under_torchrun():
            raise click.UsageError("--nproc starts torchrun; in a process torchrun started, leave it out")
        from .launch import describe_status, run_torchrun, strip_option

        status = run_torchrun(nproc, strip_option(sys.argv[1:], "--nproc"))
        if status != 0:
            raise click.ClickException(f"the run of {nproc} processes under torchrun failed ({describe_status(status)}); "
                                       "the lines above say which process and why")
        ctx.exit(0)
    if not under_torchrun():
        return None
    if "TORCHELASTIC_RUN_ID" in os.environ:  # die with torchrun's agent, however it ends
        from .supervise import die_with_parent

        die_with_parent(os.getppid())
    from .distributed import DistributedError, init

    try:
        dist = init(device, ctx.meta.get("dist_timeout"))
    except (DistributedError, ValueError) as e:
        raise click.ClickException(_one_line(e)) from e
    if dist is None:
        return None
    ctx.call_on_close(dist.close)
    if not dist.main:
        logging.getLogger().setLevel(logging.ERROR)  # warnings once, from rank 0
    return dist


def _is_main(dist) -> bool:
    return dist is None or dist.main


def _agree(dist, fn, main_only: bool = False):
    """``fn()``; with several processes every rank runs it (rank 0 alone with ``main_only``) and a
    failure on any rank stops every rank with the same one line, rank 0 printing it."""
    if dist is None:
        return fn()
    from .distributed import DistributedError

    try:
        return dist.on_main(fn) if main_only else dist.agree(fn)
    except click.ClickException:
        raise
    except DistributedError as e:
        if e.shared:
            click.get_current_context().exit(1)  # rank 0 says it
        raise click.ClickException(str(e)) from e
    except _known_errors() as e:
        raise click.ClickException(_one_line(e)) from e


class _RankErrors:
    """Errors of ranks other than 0: those every rank shares are left to rank 0 (exit status 1, no line);
    the others are printed with the rank."""

    def __init__(self, dist):
        self.dist = dist

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if self.dist is None or self.dist.main or not isinstance(e, click.ClickException):
            return False
        from .distributed import DistributedError

        cause = e.__cause__
        if isinstance(cause, DistributedError) and cause.shared:
            raise click.exceptions.Exit(1)
        msg = e.format_message()
        if not msg.startswith("rank "):
            raise click.ClickException(f"rank {self.dist.rank}: {msg}") from e
        return False


def encoder_options(f):
    f = click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MINUTES",
                     expose_value=False, callback=_meta("time_budget"),
                     help="Train for this many minutes: the first steps are timed and the number of steps is "
                          "planned so the whole learning-rate schedule ends within it (--epochs then caps it). "
                          "The summary says what was done.")(f)
    f = backbone_options(f)
    f = click.option("--autoencoder", type=click.FloatRange(min=0), default=None, metavar="WEIGHT", expose_value=False,
                     callback=_meta("autoencoder"),
                     help="With --loss supcon-spread: add a class-conditional autoencoder (a small decoder from the "
                          "embedding and the known class to the 16 px view; Chen et al., ICML 2022) with this "
                          "weight; 1 is the paper's [default: none].")(f)
    f = click.option("--flip/--no-flip", default=True, show_default=True, expose_value=False, callback=_meta("flip"),
                     help="Horizontal flips when training on the pool; --no-flip for digits, letters or other "
                          "pools where a mirrored image is another class.")(f)
    f = click.option("--pixel-view/--no-pixel-view", default=None, expose_value=False, callback=_meta("pixel_view"),
                     help="Concatenate PCA-50 of the pixels to the encoder's embedding (each part L2-normalised) "
                          "[default: on with the automatic backbone, off for one named by --backbone/--arch/--encoder].")(f)
    f = click.option("--arch", type=LazyChoice(names_of("selector.backbones", "ARCHS", sort=False)), default=None,
                     cls=LazyHelpOption, more=text_of("selector.backbones", "describe_backbones", "trained"),
                     help="Encoder architecture trained on the pool [default: --backbone auto for select; "
                          "resnet-small for train]:")(f)
    f = click.option("--loss", type=LazyChoice(names_of("selector.losses", "LOSSES")), default="simclr", show_default=True,
                     help="Contrastive objective for training the encoder on the pool.")(f)
    f = click.option("--epochs", type=click.IntRange(min=1), default=None,
                     help="Training epochs [default: about 300,000 images seen, 2 to 30 epochs].")(f)
    f = click.option("--image-size", type=click.IntRange(min=8, max=512), default=None,
                     help="Encoder input side in px [default: chosen from the pool: 16, 28, 32 or 64].")(f)
    return f


@main.command("select")
@click.option("--budget", "-b", type=Budget(), required=True, help="How many images to choose for labeling.")
@click.option("--pool", "-p", type=click.Path(path_type=Path), default=None,
              help="Folder of images (searched recursively) or an .npz with an array x.")
@click.option("--embeddings", type=click.Path(path_type=Path), default=None,
              help="Select from your own embeddings instead of a pool: .npy, .npz (embeddings [+ ids]), "
                   "Lightly's embeddings .csv, .pt/.pth (tensor or dict), .parquet.")
@click.option("--ids", type=click.Path(path_type=Path), default=None,
              help="With --embeddings: a text file of n item ids (paths), one per line [default: the ids in "
                   "the file, else row numbers].")
@click.option("--normalize", is_flag=True,
              help="With --embeddings: scale rows to unit length (the encoder's embeddings are; others are "
                   "warned about).")
@click.option("--image-root", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="With --embeddings: the folder the ids are relative to (image URLs, CVAT sizes, absolute paths).")
@click.option("--strategy", "-s", type=LazyChoice(names_of("selector.strategies", "STRATEGIES")),
              default="typcover", show_default=True,
              help="Selection strategy (the default, typcover, was chosen by benchmarks/strategy_matrix.py; "
                   "balanced evens out known labels across classes).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter of the strategy, repeatable: --param oversample=3 (typcover: fewer, larger "
                   "clusters), --param explore=0 (balanced without exploration), --param k_nn=10.")
@click.option("--out", "-o", type=click.Path(path_type=Path, allow_dash=True), default=Path("selection.csv"),
              show_default=True,
              help="Output file; the format follows the suffix: .csv, .jsonl, .json (Label Studio), "
                   ".xml (CVAT), .txt (paths). '-' writes the selection to stdout (csv, or --format jsonl/paths) "
                   "and the summary to stderr.")
@click.option("--labeled", type=click.Path(path_type=Path), multiple=True,
              help="Already-labeled files to exclude (.csv path[,label], .txt, .jsonl, Label Studio .json, "
                   "CVAT .xml); repeatable (one per round): their union, an image labeled differently in two "
                   "files is an error.")
@click.option("--exclude", type=click.Path(path_type=Path), multiple=True,
              help="Files of images sent to annotators but not annotated yet (e.g. the last round's tasks.json "
                   "or selection.csv): never chosen again, not counted as labeled; repeatable.")
@click.option("--skipped", type=click.Choice(["seen", "unseen"]), default="seen", show_default=True,
              help="Label Studio tasks in a --labeled export without a finished annotation (skipped, or not "
                   "annotated yet): seen = never chosen again; unseen = may be chosen again.")
@click.option("--format", "fmt", type=LazyChoice(names_of("selector.formats", "FORMATS", sort=False)),
              default=None, help="Output format [default: from the --out suffix].")
@click.option("--class-names", default=None, metavar="A,B,C",
              help="Label Studio / CVAT: the classes annotators choose from [default: the classes in the "
                   "--labeled files].")
@click.option("--no-predictions", is_flag=True, help="Label Studio / CVAT: write no pre-annotations.")
@click.option("--predict-groups", is_flag=True,
              help="Label Studio / CVAT: pre-select the estimated group (group-N) as the class (adds the group "
                   "names to the classes annotators see).")
@click.option("--round", "round_", type=click.IntRange(min=1), default=None,
              help="Label Studio: data.round of the tasks [default: 1 + the highest round in --labeled/--exclude].")
@click.option("--document-root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Label Studio: its LOCAL_FILES_DOCUMENT_ROOT [default: the pool's parent folder].")
@click.option("--url-prefix", default=None,
              help="Label Studio: image URL prefix instead of /data/local-files/?d= (e.g. http://host:8081/ or "
                   "s3://bucket/pool/); 'none' writes absolute file paths. Also used to read --labeled exports.")
@click.option("--encoder", type=click.Path(path_type=Path), default=None,
              help="Use this encoder checkpoint (from 'selector train') instead of training one.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Where trained encoders and embeddings are cached, keyed by content [default: the user cache "
                   "folder, $XDG_CACHE_HOME/selector or ~/.cache/selector; see 'selector cache info'].")
@click.option("--allow-smaller", is_flag=True, help="If the budget exceeds the unlabeled pool, take all of it.")
@click.option("--force", "-f", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the run summary as one JSON object on stdout (nothing else goes to stdout).")
@click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True,
              help="Training batch size.")
@click.option("--embed-chunk", type=click.IntRange(min=1), default=None, hidden=True,
              help="Images per embedding-cache file (the unit of resume after an interrupt).")
@dist_options
@encoder_options
@pool_options
def select_cmd(budget, pool, embeddings, ids, normalize, image_root, strategy, params, out, labeled, exclude, skipped,
               fmt, class_names, no_predictions, predict_groups, round_, document_root, url_prefix, encoder,
               cache_dir, allow_smaller, force, as_json, batch_size, embed_chunk, arch, loss, epochs, image_size, device, seed,
               on_bad_image, workers, decode_timeout, max_pixels, verbose, quiet):
    """Choose BUDGET images of a pool to send to annotators and write them to --out."""
    _setup_logging(verbose, quiet)
    if (pool is None) == (embeddings is None):
        raise click.UsageError("give exactly one of --pool DIR or --embeddings FILE.npy")
    if embeddings is None and (normalize or image_root is not None or ids is not None):
        raise click.UsageError("--ids, --normalize and --image-root go with --embeddings")
    names = _parse_class_names(class_names)
    labels_in = dict(labeled=labeled, exclude=exclude, skipped=skipped, document_root=document_root,
                     url_prefix=None if url_prefix in (None, "none") else url_prefix)
    from selector.strategies import get_strategy
    from selector.strategies.registry import parse_params

    try:  # values checked by the constructor, before any slow work
        strat = get_strategy(strategy, **parse_params(strategy, params))
    except (ValueError, TypeError) as e:
        raise click.BadParameter(str(e), param_hint="--param") from None
    to_stdout = str(out) == "-"
    if to_stdout and as_json:
        raise click.UsageError("--json and -o - both write to stdout; give --out a file name")
    if to_stdout:
        stdout_suffix = _stdout_suffix(fmt)
    if embeddings is not None:
        from .launch import under_torchrun

        if click.get_current_context().meta.get("nproc") is not None:
            raise click.UsageError("--nproc trains and embeds a pool on several processes; with --embeddings "
                                   "there is nothing to share")
        if under_torchrun() and os.environ.get("RANK", "0") != "0":
            return  # selecting from given embeddings is rank 0's work alone
    dist = _start_distributed(device) if embeddings is None else None
    with _RankErrors(dist):
        if not to_stdout:
            _agree(dist, lambda: _check_out(out, force, export_format=True, fmt=fmt), main_only=True)
        t0 = time.perf_counter()
        try:
            result, summary = _run_select(budget, pool, embeddings, ids, strategy, out, labels_in, encoder, cache_dir,
                                          allow_smaller, arch, loss, epochs, image_size, device, seed, on_bad_image,
                                          quiet or not _is_main(dist), batch_size=batch_size, embed_chunk=embed_chunk,
                                          workers=workers, decode_timeout=decode_timeout, max_pixels=max_pixels,
                                          strat=strat, normalize=normalize, image_root=image_root, dist=dist)
            if result is None:  # a rank other than 0: its share of training and embedding is done
                return
            export_kw = dict(class_names=names if names is not None else result.info.get("class_names") or None,
                             predictions=not no_predictions, predict_groups=predict_groups,
                             round=round_ if round_ is not None else result.info.get("round", 1),
                             document_root=document_root)
            if url_prefix is not None:
                export_kw["url_prefix"] = None if url_prefix == "none" else url_prefix
            from .atomic import OutputExistsError, WriteError

            try:
                if to_stdout:
                    files = _export_to_stdout(result, fmt, stdout_suffix, export_kw)
                else:
                    files = result.export(out, fmt, force=force, **export_kw)
            except OutputExistsError as e:  # checked before any work: another run wrote it meanwhile
                raise click.ClickException(f"output {e.path} was created by another run while this one worked; "
                                           "pass --force to overwrite it") from e
            except WriteError as e:  # disk full, permission: the atomic write left nothing behind
                raise click.ClickException(str(e)) from e
            except OSError as e:
                raise click.ClickException(f"cannot write {out}: {e.strerror or e} (nothing was written)") from e
        except click.ClickException:
            raise
        except _known_errors() as e:
            raise click.ClickException(_one_line(e)) from e
        summary.append(("chosen", f"{len(result)} images -> {', '.join(str(f) for f in files)}"))
        counts = result.group_counts()
        if counts and set(counts) != {-1}:
            summary.append(("per group", " ".join(f"{g}:{c}" for g, c in counts.items())))
        seconds = time.perf_counter() - t0
        summary.append(("time", f"{seconds:.1f} s"))
        if as_json:
            click.echo(json.dumps(_summary_json(summary, result, files, seconds), default=str))
        else:
            _print_summary(summary, err=to_stdout)


# Formats that are one text file, which `-o -` can stream, and the suffix each is written with.
STDOUT_FORMATS = {"csv": ".csv", "jsonl": ".jsonl", "paths": ".txt"}


def _stdout_suffix(fmt: str | None) -> str:
    key = fmt or "csv"
    if key not in STDOUT_FORMATS:
        raise click.BadParameter(f"-o - writes {', '.join(STDOUT_FORMATS)}; {key} is written to a file",
                                 param_hint="--format")
    return STDOUT_FORMATS[key]


def _export_to_stdout(result, fmt: str | None, suffix: str, export_kw: dict) -> list[str]:
    """Write the selection through the exporter into a temporary file, then copy it to stdout."""
    with tempfile.TemporaryDirectory(prefix="selector-stdout-") as tmp:
        written = result.export(Path(tmp) / f"selection{suffix}", fmt, **export_kw)
        data = written[0].read_bytes()
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return ["<stdout>"]


def _summary_json(summary: list[tuple[str, str]], result, files, seconds: float) -> dict:
    """The run summary for --json: the text lines by key, plus the numbers and the chosen ids."""
    return {"chosen": len(result), "outputs": [str(f) for f in files], "strategy": result.strategy,
            "estimated_classes": result.n_groups,
            "per_group": {str(g): c for g, c in result.group_counts().items()},
            "seconds": round(seconds, 3), "info": result.info, "paths": result.paths,
            "summary": {k: v for k, v in summary}}


def _parse_class_names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise click.BadParameter(f"expected distinct, non-empty names separated by commas, got {text!r}",
                                 param_hint="--class-names")
    return names


def _plan(budget, ids, root, labels_in: dict, allow_smaller: bool, where: str, duplicate_mask=None):
    """The API's :func:`selector.plan.plan_selection` with the --labeled/--exclude options."""
    from .plan import plan_selection

    read_kw = {}
    if labels_in["labeled"] or labels_in["exclude"]:
        read_kw = {k: labels_in[k] for k in ("skipped", "url_prefix", "document_root")}
    return plan_selection(budget, ids, files=labels_in["labeled"], exclude=labels_in["exclude"], root=root,
                          duplicate_mask=duplicate_mask, allow_smaller=allow_smaller, where=where, **read_kw)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _encoder_input(encoder: Path | None, image_size: int | None) -> tuple[int | None, int | None]:
    """(image size, channels) the pool must be read at; see :func:`selector.encoding.encoder_input`."""
    from .encoding import encoder_input

    return encoder_input(encoder, image_size, what="--image-size")


def _read_pool(pool: Path, *, image_size, channels, on_bad, workers, decode_timeout, max_pixels, scratch, quiet):
    from .pool import load_pool

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) if "TORCHELASTIC_RUN_ID" in os.environ else 1
    if workers is None and local > 1:  # the node's processes share its CPUs for decoding
        workers = max(1, min(8, (os.cpu_count() or 1) // local))

    follow = click.get_current_context().meta.get("follow_links", False)  # --follow-links, a pool option
    kw = {"follow_links": True} if follow and not str(pool).lower().endswith(".npz") else {}
    return load_pool(pool, image_size=image_size, channels=channels, on_bad=on_bad, progress=_progress(quiet),
                     workers=workers, timeout_s=decode_timeout, max_pixels=max_pixels, scratch_dir=scratch, **kw)


def _pool_line(p, pool) -> str:
    extra = f", {len(p.skipped)} unreadable files skipped" if p.skipped else ""
    if p.n_duplicates:
        extra += f", {p.n_duplicates} duplicate files (byte-identical to another) not selectable"
    return f"{len(p)} images in {pool}{extra} ({'grayscale' if p.channels == 1 else 'RGB'}, {p.size} px)"


def _run_select(budget, pool, embeddings, ids, strategy, out, labels_in, encoder, cache_dir, allow_smaller, arch,
                loss, epochs, image_size, device, seed, on_bad_image, quiet, *, batch_size=256, embed_chunk=None,
                workers=None, decode_timeout=60.0, max_pixels=89_478_485, strat, normalize=False, image_root=None,
                dist=None):
    """Everything cheap is checked before anything slow: the encoder file, the pool, the labeled file and
    the budget are all read and checked before training starts (on every rank, which agree on any
    failure, when distributed). Returns (None, ...) on ranks other than 0 once their share is done."""
    from .api import Selector, select_embeddings

    summary: list[tuple[str, str]] = []
    labeled = [*labels_in["labeled"], *labels_in["exclude"]]
    if embeddings is not None:
        emb, file_ids = _read_embeddings(embeddings, normalize)
        item_ids = (_read_ids(ids, len(emb)) if ids is not None else file_ids if file_ids is not None
                    else [str(i) for i in range(len(emb))])
        plan = _plan(budget, item_ids, image_root, labels_in, allow_smaller, f"embeddings {embeddings}")
        if labeled:
            summary.append(("labeled", _labeled_line(plan, labels_in)))
        summary.append(("embeddings", f"{len(emb)} x {emb.shape[1]} from {embeddings}"
                                      + (" (normalised)" if normalize else "")))
        result = select_embeddings(emb, plan.budget, plan.excluded, strat, seed, item_ids, image_root,
                                   labels=plan.labels, info=plan.info)
    else:
        cache = cache_dir if cache_dir is not None else _default_cache()

        def prepare():  # every rank reads the pool (each node must see it) and agrees on any failure
            size, channels = _encoder_input(encoder, image_size)
            cache.mkdir(parents=True, exist_ok=True)
            p = _read_pool(pool, image_size=size, channels=channels, on_bad=on_bad_image, workers=workers,
                           decode_timeout=decode_timeout, max_pixels=max_pixels, scratch=cache, quiet=quiet)
            plan = _plan(budget, p.ids, p.root, labels_in, allow_smaller, f"{pool}", duplicate_mask=p.duplicate_mask)
            return size, p, plan

        size, p, plan = _agree(dist, prepare)
        summary.append(("pool", _pool_line(p, pool)))
        if labeled:
            summary.append(("labeled", _labeled_line(plan, labels_in)))
        sel = Selector(encoder=encoder, strategy=strat, seed=seed, device=device, epochs=epochs, loss=loss,
                       arch=arch, batch_size=batch_size, image_size=size, cache_dir=cache, on_bad=on_bad_image,
                       progress=_progress(quiet), embed_chunk=embed_chunk, dist=dist, **_backbone_kwargs())
        sel.fit(p, labels=plan.labels)  # known labels train the losses that use them (KCL, SupCon-spread)
        if not _is_main(dist):
            return None, summary
        if encoder is not None:
            summary.append(("encoder", f"{encoder}"))
        else:
            summary.append(("encoder", _encoder_line(sel, len(p), cache)))
        n_unique = len(p) - p.n_duplicates
        summary.append(("embedding", f"{sel.embeddings_.shape[1]}-d, {sel.n_embedded_} images embedded, "
                                     f"{n_unique - sel.n_embedded_} from cache ({sel.timings_['embed']:.1f} s)"))
        result = sel.select_plan(plan)
    k = result.n_groups
    k_range = result.selection.info.get("k_range")  # balanced: (min, max) over the estimate's subsamples
    k_text = f", estimated classes: {k}" if k is not None else ""
    if k is not None and k_range:
        n_sub = len(result.selection.info.get("k_per_seed", []))
        k_text += f" (range {k_range[0]}-{k_range[1]} over {n_sub} sample{'' if n_sub == 1 else 's'} of the pool)"
    summary.append(("strategy", f"{strategy} ({result.seconds:.2f} s){k_text}"))
    return result, summary


def _encoder_line(sel, n: int, cache) -> str:
    """What the encoder was: backbone, why (for auto), frozen or how it was trained (epochs, images seen)."""
    name = sel.backbone_ + (" + pixel view (PCA-50 of the pixels)" if sel.pixel_view_ is not None else "")
    why = f"; {sel.backbone_reason_}" if sel.backbone_name == "auto" else ""
    if sel.encoder_.config.mode == "frozen":
        return f"{name}, frozen (no training){why}"
    tc = sel.train_config(n)
    rep = sel.train_report_
    if sel.encoder_cached_ or rep is None:
        done = f"{tc.epochs} epochs" if tc.time_budget_s is None else f"time budget {tc.time_budget_s / 60:g} min"
        how = f"{done}; loaded from the cache"
    else:
        how = (f"{rep['epochs']:.1f} epochs, {rep['images_seen']:,} images seen, {sel.timings_['train']:.1f} s"
               + (f" of a {tc.time_budget_s / 60:g} min time budget" if tc.time_budget_s is not None else "")
               + (f", {rep['processes']} processes x batch {rep['batch_size'] // rep['processes']}"
                  if rep.get("processes", 1) > 1 else ""))
    return f"{name} trained on the pool with {_loss_text(tc)} ({how}; cache: {cache}){why}"


def _loss_text(tc) -> str:
    """The loss of a training configuration, with the autoencoder's weight when it has one."""
    return tc.loss + (f" + autoencoder {tc.autoencoder:g}" if tc.autoencoder else "")


def _labeled_line(plan, labels_in: dict) -> str:
    files = [*labels_in["labeled"], *labels_in["exclude"]]
    what = "already labeled or sent out" if labels_in["exclude"] else "already labeled"
    return (f"{plan.n_labeled} images {what} excluded"
            + (f"; {plan.missing} entries of {', '.join(map(str, files))} are not in the pool" if plan.missing else ""))


def _read_embeddings(path: Path, normalize: bool) -> tuple[np.ndarray, list[str] | None]:
    from .embeddings_io import normalize_rows, non_unit_rows, read_embeddings

    emb, ids = read_embeddings(path)
    if normalize:
        return normalize_rows(emb), ids
    off = non_unit_rows(emb)
    if off:
        log.warning("%d of %d rows of %s are not unit length; the strategies compare inner products, so "
                    "pass --normalize unless the lengths carry meaning", off, len(emb), path)
    return emb, ids


def _read_ids(path: Path, n: int) -> list[str]:
    try:
        lines = [ln.rstrip("\r\n") for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as e:
        raise click.ClickException(f"cannot read ids {path}: {e.strerror}") from e
    if len(lines) != n:
        raise click.ClickException(f"ids file {path} has {len(lines)} lines for {n} embeddings")
    from .names import display_name, name_problem

    first: dict[str, int] = {}
    for k, name in enumerate(lines, 1):
        problem = name_problem(name)
        if problem is not None:
            raise click.ClickException(f"ids file {path}, line {k}: '{display_name(name)}': "
                                       f"{problem.replace('file ', '')}")
        if name in first:
            raise click.ClickException(f"ids file {path}: '{display_name(name)}' is on lines {first[name]} and {k}")
        first[name] = k
    return lines


def _print_summary(rows: list[tuple[str, str]], err: bool = False) -> None:
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k + ':':<{w + 1}} {v}", err=err)


@main.command("train")
@click.option("--pool", "-p", type=click.Path(path_type=Path), required=True, help="Folder of images or .npz.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("encoder.pt"), show_default=True,
              help="Encoder checkpoint to write. While training, progress is kept in OUT.ckpt; run the "
                   "same command again after an interrupt to resume.")
@click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True)
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Known labels (.csv path,label or Label Studio .json) for KCL / supcon-spread.")
@click.option("--force", "-f", is_flag=True, help="Overwrite OUT if it exists.")
@dist_options
@encoder_options
@pool_options
def train_cmd(pool, out, batch_size, labels, force, arch, loss, epochs, image_size, device, seed, on_bad_image,
              workers, decode_timeout, max_pixels, verbose, quiet):
    """Train an encoder on a pool with a contrastive loss and save it for --encoder."""
    _setup_logging(verbose, quiet)
    dist = _start_distributed(device)
    with _RankErrors(dist):
        _train(dist, pool, out, batch_size, labels, force, arch, loss, epochs, image_size, device, seed, on_bad_image,
               workers, decode_timeout, max_pixels, quiet or not _is_main(dist))


def _train(dist, pool, out, batch_size, labels, force, arch, loss, epochs, image_size, device, seed, on_bad_image,
           workers, decode_timeout, max_pixels, quiet):
    _agree(dist, lambda: _check_out(out, force), main_only=True)
    from .api import Selector
    from .train import train_encoder

    t0 = time.perf_counter()
    try:
        def prepare():  # every rank reads the pool (each node must see it) and agrees on any failure
            p = _read_pool(pool, image_size=image_size, channels=None, on_bad=on_bad_image, workers=workers,
                           decode_timeout=decode_timeout, max_pixels=max_pixels, scratch=None, quiet=quiet)
            y = None
            if labels is not None:
                from .plan import labeled_mask

                y = labeled_mask(str(labels), p.ids, p.root).labels
            return p, y

        p, y = _agree(dist, prepare)
        bk = _backbone_kwargs(train=True)
        if arch is None and bk["backbone"] is None:
            arch = "resnet-small"  # selector train trains a small ResNet unless told otherwise
        sel = Selector(seed=seed, epochs=epochs, loss=loss, arch=arch, batch_size=batch_size, **bk)
        name, mode, reason = sel.resolve_backbone(p)
        if mode == "frozen":
            raise click.UsageError(f"backbone {name} in mode frozen has nothing to train; use it directly "
                                   "(selector select/embed --backbone-mode frozen) or --backbone-mode finetune")
        tc, enc_cfg = sel.train_config(len(p), backbone=name), sel.encoder_config(p)
        ckpt = Path(str(out) + ".ckpt")
        enc = train_encoder(p.images, enc_cfg, tc, device=device, checkpoint_path=ckpt, labels=y,
                            progress=_progress(quiet), weights=bk["weights"], dist=dist)
        if not _is_main(dist):
            return  # rank 0 wrote the checkpoint
        os.replace(ckpt, out)
        rep = enc.train_report
    except click.ClickException:
        raise
    except _known_errors() as e:
        raise click.ClickException(_one_line(e)) from e
    why = f" ({reason})" if (bk["backbone"] or arch) == "auto" else ""
    done = f"{rep['epochs']:.1f} epochs, {rep['images_seen']:,} images seen in {rep['seconds']:.1f} s" + (
        f" (time budget {tc.time_budget_s / 60:g} min)" if tc.time_budget_s is not None else "") + (
        f", {rep['processes']} processes x batch {rep['batch_size'] // rep['processes']}"
        if rep.get("processes", 1) > 1 else "")
    _print_summary([("pool", f"{len(p)} images in {pool}"),
                    ("encoder", f"{name}{why}, {_loss_text(tc)}, {done} -> {out}"),
                    ("time", f"{time.perf_counter() - t0:.1f} s")])


@main.command("embed")
@click.option("--pool", "-p", type=click.Path(path_type=Path), required=True, help="Folder of images or .npz.")
@click.option("--encoder", type=click.Path(path_type=Path), default=None,
              help="Encoder checkpoint (or give a pretrained --backbone to embed with its frozen features).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("embeddings.npy"), show_default=True,
              help="Embeddings (.npy, n x d float32); the item ids go to OUT with suffix .ids.txt.")
@click.option("--force", "-f", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Where embeddings are cached by content (a killed run resumes from it; select reuses it) "
                   "[default: the user cache folder; see 'selector cache info'].")
@dist_options
@backbone_options
@pool_options
def embed_cmd(pool, encoder, out, force, cache_dir, device, seed, on_bad_image, workers, decode_timeout, max_pixels,
              verbose, quiet):
    """Embed a pool with a trained encoder or a frozen pretrained backbone (L2-normalised float32)."""
    _setup_logging(verbose, quiet)
    bk = _backbone_kwargs()
    if (encoder is None) == (bk["backbone"] is None):
        raise click.UsageError("give exactly one of --encoder FILE or --backbone NAME")
    if bk["backbone"] is not None:
        from .backbones import is_pretrained

        if bk["backbone"] == "auto" or not is_pretrained(bk["backbone"]) or bk["backbone_mode"] == "finetune":
            raise click.UsageError(f"selector embed --backbone takes a pretrained backbone, used frozen "
                                   f"(efficientnet-lite0, torchvision:NAME), not {bk['backbone']!r} in mode "
                                   f"{bk['backbone_mode']}; train other encoders with selector train")
    dist = _start_distributed(device)
    with _RankErrors(dist):
        _embed(dist, bk, pool, encoder, out, force, cache_dir, device, seed, on_bad_image, workers, decode_timeout,
               max_pixels, quiet or not _is_main(dist))


def _embed(dist, bk, pool, encoder, out, force, cache_dir, device, seed, on_bad_image, workers, decode_timeout,
           max_pixels, quiet):
    _agree(dist, lambda: _check_out(out, force, embeddings=True), main_only=True)
    import numpy as np

    from .api import Selector
    from .atomic import atomic_write
    from .formats import output_paths

    cache = cache_dir if cache_dir is not None else _default_cache()
    try:
        def prepare():  # every rank reads the pool (each node must see it) and agrees on any failure
            size, channels = _encoder_input(encoder, None)
            cache.mkdir(parents=True, exist_ok=True)
            return _read_pool(pool, image_size=size, channels=channels, on_bad=on_bad_image, workers=workers,
                              decode_timeout=decode_timeout, max_pixels=max_pixels, scratch=cache, quiet=quiet)

        p = _agree(dist, prepare)
        sel = Selector(encoder=encoder, strategy="random", device=device, seed=seed, on_bad=on_bad_image,
                       progress=_progress(quiet), cache_dir=cache, dist=dist,
                       **(bk if encoder is None else {})).fit(p)
        if not _is_main(dist):
            return  # rank 0 writes the embeddings
        _, ids_path = output_paths(out, "embeddings")
        with atomic_write(out, "wb", overwrite=force) as f:
            np.save(f, sel.embeddings_)
        try:  # ids are UTF-8 names without control characters (selector.names), so one per line is exact
            with atomic_write(ids_path, "w", overwrite=force) as f:
                f.write("".join(i + "\n" for i in sel.pool_.ids))
        except BaseException:
            out.unlink(missing_ok=True)  # never an .npy without its ids
            raise
    except click.ClickException:
        raise
    except _known_errors() as e:
        raise click.ClickException(_one_line(e)) from e
    _print_summary([("embeddings", f"{sel.embeddings_.shape[0]} x {sel.embeddings_.shape[1]} -> {out}"),
                    ("ids", str(ids_path))])


def _default_cache() -> Path:
    from .cache import default_cache_dir

    return default_cache_dir()


@main.command("show")
@click.argument("selection", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--pool", "-p", type=click.Path(path_type=Path, exists=True), required=True,
              help="The pool the selection was chosen from (folder of images or .npz).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Contact sheet PNG: the chosen images grouped by estimated group, with ranks "
                   "[default: SELECTION with suffix .sheet.png].")
@click.option("--map", "map_out", type=click.Path(path_type=Path), default=None,
              help="Also write a 2-D map (PCA) of the pool's embedding with the picks to this PNG.")
@click.option("--embeddings", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="For --map: the embeddings the selection came from (any format of select --embeddings) "
                   "[default: the pool's embedding from the cache].")
@click.option("--ids", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="For --map with --embeddings: the item ids, one per line.")
@click.option("--encoder", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="For --map: embed the pool with this encoder [default: the most recently used embedding in "
                   "the cache that covers every image of the pool].")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="The cache 'selector select' used [default: the user cache folder].")
@click.option("--cols", type=click.IntRange(min=1), default=10, show_default=True, help="Tiles per line.")
@click.option("--tile", type=click.IntRange(min=16, max=512), default=96, show_default=True,
              help="Tile side in px.")
@click.option("--force", "-f", is_flag=True, help="Overwrite the PNG files if they exist.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def show_cmd(selection, pool, out, map_out, embeddings, ids, encoder, cache_dir, cols, tile, force, verbose, quiet):
    """Draw what SELECTION (the .csv/.jsonl/.json of 'selector select') chose from --pool: a contact
    sheet, and with --map a 2-D map of the pool's embedding."""
    _setup_logging(verbose, quiet)
    out = out if out is not None else selection.with_suffix(".sheet.png")
    for o in [out] + ([map_out] if map_out is not None else []):
        if o.suffix.lower() != ".png":
            raise click.UsageError(f"{o}: the pictures are PNG files; give a .png name")
        _check_out(o, force)
    from .show import contact_sheet, image_loader, read_selection, write_png

    try:
        rows = read_selection(selection)
        sheet = contact_sheet(rows, image_loader(pool), cols=cols, tile=tile)
        if map_out is not None:  # everything that can fail comes before the first file is written
            emb, item_ids, how = _map_embeddings(pool, embeddings, ids, encoder, cache_dir, quiet)
            from .show import pool_map

            pool_map(emb, item_ids, rows, map_out)
        write_png(sheet, out)
        summary = [("sheet", f"{len(rows)} images in {len({r['group'] for r in rows})} groups -> {out}")]
        if map_out is not None:
            summary.append(("map", f"{len(item_ids)} x {emb.shape[1]} embedding ({how}) -> {map_out}"))
    except click.ClickException:
        raise
    except _known_errors() as e:
        raise click.ClickException(_one_line(e)) from e
    _print_summary(summary)


def _map_embeddings(pool: Path, embeddings, ids, encoder, cache_dir, quiet):
    """(embeddings, ids, where they came from) for ``selector show --map``: a file, an encoder, or the
    cache (the most recently used cached embedding that covers every file of the pool)."""
    if embeddings is not None:
        from .embeddings_io import read_embeddings

        emb, file_ids = read_embeddings(embeddings)
        item_ids = _read_ids(ids, len(emb)) if ids is not None else file_ids
        if item_ids is None:
            raise click.ClickException(f"{embeddings} holds no ids; pass --ids")
        return emb, item_ids, str(embeddings)
    from .pool import load_pool

    cache = cache_dir if cache_dir is not None else _default_cache()
    if encoder is not None:
        from .api import Selector

        size, channels = _encoder_input(encoder, None)
        p = load_pool(pool, image_size=size, channels=channels, progress=_progress(quiet))
        sel = Selector(encoder=encoder, cache_dir=cache, progress=_progress(quiet)).fit(p)
        return sel.embeddings_, p.ids, f"encoder {encoder}"
    from .cache import cached_embedding

    p = load_pool(pool, progress=_progress(quiet))
    found = cached_embedding(cache, p.digests)
    if found is None:
        raise click.ClickException(f"no embedding of every image of {pool} in the cache {cache}; run 'selector "
                                   "select' on it first, or pass --embeddings or --encoder")
    return found[0], p.ids, f"from the cache, {found[1].name}"


@main.group("cache")
def cache_group():
    """The cache of trained encoders and embeddings (keyed by content, shared by every run)."""


@cache_group.command("info")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="The cache folder [default: the user cache folder].")
def cache_info_cmd(cache_dir):
    """Where the cache is, and what it holds."""
    from .cache import cache_entries, human_bytes

    cache = cache_dir if cache_dir is not None else _default_cache()
    entries = cache_entries(cache)
    enc = [e for e in entries if e.kind == "encoder"]
    emb = [e for e in entries if e.kind == "embeddings"]
    rows = [("cache", str(cache) + ("" if cache.is_dir() else " (empty: not created yet)")),
            ("encoders", f"{len(enc)} ({human_bytes(sum(e.bytes for e in enc))})"),
            ("embeddings", f"{len(emb)} encoders' embeddings, {sum(e.files for e in emb)} files "
                           f"({human_bytes(sum(e.bytes for e in emb))})"),
            ("total", human_bytes(sum(e.bytes for e in entries)))]
    if entries:
        rows.append(("last used", time.strftime("%Y-%m-%d %H:%M", time.localtime(entries[-1].last_used))))
    _print_summary(rows)


@cache_group.command("prune")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="The cache folder [default: the user cache folder].")
@click.option("--older-than", type=click.FloatRange(min=0), default=None, metavar="DAYS",
              help="Remove entries not used for this many days.")
@click.option("--max-size", type=click.FloatRange(min=0), default=None, metavar="GIB",
              help="Then remove the least recently used entries until the cache fits in this many GiB.")
@click.option("--all", "everything", is_flag=True, help="Remove every entry.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def cache_prune_cmd(cache_dir, older_than, max_size, everything, dry_run):
    """Remove cache entries (an entry is one trained encoder, or one encoder's embeddings). Do not prune
    while a 'selector select' runs on the same cache."""
    from .cache import human_bytes, prune

    if everything == (older_than is not None or max_size is not None):
        raise click.UsageError("give --all, or --older-than DAYS and/or --max-size GIB")
    cache = cache_dir if cache_dir is not None else _default_cache()
    gone = prune(cache, older_than_days=older_than, keep_bytes=None if max_size is None else int(max_size * 2**30),
                 dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for e in gone:
        click.echo(f"{verb} {e.kind} {e.path} ({human_bytes(e.bytes)})")
    _print_summary([("cache", str(cache)), (verb, f"{len(gone)} entries, {human_bytes(sum(e.bytes for e in gone))}")])


@main.command("demo-pool")
@click.argument("folder", type=click.Path(path_type=Path))
def demo_pool_cmd(folder):
    """Write a small real pool to FOLDER: scikit-learn's 1,797 handwritten digits as PNG files
    (FOLDER/digit_<d>/<n>.png; the selector never reads the folder names)."""
    from .pool import write_demo_pool

    if folder.exists() and any(folder.iterdir()):
        n = sum(1 for _ in folder.rglob("*.png"))
        click.echo(f"demo pool: {folder} already exists ({n} images)")
        return
    n = write_demo_pool(folder)
    counts = Counter(p.parent.name for p in folder.rglob("*.png"))
    click.echo(f"demo pool: {n} images of {len(counts)} digits written to {folder}")


def _add_eval_command() -> None:
    from selector.eval.cli import eval_cmd

    main.add_command(eval_cmd, "eval")


_add_eval_command()  # eval/cli.py imports only click at the top, like this file

if __name__ == "__main__":  # pragma: no cover
    main()
