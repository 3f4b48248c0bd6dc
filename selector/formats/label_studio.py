"""Label Studio: tasks and a labeling config to import, and its exports read back.

Written (``.json`` / ``"label-studio"``): Label Studio tasks with the rank, estimated group, round and the
round's size as data fields and a prediction scored in (0, 1] from the rank, plus ``<stem>.config.xml``, a
labeling config offering the class names (when known).

Label Studio's exports (JSON, JSON-MIN, CSV) are read back by :mod:`selector.formats.label_studio_export`;
:func:`read_config` reads a labeling config written here (its control and classes), so that the next
round offers the same classes and reads the labels from the same control.

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
from typing import Any, NamedTuple, Sequence
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
    groups_confident,
    read_bytes,
    selection_rows,
    side_path,
    warn_if_seen_only,
)
from .registry import register_writer

logger = logging.getLogger(__name__)

#: Default image URL prefix for Label Studio: its local-files serving endpoint.
LOCAL_FILES_PREFIX = "/data/local-files/?d="

#: How Label Studio tasks without a finished annotation are read (see
#: :func:`selector.formats.label_studio_export.read_json`).
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


class LabelingConfig(NamedTuple):
    """The Choices control of a labeling config file: its name (the ``from_name`` of the annotations) and
    the classes it offers, in its order."""

    path: Path
    control: str
    classes: list[str]


def read_config(path: str | os.PathLike, from_name: str | None = None) -> LabelingConfig | None:
    """The Choices control of the labeling config file ``path`` (the one named ``from_name``, else
    ``"choice"`` as :func:`label_studio_config` names it, else the first) and its classes (a choice's
    ``alias`` when it has one: Label Studio stores that in the annotations). None, with a warning, when
    the file is not a labeling config with such a control; None without one when there is no file."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        root = ET.fromstring(read_bytes(path))
    except (LabelFileError, ET.ParseError) as e:
        logger.warning("labeling config %s not read: %s", path, e)
        return None
    controls = {c.get("name"): c for c in root.iter("Choices") if c.get("name")}
    name = from_name if from_name is not None else "choice" if "choice" in controls else next(iter(controls), None)
    if name not in controls:
        logger.warning("labeling config %s not read: it has no Choices control%s", path,
                       f" named {from_name!r}" if from_name is not None else "")
        return None
    classes = [c.get("alias") or c.get("value") for c in controls[name].iter("Choice")]
    return LabelingConfig(path, name, [c for c in classes if c])


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
                  "group": <estimated group, -1 for none>, "round": <round>,
                  "round_size": <tasks sent in the round>},
         "meta": {"rank", "index", "path", "group", "score", "strategy", "abs_path"},
         "predictions": [{"model_version": "selector-<strategy>", "score": <rank score>,
                          "result": []}]}

    The prediction carries only a score in (0, 1] from the rank (:func:`rank_score`), so Label
    Studio's prediction-score column orders tasks as selector ranked them; the estimated group
    is a data field (a Data Manager column), never a class an annotator could submit. With
    ``predict_groups=True`` the result also pre-selects the group's name
    (``group_names[g]``, default ``"group-<g>"``) in the ``from_name`` control, when the class count
    is confident (:func:`~selector.formats.common.groups_confident`); the labeling config must then offer
    those names (:func:`config_choices`).

    ``data.path`` lets :func:`selector.formats.read_labels` map an exported task back to the
    pool without undoing the URL; ``data.rank`` sorts tasks in the Data Manager; ``data.round``
    (left out when None) tells which selection round sent the task, and ``data.round_size`` how many
    tasks that round sent, so a later export that leaves some out (Label Studio's exports drop open
    tasks, its CSV and JSON-MIN exports skipped ones too) can be told. ``meta.score`` is the
    strategy's own score (None when not finite). ``predictions=False`` leaves predictions out.
    """
    rows = selection_rows(selection, paths)
    confident = groups_confident(selection)
    if round is not None and (not isinstance(round, (int, np.integer)) or round < 1):
        raise ExportError(f"round must be a positive whole number, got {round!r}")
    name = strategy or "unknown"
    tasks = []
    for r in rows:
        data: dict[str, Any] = {data_key: image_url(r["path"], root, url_prefix, document_root),
                                "path": r["path"], "rank": r["rank"], "group": r["group"]}
        if round is not None:
            data["round"] = int(round)
            data["round_size"] = len(rows)
        task: dict[str, Any] = {
            "data": data,
            "meta": {"rank": r["rank"], "index": r["index"], "path": r["path"],
                     "group": r["group"], "score": r["score"], "strategy": name,
                     "abs_path": absolute_path(r["path"], root)},
        }
        if predictions:
            result = []
            if predict_groups and confident and r["group"] >= 0:
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
            warn_if_seen_only(class_names, f"the labeling config {cfg_path}", logger)
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
