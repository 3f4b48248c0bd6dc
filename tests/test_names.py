"""File names (selector.names) from the pool to every writer: names with spaces and non-ASCII characters work
end to end; a name that is not valid UTF-8 or holds a control character is skipped at read time with an
escaped warning, never reaches a writer, and ids given through the API are checked by the writers.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import N_POOL, error_line, png_bytes, rows, run, select

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_display_name_escapes_only_what_a_terminal_would_act_on():
    from selector.names import display_name, name_problem

    assert display_name("plain é.png") == "plain é.png"
    assert display_name("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert display_name("x\udcffy") == "x\\xffy"
    assert name_problem("ok é.png") is None
    assert name_problem("a\tb.png") == "the file name holds a control character"
    assert name_problem("x\udcff.png") == "the file name is not valid UTF-8"


def test_names_with_spaces_and_non_ascii(pool, tmp_path, encoder_file, unchanged):
    names = ["a b c.png", "é accent.png", "日本語/写真 1.png", "emoji 😀.jpg", "comma, quote\".png"]
    for i, name in enumerate(names):
        p = pool / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (10, 10), (20 * i, 5, 90)).save(p)
    unchanged(pool)
    n = N_POOL + len(names)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", n)  # budget equal to the pool: all of it
    assert r.exit_code == 0, r.output
    chosen = {x["path"] for x in rows(tmp_path / "s.csv")}
    assert set(names) <= chosen and len(chosen) == n
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("".join(x + "\n" for x in names[:3]), encoding="utf-8")
    r = select(pool, tmp_path / "t.csv", encoder_file, "-b", n - 3, "--labeled", labeled)
    assert r.exit_code == 0, r.output
    assert "3 images already labeled excluded" in r.output
    assert not set(names[:3]) & {x["path"] for x in rows(tmp_path / "t.csv")}


def _add_named(pool: Path, raw_name: bytes) -> None:
    with open(os.path.join(os.fsencode(pool), raw_name), "wb") as f:
        f.write(png_bytes(200))


@pytest.mark.parametrize("raw, shown", [(b"bad\xff.png", "bad\\xff.png"), (b"ctl\x01.png", "ctl\\x01.png"),
                                        (b"esc\x1b[31m.png", "esc\\x1b[31m.png"), (b"nl\nname.png", "nl\\nname.png"),
                                        (b"cr\rname.png", "cr\\rname.png")])
def test_unusable_file_names_are_skipped_with_an_escaped_warning(pool, tmp_path, encoder_file, raw, shown):
    """The policy: a name that is not valid UTF-8 or holds a control character is skipped at read
    time; the warning shows it escaped, so nothing raw reaches the terminal or any writer."""
    _add_named(pool, raw)
    for suffix in (".csv", ".jsonl", ".json", ".xml", ".txt"):
        out = tmp_path / f"s{suffix}"
        r = select(pool, out, encoder_file, "-b", 100, "--allow-smaller", "--cache-dir", tmp_path / "c")
        assert r.exit_code == 0, r.output
        assert f"{shown}: the file name " in r.output
        assert os.fsdecode(raw) not in r.output and "\x1b" not in r.output and "\x01" not in r.output
        text = out.read_text(encoding="utf-8")
        assert "name.png" not in text and "bad" not in text and "ctl" not in text and "esc" not in text
        if suffix == ".xml":
            assert len(ET.parse(out).getroot().findall("image")) == N_POOL  # well-formed, every usable image
        out.unlink()
        for side in tmp_path.glob("s.*"):
            side.unlink()


def test_embed_writes_ids_for_every_row_and_select_reads_them(pool, tmp_path, encoder_file):
    """Odd names in the pool, then ``embed`` and ``select --embeddings --ids``: every row has its id."""
    _add_named(pool, b"bad\xff.png")
    _add_named(pool, b"two\nlines.png")
    r = run("embed", "--pool", pool, "--encoder", encoder_file, "--out", tmp_path / "e.npy", "--workers", 1)
    assert r.exit_code == 0, r.output
    emb = np.load(tmp_path / "e.npy")
    ids = (tmp_path / "e.ids.txt").read_text(encoding="utf-8").splitlines()
    assert emb.shape[0] == len(ids) == N_POOL
    r = run("select", "--embeddings", tmp_path / "e.npy", "--ids", tmp_path / "e.ids.txt", "-b", 5,
            "--out", tmp_path / "s.csv", "--strategy", "random")
    assert r.exit_code == 0, r.output


def test_crlf_name_is_not_chosen_again_next_round(pool, tmp_path, encoder_file):
    _add_named(pool, b"cr\r\nlf.png")
    r1 = select(pool, tmp_path / "r1.csv", encoder_file, "-b", 100, "--allow-smaller", "--cache-dir", tmp_path / "c")
    assert r1.exit_code == 0, r1.output
    r2 = select(pool, tmp_path / "r2.csv", encoder_file, "-b", 1, "--labeled", tmp_path / "r1.csv",
                "--cache-dir", tmp_path / "c")
    assert r2.exit_code == 1
    assert "already labeled" in error_line(r2)


@pytest.mark.parametrize("bad, shown", [("a\x01.png", "a\\x01.png"), ("b\udcff.png", "b\\xff.png"),
                                        ("c\n.png", "c\\n.png")])
@pytest.mark.parametrize("suffix", [".xml", ".json", ".csv", ".jsonl", ".txt"])
def test_exports_refuse_unusable_ids_from_the_api(tmp_path, bad, shown, suffix):
    """Ids given through the API are checked by the writers, with the id escaped in the message."""
    from selector.strategies.base import Selection

    from selector.formats import ExportError, export_selection

    sel = Selection(indices=np.array([0, 1]), scores=np.array([1.0, 0.5]), groups=np.array([0, 1]))
    with pytest.raises(ExportError) as e:
        export_selection(sel, ["ok.png", bad], tmp_path / f"s{suffix}", sizes=(8, 8))
    assert shown in str(e.value) and bad not in str(e.value)
    assert list(tmp_path.iterdir()) == []
