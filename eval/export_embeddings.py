"""Embed whole datasets with the product's embeddings, for the strategy matrix (issue 13).

Writes ``{out}/{dataset}__{name}.npy`` ((n, d) float32, rows in the order of
:func:`selector.eval.strategy_matrix.load_images`) for each requested embedding:

* ``default``: exactly what ``selector select`` embeds with no options (:class:`selector.Selector`
  with its defaults: ``--backbone auto``, the pixel view when auto);
* ``pretrained``: the frozen EfficientNet-Lite0 features alone (``--backbone efficientnet-lite0``);
* ``fallback``: the default without the ``pretrained`` extra (resnet-small trained on the pool, plus
  the pixel view), i.e. ``Selector(backbone="resnet-small", pixel_view=True)``.

The pool is the whole dataset written as one ``.npz``, so each embedding is fitted (PCA of the
pixel view, training) on the dataset as the matrix's embeddings are. Frozen features go through the
content-keyed cache in ``--selector-cache``, so a rerun (or ``mixed20`` after its two parts)
embeds nothing twice. Existing files are kept unless ``--force``.

    python -m selector.eval.export_embeddings --out .bench_data/embeddings
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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
    from selector import Selector
    with tempfile.TemporaryDirectory(prefix="export-emb-") as tmp:
        pool = Path(tmp) / "pool.npz"
        np.savez(pool, x=x)
        sel = Selector(seed=seed, device=device, cache_dir=cache_dir, **kwargs)
        sel.fit(pool)
        note = f"{sel.backbone_} {sel.encoder_.config.mode}" + (" + pixel view" if sel.pixel_view_ is not None else "")
        return np.asarray(sel.embeddings_, dtype=np.float32), note


def main(argv=None) -> int:
    from selector.eval.strategy_matrix import DATASETS, load_images
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(".bench_data/embeddings"))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--embeddings", nargs="+", default=["default", "pretrained"], choices=list(EMBEDDINGS))
    ap.add_argument("--cache-dir", type=Path, default=Path(".bench_data"), help="decoded CIFAR-10 arrays")
    ap.add_argument("--selector-cache", type=Path, default=Path(".bench_data/selector-cache"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="recompute files that exist")
    a = ap.parse_args(argv)
    from selector.atomic import atomic_write
    a.out.mkdir(parents=True, exist_ok=True)
    for ds in a.datasets:
        todo = [e for e in a.embeddings if a.force or not (a.out / f"{ds}__{e}.npy").is_file()]
        if not todo:
            continue
        x, y = load_images(ds, a.cache_dir)
        for name in todo:
            t0 = time.perf_counter()
            emb, note = embed_dataset(x, EMBEDDINGS[name], a.seed, a.device, a.selector_cache)
            with atomic_write(a.out / f"{ds}__{name}.npy", "wb") as fh:
                np.save(fh, emb)
            print(f"{ds}__{name}: {emb.shape} by {note}, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
