"""NT-Xent (SimCLR) loss, plus the shared pieces the other contrastive losses build on.

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020 (SimCLR), eq. (1): the normalised-temperature cross-entropy.

Conventions shared by every loss in :mod:`selector.losses`:

* ``z1``, ``z2`` are (B, D) projections of two augmented views of the same B images, *not*
  normalised; the losses L2-normalise them.  Rows are stacked as ``z = [z1; z2]`` (2B, D), so
  the own augmented view of row ``i`` is row ``(i + B) mod 2B``.
* All similarity / logit arithmetic runs in float32 (float64 if an input is float64) with
  autocast disabled, so the losses work inside ``torch.autocast`` (fp16 / bf16): inputs are cast
  to float32 *before* normalising (normalising in fp16 can overflow the sum of squares).
* Masked logits are filled with :data:`MASK_VALUE` (a large finite negative) rather than -inf, so
  no ``inf - inf`` or ``0 * inf`` can make a NaN, in the value or the gradient.
* Labels (where used) are (B,) integers; any negative label (-1) means "unknown".
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import register_loss

__all__ = [
    "MASK_VALUE", "check_views", "check_labels", "check_temperature", "compute_dtype", "no_autocast",
    "normalized_views", "contrastive_logits", "own_view_index", "own_view_mask", "same_label_mask",
    "multi_positive_nce", "nt_xent", "NTXent",
]

#: Stand-in for -inf on masked logits: exp(MASK_VALUE - m) == 0 in float32 and float64 for any
#: logit m reachable from unit vectors and a temperature >= 1e-6.
MASK_VALUE = -1e9


# --------------------------------------------------------------------------------------------------
# validation at the boundary
# --------------------------------------------------------------------------------------------------
def check_views(z1: Tensor, z2: Tensor) -> int:
    """Check two (B, D) floating tensors of equal shape on one device with B >= 2; return B."""
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() != 2:
            raise ValueError(f"{name} must be 2-D (B, D), got shape {tuple(z.shape)}")
        if not z.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {z.dtype}")
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.device != z2.device:
        raise ValueError(f"z1 and z2 must be on one device, got {z1.device} and {z2.device}")
    if z1.shape[0] < 2:
        raise ValueError(f"contrastive losses need a batch of at least 2 images (to have negatives), "
                         f"got B={z1.shape[0]}")
    return z1.shape[0]


def check_labels(labels: Tensor | None, batch_size: int, device: torch.device) -> Tensor | None:
    """Check (B,) integer labels (negative = unknown); return them as int64 on ``device``, or None.

    Values are deliberately not inspected (that would force a device sync every step): any
    negative value is treated as "unknown label".
    """
    if labels is None:
        return None
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != batch_size:
        raise ValueError(f"labels must have shape ({batch_size},), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor (int64, -1 = unknown), got dtype {labels.dtype}")
    return labels.to(device=device, dtype=torch.long)


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float after checking it is a finite number > 0."""
    t = float(temperature)
    if not (t > 0.0 and t < float("inf")):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


# --------------------------------------------------------------------------------------------------
# shared numerics
# --------------------------------------------------------------------------------------------------
def compute_dtype(*zs: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (the precision the logits are computed in)."""
    return torch.float64 if any(z.dtype == torch.float64 for z in zs) else torch.float32


def no_autocast(device: torch.device):
    """Context manager disabling autocast on ``device`` (a no-op context where autocast is unknown)."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # device type without autocast support
        return contextlib.nullcontext()


def normalized_views(*zs: Tensor) -> Tensor:
    """Stack V (B, D) view tensors into one (V*B, D) tensor of unit rows, float32 (or float64).

    Row ``v*B + i`` is view ``v`` of image ``i``.  Cast happens before normalisation.
    """
    dtype = compute_dtype(*zs)
    z = torch.cat([zi.to(dtype) for zi in zs], dim=0)
    return F.normalize(z, dim=1)


def contrastive_logits(z: Tensor, temperature: float) -> Tensor:
    """(n, D) unit rows -> (n, n) logits ``z @ z.T / temperature`` (diagonal kept)."""
    return (z @ z.T) / temperature


def own_view_index(batch_size: int, device: torch.device | None = None) -> Tensor:
    """(2B,) int64: index of the other augmented view of each row of ``[z1; z2]``: i -> (i+B) mod 2B."""
    return (torch.arange(2 * batch_size, device=device) + batch_size) % (2 * batch_size)


def own_view_mask(batch_size: int, device: torch.device | None = None) -> Tensor:
    """(2B, 2B) bool: True at (i, own_view_index(i))."""
    n = 2 * batch_size
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    mask[torch.arange(n, device=device), own_view_index(batch_size, device)] = True
    return mask


def same_label_mask(labels2: Tensor) -> Tensor:
    """(n,) int64 labels (negative = unknown) -> (n, n) bool, True where both labels are equal and known.

    The diagonal is False.  A row with an unknown label is all False.
    """
    known = labels2 >= 0
    same = (labels2[:, None] == labels2[None, :]) & known[:, None]
    same.fill_diagonal_(False)
    return same


def multi_positive_nce(logits: Tensor, pos_mask: Tensor) -> Tensor:
    """Per-anchor contrastive loss with soft uniform targets over several positives.

    ``loss_i = -(1/|P(i)|) * sum_{p in P(i)} log( exp(l_ip) / sum_{a != i} exp(l_ia) )``,
    the form of SupCon's L_out (Khosla et al., NeurIPS 2020, eq. 2) and of KCL (Kang et al., ICLR 2021).
    NT-Xent is the special case P(i) = {own view}.

    Args:
        logits: (n, n) float logits (diagonal ignored).
        pos_mask: (n, n) bool, P(i) per row; must be False on the diagonal and non-empty per row.
    Returns:
        (n,) per-anchor losses.
    """
    n = logits.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    masked = logits.masked_fill(eye, MASK_VALUE)
    log_prob = masked - torch.logsumexp(masked, dim=1, keepdim=True)
    pos_sum = torch.where(pos_mask, log_prob, torch.zeros((), dtype=log_prob.dtype, device=log_prob.device))
    return -pos_sum.sum(dim=1) / pos_mask.sum(dim=1).to(log_prob.dtype)


# --------------------------------------------------------------------------------------------------
# NT-Xent
# --------------------------------------------------------------------------------------------------
def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """SimCLR NT-Xent loss (Chen et al., ICML 2020, eq. 1), averaged over the 2B anchors.

    For anchor i of ``z = normalize([z1; z2])`` with own view j = (i+B) mod 2B:
    ``l_i = -log( exp(s_ij/t) / sum_{k != i} exp(s_ik/t) )`` with ``s`` the cosine similarity;
    the denominator holds the positive and the 2B-2 negatives.

    Args:
        z1, z2: (B, D) projections of two views of the same B images (any float dtype, unnormalised).
        temperature: t > 0.
    Returns:
        scalar tensor (float32, or float64 for float64 inputs).
    """
    b = check_views(z1, z2)
    t = check_temperature(temperature)
    with no_autocast(z1.device):
        z = normalized_views(z1, z2)
        logits = contrastive_logits(z, t)
        n = 2 * b
        idx = torch.arange(n, device=z.device)
        pos = logits[idx, own_view_index(b, z.device)]
        masked = logits.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), MASK_VALUE)
        return (torch.logsumexp(masked, dim=1) - pos).mean()


@register_loss("simclr")
class NTXent(nn.Module):
    """SimCLR NT-Xent loss module (Chen et al., ICML 2020); see :func:`nt_xent`.

    ``forward(z1, z2, labels=None)``: z1, z2 (B, D); labels are accepted and ignored.
    """

    needs_labels: bool = False

    def __init__(self, temperature: float = 0.5):
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        return nt_xent(z1, z2, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
