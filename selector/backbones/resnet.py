"""Small ResNets trained on the pool, built from torchvision's residual blocks.

* ``resnet-small``: widths 32-64-128-256, one BasicBlock per stage (1.2 M parameters), a 3x3 stem with
  stride 2 for inputs of 24 px and more (stride 1 below), no max-pool. About 32 MFLOP per 32 px image,
  35x fewer than the CIFAR ResNet-18 (1.1 GFLOP): sized for a CPU. Features: 256-d.
* ``resnet18``: torchvision's ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool; He et al.,
  2016, as used for CIFAR by SimCLR). Features: 512-d. For a GPU.
"""
from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, resnet18

from .registry import BackboneSpec, register_backbone


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


def resnet18_cifar(in_channels: int, image_size: int = 32) -> nn.Module:
    """torchvision ResNet-18 with a 3x3 stride-1 stem and no max-pool; (B, C, S, S) -> (B, 512)."""
    del image_size  # the CIFAR stem suits every pool size
    m = resnet18(weights=None)
    m.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.fc = nn.Identity()
    return m


register_backbone(BackboneSpec("resnet-small", "trained", small_resnet, 256,
                               "small ResNet trained on the pool (1.2 M parameters; for a CPU)"))
register_backbone(BackboneSpec("resnet18", "trained", resnet18_cifar, 512,
                               "ResNet-18 with a CIFAR stem trained on the pool (for a GPU)"))
