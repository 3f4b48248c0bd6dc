"""Retrain a classifier on the chosen labels only, on a frozen embedding, and predict the test split.

Every retrainer has the signature ``f(train_emb, train_y, test_emb, *, seed=0) -> pred``:
train_emb (b, d) float, train_y (b,) int labels of the chosen items, test_emb (m, d) float;
returns (m,) int64 predicted labels (always labels seen in ``train_y``). When only one class was
chosen every retrainer predicts that class.

:data:`RETRAINERS` maps a name to such a function. It is the hook for more expensive retrainers
(e.g. fine-tuning the encoder on the chosen images): register a function with the same signature,
``RETRAINERS["finetune"] = my_finetune``, where the function may close over the images and the
encoder it needs.
"""
from __future__ import annotations

import logging
import warnings
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

Retrainer = Callable[..., np.ndarray]


def _check(train_emb, train_y, test_emb) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xtr = np.ascontiguousarray(train_emb, dtype=np.float32)
    xte = np.ascontiguousarray(test_emb, dtype=np.float32)
    ytr = np.asarray(train_y).reshape(-1)
    if xtr.ndim != 2 or xte.ndim != 2 or xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"train_emb {xtr.shape} and test_emb {xte.shape} must be (n, d) with equal d")
    if xtr.shape[0] == 0 or xtr.shape[0] != ytr.shape[0]:
        raise ValueError(f"need at least one training item and one label per row: "
                         f"train_emb {xtr.shape}, train_y {ytr.shape}")
    if not np.issubdtype(ytr.dtype, np.integer):
        raise ValueError(f"train_y must be integer labels, got dtype {ytr.dtype}")
    return xtr, ytr.astype(np.int64), xte


def _single_class(ytr: np.ndarray, n_test: int) -> np.ndarray | None:
    first = ytr[0]
    if (ytr == first).all():
        return np.full(n_test, first, dtype=np.int64)
    return None


def linear_probe(train_emb, train_y, test_emb, *, seed: int = 0, C: float = 1.0,
                 max_iter: int = 2000) -> np.ndarray:
    """Multinomial logistic regression (scikit-learn, L-BFGS) on the frozen embedding.

    Features are centred on the training mean and divided by one scalar, the training RMS of the
    centred features per coordinate, so that the L2 penalty ``C`` means the same thing for
    L2-normalised embeddings of any dimension. (One scalar, not a per-feature standardisation,
    which would be noisy with ten labels.) Deterministic: L-BFGS has no randomness; ``seed`` is
    passed to scikit-learn for completeness.
    """
    xtr, ytr, xte = _check(train_emb, train_y, test_emb)
    single = _single_class(ytr, xte.shape[0])
    if single is not None:
        return single
    from sklearn.linear_model import LogisticRegression

    mu = xtr.mean(axis=0, dtype=np.float64)
    xc = xtr - mu
    scale = float(np.sqrt(np.mean(xc.astype(np.float64) ** 2)))
    scale = scale if scale > 0 else 1.0
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on tiny, separable label sets
        clf.fit(xc / scale, ytr)
    return clf.predict((xte - mu) / scale).astype(np.int64)


def knn_vote(neighbor_labels: np.ndarray, classes: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted vote over neighbours given nearest first.

    Args:
        neighbor_labels: (m, k) labels of each test item's k nearest training items, nearest first.
        classes: (C,) sorted label values that can appear.
        weights: (m, k) non-negative vote weights; None means one vote each (majority vote).
    Returns:
        (m,) int64: the label with the largest total weight; exact ties go to the tied class whose
        nearest member ranks first (so k = 1, or uniform weights with a tie, fall back to the
        nearest neighbour).
    """
    m, k = neighbor_labels.shape
    pos = np.searchsorted(classes, neighbor_labels)  # (m, k) class positions
    w = np.ones((m, k)) if weights is None else np.asarray(weights, dtype=np.float64)
    score = np.zeros((m, len(classes)), dtype=np.float64)
    first = np.full((m, len(classes)), k, dtype=np.int64)
    rows = np.arange(m)
    for r in range(k):
        np.add.at(score, (rows, pos[:, r]), w[:, r])
        np.minimum.at(first, (rows, pos[:, r]), r)
    best = score.max(axis=1, keepdims=True)
    tied = score >= best  # exact ties only
    first = np.where(tied, first, k + 1)
    return classes[np.argmin(first, axis=1)].astype(np.int64)


def knn_classifier(train_emb, train_y, test_emb, *, seed: int = 0, k: int = 20,
                   temperature: float | None = 0.07) -> np.ndarray:
    """k-nearest-neighbour vote with ``k = min(k, n_labeled)`` under cosine similarity (rows are
    L2-normalised here), neighbours found exactly with a FAISS inner-product index.

    Votes are weighted by ``exp(cos / temperature)`` as in the kNN monitor of Wu et al., CVPR 2018
    ("Unsupervised Feature Learning via Non-Parametric Instance Discrimination"; also DINO's kNN
    evaluation), with temperature 0.07. With only a few labels per class, a plain majority over 20
    neighbours is decided by class frequency among the labels rather than by proximity; the
    weighting keeps the nearest items decisive. ``temperature=None`` gives the plain majority vote.
    Deterministic; ``seed`` is unused.
    """
    xtr, ytr, xte = _check(train_emb, train_y, test_emb)
    single = _single_class(ytr, xte.shape[0])
    if single is not None:
        return single
    import faiss

    from selector.pixels import unit_rows as unit

    kk = int(min(k, xtr.shape[0]))
    index = faiss.IndexFlatIP(xtr.shape[1])
    index.add(unit(xtr))
    sim, nn = index.search(unit(xte), kk)  # (m, kk), most similar first
    weights = None if temperature is None else np.exp((sim.astype(np.float64) - 1.0) / temperature)
    return knn_vote(ytr[nn], np.unique(ytr), weights)


def loo_knn_predict(emb, y, *, k: int = 20, temperature: float | None = 0.07) -> np.ndarray:
    """Leave-one-out kNN predictions over one labeled set: each row voted by its ``k`` nearest
    *other* rows (cosine, exact FAISS inner-product search, weights as in :func:`knn_classifier`).

    Args:
        emb: (n, d) float embeddings, n >= 2.
        y: (n,) int labels.
    Returns (n,) int64 predictions. A row's own entry is dropped by index, not by similarity,
    so exact duplicates still vote for each other.
    """
    x, yy, _ = _check(emb, y, emb)
    if x.shape[0] < 2:
        raise ValueError(f"leave-one-out kNN needs at least 2 rows, got {x.shape[0]}")
    import faiss

    from selector.pixels import unit_rows

    x = unit_rows(x)
    kk = int(min(k, x.shape[0] - 1))
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sim, nn = index.search(x, kk + 1)
    own = nn == np.arange(x.shape[0])[:, None]
    # Drop each row's own entry (or, when ties pushed it out of the list, the last neighbour).
    drop = np.where(own.any(axis=1), own.argmax(axis=1), kk)
    keep = np.ones_like(own)
    keep[np.arange(x.shape[0]), drop] = False
    nn = nn[keep].reshape(x.shape[0], kk)
    sim = sim[keep].reshape(x.shape[0], kk)
    weights = None if temperature is None else np.exp((sim.astype(np.float64) - 1.0) / temperature)
    return knn_vote(yy[nn], np.unique(yy), weights)


#: Retrainer name -> function(train_emb, train_y, test_emb, *, seed=0) -> (m,) int64 predictions.
RETRAINERS: dict[str, Retrainer] = {
    "linear": linear_probe,
    "knn": knn_classifier,
}


def get_retrainer(name: str) -> Retrainer:
    """The retrainer registered under ``name`` in :data:`RETRAINERS`."""
    try:
        return RETRAINERS[name]
    except KeyError:
        raise ValueError(f"unknown retrainer {name!r}; choose from {', '.join(sorted(RETRAINERS))}") from None
