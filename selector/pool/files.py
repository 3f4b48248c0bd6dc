"""Reading files of a pool folder named by their relative paths (the images a selection chose), with the
pool's own reader.

Only a file the pool's listing holds is read (:func:`selector.pool.listing.list_pool_files`: an image file
under the folder, a regular file with a clean name, not behind a link that leaves the pool unless
``follow_links``), so a path that names a FIFO, a device, a file outside the pool or nothing at all is
reported with its reason and never opened. The files are decoded by :class:`selector.pool.workers.Decoder`,
as a pool is: in worker processes under a time limit, refused over the pixel limit, upright (EXIF
orientation), every mode converted (:func:`selector.pool.decode.convert_image`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..names import display_name
from .decode import DEFAULT_MAX_PIXELS, choose_format
from .folder import default_workers
from .listing import list_pool_files
from .pool import PoolError
from .read import decode_side
from .workers import DEFAULT_DECODE_TIMEOUT_S, Decoder


def _why_not_listed(root: Path, rel: str, skipped: dict[str, str], folders: list[tuple[str, str]]) -> str:
    """Why ``rel`` is not one of the pool's image files."""
    if rel in skipped:
        return skipped[rel]
    for folder, reason in folders:
        if rel.startswith(folder + "/"):
            return f"{folder} is {reason}" if reason.startswith("a link") else f"{folder}: {reason}"
    if not os.path.lexists(root / rel):
        return "no such file in the pool"
    return "not one of the pool's image files (outside the pool, hidden, or not an image suffix)"


def read_files(root: str | os.PathLike, rel: Sequence[str], channels: int, side: int, *,
               max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None,
               timeout_s: float = DEFAULT_DECODE_TIMEOUT_S, follow_links: bool = False, on_bad: str = "skip",
               own_size: bool = False) -> tuple[np.ndarray, dict[int, str]]:
    """The files ``rel`` (relative POSIX paths) of the pool folder ``root`` as (n, channels, s, s) uint8, and
    ``{index: reason}`` for those that were not read (their rows are zero); see the module docstring.

    ``side``: the side ``s`` they are decoded at; with ``own_size`` it is capped at the 90th percentile of
    the files' short sides (:func:`selector.pool.read.decode_side`), so small images are not enlarged by the
    decoder (the caller scales them). ``on_bad="fail"`` raises PoolError naming the first file (in the
    order of ``rel``) that cannot be read. ``workers``: decoding processes [default: from the CPU count, at
    least one, so the time limit holds]; 0 decodes in this process."""
    if on_bad not in ("skip", "fail"):
        raise PoolError(f"on_bad must be 'skip' or 'fail', got {on_bad!r}")
    root = Path(root)
    listed, unusable, folders = list_pool_files(root, follow_links)
    usable, skipped = set(listed), dict(unusable)
    errors = {i: _why_not_listed(root, r, skipped, folders) for i, r in enumerate(rel) if r not in usable}
    todo = [i for i in range(len(rel)) if i not in errors]
    if on_bad == "fail" and errors:
        first = min(errors)
        raise PoolError(f"cannot read image {display_name(root / rel[first])}: {display_name(errors[first])}")
    if own_size and todo:
        side = decode_side(side, choose_format(root, [rel[i] for i in todo]).short_side_p90)
    images = np.zeros((len(rel), channels, side, side), dtype=np.uint8)
    if todo:
        out = np.zeros((len(todo), channels, side, side), dtype=np.uint8)
        n_workers = default_workers(len(todo)) if workers is None else workers
        with Decoder(root, max_pixels, n_workers, timeout_s) as dec:
            ok, _, failed = dec.decode([rel[i] for i in todo], channels, side, out, on_bad)
        if on_bad == "fail" and failed:
            k = min(failed)
            raise PoolError(f"cannot read image {display_name(root / rel[todo[k]])}: {display_name(failed[k])}")
        for k, i in enumerate(todo):
            if ok[k]:
                images[i] = out[k]
            else:
                errors[i] = failed[k]
    return images, dict(sorted(errors.items()))
