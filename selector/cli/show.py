"""``selector show``: draw what a selection chose, as a contact sheet and, with ``--map``, a 2-D map of
the pool's embedding. Parses the options, calls :func:`selector.workflow.show_selection` and prints
the summary."""
from __future__ import annotations

from pathlib import Path

import click

from .errors import Command
from .options import echo_summary, progress_bars, setup_logging


@click.command("show", cls=Command, inputs=("selection",))
@click.argument("selection", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--pool", "-p", type=click.Path(path_type=Path, exists=True), required=True,
              help="The pool the selection was chosen from (folder of images or .npz).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Contact sheet PNG: the chosen images grouped by estimated group, with ranks "
                   "[default: SELECTION with suffix .sheet.png].")
@click.option("--map", "map_out", type=click.Path(path_type=Path), default=None,
              help="Also write a 2-D map (PCA) of the pool's embedding with the picks to this PNG.")
@click.option("--embeddings", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="For --map: the embeddings the selection came from (any format of select --embeddings) "
                   "[default: the pool's embedding from the cache].")
@click.option("--ids", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="For --map with --embeddings: the item ids, one per line.")
@click.option("--encoder", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="For --map: embed the pool with this encoder [default: the most recently used embedding in "
                   "the cache that covers every image of the pool].")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="The cache 'selector select' used [default: the user cache folder].")
@click.option("--cols", type=click.IntRange(min=1), default=10, show_default=True, help="Tiles per line.")
@click.option("--tile", type=click.IntRange(min=16, max=512), default=96, show_default=True,
              help="Tile side in px.")
@click.option("--force", "-f", is_flag=True, help="Overwrite the PNG files if they exist.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def show_cmd(selection, pool, out, map_out, embeddings, ids, encoder, cache_dir, cols, tile, force, verbose, quiet):
    """Draw what SELECTION (the .csv/.jsonl/.json of 'selector select') chose from --pool: a contact
    sheet, and with --map a 2-D map of the pool's embedding."""
    setup_logging(verbose, quiet)
    out = out if out is not None else selection.with_suffix(".sheet.png")
    from selector import workflow

    for o in [out] + ([map_out] if map_out is not None else []):
        if o.suffix.lower() != ".png":
            raise click.UsageError(f"{o}: the pictures are PNG files; give a .png name")
        workflow.check_output(o, force)
    rows = workflow.show_selection(selection, pool, out, map_out=map_out, embeddings=embeddings, ids=ids,
                                   encoder=encoder, cache_dir=cache_dir, cols=cols, tile=tile,
                                   progress=progress_bars(quiet))
    echo_summary(rows)
