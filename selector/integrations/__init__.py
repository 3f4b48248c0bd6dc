"""Selector inside the tools labeling teams already use (each module an optional extra, imported on use)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def class_count_confident(result: Any) -> bool:
    """Whether a selection's class count is confident: the one place the integrations read it (Label Studio's
    pre-selected group, FiftyOne's ``info``).

    Read from the result's ``classes`` object (``{"estimate", "low", "high", "confident"}``) in
    ``result.info`` or ``result.selection.info``, else a bare ``confident`` there; only a literal True counts,
    anything missing or of another type is not confident.
    """
    sources = [getattr(result, "info", None), getattr(getattr(result, "selection", None), "info", None)]
    for info in (s for s in sources if isinstance(s, Mapping)):
        classes = info.get("classes")
        value = classes.get("confident") if isinstance(classes, Mapping) else info.get("confident")
        if value is not None:
            return isinstance(value, (bool, np.bool_)) and bool(value)
    return False
