"""``selector serve`` against a real Label Studio server that the test starts (``label-studio`` from PyPI, its own
SQLite database in a temporary folder): a project of 50 real handwritten digits (scikit-learn) shown through
local files storage, the backend connected with the SDK, two rounds annotated with the SDK.

Checked: the Data Manager's order by prediction score (a tab sorted by it, as a team would make) starts with
exactly the tasks selector chooses (the same Selector run in this process, in rank order); after each round
the next order leaves out what was labeled, skipped or is in progress (a draft), so no task is offered twice;
the backend's counts follow Label Studio's state. Both servers are children of this process that die with it
(``PR_SET_PDEATHSIG``) and are stopped at the end; every wait is bounded.

Label Studio is not in the dev extra (about 70 packages, Django among them, pinned): install it with
``pip install -e '.[label-studio-server]'`` (it pins ``sentry-sdk<3``: sentry-sdk 3 stops Label Studio 1.23 at
start-up). Skipped, with that reason, where it is missing. Marked slow: Label Studio's first start migrates its
database (about a minute here).
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_until, write_digits

N, BUDGET = 50, 10
#: Seconds Label Studio may take to start: its first start migrates a new database (about 80 s here, over 300 s
#: on a loaded two-core machine).
LS_START_S = 900
USER, PASSWORD, LEGACY_TOKEN = "selector@example.com", "selector-test-pw", "selector0legacy0token"
CONFIG = ('<View><Image name="image" value="$image"/><Choices name="choice" toName="image">'
          + "".join(f'<Choice value="{d}"/>' for d in range(10)) + "</Choices></View>")


def _why_skip() -> str | None:
    for module, extra in (("label_studio", "label-studio-server"), ("label_studio_sdk", "label-studio")):
        if importlib.util.find_spec(module) is None:  # found without importing (Django is slow to import)
            return f"{module} is not installed (pip install -e '.[{extra}]')"
    return None


WHY_SKIP = _why_skip()
pytestmark = [pytest.mark.slow, pytest.mark.processes, pytest.mark.skipif(WHY_SKIP is not None, reason=WHY_SKIP or "")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with(parent: int):
    def pre() -> None:  # in the child between fork and exec: the kernel kills it when this process ends
        from selector.supervise import die_with_parent

        die_with_parent(parent, watch=False)
    return pre


def start(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=_die_with(os.getpid()))  # noqa: PLW1509 - prctl only


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def get_json(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def up(url: str) -> bool:
    try:
        get_json(url, timeout=2)
        return True
    except OSError:
        return False


def wait_up(proc: subprocess.Popen, url: str, log: Path, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and proc.poll() is None:
        if up(url):
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:]
    raise AssertionError(f"{url} not up within {timeout_s:g} s (exit status {proc.poll()}); log:\n{tail}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Label Studio with local files storage over a pool of 50 digits, a project showing them, and the data
    the test compares against."""
    from label_studio_sdk import LabelStudio

    base = tmp_path_factory.mktemp("ls")
    docs = base / "docs"
    pool = write_digits(docs / "pool", N)
    port = free_port()
    env = {**os.environ,
           "LABEL_STUDIO_BASE_DATA_DIR": str(base / "data"),
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(docs),
           # an ML backend and its webhook on this machine: Label Studio 1.23 blocks local addresses by default
           "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",
           # nothing leaves the machine: no version check on PyPI, no error reports, no analytics
           "LATEST_VERSION_CHECK": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false"}
    log = base / "label-studio.log"
    t0 = time.monotonic()
    proc = start([sys.executable, "-m", "label_studio.server", "start", "--no-browser", "--port", str(port),
                  "--internal-host", "127.0.0.1", "--username", USER, "--password", PASSWORD,
                  "--user-token", LEGACY_TOKEN, "--enable-legacy-api-token"], log, env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_up(proc, f"{url}/health", log, LS_START_S)
        started_s = time.monotonic() - t0
        ls = LabelStudio(base_url=url, api_key=LEGACY_TOKEN)
        project = ls.projects.create(title="selector digits", label_config=CONFIG)
        storage = ls.import_storage.local.create(project=project.id, path=str(pool), recursive_scan=True,
                                                 regex_filter=r".*\.png", use_blob_urls=True, title="pool")
        ls.import_storage.local.sync(id=storage.id)
        assert wait_until(lambda: ls.projects.get(project.id).task_number == N, 60, 0.5), "storage sync incomplete"
        tasks = list(ls.tasks.list(project=project.id, fields="all"))
        path_of = {t.id: Path(t.storage_filename).relative_to(pool).as_posix() for t in tasks}
        assert sorted(path_of.values()) == sorted(p.relative_to(pool).as_posix() for p in pool.rglob("*.png"))
        # the recommended key: a personal access token (a JWT the SDK refreshes), made here with the legacy one
        pat = ls.tokens.create().token
        yield {"ls": ls, "url": url, "project": project.id, "pool": pool, "path_of": path_of, "pat": pat,
               "base": base, "started_s": started_s, "env": env}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def backend(world):
    """``selector serve`` on the pool, connected to the project; yields its URL."""
    port = free_port()
    log = world["base"] / "serve.log"
    env = {k: v for k, v in world["env"].items() if not k.startswith("LABEL_STUDIO_")}
    t0 = time.monotonic()
    proc = start([sys.executable, "-m", "selector", "serve", "--pool", str(world["pool"]), "--port", str(port),
                  "--budget", str(BUDGET), "--cache-dir", str(world["base"] / "cache"), "--seed", "0",
                  "--label-studio-url", world["url"], "--api-key", world["pat"], "-v"], log, env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_up(proc, f"{url}/health", log, 300)
        world["serve_s"] = time.monotonic() - t0
        world["ls"].ml.create(url=url, project=world["project"], title="selector", is_interactive=False)
        yield {"url": url, "log": log, "proc": proc}
    finally:
        stop(proc)


def settled(world, backend, old_version: str | None = None, timeout_s: float = 180) -> dict:
    """The backend's order once no new one is pending, its version is not ``old_version`` and Label Studio holds
    its predictions."""
    def ready() -> bool:
        try:
            order = get_json(f"{backend['url']}/order?project={world['project']}")
        except OSError:
            return False
        return (not order["pending"] and order["error"] is None and order["model_version"] != old_version
                and world["ls"].projects.get(world["project"]).model_version == order["model_version"])

    if not wait_until(ready, timeout_s, 0.5):
        raise AssertionError(f"no settled order within {timeout_s:g} s; serve log:\n"
                             + backend["log"].read_text(errors="replace")[-3000:])
    return get_json(f"{backend['url']}/order?project={world['project']}")


def data_manager_order(world) -> list[tuple[int, float | None]]:
    """(task id, prediction score) as a Data Manager tab sorted by prediction score, descending, lists them."""
    ls = world["ls"]
    view = ls.views.create(project=world["project"], data={"ordering": ["-tasks:predictions_score"]})
    try:
        return [(t.id, t.predictions_score) for t in ls.tasks.list(project=world["project"], view=view.id)]
    finally:
        ls.views.delete(id=view.id)


def annotate(world, task_ids, skip: int | None = None, draft: int | None = None) -> None:
    """Label ``task_ids`` with their true digit (the folder name), except ``skip`` (cancelled: skipped) and
    ``draft`` (a draft only: in progress). The draft is saved first: it has no webhook of its own."""
    ls = world["ls"]

    def result(tid: int) -> list[dict]:
        digit = world["path_of"][tid].split("/")[0].removeprefix("digit_")
        return [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": [digit]}}]

    if draft is not None:
        req = urllib.request.Request(f"{world['url']}/api/tasks/{draft}/drafts", method="POST",
                                     data=json.dumps({"result": result(draft), "lead_time": 1.0}).encode(),
                                     headers={"Authorization": f"Token {LEGACY_TOKEN}",
                                              "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).close()
    for tid in task_ids:
        if tid == draft:
            continue
        if tid == skip:
            ls.annotations.create(id=tid, result=[], was_cancelled=True)
        else:
            ls.annotations.create(id=tid, result=result(tid))


def test_two_rounds_in_selector_order_without_repeats(world, backend):
    import numpy as np

    from selector import Selector

    t0 = time.monotonic()
    task_of = {p: tid for tid, p in world["path_of"].items()}
    # the order selector itself gives, with the backend's options (same pool, seed, cache)
    sel = Selector(seed=0, cache_dir=world["base"] / "cache").fit(world["pool"])

    def selector_order(taken: list[int]) -> list[int]:
        labeled = np.isin(np.arange(len(sel.pool_)), [sel.pool_.ids.index(world["path_of"][t]) for t in taken])
        return [task_of[p] for p in sel.select(BUDGET, labeled=labeled).paths]

    offered: list[list[int]] = []
    taken: list[int] = []
    for round_ in (1, 2, 3):
        order = settled(world, backend)
        dm = data_manager_order(world)
        top = [tid for tid, _ in dm[:BUDGET]]
        scores = [s for _, s in dm]
        # the Data Manager's order by prediction score is selector's order, and the rest score below it
        assert order["order"] == top == selector_order(taken), f"round {round_}"
        assert all(s is not None and s > 0.5 for s in scores[:BUDGET])
        assert all(s is not None and s < 0.5 for s in scores[BUDGET:])
        assert not set(top) & set(taken), f"round {round_} offers a task already taken"
        assert order["counts"]["open"] == N - len(taken)
        offered.append(top)
        if round_ == 1:
            annotate(world, top, skip=top[3], draft=top[5])
            expect = {"labeled": BUDGET - 2, "skipped": 1, "in progress": 1}
        elif round_ == 2:
            annotate(world, top)
            expect = {"labeled": 2 * BUDGET - 2, "skipped": 1, "in progress": 1}
        taken += top
        if round_ < 3:  # the annotations' webhooks give a new order
            after = settled(world, backend, old_version=order["model_version"])
            assert {k: after["counts"][k] for k in expect} == expect
    flat = [t for r in offered for t in r]
    assert len(flat) == len(set(flat)) == 3 * BUDGET  # no task offered twice in three rounds
    # a "next round" call on a settled project gives the same order
    req = urllib.request.Request(f"{backend['url']}/next-round", method="POST",
                                 data=json.dumps({"project": world["project"]}).encode())
    with urllib.request.urlopen(req, timeout=120) as r:
        assert json.loads(r.read())["order"] == offered[-1]
    print(f"\nLabel Studio up in {world['started_s']:.0f} s, selector serve in {world['serve_s']:.0f} s, "
          f"three rounds in {time.monotonic() - t0:.0f} s")
