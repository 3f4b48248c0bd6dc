"""Embedding a pool: batched encoder inference, L2-normalised float32, with an on-disk cache.

The cache is keyed by content, not by path: under ``<cache_dir>/embeddings/<encoder key>/`` each
chunk file holds the content digests of the images it embedded and their vectors. Embedding a pool
looks every image's digest up there and runs the encoder only on the images not seen before, so

* a second run on the same pool with the same encoder embeds nothing;
* adding files embeds only the new ones, removing files embeds nothing; renaming costs nothing;
* an interrupted run keeps every finished chunk (each written atomically) and resumes after it;
* byte-identical files are embedded once.

The encoder key hashes the encoder's weights and configuration and :data:`EMBED_VERSION`, so a
retrained encoder or a change of decoding never reuses stale vectors.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write
from .augment import to_float
from .backbones import Encoder

log = logging.getLogger(__name__)

EMBED_VERSION = 1
CHUNK = 8192


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


def _load_cache(folder: Path) -> dict[str, np.ndarray]:
    known: dict[str, np.ndarray] = {}
    for f in sorted(folder.glob("chunk-*.npz")):
        try:
            with np.load(f, allow_pickle=False) as z:
                for d, v in zip(z["digests"], z["emb"]):
                    known[str(d)] = v
        except Exception as e:  # noqa: BLE001 - a damaged chunk is recomputed, not fatal
            log.warning("ignoring damaged embedding cache file %s: %s", f, e)
    return known


def embed_pool(images: np.ndarray, digests: list[str], encoder: Encoder, device: torch.device | str = "cpu",
               cache_dir: str | os.PathLike | None = None, batch_size: int = 512, progress: bool = False
               ) -> tuple[np.ndarray, int]:
    """Embed a pool's images, reusing cached vectors by content digest.

    Args:
        images: (n, C, S, S) uint8; digests: n content digests (``Pool.digests``).
    Returns:
        ((n, dim) float32 L2-normalised embeddings, number of images the encoder actually ran on).
    """
    if cache_dir is None:
        return embed_array(encoder, images, device, batch_size, progress), len(digests)
    folder = Path(cache_dir) / "embeddings" / encoder_key(encoder)
    folder.mkdir(parents=True, exist_ok=True)
    known = _load_cache(folder)
    first: dict[str, int] = {}
    for i, d in enumerate(digests):
        if d not in known and d not in first:
            first[d] = i
    todo = list(first.values())
    log.info("embedding cache %s: %d of %d images cached, %d to embed", folder, len(digests) - len(todo),
             len(digests), len(todo))
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="embedding", unit="img", leave=False)
    for s in range(0, len(todo), CHUNK):
        rows = todo[s:s + CHUNK]
        emb = embed_array(encoder, images[rows], device, batch_size)
        dg = np.array([digests[i] for i in rows])
        name = hashlib.blake2b("".join(dg).encode(), digest_size=8).hexdigest()
        with atomic_write(folder / f"chunk-{name}.npz", "wb") as f:
            np.savez(f, digests=dg, emb=emb)
        for d, v in zip(dg, emb):
            known[str(d)] = v
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    out = np.stack([known[d] for d in digests]).astype(np.float32, copy=False)
    return np.ascontiguousarray(out), len(todo)
