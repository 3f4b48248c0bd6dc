"""The public API: ``Selector(...).fit(pool).select(budget, labeled=...)``.

>>> from selector import Selector
>>> sel = Selector(strategy="balanced", seed=0).fit("images/")
>>> result = sel.select(100)
>>> result.to_csv("selection.csv")

``fit`` reads the pool, trains the encoder on it (or loads one), and embeds it; ``select`` runs a
strategy on the embedding. The CLI is a thin layer over this class; the evaluation loop calls the
strategies on embeddings directly.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from selector.strategies import STRATEGIES, Selection, Strategy, get_strategy

from .backbones import ARCHS, Encoder, EncoderConfig
from .data import Pool, load_pool
from .device import resolve_device
from .embed import embed_pool
from .train import TrainConfig, auto_epochs, load_encoder, train_encoder

log = logging.getLogger(__name__)


@dataclass
class SelectionResult:
    """A selection with the pool's item ids attached, ready to export.

    Attributes:
        selection: the strategy's :class:`strategies.Selection` (indices in rank order, scores,
            groups, estimated group count).
        ids: (n,) the pool's item ids; ``ids[i]`` for i in ``selection.indices`` are the chosen ones.
        root: the pool folder (or npz file), for exports with absolute paths.
        strategy: the strategy's registered name.
        seconds: selection time.
    """

    selection: Selection
    ids: Sequence[str]
    root: Path | None = None
    strategy: str = ""
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def indices(self) -> np.ndarray:
        return self.selection.indices

    @property
    def paths(self) -> list[str]:
        """Chosen item ids in rank order."""
        return [self.ids[i] for i in self.selection.indices]

    @property
    def n_groups(self) -> int | None:
        return self.selection.n_groups

    def group_counts(self) -> dict[int, int]:
        """Chosen items per estimated group, by group id."""
        return dict(sorted(Counter(int(g) for g in self.selection.groups).items()))

    def __len__(self) -> int:
        return len(self.selection)

    def export(self, out_path: str | os.PathLike, fmt: str | None = None, **kw) -> list[Path]:
        """Write the selection (format from ``fmt`` or the suffix; see :mod:`selector.export`)."""
        from .export import export_selection

        return export_selection(self.selection, self.ids, out_path, fmt=fmt, root=self.root,
                                strategy=self.strategy, **kw)

    def to_csv(self, out_path, **kw) -> list[Path]:
        return self.export(out_path, "csv", **kw)

    def to_json(self, out_path, **kw) -> list[Path]:
        """JSON Lines, one object per chosen item."""
        return self.export(out_path, "jsonl", **kw)

    def to_label_studio(self, out_path, **kw) -> list[Path]:
        return self.export(out_path, "label-studio", **kw)

    def to_cvat(self, out_path, **kw) -> list[Path]:
        return self.export(out_path, "cvat", **kw)

    def to_paths(self, out_path, **kw) -> list[Path]:
        return self.export(out_path, "paths", **kw)


class Selector:
    """Train-embed-select pipeline over one pool (scikit-learn style: hyperparameters here, data in
    :meth:`fit`, results in attributes ending in ``_``).

    Args:
        encoder: path of an encoder checkpoint to use, or None to train one on the pool.
        strategy: a registered strategy name (see ``strategies.STRATEGIES``) or a Strategy instance.
        strategy_params: keyword hyperparameters for the named strategy.
        seed: seeds training, k-means and the strategy; the same seed gives the same selection.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        epochs: training epochs; None chooses from the pool size (:func:`selector.train.auto_epochs`).
        loss: contrastive loss name (see ``selector.losses.LOSSES``).
        arch: encoder architecture ("resnet-small" or "resnet18").
        batch_size: training batch size.
        image_size: encoder input side; None chooses from the pool.
        cache_dir: folder for the trained encoder and the embedding cache (None: no disk cache).
        on_bad: "skip" or "fail" for unreadable images.
        progress: show progress bars (stderr).
        embed_chunk: images per embedding-cache file (the unit of resume; default
            :data:`selector.embed.CHUNK`).
    """

    def __init__(self, encoder: str | os.PathLike | None = None, strategy: str | Strategy = "balanced",
                 strategy_params: Mapping[str, Any] | None = None, seed: int = 0, device: str = "auto",
                 epochs: int | None = None, loss: str = "simclr", arch: str = "resnet-small",
                 batch_size: int = 256, image_size: int | None = None,
                 cache_dir: str | os.PathLike | None = None, on_bad: str = "skip", progress: bool = False,
                 embed_chunk: int | None = None):
        if isinstance(strategy, str) and strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(sorted(STRATEGIES))}")
        if arch not in ARCHS:
            raise ValueError(f"unknown encoder architecture {arch!r}; choose from {', '.join(ARCHS)}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        self.encoder = encoder
        self.strategy = strategy
        self.strategy_params = dict(strategy_params or {})
        self.seed = int(seed)
        self.device = device
        self.epochs = epochs
        self.loss = loss
        self.arch = arch
        self.batch_size = batch_size
        self.image_size = image_size
        self.cache_dir = cache_dir
        self.on_bad = on_bad
        self.progress = progress
        self.embed_chunk = embed_chunk

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, pool: Pool | str | os.PathLike, labels: np.ndarray | None = None) -> "Selector":
        """Read ``pool`` (a folder, an .npz, or a :class:`Pool`), get an encoder, embed the pool.

        Args:
            labels: optional (n,) int64 known labels (-1 unknown) for losses that use them.
        Sets ``pool_``, ``encoder_``, ``embeddings_`` (n, dim) float32, ``timings_`` (seconds per step)
        and ``n_embedded_`` (images the encoder ran on; 0 when all came from the cache).
        """
        t0 = time.perf_counter()
        self.timings_: dict[str, float] = {}
        if not isinstance(pool, Pool):
            size, channels = self.image_size, None
            if self.encoder is not None and size is None:  # read the pool the way the encoder expects
                from .train import read_checkpoint

                cfg = read_checkpoint(self.encoder)["config"]
                size, channels = cfg["image_size"], cfg["in_channels"]
            pool = load_pool(pool, image_size=size, channels=channels, on_bad=self.on_bad, progress=self.progress)
        self.pool_ = pool
        self.timings_["read"] = time.perf_counter() - t0
        device = resolve_device(self.device)

        t1 = time.perf_counter()
        self.encoder_cached_ = False  # set by _get_encoder when a finished checkpoint is reused
        self.encoder_ = self._get_encoder(pool, device, labels)
        self.timings_["train"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        self.embeddings_, self.n_embedded_ = embed_pool(pool.images, pool.digests, self.encoder_, device,
                                                        cache_dir=self.cache_dir, progress=self.progress,
                                                        chunk=self.embed_chunk)
        self.timings_["embed"] = time.perf_counter() - t2
        return self

    def train_config(self, n: int) -> TrainConfig:
        """The training configuration used for a pool of ``n`` images."""
        return TrainConfig(loss=self.loss, epochs=self.epochs or auto_epochs(n),
                           batch_size=self.batch_size, seed=self.seed)

    def encoder_config(self, pool: Pool) -> EncoderConfig:
        return EncoderConfig(arch=self.arch, in_channels=pool.channels, image_size=pool.size)

    def _get_encoder(self, pool: Pool, device, labels) -> Encoder:
        if self.encoder is not None:
            enc, state = load_encoder(self.encoder, map_location="cpu")
            if enc.config.in_channels != pool.channels or enc.config.image_size != pool.size:
                raise ValueError(f"encoder {self.encoder} expects {enc.config.in_channels}-channel "
                                 f"{enc.config.image_size} px images, the pool has {pool.channels}-channel {pool.size} px")
            return enc.to(device)
        enc_cfg, tr_cfg = self.encoder_config(pool), self.train_config(len(pool))
        ckpt = None
        if self.cache_dir is not None:
            h = hashlib.blake2b(digest_size=10)
            h.update(pool.key.encode())
            h.update(repr(sorted(enc_cfg.to_dict().items())).encode())
            h.update(repr(sorted(tr_cfg.to_dict().items())).encode())
            if labels is not None:
                h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
            folder = Path(self.cache_dir) / "encoders"
            folder.mkdir(parents=True, exist_ok=True)
            ckpt = folder / f"encoder-{h.hexdigest()}.pt"
        self.checkpoint_ = ckpt
        self.encoder_cached_ = False
        if ckpt is not None and ckpt.exists():
            from .train import read_checkpoint

            self.encoder_cached_ = read_checkpoint(ckpt)["epochs_done"] >= tr_cfg.epochs
        return train_encoder(pool.images, enc_cfg, tr_cfg, device, checkpoint_path=ckpt, labels=labels,
                             progress=self.progress)

    def embed(self, pool: Pool | str | os.PathLike) -> np.ndarray:
        """Embed another pool with the fitted encoder: (n, dim) float32, L2-normalised."""
        self._check_fitted()
        if not isinstance(pool, Pool):
            pool = load_pool(pool, image_size=self.pool_.size, channels=self.pool_.channels, on_bad=self.on_bad)
        emb, _ = embed_pool(pool.images, pool.digests, self.encoder_, resolve_device(self.device),
                            cache_dir=self.cache_dir, progress=self.progress, chunk=self.embed_chunk)
        return emb

    # -- selecting -----------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "embeddings_"):
            raise RuntimeError("call fit(pool) before select() or embed()")

    def labeled_mask(self, labeled: Any) -> tuple[np.ndarray, int]:
        """(n,) bool mask from ``labeled``: None, a bool mask, indices, item ids, a {id: label}
        mapping, or a labels file (.csv, .txt, .jsonl, Label Studio .json, CVAT .xml).
        Returns (mask, number of entries that name no pool item)."""
        self._check_fitted()
        return labeled_mask_for(labeled, self.pool_.ids, self.pool_.root)

    def select(self, budget: int, labeled: Any = None, *, files: Sequence[str | os.PathLike] = (),
               exclude: Sequence[str | os.PathLike] = (), allow_smaller: bool = False, **read_kw) -> SelectionResult:
        """Choose ``budget`` items not yet labeled, sent out, or a byte-identical copy of another.

        ``labeled``: see :meth:`labeled_mask`; or ``files`` (labels files, one per round) and ``exclude``
        (files of items sent out, not yet labeled); see :func:`plan_selection`, which decides.
        """
        self._check_fitted()
        plan = plan_selection(budget, self.pool_.ids, labeled, files=files, exclude=exclude, root=self.pool_.root,
                              duplicate_mask=self.pool_.duplicate_mask, allow_smaller=allow_smaller, **read_kw)
        return self.select_plan(plan)

    def select_plan(self, plan: "SelectionPlan") -> SelectionResult:
        """Run the strategy on the fitted embedding for a :func:`plan_selection` of this pool."""
        self._check_fitted()
        if len(plan.excluded) != len(self.pool_):
            raise ValueError(f"the plan covers {len(plan.excluded)} items, the pool has {len(self.pool_)}")
        strat = self.strategy if isinstance(self.strategy, Strategy) else get_strategy(self.strategy, **self.strategy_params)
        return select_embeddings(self.embeddings_, plan.budget, plan.excluded, strat, self.seed, self.pool_.ids,
                                 self.pool_.root, info=plan.info, labels=plan.labels)


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
        log.warning("%s list no images; nothing is excluded", ", ".join(map(str, named)))
    if missing:
        log.warning("%d entries of %s name no item of %s; ignored", missing,
                    ", ".join(map(str, named)) or "the labels", where)
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


def select_embeddings(embeddings: np.ndarray, budget: int, labeled_mask: np.ndarray | None,
                      strategy: str | Strategy, seed: int | np.random.Generator, ids: Sequence[str] | None = None,
                      root: Path | None = None, info: dict | None = None, labels: np.ndarray | None = None,
                      **strategy_params) -> SelectionResult:
    """Run a strategy on any embedding array (bring your own encoder): the shared code path of the
    API and ``selector select``. ``labels`` (n,) int, -1 unknown: known classes of labeled items, which
    label-aware strategies (``balanced``) balance across."""
    strat = strategy if isinstance(strategy, Strategy) else get_strategy(strategy, **strategy_params)
    ids = list(ids) if ids is not None else [str(i) for i in range(len(embeddings))]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    t = time.perf_counter()
    sel = strat.select(embeddings, budget, labeled_mask, rng, labels=labels)
    return SelectionResult(selection=sel, ids=ids, root=root, strategy=strat.name,
                           seconds=time.perf_counter() - t, info=dict(info or {}))
