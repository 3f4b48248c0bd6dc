"""Tests for selector.losses.autoencoder, the class-conditional autoencoder term of SupCon with spread
(Chen et al., ICML 2022), against a slow reference written as a Python loop over the formula."""
from __future__ import annotations

import math

import pytest
import torch

from selector.losses.autoencoder import (
    PAPER_WEIGHT,
    ClassConditionalDecoder,
    check_weight,
    class_slots,
    reconstruction_loss,
    reconstruction_target,
)
from selector.losses.supcon_spread import supcon_spread

from .test_supcon_spread import ref_supcon_spread


def ref_reconstruction(dec: ClassConditionalDecoder, h, labels, views) -> float:
    """L_AE = 1/N sum_i 1/P sum_p (D(h_i, y_i)_p - t_ip)^2, D(h, y) = W2 relu(W1 h + b1 + e_slot(y)) + b2,
    t = the view average-pooled to s x s, then (x - 0.5) / 0.25; slot = y for 0 <= y < K, else K."""
    w1, b1 = dec.fc1.weight.tolist(), dec.fc1.bias.tolist()
    w2, b2 = dec.fc2.weight.tolist(), dec.fc2.bias.tolist()
    e = dec.cls.weight.tolist()
    k, s, c = dec.n_classes, dec.size, dec.channels
    big = views.shape[-1]
    f = big // s  # the tests use sides that divide evenly: area pooling is a block mean
    hs, vs = h.tolist(), views.tolist()
    ys = [-1] * len(hs) if labels is None else labels.tolist()
    total = 0.0
    for i in range(len(hs)):
        slot = ys[i] if 0 <= ys[i] < k else k
        u = [max(0.0, sum(w1[j][d] * hs[i][d] for d in range(dec.dim)) + b1[j] + e[slot][j])
             for j in range(dec.hidden)]
        err = 0.0
        for ch in range(c):
            for r in range(s):
                for q in range(s):
                    p = (ch * s + r) * s + q  # the decoder's output is (C, s, s) row-major
                    out = sum(w2[p][j] * u[j] for j in range(dec.hidden)) + b2[p]
                    block = [vs[i][ch][r * f + a][q * f + b] for a in range(f) for b in range(f)]
                    t = (sum(block) / len(block) - 0.5) / 0.25
                    err += (out - t) ** 2
        total += err / (c * s * s)
    return total / len(hs)


def _case(seed, n=6, dim=5, channels=1, side=4, size=2, n_classes=3, hidden=4, dtype=torch.float64):
    torch.manual_seed(seed)
    dec = ClassConditionalDecoder(dim, channels, size, n_classes, hidden=hidden).to(dtype)
    with torch.no_grad():  # class vectors as large as the rest, so a wrong slot shows in the value
        dec.cls.weight.normal_()
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, dim, generator=g, dtype=dtype)
    views = torch.rand(n, channels, side, side, generator=g, dtype=dtype)
    return dec, h, views


LABELS = torch.tensor([0, 2, -1, 1, 1_000_004, 0])  # known, known, unknown, known, a pseudo-label, known


@pytest.mark.parametrize("channels,side,size,n_classes,seed", [(1, 4, 2, 3, 0), (3, 4, 4, 3, 1), (3, 8, 2, 0, 2),
                                                             (1, 6, 3, 5, 3)])
def test_matches_reference(channels, side, size, n_classes, seed):
    dec, h, views = _case(seed, channels=channels, side=side, size=size, n_classes=n_classes)
    got = reconstruction_loss(dec, h, LABELS, views)
    assert got.dtype == torch.float64 and got.dim() == 0
    assert got.item() == pytest.approx(ref_reconstruction(dec, h, LABELS, views), rel=1e-10)
    # no labels at all: every item in the unknown slot
    assert reconstruction_loss(dec, h, None, views).item() == pytest.approx(
        ref_reconstruction(dec, h, None, views), rel=1e-10)


def test_total_with_supcon_spread_matches_reference():
    """The training objective: (1 - a) SupCon + a cc-InfoNCE + w L_AE, term by term against the loops."""
    dec, h, views = _case(4, n=12, dim=6, n_classes=4)
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 3, -1, 1])
    y2 = torch.cat([y, y])
    for w in (0.0, PAPER_WEIGHT, 2.5):
        got = supcon_spread(z1, z2, y, 0.5, 0.5) + w * reconstruction_loss(dec, h, y2, views)
        want = ref_supcon_spread(z1, z2, y, 0.5, 0.5) + w * ref_reconstruction(dec, h, y2, views)
        assert got.item() == pytest.approx(want, rel=1e-8)


def test_slots_unknown_and_pseudo_labels_share_one():
    y = torch.tensor([0, 2, -1, 3, 1_000_000, 1, -7])
    assert class_slots(y, 3, 7).tolist() == [0, 2, 3, 3, 3, 1, 3]
    assert class_slots(None, 3, 4).tolist() == [3, 3, 3, 3]
    assert class_slots(y, 0, 7).tolist() == [0] * 7  # no known class: one slot, a plain autoencoder
    with pytest.raises(ValueError, match="shape"):
        class_slots(y, 3, 5)


def test_the_class_conditions_the_reconstruction():
    dec, h, _ = _case(6, n_classes=3)
    same = h[:1].repeat(4, 1)
    out = dec(same, torch.tensor([0, 1, 2, -1]))
    for i in range(4):
        for j in range(i):
            assert not torch.allclose(out[i], out[j])
    # the unknown slot is one slot: -1, a pseudo-label and a class id beyond K all decode alike (equal up to
    # float rounding: the rows of one batched matmul need not agree to the last bit)
    same3 = h[:1].repeat(3, 1)
    out = dec(same3, torch.tensor([-1, 1_000_002, 3]))
    assert torch.allclose(out[0], out[1], rtol=1e-12, atol=1e-12)
    assert torch.allclose(out[0], out[2], rtol=1e-12, atol=1e-12)
    assert class_slots(torch.tensor([-1, 1_000_002, 3]), 3, 3).tolist() == [3, 3, 3]


def test_target_is_the_view_pooled_on_the_encoder_scale():
    x = torch.rand(2, 3, 32, 32)
    t = reconstruction_target(x, 16)
    assert t.shape == (2, 3, 16, 16) and not t.requires_grad
    want = (x.view(2, 3, 16, 2, 16, 2).mean(dim=(3, 5)) - 0.5) / 0.25
    assert torch.allclose(t, want, atol=1e-6)
    assert reconstruction_target(torch.rand(1, 1, 8, 8), 16).shape == (1, 1, 8, 8)  # never upsampled


def test_gradients_reach_embedding_decoder_and_only_the_used_class_vectors():
    dec, h, views = _case(7, dtype=torch.float32, n_classes=4)
    h.requires_grad_(True)
    reconstruction_loss(dec, h, torch.tensor([0, 0, 2, -1, 2, 0]), views).backward()
    assert torch.isfinite(h.grad).all() and h.grad.abs().sum() > 0
    assert dec.fc1.weight.grad.abs().sum() > 0 and dec.fc2.weight.grad.abs().sum() > 0
    used = dec.cls.weight.grad.abs().sum(dim=1) > 0
    assert used.tolist() == [True, False, True, False, True]  # classes 0 and 2, and the unknown slot


def test_bf16_autocast_on_cpu():
    torch.manual_seed(8)
    dec = ClassConditionalDecoder(8, 3, 4, n_classes=2, hidden=16)
    lin = torch.nn.Linear(6, 8)
    g = torch.Generator().manual_seed(8)
    x, views = torch.randn(10, 6, generator=g), torch.rand(10, 3, 8, 8, generator=g)
    y = torch.tensor([0, 1, -1, 0, 1, 0, 1, -1, 0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        assert h.dtype == torch.bfloat16
        val = reconstruction_loss(dec, h, y, views)
    assert val.dtype == torch.float32 and torch.isfinite(val)
    # the same as the float32 computation from the same (bf16) embedding, and close to the float32 path
    assert val.item() == pytest.approx(reconstruction_loss(dec, h.float(), y, views).item(), rel=1e-6)
    assert val.item() == pytest.approx(reconstruction_loss(dec, lin(x), y, views).item(), rel=3e-2)
    val.backward()
    assert torch.isfinite(lin.weight.grad).all() and lin.weight.grad.abs().sum() > 0
    assert torch.isfinite(dec.fc1.weight.grad).all()


def test_validation():
    assert check_weight(0) == 0.0 and check_weight(PAPER_WEIGHT) == 1.0
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="autoencoder weight"):
            check_weight(bad)
    with pytest.raises(ValueError, match="positive"):
        ClassConditionalDecoder(0, 1, 4)
    dec = ClassConditionalDecoder(5, 1, 2, n_classes=1, hidden=3)
    assert dec.config() == {"dim": 5, "channels": 1, "size": 2, "n_classes": 1, "hidden": 3}
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        dec(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="2 embeddings for 3 views"):
        reconstruction_loss(dec, torch.zeros(2, 5), None, torch.zeros(3, 1, 4, 4))
    assert math.isfinite(reconstruction_loss(dec, torch.zeros(2, 5), None, torch.zeros(2, 1, 4, 4)).item())
