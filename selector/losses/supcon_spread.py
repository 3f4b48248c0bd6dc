"""Supervised contrastive loss with class-conditional spread.

Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (L_out, eq. 2), combined as in
Chen, Fu, Narayan, Zhang, Song, Fatahalian, Re, "Perfectly Balanced: Improving Transfer and
Robustness of Supervised Contrastive Learning", ICML 2022 (L_spread, Sec. 4):

    loss = (1 - alpha) * L_supcon + alpha * L_cc-InfoNCE

For anchor i of ``z = normalize([z1; z2])`` (2B rows), with v(i) its own view, C(i) the other
samples of its class (both views, excluding i) and s the cosine similarity:

    L_supcon,i = -(1/|C(i)|) sum_{p in C(i)} log( exp(s_ip/t) / sum_{a != i} exp(s_ia/t) )
    L_cc,i     = -log( exp(s_i,v(i)/t) / sum_{a in C(i)} exp(s_ia/t) )

(v(i) is in C(i).)  The class-conditional InfoNCE term contrasts the anchor's own view against the
other samples of its class only, pushing same-class points apart (spread) while SupCon pulls the class
together.  Unknown labels: an anchor whose label is < 0 has only its own view as positive, and its
class-conditional term uses all other samples as negatives -- both terms then equal NT-Xent for it.
Samples with unknown labels are never positives of anyone but their own view.  With ``labels=None``
every label is unknown, so the loss is exactly NT-Xent (Chen et al., 2020) at this temperature.

The defaults (temperature 0.5, alpha 0.5) are those of the paper's code. Its class-conditional
autoencoder, the other half of the paper's recipe, is :mod:`selector.losses.autoencoder`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .nt_xent import (
    MASK_VALUE,
    check_labels,
    check_temperature,
    check_views,
    contrastive_logits,
    multi_positive_nce,
    no_autocast,
    normalized_views,
    nt_xent,
    own_view_index,
    own_view_mask,
    same_label_mask,
)
from .registry import register_loss

__all__ = ["check_alpha", "supcon_spread", "SupConSpread"]


def check_alpha(alpha: float) -> float:
    """Return alpha as a float after checking it lies in [0, 1]."""
    a = float(alpha)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"alpha (weight of the class-conditional InfoNCE term) must lie in [0, 1], got {alpha!r}")
    return a


def supcon_spread(z1: Tensor, z2: Tensor, labels: Tensor | None = None, temperature: float = 0.5,
                  alpha: float = 0.5) -> Tensor:
    """SupCon + class-conditional InfoNCE (Chen et al., ICML 2022), averaged over the 2B anchors.

    Args:
        z1, z2: (B, D) projections of two views of the same B images (unnormalised, any float dtype).
        labels: (B,) int labels (< 0 = unknown) or None (then: NT-Xent, see the module docstring).
        temperature: t > 0.
        alpha: weight of the class-conditional InfoNCE term, in [0, 1] (0 = plain SupCon).
    Returns:
        scalar tensor (float32, or float64 for float64 inputs).
    """
    b = check_views(z1, z2)
    t = check_temperature(temperature)
    a = check_alpha(alpha)
    labels = check_labels(labels, b, z1.device)
    if labels is None:
        return nt_xent(z1, z2, t)
    dev = z1.device
    labels2 = torch.cat([labels, labels])
    own = own_view_mask(b, dev)
    same = same_label_mask(labels2) | own                     # C(i); own view always in it
    known = labels2 >= 0
    # class-conditional denominator: C(i) for known anchors, every other sample for unknown ones
    cc_cols = same | (~known[:, None] & ~torch.eye(2 * b, dtype=torch.bool, device=dev))
    with no_autocast(dev):
        z = normalized_views(z1, z2)
        logits = contrastive_logits(z, t)
        l_sc = multi_positive_nce(logits, same)
        pos = logits[torch.arange(2 * b, device=dev), own_view_index(b, dev)]
        l_cc = torch.logsumexp(logits.masked_fill(~cc_cols, MASK_VALUE), dim=1) - pos
        return ((1.0 - a) * l_sc + a * l_cc).mean()


# Chen et al.'s code (HazyResearch/thanos-code) trains it with temperature 0.5 and equal weights of SupCon
# and the spread term.
@register_loss("supcon-spread", train_params={"temperature": 0.5, "alpha": 0.5})
class SupConSpread(nn.Module):
    """SupCon with class-conditional spread (Chen et al., ICML 2022); see :func:`supcon_spread`.

    ``forward(z1, z2, labels=None)``: z1, z2 (B, D); labels (B,) int (< 0 unknown) or None (NT-Xent).
    """

    needs_labels: bool = True

    def __init__(self, temperature: float = 0.5, alpha: float = 0.5):
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.alpha = check_alpha(alpha)

    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        return supcon_spread(z1, z2, labels, self.temperature, self.alpha)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}"
