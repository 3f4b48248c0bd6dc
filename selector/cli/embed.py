"""``selector embed``: embed a pool with a trained encoder or a frozen pretrained backbone. Parses the
options, calls :func:`selector.workflow.embed_to_file` and prints the summary."""
from __future__ import annotations

from pathlib import Path

import click

from .errors import Command
from .options import (
    BackboneOptions,
    DistOptions,
    RunOptions,
    backbone_options,
    cache_folder,
    dist_options,
    echo_summary,
    progress_bars,
    run_options,
    setup_logging,
)
from .torchrun import RankErrors, agree, is_main, start_distributed


@click.command("embed", cls=Command, inputs=("pool",))
@click.option("--pool", "-p", type=click.Path(path_type=Path), required=True, help="Folder of images or .npz.")
@click.option("--encoder", type=click.Path(path_type=Path), default=None,
              help="Encoder checkpoint (or give a pretrained --backbone to embed with its frozen features).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("embeddings.npy"), show_default=True,
              help="Embeddings (.npy, n x d float32); the item ids go to OUT with suffix .ids.txt.")
@click.option("--force", "-f", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Where embeddings are cached by content (a killed run resumes from it; select reuses it) "
                   "[default: the user cache folder; see 'selector cache info'].")
@dist_options
@backbone_options
@run_options
def embed_cmd(pool: Path, encoder: Path | None, out: Path, force: bool, cache_dir: Path | None, dist: DistOptions,
              backbone: BackboneOptions, run: RunOptions):
    """Embed a pool with a trained encoder or a frozen pretrained backbone (L2-normalised float32)."""
    setup_logging(run.verbose, run.quiet)
    if (encoder is None) == (backbone.backbone is None):
        raise click.UsageError("give exactly one of --encoder FILE or --backbone NAME")
    if backbone.backbone is not None:
        from selector.backbones import is_pretrained

        name, mode = backbone.backbone, backbone.backbone_mode
        if name == "auto" or not is_pretrained(name) or mode == "finetune":
            raise click.UsageError(f"selector embed --backbone takes a pretrained backbone, used frozen "
                                   f"(efficientnet-lite0, torchvision:NAME), not {name!r} in mode {mode}; "
                                   "train other encoders with selector train")
    d = start_distributed(dist, run.device)
    with RankErrors(d):
        from selector import Selector, workflow

        agree(d, lambda: workflow.check_output(out, force, embeddings=True), main_only=True)
        sel = Selector(encoder=encoder, strategy="random", device=run.device, seed=run.seed, on_bad=run.on_bad_image,
                       progress=progress_bars(run.quiet or not is_main(d)), cache_dir=cache_folder(cache_dir), dist=d,
                       **(backbone.selector_kwargs() if encoder is None else {}))
        rows = workflow.embed_to_file(sel, pool, out, force=force, reading=run.reading())
    if rows is not None:  # rank 0 wrote the embeddings
        echo_summary(rows)
