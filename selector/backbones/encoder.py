"""The encoder: a registered backbone (:mod:`selector.backbones.registry`) plus a projection head
(Chen et al., 2020). The backbone output, not the projection, is the embedding.

A backbone trained on the pool takes images normalised as ``(x - 0.5) / 0.25``; a pretrained one is wrapped
in :class:`PretrainedBackbone` (grayscale replicated to 3 channels, resized to its input side, normalised as
its weights expect, classifier removed). In ``mode="frozen"`` there is no head and nothing is trained.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .registry import BackboneSpec, UnknownBackbone, backbone_names, get_backbone
from .weights import PretrainedError, check_digest, load_state, weights_path

ENCODER_MODES = ("trained", "frozen")


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to rebuild an encoder from a checkpoint (stored beside its weights)."""

    arch: str = "resnet-small"
    in_channels: int = 3
    image_size: int = 32
    proj_dim: int = 128
    mode: str = "trained"  # "trained" (on the pool; from pretrained weights if any) or "frozen" (no training)
    input_size: int = 0  # network input side of a pretrained backbone (images are resized to it); 0: image_size
    weights_digest: str = ""  # content digest of a pretrained backbone's weights file

    def to_dict(self) -> dict:
        return asdict(self)


class Encoder(nn.Module):
    """Backbone + 2-layer MLP projection head.

    ``forward(x)`` -> (B, proj_dim) projections for the contrastive loss; ``embed(x)`` -> (B, dim)
    backbone features, the embedding used for selection; ``forward(x, features=True)`` -> both
    (features, projections), in one pass (for a decoder that reads the embedding). ``x`` is (B, C, S, S)
    float in [0, 1]. ``weights``: a pretrained backbone's weights file (default: its spec's); with
    ``load_weights=False`` its weights stay random (a checkpoint's own are loaded next).
    """

    def __init__(self, config: EncoderConfig, weights: str | os.PathLike | None = None, load_weights: bool = True):
        super().__init__()
        try:
            spec = get_backbone(config.arch)
        except UnknownBackbone:
            raise ValueError(f"unknown encoder architecture {config.arch!r}; choose from "
                             f"{', '.join(backbone_names())}") from None
        if config.mode not in ENCODER_MODES:
            raise ValueError(f"unknown encoder mode {config.mode!r}; use trained or frozen")
        self.config = config
        self.pretrained = spec.pretrained
        if spec.pretrained:
            if load_weights and config.weights_digest:
                check_digest(spec.name, weights, config.weights_digest)
            self.backbone = PretrainedBackbone(spec.name, config.input_size or config.image_size, weights=weights,
                                               load=load_weights)
        else:
            self.backbone = spec.build(config.in_channels, config.image_size)
        self.dim = spec.dim if spec.dim is not None else _feature_width(self.backbone, config)
        if config.mode == "frozen":  # nothing is trained: no head (and no random weights in the cache key)
            self.head = None
        else:
            self.head = nn.Sequential(
                nn.Linear(self.dim, self.dim), nn.BatchNorm1d(self.dim), nn.ReLU(inplace=True),
                nn.Linear(self.dim, config.proj_dim),
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.pretrained:  # resizes and normalises as its weights expect
            return self.backbone(x)
        return self.backbone((x - 0.5) / 0.25)

    def forward(self, x: torch.Tensor, features: bool = False):
        if self.head is None:
            raise RuntimeError("a frozen encoder has no projection head; it is not trained")
        h = self.embed(x)
        return (h, self.head(h)) if features else self.head(h)


@torch.no_grad()
def _feature_width(backbone: nn.Module, config: EncoderConfig) -> int:
    """The width of a backbone's features: its ``dim`` attribute, else measured on one blank image."""
    dim = getattr(backbone, "dim", None)
    if dim is not None:
        return int(dim)
    was_training = backbone.training
    backbone.eval()  # no batch statistics are updated
    x = torch.zeros(1, config.in_channels, config.image_size, config.image_size)
    width = int(backbone(x).flatten(1).shape[1])
    backbone.train(was_training)
    return width


class PooledFeatures(nn.Module):
    """``net.<method>(x)`` feature maps (B, C, h, w) averaged over h and w: (B, C)."""

    def __init__(self, net: nn.Module, method: str):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.net, self.method)(x).mean(dim=(2, 3))


def strip_classifier(model: nn.Module, spec: BackboneSpec) -> int:
    """Replace the last linear layer of the classifier by an identity; returns its input width."""
    last = None
    for attr in spec.classifier:
        sub = getattr(model, attr, None)
        if sub is None:
            continue
        for mod_name, mod in sub.named_modules():
            if isinstance(mod, nn.Linear):
                last = (attr, sub, mod_name, mod)
    if last is None:
        raise PretrainedError(f"backbone {spec.name}: found no linear classifier ({', '.join(spec.classifier)}) "
                              "to remove")
    attr, sub, mod_name, lin = last
    if mod_name == "":
        setattr(model, attr, nn.Identity())
    else:
        parent = sub.get_submodule(mod_name.rsplit(".", 1)[0]) if "." in mod_name else sub
        setattr(parent, mod_name.rsplit(".", 1)[-1], nn.Identity())
    return int(lin.in_features)


def fixed_size(net: nn.Module) -> int | None:
    """The only input side ``net`` runs at, where it records one (torchvision's vision transformers hold it in
    ``image_size``: their position embedding has one entry per patch of that side); None: any side."""
    side = getattr(net, "image_size", None)
    if isinstance(side, (tuple, list)) and len(side) == 2 and side[0] == side[1]:
        side = side[0]
    return int(side) if isinstance(side, int) and not isinstance(side, bool) and side > 0 else None


def check_fixed_size(net: nn.Module, name: str, size: int) -> None:
    """A one-line PretrainedError when ``net`` (backbone ``name``) runs only at another side than ``size``."""
    side = fixed_size(net)
    if side is not None and side != size:
        raise PretrainedError(f"backbone {name} runs only at {side} px input, not {size} px: leave --backbone-size "
                              f"out or give --backbone-size {side}")


@torch.no_grad()
def probe_size(net: nn.Module, spec: BackboneSpec, size: int) -> None:
    """Run ``net`` once on one blank ``size`` px image, so that a side too small for its layers (a kernel
    or pooling window larger than what is left of the image) is a one-line PretrainedError naming the side
    and the backbone (``spec``) when the encoder is built, not a failure in the middle of embedding a pool."""
    was_training = net.training
    net.eval()  # no batch statistics are updated; a batch of one is allowed
    try:
        net(torch.zeros(1, 3, size, size))
    except (RuntimeError, ValueError, AssertionError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        hint = f", e.g. its native {spec.native_size}" if spec.native_size and spec.native_size > size else ""
        raise PretrainedError(f"backbone {spec.name} cannot run at {size} px input ({first[:160]}); give a larger "
                              f"--backbone-size{hint}") from None
    finally:
        net.train(was_training)


class PretrainedBackbone(nn.Module):
    """(B, C, S, S) float in [0, 1] -> (B, dim) pooled features of a pretrained network.

    Grayscale input is replicated to 3 channels; images are resized (bilinear, antialiased) to
    ``size`` and normalised as the weights expect. With ``load=False`` the weights stay random (for
    rebuilding a checkpoint, whose own weights are loaded next). Built with its weights, the network runs
    once on a blank image of ``size`` px (:func:`probe_size`), and a network that runs at one side only
    refuses any other (:func:`check_fixed_size`): both one-line errors naming the side.
    """

    def __init__(self, name: str, size: int, weights: str | os.PathLike | None = None, load: bool = True):
        super().__init__()
        spec = get_backbone(name)
        if not spec.pretrained:
            raise ValueError(f"{name!r} is not a pretrained backbone")
        path = weights_path(name, weights) if load else None  # a missing file is reported before any build
        net = spec.build(3, int(size))
        check_fixed_size(net, name, int(size))
        if path is not None:
            state = load_state(path, name)
            try:
                net.load_state_dict(state, strict=True)
            except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as e:
                # torch's first line only names the module ("Error(s) in loading state_dict for X:"): with the next
                lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
                raise PretrainedError(f"weights {path} do not fit backbone {name}: "
                                      f"{' '.join(lines[:2])[:240]}") from None
            probe_size(net, spec, int(size))  # a checkpoint's network (load=False) ran at its size before
        dim = strip_classifier(net, spec)  # the ImageNet classifier is not part of the embedding
        self.name, self.size, self.dim = name, int(size), int(dim)
        self.features = net if spec.feature_method is None else PooledFeatures(net, spec.feature_method)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.size, self.size):
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                                          align_corners=False)
        f = self.features((x - self.mean) / self.std)
        return f.flatten(1)
