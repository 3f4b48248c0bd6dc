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

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from . import _version
from .backbones import (INSTALL_HINT, Encoder, EncoderConfig, UnknownBackbone, backbone_names, file_digest,
                        get_backbone, is_pretrained, weights_path)
from .checkpoint import CheckpointError, checkpoint_finished, load_encoder, read_checkpoint, recipe_digest
from .embed import embed_array
from .losses import LOSSES, TRAIN_PARAMS
from .train import TrainConfig, auto_epochs, train_encoder

log = logging.getLogger(__name__)

AUTO = "auto"
MODES = ("auto", "frozen", "finetune")  # auto: frozen for a pretrained backbone, trained for the others

#: Input side of a pretrained backbone when none is given. A starting point for 32 px pools (CPU time
#: grows with its square); the embedding benchmark sets it.
DEFAULT_INPUT_SIZE = 96

#: What ``--backbone auto`` chooses with the pretrained extra installed, and without it.
AUTO_PRETRAINED = "efficientnet-lite0"
AUTO_TRAINED = "resnet-small"


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


def choose_backbone(channels: int, image_size: int, n_images: int, installed: bool) -> tuple[str, str, str]:
    """The ``--backbone auto`` rule: (backbone name, "frozen" or "trained", reason for the summary).

    The rule, set by the embedding benchmark (``benchmarks/results/embeddings/summary.md``): with the
    ``pretrained`` extra installed, EfficientNet-Lite0 frozen for every pool (with the pixel view that
    ``auto`` adds, :mod:`selector.pixels`, it is at least as good as PCA of the pixels on every
    dataset and pool shape measured, and far ahead on photos, with no training); without it,
    resnet-small trained on the pool.
    """
    del channels, image_size, n_images  # part of the rule's inputs; the current rule does not use them
    if installed:
        return (AUTO_PRETRAINED, "frozen",
                "chosen automatically: ImageNet-pretrained EfficientNet-Lite0, frozen, with the pixel view")
    return (AUTO_TRAINED, "trained",
            f"the pretrained extra is not installed ({INSTALL_HINT}): {AUTO_TRAINED} trained on the pool")


def resolve_backbone(name: str, mode: str, channels: int, image_size: int, n_images: int,
                     installed: bool | None = None) -> tuple[str, str, str]:
    """(backbone, "frozen" or "trained", reason) for backbone ``name`` (or auto) in ``mode`` on a pool of
    ``n_images`` images of ``channels`` x ``image_size`` px. ``installed``: whether the pretrained extra is
    (default: looked up)."""
    if name != AUTO:
        return name, resolve_mode(name, mode), f"{name} as asked"
    if installed is None:
        installed = pretrained_installed()
    name, chosen_mode, reason = choose_backbone(channels, image_size, n_images, installed)
    return name, chosen_mode if mode == AUTO else resolve_mode(name, mode), reason


# -- configurations ------------------------------------------------------------------------------

def encoder_config(name: str, in_channels: int, image_size: int, mode: str, size: int | None = None,
                   weights: str | os.PathLike | None = None, proj_dim: int = 128) -> EncoderConfig:
    """The :class:`EncoderConfig` of backbone ``name`` in ``mode`` ("frozen" or "trained") for a pool of
    ``in_channels`` x ``image_size`` px images. For a pretrained backbone it records the input side and the
    weights file's digest (so caches and checkpoints tell weights apart)."""
    if mode not in ("frozen", "trained"):
        raise ValueError(f"mode must be 'frozen' or 'trained', got {mode!r}")
    check_backbone(name)
    if not get_backbone(name).pretrained:
        return EncoderConfig(arch=name, in_channels=in_channels, image_size=image_size, proj_dim=proj_dim,
                             mode=mode)
    size = int(size or DEFAULT_INPUT_SIZE)
    if size < 32:
        raise ValueError(f"input size of a pretrained backbone must be at least 32 px, got {size}")
    digest = file_digest(weights_path(name, weights))
    return EncoderConfig(arch=name, in_channels=in_channels, image_size=image_size, proj_dim=proj_dim, mode=mode,
                         input_size=size, weights_digest=digest)


@dataclass(frozen=True)
class EncoderRequest:
    """What the user asked for (the :class:`selector.api.Selector` arguments about the encoder).

    ``backbone``: a registered name or "auto"; ``mode``: auto, frozen or finetune; ``encoder``: a checkpoint
    to use as it is (then the backbone options do not apply); ``time_budget`` in minutes; ``pixel_view``:
    None for the default (on with the automatic backbone)."""

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

    def adds_pixel_view(self) -> bool:
        """Whether the pixel view is concatenated: as asked, else only with the automatic backbone."""
        if self.pixel_view is not None:
            return bool(self.pixel_view)
        return self.encoder is None and self.backbone == AUTO


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
        image_size, channels: the side and channel count the pool is read at.
        pixel_view: whether the pixel view is concatenated to the embedding.
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
    checkpoint: Path | None = None
    weights: str | os.PathLike | None = None
    seed: int = 0
    uses_labels: bool = False
    cache_name: str | None = None


def plan_encoder(request: EncoderRequest, channels: int, image_size: int, n_images: int, *, pool_key: str = "",
                 labels: np.ndarray | None = None, world_size: int = 1, installed: bool | None = None) -> EncoderPlan:
    """The :class:`EncoderPlan` of ``request`` for a pool of ``n_images`` images of ``channels`` x
    ``image_size`` px. ``pool_key``, ``labels`` (known labels, -1 unknown) and ``world_size`` (processes that
    train) name the trained encoder in the cache; ``installed``: whether the pretrained extra is (default:
    looked up). Reads only small files: a checkpoint's configuration, a weights file's digest."""
    pixel_view = request.adds_pixel_view()
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
        return EncoderPlan(cfg.arch, cfg.mode, f"encoder file {path}", cfg, None, image_size, channels, pixel_view,
                           checkpoint=path, seed=request.seed)
    name, mode, reason = resolve_backbone(request.backbone, request.mode, channels, image_size, n_images, installed)
    cfg = encoder_config(name, channels, image_size, mode, size=request.backbone_size, weights=request.weights)
    common = dict(pixel_view=pixel_view, weights=request.weights, seed=request.seed)
    if mode == "frozen":
        return EncoderPlan(name, mode, reason, cfg, None, image_size, channels, **common)
    tc = train_config(request, n_images, name)
    uses_labels = loss_uses_labels(request.loss)
    key = encoder_cache_key(pool_key, cfg.to_dict(), tc.to_dict(), labels if uses_labels else None,
                            world_size=world_size)
    return EncoderPlan(name, mode, reason, cfg, tc, image_size, channels, uses_labels=uses_labels,
                       cache_name=f"encoder-{key}.pt", **common)


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
