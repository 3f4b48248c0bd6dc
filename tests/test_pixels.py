"""Tests of selector.pixels: the pixel-PCA view and the concatenation of views."""
import numpy as np
import pytest

from selector.pixels import PixelPCA, _flat, concat_views, unit_rows


def _images(n=60, c=1, s=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, s, s), dtype=np.uint8)


def test_flat_area_averages_large_images():
    x = np.zeros((1, 1, 64, 64), dtype=np.uint8)
    x[0, 0, :2, :2] = 255  # one 2x2 block of the 32 x 32 grid
    f = _flat(x, max_side=32)
    assert f.shape == (1, 32 * 32)
    assert f[0, 0] == pytest.approx(1.0) and f[0, 1:].sum() == 0


def test_flat_keeps_small_images():
    x = _images(3, 3, 8)
    f = _flat(x)
    assert f.shape == (3, 3 * 64)
    np.testing.assert_allclose(f[1], x[1].reshape(-1) / 255.0, rtol=1e-6)


def test_pca_matches_a_slow_reference_on_a_low_rank_pool():
    rng = np.random.default_rng(1)
    basis = rng.normal(size=(3, 64))
    coef = rng.normal(size=(200, 3))
    x = np.clip(128 + 20 * coef @ basis, 0, 255).astype(np.uint8).reshape(200, 1, 8, 8)
    p = PixelPCA(dim=3).fit(x, seed=0)
    z = p.transform(x)
    # Reference: SVD of the centred pixels; the projections span the same subspace.
    f = x.reshape(200, -1).astype(np.float64) / 255
    fc = f - f.mean(0)
    _, _, vt = np.linalg.svd(fc, full_matrices=False)
    ref = fc @ vt[:3].T
    for j in range(3):
        c = np.corrcoef(z[:, j], ref[:, j])[0, 1]
        assert abs(c) > 0.999


def test_transform_in_chunks_equals_one_pass_and_is_seeded():
    x = _images(100, 3, 8)
    a = PixelPCA(dim=5).fit(x, seed=3)
    b = PixelPCA(dim=5).fit(x, seed=3)
    np.testing.assert_array_equal(a.transform(x), b.transform(x))
    np.testing.assert_allclose(a.transform(x, chunk=7), a.transform(x), rtol=1e-5, atol=1e-6)


def test_fit_on_a_sample_caps_rows_and_dim():
    x = _images(50, 1, 4)
    p = PixelPCA(dim=100, fit_rows=10).fit(x, seed=0)
    assert p.pca_.n_components_ == 9  # at most rows - 1
    assert p.transform(x).shape == (50, 9)
    with pytest.raises(ValueError, match="at least 2 images"):
        PixelPCA().fit(x[:1])


def test_concat_views_averages_cosines():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 7))
    c = concat_views(a, b)
    assert c.shape == (5, 11)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, rtol=1e-5)
    ua, ub = unit_rows(a), unit_rows(b)
    expect = (ua @ ua.T + ub @ ub.T) / 2
    np.testing.assert_allclose(c @ c.T, expect, rtol=1e-4, atol=1e-5)


def test_concat_views_checks_rows():
    with pytest.raises(ValueError, match="row counts"):
        concat_views(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="at least one"):
        concat_views()
