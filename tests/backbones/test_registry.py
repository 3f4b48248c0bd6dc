"""The backbone registry (selector.backbones): names, specs, the torchvision family, and a backbone added
from one new module, used by ``selector embed``."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from selector.backbones import (
    ARCHS,
    BackboneSpec,
    Encoder,
    EncoderConfig,
    UnknownBackbone,
    backbone_names,
    describe_backbones,
    get_backbone,
    is_pretrained,
    register_backbone,
    registry,
)


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by the test end with it."""
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))


def test_names_and_specs():
    assert backbone_names() == ("resnet-small", "resnet18", "efficientnet-lite0", "efficientnet-lite1",
                                "efficientnet-lite2", "dinov2:NAME", "open_clip:NAME", "timm:NAME", "torchvision:NAME")
    assert backbone_names("trained") == ARCHS == ("resnet-small", "resnet18")
    assert backbone_names("pretrained") == ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2",
                                            "dinov2:NAME", "open_clip:NAME", "timm:NAME", "torchvision:NAME")
    small, lite = get_backbone("resnet-small"), get_backbone("efficientnet-lite0")
    assert (small.kind, small.dim, small.pretrained) == ("trained", 256, False)
    assert (get_backbone("resnet18").kind, get_backbone("resnet18").dim) == ("trained", 512)
    assert (lite.kind, lite.dim, lite.native_size, lite.mean) == ("pretrained", 1280, 224, (0.5, 0.5, 0.5))
    assert is_pretrained("efficientnet-lite0") and is_pretrained("torchvision:anything")
    assert not is_pretrained("resnet-small") and not is_pretrained("auto") and not is_pretrained("vgg")
    text = describe_backbones()
    assert all(name in text for name in backbone_names())
    assert "efficientnet-lite0" not in describe_backbones("trained")


def test_the_torchvision_family_resolves_any_model_by_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = get_backbone("torchvision:resnet18")
    assert (spec.name, spec.kind, spec.dim, spec.native_size) == ("torchvision:resnet18", "pretrained", None, 224)
    assert get_backbone("torchvision:resnet18") is spec  # resolved once
    assert spec.default_weights() == tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(ValueError, match="unknown torchvision model 'nosuchnet'"):
        get_backbone("torchvision:nosuchnet")


def test_unknown_name_lists_the_choices():
    with pytest.raises(UnknownBackbone, match=r"unknown backbone 'vgg'; choose from resnet-small, resnet18, "
                                              r"efficientnet-lite0, efficientnet-lite1, efficientnet-lite2, "
                                              r"dinov2:NAME, open_clip:NAME, timm:NAME, torchvision:NAME"):
        get_backbone("vgg")
    with pytest.raises(ValueError, match="unknown encoder architecture 'vgg'; choose from resnet-small"):
        Encoder(EncoderConfig(arch="vgg"))


def test_registration_refuses_taken_reserved_and_family_names(scratch_registry):
    build = get_backbone("resnet-small").build
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(BackboneSpec("resnet-small", "trained", build, 8, "another"))
    with pytest.raises(ValueError, match="reserved"):
        BackboneSpec("auto", "trained", build, 8, "the automatic choice is not a backbone")
    with pytest.raises(ValueError, match="kind must be one of"):
        BackboneSpec("x", "imported", build, 8, "x")
    with pytest.raises(ValueError, match="falls in the family torchvision:NAME"):
        register_backbone(BackboneSpec("torchvision:mine", "pretrained", build, 8, "x"))


def test_the_feature_width_comes_from_the_spec_or_the_built_module(scratch_registry):
    def build(in_channels, side):
        return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 5, 3), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten())

    register_backbone(BackboneSpec("tiny-trained", "trained", build, None, "a tiny network trained on the pool"))
    enc = Encoder(EncoderConfig("tiny-trained", 1, 16, proj_dim=4))
    assert enc.dim == 5 and enc(torch.rand(3, 1, 16, 16)).shape == (3, 4)
    assert enc.embed(torch.rand(3, 1, 16, 16)).shape == (3, 5)


TINY_MODULE = '''
"""A tiny pretrained backbone: what a new backbone family file holds."""
import torch
from torch import nn

from selector.backbones import BackboneSpec, register_backbone


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 10)  # the classifier: removed, its input is the embedding

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


register_backbone(BackboneSpec("tiny-pretrained", "pretrained", lambda in_channels, side: TinyNet(), 6,
                               "a tiny test network", native_size=32))
'''


def test_a_backbone_from_one_new_module_embeds_with_the_cli(tmp_path, digits_pool, scratch_registry, monkeypatch):
    from selector.cli import main

    path = tmp_path / "tiny_backbone.py"
    path.write_text(TINY_MODULE)
    spec = importlib.util.spec_from_file_location("tiny_backbone", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tiny_backbone", module)
    spec.loader.exec_module(module)  # the import registers the backbone
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pth"
    torch.save(module.TinyNet().state_dict(), weights)

    assert "tiny-pretrained" in backbone_names("pretrained")
    help_text = "".join(CliRunner().invoke(main, ["embed", "--help"]).output.split())  # unwrapped
    assert "tiny-pretrained:atinytestnetwork" in help_text  # --backbone's help reads the registry
    out = tmp_path / "emb.npy"
    r = CliRunner().invoke(main, ["embed", "--backbone", "tiny-pretrained", "--weights", str(weights), "--pool",
                                  str(digits_pool), "--out", str(out), "-q", "--device", "cpu", "--workers", "0",
                                  "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    emb = np.load(out)
    assert emb.shape == (60, 6) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert len((tmp_path / "emb.ids.txt").read_text().splitlines()) == 60
