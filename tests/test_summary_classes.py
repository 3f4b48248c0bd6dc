"""The class count in the summary: an interval, and plain words when it is not confident."""
from __future__ import annotations

import numpy as np
from selector.strategies.base import Selection

from selector.summary import class_count_text, strategy_line, summary_json


class Result:
    """What the summary reads of a :class:`selector.api.SelectionResult`."""

    strategy, seconds, info, paths, n_groups = "typcover", 1.0, {}, ["a", "b"], 2

    def __init__(self, info):
        self.selection = Selection(indices=np.array([0, 1]), scores=np.zeros(2), groups=np.array([0, 1]),
                                   n_groups=2, info=info)

    def group_counts(self):
        return {0: 1, 1: 1}

    def __len__(self):
        return 2


def test_confident_count_reads_as_an_estimate_with_its_interval():
    assert class_count_text({"estimate": 10, "low": 9, "high": 12, "confident": True}) == \
        "estimated classes: 10 (between 9 and 12)"


def test_unconfident_count_says_there_is_no_clear_structure():
    text = class_count_text({"estimate": 26, "low": 6, "high": 40, "confident": False})
    assert text.startswith("no clear class structure: between 6 and 40 groups")
    assert "estimated classes" not in text


def test_strategy_line_and_json_carry_the_count():
    classes = {"estimate": 7, "low": 3, "high": 20, "confident": False}
    r = Result({"classes": classes, "k_range": [3, 20]})
    assert "no clear class structure: between 3 and 20 groups" in strategy_line(r)
    out = summary_json([("strategy", strategy_line(r))], r, [], 1.0)
    assert out["classes"] == classes and out["estimated_classes"] == 2
    # a strategy without a count adds no classes key and keeps the old line
    r = Result({})
    assert "classes" not in summary_json([], r, [], 1.0)
    assert strategy_line(r) == "typcover (1.00 s), estimated classes: 2"
