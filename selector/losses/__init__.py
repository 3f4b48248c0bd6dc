"""Contrastive losses for training the selector's encoder.

Every loss module has ``forward(z1, z2, labels=None) -> scalar tensor`` where z1, z2 are (B, D)
unnormalised projections of two augmented views of the same B images and labels is (B,) int64
(< 0 = unknown) or None; the class attribute ``needs_labels`` says whether the training loop should
pass labels.  Build one by name with :func:`get_loss`; the pure functions live in the modules
(``selector.losses.nt_xent.nt_xent``, ``selector.losses.kcl.kcl``, ...).

========================  =====================  ==========================================================
name                      class                  reference
========================  =====================  ==========================================================
``"simclr"``              :class:`NTXent`        Chen et al., ICML 2020 (SimCLR NT-Xent)
``"kcl"``                 :class:`KCL`           Kang et al., ICLR 2021 (k-positive contrastive)
``"debiased-neg"``        :class:`DebiasedNeg`   Chuang et al., NeurIPS 2020 (debiased contrastive)
``"debiased-pos"``        :class:`DebiasedPos`   Troeshestova & Isachenko, 2023 (debiased positives)
``"supcon-spread"``       :class:`SupConSpread`  Khosla et al., 2020 + Chen et al., ICML 2022 (spread)
========================  =====================  ==========================================================

The class-conditional autoencoder of Chen et al. (:mod:`selector.losses.autoencoder`) is not a loss of its
own: ``TrainConfig.autoencoder`` (``--autoencoder WEIGHT``) adds its reconstruction term to ``supcon-spread``.
"""
from __future__ import annotations

from torch import nn

# Only the classes are re-exported: re-exporting a function named like its module (``nt_xent`` in
# ``nt_xent.py``) would shadow the submodule as an attribute of this package.  Import the functions
# from their modules: ``from selector.losses.nt_xent import nt_xent``.
from .debiased_neg import DebiasedNeg
from .debiased_pos import DebiasedPos
from .kcl import KCL
from .nt_xent import NTXent
from .supcon_spread import SupConSpread

__all__ = ["LOSSES", "TRAIN_PARAMS", "get_loss", "NTXent", "KCL", "DebiasedNeg", "DebiasedPos", "SupConSpread"]

LOSSES: dict[str, type[nn.Module]] = {
    "simclr": NTXent,
    "kcl": KCL,
    "debiased-neg": DebiasedNeg,
    "debiased-pos": DebiasedPos,
    "supcon-spread": SupConSpread,
}

#: Hyperparameters a loss trains with where they differ from ``TrainConfig.loss_params``'s default
#: (temperature 0.2): supcon-spread takes the defaults of Chen et al.'s code (HazyResearch/thanos-code):
#: temperature 0.5 and equal weights of SupCon and the spread term.
TRAIN_PARAMS: dict[str, dict] = {
    "supcon-spread": {"temperature": 0.5, "alpha": 0.5},
}


def get_loss(name: str, **params) -> nn.Module:
    """Build the loss registered under ``name`` with keyword hyperparameters (e.g. ``temperature=0.5``)."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(sorted(LOSSES))}") from None
    return cls(**params)
