"""Encoders: small ResNets for small images, built from torchvision's residual blocks, plus a
projection head (Chen et al., 2020). The backbone output, not the projection, is the embedding.

* ``resnet-small``: widths 32-64-128-256, one BasicBlock per stage (1.2 M parameters), a 3x3 stem with
  stride 2 for inputs of 24 px and more (stride 1 below), no max-pool. About 32 MFLOP per 32 px image,
  35x fewer than the CIFAR ResNet-18 (1.1 GFLOP): the default, sized for a CPU. Embedding dimension 256.
* ``resnet18``: torchvision's ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool; He et al.,
  2016, as used for CIFAR by SimCLR). Embedding dimension 512. For a GPU.
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
    backbone features, the embedding used for selection. ``x`` is (B, C, S, S) float in [0, 1].
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.arch not in ARCHS:
            raise ValueError(f"unknown encoder architecture {config.arch!r}; choose from {', '.join(ARCHS)}")
        self.config = config
        if config.arch == "resnet-small":
            self.backbone = small_resnet(config.in_channels, config.image_size)
            self.dim = 256
        else:
            self.backbone = resnet18_cifar(config.in_channels)
            self.dim = 512
        self.head = nn.Sequential(
            nn.Linear(self.dim, self.dim), nn.BatchNorm1d(self.dim), nn.ReLU(inplace=True),
            nn.Linear(self.dim, config.proj_dim),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - 0.5) / 0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
