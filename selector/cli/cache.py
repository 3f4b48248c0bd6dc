"""``selector cache info`` and ``selector cache prune``: the cache of trained encoders and embeddings."""
from __future__ import annotations

import math
import time
from pathlib import Path

import click

from .errors import Group
from .options import cache_folder, echo_summary


@click.group("cache", cls=Group)
def cache_group():
    """The cache of trained encoders and embeddings (keyed by content, shared by every run)."""


@cache_group.command("info", inputs=("cache_dir",))
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="The cache folder [default: the user cache folder].")
def cache_info_cmd(cache_dir):
    """Where the cache is, and what it holds."""
    from selector.cache import cache_entries, human_bytes

    cache = cache_folder(cache_dir)
    entries = cache_entries(cache)
    enc = [e for e in entries if e.kind == "encoder"]
    emb = [e for e in entries if e.kind == "embeddings"]
    rows = [("cache", str(cache) + ("" if cache.is_dir() else " (empty: not created yet)")),
            ("encoders", f"{len(enc)} ({human_bytes(sum(e.bytes for e in enc))})"),
            ("embeddings", f"{len(emb)} encoders' embeddings, {sum(e.files for e in emb)} files "
                           f"({human_bytes(sum(e.bytes for e in emb))})"),
            ("total", human_bytes(sum(e.bytes for e in entries)))]
    if entries:
        rows.append(("last used", time.strftime("%Y-%m-%d %H:%M", time.localtime(entries[-1].last_used))))
    echo_summary(rows)


def _not_nan(ctx, param, value):
    """NaN passes click's range check (it compares false with everything): refused here, in one line."""
    if value is not None and math.isnan(value):
        raise click.BadParameter(f"{value} is not a number; give a number >= 0 (inf: no limit)")
    return value


def _bytes(gib: float | None) -> float | None:
    """GiB as bytes: a whole number, or ``math.inf`` for inf or a size beyond any disk (no limit)."""
    if gib is None:
        return None
    n = gib * 2**30
    return int(n) if math.isfinite(n) else math.inf


@cache_group.command("prune", inputs=("cache_dir",))
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="The cache folder [default: the user cache folder].")
@click.option("--older-than", type=click.FloatRange(min=0), default=None, metavar="DAYS", callback=_not_nan,
              help="Remove entries not used for this many days (inf: none).")
@click.option("--max-size", type=click.FloatRange(min=0), default=None, metavar="GIB", callback=_not_nan,
              help="Then remove the least recently used entries until the cache fits in this many GiB (inf: no "
                   "limit).")
@click.option("--all", "everything", is_flag=True, help="Remove every entry.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def cache_prune_cmd(cache_dir, older_than, max_size, everything, dry_run):
    """Remove cache entries (an entry is one trained encoder, or one encoder's embeddings). Do not prune
    while a 'selector select' runs on the same cache."""
    from selector.cache import human_bytes, prune

    if everything == (older_than is not None or max_size is not None):
        raise click.UsageError("give --all, or --older-than DAYS and/or --max-size GIB")
    cache = cache_folder(cache_dir)
    gone = prune(cache, older_than_days=older_than, keep_bytes=_bytes(max_size), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for e in gone:
        click.echo(f"{verb} {e.kind} {e.path} ({human_bytes(e.bytes)})")
    echo_summary([("cache", str(cache)), (verb, f"{len(gone)} entries, {human_bytes(sum(e.bytes for e in gone))}")])
