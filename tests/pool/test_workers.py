"""Decoder worker processes (selector.pool.workers): a decoder that hangs or crashes costs one file, not the
run; the workers die with a run that is killed or interrupted (Ctrl-C) and print no traceback.

The kill and Ctrl-C cases run real ``selector select`` processes whose decoder is slowed down; every wait
on them is bounded, so a regression fails the test instead of hanging it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import selector.pool.workers as workers_mod
from selector.pool import load_folder
from tests.conftest import IS_LINUX_PROC, N_POOL, alive, children, kill_all, select, subprocess_env, wait_until

pytestmark = [pytest.mark.processes, pytest.mark.usefixtures("one_torch_thread")]


def _hang_or_crash(monkeypatch, name: str, how: str):
    real = workers_mod.decode_file

    def decode(path, *a, **k):
        if path.name == name:
            if how == "hang":
                time.sleep(3600)
            os.kill(os.getpid(), signal.SIGKILL)  # dies mid-file, like a crashing decoder or the OOM killer
        return real(path, *a, **k)

    monkeypatch.setattr(workers_mod, "decode_file", decode)


@pytest.mark.parametrize("how,reason", [("hang", "decoding took longer than 1 s"),
                                        ("crash", "the decoder crashed")])
def test_decoder_that_hangs_or_crashes_does_not_stop_the_run(pool, tmp_path, encoder_file, monkeypatch, unchanged,
                                                             how, reason):
    """Simulated: the worker process is forked after the patch and hangs (or dies) on one file."""
    unchanged(pool)
    _hang_or_crash(monkeypatch, "017.png", how)
    t = time.monotonic()
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL - 1, "--decode-timeout", 1)
    assert time.monotonic() - t < 60
    assert r.exit_code == 0, r.output
    assert f"{N_POOL - 1} images in {pool}, 1 unreadable files skipped" in r.output
    assert "017.png" in r.output and reason in r.output
    # Every other file decoded exactly as in one process (sorted order kept across worker restarts).
    par = load_folder(pool, channels=3, image_size=16, workers=2, timeout_s=1)
    monkeypatch.undo()
    ref = load_folder(pool, channels=3, image_size=16, workers=0)
    keep = [i for i, k in enumerate(ref.ids) if k != "017.png"]
    assert par.ids == [ref.ids[i] for i in keep] and (par.images == ref.images[keep]).all()


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
                                env=subprocess_env(), **kw)


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
        kill_all(workers, proc)


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
        kill_all(workers, proc)
