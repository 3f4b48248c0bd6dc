"""Reading a folder of images into a :class:`~selector.pool.pool.Pool`: list, decode, compact.

:func:`load_folder` lists the files (:mod:`selector.pool.listing`), chooses channels and size from a
sample (:func:`selector.pool.decode.choose_format`), decodes every file in worker processes under a time
limit (:mod:`selector.pool.workers`) into :func:`selector.pool.pool.alloc_images` storage, and keeps the
files that decoded, in sorted order; the others are skipped with their reason (or fail the run).
:func:`load_pool` reads a folder or an ``.npz`` archive (:mod:`selector.pool.npz`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..names import display_name
from .decode import DEFAULT_MAX_PIXELS, choose_format
from .listing import IMAGE_SUFFIXES, list_pool_files
from .npz import load_npz
from .pool import MMAP_THRESHOLD, Pool, PoolError, alloc_images
from .workers import DEFAULT_DECODE_TIMEOUT_S, decode_parallel, decode_serial

log = logging.getLogger(__name__)


def load_folder(root: str | os.PathLike, *, channels: int | None = None, image_size: int | None = None,
                on_bad: str = "skip", max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False,
                workers: int | None = None, timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
                scratch_dir: str | os.PathLike | None = None, mmap_threshold: int = MMAP_THRESHOLD,
                follow_links: bool = False) -> Pool:
    """Read every image under ``root`` (see the module docstrings of :mod:`selector.pool`).

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
    if on_bad not in ("skip", "fail"):
        raise PoolError(f"on_bad must be 'skip' or 'fail', got {on_bad!r}")
    root = Path(root)
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
    channels, image_size = choose_format(root, rel, channels, image_size)
    if channels not in (1, 3):
        raise PoolError(f"channels must be 1 or 3, got {channels}")

    n = len(rel)
    images = alloc_images((n, channels, image_size, image_size), scratch_dir, mmap_threshold)
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, 8, n // 64))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="reading pool", unit="img", leave=False)
    spec = (str(root), channels, image_size, max_pixels)
    if workers <= 0:
        ok, digests, errors = decode_serial(root, rel, spec, images, on_bad, bar)
    else:
        ok, digests, errors = decode_parallel(rel, spec, images, on_bad, workers, timeout_s, bar)
    if bar is not None:
        bar.close()

    skipped = sorted([(rel[i], errors[i]) for i in sorted(errors)] + unusable)
    if on_bad == "fail" and skipped:
        r, reason = skipped[0]
        raise PoolError(f"cannot read image {display_name(root / r)}: {display_name(reason)}")
    for r, reason in skipped:  # names and reasons escaped: nothing raw reaches the terminal
        log.warning("skipping %s: %s", display_name(root / r), display_name(reason))
    keep = np.flatnonzero(ok)
    if len(keep) == 0:
        raise PoolError(f"none of the {len(skipped)} image files in {display_name(root)} could be read "
                        f"(first: {display_name(skipped[0][0])}: {display_name(skipped[0][1])})")
    if len(keep) < n:  # close the gaps left by skipped files, in order (in place: j <= i always)
        for j, i in enumerate(keep):
            if i != j:
                images[j] = images[i]
        images = images[: len(keep)]
    return Pool(ids=[rel[i] for i in keep], images=images, digests=[digests[i] for i in keep], root=root,
                skipped=skipped)


def load_pool(path: str | os.PathLike, **kw) -> Pool:
    """A folder of images or an ``.npz`` archive -> :class:`Pool` (keywords as in :func:`load_folder`)."""
    p = Path(path)
    if p.suffix.lower() == ".npz" and not p.is_dir():
        return load_npz(p, image_size=kw.get("image_size"), channels=kw.get("channels"),
                        scratch_dir=kw.get("scratch_dir"), mmap_threshold=kw.get("mmap_threshold", MMAP_THRESHOLD))
    return load_folder(p, **kw)
