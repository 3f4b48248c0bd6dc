"""What ``selector serve`` asks of Label Studio's API, through the ``label-studio-sdk`` package (the
``label-studio`` extra: ``pip install 'selector[label-studio]'``).

* :meth:`LabelStudioAPI.tasks`: a project's tasks with their annotations and drafts (the state the ranking
  excludes on), a page at a time;
* :meth:`LabelStudioAPI.label_config`: the project's labeling config;
* :meth:`LabelStudioAPI.refresh_predictions`: after the order changed, Label Studio's own Data Manager
  action "Retrieve predictions" on every task of the project (Label Studio then asks the backend's
  ``/predict`` for the new version), the project's model version set to it (the Data Manager's prediction
  score averages that version's predictions) and the backend's older versions' predictions deleted, so that
  each task holds one selector prediction and the Data Manager sorts by the current order.

The key is a personal access token (Label Studio 1.23: Account & Settings > Personal Access Token) or a
legacy token where the organisation enables them (they are off by default); the SDK handles both.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

log = logging.getLogger(__name__)

#: Tasks per page read from Label Studio.
PAGE_SIZE = 500
#: Seconds one call to Label Studio may take (retrieving predictions waits for the backend's answers).
TIMEOUT_S = 120.0


class LabelStudioAPIError(RuntimeError):
    """Label Studio refused or failed a call; the message names the call and the status."""


class LabelStudioAPI:
    """A Label Studio server's API, as a user with ``api_key``.

    Args:
        url: the server, e.g. ``http://localhost:8080``.
        api_key: a personal access token or a legacy token.
        version_prefix: the prefix of the model versions this backend writes (older ones are deleted).
    """

    def __init__(self, url: str, api_key: str, version_prefix: str = "selector-"):
        try:
            from label_studio_sdk import LabelStudio
        except ImportError as e:
            raise LabelStudioAPIError("selector serve needs the label-studio-sdk package: "
                                      "pip install 'selector[label-studio]'") from e
        if not url.lower().startswith(("http://", "https://")):
            raise LabelStudioAPIError(f"Label Studio URL must start with http:// or https://, got {url!r}")
        if not api_key:
            raise LabelStudioAPIError("no Label Studio API key: give --api-key or set LABEL_STUDIO_API_KEY")
        self.url = url.rstrip("/")
        self.prefix = version_prefix
        self.client = LabelStudio(base_url=self.url, api_key=api_key, timeout=TIMEOUT_S)

    def _call(self, what: str, fn, *args, **kwargs):
        from label_studio_sdk.core.api_error import ApiError

        try:
            return fn(*args, **kwargs)
        except ApiError as e:
            body = str(e.body)[:200] if e.body is not None else ""
            hint = (" (a legacy token where the organisation disables them? use a personal access token)"
                    if e.status_code == 401 else "")
            raise LabelStudioAPIError(f"Label Studio {self.url}: {what}: HTTP {e.status_code} {body}{hint}") from None
        except OSError as e:
            raise LabelStudioAPIError(f"Label Studio {self.url}: {what}: {e}") from None
        except Exception as e:  # httpx's transport errors are not OSError
            if type(e).__module__.startswith("httpx"):
                raise LabelStudioAPIError(f"Label Studio {self.url}: {what}: {type(e).__name__}: {e}") from None
            raise

    def check(self) -> str:
        """The user the key belongs to (a one-line error when the server or the key is wrong)."""
        who = self._call("who am I", self.client.users.whoami)
        return getattr(who, "email", None) or getattr(who, "username", None) or str(getattr(who, "id", "?"))

    def label_config(self, project: int) -> str:
        return self._call(f"project {project}", self.client.projects.get, id=project).label_config or ""

    def tasks(self, project: int) -> Iterator[dict[str, Any]]:
        """The project's tasks as dicts (Label Studio's task list with ``fields=all``)."""
        pager = self._call(f"tasks of project {project}", self.client.tasks.list, project=project, fields="all",
                           page_size=PAGE_SIZE)
        for task in self._call(f"tasks of project {project}", list, pager):
            yield task.model_dump() if hasattr(task, "model_dump") else dict(task)

    def refresh_predictions(self, project: int, version: str) -> int:
        """Ask Label Studio to retrieve every task's prediction of ``version`` from the backend, make it the
        project's model version, then delete the predictions of this backend's other versions; returns how many
        versions were deleted."""
        self._call(f"retrieve predictions of project {project}", self.client.actions.create,
                   id="retrieve_tasks_predictions", project=project, selected_items={"all": True, "excluded": []})
        # The Data Manager's prediction score averages the predictions of the project's model version, which
        # connecting a backend sets to the backend's title (matching no prediction): point it at this one.
        self._call(f"model version of project {project}", self.client.projects.update, id=project,
                   model_version=version)
        http = self.client._client_wrapper.httpx_client  # the SDK has no call for a project's model versions
        path = f"api/projects/{project}/model-versions/"
        resp = self._call(f"model versions of project {project}", http.request, path, method="GET")
        if resp.status_code >= 400:
            raise LabelStudioAPIError(f"Label Studio {self.url}: model versions of project {project}: "
                                      f"HTTP {resp.status_code}")
        data = resp.json()
        names = data.keys() if isinstance(data, dict) else [d.get("model_version") if isinstance(d, dict) else d
                                                             for d in data]
        old = [v for v in names if isinstance(v, str) and v.startswith(self.prefix) and v != version]
        for v in old:
            resp = self._call(f"delete predictions {v}", http.request, path, method="DELETE",
                              json={"model_version": v})
            if resp.status_code >= 400:
                log.warning("project %d: predictions of model version %s not deleted: HTTP %d", project, v,
                            resp.status_code)
        return len(old)
