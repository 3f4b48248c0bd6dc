"""Uniform random selection (selector.strategies.random): a seeded draw without replacement from the
unlabeled rows, with no scores and no groups."""
from __future__ import annotations

import numpy as np
from selector.strategies.random import RandomSelection


def test_picks_are_a_seeded_uniform_draw_from_the_unlabeled_rows():
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    mask = np.zeros(50, dtype=bool)
    mask[::3] = True
    sel = RandomSelection().select(x, 10, mask, np.random.default_rng(7))
    expected = np.random.default_rng(7).choice(np.flatnonzero(~mask), size=10, replace=False)
    assert sel.indices.tolist() == expected.tolist()
    assert not mask[sel.indices].any() and len(set(sel.indices.tolist())) == 10
    assert (sel.scores == 0).all() and (sel.groups == -1).all()
    again = RandomSelection().select(x, 10, mask, np.random.default_rng(7))
    assert again.indices.tolist() == sel.indices.tolist()
