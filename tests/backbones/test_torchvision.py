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


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory):
    """torchvision:vit_b_16 weights (seeded random): a network that runs at one input side only (224 px)."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vit") / "vit_b_16-test.pth"
    torch.save(torchvision.models.vit_b_16(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """torchvision:inception_v3 weights (seeded random): a network whose layers need at least 75 px."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inception") / "inception_v3-test.pth"
    torch.save(torchvision.models.inception_v3(weights=None, init_weights=False).state_dict(), path)
    return path


def test_fixed_size_network_runs_at_its_side_by_default(vit_weights):
    """A vision transformer named without --backbone-size runs at its own side (224 px, read from the model)
    and embeds images of any size, resized to it."""
    cfg = encoder_config("torchvision:vit_b_16", 3, 32, "frozen", weights=vit_weights)
    assert cfg.input_size == 224
    enc = Encoder(cfg, weights=vit_weights).eval()
    with torch.no_grad():
        f = enc.embed(torch.rand(2, 3, 32, 32))
    assert f.shape == (2, 768) and torch.isfinite(f).all()


def test_fixed_size_network_at_another_side_is_one_line(vit_weights, tmp_path, monkeypatch):
    """--backbone-size 96 with vit_b_16 used to fail in the middle of embedding with torchvision's
    "AssertionError: Wrong image height! Expected 224 but got 96!"."""
    from selector.backbones import PretrainedError
    from selector.cli import main

    with pytest.raises(PretrainedError) as e:
        encoder_config("torchvision:vit_b_16", 3, 32, "frozen", size=96, weights=vit_weights)
    assert str(e.value) == ("backbone torchvision:vit_b_16 runs only at 224 px input, not 96 px: leave "
                            "--backbone-size out or give --backbone-size 224")
    import selector.workflow

    monkeypatch.setattr(selector.workflow, "read_pool", lambda *a, **k: pytest.fail("the pool was read"))
    pool = tmp_path / "pool.npz"
    np.savez(pool, x=rgb_pool(8).transpose(0, 2, 3, 1))
    r = CliRunner().invoke(main, ["select", "-b", "3", "-p", str(pool), "-o", str(tmp_path / "s.csv"), "-q",
                                  "--backbone", "torchvision:vit_b_16", "--weights", str(vit_weights),
                                  "--backbone-size", "96", "--device", "cpu"])
    assert r.exit_code == 1
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert err == [f"Error: {e.value}"], r.output
    assert "AssertionError" not in r.output


def test_side_too_small_for_the_layers_is_one_line(inception_weights, tmp_path, monkeypatch):
    """inception_v3 at 32 px used to fail while embedding with "Kernel size can't be greater than actual input
    size": the encoder runs once on a blank image when it is built, before the pool is read."""
    from selector.backbones import PretrainedError
    from selector.cli import main

    with pytest.raises(PretrainedError) as e:
        encoder_config("torchvision:inception_v3", 3, 32, "frozen", size=32, weights=inception_weights)
    msg = str(e.value)
    assert msg.startswith("backbone torchvision:inception_v3 cannot run at 32 px input (") and "\n" not in msg
    assert msg.endswith("give a larger --backbone-size, e.g. its native 299"), msg
    assert encoder_config("torchvision:inception_v3", 3, 32, "frozen", size=96,
                          weights=inception_weights).input_size == 96  # large enough
    import selector.workflow

    monkeypatch.setattr(selector.workflow, "read_pool", lambda *a, **k: pytest.fail("the pool was read"))
    pool = tmp_path / "pool.npz"
    np.savez(pool, x=rgb_pool(8).transpose(0, 2, 3, 1))
    r = CliRunner().invoke(main, ["select", "-b", "3", "-p", str(pool), "-o", str(tmp_path / "s.csv"), "-q",
                                  "--backbone", "torchvision:inception_v3", "--weights", str(inception_weights),
                                  "--backbone-size", "32", "--device", "cpu"])
    assert r.exit_code == 1
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert err == [f"Error: {msg}"], r.output
    assert "FutureWarning" not in r.output  # torchvision's warning about inception's initialisation


def test_finetuning_at_a_side_too_small_fails_before_the_pool_is_decoded(inception_weights, tmp_path, monkeypatch):
    """Fine-tuning decodes the whole pool before training: the side is checked when the encoder is planned."""
    import selector.api
    from selector.api import Selector
    from selector.backbones import PretrainedError

    monkeypatch.setattr(selector.api, "decode_pool", lambda *a, **k: pytest.fail("the pool was decoded"))
    pool = tmp_path / "pool.npz"
    np.savez(pool, x=rgb_pool(8).transpose(0, 2, 3, 1))
    sel = Selector(backbone="torchvision:inception_v3", weights=inception_weights, backbone_size=32,
                   backbone_mode="finetune", epochs=1, device="cpu")
    with pytest.raises(PretrainedError, match="cannot run at 32 px input"):
        sel.fit(pool)
