"""The ranks of the 2-process gloo jobs of ``tests/test_distributed.py``, and the server that forks them.

``python -m tests.dist_worker serve`` imports torch and the pipeline once, then reads jobs from stdin,
one JSON line each: a list of processes ``{"phase", "out", "env"}``. It forks one child per process
(what torchrun would start, with the variables torchrun gives its processes in ``env``: ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), answers
``{"pids": [...]}``, and once they have all ended ``{"status": [...]}`` (exit codes, negative for a
signal). Forking saves each rank the seconds of importing torch, which dominate these small jobs on a
2-core machine; nothing runs torch in the server before it forks. Each child's output goes to
``OUT/<phase>-<rank>.log``. Each phase writes what it found under OUT (``.npz`` arrays, ``.txt`` error
lines) for the test to compare; the ranks run one torch thread each.

* ``reference``: a pool path missing on one rank (the error every rank sees); the loss and gradients of
  the global batch against one process on the same batch; an uninterrupted training; a distributed
  embedding with the trained encoder, and rank 0's single-process embedding of the same pool.
* ``killed``: the same training, checkpointing every step; after the checkpoint of step
  :data:`KILL_AFTER_STEP` rank 0 writes ``killed.marker`` and waits for ``killed.go``, which the test
  writes once it has killed rank 1; rank 0 then meets the dead rank and writes its one-line error.
* ``resume``: the same training again on the same checkpoint (resumes and finishes), then a distributed
  embedding into a fresh cache; rank 1 writes ``embed.marker`` after its first chunk and waits there to
  be killed, while rank 0 embeds its share and meets the dead rank at the end.
* ``timeout``: rank 0 of 2 alone, joining with a short timeout: the rendezvous error.
* ``finish``: one process, no torchrun: the killed embedding finished from the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

N_IMAGES = 64
BATCH = 8  # per process: global batch 16, 4 steps per epoch
EPOCHS = 2
CHUNK = 8  # images per embedding-cache file
KILL_AFTER_STEP = 3
WAIT_S = 600.0  # longest a rank waits for the test to kill the other (a bound on a hang)
TIMEOUT_S = 3.0


def pool_images() -> np.ndarray:
    """(64, 1, 16, 16) uint8: the first 64 scikit-learn digits, as the pool reader gives them."""
    from sklearn.datasets import load_digits

    from selector.pool import resize_images

    x = np.clip(np.rint(load_digits().images[:N_IMAGES] * (255 / 16)), 0, 255).astype(np.uint8)[:, None]
    return resize_images(x, 16)


def digests(images: np.ndarray) -> list[str]:
    return [hashlib.blake2b(im.tobytes(), digest_size=16).hexdigest() for im in images]


def configs():
    from selector.backbones import EncoderConfig
    from selector.train import TrainConfig

    return (EncoderConfig(arch="resnet-small", in_channels=1, image_size=16),
            TrainConfig(epochs=EPOCHS, batch_size=BATCH, seed=5, flip=False))


def weights(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def train(dist, ckpt: Path, every_s: float):
    from selector.train import train_encoder

    enc_cfg, tr_cfg = configs()
    return train_encoder(pool_images(), enc_cfg, tr_cfg, "cpu", checkpoint_path=ckpt, checkpoint_every_s=every_s,
                         dist=dist)


def missing_pool(dist, out: Path) -> None:
    """Rank 1 looks for a pool that only rank 0 has: both ranks stop with the same line."""
    from selector.pool import load_pool

    real = out / "pool.npz"
    if dist.main:
        np.savez(real, x=pool_images()[:, 0])
    dist.barrier()
    path = real if dist.main else out / "not-on-this-node" / "pool.npz"
    try:
        dist.agree(lambda: load_pool(path))
        msg = "no error"
    except Exception as e:  # noqa: BLE001 - the message is what the test checks
        msg = f"{type(e).__name__}|{getattr(e, 'shared', '')}|{e}"
    (out / f"agree-rank{dist.rank}.txt").write_text(msg)


def loss_and_gradients(dist, out: Path) -> None:
    """Distributed loss and gradients on the global batch against one process on the same batch."""
    import copy

    import torch

    from selector.augment import to_float
    from selector.backbones import Encoder
    from selector.losses import get_loss
    from selector.train import views_loss

    enc_cfg, _ = configs()
    x = to_float(torch.from_numpy(pool_images()[: 2 * BATCH * dist.world]))
    g = torch.Generator().manual_seed(1)
    v1 = x
    v2 = (x.flip(-1) * 0.9 + 0.1 * torch.rand(x.shape, generator=g)).clamp(0, 1)  # any second view will do
    labels = torch.arange(v1.shape[0]) % 3
    res = {}
    for name, lab in (("simclr", None), ("kcl", labels)):
        loss_fn = get_loss(name)
        torch.manual_seed(0)
        model = Encoder(enc_cfg).train()
        ref = copy.deepcopy(model)
        ref_loss = views_loss(ref, loss_fn, v1, v2, lab, loss_seed=7)  # one process, the whole (global) batch
        ref_loss.backward()
        ddp, restore = dist.wrap(model)
        b = v1.shape[0] // dist.world
        mine = slice(dist.rank * b, (dist.rank + 1) * b)
        loss = views_loss(ddp, loss_fn, v1[mine], v2[mine], None if lab is None else lab[mine], dist, loss_seed=7)
        loss.backward()
        restore()
        res[f"{name}_loss"] = np.array([loss.item(), ref_loss.item()])
        gd = [(p.grad - q.grad).abs().max().item() for p, q in zip(model.parameters(), ref.parameters())]
        gm = [q.grad.abs().max().item() for q in ref.parameters()]
        res[f"{name}_grad_diff"] = np.array(gd)
        res[f"{name}_grad_max"] = np.array(gm)
        res[f"{name}_stats_diff"] = np.array([(a - c).abs().max().item() for (k, a), (_, c) in
                                              zip(model.state_dict().items(), ref.state_dict().items())
                                              if "running" in k])
    np.savez(out / f"loss-rank{dist.rank}.npz", **res)


def wait_for_file(path: Path) -> None:
    t0 = time.monotonic()
    while not path.exists() and time.monotonic() - t0 < WAIT_S:
        time.sleep(0.01)


def embed(dist, encoder, cache: Path):
    from selector.embed import embed_pool

    x = pool_images()
    return embed_pool(x, digests(x), encoder, "cpu", cache_dir=cache, chunk=CHUNK, dist=dist)[:2]


def main(phase: str, out: Path) -> int:
    import torch

    torch.set_num_threads(1)
    from selector.distributed import DistributedError, init

    if phase == "finish":  # one process: what the killed embedding left, finished from the cache
        from selector.checkpoint import load_encoder
        from selector.embed import embed_pool

        enc, state = load_encoder(out / "b.ckpt")
        x = pool_images()
        emb, n_embedded, _ = embed_pool(x, digests(x), enc, "cpu", cache_dir=out / "cache-b", chunk=CHUNK)
        np.savez(out / "finish.npz", emb=emb, n_embedded=n_embedded,
                 ckpt=[state["world_size"], state["steps_done"], state["total_steps"]])
        return 0
    if phase == "timeout":
        t0 = time.monotonic()
        try:
            init("cpu", timeout_s=TIMEOUT_S)
            (out / "timeout.txt").write_text("joined")
        except DistributedError as e:
            (out / "timeout.txt").write_text(f"{time.monotonic() - t0:.1f}|{e}")
        return 0
    dist = init("cpu")
    try:
        if phase == "reference":
            missing_pool(dist, out)
            loss_and_gradients(dist, out)
            enc = train(dist, out / "a.ckpt", 120.0)
            emb, n_embedded = embed(dist, enc, out / "cache-a")
            if dist.main:
                from selector.embed import embed_array

                np.savez(out / "train-a.npz", **weights(enc))
                np.savez(out / "embed-a.npz", dist=emb, single=embed_array(enc, pool_images()),
                         n_embedded=n_embedded)
        elif phase == "killed":
            import selector.train as train_mod

            save = train_mod.save_checkpoint

            def save_then_pause(path, *a, **kw):
                save(path, *a, **kw)
                if kw.get("steps_done", 0) >= KILL_AFTER_STEP and not (out / "killed.marker").exists():
                    (out / "killed.marker").write_text(str(kw["steps_done"]))
                    wait_for_file(out / "killed.go")  # the test kills rank 1 meanwhile

            train_mod.save_checkpoint = save_then_pause
            try:
                train(dist, out / "b.ckpt", 0.0)
                (out / f"killed-rank{dist.rank}.txt").write_text("finished")
            except DistributedError as e:
                (out / f"killed-rank{dist.rank}.txt").write_text(str(e))
                return 1
        elif phase == "resume":
            enc = train(dist, out / "b.ckpt", 0.0)
            if dist.main:
                np.savez(out / "train-b.npz", **weights(enc))
            if not dist.main:  # rank 1 stops after its first chunk, to be killed there
                import selector.embed as embed_mod

                write = embed_mod._write_chunk

                def write_then_wait(path, *a):
                    write(path, *a)
                    (out / "embed.marker").write_text(path.name)
                    time.sleep(WAIT_S)

                embed_mod._write_chunk = write_then_wait
            try:
                embed(dist, enc, out / "cache-b")
            except DistributedError as e:
                (out / f"embed-killed-rank{dist.rank}.txt").write_text(str(e))
                return 1
        else:
            print(f"unknown phase {phase!r}", file=sys.stderr)
            return 2
    finally:
        dist.close()
    return 0


def _child(spec: dict) -> int:
    out = Path(spec["out"])
    rank = spec["env"].get("RANK", "solo")
    log = os.open(out / f"{spec['phase']}-{rank}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.update(spec["env"])
    try:
        return main(spec["phase"], out)
    except BaseException:  # noqa: BLE001 - the log says why
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def serve() -> None:
    """Import once, then fork the processes of each job read from stdin (see the module docstring)."""
    import sklearn.datasets  # noqa: F401
    import torch  # noqa: F401 - imported before forking: the point of the server

    import selector.distributed  # noqa: F401
    import selector.embed  # noqa: F401
    import selector.losses  # noqa: F401
    import selector.train  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        specs = json.loads(line)
        pids = []
        for spec in specs:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = _child(spec)
                finally:
                    os._exit(code)
            pids.append(pid)
        print(json.dumps({"pids": pids}), flush=True)
        status = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        print(json.dumps({"status": status}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        sys.exit(main(sys.argv[1], Path(sys.argv[2])))
