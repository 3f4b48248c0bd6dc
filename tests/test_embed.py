"""Batched embedding (selector.embed): unit float32 rows independent of the batch size, the encoder's mode
restored, an encoder key that follows the weights, the decoding side and the precision, bfloat16 where it
runs natively, and a pool read in chunks embedded as the decoded pool."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from selector.backbones import Encoder, EncoderConfig
from selector.embed import bf16_native, embed_array, embed_pool, encoder_key, resolve_precision


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


def test_encoder_key_follows_the_decoding_side_and_the_precision():
    enc = _enc()
    assert encoder_key(enc) == encoder_key(enc, 16, "float32")  # the pool's side by default
    assert len({encoder_key(enc, 16), encoder_key(enc, 32), encoder_key(enc, 16, "bfloat16")}) == 3


def test_precision_auto_is_bfloat16_only_where_it_runs_natively(monkeypatch):
    import selector.embed as E

    monkeypatch.setattr(E, "bf16_native", lambda device: True)
    assert resolve_precision("auto", "cpu") == "bfloat16" == resolve_precision("bfloat16", "cpu")
    monkeypatch.setattr(E, "bf16_native", lambda device: False)
    assert resolve_precision("auto", "cpu") == "float32" == resolve_precision("bfloat16", "cpu")
    assert resolve_precision("float32", "cpu") == "float32"
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_precision("half", "cpu")


def test_bfloat16_embedding_is_close_to_float32(digits_images):
    """bfloat16 changes the vectors a little (the embedding benchmark checks kNN accuracy on every dataset);
    here, on the digits, each row stays close to its float32 row."""
    if not bf16_native(torch.device("cpu")):
        pytest.skip("this CPU does not run bfloat16 natively")
    enc = _enc()
    a = embed_array(enc, digits_images, "cpu", precision="float32")
    b = embed_array(enc, digits_images, "cpu", precision="bfloat16")
    assert b.dtype == np.float32 and np.all((a * b).sum(axis=1) > 0.99)


def test_a_pool_read_in_chunks_embeds_as_the_decoded_pool(tmp_path):
    """Streaming (a RowReader at the pool's side) and the decoded pool give the same vectors, through the
    cache; a file that does not decode is reported, not embedded, and the others are cached."""
    from selector.pool import decode_pool, scan_folder
    from selector.pool.read import RowReader
    from tests.conftest import write_photos

    folder = write_photos(tmp_path / "p", n=9, size=40)
    (folder / "004.jpg").write_bytes((folder / "004.jpg").read_bytes()[:150])
    pool = scan_folder(folder, workers=1)
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig("resnet-small", 3, pool.size, mode="frozen")).eval()
    with RowReader(pool, pool.size, batch=4) as reader:
        emb, n, failed = embed_pool(reader, pool.digests, enc, cache_dir=tmp_path / "c", chunk=3, batch_size=4)
    assert list(failed) == [4] and n == 8 and not emb[4].any()
    decoded = decode_pool(pool)
    want = embed_array(enc, decoded.images)
    np.testing.assert_allclose(np.delete(emb, 4, axis=0), want, atol=1e-6)
    again, n2, failed2 = embed_pool(decoded.images, decoded.digests, enc, cache_dir=tmp_path / "c")
    assert n2 == 0 and failed2 == {}  # every decodable image came from the cache
    np.testing.assert_array_equal(again, np.delete(emb, 4, axis=0))
