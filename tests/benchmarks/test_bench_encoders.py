"""Tests of the encoder benchmark (benchmarks/bench_encoders.py): the smoke path end to end on real digits,
the scoring on embeddings with a known answer, the splits, and the CSV merge."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import bench_encoders as B
from benchmarks.common import held_out, read_rows, write_csv

pytestmark = pytest.mark.slow


def test_quick_run_writes_rows_that_make_sense(tmp_path, capsys):
    out = tmp_path / "enc.csv"
    assert B.main(["--quick", "--losses", "simclr", "--out", str(out)]) == 0
    rows = read_rows(out)
    assert [(r["dataset"], r["setting"], r["loss"]) for r in rows] == [
        ("digits", "balanced", "simclr"), ("digits", "lt", "simclr")]
    bal, lt = rows
    assert int(bal["n_pool"]) == 400 and int(bal["n_probe"]) == 400 and int(bal["n_test"]) == 300
    # LT pool: ratio 10 on 40 per class -> head 40, tail 4, exponential profile in between
    from selector.eval.pools import long_tail_counts

    assert int(lt["n_pool"]) == int(long_tail_counts(40, 10.0, 10).sum())
    # the LT encoder sees about as many images as the balanced one: more epochs over its smaller pool
    assert int(lt["epochs"]) == round(1 * 400 / int(lt["n_pool"]))
    for r in rows:
        for key in ("knn_acc", "linear_acc", "linear_bal_acc", "min_class_acc"):
            assert 0.0 <= float(r[key]) <= 1.0
        # ten classes: chance is 0.1; even a 1-epoch encoder on real digits is far above it
        assert float(r["knn_acc"]) > 0.3 and float(r["linear_acc"]) > 0.3
        assert 0.1 <= float(r["pv"]) <= 1.0
        assert float(r["min_class_acc"]) <= float(r["linear_bal_acc"])
        per_class = [float(item.split(":")[1]) for item in r["per_class_acc"].split(";")]
        assert len(per_class) == 10 and np.isclose(np.mean(per_class), float(r["linear_bal_acc"]), atol=1e-4)
        assert float(r["train_s"]) > 0 and float(r["img_per_s"]) > 0
    printed = capsys.readouterr().out
    assert "| digits | simclr | resnet-small | 1/" in printed


def test_score_embedding_on_separated_and_confused_classes():
    rng = np.random.default_rng(0)
    centers = np.eye(4, 8, dtype=np.float32) * 5
    y_tr = np.repeat(np.arange(4), 30)
    y_te = np.repeat(np.arange(4), 10)
    x_tr = centers[y_tr] + 0.1 * rng.standard_normal((120, 8)).astype(np.float32)
    x_te = centers[y_te] + 0.1 * rng.standard_normal((40, 8)).astype(np.float32)
    s = B.score_embedding(x_tr, y_tr, x_te, y_te)
    assert s["knn_acc"] == 1.0 and s["linear_acc"] == 1.0 and s["pv"] == pytest.approx(1.0)
    # classes 2 and 3 share one centre: the probes cannot tell them apart (about half of each right),
    # classes 0 and 1 stay perfect, so p(V) drops well below 1
    centers[3] = centers[2]
    x_tr = centers[y_tr] + 0.1 * rng.standard_normal((120, 8)).astype(np.float32)
    x_te = centers[y_te] + 0.1 * rng.standard_normal((40, 8)).astype(np.float32)
    s = B.score_embedding(x_tr, y_tr, x_te, y_te)
    pc = [float(v.split(":")[1]) for v in s["per_class_acc"].split(";")]
    assert pc[0] == 1.0 and pc[1] == 1.0
    assert pc[2] + pc[3] == pytest.approx(1.0, abs=0.21)
    assert s["linear_acc"] < 0.9 and s["pv"] < 0.9
    assert s["min_class_acc"] == min(pc)


def test_digits_split_is_balanced_disjoint_and_seeded():
    d = B.load_bench_data("digits", None, None, seed=3)
    assert d.x_test.shape == (300, 1, 8, 8) and d.x_probe.shape == (1497, 1, 8, 8)
    assert np.array_equal(np.bincount(d.y_test), np.full(10, 30))
    again = B.load_bench_data("digits", None, None, seed=3)
    assert np.array_equal(d.x_test, again.x_test)
    test, rest = held_out(np.repeat(np.arange(3), 7), 2, seed=0)
    assert len(np.intersect1d(test, rest)) == 0 and len(test) + len(rest) == 21
    assert np.array_equal(np.bincount(np.repeat(np.arange(3), 7)[test]), [2, 2, 2])
    sub = B.subsample(d, 5, seed=0)
    assert np.array_equal(np.bincount(sub.y_probe), np.full(10, 5)) and sub.x_pool is sub.x_probe


def test_merge_combines_csvs(tmp_path, capsys):
    rows = [{"dataset": "mnist10k", "setting": s, "loss": "simclr", "arch": "resnet-small", "epochs": e,
             "knn_acc": 0.9, "linear_acc": 0.95, "min_class_acc": 0.8, "pv": 0.97, "train_s": 10.0,
             "img_per_s": 1000.0} for s, e in (("balanced", 50), ("lt", 200))]
    write_csv(rows[:1], tmp_path / "a.csv", B.FIELDS)
    write_csv(rows[1:], tmp_path / "b.csv", B.FIELDS)
    assert B.main(["--merge", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "m.csv")]) == 0
    merged = read_rows(tmp_path / "m.csv")
    assert [r["setting"] for r in merged] == ["balanced", "lt"]
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| mnist10k")]
    assert line == ["| mnist10k | simclr | resnet-small | 50/200 | 90.0 | 95.0 | 0.970 | 90.0 | 95.0 | 80.0 | 0.970 "
                    "| 10/10 | 1000 |"]


def test_checkpoint_dir_resumes_a_finished_encoder(tmp_path):
    ck = tmp_path / "ck"
    args = ["--quick", "--losses", "simclr", "--settings", "balanced", "--checkpoint-dir", str(ck)]
    assert B.main([*args, "--out", str(tmp_path / "a.csv")]) == 0
    assert [p.name for p in ck.iterdir()] == ["digits-balanced-simclr-resnet-small-e1-s0.pt"]
    stamp = next(ck.iterdir()).stat().st_mtime_ns
    assert B.main([*args, "--out", str(tmp_path / "b.csv")]) == 0
    assert next(ck.iterdir()).stat().st_mtime_ns == stamp  # loaded, not trained again (which rewrites it)
    a, b = read_rows(tmp_path / "a.csv")[0], read_rows(tmp_path / "b.csv")[0]
    for key in ("knn_acc", "linear_acc", "per_class_acc"):
        assert a[key] == b[key]
