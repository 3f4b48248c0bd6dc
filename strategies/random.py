"""Uniform random selection: the baseline every strategy must beat."""
from __future__ import annotations

import numpy as np

from .base import Selection, Strategy
from .registry import register


@register("random")
class RandomSelection(Strategy):
    """Draw ``budget`` unlabeled items uniformly without replacement.

    Draws about K*H_K items to see all K classes of a balanced pool (coupon collector; Nozawa &
    Sato, 2021), and mirrors the pool's imbalance on a long-tailed one.
    """

    PARAMS: dict = {}  # no hyperparameters

    def _select(self, x, budget, labeled_mask, rng):
        free = np.flatnonzero(~labeled_mask)
        idx = rng.choice(free, size=budget, replace=False)
        return Selection(indices=idx, scores=np.zeros(budget), groups=np.full(budget, -1))
