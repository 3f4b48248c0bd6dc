"""Fine-tuning retrainer: train a copy of the encoder end to end on the chosen labeled images.

The linear probe and kNN (:mod:`selector.eval.retrain`) keep the embedding frozen. This retrainer instead fine-tunes
the whole encoder with a linear classification head and cross-entropy on the chosen images, under the
same batched augmentations as contrastive training, then predicts the test images. It is slower (a few
seconds per run on a CPU) and closer to what a user does with the labels afterwards.

The loop hands retrainers embeddings, not images: :func:`finetune_retrainer` closes over the images and
finds the chosen rows by their embedding (identical embeddings are identical images, so any match is right).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from selector.augment import make_augment, to_float
from selector.backbones import Encoder


def _row_index(emb: np.ndarray) -> dict[bytes, int]:
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    return {row.tobytes(): i for i, row in enumerate(emb)}


def _lookup(index: dict[bytes, int], emb: np.ndarray, what: str) -> np.ndarray:
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    try:
        return np.array([index[row.tobytes()] for row in emb], dtype=np.int64)
    except KeyError:
        raise ValueError(f"finetune: a {what} embedding is not one of the embeddings the retrainer was "
                         "built on") from None


def finetune_classifier(encoder: Encoder, images: np.ndarray, labels: np.ndarray, test_images: np.ndarray, *,
                        steps: int = 100, batch_size: int = 64, lr: float = 5e-4, seed: int = 0,
                        device: str | torch.device = "cpu") -> np.ndarray:
    """Fine-tune a copy of ``encoder`` + a linear head with cross-entropy; predict ``test_images``.

    Args:
        images: (b, C, S, S) uint8 labeled images; labels: (b,) int labels.
        test_images: (m, C, S, S) uint8.
    Returns (m,) int64 predicted labels (values from ``labels``).
    """
    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    if classes.shape[0] == 1:
        return np.full(test_images.shape[0], classes[0], dtype=np.int64)
    device = torch.device(device)
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = copy.deepcopy(encoder).to(device).train()
        head = nn.Linear(model.dim, classes.shape[0]).to(device)
        opt = torch.optim.AdamW([*model.backbone.parameters(), *head.parameters()], lr=lr, weight_decay=1e-4)
        aug = make_augment(model.config.in_channels, model.config.image_size).to(device)
        x = torch.from_numpy(np.ascontiguousarray(images))
        yt = torch.from_numpy(y.astype(np.int64))
        bs = min(batch_size, x.shape[0])
        for _ in range(steps):
            idx = torch.randint(0, x.shape[0], (bs,))
            with torch.no_grad():
                v = aug(to_float(x[idx].to(device)))
            loss = nn.functional.cross_entropy(head(model.embed(v)), yt[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        preds = []
        with torch.no_grad():
            for s in range(0, test_images.shape[0], 512):
                xb = to_float(torch.from_numpy(np.ascontiguousarray(test_images[s:s + 512])).to(device))
                preds.append(head(model.embed(xb)).argmax(1).cpu().numpy())
    finally:
        torch.set_rng_state(gen_state)
    return classes[np.concatenate(preds)].astype(np.int64)


def finetune_retrainer(encoder: Encoder, train_images: np.ndarray, train_emb: np.ndarray, test_images: np.ndarray,
                       test_emb: np.ndarray, **kw):
    """A retrainer ``f(train_emb, train_y, test_emb, *, seed=0) -> pred`` for :func:`selector.eval.loop.run_eval`
    that fine-tunes ``encoder`` on the images behind the chosen embeddings (see module docstring)."""
    train_index, test_index = _row_index(train_emb), _row_index(test_emb)

    def finetune(chosen_emb, chosen_y, test_emb_rows, *, seed: int = 0) -> np.ndarray:
        rows = _lookup(train_index, chosen_emb, "training")
        trows = _lookup(test_index, test_emb_rows, "test")
        return finetune_classifier(encoder, train_images[rows], np.asarray(chosen_y), test_images[trows],
                                   seed=seed, **kw)

    return finetune
