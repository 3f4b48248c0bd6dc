"""``selector demo-pool``: write a small real pool to try the other commands on, offline.

The pool is scikit-learn's 1,797 handwritten digits (8 x 8 grayscale, shipped inside scikit-learn, so
nothing is downloaded), written as PNG files under one folder per digit by
:func:`selector.pool.write_demo_pool`. The folder names are for the reader only: the selector never
reads them, so a selection on the demo pool shows what it does on a pool without labels. A folder
that already holds files is left as it is.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from .errors import Command


@click.command("demo-pool", cls=Command, inputs=("folder",))
@click.argument("folder", type=click.Path(path_type=Path))
def demo_pool_cmd(folder):
    """Write a small real pool to FOLDER: scikit-learn's 1,797 handwritten digits as PNG files
    (FOLDER/digit_<d>/<n>.png; the selector never reads the folder names)."""
    from selector.pool import write_demo_pool

    if folder.exists() and any(folder.iterdir()):
        n = sum(1 for _ in folder.rglob("*.png"))
        click.echo(f"demo pool: {folder} already exists ({n} images)")
        return
    n = write_demo_pool(folder)
    counts = Counter(p.parent.name for p in folder.rglob("*.png"))
    click.echo(f"demo pool: {n} images of {len(counts)} digits written to {folder}")
