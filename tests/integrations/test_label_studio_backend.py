"""``selector serve``'s logic without Label Studio: :class:`RankingBackend` and the HTTP server over a fake API
that holds a project's tasks as Label Studio's task list gives them (``fields=all``), on 30 real digits.

Checked: the prediction scores order the tasks as selector's own selection does, with labeled, skipped and
in-progress tasks (and byte-identical copies) never in the next batch; the group is pre-selected only when the
class count is confident and the config offers it; the routes Label Studio calls (health, setup, predict,
webhook) and selector's (next-round, order) answer as documented; malformed requests are one-line 400s.
The live test against a real Label Studio is ``test_label_studio_live.py``.
"""
from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from selector.integrations import class_count_confident
from selector.integrations import label_studio_backend as lsb
from selector.integrations.label_studio_backend import (
    OPEN_SCORE,
    TAKEN_SCORE,
    BackendError,
    RankingBackend,
    parse_config,
    project_id,
    task_state,
)
from tests.conftest import wait_until, write_digits

N, BUDGET, PROJECT = 30, 6, 7
CONFIG = ('<View><Image name="image" value="$image"/><Choices name="choice" toName="image">'
          + "".join(f'<Choice value="group-{g}"/>' for g in range(12)) + "</Choices></View>")


class FakeAPI:
    """A project's tasks and config as :class:`LabelStudioAPI` returns them; records refresh calls."""

    def __init__(self, tasks: list[dict], config: str = CONFIG):
        self.tasks_, self.config, self.refreshed = tasks, config, []

    def label_config(self, project: int) -> str:
        assert project == PROJECT, project
        return self.config

    def tasks(self, project: int):
        assert project == PROJECT, project
        yield from (json.loads(json.dumps(t)) for t in self.tasks_)  # copies, as the API gives

    def refresh_predictions(self, project: int, version: str) -> int:
        self.refreshed.append((project, version))
        return 0


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A Selector fitted on 30 digits (one cache for the module) and its pool folder."""
    from selector import Selector

    base = tmp_path_factory.mktemp("lsb")
    pool = write_digits(base / "docs" / "pool", N)
    return Selector(seed=0, cache_dir=base / "cache").fit(pool), pool


def make_tasks(sel, pool: Path) -> list[dict]:
    """One task per pool file, ids 100.., each image a local-files URL under the pool's parent (as Label Studio's
    local storage with LOCAL_FILES_DOCUMENT_ROOT at the pool's parent shows them)."""
    return [{"id": 100 + i, "data": {"image": f"/data/local-files/?d={pool.name}/{p}"}, "annotations": [],
             "drafts": [], "total_annotations": 0, "cancelled_annotations": 0} for i, p in enumerate(sel.pool_.ids)]


def annotate(task: dict, label: str | None = "group-0", cancelled: bool = False) -> None:
    result = [] if label is None else [{"from_name": "choice", "to_name": "image", "type": "choices",
                                        "value": {"choices": [label]}}]
    task["annotations"].append({"id": 1, "result": result, "was_cancelled": cancelled})


def expected_order(sel, taken_rows) -> list[int]:
    labeled = np.zeros(len(sel.pool_), dtype=bool)
    labeled[list(taken_rows)] = True
    return [100 + int(i) for i in sel.select(BUDGET, labeled=labeled).indices]


# ----------------------------------------------------------------------------- pure helpers


def test_project_ids_configs_and_task_states_are_read_as_label_studio_sends_them():
    assert project_id(12) == project_id("12") == project_id("12.1712345678") == project_id({"id": 12}) == 12
    for bad in (True, "x12", None, 1.5):
        with pytest.raises(BackendError, match="not a Label Studio project id"):
            project_id(bad)
    cfg = parse_config(CONFIG)
    assert (cfg.from_name, cfg.to_name, cfg.data_key) == ("choice", "image", "image")
    assert cfg.choices[:2] == ("group-0", "group-1")
    assert parse_config("<View") == parse_config(None) == parse_config("")  # not XML: nothing read
    t = {"annotations": [], "drafts": []}
    assert task_state(t) == ("open", None)
    assert task_state({**t, "drafts": [{"result": []}]}) == ("in progress", None)
    assert task_state({**t, "annotations": [{"result": [], "was_cancelled": True}]}) == ("skipped", None)
    done = {**t, "annotations": [{"was_cancelled": False, "result": [
        {"from_name": "choice", "type": "choices", "value": {"choices": ["7"]}}]}]}
    assert task_state(done, "choice") == ("labeled", "7")
    assert task_state(done, "other") == ("labeled", None)  # another control's choice is not this one's label
    assert task_state({"total_annotations": 2}) == ("labeled", None)  # counted but left out of the list


def test_class_count_confident_reads_only_a_literal_true():
    class R:
        def __init__(self, info, sel_info=None):
            self.info, self.selection = info, type("S", (), {"info": sel_info or {}})()

    assert class_count_confident(R({"classes": {"estimate": 4, "confident": True}}))
    assert class_count_confident(R({}, {"classes": {"confident": np.bool_(True)}}))
    assert class_count_confident(R({"confident": True}))
    for info in ({}, {"classes": {"confident": "true"}}, {"classes": {"confident": 1}}, {"classes": None},
                 {"classes": {"confident": False}}):
        assert not class_count_confident(R(info)), info


# ----------------------------------------------------------------------------- the ranking


def test_scores_order_the_tasks_as_selector_selects_and_exclude_what_is_taken(fitted):
    sel, pool = fitted
    tasks = make_tasks(sel, pool)
    api = FakeAPI(tasks)
    backend = RankingBackend(sel, api, BUDGET)

    first = backend.rank(PROJECT)
    assert first.order == expected_order(sel, [])
    by_score = sorted(first.scores, key=lambda tid: -first.scores[tid])
    assert by_score[:BUDGET] == first.order  # sorting by score, descending, is selector's order
    assert all(first.scores[t] > 0.5 for t in first.order) and first.scores[first.order[0]] == 1.0
    assert {first.scores[t] for t in by_score[BUDGET:]} == {OPEN_SCORE}
    assert first.counts == {"open": N, "labeled": 0, "skipped": 0, "in progress": 0}
    assert first.summary()["groups"] == [int(g) for g in sel.select(BUDGET).selection.groups]

    # round 1 done: four labeled, one skipped, one in progress; and a task whose image is not in the pool
    pos = {t["id"]: t for t in tasks}
    for tid in first.order[:4]:
        annotate(pos[tid])
    annotate(pos[first.order[4]], None, cancelled=True)
    pos[first.order[5]]["drafts"].append({"result": []})
    tasks.append({"id": 999, "data": {"image": "/data/local-files/?d=elsewhere/x.png"}, "annotations": []})

    second = backend.rank(PROJECT)
    taken_rows = [t - 100 for t in first.order]
    assert second.order == expected_order(sel, taken_rows)
    assert not set(second.order) & set(first.order)  # no task offered twice
    assert all(second.scores[t] == TAKEN_SCORE for t in first.order + [999])
    assert second.counts == {"open": N - BUDGET, "labeled": 4, "skipped": 1, "in progress": 1, "outside pool": 1}
    assert second.version != first.version and second.version.startswith("selector-typcover-")
    assert backend.rank(PROJECT).version == second.version  # the same state gives the same version


def test_a_copy_of_a_labeled_image_is_never_offered(fitted, tmp_path):
    from selector import Selector

    sel0, pool0 = fitted
    pool = tmp_path / "pool"
    shutil.copytree(pool0, pool)
    first = sorted(pool.rglob("*.png"))[0]
    shutil.copy(first, pool / "copy.png")  # byte-identical to the first file
    sel = Selector(seed=0, cache_dir=sel0.cache_dir).fit(pool)
    tasks = [{"id": i, "data": {"path": p}, "annotations": []} for i, p in enumerate(sel.pool_.ids)]
    row_first = sel.pool_.ids.index(first.relative_to(pool).as_posix())
    row_copy = sel.pool_.ids.index("copy.png")
    annotate(tasks[row_first])
    n = len(tasks)
    other = next(r for r in range(n) if r not in (row_first, row_copy))
    tasks.append({"id": 500, "data": {"path": sel.pool_.ids[other]}, "annotations": []})  # a second task, one file

    ranking = RankingBackend(sel, FakeAPI(tasks), n - 2).rank(PROJECT)

    assert row_copy not in ranking.order and ranking.scores[row_copy] <= OPEN_SCORE
    assert 500 not in ranking.order and ranking.scores[500] == OPEN_SCORE  # one file is offered once
    assert sorted(ranking.order) == sorted(set(range(n)) - {row_first, row_copy})  # every other open file


@pytest.mark.parametrize("confident", [True, False])
def test_the_group_is_preselected_only_when_the_class_count_is_confident(fitted, monkeypatch, confident):
    sel, pool = fitted
    monkeypatch.setattr(lsb, "class_count_confident", lambda result: confident)
    backend = RankingBackend(sel, FakeAPI(make_tasks(sel, pool)), BUDGET)
    ranking = backend.rank(PROJECT)

    preds, unknown = backend.predictions(PROJECT, [{"id": t} for t in ranking.order] + [{"id": 12345}])

    assert unknown  # task 12345 is not in the ranking: the caller ranks again
    assert [p["score"] for p in preds[:-1]] == [ranking.scores[t] for t in ranking.order]
    assert preds[-1]["score"] == TAKEN_SCORE
    assert {p["model_version"] for p in preds} == {ranking.version}
    groups = sel.select(BUDGET).selection.groups
    if confident:
        assert [p["result"][0]["value"]["choices"] for p in preds[:-1]] == [[f"group-{g}"] for g in groups]
        assert preds[0]["result"][0]["from_name"] == "choice" and preds[0]["result"][0]["to_name"] == "image"
    else:
        assert all(p["result"] == [] for p in preds)
    with pytest.raises(BackendError, match="no integer id"):
        backend.predictions(PROJECT, [{"id": "7"}])


def test_a_config_without_the_group_names_gets_no_preselection(fitted, monkeypatch):
    sel, pool = fitted
    monkeypatch.setattr(lsb, "class_count_confident", lambda result: True)
    digits = CONFIG.replace("group-", "")  # choices "0".."11": the groups are not the classes
    backend = RankingBackend(sel, FakeAPI(make_tasks(sel, pool), digits), BUDGET)
    ranking = backend.rank(PROJECT)
    assert ranking.confident and ranking.choices == {}


# ----------------------------------------------------------------------------- the HTTP server


def call(url: str, body: dict | None = None, method: str | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method or ("GET" if body is None else "POST"))
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def served(fitted):
    """The backend's HTTP server on a free localhost port, over a fake API; shut down at the end."""
    from selector.integrations.label_studio_server import make_server

    sel, pool = fitted
    api = FakeAPI(make_tasks(sel, pool))
    server = make_server(RankingBackend(sel, api, BUDGET), api, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        yield f"http://{host}:{port}", api, sel
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        assert not thread.is_alive() and wait_until(lambda: not server.reranker.is_alive(), 10)


def test_the_routes_label_studio_calls_and_a_next_round(served):
    url, api, sel = served
    assert call(f"{url}/health") == (200, {"status": "UP", "model_class": "selector", "v2": True})
    assert call(f"{url}/order?project={PROJECT}")[0] == 404  # no order before the project connects

    status, setup = call(f"{url}/setup", {"project": f"{PROJECT}.1712345678", "schema": CONFIG})
    assert status == 200 and setup["model_version"].startswith("selector-typcover-")  # or -pending, if slow
    assert wait_until(lambda: call(f"{url}/order?project={PROJECT}")[0] == 200 and not
                      call(f"{url}/order?project={PROJECT}")[1]["pending"], 120, 0.2)
    status, order = call(f"{url}/order?project={PROJECT}")
    first = expected_order(sel, [])
    assert order["order"] == first and api.refreshed == [(PROJECT, order["model_version"])]
    assert setup["model_version"] in (order["model_version"], "selector-typcover-pending")

    tasks = [{"id": t, "data": {}} for t in reversed(first)]
    status, pred = call(f"{url}/predict", {"tasks": tasks, "project": f"{PROJECT}.1", "label_config": CONFIG})
    assert status == 200 and pred["model_version"] == order["model_version"]
    scores = [r["score"] for r in pred["results"]]
    assert scores == sorted(scores) and len(scores) == BUDGET  # tasks sent last-first: scores rise

    # round 1 annotated; Label Studio's webhook schedules a new order, which Label Studio is asked to retrieve
    for t in api.tasks_:
        if t["id"] in first:
            annotate(t)
    status, hook = call(f"{url}/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": PROJECT},
                                           "annotation": {"id": 1}})
    assert status == 200 and hook["scheduled"] is True
    assert wait_until(lambda: call(f"{url}/order?project={PROJECT}")[1]["order"] != first and not
                      call(f"{url}/order?project={PROJECT}")[1]["pending"], 120, 0.2)
    status, order = call(f"{url}/order?project={PROJECT}")
    assert order["order"] == expected_order(sel, [t - 100 for t in first])
    assert not set(order["order"]) & set(first)
    assert api.refreshed[-1] == (PROJECT, order["model_version"])
    assert call(f"{url}/webhook", {"action": "PROJECT_UPDATED", "project": {"id": PROJECT}})[1]["scheduled"] is False

    # an explicit next round on an unchanged project answers with the same order
    status, again = call(f"{url}/next-round", {"project": PROJECT})
    assert status == 200 and again["order"] == order["order"] and again["counts"]["labeled"] == BUDGET


def test_malformed_requests_are_one_line_400s(served):
    url, _, _ = served
    req = urllib.request.Request(f"{url}/predict", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400 and "not JSON" in json.loads(e.value.read())["error"]
    status, body = call(f"{url}/predict", {"tasks": "nope"})
    assert status == 400 and body["error"] == "/predict needs a list of tasks"
    status, body = call(f"{url}/setup", {"project": "abc"})
    assert status == 400 and body["error"] == "not a Label Studio project id: 'abc'"
    assert call(f"{url}/nowhere")[0] == 404
    assert call(f"{url}/predict", {"tasks": []}) == (200, {"results": []})


def test_a_refresh_that_fails_is_tried_again_and_the_project_stays_pending_meanwhile(fitted):
    """Label Studio calls /setup while it connects the backend, before the project has it: the first refresh
    fails ("Model version doesn't exist") and must be tried again."""
    from selector.integrations.label_studio_api import LabelStudioAPIError
    from selector.integrations.label_studio_server import Reranker

    class Flaky(FakeAPI):
        fails = 0

        def refresh_predictions(self, project: int, version: str) -> int:
            if self.fails:
                self.fails -= 1
                raise LabelStudioAPIError("model version of project 7: HTTP 400 Model version doesn't exist")
            return super().refresh_predictions(project, version)

    sel, pool = fitted
    for fails, retries, refreshed in ((2, (0.05, 0.05, 0.05), 1), (5, (0.05,), 0)):
        api = Flaky(make_tasks(sel, pool))
        api.fails = fails
        backend = RankingBackend(sel, api, BUDGET)
        worker = Reranker(backend, api, settle_s=0.0, retry_s=retries)
        worker.start()
        try:
            worker.schedule(PROJECT)
            assert worker.wait(PROJECT, 60) and not worker.pending(PROJECT)
        finally:
            worker.stop()
            worker.join(10)
        assert not worker.is_alive()
        assert api.fails == fails - 1 - min(len(retries), fails - 1)  # the first try and its retries
        assert api.refreshed == [(PROJECT, backend.ranking(PROJECT).version)] * refreshed
        if refreshed:
            assert worker.errors == {}
        else:  # out of retries: the last failure stays for /order
            assert "Model version doesn't exist" in worker.errors[PROJECT]
