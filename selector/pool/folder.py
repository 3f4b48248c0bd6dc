"""Reading a folder of images into a :class:`~selector.pool.pool.Pool`: list, digest, decode.

:func:`scan_folder` lists the files (:mod:`selector.pool.listing`), chooses channels and size from a sample
of headers (:func:`selector.pool.decode.choose_format`) and reads every file once for its content digest,
without decoding: the pool's images are then read on demand, a chunk of rows at a time at the side asked
(:class:`FolderSource`, :func:`selector.pool.read.read_rows`), in worker processes under a time limit
(:mod:`selector.pool.workers`). :func:`load_folder` also decodes every file at the pool's side into
:func:`selector.pool.pool.alloc_images` storage (what an encoder trained on the pool needs) and keeps the
files that decoded, in sorted order; the others are skipped with their reason (or fail the run).
:func:`load_pool` reads a folder or an ``.npz`` archive (:mod:`selector.pool.npz`).
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..names import display_name
from ..progress import progress as progress_bar
from .decode import DEFAULT_MAX_PIXELS, choose_format, digest_file, failure_reason
from .listing import IMAGE_SUFFIXES, list_pool_files
from .npz import load_npz
from .pool import MMAP_THRESHOLD, Pool, PoolError, alloc_images
from .workers import DEFAULT_DECODE_TIMEOUT_S, Decoder

log = logging.getLogger(__name__)

#: Threads reading files for their digests (I/O bound: the hash releases the GIL on large reads).
DIGEST_THREADS = 8


@dataclass(frozen=True)
class FolderSource:
    """How the files of a folder pool are decoded on demand: the pool's relative paths (in pool order) and
    the decoder's settings (see :class:`selector.pool.workers.Decoder`)."""

    root: Path
    rel: tuple[str, ...]
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = 1
    timeout_s: float = DEFAULT_DECODE_TIMEOUT_S

    def decoder(self) -> Decoder:
        return Decoder(self.root, self.max_pixels, self.workers, self.timeout_s)

    def subset(self, keep: np.ndarray) -> "FolderSource":
        return FolderSource(self.root, tuple(self.rel[i] for i in keep), self.max_pixels, self.workers,
                            self.timeout_s)


def default_workers(n: int) -> int:
    """Decoding processes for a pool of ``n`` files: from the CPU count, at least one (so the time limit
    holds), at most 8."""
    return max(1, min(os.cpu_count() or 1, 8, n // 64))


def _listed(root: Path, on_bad: str, follow_links: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """The image files of ``root`` and the unusable ones, after the checks every folder pool gets."""
    if on_bad not in ("skip", "fail"):
        raise PoolError(f"on_bad must be 'skip' or 'fail', got {on_bad!r}")
    rel, unusable, folders = list_pool_files(root, follow_links)
    for r, reason in folders:
        log.warning("not reading %s: %s", display_name(root / r), reason)
    if unusable and on_bad == "fail":
        r, reason = unusable[0]
        raise PoolError(f"cannot read image {display_name(root / r)}: {reason}")
    if not rel and unusable:
        r, reason = unusable[0]
        raise PoolError(f"none of the {len(unusable)} image files in {display_name(root)} could be read "
                        f"(first: {display_name(r)}: {reason})")
    if not rel:
        n_other = sum(len(f) for _, _, f in os.walk(root))
        what = "the folder is empty" if n_other == 0 else f"{n_other} other files"
        raise PoolError(f"no image files in pool folder {root} ({what}; looked for "
                        f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    return rel, unusable


def _kept(root: Path, rel: list[str], ok: np.ndarray, errors: dict[int, str], unusable, on_bad: str,
          warned=()) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """(rows that were read, every skipped file with its reason: ``unusable`` and ``warned`` ones too); warns
    about each skip not in ``warned`` (skips reported already), or raises with ``on_bad="fail"``, or when
    nothing could be read."""
    new = sorted([(rel[i], errors[i]) for i in sorted(errors)] + list(unusable))
    skipped = sorted(new + list(warned))
    if on_bad == "fail" and new:
        r, reason = new[0]
        raise PoolError(f"cannot read image {display_name(root / r)}: {display_name(reason)}")
    for r, reason in new:  # names and reasons escaped: nothing raw reaches the terminal
        log.warning("skipping %s: %s", display_name(root / r), display_name(reason))
    keep = np.flatnonzero(ok)
    if len(keep) == 0:
        raise PoolError(f"none of the {len(skipped)} image files in {display_name(root)} could be read "
                        f"(first: {display_name(skipped[0][0])}: {display_name(skipped[0][1])})")
    return keep, skipped


def scan_folder(root: str | os.PathLike, *, channels: int | None = None, image_size: int | None = None,
                on_bad: str = "skip", max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False,
                workers: int | None = None, timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
                follow_links: bool = False) -> Pool:
    """The pool of every image file under ``root``, not decoded: ids, content digests and format; its
    images are read on demand (:func:`selector.pool.read.read_rows`). Files that cannot be read are skipped
    (or fail the run); a file that reads but does not decode is found when it is decoded. Keywords as in
    :func:`load_folder`."""
    root = Path(root)
    rel, unusable = _listed(root, on_bad, follow_links)
    fmt = choose_format(root, rel, channels, image_size)
    if fmt.channels not in (1, 3):
        raise PoolError(f"channels must be 1 or 3, got {fmt.channels}")
    n = len(rel)
    digests: list[str] = [""] * n
    errors: dict[int, str] = {}
    bar = progress_bar(n, "reading pool", "img", enabled=progress)

    def one(i: int) -> None:
        try:
            digests[i] = digest_file(root / rel[i])
        except Exception as e:  # noqa: BLE001 - every unreadable file becomes a named skip or error
            errors[i] = failure_reason(e)
        if bar is not None:
            bar.update(1)

    with ThreadPoolExecutor(DIGEST_THREADS) as ex:
        list(ex.map(one, range(n)))
    if bar is not None:
        bar.close()
    ok = np.ones(n, dtype=bool)
    ok[list(errors)] = False
    keep, skipped = _kept(root, rel, ok, errors, unusable, on_bad)
    kept = [rel[i] for i in keep]
    source = FolderSource(root, tuple(kept), max_pixels, default_workers(n) if workers is None else workers,
                          timeout_s)
    return Pool(ids=kept, images=None, digests=[digests[i] for i in keep], root=root, skipped=skipped, format=fmt,
                source=source)


def load_folder(root: str | os.PathLike, *, channels: int | None = None, image_size: int | None = None,
                on_bad: str = "skip", max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False,
                workers: int | None = None, timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
                scratch_dir: str | os.PathLike | None = None, mmap_threshold: int = MMAP_THRESHOLD,
                follow_links: bool = False) -> Pool:
    """Read and decode every image under ``root`` (see the module docstrings of :mod:`selector.pool`).

    Args:
        channels: 1 or 3 to force grayscale or RGB; None chooses from the pool.
        image_size: side S to force; None chooses from the pool.
        on_bad: "skip" (log a warning, count it in ``Pool.skipped``) or "fail" (raise PoolError naming
            the file) for files that cannot be decoded.
        workers: decoding processes; None picks from the CPU count and pool size (at least one, so the
            time limit holds); 0 decodes in this process (no time limit).
        timeout_s: seconds one file may take to decode before its worker is killed and the file is
            treated as unreadable.
        scratch_dir, mmap_threshold: see :func:`alloc_images`.
        follow_links: also read folders that symbolic links lead to outside ``root`` (see
            :func:`list_pool_files`; the system's special file systems are never read).
    """
    root = Path(root)
    rel, unusable = _listed(root, on_bad, follow_links)
    fmt = choose_format(root, rel, channels, image_size)
    if fmt.channels not in (1, 3):
        raise PoolError(f"channels must be 1 or 3, got {fmt.channels}")
    n = len(rel)
    images = alloc_images((n, fmt.channels, fmt.size, fmt.size), scratch_dir, mmap_threshold)
    if workers is None:
        workers = default_workers(n)
    bar = progress_bar(n, "reading pool", "img", enabled=progress)
    with Decoder(root, max_pixels, workers, timeout_s) as dec:
        ok, digests, errors = dec.decode(rel, fmt.channels, fmt.size, images, on_bad, bar)
    if bar is not None:
        bar.close()
    keep, skipped = _kept(root, rel, ok, errors, unusable, on_bad)
    if len(keep) < n:  # close the gaps left by skipped files, in order (in place: j <= i always)
        for j, i in enumerate(keep):
            if i != j:
                images[j] = images[i]
        images = images[: len(keep)]
    kept = [rel[i] for i in keep]
    return Pool(ids=kept, images=images, digests=[digests[i] for i in keep], root=root, skipped=skipped, format=fmt,
                source=FolderSource(root, tuple(kept), max_pixels, workers, timeout_s))


def decode_pool(pool: Pool, *, on_bad: str = "skip", progress: bool = False,
                scratch_dir: str | os.PathLike | None = None, mmap_threshold: int = MMAP_THRESHOLD) -> Pool:
    """``pool`` with every image decoded at its side (``pool.format``), for what needs the whole pool (an
    encoder trained on it, the pixel view): a folder pool's files are decoded as :func:`load_folder`
    decodes them, those that do not decode dropped and listed in ``skipped`` (or fail the run). A pool
    that is decoded already is returned as it is."""
    if pool.images is not None:
        return pool
    src = pool.source
    rel = list(src.rel)
    n = len(rel)
    fmt = pool.format
    images = alloc_images((n, fmt.channels, fmt.size, fmt.size), scratch_dir, mmap_threshold)
    bar = progress_bar(n, "decoding pool", "img", enabled=progress)
    with src.decoder() as dec:
        ok, _, errors = dec.decode(rel, fmt.channels, fmt.size, images, on_bad, bar)
    if bar is not None:
        bar.close()
    keep, skipped = _kept(src.root, rel, ok, errors, (), on_bad, warned=pool.skipped)
    if len(keep) < n:  # close the gaps left by skipped files, in order (in place: j <= i always)
        for j, i in enumerate(keep):
            if i != j:
                images[j] = images[i]
        images = images[: len(keep)]
    out = pool.subset(keep)
    out.images, out.skipped = images, skipped
    return out


def load_pool(path: str | os.PathLike, decode: bool = True, **kw) -> Pool:
    """A folder of images or an ``.npz`` archive -> :class:`Pool` (keywords as in :func:`load_folder`).
    ``decode=False``: a folder is only scanned (:func:`scan_folder`), its images read on demand."""
    p = Path(path)
    if p.suffix.lower() == ".npz" and not p.is_dir():
        return load_npz(p, image_size=kw.get("image_size"), channels=kw.get("channels"),
                        scratch_dir=kw.get("scratch_dir"), mmap_threshold=kw.get("mmap_threshold", MMAP_THRESHOLD))
    if not decode:
        kw.pop("scratch_dir", None)
        kw.pop("mmap_threshold", None)
        return scan_folder(p, **kw)
    return load_folder(p, **kw)
