"""``selector show``: draw what a selection chose, as a contact sheet and, with ``--map``, a 2-D map of
the pool's embedding, and with ``--html`` as one self-contained HTML page (picks, map, summary). Parses the
options, calls :func:`selector.workflow.show_selection` and prints the summary.

The images are read as ``select`` reads them (the same reading options); the map's embedding is the one
``select`` makes with the same encoder options (``--backbone``, ``--arch``, ``--pixel-view``, ``--seed``,
...), taken from the cache: give ``show`` the options ``select`` was given."""
from __future__ import annotations

from pathlib import Path

import click

from .errors import Command
from .options import (
    EncoderOptions,
    OptionGroup,
    RunOptions,
    cache_folder,
    echo_summary,
    encoder_options,
    progress_bars,
    run_options,
    setup_logging,
)


def _name(option) -> str:
    """The parameter name of a ``click.option(...)`` decorator."""
    def probe():
        pass

    option(probe)
    return probe.__click_params__[-1].name


#: select's encoder options, with --loss as plain text: its list of choices loads the training code (torch),
#: which a sheet without --map never needs; the name is checked when a map is drawn.
LOSS = click.option("--loss", default="simclr", show_default=True, metavar="NAME",
                    help="For --map: the contrastive objective select was given.")
show_encoder_options = OptionGroup(EncoderOptions, "embedding",
                                   *[LOSS if _name(o) == "loss" else o for o in encoder_options.options])


@click.command("show", cls=Command, inputs=("selection", "summary"))
@click.argument("selection", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--pool", "-p", type=click.Path(path_type=Path, exists=True), required=True,
              help="The pool the selection was chosen from (folder of images or .npz).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Contact sheet PNG: the chosen images in rank order with their ranks, grouped by estimated group "
                   "when the class count is confident [default: SELECTION with suffix .sheet.png; none with --html].")
@click.option("--html", "html_out", type=click.Path(path_type=Path), default=None,
              help="Also (or instead of the sheet) write one self-contained HTML page: the picks with rank, file name "
                   "and group, the map of the pool's embedding (hover a pick to see it), the summary.")
@click.option("--summary", "summary", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="The JSON 'selector select --json' printed for this selection: the pool, encoder, strategy and "
                   "class count shown (the selection file carries none of them); the picks are grouped only when "
                   "it says the class count is confident.")
@click.option("--no-map", "no_map", is_flag=True,
              help="With --html: leave the map out (no embedding is read or computed).")
@click.option("--max-images", type=click.IntRange(min=1, max=10_000), default=200, show_default=True,
              help="Picks on the sheet: the first ones in rank order (the summary says how many are left out).")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True,
              help="Which --max-images picks the sheet shows: page 2 is the next ones in rank order.")
@click.option("--map", "map_out", type=click.Path(path_type=Path), default=None,
              help="Also write a 2-D map (PCA) of the pool's embedding with the picks to this PNG.")
@click.option("--embeddings", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="For --map: the embeddings the selection came from (any format of select --embeddings) "
                   "[default: the embedding select makes of the pool with the encoder options given here, from "
                   "the cache].")
@click.option("--ids", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="For --map with --embeddings: the item ids, one per line.")
@click.option("--encoder", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="For --map: the encoder checkpoint select was given (--encoder).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="The cache 'selector select' used [default: the user cache folder].")
@click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True,
              help="For --map: the training batch size select was given (it names the trained encoder).")
@click.option("--cols", type=click.IntRange(min=1, max=100), default=10, show_default=True, help="Tiles per line.")
@click.option("--tile", type=click.IntRange(min=16, max=512), default=96, show_default=True,
              help="Tile side in px.")
@click.option("--force", "-f", is_flag=True, help="Overwrite the PNG and HTML files if they exist.")
@show_encoder_options
@run_options
def show_cmd(selection, pool, out, html_out, summary, no_map, max_images, page, map_out, embeddings, ids, encoder,
             cache_dir, batch_size, cols, tile, force, embedding: EncoderOptions, run: RunOptions):
    """Draw what SELECTION (the .csv/.jsonl/.json of 'selector select') chose from --pool: a contact
    sheet, with --map a 2-D map of the pool's embedding, with --html one page holding both and the summary
    (--summary: select's --json output, for the encoder, strategy and class count).

    The images are read as select reads them (--workers, --decode-timeout, --max-pixels, --follow-links,
    --on-bad-image): a file that cannot be read is a crossed-out tile and a warning. The map draws the
    embedding select makes with the encoder options given here (--backbone, --arch, --epochs, --pixel-view,
    --seed, ...: give those select was given), from the cache; show never trains an encoder."""
    setup_logging(run.verbose, run.quiet)
    if out is None and html_out is None:
        out = selection.with_suffix(".sheet.png")
    if no_map and (html_out is None or map_out is not None):
        raise click.UsageError("--no-map leaves the map out of the --html page; it goes with --html and without --map")
    from selector import workflow

    for o in [p for p in (out, map_out) if p is not None]:
        if o.suffix.lower() != ".png":
            raise click.UsageError(f"{o}: the pictures are PNG files; give a .png name")
        workflow.check_output(o, force)
    if html_out is not None:
        if html_out.suffix.lower() not in (".html", ".htm"):
            raise click.UsageError(f"{html_out}: the page is an HTML file; give a .html name")
        workflow.check_output(html_out, force)
    sel = None
    if (map_out is not None or (html_out is not None and not no_map)) and embeddings is None:
        from selector import Selector
        from selector.losses import LOSSES

        if embedding.loss not in LOSSES:
            raise click.BadParameter(f"unknown loss {embedding.loss!r}; choose from {', '.join(sorted(LOSSES))}",
                                     param_hint="--loss")
        sel = Selector(encoder=encoder, seed=run.seed, device=run.device, epochs=embedding.epochs,
                       loss=embedding.loss, arch=embedding.arch, batch_size=batch_size,
                       image_size=embedding.image_size, cache_dir=cache_folder(cache_dir), on_bad=run.on_bad_image,
                       progress=progress_bars(run.quiet), **embedding.selector_kwargs())
    rows = workflow.show_selection(selection, pool, out, map_out=map_out, html_out=html_out, summary=summary,
                                   html_map=not no_map, embeddings=embeddings, ids=ids, selector=sel,
                                   reading=run.reading(), cols=cols, tile=tile, max_images=max_images, page=page,
                                   force=force, progress=progress_bars(run.quiet))
    echo_summary(rows)
