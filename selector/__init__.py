"""selector: pick which images to label.

>>> from selector import Selector
>>> result = Selector(strategy="balanced", seed=0, cache_dir=".selector-cache").fit("images/").select(100)
>>> result.to_csv("selection.csv")
"""
from selector.strategies import STRATEGIES, Selection, get_strategy

from .api import Selector, SelectionResult, select_embeddings
from .data import Pool, PoolError, load_pool

__version__ = "0.1.0"


def embed(pool, encoder, device: str = "auto", cache_dir=None):
    """Embed ``pool`` (a folder, .npz or :class:`Pool`) with an encoder checkpoint:
    (n, dim) float32, L2-normalised."""
    return Selector(encoder=encoder, device=device, cache_dir=cache_dir).fit(pool).embeddings_


__all__ = ["STRATEGIES", "Pool", "PoolError", "Selection", "SelectionResult", "Selector", "embed",
           "get_strategy", "load_pool", "select_embeddings", "__version__"]
