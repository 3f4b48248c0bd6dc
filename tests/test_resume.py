"""``kill -9`` in the middle of a run, then the same command again: it resumes (training from its last
checkpoint, embedding from its last finished chunk) and ends with the same encoder, the same embeddings
and the same selection as a run that was never interrupted.

The run is a real subprocess (``python -m selector.cli select ...``) killed with SIGKILL once the file
that marks the point of interest appears. To kill between two embedding chunks deterministically, the
killed run sets the test-only environment variable ``SELECTOR_TEST_PAUSE_AFTER_CHUNK_S`` (see
:mod:`selector.embed`), which only sleeps after each chunk is written.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from selector.strategies import STRATEGIES

from selector.cli import main
from selector.embed import PAUSE_ENV
from tests.conftest import REPO, snapshot, write_pool

pytestmark = [pytest.mark.trains, pytest.mark.processes]

# An embedding-dependent strategy when one is registered, so "same selection" means something beyond
# the seed; the embeddings and encoder weights are compared directly in any case.
STRATEGY = next((s for s in ("kcenter", "typiclust", "balanced") if s in STRATEGIES), "random")


def _args(pool, out, *extra):
    return ["select", "--pool", str(pool), "--out", str(out), "--strategy", STRATEGY, "--budget", "10",
            "--seed", "3", "--batch-size", "16", "--workers", "1", "-q", "--arch", "resnet-small",
            "--cache-dir", str(Path(out).parent / ".selector-cache"), *[str(a) for a in extra]]


def _rows(path):
    return list(csv.DictReader(open(path, encoding="utf-8")))


def _cache_vectors(cache: Path) -> dict[str, np.ndarray]:
    out = {}
    for f in cache.glob("embeddings/*/chunk-*.npz"):
        with np.load(f) as z:
            out.update(zip(z["digests"].tolist(), z["emb"]))
    return out


def _kill_when(args, env_extra, marker_glob: str, folder: Path, timeout_s: float = 180) -> subprocess.Popen:
    """Start ``python -m selector.cli *args``; SIGKILL it as soon as ``folder.glob(marker_glob)`` finds a file."""
    env = dict(os.environ, **env_extra)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "selector.cli", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while not list(folder.glob(marker_glob)):
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {proc.stdout.read().decode()[-2000:]}")
        if time.monotonic() - t0 > timeout_s:
            proc.kill()
            pytest.fail(f"no {marker_glob} under {folder} after {timeout_s} s")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return proc


def _reference(tmp_path, pool, *extra):
    """The same command, never interrupted, in its own folder and cache."""
    ref = tmp_path / "ref"
    ref.mkdir()
    r = CliRunner().invoke(main, _args(pool, ref / "sel.csv", *extra), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return ref


def test_kill_during_embedding_then_resume(tmp_path):
    pool = write_pool(tmp_path / "pool", 64)
    before = snapshot(pool)
    run = tmp_path / "run"
    run.mkdir()
    cache = run / ".selector-cache"
    extra = ("--epochs", 1, "--embed-chunk", 16)
    _kill_when(_args(pool, run / "sel.csv", *extra), {PAUSE_ENV: "120"}, "embeddings/*/chunk-*.npz", cache)
    assert len(list(cache.glob("embeddings/*/chunk-*.npz"))) == 1  # killed after the first of four chunks
    assert not (run / "sel.csv").exists()
    assert not list(run.rglob("*.tmp"))  # atomic writes: no half-written file
    enc_file = next(cache.glob("encoders/*.pt"))
    stamp = enc_file.stat().st_mtime_ns

    r = CliRunner().invoke(main, _args(pool, run / "sel.csv", *extra), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "48 images embedded, 16 from cache" in r.output  # resumed after the finished chunk
    assert enc_file.stat().st_mtime_ns == stamp  # the finished encoder was reused, not retrained

    ref = _reference(tmp_path, pool, *extra)
    got, want = _cache_vectors(cache), _cache_vectors(ref / ".selector-cache")
    assert got.keys() == want.keys() and len(got) == 64
    for d in want:
        np.testing.assert_array_equal(got[d], want[d])
    assert _rows(run / "sel.csv") == _rows(ref / "sel.csv")
    assert snapshot(pool) == before


def test_kill_during_training_then_resume(tmp_path):
    pool = write_pool(tmp_path / "pool", 48)
    run = tmp_path / "run"
    run.mkdir()
    cache = run / ".selector-cache"
    extra = ("--epochs", 3)
    _kill_when(_args(pool, run / "sel.csv", *extra), {}, "encoders/*.pt", cache)  # first epoch checkpoint
    enc_file = next(cache.glob("encoders/*.pt"))
    done = torch.load(enc_file, weights_only=True)["epochs_done"]
    assert 1 <= done < 3 and not list(cache.glob("embeddings/*/chunk-*.npz"))

    r = CliRunner().invoke(main, _args(pool, run / "sel.csv", *extra), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "48 images embedded, 0 from cache" in r.output

    ref = _reference(tmp_path, pool, *extra)
    a = torch.load(enc_file, weights_only=True)
    b = torch.load(next((ref / ".selector-cache").glob("encoders/*.pt")), weights_only=True)
    assert a["epochs_done"] == b["epochs_done"] == 3
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k  # same weights, bit for bit
    got, want = _cache_vectors(cache), _cache_vectors(ref / ".selector-cache")
    assert got.keys() == want.keys()
    for d in want:
        np.testing.assert_array_equal(got[d], want[d])
    assert _rows(run / "sel.csv") == _rows(ref / "sel.csv")


def test_selector_train_killed_mid_run_resumes_to_the_same_encoder(tmp_path):
    """``selector train`` killed with SIGKILL after its first epoch checkpoint (inside epoch 2 of 3), run
    again: it resumes from OUT.ckpt, ends with 3 epochs done and the weights of an uninterrupted run."""
    pool = write_pool(tmp_path / "pool", 48)
    args = ["train", "--pool", str(pool), "--epochs", "3", "--batch-size", "16", "--seed", "2", "--workers", "1",
            "-q"]
    run = tmp_path / "run"
    run.mkdir()
    out = run / "enc.pt"
    _kill_when([*args, "--out", str(out)], {}, "enc.pt.ckpt", run)
    assert not out.exists()
    assert 1 <= torch.load(run / "enc.pt.ckpt", weights_only=True)["epochs_done"] < 3
    r = CliRunner().invoke(main, [*args, "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert out.is_file() and not (run / "enc.pt.ckpt").exists()

    ref = tmp_path / "ref.pt"
    r = CliRunner().invoke(main, [*args, "--out", str(ref)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    a, b = torch.load(out, weights_only=True), torch.load(ref, weights_only=True)
    assert a["epochs_done"] == b["epochs_done"] == 3
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


@pytest.mark.slow  # over a minute on 2 cores; tests/test_train_autoencoder.py resumes in-process in seconds
def test_selector_train_with_the_autoencoder_killed_mid_run_resumes_to_the_same_encoder_and_decoder(tmp_path):
    """``selector train --loss supcon-spread --autoencoder 1`` killed after its first epoch checkpoint, run
    again: the encoder, the decoder and their optimizer state come back from OUT.ckpt, and the result equals
    an uninterrupted run's, bit for bit."""
    pool = write_pool(tmp_path / "pool", 48)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"{i:03d}.png,{'ab'[i % 2]}\n" for i in range(0, 48, 3)))
    args = ["train", "--pool", str(pool), "--epochs", "3", "--batch-size", "16", "--seed", "2", "--workers", "1",
            "-q", "--loss", "supcon-spread", "--autoencoder", "1", "--labels", str(labels)]
    run = tmp_path / "run"
    run.mkdir()
    out = run / "enc.pt"
    _kill_when([*args, "--out", str(out)], {}, "enc.pt.ckpt", run)
    assert not out.exists()
    killed = torch.load(run / "enc.pt.ckpt", weights_only=True)
    assert 1 <= killed["epochs_done"] < 3 and killed["decoder"]["config"]["n_classes"] == 2
    r = CliRunner().invoke(main, [*args, "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output

    ref = tmp_path / "ref.pt"
    r = CliRunner().invoke(main, [*args, "--out", str(ref)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    a, b = torch.load(out, weights_only=True), torch.load(ref, weights_only=True)
    assert a["epochs_done"] == b["epochs_done"] == 3 and a["train"]["autoencoder"] == 1.0
    for part in ("state_dict", "decoder"):
        want = b[part] if part == "state_dict" else b[part]["state_dict"]
        got = a[part] if part == "state_dict" else a[part]["state_dict"]
        for k in want:
            assert torch.equal(got[k], want[k]), (part, k)
