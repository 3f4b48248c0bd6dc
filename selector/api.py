"""The public API: ``Selector(...).fit(pool).select(budget, labeled=...)``.

>>> from selector import Selector
>>> sel = Selector(strategy="balanced", seed=0).fit("images/")
>>> result = sel.select(100)
>>> result.to_csv("selection.csv")

``fit`` reads the pool, resolves the encoder (:mod:`selector.encoding`: by default a frozen
ImageNet-pretrained backbone plus the pixel view; a checkpoint; or an encoder trained on the pool) and
embeds the pool through the cache; ``select`` runs a strategy on the embedding. The CLI is a thin layer
over this class; the evaluation loop calls the strategies on embeddings directly.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from selector.strategies import STRATEGIES, Selection, Strategy, get_strategy

from .backbones import ARCHS, EncoderConfig, weights_path
from .device import resolve_device
from .embed import EMBED_BATCH, READ_CHUNK, embed_pool
from .encoding import (
    MODES,
    EncoderPlan,
    EncoderRequest,
    check_backbone,
    encoder_input,
    get_encoder,
    plan_encoder,
    resolve_backbone,
    train_config,
)
from .names import display_name
from .plan import SelectionPlan, labeled_mask, plan_selection
from .pool import Pool, PoolError, decode_pool, load_pool
from .pool.read import RowReader
from .train import TrainConfig

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
        """Write the selection (format from ``fmt`` or the suffix; see :mod:`selector.formats`)."""
        from .formats import export_selection

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
        encoder: path of an encoder checkpoint to use, or None to use ``backbone`` / ``arch``.
        strategy: a registered strategy name (see ``strategies.STRATEGIES``) or a Strategy instance;
            default ``"typcover"``, chosen by the strategy matrix (``benchmarks/strategy_matrix.py``).
        strategy_params: keyword hyperparameters for the named strategy.
        seed: seeds training, k-means and the strategy; the same seed gives the same selection.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        epochs: training epochs; None chooses from the pool size (:func:`selector.train.auto_epochs`).
        loss: contrastive loss name (see ``selector.losses.LOSSES``).
        arch: a backbone trained on the pool (``selector.backbones.ARCHS``); None (default) and no
            ``backbone`` means ``backbone="auto"``.
        batch_size: training batch size.
        image_size: encoder input side; None chooses from the pool.
        cache_dir: folder for the trained encoder and the embedding cache (None: no disk cache).
        on_bad: "skip" or "fail" for unreadable images.
        progress: show progress bars (stderr).
        embed_chunk: images per embedding-cache file (the unit of resume; default
            :data:`selector.embed.CHUNK`).
        backbone: overrides ``arch`` when given: a registered backbone (:mod:`selector.backbones`:
            "resnet-small", "resnet18", "efficientnet-lite0", "torchvision:NAME", ...) or "auto"
            (:func:`selector.encoding.choose_backbone`: EfficientNet-Lite0, frozen, when the pretrained
            extra is installed, else resnet-small trained on the pool; the reason is in
            ``backbone_reason_``). Default: ``arch`` if given, else "auto".
        backbone_mode: "auto" (frozen for a pretrained backbone, trained for the others), "frozen"
            (no training: the backbone's pooled features; a random-weight baseline for the small
            ResNets) or "finetune" (contrastive training on the pool, from the pretrained weights if any).
        weights: weights file of a ``torchvision:NAME`` backbone (default: torchvision's cache,
            ``$TORCH_HOME/hub/checkpoints``) or of ``efficientnet-lite0`` (default: the package's).
            Nothing is ever downloaded.
        backbone_size: input side of a pretrained backbone; default: the automatic choice's side
            (:func:`selector.encoding.choose_backbone`), else the backbone's native side. Images are decoded
            straight to it, capped by their own size (:func:`selector.pool.read.decode_side`).
        time_budget: minutes of training: the first steps are timed and the number of steps is planned
            so the whole learning-rate schedule ends within it (``epochs``, if given, is then a cap).
        pixel_view: concatenate the pixel view (PCA-50 of the pixels, :mod:`selector.pixels`) to the
            encoder's embedding, each block L2-normalised. None (default): the automatic backbone's choice
            (on for small grayscale images, off for photos; :func:`selector.encoding.choose_backbone`), off
            for a backbone or encoder named explicitly.
        flip: horizontal flips among the training augmentations (on by default for every pool; off
            for pools where a mirrored image is another class, such as digits or text).
        autoencoder: weight of the class-conditional autoencoder term (Chen et al., ICML 2022;
            :mod:`selector.losses.autoencoder`) added to ``loss="supcon-spread"``; 0 (default): none, 1: the
            paper's weight. The decoder is conditioned on the known labels passed to :meth:`fit`.
        precision: what a frozen pretrained backbone runs in: "auto" (bfloat16 on a CPU that runs it
            natively, else float32, :func:`selector.embed.resolve_precision`; float32 for the small grayscale
            images of ``--backbone auto``, :func:`selector.encoding.choose_backbone`), "float32" or "bfloat16".
        dist: a :class:`selector.distributed.Dist` (``selector.distributed.init()`` under torchrun) to
            train and embed on every process of the job: every rank calls ``fit`` with the same pool;
            ``device`` is then each rank's own and ``batch_size`` is per process; a cache folder is
            required. Only rank 0 gets the embedding (``embeddings_`` is None elsewhere) and selects.
    """

    def __init__(self, encoder: str | os.PathLike | None = None, strategy: str | Strategy = "typcover",
                 strategy_params: Mapping[str, Any] | None = None, seed: int = 0, device: str = "auto",
                 epochs: int | None = None, loss: str = "simclr", arch: str | None = None,
                 batch_size: int = 256, image_size: int | None = None,
                 cache_dir: str | os.PathLike | None = None, on_bad: str = "skip", progress: bool = False,
                 embed_chunk: int | None = None, backbone: str | None = None, backbone_mode: str = "auto",
                 weights: str | os.PathLike | None = None, backbone_size: int | None = None,
                 time_budget: float | None = None, pixel_view: bool | None = None, flip: bool = True, dist=None,
                 autoencoder: float = 0.0, precision: str = "auto"):
        if isinstance(strategy, str) and strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(sorted(STRATEGIES))}")
        if isinstance(strategy, str) and strategy_params:  # a wrong value fails here, not after training
            from selector.strategies.registry import check_params

            check_params(STRATEGIES[strategy], dict(strategy_params))
        if arch is not None and arch not in ARCHS:
            raise ValueError(f"unknown encoder architecture {arch!r}; choose from {', '.join(ARCHS)}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        if backbone is not None:
            check_backbone(backbone)
        if backbone_mode not in MODES:
            raise ValueError(f"unknown backbone mode {backbone_mode!r}; choose from {', '.join(MODES)}")
        if autoencoder:
            from .losses.autoencoder import check_weight

            check_weight(autoencoder)
            if loss != "supcon-spread":
                raise ValueError(f"the class-conditional autoencoder is a term of supcon-spread, not of {loss}")
        if time_budget is not None and not time_budget > 0:
            raise ValueError(f"time budget must be a positive number of minutes, got {time_budget}")
        if backbone_size is not None and backbone_size < 32:
            raise ValueError(f"backbone size must be at least 32 px, got {backbone_size}")
        if weights is not None and encoder is None:  # a missing file is one line here, not after reading the pool
            weights_path(backbone or arch or "auto", weights)
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
        self.backbone = backbone
        self.backbone_mode = backbone_mode
        self.weights = weights
        self.backbone_size = backbone_size
        self.time_budget = time_budget
        self.pixel_view = pixel_view
        self.flip = flip
        self.autoencoder = float(autoencoder)
        self.precision = precision
        self.dist = dist
        if dist is not None and dist.world > 1 and cache_dir is None:
            raise ValueError("training and embedding on several processes need a cache folder (cache_dir): the "
                             "ranks pass their embeddings through it")

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, pool: Pool | str | os.PathLike, labels: np.ndarray | None = None) -> "Selector":
        """Read ``pool`` (a folder, an .npz, or a :class:`Pool`), get an encoder, embed the pool.

        The flow goes one way: the pool is listed and its files digested (not decoded); the encoder is
        planned (:func:`selector.encoding.plan_encoder`); the pool is decoded whole only when the plan needs
        it (training, the pixel view, an encoder that embeds at the pool's side), else a frozen pretrained
        backbone reads the images a chunk at a time at its own side; the embedding goes through the
        content-keyed cache. Files that do not decode are dropped from ``pool_`` (and listed in its
        ``skipped``).

        Args:
            labels: optional (n,) int64 known labels (-1 unknown) for losses that use them (KCL,
                SupCon-spread); ignored by the others, so they neither change training nor the cache key.
        Sets ``pool_``, ``encoder_plan_`` (:class:`selector.encoding.EncoderPlan`: which encoder and why),
        ``encoder_``, ``embeddings_`` (n, dim) float32, ``timings_`` (seconds per step) and ``n_embedded_``
        (images the encoder ran on; 0 when all came from the cache).
        """
        t0 = time.perf_counter()
        self.timings_: dict[str, float] = {}
        if not isinstance(pool, Pool):
            size, channels = encoder_input(self.encoder, self.image_size)
            pool = load_pool(pool, decode=False, image_size=size, channels=channels, on_bad=self.on_bad,
                             progress=self.progress)
        device = self.dist.device if self.dist is not None else resolve_device(self.device)
        plan = self.plan_encoder(pool, labels, device=device)
        self.encoder_plan_ = plan
        self.backbone_, self.backbone_reason_ = plan.backbone, plan.reason
        if plan.needs_images and not pool.decoded:
            ids = pool.ids
            pool = decode_pool(pool, on_bad=self.on_bad, progress=self.progress, scratch_dir=self.cache_dir)
            if labels is not None and len(pool) < len(ids):  # the known labels follow the rows that decoded
                labels = np.asarray(labels)[np.isin(ids, pool.ids)]
        self.timings_["read"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        self.encoder_, self.encoder_cached_, self.checkpoint_ = get_encoder(
            plan, pool.images, device, cache_dir=self.cache_dir, labels=labels, progress=self.progress, dist=self.dist)
        self.train_report_ = getattr(self.encoder_, "train_report", None)  # steps, epochs, images seen, seconds
        self.timings_["train"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        with RowReader(pool, plan.read_side, batch=READ_CHUNK, on_bad=self.on_bad) as reader:
            emb, self.n_embedded_, failed = embed_pool(reader, pool.digests, self.encoder_, device,
                                                       cache_dir=self.cache_dir, progress=self.progress,
                                                       chunk=self.embed_chunk, dist=self.dist,
                                                       precision=plan.precision, batch_size=EMBED_BATCH)
        if failed:  # files that did not decode: dropped, listed among the skipped files
            keep = np.setdiff1d(np.arange(len(pool)), sorted(failed))
            for i, reason in sorted(failed.items()):
                log.warning("skipping %s: %s", display_name(pool.root / pool.ids[i]), display_name(reason))
            pool = pool.subset(keep, skipped=[(pool.ids[i], r) for i, r in failed.items()])
            if len(pool) == 0:
                raise PoolError(f"none of the image files in {display_name(pool.root)} could be read")
            emb = None if emb is None else emb[keep]
        self.pool_ = pool
        self.embeddings_ = emb
        self.pixel_view_ = None
        if plan.pixel_view and self.embeddings_ is not None:  # rank 0 alone when distributed
            from .pixels import PixelPCA, concat_views

            self.pixel_view_ = PixelPCA().fit(pool.images, seed=self.seed)
            self.embeddings_ = concat_views(self.embeddings_, self.pixel_view_.transform(pool.images))
        self.timings_["embed"] = time.perf_counter() - t2
        return self

    def encoder_request(self) -> EncoderRequest:
        """The encoder options of this selector, as :func:`selector.encoding.plan_encoder` reads them."""
        return EncoderRequest(backbone=self.backbone_name, mode=self.backbone_mode, encoder=self.encoder,
                              weights=self.weights, backbone_size=self.backbone_size, loss=self.loss,
                              epochs=self.epochs, time_budget=self.time_budget, batch_size=self.batch_size,
                              seed=self.seed, flip=self.flip, autoencoder=self.autoencoder, pixel_view=self.pixel_view,
                              precision=self.precision)

    def plan_encoder(self, pool: Pool, labels: np.ndarray | None = None, device=None) -> EncoderPlan:
        """The :class:`selector.encoding.EncoderPlan` :meth:`fit` follows for ``pool`` (and known ``labels``)
        on ``device`` (default: this selector's)."""
        world = self.dist.world if self.dist is not None else 1
        return plan_encoder(self.encoder_request(), pool.format, len(pool), pool_key=pool.key, labels=labels,
                            world_size=world, device=device if device is not None else resolve_device(self.device))

    def train_config(self, n: int, backbone: str | None = None) -> TrainConfig:
        """The training configuration used for a pool of ``n`` images (``backbone``: the resolved one,
        default: the one ``fit`` used, else the one asked for)."""
        return train_config(self.encoder_request(), n, backbone or getattr(self, "backbone_", None)
                            or self.backbone_name)

    @property
    def backbone_name(self) -> str:
        """The backbone asked for: ``backbone``, else ``arch``, else "auto"."""
        return self.backbone or self.arch or "auto"

    def uses_pixel_view(self, pool: Pool) -> bool:
        """Whether :meth:`fit` adds the pixel view for ``pool`` (see ``pixel_view``)."""
        return self.plan_encoder(pool).pixel_view

    def resolve_backbone(self, pool: Pool) -> tuple[str, str, str]:
        """(backbone, "frozen" or "trained", reason) used for ``pool``; ``auto`` is decided here."""
        choice = resolve_backbone(self.backbone_name, self.backbone_mode, pool.channels, pool.format.short_side,
                                  len(pool))
        return choice.backbone, choice.mode, choice.reason

    def encoder_config(self, pool: Pool) -> EncoderConfig:
        return self.plan_encoder(pool).encoder

    def embed(self, pool: Pool | str | os.PathLike) -> np.ndarray:
        """Embed another pool with the fitted encoder, read as the first one was: (n, dim) float32,
        L2-normalised. Files of ``pool`` that do not decode are an error (the rows must match)."""
        self._check_fitted()
        plan = self.encoder_plan_
        if not isinstance(pool, Pool):
            pool = load_pool(pool, decode=not plan.streams or self.pixel_view_ is not None,
                             image_size=self.pool_.size, channels=self.pool_.channels, on_bad=self.on_bad)
        with RowReader(pool, plan.read_side, batch=READ_CHUNK, on_bad="fail") as reader:
            emb, _, _ = embed_pool(reader, pool.digests, self.encoder_, resolve_device(self.device),
                                   cache_dir=self.cache_dir, progress=self.progress, chunk=self.embed_chunk,
                                   precision=plan.precision, batch_size=EMBED_BATCH)
        if self.pixel_view_ is not None:  # the same views, the pixel PCA fitted on the first pool
            from .pixels import concat_views

            emb = concat_views(emb, self.pixel_view_.transform(pool.images))
        return emb

    # -- selecting -----------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "embeddings_"):
            raise RuntimeError("call fit(pool) before select() or embed()")
        if self.embeddings_ is None:
            raise RuntimeError(f"rank {self.dist.rank} of a distributed run holds no embedding: rank 0 selects")

    def labeled_mask(self, labeled: Any) -> tuple[np.ndarray, int]:
        """(n,) bool mask from ``labeled``: None, a bool mask, indices, item ids, a {id: label}
        mapping, or a labels file (.csv, .txt, .jsonl, Label Studio .json, CVAT .xml); see
        :func:`selector.plan.labeled_mask`. Returns (mask, number of entries that name no pool item)."""
        self._check_fitted()
        found = labeled_mask(labeled, self.pool_.ids, self.pool_.root)
        return found.mask, found.missing

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

    def select_plan(self, plan: SelectionPlan) -> SelectionResult:
        """Run the strategy on the fitted embedding for a :func:`plan_selection` of this pool."""
        self._check_fitted()
        if len(plan.excluded) != len(self.pool_):
            raise ValueError(f"the plan covers {len(plan.excluded)} items, the pool has {len(self.pool_)}")
        strat = (self.strategy if isinstance(self.strategy, Strategy)
                 else get_strategy(self.strategy, **self.strategy_params))
        return select_embeddings(self.embeddings_, plan.budget, plan.excluded, strat, self.seed, self.pool_.ids,
                                 self.pool_.root, info=plan.info, labels=plan.labels)


#: Largest magnitude accepted in an embedding: squared distances summed over a million rows of a few
#: thousand dimensions stay far inside float32 (3.4e38), where faiss computes them.
MAX_ABS_EMBEDDING = 1e12


def check_embeddings(embeddings: np.ndarray, step: int | None = None) -> None:
    """Refuse, with a one-line ValueError, embeddings that are not finite or so large that float32
    distances overflow (over :data:`MAX_ABS_EMBEDDING`; faiss would abort the interpreter). Checked in
    blocks of ``step`` rows (default: about 4M values), so no copy of the whole array is made."""
    from .embeddings_io import block_rows

    x = np.asarray(embeddings)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"embeddings must be a numeric (n, d) array, got {x.dtype} of shape {x.shape}")
    step = step or block_rows(x.shape[1])
    top = 0.0
    for s in range(0, x.shape[0], step):
        block = np.abs(x[s:s + step].astype(np.float64, copy=False))
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            raise ValueError(f"embeddings row {s + int(np.flatnonzero(bad)[0])} holds NaN or inf")
        if block.size:
            top = max(top, float(block.max()))
    if top > MAX_ABS_EMBEDDING:
        raise ValueError(f"embeddings hold values up to {top:.2g} in magnitude, over the {MAX_ABS_EMBEDDING:.0e} "
                         "at which float32 distances overflow: scale them down (e.g. L2-normalise the rows, "
                         "--normalize)")


def select_embeddings(embeddings: np.ndarray, budget: int, labeled_mask: np.ndarray | None,
                      strategy: str | Strategy, seed: int | np.random.Generator, ids: Sequence[str] | None = None,
                      root: Path | None = None, info: dict | None = None, labels: np.ndarray | None = None,
                      **strategy_params) -> SelectionResult:
    """Run a strategy on any embedding array (bring your own encoder): the shared code path of the
    API and ``selector select``. ``labels`` (n,) int, -1 unknown: known classes of labeled items, which
    label-aware strategies (``balanced``) balance across."""
    strat = strategy if isinstance(strategy, Strategy) else get_strategy(strategy, **strategy_params)
    check_embeddings(embeddings)
    if ids is not None and len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids for {len(embeddings)} embedding rows")
    ids = list(ids) if ids is not None else [str(i) for i in range(len(embeddings))]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    t = time.perf_counter()
    sel = strat.select(embeddings, budget, labeled_mask, rng, labels=labels)
    return SelectionResult(selection=sel, ids=ids, root=root, strategy=strat.name,
                           seconds=time.perf_counter() - t, info=dict(info or {}))
