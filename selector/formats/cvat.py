"""CVAT: "CVAT for images 1.1" annotations (XML, or a dataset zip with the images) written for a new
task, and read back.

Written:

* ``.xml`` / ``"cvat"``: "CVAT for images 1.1" annotations with one ``<tag>`` per image, plus
  ``<stem>.manifest.jsonl`` (CVAT dataset manifest listing the images in rank order) and
  ``<stem>.labels.json`` (CVAT label spec for the task);
* ``.zip`` / ``"cvat-zip"``: a CVAT dataset zip, ``annotations.xml`` (as above) and the images
  under ``images/``, for CVAT's "Import dataset" and datumaro.

Read (``.xml``, or the ``annotations.xml`` of a ``.zip``): ``<image name>`` with ``<tag label>``;
``source="auto"`` tags are pre-annotations and never read as labels; an image without another tag is
not labeled.

References (the schemas the writers follow, checked in ``tests/formats/test_cvat.py``): CVAT XML 1.1:
https://docs.cvat.ai/docs/other/xml_format/ ; dataset manifest:
https://docs.cvat.ai/docs/dataset_management/dataset_manifest/
"""
from __future__ import annotations

import json
import logging
import os
import posixpath
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from selector.atomic import atomic_write
from selector.strategies.base import Selection

from . import common
from .common import (
    ExportError,
    LabelCollector,
    LabelFileError,
    Labels,
    config_choices,
    group_name,
    groups_confident,
    is_array_id,
    normalize_path,
    read_bytes,
    selection_rows,
    side_path,
    too_big,
    warn_if_seen_only,
)
from .registry import register_reader, register_writer

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- writers


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
    ``<tag label="group-g" source="auto">`` as a pre-annotation (:func:`read_cvat` never
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
            ET.SubElement(img, "tag", {"label": group_name(r["group"], group_names), "source": "auto"})
    ET.indent(ann)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(ann, encoding="unicode") + "\n"


def _side_files(out_path: str | os.PathLike, manifest: bool = True, labels: bool = True, **_: Any) -> list[Path]:
    """The manifest and the label spec beside the annotations, as asked."""
    return [side_path(out_path, s) for s, on in ((".manifest.jsonl", manifest), (".labels.json", labels)) if on]


@register_writer("cvat", ".xml", aliases=("xml",), side_files=_side_files)
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
            pre-tagged with its group (``source="auto"``) when the class count is confident
            (:func:`~selector.formats.common.groups_confident`). ``predictions=False``: no tags at all.
    """
    rows = selection_rows(selection, paths)
    wh = _sizes(rows, root, sizes)
    tag_groups = predictions and (predict_groups or not class_names)
    names = config_choices([r["group"] for r in rows], class_names, tag_groups, group_names)
    pre_tag = tag_groups and groups_confident(selection)
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
        warn_if_seen_only(class_names, f"the CVAT label spec {lab_path}", logger)
        with atomic_write(lab_path, "w", overwrite=force) as f:
            json.dump(cvat_labels(names), f, ensure_ascii=False, indent=1)
            f.write("\n")
        written.append(lab_path)
    task_name = f"selector-{strategy}" if strategy else "selector"
    with atomic_write(out_path, "w", overwrite=force) as f:
        f.write(cvat_xml(rows, wh, names, group_names, task_name, tag_groups=pre_tag))
    return [out_path, *written]


@register_writer("cvat-zip", ".zip")
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
    xml = cvat_xml(rows, wh, names, group_names, task_name, tag_groups=tag_groups and groups_confident(selection))
    out_path = Path(out_path)
    with atomic_write(out_path, "wb", overwrite=force) as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("annotations.xml", xml.encode("utf-8"))
            for r in rows:
                z.write(Path(root) / r["path"], "images/" + r["path"], compress_type=zipfile.ZIP_STORED)
    return [out_path]


# ----------------------------------------------------------------------------- readers


def _read_annotations(path: Path, xml: bytes, root) -> Labels:
    """``{image name: first tag that is not a pre-annotation}`` from CVAT for images 1.1 XML; one image
    tagged differently in two ``<image>`` elements is an error."""
    try:
        ann = ET.fromstring(xml)
    except ET.ParseError as e:
        raise LabelFileError(f"{path}: not valid XML: {e}") from None
    if ann.tag != "annotations":
        raise LabelFileError(f"{path}: root element is <{ann.tag}>, expected CVAT <annotations>")
    coll = LabelCollector(path)
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
        coll.add(normalize_path(name, root), use[0].get("label"), f"in <image id={img.get('id')!r}>")
    if multi:
        logger.warning("%s: %d image(s) have several tags; took the first of each", path, multi)
    return coll.labels


def _cvat_zip_xml(path: Path) -> bytes:
    """The ``annotations.xml`` of a CVAT for images 1.1 dataset zip (at the top or one folder down), at
    most :data:`selector.formats.common.MAX_LABELS_BYTES` unpacked: a larger one (a zip bomb: a few MB
    that unpack to GBs) is refused from its declared size, before anything is unpacked, and the read
    stops at the limit whatever the zip declares."""
    import zipfile

    limit = common.MAX_LABELS_BYTES
    try:
        with zipfile.ZipFile(path) as z:
            names = [i for i in z.infolist()
                     if i.filename.rsplit("/", 1)[-1] == "annotations.xml" and i.filename.count("/") <= 1]
            if not names:
                raise LabelFileError(f"{path}: no annotations.xml in the zip (a CVAT for images 1.1 dataset has one)")
            info = min(names, key=lambda i: len(i.filename))
            what = f"{path}: {info.filename}"
            if info.file_size > limit:
                raise too_big(what, info.file_size)
            with z.open(info) as f:
                data = f.read(limit + 1)
            if len(data) > limit:
                raise too_big(what, None)
            return data
    except FileNotFoundError:
        raise LabelFileError(f"labels file {path} does not exist") from None
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
        raise LabelFileError(f"{path}: not a readable CVAT zip ({e})") from None


@register_reader(".xml")
def read_cvat(path: Path, root=None, **_: Any) -> Labels:
    """CVAT for images 1.1 XML annotations (see the module docstring)."""
    return _read_annotations(path, read_bytes(path), root)


@register_reader(".zip")
def read_cvat_zip(path: Path, root=None, **_: Any) -> Labels:
    """The ``annotations.xml`` of a CVAT for images 1.1 dataset zip."""
    return _read_annotations(path, _cvat_zip_xml(path), root)
