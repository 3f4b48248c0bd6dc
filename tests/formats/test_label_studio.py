"""Tests for selector.formats' writers: each format against its tool's documented import schema.

Schemas are rebuilt here from the tools' documentation (URLs cited at each check), so a writer
that drifts from what the tool imports fails here.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import posixpath
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

from selector.atomic import WriteError
from selector.formats import (
    FORMATS,
    ExportError,
    cvat,
    export_selection,
    format_for,
    label_studio,
    selection_rows,
    tabular,
)
from selector.formats.cvat import image_size
from selector.formats.label_studio import image_url
from selector.strategies.base import Selection

# File names that break naive writers: spaces, non-ASCII, URL/CSV/XML specials, a sub folder.
NAMES = ["a b.png", "sub dir/ünïcödé 猫.png", "c,d \"q\".png", "e+f&g#h%20.png", "plain.png",
         "sub dir/x<y>.png"]


@pytest.fixture
def pool(tmp_path):
    """A pool folder with small images of distinct sizes; returns (root, paths)."""
    root = tmp_path / "pool"
    (root / "sub dir").mkdir(parents=True)
    for i, p in enumerate(NAMES):
        Image.new("RGB", (4 + i, 3 + 2 * i), (i * 30, 0, 0)).save(root / p)
    return root, list(NAMES)


def make_selection():
    # rank order 4, 1, 3, 0, 5; item 3 has no group and item 0 a NaN score.
    return Selection(indices=np.array([4, 1, 3, 0, 5], dtype=np.int64),
                     scores=np.array([0.9, 0.7, 0.5, np.nan, 0.1]),
                     groups=np.array([2, 0, -1, 1, 0], dtype=np.int64), n_groups=3, info={})


# ----------------------------------------------------------------------------- rows


def test_selection_rows_rank_order_and_validation():
    sel = make_selection()
    rows = selection_rows(sel, NAMES)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["path"] for r in rows] == [NAMES[i] for i in [4, 1, 3, 0, 5]]
    assert rows[3]["score"] is None and rows[0]["score"] == 0.9
    with pytest.raises(ExportError, match="out of range"):
        selection_rows(sel, NAMES[:5])
    bad = Selection(np.array([0, 0]), np.zeros(2), np.zeros(2, dtype=np.int64))
    with pytest.raises(ExportError, match="duplicate"):
        selection_rows(bad, NAMES)
    bad = Selection(np.array([0, 1]), np.zeros(3), np.zeros(2, dtype=np.int64))
    with pytest.raises(ExportError, match="3 scores"):
        selection_rows(bad, NAMES)


# ----------------------------------------------------------------------------- csv / jsonl / txt


def test_csv_schema_and_quoting(pool, tmp_path):
    root, paths = pool
    out = tmp_path / "sel.csv"
    assert export_selection(make_selection(), paths, out, root=root) == [out]
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["rank", "path", "group", "score", "abs_path"]
    body = rows[1:]
    assert [int(r[0]) for r in body] == [1, 2, 3, 4, 5]  # 1-based rank
    assert [r[1] for r in body] == [paths[i] for i in [4, 1, 3, 0, 5]]  # commas/quotes survive
    assert [int(r[2]) for r in body] == [2, 0, -1, 1, 0]
    assert float(body[0][3]) == 0.9 and body[3][3] == ""  # NaN score -> empty cell
    for r in body:
        assert (root / r[1]).is_file()
        assert Path(r[4]).is_absolute() and Path(r[4]) == (root / r[1]).resolve()  # FiftyOne opens these
    export_selection(make_selection(), paths, tmp_path / "noroot.csv")
    with open(tmp_path / "noroot.csv", newline="", encoding="utf-8") as f:
        assert {r[4] for r in list(csv.reader(f))[1:]} == {""}  # no pool folder: left empty


def test_jsonl_schema(pool, tmp_path):
    root, paths = pool
    out = tmp_path / "sel.jsonl"
    export_selection(make_selection(), paths, out, root=root)
    lines = out.read_text(encoding="utf-8").splitlines()
    objs = [json.loads(line) for line in lines]  # strict JSON: NaN would not parse as null
    assert len(objs) == 5
    for rank, (o, i) in enumerate(zip(objs, [4, 1, 3, 0, 5]), start=1):
        assert set(o) == {"rank", "path", "index", "group", "score", "abs_path"}
        assert Path(o["abs_path"]) == (root / paths[i]).resolve() and Path(o["abs_path"]).is_file()
        assert o["rank"] == rank and o["index"] == i and o["path"] == paths[i]
        assert isinstance(o["group"], int)
        assert o["score"] is None or isinstance(o["score"], float)
    assert objs[3]["score"] is None
    assert "NaN" not in out.read_text(encoding="utf-8")


def test_paths_txt(pool, tmp_path):
    root, paths = pool
    out = tmp_path / "sel.txt"
    export_selection(make_selection(), paths, out)
    assert out.read_text(encoding="utf-8").splitlines() == [paths[i] for i in [4, 1, 3, 0, 5]]
    sel = Selection(np.array([0]), np.zeros(1), np.zeros(1, dtype=np.int64))
    with pytest.raises(ExportError, match="control character"):
        export_selection(sel, ["bad\nname.png"], tmp_path / "x.txt")


def test_array_pool_ids(tmp_path):
    ids = [f"x[{i}]" for i in range(10)]
    sel = Selection(np.array([7, 2]), np.array([1.0, 0.5]), np.array([0, 1]))
    export_selection(sel, ids, tmp_path / "s.csv")
    export_selection(sel, ids, tmp_path / "s.jsonl")
    export_selection(sel, ids, tmp_path / "s.txt")
    assert (tmp_path / "s.txt").read_text().splitlines() == ["x[7]", "x[2]"]
    export_selection(sel, ids, tmp_path / "s.json", strategy="random")
    task = json.loads((tmp_path / "s.json").read_text())[0]
    assert parse_qs(urlsplit(task["data"]["image"]).query)["d"] == ["x[7]"]
    # CVAT needs image sizes: refused for array ids unless given.
    with pytest.raises(ExportError, match="array ids"):
        export_selection(sel, ids, tmp_path / "s.xml", root=tmp_path)
    with pytest.raises(ExportError, match="sizes must be"):
        export_selection(sel, ids, tmp_path / "s.xml", sizes=(28, 0))
    files = export_selection(sel, ids, tmp_path / "s.xml", sizes=[28, 28])
    img = ET.parse(files[0]).getroot().find("image")
    assert (img.get("width"), img.get("height")) == ("28", "28")


# ----------------------------------------------------------------------------- Label Studio

# Schema from the Label Studio docs:
#   https://labelstud.io/guide/tasks#Basic-Label-Studio-JSON-format  (a JSON list of tasks;
#     "data" holds the key the Image tag's value="$image" names; optional "annotations",
#     "predictions"; extra "data" keys allowed)
#   https://labelstud.io/guide/predictions  (prediction = {"model_version": str,
#     "score": float, "result": [{"id", "from_name", "to_name", "type", "value"}]}; "You must
#     use different IDs for each task elements, annotations, predictions and their result
#     items"; choices value = {"choices": [str]})
#   https://labelstud.io/guide/task_format  (result.from_name = control tag name,
#     result.to_name = object tag name)
#   https://labelstud.io/guide/storage#Local-storage  ("/data/local-files/?d=dataset1/1.jpg",
#     relative to LOCAL_FILES_DOCUMENT_ROOT); the server reads d with request.GET.get('d'),
#     normalises it with posixpath.normpath(d).lstrip('/') and safe_joins it onto the document
#     root (label_studio/io_storages/localfiles/views.py).


def sdk_interface(config):
    """Label Studio's own parser and validator for a labeling config (label-studio-sdk)."""
    from label_studio_sdk.label_interface import LabelInterface

    li = LabelInterface(config)
    li.validate()  # raises on a config Label Studio would refuse
    return li


def check_label_studio_task(task, config):
    """Schema checks from the docs, then every prediction through the SDK's validate_prediction."""
    li = sdk_interface(config)
    for pred in task.get("predictions", []):
        assert li.validate_prediction(pred, return_errors=True) == []
        assert 0.0 <= pred["score"] <= 1.0
    view = ET.fromstring(config)
    image_tags = {t.get("name"): t.get("value") for t in view.iter("Image")}
    choices_tags = {t.get("name"): (t.get("toName"), {c.get("value") for c in t.iter("Choice")})
                    for t in view.iter("Choices")}
    assert isinstance(task, dict)
    assert set(task) <= {"id", "data", "meta", "annotations", "predictions"}
    assert isinstance(task["data"], dict)
    for value in image_tags.values():
        assert value.startswith("$") and isinstance(task["data"][value[1:]], str)
    assert isinstance(task.get("meta", {}), dict)
    result_ids = []
    for pred in task.get("predictions", []):
        assert set(pred) <= {"model_version", "score", "result"}
        assert isinstance(pred["model_version"], str)
        if "score" in pred:
            assert isinstance(pred["score"], float) and np.isfinite(pred["score"])
        assert isinstance(pred["result"], list)
        for res in pred["result"]:
            assert set(res) == {"id", "from_name", "to_name", "type", "value"}
            assert res["type"] == "choices"
            to_name, allowed = choices_tags[res["from_name"]]
            assert res["to_name"] == to_name and res["to_name"] in image_tags
            assert isinstance(res["value"]["choices"], list)
            assert all(isinstance(c, str) and c in allowed for c in res["value"]["choices"])
            result_ids.append(res["id"])
    return result_ids


def served_file(url, document_root, storage_path):
    """The file Label Studio's local-files view would open for ``url``, with the document root
    a parent of the Local Files storage folder as its docs require, and the file inside that
    storage folder as its permission check requires."""
    parts = urlsplit(url)
    assert parts.path == "/data/local-files/"
    d = parse_qs(parts.query)["d"][0]  # what Django's request.GET.get('d') gives
    rel = posixpath.normpath(d).lstrip("/")
    full = Path(document_root) / rel
    assert Path(storage_path).is_relative_to(document_root) and Path(storage_path) != Path(document_root)
    directory = os.path.normpath(os.path.dirname(full))
    storage = str(storage_path).rstrip(os.sep)
    assert directory == storage or directory.startswith(storage + os.sep)
    return full


def test_label_studio_tasks_schema(pool, tmp_path):
    root, paths = pool
    out = tmp_path / "tasks.json"
    files = export_selection(make_selection(), paths, out, root=root, strategy="typiclust",
                             class_names=["cat", "dog"], round=2)
    assert files == [out, tmp_path / "tasks.config.xml"]
    tasks = json.loads(out.read_text(encoding="utf-8"))
    config = files[1].read_text(encoding="utf-8")
    assert [c.get("value") for c in ET.fromstring(config).iter("Choice")] == ["cat", "dog"]  # real classes only
    assert isinstance(tasks, list) and len(tasks) == 5
    for rank, (task, i) in enumerate(zip(tasks, [4, 1, 3, 0, 5]), start=1):
        assert check_label_studio_task(task, config) == []  # no class pre-selected by default
        assert served_file(task["data"]["image"], root.parent, root) == root / paths[i]
        assert (root / paths[i]).is_file()
        assert task["meta"]["rank"] == rank and task["meta"]["index"] == i
        assert task["data"]["path"] == paths[i] and task["data"]["round"] == 2
        assert task["meta"]["abs_path"] == str((root / paths[i]).resolve())
        assert task["data"]["group"] == [2, 0, -1, 1, 0][rank - 1]
        pred = task["predictions"][0]
        assert pred["model_version"] == "selector-typiclust"
        assert pred["score"] == pytest.approx(1 - (rank - 1) / 5)  # from the rank, in (0, 1]
    assert tasks[3]["meta"]["score"] is None  # NaN strategy score


def test_label_studio_predictions_valid_under_the_sdk(pool, tmp_path):
    """Strategy scores above 1 (a k-center radius) and groups as predictions: every prediction
    passes the SDK's validator, and group names reach the classes only when asked."""
    root, paths = pool
    sel = Selection(indices=np.array([0, 1, 2, 3, 4, 5]), scores=np.array([7.5, 3.0, 2.0, 1.5, 1.2, 1.1]),
                    groups=np.array([0, 1, 2, 0, 1, -1]), n_groups=3, info={})
    # asked: the group is pre-selected, and the config offers the classes plus the group names
    files = export_selection(sel, paths, tmp_path / "g.json", root=root, class_names=["cat", "dog"],
                             predict_groups=True)
    config = files[1].read_text(encoding="utf-8")
    tasks = json.loads(files[0].read_text(encoding="utf-8"))
    ids = [i for t in tasks for i in check_label_studio_task(t, config)]
    assert len(ids) == len(set(ids)) == 5  # unique result ids; the item without a group has none
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == ["group-0"]
    assert [c.get("value") for c in ET.fromstring(config).iter("Choice")] == ["cat", "dog", "group-0", "group-1",
                                                                             "group-2"]
    # groups mapped onto real classes: the config holds only the classes, predictions stay valid
    files = export_selection(sel, paths, tmp_path / "m.json", root=root, class_names=["cat", "dog", "bird"],
                             predict_groups=True, group_names={0: "cat", 1: "dog", 2: "bird"})
    config = files[1].read_text(encoding="utf-8")
    assert [c.get("value") for c in ET.fromstring(config).iter("Choice")] == ["cat", "dog", "bird"]
    for t in json.loads(files[0].read_text(encoding="utf-8")):
        check_label_studio_task(t, config)
    # the old way (group names in a config of real classes) is what the SDK refuses
    from label_studio_sdk.label_interface import LabelInterface

    bad = dict(tasks[0]["predictions"][0], score=7.5)
    errors = LabelInterface(label_studio.label_studio_config(["cat", "dog"])).validate_prediction(
        bad, return_errors=True)
    assert len(errors) == 2 and "Score" in errors[0] and "group-0" in errors[1]
    # no predictions; no class names: no config (Label Studio refuses empty Choices), a warning
    files = export_selection(sel, paths, tmp_path / "n.json", root=root, predictions=False)
    assert files == [tmp_path / "n.json"]
    assert all("predictions" not in t for t in json.loads(files[0].read_text(encoding="utf-8")))
    with pytest.raises(ExportError, match="at least one class"):
        label_studio.label_studio_config([])
    with pytest.raises(ExportError, match="round"):
        label_studio.label_studio_tasks(sel, paths, round=0)


def test_label_studio_document_root_and_prefixes(pool, tmp_path):
    root, paths = pool
    sel = make_selection()
    # Document root two levels above the pool: d= includes both folder names.
    top = tmp_path.parent
    tasks = label_studio.label_studio_tasks(sel, paths, root=root, document_root=top)
    for task, i in zip(tasks, [4, 1, 3, 0, 5]):
        assert served_file(task["data"]["image"], top, root) == root / paths[i]
        assert parse_qs(urlsplit(task["data"]["image"]).query)["d"][0].startswith(f"{tmp_path.name}/pool/")
    # Document root = the pool root: d= is the pool path itself.
    tasks = label_studio.label_studio_tasks(sel, paths, root=root, document_root=root)
    assert [parse_qs(urlsplit(t["data"]["image"]).query)["d"][0] for t in tasks] == [paths[i] for i in
                                                                                     [4, 1, 3, 0, 5]]
    # No root: d= is the pool path (document root = pool root).
    assert image_url(paths[1]) == "/data/local-files/?d=sub%20dir/%C3%BCn%C3%AFc%C3%B6d%C3%A9%20%E7%8C%AB.png"
    with pytest.raises(ExportError, match="not under document_root"):
        label_studio.label_studio_tasks(sel, paths, root=root, document_root=tmp_path / "elsewhere")
    # A static server prefix: percent-encoded path after it.
    url = image_url(paths[3], root, url_prefix="http://localhost:8081/")
    assert url == "http://localhost:8081/e%2Bf%26g%23h%2520.png"
    # None: absolute file path.
    assert image_url(paths[1], root, url_prefix=None) == str(root.resolve() / paths[1])
    # Custom group names and control names end up consistent with the written config.
    files = export_selection(sel, paths, tmp_path / "t2.json", root=root, from_name="cls", to_name="img",
                             group_names={0: "cat", 1: "dog", 2: "bird"}, predict_groups=True)
    config = files[1].read_text(encoding="utf-8")
    for task in json.loads(files[0].read_text(encoding="utf-8")):
        check_label_studio_task(task, config)
    assert set(c.get("value") for c in ET.fromstring(config).iter("Choice")) == {"cat", "dog", "bird"}


# ----------------------------------------------------------------------------- CVAT

# Schema from the CVAT docs:
#   https://docs.cvat.ai/docs/other/xml_format/  ("CVAT for images" 1.1: <annotations> with
#     <version>1.1</version>, <meta><task> with name, size, mode, labels/label/name; then
#     <image id name width height> holding <tag label source="manual or auto">)
#   https://docs.cvat.ai/docs/dataset_management/dataset_manifest/  (JSONL, one entry per line,
#     no empty lines: {"version": ...}, {"type": "images"}, then {"name": basename and leading
#     directories without extension, "extension": "." + ext, "width": int, "height": int};
#     files are ordered by the manifest with the "predefined" sorting method). CVAT's
#     manifest code supports versions "1.0" and "1.1" and requires "name" and "extension"
#     (utils/dataset_manifest/core.py).


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


def test_cvat_xml_manifest_labels(pool, tmp_path):
    root, paths = pool
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


# ----------------------------------------------------------------------------- entry point


def test_format_selection(tmp_path):
    assert {format_for(f"a{s}") for s in (".csv", ".jsonl", ".json", ".xml", ".zip", ".txt")} == set(FORMATS)
    assert format_for("a.JSON") == "label-studio"
    assert format_for("a.out", fmt="csv") == "csv"
    with pytest.raises(ExportError, match="cannot tell the export format"):
        format_for("a.parquet")
    with pytest.raises(ExportError, match="unknown export format"):
        format_for("a.csv", fmt="yaml")
    sel = make_selection()
    out = tmp_path / "list.dat"
    export_selection(sel, NAMES, out, fmt="paths")
    assert len(out.read_text(encoding="utf-8").splitlines()) == 5
    with pytest.raises(ExportError, match="does not exist"):
        export_selection(sel, NAMES, tmp_path / "nope" / "a.csv")


# ----------------------------------------------------------------------------- atomic writing


class DiskFull(OSError):
    pass


@pytest.fixture
def failing_disk(monkeypatch):
    """Make every atomic write fail after ~40 characters, like a disk filling up mid-write."""
    real = tabular.atomic_write

    class Proxy:
        def __init__(self, f):
            self._f, self._n = f, 0

        def write(self, s):
            self._n += len(s)
            if self._n > 40:
                self._f.write(s[:5])  # part of it reached the temp file
                raise DiskFull(28, "No space left on device")
            return self._f.write(s)

        def __getattr__(self, name):
            return getattr(self._f, name)

    @contextlib.contextmanager
    def failing(path, mode="w", **kw):
        with real(path, mode, **kw) as f:
            yield Proxy(f)

    for mod in (tabular, label_studio, cvat):  # each format module writes through its own binding
        monkeypatch.setattr(mod, "atomic_write", failing)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".xml", ".txt"])
def test_failed_write_leaves_no_file(pool, tmp_path, failing_disk, suffix):
    root, paths = pool
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(WriteError, match=r"cannot write .*: No space left on device \(nothing was written\)") as e:
        export_selection(make_selection(), paths, out_dir / f"sel{suffix}", root=root)
    assert isinstance(e.value.__cause__, DiskFull)
    assert list(out_dir.iterdir()) == []  # no output, no temp file


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".xml", ".txt"])
def test_failed_write_keeps_existing_file(pool, tmp_path, failing_disk, suffix):
    root, paths = pool
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"sel{suffix}"
    out.write_text("previous export\n", encoding="utf-8")
    with pytest.raises(WriteError, match="No space left on device"):
        export_selection(make_selection(), paths, out, root=root)
    assert out.read_text(encoding="utf-8") == "previous export\n"
    assert sorted(p.name for p in out_dir.iterdir()) == [out.name]


def test_writer_exception_inside_atomic_write(tmp_path, monkeypatch):
    """A writer that raises after writing rows (not an I/O error) also leaves nothing behind."""
    calls = {"n": 0}
    real_writer = tabular.csv.writer

    def exploding_writer(f, *a, **k):
        w = real_writer(f, *a, **k)

        class W:
            def writerow(self, row):
                calls["n"] += 1
                if calls["n"] == 3:
                    raise RuntimeError("boom")
                return w.writerow(row)
        return W()

    monkeypatch.setattr(tabular.csv, "writer", exploding_writer)
    out = tmp_path / "sel.csv"
    out.write_text("old\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="boom"):
        export_selection(make_selection(), NAMES, out)
    assert out.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sel.csv"]
