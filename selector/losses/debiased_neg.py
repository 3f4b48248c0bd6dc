"""Debiased contrastive loss: corrects the negative term for false negatives (same-class samples).

Chuang, Robinson, Lin, Torralba, Jegelka, "Debiased Contrastive Learning", NeurIPS 2020, eq. (6)-(7)
(and their reference code): with N = 2B-2 negatives u_k per anchor and class prior tau+,

    Ng   = ( sum_k exp(s(x,u_k)/t) - tau+ * N * exp(s(x,v)/t) ) / (1 - tau+)
    Ng   = max(Ng, N * exp(-1/t))                    # e^{-1/t} is the smallest possible exp(s/t)
    loss = -log( exp(s(x,v)/t) / (exp(s(x,v)/t) + Ng) )

With tau+ = 0 this is exactly NT-Xent (the clamp never binds because every exp(s/t) >= e^{-1/t}).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .nt_xent import (
    check_temperature,
    check_views,
    contrastive_logits,
    no_autocast,
    normalized_views,
    own_view_index,
    own_view_mask,
)
from .registry import register_loss

__all__ = ["check_tau_plus", "debiased_neg", "DebiasedNeg"]


def check_tau_plus(tau_plus: float, allow_zero: bool = True) -> float:
    """Return the class prior tau+ as a float after checking it lies in [0, 1) (or (0, 1))."""
    tp = float(tau_plus)
    ok = (0.0 <= tp < 1.0) if allow_zero else (0.0 < tp < 1.0)
    if not ok:
        rng = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"tau_plus (class prior) must lie in {rng}, got {tau_plus!r}")
    return tp


def debiased_neg(z1: Tensor, z2: Tensor, temperature: float = 0.5, tau_plus: float = 0.1) -> Tensor:
    """Debiased contrastive loss of Chuang et al. (NeurIPS 2020), averaged over the 2B anchors.

    Args:
        z1, z2: (B, D) projections of two views of the same B images (unnormalised, any float dtype).
        temperature: t > 0.
        tau_plus: class prior tau+ in [0, 1) (probability that a random sample shares the anchor's class).
    Returns:
        scalar tensor (float32, or float64 for float64 inputs).

    Numerics: every exp is taken after subtracting the anchor's row maximum m (over its positive and
    negatives: the log-sum-exp shift), so P' = exp(s_pos/t - m) <= 1 and S' = sum exp(s_neg/t - m)
    <= N, and ``loss = log(P' + Ng') - (s_pos/t - m)``.  The log's argument is bounded away from 0
    (it is >= 1 if the positive is the row max, else S' >= 1 and either tau+ N P' >= S'/2, so
    P' >= 1/(2 tau+ N), or Ng' >= 1/(2(1-tau+))), so no log(0) and no huge gradient can occur.
    The clamp is applied in the shifted units (N e^{-1/t - m}); if that underflows (t < ~0.01 in
    float32) it is negligible against P' + Ng'.
    """
    b = check_views(z1, z2)
    t = check_temperature(temperature)
    tp = check_tau_plus(tau_plus)
    n_neg = 2 * b - 2
    with no_autocast(z1.device):
        z = normalized_views(z1, z2)
        logits = contrastive_logits(z, t)
        n = 2 * b
        dev = z.device
        eye = torch.eye(n, dtype=torch.bool, device=dev)
        neg_mask = ~(eye | own_view_mask(b, dev))
        pos = logits[torch.arange(n, device=dev), own_view_index(b, dev)]          # (2B,)
        m = logits.masked_fill(eye, float("-inf")).amax(dim=1).detach()             # (2B,) row max
        p = torch.exp(pos - m)
        e = torch.exp(logits - m[:, None])
        s = torch.where(neg_mask, e, torch.zeros((), dtype=e.dtype, device=dev)).sum(dim=1)
        ng = (s - tp * n_neg * p) / (1.0 - tp)
        ng = torch.maximum(ng, n_neg * torch.exp(-1.0 / t - m))
        return (torch.log(p + ng) - (pos - m)).mean()


@register_loss("debiased-neg")
class DebiasedNeg(nn.Module):
    """Debiased contrastive loss module (Chuang et al., NeurIPS 2020); see :func:`debiased_neg`.

    ``forward(z1, z2, labels=None)``: z1, z2 (B, D); labels are accepted and ignored.
    """

    needs_labels: bool = False

    def __init__(self, temperature: float = 0.5, tau_plus: float = 0.1):
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.tau_plus = check_tau_plus(tau_plus)

    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        return debiased_neg(z1, z2, self.temperature, self.tau_plus)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, tau_plus={self.tau_plus}"

