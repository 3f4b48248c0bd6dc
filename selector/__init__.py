"""selector: pick which images to label.

>>> from selector import Selector
>>> result = Selector(strategy="balanced", seed=0, cache_dir=".selector-cache").fit("images/").select(100)
>>> result.to_csv("selection.csv")

The names below load on first use (module ``__getattr__``), so ``import selector.strategies`` or
``selector --version`` does not import torch, faiss or kornia.
"""
from __future__ import annotations

import importlib

from ._version import __version__

# public name -> module that defines it
_LAZY = {
    "STRATEGIES": "selector.strategies",
    "Selection": "selector.strategies",
    "get_strategy": "selector.strategies",
    "Selector": "selector.api",
    "SelectionResult": "selector.api",
    "select_embeddings": "selector.api",
    "Pool": "selector.pool",
    "PoolError": "selector.pool",
    "load_pool": "selector.pool",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'selector' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def embed(pool, encoder, device: str = "auto", cache_dir=None):
    """Embed ``pool`` (a folder, .npz or :class:`Pool`) with an encoder checkpoint:
    (n, dim) float32, L2-normalised."""
    from .api import Selector

    return Selector(encoder=encoder, device=device, cache_dir=cache_dir).fit(pool).embeddings_


__all__ = ["STRATEGIES", "Pool", "PoolError", "Selection", "SelectionResult", "Selector", "embed",
           "get_strategy", "load_pool", "select_embeddings", "__version__"]
