"""Batched embedding (selector.embed): unit float32 rows independent of the batch size, the encoder's mode
restored, and an encoder key that follows the weights."""
from __future__ import annotations

import numpy as np
import torch

from selector.backbones import Encoder, EncoderConfig
from selector.embed import embed_array, encoder_key


def _enc(seed=0):
    torch.manual_seed(seed)
    return Encoder(EncoderConfig("resnet-small", 1, 16)).eval()


def test_embeddings_are_unit_float32_and_batch_independent(digits_images):
    enc = _enc()
    a = embed_array(enc, digits_images, "cpu", batch_size=7)
    b = embed_array(enc, digits_images, "cpu", batch_size=48)
    assert a.shape == (48, 256) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    # Matches the encoder's own forward pass on the same batch, normalised.
    with torch.no_grad():
        ref = torch.nn.functional.normalize(enc.embed(torch.from_numpy(digits_images[:5]).float() / 255), dim=1)
    np.testing.assert_allclose(a[:5], ref.numpy(), atol=1e-5)


def test_embed_restores_training_mode(digits_images):
    enc = _enc().train()
    embed_array(enc, digits_images[:4], "cpu")
    assert enc.training


def test_encoder_key_follows_weights():
    a, b = _enc(0), _enc(0)
    assert encoder_key(a) == encoder_key(b)
    with torch.no_grad():
        next(b.parameters()).add_(1e-3)
    assert encoder_key(a) != encoder_key(b)
    assert encoder_key(a) != encoder_key(_enc(1))
