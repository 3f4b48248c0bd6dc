"""Embedding a pool: batched encoder inference, L2-normalised float32, with an on-disk cache.

The cache is keyed by content, not by path: under ``<cache_dir>/embeddings/<encoder key>/`` each
chunk file holds the content digests of the images it embedded and their vectors. Embedding a pool
looks every image's digest up there and runs the encoder only on the images not seen before, so

* a second run on the same pool with the same encoder embeds nothing;
* adding files embeds only the new ones, removing files embeds nothing; renaming costs nothing;
* an interrupted run keeps every finished chunk (each written atomically) and resumes after it;
* byte-identical files are embedded once.

Memory: the cache is read one chunk file at a time straight into the output array and the images
are read in chunks of ``chunk`` rows (they may be a memory map, :func:`selector.pool.alloc_images`),
so the only pool-sized allocation is the (n, dim) float32 result.

Test hook: the environment variable ``SELECTOR_TEST_PAUSE_AFTER_CHUNK_S`` (seconds, default unset)
makes :func:`embed_pool` sleep after writing each chunk. It exists only so a test can kill a run
between two chunks deterministically (``tests/test_resume.py``); it never changes results.

The encoder key hashes the encoder's weights and configuration and :data:`EMBED_VERSION`, so a
retrained encoder or a change of decoding never reuses stale vectors.

Several processes (``dist``, :mod:`selector.distributed`): rank 0 looks the pool up in the cache and
tells every rank which images are left; the chunks of those are dealt out by rank (chunk j to rank
j mod world), each rank embeds its chunks and writes them into the cache itself, atomically, with the
names and contents one process would write; then rank 0 reads them back into the result. So a job
killed mid-way keeps every finished chunk of every rank, and a rerun, with any number of processes or
one, embeds only what is missing. The cache folder must be one that every node sees (a shared file
system) for rank 0 to read the other ranks' chunks; when it is not, rank 0 says so in one line.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .augment import to_float
from .backbones import Encoder

log = logging.getLogger(__name__)

EMBED_VERSION = 1
CHUNK = 8192  # images per cache file: the unit of resume after an interrupt
PAUSE_ENV = "SELECTOR_TEST_PAUSE_AFTER_CHUNK_S"  # test-only, see the module docstring


def encoder_key(encoder: Encoder) -> str:
    """Hex digest of an encoder's configuration and weights."""
    h = hashlib.blake2b(digest_size=12)
    h.update(repr(sorted(encoder.config.to_dict().items())).encode())
    h.update(f"embed-v{EMBED_VERSION}".encode())
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def embed_array(encoder: Encoder, images: np.ndarray, device: torch.device | str = "cpu",
                batch_size: int = 512, progress: bool = False) -> np.ndarray:
    """(n, C, S, S) uint8 images -> (n, dim) float32 L2-normalised backbone features."""
    from .device import resolve_device

    device = resolve_device(device)
    was_training = encoder.training
    encoder.eval().to(device)
    n = images.shape[0]
    out = np.empty((n, encoder.dim), dtype=np.float32)
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="embedding", unit="batch", leave=False)
    for s in starts:
        x = to_float(torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).to(device))
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        f = encoder.embed(x).float()
        out[s:s + batch_size] = torch.nn.functional.normalize(f, dim=1).cpu().numpy()
    encoder.train(was_training)
    return out


def _fill_from_cache(folder: Path, first: dict[str, int], out: np.ndarray, have: np.ndarray) -> None:
    """Copy cached vectors of the digests in ``first`` (digest -> row) into ``out``; mark ``have``."""
    dim = out.shape[1]
    for f in sorted(folder.glob("chunk-*.npz")):
        try:
            with np.load(f, allow_pickle=False) as z:
                dg = z["digests"]
                rows, src = [], []
                for j, d in enumerate(dg.tolist()):
                    i = first.get(d)
                    if i is not None and not have[i]:
                        rows.append(i)
                        src.append(j)
                if not rows:
                    continue
                emb = z["emb"]
                if emb.shape != (len(dg), dim) or emb.dtype != np.float32:
                    raise ValueError(f"vectors of shape {emb.shape} {emb.dtype} for {len(dg)} digests of dim {dim}")
                out[rows] = emb[src]
                have[rows] = True
        except Exception as e:  # noqa: BLE001 - a damaged chunk is recomputed, not fatal
            log.warning("ignoring damaged embedding cache file %s: %s", f, str(e).splitlines()[0] if str(e) else e)


def _chunk_path(folder: Path, digests: list[str], rows: list[int]) -> tuple[Path, np.ndarray]:
    """(cache file of the chunk holding ``rows``, their digests): the name hashes the digests in order."""
    dg = np.array([digests[i] for i in rows])
    name = hashlib.blake2b("".join(dg).encode(), digest_size=8).hexdigest()
    return folder / f"chunk-{name}.npz", dg


def _write_chunk(path: Path, dg: np.ndarray, emb: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, digests=dg, emb=emb)


def embed_pool(images: np.ndarray, digests: list[str], encoder: Encoder, device: torch.device | str = "cpu",
               cache_dir: str | os.PathLike | None = None, batch_size: int = 512, progress: bool = False,
               chunk: int | None = None, dist=None) -> tuple[np.ndarray | None, int]:
    """Embed a pool's images, reusing cached vectors by content digest.

    Args:
        images: (n, C, S, S) uint8, in memory or memory-mapped; digests: n content digests
            (``Pool.digests``).
        chunk: images per cache file (default :data:`CHUNK`); each is written atomically when done,
            so an interrupted run loses at most one chunk of work.
        dist: a :class:`selector.distributed.Dist` to share the work among the processes of a torchrun
            job (every rank calls this with the same arguments; ``cache_dir`` is required, ``device`` is
            the rank's own). Only rank 0 gets the embeddings; the other ranks get None.
    Returns:
        ((n, dim) float32 L2-normalised embeddings, number of images the encoder actually ran on, by
        all processes together).
    """
    if dist is not None and dist.world > 1:
        return _embed_sharded(images, digests, encoder, dist, cache_dir, batch_size, progress, chunk)
    n = len(digests)
    if images.shape[0] != n:
        raise ValueError(f"{images.shape[0]} images but {n} digests")
    chunk = int(chunk or CHUNK)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    first: dict[str, int] = {}
    for i, d in enumerate(digests):
        first.setdefault(d, i)
    out = np.empty((n, encoder.dim), dtype=np.float32)
    have = np.zeros(n, dtype=bool)
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / "embeddings" / encoder_key(encoder)
        folder.mkdir(parents=True, exist_ok=True)
        _fill_from_cache(folder, first, out, have)
    todo = [i for i in first.values() if not have[i]]  # ascending: first occurrences in pool order
    log.info("embedding: %d of %d images cached, %d to embed", n - len(todo), n, len(todo))
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="embedding", unit="img", leave=False)
    for s in range(0, len(todo), chunk):
        rows = todo[s:s + chunk]
        emb = embed_array(encoder, images[rows], device, batch_size)
        out[rows] = emb
        if folder is not None:
            _write_chunk(*_chunk_path(folder, digests, rows), emb)
            if pause > 0:
                time.sleep(pause)
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    if len(first) < n:  # byte-identical copies share the vector of their first occurrence
        for i, d in enumerate(digests):
            j = first[d]
            if j != i:
                out[i] = out[j]
    return out, len(todo)


def _embed_sharded(images: np.ndarray, digests: list[str], encoder: Encoder, dist, cache_dir, batch_size: int,
                   progress: bool, chunk: int | None) -> tuple[np.ndarray | None, int]:
    """:func:`embed_pool` on every rank of ``dist``: see the module docstring."""
    from .distributed import DistributedError

    n = len(digests)
    if images.shape[0] != n:
        raise ValueError(f"{images.shape[0]} images but {n} digests")
    if cache_dir is None:
        raise ValueError("embedding on several processes passes each rank's vectors through the cache: give a "
                         "cache folder (cache_dir, --cache-dir)")
    chunk = int(chunk or CHUNK)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    first: dict[str, int] = {}
    for i, d in enumerate(digests):
        first.setdefault(d, i)
    folder = Path(cache_dir) / "embeddings" / encoder_key(encoder)
    out = have = None

    def look_up() -> np.ndarray:  # rank 0: what the cache holds already; the rest is the work
        nonlocal out, have
        folder.mkdir(parents=True, exist_ok=True)
        out = np.empty((n, encoder.dim), dtype=np.float32)
        have = np.zeros(n, dtype=bool)
        _fill_from_cache(folder, first, out, have)
        return np.array([i for i in first.values() if not have[i]], dtype=np.int64)

    todo = dist.on_main(look_up).tolist()
    chunks = [todo[s:s + chunk] for s in range(0, len(todo), chunk)]
    mine = chunks[dist.rank::dist.world]
    if dist.main:
        log.info("embedding on %d processes: %d of %d images cached, %d to embed in %d chunks", dist.world,
                 n - len(todo), n, len(todo), len(chunks))
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    bar = None
    if progress and dist.main and mine:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(len, mine)), desc=f"embedding (rank 0 of {dist.world})", unit="img", leave=False)
    if mine:
        folder.mkdir(parents=True, exist_ok=True)
    for rows in mine:
        emb = embed_array(encoder, images[rows], dist.device, batch_size)
        _write_chunk(*_chunk_path(folder, digests, rows), emb)
        if out is not None:
            out[rows] = emb
        if pause > 0:
            time.sleep(pause)
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    dist.barrier("embedding (waiting for every rank's chunks)")
    if not dist.main:
        return None, len(todo)
    for j, rows in enumerate(chunks):  # rank 0 reads the other ranks' chunks back
        if j % dist.world == 0:
            continue
        path, dg = _chunk_path(folder, digests, rows)
        try:
            with np.load(path, allow_pickle=False) as z:
                if z["digests"].tolist() != dg.tolist() or z["emb"].shape != (len(rows), encoder.dim):
                    raise ValueError("it holds other images")
                out[rows] = z["emb"]
        except FileNotFoundError:
            raise DistributedError(f"rank 0 cannot see {path}, written by rank {j % dist.world}: the cache folder "
                                   f"{cache_dir} must be on a file system every node shares (--cache-dir)") from None
        except Exception as e:  # noqa: BLE001 - damaged or replaced meanwhile
            raise DistributedError(f"cannot read {path}, written by rank {j % dist.world}: "
                                   f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if len(first) < n:  # byte-identical copies share the vector of their first occurrence
        for i, d in enumerate(digests):
            j = first[d]
            if j != i:
                out[i] = out[j]
    return out, len(todo)
