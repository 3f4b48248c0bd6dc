"""Selection strategies, one per module, found by name in :data:`STRATEGIES`.

>>> from selector.strategies import get_strategy
>>> sel = get_strategy("balanced").select(embeddings, budget=100, labeled_mask=None, rng=0)
"""
from .base import Selection, SelectionError, Strategy, as_generator
from .registry import STRATEGIES, get_strategy, register

# Importing a module registers its strategy.
from . import random  # noqa: E402,F401
from . import balanced, kcenter, probcover, stratified, typcover, typiclust  # noqa: E402,F401

__all__ = ["STRATEGIES", "Selection", "SelectionError", "Strategy", "as_generator", "get_strategy", "register"]
