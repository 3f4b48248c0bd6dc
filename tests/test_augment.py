"""Training views (selector.augment): shape and range kept, parameters drawn per sample and seeded, flips and
the crop scale reaching the training configuration."""
from __future__ import annotations

import pytest
import torch

from selector.augment import make_augment, to_float


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28), (1, 16)])
def test_views_keep_shape_and_range(channels, size):
    torch.manual_seed(0)
    x = torch.rand(16, channels, size, size)
    v = make_augment(channels, size)(x)
    assert v.shape == x.shape and v.dtype == torch.float32
    assert v.min() >= 0.0 and v.max() <= 1.0


@pytest.mark.parametrize("channels", [1, 3])
def test_parameters_are_drawn_per_sample(channels):
    """The same image repeated in a batch gets different views (per-sample parameters)."""
    torch.manual_seed(0)
    img = torch.rand(1, channels, 32, 32).repeat(8, 1, 1, 1)
    v = make_augment(channels, 32)(img)
    diffs = [(v[0] - v[i]).abs().mean().item() for i in range(1, 8)]
    assert min(diffs) > 1e-3


def test_seeded_views_repeat():
    x = torch.rand(4, 3, 32, 32)
    aug = make_augment(3, 32)
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    b = aug(x)
    assert torch.equal(a, b)


def test_to_float():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert torch.equal(to_float(x), torch.tensor([[[[0.0, 1.0]]]]))


def test_bad_channels():
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        make_augment(2, 32)


@pytest.mark.parametrize("channels", [1, 3])
def test_flips_on_by_default_and_off_on_request(channels):
    import kornia.augmentation as K

    def flips(m):
        return sum(isinstance(op, K.RandomHorizontalFlip) for op in m)

    assert flips(make_augment(channels, 16)) == 1
    assert flips(make_augment(channels, 16, flip=False)) == 0


def test_crop_scale_reaches_the_crop():
    import kornia.augmentation as K

    crop = [op for op in make_augment(3, 16, crop_scale=0.6) if isinstance(op, K.RandomResizedCrop)][0]
    torch.manual_seed(0)
    params = crop.forward_parameters(torch.Size([2000, 3, 16, 16]))
    # The sampled crop areas (as a fraction of the image) never go below the smallest scale.
    src = params["src"].float()
    area = (src[:, 1, 0] - src[:, 0, 0] + 1) * (src[:, 2, 1] - src[:, 1, 1] + 1) / 256
    assert float(area.min()) >= 0.6 - 0.08  # integer rounding of the box on a 16 px image
    assert float(area.min()) < 0.75


def test_no_flip_reaches_the_training_config():
    from selector import Selector

    assert Selector().train_config(1000).flip is True
    assert Selector(flip=False).train_config(1000).flip is False
