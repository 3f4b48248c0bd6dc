"""The user cache folder: trained encoders and embeddings, keyed by content, shared by every run.

Layout (each entry is content-keyed, so one folder serves every pool and every output folder):

* ``encoders/encoder-<key>.pt``: a trained encoder (key: the pool's content, encoder and
  training configuration), resumable while training;
* ``embeddings/<encoder key>/chunk-<hash>.npz``: embedding vectors by image content digest.

:func:`default_cache_dir` is ``$XDG_CACHE_HOME/selector`` (``~/.cache/selector`` when unset; on
Windows ``%LOCALAPPDATA%\\selector\\Cache``). :func:`cache_entries` lists the entries,
:func:`prune` removes those not used for a while (or all), newest use first kept.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

APP = "selector"


def default_cache_dir() -> Path:
    """The per-user cache folder (not created here)."""
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / APP / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"  # XDG: relative is invalid
    return base / APP


@dataclass(frozen=True)
class Entry:
    """One cache entry: a trained encoder file, or one encoder's folder of embeddings."""

    kind: str        # "encoder" or "embeddings"
    path: Path
    bytes: int
    files: int
    last_used: float  # newest modification or access time of its files (seconds since the epoch)


def _stat_tree(path: Path) -> tuple[int, int, float]:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    size, newest = 0, 0.0
    for f in files:
        try:
            st = f.stat()
        except FileNotFoundError:  # removed meanwhile
            continue
        size += st.st_size
        newest = max(newest, st.st_mtime, st.st_atime)
    if not files:
        newest = path.stat().st_mtime
    return size, len(files), newest


def cache_entries(cache_dir: str | os.PathLike) -> list[Entry]:
    """The entries under ``cache_dir``, oldest use first. A missing folder has none."""
    root = Path(cache_dir)
    out = []
    for p in sorted((root / "encoders").glob("encoder-*")) if (root / "encoders").is_dir() else []:
        if p.is_file():
            out.append(Entry("encoder", p, *_stat_tree(p)))
    for p in sorted((root / "embeddings").iterdir()) if (root / "embeddings").is_dir() else []:
        if p.is_dir():
            out.append(Entry("embeddings", p, *_stat_tree(p)))
    return sorted(out, key=lambda e: e.last_used)


def prune(cache_dir: str | os.PathLike, older_than_days: float | None = None, keep_bytes: float | None = None,
          dry_run: bool = False, now: float | None = None) -> list[Entry]:
    """Remove cache entries; returns those removed (or that would be, with ``dry_run``).

    Args:
        older_than_days: remove entries not used for longer than this (``math.inf``: none is that old).
        keep_bytes: then remove the least recently used entries until the rest fit in this many bytes
            (``math.inf``: no limit, nothing is removed for size).
        With neither, everything is removed. NaN or a negative value is a ValueError (NaN compares false
        with everything, so it would otherwise remove every entry).
    """
    for what, value in (("older_than_days", older_than_days), ("keep_bytes", keep_bytes)):
        if value is not None and not value >= 0:
            raise ValueError(f"{what} must be a number >= 0 (inf: no limit), got {value}")
    entries = cache_entries(cache_dir)
    now = time.time() if now is None else now
    if older_than_days is None and keep_bytes is None:
        doomed = list(entries)
    else:
        doomed = [e for e in entries if older_than_days is not None and now - e.last_used > older_than_days * 86400]
        if keep_bytes is not None:
            rest = [e for e in entries if e not in doomed]
            total = sum(e.bytes for e in rest)
            for e in rest:  # oldest use first
                if total <= keep_bytes:
                    break
                doomed.append(e)
                total -= e.bytes
    if not dry_run:
        for e in doomed:
            if e.path.is_dir():
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                e.path.unlink(missing_ok=True)
            logger.info("removed %s (%d bytes)", e.path, e.bytes)
    return doomed


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def cached_embedding(cache_dir: str | os.PathLike, digests: list[str]):
    """The embedding of a pool from the cache, whatever encoder made it: ``(embeddings (n, d)
    float32, folder)`` from the most recently used ``embeddings/<encoder key>/`` folder that holds a
    vector for every digest (the pool's file-content digests), or None when no folder covers them all."""
    import numpy as np

    from .embed import _fill_from_cache

    root = Path(cache_dir) / "embeddings"
    first: dict[str, int] = {}
    for i, d in enumerate(digests):
        first.setdefault(d, i)
    folders = [e.path for e in reversed(cache_entries(cache_dir)) if e.kind == "embeddings"] if root.is_dir() else []
    for folder in folders:
        seen: set[str] = set()
        dim = None
        for f in sorted(folder.glob("chunk-*.npz")):
            try:
                with np.load(f, allow_pickle=False) as z:
                    seen.update(z["digests"].tolist())
                    dim = dim or int(z["emb"].shape[1])
            except Exception:  # noqa: BLE001 - a damaged chunk covers nothing
                continue
        if dim is None or not set(first) <= seen:
            continue
        out = np.zeros((len(first), dim), dtype=np.float32)
        have = np.zeros(len(first), dtype=bool)
        _fill_from_cache(folder, {d: j for j, d in enumerate(first)}, out, have)
        if have.all():
            row = {d: j for j, d in enumerate(first)}
            return out[[row[d] for d in digests]], folder
    return None
