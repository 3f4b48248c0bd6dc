"""Array pools (selector.pool.npz): array layouts and value ranges to the pool's uint8 NCHW images, and
``.npz`` files with their ``x`` and optional ``y`` arrays."""
from __future__ import annotations

import numpy as np
import pytest

from selector.pool import PoolError, images_from_array, load_npz, load_pool


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 28, 28, 1), (5, 28, 28, 3), (5, 3, 28, 28), (5, 28, 28, 4)])
def test_images_from_array_layouts(shape):
    x = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    out = images_from_array(x)
    c = 1 if (len(shape) == 3 or 1 in shape[1:]) else 3
    assert out.shape == (5, c, 28, 28) and out.dtype == np.uint8


def test_images_from_float_array_scaled():
    x = np.full((2, 8, 8), 0.5, dtype=np.float32)
    assert (images_from_array(x) == 128).all()


def test_npz_pool(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    y = np.arange(12) % 3
    np.savez(tmp_path / "p.npz", x=x, y=y)
    pool = load_pool(tmp_path / "p.npz")
    assert pool.images.shape == (12, 1, 28, 28) and (pool.images[:, 0] == x).all()
    assert pool.ids[0] == "x[00]" and pool.ids[-1] == "x[11]"
    assert (pool.labels == y).all()
    rgb = load_npz(tmp_path / "p.npz", channels=3, image_size=32)
    assert rgb.images.shape == (12, 3, 32, 32)
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(PoolError, match="no array 'x'"):
        load_pool(tmp_path / "bad.npz")
