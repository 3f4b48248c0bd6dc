"""benchmarks/quality_strategies.py: strategy specs with parameters, and one small run end to end."""
import numpy as np
import pytest

from benchmarks.quality_strategies import main, parse_strategy

from ..blobs import sphere_blobs

pytestmark = pytest.mark.slow


def test_parse_strategy_with_parameters():
    s = parse_strategy("balanced:explore=0,n_classes=None,k_nn=10")
    assert (s.explore, s.n_classes, s.k_nn) == (0, None, 10)
    assert parse_strategy("kcenter").__class__.__name__ == "KCenter"
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_strategy("balanced:explore")


def test_quality_table_on_blobs(tmp_path, capsys):
    x, y = sphere_blobs([120] * 10, d=16, seed=4)
    np.save(tmp_path / "e.npy", x)
    np.save(tmp_path / "y.npy", y)
    main(["--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "y.npy"), "--pools", "balanced",
          "--budgets", "10", "--seeds", "2", "--test-per-class", "20",
          "--strategies", "random", "balanced:explore=0"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| balanced |")]
    assert len(rows) == 2
    # ten well-separated blobs, one typical pick per group: every class, perfect probe
    assert "| balanced:explore=0 | 10.0/10 (min 10) |" in rows[1]


def test_summary_file_holds_the_command_and_the_table(tmp_path, capsys):
    x, y = sphere_blobs([60] * 4, d=8, seed=1)
    np.save(tmp_path / "e.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "y.npy"), "--pools", "balanced",
            "--budgets", "4", "--seeds", "1", "--test-per-class", "10", "--strategies", "random",
            "--summary", str(tmp_path / "summary.md")]
    main(args)
    printed = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| balanced |")]
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "python -m benchmarks.quality_strategies --embeddings" in text.split("```")[1]
    assert len(printed) == 1 and printed[0] in text.splitlines()
