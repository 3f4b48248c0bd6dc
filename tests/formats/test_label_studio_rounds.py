"""Three labeling rounds through ``selector select`` against Label Studio's formats.

Every prediction is checked with label-studio-sdk's own ``LabelInterface.validate_prediction``;
across rounds no image is sent twice; skipped and open tasks are handled as documented
(``--skipped seen``: never chosen again); labels read back exactly as annotated.
"""
from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from click.testing import CliRunner

from selector.cli import main
from selector.formats import LabelFileError, last_round, read_label_files, read_labels
from tests.formats.conftest import json_min

pytest.importorskip("label_studio_sdk")
from label_studio_sdk.label_interface import LabelInterface  # noqa: E402

CLASSES = ["cat", "dog", "bird"]


@pytest.fixture
def emb_pool(tmp_path):
    """Embeddings of 120 items in three separated blobs (the class is the blob), ids with a space."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    centers = rng.normal(size=(3, 16)) * 4
    e = (centers[y] + rng.normal(size=(120, 16))).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ids = [f"img {i:03d}.png" for i in range(120)]
    np.save(tmp_path / "emb.npy", e)
    (tmp_path / "ids.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
    (tmp_path / "pool").mkdir()
    truth = {i: CLASSES[c] for i, c in zip(ids, y)}
    return tmp_path, truth


def select(tmp, out, *extra, output=False):
    """``selector select`` of 10; the tasks written (and the command's output, with ``output``)."""
    args = ["select", "--embeddings", tmp / "emb.npy", "--ids", tmp / "ids.txt", "--image-root", tmp / "pool",
            "-b", 10, "-o", tmp / out, "-s", "balanced", *extra]
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    tasks = json.loads((tmp / out).read_text(encoding="utf-8"))
    return (tasks, r.output) if output else tasks


def config_choices(path):
    return [c.get("value") for c in ET.parse(path).iter("Choice")]


def validate(tasks, config_file):
    li = LabelInterface(config_file.read_text(encoding="utf-8"))
    li.validate()
    for t in tasks:
        for pred in t["predictions"]:
            assert li.validate_prediction(pred, return_errors=True) == []
            assert 0 < pred["score"] <= 1


def label_studio_export(tasks, truth, done, cancelled, first_id):
    """Label Studio's JSON export of imported ``tasks``: ``done`` annotated with the truth,
    ``cancelled`` skipped (a cancelled annotation), the rest open (no annotation)."""
    out = []
    for n, task in enumerate(copy.deepcopy(tasks)):
        t_id = first_id + n
        task.update(id=t_id, project=1)
        path = task["data"]["path"]
        if path in done:
            task["annotations"] = [{"id": 10_000 + t_id, "was_cancelled": False, "task": t_id,
                                    "result": [{"id": f"r{t_id}", "from_name": "choice", "to_name": "image",
                                                "type": "choices", "origin": "manual",
                                                "value": {"choices": [truth[path]]}}]}]
        elif path in cancelled:
            task["annotations"] = [{"id": 10_000 + t_id, "was_cancelled": True, "task": t_id, "result": []}]
        else:
            task["annotations"] = []
        task["predictions"] = [p["model_version"] for p in task["predictions"]]  # exported as references
        out.append(task)
    return out


def test_three_rounds_valid_predictions_no_duplicates(emb_pool):
    tmp, truth = emb_pool
    # Round 1: classes given; every prediction valid; round 1.
    r1 = select(tmp, "r1.json", "--class-names", ",".join(CLASSES))
    validate(r1, tmp / "r1.config.xml")
    assert {t["data"]["round"] for t in r1} == {1}
    p1 = [t["data"]["path"] for t in r1]
    # Annotators: 6 labeled, 2 skipped, 2 still open; the team exports the whole project.
    done1, skip1 = set(p1[:6]), set(p1[6:8])
    (tmp / "export1.json").write_text(json.dumps(label_studio_export(r1, truth, done1, skip1, 1)), encoding="utf-8")

    # Round 2: the export only; the round number follows it, the config offers the classes labeled so far.
    r2 = select(tmp, "r2.json", "--labeled", tmp / "export1.json")
    classes2 = sorted({truth[p] for p in done1})
    validate(r2, tmp / "r2.config.xml")
    assert [c.get("value") for c in ET.parse(tmp / "r2.config.xml").iter("Choice")] == classes2
    assert {t["data"]["round"] for t in r2} == {2}
    p2 = [t["data"]["path"] for t in r2]
    assert not set(p2) & set(p1)  # neither the labeled, the skipped nor the open tasks come again
    # Round 2 annotators label 4; the team exports "only annotated tasks" of round 2 this time.
    done2 = set(p2[:4])
    export2 = [t for t in label_studio_export(r2, truth, done2, set(), 11) if t["annotations"]]
    (tmp / "export2.json").write_text(json.dumps(export2), encoding="utf-8")

    # Round 3: both exports (--labeled twice: their union) and round 2's tasks as sent out (--exclude).
    r3 = select(tmp, "r3.json", "--labeled", tmp / "export1.json", "--labeled", tmp / "export2.json",
                "--exclude", tmp / "r2.json", "--class-names", ",".join(CLASSES))
    validate(r3, tmp / "r3.config.xml")
    assert {t["data"]["round"] for t in r3} == {3}
    p3 = [t["data"]["path"] for t in r3]
    sent = p1 + p2 + p3
    assert len(sent) == len(set(sent)) == 30  # zero images sent twice across three rounds

    # Labels read back exactly: annotated -> the annotator's class; skipped/open -> taken, no label.
    read = read_label_files([tmp / "export1.json", tmp / "export2.json"], [tmp / "r2.json"])
    assert {p: lab for p, lab in read.items() if lab is not None} == {p: truth[p] for p in done1 | done2}
    assert {p for p, lab in read.items() if lab is None} == (set(p1) | set(p2)) - done1 - done2
    assert last_round([tmp / "export1.json", tmp / "r2.json"]) == 2
    # --skipped unseen: skipped and open round-1 tasks may be chosen again.
    assert set(read_labels(tmp / "export1.json", skipped="unseen")) == done1


def test_without_exclude_open_tasks_of_an_annotated_only_export_come_back(emb_pool):
    """Why --exclude exists: an "only annotated tasks" export does not list the open tasks."""
    tmp, truth = emb_pool
    r1 = select(tmp, "r1.json", "--class-names", ",".join(CLASSES))
    p1 = [t["data"]["path"] for t in r1]
    export = [t for t in label_studio_export(r1, truth, set(p1[:3]), set(), 1) if t["annotations"]]
    (tmp / "e.json").write_text(json.dumps(export), encoding="utf-8")
    with_ex = select(tmp, "a.json", "--labeled", tmp / "e.json", "--exclude", tmp / "r1.json")
    assert not {t["data"]["path"] for t in with_ex} & set(p1)


def test_labeled_files_that_disagree_are_one_line_error(emb_pool):
    tmp, _ = emb_pool
    (tmp / "a.csv").write_text("path,label\nimg 001.png,cat\nimg 002.png,dog\n", encoding="utf-8")
    (tmp / "b.csv").write_text("path,label\nimg 002.png,dog\nimg 001.png,bird\n", encoding="utf-8")
    with pytest.raises(LabelFileError, match=r"b\.csv: 'img 001\.png' is labeled 'bird', but 'cat' in .*a\.csv"):
        read_label_files([tmp / "a.csv", tmp / "b.csv"])
    args = ["select", "--embeddings", tmp / "emb.npy", "--ids", tmp / "ids.txt", "-b", 5, "-o", tmp / "s.csv",
            "--labeled", tmp / "a.csv", "--labeled", tmp / "b.csv"]
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 1 and not (tmp / "s.csv").exists()
    assert len(r.output.strip().splitlines()) == 1 and "b.csv" in r.output and "img 001.png" in r.output
    # the same label twice, and a label plus a bare listing, are fine
    (tmp / "c.txt").write_text("img 001.png\nimg 050.png\n", encoding="utf-8")
    assert read_label_files([tmp / "a.csv", tmp / "c.txt"], [tmp / "a.csv"]) == {
        "img 001.png": "cat", "img 002.png": "dog", "img 050.png": None}


def test_no_predictions_and_predict_groups_flags(emb_pool):
    tmp, _ = emb_pool
    r = select(tmp, "n.json", "--no-predictions", "--class-names", "cat,dog", "--round", 7)
    assert all("predictions" not in t for t in r) and {t["data"]["round"] for t in r} == {7}
    g = select(tmp, "g.json", "--predict-groups", "--class-names", "cat,dog")
    validate(g, tmp / "g.config.xml")
    assert all(t["predictions"][0]["result"][0]["value"]["choices"] == [f"group-{t['data']['group']}"] for t in g
               if t["data"]["group"] >= 0)
    bad = CliRunner().invoke(main, ["select", "--embeddings", str(tmp / "emb.npy"), "-b", "3", "-o",
                                    str(tmp / "x.json"), "--class-names", "cat,,dog"])
    assert bad.exit_code == 2 and "--class-names" in bad.output


def test_a_json_min_export_gives_the_next_round_the_annotators_classes(emb_pool):
    """The JSON-MIN export carries each task's group, round and rank beside the annotator's choice: round
    2 reads the choice, offers the classes labeled (never group numbers) and says that it knows no other;
    the open tasks the export lists and the skipped ones it leaves out are told apart."""
    tmp, truth = emb_pool
    r1 = select(tmp, "r1.json")  # no --class-names: no labeling config for round 1
    for n, t in enumerate(r1):
        t["id"] = n + 1
    p1 = [t["data"]["path"] for t in r1]
    labeled = {p: truth[p] for p in p1[:6]}
    (tmp / "min.json").write_text(json.dumps(json_min(r1, labeled, open_=p1[8:])), encoding="utf-8")
    r2, out = select(tmp, "r2.json", "--labeled", tmp / "min.json", output=True)
    assert config_choices(tmp / "r2.config.xml") == sorted(set(labeled.values()))
    assert "offers only the" in out and "classes labeled so far" in out
    assert "list only 8 of the 10 tasks of round 1" in out  # the 2 skipped ones are not in a JSON-MIN export
    assert "8 images excluded: 6 labeled, 0 skipped by annotators, 2 sent out and not annotated yet" in out
    assert {t["data"]["round"] for t in r2} == {2} and not {t["data"]["path"] for t in r2} & set(p1[:6] + p1[8:])


def test_the_last_rounds_labeling_config_carries_every_class_forward(emb_pool):
    tmp, truth = emb_pool
    r1 = select(tmp, "r1.json", "--class-names", ",".join(CLASSES))
    for n, t in enumerate(r1):
        t["id"] = n + 1
    p1 = [t["data"]["path"] for t in r1]
    first = next(p for p in p1 if truth[p] != truth[p1[0]])
    labeled = {p1[0]: truth[p1[0]], first: truth[first]}  # two of the three classes labeled so far
    (tmp / "min.json").write_text(json.dumps(json_min(r1, labeled)), encoding="utf-8")
    r2, out = select(tmp, "r2.json", "--labeled", tmp / "min.json", "--exclude", tmp / "r1.json", output=True)
    validate(r2, tmp / "r2.config.xml")
    assert config_choices(tmp / "r2.config.xml") == CLASSES
    assert "WARNING" not in out
    assert "10 images excluded: 2 labeled, 0 skipped by annotators, 8 sent out and not annotated yet" in out
