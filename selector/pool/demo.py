"""The built-in demo pool: scikit-learn's handwritten digits as PNG files (``selector demo-pool``)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def write_demo_pool(folder: str | os.PathLike) -> int:
    """Write scikit-learn's digits (1,797 real 8x8 handwritten digits) as PNG files.

    Layout ``<folder>/digit_<d>/<nnnn>.png``. The folder names carry the true class for checking a
    selection by eye; the selector never reads them. Returns the number of files written.
    """
    from sklearn.datasets import load_digits

    folder = Path(folder)
    d = load_digits()
    imgs = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    for i, (img, y) in enumerate(zip(imgs, d.target)):
        sub = folder / f"digit_{y}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sub / f"{i:04d}.png")
    return len(imgs)
