"""The DINOv2 family (``dinov2:NAME``, selector.backbones.dinov2_hub) from a torch.hub folder written here: a
stand-in of the repository (a hubconf.py whose ``dinov2_vits14`` builds a small ViT-like network) and its
weights file, under a temporary TORCH_HOME. Nothing is downloaded: the stand-in refuses ``pretrained=True``
and the ``no_download`` fixture fails any download."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from selector.backbones import PretrainedBackbone, PretrainedError, default_weights_path, get_backbone
from selector.backbones.dinov2_hub import REPO_DIR, checkpoint_name, fetch_command
from tests.conftest import error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# What selector uses of the real repository: the entry point builds the network without weights, and its
# output is the class token (B, embed width); its patches are 14 px.
HUBCONF = '''
import torch
from torch import nn

dependencies = ["torch"]


class TinyDino(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 14, stride=14)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Identity()

    def forward(self, x):
        if x.shape[-1] % 14 or x.shape[-2] % 14:
            raise ValueError("the side must be a multiple of the patch")
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token[:, 0] + patches.mean(dim=1)
        return self.head(self.norm(cls))


def _model(dim, pretrained):
    if pretrained:
        raise RuntimeError("the stand-in repository has no weights to download")
    return TinyDino(dim)


def dinov2_vits14(*, pretrained=True, **kwargs):
    return _model(384, pretrained)


def dinov2_vits14_reg(*, pretrained=True, **kwargs):
    return _model(384, pretrained)
'''


def write_hub(torch_home, models=("vits14",), seed=0, code=True):
    """The stand-in repository and a weights file per model in ``torch_home/hub``; {model: weights path}."""
    hub = torch_home / "hub"
    if code:
        (hub / REPO_DIR).mkdir(parents=True)
        (hub / REPO_DIR / "hubconf.py").write_text(HUBCONF)
    (hub / "checkpoints").mkdir(parents=True, exist_ok=True)
    paths = {}
    for i, model in enumerate(models):
        net = torch.hub.load(str(hub / REPO_DIR), f"dinov2_{model}", source="local", pretrained=False) if code else None
        torch.manual_seed(seed + i)
        state = {k: torch.randn_like(v) for k, v in net.state_dict().items()} if net is not None else {}
        paths[model] = hub / "checkpoints" / checkpoint_name(model)
        torch.save(state, paths[model])
    return paths


def test_names_widths_and_the_weights_file_names():
    spec = get_backbone("dinov2:vitb14")
    assert (spec.name, spec.kind, spec.dim, spec.native_size) == ("dinov2:vitb14", "pretrained", 768, 224)
    assert (spec.mean, spec.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert get_backbone("dinov2:vitg14_reg").dim == 1536
    assert checkpoint_name("vits14") == "dinov2_vits14_pretrain.pth"
    assert checkpoint_name("vitl14_reg") == "dinov2_vitl14_reg4_pretrain.pth"
    with pytest.raises(ValueError, match="unknown DINOv2 model 'vits16'.*vits14, vitb14"):
        get_backbone("dinov2:vits16")


def test_features_are_the_hub_models_output_with_the_cached_weights(no_download):
    paths = write_hub(no_download, models=("vits14", "vits14_reg"))
    assert default_weights_path("dinov2:vits14") == paths["vits14"]
    backbone = PretrainedBackbone("dinov2:vits14", 224).eval()
    assert backbone.dim == 384
    ref = torch.hub.load(str(no_download / "hub" / REPO_DIR), "dinov2_vits14", source="local", pretrained=False)
    ref.load_state_dict(torch.load(paths["vits14"], weights_only=True))
    x = torch.rand(3, 1, 20, 20)  # grayscale, resized to 224 and normalised with ImageNet mean/std
    with torch.no_grad():
        got = backbone(x)
        size = torch.nn.functional.interpolate(x.expand(-1, 3, -1, -1), size=(224, 224), mode="bilinear",
                                               antialias=True, align_corners=False)
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        want = ref.eval()((size - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    assert got.shape == (3, 384)
    assert torch.allclose(got, want, atol=1e-5)
    other = PretrainedBackbone("dinov2:vits14_reg", 224).eval()  # its own file: other weights, other features
    with torch.no_grad():
        assert not torch.allclose(other(x), got, atol=1e-3)


def test_weights_given_as_a_file_and_an_input_side_off_the_patch_grid(no_download, tmp_path):
    write_hub(no_download, models=())
    net = torch.hub.load(str(no_download / "hub" / REPO_DIR), "dinov2_vits14", source="local", pretrained=False)
    mine = tmp_path / "mine.pth"
    torch.save(net.state_dict(), mine)
    assert PretrainedBackbone("dinov2:vits14", 112, weights=mine).size == 112
    with pytest.raises(PretrainedError, match="multiple of 14 px .* got 160; use --backbone-size 154 or 168"):
        PretrainedBackbone("dinov2:vits14", 160, weights=mine)


def test_missing_code_or_weights_name_what_and_the_fetch_command(no_download, tmp_path):
    hub = no_download / "hub"
    with pytest.raises(PretrainedError) as e:
        default_weights_path("dinov2:vitb14")
    msg = str(e.value)
    assert "\n" not in msg and "nothing is downloaded" in msg
    assert f"its model code ({hub / REPO_DIR}) and its weights file ({hub / 'checkpoints'}" in msg
    assert fetch_command("vitb14") in msg
    assert "torch.hub.load('facebookresearch/dinov2', 'dinov2_vitb14', trust_repo=True)" in msg
    write_hub(no_download, models=("vits14",), code=False)  # weights without the code
    with pytest.raises(PretrainedError, match=r"its model code \(.*\) is missing"):
        PretrainedBackbone("dinov2:vits14", 224)


def test_cli_embeds_a_folder_with_dinov2(no_download, digits_pool, tmp_path):
    from selector.cli import main

    write_hub(no_download)
    out = tmp_path / "emb.npy"
    args = ["embed", "--backbone", "dinov2:vits14", "--pool", str(digits_pool), "--out", str(out), "-q",
            "--device", "cpu", "--workers", "0", "--cache-dir", str(tmp_path / "cache")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    emb = np.load(out)
    assert emb.shape == (60, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert np.linalg.matrix_rank(emb) > 1  # images differ, so do their features


def test_cli_without_the_hub_folder_is_one_line_with_the_fetch_command(no_download, digits_pool, tmp_path):
    from selector.cli import main

    r = CliRunner().invoke(main, ["embed", "--backbone", "dinov2:vits14", "--pool", str(digits_pool), "--out",
                                  str(tmp_path / "e.npy"), "-q", "--device", "cpu", "--workers", "0"])
    assert r.exit_code == 1
    line = error_line(r)
    assert "backbone dinov2:vits14" in line and fetch_command("vits14") in line
    assert not (tmp_path / "e.npy").exists()
