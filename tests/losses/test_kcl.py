"""Tests for selector.losses.kcl (Kang et al., ICLR 2021, k-positive contrastive loss)."""
from __future__ import annotations

import math

import pytest
import torch

from selector.losses import KCL, get_loss
from selector.losses.kcl import kcl, sample_k_positives
from selector.losses.nt_xent import nt_xent
from selector.losses.supcon_spread import supcon_spread

from .reference import dot, unit_rows


def ref_kcl(z1, z2, t, extra):
    """Loop over anchors: positives = own view + the sampled partners ``extra[i]`` (a list of indices),
    soft uniform targets, denominator over all other samples."""
    z = unit_rows(z1, z2)
    n, b = len(z), len(z) // 2
    total = 0.0
    for i in range(n):
        pos = [(i + b) % n] + list(extra[i])
        den = sum(math.exp(dot(z[i], z[a]) / t) for a in range(n) if a != i)
        total += -sum(math.log(math.exp(dot(z[i], z[p]) / t) / den) for p in pos) / len(pos)
    return total / n


def rand_views(b, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype)


def candidates(labels2):
    n, b = len(labels2), len(labels2) // 2
    return [[j for j in range(n) if j != i and j != (i + b) % n and labels2[i] >= 0 and labels2[j] == labels2[i]]
            for i in range(n)]


LABELS = torch.tensor([0, 1, 0, 2, 1, 0, -1, 0, 2, 3])


@pytest.mark.parametrize("k", [0, 1, 2, 3, 20])
def test_sample_k_positives_properties(k):
    labels2 = torch.cat([LABELS, LABELS])
    mask = sample_k_positives(labels2, k, torch.Generator().manual_seed(k))
    cand = candidates(labels2.tolist())
    assert mask.shape == (20, 20) and mask.dtype == torch.bool
    for i in range(20):
        picked = mask[i].nonzero().flatten().tolist()
        assert len(picked) == min(k, len(cand[i]))          # k, or all there are
        assert set(picked) <= set(cand[i])                  # same class, not self, not own view


def test_sample_k_positives_reproducible_and_uniform():
    labels2 = torch.cat([LABELS, LABELS])
    m1 = sample_k_positives(labels2, 2, torch.Generator().manual_seed(3))
    m2 = sample_k_positives(labels2, 2, torch.Generator().manual_seed(3))
    assert torch.equal(m1, m2)
    draws = [sample_k_positives(labels2, 2, torch.Generator().manual_seed(s)) for s in range(40)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    # anchor 0 (class 0) has 6 candidates; each is picked with probability 2/6
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(20)
    n_draw = 900
    for _ in range(n_draw):
        counts += sample_k_positives(labels2, 2, g)[0].float()
    cand0 = candidates(labels2.tolist())[0]
    assert counts.sum().item() == 2 * n_draw
    for j in cand0:  # expected 300, sd ~14
        assert abs(counts[j].item() - n_draw / 3) < 70


@pytest.mark.parametrize("k,t,seed", [(1, 0.5, 0), (2, 0.1, 1), (6, 0.2, 2), (0, 0.3, 3)])
def test_matches_reference(k, t, seed):
    z1, z2 = rand_views(10, 5, seed)
    labels2 = torch.cat([LABELS, LABELS])
    mask = sample_k_positives(labels2, k, torch.Generator().manual_seed(seed))
    extra = [mask[i].nonzero().flatten().tolist() for i in range(20)]
    got = kcl(z1, z2, LABELS, k, t, generator=torch.Generator().manual_seed(seed))
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(ref_kcl(z1, z2, t, extra), rel=1e-5)


def test_reduces_to_nt_xent_without_usable_labels():
    z1, z2 = rand_views(10, 5, 4)
    want = nt_xent(z1, z2, 0.2).item()
    assert kcl(z1, z2, None, 4, 0.2).item() == pytest.approx(want, rel=1e-10)
    assert kcl(z1, z2, torch.full((10,), -1), 4, 0.2).item() == pytest.approx(want, rel=1e-10)
    assert kcl(z1, z2, torch.arange(10), 4, 0.2).item() == pytest.approx(want, rel=1e-10)  # no partners
    assert kcl(z1, z2, LABELS, 0, 0.2).item() == pytest.approx(want, rel=1e-10)            # k = 0


def test_large_k_is_supcon():
    # when k exceeds every class's size all same-class samples are positives: SupCon's L_out
    z1, z2 = rand_views(10, 5, 5)
    assert kcl(z1, z2, LABELS, 50, 0.1).item() == pytest.approx(
        supcon_spread(z1, z2, LABELS, 0.1, alpha=0.0).item(), rel=1e-10)


def test_unknown_label_anchor_has_only_own_view():
    z1, z2 = rand_views(10, 5, 6)
    labels2 = torch.cat([LABELS, LABELS])
    mask = sample_k_positives(labels2, 3, torch.Generator().manual_seed(0))
    assert not mask[6].any() and not mask[16].any()   # label -1 rows
    assert not mask[:, 6].any() and not mask[:, 16].any()   # and never anyone's partner


def test_seeded_generator_reproducible_and_label_renaming_invariant():
    z1, z2 = rand_views(10, 5, 7)
    a = kcl(z1, z2, LABELS, 2, 0.2, generator=torch.Generator().manual_seed(42)).item()
    b = kcl(z1, z2, LABELS, 2, 0.2, generator=torch.Generator().manual_seed(42)).item()
    assert a == b
    others = {kcl(z1, z2, LABELS, 2, 0.2, generator=torch.Generator().manual_seed(s)).item() for s in range(8)}
    assert len(others) > 1     # the sampling does matter
    renamed = torch.tensor([7, 3, 7, 9, 3, 7, -1, 7, 9, 0])  # same partition, other ids
    again = kcl(z1, z2, renamed, 2, 0.2, generator=torch.Generator().manual_seed(42)).item()
    assert again == pytest.approx(a, rel=1e-12)
    # global RNG is used when no generator is given
    torch.manual_seed(1)
    c = kcl(z1, z2, LABELS, 2, 0.2).item()
    torch.manual_seed(1)
    assert kcl(z1, z2, LABELS, 2, 0.2).item() == c


def test_gradient_flows():
    z1, z2 = rand_views(10, 5, 8, dtype=torch.float32)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    kcl(z1, z2, LABELS, 2, 0.1, torch.Generator().manual_seed(0)).backward()
    for g in (z1.grad, z2.grad):
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_bf16_autocast_on_cpu():
    g = torch.Generator().manual_seed(9)
    x1, x2 = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    lin = torch.nn.Linear(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h1, h2 = lin(x1), lin(x2)
        val = kcl(h1, h2, LABELS, 2, 0.1, torch.Generator().manual_seed(1))
    assert torch.isfinite(val) and val.dtype == torch.float32
    want = kcl(h1.float(), h2.float(), LABELS, 2, 0.1, torch.Generator().manual_seed(1))
    assert val.item() == pytest.approx(want.item(), rel=1e-5)
    full = kcl(lin(x1), lin(x2), LABELS, 2, 0.1, torch.Generator().manual_seed(1))
    assert val.item() == pytest.approx(full.item(), rel=3e-2)
    val.backward()
    assert torch.isfinite(lin.weight.grad).all()


def test_module_and_validation():
    m = get_loss("kcl", k=2, temperature=0.3)
    assert isinstance(m, KCL) and m.needs_labels
    z1, z2 = rand_views(10, 5, 10)
    a = m(z1, z2, LABELS, generator=torch.Generator().manual_seed(5))
    b = kcl(z1, z2, LABELS, 2, 0.3, torch.Generator().manual_seed(5))
    assert a.item() == b.item()
    assert m(z1, z2).item() == pytest.approx(nt_xent(z1, z2, 0.3).item(), rel=1e-10)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="k "):
            KCL(k=bad)
