"""Tests for selector.losses.debiased_pos (debiased-positive estimate, M >= 1 positives)."""
from __future__ import annotations

import math

import pytest
import torch

from selector.losses import DebiasedPos, get_loss
from selector.losses.debiased_pos import debiased_pos

from .reference import dot


def ref_debiased_pos(views, t, tau_plus, mode, hits=None):
    """Loop over anchors and positives, exactly the written formula with the documented floor.

    ``views``: list of V (B, D) tensors.  Appends to ``hits`` whether the floor bound, per term.
    """
    rows = []
    for r in torch.cat(views).tolist():
        nrm = math.sqrt(sum(x * x for x in r))
        rows.append([x / nrm for x in r])
    b = views[0].shape[0]
    n = len(rows)
    tau_minus = 1 - tau_plus
    floor = tau_plus * math.exp(-1 / t)
    h = lambda i, j: math.exp(dot(rows[i], rows[j]) / t)  # noqa: E731
    total = 0.0
    for x in range(n):
        negs = [k for k in range(n) if k % b != x % b]
        poss = [k for k in range(n) if k % b == x % b and k != x]
        big_n = len(negs)
        s_neg = sum(h(x, u) for u in negs)
        p_neg = s_neg / big_n

        def one(hv):
            p_emp = (s_neg + hv + h(x, x)) / (big_n + 2)
            num = p_emp - tau_minus * p_neg
            den = p_emp + (big_n * tau_plus - tau_minus) * p_neg
            if hits is not None:
                hits.append(num < floor)
            if num < floor:
                den += floor - num
                num = floor
            return -math.log(num / den)

        if mode == "pos-grouping":
            total += one(sum(h(x, v) for v in poss) / len(poss))
        else:
            total += sum(one(h(x, v)) for v in poss) / len(poss)
    return total / n


def rand_views(v, b, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g, dtype=dtype) for _ in range(v)]


@pytest.mark.parametrize("b,d,t,tau,seed", [(2, 3, 0.5, 0.1, 0), (6, 8, 0.5, 0.3, 1), (10, 4, 0.1, 0.05, 2),
                                             (5, 16, 1.0, 0.5, 3)])
def test_two_views_match_reference_and_modes_coincide(b, d, t, tau, seed):
    z1, z2 = rand_views(2, b, d, seed)
    want = ref_debiased_pos([z1, z2], t, tau, "pos-grouping")
    assert want == pytest.approx(ref_debiased_pos([z1, z2], t, tau, "loss-combination"), rel=1e-12)
    for mode in ("pos-grouping", "loss-combination"):
        got = debiased_pos(z1, z2, t, tau, mode=mode)
        assert got.dtype == torch.float64
        assert got.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("n_views,b,t,tau,seed", [(3, 4, 0.5, 0.1, 4), (4, 5, 0.2, 0.2, 5), (3, 2, 1.0, 0.4, 6)])
@pytest.mark.parametrize("mode", ["pos-grouping", "loss-combination"])
def test_extra_views_match_reference(n_views, b, t, tau, seed, mode):
    views = rand_views(n_views, b, 6, seed)
    want = ref_debiased_pos(views, t, tau, mode)
    got_list = debiased_pos(views[0], views[1], t, tau, extra_views=views[2:], mode=mode)
    got_stack = debiased_pos(views[0], views[1], t, tau, extra_views=torch.stack(views[2:]), mode=mode)
    assert got_list.item() == pytest.approx(want, rel=1e-5)
    assert got_stack.item() == pytest.approx(want, rel=1e-12)


def test_modes_differ_for_several_positives():
    views = rand_views(3, 6, 5, 7)
    pg = debiased_pos(views[0], views[1], 0.3, 0.1, extra_views=views[2:], mode="pos-grouping").item()
    lc = debiased_pos(views[0], views[1], 0.3, 0.1, extra_views=views[2:], mode="loss-combination").item()
    assert abs(pg - lc) > 1e-4


def test_floor_binds_and_matches_reference():
    # anchor a: its own view is -a (h = e^{-2}), both negatives equal a (h = e^{2}); tau+ < 1/(N+2)
    # makes P_emp - tau- P_emp_neg negative, so the floor tau+ e^{-1/t} binds
    a = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    z1 = torch.cat([a, a]).requires_grad_(True)
    z2 = torch.cat([-a, a])
    t, tau = 0.5, 0.1
    hits = []
    want = ref_debiased_pos([z1.detach(), z2], t, tau, "pos-grouping", hits)
    assert any(hits)
    got = debiased_pos(z1, z2, t, tau)
    assert got.item() == pytest.approx(want, rel=1e-5)
    got.backward()
    assert torch.isfinite(z1.grad).all()
    # float32 gives the same value
    assert debiased_pos(z1.float(), z2.float(), t, tau).item() == pytest.approx(want, rel=1e-5)


def test_loss_is_nonnegative_and_swap_invariant():
    for seed in range(4):
        z1, z2 = rand_views(2, 6, 4, 10 + seed)
        v = debiased_pos(z1, z2, 0.2, 0.1).item()
        assert v >= 0.0
        assert debiased_pos(z2, z1, 0.2, 0.1).item() == pytest.approx(v, rel=1e-12)
        assert debiased_pos(4 * z1, z2 / 3, 0.2, 0.1).item() == pytest.approx(v, rel=1e-12)


def test_gradient_flows_and_low_temperature():
    views = rand_views(3, 6, 4, 20, dtype=torch.float32)
    for v in views:
        v.requires_grad_(True)
    for mode in ("pos-grouping", "loss-combination"):
        val = debiased_pos(views[0], views[1], 0.05, 0.1, extra_views=views[2:], mode=mode)
        assert torch.isfinite(val)
        val.backward()
        for v in views:
            assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
            v.grad = None
        ref = debiased_pos(*[v.detach().double() for v in views[:2]], 0.05, 0.1,
                           extra_views=[views[2].detach().double()], mode=mode)
        assert val.item() == pytest.approx(ref.item(), rel=1e-4)


def test_bf16_autocast_on_cpu():
    g = torch.Generator().manual_seed(21)
    xs = [torch.randn(12, 10, generator=g) for _ in range(3)]
    lin = torch.nn.Linear(10, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hs = [lin(x) for x in xs]
        val = debiased_pos(hs[0], hs[1], 0.2, 0.1, extra_views=hs[2:], mode="loss-combination")
    assert torch.isfinite(val) and val.dtype == torch.float32
    want32 = debiased_pos(hs[0].float(), hs[1].float(), 0.2, 0.1, extra_views=[hs[2].float()],
                          mode="loss-combination")
    assert val.item() == pytest.approx(want32.item(), rel=1e-5)
    full = debiased_pos(lin(xs[0]), lin(xs[1]), 0.2, 0.1, extra_views=[lin(xs[2])], mode="loss-combination")
    assert val.item() == pytest.approx(full.item(), rel=3e-2)
    val.backward()
    assert torch.isfinite(lin.weight.grad).all()


def test_module_and_validation():
    m = get_loss("debiased-pos", temperature=0.4, tau_plus=0.2, mode="loss-combination")
    assert isinstance(m, DebiasedPos) and not m.needs_labels
    views = rand_views(3, 4, 3, 30)
    want = ref_debiased_pos(views, 0.4, 0.2, "loss-combination")
    assert m(views[0], views[1], None, extra_views=views[2:]).item() == pytest.approx(want, rel=1e-5)
    assert m(views[0], views[1], torch.zeros(4, dtype=torch.long)).item() == m(views[0], views[1]).item()
    with pytest.raises(ValueError, match="tau_plus"):
        DebiasedPos(tau_plus=0.0)
    with pytest.raises(ValueError, match="mode"):
        DebiasedPos(mode="average")
    with pytest.raises(ValueError, match="extra_views"):
        m(views[0], views[1], extra_views=[torch.randn(4, 5)])
    with pytest.raises(ValueError, match="extra_views"):
        m(views[0], views[1], extra_views=torch.randn(1, 1, 4, 3))
