"""Encoder checkpoint files (selector.checkpoint): only weights are ever loaded; missing, corrupt, foreign,
truncated files and weights that do not fit the stored architecture or input size are refused with one
line, from ``read_checkpoint`` / ``load_encoder`` and from ``selector select --encoder``; a damaged cached
encoder is trained again.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from selector.backbones import EncoderConfig
from selector.checkpoint import CheckpointError, load_encoder, read_checkpoint, save_checkpoint
from selector.train import TrainConfig
from tests.conftest import error_line, run, select

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENC = EncoderConfig("resnet-small", 1, 16, proj_dim=32)


def _cfg(**kw):
    base = dict(loss="simclr", epochs=2, batch_size=16, seed=3)
    base.update(kw)
    return TrainConfig(**base)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_code_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": "selector-encoder", "payload": _Evil()}, p)
    with pytest.raises(CheckpointError, match="cannot load encoder"):
        read_checkpoint(p)


def test_corrupt_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="junk.pt"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a selector encoder checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


def test_wrong_architecture_weights(tmp_path):
    from selector.backbones import Encoder

    enc = Encoder(ENC)
    p = tmp_path / "enc.pt"
    save_checkpoint(p, enc, _cfg(), epoch=1, step=0)
    state = torch.load(p, weights_only=True)
    state["config"]["arch"] = "resnet18"
    with open(p, "wb") as f:
        torch.save(state, f)
    with pytest.raises(CheckpointError, match="do not fit the stored architecture"):
        load_encoder(p)


def test_encoder_missing(pool, tmp_path, unchanged):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", tmp_path / "none.pt", "-b", 3)
    assert r.exit_code == 1 and error_line(r) == f"Error: encoder file {tmp_path / 'none.pt'} does not exist"


@pytest.mark.parametrize("kind", ["garbage", "truncated", "not-a-checkpoint"])
def test_encoder_corrupt(pool, tmp_path, encoder_file, unchanged, kind):
    unchanged(pool)
    bad = tmp_path / "bad.pt"
    if kind == "garbage":
        bad.write_bytes(os.urandom(2000))
    elif kind == "truncated":
        bad.write_bytes(encoder_file.read_bytes()[:5000])
    else:
        torch.save({"weights": torch.zeros(3)}, bad)
    r = select(pool, tmp_path / "s.csv", bad, "-b", 3)
    assert r.exit_code == 1
    line = error_line(r)
    assert str(bad) in line and ("cannot load encoder" in line or "is not a selector encoder checkpoint" in line)


def test_encoder_wrong_architecture(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    state = torch.load(encoder_file, weights_only=True)
    state["config"]["arch"] = "resnet18"  # the weights are resnet-small's
    bad = tmp_path / "wrong_arch.pt"
    torch.save(state, bad)
    r = select(pool, tmp_path / "s.csv", bad, "-b", 3)
    assert r.exit_code == 1 and f"{bad}: weights do not fit the stored architecture" in error_line(r)


def test_encoder_wrong_input_size(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3, "--image-size", 32)
    assert r.exit_code == 1
    assert error_line(r) == (f"Error: encoder {encoder_file} expects 16 px images, but --image-size 32 was given; "
                             "leave --image-size out")
    state = torch.load(encoder_file, weights_only=True)
    state["config"]["image_size"] = 32  # claims 32 px, but the stem's weights are for a 16 px stride-1 stem...
    state["config"]["in_channels"] = 1  # ...and for three channels
    bad = tmp_path / "wrong_input.pt"
    torch.save(state, bad)
    r = select(pool, tmp_path / "s.csv", bad, "-b", 3)
    assert r.exit_code == 1 and f"{bad}: weights do not fit the stored architecture" in error_line(r)


class _Payload:
    """A pickle that runs code when loaded (it would create ``marker``)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_encoder_pickle_with_code_is_refused(pool, tmp_path, unchanged):
    unchanged(pool)
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    torch.save({"format": "selector-encoder", "version": 1, "x": _Payload(marker)}, bad)
    r = select(pool, tmp_path / "s.csv", bad, "-b", 3)
    assert r.exit_code == 1 and error_line(r) == (f"Error: cannot load encoder {bad}: it holds Python objects other "
                                                  "than weights; refused (only weights are ever loaded)")
    assert not marker.exists()  # weights_only loading never ran the payload


def test_encoder_that_is_a_folder(pool, tmp_path):
    d = tmp_path / "encdir"
    d.mkdir()
    r = run("select", "--pool", pool, "--out", tmp_path / "s.csv", "-b", 3, "--encoder", d)
    assert r.exit_code == 1
    assert error_line(r) == f"Error: encoder {d} is a folder; give the checkpoint file (from 'selector train')"


@pytest.mark.trains
def test_truncated_cached_encoder_is_trained_again(pool, tmp_path):
    cache = tmp_path / "cache"
    args = ("select", "--pool", pool, "-b", 3, "--epochs", 1, "--batch-size", 16, "--image-size", 8,
            "--arch", "resnet-small", "--cache-dir", cache, "--workers", 1, "--strategy", "random")
    r = run(*args, "--out", tmp_path / "a.csv")
    assert r.exit_code == 0, r.output
    (ckpt,) = (cache / "encoders").glob("encoder-*.pt")
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    r = run(*args, "--out", tmp_path / "b.csv")
    assert r.exit_code == 0, r.output
    assert f"ignoring damaged cached encoder {ckpt}" in r.output and "training again" in r.output
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()  # same seed, same encoder


# -- the code digest in every cache key ------------------------------------------------------------------

@pytest.fixture
def patched_code(monkeypatch):
    """Call with a file name (relative to the package) to pretend its code changed by one byte; the cached
    digests are recomputed, and again once the test is over."""
    import selector.checkpoint as ck

    def change(rel: str):
        real = ck._file_bytes
        here = Path(ck.__file__).resolve().parent
        monkeypatch.setattr(ck, "_file_bytes", lambda f: real(f) + (b"#" if f == here / rel else b""))
        ck.embed_digest.cache_clear()
        ck.recipe_digest.cache_clear()

    yield change
    monkeypatch.undo()
    ck.embed_digest.cache_clear()
    ck.recipe_digest.cache_clear()


def test_embedding_key_follows_the_code_that_makes_the_vectors(patched_code, monkeypatch):
    """The key of a frozen encoder's cached vectors changes with the package version and with any byte of the
    code that reads, resizes or embeds the images (it used to hold only a constant)."""
    import selector._version
    import selector.checkpoint as ck
    from selector.backbones import Encoder
    from selector.embed import encoder_key

    files = {f.relative_to(Path(ck.__file__).resolve().parent).as_posix() for f in ck.code_files(ck.EMBED_MODULES)}
    assert {"pool/decode.py", "pool/read.py", "embed.py", "backbones/encoder.py", "augment.py"} <= files
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig("resnet-small", 1, 16, mode="frozen"))
    k0 = encoder_key(enc)
    for rel in ("pool/decode.py", "pool/read.py", "embed.py", "backbones/torchvision.py"):
        patched_code(rel)
        assert encoder_key(enc) != k0, rel
        monkeypatch.undo()
        ck.embed_digest.cache_clear()
        assert encoder_key(enc) == k0
    monkeypatch.setattr(selector._version, "__version__", "99.0")
    ck.embed_digest.cache_clear()
    assert encoder_key(enc) != k0
    patched_code("losses/nt_xent.py")  # training code: no part of a frozen encoder's vectors
    monkeypatch.undo()
    ck.embed_digest.cache_clear()
    assert encoder_key(enc) == k0


def test_a_code_change_embeds_a_frozen_backbones_pool_again(tmp_path, mobilenet_weights, patched_code):
    """After a change to the preprocessing, a run used to report "0 images embedded, 120 from cache"."""
    import numpy as np

    from selector.api import Selector
    from tests.backbones.conftest import rgb_pool

    pool = tmp_path / "pool.npz"
    np.savez(pool, x=rgb_pool(12).transpose(0, 2, 3, 1))

    def fit():
        return Selector(strategy="random", backbone="torchvision:mobilenet_v3_small", weights=mobilenet_weights,
                        backbone_size=32, cache_dir=tmp_path / "cache", device="cpu").fit(pool)

    assert fit().n_embedded_ == 12
    assert fit().n_embedded_ == 0  # the cache serves the same code
    patched_code("pool/read.py")
    assert fit().n_embedded_ == 12
