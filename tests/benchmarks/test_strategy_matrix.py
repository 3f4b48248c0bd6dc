"""benchmarks/strategy_matrix.py: pools, ranks, the summary, and a tiny end-to-end run on digits."""
import csv

import numpy as np
import pytest

from benchmarks import common
from benchmarks import strategy_matrix as sm

pytestmark = pytest.mark.slow


def test_ranks_highest_first_ties_share():
    assert sm.ranks({"a": 3.0, "b": 1.0, "c": 3.0}) == {"a": 1.5, "b": 3.0, "c": 1.5}
    assert sm.ranks({"a": 0.2, "b": 0.9}) == {"a": 2.0, "b": 1.0}


@pytest.mark.parametrize("shape", sm.SHAPES)
def test_pools_have_the_asked_shape(shape):
    y = np.repeat(np.arange(10), 600)
    train = np.arange(0, y.shape[0], 1, dtype=np.int64)[::1]
    pool = common.make_pool(shape, y, train, np.random.default_rng(0), per_class=200, n_max=400)
    counts = np.bincount(y[pool], minlength=10)
    assert np.unique(pool).shape[0] == pool.shape[0]
    if shape == "balanced":
        assert counts.tolist() == [200] * 10
    elif shape.startswith("lt"):
        c = np.sort(counts)[::-1]
        assert c[0] == 400 and c[-1] == 400 // int(shape[2:])
    else:  # half the classes, sizes falling from 400 by 10
        c = np.sort(counts[counts > 0])[::-1]
        assert c.shape[0] == 5 and c[0] == 400 and c[-1] == 40


def test_summary_ranks_and_gaps_from_rows():
    rows = []
    for seed in range(2):
        for s, cov in (("good", 10), ("bad", 7)):
            rows.append({"embedding": "e", "dataset": "d", "shape": "balanced", "n_classes": 10, "pool_size": 100,
                         "budget_mult": 1.0, "budget": 10, "seed": seed, "strategy": s, "covered": cov,
                         "entropy": cov / 10, "probe_acc": cov / 20, "seconds": 0.1})
    md = sm.summarise(rows, "python -m benchmarks.strategy_matrix --x")
    assert "    python -m benchmarks.strategy_matrix --x" in md
    assert "| good | 1.00 | 1.00 | 1.00 | 1.00 | 0.0:" in md
    assert "| bad | 2.00 | 2.00 | 2.00 | 2.00 | 3.0: e/d/balanced/1.0 (7.0 / 10.0) |" in md
    assert "| e | d | balanced | 10 | 10.0 | +0.0 | -3.0 |" in md


def test_rule_table_lists_every_strategy_and_the_default_s_failing_cells():
    rows = []
    for shape, covs in (("balanced", {"a": 10, "b": 9.8}), ("lt100", {"a": 6, "b": 8})):
        for seed in range(2):
            for s, cov in covs.items():
                for mult in (1.0, 5.0):
                    rows.append({"embedding": "e", "dataset": "d", "shape": shape, "n_classes": 10, "pool_size": 100,
                                 "budget_mult": mult, "budget": 10, "seed": seed, "strategy": s, "covered": cov,
                                 "entropy": cov / 10, "probe_acc": cov / 20, "seconds": 0.1})
    md = "\n".join(sm.rule_table(rows, default="a"))
    # within 0.5 on balanced, 2 behind on lt100 in both seeds (a zero-width interval: clearly behind)
    assert "| a (default) | 1.50 | 1 | 1 | 2.0 (e/d/lt100, 1K) |" in md
    assert "| b | 1.50 | 0 | 0 | - |" in md
    assert "| e | d | lt100 | 1K | 6.0 | 8.0 (b) | 2.0 | 2.0 to 2.0 (clear) |" in md
    assert common.product_default() in ("typcover", "balanced", "typiclust", "kcenter", "probcover", "random")


def test_paired_gap_ci_against_a_hand_computed_interval():
    # differences 1, 2, 3 over three seeds: mean 2, sd 1, t(0.975, 2) = 4.303 -> 2 +- 4.303 / sqrt(3)
    mean, low, high = sm.paired_gap_ci({0: 5, 1: 6, 2: 9, 7: 1}, {0: 4, 1: 4, 2: 6})
    assert mean == 2.0
    assert low == pytest.approx(2 - 4.302653 / np.sqrt(3), abs=1e-5)
    assert high == pytest.approx(2 + 4.302653 / np.sqrt(3), abs=1e-5)
    assert sm.paired_gap_ci({0: 3.0}, {0: 1.0}) == (2.0, -np.inf, np.inf)  # one seed: no interval


def test_rule_table_tells_noise_from_a_clear_loss():
    # "a" trails "b" by 1 class on average in both cells, steadily in lt100 and by seed noise in balanced
    rows = []
    covs = {"balanced": ({"a": [10, 5, 10, 5, 10], "b": [10, 9, 10, 9, 7]}),
            "lt100": ({"a": [5, 6, 5, 6, 5], "b": [6, 7, 6, 7, 6]})}
    for shape, by in covs.items():
        for s, vals in by.items():
            for seed, cov in enumerate(vals):
                rows.append({"embedding": "e", "dataset": "d", "shape": shape, "n_classes": 10, "pool_size": 100,
                             "budget_mult": 1.0, "budget": 10, "seed": seed, "strategy": s, "covered": cov,
                             "entropy": cov / 10, "probe_acc": cov / 20, "seconds": 0.1})
    md = "\n".join(sm.rule_table(rows, default="a"))
    assert "| a (default) | 2.00 | 2 | 1 |" in md
    assert "| e | d | lt100 | 1K | 5.4 | 6.4 (b) | 1.0 | 1.0 to 1.0 (clear) |" in md
    balanced = next(line for line in md.splitlines() if line.startswith("| e | d | balanced | 1K"))
    assert "(clear)" not in balanced


def test_tiny_run_on_digits_writes_csv_and_summary(tmp_path):
    out = tmp_path / "m"
    args = ["--datasets", "digits", "--shapes", "subset", "--seeds", "1", "--budget-mults", "1",
            "--strategies", "random", "kcenter", "--out", str(out)]
    sm.main(args)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["strategy"] for r in rows] == ["random", "kcenter"]
    assert {r["embedding"] for r in rows} == {"pca50"}
    k = int(rows[0]["n_classes"])
    assert k == 5 and int(rows[0]["budget"]) == 5
    assert all(0 < int(r["covered"]) <= k for r in rows)
    assert (out / "summary.md").read_text().startswith("# Strategy matrix")
    with pytest.raises(SystemExit, match="exists"):
        sm.main(args)  # obeys --force


def test_summary_only_includes_other_folders(tmp_path):
    # a variant's run summarised beside the matrix it is compared with: both strategies in one table
    out = tmp_path / "m"
    base = ["--datasets", "digits", "--shapes", "subset", "--seeds", "1", "--budget-mults", "1"]
    sm.main(base + ["--strategies", "random", "--out", str(out / "matrix")])
    sm.main(base + ["--strategies", "kcenter", "--out", str(tmp_path / "variant" / "run")])
    sm.main(["--summary-only", "--out", str(tmp_path / "variant"), "--include", str(out)])
    md = (tmp_path / "variant" / "summary.md").read_text()
    assert "2 selections; 1 cells" in md and "| random |" in md and "| kcenter |" in md
    assert "--include" in md  # the command that made it
    with pytest.raises(SystemExit, match="no such folder"):
        sm.main(["--summary-only", "--out", str(out), "--include", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit, match="only goes with --summary-only"):
        sm.main(base + ["--out", str(tmp_path / "x"), "--include", str(out)])


def test_embedding_file_with_wrong_rows_is_named(tmp_path):
    np.save(tmp_path / "digits__bad.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(SystemExit, match="digits__bad.npy"):
        common.embeddings_for("digits", 1797, tmp_path, None)


def test_is_default_ignores_report_only_parameters():
    assert sm.is_default("typcover", "typcover")
    assert sm.is_default("typcover:count_classes=False", "typcover")
    assert not sm.is_default("typcover:typical_share=0", "typcover")
    assert not sm.is_default("balanced", "typcover")
