"""The OpenCLIP family (``open_clip:ARCH[/TAG]``, selector.backbones.open_clip_models) on a tiny CLIP
configuration added here (``open_clip.add_model_config``), its weights written here: the features equal
open_clip's own ``encode_image`` after its own loading of the same file, from a whole CLIP file or the image
tower's alone, at the model's side and another; a tag's weights found in a Hugging Face cache written here;
``selector select`` runs with ``--weights``. Nothing is downloaded. Skipped without open_clip_torch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from selector.backbones import PretrainedBackbone, PretrainedError, default_weights_path, get_backbone
from tests.backbones.offline_hub import offline_hf_cache, put_in_cache

open_clip = pytest.importorskip("open_clip")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH = "selector-test-tiny-vit"
# A ViT image tower on 32 px images (4 x 4 patches of 8 px, one block of two heads) and a one-block text
# tower: about 25,000 weights.
TINY = {"embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """The tiny configuration registered with open_clip, and a whole CLIP weights file of it (seeded)."""
    folder = tmp_path_factory.mktemp("open_clip")
    (folder / f"{ARCH}.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / f"{ARCH}.json")
    torch.manual_seed(0)
    path = folder / "tiny_clip.pth"
    torch.save(open_clip.create_model(ARCH, pretrained=None).state_dict(), path)
    return path


def encode_image(weights, side, x, spec):
    """open_clip's own image embedding of (B, 3, S, S) images in [0, 1], its own loading of ``weights``."""
    kw = {"force_image_size": side} if side != TINY["vision_cfg"]["image_size"] else {}
    model = open_clip.create_model(ARCH, pretrained=str(weights), **kw).eval()
    x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.encode_image((x - mean) / std)


@pytest.mark.parametrize("side", [32, 48])
def test_features_equal_open_clips_encode_image(tiny_clip, side):
    spec = get_backbone(f"open_clip:{ARCH}")
    assert (spec.dim, spec.native_size, spec.mean) == (16, 32, open_clip.OPENAI_DATASET_MEAN)
    backbone = PretrainedBackbone(f"open_clip:{ARCH}", side, weights=tiny_clip).eval()
    x = torch.rand(3, 3, 20, 20)
    with torch.no_grad():
        got = backbone(x)
    assert got.shape == (3, 16) and backbone.dim == 16
    assert torch.allclose(got, encode_image(tiny_clip, side, x, spec), atol=1e-5)


def test_an_image_tower_file_and_a_file_of_another_network(tiny_clip, tmp_path):
    state = torch.load(tiny_clip, weights_only=True)
    tower = tmp_path / "visual.pth"
    torch.save({k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}, tower)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        whole = PretrainedBackbone(f"open_clip:{ARCH}", 32, weights=tiny_clip).eval()(x)
        alone = PretrainedBackbone(f"open_clip:{ARCH}", 32, weights=tower).eval()(x)
    assert torch.equal(whole, alone)
    wrong = tmp_path / "wrong.pth"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(PretrainedError, match=f"weights {wrong} do not fit backbone open_clip:{ARCH}"):
        PretrainedBackbone(f"open_clip:{ARCH}", 32, weights=wrong)


def test_names_tags_and_weights_from_the_hugging_face_cache(tmp_path, monkeypatch):
    cache = offline_hf_cache(monkeypatch, tmp_path)
    name = "open_clip:ViT-B-32/laion2b_s34b_b79k"
    spec = get_backbone(name)
    assert (spec.dim, spec.native_size, spec.requires) == (512, 224, ("open_clip",))
    repo = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    with pytest.raises(PretrainedError) as e:
        default_weights_path(name)
    assert f"hf download {repo} open_clip_pytorch_model.bin" in str(e.value) and str(cache) in str(e.value)
    put_in_cache(cache, repo, "open_clip_model.safetensors")
    with pytest.raises(PretrainedError, match="a safetensors file, which is not read here"):
        default_weights_path(name)
    path = put_in_cache(cache, repo, "open_clip_pytorch_model.bin")
    assert default_weights_path(name) == path
    with pytest.raises(PretrainedError, match="has no default weights: name them"):
        default_weights_path("open_clip:ViT-B-32")
    with pytest.raises(ValueError, match="open_clip has no weights 'nope' for ViT-B-32.*laion2b_s34b_b79k"):
        get_backbone("open_clip:ViT-B-32/nope")
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Q-99'"):
        get_backbone("open_clip:ViT-Q-99")


def test_cli_selects_and_embeds_with_an_open_clip_image_tower(tiny_clip, tmp_path, digits_pool, monkeypatch):
    from selector.cli import main

    offline_hf_cache(monkeypatch, tmp_path)
    common = ["-p", str(digits_pool), "--backbone", f"open_clip:{ARCH}", "--weights", str(tiny_clip),
              "--device", "cpu", "--workers", "0", "--cache-dir", str(tmp_path / "cache"), "-q"]
    out = tmp_path / "sel.csv"
    r = CliRunner().invoke(main, ["select", "-b", "4", "-o", str(out), *common])
    assert r.exit_code == 0, r.output
    assert len(out.read_text().strip().splitlines()) == 5  # header and four rows
    emb = tmp_path / "e.npy"
    r = CliRunner().invoke(main, ["embed", "-o", str(emb), *common])
    assert r.exit_code == 0, r.output
    assert np.load(emb).shape == (60, 16)
