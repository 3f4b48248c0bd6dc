"""Tests of selector.eval.report: CSV round trip, markdown summary, PNG plots."""
import math

import numpy as np
import pytest
from selector.eval.loop import run_eval
from selector.eval.report import (
    markdown_table,
    plot_accuracy_vs_budget,
    plot_label_histograms,
    read_csv,
    summarise,
    write_csv,
    write_markdown,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(strategy, budget, seed, acc, ir=2.0, rnd=1, bpr=None, pool="balanced"):
    return {"dataset": "toy", "pool": pool, "strategy": strategy, "retrainer": "linear",
            "budget": budget, "budget_per_round": bpr or budget, "round": rnd, "seed": seed,
            "accuracy": acc, "imbalance_ratio": ir, "classes_covered": 2,
            "expected_random_coverage": 1.5, "n_groups_estimated": None,
            "label_counts": f"0:{budget - 1};1:1", "pool_label_counts": "0:50;1:50"}


@pytest.fixture
def rows():
    return [row("random", 10, 0, 0.5), row("random", 10, 1, 0.7, ir=math.inf),
            row("random", 20, 0, 0.8), row("random", 20, 1, 0.9),
            row("kcenter", 10, 0, 0.6), row("kcenter", 20, 0, 0.85)]


def test_csv_round_trip(tmp_path, rows):
    p = write_csv(rows, tmp_path / "sub" / "r.csv")
    back = read_csv(p)
    assert back == rows                      # ints, floats (incl. inf), None and strings survive
    assert not list(tmp_path.joinpath("sub").glob(".*.tmp"))   # no temp file left behind


def test_summarise_mean_and_std(rows):
    s = summarise(rows, metrics=("accuracy", "imbalance_ratio"))
    r10 = next(d for d in s if d["strategy"] == "random" and d["budget"] == 10)
    assert r10["n_seeds"] == 2
    assert r10["accuracy_mean"] == pytest.approx(0.6)
    assert r10["accuracy_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert r10["imbalance_ratio_mean"] == 2.0 and r10["imbalance_ratio_n_inf"] == 1
    k10 = next(d for d in s if d["strategy"] == "kcenter" and d["budget"] == 10)
    assert k10["accuracy_std"] == 0.0 and k10["n_seeds"] == 1


def test_markdown(tmp_path, rows):
    md = markdown_table(rows, metrics=("accuracy", "imbalance_ratio"))
    lines = md.splitlines()
    assert lines[0].startswith("### toy") and "balanced" in lines[0]
    assert lines[2] == "| strategy | budget | seeds | accuracy | imbalance_ratio |"
    assert "| random | 10 | 2 | 0.6 ± 0.14 | 2 ± 0 (inf in 1/2) |" in lines
    assert "| kcenter | 20 | 1 | 0.85 ± 0 | 2 ± 0 |" in lines
    assert [line.split("|")[1].strip() for line in lines[4:8]] == ["random", "random", "kcenter", "kcenter"]
    p = write_markdown(rows, tmp_path / "s.md", metrics=("accuracy",), title="T")
    assert p.read_text().startswith("# T\n\n### toy")


def test_plots_are_png(tmp_path, rows):
    a = plot_accuracy_vs_budget(rows, tmp_path / "acc.png")
    h = plot_label_histograms(rows, tmp_path / "h.png", budget=20)
    for p in (a, h):
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 2000
    with pytest.raises(ValueError, match="no rows with budget 15"):
        plot_label_histograms(rows, tmp_path / "x.png", budget=15)
    two_pools = rows + [row("random", 20, 0, 0.5, pool="long-tail:10")]
    with pytest.raises(ValueError, match="several"):
        plot_label_histograms(two_pools, tmp_path / "x.png", budget=20)


def test_write_report_from_a_real_run(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float32)
    rows = run_eval(x[:1500], d.target[:1500], x[1500:], d.target[1500:], ["random"], [10, 30], [0, 1],
                    "long-tail:5", rounds=2, progress=False, dataset="digits")
    paths = write_report(rows, tmp_path / "out", title="digits")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["accuracy.png", "coverage.png", "labels_digits_long-tail_5_b60.png",
                     "results.csv", "summary.md"]
    assert len(read_csv(paths["csv"])) == len(rows) == 2 * 2 * 2
    md = paths["markdown"].read_text()
    assert "| per round | round |" in md and md.count("| random |") == 4
    for key in ("accuracy", "coverage", "labels:digits:long-tail:5"):
        assert paths[key].read_bytes()[:8] == PNG_MAGIC
