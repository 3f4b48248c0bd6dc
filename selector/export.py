"""Write a selection to disk in the formats labeling tools import.

One entry point, :func:`export_selection`, picks a writer from ``fmt`` or the output suffix:

* ``.csv`` / ``"csv"``: header ``rank,path,group,score,abs_path``, one row per chosen image.
* ``.jsonl`` / ``"jsonl"``: one JSON object per line: rank, path, index, group, score, abs_path.
* ``.json`` / ``"label-studio"``: Label Studio tasks with the rank, estimated group and round
  as data fields and a prediction scored in (0, 1] from the rank, plus ``<stem>.config.xml``, a
  labeling config offering the class names (when known).
* ``.xml`` / ``"cvat"``: "CVAT for images 1.1" annotations with one ``<tag>`` per image, plus
  ``<stem>.manifest.jsonl`` (CVAT dataset manifest listing the images in rank order) and
  ``<stem>.labels.json`` (CVAT label spec for the task).
* ``.zip`` / ``"cvat-zip"``: a CVAT dataset zip, ``annotations.xml`` (as above) and the images
  under ``images/``, for CVAT's "Import dataset" and datumaro.
* ``.txt`` / ``"paths"``: the chosen paths, one per line, in rank order.

Conventions shared by every format:

* ``rank`` is **1-based**: rank 1 is the strategy's first pick (``selection.indices[0]``).
  Annotators should label in rank order, so a budget cut short keeps the first picks.
* ``path`` is the pool's item id, ``paths[index]``: a relative POSIX path under the pool
  root for an image folder, or an id such as ``"x[123]"`` for an ``.npz`` pool.
* ``group`` is the strategy's estimated group (cluster) of the item, ``-1`` for none.
* ``score`` is the strategy's score (higher = more preferred); a non-finite score is
  written as an empty CSV cell / JSON ``null``.

Every file is written with :func:`selector.atomic.atomic_write`: a reader sees the old file
or the whole new one, never half of it. Formats with companion files write the companions
first and the main file last; each file is atomic on its own, not the set.

References (the schemas the writers follow, checked in ``tests/test_export.py``):

* Label Studio task import: https://labelstud.io/guide/tasks#Basic-Label-Studio-JSON-format
  and pre-annotations: https://labelstud.io/guide/predictions ; local files are served at
  ``/data/local-files/?d=<path relative to LOCAL_FILES_DOCUMENT_ROOT>``
  (https://labelstud.io/guide/storage#Local-storage).
* CVAT XML 1.1: https://docs.cvat.ai/docs/other/xml_format/ ; dataset manifest:
  https://docs.cvat.ai/docs/dataset_management/dataset_manifest/
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import posixpath
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote

import numpy as np

from selector.atomic import atomic_write, check_outputs
from selector.names import display_name, name_problem
from selector.strategies.base import Selection

logger = logging.getLogger(__name__)

#: Default image URL prefix for Label Studio: its local-files serving endpoint.
LOCAL_FILES_PREFIX = "/data/local-files/?d="

#: Array-pool ids look like ``x[123]``: not files on disk.
_ARRAY_ID = re.compile(r"^[A-Za-z_][\w.-]*\[\d+\]$")


class ExportError(ValueError):
    """Bad input to an export (selection vs paths, unknown format, unreadable image)."""


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


def _group_name(group: int, group_names: Mapping[int, str] | Sequence[str] | None) -> str:
    if group_names is None:
        return f"group-{group}"
    try:
        return str(group_names[group])
    except (KeyError, IndexError) as e:
        raise ExportError(f"group_names has no name for group {group}") from e


# ----------------------------------------------------------------------------- csv / jsonl / txt


def absolute_path(path: str, root: str | os.PathLike | None) -> str | None:
    """The image's absolute file path when the pool is a folder (for FiftyOne and other tools that
    open files directly), else None (array ids, or no root)."""
    if root is None or is_array_id(path) or not Path(root).is_dir():
        return None
    return str(Path(root).resolve() / Path(path))


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


# ----------------------------------------------------------------------------- Label Studio


def image_url(path: str, root: str | os.PathLike | None = None,
              url_prefix: str | None = LOCAL_FILES_PREFIX,
              document_root: str | os.PathLike | None = None) -> str:
    """The URL Label Studio loads an image from.

    Args:
        path: relative POSIX path of the image under ``root``.
        root: the pool folder.
        url_prefix: ``"/data/local-files/?d="`` (default) for Label Studio's local-files
            serving; any other string (e.g. ``"http://localhost:8081/"`` for a static file
            server over the pool root) is prepended the same way, followed by the path relative
            to ``root``. The path after the prefix is percent-encoded (UTF-8, ``/`` kept), so
            spaces, ``&``, ``#``, ``+`` and non-ASCII names survive. ``None`` gives the
            absolute file path, unencoded.
        document_root: Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT`` (local-files prefix only);
            the ``d=`` path is relative to it and ``root`` must lie inside it. Default: the
            parent of ``root`` when ``root`` is a folder (the layout Label Studio documents:
            the document root is a parent of the storage folder, ``d=<pool folder>/<path>``),
            else the pool root itself (``d=<path>``).
    """
    if url_prefix is None:
        if root is None:
            raise ExportError("url_prefix=None (absolute paths) needs the pool root")
        return str(Path(root).resolve() / Path(path))
    rel = path
    if "?d=" in url_prefix:
        if document_root is None and root is not None and Path(root).is_dir():
            document_root = Path(root).resolve().parent
        if document_root is not None:
            if root is None:
                raise ExportError("document_root needs the pool root to place images under it")
            full = Path(root).resolve() / Path(path)
            try:
                rel = full.relative_to(Path(document_root).resolve()).as_posix()
            except ValueError as e:
                raise ExportError(f"image {full} is not under document_root {document_root}") from e
    return url_prefix + quote(rel, safe="/")


def label_studio_config(choices: Sequence[str], from_name: str = "choice",
                        to_name: str = "image", data_key: str = "image") -> str:
    """A Label Studio labeling config (image classification) offering ``choices``.

    Matches the tasks :func:`write_label_studio` writes (same control and object names). Label
    Studio refuses a ``Choices`` control without choices, so ``choices`` must not be empty.
    """
    if not choices:
        raise ExportError("a Label Studio labeling config needs at least one class name")
    if len(set(choices)) != len(choices):
        raise ExportError(f"class names repeat: {list(choices)}")
    view = ET.Element("View")
    ET.SubElement(view, "Image", {"name": to_name, "value": f"${data_key}"})
    ch = ET.SubElement(view, "Choices", {"name": from_name, "toName": to_name, "choice": "single"})
    for c in choices:
        ET.SubElement(ch, "Choice", {"value": c})
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def rank_score(rank: int, k: int) -> float:
    """A prediction score in (0, 1] from a 1-based rank among ``k``: ``1 - (rank - 1) / k``.

    Rank 1 scores 1.0 and rank k scores 1/k, so Label Studio's "prediction score" column sorts
    tasks in rank order. (Strategy scores are not bounded, e.g. a k-center radius, and Label
    Studio refuses scores outside [0, 1].)
    """
    if not 1 <= rank <= k:
        raise ExportError(f"rank {rank} outside 1..{k}")
    return 1.0 - (rank - 1) / k


def config_choices(groups: Sequence[int], class_names: Sequence[str] | None = None,
                   predict_groups: bool = False, group_names=None) -> list[str]:
    """The classes offered to annotators: ``class_names``, plus the estimated groups' names only
    when ``predict_groups`` (then a group's name may also be one of the classes, via
    ``group_names``)."""
    choices = [str(c) for c in (class_names or [])]
    if predict_groups:
        for g in sorted({int(g) for g in groups if g >= 0}):
            name = _group_name(g, group_names)
            if name not in choices:
                choices.append(name)
    return choices


def label_studio_tasks(selection: Selection, paths: Sequence[str], root=None, strategy: str | None = None,
                       url_prefix: str | None = LOCAL_FILES_PREFIX, document_root=None,
                       from_name: str = "choice", to_name: str = "image", data_key: str = "image",
                       group_names=None, predictions: bool = True, predict_groups: bool = False,
                       round: int | None = None) -> list[dict[str, Any]]:
    """Label Studio tasks (the "Basic Label Studio JSON format") for the selection.

    Each task is::

        {"data": {"image": <url>, "path": <pool path>, "rank": <1-based rank>,
                  "group": <estimated group, -1 for none>, "round": <round>},
         "meta": {"rank", "index", "path", "group", "score", "strategy", "abs_path"},
         "predictions": [{"model_version": "selector-<strategy>", "score": <rank score>,
                          "result": []}]}

    The prediction carries only a score in (0, 1] from the rank (:func:`rank_score`), so Label
    Studio's prediction-score column orders tasks as selector ranked them; the estimated group
    is a data field (a Data Manager column), never a class an annotator could submit. With
    ``predict_groups=True`` the result also pre-selects the group's name
    (``group_names[g]``, default ``"group-<g>"``) in the ``from_name`` control; the labeling
    config must then offer those names (:func:`config_choices`).

    ``data.path`` lets :func:`selector.labels.read_labels` map an exported task back to the
    pool without undoing the URL; ``data.rank`` sorts tasks in the Data Manager; ``data.round``
    (left out when None) tells which selection round sent the task. ``meta.score`` is the
    strategy's own score (None when not finite). ``predictions=False`` leaves predictions out.
    """
    rows = selection_rows(selection, paths)
    if round is not None and (not isinstance(round, (int, np.integer)) or round < 1):
        raise ExportError(f"round must be a positive whole number, got {round!r}")
    name = strategy or "unknown"
    tasks = []
    for r in rows:
        data: dict[str, Any] = {data_key: image_url(r["path"], root, url_prefix, document_root),
                                "path": r["path"], "rank": r["rank"], "group": r["group"]}
        if round is not None:
            data["round"] = int(round)
        task: dict[str, Any] = {
            "data": data,
            "meta": {"rank": r["rank"], "index": r["index"], "path": r["path"],
                     "group": r["group"], "score": r["score"], "strategy": name,
                     "abs_path": absolute_path(r["path"], root)},
        }
        if predictions:
            result = []
            if predict_groups and r["group"] >= 0:
                result = [{"id": f"selector-{r['rank']}", "from_name": from_name, "to_name": to_name,
                           "type": "choices",
                           "value": {"choices": [_group_name(r["group"], group_names)]}}]
            task["predictions"] = [{"model_version": f"selector-{name}",
                                    "score": rank_score(r["rank"], len(rows)), "result": result}]
        tasks.append(task)
    return tasks


def write_label_studio(selection: Selection, paths: Sequence[str], out_path: str | os.PathLike,
                       root=None, strategy: str | None = None, url_prefix: str | None = LOCAL_FILES_PREFIX,
                       document_root=None, from_name: str = "choice", to_name: str = "image",
                       data_key: str = "image", group_names=None, predictions: bool = True,
                       predict_groups: bool = False, class_names: Sequence[str] | None = None,
                       round: int | None = None, write_config: bool = True, force: bool = True,
                       **_: Any) -> list[Path]:
    """Label Studio tasks JSON (a list of tasks; see :func:`label_studio_tasks` and
    :func:`image_url` for the options).

    Also writes ``<stem>.config.xml`` (unless ``write_config=False``): a labeling config whose
    ``Choices`` are ``class_names`` (plus the group names with ``predict_groups``), for
    Settings > Labeling Interface > Code. With no class to offer, no config is written (a
    warning is logged): Label Studio refuses a ``Choices`` control without choices.

    Import (https://labelstud.io/guide/storage#Local-storage): start Label Studio with
    ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<parent of the pool folder>`` (or the
    ``document_root`` given here), add a Local Files source storage whose absolute path is the
    pool folder, Import method "Tasks", Save without Sync, then import the JSON in the
    project's Data Manager and paste ``<stem>.config.xml`` as the labeling config.
    """
    tasks = label_studio_tasks(selection, paths, root=root, strategy=strategy, url_prefix=url_prefix,
                               document_root=document_root, from_name=from_name, to_name=to_name,
                               data_key=data_key, group_names=group_names, predictions=predictions,
                               predict_groups=predict_groups, round=round)
    out_path = Path(out_path)
    written = []
    if write_config:
        choices = config_choices(np.asarray(selection.groups).reshape(-1).tolist(), class_names,
                                 predict_groups and predictions, group_names)
        if choices:
            cfg_path = side_path(out_path, ".config.xml")
            text = label_studio_config(choices, from_name, to_name, data_key)
            with atomic_write(cfg_path, "w", overwrite=force) as f:
                f.write(text)
            written.append(cfg_path)
        else:
            logger.warning("no class names given: no Label Studio labeling config written "
                           "(pass class_names / --class-names a,b,c)")
    with atomic_write(out_path, "w", overwrite=force) as f:
        json.dump(tasks, f, ensure_ascii=False, allow_nan=False, indent=1)
        f.write("\n")
    return [out_path, *written]


# ----------------------------------------------------------------------------- CVAT


def image_size(file: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image as CVAT displays it: swapped for EXIF orientations 5-8,
    as CVAT's manifest tool does (``utils/dataset_manifest/core.py``). Reads the header only."""
    from PIL import Image

    try:
        with Image.open(file) as img:
            w, h = img.size
            orientation = img.getexif().get(274, 1)
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot read image size of {file}: {e}") from e
    return (h, w) if orientation > 4 else (w, h)


def _sizes(rows, root, sizes) -> list[tuple[int, int]]:
    if sizes is not None:
        if isinstance(sizes, Mapping):
            try:
                return [tuple(map(int, sizes[r["path"]])) for r in rows]
            except KeyError as e:
                raise ExportError(f"sizes has no entry for {e.args[0]!r}") from e
        wh = tuple(sizes)
        if len(wh) == 2 and all(isinstance(v, (int, np.integer)) and v > 0 for v in wh):
            return [(int(wh[0]), int(wh[1]))] * len(rows)
        raise ExportError(f"sizes must be (width, height) or a mapping path -> (width, height), got {sizes!r}")
    if root is None:
        raise ExportError("CVAT export needs image sizes: pass root (the pool folder) or sizes=(w, h)")
    array_ids = [r["path"] for r in rows if is_array_id(r["path"])]
    if array_ids:
        raise ExportError("CVAT export needs image files; this pool holds array ids like "
                          f"{array_ids[0]!r}: write the images out first or pass sizes=(w, h)")
    return [image_size(Path(root) / r["path"]) for r in rows]


def cvat_labels(names: Sequence[str]) -> list[dict[str, Any]]:
    """CVAT label specification (the "Raw" label constructor / ``labels`` of the task API):
    one ``tag`` label per name."""
    return [{"name": n, "type": "tag", "attributes": []} for n in names]


def cvat_manifest_lines(rows: Sequence[dict], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """CVAT dataset manifest (images sub-format, version 1.1) entries in rank order.

    Each image line is ``{"name": <path without extension>, "extension": ".jpg", "width": w,
    "height": h}``; ``name`` keeps the leading directories from the dataset root.
    """
    lines: list[dict[str, Any]] = [{"version": "1.1"}, {"type": "images"}]
    for r, (w, h) in zip(rows, sizes):
        stem, ext = posixpath.splitext(r["path"])
        lines.append({"name": stem, "extension": ext, "width": int(w), "height": int(h)})
    return lines


def cvat_xml(rows: Sequence[dict], sizes: Sequence[tuple[int, int]], label_names: Sequence[str],
             group_names=None, task_name: str = "selector", tag_groups: bool = True) -> str:
    """"CVAT for images 1.1" annotations: one ``<image>`` per chosen item, in rank order.

    ``<image id>`` is the frame number of a task created from these files in rank order (the
    ``predefined`` sorting method with the manifest); ``name`` is the pool path, which newer
    CVAT versions match first anyway. With ``tag_groups``, items with a group carry
    ``<tag label="group-g" source="auto">`` as a pre-annotation (:mod:`selector.labels` never
    reads ``source="auto"`` tags back as labels).
    """
    ann = ET.Element("annotations")
    ET.SubElement(ann, "version").text = "1.1"
    meta = ET.SubElement(ann, "meta")
    task = ET.SubElement(meta, "task")
    ET.SubElement(task, "name").text = task_name
    ET.SubElement(task, "size").text = str(len(rows))
    ET.SubElement(task, "mode").text = "annotation"
    labels = ET.SubElement(task, "labels")
    for n in label_names:
        lab = ET.SubElement(labels, "label")
        ET.SubElement(lab, "name").text = n
        ET.SubElement(lab, "type").text = "tag"
        ET.SubElement(lab, "attributes")
    for frame, (r, (w, h)) in enumerate(zip(rows, sizes)):
        img = ET.SubElement(ann, "image", {"id": str(frame), "name": r["path"],
                                           "width": str(int(w)), "height": str(int(h))})
        if tag_groups and r["group"] >= 0:
            ET.SubElement(img, "tag", {"label": _group_name(r["group"], group_names), "source": "auto"})
    ET.indent(ann)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(ann, encoding="unicode") + "\n"


def write_cvat(selection: Selection, paths: Sequence[str], out_path: str | os.PathLike, root=None,
               strategy: str | None = None, sizes=None, group_names=None, manifest: bool = True,
               labels: bool = True, class_names: Sequence[str] | None = None, predict_groups: bool = False,
               predictions: bool = True, force: bool = True, **_: Any) -> list[Path]:
    """CVAT files for a new task holding the chosen images, pre-tagged with their group.

    Writes ``out_path`` ("CVAT for images 1.1" XML), and unless turned off
    ``<stem>.manifest.jsonl`` (dataset manifest, images in rank order) and
    ``<stem>.labels.json`` (label spec for the task's Raw label constructor).

    Workflow: create a task with the labels from ``<stem>.labels.json`` (add your classes),
    choose the images listed in the manifest from the connected file share (or upload them)
    together with the manifest placed at the pool root, sorting method ``predefined``, then
    Actions > Upload annotations > "CVAT 1.1" with the XML.

    Args:
        sizes: (width, height) for every image, or a mapping path -> (width, height); by
            default read from the image headers under ``root``.
        group_names: mapping/sequence group -> label name (default ``"group-<g>"``).
        class_names: the task's labels. Given, the images carry no group tags unless
            ``predict_groups``; without them the labels are the group names and each image is
            pre-tagged with its group (``source="auto"``). ``predictions=False``: no tags at all.
    """
    rows = selection_rows(selection, paths)
    wh = _sizes(rows, root, sizes)
    tag_groups = predictions and (predict_groups or not class_names)
    names = config_choices([r["group"] for r in rows], class_names, tag_groups, group_names)
    out_path = Path(out_path)
    written = []
    if manifest:
        man_path = side_path(out_path, ".manifest.jsonl")
        with atomic_write(man_path, "w", overwrite=force) as f:
            for line in cvat_manifest_lines(rows, wh):
                f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        written.append(man_path)
    if labels:
        lab_path = side_path(out_path, ".labels.json")
        with atomic_write(lab_path, "w", overwrite=force) as f:
            json.dump(cvat_labels(names), f, ensure_ascii=False, indent=1)
            f.write("\n")
        written.append(lab_path)
    task_name = f"selector-{strategy}" if strategy else "selector"
    with atomic_write(out_path, "w", overwrite=force) as f:
        f.write(cvat_xml(rows, wh, names, group_names, task_name, tag_groups=tag_groups))
    return [out_path, *written]


def write_cvat_zip(selection: Selection, paths: Sequence[str], out_path: str | os.PathLike, root=None,
                   strategy: str | None = None, group_names=None, class_names: Sequence[str] | None = None,
                   predict_groups: bool = False, predictions: bool = True, force: bool = True,
                   **_: Any) -> list[Path]:
    """A "CVAT for images 1.1" dataset as one ``.zip``: ``annotations.xml`` plus the chosen
    images under ``images/<pool path>``, the layout CVAT's "Import dataset" and datumaro's
    ``cvat`` format read (https://docs.cvat.ai/docs/dataset_management/formats/format-cvat/).

    Labels and tags follow :func:`write_cvat`. Needs the image files (``root``); the zip is
    written atomically.
    """
    import zipfile

    rows = selection_rows(selection, paths)
    if root is None:
        raise ExportError("a CVAT .zip holds the images: pass root (the pool folder)")
    wh = _sizes(rows, root, None)
    tag_groups = predictions and (predict_groups or not class_names)
    names = config_choices([r["group"] for r in rows], class_names, tag_groups, group_names)
    task_name = f"selector-{strategy}" if strategy else "selector"
    xml = cvat_xml(rows, wh, names, group_names, task_name, tag_groups=tag_groups)
    out_path = Path(out_path)
    with atomic_write(out_path, "wb", overwrite=force) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("annotations.xml", xml.encode("utf-8"))
            for r in rows:
                z.write(Path(root) / r["path"], "images/" + r["path"], compress_type=zipfile.ZIP_STORED)
    return [out_path]


# ----------------------------------------------------------------------------- entry point

Writer = Callable[..., list[Path]]

#: Format name -> writer ``(selection, paths, out_path, root=None, strategy=None, **kw) -> [files]``.
FORMATS: dict[str, Writer] = {
    "csv": write_csv,
    "jsonl": write_jsonl,
    "label-studio": write_label_studio,
    "cvat": write_cvat,
    "cvat-zip": write_cvat_zip,
    "paths": write_paths,
}

#: Output suffix -> format name, used when ``fmt`` is not given.
SUFFIX_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "label-studio",
    ".xml": "cvat",
    ".zip": "cvat-zip",
    ".txt": "paths",
}


def format_for(out_path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format name for ``fmt`` (a name from :data:`FORMATS`) or, if None, the suffix."""
    if fmt is not None:
        key = fmt.lower().replace("_", "-")
        key = {"labelstudio": "label-studio", "ls": "label-studio", "txt": "paths", "json": "label-studio",
               "xml": "cvat"}.get(key, key)
        if key not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}; choose one of {sorted(FORMATS)}")
        return key
    suffix = Path(out_path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise ExportError(f"cannot tell the export format from {str(out_path)!r} (suffix {suffix!r}); "
                          f"use one of {sorted(SUFFIX_FORMATS)} or pass fmt= one of "
                          f"{sorted(FORMATS)}")
    return SUFFIX_FORMATS[suffix]


def side_path(out_path: str | os.PathLike, suffix: str) -> Path:
    """A companion file of ``out_path``: ``<stem><suffix>`` beside it (``tasks.json`` ->
    ``tasks.config.xml``)."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + suffix)


def output_paths(out_path: str | os.PathLike, fmt: str | None = None, **kw: Any) -> list[Path]:
    """Every file an export (or ``selector embed``, ``fmt="embeddings"``) to ``out_path`` may write,
    main file first: the side files follow the writers' options (``write_config`` for Label Studio,
    whose config is listed even when it turns out to have no choice to offer and is not written;
    ``manifest``, ``labels`` for CVAT). The one list that :func:`selector.atomic.check_outputs` checks before any work, in
    :func:`export_selection` and in the command line alike."""
    out_path = Path(out_path)
    if fmt == "embeddings":
        return [out_path, out_path.with_suffix(".ids.txt")]
    name = format_for(out_path, fmt)
    out = [out_path]
    if name == "label-studio" and kw.get("write_config", True):  # listed even if it turns out empty
        out.append(side_path(out_path, ".config.xml"))
    if name == "cvat":
        if kw.get("manifest", True):
            out.append(side_path(out_path, ".manifest.jsonl"))
        if kw.get("labels", True):
            out.append(side_path(out_path, ".labels.json"))
    return out


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
