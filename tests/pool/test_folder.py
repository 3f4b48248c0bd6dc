"""Reading a pool folder (selector.pool.folder, ``load_folder`` / ``load_pool``): content digests and the
pool key, bad files skipped or failing, and a pool path that is missing, a file, empty, without images or
without one decodable image: one line naming the path, from the API and from ``selector select``.
"""
from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from selector.pool import PoolError, load_folder, load_pool
from tests.conftest import error_line, select


def test_digest_is_file_content_hash(tmp_path):
    Image.new("RGB", (10, 10), (1, 2, 3)).save(tmp_path / "x.png")
    pool = load_folder(tmp_path)
    assert pool.digests[0] == hashlib.blake2b((tmp_path / "x.png").read_bytes(), digest_size=16).hexdigest()
    key = pool.key
    Image.new("RGB", (10, 10), (9, 9, 9)).save(tmp_path / "x.png")
    assert load_folder(tmp_path).key != key


def test_bad_files_skipped_or_fail(tmp_path):
    Image.new("L", (8, 8), 100).save(tmp_path / "ok.png")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    good = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])
    pool = load_folder(tmp_path)
    assert pool.ids == ["ok.png"]
    assert sorted(p for p, _ in pool.skipped) == ["empty.png", "text.jpg", "trunc.png"]
    with pytest.raises(PoolError, match="empty.png"):
        load_folder(tmp_path, on_bad="fail")


def test_pool_errors_name_the_path(tmp_path):
    with pytest.raises(PoolError, match="does not exist"):
        load_pool(tmp_path / "missing")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(PoolError, match="not a folder"):
        load_folder(tmp_path / "f.txt")
    with pytest.raises(PoolError, match="no image files"):
        load_folder(tmp_path)


def test_pool_missing(tmp_path, encoder_file):
    r = select(tmp_path / "nope", tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 1 and error_line(r) == f"Error: pool {tmp_path / 'nope'} does not exist"


def test_pool_is_a_file(tmp_path, encoder_file, unchanged):
    f = tmp_path / "pool.jpg"
    Image.new("L", (8, 8)).save(f, "JPEG")
    unchanged(tmp_path)
    r = select(f, tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 1 and error_line(r) == f"Error: pool {f} is not a folder"


def test_pool_empty(tmp_path, encoder_file, unchanged):
    (tmp_path / "empty").mkdir()
    unchanged(tmp_path / "empty")
    r = select(tmp_path / "empty", tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 1
    assert f"no image files in pool folder {tmp_path / 'empty'} (the folder is empty" in error_line(r)


def test_pool_without_images(tmp_path, encoder_file, unchanged):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "notes.txt").write_text("hi")
    (d / "table.csv").write_text("a,b")
    unchanged(d)
    r = select(d, tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 1 and "no image files in pool folder" in error_line(r) and "2 other files" in r.output


def test_pool_where_nothing_decodes(tmp_path, encoder_file, unchanged):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "a.jpg").write_text("text")
    (d / "b.png").write_bytes(b"")
    unchanged(d)
    r = select(d, tmp_path / "s.csv", encoder_file, "-b", 1)
    assert r.exit_code == 1 and "none of the 2 image files" in error_line(r) and "a.jpg" in error_line(r)
