"""Label Studio's exports read back as labels: JSON, JSON-MIN and CSV.

The label is read only from the labeling config's Choices control: ``from_name`` when given (the command
line passes the control of a ``<stem>.config.xml`` found beside a ``--labeled``/``--exclude`` tasks file),
else the control ``"choice"`` that :func:`selector.formats.label_studio.label_studio_config` writes (in a
JSON export: else the only Choices control its annotations use). Never from the task's data fields:
JSON-MIN and CSV exports put a task's data (``image``, ``path``, ``rank``, ``group``, ``round``...) beside
the annotation, in the same flat object or row.

* JSON (a list of tasks with ``data`` and ``annotations``, or one task): the label is the first choice of
  the last annotation that was not cancelled; predictions are never read. A task whose annotations were
  all cancelled is *skipped*; one without annotations is *pending* (open).
* JSON-MIN (flat objects: the task's ``id`` and data fields, the control's name -> ``"cat"`` or
  ``{"choices": [...]}``, ``annotator``, ``annotation_id``, ``created_at``, ``updated_at``,
  ``lead_time``; one object per annotation, the newest first, and one without an annotation for an open
  task) and CSV (the same fields as columns, a multiple choice as JSON text): a task listed several
  times (several annotations) gives its latest label; an object without annotation is *pending*.
  Skipped tasks are not in these exports.
* A JSON object ``{path: label}`` (:func:`selector.formats.common.read_label_mapping`).

Skipped and pending tasks are in the project already: ``skipped="seen"`` (default) returns them with label
None (taken, never chosen again), ``skipped="unseen"`` leaves them out (they may be chosen again).
Label Studio's exports leave out tasks nobody touched (and JSON-MIN and CSV the skipped ones): the tasks
written by selector carry their round, rank and the round's size, recorded in
:attr:`selector.formats.common.Labels.rounds` so that such a gap can be told.

Reference (the exporter these readers follow): label-studio-sdk's ``converter.convert_to_json_min`` and
``converter/exports/csv2.py``, what Label Studio 1.23 runs for its JSON-MIN and CSV exports.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .common import (
    LABELED,
    PENDING,
    SKIPPED_TASK,
    LabelCollector,
    LabelFileError,
    Labels,
    describe,
    load_json,
    normalize_path,
    read_label_mapping,
    read_text,
    url_to_path,
)
from .registry import register_reader

logger = logging.getLogger(__name__)

#: The Choices control of the labeling config selector writes.
DEFAULT_CONTROL = "choice"

#: Columns every Label Studio CSV export has (how :func:`selector.formats.tabular.read_csv` tells one).
CSV_COLUMNS = ("annotation_id", "annotator")

KeyOf = Callable[[Mapping[str, Any], str], str]


def key_reader(path: Path, root, url_prefix, document_root, data_key: str) -> KeyOf:
    """``(fields, where) -> pool path`` of a task: its ``path`` field (selector's tasks carry it), else its
    image URL under ``data_key`` undone (:func:`selector.formats.common.url_to_path`)."""

    def key_of(fields: Mapping[str, Any], where: str) -> str:
        if isinstance(fields.get("path"), str) and fields["path"]:
            return normalize_path(fields["path"], root)
        if isinstance(fields.get(data_key), str) and fields[data_key]:
            return url_to_path(fields[data_key], url_prefix, document_root, root)
        raise LabelFileError(f"{path}: {where} has no image: neither \"path\" nor \"{data_key}\"")

    return key_of


def first_choice(choices: Any, path: Path, where: str, control: str) -> tuple[str | None, int]:
    """(the first of ``choices``, how many there are) of a ``{"choices": [...]}`` value."""
    if not isinstance(choices, list):
        raise LabelFileError(f"{path}: {where}: the \"choices\" of \"{control}\" are {describe(choices)}, "
                             "not a list")
    if not choices:
        return None, 0
    c = choices[0]
    if isinstance(c, bool) or not isinstance(c, (str, int)):
        raise LabelFileError(f"{path}: {where}: a choice of \"{control}\" is {describe(c)}, not a class name")
    return str(c), len(choices)


def _choice_value(value: Any, path: Path, where: str, control: str) -> tuple[str | None, int]:
    """A JSON ``value`` of a Choices result, which must be an object holding ``choices``."""
    if not isinstance(value, dict):
        raise LabelFileError(f"{path}: {where}: the \"value\" of the \"{control}\" result is {describe(value)}, "
                             "not an object")
    if "choices" not in value:
        raise LabelFileError(f"{path}: {where}: the \"value\" of the \"{control}\" result holds no \"choices\"")
    return first_choice(value["choices"], path, where, control)


def flat_choice(value: Any, path: Path, where: str, control: str) -> tuple[str | None, int]:
    """The control's value in a JSON-MIN object or CSV row: a class name, ``{"choices": [...]}`` (several
    choices), or a list of those (several results of the control)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        return None, 0
    first = items[0]
    if isinstance(first, str) or (isinstance(first, int) and not isinstance(first, bool)):
        label, n = str(first), 1
    elif isinstance(first, dict):
        label, n = _choice_value(first, path, where, control)
    else:
        raise LabelFileError(f"{path}: {where}: \"{control}\" holds {describe(first)}, not a choice")
    return label, max(n, len(items))


def _controls(tasks: Sequence[Any]) -> list[str]:
    """The names of the Choices controls in the annotations of JSON-export ``tasks``, in first-seen order."""
    names: dict[str, None] = {}
    for task in tasks:
        anns = (task.get("annotations") or task.get("completions")) if isinstance(task, dict) else None
        for ann in anns if isinstance(anns, list) else []:
            results = ann.get("result") if isinstance(ann, dict) else None
            for res in results if isinstance(results, list) else []:
                if (isinstance(res, dict) and res.get("type", "choices") == "choices"
                        and isinstance(res.get("from_name"), str)):
                    names.setdefault(res["from_name"])
    return list(names)


def _pick_control(path: Path, tasks: Sequence[Any], from_name: str | None) -> str:
    if from_name is not None:
        return from_name
    names = _controls(tasks)
    if not names or DEFAULT_CONTROL in names:
        return DEFAULT_CONTROL
    if len(names) == 1:
        return names[0]
    raise LabelFileError(f"{path}: the annotations use several Choices controls ({', '.join(names)}) and none "
                         f"is named {DEFAULT_CONTROL!r}: say which holds the class (from_name, or a labeling config "
                         "<tasks>.config.xml naming it beside a --labeled/--exclude tasks file)")


def _task_where(i: int, task: Mapping[str, Any]) -> str:
    tid = task.get("id")
    return f"task {i}" + (f" (id {tid})" if isinstance(tid, (str, int)) and tid != "" else "")


def _read_task(coll: LabelCollector, i: int, task: dict, control: str, key_of: KeyOf) -> int:
    """One task of a JSON export into ``coll``; returns how many choices its label had."""
    where = _task_where(i, task)
    data = task["data"]
    if not isinstance(data, dict):
        raise LabelFileError(f"{coll.path}: {where}: \"data\" is {describe(data)}, not an object")
    key = key_of(data, where)
    coll.labels.note_task(data.get("round"), data.get("rank"), data.get("round_size"))
    anns = task.get("annotations") or task.get("completions") or []
    if not isinstance(anns, list):
        raise LabelFileError(f"{coll.path}: {where}: \"annotations\" is {describe(anns)}, not a list")
    done = [a for a in anns if isinstance(a, dict) and not a.get("was_cancelled", False)]
    if not done:  # every annotation cancelled: skipped; none at all: open
        coll.add(key, None, f"in {where}", SKIPPED_TASK if any(isinstance(a, dict) for a in anns) else PENDING)
        return 0
    results = done[-1].get("result") or []
    if not isinstance(results, list):
        raise LabelFileError(f"{coll.path}: {where}: the annotation's \"result\" is {describe(results)}, "
                             "not a list")
    label, n = None, 0
    for res in results:
        if isinstance(res, dict) and res.get("from_name") == control and res.get("type", "choices") == "choices":
            label, n = _choice_value(res.get("value"), coll.path, where, control)
            break
    coll.add(key, label, f"in {where}", LABELED, task=task.get("id"))
    return n


def read_flat(coll: LabelCollector, fields: Mapping[str, Any], where: str, control: str, key_of: KeyOf,
              cells: bool = False) -> int:
    """One JSON-MIN object (or CSV row, ``cells=True``: text cells, a multiple choice as JSON text) into
    ``coll``; returns how many choices its label had."""
    key = key_of(fields, where)
    coll.labels.note_task(fields.get("round"), fields.get("rank"), fields.get("round_size"))
    task = fields.get("id")
    task = None if task in ("", None) else task
    value = fields.get(control)
    if cells and isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        value = load_json(coll.path, value, f"{where}, \"{control}\"")
    created = fields.get("created_at") or None
    if value not in (None, "", [], {}):
        label, n = flat_choice(value, coll.path, where, control)
        coll.add(key, label, f"in {where}", LABELED, task=task, created=created)
        return n
    if fields.get("annotation_id") not in (None, ""):  # submitted without a choice: labeled, label unknown
        coll.add(key, None, f"in {where}", LABELED, task=task, created=created)
    else:  # an open task
        coll.add(key, None, f"in {where}", PENDING)
    return 0


def _finish(coll: LabelCollector, multi: int) -> Labels:
    if multi:
        logger.warning("%s: %d task(s) have several choices; took the first of each", coll.path, multi)
    if coll.reannotated:
        logger.warning("%s: %d task(s) were annotated more than once; took the latest annotation of each",
                       coll.path, coll.reannotated)
    return coll.labels


def _warn_no_control(path: Path, control: str, n_annotated: int, hint: Sequence[str] = ()) -> None:
    others = f"; controls seen: {', '.join(hint)} (pass from_name)" if hint else ""
    logger.warning("%s: no annotation holds a %r choice (the control of selector's labeling config); its %d "
                   "annotated tasks are read as labeled, label unknown%s", path, control, n_annotated, others)


def read_records(path: Path, records: Sequence[Mapping[str, Any]], control: str, key_of: KeyOf,
                 skipped: str, cells: bool, defaulted: bool, where_of: Callable[[int, Mapping], str]) -> Labels:
    """Flat records (JSON-MIN objects or CSV rows) read with :func:`read_flat`; ``defaulted``: the
    control is the default one, not named by the caller (a warning when no annotation holds it)."""
    coll = LabelCollector(path, keep_unlabeled=skipped == "seen")
    multi = annotated = with_control = 0
    hint: dict[str, None] = {}
    for i, rec in enumerate(records):
        multi += read_flat(coll, rec, where_of(i, rec), control, key_of, cells) > 1
        annotated += rec.get("annotation_id") not in (None, "")
        with_control += rec.get(control) not in (None, "")
        hint.update((k, None) for k, v in rec.items() if isinstance(v, dict) and "choices" in v and k != control)
    if defaulted and annotated and not with_control:
        _warn_no_control(path, control, annotated, list(hint))
    return _finish(coll, multi)


@register_reader(".json")
def read_json(path: Path, root=None, *, url_prefix: str | None = None, document_root=None,
              from_name: str | None = None, data_key: str = "image", skipped: str = "seen",
              **_: Any) -> Labels:
    """A Label Studio export (JSON or JSON-MIN, or one task) or a ``{path: label}`` object; see the module
    docstring and :func:`selector.formats.read_labels` for the options."""
    obj = load_json(path, read_text(path))
    if isinstance(obj, dict) and "data" in obj:  # one Label Studio task
        obj = [obj]
    if isinstance(obj, dict):
        return read_label_mapping(path, obj, root)
    if not isinstance(obj, list):
        raise LabelFileError(f"{path}: expected a list of Label Studio tasks or a {{path: label}} object, "
                             f"got {describe(obj)}")
    for i, task in enumerate(obj):
        if not isinstance(task, dict):
            raise LabelFileError(f"{path}: task {i} is {describe(task)}, not a JSON object")
    key_of = key_reader(path, root, url_prefix, document_root, data_key)
    full = [t for t in obj if "data" in t]
    flat = [t for t in obj if "data" not in t]
    if flat and not full:  # JSON-MIN
        control = from_name or DEFAULT_CONTROL
        return read_records(path, flat, control, key_of, skipped, False, from_name is None, _task_where)
    if flat:
        i = next(i for i, t in enumerate(obj) if "data" not in t)
        raise LabelFileError(f"{path}: task {i} has no \"data\" while others do: mixes a JSON and a JSON-MIN export")
    control = _pick_control(path, obj, from_name)
    coll = LabelCollector(path, keep_unlabeled=skipped == "seen")
    multi = sum(_read_task(coll, i, task, control, key_of) > 1 for i, task in enumerate(obj))
    return _finish(coll, multi)


def read_csv_export(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], root=None, *,
                    url_prefix: str | None = None, document_root=None, from_name: str | None = None,
                    data_key: str = "image", skipped: str = "seen", **_: Any) -> Labels:
    """A Label Studio CSV export (``header`` holds :data:`CSV_COLUMNS`): rows as JSON-MIN objects whose
    values are text cells."""
    control = from_name or DEFAULT_CONTROL
    records = [dict(zip(header, r)) for r in rows]
    key_of = key_reader(path, root, url_prefix, document_root, data_key)
    return read_records(path, records, control, key_of, skipped, True, from_name is None,
                        lambda i, rec: f"row {i + 1}" + (f" (task {rec['id']})" if rec.get("id") else ""))


def last_round(files: Sequence[str | os.PathLike]) -> int:
    """The highest ``data.round`` among the Label Studio tasks in ``files`` (0 when none has one):
    the round the next selection follows. Other formats are skipped."""
    best = 0
    for f in files:
        p = Path(f)
        if p.suffix.lower() != ".json":
            continue
        obj = load_json(p, read_text(p))
        for task in obj if isinstance(obj, list) else [obj]:
            data = task.get("data") if isinstance(task, dict) else None
            r = data.get("round") if isinstance(data, dict) else (task.get("round") if isinstance(task, dict) else None)
            if isinstance(r, int) and not isinstance(r, bool):
                best = max(best, r)
    return best
