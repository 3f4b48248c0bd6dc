"""Embed whole datasets with the product's embeddings, for the strategy matrix.

Writes ``{out}/{dataset}__{name}.npy`` ((n, d) float32, rows in the order of
:func:`benchmarks.common.load_images`, or for a photo folder of :mod:`benchmarks.folders` its files in the pool
reader's order: the dataset's ``full`` pool, at most 5,000 files, as :mod:`benchmarks.bench_backbones` reads
it) for each requested embedding:

* ``default``: exactly what ``selector select`` embeds with no options (:class:`selector.Selector`
  with its defaults: ``--backbone auto``, the pixel view when auto);
* ``pretrained``: the frozen EfficientNet-Lite0 features alone (``--backbone efficientnet-lite0``);
* ``fallback``: the default without the ``pretrained`` extra (resnet-small trained on the pool, plus
  the pixel view), i.e. ``Selector(backbone="resnet-small", pixel_view=True)``.

The pool is the whole dataset written as one ``.npz`` (a photo dataset: its folder of files at their own
sizes), so each embedding is fitted (PCA of the pixel view, training) on the dataset as the matrix's
embeddings are. Frozen features go through the
content-keyed cache in ``--selector-cache``, so a rerun (or ``mixed20`` after its two parts)
embeds nothing twice. Existing files are kept unless ``--force``.

    python -m benchmarks.export_embeddings --out .bench_data/embeddings
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.common import (
    FOLDER_DATASETS,
    MATRIX_DATASETS,
    fit_via_selector,
    help_text,
    list_option,
    load_images,
    nchw,
    run,
)

#: name -> Selector keyword arguments
EMBEDDINGS = {
    "default": {},
    "pretrained": {"backbone": "efficientnet-lite0", "backbone_mode": "frozen"},
    "fallback": {"backbone": "resnet-small", "pixel_view": True},
}


def embed_dataset(x: np.ndarray, kwargs: dict, seed: int = 0, device: str = "cpu",
                  cache_dir: Path | None = None) -> tuple[np.ndarray, str]:
    """(n, d) embeddings of images ``x`` ((n, H, W) or (n, H, W, 3) uint8) by :class:`selector.Selector`
    with ``kwargs``, and a line saying what embedded them."""
    fitted = fit_via_selector(nchw(x), seed, device, cache_dir, **kwargs)
    return np.asarray(fitted.pool_emb, dtype=np.float32), fitted.note


def embed_folder(name: str, kwargs: dict, seed: int, device: str, cache_dir: Path, selector_cache: Path
                 ) -> tuple[np.ndarray, str]:
    """(n, d) embeddings of the photo folder ``name`` (:func:`benchmarks.folders.dataset_folder`) by
    :class:`selector.Selector` with ``kwargs``, rows in the folder's file order, and what embedded them."""
    from benchmarks.folders import dataset_folder, pool_folder
    from selector import Selector

    folder, files, _ = pool_folder(dataset_folder(name, cache_dir), "full", cache_dir)
    sel = Selector(seed=seed, device=device, cache_dir=selector_cache, **kwargs).fit(folder)
    if sel.pool_.ids != files:
        raise SystemExit(f"{name}: the pool reader read {len(sel.pool_.ids)} of the {len(files)} files")
    return np.asarray(sel.embeddings_, dtype=np.float32), f"{sel.backbone_} ({sel.backbone_reason_})"


@click.command("export_embeddings", help=help_text(__doc__))
@click.option("--out", type=click.Path(path_type=Path), default=Path(".bench_data/embeddings"), show_default=True)
@list_option("--datasets", default=MATRIX_DATASETS, type=click.Choice(MATRIX_DATASETS), show_default=True)
@list_option("--embeddings", default=("default", "pretrained"), type=click.Choice(list(EMBEDDINGS)), show_default=True)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".bench_data"), show_default=True,
              help="decoded CIFAR-10 arrays")
@click.option("--selector-cache", type=click.Path(path_type=Path), default=Path(".bench_data/selector-cache"),
              show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="recompute files that exist")
def cli(out, datasets, embeddings, cache_dir, selector_cache, device, seed, force) -> int:
    from selector.atomic import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    for ds in datasets:
        todo = [e for e in embeddings if force or not (out / f"{ds}__{e}.npy").is_file()]
        if not todo:
            continue
        x = None if ds in FOLDER_DATASETS else load_images(ds, cache_dir)[0]
        for name in todo:
            t0 = time.perf_counter()
            if x is None:
                emb, note = embed_folder(ds, EMBEDDINGS[name], seed, device, cache_dir, selector_cache)
            else:
                emb, note = embed_dataset(x, EMBEDDINGS[name], seed, device, selector_cache)
            with atomic_write(out / f"{ds}__{name}.npy", "wb") as fh:
                np.save(fh, emb)
            print(f"{ds}__{name}: {emb.shape} by {note}, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv)


if __name__ == "__main__":
    sys.exit(main())
