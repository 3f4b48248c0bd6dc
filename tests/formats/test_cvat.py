"""CVAT (selector.formats.cvat): the "CVAT for images 1.1" XML, the dataset manifest and the labels file
against CVAT's documented schema, image sizes after EXIF orientation, and annotators' tags read back.

Schema from the CVAT docs:
  https://docs.cvat.ai/docs/other/xml_format/  ("CVAT for images" 1.1: <annotations> with
    <version>1.1</version>, <meta><task> with name, size, mode, labels/label/name; then
    <image id name width height> holding <tag label source="manual or auto">)
  https://docs.cvat.ai/docs/dataset_management/dataset_manifest/  (JSONL, one entry per line,
    no empty lines: {"version": ...}, {"type": "images"}, then {"name": basename and leading
    directories without extension, "extension": "." + ext, "width": int, "height": int};
    files are ordered by the manifest with the "predefined" sorting method). CVAT's
    manifest code supports versions "1.0" and "1.1" and requires "name" and "extension"
    (utils/dataset_manifest/core.py).
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from selector.strategies.base import Selection

from selector.formats import ExportError, export_selection, read_labels
from selector.formats.cvat import image_size
from tests.formats.conftest import POOL, make_selection


def check_cvat_xml(path, root):
    ann = ET.parse(path).getroot()
    assert ann.tag == "annotations"
    assert ann.find("version").text == "1.1"
    task = ann.find("meta/task")
    size = int(task.find("size").text)
    assert task.find("mode").text == "annotation"
    assert task.find("name").text
    label_names = [lab.find("name").text for lab in task.findall("labels/label")]
    images = ann.findall("image")
    assert len(images) == size
    for frame, img in enumerate(images):
        assert set(img.attrib) == {"id", "name", "width", "height"}
        assert int(img.get("id")) == frame
        w, h = int(img.get("width")), int(img.get("height"))
        assert (w, h) == Image.open(root / img.get("name")).size
        for tag in img:
            assert tag.tag == "tag"
            assert tag.get("label") in label_names
            assert tag.get("source") in ("manual", "auto")
    return ann


def test_cvat_xml_manifest_labels(named_pool, tmp_path):
    root, paths = named_pool
    out = tmp_path / "task.xml"
    files = export_selection(make_selection(), paths, out, root=root, strategy="probcover")
    assert files == [out, tmp_path / "task.manifest.jsonl", tmp_path / "task.labels.json"]
    ann = check_cvat_xml(out, root)
    order = [4, 1, 3, 0, 5]
    assert [img.get("name") for img in ann.findall("image")] == [paths[i] for i in order]
    tags = [[t.get("label") for t in img] for img in ann.findall("image")]
    assert tags == [["group-2"], ["group-0"], [], ["group-1"], ["group-0"]]

    raw = files[1].read_text(encoding="utf-8")
    assert "\n\n" not in raw and raw.endswith("\n")
    lines = [json.loads(line) for line in raw.splitlines()]
    assert lines[0]["version"] in ("1.0", "1.1") and lines[1] == {"type": "images"}
    for entry, i in zip(lines[2:], order):
        assert set(entry) >= {"name", "extension", "width", "height"}
        assert entry["extension"].startswith(".")
        assert entry["name"] + entry["extension"] == paths[i]
        assert (entry["width"], entry["height"]) == Image.open(root / paths[i]).size
    assert len(lines) == 2 + len(order)

    labels = json.loads(files[2].read_text(encoding="utf-8"))
    assert labels == [{"name": f"group-{g}", "type": "tag", "attributes": []} for g in (0, 1, 2)]


def test_image_size_follows_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[274] = 6  # rotated 90 degrees: CVAT shows it as height x width
    Image.new("RGB", (8, 5)).save(tmp_path / "r.jpg", exif=exif)
    Image.new("RGB", (8, 5)).save(tmp_path / "n.jpg")
    assert image_size(tmp_path / "r.jpg") == (5, 8)
    assert image_size(tmp_path / "n.jpg") == (8, 5)
    with pytest.raises(ExportError, match="cannot read image size"):
        image_size(tmp_path / "missing.jpg")


def test_cvat_round_trip(tmp_path):
    sel = Selection(np.array([40, 1, 2]), np.ones(3), np.array([0, 1, 0]))
    files = export_selection(sel, POOL, tmp_path / "task.xml", sizes=(28, 28))
    # selector's own export read back: its source="auto" group tags are not labels
    assert read_labels(files[0]) == {}
    # An annotator's CVAT export: image 0 tagged by hand, image 1 untouched pre-annotation
    # only, image 2's tag deleted and tagged by a tag without source (CVAT < 1.1: manual).
    ann = ET.parse(files[0]).getroot()
    imgs = ann.findall("image")
    ET.SubElement(imgs[0], "tag", {"label": "cat", "source": "manual"})
    for t in imgs[2].findall("tag"):
        imgs[2].remove(t)
    ET.SubElement(imgs[2], "tag", {"label": "dog"})
    ET.ElementTree(ann).write(tmp_path / "done.xml", encoding="utf-8", xml_declaration=True)
    assert read_labels(tmp_path / "done.xml") == {POOL[40]: "cat", POOL[2]: "dog"}
