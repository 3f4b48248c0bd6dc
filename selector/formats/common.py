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

import json
import logging
import math
import os
import posixpath
import re
import sys
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


def groups_confident(selection: Selection) -> bool:
    """Whether the estimated groups may pre-annotate images as classes: yes unless the strategy's class count
    (``selection.info["classes"]``) says it is not confident (a grouping by a count that may be wrong by a
    factor of 2 to 5 would pre-select the wrong class)."""
    classes = (selection.info or {}).get("classes")
    return not isinstance(classes, dict) or classes.get("confident") is True


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


#: The largest labels file (or CVAT ``annotations.xml`` inside a zip) read: several times a Label Studio
#: JSON export of 100,000 annotated tasks (selector's tasks with one annotation take about 0.9 KB each), far
#: below what would exhaust memory once parsed (Python objects take several times the file's size).
MAX_LABELS_BYTES = 512 * 2**20


def size_text(n: int) -> str:
    """``n`` bytes for a message: ``3.0 GiB``, ``512 MiB``, ``2,000 bytes``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n % scale else f"{n // scale} {unit}"
    return f"{n:,} bytes"


def too_big(what: str, size: int | None) -> LabelFileError:
    """The error for a labels file (or a member of one) over :data:`MAX_LABELS_BYTES`."""
    held = f"holds {size_text(size)}" if size is not None else "holds more"
    return LabelFileError(f"{what} {held}, over the {size_text(MAX_LABELS_BYTES)} a labels file may hold; refused")


def read_bytes(path: Path) -> bytes:
    """The bytes of a labels file, at most :data:`MAX_LABELS_BYTES` (a larger file is refused before it is
    read; a pipe is read up to the limit); LabelFileError names a missing, unreadable or too large file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_LABELS_BYTES:
                raise too_big(f"labels file {path}", size)
            data = f.read(MAX_LABELS_BYTES + 1)
    except FileNotFoundError:
        raise LabelFileError(f"labels file {path} does not exist") from None
    except IsADirectoryError:
        raise LabelFileError(f"labels file {path} is a folder, not a file") from None
    except OSError as e:
        raise LabelFileError(f"cannot read labels file {path}: {e.strerror or e}") from None
    if len(data) > MAX_LABELS_BYTES:
        raise too_big(f"labels file {path}", None)
    return data


def read_text(path: Path) -> str:
    """The text of a labels file (UTF-8, a BOM dropped, at most :data:`MAX_LABELS_BYTES`); LabelFileError
    names a missing, unreadable or too large file."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelFileError(f"labels file {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_json(path: Path, text: str, where: str = "") -> Any:
    """``json.loads(text)``; invalid JSON, or JSON nested deeper than the parser follows (it recurses once
    per level), is a LabelFileError naming the file (and ``where`` in it, e.g. ``"line 3"``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if where:
            raise LabelFileError(f"{path}: {where} is not valid JSON: {e.msg}") from None
        raise LabelFileError(f"{path}: not valid JSON: {e.msg} (line {e.lineno})") from None
    except RecursionError:
        raise LabelFileError(f"{path}{': ' + where if where else ''}: JSON nested too deeply to read (over "
                             f"{sys.getrecursionlimit()} levels); not a labels file") from None


def describe(value: Any) -> str:
    """What a JSON value is, for a message: ``a list``, ``an object``, ``the number 5``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


# ----------------------------------------------------------------------------- labels read back

#: What an item of a labels file is: labeled (its label may be unknown), skipped by every annotator of
#: its task, or sent out and not annotated yet.
LABELED, SKIPPED_TASK, PENDING = "labeled", "skipped", "pending"


class Labels(dict):
    """``{pool path: label or None}`` read from labels files: a None is "taken, no label known".

    The sets say what a None is, where the file tells: ``skipped`` (a Label Studio task every annotator
    skipped) and ``pending`` (a task sent out and not annotated yet: an open task of an export, or an
    item of an ``--exclude`` file); any other item is labeled. ``rounds`` maps each selection round seen
    in selector's Label Studio tasks (``data.round``) to the ranks seen in it (``data.rank``), and
    ``round_sizes`` a round to the number of tasks it sent out (``data.round_size``), so that an export
    that leaves tasks out can be told (:meth:`uncovered`).
    """

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.skipped: set[str] = set()
        self.pending: set[str] = set()
        self.rounds: dict[int, set[int]] = {}
        self.round_sizes: dict[int, int] = {}

    def status(self, key: str) -> str:
        """:data:`LABELED`, :data:`SKIPPED_TASK` or :data:`PENDING` for an item of these labels."""
        return SKIPPED_TASK if key in self.skipped else PENDING if key in self.pending else LABELED

    def note_task(self, round_: Any, rank: Any = None, size: Any = None) -> None:
        """Record a task of selection round ``round_`` (its rank, the round's size) seen in a file;
        values that are not positive whole numbers (tasks made elsewhere) are ignored."""
        r = as_count(round_)
        if r is None:
            return
        ranks = self.rounds.setdefault(r, set())
        k = as_count(rank)
        if k is not None:
            ranks.add(k)
        n = as_count(size)
        if n is not None:
            self.round_sizes[r] = max(n, self.round_sizes.get(r, 0))

    def add_tasks(self, other: "Labels") -> None:
        """The rounds and ranks of ``other`` added to these."""
        for r, ranks in other.rounds.items():
            self.rounds.setdefault(r, set()).update(ranks)
        for r, n in other.round_sizes.items():
            self.round_sizes[r] = max(n, self.round_sizes.get(r, 0))

    def uncovered(self) -> dict[int, tuple[int, int, bool]]:
        """``{round: (tasks seen, tasks sent out, exact)}`` for the rounds whose tasks are not all in
        these labels. ``exact``: the tasks carry the round's size; without it only ranks missing below
        the highest rank seen can be told (a missing tail cannot)."""
        out = {}
        for r, ranks in sorted(self.rounds.items()):
            sent = self.round_sizes.get(r) or max(ranks, default=0)
            seen = sum(1 for k in ranks if k <= sent)
            if seen < sent:
                out[r] = (seen, sent, r in self.round_sizes)
        return out


def as_count(value: Any) -> int | None:
    """A positive whole number from a JSON number or a CSV cell (``3``, ``"3"``, ``3.0``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(float(value)) if value.strip() and float(value).is_integer() else None
        except (ValueError, OverflowError):
            return None
    return value if isinstance(value, int) and value > 0 else None


class SeenClasses(list):
    """Class names known only from the labels read so far (no labeling config of an earlier round was
    found): a labeling config built from them offers no class that has not been labeled yet."""


def warn_if_seen_only(class_names: Any, what: str, log: logging.Logger) -> None:
    """Warn that ``what`` (a labeling config, a label spec) offers only the classes seen so far."""
    if isinstance(class_names, SeenClasses):
        log.warning("%s offers only the %d classes labeled so far (%s): classes not labeled yet are missing; "
                    "pass class_names / --class-names with every class, or keep the last round's labeling "
                    "config (<tasks>.config.xml) beside its tasks file", what, len(class_names),
                    ", ".join(class_names))


class LabelCollector:
    """Builds the :class:`Labels` of one file, one entry at a time, holding each image to one label: the
    same image labeled ``a`` and then ``b`` is a LabelFileError naming the file and both places (the rule
    :func:`selector.formats.read_label_files` applies across files), except several annotations of one
    Label Studio task (``task`` the same), where the latest (``created``, else the first listed: Label
    Studio lists the newest first) is taken.

    ``keep_unlabeled=False`` leaves skipped and pending items out (``skipped="unseen"``).
    """

    def __init__(self, path: Path, keep_unlabeled: bool = True):
        self.path = path
        self.keep_unlabeled = keep_unlabeled
        self.labels = Labels()
        self.reannotated = 0
        self._where: dict[str, str] = {}
        self._task: dict[str, tuple[Any, Any]] = {}

    def add(self, key: str, label: Any, where: str, status: str = LABELED, task: Any = None,
            created: Any = None) -> None:
        """Record ``key`` (a pool path) with ``label`` (stripped text, None for unknown) found ``where``
        (``"in row 3"``)."""
        if not key:
            raise LabelFileError(f"{self.path}: empty path {where}")
        out = self.labels
        if status != LABELED:
            if key in out:
                if status == SKIPPED_TASK and key in out.pending:
                    out.pending.discard(key)
                    out.skipped.add(key)
            elif self.keep_unlabeled:
                out[key] = None
                (out.skipped if status == SKIPPED_TASK else out.pending).add(key)
            return
        label = None if label is None else (str(label).strip() or None)
        first = self._task.get(key)
        if task is not None and first is not None and first[0] == task:  # another annotation of one task
            self.reannotated += 1
            if isinstance(created, str) and isinstance(first[1], str) and created > first[1]:
                out[key] = label
                self._where[key] = where
                self._task[key] = (task, created)
            return
        old = out.get(key)
        if old is not None and label is not None and old != label and out.status(key) == LABELED:
            raise LabelFileError(f"{self.path}: {key!r} is labeled {label!r} {where}, but {old!r} "
                                 f"{self._where[key]}")
        if old is None:
            out[key] = label
            if label is not None:
                self._where[key] = where
        out.skipped.discard(key)
        out.pending.discard(key)
        if task is not None:
            self._task.setdefault(key, (task, created))


def read_label_mapping(path: Path, obj: dict, root=None) -> Labels:
    """A parsed JSON object ``{path: label}`` (labels are strings, whole numbers or null); two keys naming
    one image with different labels are an error."""
    coll = LabelCollector(path)
    for k, v in obj.items():
        if v is not None and (not isinstance(v, (str, int)) or isinstance(v, bool)):
            raise LabelFileError(f"{path}: value for {k!r} is {describe(v)}, not a label")
        coll.add(normalize_path(k, root), v, f"as key {k!r}")
    return coll.labels
