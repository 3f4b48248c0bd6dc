"""Backbone registry: name -> :class:`BackboneSpec`.

A family module (``resnet.py``, ``efficientnet_lite.py``, ...) registers its backbones when imported
(``register_backbone(BackboneSpec(...))``); ``selector/backbones/__init__.py`` imports every family module.
A prefix family (``torchvision:NAME``) registers a function that builds the spec of any NAME on demand
(:func:`register_family`). The encoder, the weights lookup, ``--backbone`` / ``--arch`` validation and their
help texts all read this registry, so adding a backbone is one family file and its import line.

This module imports neither torch nor any family: specs hold builders, called only when an encoder is built.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

KINDS = ("trained", "pretrained")

#: Input normalisation of torchvision's ImageNet weights (mean, std per RGB channel).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """What the encoder needs to know about one backbone.

    Attributes:
        name: the ``--backbone`` name.
        kind: ``"trained"`` (trained on the pool from random weights; images normalised as
            ``(x - 0.5) / 0.25``) or ``"pretrained"`` (weights from a file, used frozen or fine-tuned; grayscale
            replicated to 3 channels, images resized to the input side and normalised with ``mean`` / ``std``).
        build: ``build(in_channels, side) -> nn.Module`` with random weights. A trained backbone maps
            (B, in_channels, side, side) to (B, dim) features; ``side`` is the pool's image side. A pretrained
            one is the network its weights file fits (classifier included, removed after loading); ``side``
            is its input side.
        dim: feature width; None when only known once built (torchvision's models: the classifier's input).
        help: one line for ``--help``.
        native_size: the input side a pretrained backbone's weights were trained at (for reference: the
            network runs at the encoder's input side, ``--backbone-size``).
        mean, std: input normalisation of a pretrained backbone's weights.
        feature_method: a pretrained network's method returning its last feature maps (B, C, h, w), averaged
            over h and w; None: the network's own forward once its classifier is removed.
        classifier: attributes searched for the pretrained network's classifier; its last linear layer is
            removed, so the features are what fed it.
        default_weights: ``() -> Path`` of the weights file used when none is given (nothing is downloaded);
            None: a file must be given (``--weights``).
        requires: modules that must be importable to use it (an optional extra).
    """

    name: str
    kind: str
    build: Callable[[int, int], Any]
    dim: int | None
    help: str
    native_size: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    feature_method: str | None = None
    classifier: tuple[str, ...] = ("fc", "classifier", "heads", "head")
    default_weights: Callable[[], Path] | None = None
    requires: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"backbone {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.name or self.name == "auto" or any(c.isspace() for c in self.name):
            raise ValueError(f"backbone name {self.name!r} is reserved or empty or holds spaces")

    @property
    def pretrained(self) -> bool:
        return self.kind == "pretrained"

    def installed(self) -> bool:
        """True when every module of :attr:`requires` is importable."""
        return all(importlib.util.find_spec(m) is not None for m in self.requires)


@dataclass(frozen=True)
class Family:
    """Backbones named ``<prefix>NAME``: ``resolve(NAME)`` builds the spec (a ValueError for an unknown NAME)."""

    prefix: str
    kind: str
    resolve: Callable[[str], BackboneSpec]
    help: str


class UnknownBackbone(ValueError):
    """A name that no registered backbone or family has."""


_SPECS: dict[str, BackboneSpec] = {}
_FAMILIES: dict[str, Family] = {}
_RESOLVED: dict[str, BackboneSpec] = {}  # family members looked up so far


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Make ``spec`` findable by its name; a second spec under a taken name is an error."""
    old = _SPECS.get(spec.name)
    if old is not None and old != spec:
        raise ValueError(f"backbone name {spec.name!r} is already registered")
    if _family_of(spec.name) is not None:
        raise ValueError(f"backbone name {spec.name!r} falls in the family {_family_of(spec.name).prefix}NAME")
    _SPECS[spec.name] = spec
    return spec


def register_family(prefix: str, resolve: Callable[[str], BackboneSpec], help: str, kind: str = "pretrained") -> None:
    """Register the backbones ``<prefix>NAME`` (``prefix`` ends with ``:``), built by ``resolve(NAME)``."""
    if not prefix.endswith(":"):
        raise ValueError(f"a family prefix ends with ':', got {prefix!r}")
    if kind not in KINDS:
        raise ValueError(f"family {prefix}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if prefix in _FAMILIES and _FAMILIES[prefix].resolve is not resolve:
        raise ValueError(f"backbone family {prefix!r} is already registered")
    _FAMILIES[prefix] = Family(prefix, kind, resolve, help)


def _family_of(name: str) -> Family | None:
    return next((f for p, f in _FAMILIES.items() if name.startswith(p)), None)


def backbone_names(kind: str | None = None) -> tuple[str, ...]:
    """Registered names, those trained on the pool first, each kind sorted by name, then the families as
    ``<prefix>NAME``; only those of ``kind`` if given."""
    out = sorted((n for n, s in _SPECS.items() if kind in (None, s.kind)), key=lambda n: (_SPECS[n].pretrained, n))
    out += sorted(f"{p}NAME" for p, f in _FAMILIES.items() if kind in (None, f.kind))
    return tuple(out)


def get_backbone(name: str) -> BackboneSpec:
    """The spec of ``name``; :class:`UnknownBackbone` (a ValueError) listing the choices if there is none."""
    spec = _SPECS.get(name) or _RESOLVED.get(name)
    if spec is not None:
        return spec
    family = _family_of(name)
    if family is None:
        raise UnknownBackbone(f"unknown backbone {name!r}; choose from {', '.join(backbone_names())}")
    spec = family.resolve(name[len(family.prefix):])
    if spec.name != name or spec.kind != family.kind:
        raise ValueError(f"family {family.prefix}NAME resolved {name!r} to a {spec.kind} backbone {spec.name!r}")
    _RESOLVED[name] = spec
    return spec


def is_pretrained(name: str) -> bool:
    """Whether ``name`` is a pretrained backbone (by its registration; a family member is not looked up)."""
    spec = _SPECS.get(name)
    if spec is not None:
        return spec.pretrained
    family = _family_of(name)
    return family is not None and family.kind == "pretrained"


def describe_backbones(kind: str | None = None) -> str:
    """``name: help`` of every backbone (of ``kind`` if given), joined by semicolons: for ``--help``."""
    items = [f"{n}: {(_SPECS.get(n) or _FAMILIES[n[:-4]]).help}" for n in backbone_names(kind)]
    return "; ".join(items)
