"""Label Studio (selector.formats.label_studio): tasks, predictions and the labeling config against Label
Studio's documented import schema and its SDK's validator, URLs its local-files view serves, and
annotators' labels read back from its JSON and JSON-MIN exports.

Schema from the Label Studio docs:
  https://labelstud.io/guide/tasks#Basic-Label-Studio-JSON-format  (a JSON list of tasks;
    "data" holds the key the Image tag's value="$image" names; optional "annotations",
    "predictions"; extra "data" keys allowed)
  https://labelstud.io/guide/predictions  (prediction = {"model_version": str,
    "score": float, "result": [{"id", "from_name", "to_name", "type", "value"}]}; "You must
    use different IDs for each task elements, annotations, predictions and their result
    items"; choices value = {"choices": [str]})
  https://labelstud.io/guide/task_format  (result.from_name = control tag name,
    result.to_name = object tag name)
  https://labelstud.io/guide/storage#Local-storage  ("/data/local-files/?d=dataset1/1.jpg",
    relative to LOCAL_FILES_DOCUMENT_ROOT); the server reads d with request.GET.get('d'),
    normalises it with posixpath.normpath(d).lstrip('/') and safe_joins it onto the document
    root (label_studio/io_storages/localfiles/views.py).
"""
from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from selector.strategies import get_strategy
from selector.strategies.base import Selection

from selector.formats import ExportError, export_selection, label_studio, read_labels
from selector.formats.label_studio import image_url
from selector.plan import labeled_mask
from tests.formats.conftest import POOL, make_selection, served_file


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


def test_label_studio_tasks_schema(named_pool, tmp_path):
    root, paths = named_pool
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


def test_label_studio_predictions_valid_under_the_sdk(named_pool, tmp_path):
    """Strategy scores above 1 (a k-center radius) and groups as predictions: every prediction
    passes the SDK's validator, and group names reach the classes only when asked."""
    root, paths = named_pool
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


def test_label_studio_document_root_and_prefixes(named_pool, tmp_path):
    root, paths = named_pool
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
    # from_name picks one control out of several; by default the control named "choice" (selector's).
    task = {"data": {"image": "/data/local-files/?d=img%2005.png"},
            "annotations": [{"result": [
                {"from_name": "quality", "to_name": "image", "type": "choices",
                 "value": {"choices": ["blurry"]}},
                {"from_name": "choice", "to_name": "image", "type": "choices",
                 "value": {"choices": ["cat"]}}]}]}
    (tmp_path / "two.json").write_text(json.dumps([task]), encoding="utf-8")
    assert read_labels(tmp_path / "two.json", from_name="choice") == {"img 05.png": "cat"}
    assert read_labels(tmp_path / "two.json", from_name="quality") == {"img 05.png": "blurry"}
    assert read_labels(tmp_path / "two.json") == {"img 05.png": "cat"}
    # A submitted annotation without a choice: labeled, label unknown.
    task["annotations"] = [{"result": []}]
    (tmp_path / "empty.json").write_text(json.dumps([task]), encoding="utf-8")
    assert read_labels(tmp_path / "empty.json") == {"img 05.png": None}
