"""The contract every selection strategy keeps, and the result it returns.

A strategy is a small object: hyperparameters go into ``__init__`` (keyword arguments with
defaults), data and randomness go into :meth:`Strategy.select`::

    TypiClust(k_nn=20).select(embeddings, budget, labeled_mask, rng)

:meth:`Strategy.select` validates its input at the boundary (shape, dtype, budget, mask) and then
calls :meth:`Strategy._select`, which may trust its input. It checks the output too, so a strategy
that breaks the contract fails loudly instead of sending duplicates to annotators.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


class SelectionError(ValueError):
    """Bad input to a strategy (budget, shapes, mask); the message names the value found."""


@dataclass(frozen=True)
class Selection:
    """The chosen items, in rank order (rank 0 is the strategy's first pick).

    Attributes:
        indices: (budget,) int64, unique row indices into the embedding array, none of them labeled.
        scores: (budget,) float64, the strategy's score for each chosen item (higher = more
            preferred; e.g. typicality for TypiClust, coverage gain for ProbCover).
        groups: (budget,) int64, the estimated group (cluster) of each chosen item, -1 where the
            strategy forms no groups.
        n_groups: estimated number of classes/groups in the pool, or None.
        info: strategy-specific facts worth reporting (e.g. ProbCover's chosen delta).
    """

    indices: np.ndarray
    scores: np.ndarray
    groups: np.ndarray
    n_groups: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A ``np.random.Generator`` from a seed, a Generator (returned as is) or None (seed 0)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise SelectionError(f"rng must be a seed (int) or np.random.Generator, got {type(rng).__name__}")


def check_inputs(embeddings, budget, labeled_mask) -> tuple[np.ndarray, int, np.ndarray]:
    """Validate and convert the arguments of :meth:`Strategy.select`.

    Returns ``(x, budget, labeled_mask)`` with x a C-contiguous float32 (n, d) array (the caller's
    array itself when it already is one: strategies must never write into it), budget a Python int
    and labeled_mask a fresh (n,) bool array.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise SelectionError(f"embeddings must be a non-empty (n, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise SelectionError("embeddings contain NaN or inf")
    n = x.shape[0]
    if labeled_mask is None:
        mask = np.zeros(n, dtype=bool)
    else:
        mask = np.array(labeled_mask, dtype=bool, copy=True).reshape(-1)
        if mask.shape[0] != n:
            raise SelectionError(f"labeled_mask has {mask.shape[0]} entries for {n} embeddings")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise SelectionError(f"budget must be a whole number, got {budget!r}")
    budget = int(budget)
    n_free = int(n - mask.sum())
    if budget <= 0:
        raise SelectionError(f"budget must be positive, got {budget}")
    if budget > n_free:
        raise SelectionError(f"budget {budget} > {n_free} unlabeled items")
    return x, budget, mask


def check_labels(labels, labeled_mask: np.ndarray) -> np.ndarray | None:
    """(n,) int64 known labels of the labeled items, -1 elsewhere; None when no label is known.

    Labels given for unlabeled items are dropped (set to -1): a strategy never sees a label the
    annotators have not given, whatever the caller passes.
    """
    if labels is None:
        return None
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != labeled_mask.shape[0]:
        raise SelectionError(f"labels has {y.shape[0]} entries for {labeled_mask.shape[0]} embeddings")
    if not np.issubdtype(y.dtype, np.integer):
        raise SelectionError(f"labels must be integer class ids (-1 for unknown), got dtype {y.dtype}")
    y = np.where(labeled_mask, y.astype(np.int64), -1)
    return y if (y >= 0).any() else None


def check_selection(sel: Selection, budget: int, labeled_mask: np.ndarray, name: str) -> Selection:
    """Normalise dtypes and enforce the contract on a strategy's output."""
    idx = np.asarray(sel.indices, dtype=np.int64).reshape(-1)
    scores = np.asarray(sel.scores, dtype=np.float64).reshape(-1)
    groups = np.asarray(sel.groups, dtype=np.int64).reshape(-1)
    n = labeled_mask.shape[0]
    if idx.shape[0] != budget:
        raise AssertionError(f"strategy {name!r} returned {idx.shape[0]} indices for budget {budget}")
    if scores.shape[0] != budget or groups.shape[0] != budget:
        raise AssertionError(f"strategy {name!r} returned scores/groups of the wrong length")
    if idx.min() < 0 or idx.max() >= n:
        raise AssertionError(f"strategy {name!r} returned an index outside [0, {n})")
    if np.unique(idx).shape[0] != budget:
        raise AssertionError(f"strategy {name!r} returned duplicate indices")
    if labeled_mask[idx].any():
        raise AssertionError(f"strategy {name!r} returned an already-labeled index")
    return Selection(indices=idx, scores=scores, groups=groups, n_groups=sel.n_groups, info=dict(sel.info))


class Strategy(abc.ABC):
    """Base class of selection strategies. Subclasses set ``name`` and implement ``_select``."""

    name: ClassVar[str] = ""
    #: True when ``_select`` takes a ``labels`` keyword (the known classes of labeled items).
    uses_labels: ClassVar[bool] = False

    def select(
        self,
        embeddings: np.ndarray,
        budget: int,
        labeled_mask: np.ndarray | None = None,
        rng: np.random.Generator | int | None = None,
        labels: np.ndarray | None = None,
    ) -> Selection:
        """Choose ``budget`` unlabeled rows of ``embeddings``.

        Args:
            embeddings: (n, d) array, ideally L2-normalised float32. Never modified.
            budget: how many items to choose, 1 <= budget <= number of unlabeled items.
            labeled_mask: (n,) bool, True for already-labeled items (never chosen; they count
                towards coverage). None means nothing is labeled.
            rng: a ``np.random.Generator`` or an int seed; the same state gives the same result.
            labels: optional (n,) int class ids of the labeled items (-1 unknown; entries of unlabeled
                items are ignored). Strategies with ``uses_labels`` balance across these true classes;
                the others ignore them.
        """
        x, budget, mask = check_inputs(embeddings, budget, labeled_mask)
        y = check_labels(labels, mask)
        if self.uses_labels and y is not None:
            sel = self._select(x, budget, mask, as_generator(rng), labels=y)
        else:
            sel = self._select(x, budget, mask, as_generator(rng))
        return check_selection(sel, budget, mask, self.name)

    @abc.abstractmethod
    def _select(self, x: np.ndarray, budget: int, labeled_mask: np.ndarray,
                rng: np.random.Generator) -> Selection:
        """Inner selection on validated input: x (n, d) float32 C-contiguous (read only)."""

    def get_params(self) -> dict[str, Any]:
        """The constructor's hyperparameters (public attributes), for reports."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
