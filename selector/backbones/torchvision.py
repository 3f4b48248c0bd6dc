"""``torchvision:NAME``: any ``torchvision.models`` classifier (``resnet18``, ``efficientnet_b0``,
``mobilenet_v3_large``, ``convnext_tiny``, ...), used offline.

Weights from torchvision's own cache, ``torch.hub.get_dir()/checkpoints/<file of NAME's DEFAULT weights>``
(``$TORCH_HOME``), or from a file given with ``weights=`` / ``--weights FILE``; never downloaded. The
classifier's last linear layer is removed, so the features are what feeds it. Input normalisation: ImageNet
mean/std, as torchvision's weights.
"""
from __future__ import annotations

import os
from pathlib import Path

from .registry import BackboneSpec, register_family
from .weights import PretrainedError

PREFIX = "torchvision:"


def _resolve(model: str) -> BackboneSpec:
    import torchvision

    if model not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"unknown torchvision model {model!r} in backbone {PREFIX + model!r}; "
                         f"torchvision.models has e.g. resnet18, efficientnet_b0, convnext_tiny")

    def build(in_channels: int, side: int):
        del in_channels, side  # 3 channels; every classifier pools its features globally (a ViT: see encoder)
        return torchvision.models.get_model(model, weights=None, **_build_options(model))

    def default_weights() -> Path:
        import torch

        try:
            url = torchvision.models.get_model_weights(model).DEFAULT.url
        except (ValueError, KeyError, AttributeError) as e:
            raise PretrainedError(f"torchvision has no pretrained weights for {model!r}: {e}") from None
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)

    return BackboneSpec(PREFIX + model, "pretrained", build, None, f"torchvision's {model} with its ImageNet weights",
                        native_size=_native_size(model), default_weights=default_weights)


#: Models whose random initialisation is slow (scipy's truncated normal) and warns that its default will
#: change: the weights file replaces it anyway, so it is skipped.
_SKIP_INIT = ("inception_v3", "googlenet")


def _build_options(model: str) -> dict:
    return {"init_weights": False} if model in _SKIP_INIT else {}


def _native_size(model: str) -> int | None:
    """The crop side of the DEFAULT weights' preprocessing, where torchvision records one."""
    import torchvision

    try:
        crop = torchvision.models.get_model_weights(model).DEFAULT.transforms.keywords.get("crop_size")
    except (ValueError, KeyError, AttributeError):
        return None
    return int(crop) if isinstance(crop, int) else None


register_family(PREFIX, _resolve, "any torchvision.models classifier, e.g. torchvision:resnet18 (ImageNet "
                "weights from torchvision's cache $TORCH_HOME/hub/checkpoints or --weights; never downloaded)")
