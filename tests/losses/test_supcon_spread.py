"""Tests for selector.losses.supcon_spread (Khosla et al., 2020 + Chen et al., ICML 2022)."""
from __future__ import annotations

import math

import pytest
import torch

from selector.losses import SupConSpread, get_loss
from selector.losses.nt_xent import nt_xent
from selector.losses.supcon_spread import supcon_spread

from .reference import dot, unit_rows


def ref_supcon_spread(z1, z2, labels, t, alpha):
    """Loop over anchors over the written formula; labels < 0 unknown."""
    z = unit_rows(z1, z2)
    n, b = len(z), len(z) // 2
    y = labels.tolist() * 2
    total = 0.0
    for i in range(n):
        v = (i + b) % n
        e = lambda a: math.exp(dot(z[i], z[a]) / t)  # noqa: E731
        known = y[i] >= 0
        cls = [j for j in range(n) if j != i and (j == v or (known and y[j] == y[i]))]
        den_all = sum(e(a) for a in range(n) if a != i)
        l_sc = -sum(math.log(e(p) / den_all) for p in cls) / len(cls)
        den_cc = sum(e(a) for a in cls) if known else den_all
        l_cc = -math.log(e(v) / den_cc)
        total += (1 - alpha) * l_sc + alpha * l_cc
    return total / n


def rand_views(b, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype)


LABELS = torch.tensor([0, 1, 0, 2, 1, 0, -1, 0, 2, 3, -1, 1])


@pytest.mark.parametrize("alpha,t,seed", [(0.0, 0.1, 0), (0.5, 0.1, 1), (1.0, 0.5, 2), (0.3, 0.07, 3), (0.8, 1.0, 4)])
def test_matches_reference(alpha, t, seed):
    z1, z2 = rand_views(12, 6, seed)
    got = supcon_spread(z1, z2, LABELS, t, alpha)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(ref_supcon_spread(z1, z2, LABELS, t, alpha), rel=1e-5)


def test_linear_in_alpha():
    z1, z2 = rand_views(12, 6, 5)
    l0, l1 = (supcon_spread(z1, z2, LABELS, 0.2, a).item() for a in (0.0, 1.0))
    assert supcon_spread(z1, z2, LABELS, 0.2, 0.25).item() == pytest.approx(0.75 * l0 + 0.25 * l1, rel=1e-10)


def test_falls_back_to_nt_xent_without_labels():
    z1, z2 = rand_views(12, 6, 6)
    want = nt_xent(z1, z2, 0.2).item()
    for alpha in (0.0, 0.5, 1.0):
        assert supcon_spread(z1, z2, None, 0.2, alpha).item() == pytest.approx(want, rel=1e-10)
        assert supcon_spread(z1, z2, torch.full((12,), -1), 0.2, alpha).item() == pytest.approx(want, rel=1e-10)


def test_distinct_labels_supcon_is_nt_xent_and_cc_term_vanishes():
    # every class has one image: C(i) = {own view}; SupCon = NT-Xent and the cc term is log(1) = 0
    z1, z2 = rand_views(8, 4, 7)
    want = nt_xent(z1, z2, 0.3).item()
    for alpha in (0.0, 0.4, 1.0):
        assert supcon_spread(z1, z2, torch.arange(8), 0.3, alpha).item() == pytest.approx((1 - alpha) * want,
                                                                                        rel=1e-10, abs=1e-12)


def test_collapsed_class_hand_computed():
    # two classes, each collapsed onto one direction (both views identical): for anchor i,
    # C(i) holds 2*3 - 1 = 5 identical points, so L_cc = log 5 (uniform over the class)
    a = torch.tensor([1.0, 0.0], dtype=torch.float64)
    c = torch.tensor([0.0, 1.0], dtype=torch.float64)
    z = torch.stack([a, a, a, c, c, c])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    t = 0.5
    assert supcon_spread(z, z.clone(), y, t, alpha=1.0).item() == pytest.approx(math.log(5), rel=1e-12)
    # SupCon: 5 positives at logit 2, 6 others at logit 0: -log(e^2 / (5e^2 + 6))
    want_sc = -math.log(math.exp(2) / (5 * math.exp(2) + 6))
    assert supcon_spread(z, z.clone(), y, t, alpha=0.0).item() == pytest.approx(want_sc, rel=1e-12)
    # spreading the class lowers the cc term (the point of the spread term)
    spread = z + 0.3 * torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert supcon_spread(spread, spread.clone(), y, t, alpha=1.0).item() < math.log(5)


def test_invariances():
    z1, z2 = rand_views(12, 6, 8)
    base = supcon_spread(z1, z2, LABELS, 0.2, 0.5).item()
    assert supcon_spread(z2, z1, LABELS, 0.2, 0.5).item() == pytest.approx(base, rel=1e-12)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    assert supcon_spread(z1[perm], z2[perm], LABELS[perm], 0.2, 0.5).item() == pytest.approx(base, rel=1e-12)
    renamed = torch.where(LABELS >= 0, 10 - LABELS, LABELS)
    assert supcon_spread(z1, z2, renamed, 0.2, 0.5).item() == pytest.approx(base, rel=1e-12)
    # -2 is just another "unknown"
    assert supcon_spread(z1, z2, torch.where(LABELS < 0, -2, LABELS), 0.2, 0.5).item() == pytest.approx(base)


def test_gradient_flows():
    z1, z2 = rand_views(12, 6, 9, dtype=torch.float32)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    supcon_spread(z1, z2, LABELS, 0.05, 0.5).backward()
    for g in (z1.grad, z2.grad):
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_bf16_autocast_on_cpu():
    g = torch.Generator().manual_seed(10)
    x1, x2 = torch.randn(12, 6, generator=g), torch.randn(12, 6, generator=g)
    lin = torch.nn.Linear(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h1, h2 = lin(x1), lin(x2)
        val = supcon_spread(h1, h2, LABELS, 0.1, 0.5)
    assert torch.isfinite(val) and val.dtype == torch.float32
    assert val.item() == pytest.approx(supcon_spread(h1.float(), h2.float(), LABELS, 0.1, 0.5).item(), rel=1e-5)
    assert val.item() == pytest.approx(supcon_spread(lin(x1), lin(x2), LABELS, 0.1, 0.5).item(), rel=3e-2)
    val.backward()
    assert torch.isfinite(lin.weight.grad).all()


def test_module_and_validation():
    m = get_loss("supcon-spread", temperature=0.3, alpha=0.2)
    assert isinstance(m, SupConSpread) and m.needs_labels
    z1, z2 = rand_views(12, 6, 11)
    assert m(z1, z2, LABELS).item() == pytest.approx(ref_supcon_spread(z1, z2, LABELS, 0.3, 0.2), rel=1e-5)
    assert m(z1, z2).item() == pytest.approx(nt_xent(z1, z2, 0.3).item(), rel=1e-10)
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match="alpha"):
            SupConSpread(alpha=bad)
