"""Build evaluation pools from labeled data, as index arrays.

A *pool* is the set of unlabeled items a strategy chooses from. The evaluation builds it from a
labeled dataset so that the class mix is known: balanced, long-tailed (CIFAR-10-LT profile, Cao et
al., NeurIPS 2019, "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss") or a
subset of the classes. Every builder is pure: it reads only ``y`` (the labels) and the generator it
is given, and returns sorted int64 indices into ``y``.

>>> rng = np.random.default_rng(0)
>>> pool = parse_pool_spec("long-tail:100")(y, rng)     # indices into y
"""
from __future__ import annotations

from typing import Callable

import numpy as np

PoolBuilder = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty 1-d array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def _take(members_by_class: list[np.ndarray], counts: list[int], rng: np.random.Generator) -> np.ndarray:
    """Draw ``counts[i]`` items without replacement from ``members_by_class[i]``; sorted indices."""
    parts = [rng.choice(m, size=c, replace=False) if c < m.shape[0] else m
             for m, c in zip(members_by_class, counts)]
    return np.sort(np.concatenate(parts)).astype(np.int64)


def balanced_pool(y, n_per_class: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """``n_per_class`` items of every class, drawn uniformly without replacement.

    Args:
        y: (n,) int labels.
        n_per_class: items per class; None means the size of the smallest class.
        rng: numpy Generator (required for reproducibility; None means seed 0).
    Returns:
        (C * n_per_class,) int64 sorted indices into ``y``.
    """
    y = _labels(y)
    rng = rng if rng is not None else np.random.default_rng(0)
    classes, counts = np.unique(y, return_counts=True)
    n = int(counts.min()) if n_per_class is None else int(n_per_class)
    if n <= 0:
        raise ValueError(f"n_per_class must be positive, got {n}")
    if n > counts.min():
        small = classes[np.argmin(counts)]
        raise ValueError(f"n_per_class={n} but class {small} has only {counts.min()} items")
    members = [np.flatnonzero(y == c) for c in classes]
    return _take(members, [n] * len(classes), rng)


def long_tail_counts(n_max: int, ratio: float, n_classes: int) -> np.ndarray:
    """Per-rank class sizes of the exponential profile ``n_r = int(n_max * ratio^(-r/(C-1)))``.

    This is the CIFAR-10-LT profile (Cao et al., 2019): rank 0 (the head) has ``n_max`` items, rank
    C-1 (the tail) ``int(n_max / ratio)``, so head/tail equals ``ratio`` up to the truncation.
    Returns (C,) int64.
    """
    if ratio < 1:
        raise ValueError(f"imbalance ratio must be >= 1, got {ratio}")
    if n_classes == 1:
        return np.array([int(n_max)], dtype=np.int64)
    r = np.arange(n_classes, dtype=np.float64)
    return np.floor(n_max * ratio ** (-r / (n_classes - 1)) + 1e-9).astype(np.int64)


def long_tail_pool(y, ratio: float, rng: np.random.Generator | None = None, n_max: int | None = None,
                   shuffle_classes: bool = False) -> np.ndarray:
    """A long-tailed pool with head/tail size ratio ``ratio`` (exponential profile, CIFAR-10-LT).

    Classes are ranked by label (smallest label = head) or, with ``shuffle_classes``, by a seeded
    permutation drawn from ``rng``. The class at rank r keeps ``int(n_max * ratio^(-r/(C-1)))``
    items, drawn uniformly without replacement.

    Args:
        y: (n,) int labels.
        ratio: head size / tail size (>= 1), e.g. 100 for CIFAR-10-LT-100.
        rng: numpy Generator.
        n_max: head class size; None means the largest value every class can supply
            (min over ranks of ``count_r * ratio^(r/(C-1))``), e.g. 5,000 on CIFAR-10.
        shuffle_classes: rank classes by a random permutation instead of by label.
    Returns:
        sorted int64 indices into ``y``.
    """
    y = _labels(y)
    rng = rng if rng is not None else np.random.default_rng(0)
    classes, counts = np.unique(y, return_counts=True)
    order = rng.permutation(len(classes)) if shuffle_classes else np.arange(len(classes))
    ranked_counts = counts[order]
    C = len(classes)
    if n_max is None:
        if C == 1:
            n_max = int(counts[0])
        else:
            r = np.arange(C, dtype=np.float64)
            n_max = int(np.floor(np.min(ranked_counts * float(ratio) ** (r / (C - 1))) + 1e-9))
    sizes = long_tail_counts(int(n_max), float(ratio), C)
    if sizes[-1] < 1:
        raise ValueError(f"long tail n_max={n_max}, ratio={ratio} leaves the tail class empty")
    too_big = sizes > ranked_counts
    if too_big.any():
        r = int(np.flatnonzero(too_big)[0])
        raise ValueError(f"long tail needs {sizes[r]} items of class {classes[order[r]]} (rank {r}) "
                         f"but it has {ranked_counts[r]}; lower n_max")
    members = [np.flatnonzero(y == classes[o]) for o in order]
    return _take(members, sizes.tolist(), rng)


def subset_pool(y, classes, rng: np.random.Generator | None = None,
                n_per_class: int | None = None) -> np.ndarray:
    """Every item of the given classes (or ``n_per_class`` of each, drawn with ``rng``).

    Returns sorted int64 indices into ``y``.
    """
    y = _labels(y)
    rng = rng if rng is not None else np.random.default_rng(0)
    wanted = np.unique(np.asarray(list(classes), dtype=np.int64))
    if wanted.size == 0:
        raise ValueError("subset_pool needs at least one class")
    present = np.unique(y)
    missing = np.setdiff1d(wanted, present)
    if missing.size:
        raise ValueError(f"classes {missing.tolist()} are not in the labels (present: {present.tolist()})")
    members = [np.flatnonzero(y == c) for c in wanted]
    if n_per_class is None:
        return np.sort(np.concatenate(members)).astype(np.int64)
    smallest = min(m.shape[0] for m in members)
    if not 0 < n_per_class <= smallest:
        raise ValueError(f"n_per_class must be in [1, {smallest}], got {n_per_class}")
    return _take(members, [int(n_per_class)] * len(members), rng)


def all_pool(y, rng: np.random.Generator | None = None) -> np.ndarray:
    """Every item: ``arange(len(y))``."""
    return np.arange(_labels(y).shape[0], dtype=np.int64)


def parse_pool_spec(spec: str) -> PoolBuilder:
    """Turn a pool spec string into a builder ``f(y, rng) -> indices``.

    Specs:
        ``all``                      every item as it is
        ``balanced`` / ``balanced:N``  N per class (default: smallest class size)
        ``long-tail:R`` / ``long-tail:R:shuffled``  head/tail ratio R, classes ranked by label or
                                     by a seeded permutation
        ``subset:0,1,2``             only these classes (all their items)
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"pool spec must be a non-empty string, got {spec!r}")
    parts = spec.strip().split(":")
    kind = parts[0].lower()
    try:
        if kind == "all" and len(parts) == 1:
            return lambda y, rng: all_pool(y, rng)
        if kind == "balanced" and len(parts) <= 2:
            n = int(parts[1]) if len(parts) == 2 else None
            return lambda y, rng: balanced_pool(y, n, rng)
        if kind in ("long-tail", "longtail", "lt") and len(parts) in (2, 3):
            ratio = float(parts[1])
            if len(parts) == 3 and parts[2].lower() not in ("shuffled", "label"):
                raise ValueError(f"third field must be 'shuffled' or 'label', got {parts[2]!r}")
            shuffled = len(parts) == 3 and parts[2].lower() == "shuffled"
            return lambda y, rng: long_tail_pool(y, ratio, rng, shuffle_classes=shuffled)
        if kind == "subset" and len(parts) == 2:
            classes = [int(c) for c in parts[1].split(",") if c.strip()]
            if not classes:
                raise ValueError("no classes given")
            return lambda y, rng: subset_pool(y, classes, rng)
    except ValueError as e:
        raise ValueError(f"bad pool spec {spec!r}: {e}") from None
    raise ValueError(f"bad pool spec {spec!r}; expected 'all', 'balanced[:N]', "
                     f"'long-tail:RATIO[:shuffled]' or 'subset:C1,C2,...'")


def train_test_split_balanced(y, n_test_per_class: int,
                              rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``n_test_per_class`` items of every class as a balanced test split.

    Returns ``(train_idx, test_idx)``: sorted int64 indices into ``y``, disjoint, covering ``y``.
    Every class must keep at least one training item.
    """
    y = _labels(y)
    rng = rng if rng is not None else np.random.default_rng(0)
    n_test = int(n_test_per_class)
    if n_test <= 0:
        raise ValueError(f"n_test_per_class must be positive, got {n_test_per_class}")
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() <= n_test:
        small = classes[np.argmin(counts)]
        raise ValueError(f"class {small} has {counts.min()} items; cannot hold out {n_test} "
                         f"and keep one for training")
    test = _take([np.flatnonzero(y == c) for c in classes], [n_test] * len(classes), rng)
    is_test = np.zeros(y.shape[0], dtype=bool)
    is_test[test] = True
    return np.flatnonzero(~is_test).astype(np.int64), test
