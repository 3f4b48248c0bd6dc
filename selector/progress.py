"""Progress of a long step (reading, training, embedding, an evaluation sweep): a tqdm bar on a terminal,
log lines elsewhere.

A bar is useless in a log file or a CI log (carriage returns, or nothing at all), so when stderr is not a
terminal (nor a notebook) :func:`progress` returns a :class:`LineProgress` instead, which logs through the
``selector.progress`` logger at INFO a line every :data:`INTERVAL_S` seconds or every tenth of the work,
whichever comes first (at most one line per tenth of the interval), and a last line when the step ends::

    embedding: 4,096 of 10,000 images (41 %), 38 img/s, about 2 min left
    embedding: 10,000 images in 4 min 23 s (38 img/s)

Library code never prints: the command line shows this logger at INFO unless ``-q``
(:func:`selector.cli.options.setup_logging`); a Python user sees the lines once logging is configured, e.g.
``logging.basicConfig(level=logging.INFO)``. ``$SELECTOR_PROGRESS_INTERVAL`` sets the interval in seconds
(0: a line at every update) and ``$SELECTOR_PROGRESS`` forces ``bar`` or ``lines``.

Both kinds have the part of tqdm's interface the pipeline uses: ``update(n)``, ``set_postfix(**values)``,
``close()`` and use as a context manager.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

#: Seconds between two progress lines (``$SELECTOR_PROGRESS_INTERVAL`` overrides it).
INTERVAL_S = 30.0
#: A line also whenever this share of the work is done since the last one.
STEP_FRACTION = 0.1
INTERVAL_ENV = "SELECTOR_PROGRESS_INTERVAL"
MODE_ENV = "SELECTOR_PROGRESS"
MODES = ("bar", "lines")

#: How a unit is counted in a line: tqdm's short unit -> the plural noun.
NOUNS = {"img": "images", "step": "steps", "batch": "batches", "run": "runs"}


def line_interval() -> float:
    """Seconds between progress lines: ``$SELECTOR_PROGRESS_INTERVAL`` if it is a number >= 0, else
    :data:`INTERVAL_S`."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        value = float(text)
    except ValueError:
        return INTERVAL_S
    return value if math.isfinite(value) and value >= 0 else INTERVAL_S


def _in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where tqdm draws a widget, not a terminal bar)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - an IPython that cannot say is treated as no notebook
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_mode() -> str:
    """"bar" when stderr is a terminal or this runs in a notebook, else "lines" (``$SELECTOR_PROGRESS``
    overrides it)."""
    forced = os.environ.get(MODE_ENV, "").strip().lower()
    if forced in MODES:
        return forced
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        tty = False
    return "bar" if tty or _in_notebook() else "lines"


def progress(total: int | None, desc: str, unit: str = "img", *, enabled: bool = True, initial: int = 0,
             mode: str | None = None):
    """The progress display of a step of ``total`` units (``unit``: img, step, batch, run), named ``desc``;
    None when not ``enabled``. ``mode``: "bar" (tqdm on stderr), "lines" (:class:`LineProgress`) or None
    (:func:`progress_mode`). ``initial``: units done before (a resumed step)."""
    if not enabled:
        return None
    mode = mode or progress_mode()
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "bar":
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                    file=sys.stderr)
    return LineProgress(total, desc, unit, initial=initial)


def duration(seconds: float) -> str:
    """``12 s``, ``4 min 23 s``, ``2 h 5 min``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _left(seconds: float) -> str:
    """A rounded estimate of the time left: ``40 s``, ``2 min``, ``1 h 5 min``."""
    s = max(1, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _rate(per_s: float, unit: str) -> str:
    if per_s >= 10:
        return f"{per_s:,.0f} {unit}/s"
    if per_s >= 1:
        return f"{per_s:.1f} {unit}/s"
    return f"{1 / per_s:.1f} s/{unit}"


class LineProgress:
    """Progress as log lines (see the module docstring). ``interval``: seconds between lines (default
    :func:`line_interval`); ``clock``: a monotonic clock in seconds; ``logger``: where the lines go."""

    def __init__(self, total: int | None, desc: str, unit: str = "img", *, initial: int = 0,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log):
        self.total = None if total is None else int(total)
        self.desc, self.unit = desc, unit
        self.noun = NOUNS.get(unit, unit + "s")
        self.n = self._start = self._last_n = int(initial)
        self.interval = line_interval() if interval is None else float(interval)
        self.clock, self.logger = clock, logger
        self._t0 = self._last_t = clock()
        self.postfix = ""
        self.closed = False
        self._lock = threading.Lock()  # pool reading updates from several threads

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """``n`` more units done; logs a line when the interval has passed or another tenth is done."""
        with self._lock:
            self.n += int(n)
            if self.total is not None and self.n >= self.total:
                return  # the last line is close()'s
            now = self.clock()
            since = now - self._last_t
            tenth = self.total is not None and self.n - self._last_n >= STEP_FRACTION * self.total
            if not (since >= self.interval or (tenth and since >= self.interval / 10)):
                return
            self._last_t, self._last_n = now, self.n
            text = self.line(now)
        self.logger.info("%s", text)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values: Any) -> None:
        """Values shown after the counts, as tqdm's postfix: ``epoch=2, loss="4.123", img_s=380`` reads
        ``epoch 2, loss 4.123, 380 img/s`` (a name ending in ``_s`` is a rate)."""
        items = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{v} {k[:-2]}/s" if k.endswith("_s") else f"{k.replace('_', ' ')} {v}"
                                 for k, v in items.items())

    def line(self, now: float | None = None) -> str:
        """The current progress line."""
        now = self.clock() if now is None else now
        done, spent = self.n - self._start, now - self._t0
        per_s = done / spent if done > 0 and spent > 0 else None
        if self.total:
            pct = min(round(100 * self.n / self.total), 99 if self.n < self.total else 100)
            text = f"{self.desc}: {self.n:,} of {self.total:,} {self.noun} ({pct} %)"
        else:
            text = f"{self.desc}: {self.n:,} {self.noun}"
        if per_s is not None:
            text += f", {_rate(per_s, self.unit)}"
            if self.total:
                text += f", about {_left(max(0, self.total - self.n) / per_s)} left"
        return text + (f"; {self.postfix}" if self.postfix else "")

    def close(self) -> None:
        """Logs the last line: what was done and how fast, or where the step stopped (once)."""
        if self.closed:
            return
        self.closed = True
        now = self.clock()
        done, spent = self.n - self._start, now - self._t0
        if self.total is not None and self.n < self.total:
            text = f"{self.desc}: stopped at {self.n:,} of {self.total:,} {self.noun} after {duration(spent)}"
        else:
            text = f"{self.desc}: {self.n:,} {self.noun} in {duration(spent)}"
            if done > 0 and spent > 0:
                text += f" ({_rate(done / spent, self.unit)})"
        self.logger.info("%s", text + (f"; {self.postfix}" if self.postfix else ""))
