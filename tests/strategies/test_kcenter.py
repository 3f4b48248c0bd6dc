"""Greedy k-center (Sener & Savarese 2018)."""
import numpy as np
import pytest
from selector.strategies.kcenter import KCenter, kcenter_greedy


def brute_greedy(x, centers, n):
    """Obvious O(n^2) reference: recompute every distance each step (float64)."""
    x = x.astype(np.float64)
    chosen = list(centers)
    out = []
    if not chosen:
        chosen = [int(np.argmin(((x - x.mean(0)) ** 2).sum(1)))]
        out.append(chosen[0])
    while len(out) < n:
        d = np.min(((x[:, None, :] - x[chosen][None]) ** 2).sum(-1), axis=1)
        d[chosen] = -1
        j = int(np.argmax(d))
        chosen.append(j)
        out.append(j)
    return out


def test_matches_brute_force_with_and_without_centers():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 5)).astype(np.float32)
    for centers in ([], [3, 100, 250]):
        picked, radius = kcenter_greedy(x, np.array(centers, dtype=np.int64), 20, chunk=37)
        assert picked.tolist() == brute_greedy(x, centers, 20)
        assert (np.diff(radius) <= 1e-6).all()  # greedy radii never increase
        assert not set(picked.tolist()) & set(centers)


def test_picks_far_outliers_first():
    rng = np.random.default_rng(1)
    x = 0.05 * rng.standard_normal((500, 3))
    outliers = np.array([[10, 0, 0], [0, -10, 0], [0, 0, 10]], dtype=np.float64)
    x = np.concatenate([x, outliers]).astype(np.float32)
    picked, radius = kcenter_greedy(x, np.zeros(0, np.int64), 4)
    # first pick is the most central point, then the three outliers
    assert picked[0] < 500
    assert set(picked[1:].tolist()) == {500, 501, 502}
    assert radius[1] > 9


def test_first_pick_is_most_central_and_radius():
    x = np.array([[0, 0], [1, 0], [-1, 0], [0, 3]], dtype=np.float32)
    picked, radius = kcenter_greedy(x, np.zeros(0, np.int64), 2)
    assert picked[0] == 0  # mean (0, 0.75): nearest row is (0, 0)
    assert picked[1] == 3
    np.testing.assert_allclose(radius, [3.0, 3.0], atol=1e-6)


def test_strategy_uses_labeled_as_centers():
    x = np.array([[0, 0], [0.1, 0], [5, 5], [5.1, 5], [-5, 5]], dtype=np.float32)
    mask = np.array([True, False, True, False, False])
    s = KCenter(report_radius=True).select(x, 1, labeled_mask=mask)
    assert s.indices.tolist() == [4]
    np.testing.assert_allclose(s.info["radius"], 0.1, atol=1e-5)


def test_shortlist_gives_the_same_picks_as_full_passes():
    rng = np.random.default_rng(7)
    blobs = rng.standard_normal((20, 12)) * 3
    x = (blobs[rng.integers(0, 20, 5000)] + rng.standard_normal((5000, 12))).astype(np.float32)
    for centers in (np.zeros(0, np.int64), np.array([5, 17, 4000])):
        full, r_full = kcenter_greedy(x, centers, 150, chunk=1000, shortlist=10**9)  # one pass per pick
        for s in (64, 300, 2000):  # tiny shortlists force many refreshes
            short, r_short = kcenter_greedy(x, centers, 150, chunk=1000, shortlist=s)
            assert short.tolist() == full.tolist()
            np.testing.assert_allclose(r_short, r_full, rtol=1e-5)


def test_shortlist_handles_ties_at_the_threshold():
    # many exact duplicates: the shortlist's farthest rows all tie, so progress needs full passes
    x = np.repeat(np.eye(6, dtype=np.float32), 50, axis=0)
    picked, radius = kcenter_greedy(x, np.zeros(0, np.int64), 6, shortlist=10)
    assert sorted(set(np.argmax(x[picked], axis=1).tolist())) == list(range(6))
    assert radius[-1] > 1.0


def test_allowed_rows_are_the_only_picks_and_match_brute_force():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 6)).astype(np.float32)
    allowed = rng.random(400) < 0.3
    centers = np.flatnonzero(~allowed)[:5]  # centers may lie outside the allowed rows
    for shortlist in (10**9, 16):
        picked, radius = kcenter_greedy(x, centers, 25, shortlist=shortlist, allowed=allowed)
        assert allowed[picked].all() and len(set(picked.tolist())) == 25
        # reference: farthest allowed row from centers + earlier picks, one at a time (float64)
        chosen, ref = list(centers), []
        for _ in range(25):
            d = ((x[:, None, :].astype(np.float64) - x[chosen][None]) ** 2).sum(-1).min(1)
            d[~allowed] = -1
            d[chosen] = -1
            j = int(np.argmax(d))
            ref.append(j)
            chosen.append(j)
        assert picked.tolist() == ref
    # without centers the first pick is the allowed row nearest the mean
    first, _ = kcenter_greedy(x, np.zeros(0, np.int64), 1, allowed=allowed)
    rows = np.flatnonzero(allowed)
    assert first[0] == rows[np.argmin(((x[rows] - x.mean(0)) ** 2).sum(1))]
    with pytest.raises(ValueError, match="free rows"):
        kcenter_greedy(x, centers, int(allowed.sum()) + 1, allowed=allowed)


def test_one_blas_thread_limits_blas_and_restores_it():
    from selector.strategies.kcenter import one_blas_thread
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    with one_blas_thread():
        inside = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert inside and set(inside) == {1}
    assert after == before


def test_greedy_loop_runs_on_one_blas_thread(monkeypatch):
    # record the BLAS thread count every time the per-pick loop enters its context
    import contextlib

    from selector.strategies import kcenter
    from threadpoolctl import threadpool_info

    seen = []
    real = kcenter.one_blas_thread

    @contextlib.contextmanager
    def spy():
        with real():
            seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
            yield

    monkeypatch.setattr(kcenter, "one_blas_thread", spy)
    x = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    for shortlist in (None, 50):  # full passes and shortlist refreshes
        seen.clear()
        picked, _ = kcenter.kcenter_greedy(x, np.zeros(0, np.int64), 40, shortlist=shortlist)
        assert seen and all(s == {1} for s in seen)
        assert np.unique(picked).shape[0] == 40


def test_default_shortlist_matches_full_passes_on_a_larger_pool():
    # the default shortlist (max(1024, 2n)) is used at n = 5000 rows, 300 picks: same picks as full passes
    x = np.random.default_rng(3).standard_normal((5000, 16)).astype(np.float32)
    full, r_full = kcenter_greedy(x, np.zeros(0, np.int64), 300, shortlist=10**9)
    short, r_short = kcenter_greedy(x, np.zeros(0, np.int64), 300)
    np.testing.assert_allclose(r_short, r_full, rtol=1e-5)
    assert (short == full).mean() > 0.99  # only float32 near-ties may differ
