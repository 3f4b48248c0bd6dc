"""Which files a pool folder lists (selector.pool.listing): sorted order, hidden files, symbolic links and
their loops, links that leave the pool, special files (FIFO, socket) and system folders, unreadable files
and folders. The cases that go through ``selector select`` also check that the pool is left unchanged.

Tests run as root in CI, where ``chmod 000`` does not stop reading: the real permission test is skipped
there and the same failure is simulated in-process (marked ``simulated`` in the name).
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

import selector.pool.workers as workers_mod
from selector.pool import list_image_files, list_pool_files, load_folder
from tests.conftest import (
    IS_ROOT,
    N_POOL,
    cli_cmd,
    error_line,
    png_bytes,
    rows,
    select,
    snapshot,
    subprocess_env,
    write_pool,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_stable_order_and_hidden_files_skipped(tmp_path):
    for name in ["b/2.png", "a/10.png", "a/9.png", "C.png", ".hidden.png", ".cache/x.png", "notes.txt"]:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".png"):
            Image.new("L", (8, 8), 7).save(p)
        else:
            p.write_text("hello")
    assert list_image_files(tmp_path) == ["C.png", "a/10.png", "a/9.png", "b/2.png"]
    assert load_folder(tmp_path).ids == list_image_files(tmp_path)


def test_symlink_loop_terminates(tmp_path):
    (tmp_path / "d").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "d" / "x.png")
    (tmp_path / "d" / "loop").symlink_to(tmp_path, target_is_directory=True)
    files = list_image_files(tmp_path)
    assert files == ["d/x.png"]


def test_symlink_loops(pool, tmp_path, encoder_file, unchanged):
    (pool / "sub").mkdir()
    Image.new("L", (8, 8), 3).save(pool / "sub" / "in_sub.png")
    (pool / "sub" / "back_to_top").symlink_to(pool, target_is_directory=True)  # folder loop
    (pool / "self.png").symlink_to(pool / "self.png")  # a link to itself
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 0, r.output
    assert f"{N_POOL + 1} images in {pool}, 1 unreadable files skipped" in r.output
    assert "self.png" in r.output and "symbolic links" in r.output


def test_links_leaving_the_pool_are_not_followed_by_default(pool, tmp_path, encoder_file):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "far.png").write_bytes(png_bytes())
    os.symlink(outside, pool / "link")
    os.symlink("/", pool / "root")
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 100, "--allow-smaller")
    assert r.exit_code == 0, r.output
    assert (f"WARNING: not reading {pool / 'link'}: a link to {outside}, outside the pool (pass --follow-links to "
            "read it)") in r.output
    assert "link/far.png" not in (tmp_path / "s.csv").read_text()
    (pool / "root").unlink()  # following a link to / would read the whole machine, as asked
    r = select(pool, tmp_path / "t.csv", encoder_file, "-b", 100, "--allow-smaller", "--follow-links")
    assert r.exit_code == 0, r.output
    assert "link/far.png" in (tmp_path / "t.csv").read_text()


def test_follow_links_never_enters_special_file_systems(tmp_path):
    pool = write_pool(tmp_path / "p", 3)
    for name, target in [("proc", "/proc"), ("dev", "/dev"), ("sys", "/sys")]:
        if Path(target).is_dir():
            os.symlink(target, pool / name)
    t = time.monotonic()
    found, skipped, folders = list_pool_files(pool, follow_links=True)
    assert found == ["000.png", "001.png", "002.png"] and skipped == []
    assert {r for r, _ in folders} == {n for n in ("proc", "dev", "sys") if (pool / n).exists()}
    assert all("a system folder (never read)" in why for _, why in folders)
    assert time.monotonic() - t < 30


@pytest.mark.processes
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_fifo_in_pool_is_skipped_not_waited_on(pool, tmp_path, encoder_file):
    """A real FIFO named like an image: a real ``selector select`` finishes (bounded wait) and says why
    the FIFO was skipped."""
    os.mkfifo(pool / "fifo.png")
    out = tmp_path / "s.csv"
    try:  # no --encoder: the pool's channels and size are chosen from its headers, the step that blocked
        r = subprocess.run(cli_cmd("select", "--pool", pool, "--out", out, "-b", 5, "--epochs", 1, "--batch-size", 16,
                                   "--strategy", "random", "--workers", 1),
                           capture_output=True, text=True, timeout=120, env=subprocess_env())
    except subprocess.TimeoutExpired:
        pytest.fail("selector select hung on a FIFO in the pool")
    assert r.returncode == 0, r.stderr
    assert f"WARNING: skipping {pool / 'fifo.png'}: not a regular file (a FIFO)" in r.stderr
    assert out.is_file()


def test_socket_in_pool_is_skipped(tmp_path):
    import socket

    pool = write_pool(tmp_path / "p", 5)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(pool / "sock.png"))
        p = load_folder(pool, workers=0)
    finally:
        s.close()
    assert len(p) == 5
    assert p.skipped == [("sock.png", "not a regular file (a socket)")]


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their mode; see the simulated test")
def test_unreadable_file_and_folder_permissions(pool, tmp_path, encoder_file):
    locked = pool / "000.png"
    locked.chmod(0)
    sub = pool / "private"
    sub.mkdir()
    Image.new("L", (8, 8)).save(sub / "x.png")
    sub.chmod(0)
    try:
        r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3)
        assert r.exit_code == 1 and f"cannot read folder {sub}" in error_line(r)
        sub.chmod(0o755)
        shutil.rmtree(sub)
        before = snapshot(pool)
        r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3)
        assert r.exit_code == 0, r.output
        assert "1 unreadable files skipped" in r.output and "000.png" in r.output and "Permission denied" in r.output
        assert snapshot(pool) == before
    finally:
        locked.chmod(0o644)
        if sub.exists():
            sub.chmod(0o755)


def test_unreadable_file_simulated(pool, tmp_path, encoder_file, monkeypatch, unchanged):
    """As root, a permission error is made to happen where the OS would raise it: reading the file
    (the decoding worker is forked after the patch, so it sees it)."""
    unchanged(pool)
    real = workers_mod.decode_file

    def denied(path, *a, **k):
        if path.name == "005.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(workers_mod, "decode_file", denied)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL - 1)
    assert r.exit_code == 0, r.output
    assert f"{N_POOL - 1} images in {pool}, 1 unreadable files skipped" in r.output
    assert "WARNING: skipping" in r.output and "005.png: PermissionError" in r.output
    assert "005.png" not in {x["path"] for x in rows(tmp_path / "s.csv")}
    r = select(pool, tmp_path / "t.csv", encoder_file, "-b", 3, "--on-bad-image", "fail")
    assert r.exit_code == 1 and error_line(r).startswith(
        f"Error: cannot read image {pool / '005.png'}: PermissionError")
