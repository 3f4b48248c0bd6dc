"""The embedding cache follows the pool's files: added, removed and modified files are noticed, and only
images never seen by this encoder are embedded again (through the CLI and through embed_pool)."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from selector.backbones import Encoder, EncoderConfig
from selector.checkpoint import save_checkpoint
from selector.cli import main
from selector.embed import embed_array, embed_pool, encoder_key
from selector.pool import load_folder
from selector.train import TrainConfig
from tests.conftest import snapshot, write_pool


@pytest.fixture(scope="module")
def gray_encoder_file(tmp_path_factory):
    """An (untrained, seeded) 1-channel 16 px encoder checkpoint for the grayscale digit pools here."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("enc") / "enc.pt"
    save_checkpoint(path, Encoder(EncoderConfig(in_channels=1, image_size=16)), TrainConfig(epochs=1), epoch=1, step=0)
    return path


def _select(pool, out, enc, cache, budget):
    r = CliRunner().invoke(main, [str(a) for a in ("select", "-p", pool, "-o", out, "--encoder", enc, "-s", "random",
                                                    "-b", budget, "--cache-dir", cache, "--workers", 1, "-q", "-f")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output, [row["path"] for row in csv.DictReader(open(out, encoding="utf-8"))]


def test_cache_follows_added_removed_and_modified_files(tmp_path, gray_encoder_file):
    pool = write_pool(tmp_path / "pool", 40)
    cache, out = tmp_path / "cache", tmp_path / "s.csv"

    text, _ = _select(pool, out, gray_encoder_file, cache, 5)
    assert "40 images embedded, 0 from cache" in text
    text, _ = _select(pool, out, gray_encoder_file, cache, 5)
    assert "0 images embedded, 40 from cache" in text

    Image.fromarray(np.full((8, 8), 77, dtype=np.uint8)).save(pool / "new.png")  # added
    text, chosen = _select(pool, out, gray_encoder_file, cache, 41)
    assert "41 images in" in text and "1 images embedded, 40 from cache" in text and "new.png" in chosen

    (pool / "003.png").unlink()  # removed
    (pool / "004.png").unlink()
    text, chosen = _select(pool, out, gray_encoder_file, cache, 39)
    assert "39 images in" in text and "0 images embedded, 39 from cache" in text
    assert not {"003.png", "004.png"} & set(chosen) and len(chosen) == 39

    Image.fromarray(np.full((8, 8), 200, dtype=np.uint8)).save(pool / "000.png")  # modified in place
    text, _ = _select(pool, out, gray_encoder_file, cache, 5)
    assert "1 images embedded, 38 from cache" in text

    shutil.move(pool / "001.png", pool / "renamed.png")  # same bytes under a new name: nothing to do
    text, _ = _select(pool, out, gray_encoder_file, cache, 5)
    assert "0 images embedded, 39 from cache" in text


def test_cached_vectors_equal_fresh_ones_and_damage_is_recomputed(tmp_path, gray_encoder_file):
    from selector.checkpoint import load_encoder

    pool_dir = write_pool(tmp_path / "pool", 30)
    before = snapshot(pool_dir)
    enc, _ = load_encoder(gray_encoder_file)
    p = load_folder(pool_dir, channels=1, image_size=16, workers=0)
    fresh = embed_array(enc, p.images)
    cache = tmp_path / "cache"
    first, n1, _ = embed_pool(p.images[:20], p.digests[:20], enc, cache_dir=cache, chunk=7)
    assert n1 == 20 and len(list((cache / "embeddings" / encoder_key(enc)).glob("chunk-*.npz"))) == 3
    full, n2, _ = embed_pool(p.images, p.digests, enc, cache_dir=cache, chunk=7)
    assert n2 == 10  # only the 10 new images
    np.testing.assert_allclose(full, fresh, atol=1e-6)
    np.testing.assert_allclose(full[:20], first, atol=0)
    # A damaged chunk is ignored with a warning and its images embedded again.
    chunk = sorted((cache / "embeddings" / encoder_key(enc)).glob("chunk-*.npz"))[0]
    chunk.write_bytes(chunk.read_bytes()[:100])
    again, n3, _ = embed_pool(p.images, p.digests, enc, cache_dir=cache, chunk=7)
    assert 0 < n3 <= 7
    np.testing.assert_allclose(again, fresh, atol=1e-6)
    assert snapshot(pool_dir) == before


def test_duplicates_embedded_once(tmp_path, gray_encoder_file):
    from selector.checkpoint import load_encoder

    pool_dir = write_pool(tmp_path / "pool", 10)
    shutil.copyfile(pool_dir / "002.png", pool_dir / "002 copy.png")
    enc, _ = load_encoder(gray_encoder_file)
    p = load_folder(pool_dir, channels=1, image_size=16, workers=0)
    emb, n, _ = embed_pool(p.images, p.digests, enc, cache_dir=tmp_path / "cache")
    assert n == 10 and p.n_duplicates == 1
    i, j = p.ids.index("002 copy.png"), p.ids.index("002.png")
    assert (emb[i] == emb[j]).all()
