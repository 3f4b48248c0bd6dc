"""Tests for selector.losses.nt_xent (NT-Xent, shared helpers) and the loss registry."""
from __future__ import annotations

import math

import pytest
import torch

from selector.losses import KCL, LOSSES, DebiasedNeg, DebiasedPos, NTXent, SupConSpread, get_loss
from selector.losses.nt_xent import (
    multi_positive_nce,
    normalized_views,
    nt_xent,
    own_view_index,
    own_view_mask,
    same_label_mask,
)

from .reference import dot, unit_rows


# ---------------------------------------------------------------------------------------------------
# slow references: plain Python over the written formula
# ---------------------------------------------------------------------------------------------------
def ref_nt_xent(z1, z2, t):
    z = unit_rows(z1, z2)
    n, b = len(z), len(z) // 2
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        den = sum(math.exp(dot(z[i], z[k]) / t) for k in range(n) if k != i)
        total += -math.log(math.exp(dot(z[i], z[j]) / t) / den)
    return total / n


def ref_multi_positive(logits, pos_mask):
    n = len(logits)
    out = []
    for i in range(n):
        den = sum(math.exp(logits[i][a]) for a in range(n) if a != i)
        ps = [p for p in range(n) if pos_mask[i][p]]
        out.append(-sum(math.log(math.exp(logits[i][p]) / den) for p in ps) / len(ps))
    return out


def rand_views(b, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype)


# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b,d,t,seed", [(2, 3, 0.5, 0), (5, 8, 0.1, 1), (16, 4, 1.0, 2), (9, 32, 0.07, 3)])
def test_nt_xent_matches_reference(b, d, t, seed):
    z1, z2 = rand_views(b, d, seed)
    got = nt_xent(z1, z2, t)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(ref_nt_xent(z1, z2, t), rel=1e-5)


def test_multi_positive_nce_matches_reference():
    g = torch.Generator().manual_seed(5)
    n = 10
    logits = torch.randn(n, n, generator=g, dtype=torch.float64) * 3
    pos = torch.rand(n, n, generator=g) < 0.3
    pos.fill_diagonal_(False)
    pos[torch.arange(n), (torch.arange(n) + 1) % n] = True  # at least one positive per row
    got = multi_positive_nce(logits, pos)
    want = ref_multi_positive(logits.tolist(), pos.tolist())
    assert got.shape == (n,)
    assert got.tolist() == pytest.approx(want, rel=1e-5)


def test_multi_positive_nce_with_own_view_is_nt_xent():
    z1, z2 = rand_views(6, 5, 11)
    z = normalized_views(z1, z2)
    per_anchor = multi_positive_nce(z @ z.T / 0.3, own_view_mask(6))
    assert per_anchor.mean().item() == pytest.approx(nt_xent(z1, z2, 0.3).item(), rel=1e-10)


def test_helpers():
    assert own_view_index(3).tolist() == [3, 4, 5, 0, 1, 2]
    m = own_view_mask(2)
    assert m.tolist() == [[False, False, True, False], [False, False, False, True],
                          [True, False, False, False], [False, True, False, False]]
    s = same_label_mask(torch.tensor([0, 1, 0, -1, -1]))
    assert s.tolist() == [[False, False, True, False, False], [False] * 5, [True, False, False, False, False],
                          [False] * 5, [False] * 5]


def test_invariances():
    z1, z2 = rand_views(7, 6, 4)
    base = nt_xent(z1, z2, 0.2).item()
    assert nt_xent(z2, z1, 0.2).item() == pytest.approx(base, rel=1e-12)           # swap views
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    assert nt_xent(z1[perm], z2[perm], 0.2).item() == pytest.approx(base, rel=1e-12)  # reorder batch
    assert nt_xent(3.0 * z1, 0.5 * z2, 0.2).item() == pytest.approx(base, rel=1e-12)  # row scale
    # the loss does depend on the pairing: shuffling one view only changes it
    assert nt_xent(z1, z2[torch.roll(torch.arange(7), 1)], 0.2).item() != pytest.approx(base, rel=1e-3)


def test_perfect_alignment_gives_lower_loss():
    z1, z2 = rand_views(8, 16, 6)
    assert nt_xent(z1, z1.clone(), 0.5).item() < nt_xent(z1, z2, 0.5).item()


def test_gradient_flows():
    z1, z2 = rand_views(6, 5, 7, dtype=torch.float32)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    nt_xent(z1, z2, 0.1).backward()
    for g in (z1.grad, z2.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_stable_at_low_temperature_and_identical_rows():
    z = torch.ones(4, 3)
    val = nt_xent(z, z.clone().requires_grad_(True), 0.01)
    assert torch.isfinite(val)
    assert val.item() == pytest.approx(math.log(7), rel=1e-5)  # all 7 logits equal


def test_bf16_autocast_on_cpu():
    g = torch.Generator().manual_seed(8)
    x1, x2 = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g)
    lin = torch.nn.Linear(10, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h1, h2 = lin(x1), lin(x2)
        assert h1.dtype == torch.bfloat16
        val = nt_xent(h1, h2, 0.2)
    assert torch.isfinite(val) and val.dtype == torch.float32
    # the logits were computed in float32, not bf16: same as float32 on the bf16-rounded inputs
    assert val.item() == pytest.approx(nt_xent(h1.float(), h2.float(), 0.2).item(), rel=1e-5)
    assert val.item() == pytest.approx(nt_xent(lin(x1), lin(x2), 0.2).item(), rel=3e-2)
    val.backward()
    assert torch.isfinite(lin.weight.grad).all()


def test_validation_messages():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(z, torch.randn(4, 2))
    with pytest.raises(ValueError, match="2-D"):
        nt_xent(torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, 0.0)
    with pytest.raises(TypeError, match="floating"):
        nt_xent(torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        get_loss("kcl")(z, z, torch.zeros(4))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        get_loss("supcon-spread")(z, z, torch.zeros(3, dtype=torch.long))


def test_registry():
    assert set(LOSSES) == {"simclr", "kcl", "debiased-neg", "debiased-pos", "supcon-spread"}
    assert LOSSES["simclr"] is NTXent and LOSSES["kcl"] is KCL and LOSSES["debiased-neg"] is DebiasedNeg
    assert LOSSES["debiased-pos"] is DebiasedPos and LOSSES["supcon-spread"] is SupConSpread
    assert {n: c.needs_labels for n, c in LOSSES.items()} == {
        "simclr": False, "kcl": True, "debiased-neg": False, "debiased-pos": False, "supcon-spread": True}
    loss = get_loss("simclr", temperature=0.3)
    assert isinstance(loss, NTXent) and loss.temperature == 0.3
    z1, z2 = rand_views(4, 3, 9)
    assert loss(z1, z2, None).item() == pytest.approx(ref_nt_xent(z1, z2, 0.3), rel=1e-5)
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        get_loss("nope")
    with pytest.raises(TypeError):
        get_loss("simclr", tau_plus=0.1)
    # every loss accepts the training loop's call and returns a finite scalar
    y = torch.tensor([0, 1, 0, -1])
    for name, cls in LOSSES.items():
        val = get_loss(name)(z1, z2, y if cls.needs_labels else None)
        assert val.dim() == 0 and torch.isfinite(val)
