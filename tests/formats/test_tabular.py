"""Tests for selector.formats' readers: reading annotators' labels back, and the labeled mask."""
from __future__ import annotations

import copy
import csv
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from selector.formats import (
    LabelFileError,
    export_selection,
    normalize_path,
    read_labels,
    url_to_path,
)
from selector.plan import labeled_mask
from selector.strategies import get_strategy
from selector.strategies.base import Selection

# Pool ids with spaces, non-ASCII, URL specials, a sub folder.
POOL = [f"img {i:02d}.png" for i in range(40)] + ["sub dir/ünï 猫.png", "sub dir/a+b&c#d%20.png",
                                                   "é,\"q\".png", "x y/z.png"]


def annotate_like_label_studio(tasks, truth, cancel=(), skip=()):
    """What Label Studio's JSON export looks like after annotators worked on imported tasks
    (https://labelstud.io/guide/task_format): ids added, ``annotations`` filled with a choices
    result; ``cancel`` tasks only have a cancelled (skipped) annotation, ``skip`` none."""
    out = []
    for t_id, task in enumerate(copy.deepcopy(tasks), start=1):
        task["id"] = t_id
        task["project"] = 3
        path = task["data"]["path"]
        ann = {"id": 1000 + t_id, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
               "lead_time": 2.5, "task": t_id,
               "result": [{"id": f"r{t_id}", "from_name": "choice", "to_name": "image", "type": "choices",
                           "origin": "manual", "value": {"choices": [truth[path]]}}]}
        if path in cancel:
            ann["was_cancelled"], ann["result"] = True, []
            task["annotations"] = [ann]
        elif path in skip:
            task["annotations"] = []
        else:
            # An earlier cancelled attempt followed by the real annotation.
            task["annotations"] = [{"id": 1, "was_cancelled": True, "result": []}, ann]
        out.append(task)
    return out


# ----------------------------------------------------------------------------- round trips


def test_label_studio_round_trip_excludes_labeled(tmp_path):
    rng = np.random.default_rng(0)
    n = len(POOL)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    chosen = np.array([40, 3, 41, 17, 42, 8, 43, 25, 30, 11])
    sel = Selection(indices=chosen, scores=np.linspace(1, 0.1, 10), groups=chosen % 3, n_groups=3)
    out = tmp_path / "tasks.json"
    export_selection(sel, POOL, out, root=tmp_path, strategy="typiclust")

    truth = {POOL[i]: ("cat" if i % 2 else "dog") for i in chosen}
    tasks = json.loads(out.read_text(encoding="utf-8"))
    cancelled, untouched = POOL[17], POOL[25]
    exported = annotate_like_label_studio(tasks, truth, cancel={cancelled}, skip={untouched})
    ls_export = tmp_path / "project-3-at-2026.json"
    ls_export.write_text(json.dumps(exported, ensure_ascii=False), encoding="utf-8")

    # skipped="unseen": only finished annotations count; skipped and open tasks may come again
    labels = read_labels(ls_export, root=tmp_path, skipped="unseen")
    expect = {p: lab for p, lab in truth.items() if p not in (cancelled, untouched)}
    assert labels == expect
    # default skipped="seen": the skipped and the open task are taken (None), never chosen again
    assert read_labels(ls_export, root=tmp_path) == {**expect, cancelled: None, untouched: None}
    with pytest.raises(ValueError, match="skipped must be"):
        read_labels(ls_export, skipped="maybe")

    mask, y, classes, n_missing = labeled_mask(labels, POOL)
    assert n_missing == 0 and classes == ["cat", "dog"]
    labeled = sorted(POOL.index(p) for p in expect)
    assert np.flatnonzero(mask).tolist() == labeled
    for i in labeled:
        assert classes[y[i]] == truth[POOL[i]]
    assert (y[~mask] == -1).all()

    free = int((~mask).sum())
    for seed in range(5):
        pick = get_strategy("random").select(emb, 12, mask, np.random.default_rng(seed)).indices
        assert not mask[pick].any()
    # Asking for every unlabeled item returns exactly the complement of the labeled set.
    pick = get_strategy("random").select(emb, free, mask, np.random.default_rng(0)).indices
    assert sorted(pick.tolist()) == np.flatnonzero(~mask).tolist()


def test_label_studio_without_data_path_decodes_urls(tmp_path):
    """Tasks whose data only has the image URL (made elsewhere or with data.path removed)."""
    sel = Selection(np.arange(40, 44), np.ones(4), np.zeros(4, dtype=np.int64))
    export_selection(sel, POOL, tmp_path / "t.json")
    tasks = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    for t in tasks:
        del t["data"]["path"]
    truth = {POOL[i]: f"c{i}" for i in range(40, 44)}
    # annotate_like_label_studio reads data.path: annotate first, then drop it.
    with_path = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    exported = annotate_like_label_studio(with_path, truth)
    for t in exported:
        del t["data"]["path"]
    (tmp_path / "e.json").write_text(json.dumps(exported), encoding="utf-8")
    assert read_labels(tmp_path / "e.json") == truth

    # Default document root (the pool's parent): the d= path starts with the pool folder's name.
    root = tmp_path / "pool"
    root.mkdir()
    export_selection(sel, POOL, tmp_path / "t1.json", root=root)
    exported = annotate_like_label_studio(json.loads((tmp_path / "t1.json").read_text("utf-8")), truth)
    for t in exported:
        assert t["data"]["image"].startswith("/data/local-files/?d=pool/")
        del t["data"]["path"]
    (tmp_path / "e1.json").write_text(json.dumps(exported), encoding="utf-8")
    assert read_labels(tmp_path / "e1.json", root=root) == truth

    # A document root further up, passed on both sides.
    export_selection(sel, POOL, tmp_path / "t2.json", root=root, document_root=tmp_path.parent)
    tasks = json.loads((tmp_path / "t2.json").read_text(encoding="utf-8"))
    exported = annotate_like_label_studio(tasks, truth)
    for t in exported:
        del t["data"]["path"]
    (tmp_path / "e2.json").write_text(json.dumps(exported), encoding="utf-8")
    assert read_labels(tmp_path / "e2.json", root=root, document_root=tmp_path.parent) == truth

    # A static-server prefix, undone with url_prefix.
    export_selection(sel, POOL, tmp_path / "t3.json", url_prefix="http://h:8081/files/")
    exported = annotate_like_label_studio(json.loads((tmp_path / "t3.json").read_text("utf-8")), truth)
    for t in exported:
        del t["data"]["path"]
    (tmp_path / "e3.json").write_text(json.dumps(exported), encoding="utf-8")
    assert read_labels(tmp_path / "e3.json", url_prefix="http://h:8081/files/") == truth


def test_label_studio_json_min_and_from_name(tmp_path):
    rows = [{"image": "/data/local-files/?d=sub%20dir/%C3%BCn%C3%AF%20%E7%8C%AB.png",
             "id": 1, "choice": "cat", "annotator": 1, "annotation_id": 5, "lead_time": 1.0},
            {"image": "/data/local-files/?d=img%2000.png", "path": "img 01.png", "choice": "dog"},
            {"image": "/data/local-files/?d=img%2002.png", "choice": {"choices": ["a", "b"]}}]
    (tmp_path / "min.json").write_text(json.dumps(rows), encoding="utf-8")
    assert read_labels(tmp_path / "min.json") == {"sub dir/ünï 猫.png": "cat", "img 01.png": "dog",
                                                  "img 02.png": "a"}
    # from_name picks one control out of several.
    task = {"data": {"image": "/data/local-files/?d=img%2005.png"},
            "annotations": [{"result": [
                {"from_name": "quality", "to_name": "image", "type": "choices",
                 "value": {"choices": ["blurry"]}},
                {"from_name": "choice", "to_name": "image", "type": "choices",
                 "value": {"choices": ["cat"]}}]}]}
    (tmp_path / "two.json").write_text(json.dumps([task]), encoding="utf-8")
    assert read_labels(tmp_path / "two.json", from_name="choice") == {"img 05.png": "cat"}
    assert read_labels(tmp_path / "two.json") == {"img 05.png": "blurry"}
    # A submitted annotation without a choice: labeled, label unknown.
    task["annotations"] = [{"result": []}]
    (tmp_path / "empty.json").write_text(json.dumps([task]), encoding="utf-8")
    assert read_labels(tmp_path / "empty.json") == {"img 05.png": None}


def test_csv_round_trip_non_ascii_and_spaces(tmp_path):
    sel = Selection(np.array([41, 40, 42, 43, 0]), np.ones(5), np.array([1, 0, 1, -1, 0]))
    export_selection(sel, POOL, tmp_path / "sel.csv")
    # Our export has no label column: these items are "labeled, label unknown".
    back = read_labels(tmp_path / "sel.csv")
    assert back == {POOL[i]: None for i in [41, 40, 42, 43, 0]}
    mask, y, classes, n_missing = labeled_mask(back, POOL)
    assert np.flatnonzero(mask).tolist() == [0, 40, 41, 42, 43] and (y == -1).all()
    assert classes == [] and n_missing == 0

    # An annotator's path,label sheet written by a spreadsheet (BOM, CRLF, quoting).
    truth = {POOL[i]: lab for i, lab in zip([41, 40, 42, 43, 0], ["chat noir", "狗", "a,b", "x", "cat"])}
    with open(tmp_path / "labels.csv", "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["path", "label"])
        w.writerows(truth.items())
    assert read_labels(tmp_path / "labels.csv") == truth
    mask, y, classes, _ = labeled_mask(read_labels(tmp_path / "labels.csv"), POOL)
    assert [classes[y[POOL.index(p)]] for p in truth] == list(truth.values())


def test_csv_without_header_and_columns(tmp_path):
    (tmp_path / "a.csv").write_text("img 00.png,cat\nimg 01.png,\nimg 02.png\n", encoding="utf-8")
    assert read_labels(tmp_path / "a.csv") == {"img 00.png": "cat", "img 01.png": None, "img 02.png": None}
    (tmp_path / "b.csv").write_text("Class,File\n3,img 00.png\n", encoding="utf-8")
    assert read_labels(tmp_path / "b.csv") == {"img 00.png": "3"}
    (tmp_path / "c.tsv").write_text("path\tlabel\nsub dir/a+b&c#d%20.png\tk\n", encoding="utf-8")
    assert read_labels(tmp_path / "c.tsv") == {"sub dir/a+b&c#d%20.png": "k"}
    (tmp_path / "d.csv").write_text("", encoding="utf-8")
    assert read_labels(tmp_path / "d.csv") == {}


def test_txt_jsonl_and_mapping(tmp_path):
    (tmp_path / "l.txt").write_text("# done so far\nimg 00.png\n\n  ./img 01.png  \r\n", encoding="utf-8")
    assert read_labels(tmp_path / "l.txt") == {"img 00.png": None, "img 01.png": None}
    sel = Selection(np.array([2, 41]), np.array([0.3, 0.2]), np.array([0, 1]))
    export_selection(sel, POOL, tmp_path / "s.jsonl")
    assert read_labels(tmp_path / "s.jsonl") == {"img 02.png": None, POOL[41]: None}
    (tmp_path / "l.jsonl").write_text('{"path": "img 03.png", "label": "cat"}\n\n{"path": "img 04.png"}\n',
                                      encoding="utf-8")
    assert read_labels(tmp_path / "l.jsonl") == {"img 03.png": "cat", "img 04.png": None}
    (tmp_path / "m.json").write_text(json.dumps({"img 05.png": "dog", "img 06.png": 3}), encoding="utf-8")
    assert read_labels(tmp_path / "m.json") == {"img 05.png": "dog", "img 06.png": "3"}


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


# ----------------------------------------------------------------------------- paths


def test_path_forms_are_forgiving(tmp_path):
    root = tmp_path / "pool"
    root.mkdir()
    labels = {"./img 00.png": "a", "sub dir\\ünï 猫.png": "b", str(root / "x y" / "z.png"): "c",
              "file://" + (root / "img 03.png").as_posix().replace(" ", "%20"): "d",
              "/elsewhere/img 04.png": "e", "img 05.png": None}
    mask, y, classes, n_missing = labeled_mask(labels, POOL, root=root)
    assert n_missing == 1  # only the absolute path outside the pool
    assert np.flatnonzero(mask).tolist() == [0, 3, 5, 40, 43]
    assert classes == ["a", "b", "c", "d"]
    assert y[5] == -1 and classes[y[43]] == "c"
    # NFD (macOS) names match NFC pool ids.
    import unicodedata
    nfd = unicodedata.normalize("NFD", POOL[40])
    assert nfd != POOL[40]
    assert labeled_mask({nfd: "k"}, POOL)[0][40]
    assert normalize_path("a/../b/./c.png") == "b/c.png"
    assert url_to_path("/data/local-files/?d=a%2Bb%20c.png") == "a+b c.png"
    assert url_to_path("/data/local-files/?d=a+b.png") == "a b.png"  # query '+' is a space
    assert url_to_path("https://host/x/y%20z.png") == "x/y z.png"


def test_labeled_mask_classes_missing_and_conflicts():
    pool = [f"{i}.png" for i in range(12)]
    labels = {"0.png": "10", "1.png": "2", "2.png": "2", "nope.png": "1", "gone/3.png": "3"}
    mask, y, classes, n_missing = labeled_mask(labels, pool)
    assert classes == ["2", "10"]  # numeric order, only classes seen in the pool
    assert y[:3].tolist() == [1, 0, 0] and n_missing == 2 and mask.sum() == 3
    assert y.dtype == np.int64 and mask.dtype == bool and mask.shape == (12,)
    with pytest.raises(ValueError, match="name the same file"):
        labeled_mask({"0.png": "a", "./0.png": "b"}, pool)
    assert labeled_mask({"0.png": "a", "./0.png": "a"}, pool)[0].sum() == 1
    with pytest.raises(ValueError, match="name the same file"):
        labeled_mask({}, ["a.png", "./a.png"])
    # Array-pool ids.
    ids = [f"x[{i}]" for i in range(5)]
    mask, y, classes, n_missing = labeled_mask({"x[3]": "7", "x[9]": "1"}, ids)
    assert mask.tolist() == [False, False, False, True, False] and n_missing == 1


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name,content,match", [
    ("missing.csv", None, "does not exist"),
    ("bad.json", "[{\"data\": ", "not valid JSON"),
    ("bad2.json", "\"just a string\"", "expected a list"),
    ("bad3.json", "[{\"data\": {\"text\": \"hi\"}}]", "no data.image"),
    ("bad4.json", "{\"a.png\": [1, 2]}", "not a label"),
    ("bad.jsonl", "{\"path\": \"a.png\"}\nnot json\n", "line 2 is not JSON"),
    ("bad2.jsonl", "{\"file\": \"a.png\"}\n", "line 1 has no"),
    ("bad.csv", "rank,score\n1,0.5\n", "no path column"),
    ("bad.xml", "<annotations><image id=\"0\"", "not valid XML"),
    ("bad2.xml", "<View/>", "expected CVAT"),
    ("labels.parquet", "x", "unknown suffix"),
])
def test_errors_name_the_file(tmp_path, name, content, match):
    p = tmp_path / name
    if content is not None:
        p.write_text(content, encoding="utf-8")
    with pytest.raises(LabelFileError, match=match) as e:
        read_labels(p)
    msg = str(e.value)
    assert name in msg and "\n" not in msg
    assert isinstance(e.value, ValueError)


def test_non_utf8_file(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("café.png,chat\n".encode("latin-1"))
    with pytest.raises(LabelFileError, match="not UTF-8") as e:
        read_labels(p)
    assert "latin1.csv" in str(e.value)
    with pytest.raises(LabelFileError, match="is a folder"):
        read_labels(tmp_path)
