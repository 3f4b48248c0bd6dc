"""Class-conditional autoencoder term, the second half of Chen et al.'s recipe for SupCon with spread.

Chen, Fu, Narayan, Zhang, Song, Fatahalian, Re, "Perfectly Balanced: Improving Transfer and Robustness of
Supervised Contrastive Learning", ICML 2022: spread alone (the class-conditional InfoNCE term of
:mod:`selector.losses.supcon_spread`) is invariant to permutations of the points inside a class, so it
spreads a class without keeping its subclasses together; a class-conditional autoencoder breaks that
invariance, since the embedding must now hold what tells the members of a class apart. The total is

    loss = (1 - alpha) * L_supcon + alpha * L_cc-InfoNCE + w * L_AE

    L_AE = 1/N sum_i 1/P sum_p ( D(h_i, y_i)_p - t_ip )^2         (mean squared error, as the paper's code)
    D(h, y) = W2 relu(W1 h + b1 + e_slot(y)) + b2

over the N = 2B views of a batch, with

* ``h_i`` the encoder's embedding of view i (the backbone features, the vector selection uses; not the
  projection the contrastive terms see);
* ``e_slot(y)`` a learned vector per known class (the class condition; a one-hot of the class through the
  first layer is the same thing). Labels outside ``[0, n_classes)`` -- unknown (-1), or the k-means
  pseudo-labels the training loop gives unlabeled items (ids offset by 1,000,000) -- share one extra
  "unknown" slot: for those items the decoder is a plain autoencoder. The decoder is conditioned only on
  the classes people gave, never on the model's own guesses.
* ``t_i`` the target: the augmented view the embedding was computed from, average-pooled to
  ``min(16, S)`` px per side and put on the encoder's input scale ``(x - 0.5) / 0.25`` (about unit
  variance, as the mean/std-normalised images the paper's code reconstructs), P = C * s * s values.
  The view is reconstructed, not the unaugmented image: a crop's embedding cannot know what was cropped
  away. The low resolution keeps the decoder a small MLP (about 0.5 M weights for a 256-d embedding).

Defaults from the paper's code (HazyResearch/thanos-code, its contrastive loss and autoencoder task
configurations): temperature 0.5, equal weights of SupCon and the spread term (alpha = 0.5), and
reconstruction weight 1 (:data:`PAPER_WEIGHT`).

The value is computed in float32 (float64 for float64 inputs) with autocast off, as the contrastive
losses are, so it works inside ``torch.autocast`` (bf16 / fp16 embeddings are cast first).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nt_xent import compute_dtype, no_autocast

__all__ = ["PAPER_WEIGHT", "TARGET_SIZE", "HIDDEN", "ClassConditionalDecoder", "check_weight", "class_slots",
           "reconstruction_target", "reconstruction_loss"]

#: Weight of the reconstruction term in the paper's code (the autoencoder task's weight, MSE weight 1).
PAPER_WEIGHT = 1.0
#: Largest side of the reconstruction target, in px.
TARGET_SIZE = 16
#: Width of the decoder's hidden layer.
HIDDEN = 512


def check_weight(weight: float) -> float:
    """Return the reconstruction weight as a float after checking it is finite and >= 0."""
    w = float(weight)
    if not (w >= 0.0 and w < float("inf")):
        raise ValueError(f"autoencoder weight must be a finite number >= 0, got {weight!r}")
    return w


def class_slots(labels: Tensor | None, n_classes: int, n: int, device: torch.device | None = None) -> Tensor:
    """(n,) int64 decoder slots: the label where it is a known class in ``[0, n_classes)``, else
    ``n_classes`` (the shared "unknown" slot: -1, pseudo-labels, or ``labels=None``)."""
    if labels is None:
        return torch.full((n,), n_classes, dtype=torch.long, device=device)
    y = labels.to(device=device, dtype=torch.long)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(y.shape)}")
    return torch.where((y >= 0) & (y < n_classes), y, torch.full_like(y, n_classes))


def reconstruction_target(views: Tensor, size: int) -> Tensor:
    """(N, C, S, S) float views in [0, 1] -> (N, C, s, s) targets, s = min(size, S): area average, then
    ``(x - 0.5) / 0.25`` (the encoder's input scale). No gradient flows into the target."""
    if views.dim() != 4 or views.shape[-1] != views.shape[-2]:
        raise ValueError(f"views must be (N, C, S, S), got shape {tuple(views.shape)}")
    s = min(int(size), int(views.shape[-1]))
    with torch.no_grad():
        small = F.adaptive_avg_pool2d(views.detach().to(compute_dtype(views)), s)
        return (small - 0.5) / 0.25


class ClassConditionalDecoder(nn.Module):
    """Embedding + class -> a low-resolution image: ``D(h, y) = W2 relu(W1 h + b1 + e_slot(y)) + b2``.

    Args:
        dim: embedding dimension (the encoder's ``dim``).
        channels: image channels (1 or 3).
        size: side of the reconstruction target (``min(TARGET_SIZE, image side)``).
        n_classes: known classes (slots 0..n_classes-1); slot ``n_classes`` is "unknown".
        hidden: width of the hidden layer.

    ``forward(h, labels)``: h (N, dim) float, labels (N,) int or None -> (N, channels, size, size) float32
    (float64 for float64 h), computed with autocast off.
    """

    def __init__(self, dim: int, channels: int, size: int, n_classes: int = 0, hidden: int = HIDDEN):
        super().__init__()
        if min(dim, channels, size, hidden) < 1 or n_classes < 0:
            raise ValueError(f"decoder needs positive dim, channels, size, hidden and n_classes >= 0, got "
                             f"dim={dim}, channels={channels}, size={size}, hidden={hidden}, n_classes={n_classes}")
        self.dim, self.channels, self.size = int(dim), int(channels), int(size)
        self.n_classes, self.hidden = int(n_classes), int(hidden)
        self.fc1 = nn.Linear(self.dim, self.hidden)
        self.cls = nn.Embedding(self.n_classes + 1, self.hidden)  # per-class vector; the last row: unknown
        nn.init.normal_(self.cls.weight, std=0.02)
        self.fc2 = nn.Linear(self.hidden, self.channels * self.size * self.size)

    def config(self) -> dict:
        """The constructor's arguments (stored in checkpoints, compared on resume)."""
        return {"dim": self.dim, "channels": self.channels, "size": self.size, "n_classes": self.n_classes,
                "hidden": self.hidden}

    def forward(self, h: Tensor, labels: Tensor | None = None) -> Tensor:
        if h.dim() != 2 or h.shape[1] != self.dim:
            raise ValueError(f"embeddings must be (N, {self.dim}), got shape {tuple(h.shape)}")
        with no_autocast(h.device):
            dtype = compute_dtype(h)
            x = h.to(dtype)
            slots = class_slots(labels, self.n_classes, x.shape[0], x.device)
            u = torch.relu(F.linear(x, self.fc1.weight.to(dtype), self.fc1.bias.to(dtype))
                           + self.cls.weight.to(dtype)[slots])
            out = F.linear(u, self.fc2.weight.to(dtype), self.fc2.bias.to(dtype))
            return out.view(-1, self.channels, self.size, self.size)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())


def reconstruction_loss(decoder: ClassConditionalDecoder, h: Tensor, labels: Tensor | None,
                        views: Tensor) -> Tensor:
    """L_AE: mean over the N views and their pixels of ``(D(h_i, y_i) - t_i)^2``.

    Args:
        decoder: the class-conditional decoder.
        h: (N, dim) embeddings of the N views (any float dtype; cast to float32, or float64).
        labels: (N,) int labels of the views (< 0 unknown; outside ``[0, n_classes)``: the unknown slot) or None.
        views: (N, C, S, S) the views in [0, 1] the embeddings were computed from.
    Returns:
        scalar tensor (float32, or float64 for float64 ``h``).
    """
    if views.shape[0] != h.shape[0]:
        raise ValueError(f"{h.shape[0]} embeddings for {views.shape[0]} views")
    target = reconstruction_target(views, decoder.size)
    with no_autocast(h.device):
        recon = decoder(h, labels)
        return (recon - target.to(recon.dtype)).pow(2).mean()
