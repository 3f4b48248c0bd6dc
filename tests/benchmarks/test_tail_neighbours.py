"""benchmarks/tail_neighbours.py: neighbour purity per class, on hand-made pools and a tiny run on digits."""
import numpy as np
import pytest

from benchmarks import tail_neighbours as tn

pytestmark = pytest.mark.slow


def test_neighbour_purity_hand_case():
    # class 0: a tight group of 6 far from everything; class 1: 20 points on a line; class 2: 3 points
    # each sitting inside class 1's line, so none of their neighbours is of their class
    rng = np.random.default_rng(0)
    a = np.array([[10.0, 10.0]]) + 0.01 * rng.standard_normal((6, 2))
    line = np.stack([np.arange(20, dtype=float), np.zeros(20)], axis=1)
    b = np.array([[2.5, 0.01], [9.5, 0.01], [15.5, 0.01]])
    x = np.concatenate([a, line, b]).astype(np.float32)
    y = np.array([0] * 6 + [1] * 20 + [2] * 3)
    pur = tn.neighbour_purity(x, y, k=3)
    assert pur[0] == 1.0 and pur[2] == 0.0
    # the line's points within 1.5 of a class-2 point (four per point) lose a neighbour to it
    assert 0.7 < pur[1] < 0.9
    sizes, p = tn.by_rank(x, y, 3)
    assert sizes.tolist() == [20, 6, 3] and p.tolist() == [pur[1], pur[0], pur[2]]
    with pytest.raises(ValueError, match="k must be"):
        tn.neighbour_purity(x, y, k=x.shape[0])


def test_tiny_run_on_digits(tmp_path):
    out = tmp_path / "t"
    args = ["--datasets", "digits", "--seeds", "1", "--shape", "lt10", "--out", str(out)]
    tn.main(args)
    md = (out / "summary.md").read_text()
    assert "python -m benchmarks.tail_neighbours --datasets digits" in md
    row = next(line for line in md.splitlines() if line.startswith("| pca50 | digits |"))
    cells = [c.strip() for c in row.strip("|").split("|")[2:]]
    assert len(cells) == 10
    sizes = [float(c.split(" / ")[0]) for c in cells]
    shares = [float(c.split(" / ")[1]) for c in cells]
    assert sizes == sorted(sizes, reverse=True) and all(0 <= s <= 1 for s in shares)
    with pytest.raises(SystemExit, match="exists"):
        tn.main(args)
