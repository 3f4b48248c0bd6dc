"""The timm family (``timm:NAME``, selector.backbones.timm_models) on timm's tiny test models, their weights
written here: features equal timm's own loading of the same file, at the native side and (a ViT) another;
weights found in a Hugging Face cache written here; a file of another network is one line; ``selector select``
runs with ``--weights``. Nothing is downloaded (the hub library is told it is offline). Skipped without timm."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from selector.backbones import PretrainedBackbone, PretrainedError, default_weights_path, get_backbone
from tests.backbones.offline_hub import offline_hf_cache, put_in_cache
from tests.conftest import rows

timm = pytest.importorskip("timm")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def save_model(model: str, path, seed=0, **kw):
    """Seeded random weights of timm's ``model`` (its classifier included, as published) in ``path``."""
    torch.manual_seed(seed)
    torch.save(timm.create_model(model, pretrained=False, **kw).state_dict(), path)
    return path


def preprocess(x, side, spec):
    """What PretrainedBackbone does to (B, 3, S, S) images in [0, 1] before the network."""
    x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)


@pytest.mark.parametrize("model, side", [("test_convnext", 160), ("test_convnext", 96), ("test_vit", 160),
                                         ("test_vit", 96)])
def test_features_equal_timms_own_loading_of_the_file(model, side, tmp_path, monkeypatch):
    offline_hf_cache(monkeypatch, tmp_path)
    path = save_model(model, tmp_path / f"{model}.pth")
    spec = get_backbone(f"timm:{model}")
    assert spec.native_size == 160 and spec.mean == timm.models.get_pretrained_cfg(model).mean
    backbone = PretrainedBackbone(f"timm:{model}", side, weights=path).eval()
    extra = {"img_size": side} if model == "test_vit" and side != 160 else {}  # a ViT's position table resampled
    ref = timm.create_model(model, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": str(path)},
                            **extra).eval()
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        got, want = backbone(x), ref(preprocess(x, side, spec))
    assert got.shape == (2, ref.num_features) and backbone.dim == ref.num_features
    assert torch.allclose(got, want, atol=1e-5)


def test_a_training_checkpoint_and_a_file_of_another_network(tmp_path):
    state = torch.load(save_model("test_efficientnet", tmp_path / "a.pth"), weights_only=True)
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}, ckpt)  # a DDP run's
    backbone = PretrainedBackbone("timm:test_efficientnet", 64, weights=ckpt)
    loaded = backbone.features.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if k in loaded)
    assert "classifier.weight" in state and "classifier.weight" not in loaded  # the classifier is not built
    other = save_model("test_vit", tmp_path / "vit.pth")
    with pytest.raises(PretrainedError) as e:
        PretrainedBackbone("timm:test_convnext", 160, weights=other)
    assert "\n" not in str(e.value) and f"weights {other} do not fit backbone timm:test_convnext" in str(e.value)


def test_weights_from_the_hugging_face_cache(tmp_path, monkeypatch):
    cache = offline_hf_cache(monkeypatch, tmp_path)
    repo = timm.models.get_pretrained_cfg("test_vit").hf_hub_id  # timm/test_vit.r160_in1k
    with pytest.raises(PretrainedError) as e:  # nothing cached
        default_weights_path("timm:test_vit")
    msg = str(e.value)
    assert f"in the Hugging Face cache {cache}" in msg and f"hf download {repo} pytorch_model.bin" in msg
    safe = put_in_cache(cache, repo, "model.safetensors")
    with pytest.raises(PretrainedError, match=f"only {safe} is cached, a safetensors file.*hf download {repo}"):
        default_weights_path("timm:test_vit")
    torch_file = put_in_cache(cache, repo, "pytorch_model.bin", save_model("test_vit", tmp_path / "w.pth"))
    assert default_weights_path("timm:test_vit") == torch_file  # preferred to the safetensors file
    assert PretrainedBackbone("timm:test_vit", 160).dim == 64  # no --weights: the cached file
    with pytest.raises(PretrainedError, match="timm has no pretrained weights for test_coatnet"):
        default_weights_path("timm:test_coatnet")


def test_unknown_models_and_tags():
    with pytest.raises(ValueError, match="unknown timm model 'no_such_net'"):
        get_backbone("timm:no_such_net")
    with pytest.raises(ValueError, match=r"timm:test_vit.nope: Invalid pretrained tag \(nope\)"):
        get_backbone("timm:test_vit.nope")
    spec = get_backbone("timm:resnet50.a1_in1k")
    assert (spec.native_size, spec.mean, spec.requires) == (224, (0.485, 0.456, 0.406), ("timm",))


def test_cli_selects_with_a_timm_backbone_and_weights_file(tmp_path, digits_pool, monkeypatch):
    from selector.cli import main

    offline_hf_cache(monkeypatch, tmp_path)
    weights = save_model("test_vit", tmp_path / "vit.pth")
    out = tmp_path / "sel.csv"
    r = CliRunner().invoke(main, ["select", "-b", "5", "-p", str(digits_pool), "-o", str(out), "--backbone",
                                  "timm:test_vit", "--weights", str(weights), "--device", "cpu", "--workers", "0",
                                  "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    assert "timm:test_vit" in r.output
    assert len(rows(out)) == 5


@pytest.mark.trains
def test_finetuning_from_timm_weights_checkpoints_and_reloads(tmp_path):
    from selector.checkpoint import load_encoder
    from selector.encoding import encoder_config
    from selector.train import TrainConfig, train_encoder
    from tests.backbones.conftest import rgb_pool

    weights = save_model("test_vit", tmp_path / "vit.pth")
    cfg = encoder_config("timm:test_vit", 3, 32, "trained", size=64, weights=weights)
    ckpt = tmp_path / "ft.pt"
    trained = train_encoder(rgb_pool(16), cfg, TrainConfig(epochs=1, batch_size=8, seed=1, lr=2e-4), "cpu",
                            checkpoint_path=ckpt, weights=weights)
    start = PretrainedBackbone("timm:test_vit", 64, weights=weights).state_dict()
    assert any(not torch.equal(v, trained.backbone.state_dict()[k]) for k, v in start.items())  # it trained
    loaded, _ = load_encoder(ckpt)  # rebuilt without the weights file, then the checkpoint's weights
    assert loaded.config == cfg and loaded.dim == 64
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(trained.eval().embed(x), loaded.eval().embed(x))
