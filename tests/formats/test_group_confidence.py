"""Group pre-annotations (Label Studio predictions, CVAT auto tags) only from a confident class count."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from selector.strategies.base import Selection

from selector.formats import export_selection
from selector.formats.common import groups_confident


def selection(classes):
    info = {} if classes is None else {"classes": classes}
    return Selection(indices=np.array([0, 1, 2, 3]), scores=np.array([4.0, 3.0, 2.0, 1.0]),
                     groups=np.array([0, 1, 2, 0]), n_groups=3, info=info)


SURE = {"estimate": 3, "low": 3, "high": 4, "confident": True}
UNSURE = {"estimate": 3, "low": 2, "high": 9, "confident": False}


def test_groups_are_confident_only_when_the_count_says_so():
    assert groups_confident(selection(SURE))
    assert not groups_confident(selection(UNSURE))
    assert groups_confident(selection(None))  # no count (a count given by the caller): the groups stand
    assert not groups_confident(selection({**SURE, "confident": "yes"}))  # only a real True counts


@pytest.mark.parametrize("classes, tagged", [(SURE, True), (UNSURE, False)])
def test_label_studio_predicts_groups_only_when_confident(named_pool, tmp_path, classes, tagged):
    root, paths = named_pool
    files = export_selection(selection(classes), paths, tmp_path / "t.json", root=root, class_names=["cat"],
                             predict_groups=True)
    tasks = json.loads(files[0].read_text(encoding="utf-8"))
    results = [t["predictions"][0]["result"] for t in tasks]
    assert all(bool(r) == tagged for r in results)
    assert [t["data"]["group"] for t in tasks] == [0, 1, 2, 0]  # the group column is always there


@pytest.mark.parametrize("classes, tagged", [(SURE, True), (UNSURE, False)])
def test_cvat_tags_groups_only_when_confident(named_pool, tmp_path, classes, tagged):
    root, paths = named_pool
    out = tmp_path / "task.xml"
    files = export_selection(selection(classes), paths, out, root=root)
    tags = [[t.get("label") for t in img] for img in ET.parse(out).getroot().findall("image")]
    assert tags == ([["group-0"], ["group-1"], ["group-2"], ["group-0"]] if tagged else [[]] * 4)
    labels = json.loads(files[2].read_text(encoding="utf-8"))
    assert [lab["name"] for lab in labels] == ["group-0", "group-1", "group-2"]  # the task still has labels
