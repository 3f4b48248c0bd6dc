"""``--nproc N`` (selector.cli.torchrun): the torchrun command, the child that dies with its launcher, and one
real run of ``selector select --nproc 2`` (torchrun, 2 CPU processes with gloo, rank 0 selects)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from selector.cli.torchrun import AGENT, describe_status, strip_option, torchrun_command, under_torchrun

REPO = Path(__file__).resolve().parents[2]


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "GROUP_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(k, None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_strip_option_removes_nproc_and_its_value_in_both_spellings():
    assert strip_option(["train", "--nproc", "2", "--pool", "p", "--nproc=4", "-q"], "--nproc") == \
        ["train", "--pool", "p", "-q"]
    assert strip_option(["select", "--nprocs", "3"], "--nproc") == ["select", "--nprocs", "3"]  # another option
    assert strip_option(["x", "--", "--nproc", "2"], "--nproc") == ["x", "--", "--nproc", "2"]


def test_torchrun_command_runs_selector_as_a_module_on_one_machine():
    cmd = torchrun_command(3, ["train", "--pool", "p"], python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=3", "-m", "selector",
                   "train", "--pool", "p"]
    with pytest.raises(ValueError, match="--nproc must be at least 1, got 0"):
        torchrun_command(0, [])


def test_under_torchrun_reads_the_environment():
    assert not under_torchrun({})
    assert not under_torchrun({"WORLD_SIZE": "1"})
    assert under_torchrun({"WORLD_SIZE": "2"})
    assert under_torchrun({"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "1"})
    assert describe_status(1) == "exit status 1" and describe_status(-9) == "killed by SIGKILL"


@pytest.mark.processes
def test_the_torchrun_module_and_python_m_selector_load_no_torch():
    code = ("import sys, selector.cli.torchrun, selector.__main__\n"
            "print(sorted(m for m in ('torch', 'faiss', 'kornia') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    r = subprocess.run([sys.executable, "-m", "selector", "--version"], capture_output=True, text=True, timeout=120,
                       env=_env())
    assert r.returncode == 0 and "version" in r.stdout


@pytest.mark.processes
def test_the_torchrun_child_dies_with_its_launcher(tmp_path):
    """The launcher's child gets PR_SET_PDEATHSIG: kill -9 the launcher and the child ends too."""
    pidfile = tmp_path / "child.pid"
    code = ("import os, subprocess, sys, time\n"
            "from selector.cli.torchrun import _die_with_launcher\n"
            "me = os.getpid()\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
            " preexec_fn=lambda: _die_with_launcher(me))\n"
            f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
            "time.sleep(120)\n")
    launcher = subprocess.Popen([sys.executable, "-c", code], env=_env())
    try:
        t0 = time.monotonic()
        while not pidfile.exists() or not pidfile.read_text():
            assert time.monotonic() - t0 < 60 and launcher.poll() is None
            time.sleep(0.05)
        child = int(pidfile.read_text())
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=30)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return  # gone (reaped by init)
            with open(f"/proc/{child}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):
                    return  # dead, waiting to be reaped
            time.sleep(0.05)
        os.kill(child, signal.SIGKILL)
        pytest.fail("the launcher's child outlived it")
    finally:
        launcher.kill()


def _pool(path: Path, n: int = 64) -> Path:
    from sklearn.datasets import load_digits

    x = np.clip(np.rint(load_digits().images[:n] * (255 / 16)), 0, 255).astype(np.uint8)
    np.savez(path, x=x)
    return path


def _select_cmd(tmp_path: Path, pool: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "selector", "select", "--nproc", "2", "--pool", str(pool), "--budget", "5",
            "--out", str(out), "--arch", "resnet-small", "--epochs", "1", "--batch-size", "8", "--image-size", "16",
            "--no-flip", "--cache-dir", str(tmp_path / "cache"), "--workers", "0", "--json", "--dist-timeout", "600"]


@pytest.mark.trains
@pytest.mark.processes
def test_select_with_nproc_2_trains_and_embeds_on_two_processes_and_rank_0_selects(tmp_path):
    out = tmp_path / "sel.csv"
    r = subprocess.run(_select_cmd(tmp_path, _pool(tmp_path / "pool.npz"), out), capture_output=True, text=True,
                       timeout=900, env=_env(TMPDIR=str(tmp_path)), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not list(tmp_path.glob("selector-torchrun-*.log"))  # torchrun's log of a run that worked is removed
    summary = json.loads(r.stdout)  # one JSON object: rank 1 printed nothing
    assert summary["chosen"] == 5 and len(list(csv.DictReader(out.open()))) == 5
    assert "2 processes x batch 8" in summary["summary"]["encoder"]
    assert "64 images embedded" in summary["summary"]["embedding"]
    assert len(list((tmp_path / "cache").glob("encoders/encoder-*.pt"))) == 1  # rank 0 wrote the checkpoint


@pytest.mark.slow
def test_a_pool_missing_under_nproc_stops_with_one_line_from_rank_0_and_one_from_the_launcher(tmp_path):
    missing = tmp_path / "missing.npz"
    r = subprocess.run(_select_cmd(tmp_path, missing, tmp_path / "sel.csv"), capture_output=True, text=True,
                       timeout=900, env=_env(), cwd=tmp_path)
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert errors[0] == f"Error: pool file {missing} does not exist", r.stderr[-3000:]
    assert errors[-1].startswith("Error: the run of 2 processes under torchrun failed (exit status 1)")
    assert len(errors) == 2  # rank 0's reason (once) and the launcher's line


@pytest.mark.processes
def test_a_failed_nproc_run_shows_the_ranks_line_and_the_launchers_and_keeps_torchruns_traceback_in_its_log(
        tmp_path):
    """A rank fails (the pool is missing): the terminal shows its one line and the launcher's, which names
    torchrun's own log; torchrun's traceback and its failure table are in that log, not on the terminal."""
    missing = tmp_path / "missing.npz"
    r = subprocess.run(_select_cmd(tmp_path, missing, tmp_path / "sel.csv"), capture_output=True, text=True,
                       timeout=600, env=_env(TMPDIR=str(tmp_path)), cwd=tmp_path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(lines) == 2, r.stderr[-3000:]
    assert lines[0] == f"Error: pool file {missing} does not exist"
    logs = list(tmp_path.glob("selector-torchrun-*.log"))
    assert len(logs) == 1
    assert lines[1] == ("Error: the run of 2 processes under torchrun failed (exit status 1); the lines above say "
                        f"which process and why (torchrun's own log: {logs[0]})")
    log = logs[0].read_text()
    assert "Traceback" in log and "ChildFailedError" in log


def test_the_agent_runs_torchrun_with_its_log_and_the_same_arguments():
    cmd = torchrun_command(2, ["select", "-p", "x"], python="py", log="/t/l.log")
    assert cmd == ["py", "-c", AGENT, "/t/l.log", "--standalone", "--nproc_per_node=2", "-m", "selector", "select",
                   "-p", "x"]


@pytest.mark.slow
def test_embed_with_nproc_2_equals_one_process_and_a_later_single_run_reuses_its_cache(tmp_path):
    pool = _pool(tmp_path / "pool.npz", 96)
    enc = tmp_path / "enc.pt"

    def run(*args):
        r = subprocess.run([sys.executable, "-m", "selector", *map(str, args), "--workers", "0", "-q"],
                           capture_output=True, text=True, timeout=900, env=_env(), cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    run("train", "--pool", pool, "--out", enc, "--epochs", "1", "--batch-size", "16", "--image-size", "16", "--no-flip")
    run("embed", "--nproc", "2", "--pool", pool, "--encoder", enc, "--out", tmp_path / "d.npy",
        "--cache-dir", tmp_path / "c1")
    run("embed", "--pool", pool, "--encoder", enc, "--out", tmp_path / "s.npy", "--cache-dir", tmp_path / "c2")
    d, s = np.load(tmp_path / "d.npy"), np.load(tmp_path / "s.npy")
    assert d.shape == (96, 256)
    np.testing.assert_allclose(d, s, rtol=0, atol=1e-6)
    assert (tmp_path / "d.ids.txt").read_text() == (tmp_path / "s.ids.txt").read_text()
    before = {f: f.stat().st_mtime_ns for f in (tmp_path / "c1").glob("embeddings/*/chunk-*.npz")}
    run("embed", "--pool", pool, "--encoder", enc, "--out", tmp_path / "r.npy", "--cache-dir", tmp_path / "c1")
    assert np.array_equal(np.load(tmp_path / "r.npy"), d)  # read back from the 2-process run's chunks
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "c1").glob("embeddings/*/chunk-*.npz")} == before
