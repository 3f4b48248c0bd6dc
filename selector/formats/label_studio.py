"""Label Studio: tasks and a labeling config to import, and its exports read back.

Written (``.json`` / ``"label-studio"``): Label Studio tasks with the rank, estimated group and round as
data fields and a prediction scored in (0, 1] from the rank, plus ``<stem>.config.xml``, a labeling
config offering the class names (when known).

Read (``.json``): Label Studio's JSON export (a list of tasks with ``data`` and ``annotations``; the label
is the first choice of the last annotation that was not cancelled; predictions are never read). A task
without such an annotation (skipped, or not yet annotated) is in the project already: with
``skipped="seen"`` (default) it is returned with label ``None`` (taken, never chosen again), with
``skipped="unseen"`` it is left out (may be chosen again). Also its JSON-MIN export (flat objects with
the image URL and the choice under the control's name), and a JSON object ``{path: label}``
(:func:`selector.formats.tabular.read_label_mapping`). :func:`last_round` reads the round the tasks
were sent in.

References (the schemas the writer follows, checked in ``tests/formats/test_label_studio.py``):

* Label Studio task import: https://labelstud.io/guide/tasks#Basic-Label-Studio-JSON-format
  and pre-annotations: https://labelstud.io/guide/predictions ; local files are served at
  ``/data/local-files/?d=<path relative to LOCAL_FILES_DOCUMENT_ROOT>``
  (https://labelstud.io/guide/storage#Local-storage).
"""
from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import numpy as np

from selector.atomic import atomic_write
from selector.strategies.base import Selection

from .common import (
    ExportError,
    LabelFileError,
    absolute_path,
    config_choices,
    group_name,
    normalize_path,
    read_text,
    selection_rows,
    side_path,
    url_to_path,
)
from .registry import register_reader, register_writer
from .tabular import read_label_mapping

logger = logging.getLogger(__name__)

#: Default image URL prefix for Label Studio: its local-files serving endpoint.
LOCAL_FILES_PREFIX = "/data/local-files/?d="

#: How Label Studio tasks without a finished annotation are read (see :func:`read_json`).
SKIPPED = ("seen", "unseen")


# ----------------------------------------------------------------------------- writer


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

    ``data.path`` lets :func:`selector.formats.read_labels` map an exported task back to the
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
                           "value": {"choices": [group_name(r["group"], group_names)]}}]
            task["predictions"] = [{"model_version": f"selector-{name}",
                                    "score": rank_score(r["rank"], len(rows)), "result": result}]
        tasks.append(task)
    return tasks


def _side_files(out_path: str | os.PathLike, write_config: bool = True, **_: Any) -> list[Path]:
    """The labeling config beside the tasks (listed even when it turns out to have no choice to offer
    and is not written)."""
    return [side_path(out_path, ".config.xml")] if write_config else []


@register_writer("label-studio", ".json", aliases=("labelstudio", "ls", "json"), side_files=_side_files)
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


# ----------------------------------------------------------------------------- reader


#: Keys of a JSON-MIN task that are not the control holding the choice.
_MIN_KEYS = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "path", "rank",
             "meta", "predictions", "drafts"}


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


def _read_tasks(path: Path, tasks: list, root, url_prefix, document_root, from_name,
                data_key, skipped: str = "seen") -> dict[str, str | None]:
    """``{path: label or None}`` from a list of tasks (JSON export) or flat objects (JSON-MIN export)."""
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


@register_reader(".json")
def read_json(path: Path, root=None, *, url_prefix: str | None = None, document_root=None,
              from_name: str | None = None, data_key: str = "image", skipped: str = "seen",
              **_: Any) -> dict[str, str | None]:
    """A Label Studio export (JSON or JSON-MIN, or one task) or a ``{path: label}`` object; see the module
    docstring and :func:`selector.formats.read_labels` for the options."""
    text = read_text(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise LabelFileError(f"{path}: not valid JSON: {e.msg} (line {e.lineno})") from None
    if isinstance(obj, dict) and "data" in obj:  # one Label Studio task
        obj = [obj]
    if isinstance(obj, dict):
        return read_label_mapping(path, obj, root)
    if not isinstance(obj, list):
        raise LabelFileError(f"{path}: expected a list of Label Studio tasks or a {{path: label}} object, "
                             f"got {type(obj).__name__}")
    return _read_tasks(path, obj, root, url_prefix, document_root, from_name, data_key, skipped)


def last_round(files: Sequence[str | os.PathLike]) -> int:
    """The highest ``data.round`` among the Label Studio tasks in ``files`` (0 when none has one):
    the round the next selection follows. Other formats are skipped."""
    best = 0
    for f in files:
        p = Path(f)
        if p.suffix.lower() != ".json":
            continue
        try:
            obj = json.loads(read_text(p))
        except json.JSONDecodeError as e:
            raise LabelFileError(f"{p}: not valid JSON: {e.msg} (line {e.lineno})") from None
        for task in obj if isinstance(obj, list) else [obj]:
            data = task.get("data") if isinstance(task, dict) else None
            r = data.get("round") if isinstance(data, dict) else (task.get("round") if isinstance(task, dict) else None)
            if isinstance(r, int) and not isinstance(r, bool):
                best = max(best, r)
    return best
