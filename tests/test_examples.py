"""The labeling-tool round trip of examples/annotation_loop.py on a small real pool (120 digits)."""
from __future__ import annotations

import importlib.util
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from selector.strategies import STRATEGIES

from selector.formats import read_labels

from .conftest import write_digits

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "annotation_loop.py"
# The example's default; fall back to one that is registered while strategies are being added.
STRATEGY = "balanced" if "balanced" in STRATEGIES else "random"
N, BUDGET, ROUNDS = 120, 10, 3


@pytest.fixture(scope="module")
def loop():
    spec = importlib.util.spec_from_file_location("annotation_loop", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def entropy_reference(labels, k: int) -> float:
    """Normalised entropy, written out: -sum p log p / log k over the label frequencies."""
    counts = Counter(labels)
    total = sum(counts.values())
    h = 0.0
    for c in counts.values():
        p = c / total
        h -= p * math.log(p)
    return h / math.log(k)


@pytest.fixture(scope="module")
def folder_run(loop, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    pool = write_digits(tmp / "pool", N)
    argv = ["--pool", str(pool), "--epochs", "1", "--budget", str(BUDGET), "--rounds", str(ROUNDS),
            "--strategy", STRATEGY, "--seed", "0", "--device", "cpu", "--out", str(tmp / "out")]
    return pool, argv, loop.main(argv)


def test_rounds_grow_by_budget_and_never_rechoose(folder_run):
    _, _, recs = folder_run
    assert [r["round"] for r in recs] == list(range(1, ROUNDS + 1))
    seen: set[str] = set()
    for r, rec in enumerate(recs, start=1):
        chosen = rec["chosen"]
        assert len(chosen) == BUDGET and len(set(chosen)) == BUDGET
        assert not seen & set(chosen), f"round {r} re-chose labeled items {sorted(seen & set(chosen))}"
        seen |= set(chosen)
        assert rec["n_labeled"] == r * BUDGET
        assert rec["n_test"] == N - r * BUDGET


def test_labels_read_back_are_the_annotators(folder_run):
    """The last export holds every item chosen so far, labeled with its true folder (never the
    strategy's group pre-annotation)."""
    pool, _, recs = folder_run
    labels = read_labels(recs[-1]["export_file"], root=pool)
    chosen = [p for rec in recs for p in rec["chosen"]]
    assert sorted(labels) == sorted(chosen)
    assert all(lab == Path(p).parent.name for p, lab in labels.items())
    assert all((pool / p).is_file() for p in labels)


def test_balance_metrics_and_accuracy(folder_run):
    pool, _, recs = folder_run
    n_classes = len({p.parent.name for p in pool.rglob("*.png")})
    so_far: list[str] = []
    for rec in recs:
        so_far += [Path(p).parent.name for p in rec["chosen"]]
        assert rec["n_classes"] == n_classes == 10
        assert rec["classes_covered"] == len(set(so_far))
        assert rec["entropy"] == pytest.approx(entropy_reference(so_far, n_classes), abs=1e-9)
        assert isinstance(rec["accuracy"], float) and 0.0 <= rec["accuracy"] <= 1.0
    # Scored against misaligned labels the probe would sit near chance (0.1); with 30 labels on
    # even a one-epoch embedding it is far above it.
    assert recs[-1]["accuracy"] > 0.2


def test_same_seed_same_rounds(loop, folder_run):
    _, argv, recs = folder_run
    again = loop.main(argv)  # same --out: encoder and embedding come from its cache
    assert [r["chosen"] for r in again] == [r["chosen"] for r in recs]
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in recs]


def test_npz_pool_oracle_reads_y(loop, tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.rint(d.images[:N] * (255 / 16)), 0, 255).astype(np.uint8)
    y = d.target[:N].astype(np.int64)
    np.savez(tmp_path / "digits.npz", x=x, y=y)
    recs = loop.main(["--pool", str(tmp_path / "digits.npz"), "--epochs", "1", "--budget", "8",
                      "--rounds", "2", "--strategy", STRATEGY, "--device", "cpu", "--out", str(tmp_path / "o")])
    assert [r["n_labeled"] for r in recs] == [8, 16]
    assert not set(recs[0]["chosen_indices"]) & set(recs[1]["chosen_indices"])
    labels = read_labels(recs[-1]["export_file"])
    idx = [i for r in recs for i in r["chosen_indices"]]
    assert len(labels) == 16
    for i, p in zip(idx, [p for r in recs for p in r["chosen"]]):
        assert labels[p] == str(y[i])


def test_unknown_strategy_is_refused(loop, capsys):
    with pytest.raises(SystemExit):
        loop.main(["--strategy", "no-such-strategy"])
    assert "no-such-strategy" in capsys.readouterr().err


def test_epochs_option(loop):
    assert loop.parse_args(["--epochs", "auto"]).epochs is None
    assert loop.parse_args(["--epochs", "7"]).epochs == 7
    with pytest.raises(SystemExit):
        loop.parse_args(["--epochs", "0"])


def test_pool_without_class_folders_is_refused_before_training(loop, tmp_path):
    pool = write_digits(tmp_path / "pool", 12)
    for f in list(pool.rglob("*.png")):
        f.rename(pool / f"{f.parent.name}-{f.name}")  # flat: no class in the path
    with pytest.raises(SystemExit, match="parent folder"):
        loop.main(["--pool", str(pool), "--epochs", "1", "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o" / "cache").exists()
