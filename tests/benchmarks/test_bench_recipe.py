"""The recipe benchmark: paired differences against the default recipe, speed ratios, a tiny run."""
import csv

import numpy as np
import pytest

from benchmarks import bench_recipe as R
from benchmarks.common import Split

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """``main(["--threads", "1"])`` sets torch's thread count for the process: put it back for the next tests."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _row(ds, variant, knn, pv, lin, seed=0):
    return {"dataset": ds, "shape": "small", "variant": variant, "seed": seed, "n_pool": 10, "loo_knn": knn,
            "linear": lin, "loo_knn_pv": pv, "linear_pv": lin, "fit_s": 10, "load": 1.0, "note": ""}


def test_quality_table_gives_paired_mean_and_worst_differences():
    rows = [_row("a", "default", 0.80, 0.90, 0.70), _row("b", "default", 0.60, 0.70, 0.50),
            _row("a", "temp=0.5", 0.84, 0.91, 0.70), _row("b", "temp=0.5", 0.58, 0.70, 0.54)]
    md = R.quality_markdown(rows, "cmd")
    line = next(ln for ln in md.splitlines() if ln.startswith("| `temp=0.5`"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # variant, a, b, mean / worst d kNN, mean / worst d +pv, mean d lin, fit s, verdict
    assert cells[1:3] == ["84.0 / 91.0", "58.0 / 70.0"]
    assert cells[3:8] == ["+1.0", "-2.0", "+0.5", "+0.0", "+2.0"]
    assert cells[9] == "no seed spread measured"
    assert "Seed spread" not in md
    md = R.quality_markdown(rows + [_row("a", "default", 0.83, 0.90, 0.70, seed=1)], "cmd")
    assert "Seed spread of the default recipe" in md and "a 3.0 / 0.0 (2 seeds)" in md


def test_verdict_needs_a_gain_above_the_seed_spread_in_both_columns_and_no_large_loss():
    base = [_row("a", "default", 0.80, 0.90, 0.7), _row("a", "default", 0.81, 0.905, 0.7, seed=1),
            _row("b", "default", 0.60, 0.70, 0.5)]  # spread: 1.0 alone, 0.5 +pv (from dataset a)
    win = [_row("a", "v", 0.83, 0.92, 0.7), _row("b", "v", 0.62, 0.71, 0.5)]  # +2.5 / +1.5 mean
    assert R.verdict(base + win, "v") == "replaces the default"
    small = [_row("a", "v", 0.83, 0.904, 0.7), _row("b", "v", 0.62, 0.70, 0.5)]  # +pv: +0.2
    assert R.verdict(base + small, "v") == "keeps the default (+pv: mean +0.2, not above the seed spread 0.5)"
    lossy = [_row("a", "v", 0.86, 0.96, 0.7), _row("b", "v", 0.585, 0.71, 0.5)]  # b: -1.5 alone
    assert R.verdict(base + lossy, "v") == "keeps the default (alone: b -1.5)"
    assert R.verdict(base, "v") == "not measured" and R.verdict(base, "default") == "the default"


def test_speed_table_ratio_is_eager_resnet_small_over_the_row():
    rows = [{"arch": "resnet-small", "channels": 3, "threads": 1, "mode": m, "repeat": r, "step_s": s, "load": 1.0,
             "note": ""} for r in range(3) for m, s in (("eager", 1.0 + r * 0.1), ("channels-last", 0.5 + r * 0.05))]
    rows.append({"arch": "resnet-small", "channels": 3, "threads": 1, "mode": "compile", "repeat": 0,
                 "step_s": float("nan"), "load": 1.0, "note": "failed: RuntimeError: no compiler"})
    rows.append({"arch": "resnet18", "channels": 3, "threads": 1, "mode": "eager", "repeat": 0, "step_s": 4.4,
                 "load": 1.0, "note": ""})
    md = R.speed_markdown(rows, "cmd")
    assert "| 3 | 1 | resnet-small | channels-last | 0.550 | 2.00 |" in md
    assert "| 3 | 1 | resnet-small | compile | nan | nan | failed: RuntimeError: no compiler |" in md
    assert "| 3 | 1 | resnet18 | eager | 4.400 | 0.25 |" in md


def test_step_timer_runs_every_mode_that_needs_no_compiler():
    for mode in ("eager", "channels-last"):
        assert R.time_steps(1, mode, threads=1, steps=1, warmup=0, arch="resnet-small") > 0


def test_a_tiny_quality_run_trains_scores_and_resumes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = rng.integers(0, 256, (y.size, 1, 8, 8), dtype=np.uint8)
    x[:, 0, :2, :] = (y * 100)[:, None, None]
    yt = np.repeat(np.arange(3), 5)
    xt = rng.integers(0, 256, (yt.size, 1, 8, 8), dtype=np.uint8)
    xt[:, 0, :2, :] = (yt * 100)[:, None, None]
    monkeypatch.setattr(R, "load_split",
                        lambda name, data_dir, cache_dir, seed=0: Split("digits", x, y, xt, yt))
    monkeypatch.setattr(R, "VARIANTS", (("default", {"images": "200"}), ("flip=0", {"images": "200", "flip": "0"})))
    out = tmp_path / "r"
    assert R.main(["--out", str(out), "--datasets", "digits", "--shape", "full", "--threads", "1"]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["variant"] for r in rows] == ["default", "flip=0"]
    assert all(0 <= float(r[k]) <= 1 for r in rows for k in ("loo_knn", "loo_knn_pv", "linear", "linear_pv"))
    assert float(rows[0]["loo_knn_pv"]) > 0.9  # the pixel view sees the class signal
    before = (out / "results.csv").read_text()
    R.main(["--out", str(out), "--datasets", "digits", "--shape", "full"])
    assert (out / "results.csv").read_text() == before
    md = (out / "summary.md").read_text()
    assert "bench_recipe --out" in md and "--datasets digits --shape full" in md and "| `flip=0` |" in md
    assert (out / "commands.txt").read_text().count("quality\t") == 2  # both commands that made rows
    R.main(["--out", str(out), "--datasets", "digits", "--shape", "full", "--variants", "default", "--seed-start", "1"])
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["variant"], r["seed"]) for r in rows] == [("default", "0"), ("flip=0", "0"), ("default", "1")]
    assert "Seed spread of the default recipe" in (out / "summary.md").read_text()
    with pytest.raises(SystemExit, match="unknown variant 'nope'"):
        R.main(["--out", str(out), "--variants", "nope"])


def test_step_timer_leaves_the_thread_count_as_it_was():
    import torch

    n = torch.get_num_threads()
    R.time_steps(1, "eager", threads=1 if n > 1 else 2, steps=1, warmup=0)
    assert torch.get_num_threads() == n
