"""Synthetic test data shared by the strategy and clustering tests."""
from __future__ import annotations

import numpy as np


def sphere_blobs(sizes, d: int = 32, spread: float = 0.04, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around random unit centres, rows L2-normalised: (x (n, d) float32, blob id (n,))."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((len(sizes), d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = np.concatenate([c[i] + spread * rng.standard_normal((s, d)) for i, s in enumerate(sizes)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(len(sizes)), sizes)


def geometric_sizes(k: int, n: int = 3000, ratio: float = 10.0, minimum: int = 15) -> np.ndarray:
    """k blob sizes summing to about n, decaying geometrically from the largest to the smallest by ``ratio``."""
    w = ratio ** (-np.arange(k) / max(k - 1, 1))
    return np.maximum((w / w.sum() * n).astype(int), minimum)
