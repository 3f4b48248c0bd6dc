"""``timm:NAME``: any model of the ``timm`` package (``pip install 'selector[timm]'``), used offline.

NAME is a timm model name, with or without its pretrained tag (``resnet50.a1_in1k``,
``vit_small_patch14_dinov2.lvd142m``, ``convnext_tiny``: timm's default tag). The network is built with
``timm.create_model(NAME, pretrained=False, num_classes=0)``: no classifier, its output is timm's pooled
pre-logits features (the embedding). Weights from ``--weights FILE`` or from where timm leaves them, never
downloaded: the Hugging Face cache (``$HF_HOME/hub``, the file of the tag's ``hf_hub_id``) or torch.hub's
checkpoints folder (weights timm fetches by URL). A file is loaded as timm loads its own: the model's
``checkpoint_filter_fn`` first (it converts other layouts and resamples a ViT's position table to the input
side), the classifier dropped, then strictly. Input normalisation and native side: the tag's pretrained
configuration.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .registry import IMAGENET_MEAN, IMAGENET_STD, BackboneSpec, register_family
from .weights import PretrainedError

PREFIX = "timm:"
INSTALL = "pip install 'selector[timm]'"
HF_FILE = "pytorch_model.bin"  # the torch-format file timm publishes beside model.safetensors


def fetch_command(model: str, hf_hub_id: str | None) -> str:
    """The command that fetches the weights of ``model`` into timm's cache (on a machine with internet): the
    torch-format file of its Hugging Face repository, else timm's own download (weights with a URL only)."""
    if hf_hub_id:
        repo, _, revision = hf_hub_id.partition("@")
        return f"hf download {repo} {HF_FILE}" + (f" --revision {revision}" if revision else "")
    return f"python -c \"import timm; timm.create_model('{model}', pretrained=True)\""


def _resolve(model: str) -> BackboneSpec:
    try:
        import timm
    except ImportError:
        raise PretrainedError(f"backbone {PREFIX}{model} needs the timm package: {INSTALL}") from None
    if not timm.is_model(model):
        raise ValueError(f"unknown timm model {model!r} in backbone {PREFIX + model!r}; timm.list_models() lists "
                         "them, e.g. resnet50.a1_in1k, vit_small_patch14_dinov2.lvd142m, convnext_tiny")
    try:
        cfg = timm.models.get_pretrained_cfg(model)
    except RuntimeError as e:  # a tag that this model does not have
        raise ValueError(f"backbone {PREFIX}{model}: {str(e).splitlines()[0]}") from None
    name = PREFIX + model
    native = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else None

    def build(in_channels: int, side: int):
        del in_channels  # 3: the encoder replicates grayscale
        from .external import FeatureNet

        net = timm.create_model(model, pretrained=False, num_classes=0)
        size = getattr(getattr(net, "patch_embed", None), "img_size", None)
        if size is not None and tuple(size) != (side, side):  # a ViT's position table is built for one side
            try:
                net = timm.create_model(model, pretrained=False, num_classes=0, img_size=side)
            except (TypeError, ValueError, AssertionError) as e:
                raise PretrainedError(f"backbone {name} cannot run at {side} px: {str(e).splitlines()[0]}; "
                                      f"leave --backbone-size out (it runs at {native or tuple(size)[0]} px)") from None
        dim = getattr(net, "head_hidden_size", None) or net.num_features
        return FeatureNet(net, dim, adapt=lambda state: _adapt(state, net, cfg))

    def default_weights() -> Path:
        from .external import first_readable, hf_cache, hf_cached, torch_hub_dir

        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
            raise PretrainedError(f"timm has no pretrained weights for {model}; pass --weights FILE")
        found = [Path(cfg.file)] if cfg.file and Path(cfg.file).is_file() else []
        if cfg.hf_hub_id:
            repo, _, revision = cfg.hf_hub_id.partition("@")
            torch_file = cfg.hf_hub_filename or HF_FILE
            safe = "model.safetensors" if torch_file == HF_FILE else torch_file.rsplit(".", 1)[0] + ".safetensors"
            found += hf_cached(repo, (torch_file, safe), revision=revision or None)
        if cfg.url:
            url_file = torch_hub_dir() / "checkpoints" / cfg.url.rsplit("/", 1)[-1]
            found += [url_file] if url_file.is_file() else []
        fetch = fetch_command(model, cfg.hf_hub_id)
        path = first_readable(name, found, fetch)
        if path is None:
            where, env = ((f"the Hugging Face cache {hf_cache()}", "HF_HOME") if cfg.hf_hub_id else
                          (f"torch.hub's folder {torch_hub_dir() / 'checkpoints'}", "TORCH_HOME"))
            raise PretrainedError(
                f"no weights for backbone {name} in {where} (nothing is downloaded); fetch them once on a machine "
                f"with internet: {fetch}, then copy that folder here ({env} sets it) or pass --weights FILE")
        return path

    return BackboneSpec(
        name, "pretrained", build, None, f"timm's {model} (features: its pooled pre-logits)", native_size=native,
        mean=_rgb(cfg.mean if cfg is not None else None, IMAGENET_MEAN),
        std=_rgb(cfg.std if cfg is not None else None, IMAGENET_STD),
        classifier=("head",), default_weights=default_weights, requires=("timm",))


def _rgb(values, default: tuple[float, float, float]) -> tuple[float, float, float]:
    """Three per-channel values (a single one is repeated)."""
    if not values:
        return default
    values = tuple(float(v) for v in values)
    return values * 3 if len(values) == 1 else values[:3]


def _adapt(state: dict, net, cfg) -> dict:
    """A weights file's tensors in the layout of ``net`` (built without a classifier), as timm's own loading
    does: the model module's ``checkpoint_filter_fn``, then the classifier's tensors dropped."""
    filter_fn = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, net)
    classifier = cfg.classifier if cfg is not None and cfg.classifier else ("head", "fc", "classifier")
    prefixes = tuple(c + "." for c in ((classifier,) if isinstance(classifier, str) else classifier))
    own = net.state_dict()
    return {k: v for k, v in state.items() if k in own or not k.startswith(prefixes)}


register_family(PREFIX, _resolve, "any timm model (pip install 'selector[timm]'), e.g. timm:resnet50.a1_in1k, "
                "timm:vit_small_patch14_dinov2.lvd142m (weights from the Hugging Face cache, torch.hub's or --weights; "
                "never downloaded)")
