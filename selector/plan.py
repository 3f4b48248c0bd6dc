"""What a selection may choose, decided before any slow work: the labeled mask, the known labels,
byte-identical duplicates and the budget (:func:`plan_selection`), for the API and the command line alike.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class SelectionPlan:
    """What a selection may choose, decided before any slow work by :func:`plan_selection`.

    Attributes:
        budget: how many to choose (the asked budget, or fewer with ``allow_smaller``).
        excluded: (n,) bool, never chosen: labeled, sent out, or a byte-identical copy of another item.
        labels: (n,) int64 known classes of labeled items (-1 unknown), or None when none is known.
        n_labeled: items excluded as labeled or sent out.
        n_duplicates: items excluded as copies of another.
        missing: entries of the labels that name no item.
        info: ``round`` (next labeling round), ``class_names`` (from labels files), ``labeled_missing``,
            ``duplicates``; copied to :attr:`SelectionResult.info`.
    """

    budget: int
    excluded: np.ndarray
    labels: np.ndarray | None
    n_labeled: int
    n_duplicates: int
    missing: int
    info: dict[str, Any] = field(default_factory=dict)


def plan_selection(budget: int, ids: Sequence[str], labeled: Any = None, *,
                   files: Sequence[str | os.PathLike] = (), exclude: Sequence[str | os.PathLike] = (),
                   root: Path | None = None, duplicate_mask: Callable[[np.ndarray], np.ndarray] | None = None,
                   allow_smaller: bool = False, where: str = "the pool", **read_kw) -> SelectionPlan:
    """The one place that decides the labeled mask, the duplicates and the budget, for
    :meth:`Selector.select`, ``selector select`` (pool and ``--embeddings``) alike.

    Args:
        budget: items asked for.
        ids: (n,) item ids of the pool or embedding rows.
        labeled: labels in any form :meth:`Selector.labeled_mask` takes (None, a mask, indices, item
            ids, a {id: label} mapping, one labels file); not together with ``files``/``exclude``.
        files: labels files, e.g. one export per round; their union (see
            :func:`selector.labels.read_label_files`).
        exclude: files of items sent out but not labeled yet: excluded, not counted as labeled.
        root: the pool folder, to match absolute paths and URLs in labels files.
        duplicate_mask: ``Pool.duplicate_mask``: given the excluded mask, the copies to exclude too.
        allow_smaller: a budget above the free items takes them all (with a warning) instead of failing.
        where: names the pool in messages.
        **read_kw: passed to :func:`selector.labels.read_labels` (``skipped``, ``url_prefix``,
            ``document_root``).

    Raises:
        SelectionError: nothing is left to choose, or the budget exceeds the free items.
        ValueError: ``labeled`` together with ``files``/``exclude``, or a malformed mask.
        LabelFileError: an unreadable or contradictory labels file.
    """
    from selector.strategies import SelectionError

    files, exclude = list(files), list(exclude)
    info: dict[str, Any] = {"round": 1}
    if files or exclude:
        if labeled is not None:
            raise ValueError("give labels either as labeled= or as files=/exclude=, not both")
        from .labels import _class_order, last_round, read_label_files

        labeled = read_label_files(files, exclude, root, **read_kw)
        info = {"round": last_round([*files, *exclude]) + 1,
                "class_names": _class_order({v for v in labeled.values() if v is not None})}
    elif read_kw:
        raise ValueError(f"{', '.join(sorted(read_kw))} apply to labels files (files=, exclude=)")
    mask, y, missing = labeled_and_labels(labeled, ids, root)
    named = [*files, *exclude] or ([labeled] if isinstance(labeled, (str, os.PathLike)) else [])
    if named and not mask.any() and not missing:
        log.warning("labeled file%s %s list%s no images; nothing is excluded", "s" if len(named) > 1 else "",
                    ", ".join(map(str, named)), "" if len(named) > 1 else "s")
    if missing:
        log.warning("%d entries of %s name no item of the pool; ignored", missing,
                    ", ".join(map(str, named)) or "the labels")
    dup = duplicate_mask(mask) if duplicate_mask is not None else np.zeros(len(ids), dtype=bool)
    excluded = mask | dup
    n_free = int((~excluded).sum())
    if n_free == 0:
        raise SelectionError(f"every image in {where} is already labeled; nothing to choose")
    if budget > n_free:
        if not allow_smaller:
            raise SelectionError(f"budget {budget} > {n_free} unlabeled images in {where} "
                                 "(pass --allow-smaller to take them all)")
        log.warning("budget %d > %d unlabeled images in %s: taking all %d", budget, n_free, where, n_free)
        budget = n_free
    info.update(labeled_missing=missing, duplicates=int(dup.sum()))
    return SelectionPlan(budget=int(budget), excluded=excluded, labels=y, n_labeled=int(mask.sum()),
                         n_duplicates=int(dup.sum()), missing=missing, info=info)


def labeled_mask_for(labeled: Any, ids: Sequence[str], root: Path | None) -> tuple[np.ndarray, int]:
    """See :meth:`Selector.labeled_mask`; works on any list of item ids."""
    mask, _, missing = labeled_and_labels(labeled, ids, root)
    return mask, missing


def labeled_and_labels(labeled: Any, ids: Sequence[str], root: Path | None
                       ) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(mask (n,) bool, labels (n,) int64 class ids with -1 for unknown or None when no label is known,
    entries naming no pool item) from any form :meth:`Selector.labeled_mask` takes. Class ids index the
    sorted class names of a labels file or mapping."""
    n = len(ids)
    if labeled is None:
        return np.zeros(n, dtype=bool), None, 0
    if isinstance(labeled, (str, os.PathLike)):
        from .labels import read_labels

        labeled = read_labels(labeled, root=root if root is not None and Path(root).is_dir() else None)
    if isinstance(labeled, Mapping):
        from .labels import labeled_mask_from

        mask, y, _, missing = labeled_mask_from(labeled, ids, root if root is not None and Path(root).is_dir() else None)
        return mask, (y if (y >= 0).any() else None), missing
    mask, missing = _mask_from_array(labeled, ids, root)
    return mask, None, missing


def _mask_from_array(labeled: Any, ids: Sequence[str], root: Path | None) -> tuple[np.ndarray, int]:
    n = len(ids)
    arr = np.asarray(labeled)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"labeled mask has shape {arr.shape}, expected ({n},)")
        return arr.copy(), 0
    if arr.size == 0:
        return np.zeros(n, dtype=bool), 0
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() >= n:
            raise ValueError(f"labeled index out of range [0, {n}): {arr.min()}..{arr.max()}")
        mask = np.zeros(n, dtype=bool)
        mask[arr] = True
        return mask, 0
    return labeled_mask_for({str(p): None for p in arr.tolist()}, ids, root)
