"""Training with the class-conditional autoencoder (``TrainConfig.autoencoder``, ``--autoencoder``): the decoder
trains with the encoder, its weights and optimizer state are checkpointed, a resumed run ends with the weights of
an uninterrupted one, and the encoder cache key changes with the weight."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from selector.backbones import EncoderConfig
from selector.checkpoint import CheckpointError, load_encoder, read_checkpoint
from selector.train import TrainConfig, train_encoder

ENC = EncoderConfig("resnet-small", 1, 16, proj_dim=32)
LABELS = np.where(np.arange(48) < 12, np.arange(48) % 3, -1)  # 12 known labels of 3 classes, 36 unknown


def _cfg(**kw):
    base = dict(loss="supcon-spread", epochs=2, batch_size=16, seed=3, autoencoder=1.0, pseudo_label_every=0,
                loss_params={"temperature": 0.5, "alpha": 0.5})
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.mark.trains
def test_decoder_trains_and_is_checkpointed(tmp_path, digits_images):
    ckpt = tmp_path / "enc.pt"
    enc = train_encoder(digits_images, ENC, _cfg(), "cpu", checkpoint_path=ckpt, labels=LABELS)
    state = read_checkpoint(ckpt)
    dec = state["decoder"]
    assert dec["config"] == {"dim": 256, "channels": 1, "size": 16, "n_classes": 3, "hidden": 512}
    n_enc = sum(1 for _ in enc.parameters())
    n_dec = len(dec["state_dict"])  # fc1, the class vectors, fc2: parameters only
    opt = state["optimizer"]["state"]
    assert len(opt) == n_enc + n_dec  # AdamW moments of the encoder's and the decoder's parameters
    torch.manual_seed(3)  # the decoder's initial weights, drawn right after the encoder's
    from selector.backbones import Encoder
    from selector.losses.autoencoder import ClassConditionalDecoder

    Encoder(ENC)
    init = ClassConditionalDecoder(256, 1, 16, 3).state_dict()
    assert all(not torch.equal(init[k], dec["state_dict"][k]) for k in init)  # every decoder tensor trained
    assert state["train"]["autoencoder"] == 1.0
    loaded, _ = load_encoder(ckpt)  # the encoder file still loads as an encoder (the decoder is extra)
    x = torch.rand(2, 1, 16, 16)
    assert torch.allclose(loaded.embed(x), enc.embed(x))


@pytest.mark.trains
@pytest.mark.parametrize("stop", [1, 4])  # inside epoch 1, at the epoch boundary
def test_resume_gives_the_same_encoder_and_decoder(tmp_path, digits_images, stop):
    ref = tmp_path / "ref.pt"
    train_encoder(digits_images, ENC, _cfg(), "cpu", checkpoint_path=ref, labels=LABELS)
    ckpt = tmp_path / "enc.pt"
    train_encoder(digits_images, ENC, _cfg(), "cpu", checkpoint_path=ckpt, labels=LABELS, stop_after_steps=stop)
    assert read_checkpoint(ckpt)["steps_done"] == stop
    train_encoder(digits_images, ENC, _cfg(), "cpu", checkpoint_path=ckpt, labels=LABELS)
    a, b = read_checkpoint(ckpt), read_checkpoint(ref)
    assert a["epochs_done"] == b["epochs_done"] == 2
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for k in b["decoder"]["state_dict"]:
        assert torch.equal(a["decoder"]["state_dict"][k], b["decoder"]["state_dict"][k]), k


@pytest.mark.trains
def test_resume_refuses_other_labels_or_weight(tmp_path, digits_images):
    ckpt = tmp_path / "enc.pt"
    train_encoder(digits_images, ENC, _cfg(epochs=1), "cpu", checkpoint_path=ckpt, labels=LABELS, stop_after_steps=1)
    more = np.where(np.arange(48) < 12, np.arange(48) % 4, -1)  # four classes: another decoder
    with pytest.raises(CheckpointError, match="no decoder for these labels"):
        train_encoder(digits_images, ENC, _cfg(epochs=1), "cpu", checkpoint_path=ckpt, labels=more)
    with pytest.raises(CheckpointError, match="another encoder or training configuration"):
        train_encoder(digits_images, ENC, _cfg(epochs=1, autoencoder=0.5), "cpu", checkpoint_path=ckpt, labels=LABELS)


@pytest.mark.trains
def test_the_weight_changes_training_and_zero_is_the_plain_loss(digits_images):
    def weights(cfg):
        return {k: v.clone() for k, v in train_encoder(digits_images, ENC, cfg, "cpu", labels=LABELS,
                                                       stop_after_steps=2).state_dict().items()}

    plain = weights(_cfg(autoencoder=0.0))
    with_ae = weights(_cfg())
    assert any(not torch.equal(plain[k], with_ae[k]) for k in plain if plain[k].is_floating_point())
    assert "autoencoder" not in TrainConfig().to_dict()  # without it: the configuration (and cache keys) of before
    assert TrainConfig(autoencoder=1.0).to_dict()["autoencoder"] == 1.0


def test_only_with_supcon_spread_and_a_valid_weight(digits_images):
    with pytest.raises(ValueError, match="term of supcon-spread"):
        train_encoder(digits_images, ENC, _cfg(loss="simclr", loss_params={"temperature": 0.2}), "cpu")
    with pytest.raises(ValueError, match="autoencoder weight"):
        train_encoder(digits_images, ENC, _cfg(autoencoder=-1.0), "cpu", labels=LABELS)


def test_encoder_cache_key_changes_with_the_weight():
    from selector.encoding import encoder_cache_key

    keys = {encoder_cache_key("pool", ENC.to_dict(), _cfg(autoencoder=w).to_dict(), LABELS) for w in (0.0, 1.0, 0.5)}
    assert len(keys) == 3


@pytest.mark.trains
def test_cli_trains_with_the_autoencoder_and_refuses_it_for_other_losses(tmp_path):
    from click.testing import CliRunner

    from selector.cli import main
    from tests.conftest import write_pool

    pool = write_pool(tmp_path / "pool", 32)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n000.png,a\n001.png,b\n002.png,a\n")
    base = ["train", "--pool", str(pool), "--epochs", "1", "--batch-size", "16", "--workers", "0", "--no-flip"]
    r = CliRunner().invoke(main, [*base, "--loss", "supcon-spread", "--autoencoder", "1", "--labels", str(labels),
                                  "--out", str(tmp_path / "enc.pt")])
    assert r.exit_code == 0, r.output
    assert "supcon-spread + autoencoder 1," in r.output
    state = read_checkpoint(tmp_path / "enc.pt")
    assert state["decoder"]["config"]["n_classes"] == 2 and state["train"]["autoencoder"] == 1.0
    assert state["train"]["loss_params"] == {"temperature": 0.5, "alpha": 0.5}  # the paper's code's defaults
    r = CliRunner().invoke(main, [*base, "--loss", "simclr", "--autoencoder", "1", "--out", str(tmp_path / "b.pt")])
    assert r.exit_code == 1 and "Error: the class-conditional autoencoder is a term of supcon-spread" in r.output
    r = CliRunner().invoke(main, [*base, "--loss", "supcon-spread", "--autoencoder", "-1",
                                  "--out", str(tmp_path / "c.pt")])
    assert r.exit_code == 2 and "--autoencoder" in r.output
    for cmd in ("train", "select"):
        assert "--autoencoder WEIGHT" in CliRunner().invoke(main, [cmd, "--help"]).output
