"""benchmarks/coarse_to_fine.py: coarse labels, encoders by name, the labeled round, and a resumable run (on
synthetic data with the PCA reference, so no encoder is trained here)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from benchmarks import coarse_to_fine as C

pytestmark = pytest.mark.slow


def test_coarse_labels():
    y = np.arange(10)
    assert C.coarse_of("mnist10k", y).tolist() == [0] * 5 + [1] * 5
    assert C.coarse_of("notmnist10k", y).tolist() == [0] * 5 + [1] * 5  # A-E / F-J
    # CIFAR-10: airplane, automobile, ship, truck are vehicles (0), the rest animals (1)
    assert C.coarse_of("cifar10", y).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="unknown dataset"):
        C.coarse_of("digits", y)


def test_encoder_names():
    assert C.parse_config("simclr") == C.Config("simclr", "simclr", temperature=0.2)
    assert C.parse_config("supcon") == C.Config("supcon", "supcon-spread", alpha=0.0)
    assert C.parse_config("spread-0.25") == C.Config("spread-0.25", "supcon-spread", alpha=0.25)
    assert C.parse_config("spread-0.5+ae") == C.Config("spread-0.5+ae", "supcon-spread", alpha=0.5, autoencoder=1.0)
    assert C.parse_config("pca50").loss is None and C.parse_config("default").loss is None
    assert C.parse_config("spread-0.5+ae@0.2") == C.Config("spread-0.5+ae@0.2", "supcon-spread", temperature=0.2,
                                                           alpha=0.5, autoencoder=1.0)
    assert C.parse_config("supcon@1").temperature == 1.0
    for bad in ("spread-2", "spread-x", "kcl", "spread-0.5+vae", "supcon@0", "supcon@x", "pca50@0.2", "default@0.5"):
        with pytest.raises(ValueError, match="unknown encoder"):
            C.parse_config(bad)
    for _, name in C.PLAN:
        C.parse_config(name)


def _data(n_per_class=30, seed=0) -> C.Data:
    """Ten well separated classes of 8x8 grayscale images (a bright square at a class-dependent spot)."""
    rng = np.random.default_rng(seed)

    def draw(k):
        y = np.repeat(np.arange(10), k)
        x = rng.integers(0, 40, size=(y.shape[0], 1, 8, 8)).astype(np.uint8)
        for i, c in enumerate(y):
            r, q = divmod(int(c), 4)
            x[i, 0, 2 * r:2 * r + 3, 2 * q:2 * q + 3] = 250
        return x, y

    x, y = draw(n_per_class)
    xt, yt = draw(5)
    return C.Data("mnist10k", x, y, xt, yt)


def test_round_and_training_labels():
    data = _data()
    pool, labeled = C.draw_round(data, 20, 20, seed=3)
    assert pool.shape == (200,) and np.bincount(data.y[pool]).tolist() == [20] * 10
    assert labeled.sum() == 20
    again = C.draw_round(data, 20, 20, seed=3)
    assert np.array_equal(again[0], pool) and np.array_equal(again[1], labeled)
    assert not np.array_equal(C.draw_round(data, 20, 20, seed=4)[1], labeled)
    coarse = C.coarse_of("mnist10k", data.y[pool])
    round_ = C.train_labels("round", coarse, labeled)
    assert (round_ >= 0).sum() == 20 and np.array_equal(round_[labeled], coarse[labeled])
    assert np.array_equal(C.train_labels("all", coarse, labeled), coarse)
    assert C.train_labels("none", coarse, labeled) is None


def test_run_writes_the_table_and_resumes(tmp_path, monkeypatch, one_torch_thread):
    data = _data()
    monkeypatch.setattr(C, "load_data", lambda *a, **k: data)
    calls = []
    real = C.run_cell

    def counting(*a, **k):
        calls.append(a[1:3])
        return real(*a, **k)

    monkeypatch.setattr(C, "run_cell", counting)
    out = tmp_path / "run"
    args = ["--out", str(out), "--datasets", "mnist10k", "--seeds", "1", "--per-class", "20", "--labeled", "20",
            "--emb-cache", str(tmp_path / "emb"), "--cells", "none:pca50"]
    assert C.main(args) == 0
    assert len(calls) == 1
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    assert [(r["config"], r["seed"], r["n_pool"], r["n_labeled"]) for r in rows] == [("pca50", "0", "200", "20")]
    assert rows[0]["strategy"] == C.default_strategy()
    for r in rows:
        assert float(r["fine_knn"]) > 0.9 and 1 <= int(r["classes_b10"]) <= 10 and 0 < float(r["entropy_b20"]) <= 1
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "python -m benchmarks.coarse_to_fine --out" in summary
    assert "| mnist10k | none | pca50 | 1 |" in summary and "## Mean over the datasets" in summary
    assert C.main(args) == 0 and len(calls) == 1  # every cell done: nothing runs again
    assert C.main([*args[:-2], "--per-class", "10", "--cells", "none:pca50"]) == 0  # other sizes: run anew
    assert len(calls) == 2
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    assert {r["n_pool"] for r in rows} == {"100"}
    C.main(["--out", str(out), "--summary-only"])
    assert "--per-class 10" in (out / "summary.md").read_text(encoding="utf-8")  # the run's command is kept


def test_the_next_round_uses_the_product_default_and_another_strategy_reuses_the_embeddings(tmp_path, monkeypatch,
                                                                                              one_torch_thread):
    from benchmarks.common import product_default

    assert C.default_strategy().partition(":")[0] == product_default()
    data = _data()
    monkeypatch.setattr(C, "load_data", lambda *a, **k: data)
    trained = []
    real = C.embed
    monkeypatch.setattr(C, "embed", lambda *a, **k: trained.append(a[0].name) or real(*a, **k))
    out, cache = tmp_path / "run", tmp_path / "emb"
    args = ["--out", str(out), "--datasets", "mnist10k", "--seeds", "1", "--per-class", "20", "--labeled", "20",
            "--emb-cache", str(cache), "--cells", "none:pca50"]
    assert C.main(args) == 0 and trained == ["pca50"] and len(list(cache.glob("*.npz"))) == 1
    first = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    assert C.main([*args, "--strategy", "kcenter"]) == 0
    assert trained == ["pca50"]  # another strategy: scored again from the cached embedding, not trained again
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    assert [r["strategy"] for r in rows] == ["kcenter"]
    assert rows[0]["fine_knn"] == first[0]["fine_knn"] and rows[0]["train_s"] == first[0]["train_s"]
    assert "next-round picks of `kcenter`" in (out / "summary.md").read_text(encoding="utf-8")
