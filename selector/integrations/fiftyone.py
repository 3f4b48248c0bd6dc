"""Select on a FiftyOne dataset (the optional ``fiftyone`` extra: ``pip install 'selector[fiftyone]'``).

>>> import fiftyone as fo
>>> from selector.integrations import fiftyone as sfo
>>> view = sfo.select(fo.load_dataset("pool"), 50, labeled_field="ground_truth")
>>> view.values("filepath")                      # the 50 chosen files, in rank order

:func:`select` embeds the samples' files with selector (the default encoder and the content-keyed cache, as
``Selector().fit(folder)``; the files may lie in any folders) or reads an embedding field the dataset already has
(FiftyOne Brain's, a model zoo's), runs a strategy, and writes back to the collection:

* ``selector_rank`` (1 = first pick) and ``selector_group`` (the estimated group, -1 where the strategy forms
  none) on the chosen samples; both are cleared (None) on the collection's other samples;
* the tag (``selector`` by default) on the chosen samples, removed from the others of the collection;
* ``dataset.info["selector"]``: strategy, seed, budget, estimated class count, where the embedding came from.

Each call so replaces the previous selection. Labeled samples are never chosen: those whose ``labeled_field`` is
set (not None, not False) or that carry ``labeled_tag``; the classes of a ``Classification`` label field are passed
to the strategy as known labels (the ``balanced`` strategy balances across them). Samples that share one file, or
files with the same bytes, are chosen at most once, as in a pool folder.

FiftyOne is imported inside the functions, so ``import selector`` and the command line never load it.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import class_count_confident

log = logging.getLogger(__name__)

RANK_FIELD = "selector_rank"
GROUP_FIELD = "selector_group"
INFO_KEY = "selector"

#: Threads reading files for their content digests (I/O bound, as when a folder is scanned).
DIGEST_THREADS = 8


def _import_fiftyone():
    try:
        import fiftyone
    except ImportError as e:
        raise ImportError("selector.integrations.fiftyone needs FiftyOne: pip install 'selector[fiftyone]'") from e
    return fiftyone


def select(samples, budget: int, *, embeddings_field: str | None = None, labeled_field: str | None = None,
           labeled_tag: str | None = None, strategy: Any = "typcover", strategy_params: Mapping[str, Any] | None = None,
           seed: int = 0, tag: str = "selector", cache_dir: str | os.PathLike | None | bool = None,
           normalize: bool = True, allow_smaller: bool = False, **selector_kw):
    """Choose ``budget`` samples of a FiftyOne dataset or view to label next; see the module docstring.

    Args:
        samples: a ``fiftyone`` Dataset or DatasetView (only its samples are read, written and chosen from).
        budget: how many samples to choose.
        embeddings_field: a sample field holding one vector per sample (e.g. from ``compute_embeddings`` or
            FiftyOne Brain); None: selector embeds the samples' files.
        labeled_field: a field that is set (not None, not False) on labeled samples, e.g. ``ground_truth``.
        labeled_tag: a tag that marks labeled samples.
        strategy, strategy_params: a registered strategy name (``selector.STRATEGIES``) and its keywords, or a
            Strategy instance.
        seed: the same seed gives the same selection.
        tag: put on the chosen samples (and taken off the collection's others).
        cache_dir: the embedding cache (None: the default, ``~/.cache/selector``, as the command line; False:
            no disk cache).
        normalize: with ``embeddings_field``, scale the rows to unit length (the strategies compare inner
            products; selector's own embeddings are unit length already).
        allow_smaller: a budget above the unlabeled samples takes them all (with a warning) instead of failing.
        **selector_kw: encoder options of :class:`selector.Selector` (``backbone``, ``device``, ``progress``, ...),
            when selector embeds the files.

    Returns:
        A view of the chosen samples in rank order.

    Raises:
        ImportError: FiftyOne is not installed.
        ValueError: an unknown field, samples without an embedding, or embeddings of different lengths.
        selector.strategies.SelectionError: nothing left to choose, or a budget over the unlabeled samples.
    """
    fo = _import_fiftyone()
    from selector.api import select_embeddings
    from selector.plan import plan_selection
    from selector.pool.pool import duplicate_mask
    from selector.strategies import Strategy, get_strategy

    if not isinstance(samples, fo.core.collections.SampleCollection):
        raise TypeError(f"samples must be a FiftyOne dataset or view, got {type(samples).__name__}")
    strat = strategy if isinstance(strategy, Strategy) else get_strategy(strategy, **dict(strategy_params or {}))
    ids = [str(i) for i in samples.values("id")]
    if not ids:
        raise ValueError(f"the collection of dataset {_dataset_name(samples)!r} holds no samples")
    labeled, labels = _labeled(fo, samples, labeled_field, labeled_tag)

    if embeddings_field is not None:
        if selector_kw:
            raise TypeError(f"{', '.join(sorted(selector_kw))}: encoder options apply when selector embeds the "
                            "files, not with embeddings_field")
        emb = _field_embeddings(samples, embeddings_field, normalize)
        rows = np.arange(len(ids))
        keys = [str(p) for p in samples.values("filepath")]  # samples on one file are copies of each other
        source = f"field {embeddings_field}"
    else:
        emb, rows, keys, source = _embed_files(samples.values("filepath"), seed, cache_dir, selector_kw)

    kept_ids = [ids[i] for i in rows]  # the samples that have an embedding row
    plan = plan_selection(budget, kept_ids, labeled[rows], duplicate_mask=lambda m: duplicate_mask(keys, m),
                          allow_smaller=allow_smaller, where=f"dataset {_dataset_name(samples)!r}")
    known = labels[rows] if labels is not None else None
    result = select_embeddings(emb, plan.budget, plan.excluded, strat, seed, kept_ids, info=plan.info, labels=known)
    _write_back(fo, samples, ids, result, tag, source, seed)
    return samples.select(result.paths, ordered=True)


def _dataset_name(samples) -> str:
    """The name of the dataset a collection belongs to (a view's ``dataset_name``, a dataset's ``name``)."""
    return getattr(samples, "dataset_name", None) or samples.name


def _labeled(fo, samples, field: str | None, tag: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(n,) bool: the labeled samples; (n,) int64 class ids of labeled ``Classification`` values (-1 for other
    samples), or None when there are none."""
    n = len(samples)
    mask = np.zeros(n, dtype=bool)
    labels = None
    if tag is not None:
        mask |= np.array([tag in (t or ()) for t in samples.values("tags")], dtype=bool)
    if field is not None:
        if not samples.has_sample_field(field):
            raise ValueError(f"labeled_field {field!r} is not a field of dataset {_dataset_name(samples)!r}")
        values = samples.values(field)
        mask |= np.array([v is not None and v is not False for v in values], dtype=bool)
        names = [v.label if isinstance(v, fo.Classification) and v.label is not None else None for v in values]
        classes = sorted({c for c in names if c is not None})
        if classes:
            index = {c: k for k, c in enumerate(classes)}
            labels = np.array([index[c] if c is not None else -1 for c in names], dtype=np.int64)
    return mask, labels


def _field_embeddings(samples, field: str, normalize: bool) -> np.ndarray:
    """The (n, d) float32 rows of an embedding field, unit length when ``normalize``."""
    from selector.embeddings_io import normalize_rows

    if not samples.has_sample_field(field):
        raise ValueError(f"embeddings_field {field!r} is not a field of dataset {_dataset_name(samples)!r}")
    values = samples.values(field)
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        first = samples.values("filepath")[missing[0]]
        raise ValueError(f"{len(missing)} of {len(values)} samples have no {field!r} (first: {first})")
    rows = [np.asarray(v, dtype=np.float32).ravel() for v in values]
    dims = sorted({r.shape[0] for r in rows})
    if len(dims) > 1:
        raise ValueError(f"the vectors of {field!r} have different lengths: {', '.join(map(str, dims))}")
    emb = np.stack(rows)
    return normalize_rows(emb) if normalize else emb


def _embed_files(filepaths: Sequence[str], seed: int, cache_dir, selector_kw: dict
                 ) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Embed the samples' files with :class:`selector.Selector`: (embedding rows, the samples they belong to,
    the content digest of each row, a description of the embedding). Files that cannot be read are left out
    with a warning (their samples are never chosen)."""
    from selector.api import Selector
    from selector.cache import default_cache_dir

    if cache_dir is None:
        cache_dir = default_cache_dir()
    sel = Selector(seed=seed, cache_dir=None if cache_dir is False else cache_dir, **selector_kw)
    absolute = [os.path.abspath(os.fspath(p)) for p in filepaths]
    pool = files_pool(absolute, on_bad=sel.on_bad, encoder=sel.encoder, image_size=sel.image_size)
    sel.fit(pool)
    row_of = {rel: k for k, rel in enumerate(sel.pool_.ids)}
    rel = [Path(p).relative_to(pool.root).as_posix() for p in absolute]
    samples = np.array([i for i, r in enumerate(rel) if r in row_of], dtype=np.int64)
    take = np.array([row_of[rel[i]] for i in samples], dtype=np.int64)
    digests = [sel.pool_.digests[k] for k in take]
    return sel.embeddings_[take], samples, digests, f"selector: {sel.encoder_plan_.backbone}"


def files_pool(paths: Sequence[str], *, on_bad: str = "skip", encoder=None, image_size: int | None = None):
    """A :class:`selector.pool.Pool` of the image files ``paths`` (absolute, anywhere), not decoded: rooted at
    their common folder, ids their relative paths (sorted, each file once), read on demand as a folder pool's
    files are. Files that cannot be read are skipped with a warning (or fail with ``on_bad="fail"``)."""
    from selector.encoding import encoder_input
    from selector.names import display_name
    from selector.pool import DEFAULT_DECODE_TIMEOUT_S, DEFAULT_MAX_PIXELS, Pool, PoolError
    from selector.pool.decode import choose_format, digest_file, failure_reason
    from selector.pool.folder import FolderSource, default_workers

    unique = sorted(set(paths))
    if not unique:
        raise PoolError("no image files given")
    root = Path(os.path.commonpath(unique))
    if len(unique) == 1 or root.is_file():
        root = root.parent
    rel = [Path(p).relative_to(root).as_posix() for p in unique]
    digests: list[str | None] = [None] * len(rel)
    errors: dict[int, str] = {}

    def one(i: int) -> None:
        try:
            digests[i] = digest_file(root / rel[i])
        except Exception as e:  # noqa: BLE001 - every unreadable file becomes a named skip or error
            errors[i] = failure_reason(e)

    with ThreadPoolExecutor(DIGEST_THREADS) as ex:
        list(ex.map(one, range(len(rel))))
    skipped = [(rel[i], errors[i]) for i in sorted(errors)]
    if skipped and on_bad == "fail":
        raise PoolError(f"cannot read image {display_name(root / skipped[0][0])}: {display_name(skipped[0][1])}")
    for r, reason in skipped:  # names and reasons escaped: nothing raw reaches a log
        log.warning("skipping %s: %s", display_name(root / r), display_name(reason))
    keep = [i for i in range(len(rel)) if i not in errors]
    if not keep:
        raise PoolError(f"none of the {len(rel)} image files could be read (first: "
                        f"{display_name(root / skipped[0][0])}: {display_name(skipped[0][1])})")
    kept = [rel[i] for i in keep]
    size, channels = encoder_input(encoder, image_size)
    fmt = choose_format(root, kept, channels, size)
    if fmt.channels not in (1, 3):
        raise PoolError(f"channels must be 1 or 3, got {fmt.channels}")
    source = FolderSource(root, tuple(kept), DEFAULT_MAX_PIXELS, default_workers(len(kept)), DEFAULT_DECODE_TIMEOUT_S)
    return Pool(ids=kept, images=None, digests=[digests[i] for i in keep], root=root, skipped=skipped, format=fmt,
                source=source)


def _write_back(fo, samples, ids: list[str], result, tag: str, source: str, seed: int) -> None:
    """Rank, group and tag on the chosen samples (cleared on the collection's others); the run's facts in the
    dataset's ``info``."""
    rank = {sid: r for r, sid in enumerate(result.paths, 1)}
    group = dict(zip(result.paths, (int(g) for g in result.selection.groups)))
    samples.set_values(RANK_FIELD, [rank.get(s) for s in ids])
    samples.set_values(GROUP_FIELD, [group.get(s) for s in ids])
    samples.untag_samples(tag)
    samples.select(result.paths).tag_samples(tag)
    n_groups = None if result.n_groups is None else int(result.n_groups)  # numpy ints do not go into the database
    facts = {"strategy": result.strategy, "seed": int(seed), "budget": len(result), "n_groups": n_groups,
             "embedding": source, "tag": tag}
    facts["confident"] = class_count_confident(result)
    dataset = fo.load_dataset(_dataset_name(samples))
    dataset.info[INFO_KEY] = facts
    dataset.save()
