"""Contrastive training (selector.train): runs, checkpoints atomically, resumes to the same weights, refuses to resume
another configuration, trains the label-aware losses with known and pseudo labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from selector.backbones import EncoderConfig
from selector.checkpoint import CheckpointError, load_encoder, read_checkpoint
from selector.train import TrainConfig, auto_epochs, train_encoder

ENC = EncoderConfig("resnet-small", 1, 16, proj_dim=32)


def _cfg(**kw):
    base = dict(loss="simclr", epochs=2, batch_size=16, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _weights(enc):
    return {k: v.detach().clone() for k, v in enc.state_dict().items()}


def test_auto_epochs():
    assert auto_epochs(10_000) == 30
    assert auto_epochs(20_000) == 15
    assert auto_epochs(100) == 30
    assert auto_epochs(10_000_000) == 2


@pytest.mark.trains
def test_training_changes_weights_and_writes_checkpoint(tmp_path, digits_images):
    torch.manual_seed(3)
    from selector.backbones import Encoder

    init = _weights(Encoder(ENC))
    ckpt = tmp_path / "enc.pt"
    enc = train_encoder(digits_images, ENC, _cfg(), "cpu", checkpoint_path=ckpt)
    assert not enc.training
    trained = _weights(enc)
    assert any(not torch.equal(init[k], trained[k]) for k in init if init[k].is_floating_point())
    state = read_checkpoint(ckpt)
    assert state["epochs_done"] == 2 and state["step_in_epoch"] == 0
    loaded, _ = load_encoder(ckpt)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, trained[k])
    # Calling again with the finished checkpoint trains nothing more.
    again = train_encoder(digits_images, ENC, _cfg(), "cpu", checkpoint_path=ckpt)
    for k, v in again.state_dict().items():
        assert torch.equal(v, trained[k])


@pytest.mark.trains
@pytest.mark.parametrize("stop", [1, 3, 4])  # mid-epoch, mid-epoch of epoch 2, at the epoch boundary
def test_resume_gives_the_same_weights(tmp_path, digits_images, stop):
    full = _weights(train_encoder(digits_images, ENC, _cfg(), "cpu"))
    ckpt = tmp_path / "enc.pt"
    train_encoder(digits_images, ENC, _cfg(), "cpu", checkpoint_path=ckpt, stop_after_steps=stop)
    state = read_checkpoint(ckpt)
    assert (state["epochs_done"], state["step_in_epoch"]) == divmod(stop, 3)  # 48 images / 16 = 3 steps
    resumed = _weights(train_encoder(digits_images, ENC, _cfg(), "cpu", checkpoint_path=ckpt))
    assert read_checkpoint(ckpt)["epochs_done"] == 2
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


@pytest.mark.trains
def test_resume_refuses_another_configuration(tmp_path, digits_images):
    ckpt = tmp_path / "enc.pt"
    train_encoder(digits_images, ENC, _cfg(epochs=1), "cpu", checkpoint_path=ckpt)
    with pytest.raises(CheckpointError, match="another encoder or training configuration"):
        train_encoder(digits_images, ENC, _cfg(epochs=1, lr=0.1), "cpu", checkpoint_path=ckpt)


@pytest.mark.trains
@pytest.mark.parametrize("loss", ["kcl", "supcon-spread"])
def test_label_losses_train_with_known_and_pseudo_labels(tmp_path, digits_images, loss):
    labels = np.full(len(digits_images), -1, dtype=np.int64)
    labels[:10] = np.arange(10) % 3
    cfg = _cfg(loss=loss, epochs=3, pseudo_label_every=1, n_pseudo_labels=4)
    enc = train_encoder(digits_images, ENC, cfg, "cpu", labels=labels)
    x = torch.rand(2, 1, 16, 16)
    assert torch.isfinite(enc.embed(x)).all()
    enc2 = train_encoder(digits_images, ENC, _cfg(loss=loss, epochs=1), "cpu", labels=None)
    assert torch.isfinite(enc2.embed(x)).all()
