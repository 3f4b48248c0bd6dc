"""Batched augmentations on the model's device, with per-sample random parameters (kornia).

Each image in a batch gets its own crop, flip, colour jitter, ... drawn from torch's global generator
(seeded by the training loop), so two views of a batch are two independent draws.
"""
from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn


def make_augment(channels: int, size: int, flip: bool = True, crop_scale: float | None = None) -> nn.Module:
    """SimCLR-style views for (B, channels, size, size) float images in [0, 1].

    RGB: random resized crop (scale ``crop_scale``-1, default 0.2), horizontal flip, colour jitter
    (p=0.8), grayscale (p=0.2) (Chen et al., 2020, scaled down for small images: no blur).
    Grayscale: random resized crop (default scale 0.5-1), horizontal flip, a small affine (rotation 10
    degrees, shear, translation) and brightness. Flips are on for every pool by default, since most
    pools are not text; ``flip=False`` (``--no-flip``) turns them off for pools where a mirrored image
    is another class (digits, letters). The defaults are those of the embedding benchmark
    (``benchmarks/results/embeddings``).
    """
    if channels == 3:
        ops = [
            K.RandomResizedCrop((size, size), scale=(0.2 if crop_scale is None else crop_scale, 1.0)),
            *([K.RandomHorizontalFlip()] if flip else []),
            K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
            K.RandomGrayscale(p=0.2),
        ]
    elif channels == 1:
        ops = [
            K.RandomResizedCrop((size, size), scale=(0.5 if crop_scale is None else crop_scale, 1.0),
                                ratio=(0.8, 1.25)),
            *([K.RandomHorizontalFlip()] if flip else []),
            K.RandomAffine(degrees=10.0, translate=(0.1, 0.1), shear=8.0, p=0.8),
            K.RandomBrightness((0.7, 1.3), p=0.5),
        ]
    else:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return nn.Sequential(*ops)


def to_float(batch_u8: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) uint8 -> float32 in [0, 1] on the same device."""
    return batch_u8.float().div_(255.0)

