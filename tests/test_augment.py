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
