"""Reliability, round two (issue 14): one test per defect, through the command line where the case is a
command-line case. The FIFO, orphan-worker and Ctrl-C cases run real ``selector select`` processes
(``python -m selector.cli``); every wait on them is bounded (``timeout=`` on each call), so a regression
fails the test instead of hanging it. Cases that used to abort the interpreter (exit 134 inside faiss)
run in a subprocess too, so a regression cannot take pytest down with it.
"""
from __future__ import annotations

import errno
import io
import os
import re
import signal
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import selector
import selector.atomic as atomic_mod
from selector.backbones import EncoderConfig
from selector.train import TrainConfig
# The first robustness round's pool, encoder and CLI helpers (fixtures are found by name).
from tests.test_robustness import encoder_file, pool, run, select, write_pool  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
from tests.test_robustness import N_POOL  # noqa: E402
IS_LINUX_PROC = Path("/proc/self/stat").is_file()


# ----------------------------------------------------------------------------- helpers


def png_bytes(value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _kill_all(workers: list[int], proc) -> None:
    """Test clean-up: SIGKILL any worker still alive and the run itself."""
    for w in workers:
        if alive(w):
            os.kill(w, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def cli_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "selector.cli", *map(str, args)]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d.name))
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_until(cond, timeout_s: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


# ----------------------------------------------------------------------------- 1. FIFO in the pool


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_fifo_in_pool_is_skipped_not_waited_on(pool, tmp_path, encoder_file):
    """A real FIFO named like an image: a real ``selector select`` finishes (bounded wait) and says why
    the FIFO was skipped."""
    os.mkfifo(pool / "fifo.png")
    out = tmp_path / "s.csv"
    try:  # no --encoder: the pool's channels and size are chosen from its headers, the step that blocked
        r = subprocess.run(cli_cmd("select", "--pool", pool, "--out", out, "-b", 5, "--epochs", 1, "--batch-size", 16,
                                   "--strategy", "random", "--workers", 1),
                           capture_output=True, text=True, timeout=120, env=env())
    except subprocess.TimeoutExpired:
        pytest.fail("selector select hung on a FIFO in the pool")
    assert r.returncode == 0, r.stderr
    assert f"WARNING: skipping {pool / 'fifo.png'}: not a regular file (a FIFO)" in r.stderr
    assert out.is_file()


def test_socket_in_pool_is_skipped(tmp_path):
    import socket

    from selector.pool import load_folder

    pool = write_pool(tmp_path / "p", 5)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(pool / "sock.png"))
        p = load_folder(pool, workers=0)
    finally:
        s.close()
    assert len(p) == 5
    assert p.skipped == [("sock.png", "not a regular file (a socket)")]


# ----------------------------------------------------------------------------- 2. workers die with the run

SLOW_RUN = """
import sys, time
import selector.pool.workers as d
real = d.decode_file
def slow(*a, **k):
    time.sleep(2.0)
    return real(*a, **k)
d.decode_file = slow
from selector.cli import main
sys.argv = ["selector"] + sys.argv[1:]
main()
"""


def _start_slow_select(pool, tmp_path, encoder_file, **kw):
    """A real ``selector select`` whose decoder takes 2 s per file, with two decoding workers. Its output
    goes to files, not pipes: a surviving worker would hold a pipe open and stall the reader."""
    args = ["select", "--pool", pool, "--out", tmp_path / "s.csv", "--encoder", encoder_file, "-b", 3,
            "--strategy", "random", "--workers", 2, "-q"]
    with open(tmp_path / "stdout.txt", "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        return subprocess.Popen([sys.executable, "-c", SLOW_RUN, *map(str, args)], stdout=out, stderr=err,
                                env=env(), **kw)


def _workers_of(proc) -> list[int]:
    assert wait_until(lambda: len(children(proc.pid)) >= 2, 60), "the decoding workers never started"
    time.sleep(0.5)  # both workers are inside the (slow) decoder now
    return children(proc.pid)


@pytest.mark.skipif(not IS_LINUX_PROC, reason="reads /proc to find the worker processes")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_decoder_workers_die_with_a_killed_run(pool, tmp_path, encoder_file, sig):
    proc = _start_slow_select(pool, tmp_path, encoder_file)
    workers: list[int] = []
    try:
        workers = _workers_of(proc)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        gone = wait_until(lambda: not any(alive(w) for w in workers), 15)
        assert gone, f"decoder workers {[w for w in workers if alive(w)]} outlived their run"
    finally:
        _kill_all(workers, proc)


@pytest.mark.skipif(not IS_LINUX_PROC, reason="reads /proc to find the worker processes")
def test_ctrl_c_prints_no_worker_traceback(pool, tmp_path, encoder_file):
    """Ctrl-C sends SIGINT to the whole foreground process group: the run and its workers."""
    proc = _start_slow_select(pool, tmp_path, encoder_file, start_new_session=True)
    workers: list[int] = []
    try:
        workers = _workers_of(proc)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        err = (tmp_path / "stderr.txt").read_text()
        assert proc.returncode != 0
        assert "Traceback" not in err, err
        assert wait_until(lambda: not any(alive(w) for w in workers), 15)
    finally:
        _kill_all(workers, proc)


FALLBACK = """
import ctypes, os, time
import selector.supervise as d
def no_prctl(*a, **k):
    raise OSError("no prctl here")
ctypes.CDLL = no_prctl  # as on a system without prctl: only the polling thread is left
parent = os.getpid()
pid = os.fork()
if pid == 0:
    os.closerange(0, 3)  # the test reads the parent's output to its end: the child must not hold it
    d.die_with_parent(parent, poll_s=0.1)
    time.sleep(60)
    os._exit(0)
print(pid, flush=True)
os._exit(0)  # the parent dies at once; the child must follow it
"""


@pytest.mark.skipif(not IS_LINUX_PROC or not hasattr(os, "fork"), reason="forks; reads /proc")
def test_die_with_parent_fallback_without_prctl():
    r = subprocess.run([sys.executable, "-c", FALLBACK], capture_output=True, text=True, timeout=60, env=env())
    child = int(r.stdout.split()[0])
    try:
        assert wait_until(lambda: not alive(child), 10), "the child outlived its parent"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


# ----------------------------------------------------------------------------- 3. every written file obeys --force


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


def test_check_outputs(tmp_path):
    from selector.atomic import OutputExistsError, check_outputs

    (tmp_path / "a.json").write_text("x")
    (tmp_path / "d.csv").mkdir()
    check_outputs([tmp_path / "new.json", tmp_path / "new.config.xml"], force=False)
    check_outputs([tmp_path / "a.json"], force=True)
    with pytest.raises(OutputExistsError, match=r"output .*a.json exists; pass --force to overwrite it") as e:
        check_outputs([tmp_path / "new.json", tmp_path / "a.json"], force=False)
    assert e.value.path == tmp_path / "a.json"
    with pytest.raises(OutputExistsError, match="is a folder; give a file name"):
        check_outputs([tmp_path / "d.csv"], force=True)


def test_output_paths_lists_every_file_an_export_writes(tmp_path):
    from selector.formats import export_selection, output_paths
    from selector.strategies.base import Selection

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


def test_embed_ids_file_obeys_force(pool, tmp_path, encoder_file):
    (tmp_path / "e.ids.txt").write_text("mine\n")
    r = run("embed", "--pool", pool, "--encoder", encoder_file, "--out", tmp_path / "e.npy", "--workers", 1)
    assert r.exit_code == 1
    assert error_line(r) == f"Error: output {tmp_path / 'e.ids.txt'} exists; pass --force to overwrite it"
    assert not (tmp_path / "e.npy").exists()


# ----------------------------------------------------------------------------- 4. full disk


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


# ----------------------------------------------------------------------------- 5, 9, 11, 12. odd file names


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
    """Items 5 and 11: odd names in the pool, then ``embed`` and ``select --embeddings --ids``."""
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
    from selector.formats import ExportError, export_selection
    from selector.strategies.base import Selection

    sel = Selection(indices=np.array([0, 1]), scores=np.array([1.0, 0.5]), groups=np.array([0, 1]))
    with pytest.raises(ExportError) as e:
        export_selection(sel, ["ok.png", bad], tmp_path / f"s{suffix}", sizes=(8, 8))
    assert shown in str(e.value) and bad not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_display_name_escapes_only_what_a_terminal_would_act_on():
    from selector.names import display_name, name_problem

    assert display_name("plain é.png") == "plain é.png"
    assert display_name("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert display_name("x\udcffy") == "x\\xffy"
    assert name_problem("ok é.png") is None
    assert name_problem("a\tb.png") == "the file name holds a control character"
    assert name_problem("x\udcff.png") == "the file name is not valid UTF-8"


# ----------------------------------------------------------------------------- 6. strategy parameters


@pytest.mark.parametrize("param, strategy, msg", [
    ("k_nn=abc", "typiclust", "k_nn must be a whole number, got 'abc'"),
    ("k_nn=1.5", "typiclust", "k_nn must be a whole number, got 1.5"),
    ("k_nn=", "typiclust", "k_nn must be a whole number, got ''"),
    ("explore=nan", "balanced", "explore must be a finite number, got nan"),
    ("explore=abc", "balanced", "explore must be a number, got 'abc'"),
    ("use_gpu=3", "balanced", "use_gpu must be True, False or None, got 3"),
])
def test_strategy_parameters_type_checked_before_any_work(pool, tmp_path, encoder_file, param, strategy, msg):
    cache = tmp_path / "cache"
    r = run("select", "--pool", pool, "--out", tmp_path / "s.csv", "--encoder", encoder_file, "-b", 3,
            "--strategy", strategy, "--param", param, "--cache-dir", cache)
    assert r.exit_code == 2, r.output
    assert msg in r.output and "--param" in r.output
    assert not cache.exists()


def test_strategy_parameters_type_checked_in_the_api():
    from selector.strategies import get_strategy

    with pytest.raises(ValueError, match="k_nn must be a whole number"):
        get_strategy("typiclust", k_nn="abc")
    with pytest.raises(ValueError, match="explore must be a finite number"):
        get_strategy("balanced", explore=float("nan"))
    assert get_strategy("balanced", explore=0, k_nn=np.int64(10)).k_nn == 10  # ints are numbers too
    from selector.api import Selector

    with pytest.raises(ValueError, match="k_nn must be a whole number, got 'abc'"):  # at construction, before fit
        Selector(strategy="typiclust", strategy_params={"k_nn": "abc"})


# ----------------------------------------------------------------------------- 7. huge embeddings

HUGE_API = """
import numpy as np
from selector.api import select_embeddings
x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32) * np.float32(1e20)
try:
    select_embeddings(x, 10, None, "balanced", 0)
except ValueError as e:
    print("ValueError:", e)
"""


def test_huge_embeddings_in_the_api_are_refused_clearly():
    r = subprocess.run([sys.executable, "-c", HUGE_API], capture_output=True, text=True, timeout=120, env=env())
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"ValueError: embeddings hold values up to \d(\.\d)?e\+20 in magnitude", r.stdout), \
        r.stdout + r.stderr[-2000:]


def test_huge_embeddings_from_the_cli_are_refused_clearly(tmp_path):
    """In-process: the command line reaches faiss through the same select_embeddings, whose check the
    subprocess test above guards against an abort."""
    x = np.random.default_rng(0).normal(size=(300, 8)) * 1e30
    np.save(tmp_path / "e.npy", x)
    r = run("select", "--embeddings", tmp_path / "e.npy", "-b", 10, "--out", tmp_path / "s.csv")
    assert r.exit_code == 1, r.output
    assert re.match(r"Error: embeddings hold values up to \d(\.\d)?e\+30 in magnitude", error_line(r)), r.output
    assert not (tmp_path / "s.csv").exists()


def test_check_embeddings_accepts_ordinary_and_refuses_non_finite():
    from selector.api import check_embeddings

    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    assert check_embeddings(x) is None
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        check_embeddings(x)


# ----------------------------------------------------------------------------- 8. seed range


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999999"])
def test_seed_out_of_range_is_a_usage_error_before_any_work(pool, tmp_path, encoder_file, seed):
    cache = tmp_path / "cache"
    r = run("select", "--pool", pool, "--out", tmp_path / "s.csv", "-b", 3, "--seed", seed, "--cache-dir", cache)
    assert r.exit_code == 2, r.output
    assert "Invalid value for '--seed'" in r.output and "0<=x<=4294967295" in r.output
    assert not cache.exists()


# ----------------------------------------------------------------------------- 10. ids length


def test_select_embeddings_refuses_ids_of_another_length():
    from selector.api import select_embeddings

    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="3 ids for 10 embedding rows"):
        select_embeddings(x, 2, None, "random", 0, ids=["a", "b", "c"])


# ----------------------------------------------------------------------------- 13. encoder cache key


def test_encoder_cache_key_includes_version_and_recipe(monkeypatch):
    import selector.checkpoint as train_mod
    from selector.checkpoint import recipe_digest
    from selector.encoding import encoder_cache_key

    enc, tr = EncoderConfig(in_channels=1, image_size=16).to_dict(), TrainConfig(epochs=2).to_dict()
    k = encoder_cache_key("poolkey", enc, tr)
    assert k == encoder_cache_key("poolkey", enc, tr)  # stable
    assert k != encoder_cache_key("other", enc, tr)
    assert k != encoder_cache_key("poolkey", enc, TrainConfig(epochs=3).to_dict())
    assert k != encoder_cache_key("poolkey", enc, tr, labels=np.zeros(4, dtype=np.int64))
    import selector._version

    monkeypatch.setattr(selector._version, "__version__", "99.0")  # the one place the version is written
    assert encoder_cache_key("poolkey", enc, tr) != k
    monkeypatch.undo()
    assert encoder_cache_key("poolkey", enc, tr) == k
    # the recipe digest covers the training code itself: a change of any byte of it changes the key
    files = train_mod.recipe_files()
    assert {"train.py", "augment.py"} <= {f.name for f in files}
    assert any(f.parent.name == "backbones" for f in files)
    assert any(f.parent.name == "losses" for f in files)
    d0 = recipe_digest()
    monkeypatch.setattr(train_mod, "_file_bytes", lambda f: f.read_bytes() + (b"#" if f.name == "train.py" else b""))
    recipe_digest.cache_clear()
    try:
        assert recipe_digest() != d0
        assert encoder_cache_key("poolkey", enc, tr) != k
    finally:
        monkeypatch.undo()
        recipe_digest.cache_clear()
    assert encoder_cache_key("poolkey", enc, tr) == k


def test_selector_names_its_cached_encoder_by_the_key(tmp_path):
    from selector.api import Selector
    from selector.encoding import encoder_cache_key
    from selector.pool import load_folder

    p = load_folder(write_pool(tmp_path / "p", 8), workers=0)
    sel = Selector(strategy="random", arch="resnet-small", epochs=1, batch_size=4, cache_dir=tmp_path / "c").fit(p)
    key = encoder_cache_key(p.key, sel.encoder_config(p).to_dict(), sel.train_config(len(p)).to_dict())
    assert sel.checkpoint_ == tmp_path / "c" / "encoders" / f"encoder-{key}.pt"
    assert sel.checkpoint_.is_file()


# ----------------------------------------------------------------------------- 14. the weaker items


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature, an IHDR claiming ``width`` x ``height`` (8-bit gray) and the start of an IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = struct.pack(">I", 2) + b"IDAT" + b"\x78\x9c" + struct.pack(">I", zlib.crc32(b"IDAT\x78\x9c"))
    return b"\x89PNG\r\n\x1a\n" + chunk + idat  # Pillow reads the size up to the first IDAT: no pixels needed


@pytest.mark.parametrize("side", [10_000, 20_000, 40_000])
def test_bomb_message_is_the_same_at_any_size(pool, tmp_path, encoder_file, side):
    (pool / "huge.png").write_bytes(_png_header(side, side))
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 0, r.output
    assert (f"huge.png: {side}x{side} px is over the 89,478,485-pixel limit (decompression-bomb guard; "
            "raise it with --max-pixels)") in r.output


def test_encoder_that_is_a_folder(pool, tmp_path):
    d = tmp_path / "encdir"
    d.mkdir()
    r = run("select", "--pool", pool, "--out", tmp_path / "s.csv", "-b", 3, "--encoder", d)
    assert r.exit_code == 1
    assert error_line(r) == f"Error: encoder {d} is a folder; give the checkpoint file (from 'selector train')"


def test_truncated_cached_encoder_is_trained_again(pool, tmp_path):
    cache = tmp_path / "cache"
    args = ("select", "--pool", pool, "-b", 3, "--epochs", 1, "--batch-size", 16, "--image-size", 8,
            "--arch", "resnet-small", "--cache-dir", cache, "--workers", 1, "--strategy", "random")
    r = run(*args, "--out", tmp_path / "a.csv")
    assert r.exit_code == 0, r.output
    (ckpt,) = (cache / "encoders").glob("encoder-*.pt")
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    r = run(*args, "--out", tmp_path / "b.csv")
    assert r.exit_code == 0, r.output
    assert f"ignoring damaged cached encoder {ckpt}" in r.output and "training again" in r.output
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()  # same seed, same encoder


def test_embeddings_with_no_rows(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 8), dtype=np.float32))
    r = run("select", "--embeddings", tmp_path / "e.npy", "-b", 1, "--out", tmp_path / "s.csv")
    assert r.exit_code == 1
    line = error_line(r)
    assert line.startswith(f"Error: embeddings {tmp_path / 'e.npy'} ") and "(0, 8)" in line, line
    assert "labeled" not in line


def test_ids_file_with_duplicates(tmp_path):
    np.save(tmp_path / "e.npy", np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32))
    (tmp_path / "ids.txt").write_text("a.png\nb.png\nc.png\nb.png\n")
    r = run("select", "--embeddings", tmp_path / "e.npy", "--ids", tmp_path / "ids.txt", "-b", 1,
            "--out", tmp_path / "s.csv")
    assert r.exit_code == 1
    assert error_line(r) == f"Error: ids file {tmp_path / 'ids.txt'}: 'b.png' is on lines 2 and 4"


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


def test_atomic_write_without_overwrite(tmp_path):
    from selector.atomic import OutputExistsError, atomic_write

    p = tmp_path / "f.txt"
    with atomic_write(p, "w", overwrite=False) as f:
        f.write("one")
    with pytest.raises(OutputExistsError):
        with atomic_write(p, "w", overwrite=False) as f:
            f.write("two")
    assert p.read_text() == "one" and sorted(x.name for x in tmp_path.iterdir()) == ["f.txt"]


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
    from selector.pool import list_pool_files

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
