"""Selection strategies, one per module, found by name in :data:`STRATEGIES`.

>>> from selector.strategies import get_strategy
>>> sel = get_strategy("balanced").select(embeddings, budget=100, labeled_mask=None, rng=0)
"""
# Importing a module registers its strategy.
from . import (  # noqa: E402,F401
    balanced,
    kcenter,
    probcover,
    random,  # noqa: E402,F401
    stratified,
    typcover,
    typiclust,
)
from .base import Selection, SelectionError, Strategy, as_generator
from .registry import STRATEGIES, get_strategy, register

__all__ = ["STRATEGIES", "Selection", "SelectionError", "Strategy", "as_generator", "get_strategy", "register"]
