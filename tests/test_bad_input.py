"""Bad option values and ``--labeled`` files given to ``selector select``: a malformed budget, seed or strategy
parameter is a usage error (exit status 2) before any work; a budget the pool cannot meet and ``--labeled``
files that are missing, empty, name files outside the pool or cover the whole pool give one line or a
warning. Most cases also check that the pool folder is unchanged afterwards.
"""
from __future__ import annotations

import pytest

from tests.conftest import N_POOL, error_line, rows, run, select, user_cache


@pytest.mark.parametrize("bad,msg", [("0", "budget must be positive, got 0"), ("-5", "budget must be positive, got -5"),
                                     ("ten", "budget must be a whole number, got 'ten'"),
                                     ("2.5", "budget must be a whole number, got '2.5'")])
def test_budget_not_a_positive_number(pool, tmp_path, encoder_file, unchanged, bad, msg):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", bad)
    assert r.exit_code == 2 and msg in error_line(r)  # a malformed option: click's usage error status
    assert not user_cache().exists()  # refused before anything ran


def test_budget_larger_than_pool(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL + 1)
    assert r.exit_code == 1
    assert error_line(r) == (f"Error: budget {N_POOL + 1} > {N_POOL} unlabeled images in {pool} "
                             "(pass --allow-smaller to take them all)")
    assert not (tmp_path / "s.csv").exists()
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL + 1, "--allow-smaller")
    assert r.exit_code == 0, r.output
    assert f"WARNING: budget {N_POOL + 1} > {N_POOL} unlabeled images" in r.output
    assert len(rows(tmp_path / "s.csv")) == N_POOL


def test_budget_equal_to_pool(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL)
    assert r.exit_code == 0, r.output
    assert sorted(x["path"] for x in rows(tmp_path / "s.csv")) == sorted(p.name for p in pool.iterdir())


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999999"])
def test_seed_out_of_range_is_a_usage_error_before_any_work(pool, tmp_path, encoder_file, seed):
    cache = tmp_path / "cache"
    r = run("select", "--pool", pool, "--out", tmp_path / "s.csv", "-b", 3, "--seed", seed, "--cache-dir", cache)
    assert r.exit_code == 2, r.output
    assert "Invalid value for '--seed'" in r.output and "0<=x<=4294967295" in r.output
    assert not cache.exists()


@pytest.mark.parametrize("param, strategy, msg", [
    ("k_nn=abc", "typiclust", "k_nn must be a whole number, got 'abc'"),
    ("k_nn=1.5", "typiclust", "k_nn must be a whole number, got 1.5"),
    ("k_nn=", "typiclust", "k_nn must be a whole number, got ''"),
    ("explore=nan", "balanced", "explore must be a finite number, got nan"),
    ("explore=abc", "balanced", "explore must be a number, got 'abc'"),
    ("use_gpu=3", "balanced", "use_gpu must be True, False or None, got 3"),
    ("oversample=1e308", "typcover", "oversample must be in [1, 1e+06], got 1e+308"),
    ("k_nn=0", "typcover", "k_nn must be at least 1, got 0"),
    ("max_cluster_points=0", "typcover", "max_cluster_points must be at least 1, got 0"),
    ("min_size=-5", "typcover", "min_size must be at least 1, got -5"),
    ("explore=1", "balanced", "explore must be in [0, 1), got 1"),
    ("purity=1.5", "probcover", "purity must be in [0, 1], got 1.5"),
])
def test_strategy_parameters_type_checked_before_any_work(pool, tmp_path, encoder_file, param, strategy, msg):
    cache = tmp_path / "cache"
    r = run("select", "--pool", pool, "--out", tmp_path / "s.csv", "--encoder", encoder_file, "-b", 3,
            "--strategy", strategy, "--param", param, "--cache-dir", cache)
    assert r.exit_code == 2, r.output
    assert msg in r.output and "--param" in r.output
    assert not cache.exists()


def test_use_gpu_without_a_gpu_is_a_usage_error_before_any_work(tmp_path, monkeypatch):
    import faiss
    import numpy as np

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)  # whatever this machine has
    np.save(tmp_path / "e.npy", np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32))
    r = run("select", "--embeddings", tmp_path / "e.npy", "-b", 3, "--out", tmp_path / "s.csv",
            "--param", "use_gpu=True")
    assert r.exit_code == 2, r.output
    assert "Invalid value for --param: use_gpu=True but faiss sees no GPU" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "s.csv").exists()


def test_labeled_file_missing(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3, "--labeled", tmp_path / "nope.csv")
    assert r.exit_code == 1 and error_line(r) == f"Error: labels file {tmp_path / 'nope.csv'} does not exist"


@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_labeled_file_empty(pool, tmp_path, encoder_file, unchanged, suffix):
    unchanged(pool)
    lab = tmp_path / f"labeled{suffix}"
    lab.write_text("")
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3, "--labeled", lab)
    assert r.exit_code == 0, r.output
    assert f"WARNING: labeled file {lab} lists no images; nothing is excluded" in r.output
    assert "0 images already labeled excluded" in r.output


def test_labeled_names_not_in_pool(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    lab = tmp_path / "labeled.txt"
    lab.write_text("000.png\n001.png\nelsewhere/x.png\ngone.png\n", encoding="utf-8")
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL - 2, "--labeled", lab)
    assert r.exit_code == 0, r.output
    assert f"WARNING: 2 entries of {lab} name no item of the pool; ignored" in r.output
    assert f"2 images already labeled excluded; 2 entries of {lab} are not in the pool" in r.output
    assert not {"000.png", "001.png"} & {x["path"] for x in rows(tmp_path / "s.csv")}


def test_whole_pool_labeled(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    lab = tmp_path / "labeled.txt"
    lab.write_text("".join(f"{i:03d}.png\n" for i in range(N_POOL)), encoding="utf-8")
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 1, "--labeled", lab, "--allow-smaller")
    assert r.exit_code == 1 and error_line(r) == f"Error: every image in {pool} is already labeled; nothing to choose"
