"""The embedding benchmark's pieces: candidate specs, pool shapes, signals, the default check, a tiny run."""
import csv

import numpy as np
import pytest

from benchmarks import bench_embeddings as B
from benchmarks import common

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """``main(["--threads", "1"])`` sets torch's thread count for the process: put it back for the next tests."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _split(n_per=40, classes=4, side=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per)
    x = rng.integers(0, 256, (y.size, 1, side, side), dtype=np.uint8)
    x[np.arange(y.size), 0, y] = 255  # a class signal in the pixels: row y lit
    yt = np.repeat(np.arange(classes), 5)
    xt = rng.integers(0, 256, (yt.size, 1, side, side), dtype=np.uint8)
    xt[np.arange(yt.size), 0, yt] = 255
    return common.Split("digits", x, y, xt, yt)


def test_parse_candidate_reads_keys_and_concatenation():
    assert B.parse_candidate("simclr:flip=0,temp=0.5+pca") == [("simclr", {"flip": "0", "temp": "0.5"}), ("pca", {})]
    with pytest.raises(ValueError, match="unknown candidate 'nope'"):
        B.parse_candidate("nope")
    with pytest.raises(ValueError, match="expected key=value, got 'flip'"):
        B.parse_candidate("simclr:flip")


def test_pool_shapes():
    s = _split(n_per=200)
    full = common.pool_indices(s, "full", 0)
    assert full.size == s.y.size
    small = common.pool_indices(s, "small", 0)  # digits: 100 per class
    assert np.bincount(s.y[small]).tolist() == [100] * 4
    lt = np.bincount(s.y[common.pool_indices(s, "lt100", 0)])
    assert lt[0] == lt.max() and lt[0] >= 50 * lt.min()
    assert np.array_equal(common.pool_indices(s, "small", 3), common.pool_indices(s, "small", 3))
    with pytest.raises(ValueError, match="unknown pool shape 'wide'"):
        common.pool_indices(s, "wide", 0)


def test_rankme_is_the_effective_rank():
    e = np.eye(6)
    assert B.rankme(e) == pytest.approx(6.0, rel=1e-4)
    assert B.rankme(np.ones((5, 3))) == pytest.approx(1.0, rel=1e-4)


def test_uniformity_is_lower_for_spread_rows():
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(500, 8))
    collapsed = np.ones((500, 8)) + 0.01 * rng.normal(size=(500, 8))
    assert B.uniformity(spread) < B.uniformity(collapsed)
    assert B.uniformity(collapsed) == pytest.approx(0.0, abs=1e-2)


def _row(ds, shape, cand, knn, bal=None, seed=0):
    return {"dataset": ds, "shape": shape, "candidate": cand, "seed": seed, "n_pool": 10, "loo_knn": knn,
            "loo_knn_bal": knn if bal is None else bal, "linear": knn, "linear_bal": knn, "fit_s": 1, "embed_s": 1,
            "load": 1.0, "note": ""}


def test_default_check_needs_five_points_on_cifar_and_the_balanced_accuracy_too():
    rows = [_row("cifar10", "small", "default", 0.60), _row("cifar10", "small", "pca", 0.56),
            _row("mnist10k", "small", "default", 0.90, bal=0.80), _row("mnist10k", "small", "pca", 0.89, bal=0.85),
            _row("digits", "small", "default", 0.95), _row("digits", "small", "pca", 0.95)]
    lines = {ln.split(" | ")[0].strip("| "): ln for ln in B.default_check(rows)}
    assert "**no**" in lines["cifar10"]  # +4 points only
    assert "**no**" in lines["mnist10k"]  # plain above, balanced below
    assert "| yes |" in lines["digits"]  # level is enough off CIFAR


def test_a_tiny_run_writes_rows_resumes_and_summarises(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "load_split", lambda name, data_dir, cache_dir, seed=0: _split())
    out = tmp_path / "out"
    assert B.main(["--out", str(out), "--datasets", "digits", "--shapes", "full", "--candidates", "pca:dim=5",
                   "random", "--threads", "1"]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["candidate"] for r in rows] == ["pca:dim=5", "random"]
    assert int(rows[0]["dim"]) == 5 and float(rows[0]["loo_knn"]) > 0.9  # the class signal is in the pixels
    before = (out / "results.csv").read_text()
    B.main(["--out", str(out), "--datasets", "digits", "--shapes", "full", "--candidates", "pca:dim=5", "random"])
    assert (out / "results.csv").read_text() == before  # nothing recomputed
    text = (out / "summary.md").read_text()
    assert "--candidates pca:dim=5 random" in text and "| full | 160 | `pca:dim=5` |" in text


def test_fitting_through_the_selector_leaves_no_temporary_files(tmp_path, monkeypatch):
    import gc
    import tempfile

    made = []
    real = tempfile.mkdtemp

    def mkdtemp(**kw):
        made.append(real(dir=tmp_path, **kw))
        return made[-1]

    monkeypatch.setattr(common.tempfile, "mkdtemp", mkdtemp)
    s = _split(n_per=10)
    fitted = common.fit_via_selector(s.x, 0, "cpu", None, backbone="resnet-small", epochs=1, pixel_view=True)
    assert fitted.pool_emb.shape[0] == 40 and "pixel view" in fitted.note
    emb = fitted.transform(s.x_test)
    assert emb.shape == (s.x_test.shape[0], fitted.pool_emb.shape[1])
    assert list((tmp_path).iterdir()) and not any(any(p.iterdir()) for p in tmp_path.iterdir())  # no image files left
    del fitted, emb
    gc.collect()
    assert not list(tmp_path.iterdir())  # the folder went with the transform
