"""The HTTP side of ``selector serve``: Label Studio's ML-backend protocol on the standard library's
``http.server``, answered by :class:`selector.integrations.label_studio_backend.RankingBackend`.

Why not the ``label-studio-ml`` package: its release on PyPI (1.0.9) pins Flask 1.1.2, Werkzeug 2.0.2 and
Jinja2 3.0.3 (2021), which conflict with today's environments, and the protocol is five JSON routes.

Routes (what Label Studio 1.23 calls, ``label_studio/ml/api_connector.py``, and selector's own):

* ``GET /health`` (and ``/``): ``{"status": "UP"}``; Label Studio checks it before every call.
* ``POST /setup`` ``{"project": "<id>.<created>", "schema": <labeling config>, ...}``: the model version of
  the project's current order (its first order is computed here, waited for at most :data:`SETUP_WAIT_S`).
* ``POST /predict`` ``{"tasks": [...], "project": ..., "label_config": ...}``: ``{"results": [one
  prediction per task], "model_version": ...}`` (:meth:`RankingBackend.predictions`).
* ``POST /webhook`` ``{"action": ..., "project": {...}, ...}``: an action in :data:`RERANK_ACTIONS`
  (annotations created, updated or deleted, skipped tasks are cancelled annotations, tasks added or
  deleted, "Start training") schedules a new order of the project; answered at once.
* ``POST /train``: Label Studio's older "Start training" call: a new order, as the webhook.
* ``POST /next-round`` ``{"project": <id>}`` (selector's): a new order now; answers with it.
* ``GET /order?project=<id>`` (selector's): the current order (task ids, counts, model version) and
  whether a new one is being computed.

New orders are computed by one worker thread (:class:`Reranker`), a burst of webhooks coalesced into one;
after each order that changed, the worker has Label Studio retrieve the predictions of the new version
(:meth:`selector.integrations.label_studio_api.LabelStudioAPI.refresh_predictions`), so the Data Manager's
prediction scores follow. Nothing here prints: the server logs.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .label_studio_backend import BackendError, RankingBackend, project_id

log = logging.getLogger(__name__)

#: The webhook actions after which a project's order is computed again.
RERANK_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED",
                            "TASKS_CREATED", "TASKS_DELETED", "START_TRAINING"})
#: Seconds /setup waits for a project's first order (Label Studio gives /setup 3 s).
SETUP_WAIT_S = 2.0
#: Seconds /next-round waits for the new order.
NEXT_ROUND_WAIT_S = 300.0
#: Seconds the worker waits after an event for more of the burst before computing.
SETTLE_S = 0.3
#: Seconds before each new try of a refresh that failed (then the error stays until the next event).
RETRY_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
#: Seconds closing the server waits for the worker to finish an order it is computing.
STOP_WAIT_S = 10.0
#: The largest request body read (a /predict of many tasks with their annotations).
MAX_BODY = 256 * 2**20


class Reranker(threading.Thread):
    """The worker that computes new orders: :meth:`schedule` marks a project, the thread computes it (once for
    any number of marks meanwhile) and, when the order changed and ``refresh`` is on, has Label Studio
    retrieve the new predictions.

    A refresh that fails (Label Studio calls ``/setup`` while it connects the backend, before the project has
    it, so the first order's predictions cannot be retrieved yet; or Label Studio is down) is tried again after
    each of :data:`RETRY_S` seconds, the order recomputed first; the project stays pending meanwhile and
    ``errors`` holds the last failure until one succeeds."""

    def __init__(self, backend: RankingBackend, api, refresh: bool = True, settle_s: float = SETTLE_S,
                 retry_s: tuple[float, ...] | None = None):
        super().__init__(name="selector-reranker", daemon=True)
        self.backend, self.api, self.refresh, self.settle_s = backend, api, refresh, settle_s
        self.retry_s = RETRY_S if retry_s is None else tuple(retry_s)
        self._cond = threading.Condition()
        self._dirty: set[int] = set()
        self._retry: dict[int, tuple[float, int]] = {}  # project -> (when, failed refreshes so far)
        self._unrefreshed: set[int] = set()  # projects whose current order Label Studio has not retrieved
        self._busy: int | None = None
        self._stopping = False
        self.errors: dict[int, str] = {}

    def schedule(self, project: int) -> None:
        with self._cond:
            self._dirty.add(project)
            self._cond.notify_all()

    def _pending(self, project: int) -> bool:
        return project in self._dirty or project in self._retry or self._busy == project

    def pending(self, project: int) -> bool:
        """Whether a new order of ``project`` (or a retry of its refresh) is waiting or being computed."""
        with self._cond:
            return self._pending(project)

    def wait(self, project: int, timeout: float) -> bool:
        """Wait until ``project`` has nothing pending; False when ``timeout`` seconds passed first."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._pending(project):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _ready(self) -> set[int]:
        now = time.monotonic()
        return self._dirty | {p for p, (when, _) in self._retry.items() if when <= now}

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._ready():
                    due = [when for when, _ in self._retry.values()]
                    self._cond.wait(max(0.0, min(due) - time.monotonic()) if due else None)
                if self._stopping:
                    return
            time.sleep(self.settle_s)  # let the rest of a burst of webhooks arrive
            with self._cond:
                ready = self._ready()
                if not ready:
                    continue
                project = min(ready)
                self._dirty.discard(project)
                attempts = self._retry.pop(project, (0.0, 0))[1]
                self._busy = project
            try:
                self._rerank(project)
            except Exception as e:  # a failed order is logged and kept for /order; the server goes on
                self.errors[project] = f"{type(e).__name__}: {e}"
                with self._cond:
                    if attempts < len(self.retry_s):
                        self._retry[project] = (time.monotonic() + self.retry_s[attempts], attempts + 1)
                retry = self._retry.get(project)
                log.log(logging.INFO if retry else logging.ERROR, "project %d: %s: %s%s", project,
                        type(e).__name__, e, f" (trying again in {self.retry_s[attempts]:g} s)" if retry else "")
            finally:
                with self._cond:
                    self._busy = None
                    self._cond.notify_all()

    def _rerank(self, project: int) -> None:
        before = self.backend.ranking(project)
        ranking = self.backend.rank(project)
        if self.refresh and (before is None or before.version != ranking.version or project in self._unrefreshed):
            self._unrefreshed.add(project)
            deleted = self.api.refresh_predictions(project, ranking.version)
            self._unrefreshed.discard(project)
            log.info("project %d: Label Studio retrieved the predictions of %s (%d older version(s) deleted)",
                     project, ranking.version, deleted)
        self.errors.pop(project, None)


class BackendServer(ThreadingHTTPServer):
    """The HTTP server: one thread per request, the :class:`Reranker` beside them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: RankingBackend, reranker: Reranker):
        self.backend, self.reranker = backend, reranker
        super().__init__(address, Handler)

    def server_close(self) -> None:
        self.reranker.stop()
        super().server_close()
        self.reranker.join(STOP_WAIT_S)  # an order being computed finishes first; the thread is a daemon


class Handler(BaseHTTPRequestHandler):
    """One request: routes to the backend, answers JSON; a bad request is a 400 with ``{"error": line}``."""

    server: BackendServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise BackendError(f"request body of {n} bytes is over the {MAX_BODY} accepted")
        raw = self.rfile.read(n) if n else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError) as e:
            raise BackendError(f"request body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise BackendError(f"request body is a JSON {type(body).__name__}, not an object")
        return body

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        route = (method, url.path.rstrip("/") or "/")
        handler = ROUTES.get(route)
        try:
            if handler is None:
                if method == "POST":
                    self._body()  # read what was sent, so the connection stays usable
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {method} {url.path}"})
                return
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            status, body = handler(self.server, self._body() if method == "POST" else {}, query)
            self._send(status, body)
        except BackendError as e:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        except Exception as e:  # answered, logged with the traceback; the server goes on
            log.exception("%s %s failed", method, url.path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(e).__name__}: {e}"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self._route("POST")


# -- routes: (server, JSON body, query) -> (status, JSON answer) -------------------------------------

def _health(server: BackendServer, body: dict, query: dict) -> tuple[int, Any]:
    return HTTPStatus.OK, {"status": "UP", "model_class": "selector", "v2": True}


def _setup(server: BackendServer, body: dict, query: dict) -> tuple[int, Any]:
    project = project_id(body.get("project"))
    server.backend.note_config(project, body.get("schema"))
    ranking = server.backend.ranking(project)
    if ranking is None:
        server.reranker.schedule(project)
        server.reranker.wait(project, SETUP_WAIT_S)
        ranking = server.backend.ranking(project)
    version = ranking.version if ranking is not None else f"selector-{server.backend.strategy_name}-pending"
    return HTTPStatus.OK, {"model_version": version}


def _predict(server: BackendServer, body: dict, query: dict) -> tuple[int, Any]:
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        raise BackendError("/predict needs a list of tasks")
    if not tasks:
        return HTTPStatus.OK, {"results": []}
    project = project_id(body.get("project") or tasks[0].get("project"))
    server.backend.note_config(project, body.get("label_config"))
    results, unknown = server.backend.predictions(project, tasks)
    if unknown:  # tasks added since the last order: order again
        server.reranker.schedule(project)
    return HTTPStatus.OK, {"results": results, "model_version": results[0]["model_version"]}


def _webhook_project(body: dict) -> int | None:
    for key in ("project", "task", "annotation"):
        value = body.get(key)
        if key != "project" and isinstance(value, dict):
            value = value.get("project")
        if value is not None:
            try:
                return project_id(value)
            except BackendError:
                continue
    return None


def _webhook(server: BackendServer, body: dict, query: dict) -> tuple[int, Any]:
    action = body.get("action")
    project = _webhook_project(body)
    scheduled = action in RERANK_ACTIONS and project is not None
    if scheduled:
        server.reranker.schedule(project)
    return HTTPStatus.OK, {"status": "ok", "action": action, "scheduled": scheduled}


def _train(server: BackendServer, body: dict, query: dict) -> tuple[int, Any]:
    server.reranker.schedule(project_id(body.get("project")))
    return HTTPStatus.CREATED, {}


def _next_round(server: BackendServer, body: dict, query: dict) -> tuple[int, Any]:
    project = project_id(body.get("project", query.get("project")))
    server.reranker.schedule(project)
    if not server.reranker.wait(project, NEXT_ROUND_WAIT_S):
        return HTTPStatus.GATEWAY_TIMEOUT, {"error": f"project {project}: no new order within {NEXT_ROUND_WAIT_S:g} s"}
    return _order(server, {}, {"project": str(project)})


def _order(server: BackendServer, body: dict, query: dict) -> tuple[int, Any]:
    project = project_id(query.get("project"))
    ranking = server.backend.ranking(project)
    error = server.reranker.errors.get(project)
    if ranking is None:
        return HTTPStatus.NOT_FOUND, {"error": error or f"project {project} has no order yet (connect the backend)"}
    return HTTPStatus.OK, {**ranking.summary(), "pending": server.reranker.pending(project), "error": error}


def _versions(server: BackendServer, body: dict, query: dict) -> tuple[int, Any]:
    project = body.get("project") or query.get("project")
    ranking = server.backend.ranking(project_id(project)) if project else None
    return HTTPStatus.OK, {"versions": [ranking.version] if ranking else []}


ROUTES = {
    ("GET", "/"): _health, ("GET", "/health"): _health, ("POST", "/setup"): _setup, ("POST", "/predict"): _predict,
    ("POST", "/webhook"): _webhook, ("POST", "/train"): _train, ("POST", "/next-round"): _next_round,
    ("GET", "/order"): _order, ("GET", "/versions"): _versions, ("POST", "/versions"): _versions,
    ("GET", "/metrics"): lambda s, b, q: (HTTPStatus.OK, {}),
}


def make_server(backend: RankingBackend, api, host: str = "127.0.0.1", port: int = 9090,
                refresh: bool = True) -> BackendServer:
    """The server bound to ``host:port`` (port 0: any free one, ``server.server_address`` says which) with its
    worker started; run it with ``serve_forever()``, stop it with ``shutdown()`` and ``server_close()``."""
    reranker = Reranker(backend, api, refresh=refresh)
    server = BackendServer((host, port), backend, reranker)
    reranker.start()
    return server
