"""Tests for selector.losses.debiased_neg (Chuang et al., NeurIPS 2020)."""
from __future__ import annotations

import math

import pytest
import torch

from selector.losses import DebiasedNeg, get_loss
from selector.losses.debiased_neg import debiased_neg
from selector.losses.nt_xent import nt_xent

from .reference import dot, unit_rows


def ref_debiased_neg(z1, z2, t, tau_plus):
    """Loop over anchors, exactly the written formula (and Chuang et al.'s reference code)."""
    z = unit_rows(z1, z2)
    n, b = len(z), len(z) // 2
    big_n = n - 2
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        pos = math.exp(dot(z[i], z[j]) / t)
        neg_sum = sum(math.exp(dot(z[i], z[k]) / t) for k in range(n) if k not in (i, j))
        ng = (neg_sum - tau_plus * big_n * pos) / (1 - tau_plus)
        ng = max(ng, big_n * math.exp(-1 / t))
        total += -math.log(pos / (pos + ng))
    return total / n


def rand_views(b, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("b,d,t,tau,seed", [(2, 3, 0.5, 0.1, 0), (6, 8, 0.5, 0.3, 1), (12, 4, 0.1, 0.05, 2),
                                             (8, 16, 1.0, 0.5, 3), (5, 5, 0.07, 0.2, 4)])
def test_matches_reference(b, d, t, tau, seed):
    z1, z2 = rand_views(b, d, seed)
    got = debiased_neg(z1, z2, t, tau)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(ref_debiased_neg(z1, z2, t, tau), rel=1e-5)


def test_clamp_binds_and_matches_reference():
    # rows a, -a, a in both views; anchor a has pos e^2 and negatives {-a, a, -a, a} (N = 4):
    # S = 2e^-2 + 2e^2 < tau+ N pos = 2.4 e^2, so raw Ng < 0 and the clamp N e^{-1/t} binds
    a = torch.tensor([[1.0, 2.0, -0.5]], dtype=torch.float64)
    z1 = torch.cat([a, -a, a]) + 1e-3 * torch.randn(3, 3, generator=torch.Generator().manual_seed(0),
                                                    dtype=torch.float64)
    z2 = z1.clone()
    t, tau = 0.5, 0.6
    want = ref_debiased_neg(z1, z2, t, tau)
    got = debiased_neg(z1.requires_grad_(True), z2, t, tau)
    assert got.item() == pytest.approx(want, rel=1e-5)
    got.backward()
    assert torch.isfinite(z1.grad).all()


def test_hand_computed_clamp_case():
    # B = 2: rows a, -a in both views. For every anchor: pos sim 1, two negatives with sim -1.
    a = torch.tensor([[0.6, 0.8]], dtype=torch.float64)
    z1 = torch.cat([a, -a])
    t, tau = 0.5, 0.5
    n_neg = 2
    # S = 2 e^{-2}, tau+ N P = e^{2}: raw Ng < 0 -> clamp N e^{-2} = S
    want = -math.log(math.exp(2) / (math.exp(2) + n_neg * math.exp(-2)))
    assert debiased_neg(z1, z1.clone(), t, tau).item() == pytest.approx(want, rel=1e-12)


def test_tau_plus_zero_is_nt_xent():
    """Known identity: with tau+ = 0 the estimator is the plain negative sum and the clamp never binds."""
    for seed, t in [(5, 0.5), (6, 0.1), (7, 0.05)]:
        z1, z2 = rand_views(10, 6, seed)
        assert debiased_neg(z1, z2, t, 0.0).item() == pytest.approx(nt_xent(z1, z2, t).item(), rel=1e-10)


def test_debiasing_lowers_the_loss():
    # subtracting an estimate of same-class mass from the negatives can only lower the loss
    z1, z2 = rand_views(8, 6, 8)
    vals = [debiased_neg(z1, z2, 0.5, tp).item() for tp in (0.0, 0.05, 0.1, 0.2)]
    assert all(x >= y - 1e-12 for x, y in zip(vals, vals[1:]))
    assert vals[0] > vals[-1]


def test_swap_views_and_scale_invariance():
    z1, z2 = rand_views(7, 5, 9)
    base = debiased_neg(z1, z2, 0.3, 0.1).item()
    assert debiased_neg(z2, z1, 0.3, 0.1).item() == pytest.approx(base, rel=1e-12)
    assert debiased_neg(2 * z1, 0.1 * z2, 0.3, 0.1).item() == pytest.approx(base, rel=1e-12)


def test_gradient_flows_and_stable_low_temperature():
    z1, z2 = rand_views(6, 4, 10, dtype=torch.float32)
    z1.requires_grad_(True)
    val = debiased_neg(z1, z2, 0.02, 0.1)   # logits up to 50: exp would overflow without the shift
    assert torch.isfinite(val)
    val.backward()
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0
    # float32 agrees with float64 even here
    assert val.item() == pytest.approx(debiased_neg(z1.double(), z2.double(), 0.02, 0.1).item(), rel=1e-4)


def test_bf16_autocast_on_cpu():
    g = torch.Generator().manual_seed(11)
    x1, x2 = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g)
    lin = torch.nn.Linear(10, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h1, h2 = lin(x1), lin(x2)
        val = debiased_neg(h1, h2, 0.2, 0.1)
    assert torch.isfinite(val) and val.dtype == torch.float32
    assert val.item() == pytest.approx(debiased_neg(h1.float(), h2.float(), 0.2, 0.1).item(), rel=1e-5)
    assert val.item() == pytest.approx(debiased_neg(lin(x1), lin(x2), 0.2, 0.1).item(), rel=3e-2)
    val.backward()
    assert torch.isfinite(lin.weight.grad).all()


def test_module_and_validation():
    m = get_loss("debiased-neg", temperature=0.4, tau_plus=0.2)
    assert isinstance(m, DebiasedNeg) and not m.needs_labels
    z1, z2 = rand_views(5, 3, 12)
    assert m(z1, z2).item() == pytest.approx(ref_debiased_neg(z1, z2, 0.4, 0.2), rel=1e-5)
    assert m(z1, z2, torch.zeros(5, dtype=torch.long)).item() == m(z1, z2).item()  # labels ignored
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="tau_plus"):
            DebiasedNeg(tau_plus=bad)
    with pytest.raises(ValueError, match="temperature"):
        DebiasedNeg(temperature=-1)
