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

from .clitypes import LazyChoice, names_of
from .device import DEVICES

# numpy, torch, faiss and the strategies load inside the commands (LazyChoice for option choices), so
# that --help, --version and shell completion stay fast.

log = logging.getLogger("selector")

CACHE_DIRNAME = ".selector-cache"


def _known_errors() -> tuple[type[BaseException], ...]:
    from .data import PoolError
    from .export import ExportError
    from .labels import LabelFileError
    from .train import CheckpointError
    from selector.strategies import SelectionError

    return (PoolError, CheckpointError, SelectionError, LabelFileError, ExportError, ValueError, OSError)


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


def _check_out(out: Path, force: bool, export_format: bool = False, fmt: str | None = None) -> None:
    """Refuse an output before any work: it exists (without --force), is a folder, has an unknown
    suffix, or its folder is missing or not writable (tried by creating a temporary file there)."""
    if out.is_dir():
        raise click.ClickException(f"output {out} is a folder; give a file name")
    if out.exists() and not force:
        raise click.ClickException(f"output {out} exists; pass --force to overwrite it")
    if export_format:
        from .export import ExportError, format_for

        try:
            format_for(out, fmt)
        except ExportError as e:
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
    click.option("--seed", type=int, default=0, show_default=True,
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
    click.option("-v", "--verbose", count=True, help="More log output (-vv for debug)."),
    click.option("-q", "--quiet", is_flag=True,
                 help="No progress bars and no info messages; warnings, errors and the result still show "
                      "(progress bars show only when stderr is a terminal)."),
]


def pool_options(f):
    for opt in reversed(common_pool_options):
        f = opt(f)
    return f


def encoder_options(f):
    f = click.option("--arch", type=LazyChoice(names_of("selector.backbones", "ARCHS", sort=False)), default="resnet-small", show_default=True,
                     help="Encoder architecture (resnet-small for CPU, resnet18 for a GPU).")(f)
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
              default="balanced", show_default=True,
              help="Selection strategy.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter of the strategy, repeatable: --param explore=0 (balanced without "
                   "exploration), --param k_nn=10.")
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
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "label-studio", "cvat", "cvat-zip", "paths"]),
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
              help=f"Where the trained encoder and embeddings are cached [default: {CACHE_DIRNAME}/ beside --out].")
@click.option("--allow-smaller", is_flag=True, help="If the budget exceeds the unlabeled pool, take all of it.")
@click.option("--force", "-f", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the run summary as one JSON object on stdout (nothing else goes to stdout).")
@click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True,
              help="Training batch size.")
@click.option("--embed-chunk", type=click.IntRange(min=1), default=None, hidden=True,
              help="Images per embedding-cache file (the unit of resume after an interrupt).")
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
    else:
        _check_out(out, force, export_format=True, fmt=fmt)
    t0 = time.perf_counter()
    try:
        result, summary = _run_select(budget, pool, embeddings, ids, strategy, out, labels_in, encoder, cache_dir,
                                      allow_smaller, arch, loss, epochs, image_size, device, seed, on_bad_image,
                                      quiet, batch_size=batch_size, embed_chunk=embed_chunk, workers=workers,
                                      decode_timeout=decode_timeout, max_pixels=max_pixels, strat=strat,
                                      normalize=normalize, image_root=image_root)
        export_kw = dict(class_names=names if names is not None else result.info.get("class_names") or None,
                         predictions=not no_predictions, predict_groups=predict_groups,
                         round=round_ if round_ is not None else result.info.get("round", 1),
                         document_root=document_root)
        if url_prefix is not None:
            export_kw["url_prefix"] = None if url_prefix == "none" else url_prefix
        try:
            if to_stdout:
                files = _export_to_stdout(result, fmt, stdout_suffix, export_kw)
            else:
                files = result.export(out, fmt, **export_kw)
        except OSError as e:  # disk full, permission: the atomic write left nothing behind
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
    """The API's :func:`selector.api.plan_selection` with the --labeled/--exclude options."""
    from .api import plan_selection

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
    """(image size, channels) the pool must be read at: the encoder's, checked against --image-size."""
    if encoder is None:
        return image_size, None
    from .train import read_checkpoint

    cfg = read_checkpoint(encoder)["config"]
    try:
        size, channels = int(cfg["image_size"]), int(cfg["in_channels"])
    except (KeyError, TypeError, ValueError) as e:
        from .train import CheckpointError

        raise CheckpointError(f"{encoder}: the stored configuration has no valid input size") from e
    if image_size is not None and image_size != size:
        raise click.ClickException(f"encoder {encoder} expects {size} px images, but --image-size {image_size} "
                                   "was given; leave --image-size out")
    return size, channels


def _read_pool(pool: Path, *, image_size, channels, on_bad, workers, decode_timeout, max_pixels, scratch, quiet):
    from .data import load_pool

    return load_pool(pool, image_size=image_size, channels=channels, on_bad=on_bad, progress=_progress(quiet),
                     workers=workers, timeout_s=decode_timeout, max_pixels=max_pixels, scratch_dir=scratch)


def _pool_line(p, pool) -> str:
    extra = f", {len(p.skipped)} unreadable files skipped" if p.skipped else ""
    if p.n_duplicates:
        extra += f", {p.n_duplicates} duplicate files (byte-identical to another) not selectable"
    return f"{len(p)} images in {pool}{extra} ({'grayscale' if p.channels == 1 else 'RGB'}, {p.size} px)"


def _run_select(budget, pool, embeddings, ids, strategy, out, labels_in, encoder, cache_dir, allow_smaller, arch,
                loss, epochs, image_size, device, seed, on_bad_image, quiet, *, batch_size=256, embed_chunk=None,
                workers=None, decode_timeout=60.0, max_pixels=89_478_485, strat, normalize=False, image_root=None):
    """Everything cheap is checked before anything slow: the encoder file, the pool, the labeled file and
    the budget are all read and checked before training starts."""
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
        cache = cache_dir if cache_dir is not None else out.resolve().parent / CACHE_DIRNAME
        size, channels = _encoder_input(encoder, image_size)
        cache.mkdir(parents=True, exist_ok=True)
        p = _read_pool(pool, image_size=size, channels=channels, on_bad=on_bad_image, workers=workers,
                       decode_timeout=decode_timeout, max_pixels=max_pixels, scratch=cache, quiet=quiet)
        summary.append(("pool", _pool_line(p, pool)))
        plan = _plan(budget, p.ids, p.root, labels_in, allow_smaller, f"{pool}", duplicate_mask=p.duplicate_mask)
        if labeled:
            summary.append(("labeled", _labeled_line(plan, labels_in)))
        sel = Selector(encoder=encoder, strategy=strat, seed=seed, device=device, epochs=epochs, loss=loss,
                       arch=arch, batch_size=batch_size, image_size=size, cache_dir=cache, on_bad=on_bad_image,
                       progress=_progress(quiet), embed_chunk=embed_chunk)
        from .losses import LOSSES

        # Known labels train the label-using losses (KCL, SupCon-spread) and let balanced balance true classes.
        sel.fit(p, labels=plan.labels if getattr(LOSSES[loss], "needs_labels", False) else None)
        if encoder is not None:
            summary.append(("encoder", f"{encoder}"))
        else:
            tc = sel.train_config(len(p))
            how = ("loaded from the cache" if sel.encoder_cached_ else f"{sel.timings_['train']:.1f} s") + f"; cache: {cache}"
            summary.append(("encoder", f"{arch} trained on the pool with {tc.loss}, {tc.epochs} epochs ({how})"))
        n_unique = len(p) - p.n_duplicates
        summary.append(("embedding", f"{sel.embeddings_.shape[1]}-d, {sel.n_embedded_} images embedded, "
                                     f"{n_unique - sel.n_embedded_} from cache ({sel.timings_['embed']:.1f} s)"))
        result = sel.select_plan(plan)
    k = result.n_groups
    summary.append(("strategy", f"{strategy} ({result.seconds:.2f} s)"
                                + (f", estimated classes: {k}" if k is not None else "")))
    return result, summary


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
@encoder_options
@pool_options
def train_cmd(pool, out, batch_size, labels, force, arch, loss, epochs, image_size, device, seed, on_bad_image,
              workers, decode_timeout, max_pixels, verbose, quiet):
    """Train an encoder on a pool with a contrastive loss and save it for --encoder."""
    _setup_logging(verbose, quiet)
    _check_out(out, force)
    from .backbones import EncoderConfig
    from .train import TrainConfig, auto_epochs, train_encoder

    t0 = time.perf_counter()
    try:
        p = _read_pool(pool, image_size=image_size, channels=None, on_bad=on_bad_image, workers=workers,
                       decode_timeout=decode_timeout, max_pixels=max_pixels, scratch=None, quiet=quiet)
        y = None
        if labels is not None:
            from .api import labeled_and_labels

            _, y, _ = labeled_and_labels(str(labels), p.ids, p.root)
        tc = TrainConfig(loss=loss, epochs=epochs or auto_epochs(len(p)), batch_size=batch_size, seed=seed)
        enc_cfg = EncoderConfig(arch=arch, in_channels=p.channels, image_size=p.size)
        ckpt = Path(str(out) + ".ckpt")
        train_encoder(p.images, enc_cfg, tc, device=device, checkpoint_path=ckpt, labels=y, progress=_progress(quiet))
        os.replace(ckpt, out)
    except click.ClickException:
        raise
    except _known_errors() as e:
        raise click.ClickException(_one_line(e)) from e
    _print_summary([("pool", f"{len(p)} images in {pool}"), ("encoder", f"{arch}, {loss}, {tc.epochs} epochs -> {out}"),
                    ("time", f"{time.perf_counter() - t0:.1f} s")])


@main.command("embed")
@click.option("--pool", "-p", type=click.Path(path_type=Path), required=True, help="Folder of images or .npz.")
@click.option("--encoder", type=click.Path(path_type=Path), required=True, help="Encoder checkpoint.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("embeddings.npy"), show_default=True,
              help="Embeddings (.npy, n x d float32); the item ids go to OUT with suffix .ids.txt.")
@click.option("--force", "-f", is_flag=True, help="Overwrite OUT if it exists.")
@pool_options
def embed_cmd(pool, encoder, out, force, device, seed, on_bad_image, workers, decode_timeout, max_pixels, verbose,
              quiet):
    """Embed a pool with a trained encoder (L2-normalised float32)."""
    _setup_logging(verbose, quiet)
    _check_out(out, force)
    import numpy as np

    from .api import Selector
    from .atomic import atomic_write

    try:
        size, channels = _encoder_input(encoder, None)
        p = _read_pool(pool, image_size=size, channels=channels, on_bad=on_bad_image, workers=workers,
                       decode_timeout=decode_timeout, max_pixels=max_pixels, scratch=None, quiet=quiet)
        sel = Selector(encoder=encoder, strategy="random", device=device, seed=seed, on_bad=on_bad_image,
                       progress=_progress(quiet)).fit(p)
        ids_path = out.with_suffix(".ids.txt")
        with atomic_write(out, "wb") as f:
            np.save(f, sel.embeddings_)
        with atomic_write(ids_path, "w") as f:
            f.write("".join(i + "\n" for i in sel.pool_.ids))
    except click.ClickException:
        raise
    except _known_errors() as e:
        raise click.ClickException(_one_line(e)) from e
    _print_summary([("embeddings", f"{sel.embeddings_.shape[0]} x {sel.embeddings_.shape[1]} -> {out}"),
                    ("ids", str(ids_path))])


@main.command("demo-pool")
@click.argument("folder", type=click.Path(path_type=Path))
def demo_pool_cmd(folder):
    """Write a small real pool to FOLDER: scikit-learn's 1,797 handwritten digits as PNG files
    (FOLDER/digit_<d>/<n>.png; the selector never reads the folder names)."""
    from .data import write_demo_pool

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
