"""The small ResNets trained on the pool (selector.backbones.resnet): output shapes, size, the strided stem
above 24 px, the CIFAR stem of resnet18, and an unknown architecture refused."""
from __future__ import annotations

import pytest
import torch

from selector.backbones import Encoder, EncoderConfig, resnet18_cifar, small_resnet


@pytest.mark.parametrize("channels,size", [(1, 16), (1, 28), (3, 32), (3, 64)])
def test_small_resnet_shapes(channels, size):
    enc = Encoder(EncoderConfig("resnet-small", channels, size, proj_dim=64)).eval()
    x = torch.rand(3, channels, size, size)
    assert enc.embed(x).shape == (3, 256)
    assert enc(x).shape == (3, 64)


def test_small_resnet_is_small_and_strided_stem_above_24px():
    n_params = sum(p.numel() for p in small_resnet(3, 32).parameters())
    assert 1_000_000 < n_params < 1_500_000
    assert small_resnet(3, 32)[0].stride == (2, 2)
    assert small_resnet(1, 16)[0].stride == (1, 1)


def test_resnet18_cifar_stem():
    m = resnet18_cifar(3)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, torch.nn.Identity)
    assert m.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 512)


def test_unknown_arch_rejected():
    with pytest.raises(ValueError, match="unknown encoder architecture 'vit'"):
        Encoder(EncoderConfig(arch="vit"))
