"""The contract every selection strategy keeps, and the result it returns.

A strategy is a small object: hyperparameters go into ``__init__`` (keyword arguments with
defaults), data and randomness go into :meth:`Strategy.select`::

    TypiClust(k_nn=20).select(embeddings, budget, labeled_mask, rng)

:meth:`Strategy.select` validates its input at the boundary (shape, dtype, budget, mask) and then
calls :meth:`Strategy._select`, which may trust its input. It checks the output too, so a strategy
that breaks the contract fails loudly instead of sending duplicates to annotators.

Every hyperparameter is declared in the class's :attr:`Strategy.PARAMS` table, ``name -> (type, low,
high)``: :func:`check_param` refuses a value of the wrong type or outside the range with one line naming
it, before any work (``get_strategy``, the ``Selector`` and ``--param`` through
:func:`selector.strategies.registry.check_params`, and :meth:`Strategy.select` for a strategy built
directly).
"""
from __future__ import annotations

import abc
import math
import numbers
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


class SelectionError(ValueError):
    """Bad input to a strategy (budget, shapes, mask); the message names the value found."""


#: The largest count a parameter may hold: faiss and numpy take counts (iterations, points per centroid)
#: as C ints, so a larger one would fail inside them.
MAX_COUNT = 2**31 - 1

#: The most k-means iterations a parameter may ask for: k-means converges in tens (faiss' default is 25,
#: the strategies' 20), so more is a typing slip that would only burn time.
MAX_ITER = 10_000


@dataclass(frozen=True)
class Open:
    """An exclusive bound in a :attr:`Strategy.PARAMS` entry: ``(float, 0.0, Open(1.0))`` is [0, 1)."""

    value: float


#: A parameter's declaration: (type, low, high). The type is ``int``, ``float`` or ``bool``, optionally
#: ``| None``; low and high bound a number (inclusive unless :class:`Open`; None: unbounded).
ParamSpec = tuple[Any, Any, Any]


def _is_bool(v: Any) -> bool:
    return type(v).__name__ in ("bool", "bool_")  # Python's and numpy's


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_param(key: str, value: Any, annotation: Any, low: Any = None, high: Any = None) -> None:
    """Raise ValueError naming ``key`` when ``value`` does not fit the type ``annotation`` (``int``,
    ``float``, ``bool``, each optionally ``| None``: a whole number, a finite number, True/False) or lies
    outside [``low``, ``high``] (an :class:`Open` bound excludes its value). Other types are left to the
    constructor."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = set(typing.get_args(annotation))
    else:
        kinds = {annotation}
    optional = type(None) in kinds
    kinds.discard(type(None))
    if value is None and optional:
        return
    if kinds == {bool}:
        if not _is_bool(value):
            raise ValueError(f"{key} must be True, False{' or None' if optional else ''}, got {value!r}")
        return
    if kinds == {int}:
        if _is_bool(value) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{key} must be a whole number{' or None' if optional else ''}, got {value!r}")
    elif kinds in ({float}, {int, float}):
        if _is_bool(value) or not isinstance(value, numbers.Real):
            raise ValueError(f"{key} must be a number{' or None' if optional else ''}, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value!r}")
    else:
        return
    lo = low.value if isinstance(low, Open) else low
    hi = high.value if isinstance(high, Open) else high
    too_low = lo is not None and (value < lo or (isinstance(low, Open) and value == lo))
    too_high = hi is not None and (value > hi or (isinstance(high, Open) and value == hi))
    if not (too_low or too_high):
        return
    if lo is not None and hi is not None and hi != MAX_COUNT:  # a real interval: say it whole
        left, right = "(" if isinstance(low, Open) else "[", ")" if isinstance(high, Open) else "]"
        what = f"in {left}{_num(lo)}, {_num(hi)}{right}"
    elif too_low:
        what = f"{'above' if isinstance(low, Open) else 'at least'} {_num(lo)}"
    else:
        what = f"{'below' if isinstance(high, Open) else 'at most'} {_num(hi)}"
    raise ValueError(f"{key} must be {what}, got {value!r}")


def check_gpu(key: str, value: Any) -> None:
    """``use_gpu=True`` asks for a GPU: refused in one line, before any work, where faiss sees none."""
    if _is_bool(value) and bool(value):
        from selector.cluster import gpu_wanted

        try:
            gpu_wanted(True)
        except RuntimeError:
            raise ValueError(f"{key}=True but faiss sees no GPU (faiss-gpu is not installed or no GPU is "
                             f"visible); leave {key} out to use a GPU only where there is one") from None


def check_declared(cls: type, params: dict[str, Any]) -> None:
    """Check the entries of ``params`` that ``cls.PARAMS`` declares (see :func:`check_param`); a
    ``use_gpu=True`` also needs a GPU that faiss sees (:func:`check_gpu`)."""
    for key, value in params.items():
        if key in cls.PARAMS:
            kind, low, high = cls.PARAMS[key]
            check_param(key, value, kind, low, high)
            if key == "use_gpu":
                check_gpu(key, value)


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
    #: Every constructor parameter: name -> (type, low, high), see :data:`ParamSpec` and :func:`check_param`.
    PARAMS: ClassVar[dict[str, ParamSpec]] = {}

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
        check_declared(type(self), {k: getattr(self, k) for k in self.PARAMS if hasattr(self, k)})
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
