"""Embedding a pool: batched encoder inference, L2-normalised float32, with an on-disk cache.

The cache is keyed by content, not by path: under ``<cache_dir>/embeddings/<encoder key>/`` each
chunk file holds the content digests of the images it embedded and their vectors. Embedding a pool
looks every image's digest up there and runs the encoder only on the images not seen before, so

* a second run on the same pool with the same encoder embeds nothing;
* adding files embeds only the new ones, removing files embeds nothing; renaming costs nothing;
* an interrupted run keeps every finished chunk (each written atomically) and resumes after it;
* byte-identical files are embedded once.

Images come from a decoded array (in memory or memory-mapped, :func:`selector.pool.alloc_images`) or
from a :class:`selector.pool.read.RowReader`, which decodes each chunk straight to the side the encoder
needs while the previous one is embedded, so a folder of any size is never decoded whole. Memory: the
cache is read one chunk file at a time straight into the output array and images are read a batch at a
time, so the only pool-sized allocation is the (n, dim) float32 result. A file that does not decode is
reported (its row in the third value :func:`embed_pool` returns), not embedded.

Precision: ``"bfloat16"`` runs the network under bfloat16 autocast and channels-last (on a CPU with native
bfloat16, several times faster; the embedding benchmark checks that kNN accuracy is unchanged),
``"float32"`` in full precision; :func:`resolve_precision` turns ``"auto"`` into the one to use.

Test hook: the environment variable ``SELECTOR_TEST_PAUSE_AFTER_CHUNK_S`` (seconds, default unset)
makes :func:`embed_pool` sleep after writing each chunk. It exists only so a test can kill a run
between two chunks deterministically (``tests/test_resume.py``); it never changes results.

The encoder key hashes the encoder's weights and configuration, the side the images are decoded at,
the precision and :data:`EMBED_VERSION`, so a retrained encoder, another input or a change of decoding
never reuses stale vectors.

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
from .progress import progress as progress_bar

log = logging.getLogger(__name__)

EMBED_VERSION = 2
CHUNK = 8192  # images per cache file: the unit of resume after an interrupt
#: Images per network batch when embedding a pool, and per chunk the pool's reader decodes ahead: on the CPU,
#: batches of 32 ran EfficientNet-Lite0 at 224 px in bfloat16 1.5 times as fast as batches of 64 (the speed
#: benchmark, ``benchmarks/results/inference``).
EMBED_BATCH = 32
READ_CHUNK = 64
PAUSE_ENV = "SELECTOR_TEST_PAUSE_AFTER_CHUNK_S"  # test-only, see the module docstring
PRECISIONS = ("auto", "float32", "bfloat16")


def bf16_native(device: torch.device) -> bool:
    """Whether bfloat16 runs natively (fast) on ``device``: a CPU with AVX-512 BF16 or AMX (as oneDNN
    reports it); on CUDA, False (not measured here: full precision is kept)."""
    if device.type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"float32"`` or ``"bfloat16"`` for ``precision`` on ``device``: ``"auto"`` is bfloat16 where it runs
    natively (:func:`bf16_native`), else float32; bfloat16 asked for where it does not is float32 too."""
    from .device import resolve_device

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "float32":
        return precision
    native = bf16_native(resolve_device(device))
    if precision == "bfloat16" and not native:
        log.info("bfloat16 does not run natively here; embedding in float32")
    return "bfloat16" if native else "float32"


def encoder_key(encoder: Encoder, side: int | None = None, precision: str = "float32") -> str:
    """Hex digest of an encoder's configuration and weights, the side its images are decoded at (default:
    the encoder's pool side), the precision it runs in, and the package version with the code that reads,
    resizes and embeds the images (:func:`selector.checkpoint.embed_digest`): vectors cached before an
    upgrade or an edit of that code are never reused."""
    from .checkpoint import embed_digest

    h = hashlib.blake2b(digest_size=12)
    h.update(repr(sorted(encoder.config.to_dict().items())).encode())
    h.update(f"embed-v{EMBED_VERSION} side {side or encoder.config.image_size} {precision}".encode())
    h.update(f" code {embed_digest()}".encode())
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def embed_array(encoder: Encoder, images: np.ndarray, device: torch.device | str = "cpu",
                batch_size: int = 512, progress: bool = False, precision: str = "float32",
                channels_last: bool | None = None) -> np.ndarray:
    """(n, C, S, S) uint8 images -> (n, dim) float32 L2-normalised backbone features.

    ``precision``: "float32" or "bfloat16" (autocast; see :func:`resolve_precision`); ``channels_last``:
    the memory format of the network's input and weights (None: on CUDA and with bfloat16; the encoder's
    weights stay in that format, which changes none of its results)."""
    from .device import resolve_device

    device = resolve_device(device)
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be float32 or bfloat16 here, got {precision!r}")
    bf16 = precision == "bfloat16"
    if channels_last is None:
        channels_last = device.type == "cuda" or bf16
    was_training = encoder.training
    encoder.eval().to(device)
    if channels_last:
        encoder.to(memory_format=torch.channels_last)
    n = images.shape[0]
    out = np.empty((n, encoder.dim), dtype=np.float32)
    bar = progress_bar(n, "embedding", "img", enabled=progress and n > 0)
    try:
        for s in range(0, n, batch_size):
            x = to_float(torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).to(device))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                f = encoder.embed(x).float()
            out[s:s + batch_size] = torch.nn.functional.normalize(f, dim=1).cpu().numpy()
            if bar is not None:
                bar.update(min(batch_size, n - s))
    finally:
        encoder.train(was_training)
        if bar is not None:
            bar.close()
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


def _chunk_path(folder: Path, digests: list[str], rows: list[int]) -> Path:
    """The cache file of the chunk planned for ``rows``: the name hashes their digests in order (the file
    holds those of them that decoded)."""
    name = hashlib.blake2b("".join(digests[i] for i in rows).encode(), digest_size=8).hexdigest()
    return folder / f"chunk-{name}.npz"


def _write_chunk(path: Path, dg: np.ndarray, emb: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.savez(f, digests=dg, emb=emb)


class _ArrayRows:
    """Rows of a decoded image array, read as a :class:`selector.pool.read.RowReader` reads them."""

    def __init__(self, images: np.ndarray, batch: int):
        self.images, self.batch = images, batch

    def chunks(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        for s in range(0, len(rows), self.batch):
            part = rows[s:s + self.batch]
            yield self.images[part], part, {}


def _embed_rows(reader, rows: list[int], encoder: Encoder, device, batch_size: int, precision: str,
                failed: dict[int, str], bar) -> tuple[np.ndarray, np.ndarray]:
    """(rows that decoded, their vectors) of ``rows`` read through ``reader``; the others go to ``failed``."""
    got, vecs = [], []
    for imgs, ok_rows, errors in reader.chunks(rows):
        failed.update(errors)
        if len(ok_rows):
            vecs.append(embed_array(encoder, imgs, device, batch_size, precision=precision))
            got.append(ok_rows)
        if bar is not None:
            bar.update(len(ok_rows) + len(errors))
    if not got:
        return np.empty(0, dtype=np.int64), np.empty((0, encoder.dim), dtype=np.float32)
    return np.concatenate(got), np.concatenate(vecs)


def _share_copies(digests: list[str], first: dict[str, int], out: np.ndarray, failed: dict[int, str]) -> None:
    """Byte-identical copies get the vector (or the failure) of their first occurrence."""
    if len(first) == len(digests):
        return
    for i, d in enumerate(digests):
        j = first[d]
        if j != i:
            if j in failed:
                failed[i] = failed[j]
            else:
                out[i] = out[j]


def embed_pool(images, digests: list[str], encoder: Encoder, device: torch.device | str = "cpu",
               cache_dir: str | os.PathLike | None = None, batch_size: int = 512, progress: bool = False,
               chunk: int | None = None, dist=None, *, precision: str = "float32"
               ) -> tuple[np.ndarray | None, int, dict[int, str]]:
    """Embed a pool's images, reusing cached vectors by content digest.

    Args:
        images: (n, C, S, S) uint8, in memory or memory-mapped, or a :class:`selector.pool.read.RowReader`
            of the pool (images decoded at its side, a batch at a time); digests: n content digests
            (``Pool.digests``).
        chunk: images per cache file (default :data:`CHUNK`); each is written atomically when done,
            so an interrupted run loses at most one chunk of work.
        dist: a :class:`selector.distributed.Dist` to share the work among the processes of a torchrun
            job (every rank calls this with the same arguments; ``cache_dir`` is required, ``device`` is
            the rank's own). Only rank 0 gets the embeddings; the other ranks get None.
        precision: "float32" or "bfloat16" (:func:`resolve_precision`); part of the cache key.
    Returns:
        ((n, dim) float32 L2-normalised embeddings, number of images the encoder actually ran on, by
        all processes together, {row: reason} of the images that could not be decoded: their rows of the
        embedding are zero, for the caller to drop).
    """
    n = len(digests)
    if isinstance(images, np.ndarray):
        if images.shape[0] != n:
            raise ValueError(f"{images.shape[0]} images but {n} digests")
        reader, side = _ArrayRows(images, max(batch_size, 1)), int(images.shape[-1])
    else:
        reader, side = images, int(images.side)
    chunk = int(chunk or CHUNK)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    if dist is not None and dist.world > 1:
        return _embed_sharded(reader, side, digests, encoder, dist, cache_dir, batch_size, progress, chunk,
                              precision)
    first: dict[str, int] = {}
    for i, d in enumerate(digests):
        first.setdefault(d, i)
    out = np.zeros((n, encoder.dim), dtype=np.float32)
    have = np.zeros(n, dtype=bool)
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / "embeddings" / encoder_key(encoder, side, precision)
        folder.mkdir(parents=True, exist_ok=True)
        _fill_from_cache(folder, first, out, have)
    todo = [i for i in first.values() if not have[i]]  # ascending: first occurrences in pool order
    log.info("embedding: %d of %d images cached, %d to embed", n - len(todo), n, len(todo))
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    failed: dict[int, str] = {}
    bar = None
    if progress and todo:
        bar = progress_bar(len(todo), "embedding", "img")
    try:
        for s in range(0, len(todo), chunk):
            planned = todo[s:s + chunk]
            rows, emb = _embed_rows(reader, planned, encoder, device, batch_size, precision, failed, bar)
            out[rows] = emb
            if folder is not None:
                _write_chunk(_chunk_path(folder, digests, planned), np.array([digests[i] for i in rows]), emb)
                if pause > 0:
                    time.sleep(pause)
    finally:
        if bar is not None:
            bar.close()
    _share_copies(digests, first, out, failed)
    return out, len(todo) - sum(1 for i in failed if first[digests[i]] == i), failed


def _embed_sharded(reader, side: int, digests: list[str], encoder: Encoder, dist, cache_dir, batch_size: int,
                   progress: bool, chunk: int, precision: str) -> tuple[np.ndarray | None, int, dict[int, str]]:
    """:func:`embed_pool` on every rank of ``dist``: see the module docstring."""
    from .distributed import DistributedError

    n = len(digests)
    if cache_dir is None:
        raise ValueError("embedding on several processes passes each rank's vectors through the cache: give a "
                         "cache folder (cache_dir, --cache-dir)")
    first: dict[str, int] = {}
    for i, d in enumerate(digests):
        first.setdefault(d, i)
    folder = Path(cache_dir) / "embeddings" / encoder_key(encoder, side, precision)
    out = have = None

    def look_up() -> np.ndarray:  # rank 0: what the cache holds already; the rest is the work
        nonlocal out, have
        folder.mkdir(parents=True, exist_ok=True)
        out = np.zeros((n, encoder.dim), dtype=np.float32)
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
    failed: dict[int, str] = {}
    bar = None
    if progress and dist.main and mine:
        bar = progress_bar(sum(map(len, mine)), f"embedding (rank 0 of {dist.world})", "img")
    if mine:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        for planned in mine:
            rows, emb = _embed_rows(reader, planned, encoder, dist.device, batch_size, precision, failed, bar)
            _write_chunk(_chunk_path(folder, digests, planned), np.array([digests[i] for i in rows]), emb)
            if out is not None:
                out[rows] = emb
            if pause > 0:
                time.sleep(pause)
    finally:
        if bar is not None:
            bar.close()
    dist.barrier("embedding (waiting for every rank's chunks)")
    if not dist.main:
        return None, len(todo), failed
    for j, planned in enumerate(chunks):  # rank 0 reads the other ranks' chunks back
        if j % dist.world == 0:
            continue
        path = _chunk_path(folder, digests, planned)
        want = {digests[i]: i for i in planned}
        try:
            with np.load(path, allow_pickle=False) as z:
                dg, emb = z["digests"].tolist(), z["emb"]
                if not set(dg) <= set(want) or emb.shape != (len(dg), encoder.dim):
                    raise ValueError("it holds other images")
                rows = [want[d] for d in dg]
                out[rows] = emb
        except FileNotFoundError:
            raise DistributedError(f"rank 0 cannot see {path}, written by rank {j % dist.world}: the cache folder "
                                   f"{cache_dir} must be on a file system every node shares (--cache-dir)") from None
        except Exception as e:  # noqa: BLE001 - damaged or replaced meanwhile
            raise DistributedError(f"cannot read {path}, written by rank {j % dist.world}: "
                                   f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        for i in set(planned) - set(rows):  # a file that did not decode on that rank
            failed.setdefault(i, f"could not be decoded (on rank {j % dist.world})")
    _share_copies(digests, first, out, failed)
    return out, len(todo) - sum(1 for i in failed if first[digests[i]] == i), failed
