"""The pixel view: PCA of the pool's pixels, and the concatenation of embedding views.

PCA of the raw pixels is a strong embedding on small, centred images (digits, glyphs, small grayscale
objects), where a contrastive encoder trained for minutes on a CPU or an ImageNet backbone may not
beat it; on photos a learned embedding is far ahead. Concatenating the L2-normalised blocks of both
makes cosine similarity the mean of the two views' similarities, so the neighbours of an image are
those that both views agree on. The embedding benchmark (``benchmarks/results/embeddings``) measures each view
and their concatenation on every dataset and pool shape.
"""
from __future__ import annotations

import numpy as np

#: Images are reduced to at most this side before PCA (area averaging): the pixel view is about
#: coarse layout, and 32 x 32 x 3 = 3,072 features keep the fit cheap on any pool.
MAX_SIDE = 32

#: PCA is fitted on at most this many rows (a seeded sample); every row is then projected.
FIT_ROWS = 20_000

#: Rows per projection batch, so a memory-mapped pool of any size is streamed.
CHUNK = 8_192


def _flat(images: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """(n, C, S, S) uint8 -> (n, C * s * s) float32 in [0, 1] with s <= max_side (area-averaged)."""
    x = np.asarray(images, dtype=np.float32) / 255.0
    s = x.shape[-1]
    if s > max_side:
        f = -(-s // max_side)  # ceil: the smallest integer factor that brings the side to <= max_side
        keep = (s // f) * f
        x = x[..., :keep, :keep]
        n, c = x.shape[:2]
        x = x.reshape(n, c, keep // f, f, keep // f, f).mean(axis=(3, 5))
    return x.reshape(x.shape[0], -1)


class PixelPCA:
    """PCA of the pixels (Pearson, 1901), fitted on a seeded sample of the pool.

    Args:
        dim: number of components (capped by the number of rows and features).
        max_side: images are area-averaged down to at most this side first.
        fit_rows: at most this many rows are used to fit the components.
    """

    def __init__(self, dim: int = 50, max_side: int = MAX_SIDE, fit_rows: int = FIT_ROWS):
        self.dim = dim
        self.max_side = max_side
        self.fit_rows = fit_rows

    def fit(self, images: np.ndarray, seed: int = 0) -> "PixelPCA":
        """Fit on ``images`` (n, C, S, S) uint8, n >= 2; ``seed`` draws the sample and the randomised SVD."""
        from sklearn.decomposition import PCA

        n = int(images.shape[0])
        if n < 2:
            raise ValueError(f"the pixel view (PCA of the pixels) needs at least 2 images, got {n}; leave it out "
                             "with --no-pixel-view (pixel_view=False)")
        rows = np.arange(n)
        if n > self.fit_rows:
            rows = np.sort(np.random.default_rng(seed).choice(n, self.fit_rows, replace=False))
        x = _flat(images[rows], self.max_side)
        d = int(min(self.dim, x.shape[0] - 1, x.shape[1]))
        self.pca_ = PCA(n_components=d, svd_solver="randomized", random_state=seed).fit(x)
        return self

    def transform(self, images: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
        """(n, C, S, S) uint8 -> (n, dim) float32 projections (not normalised), in chunks."""
        out = np.empty((images.shape[0], self.pca_.n_components_), dtype=np.float32)
        for i in range(0, images.shape[0], chunk):
            out[i:i + chunk] = self.pca_.transform(_flat(images[i:i + chunk], self.max_side))
        return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n > 0, n, 1.0)).astype(np.float32)


def concat_views(*views: np.ndarray) -> np.ndarray:
    """(n, d_1), ..., (n, d_k) -> (n, d_1 + ... + d_k) float32, L2-normalised.

    Each block is L2-normalised before concatenating, so every view weighs the same and the cosine
    similarity of two rows is the mean of their per-view cosine similarities.
    """
    if not views:
        raise ValueError("concat_views needs at least one view")
    n = views[0].shape[0]
    if any(v.shape[0] != n for v in views):
        raise ValueError(f"views have different row counts: {[v.shape[0] for v in views]}")
    return unit_rows(np.hstack([unit_rows(v) for v in views]))
