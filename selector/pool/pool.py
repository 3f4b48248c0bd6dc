"""The :class:`Pool` every later step sees, and its storage.

A :class:`Pool` holds ``ids`` (the relative POSIX path of each image under the pool folder, sorted, so index
i means the same file on every run; ``x[i]`` for an ``.npz`` pool), a content digest per item (for the
embedding cache and duplicate detection), the files that were skipped with the reason, and how its images
are read (:class:`PoolFormat`). Its images are either decoded already (``images``, (n, C, S, S) uint8: an
``.npz`` pool, or a folder read whole for an encoder trained on it) or read on demand, a chunk of rows at a
time at any side (``source``, see :func:`selector.pool.read.read_rows`), so a folder of a million photos
embedded by a pretrained backbone is never decoded whole, in memory or on disk. The pool folder is only
ever read.

Byte-identical files are kept but marked by :meth:`Pool.duplicate_mask`, so a selection never takes two
copies of the same image. Pools larger than ``mmap_threshold`` bytes once decoded are written to a
memory-mapped scratch file (:func:`alloc_images`; removed as soon as it is mapped, so even ``kill -9``
leaves nothing), so a pool of a million images is never held in memory.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 256 << 20  # decoded pools larger than this many bytes go to a memory-mapped scratch file


class PoolError(ValueError):
    """A pool that cannot be read; the message names the path or value."""


@dataclass(frozen=True)
class PoolFormat:
    """How a pool's images are read: ``channels`` (1 or 3) and ``size``, the side the whole pool is decoded
    at for an encoder trained on it (:func:`selector.pool.decode.choose_size`); and, from the sampled
    headers, the median and the 90th percentile of the images' short sides (0 when unknown): no image is
    decoded for a pretrained backbone at a side larger than the pool's images are."""

    channels: int
    size: int
    short_side: int = 0
    short_side_p90: int = 0


@dataclass
class Pool:
    """The items of a pool, in a stable order, and how to read their images.

    Attributes:
        ids: n item ids: relative POSIX paths under ``root`` (folder pools) or ``x[i]`` (npz pools).
        images: (n, C, S, S) uint8 array, C in {1, 3}, when the pool is decoded; None when its images are
            read on demand through ``source`` (:func:`selector.pool.read.read_rows`).
        digests: n hex content digests (of the file bytes, or of the array row for npz pools).
        root: the pool folder or npz file.
        labels: (n,) int64 labels from an npz ``y`` array, else None. Selection never reads them.
        skipped: (relative path, reason) for each file that could not be used.
        format: channels, decoding side and image sizes (:class:`PoolFormat`); None: from ``images``.
        source: what reads rows of a pool that is not decoded (a folder's decoder settings).
    """

    ids: list[str]
    images: np.ndarray | None
    digests: list[str]
    root: Path
    labels: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    format: PoolFormat | None = None
    source: Any = None

    def __post_init__(self) -> None:
        if self.format is None:
            if self.images is None:
                raise ValueError("a pool needs its images or its format")
            self.format = PoolFormat(int(self.images.shape[1]), int(self.images.shape[2]),
                                     int(self.images.shape[2]), int(self.images.shape[2]))

    @property
    def decoded(self) -> bool:
        """Whether ``images`` holds every image of the pool."""
        return self.images is not None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1]) if self.images is not None else self.format.channels

    @property
    def size(self) -> int:
        """The side of ``images`` (or the side the pool would be decoded at)."""
        return int(self.images.shape[2]) if self.images is not None else self.format.size

    def subset(self, keep: np.ndarray, skipped: Sequence[tuple[str, str]] = ()) -> "Pool":
        """The pool of rows ``keep`` (sorted indices), with ``skipped`` added to the skipped files."""
        keep = np.asarray(keep, dtype=np.int64)
        return replace(self, ids=[self.ids[i] for i in keep], digests=[self.digests[i] for i in keep],
                       images=None if self.images is None else self.images[keep],
                       labels=None if self.labels is None else self.labels[keep],
                       skipped=sorted([*self.skipped, *skipped]),
                       source=None if self.source is None else self.source.subset(keep))

    @property
    def n_duplicates(self) -> int:
        """Items that are byte-identical to an earlier item of the pool."""
        return int(duplicate_mask(self.digests).sum())

    def duplicate_mask(self, labeled: np.ndarray | None = None) -> np.ndarray:
        """(n,) bool: items that must not be chosen because they repeat another item; see
        :func:`duplicate_mask`."""
        return duplicate_mask(self.digests, labeled)

    @property
    def key(self) -> str:
        """Digest of the pool's content and decoding (ids, file digests, channels, size)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.channels}x{self.size}\n".encode())
        for i, d in zip(self.ids, self.digests):
            h.update(i.encode("utf-8", "surrogateescape") + b"\0" + d.encode() + b"\n")
        return h.hexdigest()


def duplicate_mask(digests: Sequence[str], labeled: np.ndarray | None = None) -> np.ndarray:
    """(n,) bool mask of items not to choose because they are copies of another item.

    Items with the same content digest form a set of copies. The first item of each set (in pool
    order) stays selectable and the others are marked; when any copy is already labeled (``labeled``,
    (n,) bool) every unlabeled copy is marked, since that image is labeled already.
    """
    n = len(digests)
    first: dict[str, int] = {}
    out = np.zeros(n, dtype=bool)
    for i, d in enumerate(digests):
        if d in first:
            out[i] = True
        else:
            first[d] = i
    if labeled is not None and labeled.any() and out.any():
        done = {digests[i] for i in np.flatnonzero(labeled)}
        for i, d in enumerate(digests):
            if d in done and not labeled[i]:
                out[i] = True
    if labeled is not None:
        out &= ~labeled
    return out


def alloc_images(shape: tuple[int, ...], scratch_dir: str | os.PathLike | None = None,
                 mmap_threshold: int = MMAP_THRESHOLD) -> np.ndarray:
    """An uninitialised uint8 array: in memory when it is at most ``mmap_threshold`` bytes, else
    memory-mapped on a scratch file in ``scratch_dir`` (default: the system temp folder).

    The scratch file's blocks are reserved up front (a full disk is an error here, not a crash in the
    middle of decoding) and the file is unlinked once mapped: it lives as long as the mapping and
    vanishes with the process, even after ``kill -9``.
    """
    nbytes = int(np.prod(shape, dtype=np.int64))
    if nbytes <= mmap_threshold:
        return np.empty(shape, dtype=np.uint8)
    folder = Path(scratch_dir) if scratch_dir is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".pool-", suffix=".u8", dir=folder)
    try:
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, nbytes)
            else:  # pragma: no cover - non-POSIX
                os.ftruncate(fd, nbytes)
        except OSError as e:
            raise PoolError(f"cannot reserve {nbytes / 2**30:.2f} GiB for the decoded pool in {folder}: "
                            f"{e.strerror or e}") from e
        arr = np.memmap(name, dtype=np.uint8, mode="r+", shape=shape)
    finally:
        os.close(fd)
        try:
            os.unlink(name)
        except OSError:  # pragma: no cover - Windows keeps open files; the OS temp cleaner removes it
            pass
    log.info("decoded pool (%.2f GiB) is memory-mapped on a scratch file in %s", nbytes / 2**30, folder)
    return arr
