"""Training and embedding on several processes (selector.distributed): 2 CPU processes with gloo.

The jobs are real: two processes (:mod:`tests.dist_worker`, forked by a server that imported torch once)
with the environment torchrun gives its processes, on a free local port, every wait bounded. One job
(``reference``) checks that a pool path missing on one rank stops both with one line, that the loss and
the gradients of the global batch equal those of one process on the same batch, trains without
interruption and embeds; beside it a lone rank 0 of 2 waits for a rendezvous that never completes. A
second job is killed (rank 1, SIGKILL) at a step of the same training; a third resumes it and must end
with the same weights, then is killed after its first embedding chunk; one process then finishes the
embedding from the cache, which must equal the single-process embedding.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests import dist_worker as W
from tests.conftest import REPO

pytestmark = [pytest.mark.trains, pytest.mark.processes]

JOB_TIMEOUT_S = 900  # a bound on a hang: a job takes seconds, minutes when a loaded machine runs it niced


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m tests.dist_worker serve``: imports torch once and forks the ranks of each job."""

    def __init__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.dist_worker", "serve"], cwd=REPO, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pids: list[int] = []
        assert self._read(JOB_TIMEOUT_S) == {"ready": True}

    def _read(self, timeout_s: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            self.close()
            pytest.fail(f"the job server did not answer within {timeout_s} s")
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"the job server ended (status {self.proc.wait()})")
        return json.loads(line)

    @staticmethod
    def specs(phase: str, out: Path, ranks=(0, 1), world: int = 2, env: dict | None = None) -> list[dict]:
        """The processes of a job: ranks with torchrun's variables (``ranks=()``: one plain process)."""
        port = str(free_port())
        return [{"phase": phase, "out": str(out),
                 "env": {"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(world), "GROUP_RANK": "0",
                         "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
                         **(env or {})}} for r in ranks] or [{"phase": phase, "out": str(out), "env": {}}]

    def start(self, phase: str, out: Path, ranks=(0, 1), env: dict | None = None, also: list[dict] = ()) -> list[int]:
        """Fork the processes of a job (and those of ``also`` at the same time); their pids."""
        specs = self.specs(phase, out, ranks, env=env) + list(also)
        self.proc.stdin.write(json.dumps(specs) + "\n")
        self.proc.stdin.flush()
        self.pids = self._read(120)["pids"]
        return self.pids

    def finish(self, out: Path, timeout_s: float = JOB_TIMEOUT_S) -> list[int]:
        """Exit codes of the job's processes (negative: killed by that signal); each logs to OUT/*.log."""
        return self._read(timeout_s)["status"]

    def close(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()


def logs(out: Path) -> str:
    return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}" for f in sorted(out.glob("*.log")))


def wait_for(path_glob: str, folder: Path, timeout_s: float = JOB_TIMEOUT_S) -> None:
    t0 = time.monotonic()
    while not list(folder.glob(path_glob)):
        if time.monotonic() - t0 > timeout_s:
            pytest.fail(f"no {path_glob} in {folder} after {timeout_s} s:\n{logs(folder)}")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """The reference job and, alongside, the rendezvous that times out; then the killed and the resumed
    jobs, and the single process finishing the embedding. Returns the folder with what they wrote."""
    out = tmp_path_factory.mktemp("dist")
    server = Server()
    try:
        t0 = time.monotonic()
        lonely = Server.specs("timeout", out, ranks=(0,))  # rank 0 of 2 waits for a rank 1 that never comes
        server.start("reference", out, also=lonely)
        assert server.finish(out) == [0, 0, 0], logs(out)
        t_ref = time.monotonic() - t0

        pids = server.start("killed", out)
        wait_for("killed.marker", out)
        os.kill(pids[1], signal.SIGKILL)  # rank 1 dies at a step; rank 0 must stop by itself
        t_kill = time.monotonic()
        out.joinpath("killed.go").write_text("")
        assert server.finish(out) == [1, -signal.SIGKILL], logs(out)
        out.joinpath("killed-stop-s.txt").write_text(f"{time.monotonic() - t_kill:.1f}")
        t_killed = time.monotonic() - t0

        pids = server.start("resume", out)
        wait_for("embed.marker", out)
        os.kill(pids[1], signal.SIGKILL)  # killed mid-way through the embedding, after its first chunk
        assert server.finish(out) == [1, -signal.SIGKILL], logs(out)
        server.start("finish", out, ranks=())
        assert server.finish(out) == [0], logs(out)
        out.joinpath("seconds.txt").write_text(f"{t_ref:.1f} {t_killed:.1f} {time.monotonic() - t0:.1f}")
    finally:
        server.close()
    return out


def test_a_pool_missing_on_one_rank_stops_every_rank_with_one_line(jobs):
    r0 = jobs.joinpath("agree-rank0.txt").read_text()
    r1 = jobs.joinpath("agree-rank1.txt").read_text()
    kind0, shared0, msg0 = r0.split("|", 2)
    kind1, shared1, msg1 = r1.split("|", 2)
    assert kind0 == kind1 == "DistributedError"
    assert msg0 == msg1 and "\n" not in msg0
    assert "not-on-this-node" in msg0 and "does not exist" in msg0 and "(rank 1 of 2, on " in msg0
    assert (shared0, shared1) == ("False", "True")  # rank 0 reports it, rank 1 stays quiet


@pytest.mark.parametrize("loss", ["simclr", "kcl"])
def test_the_distributed_loss_and_gradients_are_those_of_the_global_batch(jobs, loss):
    for rank in (0, 1):
        with np.load(jobs / f"loss-rank{rank}.npz") as z:
            dist_loss, one_loss = z[f"{loss}_loss"]
            assert abs(dist_loss - one_loss) <= 1e-5, (rank, dist_loss, one_loss)
            diff, top = z[f"{loss}_grad_diff"], z[f"{loss}_grad_max"]
            assert len(diff) > 20 and top.max() > 0
            assert (diff <= 1e-5 + 1e-4 * top).all(), (rank, float((diff / np.maximum(top, 1e-12)).max()))
            assert (z[f"{loss}_stats_diff"] <= 1e-5).all()  # batch-norm statistics of the global batch


def test_a_rank_killed_mid_training_stops_the_other_with_one_line_within_the_timeout(jobs):
    msg = jobs.joinpath("killed-rank0.txt").read_text()
    assert "\n" not in msg and msg.startswith("rank 0 of 2 on ")
    assert "another process" in msg and "rerun the same command to resume" in msg
    assert float(jobs.joinpath("killed-stop-s.txt").read_text()) < 120


def test_training_killed_at_a_step_and_resumed_ends_with_the_same_weights(jobs):
    with np.load(jobs / "train-a.npz") as a, np.load(jobs / "train-b.npz") as b:
        assert sorted(a.files) == sorted(b.files) and len(a.files) > 20
        for k in a.files:
            np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-6, err_msg=k)
    with np.load(jobs / "finish.npz") as z:
        world, steps_done, total_steps = z["ckpt"]
    assert world == 2 and steps_done == total_steps == W.EPOCHS * 4  # 64 images / global batch 16
    assert not list(jobs.glob(".*.tmp"))  # atomic: no half-written checkpoint left behind


def test_distributed_embedding_equals_one_process(jobs):
    with np.load(jobs / "embed-a.npz") as z:
        assert z["dist"].shape == (W.N_IMAGES, 256)
        np.testing.assert_allclose(z["dist"], z["single"], rtol=0, atol=1e-6)
        assert int(z["n_embedded"]) == W.N_IMAGES
    chunks = list((jobs / "cache-a").glob("embeddings/*/chunk-*.npz"))
    assert len(chunks) == W.N_IMAGES // W.CHUNK  # each rank wrote its own chunks, as one process would name them


def test_embedding_killed_mid_way_resumes_from_the_cache_in_one_process(jobs):
    msg = jobs.joinpath("embed-killed-rank0.txt").read_text()
    assert "\n" not in msg and "another process" in msg
    with np.load(jobs / "finish.npz") as z:
        emb, n_embedded = z["emb"], int(z["n_embedded"])
    with np.load(jobs / "embed-a.npz") as z:
        np.testing.assert_allclose(emb, z["single"], rtol=0, atol=1e-6)
    # the killed job's chunks were reused: one process embedded only what they lacked (rank 1's 3 others)
    assert n_embedded == 3 * W.CHUNK


def test_a_rendezvous_that_never_completes_fails_in_one_line_after_its_timeout(jobs):
    seconds, msg = jobs.joinpath("timeout.txt").read_text().split("|", 1)
    assert "\n" not in msg and msg.startswith("rank 0 on ")
    assert f"within {W.TIMEOUT_S:g} s" in msg and "are all 2 processes started" in msg
    assert W.TIMEOUT_S - 0.5 <= float(seconds) < W.TIMEOUT_S + 30
