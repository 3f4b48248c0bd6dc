"""What the commands do, as functions a Python user can call too: read the inputs, check everything cheap
before anything slow, run the :class:`selector.Selector`, write the result, and say what was done in
summary rows (:mod:`selector.summary`).

* :func:`select_from_embeddings`, :func:`select_from_pool`: a selection and its summary rows
  (``selector select``); :func:`write_selection`, :func:`selection_bytes` export it;
* :func:`train_to_file` (``selector train``), :func:`embed_to_file` (``selector embed``),
  :func:`show_selection` (``selector show``);
* the pieces they share: :func:`check_output` (an output is refused before any work),
  :func:`read_pool`, :func:`plan_for` (the labels files), :func:`read_embeddings_file`, :func:`read_ids`;
* :func:`step` names the input a block works on, so that an unexpected exception carries it
  (:func:`failed_step`) and the command line's one-line error names the file.

Several processes: the functions that read a pool take the Selector's ``dist`` (or ``dist=``); every
rank reads the inputs and the ranks agree on any failure; ranks other than 0 return None once their
share of training and embedding is done. Nothing here prints.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import summary

log = logging.getLogger(__name__)


# -- naming the input of a failure ------------------------------------------------------------------

@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Name what the block works on (``"pool /data/x"``, ``"labels file a.json"``): an exception leaving
    the block carries it (:func:`failed_step`; the innermost step wins)."""
    try:
        yield
    except Exception as e:
        if failed_step(e) is None:
            with contextlib.suppress(AttributeError, TypeError):  # a type without instance attributes
                e.selector_step = what
        raise


def failed_step(e: BaseException) -> str | None:
    """What the :func:`step` that ``e`` left was working on, if any."""
    return getattr(e, "selector_step", None)


def _agree(dist, fn: Callable[[], Any]) -> Any:
    return fn() if dist is None else dist.agree(fn)


def _encoder_step(sel) -> str:
    if sel.encoder is not None:
        return f"encoder {sel.encoder}"
    return f"backbone {sel.backbone_name}" + (f" with weights {sel.weights}" if sel.weights is not None else "")


def _check_weights(sel) -> None:
    """A pretrained backbone's weights file, checked (exists, loads, fits, runs at its side) before any pool
    is read: :func:`selector.encoding.check_weights_first`."""
    from .encoding import check_weights_first

    with step(_encoder_step(sel)):
        check_weights_first(sel.backbone_name, sel.weights, sel.backbone_size, encoder=sel.encoder)


# -- outputs ----------------------------------------------------------------------------------------

class OutputError(ValueError):
    """An output cannot be written where asked: its folder is missing or not writable."""


def check_output(out: Path, force: bool = False, *, fmt: str | None = None, export: bool = False,
                 embeddings: bool = False) -> None:
    """Refuse an output before any work: any file the run will write (``selector.formats.output_paths``:
    the main file and, with ``export`` or ``embeddings``, its side files) exists without ``force`` or is
    a folder, the suffix is unknown, or the folder is missing or not writable (tried by creating a
    temporary file there)."""
    from .atomic import check_outputs
    from .formats import format_for, output_paths

    out = Path(out)
    check_outputs([out], force)
    paths = [out]
    if export:
        paths = output_paths(out, format_for(out, fmt))
    elif embeddings:
        paths = output_paths(out, "embeddings")
    check_outputs(paths, force)
    if not out.parent.is_dir():
        raise OutputError(f"output folder {out.parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"output folder {out.parent} is not writable: {e.strerror or e}") from e


def _export_options(result, kw: dict) -> dict:
    """Export options, the classes and the round defaulting to those of the labels files."""
    kw = dict(kw)
    if kw.get("class_names") is None:
        kw["class_names"] = result.info.get("class_names") or None
    if kw.get("round") is None:
        kw["round"] = result.info.get("round", 1)
    return kw


@contextlib.contextmanager
def _writing(out) -> Iterator[None]:
    """An output checked by :func:`check_output` that exists now was written by another run meanwhile;
    any other OSError becomes a :class:`selector.atomic.WriteError` naming ``out``."""
    from .atomic import OutputExistsError, WriteError

    try:
        with step(f"writing {out}"):
            yield
    except OutputExistsError as e:
        raise OutputExistsError(e.path, f"output {e.path} was created by another run while this one worked; "
                                        "pass --force to overwrite it") from e
    except WriteError:
        raise
    except OSError as e:
        raise WriteError(e, out) from e


def write_selection(result, out: str | os.PathLike, fmt: str | None = None, *, force: bool = False,
                    **export_kw) -> list[Path]:
    """Export a :class:`selector.api.SelectionResult` (``export_kw``: see :mod:`selector.formats`;
    ``class_names`` and ``round`` default to those of the labels files the plan read)."""
    with _writing(out):
        return result.export(out, fmt, force=force, **_export_options(result, export_kw))


def selection_bytes(result, fmt: str | None, suffix: str, **export_kw) -> bytes:
    """The file :func:`write_selection` would write with ``suffix`` (a one-file format), as bytes."""
    with tempfile.TemporaryDirectory(prefix="selector-stdout-") as tmp:
        with _writing("-"):
            written = result.export(Path(tmp) / f"selection{suffix}", fmt, **_export_options(result, export_kw))
        return written[0].read_bytes()


# -- inputs -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """How a pool folder is read (see :func:`selector.pool.load_pool`)."""

    on_bad: str = "skip"
    workers: int | None = None
    decode_timeout: float = 60.0
    max_pixels: int = 89_478_485
    follow_links: bool = False


def read_pool(pool: str | os.PathLike, *, image_size: int | None = None, channels: int | None = None,
              reading: Reading = Reading(), scratch: Path | None = None, progress: bool = False,
              decode: bool = True):
    """:func:`selector.pool.load_pool` with ``reading`` (``decode=False``: listed and digested, the images read
    later as the encoder needs them); under torchrun the processes of one node share its CPUs for decoding."""
    from .pool import load_pool

    workers = reading.workers
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) if "TORCHELASTIC_RUN_ID" in os.environ else 1
    if workers is None and local > 1:
        workers = max(1, min(8, (os.cpu_count() or 1) // local))
    kw = {"follow_links": True} if reading.follow_links and not str(pool).lower().endswith(".npz") else {}
    with step(f"pool {pool}"):
        return load_pool(pool, decode=decode, image_size=image_size, channels=channels, on_bad=reading.on_bad,
                         progress=progress, workers=workers, timeout_s=reading.decode_timeout,
                         max_pixels=reading.max_pixels, scratch_dir=scratch, **kw)


@dataclass(frozen=True)
class LabelFiles:
    """Labels files of earlier rounds (``labeled``) and files of images sent out but not labeled yet
    (``exclude``), with how to read them (see :func:`selector.formats.read_labels`)."""

    labeled: Sequence[Path] = ()
    exclude: Sequence[Path] = ()
    skipped: str = "seen"
    document_root: Path | None = None
    url_prefix: str | None = None

    @property
    def files(self) -> list[Path]:
        return [*self.labeled, *self.exclude]


def plan_for(budget: int, ids: Sequence[str], root: Path | None, labels: LabelFiles = LabelFiles(),
             allow_smaller: bool = False, where: str = "the pool", duplicate_mask=None):
    """:func:`selector.plan.plan_selection` with the labels files of ``labels``."""
    from .plan import plan_selection

    files = labels.files
    read_kw = {}
    if files:
        read_kw = {"skipped": labels.skipped, "url_prefix": labels.url_prefix, "document_root": labels.document_root}
    what = f"labels file {files[0]}" if len(files) == 1 else f"labels files {', '.join(map(str, files))}"
    with step(what) if files else contextlib.nullcontext():
        return plan_selection(budget, ids, files=labels.labeled, exclude=labels.exclude, root=root,
                              duplicate_mask=duplicate_mask, allow_smaller=allow_smaller, where=where, **read_kw)


def read_embeddings_file(path: Path, normalize: bool = False):
    """(embeddings, ids or None) of a file (:func:`selector.embeddings_io.read_embeddings`); ``normalize``
    scales the rows to unit length, else rows that are not are warned about."""
    from .embeddings_io import non_unit_rows, normalize_rows, read_embeddings

    with step(f"embeddings {path}"):
        emb, ids = read_embeddings(path)
        if normalize:
            return normalize_rows(emb), ids
        off = non_unit_rows(emb)
    if off:
        log.warning("%d of %d rows of %s are not unit length; the strategies compare inner products, so "
                    "pass --normalize unless the lengths carry meaning", off, len(emb), path)
    return emb, ids


def read_ids(path: Path, n: int) -> list[str]:
    """The ``n`` item ids of an ids file, one per line; raises EmbeddingsError for a missing file, a
    wrong count, a name that is not a clean path or a repeated one."""
    from .embeddings_io import EmbeddingsError
    from .names import display_name, name_problem

    try:
        lines = [ln.rstrip("\r\n") for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as e:
        raise EmbeddingsError(f"cannot read ids {path}: {e.strerror}") from e
    if len(lines) != n:
        raise EmbeddingsError(f"ids file {path} has {len(lines)} lines for {n} embeddings")
    first: dict[str, int] = {}
    for k, name in enumerate(lines, 1):
        problem = name_problem(name)
        if problem is not None:
            raise EmbeddingsError(f"ids file {path}, line {k}: '{display_name(name)}': {problem.replace('file ', '')}")
        if name in first:
            raise EmbeddingsError(f"ids file {path}: '{display_name(name)}' is on lines {first[name]} and {k}")
        first[name] = k
    return lines


# -- selector select --------------------------------------------------------------------------------

def select_from_embeddings(path: Path, budget: int, strategy, *, ids: Path | None = None, normalize: bool = False,
                           image_root: Path | None = None, labels: LabelFiles = LabelFiles(),
                           allow_smaller: bool = False, seed: int = 0):
    """Choose ``budget`` rows of an embeddings file (any format of :func:`read_embeddings_file`) with
    ``strategy`` (a name or a Strategy); ``ids``: an ids file [default: the file's ids, else row
    numbers]. Returns (:class:`selector.api.SelectionResult`, summary rows)."""
    from .api import select_embeddings

    rows: summary.Rows = []
    emb, file_ids = read_embeddings_file(path, normalize)
    item_ids = (read_ids(ids, len(emb)) if ids is not None else file_ids if file_ids is not None
                else [str(i) for i in range(len(emb))])
    plan = plan_for(budget, item_ids, image_root, labels, allow_smaller, f"embeddings {path}")
    if labels.files:
        rows.append(("labeled", summary.labeled_line(plan, labels.labeled, labels.exclude)))
    rows.append(("embeddings", f"{len(emb)} x {emb.shape[1]} from {path}" + (" (normalised)" if normalize else "")))
    with step(f"strategy {getattr(strategy, 'name', strategy)}"):
        result = select_embeddings(emb, plan.budget, plan.excluded, strategy, seed, item_ids, image_root,
                                   labels=plan.labels, info=plan.info)
    rows.append(("strategy", summary.strategy_line(result)))
    return result, rows


def select_from_pool(selector, pool: str | os.PathLike, budget: int, *, labels: LabelFiles = LabelFiles(),
                     reading: Reading = Reading(), allow_smaller: bool = False):
    """Fit ``selector`` (a :class:`selector.Selector`: encoder, strategy, cache folder, ``dist``) on
    ``pool`` and choose ``budget`` images. The encoder file, the pool, the labels files and the budget
    are all read and checked before training starts (on every rank, which agree on any failure).
    Returns (:class:`selector.api.SelectionResult`, summary rows); (None, rows) on ranks other than 0."""
    from .encoding import encoder_input

    sel, cache = selector, selector.cache_dir

    def prepare():
        with step(f"encoder {sel.encoder}"):
            size, channels = encoder_input(sel.encoder, sel.image_size, what="--image-size")
        _check_weights(sel)
        if cache is not None:
            Path(cache).mkdir(parents=True, exist_ok=True)
        p = read_pool(pool, image_size=size, channels=channels, reading=reading, scratch=cache, progress=sel.progress,
                      decode=False)
        plan = plan_for(budget, p.ids, p.root, labels, allow_smaller, f"{pool}", duplicate_mask=p.duplicate_mask)
        return p, plan

    p, plan = _agree(sel.dist, prepare)
    with step(_encoder_step(sel)):
        sel.fit(p, labels=plan.labels)  # known labels train the losses that use them (KCL, SupCon-spread)
    if sel.dist is not None and not sel.dist.main:
        return None, []
    if len(sel.pool_) != len(p):  # files that did not decode were dropped: the plan follows the pool
        p = sel.pool_
        plan = plan_for(budget, p.ids, p.root, labels, allow_smaller, f"{pool}", duplicate_mask=p.duplicate_mask)
    rows: summary.Rows = [("pool", summary.pool_line(p, pool))]
    if labels.files:
        rows.append(("labeled", summary.labeled_line(plan, labels.labeled, labels.exclude)))
    rows.append(("encoder", f"{sel.encoder}" if sel.encoder is not None else summary.encoder_line(sel, len(p), cache)))
    n_unique = len(p) - p.n_duplicates
    rows.append(("embedding", f"{sel.embeddings_.shape[1]}-d, {sel.n_embedded_} images embedded, "
                              f"{n_unique - sel.n_embedded_} from cache ({sel.timings_['embed']:.1f} s)"))
    with step(f"strategy {getattr(sel.strategy, 'name', sel.strategy)}"):
        result = sel.select_plan(plan)
    rows.append(("strategy", summary.strategy_line(result)))
    return result, rows


# -- selector train, embed ---------------------------------------------------------------------------

class NothingToTrain(ValueError):
    """The encoder asked for is a pretrained backbone used frozen: there is nothing to train."""


def train_to_file(selector, pool: str | os.PathLike, out: Path, *, labels: Path | None = None,
                  reading: Reading = Reading(), dist=None):
    """Train the encoder ``selector`` describes (backbone, loss, epochs, ...; its device and progress)
    on ``pool`` and write its checkpoint to ``out``; progress is kept in OUT.ckpt, so running it again
    after an interrupt resumes. ``labels``: a labels file for the losses that use known labels.
    Returns summary rows (pool, encoder); None on ranks other than 0."""
    from .train import train_encoder

    sel = selector

    def prepare():  # every rank reads the pool (each node must see it) and agrees on any failure
        _check_weights(sel)
        p = read_pool(pool, image_size=sel.image_size, reading=reading, progress=sel.progress)
        y = None
        if labels is not None:
            from .plan import labeled_mask

            with step(f"labels file {labels}"):
                y = labeled_mask(str(labels), p.ids, p.root).labels
        return p, y

    p, y = _agree(dist, prepare)
    name, mode, reason = sel.resolve_backbone(p)
    if mode == "frozen":
        raise NothingToTrain(f"backbone {name} in mode frozen has nothing to train; use it directly "
                             "(selector select/embed --backbone-mode frozen) or --backbone-mode finetune")
    tc, enc_cfg = sel.train_config(len(p), backbone=name), sel.encoder_config(p)
    ckpt = Path(str(out) + ".ckpt")
    with step(_encoder_step(sel)):
        enc = train_encoder(p.images, enc_cfg, tc, device=sel.device, checkpoint_path=ckpt, labels=y,
                            progress=sel.progress, weights=sel.weights, dist=dist)
    if dist is not None and not dist.main:
        return None  # rank 0 writes the checkpoint
    os.replace(ckpt, out)
    why = f" ({reason})" if sel.backbone_name == "auto" else ""
    return [("pool", f"{len(p)} images in {pool}"),
            ("encoder", summary.trained_line(name, why, tc, enc.train_report, out))]


def embed_to_file(selector, pool: str | os.PathLike, out: Path, *, force: bool = False,
                  reading: Reading = Reading()):
    """Embed ``pool`` with ``selector``'s encoder (a checkpoint, or a pretrained backbone used frozen) and
    write the embeddings (.npy, n x d float32) and the ids (OUT with suffix .ids.txt). Returns summary
    rows; None on ranks other than 0."""
    import numpy as np

    from .atomic import atomic_write
    from .encoding import encoder_input
    from .formats import output_paths

    sel, cache = selector, selector.cache_dir

    def prepare():  # every rank reads the pool (each node must see it) and agrees on any failure
        with step(f"encoder {sel.encoder}"):
            size, channels = encoder_input(sel.encoder, None, what="--image-size")
        _check_weights(sel)
        if cache is not None:
            Path(cache).mkdir(parents=True, exist_ok=True)
        return read_pool(pool, image_size=size, channels=channels, reading=reading, scratch=cache,
                         progress=sel.progress, decode=False)

    p = _agree(sel.dist, prepare)
    with step(_encoder_step(sel)):
        sel.fit(p)
    if sel.dist is not None and not sel.dist.main:
        return None  # rank 0 writes the embeddings
    _, ids_path = output_paths(out, "embeddings")
    with step(f"writing {out}"):
        with atomic_write(out, "wb", overwrite=force) as f:
            np.save(f, sel.embeddings_)
        try:  # ids are UTF-8 names without control characters (selector.names), so one per line is exact
            with atomic_write(ids_path, "w", overwrite=force) as f:
                f.write("".join(i + "\n" for i in sel.pool_.ids))
        except BaseException:
            Path(out).unlink(missing_ok=True)  # never an .npy without its ids
            raise
    return [("embeddings", f"{sel.embeddings_.shape[0]} x {sel.embeddings_.shape[1]} -> {out}"),
            ("ids", str(ids_path))]


# -- selector show -----------------------------------------------------------------------------------

def show_selection(selection: Path, pool: Path, out: Path | None = None, *, map_out: Path | None = None,
                   html_out: Path | None = None, summary: Path | None = None, html_map: bool = True,
                   embeddings: Path | None = None, ids: Path | None = None, selector=None,
                   reading: Reading = Reading(), cols: int = 10, tile: int = 96, max_images: int | None = None,
                   page: int = 1, force: bool = True, progress: bool = False):
    """Draw page ``page`` of what ``selection`` chose from ``pool`` (:func:`selector.report.read_inputs`, with
    ``summary``, select's ``--json``), the images read by the pool's reader with ``reading``: a contact sheet
    PNG ``out``, a PNG map ``map_out`` of the embedding (:func:`map_embeddings`, with ``selector`` or the file
    ``embeddings``), an HTML page ``html_out`` (:mod:`selector.report`; the map too with ``html_map``, or the
    reason it has none where it was not asked for and needs training). Everything that can fail comes before
    the first file is written; ``force=False`` never replaces a file that appeared meanwhile. Summary rows."""
    from . import report
    from . import show as pictures

    if out is None and html_out is None:
        raise pictures.ShowError("nothing to draw: give a sheet PNG (out) or an HTML page (html_out)")
    with step(f"selection {selection}"):
        got = report.read_inputs(selection, summary, max_images or pictures.SHEET_IMAGES, page, cols, tile,
                                 sheet=out is not None)
    with step(f"images of {pool}"):
        images, bad = pictures.read_shown(pool, got.shown, tile, on_bad=reading.on_bad, max_pixels=reading.max_pixels,
                                          workers=reading.workers, timeout_s=reading.decode_timeout,
                                          follow_links=reading.follow_links)
        sheet = pictures.contact_sheet(got.shown, images, cols=cols, tile=tile, unreadable=bad, totals=got.totals,
                                       grouped=got.grouped) if out is not None else None
    points = how = None
    map_note = "left out (--no-map)"
    if map_out is not None or (html_out is not None and html_map):
        try:
            emb, item_ids, how = map_embeddings(pool, embeddings=embeddings, ids=ids, selector=selector,
                                                reading=reading, progress=progress)
            with step(f"map of {how}"):
                points = pictures.map_points(emb, item_ids, got.rows)
        except pictures.ShowError as e:
            if map_out is not None or embeddings is not None:
                raise
            map_note = str(e)
            log.warning("the page has no map: %s", e)
    text = report.page_html(got, selection, pool, images, bad, tile, points, how, map_note) if html_out else None
    if map_out is not None:
        with _writing(map_out):
            pictures.pool_map(emb, item_ids, got.rows, map_out, grouped=got.grouped, points=points, overwrite=force)
    if out is not None:
        with _writing(out):
            pictures.write_png(sheet, out, overwrite=force)
    if html_out is not None:
        with _writing(html_out):
            report.write_html(text, html_out, overwrite=force)
    return report.show_rows(got, page, bad, out=out, map_out=map_out, html_out=html_out, points=points, how=how)


def map_embeddings(pool: Path, *, embeddings: Path | None = None, ids: Path | None = None, selector=None,
                   reading: Reading = Reading(), progress: bool = False):
    """(embeddings, ids, what they are) for the map of ``pool``: a file (with an ids file when it holds none),
    else the embedding ``selector`` (a :class:`selector.Selector` built with the options ``select`` was given;
    default: the default one on the user cache folder) makes of the pool: planned as ``select`` plans it, its
    encoder and vectors taken from the cache, the pixel view added when the plan adds it. So the map shows
    the embedding the selection used whatever else the cache holds; a trained encoder that is not in the
    cache is an error (:func:`selector.show.check_cached_training`), never trained here."""
    from .show import ShowError, check_cached_training, embedding_name

    if embeddings is not None:
        from .embeddings_io import read_embeddings

        with step(f"embeddings {embeddings}"):
            emb, file_ids = read_embeddings(embeddings)
        item_ids = read_ids(ids, len(emb)) if ids is not None else file_ids
        if item_ids is None:
            raise ShowError(f"{embeddings} holds no ids; pass --ids")
        return emb, item_ids, str(embeddings)
    from .api import Selector
    from .cache import default_cache_dir
    from .encoding import encoder_input

    sel = selector if selector is not None else Selector(cache_dir=default_cache_dir(), progress=progress)
    with step(f"encoder {sel.encoder}"):
        size, channels = encoder_input(sel.encoder, sel.image_size, what="--image-size")
    p = read_pool(pool, image_size=size, channels=channels, reading=reading, scratch=sel.cache_dir,
                  progress=progress, decode=False)
    with step(_encoder_step(sel)):
        plan = sel.plan_encoder(p)
        check_cached_training(plan, sel.cache_dir, pool)
        sel.fit(p)
    return sel.embeddings_, sel.pool_.ids, embedding_name(plan)
