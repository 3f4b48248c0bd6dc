"""Read labels back from annotators and turn them into a labeled mask over the pool.

:func:`read_labels` reads ``{path: label}`` from

* a CSV/TSV of ``path,label`` (header optional; the label column optional: a plain list of
  paths means "labeled, label unknown", value ``None``). With a header, the path column is the
  one named ``path``/``file``/``filename``/``image``/``id`` and the label column the one named
  ``label``/``class``/``category``/``y``, so the ``rank,path,group,score`` CSV that
  :mod:`selector.export` writes reads back as "labeled, label unknown";
* a ``.txt`` list of paths (one per line; blank lines and ``#`` comments skipped), all ``None``;
* Label Studio's JSON export (a list of tasks with ``data`` and ``annotations``; the label is
  the first choice of the last annotation that was not cancelled; predictions are never read).
  A task without such an annotation (skipped, or not yet annotated) is in the project already:
  with ``skipped="seen"`` (default) it is returned with label ``None`` (taken, never chosen
  again), with ``skipped="unseen"`` it is left out (may be chosen again). Also its JSON-MIN
  export (flat objects with the image URL and the choice under the control's name);
* the JSON Lines :mod:`selector.export` writes (``path`` plus an optional ``label``);
* CVAT for images 1.1 XML (``<image name>`` with ``<tag label>``; ``source="auto"`` tags are
  pre-annotations and never read as labels; an image without another tag is not labeled);
* a JSON object ``{path: label}``.

Paths are forgiving: ``./a.jpg``, ``a\\b.jpg``, an absolute path under ``root``, ``file://``
URLs and Label Studio image URLs (``/data/local-files/?d=...``, URL-quoted) all map to the
pool's relative POSIX path. :func:`labeled_mask_from` then matches them against the pool's ids
(Unicode NFC on both sides).
"""
from __future__ import annotations

import csv
import json
import logging
import os
import posixpath
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path, PureWindowsPath
from typing import Any, Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

logger = logging.getLogger(__name__)

PATH_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "filepath", "id")
LABEL_COLUMNS = ("label", "class", "category", "y", "target", "choice")
#: Other column names that mark a first row as a header (the selection CSV's columns).
OTHER_COLUMNS = ("rank", "group", "score", "index")


#: How Label Studio tasks without a finished annotation are read (see :func:`read_labels`).
SKIPPED = ("seen", "unseen")


class LabelFileError(ValueError):
    """A labels file that cannot be read or does not hold labels; the message names the file."""


# ----------------------------------------------------------------------------- paths


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
    """Undo :func:`selector.export.image_url`: the pool path behind an image URL.

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


# ----------------------------------------------------------------------------- readers


def _read_text(path: Path) -> str:
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


def _put(out: dict, key: str, label: Any, path: Path, where: str) -> None:
    if not key:
        raise LabelFileError(f"{path}: empty path {where}")
    label = None if label is None else str(label).strip()
    out[key] = label or None


def _read_csv(path: Path, text: str, root) -> dict[str, str | None]:
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        rows = [r for r in csv.reader(text.splitlines(), delimiter=delim) if r and any(c.strip() for c in r)]
    except csv.Error as e:
        raise LabelFileError(f"{path}: not valid CSV: {e}") from None
    if not rows:
        return {}
    head = [c.strip().lower() for c in rows[0]]
    pcol, lcol = 0, 1
    if any(h in PATH_COLUMNS or h in LABEL_COLUMNS or h in OTHER_COLUMNS for h in head):
        rows = rows[1:]
        pcol = next((head.index(c) for c in PATH_COLUMNS if c in head), None)
        if pcol is None:
            raise LabelFileError(f"{path}: header {','.join(head)} has no path column "
                                 f"(one of {', '.join(PATH_COLUMNS)})")
        lcol = next((head.index(c) for c in LABEL_COLUMNS if c in head), None)
    out: dict[str, str | None] = {}
    for i, r in enumerate(rows):
        if pcol >= len(r):
            raise LabelFileError(f"{path}: row {i + 1} has no path column: {r!r}")
        label = r[lcol] if lcol is not None and lcol < len(r) else None
        _put(out, normalize_path(r[pcol], root), label, path, f"in row {i + 1}")
    return out


def _read_txt(path: Path, text: str, root) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            out[normalize_path(s, root)] = None
    return out


def _read_jsonl(path: Path, text: str, root) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise LabelFileError(f"{path}: line {i + 1} is not JSON: {e.msg}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("path"), str):
            raise LabelFileError(f"{path}: line {i + 1} has no \"path\" string")
        _put(out, normalize_path(obj["path"], root), obj.get("label"), path, f"on line {i + 1}")
    return out


def _choice_of(results: Sequence[Any], from_name: str | None) -> tuple[bool, str | None, int]:
    """(found a choices result, its first choice, how many choices)."""
    for res in results:
        if not isinstance(res, dict) or res.get("type", "choices") != "choices":
            continue
        if from_name is not None and res.get("from_name") != from_name:
            continue
        choices = (res.get("value") or {}).get("choices")
        if isinstance(choices, list) and choices:
            return True, str(choices[0]), len(choices)
    return False, None, 0


def _read_label_studio(path: Path, tasks: list, root, url_prefix, document_root, from_name,
                       data_key, skipped: str = "seen") -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    multi = 0
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise LabelFileError(f"{path}: task {i} is not a JSON object")
        if "data" not in task:  # JSON-MIN export: flat objects
            if isinstance(task.get("path"), str):  # data.path of our export, flattened
                key = normalize_path(task["path"], root)
            elif isinstance(task.get(data_key), str):
                key = url_to_path(task[data_key], url_prefix, document_root, root)
            else:
                raise LabelFileError(f"{path}: task {i} has neither \"data\" nor \"{data_key}\"")
            cands = [from_name] if from_name else [k for k in task if k not in _MIN_KEYS and k != data_key]
            val = next((task[k] for k in cands if k in task), None)
            if isinstance(val, dict):
                val = (val.get("choices") or [None])[0]
            elif isinstance(val, list):
                val = val[0] if val else None
            out[key] = None if val is None else str(val)
            continue
        data = task["data"]
        if not isinstance(data, dict):
            raise LabelFileError(f"{path}: task {i} \"data\" is not an object")
        if isinstance(data.get("path"), str):
            key = normalize_path(data["path"], root)
        elif isinstance(data.get(data_key), str):
            key = url_to_path(data[data_key], url_prefix, document_root, root)
        else:
            raise LabelFileError(f"{path}: task {i} has no data.{data_key} image URL")
        anns = task.get("annotations") or task.get("completions") or []
        if not isinstance(anns, list):
            raise LabelFileError(f"{path}: task {i} \"annotations\" is not a list")
        done = [a for a in anns if isinstance(a, dict) and not a.get("was_cancelled", False)]
        if not done:  # skipped or open: in the project, so taken unless told otherwise
            if skipped == "seen":
                out.setdefault(key, None)
            continue
        found, label, n_choices = _choice_of(done[-1].get("result") or [], from_name)
        multi += n_choices > 1
        out[key] = label if found else None
    if multi:
        logger.warning("%s: %d task(s) have several choices; took the first of each", path, multi)
    return out


_MIN_KEYS = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "path", "rank",
             "meta", "predictions", "drafts"}


def _read_json(path: Path, text: str, root, url_prefix, document_root, from_name, data_key, skipped="seen"):
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelFileError(f"{path}: not valid JSON: {e.msg} (line {e.lineno})") from None
    if isinstance(obj, dict) and "data" in obj:  # one Label Studio task
        obj = [obj]
    if isinstance(obj, dict):
        out: dict[str, str | None] = {}
        for k, v in obj.items():
            if v is not None and not isinstance(v, (str, int)):
                raise LabelFileError(f"{path}: value for {k!r} is a {type(v).__name__}, not a label")
            _put(out, normalize_path(k, root), v, path, "as a key")
        return out
    if not isinstance(obj, list):
        raise LabelFileError(f"{path}: expected a list of Label Studio tasks or a {{path: label}} object, "
                             f"got {type(obj).__name__}")
    return _read_label_studio(path, obj, root, url_prefix, document_root, from_name, data_key, skipped)


def _read_cvat(path: Path, text: str, root) -> dict[str, str | None]:
    try:
        ann = ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as e:
        raise LabelFileError(f"{path}: not valid XML: {e}") from None
    if ann.tag != "annotations":
        raise LabelFileError(f"{path}: root element is <{ann.tag}>, expected CVAT <annotations>")
    out: dict[str, str | None] = {}
    multi = 0
    for img in ann.iter("image"):
        name = img.get("name")
        if not name:
            raise LabelFileError(f"{path}: <image id={img.get('id')!r}> has no name")
        # source="auto" tags are pre-annotations (selector writes its groups that way), not labels
        use = [t for t in img.findall("tag") if t.get("label") and t.get("source", "manual") != "auto"]
        if not use:
            continue
        multi += len(use) > 1
        out[normalize_path(name, root)] = use[0].get("label")
    if multi:
        logger.warning("%s: %d image(s) have several tags; took the first of each", path, multi)
    return out


def _cvat_zip_xml(path: Path) -> str:
    """The ``annotations.xml`` of a CVAT for images 1.1 dataset zip (at the top or one folder down)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == "annotations.xml" and n.count("/") <= 1]
            if not names:
                raise LabelFileError(f"{path}: no annotations.xml in the zip (a CVAT for images 1.1 dataset has one)")
            return z.read(min(names, key=len)).decode("utf-8-sig")
    except FileNotFoundError:
        raise LabelFileError(f"labels file {path} does not exist") from None
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as e:
        raise LabelFileError(f"{path}: not a readable CVAT zip ({e})") from None


def read_labels(path: str | os.PathLike, root: str | os.PathLike | None = None, *,
                url_prefix: str | None = None, document_root: str | os.PathLike | None = None,
                from_name: str | None = None, data_key: str = "image",
                skipped: str = "seen") -> dict[str, str | None]:
    """``{pool-relative path: label or None}`` from a labels file (format from the suffix).

    Args:
        path: ``.csv``/``.tsv``, ``.txt``/``.lst``, ``.jsonl``/``.ndjson``, ``.json`` (Label
            Studio export or ``{path: label}``), ``.xml`` (CVAT for images 1.1) or ``.zip`` (a CVAT
            dataset export holding ``annotations.xml``).
        root: the pool folder, to turn absolute paths under it into relative ones.
        url_prefix: the ``url_prefix`` used at export when it was not Label Studio's local-files
            one (e.g. ``"http://localhost:8081/"``); tasks exported by :mod:`selector.export`
            carry ``data.path`` and need none of this.
        document_root: Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT`` when it differs from
            ``root``.
        from_name: only read Label Studio choices from this control (default: any).
        data_key: the task data key holding the image URL.
        skipped: Label Studio tasks without a finished annotation (skipped/cancelled, or not
            annotated yet): ``"seen"`` returns them with label None (taken), ``"unseen"`` leaves
            them out.

    Raises:
        LabelFileError: a one-line message naming the file, for unreadable or invalid files.
    """
    p = Path(path)
    if skipped not in SKIPPED:
        raise ValueError(f"skipped must be one of {', '.join(SKIPPED)}, got {skipped!r}")
    suffix = p.suffix.lower()
    if suffix == ".zip":
        return _read_cvat(p, _cvat_zip_xml(p), root)
    text = _read_text(p)
    if suffix in (".csv", ".tsv"):
        return _read_csv(p, text, root)
    if suffix in (".txt", ".lst", ".list"):
        return _read_txt(p, text, root)
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(p, text, root)
    if suffix == ".json":
        return _read_json(p, text, root, url_prefix, document_root, from_name, data_key, skipped)
    if suffix == ".xml":
        return _read_cvat(p, text, root)
    raise LabelFileError(f"labels file {p}: unknown suffix {suffix!r}; use .csv, .tsv, .txt, .jsonl, "
                         f".json (Label Studio export), .xml or .zip (CVAT)")


def read_label_files(labeled: Sequence[str | os.PathLike] = (), exclude: Sequence[str | os.PathLike] = (),
                     root: str | os.PathLike | None = None, **kw: Any) -> dict[str, str | None]:
    """The union of several labels files, plus files that are taken but not labeled.

    Args:
        labeled: labels files (any :func:`read_labels` format), e.g. one export per round.
        exclude: files listing items sent to annotators but not annotated yet (a selection
            ``.csv``, Label Studio tasks ``.json``, ``.txt``...): they count as taken (label
            None), their labels or predictions are never read.
        root, **kw: passed to :func:`read_labels`.

    Returns:
        ``{path: label or None}``; an item both labeled and excluded keeps its label.

    Raises:
        LabelFileError: one file is unreadable, or two files give one image different labels
            (the message names both files and the image).
    """
    out: dict[str, str | None] = {}
    source: dict[str, Path] = {}
    for f in labeled:
        for key, lab in read_labels(f, root, **kw).items():
            old = out.get(key)
            if old is not None and lab is not None and old != lab:
                raise LabelFileError(f"{f}: {key!r} is labeled {lab!r}, but {old!r} in {source[key]}")
            if old is None:
                out[key] = lab
                source[key] = Path(f)
    for f in exclude:
        for key in read_labels(f, root, **kw):
            out.setdefault(key, None)
    return out


def last_round(files: Sequence[str | os.PathLike]) -> int:
    """The highest ``data.round`` among the Label Studio tasks in ``files`` (0 when none has one):
    the round the next selection follows. Other formats are skipped."""
    best = 0
    for f in files:
        p = Path(f)
        if p.suffix.lower() != ".json":
            continue
        try:
            obj = json.loads(_read_text(p))
        except json.JSONDecodeError as e:
            raise LabelFileError(f"{p}: not valid JSON: {e.msg} (line {e.lineno})") from None
        for task in obj if isinstance(obj, list) else [obj]:
            data = task.get("data") if isinstance(task, dict) else None
            r = data.get("round") if isinstance(data, dict) else (task.get("round") if isinstance(task, dict) else None)
            if isinstance(r, int) and not isinstance(r, bool):
                best = max(best, r)
    return best


# ----------------------------------------------------------------------------- mask


def _class_order(names: set[str]) -> list[str]:
    """Sorted class names; numerically when all look like integers ("2" before "10")."""
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def labeled_mask_from(labels: Mapping[str, str | None], paths: Sequence[str],
                      root: str | os.PathLike | None = None
                      ) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Match labels to the pool.

    Args:
        labels: ``{path: label or None}`` as from :func:`read_labels`.
        paths: (n,) the pool's item ids, indexed like the embeddings.
        root: the pool folder, for absolute paths in ``labels``.

    Returns:
        ``(mask, y, class_names, n_missing)``: mask (n,) bool, True for labeled items; y (n,)
        int64, the index into ``class_names`` or -1 (unlabeled, or labeled with unknown label);
        class_names the sorted labels seen on matched items; n_missing the number of entries
        of ``labels`` naming no pool item (for the caller to warn about).

    Raises:
        ValueError: two pool ids, or two ``labels`` entries with different labels, that name
            the same file.
    """
    n = len(paths)
    where: dict[str, int] = {}
    for i, p in enumerate(paths):
        key = normalize_path(p, root)
        if key in where:
            raise ValueError(f"pool ids {paths[where[key]]!r} and {p!r} name the same file")
        where[key] = i
    found: dict[int, str | None] = {}
    seen_as: dict[int, str] = {}
    n_missing = 0
    for k, lab in labels.items():
        i = where.get(normalize_path(k, root))
        if i is None:
            n_missing += 1
            continue
        if i in found and found[i] != lab:
            raise ValueError(f"labels {seen_as[i]!r} -> {found[i]!r} and {k!r} -> {lab!r} name the same file")
        found[i] = lab
        seen_as[i] = k
    class_names = _class_order({lab for lab in found.values() if lab is not None})
    cid = {c: j for j, c in enumerate(class_names)}
    mask = np.zeros(n, dtype=bool)
    y = np.full(n, -1, dtype=np.int64)
    for i, lab in found.items():
        mask[i] = True
        if lab is not None:
            y[i] = cid[lab]
    if n_missing:
        logger.debug("%d labeled entries are not in the pool", n_missing)
    return mask, y, class_names, n_missing
