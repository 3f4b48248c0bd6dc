"""What a selection may choose, decided before any slow work: the labeled mask, the known labels,
byte-identical duplicates and the budget (:func:`plan_selection`), for the API and the command line alike.

:func:`labeled_mask` is the one place that turns labels in any form (a mask, indices, item ids, a
``{id: label}`` mapping, a labels file) into a mask over the pool and class ids.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from .formats import (
    LabelingConfig,
    Labels,
    SeenClasses,
    normalize_path,
    read_config,
    read_label_files,
    read_labels,
    side_path,
)

log = logging.getLogger(__name__)


@dataclass
class SelectionPlan:
    """What a selection may choose, decided before any slow work by :func:`plan_selection`.

    Attributes:
        budget: how many to choose (the asked budget, or fewer with ``allow_smaller``).
        excluded: (n,) bool, never chosen: labeled, sent out, or a byte-identical copy of another item.
        labels: (n,) int64 known classes of labeled items (-1 unknown), or None when none is known.
        n_labeled: items excluded as labeled, skipped or sent out (all that the labels name).
        n_duplicates: items excluded as copies of another.
        missing: entries of the labels that name no item.
        info: ``round`` (next labeling round), ``class_names`` (the classes of the last round's labeling
            config, then those labeled; :class:`selector.formats.SeenClasses` when no config was found),
            ``labeled_missing``, ``duplicates``, ``skipped``, ``pending``; copied to
            :attr:`SelectionResult.info`.
        n_skipped: of ``n_labeled``, Label Studio tasks every annotator skipped.
        n_pending: of ``n_labeled``, items sent out and not annotated yet (open tasks, ``exclude`` files).
    """

    budget: int
    excluded: np.ndarray
    labels: np.ndarray | None
    n_labeled: int
    n_duplicates: int
    missing: int
    info: dict[str, Any] = field(default_factory=dict)
    n_skipped: int = 0
    n_pending: int = 0

    @property
    def n_done(self) -> int:
        """Items excluded as labeled (their label known or not), neither skipped nor pending."""
        return self.n_labeled - self.n_skipped - self.n_pending


def plan_selection(budget: int, ids: Sequence[str], labeled: Any = None, *,
                   files: Sequence[str | os.PathLike] = (), exclude: Sequence[str | os.PathLike] = (),
                   root: Path | None = None, duplicate_mask: Callable[[np.ndarray], np.ndarray] | None = None,
                   allow_smaller: bool = False, where: str = "the pool", **read_kw) -> SelectionPlan:
    """The one place that decides the labeled mask, the duplicates and the budget, for
    :meth:`Selector.select`, ``selector select`` (pool and ``--embeddings``) alike.

    Args:
        budget: items asked for.
        ids: (n,) item ids of the pool or embedding rows.
        labeled: labels in any form :func:`labeled_mask` takes (None, a mask, indices, item ids, a
            {id: label} mapping, one labels file); not together with ``files``/``exclude``.
        files: labels files, e.g. one export per round; their union (see
            :func:`selector.formats.read_label_files`).
        exclude: files of items sent out but not labeled yet: excluded, not counted as labeled.
        root: the pool folder, to match absolute paths and URLs in labels files.
        duplicate_mask: ``Pool.duplicate_mask``: given the excluded mask, the copies to exclude too.
        allow_smaller: a budget above the free items takes them all (with a warning) instead of failing.
        where: names the pool in messages.
        **read_kw: passed to :func:`selector.formats.read_labels` (``skipped``, ``url_prefix``,
            ``document_root``).

    Raises:
        SelectionError: nothing is left to choose, or the budget exceeds the free items.
        ValueError: ``labeled`` together with ``files``/``exclude``, or a malformed mask.
        LabelFileError: an unreadable or contradictory labels file.
    """
    from selector.strategies import SelectionError

    files, exclude = list(files), list(exclude)
    info: dict[str, Any] = {"round": 1}
    read: Labels | None = None
    if files or exclude:
        if labeled is not None:
            raise ValueError("give labels either as labeled= or as files=/exclude=, not both")
        configs = _configs([*files, *exclude], read_kw.get("from_name"))
        if configs and read_kw.get("from_name") is None:  # the labels are in the control the config names
            read_kw["from_name"] = configs[-1].control
        read = labeled = read_label_files(files, exclude, root, **read_kw)
        info = {"round": max(read.rounds, default=0) + 1, "class_names": _carried_classes(configs, read)}
        if files and not exclude and read_kw.get("skipped", "seen") == "seen":
            _warn_uncovered(read)
    elif read_kw:
        raise ValueError(f"{', '.join(sorted(read_kw))} apply to labels files (files=, exclude=)")
    found = labeled_mask(labeled, ids, root)
    mask, y, missing = found.mask, found.labels, found.missing
    named = [*files, *exclude] or ([labeled] if isinstance(labeled, (str, os.PathLike)) else [])
    if named and not mask.any() and not missing:
        log.warning("labeled file%s %s list%s no images; nothing is excluded", "s" if len(named) > 1 else "",
                    ", ".join(map(str, named)), "" if len(named) > 1 else "s")
    if missing:
        log.warning("%d entries of %s name no item of the pool; ignored", missing,
                    ", ".join(map(str, named)) or "the labels")
    n_skipped, n_pending = ((_in_pool(read.skipped, ids, root), _in_pool(read.pending, ids, root))
                            if read is not None else (0, 0))
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
    info.update(labeled_missing=missing, duplicates=int(dup.sum()), skipped=n_skipped, pending=n_pending)
    return SelectionPlan(budget=int(budget), excluded=excluded, labels=y, n_labeled=int(mask.sum()),
                         n_duplicates=int(dup.sum()), missing=missing, info=info, n_skipped=n_skipped,
                         n_pending=n_pending)


def _configs(files: Sequence[str | os.PathLike], from_name: str | None) -> list[LabelingConfig]:
    """The labeling configs (:func:`selector.formats.read_config`) written beside the tasks files among
    ``files`` (``<stem>.config.xml``), in the order of ``files``."""
    found = (read_config(side_path(f, ".config.xml"), from_name) for f in files)
    return [c for c in found if c is not None]


def _carried_classes(configs: Sequence[LabelingConfig], read: Labels) -> list[str]:
    """The classes the next round offers: those of the labeling configs (in their order), then any other
    class labeled. Without a config, only the classes labeled so far (:class:`SeenClasses`: the writers
    warn that the config they build may miss classes)."""
    seen = {v for v in read.values() if v is not None}
    if not configs:
        return SeenClasses(_class_order(seen)) if seen else []
    classes: dict[str, None] = {}
    for c in configs:
        classes.update(dict.fromkeys(c.classes))
    return [*classes, *_class_order(seen - set(classes))]


def _warn_uncovered(read: Labels) -> None:
    """Warn when the labels files leave out tasks of a selection round (Label Studio's exports drop open
    tasks, its CSV and JSON-MIN exports skipped ones too): without ``exclude`` they may be chosen again."""
    gaps = read.uncovered()
    if not gaps:
        return
    parts = [f"{seen} of the {'' if exact else 'at least '}{sent} tasks of round {r}"
             for r, (seen, sent, exact) in gaps.items()]
    log.warning("the labels files list only %s: the others (open, or skipped in a CSV/JSON-MIN export) were "
                "left out of the export and may be chosen again; pass the round's tasks file with --exclude "
                "(or export every task)", "; ".join(parts))


def _in_pool(keys: set[str], ids: Sequence[str], root) -> int:
    """How many of the labels' ``keys`` name an item of ``ids`` (paths matched as :func:`labeled_mask` does)."""
    if not keys:
        return 0
    folder = root if root is not None and Path(root).is_dir() else None
    pool = {normalize_path(p, folder) for p in ids}
    return sum(normalize_path(k, folder) in pool for k in keys)


class LabeledMask(NamedTuple):
    """What labels say about a pool (:func:`labeled_mask`).

    Attributes:
        mask: (n,) bool, True for labeled items.
        y: (n,) int64, the index into ``class_names`` or -1 (unlabeled, or labeled with unknown label).
        class_names: the labels seen on matched items, sorted (numerically when all look like integers).
        missing: entries of the labels naming no item of the pool (for the caller to warn about).
    """

    mask: np.ndarray
    y: np.ndarray
    class_names: list[str]
    missing: int

    @property
    def labels(self) -> np.ndarray | None:
        """``y`` when at least one label is known, else None (what label-aware strategies take)."""
        return self.y if (self.y >= 0).any() else None


def labeled_mask(labeled: Any, ids: Sequence[str], root: str | os.PathLike | None = None) -> LabeledMask:
    """Match labels in any form to the items ``ids`` of a pool (or the rows of an embedding).

    Args:
        labeled: None (nothing labeled); a (n,) bool mask; an array of indices; item ids (matched like
            the paths of a labels file); a ``{id: label or None}`` mapping (as from
            :func:`selector.formats.read_labels`; None: labeled, label unknown); or the path of a labels
            file (.csv, .txt, .jsonl, Label Studio .json, CVAT .xml).
        ids: (n,) the pool's item ids, indexed like the embeddings.
        root: the pool folder, to match absolute paths and URLs (not used unless it is a folder).

    Returns:
        :class:`LabeledMask`; class ids index the sorted class names of a labels file or mapping. A mask
        or indices carry no label.

    Raises:
        ValueError: a mask of another shape, an index out of range, two pool ids naming the same file,
            or two entries with different labels naming the same file.
        LabelFileError: an unreadable labels file.
    """
    n = len(ids)
    folder = root if root is not None and Path(root).is_dir() else None
    if labeled is None:
        return _without_labels(np.zeros(n, dtype=bool))
    if isinstance(labeled, (str, os.PathLike)):
        labeled = read_labels(labeled, root=folder)
    if not isinstance(labeled, Mapping):
        arr = np.asarray(labeled)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ValueError(f"labeled mask has shape {arr.shape}, expected ({n},)")
            return _without_labels(arr.copy())
        if arr.size == 0:
            return _without_labels(np.zeros(n, dtype=bool))
        if np.issubdtype(arr.dtype, np.integer):
            if arr.min() < 0 or arr.max() >= n:
                raise ValueError(f"labeled index out of range [0, {n}): {arr.min()}..{arr.max()}")
            mask = np.zeros(n, dtype=bool)
            mask[arr] = True
            return _without_labels(mask)
        labeled = {str(p): None for p in arr.tolist()}
    return _match(labeled, ids, folder)


def _without_labels(mask: np.ndarray) -> LabeledMask:
    return LabeledMask(mask, np.full(len(mask), -1, dtype=np.int64), [], 0)


def _match(labels: Mapping[str, str | None], paths: Sequence[str], root: str | os.PathLike | None
           ) -> LabeledMask:
    """Match ``{path: label or None}`` to the pool ids ``paths`` (paths normalised on both sides)."""
    n = len(paths)
    where: dict[str, int] = {}
    for i, p in enumerate(paths):
        key = normalize_path(p, root)
        if key in where:
            raise ValueError(f"pool ids {paths[where[key]]!r} and {p!r} name the same file")
        where[key] = i
    found: dict[int, str | None] = {}
    seen_as: dict[int, str] = {}
    n_missing = 0
    for k, lab in labels.items():
        i = where.get(normalize_path(k, root))
        if i is None:
            n_missing += 1
            continue
        if i in found and found[i] != lab:
            raise ValueError(f"labels {seen_as[i]!r} -> {found[i]!r} and {k!r} -> {lab!r} name the same file")
        found[i] = lab
        seen_as[i] = k
    class_names = _class_order({lab for lab in found.values() if lab is not None})
    cid = {c: j for j, c in enumerate(class_names)}
    mask = np.zeros(n, dtype=bool)
    y = np.full(n, -1, dtype=np.int64)
    for i, lab in found.items():
        mask[i] = True
        if lab is not None:
            y[i] = cid[lab]
    if n_missing:
        log.debug("%d labeled entries are not in the pool", n_missing)
    return LabeledMask(mask, y, class_names, n_missing)


def _class_order(names: set[str]) -> list[str]:
    """Sorted class names; numerically when all look like integers ("2" before "10")."""
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)
