"""Encoders: small ResNets for small images, built from torchvision's residual blocks, plus a
projection head (Chen et al., 2020). The backbone output, not the projection, is the embedding.

* ``resnet-small``: widths 32-64-128-256, one BasicBlock per stage (1.2 M parameters), a 3x3 stem with
  stride 2 for inputs of 24 px and more (stride 1 below), no max-pool. About 32 MFLOP per 32 px image,
  35x fewer than the CIFAR ResNet-18 (1.1 GFLOP): the default, sized for a CPU. Embedding dimension 256.
* ``resnet18``: torchvision's ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool; He et al.,
  2016, as used for CIFAR by SimCLR). Embedding dimension 512. For a GPU.
* pretrained ImageNet backbones (``efficientnet-lite0``, ``torchvision:NAME``; :mod:`selector.pretrained`),
  either frozen (``mode="frozen"``: no projection head, no training) or fine-tuned from their weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, resnet18

ARCHS = ("resnet-small", "resnet18")


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to rebuild an encoder from a checkpoint (stored beside its weights)."""

    arch: str = "resnet-small"
    in_channels: int = 3
    image_size: int = 32
    proj_dim: int = 128
    mode: str = "trained"  # "trained" (on the pool; from pretrained weights if any) or "frozen" (no training)
    input_size: int = 0  # network input side of a pretrained backbone (images are resized to it); 0: image_size
    weights_digest: str = ""  # content digest of a pretrained backbone's weights file

    def to_dict(self) -> dict:
        return asdict(self)


def _stage(c_in: int, c_out: int, blocks: int, stride: int) -> nn.Sequential:
    layers = []
    for j in range(blocks):
        s = stride if j == 0 else 1
        down = None
        if s != 1 or c_in != c_out:
            down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, s, bias=False), nn.BatchNorm2d(c_out))
        layers.append(BasicBlock(c_in, c_out, s, down))
        c_in = c_out
    return nn.Sequential(*layers)


def small_resnet(in_channels: int, image_size: int, widths=(32, 64, 128, 256), blocks=(1, 1, 1, 1)) -> nn.Module:
    """(B, in_channels, S, S) -> (B, widths[-1]) features."""
    stem_stride = 2 if image_size >= 24 else 1
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(inplace=True),
    ]
    c = widths[0]
    for i, (w, b) in enumerate(zip(widths, blocks)):
        layers.append(_stage(c, w, b, 1 if i == 0 else 2))
        c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def resnet18_cifar(in_channels: int) -> nn.Module:
    """torchvision ResNet-18 with a 3x3 stride-1 stem and no max-pool; (B, C, S, S) -> (B, 512)."""
    m = resnet18(weights=None)
    m.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.fc = nn.Identity()
    return m


class Encoder(nn.Module):
    """Backbone + 2-layer MLP projection head.

    ``forward(x)`` -> (B, proj_dim) projections for the contrastive loss; ``embed(x)`` -> (B, dim)
    backbone features, the embedding used for selection; ``forward(x, features=True)`` -> both
    (features, projections), in one pass (for a decoder that reads the embedding). ``x`` is (B, C, S, S)
    float in [0, 1].
    """

    def __init__(self, config: EncoderConfig, weights: str | None = None, load_weights: bool = True):
        super().__init__()
        from .pretrained import is_pretrained

        pretrained = is_pretrained(config.arch)
        if config.arch not in ARCHS and not pretrained:
            raise ValueError(f"unknown encoder architecture {config.arch!r}; choose from {', '.join(ARCHS)}")
        if config.mode not in ("trained", "frozen"):
            raise ValueError(f"unknown encoder mode {config.mode!r}; use trained or frozen")
        self.config = config
        self.pretrained = pretrained
        if pretrained:
            self.backbone = _pretrained_backbone(config, weights, load_weights)
            self.dim = self.backbone.dim
        elif config.arch == "resnet-small":
            self.backbone = small_resnet(config.in_channels, config.image_size)
            self.dim = 256
        else:
            self.backbone = resnet18_cifar(config.in_channels)
            self.dim = 512
        if config.mode == "frozen":  # nothing is trained: no head (and no random weights in the cache key)
            self.head = None
        else:
            self.head = nn.Sequential(
                nn.Linear(self.dim, self.dim), nn.BatchNorm1d(self.dim), nn.ReLU(inplace=True),
                nn.Linear(self.dim, config.proj_dim),
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.pretrained:  # resizes and normalises as its weights expect
            return self.backbone(x)
        return self.backbone((x - 0.5) / 0.25)

    def forward(self, x: torch.Tensor, features: bool = False):
        if self.head is None:
            raise RuntimeError("a frozen encoder has no projection head; it is not trained")
        h = self.embed(x)
        return (h, self.head(h)) if features else self.head(h)


def _pretrained_backbone(config: EncoderConfig, weights: str | None, load: bool) -> nn.Module:
    from .pretrained import PretrainedBackbone, PretrainedError, file_digest, weights_path

    size = config.input_size or config.image_size
    if load and config.weights_digest:
        path = weights_path(config.arch, weights)
        found = file_digest(path)
        if found != config.weights_digest:
            raise PretrainedError(f"weights {path} (digest {found}) are not the ones this encoder was "
                                  f"configured with (digest {config.weights_digest})")
    return PretrainedBackbone(config.arch, size, weights=weights, load=load)
