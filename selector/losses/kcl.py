"""KCL: the k-positive contrastive loss.

Kang, Li, Xie, Feng, Feng, "Exploring Balanced Feature Spaces for Representation Learning",
ICLR 2021, eq. (3).  Each anchor's positives are its own augmented view plus k samples of its class
drawn at random from the batch -- the same k for every class, so frequent classes do not get more
pull than rare ones and the feature space stays balanced.  With P(i) the k+1 positives (soft uniform
targets) and the denominator over all 2B-1 other samples:

    loss_i = -(1/|P(i)|) sum_{p in P(i)} log( exp(s_ip/t) / sum_{a != i} exp(s_ia/t) )

If an anchor has fewer than k same-class samples in the batch, all of them are used.  Anchors with an
unknown label (< 0), and every anchor when ``labels`` is None, have only their own view as positive,
which is exactly NT-Xent (Chen et al., 2020).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .nt_xent import (
    check_labels,
    check_temperature,
    check_views,
    contrastive_logits,
    multi_positive_nce,
    no_autocast,
    normalized_views,
    own_view_mask,
    same_label_mask,
)
from .registry import register_loss

__all__ = ["check_k", "sample_k_positives", "kcl", "KCL"]


def check_k(k: int) -> int:
    """Return k after checking it is an integer >= 0."""
    if isinstance(k, bool) or int(k) != k or int(k) < 0:
        raise ValueError(f"k (positives per anchor) must be an integer >= 0, got {k!r}")
    return int(k)


def sample_k_positives(labels2: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """Sample up to k same-class partners per anchor of the stacked batch ``[z1; z2]``.

    Args:
        labels2: (2B,) int64 labels of the stacked views (the B labels repeated twice); < 0 = unknown.
        k: number of partners per anchor (all candidates if fewer than k exist).
        generator: torch.Generator for the draw (None: the global RNG of the labels' device).  The
            uniform keys are drawn on the generator's device and moved to the labels' device, so a
            CPU generator gives the same draw whatever device the batch is on.
    Returns:
        (2B, 2B) bool mask; row i marks min(k, c_i) samples j drawn uniformly without replacement from
        the c_i candidates {j : label_j == label_i >= 0, j != i, j != own view of i}.
    """
    n = labels2.shape[0]
    b = n // 2
    cand = same_label_mask(labels2) & ~own_view_mask(b, labels2.device)
    if k == 0:
        return torch.zeros_like(cand)
    gen_device = generator.device if generator is not None else labels2.device
    keys = torch.rand((n, n), generator=generator, device=gen_device).to(labels2.device)
    keys = keys.masked_fill(~cand, -1.0)            # candidates have keys in [0, 1): drawn first
    top = keys.topk(min(k, n), dim=1).indices       # the k largest keys = a uniform k-subset
    mask = torch.zeros_like(cand)
    mask.scatter_(1, top, cand.gather(1, top))
    return mask


def kcl(z1: Tensor, z2: Tensor, labels: Tensor | None = None, k: int = 6, temperature: float = 0.1,
        generator: torch.Generator | None = None) -> Tensor:
    """KCL loss (Kang et al., ICLR 2021), averaged over the 2B anchors.

    Args:
        z1, z2: (B, D) projections of two views of the same B images (unnormalised, any float dtype).
        labels: (B,) int labels (< 0 = unknown) or None (then: NT-Xent).
        k: same-class positives per anchor besides its own view (6 in the paper).
        temperature: t > 0.
        generator: torch.Generator for sampling the positives (reproducible draw); None = global RNG.
    Returns:
        scalar tensor (float32, or float64 for float64 inputs).
    """
    b = check_views(z1, z2)
    t = check_temperature(temperature)
    k = check_k(k)
    labels = check_labels(labels, b, z1.device)
    pos_mask = own_view_mask(b, z1.device)
    if labels is not None and k > 0:
        pos_mask = pos_mask | sample_k_positives(torch.cat([labels, labels]), k, generator)
    with no_autocast(z1.device):
        z = normalized_views(z1, z2)
        return multi_positive_nce(contrastive_logits(z, t), pos_mask).mean()


@register_loss("kcl")
class KCL(nn.Module):
    """KCL loss module (Kang et al., ICLR 2021); see :func:`kcl`.

    ``forward(z1, z2, labels=None, generator=None)``: z1, z2 (B, D); labels (B,) int (< 0 unknown)
    or None; generator: optional torch.Generator for the positive sampling (None = global RNG).
    """

    needs_labels: bool = True

    def __init__(self, k: int = 6, temperature: float = 0.1):
        super().__init__()
        self.k = check_k(k)
        self.temperature = check_temperature(temperature)

    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        return kcl(z1, z2, labels, self.k, self.temperature, generator)

    def extra_repr(self) -> str:
        return f"k={self.k}, temperature={self.temperature}"
