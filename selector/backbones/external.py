"""Shared by the families whose model code lives in another package or repository (``dinov2:``, ``timm:``,
``open_clip:``): the module :class:`PretrainedBackbone` loads their weights into, the weights file found in
the Hugging Face cache without any download, and the error that says how to fetch what is missing.

Imported by those families only when a backbone is built or its weights are looked up (it imports torch).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from .weights import PretrainedError

#: Suffixes of the weights files ``load_state`` reads (``torch.load``); a safetensors file is not one of them.
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class FeatureNet(nn.Module):
    """A pretrained network whose own output is the embedding (a ViT's class token, a CLIP image tower's
    projection, a timm model built without its classifier), shaped as :class:`PretrainedBackbone` expects.

    PretrainedBackbone loads the weights file into the module its spec builds and then removes the last
    linear layer of the spec's ``classifier`` attribute, reading the feature width from it. Here loading goes
    to the wrapped network (the file holds the network's own keys, after ``adapt(state)`` maps it: a
    classifier the embedding does not use dropped, a CLIP file's image tower taken), and ``head`` is a linear
    layer of the feature width that only exists to be removed (``classifier=("head",)``): the embedding is
    ``net(x)``.
    """

    def __init__(self, net: nn.Module, dim: int, adapt: Callable[[dict], dict] | None = None):
        super().__init__()
        self.net = net
        self.head = nn.Linear(int(dim), 1)  # removed once loaded; its input width is the embedding's
        self._adapt = adapt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))

    def load_state_dict(self, state_dict: Mapping, strict: bool = True, assign: bool = False):
        state = unwrap_state(state_dict)
        if self._adapt is not None:
            try:
                state = self._adapt(state)
            except Exception as e:  # noqa: BLE001 - a file of another network: reported as one that does not fit
                raise RuntimeError(f"its tensors do not map to this network ({type(e).__name__}: {e})") from e
        return self.net.load_state_dict(state, strict=strict, assign=assign)


def unwrap_state(state: Mapping) -> Mapping:
    """The tensors of a weights file: a training checkpoint's ``state_dict`` / ``model`` entry when the file is
    one, with the prefixes of a DDP or ``torch.compile`` wrapper (``module.``, ``_orig_mod.``) removed."""
    for key in ("state_dict", "model"):
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            state = inner
            break
    prefixes = ("module.", "_orig_mod.")
    if not any(k.startswith(prefixes) for k in state):
        return state  # as loaded: an OrderedDict's _metadata tells load_state_dict the modules' versions
    out = {}
    for k, v in state.items():
        for prefix in prefixes:
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def torch_hub_dir() -> Path:
    """torch.hub's folder: ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``)."""
    return Path(torch.hub.get_dir())


def hf_cache() -> Path:
    """The Hugging Face cache folder (``HF_HUB_CACHE``, or ``HF_HOME/hub``; default ``~/.cache/huggingface/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_cached(repo_id: str, filenames: tuple[str, ...], revision: str | None = None) -> list[Path]:
    """Those of ``filenames`` of the Hugging Face repository ``repo_id`` that are in the local cache, in the
    given order; nothing is downloaded nor asked of the network."""
    from huggingface_hub import try_to_load_from_cache

    found = []
    for name in filenames:
        path = try_to_load_from_cache(repo_id, name, cache_dir=hf_cache(), revision=revision)
        if isinstance(path, str) and os.path.isfile(path):  # None or a "known not to exist" marker otherwise
            found.append(Path(path))
    return found


def first_readable(name: str, found: list[Path], fetch: str) -> Path | None:
    """The first of ``found`` (weights files present, by preference) that ``torch.load`` reads; None when there
    is none. A safetensors file is not read here: when one is all there is, a one-line error says how to
    fetch the torch file beside it (``fetch``)."""
    for path in found:
        if path.suffix in TORCH_SUFFIXES:
            return path
    if found:
        raise PretrainedError(f"backbone {name}: only {found[0]} is cached, a safetensors file, which is not read "
                              f"here; fetch the torch file of the same weights once: {fetch}")
    return None
