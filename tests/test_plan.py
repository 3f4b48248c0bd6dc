"""plan_selection: the one function that decides the labeled mask, the duplicates and the budget for
the API and the command line (pool and --embeddings paths); labeled_mask (classes, names outside the pool,
conflicting labels); byte-identical files are never both chosen; Label Studio exports that leave tasks of a
round out are warned about and the excluded counted as labeled, skipped and pending; the next round offers
the classes of the last round's labeling config."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from selector.strategies import SelectionError
from selector.strategies.base import Selection

import selector.api
import selector.plan
from selector.formats import SeenClasses, export_selection
from selector.plan import labeled_mask, plan_selection
from selector.summary import labeled_line
from tests.conftest import N_POOL, error_line, rows, select
from tests.formats.conftest import full_export, json_min

IDS = [f"img_{i}.png" for i in range(10)]


def _dups_of_first(mask):
    """A pool where items 8 and 9 are copies of item 0 (the Pool.duplicate_mask contract)."""
    from selector.pool import duplicate_mask

    return duplicate_mask(["a"] + [f"u{i}" for i in range(1, 8)] + ["a", "a"], mask)


def test_labeled_ids_and_duplicates_are_excluded():
    plan = plan_selection(4, IDS, ["img_1.png", "img_2.png", "nowhere.png"], duplicate_mask=_dups_of_first)
    assert np.flatnonzero(plan.excluded).tolist() == [1, 2, 8, 9]
    assert (plan.n_labeled, plan.n_duplicates, plan.missing, plan.budget) == (2, 2, 1, 4)
    assert plan.labels is None and plan.info["duplicates"] == 2 and plan.info["labeled_missing"] == 1


def test_a_labeled_copy_excludes_every_copy():
    plan = plan_selection(1, IDS, [0], duplicate_mask=_dups_of_first)
    assert np.flatnonzero(plan.excluded).tolist() == [0, 8, 9]


def test_budget_above_the_free_items(caplog):
    with pytest.raises(SelectionError, match=r"budget 9 > 8 unlabeled images in the pool \(pass --allow-smaller"):
        plan_selection(9, IDS, [0, 1])
    with caplog.at_level(logging.WARNING, logger="selector"):
        plan = plan_selection(9, IDS, [0, 1], allow_smaller=True)
    assert plan.budget == 8 and "taking all 8" in caplog.text
    with pytest.raises(SelectionError, match="every image in emb.npy is already labeled"):
        plan_selection(1, IDS, np.ones(10, dtype=bool), where="emb.npy")


def test_labels_files_and_sent_out_files(tmp_path):
    done = tmp_path / "round1.csv"
    done.write_text("path,label\nimg_0.png,cat\nimg_1.png,dog\n", encoding="utf-8")
    sent = tmp_path / "round2.txt"
    sent.write_text("img_5.png\nimg_6.png\n", encoding="utf-8")
    plan = plan_selection(3, IDS, files=[done], exclude=[sent])
    assert np.flatnonzero(plan.excluded).tolist() == [0, 1, 5, 6]
    assert plan.labels.tolist() == [0, 1] + [-1] * 8  # sent-out items carry no class
    assert plan.info["class_names"] == ["cat", "dog"] and plan.n_labeled == 4
    with pytest.raises(ValueError, match="not both"):
        plan_selection(3, IDS, [0], files=[done])
    with pytest.raises(ValueError, match="skipped apply to labels files"):
        plan_selection(3, IDS, [0], skipped="seen")


def test_cli_and_api_decide_through_plan_selection(digits_pool, tmp_path, monkeypatch):
    calls = []
    real = selector.plan.plan_selection

    def spy(*args, **kw):
        plan = real(*args, **kw)
        calls.append(plan)
        return plan

    monkeypatch.setattr(selector.plan, "plan_selection", spy)
    monkeypatch.setattr(selector.api, "plan_selection", spy)  # the API's own binding of it
    from selector import Selector
    from selector.cli import main

    sel = Selector(strategy="random", epochs=1, seed=0, device="cpu", cache_dir=tmp_path / "c").fit(digits_pool)
    api_ids = sel.select(5, labeled=sel.pool_.ids[:3]).paths
    assert len(calls) == 1 and calls[0].n_labeled == 3

    labeled = tmp_path / "done.txt"
    labeled.write_text("".join(p + "\n" for p in sel.pool_.ids[:3]), encoding="utf-8")
    r = CliRunner().invoke(main, ["select", "-b", "5", "-p", str(digits_pool), "-s", "random", "--epochs", "1",
                                  "--device", "cpu", "--cache-dir", str(tmp_path / "c"), "--labeled", str(labeled),
                                  "-o", str(tmp_path / "s.txt"), "-q"])
    assert r.exit_code == 0, r.output
    assert len(calls) == 2 and calls[1].n_labeled == 3
    assert (tmp_path / "s.txt").read_text(encoding="utf-8").split() == api_ids  # same decision, same picks

    np.save(tmp_path / "e.npy", sel.embeddings_)
    (tmp_path / "e.ids.txt").write_text("".join(p + "\n" for p in sel.pool_.ids), encoding="utf-8")
    r = CliRunner().invoke(main, ["select", "-b", "5", "--embeddings", str(tmp_path / "e.npy"), "--ids",
                                  str(tmp_path / "e.ids.txt"), "-s", "random", "--labeled", str(labeled),
                                  "-o", str(tmp_path / "e.txt")])
    assert r.exit_code == 0, r.output
    assert len(calls) == 3 and calls[2].n_labeled == 3
    assert (tmp_path / "e.txt").read_text(encoding="utf-8").split() == api_ids


def test_labeled_mask_classes_missing_and_conflicts():
    pool = [f"{i}.png" for i in range(12)]
    labels = {"0.png": "10", "1.png": "2", "2.png": "2", "nope.png": "1", "gone/3.png": "3"}
    mask, y, classes, n_missing = labeled_mask(labels, pool)
    assert classes == ["2", "10"]  # numeric order, only classes seen in the pool
    assert y[:3].tolist() == [1, 0, 0] and n_missing == 2 and mask.sum() == 3
    assert y.dtype == np.int64 and mask.dtype == bool and mask.shape == (12,)
    with pytest.raises(ValueError, match="name the same file"):
        labeled_mask({"0.png": "a", "./0.png": "b"}, pool)
    assert labeled_mask({"0.png": "a", "./0.png": "a"}, pool)[0].sum() == 1
    with pytest.raises(ValueError, match="name the same file"):
        labeled_mask({}, ["a.png", "./a.png"])
    # Array-pool ids.
    ids = [f"x[{i}]" for i in range(5)]
    mask, y, classes, n_missing = labeled_mask({"x[3]": "7", "x[9]": "1"}, ids)
    assert mask.tolist() == [False, False, False, True, False] and n_missing == 1


def test_duplicate_files_never_both_chosen(pool, tmp_path, encoder_file, unchanged):
    shutil.copyfile(pool / "000.png", pool / "copy_a.png")
    shutil.copyfile(pool / "000.png", pool / "zcopy_b.png")
    shutil.copyfile(pool / "007.png", pool / "007 again.png")
    unchanged(pool)
    n = N_POOL + 3
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL)  # every distinct image once
    assert r.exit_code == 0, r.output
    assert f"{n} images in {pool}, 3 duplicate files (byte-identical to another) not selectable" in r.output
    chosen = [x["path"] for x in rows(tmp_path / "s.csv")]
    digests = [hashlib.sha256((pool / c).read_bytes()).hexdigest() for c in chosen]
    assert len(set(digests)) == len(chosen) == N_POOL
    assert {"000.png", "007 again.png"} <= set(chosen)  # the first copy (sorted order) is the one kept
    r = select(pool, tmp_path / "t.csv", encoder_file, "-b", N_POOL + 1)
    assert r.exit_code == 1 and f"budget {N_POOL + 1} > {N_POOL} unlabeled images" in error_line(r)
    # A labeled copy makes every copy of that image not selectable.
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("zcopy_b.png\n", encoding="utf-8")
    r = select(pool, tmp_path / "u.csv", encoder_file, "-b", N_POOL - 1, "--labeled", labeled)
    assert r.exit_code == 0, r.output
    assert not {"000.png", "copy_a.png", "zcopy_b.png"} & {x["path"] for x in rows(tmp_path / "u.csv")}


# -- labels of Label Studio rounds: what an export leaves out, the classes carried forward ------------------

POOL30 = [f"img_{i:02d}.png" for i in range(30)]


def _round_one(tmp_path, class_names=("cat", "dog", "bird", "fish"), **kw):
    """Round 1's ten tasks (written with a labeling config unless ``class_names`` is None) with Label
    Studio's ids; truth: cat/dog alternating."""
    sel = Selection(indices=np.arange(10), scores=np.linspace(1, 0.1, 10), groups=np.arange(10) % 3)
    out = tmp_path / "r1.json"
    export_selection(sel, POOL30, out, class_names=list(class_names) if class_names else None, round=1, **kw)
    tasks = json.loads(out.read_text(encoding="utf-8"))
    for n, t in enumerate(tasks):
        t["id"] = n + 1
    return out, tasks, {t["data"]["path"]: ("cat", "dog")[n % 2] for n, t in enumerate(tasks)}


def test_an_export_that_leaves_tasks_out_is_warned_and_counted_apart(tmp_path, caplog):
    r1, tasks, truth = _round_one(tmp_path)
    paths = [t["data"]["path"] for t in tasks]
    done, skipped, open_ = paths[:5], paths[5:7], paths[7:]
    annotated = [t for t in full_export(tasks, {p: truth[p] for p in done}, skipped) if t["annotations"]]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(annotated), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="selector"):
        plan = plan_selection(3, POOL30, files=[export])
    assert ("the labels files list only 7 of the 10 tasks of round 1: the others (open, or skipped in a "
            "CSV/JSON-MIN export) were left out of the export and may be chosen again; pass the round's tasks "
            "file with --exclude") in caplog.text
    assert (plan.n_labeled, plan.n_skipped, plan.n_pending, plan.n_done) == (7, 2, 0, 5)
    assert labeled_line(plan, [export], []) == ("7 images excluded: 5 labeled, 2 skipped by annotators, 0 sent "
                                                "out and not annotated yet")
    # The round's tasks as sent out: nothing is left out, the open tasks are counted as such.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="selector"):
        plan = plan_selection(3, POOL30, files=[export], exclude=[r1])
        assert not plan_selection(3, POOL30, files=[export], skipped="unseen").n_skipped
    assert "tasks of round" not in caplog.text
    assert np.flatnonzero(plan.excluded).tolist() == list(range(10))
    assert labeled_line(plan, [export], [r1]) == ("10 images excluded: 5 labeled, 2 skipped by annotators, 3 "
                                                  "sent out and not annotated yet")
    # JSON-MIN lists open tasks and leaves out skipped ones.
    mini = tmp_path / "min.json"
    mini.write_text(json.dumps(json_min(tasks, {p: truth[p] for p in done}, open_)), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="selector"):
        plan = plan_selection(3, POOL30, files=[mini])
    assert "list only 8 of the 10 tasks of round 1" in caplog.text
    assert (plan.n_labeled, plan.n_skipped, plan.n_pending) == (8, 0, 3)
    # Tasks without their round's size (written before it was recorded): a gap below the highest rank
    # seen is told ("at least"); a missing tail cannot be.
    for t in tasks:
        del t["data"]["round_size"]
    caplog.clear()
    mini.write_text(json.dumps(json_min([t for t in tasks if t["data"]["rank"] != 3], truth)), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="selector"):
        plan_selection(3, POOL30, files=[mini])
    assert "list only 9 of the at least 10 tasks of round 1" in caplog.text
    caplog.clear()
    mini.write_text(json.dumps(json_min(tasks[:6], truth)), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="selector"):
        plan_selection(3, POOL30, files=[mini])
    assert "tasks of round" not in caplog.text


def test_the_next_round_offers_the_last_rounds_classes(tmp_path, caplog):
    r1, tasks, truth = _round_one(tmp_path)
    mini = tmp_path / "min.json"
    mini.write_text(json.dumps(json_min(tasks, truth)), encoding="utf-8")  # only cat and dog labeled so far
    plan = plan_selection(2, POOL30, files=[mini], exclude=[r1])  # the config is beside round 1's tasks
    assert plan.info["class_names"] == ["cat", "dog", "bird", "fish"] and plan.info["round"] == 2
    assert not isinstance(plan.info["class_names"], SeenClasses)
    truth[tasks[0]["data"]["path"]] = "eel"  # a class the config did not offer comes after its classes
    mini.write_text(json.dumps(json_min(tasks, truth)), encoding="utf-8")
    assert plan_selection(2, POOL30, files=[mini], exclude=[r1]).info["class_names"] == [
        "cat", "dog", "bird", "fish", "eel"]
    # Without the config only the classes labeled so far are known; the config built from them says so.
    seen = plan_selection(2, POOL30, files=[mini]).info["class_names"]
    assert seen == ["cat", "dog", "eel"] and isinstance(seen, SeenClasses)
    sel = Selection(indices=np.array([20, 21]), scores=np.ones(2), groups=np.zeros(2, dtype=np.int64))
    with caplog.at_level(logging.WARNING, logger="selector"):
        export_selection(sel, POOL30, tmp_path / "r2.json", class_names=seen, round=2)
    assert "r2.config.xml offers only the 3 classes labeled so far (cat, dog, eel)" in caplog.text
    # The config names the control the labels are read from.
    sub = tmp_path / "named"
    sub.mkdir()
    r1, tasks, truth = _round_one(sub, from_name="animal")
    assert 'name="animal"' in (sub / "r1.config.xml").read_text(encoding="utf-8")
    mini = sub / "min.json"
    mini.write_text(json.dumps(json_min(tasks, truth, control="animal")), encoding="utf-8")
    plan = plan_selection(2, POOL30, files=[mini], exclude=[r1])
    assert plan.labels is not None and (plan.labels >= 0).sum() == 10
