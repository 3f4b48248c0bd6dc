"""Fixtures and helpers shared by the format tests: a pool folder of awkward file names, a selection over
it, the pool ids the readers' tests label, the file Label Studio would serve for a task's URL, and Label
Studio's JSON and JSON-MIN exports of annotated tasks."""
from __future__ import annotations

import copy
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


def stamp(n):
    """Label Studio's time stamp of minute ``n``."""
    return f"2026-01-01T10:{n:02d}:00.000000Z"


def json_min(tasks, labels, open_=(), control="choice"):
    """Label Studio 1.23's JSON-MIN export of ``tasks`` (which carry Label Studio's ``id``): one object per
    annotation (``labels``: path -> class, or a list of classes for a multiple choice, under ``control``),
    one with null annotation fields per open task; others (skipped) left out."""
    out = []
    for t in tasks:
        p = t["data"]["path"]
        rec = {**copy.deepcopy(t["data"]), "id": t["id"]}
        if p in labels:
            lab = labels[p]
            rec[control] = lab if isinstance(lab, str) else {"choices": lab}
            rec.update(annotator=1, annotation_id=1000 + t["id"], created_at=stamp(t["id"] % 60),
                       updated_at=stamp(t["id"] % 60), lead_time=3.2)
        elif p in open_:
            rec.update(annotator=None, annotation_id=None, created_at=None, updated_at=None, lead_time=None)
        else:
            continue
        out.append(rec)
    return out


def full_export(tasks, labels, cancelled=(), twice=None):
    """Label Studio's JSON export of ``tasks`` ("only annotated tasks" is the exporter's default, so the
    caller drops open ones as needed): ``labels`` annotated, ``cancelled`` skipped, ``twice``: path ->
    (older, newer) classes from two annotators."""
    out = []
    for t in copy.deepcopy(tasks):
        p = t["data"]["path"]

        def ann(k, cls, cancel=False, _t=t):
            res = [] if cancel else [{"id": f"r{_t['id']}{k}", "from_name": "choice", "to_name": "image",
                                      "type": "choices", "origin": "manual", "value": {"choices": [cls]}}]
            return {"id": 10 * _t["id"] + k, "completed_by": k, "was_cancelled": cancel, "result": res,
                    "created_at": stamp(k), "updated_at": stamp(k), "lead_time": 1.5, "task": _t["id"]}

        if twice and p in twice:
            t["annotations"] = [ann(1, twice[p][0]), ann(2, twice[p][1])]
        elif p in labels:
            t["annotations"] = [ann(1, labels[p])]
        elif p in cancelled:
            t["annotations"] = [ann(1, None, cancel=True)]
        else:
            t["annotations"] = []
        t["predictions"] = []
        out.append(t)
    return out
