"""The fine-tuning retrainer: learns from the chosen images, predicts seen labels, finds rows by embedding."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from selector.eval.finetune import finetune_classifier, finetune_retrainer
from sklearn.datasets import load_digits

from selector.backbones import Encoder, EncoderConfig
from selector.embed import embed_array
from selector.pool import resize_images


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = resize_images(np.clip(np.rint(d.images * (255 / 16)), 0, 255).astype(np.uint8)[:, None], 16)
    return x, d.target.astype(np.int64)


@pytest.mark.trains
def test_finetune_beats_chance_and_predicts_seen_labels(digits):
    x, y = digits
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig("resnet-small", 1, 16)).eval()
    train = np.concatenate([np.flatnonzero(y == c)[:10] for c in (0, 1, 7)])
    test = np.concatenate([np.flatnonzero(y == c)[50:90] for c in (0, 1, 7)])
    pred = finetune_classifier(enc, x[train], y[train], x[test], steps=60, seed=0)
    assert set(np.unique(pred)) <= {0, 1, 7}
    assert (pred == y[test]).mean() > 0.6  # three classes: chance is 1/3
    again = finetune_classifier(enc, x[train], y[train], x[test], steps=60, seed=0)
    np.testing.assert_array_equal(pred, again)  # seeded
    # The encoder given in is not modified.
    torch.manual_seed(0)
    fresh = Encoder(EncoderConfig("resnet-small", 1, 16)).eval()
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, enc.state_dict()[k])


def test_single_class_and_row_lookup(digits):
    x, y = digits
    torch.manual_seed(1)
    enc = Encoder(EncoderConfig("resnet-small", 1, 16)).eval()
    emb = embed_array(enc, x[:40], "cpu")
    temb = embed_array(enc, x[40:60], "cpu")
    f = finetune_retrainer(enc, x[:40], emb, x[40:60], temb, steps=2)
    pred = f(emb[[3, 5]], np.array([4, 4]), temb, seed=0)
    assert (pred == 4).all() and pred.shape == (20,)
    with pytest.raises(ValueError, match="not one of the embeddings"):
        f(emb[[3]] + 1.0, np.array([1]), temb)


@pytest.mark.trains
def test_selector_eval_with_finetune(tmp_path):
    from click.testing import CliRunner

    from selector.cli import main

    r = CliRunner().invoke(main, ["eval", "--data", "digits", "--pool", "balanced:60", "--strategies", "random",
                                  "--budgets", "20", "--seeds", "1", "--arch", "resnet-small", "--epochs", "1",
                                  "--test-per-class", "20", "--retrainer", "finetune", "--out", str(tmp_path / "res"),
                                  "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    # --arch trains that encoder on the training images, and the summary says so
    assert "encoder: resnet-small trained on the pool with simclr (1.0 epochs, " in r.output
    from selector.eval.report import read_csv

    rows = read_csv(tmp_path / "res" / "results.csv")
    assert len(rows) == 1 and rows[0]["retrainer"] == "finetune" and 0.0 <= rows[0]["accuracy"] <= 1.0
