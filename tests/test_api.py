"""The Python API (selector.api) on a small real pool: fit, select, exclusion of labeled items, determinism;
embeddings brought by the caller are checked (non-finite and huge values, ids of another length)."""
from __future__ import annotations

import csv
import re
import subprocess
import sys

import numpy as np
import pytest

from selector import Selector, select_embeddings
from selector.plan import labeled_mask
from tests.conftest import subprocess_env


@pytest.fixture
def fitted(digits_pool, tmp_path):
    return Selector(strategy="random", arch="resnet-small", epochs=1, seed=0, device="cpu",
                    cache_dir=tmp_path / "cache").fit(digits_pool)


@pytest.mark.trains
def test_fit_select_export(fitted, tmp_path):
    assert fitted.embeddings_.shape == (60, 256)
    assert fitted.n_embedded_ == 60
    res = fitted.select(12)
    assert len(res) == 12 and len(set(res.indices.tolist())) == 12
    assert all(p.startswith("digit_") and p.endswith(".png") for p in res.paths)
    files = res.to_csv(tmp_path / "sel.csv")
    rows = list(csv.DictReader(open(files[0], encoding="utf-8")))
    assert [r["path"] for r in rows] == res.paths and rows[0]["rank"] == "1"


@pytest.mark.trains
def test_labeled_items_never_chosen(fitted):
    ids = fitted.pool_.ids
    labeled = ids[:50]
    for lab in (labeled, np.arange(50), np.arange(60) < 50, {p: "x" for p in labeled}):
        res = fitted.select(10, labeled=lab)
        assert sorted(res.indices.tolist()) == list(range(50, 60))


@pytest.mark.trains
def test_labeled_file(fitted, tmp_path):
    f = tmp_path / "done.csv"
    f.write_text("path,label\n" + "".join(f"{p},{i % 3}\n" for i, p in enumerate(fitted.pool_.ids[:20]))
                 + "not/in/pool.png,1\n", encoding="utf-8")
    mask, missing = fitted.labeled_mask(str(f))
    assert mask.sum() == 20 and missing == 1
    res = fitted.select(5, labeled=str(f))
    assert not set(res.indices.tolist()) & set(range(20))


@pytest.mark.trains
def test_same_seed_same_selection_and_cache_reuse(digits_pool, tmp_path):
    kw = dict(strategy="random", arch="resnet-small", epochs=1, seed=4, device="cpu", cache_dir=tmp_path / "c")
    a = Selector(**kw).fit(digits_pool)
    b = Selector(**kw).fit(digits_pool)
    assert b.n_embedded_ == 0  # second fit reuses the cached encoder and embeddings
    np.testing.assert_array_equal(a.embeddings_, b.embeddings_)
    np.testing.assert_array_equal(a.select(10).indices, b.select(10).indices)


def test_select_before_fit():
    with pytest.raises(RuntimeError, match="fit"):
        Selector(strategy="random").select(3)


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        Selector(strategy="nope")


def test_select_embeddings_brings_own_vectors():
    x = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    before = x.copy()
    res = select_embeddings(x, 5, None, "random", 0)
    assert len(res) == 5 and res.paths == [str(i) for i in res.indices]
    np.testing.assert_array_equal(x, before)


def test_labeled_mask_errors():
    with pytest.raises(ValueError, match="out of range"):
        labeled_mask(np.array([0, 9]), ["a", "b"], None)
    with pytest.raises(ValueError, match="shape"):
        labeled_mask(np.array([True]), ["a", "b"], None)


def test_labels_from_a_file_reach_label_aware_strategies(tmp_path):
    rng = np.random.default_rng(0)
    centers = np.eye(8, dtype=np.float32)[:3] * 4
    x = np.concatenate([c + 0.2 * rng.normal(size=(40, 8)) for c in centers]).astype(np.float32)
    ids = [f"blob{i // 40}/{i:03d}.png" for i in range(120)]
    f = tmp_path / "labels.csv"
    f.write_text("path,label\n" + "".join(f"{ids[i]},cat\n" for i in range(8)), encoding="utf-8")
    found = labeled_mask(str(f), ids, None)
    mask, y, missing = found.mask, found.labels, found.missing
    assert mask.sum() == 8 and missing == 0 and (y[:8] == 0).all() and (y[8:] == -1).all()
    res = select_embeddings(x, 10, mask, "balanced", 0, ids, labels=y, n_classes=3)
    blobs = [int(p[4]) for p in res.paths]
    assert blobs.count(0) == 0  # the labeled class is skipped
    assert {blobs.count(1), blobs.count(2)} <= {4, 5, 6}  # the unlabeled ones share the budget
    # A plain list of paths carries no labels: the documented even split.
    found2 = labeled_mask(ids[:8], ids, None)
    mask2, y2 = found2.mask, found2.labels
    assert y2 is None and mask2.sum() == 8


@pytest.mark.trains
def test_labels_reach_only_the_losses_that_use_them(digits_pool, tmp_path):
    """SimCLR ignores known labels: fitting with them reuses the encoder cached without them."""
    y = np.arange(60) % 3
    kw = dict(strategy="random", arch="resnet-small", epochs=1, seed=0, device="cpu", cache_dir=tmp_path / "cache")
    first = Selector(loss="simclr", **kw).fit(digits_pool)
    again = Selector(loss="simclr", **kw).fit(digits_pool, labels=y)
    assert not first.encoder_cached_ and again.encoder_cached_
    kcl = Selector(loss="kcl", **kw).fit(digits_pool, labels=y)
    assert not kcl.encoder_cached_  # a label-using loss trains its own encoder


HUGE_API = """
import numpy as np
from selector.api import select_embeddings
x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32) * np.float32(1e20)
try:
    select_embeddings(x, 10, None, "balanced", 0)
except ValueError as e:
    print("ValueError:", e)
"""


@pytest.mark.processes
def test_huge_embeddings_in_the_api_are_refused_clearly():
    r = subprocess.run([sys.executable, "-c", HUGE_API], capture_output=True, text=True, timeout=120,
                       env=subprocess_env())
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"ValueError: embeddings hold values up to \d(\.\d)?e\+20 in magnitude", r.stdout), \
        r.stdout + r.stderr[-2000:]


def test_check_embeddings_accepts_ordinary_and_refuses_non_finite():
    from selector.api import check_embeddings

    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    assert check_embeddings(x) is None
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        check_embeddings(x)


def test_select_embeddings_refuses_ids_of_another_length():
    from selector.api import select_embeddings

    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="3 ids for 10 embedding rows"):
        select_embeddings(x, 2, None, "random", 0, ids=["a", "b", "c"])
