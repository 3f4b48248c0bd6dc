"""Label Studio's exports read back (selector.formats.label_studio_export): the label only from the labeling
config's control, never from the task data fields that JSON-MIN and CSV exports carry beside it (``group``,
``round``, ``rank``, ``path``...); malformed control values, JSON nested too deeply and labels files (or a
zip's ``annotations.xml``) too large are one-line LabelFileErrors naming the file; one image labeled twice
differently within one file is refused as across files.

The JSON-MIN objects below have the shape Label Studio 1.23 writes (label-studio-sdk's
``Converter.convert_to_json_min``: the task's data fields, ``id``, the control's name -> a class name, or
``{"choices": [...]}`` for several, then ``annotator``, ``annotation_id``, ``created_at``, ``updated_at``,
``lead_time``; an open task with those null; skipped tasks left out); where the SDK is installed the
exports are also made by its own converter.
"""
from __future__ import annotations

import copy
import json
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from selector.strategies.base import Selection

from selector.cli import main
from selector.formats import LabelFileError, common, export_selection, last_round, read_labels
from selector.plan import plan_selection
from tests.formats.conftest import full_export, json_min, stamp

# Images named by their class, as in the report (digit_3/0345.png labeled "3").
IDS = [f"digit_{d}/{i:04d}.png" for d in range(10) for i in range(300, 306)]
TRUTH = {p: p[6] for p in IDS}


def sent_tasks(tmp_path, picks=(3, 17, 25, 40, 8, 51, 33, 12, 59, 0), round_=1):
    """Round ``round_``'s tasks as ``selector select`` writes them (groups far from the classes, e.g. 22),
    with the ids Label Studio gives them."""
    picks = np.array(picks)
    sel = Selection(indices=picks, scores=np.linspace(1, 0.1, len(picks)), groups=(picks * 7) % 25)
    out = tmp_path / f"r{round_}.json"
    export_selection(sel, IDS, out, class_names=sorted(set(TRUTH.values())), round=round_)
    tasks = json.loads(out.read_text(encoding="utf-8"))
    for n, t in enumerate(tasks):
        t["id"] = 100 * round_ + n
    return tasks


def write(path, obj):
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def test_json_min_label_is_the_annotators_choice_never_a_task_field(tmp_path, caplog):
    tasks = sent_tasks(tmp_path)
    paths = [t["data"]["path"] for t in tasks]
    assert {t["data"]["group"] for t in tasks} - {int(c) for c in TRUTH.values()}  # groups are not classes
    done, open_ = paths[:7], paths[7:]
    labels = {p: TRUTH[p] for p in done}
    labels[done[1]] = [TRUTH[done[1]], "9"]  # a multiple choice: {"choices": [...]}
    rows = json_min(tasks, labels, open_)
    assert {"image", "path", "rank", "group", "round", "id", "choice", "annotator", "annotation_id", "created_at",
            "updated_at", "lead_time"} <= set(rows[0])
    f = write(tmp_path / "project-1-at-2026-min.json", rows)
    got = read_labels(f)
    assert got == {**{p: TRUTH[p] for p in done}, **dict.fromkeys(open_)}
    assert got.pending == set(open_) and not got.skipped
    assert "several choices" in caplog.text
    # The next round: its number from the tasks' round, its classes the annotators' (never groups or rounds).
    plan = plan_selection(3, IDS, files=[f])
    assert plan.info["round"] == 2
    assert plan.info["class_names"] == sorted({TRUTH[p] for p in done}, key=int)
    assert plan.labels is not None and plan.n_labeled == 10 and plan.n_pending == 3
    # A control named otherwise: read from it when named, never from the data fields when not.
    for r in rows:
        if "choice" in r:
            r["label_class"] = r.pop("choice")
    write(f, rows)
    assert read_labels(f, from_name="label_class") == got
    caplog.clear()
    assert read_labels(f) == {p: None for p in paths}
    assert "no annotation holds a 'choice' choice" in caplog.text


def test_label_studios_own_converter_json_min_and_csv_read_right(tmp_path):
    """The JSON export, and the JSON-MIN and CSV exports label-studio-sdk's converter makes of it (what
    Label Studio runs), carry the data fields beside the choice: all of them read the annotators' classes."""
    conv = pytest.importorskip("label_studio_sdk.converter")
    tasks = sent_tasks(tmp_path)
    paths = [t["data"]["path"] for t in tasks]
    done, skipped, open_, twice = paths[:5], paths[5:7], paths[7:9], paths[9]
    other = "1" if TRUTH[twice] != "1" else "2"
    every = full_export(tasks, {p: TRUTH[p] for p in done}, skipped, {twice: (other, TRUTH[twice])})
    annotated = [t for t in every if t["annotations"]]  # the exporter's default: only annotated tasks
    config = (tmp_path / "r1.config.xml").read_text(encoding="utf-8")
    c = conv.Converter(config, str(tmp_path), download_resources=False)
    labeled = {p: TRUTH[p] for p in [*done, twice]}  # of two annotations, the later
    ranks = {t["data"]["path"]: t["data"]["rank"] for t in tasks}
    for name, export, listed in (("every", every, [*done, twice, *skipped, *open_]),
                                 ("annotated", annotated, [*done, twice, *skipped])):
        f = write(tmp_path / f"{name}.json", export)
        got = read_labels(f)
        assert got == {**labeled, **dict.fromkeys(p for p in listed if p not in labeled)}
        assert got.skipped == set(skipped) and got.pending == set(listed) & set(open_)
        assert got.rounds == {1: {ranks[p] for p in listed}} and got.round_sizes == {1: 10}
        c.convert_to_json_min(str(f), str(tmp_path / f"{name}-min"), is_dir=False)
        c.convert_to_csv(str(f), str(tmp_path / f"{name}-csv"), is_dir=False, sep=",")
        c.convert_to_csv(str(f), str(tmp_path / f"{name}-tsv"), is_dir=False, sep="\t")
        mini = (tmp_path / f"{name}-min" / "result.json").rename(tmp_path / f"{name}-min.json")
        assert {"group", "round", "rank", "path", "choice"} <= set(json.loads(mini.read_text("utf-8"))[0])
        for g in (mini, (tmp_path / f"{name}-csv" / "result.csv").rename(tmp_path / f"{name}.csv"),
                  (tmp_path / f"{name}-tsv" / "result.csv").rename(tmp_path / f"{name}.tsv")):
            # These exports leave skipped tasks out; open ones are listed with empty annotation fields.
            flat = [p for p in listed if p not in skipped]
            got = read_labels(g)
            assert got == {**labeled, **dict.fromkeys(p for p in flat if p not in labeled)}, g
            assert got.pending == set(flat) & set(open_) and not got.skipped, g
            assert got.rounds == {1: {ranks[p] for p in flat}} and got.round_sizes == {1: 10}, g
            assert read_labels(g, skipped="unseen") == labeled, g


def _task(value, tid=7):
    return [{"id": tid, "data": {"image": "/data/local-files/?d=a.png", "path": "a.png", "group": 22, "round": 1},
             "annotations": [{"id": 1, "was_cancelled": False,
                              "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                                          "value": value}]}]}]


def _min(value, tid=8):
    return [{"image": "/data/local-files/?d=a.png", "path": "a.png", "rank": 1, "group": 22, "round": 1,
             "id": tid, "choice": value, "annotator": 1, "annotation_id": 3, "created_at": stamp(1),
             "updated_at": stamp(1), "lead_time": 1.0}]


@pytest.mark.parametrize("name,obj,match", [
    ("value_list.json", _task(["3"]), r"task 0 \(id 7\): the \"value\" of the \"choice\" result is a list, not an "
                                      r"object"),
    ("value_number.json", _task(5), r"task 0 \(id 7\): the \"value\" .* is the number 5"),
    ("choices_number.json", _task({"choices": 5}), r"task 0 \(id 7\): the \"choices\" of \"choice\" are the "
                                                   r"number 5, not a list"),
    ("min_choices_number.json", _min({"choices": 5}), r"task 0 \(id 8\): the \"choices\" of \"choice\" are the "
                                                      r"number 5, not a list"),
    ("min_choices_object.json", _min({"choices": {"x": 1}}), r"task 0 \(id 8\): the \"choices\" of \"choice\" "
                                                             r"are an object, not a list"),
    ("min_no_choices.json", _min({"x": 1}), r"task 0 \(id 8\): the \"value\" of the \"choice\" result holds no "
                                            r"\"choices\""),
    ("min_choice_object.json", _min({"choices": [{"x": 1}]}), r"a choice of \"choice\" is an object, not a class"),
    ("min_true.json", _min(True), r"task 0 \(id 8\): \"choice\" holds true, not a choice"),
])
def test_malformed_choices_are_one_line_errors(tmp_path, name, obj, match):
    f = write(tmp_path / name, obj)
    with pytest.raises(LabelFileError, match=match) as e:
        read_labels(f)
    assert str(e.value).startswith(f"{f}: ") and "\n" not in str(e.value)


@pytest.mark.parametrize("name,obj,label", [
    ("int.json", _task({"choices": [3]}), "3"),
    ("min_int.json", _min(3), "3"),
    ("min_list.json", _min([{"choices": ["b", "c"]}, "d"]), "b"),  # several results of the control: the first
    ("min_empty.json", _min({"choices": []}), None),
])
def test_meaningful_choice_values_are_read(tmp_path, name, obj, label):
    assert read_labels(write(tmp_path / name, obj)) == {"a.png": label}


def _cli_select(tmp_path, labeled):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "emb.npy", rng.normal(size=(20, 4)).astype(np.float32))
    args = ["select", "--embeddings", tmp_path / "emb.npy", "--normalize", "-b", 3, "-o", tmp_path / "s.csv",
            "--labeled", labeled]
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_error_line(r):
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


def test_json_nested_too_deeply_is_refused(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000, encoding="utf-8")
    for f in (deep, tmp_path / "deep.jsonl"):
        f.write_text("[" * 200_000 + "\n", encoding="utf-8")
        with pytest.raises(LabelFileError, match="nested too deeply") as e:
            read_labels(f)
        assert str(e.value).startswith(f"{f}: ") and "\n" not in str(e.value)
    with pytest.raises(LabelFileError, match="nested too deeply"):
        last_round([deep])
    line = _one_error_line(_cli_select(tmp_path, deep))
    assert "deep.json" in line and "nested too deeply" in line and not (tmp_path / "s.csv").exists()


def zip_bomb(path, size=3 * 2**30):
    """A real zip bomb: a CVAT dataset zip whose ``annotations.xml`` is ``size`` bytes (an XML header, then
    spaces) packed to a few MB. Deflate blocks ended by a full flush do not refer back, so one block of
    16 MiB of spaces, repeated, is a valid stream of any multiple of 16 MiB without compressing it all."""
    head = b'<?xml version="1.0" encoding="utf-8"?>\n<annotations>'
    chunk = b" " * 2**24
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH) == block  # the block repeats as it is
    n = (size - len(head)) // len(chunk)
    data = first + block * n + c.flush()
    crc = zlib.crc32(head)
    for _ in range(n):
        crc = zlib.crc32(chunk, crc)
    usize = len(head) + n * len(chunk)
    name = b"annotations.xml"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), usize, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), usize,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return usize


def test_cvat_zip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    bomb = tmp_path / "cvat_bomb.zip"
    usize = zip_bomb(bomb)
    assert bomb.stat().st_size < 4 * 2**20 and usize >= 3 * 2**30 - 2**24
    with zipfile.ZipFile(bomb) as z:  # a zip any reader opens, declaring its true size
        assert z.getinfo("annotations.xml").file_size == usize
        with z.open("annotations.xml") as member:
            assert member.read(2**20).startswith(b"<?xml") and member.read(2**20) == b" " * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(LabelFileError, match=r"cvat_bomb\.zip: annotations\.xml holds 3\.0 GiB, over the "
                                                 r"512 MiB a labels file may hold; refused"):
            read_labels(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20  # nothing of it was unpacked
    line = _one_error_line(_cli_select(tmp_path, bomb))
    assert "cvat_bomb.zip" in line and "3.0 GiB" in line


def test_labels_files_over_the_size_limit_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "MAX_LABELS_BYTES", 1000)
    big = tmp_path / "big.csv"
    big.write_text("path,label\n" + "".join(f"img_{i:04d}.png,cat\n" for i in range(100)), encoding="utf-8")
    with pytest.raises(LabelFileError, match=r"labels file .*big\.csv holds 1,711 bytes, over the 1,000 "
                                             r"bytes a labels file may hold"):
        read_labels(big)
    small = tmp_path / "small.csv"
    small.write_text("path,label\nimg_0001.png,cat\n", encoding="utf-8")
    assert read_labels(small) == {"img_0001.png": "cat"}
    # A zip whose annotations.xml unpacks past the limit, however small the zip.
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("annotations.xml", "<annotations>" + " " * 5000 + "</annotations>")
    assert z.stat().st_size < 1000
    with pytest.raises(LabelFileError, match=r"a\.zip: annotations\.xml holds 5,027 bytes, over the 1,000"):
        read_labels(z)


@pytest.mark.parametrize("name,text,match", [
    ("twice.csv", "path,label\na.png,cat\nb.png,dog\n./a.png,dog\n",
     r"twice\.csv: 'a\.png' is labeled 'dog' in row 3, but 'cat' in row 1"),
    ("twice.tsv", "a.png\tcat\na.png\tdog\n", r"twice\.tsv: 'a\.png' is labeled 'dog' in row 2, but 'cat' in row 1"),
    ("twice.jsonl", '{"path": "a.png", "label": "cat"}\n{"path": "a.png", "label": "dog"}\n',
     r"twice\.jsonl: 'a\.png' is labeled 'dog' on line 2, but 'cat' on line 1"),
    ("twice.json", '{"a.png": "cat", "./a.png": "dog"}', r"twice\.json: 'a\.png' is labeled 'dog' as key './a\.png'"),
    ("twice.xml", '<annotations><image id="0" name="a.png"><tag label="cat"/></image>'
                  '<image id="1" name="a.png"><tag label="dog"/></image></annotations>',
     r"twice\.xml: 'a\.png' is labeled 'dog' in <image id='1'>, but 'cat' in <image id='0'>"),
])
def test_one_file_labeling_an_image_twice_differently_is_an_error(tmp_path, name, text, match):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    with pytest.raises(LabelFileError, match=match) as e:
        read_labels(f)
    assert "\n" not in str(e.value)


def test_an_image_twice_with_one_label_or_none_is_fine(tmp_path):
    f = tmp_path / "ok.csv"
    f.write_text("path,label\na.png,cat\na.png,cat\nb.png,\nb.png,dog\nc.png,\n", encoding="utf-8")
    assert read_labels(f) == {"a.png": "cat", "b.png": "dog", "c.png": None}


def test_two_tasks_of_one_image_labeled_differently_is_an_error(tmp_path):
    tasks = sent_tasks(tmp_path)
    again = copy.deepcopy(tasks[0])
    again["id"] = 999
    p = tasks[0]["data"]["path"]
    other = "1" if TRUTH[p] != "1" else "2"
    export = full_export([tasks[0]], {p: TRUTH[p]}) + full_export([again], {p: other})
    with pytest.raises(LabelFileError, match=rf"'{p}' is labeled '{other}' in task 1 \(id 999\), but "
                                             rf"'{TRUTH[p]}' in task 0 \(id 100\)"):
        read_labels(write(tmp_path / "e.json", export))
    # Two annotations of one task (two annotators) are not a conflict: the latest is taken.
    rows = json_min([tasks[0]], {p: TRUTH[p]}) + json_min([tasks[0]], {p: other})
    rows[1]["created_at"] = stamp(59)
    assert read_labels(write(tmp_path / "m.json", rows)) == {p: other}
