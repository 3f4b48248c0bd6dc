"""The export and read entry points (selector.formats): the format chosen from the suffix or ``fmt``, every
file an export writes listed before it runs, array ids, writes that fail half-way leave nothing behind,
and ``read_labels`` errors that name the file in one line.
"""
from __future__ import annotations

import contextlib
import json
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from selector.strategies.base import Selection

from selector.atomic import WriteError
from selector.formats import (
    FORMATS,
    ExportError,
    LabelFileError,
    cvat,
    export_selection,
    format_for,
    label_studio,
    read_labels,
    tabular,
)
from tests.formats.conftest import NAMES, make_selection


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


def test_output_paths_lists_every_file_an_export_writes(tmp_path):
    from selector.strategies.base import Selection

    from selector.formats import export_selection, output_paths

    sel = Selection(indices=np.array([1, 0]), scores=np.array([1.0, 0.5]), groups=np.array([0, 1]))
    paths = ["a.png", "b.png"]
    cases = [("s.csv", {}, []), ("s.jsonl", {}, []), ("s.txt", {}, []),
             ("t.json", {"class_names": ["cat", "dog"]}, [".config.xml"]),
             ("t2.json", {"write_config": False}, []),
             ("c.xml", {"sizes": (8, 8)}, [".manifest.jsonl", ".labels.json"]),
             ("c2.xml", {"sizes": (8, 8), "manifest": False}, [".labels.json"])]
    for name, kw, sides in cases:
        out = tmp_path / name
        listed = output_paths(out, **kw)
        written = export_selection(sel, paths, out, **kw)
        assert listed == [out] + [out.with_name(out.stem + s) for s in sides], name
        assert sorted(listed) == sorted(written), name
    # a config the run may write is listed even when it turns out empty (no class names): never overwritten
    out = tmp_path / "t3.json"
    assert output_paths(out) == [out, tmp_path / "t3.config.xml"]
    assert export_selection(sel, paths, out) == [out]
    # the API refuses to overwrite when asked to, naming the side file, before writing anything
    (tmp_path / "u.config.xml").write_text("mine")
    with pytest.raises(ValueError, match="u.config.xml exists"):
        export_selection(sel, paths, tmp_path / "u.json", force=False)
    assert not (tmp_path / "u.json").exists()


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
def test_failed_write_leaves_no_file(named_pool, tmp_path, failing_disk, suffix):
    root, paths = named_pool
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(WriteError, match=r"cannot write .*: No space left on device \(nothing was written\)") as e:
        export_selection(make_selection(), paths, out_dir / f"sel{suffix}", root=root)
    assert isinstance(e.value.__cause__, DiskFull)
    assert list(out_dir.iterdir()) == []  # no output, no temp file


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".xml", ".txt"])
def test_failed_write_keeps_existing_file(named_pool, tmp_path, failing_disk, suffix):
    root, paths = named_pool
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


@pytest.mark.parametrize("name,content,match", [
    ("missing.csv", None, "does not exist"),
    ("bad.json", "[{\"data\": ", "not valid JSON"),
    ("bad2.json", "\"just a string\"", "expected a list"),
    ("bad3.json", "[{\"data\": {\"text\": \"hi\"}}]", "task 0 has no image"),
    ("bad4.json", "{\"a.png\": [1, 2]}", "not a label"),
    ("bad.jsonl", "{\"path\": \"a.png\"}\nnot json\n", "line 2 is not valid JSON"),
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
