"""Reading a pool's images a chunk of rows at a time, at the side an encoder needs.

A pretrained backbone takes a larger input than the side a whole pool is decoded at for an encoder trained
on it; its images are decoded straight to that side, chunk by chunk (:class:`RowReader`), so a folder of any
size is never decoded whole. :func:`decode_side` caps the side at the pool's own image size: small images
are decoded at their size and the network resizes them, as it would any image.

Reading overlaps the work on the previous chunk: the next chunk is decoded by the worker processes (or in a
thread, without workers) while the caller embeds the current one.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np

from .npz import resize_images
from .pool import Pool


def decode_side(side: int, short_side_p90: int, pool_side: int = 0) -> int:
    """The side images are decoded at for a network input of ``side``: ``side``, or the pool's own image size
    when that is smaller: the larger of the 90th percentile of its short sides (``short_side_p90``, 0 when
    unknown) and the side the whole pool is decoded at (``pool_side``). No image is decoded larger than the
    pool's images are; the network resizes."""
    own = max(short_side_p90, pool_side)
    return int(min(side, own)) if own > 0 else int(side)


class RowReader:
    """Reads rows of ``pool`` as (channels, side, side) uint8, in chunks of ``batch`` rows (see the module
    docstring). A context manager: the decoder's worker processes (folder pools) live until it closes.

    ``on_bad``: "skip" (a file that does not decode is reported in the chunk's errors) or "fail" (raises
    PoolError naming it)."""

    def __init__(self, pool: Pool, side: int, batch: int = 256, on_bad: str = "skip", prefetch: bool = True):
        self.pool, self.side, self.batch, self.on_bad, self.prefetch = pool, int(side), int(batch), on_bad, prefetch
        self._decoder = None
        self._lock = threading.Lock()  # one chunk decodes at a time (the decoder's workers are shared)

    def __enter__(self) -> "RowReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        """(images of the rows that were read, those rows, {row: reason} for those that failed)."""
        rows = np.asarray(rows, dtype=np.int64)
        pool, side = self.pool, self.side
        if pool.images is not None and side == pool.size:
            return np.asarray(pool.images[rows]), rows, {}
        src = pool.source
        if src is None:
            return resize_images(np.asarray(pool.images[rows]), side), rows, {}
        if not hasattr(src, "decoder"):  # an array source: resized, never fails
            return src.read(rows, side), rows, {}
        with self._lock:
            if self._decoder is None:
                self._decoder = src.decoder()
            out = np.empty((len(rows), pool.channels, side, side), dtype=np.uint8)
            ok, _, errors = self._decoder.decode([src.rel[i] for i in rows], pool.channels, side, out, self.on_bad)
        if self.on_bad == "fail" and errors:
            from ..names import display_name
            from .pool import PoolError

            first = min(errors)
            raise PoolError(f"cannot read image {display_name(src.root / src.rel[rows[first]])}: "
                            f"{display_name(errors[first])}")
        keep = np.flatnonzero(ok)
        return out[keep], rows[keep], {int(rows[i]): reason for i, reason in errors.items()}

    def chunks(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, dict[int, str]]]:
        """:meth:`read` of ``rows`` in chunks of ``batch``, the next chunk read while the caller works on
        the current one."""
        rows = np.asarray(rows, dtype=np.int64)
        parts = [rows[s:s + self.batch] for s in range(0, len(rows), self.batch)]
        if not self.prefetch or len(parts) < 2:
            for part in parts:
                yield self.read(part)
            return
        ex = ThreadPoolExecutor(1, thread_name_prefix="selector-read")
        done = False
        try:
            ahead: Future = ex.submit(self.read, parts[0])
            for k in range(len(parts)):
                got = ahead.result()
                if k + 1 < len(parts):
                    ahead = ex.submit(self.read, parts[k + 1])
                yield got
            done = True
        finally:
            if not done and self._decoder is not None:  # interrupted: the read under way stops, its workers die
                self._decoder.abort()
            ex.shutdown(wait=True, cancel_futures=True)
