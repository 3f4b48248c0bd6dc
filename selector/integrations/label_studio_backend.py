"""Selector as a Label Studio ML backend: the ranking that ``selector serve`` answers with.

Label Studio asks an ML backend for predictions (``/predict``) and tells it what annotators did
(``/webhook``); :mod:`selector.integrations.label_studio_server` speaks that protocol over HTTP and calls
:class:`RankingBackend`, which holds the pool's embedding (one :class:`selector.Selector` fit, through the
content cache) and, per Label Studio project:

* reads the project's tasks and their state from Label Studio's API
  (:class:`selector.integrations.label_studio_api.LabelStudioAPI`): a task with a finished annotation is
  *labeled*, one whose annotations were all cancelled is *skipped*, one with a draft is *in progress*, the
  others are *open*;
* maps each task to a pool file: its ``path`` field (the tasks ``selector select`` writes carry it), else the
  file Label Studio's local storage read it from, else its image URL (``/data/local-files/?d=...``,
  :func:`selector.formats.common.url_to_path`);
* runs the strategy on the project's images with the labeled, skipped and in-progress ones excluded
  (:meth:`RankingBackend.rank`), and scores each task (:class:`Ranking`): the ``budget`` tasks selector
  would choose next score in (0.5, 1] by rank (rank 1 scores 1), the other open tasks
  :data:`OPEN_SCORE`, the rest :data:`TAKEN_SCORE`; so the Data Manager's sort by prediction score,
  descending, is selector's order. The estimated group is pre-selected as the task's choice only when the
  class count is confident and the project's labeling config offers the group's name
  (``group-<g>``, as ``selector select --predict-groups`` names it) as a choice.

Every ranking has a model version (``selector-<strategy>-<digest of the order>``): Label Studio asks again
for the predictions of tasks whose stored prediction is of another version.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from selector.formats.common import group_name, normalize_path, url_to_path

from . import class_count_confident

log = logging.getLogger(__name__)

#: The score of an open task that is not among the next ``budget``: below every chosen one (> 0.5).
OPEN_SCORE = 0.25
#: The score of a task that is labeled, skipped, in progress or not in the pool.
TAKEN_SCORE = 0.0
#: The task states, in the order the summary lists them.
STATES = ("open", "labeled", "skipped", "in progress")


class BackendError(ValueError):
    """A request the backend cannot answer: the project is unknown, a value is malformed."""


@dataclass(frozen=True)
class LabelingConfig:
    """What the backend reads of a project's labeling config: the Choices control (its name, the object it
    labels, the choices it offers) and the task data key of that object's image (``$image``)."""

    from_name: str | None = None
    to_name: str | None = None
    data_key: str | None = None
    choices: tuple[str, ...] = ()


def parse_config(text: str | None) -> LabelingConfig:
    """The first Choices control of a labeling config (XML text) and the data key of the object it labels;
    an empty :class:`LabelingConfig` when there is none or the text is not XML (logged)."""
    if not text:
        return LabelingConfig()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        log.warning("labeling config not read: %s", e)
        return LabelingConfig()
    objects = {el.get("name"): (el.get("value") or "").lstrip("$") for el in root.iter() if el.get("value", "")
               .startswith("$")}
    for ch in root.iter("Choices"):
        to_name = ch.get("toName")
        choices = tuple(c.get("alias") or c.get("value") for c in ch.iter("Choice") if c.get("alias") or c.get("value"))
        return LabelingConfig(ch.get("name"), to_name, objects.get(to_name) or None, choices)
    return LabelingConfig(data_key=next(iter(objects.values()), None))


@dataclass(frozen=True)
class TaskState:
    """One task of a project: its id, its pool row (-1: its image is not in the pool), its state (one of
    :data:`STATES`) and the class of its last finished annotation (None: unknown or not labeled)."""

    id: int
    row: int
    state: str
    label: str | None = None


def annotation_label(annotation: Mapping[str, Any], control: str | None = None) -> str | None:
    """The first choice of an annotation's Choices result (of ``control`` when given)."""
    for res in annotation.get("result") or []:
        if not isinstance(res, dict) or res.get("type", "choices") != "choices":
            continue
        if control is not None and res.get("from_name") != control:
            continue
        choices = (res.get("value") or {}).get("choices") if isinstance(res.get("value"), dict) else None
        if isinstance(choices, list) and choices and isinstance(choices[0], (str, int)):
            return str(choices[0])
    return None


def task_state(task: Mapping[str, Any], control: str | None = None) -> tuple[str, str | None]:
    """(state, label) of a task as Label Studio's task list gives it (``fields=all``: annotations, drafts,
    counts); see the module docstring."""
    anns = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    done = [a for a in anns if not a.get("was_cancelled")]
    if done:
        return "labeled", annotation_label(done[-1], control)
    if anns or (task.get("cancelled_annotations") or 0) > 0:
        return "skipped", None
    if (task.get("total_annotations") or 0) > 0 or task.get("is_labeled"):  # annotations left out of the list
        return "labeled", None
    if task.get("drafts") or task.get("draft_exists"):
        return "in progress", None
    return "open", None


@dataclass(frozen=True)
class Ranking:
    """A project's order: each task's score and pre-selected choice, the chosen task ids in rank order.

    Attributes:
        project: the Label Studio project id.
        version: the model version the predictions carry (changes with the order).
        scores: task id -> prediction score in [0, 1].
        choices: task id -> the group name pre-selected (only when the class count is confident).
        groups: task id -> the estimated group (-1: none) of each task in ``order``.
        order: the ids of the tasks selector chooses next, in rank order (at most ``budget``).
        counts: the pool's tasks per state (:data:`STATES`), and ``"outside pool"``: tasks whose image is not
            in the pool (whatever their state).
        n_groups: the estimated class count, None when the strategy gives none.
        confident: whether the class count is confident.
    """

    project: int
    version: str
    scores: dict[int, float]
    choices: dict[int, str] = field(default_factory=dict)
    groups: dict[int, int] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    n_groups: int | None = None
    confident: bool = False

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (the ``/order`` answer of the server)."""
        return {"project": self.project, "model_version": self.version, "order": list(self.order),
                "groups": [self.groups.get(t, -1) for t in self.order], "counts": dict(self.counts),
                "n_groups": self.n_groups, "confident": self.confident}


def project_id(value: Any) -> int:
    """The project id in what Label Studio sends: ``12``, ``"12"``, ``"12.1712345678"`` (its ML API's
    ``<id>.<created at>``) or a project object ``{"id": 12, ...}``."""
    if isinstance(value, Mapping):
        value = value.get("id")
    if isinstance(value, bool):
        raise BackendError(f"not a Label Studio project id: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.split(".", 1)[0].isdigit():
        return int(value.split(".", 1)[0])
    raise BackendError(f"not a Label Studio project id: {value!r}")


def fit_pool(selector, pool: str | Path, reading=None) -> list[tuple[str, str]]:
    """Fit ``selector`` on ``pool`` as ``selector select`` does (the encoder's input and weights checked
    first, the pool listed and digested, then embedded through the cache); returns the summary rows (pool,
    encoder, embedding)."""
    from selector import summary, workflow
    from selector.encoding import check_weights_first, encoder_input

    with workflow.step(f"encoder {selector.encoder}"):
        size, channels = encoder_input(selector.encoder, selector.image_size, what="--image-size")
        check_weights_first(selector.backbone_name, selector.weights, selector.backbone_size, encoder=selector.encoder)
    cache = selector.cache_dir
    if cache is not None:
        Path(cache).mkdir(parents=True, exist_ok=True)
    p = workflow.read_pool(pool, image_size=size, channels=channels, reading=reading or workflow.Reading(),
                           scratch=cache, progress=selector.progress, decode=False)
    with workflow.step(f"pool {pool}"):
        selector.fit(p)
    n_unique = len(selector.pool_) - selector.pool_.n_duplicates
    return [("pool", summary.pool_line(selector.pool_, pool)),
            ("encoder", f"{selector.encoder}" if selector.encoder is not None
             else summary.encoder_line(selector, len(selector.pool_), cache)),
            ("embedding", f"{selector.embeddings_.shape[1]}-d, {selector.n_embedded_} images embedded, "
                          f"{n_unique - selector.n_embedded_} from cache ({selector.timings_['embed']:.1f} s)")]


class RankingBackend:
    """The rankings of the Label Studio projects that use this backend.

    Args:
        selector: a fitted :class:`selector.Selector` (its pool, embedding, strategy and seed).
        api: what reads a project's tasks and labeling config (``tasks(project)``, ``label_config(project)``:
            :class:`selector.integrations.label_studio_api.LabelStudioAPI`).
        budget: how many tasks the next round offers (the top scores).
        document_root: Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``, to undo ``/data/local-files/?d=`` URLs
            (default: the pool's parent, as ``selector select`` writes them).
    """

    def __init__(self, selector, api, budget: int, document_root: str | Path | None = None):
        if budget < 1:
            raise BackendError(f"budget must be at least 1, got {budget}")
        if getattr(selector, "embeddings_", None) is None:
            raise BackendError("the selector is not fitted: call fit(pool) first")
        self.selector, self.api, self.budget = selector, api, int(budget)
        pool = selector.pool_
        self.root = Path(pool.root)
        self.document_root = Path(document_root) if document_root is not None else None
        self.rows = {p: i for i, p in enumerate(pool.ids)}
        self.pool = pool
        self.strategy_name = selector.strategy if isinstance(selector.strategy, str) else selector.strategy.name
        self._rankings: dict[int, Ranking] = {}
        self._configs: dict[int, LabelingConfig] = {}
        self._lock = threading.Lock()
        self._rank_lock = threading.Lock()  # one ranking at a time: the strategy's threads are the CPU's

    # -- tasks to pool rows ----------------------------------------------------------------------

    def task_row(self, task: Mapping[str, Any], data_key: str | None = None) -> int:
        """The pool row of a task's image, -1 when it is not in the pool."""
        data = task.get("data") if isinstance(task.get("data"), Mapping) else {}
        candidates = []
        if isinstance(data.get("path"), str):
            candidates.append(normalize_path(data["path"], self.root))
        if isinstance(task.get("storage_filename"), str):
            candidates.append(normalize_path(task["storage_filename"], self.root))
        keys = [data_key] if data_key else []
        keys += [k for k, v in data.items() if k not in keys and isinstance(v, str)]
        for k in keys:
            url = data.get(k)
            if isinstance(url, str) and url:
                candidates.append(url_to_path(url, None, self.document_root, self.root))
        return next((self.rows[c] for c in candidates if c in self.rows), -1)

    def read_tasks(self, project: int) -> tuple[list[TaskState], LabelingConfig]:
        """The project's tasks, each with its pool row and state, and its labeling config (from the API)."""
        config = parse_config(self.api.label_config(project))
        with self._lock:
            self._configs[project] = config
        tasks = []
        for t in self.api.tasks(project):
            state, label = task_state(t, config.from_name)
            tasks.append(TaskState(int(t["id"]), self.task_row(t, config.data_key), state, label))
        return tasks, config

    # -- ranking ---------------------------------------------------------------------------------

    def rank(self, project: int) -> Ranking:
        """Read the project's tasks and compute its order (see the module docstring); kept as the project's
        current ranking and returned."""
        with self._rank_lock:
            tasks, config = self.read_tasks(project)
            ranking = self._rank(project, tasks, config)
        with self._lock:
            self._rankings[project] = ranking
        log.info("project %d: %s, next %d tasks ranked (model version %s)", project,
                 ", ".join(f"{n} {s}" for s, n in ranking.counts.items()), len(ranking.order), ranking.version)
        return ranking

    def _rank(self, project: int, tasks: Sequence[TaskState], config: LabelingConfig) -> Ranking:
        from selector.api import select_embeddings
        from selector.strategies import get_strategy

        counts = Counter(t.state for t in tasks if t.row >= 0)
        counts = {s: counts[s] for s in STATES}
        outside = sum(t.row < 0 for t in tasks)
        if outside:
            counts["outside pool"] = outside
            log.warning("project %d: %d task(s) show an image that is not in the pool %s (scored %g)", project,
                        outside, self.root, TAKEN_SCORE)
        universe = np.array(sorted({t.row for t in tasks if t.row >= 0}), dtype=np.int64)
        taken_full = np.zeros(len(self.pool), dtype=bool)
        taken_full[[t.row for t in tasks if t.row >= 0 and t.state != "open"]] = True
        # a byte-identical copy of another image (or of a taken one) is never offered
        taken = (taken_full | self.pool.duplicate_mask(taken_full))[universe]
        order_rows: list[int] = []
        groups: dict[int, int] = {}
        n_groups, confident = None, False
        n_open = int((~taken).sum())
        if n_open:
            labels = self._labels(tasks, universe)
            strategy = self.selector.strategy
            if isinstance(strategy, str):
                strategy = get_strategy(strategy, **self.selector.strategy_params)
            result = select_embeddings(self.selector.embeddings_[universe], min(self.budget, n_open), taken,
                                       strategy, self.selector.seed, labels=labels)
            order_rows = [int(universe[i]) for i in result.selection.indices]
            groups = {int(universe[i]): int(g) for i, g in zip(result.selection.indices, result.selection.groups)}
            n_groups = result.n_groups
            confident = class_count_confident(result)
        rank_of = {row: r for r, row in enumerate(order_rows, 1)}
        scores, choices, task_groups = {}, {}, {}
        k = len(order_rows)
        offered: set[int] = set()  # a pool file shown by several tasks is offered once (the first task)
        for t in tasks:
            if t.row >= 0 and t.state == "open" and t.row in rank_of and t.row not in offered:
                offered.add(t.row)
                scores[t.id] = 0.5 + 0.5 * (1.0 - (rank_of[t.row] - 1) / k)
                g = task_groups[t.id] = groups.get(t.row, -1)
                name = group_name(g, None) if g >= 0 else None
                if confident and name in config.choices:
                    choices[t.id] = name
            else:
                scores[t.id] = OPEN_SCORE if t.row >= 0 and t.state == "open" else TAKEN_SCORE
        order = sorted((tid for tid, s in scores.items() if s > 0.5), key=lambda tid: -scores[tid])
        digest = hashlib.sha1(repr((self.budget, [(tid, round(scores[tid], 9)) for tid in order],
                                    sorted(choices.items()))).encode()).hexdigest()[:10]
        return Ranking(project, f"selector-{self.strategy_name}-{digest}", scores, choices, task_groups, order, counts,
                       n_groups, confident)

    def _labels(self, tasks: Sequence[TaskState], universe: np.ndarray) -> np.ndarray | None:
        """(len(universe),) int64 known classes (-1 unknown) for label-aware strategies, None when none is
        known."""
        named = {t.row: t.label for t in tasks if t.row >= 0 and t.label is not None}
        if not named:
            return None
        classes = {c: i for i, c in enumerate(sorted(set(named.values())))}
        pos = {int(r): i for i, r in enumerate(universe)}
        labels = np.full(len(universe), -1, dtype=np.int64)
        for row, c in named.items():
            labels[pos[row]] = classes[c]
        return labels

    # -- answers ---------------------------------------------------------------------------------

    def ranking(self, project: int) -> Ranking | None:
        """The project's current ranking, None before the first."""
        with self._lock:
            return self._rankings.get(project)

    def note_config(self, project: int, text: str | None) -> None:
        """The labeling config Label Studio sent (``/setup``'s schema, ``/predict``'s label_config)."""
        if text:
            with self._lock:
                self._configs[project] = parse_config(text)

    def predictions(self, project: int, tasks: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        """One prediction per task (Label Studio's ``/predict`` results, in the order of ``tasks``) from the
        project's current ranking, computing it first when there is none; and whether a task was not in the
        ranking (new since: the caller should rank again)."""
        ranking = self.ranking(project) or self.rank(project)
        with self._lock:
            config = self._configs.get(project, LabelingConfig())
        out, unknown = [], False
        for t in tasks:
            tid = t.get("id") if isinstance(t, Mapping) else None
            if isinstance(tid, bool) or not isinstance(tid, int):
                raise BackendError(f"a task to predict has no integer id: {str(tid)[:80]!r}")
            if tid not in ranking.scores:
                unknown = True
            result = []
            choice = ranking.choices.get(tid)
            if choice is not None and config.from_name and config.to_name:
                result = [{"from_name": config.from_name, "to_name": config.to_name, "type": "choices",
                           "value": {"choices": [choice]}}]
            out.append({"result": result, "score": ranking.scores.get(tid, TAKEN_SCORE),
                        "model_version": ranking.version})
        return out, unknown
