"""``dinov2:NAME``: DINOv2 (Oquab et al., 2023), self-supervised ViTs, from torch.hub's local cache; offline.

NAME is one of the official models: ``vits14``, ``vitb14``, ``vitl14``, ``vitg14`` and their variants with
register tokens ``vits14_reg`` ... ``vitg14_reg``. The model code is the repository torch.hub keeps under
``$TORCH_HOME/hub/facebookresearch_dinov2_main`` (loaded with ``torch.hub.load(..., source="local",
pretrained=False)``) and the weights the file it keeps in ``$TORCH_HOME/hub/checkpoints``
(``dinov2_vits14_pretrain.pth``), or ``--weights FILE``; nothing is downloaded. Both come from one command on
a machine with internet (:func:`fetch_command`); the folder ``$TORCH_HOME/hub`` is then copied where there is
none.

Features: the class token after the final norm, the model's own output: what DINOv2's k-NN evaluation uses
(``dinov2/eval/knn.py``; its linear probes add the mean patch token). Input: a side that is a multiple of the
14 px patch (224 by default, the side of the authors' evaluations; the position table is interpolated to
it), ImageNet mean/std normalisation.
"""
from __future__ import annotations

from pathlib import Path

from .registry import BackboneSpec, register_family
from .weights import PretrainedError

PREFIX = "dinov2:"
REPO = "facebookresearch/dinov2"
REPO_DIR = "facebookresearch_dinov2_main"  # where torch.hub.load(REPO, ...) unpacks the repository's main branch
PATCH = 14
INPUT_SIDE = 224

#: NAME -> feature width (the ViT's embedding width).
MODELS = {"vits14": 384, "vitb14": 768, "vitl14": 1024, "vitg14": 1536}
MODELS.update({f"{m}_reg": d for m, d in list(MODELS.items())})


def hub_dir() -> Path:
    """torch.hub's folder: ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``)."""
    from .external import torch_hub_dir

    return torch_hub_dir()


def repo_dir() -> Path | None:
    """The local copy of the DINOv2 repository in torch.hub's folder (the main branch's, else any other
    branch's), or None."""
    hub = hub_dir()
    for folder in [hub / REPO_DIR, *sorted(hub.glob(REPO.replace("/", "_") + "_*"))]:
        if (folder / "hubconf.py").is_file():
            return folder
    return None


def checkpoint_name(model: str) -> str:
    """The file torch.hub saves the weights of ``model`` as: ``dinov2_vits14_pretrain.pth``, and for a model
    with registers ``dinov2_vits14_reg4_pretrain.pth``."""
    base = model.removesuffix("_reg")
    return f"dinov2_{base}_reg4_pretrain.pth" if model.endswith("_reg") else f"dinov2_{base}_pretrain.pth"


def fetch_command(model: str) -> str:
    """The command that fetches the code and weights of ``model`` into torch.hub's folder (with internet)."""
    return f"python -c \"import torch; torch.hub.load('{REPO}', 'dinov2_{model}', trust_repo=True)\""


def _missing(model: str, *what: str) -> PretrainedError:
    """The one-line error for the missing parts ``what`` of ``model``, with the command that fetches them."""
    verb = "are" if len(what) > 1 else "is"
    return PretrainedError(
        f"backbone {PREFIX}{model}: {' and '.join(what)} {verb} missing (nothing is downloaded); fetch code and "
        f"weights once on a machine with internet: {fetch_command(model)}, then copy its {hub_dir()} here "
        "(TORCH_HOME sets the folder; --weights FILE gives the weights alone)")


def _resolve(model: str) -> BackboneSpec:
    if model not in MODELS:
        raise ValueError(f"unknown DINOv2 model {model!r} in backbone {PREFIX + model!r}; choose from "
                         f"{', '.join(MODELS)}")
    name, dim = PREFIX + model, MODELS[model]

    def build(in_channels: int, side: int):
        del in_channels  # 3: the encoder replicates grayscale
        if side % PATCH:
            lo = max(PATCH, side // PATCH * PATCH)
            raise PretrainedError(f"backbone {name} takes an input side that is a multiple of {PATCH} px (its "
                                  f"patch), got {side}; use --backbone-size {lo} or {lo + PATCH}")
        repo = repo_dir()
        if repo is None:
            raise _missing(model, f"its model code ({hub_dir() / REPO_DIR})")
        import warnings

        import torch

        from .external import FeatureNet

        with warnings.catch_warnings():  # its code warns on import whether xFormers is installed: not ours to say
            warnings.simplefilter("ignore")
            net = torch.hub.load(str(repo), f"dinov2_{model}", source="local", pretrained=False)
        return FeatureNet(net, dim)

    def default_weights() -> Path:
        path = hub_dir() / "checkpoints" / checkpoint_name(model)
        if not path.is_file():
            code = () if repo_dir() is not None else (f"its model code ({hub_dir() / REPO_DIR})",)
            raise _missing(model, *code, f"its weights file ({path})")
        return path

    return BackboneSpec(name, "pretrained", build, dim,
                        f"DINOv2 {model} (self-supervised; features: the class token)", native_size=INPUT_SIDE,
                        classifier=("head",), default_weights=default_weights)


register_family(PREFIX, _resolve, "DINOv2, self-supervised ViTs: dinov2:vits14, dinov2:vitb14, dinov2:vitl14, "
                "dinov2:vitg14 (and *_reg); code and weights from torch.hub's cache $TORCH_HOME/hub or --weights; "
                "never downloaded")
