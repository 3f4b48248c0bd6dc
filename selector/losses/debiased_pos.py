"""Debiased-positive contrastive loss: debiases the *positive* term with an empirical estimate.

Follows the debiased-positive estimator of Troeshestova & Isachenko, "Mitigating distributional
biases in contrastive learning" (MIPT, 2023), built on the debiasing argument of Chuang et al.,
"Debiased Contrastive Learning", NeurIPS 2020.  With h(x, x') = exp(f(x).f(x')/t), anchor x, its
positive v, N negatives u_1..u_N, tau+ the class prior and tau- = 1 - tau+:

    P_emp     = ( sum_i h(x,u_i) + h(x,v) + h(x,x) ) / (N + 2)      # mean of h over the batch row
    P_emp_neg = (1/N) sum_i h(x,u_i)
    loss      = -log( (P_emp - tau- P_emp_neg) / (P_emp + (N tau+ - tau-) P_emp_neg) )

P_emp estimates tau+ E[h(x,x+)] + tau- E[h(x,x-)], so the numerator estimates tau+ E[h(x,x+)].

**Numerator floor.** The numerator can go <= 0 (e.g. negatives very close to x, the positive far).
Because h >= e^{-1/t} for unit vectors, tau+ E[h(x,x+)] >= tau+ e^{-1/t}; the numerator is clamped
from below at that floor, ``tau_plus * exp(-1/t)``.  The denominator is raised by the same amount
(it is identically ``numerator + N tau+ P_emp_neg``), so the ratio stays in (0, 1] and the loss >= 0.
In float32 the floor is never below the smallest normal float times e^{m} (m the row's largest logit),
which can matter only for t < ~0.03.

**M > 1 positives** come from extra augmented views (design choice: no labels needed, so
``needs_labels`` is False): ``views = [z1, z2, *extra_views]`` gives V = M + 1 views of B images;
for each of the V*B anchors the positives are the M other views of its image and the negatives are
the N = V*(B-1) views of the other images.  Two modes:

* ``"pos-grouping"``: h(x,v) is replaced by the mean of h over the M positives (one loss per anchor);
* ``"loss-combination"``: the loss is computed once per positive v_j (with h(x,v_j)) and averaged.

Both coincide for M = 1 (two views).  Tau+ must be > 0: with tau+ = 0 the numerator equals the
denominator and the loss is identically 0.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .debiased_neg import check_tau_plus
from .nt_xent import check_temperature, check_views, contrastive_logits, no_autocast, normalized_views
from .registry import register_loss

__all__ = ["MODES", "debiased_pos", "DebiasedPos"]

MODES = ("pos-grouping", "loss-combination")


def _stack_views(z1: Tensor, z2: Tensor, extra_views: Sequence[Tensor] | Tensor | None) -> list[Tensor]:
    """Validate and return the list of V >= 2 (B, D) views."""
    check_views(z1, z2)
    if extra_views is None:
        extra = []
    elif isinstance(extra_views, Tensor):
        if extra_views.dim() == 2:
            extra = [extra_views]
        elif extra_views.dim() == 3:
            extra = list(extra_views.unbind(0))
        else:
            raise ValueError(f"extra_views must be (B, D) or (M-1, B, D), got shape {tuple(extra_views.shape)}")
    else:
        extra = list(extra_views)
    for j, v in enumerate(extra):
        if not isinstance(v, Tensor) or not v.is_floating_point() or v.shape != z1.shape or v.device != z1.device:
            what = (f"shape {tuple(v.shape)}, dtype {v.dtype}, device {v.device}" if isinstance(v, Tensor)
                    else type(v).__name__)
            raise ValueError(f"extra_views[{j}] must be a floating tensor of shape {tuple(z1.shape)} on "
                             f"{z1.device}, got {what}")
    return [z1, z2, *extra]


def debiased_pos(z1: Tensor, z2: Tensor, temperature: float = 0.5, tau_plus: float = 0.1,
                 extra_views: Sequence[Tensor] | Tensor | None = None,
                 mode: str = "pos-grouping") -> Tensor:
    """Debiased-positive contrastive loss (see the module docstring), averaged over anchors.

    Args:
        z1, z2: (B, D) projections of two views of the same B images (unnormalised, any float dtype).
        temperature: t > 0.
        tau_plus: class prior tau+ in (0, 1).
        extra_views: None, or further views of the same B images: a sequence of (B, D) tensors or a
            (M-1, B, D) tensor, giving M = 1 + len(extra_views) positives per anchor.
        mode: "pos-grouping" or "loss-combination" (how M > 1 positives are used).
    Returns:
        scalar tensor (float32, or float64 for float64 inputs): mean over the V*B anchors (and, for
        "loss-combination", over the M positives of each anchor).

    Numerics: computed in log space as ``softplus(log(N tau+ P_emp_neg) - log(max(num, floor)))``
    (identical to the ratio form since den = num + N tau+ P_emp_neg), with every exp taken after
    subtracting the row's largest logit.
    """
    views = _stack_views(z1, z2, extra_views)
    t = check_temperature(temperature)
    tp = check_tau_plus(tau_plus, allow_zero=False)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    tm = 1.0 - tp
    n_views, b = len(views), z1.shape[0]
    n_pos = n_views - 1                     # M
    n_neg = n_views * (b - 1)               # N
    with no_autocast(z1.device):
        z = normalized_views(*views)        # (V*B, D), row v*B + i = view v of image i
        logits = contrastive_logits(z, t)   # (n, n), diagonal = s(x,x)/t
        n, dev, dt = z.shape[0], z.device, z.dtype
        image = torch.arange(n, device=dev) % b
        same_image = image[:, None] == image[None, :]
        eye = torch.eye(n, dtype=torch.bool, device=dev)
        pos_mask = same_image & ~eye        # M per row
        zero = torch.zeros((), dtype=dt, device=dev)

        m = logits.amax(dim=1).detach()     # row max (the diagonal for unit rows)
        h = torch.exp(logits - m[:, None])  # shifted h, in (0, 1]
        s_neg = torch.where(same_image, zero, h).sum(dim=1)          # sum_i h(x,u_i) (shifted)
        h_self = h.diagonal()
        if mode == "pos-grouping":
            h_pos = (torch.where(pos_mask, h, zero).sum(dim=1) / n_pos)[:, None]     # (n, 1)
        else:
            view = torch.arange(n, device=dev) // b        # other views of the same image, no sync:
            other = (view[:, None] + 1 + torch.arange(n_pos, device=dev)[None, :]) % n_views
            pos_idx = other * b + image[:, None]                                     # (n, M)
            h_pos = h.gather(1, pos_idx)                                             # (n, M)
        p_emp = (s_neg[:, None] + h_pos + h_self[:, None]) / (n_neg + 2)
        p_neg = s_neg / n_neg
        num = p_emp - tm * p_neg[:, None]                                            # shifted units
        tiny = torch.finfo(dt).tiny
        log_num = torch.log(num.clamp_min(tiny)) + m[:, None]
        log_num = torch.clamp(log_num, min=math.log(tp) - 1.0 / t)                  # the floor
        # log(N tau+ P_emp_neg) = log tau+ + logsumexp over negatives
        log_neg = math.log(tp) + torch.logsumexp(logits.masked_fill(same_image, float("-inf")), dim=1)
        return F.softplus(log_neg[:, None] - log_num).mean()


@register_loss("debiased-pos")
class DebiasedPos(nn.Module):
    """Debiased-positive contrastive loss module; see :func:`debiased_pos` and the module docstring.

    ``forward(z1, z2, labels=None, extra_views=None)``: z1, z2 (B, D); labels accepted and ignored;
    extra_views: further (B, D) views (sequence or (M-1, B, D) tensor) for M > 1 positives.
    """

    needs_labels: bool = False

    def __init__(self, temperature: float = 0.5, tau_plus: float = 0.1, mode: str = "pos-grouping"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.temperature = check_temperature(temperature)
        self.tau_plus = check_tau_plus(tau_plus, allow_zero=False)
        self.mode = mode

    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None,
                extra_views: Sequence[Tensor] | Tensor | None = None) -> Tensor:
        return debiased_pos(z1, z2, self.temperature, self.tau_plus, extra_views, self.mode)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, tau_plus={self.tau_plus}, mode={self.mode!r}"
