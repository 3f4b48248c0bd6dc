"""Fixtures and helpers shared by the format tests: a pool folder of awkward file names, a selection over
it, the pool ids the readers' tests label, and the file Label Studio would serve for a task's URL."""
from __future__ import annotations

import os
import posixpath
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image
from selector.strategies.base import Selection

# File names that break naive writers: spaces, non-ASCII, URL/CSV/XML specials, a sub folder.
NAMES = ["a b.png", "sub dir/ünïcödé 猫.png", "c,d \"q\".png", "e+f&g#h%20.png", "plain.png",
         "sub dir/x<y>.png"]

# Pool ids the readers' tests label: spaces, non-ASCII, URL specials, a sub folder.
POOL = [f"img {i:02d}.png" for i in range(40)] + ["sub dir/ünï 猫.png", "sub dir/a+b&c#d%20.png",
                                                   "é,\"q\".png", "x y/z.png"]


@pytest.fixture
def named_pool(tmp_path):
    """A pool folder holding the images ``NAMES`` (small, of distinct sizes); returns (root, paths)."""
    root = tmp_path / "pool"
    (root / "sub dir").mkdir(parents=True)
    for i, p in enumerate(NAMES):
        Image.new("RGB", (4 + i, 3 + 2 * i), (i * 30, 0, 0)).save(root / p)
    return root, list(NAMES)


def make_selection():
    """A selection over ``NAMES``: rank order 4, 1, 3, 0, 5; item 3 has no group and item 0 a NaN score."""
    return Selection(indices=np.array([4, 1, 3, 0, 5], dtype=np.int64),
                     scores=np.array([0.9, 0.7, 0.5, np.nan, 0.1]),
                     groups=np.array([2, 0, -1, 1, 0], dtype=np.int64), n_groups=3, info={})


def served_file(url, document_root, storage_path):
    """The file Label Studio's local-files view would open for ``url``, with the document root
    a parent of the Local Files storage folder as its docs require, and the file inside that
    storage folder as its permission check requires."""
    parts = urlsplit(url)
    assert parts.path == "/data/local-files/"
    d = parse_qs(parts.query)["d"][0]  # what Django's request.GET.get('d') gives
    rel = posixpath.normpath(d).lstrip("/")
    full = Path(document_root) / rel
    assert Path(storage_path).is_relative_to(document_root) and Path(storage_path) != Path(document_root)
    directory = os.path.normpath(os.path.dirname(full))
    storage = str(storage_path).rstrip(os.sep)
    assert directory == storage or directory.startswith(storage + os.sep)
    return full
