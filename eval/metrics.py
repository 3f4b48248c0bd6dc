"""Metrics of a selection and of the classifier retrained on it. Pure functions of label arrays.

Two families:

* quality of the retrained classifier on the held-out test split: :func:`accuracy`,
  :func:`balanced_accuracy`, :func:`per_class_accuracy`, :func:`balancedness_pv`;
* class balance of the chosen labels (what the annotators would see): :func:`classes_covered`,
  :func:`normalised_entropy`, :func:`imbalance_ratio`, with the random-selection references
  :func:`expected_random_coverage` and :func:`coupon_collector_bound`.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

#: Default bandwidth of :func:`balancedness_pv` (accuracies as fractions in [0, 1]).
PV_SIGMA = 0.1


def _as_labels(y, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {y.shape}")
    return y


def accuracy(y_true, y_pred) -> float:
    """Fraction of positions where ``y_pred == y_true``; both (n,), n >= 1."""
    y_true, y_pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal, non-empty")
    return float(np.mean(y_true == y_pred))


def per_class_accuracy(y_true, y_pred, classes=None) -> np.ndarray:
    """Recall of each class: (C,) float64 in the order of ``classes`` (default: sorted labels
    present in ``y_true``). A class with no test item gets NaN."""
    y_true, y_pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    classes = np.unique(y_true) if classes is None else np.asarray(list(classes))
    out = np.full(len(classes), np.nan)
    for i, c in enumerate(classes):
        m = y_true == c
        if m.any():
            out[i] = float(np.mean(y_pred[m] == c))
    return out


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    if np.asarray(y_true).size == 0:
        raise ValueError("balanced_accuracy of an empty test set")
    return float(np.mean(per_class_accuracy(y_true, y_pred)))


def classes_covered(chosen_labels) -> int:
    """Number of distinct classes among the chosen items' labels."""
    return int(np.unique(_as_labels(chosen_labels, "chosen_labels")).size)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def expected_random_coverage(class_counts, budget: int) -> float:
    """Expected number of classes seen when ``budget`` items are drawn uniformly without
    replacement from a pool with the given per-class counts.

    ``E[covered] = sum_c 1 - C(n - n_c, b) / C(n, b)`` (class c is missed only if all b draws fall
    in the other n - n_c items), with the binomial ratio computed in log space so that pools of
    millions of items do not overflow. ``C(n - n_c, b) = 0`` when ``b > n - n_c``.

    Args:
        class_counts: (C,) non-negative ints, the pool's items per class.
        budget: number of draws b, 0 <= b <= n.
    """
    counts = np.asarray(class_counts, dtype=np.int64).reshape(-1)
    if (counts < 0).any():
        raise ValueError(f"class counts must be non-negative, got {counts.tolist()}")
    n, b = int(counts.sum()), int(budget)
    if not 0 <= b <= n:
        raise ValueError(f"budget must be in [0, {n}] (pool size), got {budget}")
    log_total = _log_comb(n, b)
    total = 0.0
    for nc in counts.tolist():
        if nc == 0:
            continue
        rest = n - nc
        p_miss = 0.0 if b > rest else math.exp(_log_comb(rest, b) - log_total)
        total += 1.0 - p_miss
    return total


def coupon_collector_bound(n_classes: int) -> float:
    """``K * H_K``: expected uniform draws (with replacement) from K equally likely classes until
    every class is seen (coupon collector; used as the random-labeling bound by Nozawa & Sato,
    2021, "Understanding Negative Samples in Instance Discriminative Self-supervised
    Representation Learning"). ``H_K = sum_{k=1..K} 1/k``; K = 10 gives 29.29."""
    k = int(n_classes)
    if k < 0:
        raise ValueError(f"number of classes must be >= 0, got {n_classes}")
    return float(k * sum(1.0 / i for i in range(1, k + 1)))


def label_counts(chosen_labels, classes) -> np.ndarray:
    """(C,) int64 counts of each of ``classes`` among ``chosen_labels``."""
    chosen = _as_labels(chosen_labels, "chosen_labels")
    classes = np.asarray(list(classes))
    return np.array([int(np.sum(chosen == c)) for c in classes], dtype=np.int64)


def normalised_entropy(chosen_labels, n_classes_true: int) -> float:
    """Shannon entropy of the chosen labels' class frequencies divided by ``log K_true``.

    1 means the chosen set is perfectly balanced over all K_true classes of the pool; missing
    classes lower it. ``K_true <= 1`` returns 1.0 if anything was chosen (a one-class pool is
    trivially balanced); an empty selection returns 0.0.
    """
    chosen = _as_labels(chosen_labels, "chosen_labels")
    k = int(n_classes_true)
    if k < 1:
        raise ValueError(f"n_classes_true must be >= 1, got {n_classes_true}")
    if chosen.size == 0:
        return 0.0
    if k == 1:
        return 1.0
    _, counts = np.unique(chosen, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(k))


def imbalance_ratio(chosen_labels, classes) -> float:
    """max count / min count of the chosen labels over ``classes`` (the pool's classes).

    Returns ``inf`` when one of ``classes`` was never chosen (min count 0): the selection gives the
    classifier nothing for that class, the worst imbalance there is. 1.0 is perfectly balanced.
    """
    counts = label_counts(chosen_labels, classes)
    if counts.size == 0:
        raise ValueError("imbalance_ratio needs at least one class")
    lo = counts.min()
    return math.inf if lo == 0 else float(counts.max() / lo)


def balancedness_pv(per_class_acc, sigma: float = PV_SIGMA) -> float:
    """Balancedness of a classifier over classes, after Kang et al., ICLR 2021 ("Exploring
    Balanced Feature Spaces for Representation Learning"):

        p(V) = 1/C^2 * sum_{i,j} exp(-|a_i - a_j|^2 / sigma)

    over per-class accuracies a_i (fractions in [0, 1]; NaNs, i.e. classes absent from the test
    split, are dropped). 1 when all classes are equally well recognised, towards 1/C when they
    differ by much more than sqrt(sigma). The default ``sigma = 0.1`` is our choice (not taken
    from the paper): a gap of 0.1 between two classes gives exp(-0.1) = 0.90, a gap of 0.5 gives
    exp(-2.5) = 0.08.
    """
    a = np.asarray(per_class_acc, dtype=np.float64).reshape(-1)
    a = a[~np.isnan(a)]
    if a.size == 0:
        raise ValueError("balancedness_pv needs at least one per-class accuracy")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    d = a[:, None] - a[None, :]  # C x C over classes, not over the pool
    return float(np.exp(-(d * d) / sigma).sum() / a.size ** 2)


def summarise_selection(chosen_labels, pool_labels, budget: int | None = None) -> dict:
    """The class-balance metrics of one selection as a dict (used by the evaluation loop).

    Args:
        chosen_labels: (b,) labels of all labeled items (cumulative over rounds).
        pool_labels: (n,) labels of the whole pool (defines K_true and the random reference).
        budget: number of labeled items for the random reference; default ``len(chosen_labels)``.
    """
    chosen = _as_labels(chosen_labels, "chosen_labels")
    pool = _as_labels(pool_labels, "pool_labels")
    classes, counts = np.unique(pool, return_counts=True)
    b = chosen.size if budget is None else int(budget)
    return {
        "classes_covered": classes_covered(chosen),
        "expected_random_coverage": expected_random_coverage(counts, b),
        "coupon_collector_bound": coupon_collector_bound(len(classes)),
        "normalised_entropy": normalised_entropy(chosen, len(classes)),
        "imbalance_ratio": imbalance_ratio(chosen, classes),
    }


def format_counts(classes: Iterable, counts: Iterable) -> str:
    """``"0:3;1:0;2:5"``: a compact, self-describing per-class count string for tidy tables."""
    return ";".join(f"{int(c)}:{int(n)}" for c, n in zip(classes, counts))


def parse_counts(s: str) -> dict[int, int]:
    """Inverse of :func:`format_counts`."""
    if not isinstance(s, str) or not s:
        return {}
    out = {}
    for item in s.split(";"):
        c, n = item.split(":")
        out[int(c)] = int(n)
    return out
