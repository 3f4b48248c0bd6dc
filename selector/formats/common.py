"""What every format shares: the chosen items as rows, path forms, and the errors.

Conventions shared by every writer (:func:`selection_rows`):

* ``rank`` is **1-based**: rank 1 is the strategy's first pick (``selection.indices[0]``).
  Annotators should label in rank order, so a budget cut short keeps the first picks.
* ``path`` is the pool's item id, ``paths[index]``: a relative POSIX path under the pool
  root for an image folder, or an id such as ``"x[123]"`` for an ``.npz`` pool.
* ``group`` is the strategy's estimated group (cluster) of the item, ``-1`` for none.
* ``score`` is the strategy's score (higher = more preferred); a non-finite score is
  written as an empty CSV cell / JSON ``null``.

Paths read back are forgiving (:func:`normalize_path`, :func:`url_to_path`): ``./a.jpg``, ``a\\b.jpg``,
an absolute path under ``root``, ``file://`` URLs and Label Studio image URLs
(``/data/local-files/?d=...``, URL-quoted) all map to the pool's relative POSIX path (Unicode NFC).
"""
from __future__ import annotations

import math
import os
import posixpath
import re
import unicodedata
from pathlib import Path, PureWindowsPath
from typing import Any, Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from selector.names import display_name, name_problem
from selector.strategies.base import Selection

#: Array-pool ids look like ``x[123]``: not files on disk.
_ARRAY_ID = re.compile(r"^[A-Za-z_][\w.-]*\[\d+\]$")


class ExportError(ValueError):
    """Bad input to an export (selection vs paths, unknown format, unreadable image)."""


class LabelFileError(ValueError):
    """A labels file that cannot be read or does not hold labels; the message names the file."""


# ----------------------------------------------------------------------------- rows


def selection_rows(selection: Selection, paths: Sequence[str]) -> list[dict[str, Any]]:
    """The chosen items as dicts in rank order, after checking the selection against ``paths``.

    Args:
        selection: indices (k,) into ``paths``, scores (k,), groups (k,).
        paths: (n,) item ids of the pool.

    Returns:
        k dicts ``{"rank": 1-based int, "index": int, "path": str, "group": int,
        "score": float | None}`` (None for a non-finite score).
    """
    idx = np.asarray(selection.indices).reshape(-1)
    scores = np.asarray(selection.scores, dtype=np.float64).reshape(-1)
    groups = np.asarray(selection.groups).reshape(-1)
    k = idx.shape[0]
    if scores.shape[0] != k or groups.shape[0] != k:
        raise ExportError(f"selection has {k} indices but {scores.shape[0]} scores and "
                          f"{groups.shape[0]} groups")
    if k and not np.issubdtype(idx.dtype, np.integer):
        raise ExportError(f"selection indices must be integers, got dtype {idx.dtype}")
    n = len(paths)
    if k and (idx.min() < 0 or idx.max() >= n):
        raise ExportError(f"selection index out of range: indices span [{idx.min()}, {idx.max()}] "
                          f"for {n} paths")
    if np.unique(idx).shape[0] != k:
        raise ExportError("selection contains duplicate indices")
    rows = []
    for r, (i, s, g) in enumerate(zip(idx.tolist(), scores.tolist(), groups.tolist())):
        p = paths[i]
        if not isinstance(p, str) or not p:
            raise ExportError(f"paths[{i}] must be a non-empty string, got {p!r}")
        problem = name_problem(p)
        if problem is not None:  # would break a line-based, CSV or XML file, or a terminal
            raise ExportError(f"paths[{i}] '{display_name(p)}' cannot be exported: {problem.replace('file ', '')}")
        rows.append({"rank": r + 1, "index": int(i), "path": p, "group": int(g),
                     "score": float(s) if math.isfinite(s) else None})
    return rows


def is_array_id(path: str) -> bool:
    """True for an ``.npz`` pool id such as ``"x[123]"`` (not a file on disk)."""
    return bool(_ARRAY_ID.match(path))


def group_name(group: int, group_names: Mapping[int, str] | Sequence[str] | None) -> str:
    """The name of estimated group ``group``: ``group_names[group]``, default ``"group-<g>"``."""
    if group_names is None:
        return f"group-{group}"
    try:
        return str(group_names[group])
    except (KeyError, IndexError) as e:
        raise ExportError(f"group_names has no name for group {group}") from e


def absolute_path(path: str, root: str | os.PathLike | None) -> str | None:
    """The image's absolute file path when the pool is a folder (for FiftyOne and other tools that
    open files directly), else None (array ids, or no root)."""
    if root is None or is_array_id(path) or not Path(root).is_dir():
        return None
    return str(Path(root).resolve() / Path(path))


def side_path(out_path: str | os.PathLike, suffix: str) -> Path:
    """A companion file of ``out_path``: ``<stem><suffix>`` beside it (``tasks.json`` ->
    ``tasks.config.xml``)."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + suffix)


def config_choices(groups: Sequence[int], class_names: Sequence[str] | None = None,
                   predict_groups: bool = False, group_names=None) -> list[str]:
    """The classes offered to annotators: ``class_names``, plus the estimated groups' names only
    when ``predict_groups`` (then a group's name may also be one of the classes, via
    ``group_names``)."""
    choices = [str(c) for c in (class_names or [])]
    if predict_groups:
        for g in sorted({int(g) for g in groups if g >= 0}):
            name = group_name(g, group_names)
            if name not in choices:
                choices.append(name)
    return choices


# ----------------------------------------------------------------------------- paths read back


def normalize_path(p: str, root: str | os.PathLike | None = None) -> str:
    """The pool-relative POSIX form of a path someone wrote down.

    Backslashes become ``/``; ``file://`` is dropped; ``./`` and ``a/../`` are folded; an
    absolute path under ``root`` becomes relative to it (one outside stays absolute, so it
    never matches by accident). Unicode is normalised to NFC.
    """
    s = p.strip()
    if s.lower().startswith("file://"):
        s = unquote(urlsplit(s).path)
    s = s.replace("\\", "/")
    is_win_abs = PureWindowsPath(s).drive != ""
    if root is not None and (s.startswith("/") or is_win_abs):
        for r in {Path(root).as_posix(), Path(root).resolve().as_posix()}:
            r = r.replace("\\", "/").rstrip("/")
            if s == r:
                s = "."
                break
            if s.startswith(r + "/"):
                s = s[len(r) + 1:]
                break
    s = posixpath.normpath(s) if s else s
    if s.startswith("//"):  # posixpath keeps a leading '//'
        s = "/" + s.lstrip("/")
    return unicodedata.normalize("NFC", s)


def url_to_path(url: str, url_prefix: str | None = None, document_root: str | os.PathLike | None = None,
                root: str | os.PathLike | None = None) -> str:
    """Undo :func:`selector.formats.label_studio.image_url`: the pool path behind an image URL.

    ``/data/local-files/?d=<p>`` gives ``<p>`` (query-decoded, as Label Studio's server reads it),
    made relative to ``root`` via ``document_root`` when given; without ``document_root`` a
    leading ``<root folder name>/`` is dropped (the export's default document root is the
    pool's parent). A given ``url_prefix`` is stripped and the rest percent-decoded; any other
    ``http(s)://`` URL gives its decoded path; anything else is taken as a plain path.
    """
    s = url.strip()
    if url_prefix and s.startswith(url_prefix) and "?d=" not in url_prefix:
        rel = unquote(s[len(url_prefix):])
    elif "?d=" in s or "&d=" in s:
        d = parse_qs(urlsplit(s).query).get("d")
        if not d:
            return normalize_path(s, root)
        rel = d[0]
        if document_root is None and root is not None:
            head = Path(root).resolve().name + "/"
            stripped = posixpath.normpath(rel).lstrip("/")
            if stripped.startswith(head):
                rel = stripped[len(head):]
    elif s.lower().startswith(("http://", "https://", "s3://", "gs://")):
        rel = unquote(urlsplit(s).path).lstrip("/")
    else:
        return normalize_path(s, root)
    if document_root is not None:
        rel = (Path(document_root) / rel.lstrip("/")).as_posix()
    return normalize_path(rel, root)


# ----------------------------------------------------------------------------- reading


def read_text(path: Path) -> str:
    """The text of a labels file (UTF-8, a BOM dropped); LabelFileError names a missing or unreadable file."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelFileError(f"labels file {path} does not exist") from None
    except IsADirectoryError:
        raise LabelFileError(f"labels file {path} is a folder, not a file") from None
    except UnicodeDecodeError as e:
        raise LabelFileError(f"labels file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise LabelFileError(f"cannot read labels file {path}: {e.strerror or e}") from None


def put_label(out: dict, key: str, label: Any, path: Path, where: str) -> None:
    """``out[key] = label`` as a stripped string, None for no label; an empty ``key`` is an error."""
    if not key:
        raise LabelFileError(f"{path}: empty path {where}")
    label = None if label is None else str(label).strip()
    out[key] = label or None
