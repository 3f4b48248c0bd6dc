"""Every file a command writes (``--out`` and the side files of an export, ``embed``'s ids file, cache
entries): an existing file needs ``--force``, a bad output is refused before any work, a folder that is not
writable or a full disk gives one line and leaves no half-written file, and a file another run wrote
meanwhile is not overwritten.

Tests run as root in CI, where ``chmod 000`` does not stop writing: the real permission test is skipped
there and the same failure is simulated in-process (marked ``simulated`` in the name).
"""
from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path

import pytest

import selector.atomic as atomic_mod
from tests.conftest import IS_LINUX_PROC, IS_ROOT, error_line, rows, run, select, user_cache

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_output_exists_without_force(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    out = tmp_path / "s.csv"
    out.write_text("earlier selection\n")
    r = select(pool, out, encoder_file, "-b", 3)
    assert r.exit_code == 1 and error_line(r) == f"Error: output {out} exists; pass --force to overwrite it"
    assert out.read_text() == "earlier selection\n"
    r = select(pool, out, encoder_file, "-b", 3, "--force")
    assert r.exit_code == 0 and len(rows(out)) == 3


@pytest.mark.parametrize("case", ["folder", "suffix", "no-parent"])
def test_output_refused_before_any_work(pool, tmp_path, encoder_file, unchanged, case):
    unchanged(pool)
    out = {"folder": tmp_path, "suffix": tmp_path / "s.pdf", "no-parent": tmp_path / "missing" / "s.csv"}[case]
    msg = {"folder": f"output {tmp_path} is a folder", "suffix": "cannot tell the export format",
           "no-parent": f"output folder {tmp_path / 'missing'} does not exist"}[case]
    r = select(pool, out, encoder_file, "-b", 3)
    assert r.exit_code == 1 and msg in error_line(r)
    assert not user_cache().exists()


@pytest.mark.parametrize("out_name, side", [("tasks.json", "tasks.config.xml"), ("x.xml", "x.manifest.jsonl"),
                                            ("x.xml", "x.labels.json")])
def test_side_files_obey_force(pool, tmp_path, encoder_file, out_name, side):
    d = tmp_path / "out"
    d.mkdir()
    (d / side).write_text("mine\n")
    cache = tmp_path / "cache"
    r = select(pool, d / out_name, encoder_file, "-b", 3, "--cache-dir", cache)
    assert r.exit_code == 1
    assert error_line(r) == f"Error: output {d / side} exists; pass --force to overwrite it"
    assert (d / side).read_text() == "mine\n"
    assert sorted(p.name for p in d.iterdir()) == [side]
    assert not cache.exists()  # refused before any work
    r = select(pool, d / out_name, encoder_file, "-b", 3, "--cache-dir", cache, "--force", "--class-names", "a,b")
    assert r.exit_code == 0, r.output
    assert (d / side).read_text() != "mine\n"


def test_embed_ids_file_obeys_force(pool, tmp_path, encoder_file):
    (tmp_path / "e.ids.txt").write_text("mine\n")
    r = run("embed", "--pool", pool, "--encoder", encoder_file, "--out", tmp_path / "e.npy", "--workers", 1)
    assert r.exit_code == 1
    assert error_line(r) == f"Error: output {tmp_path / 'e.ids.txt'} exists; pass --force to overwrite it"
    assert not (tmp_path / "e.npy").exists()


@pytest.mark.skipif(IS_ROOT, reason="root may write anywhere; see the simulated test")
def test_output_folder_not_writable(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        r = select(pool, d / "s.csv", encoder_file, "-b", 3)
        assert r.exit_code == 1 and f"output folder {d} is not writable: Permission denied" in error_line(r)
    finally:
        d.chmod(0o755)


def test_output_folder_not_writable_simulated(pool, tmp_path, encoder_file, unchanged, monkeypatch):
    """The OS refuses to create any file in the output folder (as it would for a non-root user)."""
    unchanged(pool)
    d = tmp_path / "ro"
    d.mkdir()
    real = tempfile.mkstemp

    def refuse(*a, dir=None, **k):
        if dir is not None and Path(dir) == d:
            raise PermissionError(errno.EACCES, "Permission denied", str(d))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    r = select(pool, d / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 1 and error_line(r) == f"Error: output folder {d} is not writable: Permission denied"
    assert list(d.iterdir()) == []


@pytest.mark.parametrize("suffix", [".csv", ".json"])
@pytest.mark.parametrize("existing", [False, True])
def test_disk_full_while_writing_leaves_no_half_file(pool, tmp_path, encoder_file, unchanged, monkeypatch, suffix,
                                                    existing):
    """Simulated disk full: the data reaches the temporary file, then the OS reports ENOSPC when it is
    flushed to disk (fsync), for files in the output folder only (caches elsewhere still work)."""
    unchanged(pool)
    d = tmp_path / "out"
    d.mkdir()
    out = d / f"s{suffix}"
    if existing:
        out.write_text("earlier selection\n")
    real = os.fsync

    def full(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).parent == d:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file an fd is")
    monkeypatch.setattr(os, "fsync", full)
    r = select(pool, out, encoder_file, "-b", 5, "--cache-dir", tmp_path / "cache", *(["--force"] if existing else []))
    assert r.exit_code == 1
    assert error_line(r) == f"Error: cannot write {out}: No space left on device (nothing was written)"
    assert sorted(p.name for p in d.iterdir()) == ([out.name] if existing else [])  # no temp file left
    if existing:
        assert out.read_text() == "earlier selection\n"


def _disk_full_under(monkeypatch, folder: Path, after_bytes: int = 0):
    """Files created by atomic_write under ``folder`` fail with ENOSPC once ``after_bytes`` are written."""
    real = os.fdopen

    class Full(io.RawIOBase):
        def __init__(self, f):
            self.f, self.n = f, 0

        def writable(self):
            return True

        def write(self, b):
            self.n += len(b)
            if self.n > after_bytes:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def fileno(self):
            return self.f.fileno()

        def flush(self):
            self.f.flush()

        def close(self):
            if not self.closed:
                super().close()
                self.f.close()

    def fdopen(fd, mode="r", *a, **k):
        f = real(fd, mode, *a, **k)
        try:
            where = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return f
        if folder in where.parents and "b" in mode:
            return Full(f)
        return f

    monkeypatch.setattr(atomic_mod.os, "fdopen", fdopen)


@pytest.mark.trains
@pytest.mark.skipif(not IS_LINUX_PROC, reason="needs /proc to tell which file an fd is")
def test_disk_full_while_writing_the_encoder_checkpoint(pool, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    _disk_full_under(monkeypatch, cache / "encoders", after_bytes=1000)
    r = run("select", "--pool", pool, "--out", tmp_path / "s.csv", "-b", 3, "--epochs", 1, "--batch-size", 16,
            "--image-size", 8, "--arch", "resnet-small", "--cache-dir", cache, "--workers", 1, "--strategy", "random",
            "-q")
    assert r.exit_code == 1, r.output
    line = error_line(r)
    assert line.startswith(f"Error: cannot write {cache / 'encoders'}/encoder-") and line.endswith(
        ".pt: No space left on device (nothing was written)"), line
    assert "Traceback" not in r.output
    assert [p.name for p in (cache / "encoders").iterdir()] == []  # nothing half-written left behind
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.skipif(not IS_LINUX_PROC, reason="needs /proc to tell which file an fd is")
def test_disk_full_while_writing_an_embedding_chunk(pool, tmp_path, encoder_file, monkeypatch):
    cache = tmp_path / "cache"
    _disk_full_under(monkeypatch, cache / "embeddings")
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3, "--cache-dir", cache, "-q")
    assert r.exit_code == 1, r.output
    line = error_line(r)
    assert line.startswith(f"Error: cannot write {cache / 'embeddings'}/") and "/chunk-" in line, line
    assert line.endswith(".npz: No space left on device (nothing was written)"), line
    assert not list((cache / "embeddings").rglob("*.tmp")) and not list((cache / "embeddings").rglob("*.npz"))


def test_output_written_by_another_run_meanwhile_is_not_overwritten(pool, tmp_path, encoder_file, monkeypatch):
    """Two runs with the same --out: the one that finishes second (here: the output appears while this
    run selects) fails instead of silently replacing the first one's file."""
    import selector.api as api_mod

    out = tmp_path / "s.csv"
    real = api_mod.select_embeddings

    def other_run_finishes_first(*a, **k):
        out.write_text("the other run's selection\n")
        return real(*a, **k)

    monkeypatch.setattr(api_mod, "select_embeddings", other_run_finishes_first)
    r = select(pool, out, encoder_file, "-b", 3)
    assert r.exit_code == 1
    assert error_line(r) == (f"Error: output {out} was created by another run while this one worked; "
                             "pass --force to overwrite it")
    assert out.read_text() == "the other run's selection\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".s.csv")] == []
