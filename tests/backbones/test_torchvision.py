"""The torchvision family (``torchvision:NAME``, selector.backbones.torchvision) with a weights file written
here: the cache key tells modes, sizes and weights apart; fine-tuning trains, checkpoints and resumes; a
frozen encoder is not trained; missing weights are one line on the command line."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from selector.backbones import Encoder, PretrainedBackbone
from selector.checkpoint import read_checkpoint
from selector.embed import encoder_key
from selector.encoding import encoder_config
from selector.train import TrainConfig, train_encoder
from tests.backbones.conftest import rgb_pool

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cache_key_tells_modes_sizes_and_weights_apart(mobilenet_weights, tmp_path):
    name = "torchvision:mobilenet_v3_small"
    frozen = encoder_config(name, 3, 32, "frozen", size=32, weights=mobilenet_weights)
    k = encoder_key(Encoder(frozen, weights=mobilenet_weights))
    assert k == encoder_key(Encoder(frozen, weights=mobilenet_weights))  # no random head: stable
    torch.manual_seed(0)
    trained = encoder_config(name, 3, 32, "trained", size=32, weights=mobilenet_weights)
    assert encoder_key(Encoder(trained, weights=mobilenet_weights)) != k
    bigger = encoder_config(name, 3, 32, "frozen", size=64, weights=mobilenet_weights)
    assert encoder_key(Encoder(bigger, weights=mobilenet_weights)) != k
    other = tmp_path / "other.pth"
    state = torch.load(mobilenet_weights, weights_only=True)
    state["features.0.0.weight"] = -state["features.0.0.weight"]
    torch.save(state, other)
    cfg_other = encoder_config(name, 3, 32, "frozen", size=32, weights=other)
    assert cfg_other.weights_digest != frozen.weights_digest
    assert encoder_key(Encoder(cfg_other, weights=other)) != k


@pytest.mark.trains
def test_finetune_resumes_to_the_same_weights(tmp_path, mobilenet_weights):
    x = rgb_pool()
    cfg = encoder_config("torchvision:mobilenet_v3_small", 3, 32, "trained", size=32, weights=mobilenet_weights)
    tc = TrainConfig(epochs=2, batch_size=16, seed=1, lr=2e-4)
    full = train_encoder(x, cfg, tc, "cpu", weights=mobilenet_weights)
    start = PretrainedBackbone("torchvision:mobilenet_v3_small", 32, weights=mobilenet_weights).state_dict()
    assert any(not torch.equal(v, full.backbone.state_dict()[k]) for k, v in start.items())  # it trained
    ckpt = tmp_path / "ft.pt"
    train_encoder(x, cfg, tc, "cpu", checkpoint_path=ckpt, weights=mobilenet_weights, stop_after_steps=1)
    assert read_checkpoint(ckpt)["steps_done"] == 1
    resumed = train_encoder(x, cfg, tc, "cpu", checkpoint_path=ckpt, weights=mobilenet_weights)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    from selector.checkpoint import load_encoder

    loaded, _ = load_encoder(ckpt)  # rebuilt without reading the weights file again
    assert loaded.config == cfg and loaded.dim == 1024


def test_frozen_encoder_is_not_trained(mobilenet_weights):
    cfg = encoder_config("torchvision:mobilenet_v3_small", 3, 32, "frozen", size=32, weights=mobilenet_weights)
    with pytest.raises(ValueError, match="frozen encoder is not trained"):
        train_encoder(rgb_pool(), cfg, TrainConfig(epochs=1, batch_size=16), "cpu", weights=mobilenet_weights)


def test_cli_missing_torchvision_weights_one_line(tmp_path, no_download):
    from selector.cli import main

    pool = tmp_path / "pool.npz"
    np.savez(pool, x=rgb_pool(20).transpose(0, 2, 3, 1))
    out = tmp_path / "sel.csv"
    r = CliRunner().invoke(main, ["select", "-b", "5", "-p", str(pool), "-o", str(out),
                                  "--backbone", "torchvision:resnet18", "-q", "--device", "cpu"])
    assert r.exit_code == 1
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and "no weights for backbone torchvision:resnet18" in err[0], r.output
    assert not out.exists()
    r = CliRunner().invoke(main, ["select", "-b", "5", "-p", str(pool), "-o", str(out), "--backbone", "vgg"])
    assert r.exit_code == 2 and "unknown backbone 'vgg'" in r.output
