"""Which encoder, at what input size, cached under what key: decided here, in one place.

:func:`plan_encoder` turns what the user asked for (:class:`EncoderRequest`: a backbone name or ``auto``, a
mode, an encoder checkpoint, training options) and the pool's kind (channels, side, count) into an
:class:`EncoderPlan`: the backbone and why, frozen or trained, the :class:`EncoderConfig` and
:class:`TrainConfig`, whether the pixel view is added and the name the trained encoder is cached under.
:func:`get_encoder` then loads, builds or trains (through the cache) the encoder of a plan. So
:meth:`selector.api.Selector.fit` reads: read the pool -> plan -> encoder -> embed -> pixel view.

:func:`choose_backbone` is the one place the ``--backbone auto`` rule lives; :func:`pretrained_features` is
the one function the benchmarks and the pipeline share for frozen features.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from . import _version
from .backbones import (
    INSTALL_HINT,
    Encoder,
    EncoderConfig,
    PretrainedBackbone,
    UnknownBackbone,
    backbone_names,
    file_digest,
    get_backbone,
    is_pretrained,
    weights_path,
)
from .checkpoint import CheckpointError, checkpoint_finished, load_encoder, read_checkpoint, recipe_digest
from .embed import embed_array, resolve_precision
from .losses import LOSSES, TRAIN_PARAMS
from .pool import PoolFormat
from .pool.read import decode_side
from .train import TrainConfig, auto_epochs, train_encoder

log = logging.getLogger(__name__)

AUTO = "auto"
MODES = ("auto", "frozen", "finetune")  # auto: frozen for a pretrained backbone, trained for the others

#: What ``--backbone auto`` chooses with the pretrained extra installed, and without it.
AUTO_PRETRAINED = "efficientnet-lite0"
AUTO_TRAINED = "resnet-small"

#: ``--backbone auto``'s input sides: small grayscale images (digits, glyphs, characters: grayscale, median short
#: side at most :data:`SMALL_GRAY_SIDE` px); other small images (median short side at most
#: :data:`SMALL_PHOTO_SIDE` px: thumbnails, chips, CIFAR-sized photos), which the network sees better upsampled
#: to 160 px than to 224 px; and every other pool (photos, colour or grayscale). Set by the embedding benchmark
#: across photos and grayscale pools (``benchmarks/results/backbones``).
SMALL_GRAY_SIDE = 32
SMALL_GRAY_INPUT = 96
#: Small grayscale images run in float32: at 96 px the network is a small share of the time, so bfloat16 saves
#: little, and it moved those pools' kNN accuracy by up to 0.1 point either way.
SMALL_GRAY_PRECISION = "float32"
SMALL_PHOTO_SIDE = 64
SMALL_PHOTO_INPUT = 160
PHOTO_INPUT = 224


# -- names and modes -----------------------------------------------------------------------------

def backbone_choices() -> tuple[str, ...]:
    """What ``--backbone`` accepts: every registered backbone (``torchvision:NAME`` for any NAME) and auto."""
    return backbone_names() + (AUTO,)


def check_backbone(name: str) -> str:
    """``name`` if ``--backbone`` accepts it, else a ValueError listing the choices."""
    if name == AUTO:
        return name
    try:
        get_backbone(name)
    except UnknownBackbone:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(backbone_choices())}") from None
    return name


def resolve_mode(name: str, mode: str) -> str:
    """``"frozen"`` or ``"trained"`` for backbone ``name`` under ``mode`` (auto, frozen or finetune)."""
    if mode not in MODES:
        raise ValueError(f"unknown backbone mode {mode!r}; choose from {', '.join(MODES)}")
    if mode == AUTO:
        return "frozen" if is_pretrained(name) else "trained"
    return "frozen" if mode == "frozen" else "trained"


def pretrained_installed() -> bool:
    """True when the ``pretrained`` extra (the code and weights of :data:`AUTO_PRETRAINED`) is importable."""
    return get_backbone(AUTO_PRETRAINED).installed()


@dataclass(frozen=True)
class AutoChoice:
    """What ``--backbone auto`` chooses for a pool (:func:`choose_backbone`)."""

    backbone: str
    mode: str
    reason: str
    input_size: int | None  # a pretrained backbone's input side; None: trained on the pool at its side
    pixel_view: bool
    precision: str = "auto"  # what a frozen backbone runs in (selector.embed.resolve_precision)


def small_gray(channels: int, short_side: int) -> bool:
    """Whether a pool's images are small and grayscale (digits, glyphs, characters): one channel and a median
    short side of at most :data:`SMALL_GRAY_SIDE` px."""
    return channels == 1 and 0 < short_side <= SMALL_GRAY_SIDE


def choose_backbone(channels: int, short_side: int, n_images: int, installed: bool) -> AutoChoice:
    """The ``--backbone auto`` rule for a pool of ``n_images`` images with ``channels`` channels and a median
    short side of ``short_side`` px; ``installed``: whether the ``pretrained`` extra is.

    The rule, set by the embedding benchmark (``benchmarks/results/backbones/summary.md``: four photo
    datasets, a grayscale copy of one and three grayscale glyph datasets): with the extra, EfficientNet-Lite0
    frozen, without the pixel view, at 224 px for photos (colour or grayscale) and at 160 px for small images
    (median short side at most 64 px, which the network sees better upsampled less); at 96 px with the pixel
    view (PCA of the pixels beside it) for small grayscale images, where the pixels carry the class and the view
    adds points while it costs photos several; without the extra, resnet-small trained on the pool, with the
    pixel view.
    """
    del n_images  # part of the rule's inputs; the current rule does not use it
    if not installed:
        return AutoChoice(AUTO_TRAINED, "trained",
                          f"the pretrained extra is not installed ({INSTALL_HINT}): {AUTO_TRAINED} trained on the "
                          "pool, with the pixel view", None, True)
    if small_gray(channels, short_side):
        return AutoChoice(AUTO_PRETRAINED, "frozen",
                          f"chosen automatically for small grayscale images (median short side {short_side} px), "
                          "where the pixel view adds what the backbone misses",
                          SMALL_GRAY_INPUT, True, SMALL_GRAY_PRECISION)
    what = "grayscale photos" if channels == 1 else "colour images"
    if 0 < short_side <= SMALL_PHOTO_SIDE:
        return AutoChoice(AUTO_PRETRAINED, "frozen",
                          f"chosen automatically for small {what} (median short side {short_side} px), upsampled "
                          f"to {SMALL_PHOTO_INPUT} px", SMALL_PHOTO_INPUT, False)
    return AutoChoice(AUTO_PRETRAINED, "frozen",
                      f"chosen automatically for {what} (median short side {short_side} px)", PHOTO_INPUT, False)


def resolve_backbone(name: str, mode: str, channels: int, short_side: int, n_images: int,
                     installed: bool | None = None) -> AutoChoice:
    """What is used for backbone ``name`` (or auto) in ``mode`` on a pool of ``n_images`` images of ``channels``
    channels and a median short side of ``short_side`` px. ``installed``: whether the pretrained extra is
    (default: looked up). A backbone named explicitly runs at its native input side (224 px when it has
    none), without the pixel view."""
    if name != AUTO:
        spec = get_backbone(name)
        size = (spec.native_size or PHOTO_INPUT) if spec.pretrained else None
        return AutoChoice(name, resolve_mode(name, mode), f"{name} as asked", size, False)
    if installed is None:
        installed = pretrained_installed()
    choice = choose_backbone(channels, short_side, n_images, installed)
    if mode == AUTO:
        return choice
    return AutoChoice(choice.backbone, resolve_mode(choice.backbone, mode), choice.reason, choice.input_size,
                      choice.pixel_view, choice.precision)


# -- configurations ------------------------------------------------------------------------------

def encoder_config(name: str, in_channels: int, image_size: int, mode: str, size: int | None = None,
                   weights: str | os.PathLike | None = None, proj_dim: int = 128) -> EncoderConfig:
    """The :class:`EncoderConfig` of backbone ``name`` in ``mode`` ("frozen" or "trained") for a pool of
    ``in_channels`` x ``image_size`` px images. For a pretrained backbone it records the input side ``size``
    (default: its native side) and the weights file's digest (so caches and checkpoints tell weights apart)."""
    if mode not in ("frozen", "trained"):
        raise ValueError(f"mode must be 'frozen' or 'trained', got {mode!r}")
    check_backbone(name)
    if not get_backbone(name).pretrained:
        return EncoderConfig(arch=name, in_channels=in_channels, image_size=image_size, proj_dim=proj_dim,
                             mode=mode)
    size = int(size or get_backbone(name).native_size or PHOTO_INPUT)
    if size < 32:
        raise ValueError(f"input size of a pretrained backbone must be at least 32 px, got {size}")
    digest = check_pretrained(name, weights, size)
    return EncoderConfig(arch=name, in_channels=in_channels, image_size=image_size, proj_dim=proj_dim, mode=mode,
                         input_size=size, weights_digest=digest)


def check_pretrained(name: str, weights: str | os.PathLike | None = None, size: int | None = None) -> str:
    """The digest of the weights file of pretrained backbone ``name`` (``weights``, else its default), once
    the file is known to exist, to load as a state dict, to fit the network and to run at ``size`` px (default:
    its native side): a one-line :class:`PretrainedError` naming the file, or the side, if not. Cheap to
    repeat: the network is built once per file content, backbone and side."""
    path = weights_path(name, weights)
    size = int(size or get_backbone(name).native_size or PHOTO_INPUT)
    digest = file_digest(path)
    _check_built(name, str(path.resolve()), digest, size)
    return digest


@functools.lru_cache(maxsize=32)
def _check_built(name: str, path: str, digest: str, size: int) -> None:
    del digest  # part of the cache key: another content is checked again
    with torch.random.fork_rng(devices=[]):  # building draws random weights; the caller's stream is left alone
        PretrainedBackbone(name, size, weights=path)


def check_weights_first(backbone: str, weights: str | os.PathLike | None, size: int | None,
                        encoder: str | os.PathLike | None = None) -> None:
    """What the command line checks of a pretrained backbone before reading any pool: the ``--weights``
    file (or the default one of a backbone named explicitly) exists, loads as a state dict, fits the network
    and runs at the side asked for (:func:`check_pretrained`). ``backbone`` "auto" is looked at only with a
    ``weights`` file (for the backbone auto would use, at ``size`` or its photo side); nothing is checked
    for an ``encoder`` checkpoint or a backbone trained on the pool."""
    if encoder is not None:
        return
    if backbone == AUTO:
        if weights is None or not pretrained_installed():
            return
        backbone, size = AUTO_PRETRAINED, size or PHOTO_INPUT
    elif not is_pretrained(backbone):
        return
    check_pretrained(backbone, weights, size)  # frozen or fine-tuned, the same file at the same side


@dataclass(frozen=True)
class EncoderRequest:
    """What the user asked for (the :class:`selector.api.Selector` arguments about the encoder).

    ``backbone``: a registered name or "auto"; ``mode``: auto, frozen or finetune; ``encoder``: a checkpoint
    to use as it is (then the backbone options do not apply); ``time_budget`` in minutes; ``pixel_view``:
    None for the default (the automatic backbone's choice; off for a backbone or encoder named explicitly);
    ``precision`` of a frozen pretrained backbone: auto, float32 or bfloat16
    (:func:`selector.embed.resolve_precision`)."""

    backbone: str = AUTO
    mode: str = AUTO
    encoder: str | os.PathLike | None = None
    weights: str | os.PathLike | None = None
    backbone_size: int | None = None
    loss: str = "simclr"
    epochs: int | None = None
    time_budget: float | None = None
    batch_size: int = 256
    seed: int = 0
    flip: bool = True
    autoencoder: float = 0.0
    pixel_view: bool | None = None
    precision: str = "auto"


def train_config(request: EncoderRequest, n: int, backbone: str) -> TrainConfig:
    """The training configuration of ``request`` for a pool of ``n`` images and the resolved ``backbone``."""
    if request.time_budget is not None:  # the budget plans the steps; epochs, if given, caps them
        kw: dict[str, Any] = {"epochs": request.epochs or 0, "time_budget_s": float(request.time_budget) * 60.0}
    else:
        kw = {"epochs": request.epochs or auto_epochs(n)}
    if is_pretrained(backbone):
        kw["lr"] = TrainConfig.lr / 10  # fine-tuning pretrained weights: a tenth of the from-scratch rate
    if request.loss in TRAIN_PARAMS:  # supcon-spread: the paper's temperature and weights
        kw["loss_params"] = dict(TRAIN_PARAMS[request.loss])
    return TrainConfig(loss=request.loss, batch_size=request.batch_size, seed=request.seed, flip=request.flip,
                       autoencoder=request.autoencoder, **kw)


def loss_uses_labels(loss: str) -> bool:
    """Whether the loss trains with known labels (others ignore them: neither training nor the key changes)."""
    return bool(getattr(LOSSES.get(loss), "needs_labels", False))


# -- the input a pool is read at, the cache key --------------------------------------------------

def encoder_input(encoder: str | os.PathLike | None, image_size: int | None = None, what: str = "image_size"
                  ) -> tuple[int | None, int | None]:
    """(image size, channels) a pool must be read at for ``encoder`` (a checkpoint path, or None to
    train one: then ``image_size`` and any channel count). Raises CheckpointError for a checkpoint
    without a valid input size and ValueError when ``image_size`` (named ``what`` in the message)
    differs from the encoder's."""
    if encoder is None:
        return image_size, None
    cfg = read_checkpoint(encoder)["config"]
    try:
        size, channels = int(cfg["image_size"]), int(cfg["in_channels"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{encoder}: the stored configuration has no valid input size") from e
    if image_size is not None and image_size != size:
        raise ValueError(f"encoder {encoder} expects {size} px images, but {what} {image_size} was given; "
                         f"leave {what} out")
    return size, channels


def encoder_cache_key(pool_key: str, encoder_config: Mapping[str, Any], train_config: Mapping[str, Any],
                      labels: np.ndarray | None = None, world_size: int = 1) -> str:
    """The name (``encoder-<key>.pt``) of a trained encoder in the cache: a hash of the pool's content
    key, the encoder and training configurations, the known labels that trained it, the package version
    and the training recipe's code (:func:`selector.checkpoint.recipe_digest`), so an upgrade that changes
    how encoders are trained never reuses one cached before it; and the number of processes that
    trained it when above 1 (N processes of batch b train with the global batch N*b)."""
    h = hashlib.blake2b(digest_size=10)
    h.update(f"selector {_version.__version__}\nrecipe {recipe_digest()}\n".encode())
    h.update(pool_key.encode())
    h.update(repr(sorted(dict(encoder_config).items())).encode())
    h.update(repr(sorted(dict(train_config).items())).encode())
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    if world_size > 1:
        h.update(f"\nprocesses {int(world_size)}".encode())
    return h.hexdigest()


# -- the plan ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncoderPlan:
    """The encoder :meth:`selector.api.Selector.fit` uses for a pool, decided before any slow work.

    Attributes:
        backbone: the backbone's registered name (auto resolved); reason: why, for the summary.
        mode: "frozen" (no training) or "trained" (on the pool, from pretrained weights if any).
        encoder: its configuration; train: the training configuration (None when nothing is trained).
        image_size, channels: the side and channel count the whole pool is decoded at (for training, the
            pixel view, or an encoder that embeds at the pool's side).
        pixel_view: whether the pixel view is concatenated to the embedding.
        read_side: the side images are decoded at for the embedding (``image_size``, or for a frozen
            pretrained backbone its input side capped by the images' own size, :func:`selector.pool.read.decode_side`).
        streams: whether the embedding reads the images a chunk at a time at ``read_side`` (a frozen
            pretrained backbone) instead of from the decoded pool.
        precision: "float32" or "bfloat16", what the network runs in when embedding.
        checkpoint: the encoder file to load as it is (``--encoder``), else None.
        weights: a pretrained backbone's weights file (None: its default).
        seed: seeds training, or the random weights of a frozen backbone trained on nothing.
        uses_labels: whether known labels train the encoder (the loss uses them).
        cache_name: the trained encoder's file name in ``<cache>/encoders`` (None when nothing is trained).
    """

    backbone: str
    mode: str
    reason: str
    encoder: EncoderConfig
    train: TrainConfig | None
    image_size: int
    channels: int
    pixel_view: bool
    read_side: int = 0
    streams: bool = False
    precision: str = "float32"
    checkpoint: Path | None = None
    weights: str | os.PathLike | None = None
    seed: int = 0
    uses_labels: bool = False
    cache_name: str | None = None

    @property
    def needs_images(self) -> bool:
        """Whether the whole pool is decoded at ``image_size`` (to train, for the pixel view, or to embed)."""
        return self.train is not None or self.pixel_view or not self.streams


def plan_encoder(request: EncoderRequest, fmt: PoolFormat, n_images: int, *, pool_key: str = "",
                 labels: np.ndarray | None = None, world_size: int = 1, installed: bool | None = None,
                 device: torch.device | str = "cpu") -> EncoderPlan:
    """The :class:`EncoderPlan` of ``request`` for a pool of ``n_images`` images of format ``fmt``
    (:class:`selector.pool.PoolFormat`: channels, decoding side, image sizes). ``pool_key``, ``labels`` (known
    labels, -1 unknown) and ``world_size`` (processes that train) name the trained encoder in the cache;
    ``installed``: whether the pretrained extra is (default: looked up); ``device``: where it runs (the
    precision depends on it). Reads no image: a checkpoint's configuration, or a pretrained backbone's weights
    file, checked to load, fit and run at its side (:func:`check_pretrained`), before the pool is decoded."""
    channels, image_size = fmt.channels, fmt.size
    if request.encoder is not None:
        path = Path(request.encoder)
        stored = read_checkpoint(path)["config"]
        try:
            cfg = EncoderConfig(**stored)
        except TypeError as e:
            raise CheckpointError(f"{path}: weights do not fit the stored architecture: {e}") from e
        if cfg.in_channels != channels or cfg.image_size != image_size:
            raise ValueError(f"encoder {path} expects {cfg.in_channels}-channel {cfg.image_size} px images, "
                             f"the pool has {channels}-channel {image_size} px")
        return EncoderPlan(cfg.arch, cfg.mode, f"encoder file {path}", cfg, None, image_size, channels,
                           bool(request.pixel_view), read_side=image_size, checkpoint=path, seed=request.seed)
    choice = resolve_backbone(request.backbone, request.mode, channels, fmt.short_side, n_images, installed)
    name, mode = choice.backbone, choice.mode
    pixel_view = choice.pixel_view if request.pixel_view is None else bool(request.pixel_view)
    cfg = encoder_config(name, channels, image_size, mode, size=request.backbone_size or choice.input_size,
                         weights=request.weights)
    common = dict(pixel_view=pixel_view, weights=request.weights, seed=request.seed)
    if mode == "frozen":
        if not get_backbone(name).pretrained:  # a random-weight baseline: embedded at the pool's side
            return EncoderPlan(name, mode, choice.reason, cfg, None, image_size, channels, read_side=image_size,
                               **common)
        return EncoderPlan(name, mode, choice.reason, cfg, None, image_size, channels,
                           read_side=decode_side(cfg.input_size, fmt.short_side_p90, fmt.size), streams=True,
                           precision=resolve_precision(choice.precision if request.precision == "auto"
                                                       else request.precision, device), **common)
    tc = train_config(request, n_images, name)
    uses_labels = loss_uses_labels(request.loss)
    key = encoder_cache_key(pool_key, cfg.to_dict(), tc.to_dict(), labels if uses_labels else None,
                            world_size=world_size)
    return EncoderPlan(name, mode, choice.reason, cfg, tc, image_size, channels, read_side=image_size,
                       uses_labels=uses_labels, cache_name=f"encoder-{key}.pt", **common)


# -- the encoder of a plan -----------------------------------------------------------------------

def get_encoder(plan: EncoderPlan, images: np.ndarray, device: torch.device | str, *,
                cache_dir: str | os.PathLike | None = None, labels: np.ndarray | None = None, progress: bool = False,
                dist=None) -> tuple[Encoder, bool, Path | None]:
    """(encoder, whether a finished training was found in the cache, its checkpoint path or None) for
    ``plan`` and the pool's ``images``: the checkpoint loaded, the frozen backbone built, or the encoder
    trained, through ``<cache_dir>/encoders/<plan.cache_name>`` (a finished one is reused, an interrupted
    one resumed). ``dist``: train on every process of a torchrun job (rank 0 looks at the cache)."""
    if plan.checkpoint is not None:
        enc, _ = load_encoder(plan.checkpoint, map_location="cpu")
        return enc.to(device), False, None
    if plan.train is None:  # nothing to train: the backbone's features (cached by content as any other)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(plan.seed)  # a random-weight baseline is the same for the same seed
            return Encoder(plan.encoder, weights=plan.weights).eval().to(device), False, None
    ckpt = None
    if cache_dir is not None:
        folder = Path(cache_dir) / "encoders"
        folder.mkdir(parents=True, exist_ok=True)
        ckpt = folder / plan.cache_name

    def cached() -> bool:
        if ckpt is None or not ckpt.exists():
            return False
        try:
            return checkpoint_finished(read_checkpoint(ckpt))
        except CheckpointError as e:  # our own cache entry, damaged (truncated, disk error): redo it
            log.warning("ignoring damaged cached encoder %s (%s); training again", ckpt,
                        str(e).replace(f"{ckpt}: ", "").replace(f" {ckpt}", ""))
            ckpt.unlink(missing_ok=True)
            return False

    found = cached() if dist is None else dist.on_main(cached)  # rank 0 alone writes the checkpoint
    enc = train_encoder(images, plan.encoder, plan.train, device, checkpoint_path=ckpt,
                        labels=labels if plan.uses_labels else None, progress=progress, weights=plan.weights,
                        dist=dist)
    return enc, found, ckpt


def pretrained_features(images_uint8: np.ndarray, name: str = AUTO_PRETRAINED, size: int | None = None,
                        device: str | torch.device = "cpu", batch_size: int = 256,
                        weights: str | os.PathLike | None = None) -> np.ndarray:
    """Frozen features of a pretrained backbone: (n, C, S, S) uint8 -> (n, d) float32, L2-normalised.

    The same code path as ``Selector(backbone=name, backbone_mode="frozen")``: an :class:`Encoder`
    in frozen mode and :func:`selector.embed.embed_array`.
    """
    images_uint8 = np.asarray(images_uint8)
    if images_uint8.ndim != 4 or images_uint8.shape[1] not in (1, 3) or images_uint8.dtype != np.uint8:
        raise ValueError(f"images must be (n, 1 or 3, S, S) uint8, got {images_uint8.shape} {images_uint8.dtype}")
    cfg = encoder_config(name, images_uint8.shape[1], images_uint8.shape[-1], "frozen", size=size, weights=weights)
    enc = Encoder(cfg, weights=weights)
    return embed_array(enc, images_uint8, device, batch_size=batch_size)
