"""``open_clip:ARCH[/TAG]``: the image tower of an OpenCLIP model (``pip install 'selector[open-clip]'``), offline.

ARCH is one of ``open_clip.list_models()`` (``ViT-B-32``, ``ViT-B-16``, ``convnext_base``, ...), TAG one of
its pretrained weights (``open_clip.list_pretrained_tags_by_model(ARCH)``: ``laion2b_s34b_b79k``, ...).
Only the image tower is built (``open_clip.model._build_vision_tower``, as the CLIP model builds it: the
text tower is never used, and building it costs memory and, for Hugging Face text towers, a download). Its
output, the image embedding in the joint image-text space (CLIP's projection included), is the embedding.

Weights from ``--weights FILE`` (a whole CLIP file, whose ``visual.*`` tensors are taken, or the image
tower's alone) or, with a TAG, from where open_clip leaves them, never downloaded: the Hugging Face cache
(``$HF_HOME/hub``, the file of the tag's ``hf_hub`` repository), else ``~/.cache/clip`` (weights open_clip
fetches by URL). Input normalisation: the tag's mean/std (OpenAI's CLIP values by default); input side: the
model's image size (a plain ViT tower also runs at another side, its position table resampled as open_clip
does).
"""
from __future__ import annotations

import os
from pathlib import Path

from .registry import BackboneSpec, register_family
from .weights import PretrainedError

PREFIX = "open_clip:"
INSTALL = "pip install 'selector[open-clip]'"
HF_FILE = "open_clip_pytorch_model.bin"  # the torch-format file beside open_clip_model.safetensors
HF_SAFE_FILE = "open_clip_model.safetensors"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip.OPENAI_DATASET_MEAN / _STD, without importing it
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _hf_source(pcfg: dict) -> tuple[str, str] | None:
    """(repository, torch-format file) of a pretrained configuration's ``hf_hub`` entry ("org/repo/" or
    "org/repo/file"), or None."""
    hub = pcfg.get("hf_hub") or ""
    if not hub:
        return None
    repo, filename = os.path.split(hub)
    return repo, filename or HF_FILE


def fetch_command(arch: str, tag: str, pcfg: dict) -> str:
    """The command that fetches the weights of ARCH/TAG into open_clip's cache (on a machine with internet)."""
    source = _hf_source(pcfg)
    if source is not None:
        return f"hf download {source[0]} {source[1]}"
    return f"python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{tag}')\""


def _resolve(model: str) -> BackboneSpec:
    arch, _, tag = model.partition("/")
    try:
        import open_clip
    except ImportError:
        raise PretrainedError(f"backbone {PREFIX}{model} needs the open_clip_torch package: {INSTALL}") from None
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {arch!r} in backbone {PREFIX + model!r}; "
                         "open_clip.list_models() lists them, e.g. ViT-B-32, ViT-B-16, convnext_base")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag and tag not in tags:
        raise ValueError(f"open_clip has no weights {tag!r} for {arch} in backbone {PREFIX + model!r}; "
                         f"it has: {', '.join(tags) or 'none (pass --weights FILE without a tag)'}")
    pcfg = dict(open_clip.get_pretrained_cfg(arch, tag) or {}) if tag else {}
    mcfg = open_clip.get_model_config(arch)
    vision = dict(mcfg["vision_cfg"])
    native = vision.get("image_size", 224)
    native = int(native if isinstance(native, int) else native[-1])
    name, dim = PREFIX + model, int(mcfg["embed_dim"])

    def build(in_channels: int, side: int):
        del in_channels  # 3: the encoder replicates grayscale
        from open_clip.model import _build_vision_tower

        from .external import FeatureNet

        plain_vit = "timm_model_name" not in vision and isinstance(vision.get("layers"), int)
        if side != native and not plain_vit:  # the position tables of the others are not resampled here
            raise PretrainedError(f"backbone {name} runs at its own input side, {native} px, not {side}; leave "
                                  "--backbone-size out")
        quick_gelu = bool(mcfg.get("quick_gelu", False) or pcfg.get("quick_gelu", False))
        tower = _build_vision_tower(dim, dict(vision, image_size=side), quick_gelu=quick_gelu)
        return FeatureNet(tower, dim, adapt=lambda state: _image_tower(state, tower))

    def default_weights() -> Path:
        from .external import first_readable, hf_cache, hf_cached

        if not tag:
            raise PretrainedError(f"backbone {name} has no default weights: name them ({PREFIX}{arch}/TAG, TAG one "
                                  f"of {', '.join(tags[:6]) or 'none'}) or pass --weights FILE")
        found = [Path(pcfg["file"])] if pcfg.get("file") and Path(pcfg["file"]).is_file() else []
        source = _hf_source(pcfg)
        if source is not None:
            repo, torch_file = source
            safe = HF_SAFE_FILE if torch_file == HF_FILE else torch_file.rsplit(".", 1)[0] + ".safetensors"
            found += hf_cached(repo, (torch_file, safe))
        elif pcfg.get("url"):
            url_file = Path("~/.cache/clip").expanduser() / pcfg["url"].rsplit("/", 1)[-1]
            found += [url_file] if url_file.is_file() else []
        fetch = fetch_command(arch, tag, pcfg)
        path = first_readable(name, found, fetch)
        if path is None:
            where = f"the Hugging Face cache {hf_cache()} (HF_HOME sets it)" if source is not None else "~/.cache/clip"
            raise PretrainedError(
                f"no weights for backbone {name} in {where}; nothing is downloaded: fetch them once on a machine "
                f"with internet: {fetch}, then copy that folder here or pass --weights FILE")
        return path

    return BackboneSpec(
        name, "pretrained", build, dim, f"OpenCLIP {arch} image tower{' (' + tag + ')' if tag else ''}",
        native_size=native, mean=tuple(pcfg.get("mean") or OPENAI_MEAN), std=tuple(pcfg.get("std") or OPENAI_STD),
        classifier=("head",), default_weights=default_weights, requires=("open_clip",))


def _image_tower(state: dict, tower) -> dict:
    """The image tower's tensors of a weights file: a whole CLIP file's ``visual.*`` (an image tower's own file
    as it is), its position table resampled to the tower's grid as open_clip's loading does."""
    from types import SimpleNamespace

    from open_clip.model import resize_pos_embed

    if any(k.startswith("visual.") for k in state):
        state = {k: v for k, v in state.items() if k.startswith("visual.")}
    else:
        state = {"visual." + k: v for k, v in state.items()}
    resize_pos_embed(state, SimpleNamespace(visual=tower))  # in place; nothing when the grids agree
    return {k[len("visual."):]: v for k, v in state.items()}


register_family(PREFIX, _resolve, "an OpenCLIP image tower (pip install 'selector[open-clip]'), e.g. "
                "open_clip:ViT-B-32/laion2b_s34b_b79k (weights from the Hugging Face cache or --weights; never "
                "downloaded)")
