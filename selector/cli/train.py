"""``selector train``: train an encoder on a pool and save it for ``--encoder``. Parses the options, calls
:func:`selector.workflow.train_to_file` and prints the summary."""
from __future__ import annotations

import time
from pathlib import Path

import click

from .errors import Command
from .options import (
    DistOptions,
    EncoderOptions,
    RunOptions,
    dist_options,
    echo_summary,
    encoder_options,
    progress_bars,
    run_options,
    setup_logging,
)
from .torchrun import RankErrors, agree, is_main, start_distributed


@click.command("train", cls=Command, inputs=("pool",))
@click.option("--pool", "-p", type=click.Path(path_type=Path), required=True, help="Folder of images or .npz.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("encoder.pt"), show_default=True,
              help="Encoder checkpoint to write. While training, progress is kept in OUT.ckpt; run the "
                   "same command again after an interrupt to resume.")
@click.option("--batch-size", type=click.IntRange(min=2), default=256, show_default=True)
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Known labels (.csv path,label or Label Studio .json) for KCL / supcon-spread.")
@click.option("--force", "-f", is_flag=True, help="Overwrite OUT if it exists.")
@dist_options
@encoder_options
@run_options
def train_cmd(pool: Path, out: Path, batch_size: int, labels: Path | None, force: bool, dist: DistOptions,
              embedding: EncoderOptions, run: RunOptions):
    """Train an encoder on a pool with a contrastive loss and save it for --encoder."""
    setup_logging(run.verbose, run.quiet)
    d = start_distributed(dist, run.device)
    with RankErrors(d):
        from selector import workflow

        agree(d, lambda: workflow.check_output(out, force), main_only=True)
        t0 = time.perf_counter()
        from selector import Selector

        arch = embedding.arch
        if arch is None and embedding.backbone is None:
            arch = "resnet-small"  # selector train trains a small ResNet unless told otherwise
        sel = Selector(seed=run.seed, device=run.device, epochs=embedding.epochs, loss=embedding.loss, arch=arch,
                       batch_size=batch_size, image_size=embedding.image_size,
                       progress=progress_bars(run.quiet or not is_main(d)), **embedding.selector_kwargs(train=True))
        try:
            rows = workflow.train_to_file(sel, pool, out, labels=labels, reading=run.reading(), dist=d)
        except workflow.NothingToTrain as e:
            raise click.UsageError(str(e)) from None
    if rows is None:
        return  # rank 0 wrote the checkpoint
    echo_summary([*rows, ("time", f"{time.perf_counter() - t0:.1f} s")])
