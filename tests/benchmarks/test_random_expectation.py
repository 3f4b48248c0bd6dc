import numpy as np
import pytest

from benchmarks.random_expectation import expected_coverage

pytestmark = pytest.mark.slow


def test_expected_coverage_matches_simulation_and_edges():
    counts = np.array([400, 120, 40, 9, 3])
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(counts.shape[0]), counts)
    sims = [np.unique(rng.choice(labels, 20, replace=False)).shape[0] for _ in range(20_000)]
    assert expected_coverage(counts, 20) == pytest.approx(np.mean(sims), abs=0.03)
    assert expected_coverage(counts, int(counts.sum())) == 5.0  # every item drawn
    assert expected_coverage(np.array([10, 10]), 1) == pytest.approx(1.0)
    assert expected_coverage(np.array([1, 99]), 99) == pytest.approx(1 + 99 / 100)  # the singleton: 99 of 100 draws
