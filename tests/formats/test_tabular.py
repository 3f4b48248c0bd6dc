"""The tabular formats (selector.formats.tabular): CSV, JSON Lines and plain path lists written in rank
order with awkward names, and labels read back from CSV / TSV (with or without a header, from
spreadsheets), text and JSON Lines lists, and ``{path: label}`` JSON."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from selector.strategies.base import Selection

from selector.formats import ExportError, export_selection, read_labels
from selector.plan import labeled_mask
from tests.formats.conftest import POOL, make_selection


def test_csv_schema_and_quoting(named_pool, tmp_path):
    root, paths = named_pool
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


def test_jsonl_schema(named_pool, tmp_path):
    root, paths = named_pool
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


def test_paths_txt(named_pool, tmp_path):
    root, paths = named_pool
    out = tmp_path / "sel.txt"
    export_selection(make_selection(), paths, out)
    assert out.read_text(encoding="utf-8").splitlines() == [paths[i] for i in [4, 1, 3, 0, 5]]
    sel = Selection(np.array([0]), np.zeros(1), np.zeros(1, dtype=np.int64))
    with pytest.raises(ExportError, match="control character"):
        export_selection(sel, ["bad\nname.png"], tmp_path / "x.txt")


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
