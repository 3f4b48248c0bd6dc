"""benchmarks/bench_fiftyone.py without FiftyOne: Brain's top B as sorting by the score gives it, the pool names,
and the summary page computed from rows (the measured run is ``python -m benchmarks.bench_fiftyone``)."""
from __future__ import annotations

import click
import numpy as np
import pytest

from benchmarks.bench_fiftyone import covered, parse_pool, summarise, top


def test_top_b_is_the_highest_scores_ties_in_row_order_and_coverage_counts_classes():
    scores = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    assert top(scores, 3).tolist() == [1, 3, 2]
    assert covered(np.array([0, 0, 1, 2, 2]), top(scores, 3)) == 3  # rows 1, 3, 2: classes 0, 2, 1
    assert covered(np.array([0, 0, 1, 2, 2]), np.array([0, 1])) == 1


def test_pool_names_are_checked():
    assert parse_pool("natural_images-small") == ("natural_images", "small")
    with pytest.raises(click.BadParameter, match="pool 'nope-small'"):
        parse_pool("nope-small")


def test_the_summary_is_computed_from_the_rows():
    rows = []
    for mult, b in ((1, 4), (2, 8)):
        for seed, cov in ((0, 3), (1, 4)):
            rows.append({"pool": "p-small", "n": 40, "classes": 4, "multiple": mult, "budget": b, "method": "typcover",
                         "seed": seed, "covered": cov if mult == 1 else 4, "seconds": 0.5, "deterministic": ""})
        rows.append({"pool": "p-small", "n": 40, "classes": 4, "multiple": mult, "budget": b,
                     "method": "brain-uniqueness", "seed": "", "covered": 2, "seconds": 0.25, "deterministic": True})
    pools = [{"pool": "p-small", "n": 40, "classes": 4, "embed_s": 1.0, "embedded": 40, "dataset_s": 0.1,
              "threads": 1, "load": 2.0}]
    page = summarise(rows, pools, "python -m benchmarks.bench_fiftyone --pools p-small")
    assert "    python -m benchmarks.bench_fiftyone --pools p-small" in page
    assert "| p-small | 4 | 4 | 3.5 (3 to 4) | 2 |" in page
    assert "| p-small | 4 | 8 | 4.0 (4 to 4) | 2 |" in page
    assert "| 1K | 87.5% | 50.0% |" in page and "| 2K | 100.0% | 50.0% |" in page
    assert "uniqueness: True" in page
