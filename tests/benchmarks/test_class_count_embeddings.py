"""The class-count range on the strategy matrix's exported embeddings (made by a benchmark script)."""
from pathlib import Path

import numpy as np
import pytest
from selector.strategies.class_count import estimate_class_range

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_mixed20_range_contains_the_truth():
    # MNIST + notMNIST (labels offset by 10) embedded by the project's default encoder: the file the
    # strategy matrix reads (made by benchmarks/export_embeddings.py); skipped where it has not been made.
    # (On PCA-50 of the pixels there is no eigengap to find: 3 groups, see benchmarks/README.md.)
    path = REPO / ".bench_data" / "embeddings" / "mixed20__default.npy"
    if not path.is_file():
        pytest.skip(f"{path} not made (benchmarks/README.md: strategy matrix)")
    z = np.load(path).astype(np.float32)
    assert z.shape[0] == 20_000
    est = estimate_class_range(z, budget=40, seed=0)
    assert est.k_range[0] <= 20 <= est.k_range[1], est.k_per_seed
