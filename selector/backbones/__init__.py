"""Backbones: a registry of name -> :class:`BackboneSpec` (builder, feature width, kind) and the encoder
built from it.

Importing a family module registers its backbones; the import lines below are the registration. A new
backbone is one file here (a builder and a ``register_backbone(BackboneSpec(...))`` line) plus its import
line; ``--backbone``, ``--arch``, the encoder, the weights lookup and the help texts read the registry.
"""
# Importing a family module registers its backbones.
from . import (
                       dinov2_hub,  # noqa: E402,F401
                       efficientnet_lite,  # noqa: E402,F401
                       open_clip_models,  # noqa: E402,F401
                       resnet,  # noqa: E402,F401
                       timm_models,  # noqa: E402,F401
                       torchvision,  # noqa: E402,F401
)
from .encoder import Encoder, EncoderConfig, PretrainedBackbone, strip_classifier
from .registry import (
                       BackboneSpec,
                       UnknownBackbone,
                       backbone_names,
                       describe_backbones,
                       get_backbone,
                       is_pretrained,
                       register_backbone,
                       register_family,
)
from .resnet import resnet18_cifar, small_resnet  # noqa: E402
from .weights import (
                       INSTALL_HINT,
                       PretrainedError,
                       check_digest,
                       default_weights_path,
                       file_digest,
                       load_state,
                       weights_path,
)

#: The backbones trained on the pool from random weights (``--arch``).
ARCHS = backbone_names("trained")

__all__ = ["ARCHS", "BackboneSpec", "Encoder", "EncoderConfig", "INSTALL_HINT", "PretrainedBackbone",
           "PretrainedError", "UnknownBackbone", "backbone_names", "check_digest", "default_weights_path",
           "describe_backbones", "file_digest", "get_backbone", "is_pretrained", "load_state", "register_backbone",
           "register_family", "resnet18_cifar", "small_resnet", "strip_classifier", "weights_path"]
