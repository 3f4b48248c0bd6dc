"""Embedding a pool: batched encoder inference, L2-normalised float32, with an on-disk cache.

The cache is keyed by content, not by path: under ``<cache_dir>/embeddings/<encoder key>/`` each
chunk file holds the content digests of the images it embedded and their vectors. Embedding a pool
looks every image's digest up there and runs the encoder only on the images not seen before, so

* a second run on the same pool with the same encoder embeds nothing;
* adding files embeds only the new ones, removing files embeds nothing; renaming costs nothing;
* an interrupted run keeps every finished chunk (each written atomically) and resumes after it;
* byte-identical files are embedded once.

Memory: the cache is read one chunk file at a time straight into the output array and the images
are read in chunks of ``chunk`` rows (they may be a memory map, :func:`selector.data.alloc_images`),
so the only pool-sized allocation is the (n, dim) float32 result.

Test hook: the environment variable ``SELECTOR_TEST_PAUSE_AFTER_CHUNK_S`` (seconds, default unset)
makes :func:`embed_pool` sleep after writing each chunk. It exists only so a test can kill a run
between two chunks deterministically (``tests/test_resume.py``); it never changes results.

The encoder key hashes the encoder's weights and configuration and :data:`EMBED_VERSION`, so a
retrained encoder or a change of decoding never reuses stale vectors.
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


def embed_pool(images: np.ndarray, digests: list[str], encoder: Encoder, device: torch.device | str = "cpu",
               cache_dir: str | os.PathLike | None = None, batch_size: int = 512, progress: bool = False,
               chunk: int | None = None) -> tuple[np.ndarray, int]:
    """Embed a pool's images, reusing cached vectors by content digest.

    Args:
        images: (n, C, S, S) uint8, in memory or memory-mapped; digests: n content digests
            (``Pool.digests``).
        chunk: images per cache file (default :data:`CHUNK`); each is written atomically when done,
            so an interrupted run loses at most one chunk of work.
    Returns:
        ((n, dim) float32 L2-normalised embeddings, number of images the encoder actually ran on).
    """
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
            dg = np.array([digests[i] for i in rows])
            name = hashlib.blake2b("".join(dg).encode(), digest_size=8).hexdigest()
            with atomic_write(folder / f"chunk-{name}.npz", "wb") as f:
                np.savez(f, digests=dg, emb=emb)
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
