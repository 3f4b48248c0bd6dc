"""What every format shares (selector.formats.common): the selection rows in rank order, and the path forms
a labels file may use (relative, Windows separators, absolute, file:// and Label Studio URLs, NFD names)."""
from __future__ import annotations

import numpy as np
import pytest
from selector.strategies.base import Selection

from selector.formats import ExportError, normalize_path, selection_rows, url_to_path
from selector.plan import labeled_mask
from tests.formats.conftest import NAMES, POOL, make_selection


def test_selection_rows_rank_order_and_validation():
    sel = make_selection()
    rows = selection_rows(sel, NAMES)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["path"] for r in rows] == [NAMES[i] for i in [4, 1, 3, 0, 5]]
    assert rows[3]["score"] is None and rows[0]["score"] == 0.9
    with pytest.raises(ExportError, match="out of range"):
        selection_rows(sel, NAMES[:5])
    bad = Selection(np.array([0, 0]), np.zeros(2), np.zeros(2, dtype=np.int64))
    with pytest.raises(ExportError, match="duplicate"):
        selection_rows(bad, NAMES)
    bad = Selection(np.array([0, 1]), np.zeros(3), np.zeros(2, dtype=np.int64))
    with pytest.raises(ExportError, match="3 scores"):
        selection_rows(bad, NAMES)


def test_path_forms_are_forgiving(tmp_path):
    root = tmp_path / "pool"
    root.mkdir()
    labels = {"./img 00.png": "a", "sub dir\\ünï 猫.png": "b", str(root / "x y" / "z.png"): "c",
              "file://" + (root / "img 03.png").as_posix().replace(" ", "%20"): "d",
              "/elsewhere/img 04.png": "e", "img 05.png": None}
    mask, y, classes, n_missing = labeled_mask(labels, POOL, root=root)
    assert n_missing == 1  # only the absolute path outside the pool
    assert np.flatnonzero(mask).tolist() == [0, 3, 5, 40, 43]
    assert classes == ["a", "b", "c", "d"]
    assert y[5] == -1 and classes[y[43]] == "c"
    # NFD (macOS) names match NFC pool ids.
    import unicodedata
    nfd = unicodedata.normalize("NFD", POOL[40])
    assert nfd != POOL[40]
    assert labeled_mask({nfd: "k"}, POOL)[0][40]
    assert normalize_path("a/../b/./c.png") == "b/c.png"
    assert url_to_path("/data/local-files/?d=a%2Bb%20c.png") == "a+b c.png"
    assert url_to_path("/data/local-files/?d=a+b.png") == "a b.png"  # query '+' is a space
    assert url_to_path("https://host/x/y%20z.png") == "x/y z.png"
