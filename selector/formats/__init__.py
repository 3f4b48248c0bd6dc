"""Selections written for labeling tools, and their labels read back: one module per tool, each with
its writer and its reader.

:func:`export_selection` picks a writer from ``fmt`` or the output suffix (:data:`FORMATS`,
:data:`SUFFIX_FORMATS`):

* ``.csv`` / ``"csv"``, ``.jsonl`` / ``"jsonl"``, ``.txt`` / ``"paths"``: :mod:`selector.formats.tabular`;
* ``.json`` / ``"label-studio"``: Label Studio tasks plus a labeling config,
  :mod:`selector.formats.label_studio`;
* ``.xml`` / ``"cvat"``, ``.zip`` / ``"cvat-zip"``: CVAT annotations (plus a manifest and a label spec)
  or a dataset zip, :mod:`selector.formats.cvat`.

The columns every format shares (1-based ``rank``, ``path``, ``group``, ``score``) are described in
:mod:`selector.formats.common`. Every file is written with :func:`selector.atomic.atomic_write`: a
reader sees the old file or the whole new one, never half of it. Formats with companion files write
the companions first and the main file last; each file is atomic on its own, not the set.

:func:`read_labels` reads ``{path: label}`` back from any of these files (the reader follows the
suffix; Label Studio's exports: :mod:`selector.formats.label_studio_export`); :func:`read_label_files`
takes the union of several (one per round). Both return :class:`Labels`, a dict that also says which
items are skipped or pending tasks and which rounds and ranks of selector's tasks were seen.

A new format is one module that registers its writer (``@register_writer``) and reader
(``@register_reader``), and one import line below.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from selector.atomic import check_outputs
from selector.strategies.base import Selection

# Importing a format module registers its writers and readers; this order is the order of the
# --format choices.
from . import cvat, label_studio, label_studio_export, tabular  # noqa: F401,I001
from .common import (
    LABELED,
    PENDING,
    SKIPPED_TASK,
    ExportError,
    LabelFileError,
    Labels,
    SeenClasses,
    absolute_path,
    is_array_id,
    normalize_path,
    read_text,
    selection_rows,
    side_path,
    url_to_path,
)
from .label_studio import SKIPPED, LabelingConfig, read_config
from .label_studio_export import last_round
from .registry import FORMAT_ALIASES, FORMATS, READERS, SIDE_FILES, SUFFIX_FORMATS, register_reader, register_writer

logger = logging.getLogger(__name__)

__all__ = ["ExportError", "FORMATS", "LabelFileError", "LabelingConfig", "Labels", "READERS", "SKIPPED",
           "SUFFIX_FORMATS", "SeenClasses", "absolute_path", "export_selection", "format_for", "is_array_id",
           "last_round", "normalize_path", "output_paths", "read_config", "read_label_files", "read_labels",
           "register_reader", "register_writer", "selection_rows", "side_path", "url_to_path"]


# ----------------------------------------------------------------------------- writing


def format_for(out_path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format name for ``fmt`` (a name from :data:`FORMATS`) or, if None, the suffix."""
    if fmt is not None:
        key = fmt.lower().replace("_", "-")
        key = FORMAT_ALIASES.get(key, key)
        if key not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}; choose one of {sorted(FORMATS)}")
        return key
    suffix = Path(out_path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise ExportError(f"cannot tell the export format from {str(out_path)!r} (suffix {suffix!r}); "
                          f"use one of {sorted(SUFFIX_FORMATS)} or pass fmt= one of "
                          f"{sorted(FORMATS)}")
    return SUFFIX_FORMATS[suffix]


def output_paths(out_path: str | os.PathLike, fmt: str | None = None, **kw: Any) -> list[Path]:
    """Every file an export (or ``selector embed``, ``fmt="embeddings"``) to ``out_path`` may write,
    main file first: the side files follow the writers' options (``write_config`` for Label Studio,
    whose config is listed even when it turns out to have no choice to offer and is not written;
    ``manifest``, ``labels`` for CVAT; each format registers its own, :data:`SIDE_FILES`). The one list
    that :func:`selector.atomic.check_outputs` checks before any work, in :func:`export_selection` and in
    the command line alike."""
    out_path = Path(out_path)
    if fmt == "embeddings":
        return [out_path, out_path.with_suffix(".ids.txt")]
    name = format_for(out_path, fmt)
    side = SIDE_FILES.get(name)
    return [out_path, *(side(out_path, **kw) if side is not None else [])]


def export_selection(selection: Selection, paths: Sequence[str], out_path: str | os.PathLike,
                     fmt: str | None = None, root: str | os.PathLike | None = None,
                     strategy: str | None = None, force: bool = True, **kw: Any) -> list[Path]:
    """Write ``selection`` for annotators; returns the files written (main file first).

    Args:
        selection: the strategy's result (indices into ``paths`` in rank order).
        paths: (n,) pool item ids (relative POSIX paths under ``root``, or array ids).
        out_path: the output file; its folder must exist.
        fmt: one of :data:`FORMATS`; None picks it from the suffix (:data:`SUFFIX_FORMATS`).
        root: the pool folder (Label Studio absolute paths / document root, CVAT image sizes).
        strategy: the strategy's name, recorded as Label Studio's ``model_version``.
        force: overwrite existing files. False refuses, before writing anything, when any file
            of :func:`output_paths` exists (:class:`selector.atomic.OutputExistsError`), and never
            replaces a file that appears meanwhile (another run writing the same output).
        **kw: format options (``url_prefix``, ``document_root``, ``group_names``, ``sizes``...);
            options a format does not use are ignored.
    """
    name = format_for(out_path, fmt)
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise ExportError(f"output folder {out_path.parent} does not exist")
    check_outputs(output_paths(out_path, name, **kw), force)
    files = FORMATS[name](selection, paths, out_path, root=root, strategy=strategy, force=force, **kw)
    logger.info("wrote %d chosen items as %s to %s", len(selection), name, files[0])
    return files


# ----------------------------------------------------------------------------- reading


def read_labels(path: str | os.PathLike, root: str | os.PathLike | None = None, *,
                url_prefix: str | None = None, document_root: str | os.PathLike | None = None,
                from_name: str | None = None, data_key: str = "image",
                skipped: str = "seen") -> Labels:
    """``{pool-relative path: label or None}`` from a labels file (format from the suffix), as
    :class:`Labels`: also which items are skipped or pending Label Studio tasks, and the rounds and ranks
    of selector's tasks seen.

    Args:
        path: ``.csv``/``.tsv`` (also Label Studio's CSV export), ``.txt``/``.lst``,
            ``.jsonl``/``.ndjson``, ``.json`` (Label Studio JSON or JSON-MIN export, or
            ``{path: label}``), ``.xml`` (CVAT for images 1.1) or ``.zip`` (a CVAT dataset export holding
            ``annotations.xml``). At most :data:`selector.formats.common.MAX_LABELS_BYTES` (unpacked).
        root: the pool folder, to turn absolute paths under it into relative ones.
        url_prefix: the ``url_prefix`` used at export when it was not Label Studio's local-files
            one (e.g. ``"http://localhost:8081/"``); tasks exported by :func:`export_selection`
            carry ``data.path`` and need none of this.
        document_root: Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT`` when it differs from
            ``root``.
        from_name: the Choices control of the labeling config that holds the class. Default: ``"choice"``,
            the control selector's labeling config names (in a JSON export, else the only Choices control
            its annotations use). Task data fields are never read as labels.
        data_key: the task data key holding the image URL.
        skipped: Label Studio tasks without a finished annotation (skipped/cancelled, or not
            annotated yet): ``"seen"`` returns them with label None (taken), ``"unseen"`` leaves
            them out.

    Raises:
        LabelFileError: a one-line message naming the file, for unreadable or invalid files, and for
            one image labeled differently twice in the file.
    """
    p = Path(path)
    if skipped not in SKIPPED:
        raise ValueError(f"skipped must be one of {', '.join(SKIPPED)}, got {skipped!r}")
    suffix = p.suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        read_text(p)  # a missing or unreadable file is named as such first
        raise LabelFileError(f"labels file {p}: unknown suffix {suffix!r}; use .csv, .tsv, .txt, .jsonl, "
                             f".json (Label Studio export), .xml or .zip (CVAT)")
    got = reader(p, root, url_prefix=url_prefix, document_root=document_root, from_name=from_name,
                 data_key=data_key, skipped=skipped)
    return got if isinstance(got, Labels) else Labels(got)


def read_label_files(labeled: Sequence[str | os.PathLike] = (), exclude: Sequence[str | os.PathLike] = (),
                     root: str | os.PathLike | None = None, **kw: Any) -> Labels:
    """The union of several labels files, plus files that are taken but not labeled.

    Args:
        labeled: labels files (any :func:`read_labels` format), e.g. one export per round.
        exclude: files listing items sent to annotators but not annotated yet (a selection
            ``.csv``, Label Studio tasks ``.json``, ``.txt``...): they count as taken (label
            None, pending), their labels or predictions are never read.
        root, **kw: passed to :func:`read_labels`.

    Returns:
        :class:`Labels` ``{path: label or None}``; an item both labeled and excluded keeps its label. An
        item is labeled when any file labels it, else skipped when any file says so, else pending.
        ``rounds`` and ``round_sizes`` gather those of every file.

    Raises:
        LabelFileError: one file is unreadable, or two files give one image different labels
            (the message names both files and the image).
    """
    out = Labels()
    source: dict[str, Path] = {}
    for f in labeled:
        got = read_labels(f, root, **kw)
        for key, lab in got.items():
            old = out.get(key)
            if old is not None and lab is not None and old != lab:
                raise LabelFileError(f"{f}: {key!r} is labeled {lab!r}, but {old!r} in {source[key]}")
            status = got.status(key)
            if key not in out or (status != PENDING and out.status(key) != LABELED):
                out.skipped.discard(key)
                out.pending.discard(key)
                if status != LABELED:
                    (out.skipped if status == SKIPPED_TASK else out.pending).add(key)
            if old is None:
                out[key] = lab
                source[key] = Path(f)
        out.add_tasks(got)
    for f in exclude:
        got = read_labels(f, root, **kw)
        for key in got:
            if key not in out:
                out[key] = None
                out.pending.add(key)
        out.add_tasks(got)
    return out
