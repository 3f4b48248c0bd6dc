"""Contrastive losses for training the selector's encoder.

Every loss module has ``forward(z1, z2, labels=None) -> scalar tensor`` where z1, z2 are (B, D)
unnormalised projections of two augmented views of the same B images and labels is (B,) int64
(< 0 = unknown) or None; the class attribute ``needs_labels`` says whether the training loop should
pass labels.  Each loss module registers its class with ``@register_loss("name")``
(:mod:`selector.losses.registry`); build one by name with :func:`get_loss`. The pure functions live in the
modules (``selector.losses.nt_xent.nt_xent``, ``selector.losses.kcl.kcl``, ...).

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

from .debiased_neg import DebiasedNeg
from .debiased_pos import DebiasedPos
from .kcl import KCL

# Importing a module registers its loss (``@register_loss``). Only the classes are re-exported: re-exporting
# a function named like its module (``nt_xent`` in ``nt_xent.py``) would shadow the submodule as an attribute
# of this package. Import the functions from their modules: ``from selector.losses.nt_xent import nt_xent``.
from .nt_xent import NTXent
from .registry import LOSSES, TRAIN_PARAMS, get_loss, register_loss
from .supcon_spread import SupConSpread

__all__ = ["LOSSES", "TRAIN_PARAMS", "get_loss", "register_loss", "NTXent", "KCL", "DebiasedNeg", "DebiasedPos",
           "SupConSpread"]
