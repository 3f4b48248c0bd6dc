"""Plain tables of paths: CSV (TSV to read), JSON Lines, a text list of paths, a ``{path: label}`` JSON
object. Each with its writer and its reader (the ``{path: label}`` object is read by
:func:`selector.formats.common.read_label_mapping`).

Written (one row per chosen image, in rank order; see :mod:`selector.formats.common` for the columns):

* ``.csv`` / ``"csv"``: header ``rank,path,group,score,abs_path``;
* ``.jsonl`` / ``"jsonl"``: one JSON object per line: rank, path, index, group, score, abs_path;
* ``.txt`` / ``"paths"``: the chosen paths, one per line.

Read back as ``{path: label or None}``:

* a CSV/TSV of ``path,label`` (header optional; the label column optional: a plain list of
  paths means "labeled, label unknown", value ``None``). With a header, the path column is the
  one named ``path``/``file``/``filename``/``image``/``id`` and the label column the one named
  ``label``/``class``/``category``/``y``, so the ``rank,path,group,score`` CSV written here reads
  back as "labeled, label unknown";
* a ``.txt`` list of paths (one per line; blank lines and ``#`` comments skipped), all ``None``;
* a Label Studio CSV export (:mod:`selector.formats.label_studio_export`: the label only from the
  labeling config's control, never from the task's data columns);
* the JSON Lines written here (``path`` plus an optional ``label``).

One file giving one image two different labels is an error (as two files doing so are).
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Sequence

from selector.atomic import atomic_write
from selector.strategies.base import Selection

from .common import (
    ExportError,
    LabelCollector,
    LabelFileError,
    Labels,
    absolute_path,
    describe,
    load_json,
    normalize_path,
    read_text,
    selection_rows,
)
from .label_studio_export import CSV_COLUMNS, read_csv_export
from .registry import register_reader, register_writer

PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "filepath", "id")
LABEL_COLUMNS = ("label", "class", "category", "y", "target", "choice")
#: Other column names that mark a first row as a header (the selection CSV's columns).
OTHER_COLUMNS = ("rank", "group", "score", "index")


# ----------------------------------------------------------------------------- writers


@register_writer("csv", ".csv")
def write_csv(selection: Selection, paths: Sequence[str], out_path: str | os.PathLike,
              force: bool = True, root=None, **_: Any) -> list[Path]:
    """CSV with header ``rank,path,group,score,abs_path`` (rank 1-based, UTF-8, RFC 4180 quoting;
    ``abs_path`` empty when the pool is not a folder)."""
    rows = selection_rows(selection, paths)
    out_path = Path(out_path)
    with atomic_write(out_path, "w", newline="", overwrite=force) as f:
        w = csv.writer(f)
        w.writerow(["rank", "path", "group", "score", "abs_path"])
        for r in rows:
            w.writerow([r["rank"], r["path"], r["group"], "" if r["score"] is None else repr(r["score"]),
                        absolute_path(r["path"], root) or ""])
    return [out_path]


@register_writer("jsonl", ".jsonl")
def write_jsonl(selection: Selection, paths: Sequence[str], out_path: str | os.PathLike,
                force: bool = True, root=None, **_: Any) -> list[Path]:
    """JSON Lines: one ``{"rank", "path", "index", "group", "score", "abs_path"}`` object per line
    (``abs_path`` null when the pool is not a folder)."""
    rows = selection_rows(selection, paths)
    out_path = Path(out_path)
    with atomic_write(out_path, "w", overwrite=force) as f:
        for r in rows:
            obj = {"rank": r["rank"], "path": r["path"], "index": r["index"],
                   "group": r["group"], "score": r["score"], "abs_path": absolute_path(r["path"], root)}
            f.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
    return [out_path]


@register_writer("paths", ".txt", aliases=("txt",))
def write_paths(selection: Selection, paths: Sequence[str], out_path: str | os.PathLike,
                force: bool = True, **_: Any) -> list[Path]:
    """The chosen paths, one per line, in rank order (a list Label Studio, CVAT's CLI and
    ``rsync --files-from`` accept)."""
    rows = selection_rows(selection, paths)
    for r in rows:
        if "\n" in r["path"] or "\r" in r["path"]:
            raise ExportError(f"path {r['path']!r} contains a line break; use .csv or .jsonl")
    out_path = Path(out_path)
    with atomic_write(out_path, "w", overwrite=force) as f:
        for r in rows:
            f.write(r["path"] + "\n")
    return [out_path]


# ----------------------------------------------------------------------------- readers


@register_reader(".csv", ".tsv")
def read_csv(path: Path, root=None, **opts: Any) -> Labels:
    """``path,label`` rows (tab-separated for ``.tsv``), or a Label Studio CSV export (its header has the
    columns of :data:`selector.formats.label_studio_export.CSV_COLUMNS`; ``opts`` as for
    :func:`selector.formats.read_labels`); see the module docstring. One image labeled twice differently is
    an error naming both rows."""
    text = read_text(path)
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        rows = [r for r in csv.reader(text.splitlines(), delimiter=delim) if r and any(c.strip() for c in r)]
    except csv.Error as e:
        raise LabelFileError(f"{path}: not valid CSV: {e}") from None
    if not rows:
        return Labels()
    raw = [c.strip() for c in rows[0]]
    if all(c in raw for c in CSV_COLUMNS):  # a Label Studio export: the label only from its control
        return read_csv_export(path, raw, rows[1:], root, **opts)
    head = [c.lower() for c in raw]
    pcol, lcol = 0, 1
    if any(h in PATH_COLUMNS or h in LABEL_COLUMNS or h in OTHER_COLUMNS for h in head):
        rows = rows[1:]
        pcol = next((head.index(c) for c in PATH_COLUMNS if c in head), None)
        if pcol is None:
            raise LabelFileError(f"{path}: header {','.join(head)} has no path column "
                                 f"(one of {', '.join(PATH_COLUMNS)})")
        lcol = next((head.index(c) for c in LABEL_COLUMNS if c in head), None)
    coll = LabelCollector(path)
    for i, r in enumerate(rows):
        if pcol >= len(r):
            raise LabelFileError(f"{path}: row {i + 1} has no path column: {r!r}")
        label = r[lcol] if lcol is not None and lcol < len(r) else None
        coll.add(normalize_path(r[pcol], root), label, f"in row {i + 1}")
    return coll.labels


@register_reader(".txt", ".lst", ".list")
def read_txt(path: Path, root=None, **_: Any) -> Labels:
    """A list of paths, one per line: all labeled, label unknown."""
    text = read_text(path)
    out = Labels()
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            out[normalize_path(s, root)] = None
    return out


@register_reader(".jsonl", ".ndjson")
def read_jsonl(path: Path, root=None, **_: Any) -> Labels:
    """JSON Lines with a ``path`` and an optional ``label`` per line."""
    text = read_text(path)
    coll = LabelCollector(path)
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        obj = load_json(path, line, f"line {i + 1}")
        if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
            raise LabelFileError(f"{path}: line {i + 1} has no \"path\" string")
        label = obj.get("label")
        if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int))):
            raise LabelFileError(f"{path}: line {i + 1}: \"label\" is {describe(label)}, not a label")
        coll.add(normalize_path(obj["path"], root), label, f"on line {i + 1}")
    return coll.labels
