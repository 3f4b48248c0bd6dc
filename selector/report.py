"""A selection as one self-contained HTML page (``selector show --html``), and what the pictures know of the
class count.

* :func:`read_summary` reads the JSON object ``selector select --json`` printed (``show --summary``);
  :func:`class_count` reads the class count (estimate, interval, confident) from it or from the selection
  file, defensively: anything missing or of another type counts as unknown, and the count is confident only
  where its source says ``"confident": true``. The sheet, the map and the page group the picks by estimated
  group only then.
* :func:`random_coverage` is the coupon-collector estimate of the classes as many picks at random would
  cover; :func:`page_facts` is the page's summary table.
* :func:`html_page` writes the page: the summary, the picks as a grid in rank order (sections by estimated
  group when grouped), each an inline thumbnail (``data:`` URI, PNG or JPEG whichever is smaller) with its
  rank, file name and group, and the 2-D map of the pool (an inline SVG, the picks on top; hovering a pick
  shows its thumbnail, a few lines of inline script). A Content-Security-Policy in the page forbids loading
  anything that is not inline: the page opens from a file, offline, with no server.

Nothing here reads images or embeddings: :func:`selector.workflow.show_selection` reads them (the pool's
reader, the map's embedding) and hands over arrays.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

import numpy as np

from .atomic import atomic_write
from .names import display_name
from .show import PICK_COLOR, MapPoints, ShowError, load_selection, sheet_layout, sheet_line, sheet_page

#: Pool points drawn on the page's map at most (a random sample beyond): the SVG stays a few hundred KB.
MAP_POINTS = 20_000

#: Colours of the estimated groups (matplotlib's tab20, as on the PNG map), and of the picks when not grouped.
GROUP_COLORS = ("#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd",
                "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d",
                "#17becf", "#9edae5")


# ----------------------------------------------------------------------------- what is known


def read_summary(path: str | os.PathLike, rows: Sequence[dict] | None = None) -> dict[str, Any]:
    """The JSON object ``selector select --json`` printed (``show --summary``); with ``rows`` (the selection
    file's), a summary whose ``paths`` are not the rows' paths in rank order is refused: it describes
    another selection."""
    p = Path(path)
    try:
        summary = json.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ShowError(f"summary file {p} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ShowError(f"cannot read summary file {p} (the output of selector select --json): {e}") from None
    if not isinstance(summary, dict):
        raise ShowError(f"summary file {p} is not the JSON object selector select --json prints")
    paths = summary.get("paths")
    if rows is not None and isinstance(paths, list) and paths != [r["path"] for r in rows]:
        raise ShowError(f"summary file {p} describes another selection: it chose {len(paths)} images, the selection "
                        f"file {len(rows)}, not the same in rank order")
    return summary


@dataclass(frozen=True)
class ClassCount:
    """What is known of the pool's class count.

    Attributes:
        estimate: the estimated number of classes, None when unknown.
        low, high: the interval around it, None when not given.
        confident: True only when the estimate's source says so in as many words (``"confident": true``).
        source: where it was read (``"summary"``, ``"selection file"``) or None.
    """

    estimate: int | None = None
    low: int | None = None
    high: int | None = None
    confident: bool = False
    source: str | None = None

    @property
    def known(self) -> bool:
        return self.estimate is not None or self.low is not None

    def text(self) -> str:
        """The class count for a reader: the estimate, the interval, whether it is confident."""
        if not self.known:
            return ("unknown: the selection file carries no class count (give show --summary with the output of "
                    "selector select --json)")
        span = f"between {self.low} and {self.high}" if self.low is not None and self.high is not None else ""
        est = f"about {self.estimate}" if self.estimate is not None else ""
        text = f"{est} ({span})" if est and span else est or span
        return text + (", confident" if self.confident else ", not confident")


def _count(v: Any) -> int | None:
    """A positive class count, or None (a bool, a float, a string or a count under 1 is not one)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else None


def class_count(summary: Mapping[str, Any] | None = None, facts: Mapping[str, Any] | None = None) -> ClassCount:
    """The class count as the summary (``select --json``) or the selection file's ``facts``
    (:func:`selector.show.load_selection`) carry it, the summary first: a ``classes`` object ``{"estimate",
    "low", "high", "confident"}`` (at the top or under ``info``), else the summary's ``estimated_classes`` with
    the range its strategy line prints ("range a-b"), never confident. A value of another type counts as
    absent; an interval whose low end is above its high end is dropped."""
    for source, obj in (("summary", summary or {}), ("selection file", facts or {})):
        classes = obj.get("classes")
        if not isinstance(classes, dict) and isinstance(obj.get("info"), dict):
            classes = obj["info"].get("classes")
        if isinstance(classes, dict):
            low, high = _count(classes.get("low")), _count(classes.get("high"))
            if low is None or high is None or low > high:
                low = high = None
            return ClassCount(_count(classes.get("estimate")), low, high, classes.get("confident") is True, source)
    if summary and _count(summary.get("estimated_classes")) is not None:
        lines = summary.get("summary")
        line = lines.get("strategy") if isinstance(lines, dict) else None
        m = re.search(r"range (\d+)-(\d+)", line) if isinstance(line, str) else None
        low, high = (int(m[1]), int(m[2])) if m and 1 <= int(m[1]) <= int(m[2]) else (None, None)
        return ClassCount(summary["estimated_classes"], low, high, False, "summary")
    return ClassCount()


def random_coverage(k: int, b: int) -> float:
    """How many of ``k`` equally likely classes ``b`` picks at random cover on average, the coupon-collector
    expectation ``k * (1 - (1 - 1/k) ** b)``: the baseline a selection's coverage is read against."""
    if k < 1 or b < 0:
        raise ValueError(f"k must be >= 1 and b >= 0, got k={k}, b={b}")
    return k * (1.0 - (1.0 - 1.0 / k) ** b)


def coverage_text(classes: ClassCount, rows: Sequence[dict]) -> str:
    """The selection's coverage of the estimated classes against random picks (:func:`random_coverage`)."""
    k, b = classes.estimate, len(rows)
    if k is None:
        return "unknown without a class count estimate"
    spanned = len({r["group"] for r in rows if r["group"] >= 0})
    text = (f"{b} random picks would cover about {random_coverage(k, b):.1f} of {k} classes (the coupon-collector "
            f"estimate K(1-(1-1/K)^B) for K = {k} equally frequent classes and B = {b} picks); these picks span "
            f"{spanned} estimated group{'s' if spanned != 1 else ''}")
    return text + ("" if classes.confident else "; the class count is not confident, so this is a rough guide")


def grouping_text(classes: ClassCount, grouped: bool) -> str:
    """Why the picks are or are not shown by estimated group."""
    if grouped:
        return "by estimated group (the class count is confident), rank order within a group"
    if classes.known:
        return ("rank order: the class count is not confident, so the estimated groups are not shown as classes "
                "(each pick still names its group)")
    return "rank order: the grouping is unknown (no class count; give --summary with selector select --json's output)"


def page_facts(*, selection: str | os.PathLike, pool: str | os.PathLike, rows: Sequence[dict],
               shown: Sequence[dict], classes: ClassCount, grouped: bool, summary: Mapping[str, Any] | None = None,
               facts: Mapping[str, Any] | None = None, embedding: str | None = None,
               n_pool: int | None = None) -> list[tuple[str, str]]:
    """The page's summary table, (key, text) rows: the selection, the pool and the encoder (select's summary
    lines when ``summary`` is given, else the pool folder and the map's ``embedding``), the strategy, the class
    count, the coverage against random, the grouping."""
    lines = summary.get("summary") if summary and isinstance(summary.get("summary"), dict) else {}
    text = {k: v for k, v in lines.items() if isinstance(v, str)}
    strategy = (summary or {}).get("strategy") or (facts or {}).get("strategy")
    ranks = f" (this page: ranks {shown[0]['rank']}-{shown[-1]['rank']})" if len(shown) < len(rows) else ""
    unknown = "unknown (give --summary with selector select --json's output)"
    return [("selection", f"{display_name(selection)}: {len(rows)} images{ranks}"),
            ("pool", text.get("pool") or display_name(pool) + (f" ({n_pool} images)" if n_pool else "")),
            ("encoder", text.get("encoder") or (f"{embedding} (the map's embedding)" if embedding else unknown)),
            ("strategy", strategy if isinstance(strategy, str) and strategy else unknown),
            ("classes", classes.text()),
            ("coverage", coverage_text(classes, rows)),
            ("grouping", grouping_text(classes, grouped))]


@dataclass(frozen=True)
class ShowInputs:
    """What ``selector show`` draws (:func:`read_inputs`).

    Attributes:
        rows: the selection in rank order; shown: the page of it drawn; facts: what else the file carries.
        summary: select's ``--json`` object, or None; classes: the class count; grouped: whether the picks are
            grouped by estimated group (a confident class count, and groups in the file).
        max_images: picks a page.
    """

    rows: list[dict]
    shown: list[dict]
    facts: dict
    summary: dict | None
    classes: ClassCount
    grouped: bool
    max_images: int

    @property
    def totals(self) -> Counter:
        return Counter(r["group"] for r in self.rows)


def read_inputs(selection: str | os.PathLike, summary: str | os.PathLike | None, max_images: int, page: int,
                cols: int = 10, tile: int = 96, sheet: bool = True) -> ShowInputs:
    """Read the selection file, its page ``page`` of ``max_images`` picks and the ``summary`` file (None: none),
    and decide the grouping; with ``sheet``, a contact sheet too large for ``cols`` and ``tile`` fails here,
    before any image is read."""
    rows, facts = load_selection(selection)
    shown = sheet_page(rows, max_images, page)
    run = read_summary(summary, rows) if summary is not None else None
    classes = class_count(run, facts)
    grouped = classes.confident and any(r["group"] >= 0 for r in rows)  # a grouping only where it means classes
    if sheet:
        sheet_layout([r["group"] for r in shown], cols=cols, tile=tile, grouped=grouped)
    return ShowInputs(rows, shown, facts, run, classes, grouped, max_images)


def show_rows(got: ShowInputs, page: int, unreadable: Mapping[int, str], *, out=None, map_out=None, html_out=None,
              points: MapPoints | None = None, how: str | None = None) -> list[tuple[str, str]]:
    """The summary rows of ``selector show``: the sheet ``out``, the map ``map_out``, the page ``html_out``."""
    def line(path, note=""):
        return sheet_line(got.shown, got.rows, page, got.max_images, unreadable, path, grouped=got.grouped, note=note)

    rows = [("sheet", line(out))] if out is not None else []
    if map_out is not None and points is not None:
        rows.append(("map", f"{len(points.xy)} x {points.dim} embedding ({how}) -> {map_out}"))
    if html_out is not None:
        rows.append(("page", line(html_out, ", with the map" if points is not None else ", no map")))
    return rows


# ----------------------------------------------------------------------------- the page


def thumbnail_uri(image: np.ndarray) -> str:
    """A ``data:`` URI of one (C, s, s) uint8 image: PNG or JPEG (quality 85), whichever is smaller (PNG
    for tiny and flat images, JPEG for photos)."""
    from PIL import Image

    a = np.asarray(image)
    im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
    best = ""
    for fmt, kw in (("PNG", {"optimize": True}), ("JPEG", {"quality": 85})):
        buf = io.BytesIO()
        im.convert("L" if im.mode == "L" else "RGB").save(buf, format=fmt, **kw)
        uri = f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        if not best or len(uri) < len(best):
            best = uri
    return best


def _esc(text: object) -> str:
    """Text for HTML: control characters escaped (:func:`selector.names.display_name`), then markup."""
    return html.escape(display_name(text), quote=True)


def _group_name(g: int) -> str:
    return "no group" if g < 0 else f"group {g}"


def _colours(rows: Sequence[dict], grouped: bool) -> dict[int, str]:
    """Colour per group, tab20 in order of each group's best rank as on the PNG map (black for no group; one
    colour for all when not grouped)."""
    out: dict[int, str] = {}
    for r in rows:
        g = r["group"]
        if g not in out:
            n = sum(k >= 0 for k in out)
            out[g] = PICK_COLOR if not grouped else "#000000" if g < 0 else GROUP_COLORS[n % len(GROUP_COLORS)]
    return out


def _figure(r: dict, image: np.ndarray | None, reason: str | None, tile: int) -> str:
    """One pick: its thumbnail (or a crossed-out box with the reason) and its rank, file name and group."""
    name = PurePosixPath(r["path"]).name or r["path"]
    cap = (f'<figcaption><b>#{r["rank"]}</b> <span class="name">{_esc(name)}</span><br>'
           f'{_esc(_group_name(r["group"]))}</figcaption>')
    if reason is not None or image is None:
        return (f'<figure id="pick-{r["rank"]}" title="{_esc(r["path"])}"><div class="bad" '
                f'title="{_esc(reason or "not read")}">not readable</div>{cap}</figure>')
    pixelated = ' class="px"' if image.shape[-1] < tile else ""
    return (f'<figure id="pick-{r["rank"]}" title="{_esc(r["path"])}"><img id="img-{r["rank"]}"{pixelated} '
            f'src="{thumbnail_uri(image)}" width="{tile}" height="{tile}" alt="{_esc(name)}">{cap}</figure>')


def _grid(shown: Sequence[dict], images: np.ndarray, unreadable: Mapping[int, str], tile: int, grouped: bool,
          totals: Mapping[int, int], colours: Mapping[int, str]) -> str:
    """The picks in rank order, one grid, or (``grouped``) one section per group in order of its best rank."""
    figures = [_figure(r, images[i] if i not in unreadable else None, unreadable.get(i), tile)
               for i, r in enumerate(shown)]
    if not grouped:
        return f'<div class="grid">{"".join(figures)}</div>'
    parts = []
    for g in dict.fromkeys(r["group"] for r in shown):
        members = [f for f, r in zip(figures, shown) if r["group"] == g]
        of = f" of {totals[g]}" if totals.get(g, len(members)) > len(members) else ""
        parts.append(f'<h3><span class="dot" style="background:{colours[g]}"></span>{_esc(_group_name(g))}: '
                     f'{len(members)}{of} image{"s" if len(members) != 1 or of else ""}</h3>'
                     f'<div class="grid">{"".join(members)}</div>')
    return "".join(parts)


def _map_svg(points: MapPoints, colours: Mapping[int, str], size: int = 640, seed: int = 0) -> str:
    """The pool's points (at most :data:`MAP_POINTS`, a random sample beyond) in grey as one SVG path, and the
    picks on top as circles, rank 1 last (on top), each with its rank, path and group for the hover."""
    xy = points.xy
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    m = 12  # margin (px) so that the points on the edge are drawn whole
    pix = m + (xy - lo) / span * (size - 2 * m)
    pix[:, 1] = size - pix[:, 1]  # SVG's y grows downwards; the map's upwards
    n = len(xy)
    sample = np.arange(n) if n <= MAP_POINTS else np.sort(np.random.default_rng(seed).choice(n, MAP_POINTS, False))
    path = "".join(f"M{x:.1f} {y:.1f}h0" for x, y in pix[sample])
    picks = []
    for r, i in reversed(list(zip(points.rows, points.index.tolist()))):
        label = f"#{r['rank']} {r['path']} ({_group_name(r['group'])})"
        picks.append(f'<circle class="pick" cx="{pix[i, 0]:.1f}" cy="{pix[i, 1]:.1f}" r="5" '
                     f'fill="{colours.get(r["group"], PICK_COLOR)}" data-rank="{r["rank"]}" data-label="{_esc(label)}">'
                     f'<title>{_esc(label)}</title></circle>')
    shown = f"{len(sample)} of {n}" if len(sample) < n else f"{n}"
    return (f'<p>{len(points.rows)} picks among the pool\'s {shown} images on the first two principal components '
            f'of the embedding; hover a pick to see it.</p>'
            f'<svg id="map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size}" '
            f'height="{size}" role="img"><rect width="{size}" height="{size}" fill="#fff" stroke="#ddd"/>'
            f'<path d="{path}" stroke="#c8c8c8" stroke-width="3" stroke-linecap="round" fill="none"/>'
            f'{"".join(picks)}</svg>')


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fff}
table{border-collapse:collapse;margin-bottom:12px}th,td{text-align:left;vertical-align:top;padding:2px 10px 2px 0}
th{white-space:nowrap;color:#555;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0 12px}
figure{margin:0;width:TILEpx}figure img,.bad{display:block;width:TILEpx;height:TILEpx;background:#eee}
img.px{image-rendering:pixelated}
.bad{box-sizing:border-box;border:2px solid #c82828;color:#c82828;font-size:11px;text-align:center;padding-top:40%}
figcaption{font-size:11px;overflow-wrap:anywhere}
h3{font-size:14px;margin:10px 0 2px}.dot{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:6px}
#map .pick{stroke:#000;stroke-width:.6;cursor:pointer}#map .pick:hover{stroke-width:2}
#tip{position:fixed;display:none;pointer-events:none;background:#fff;border:1px solid #888;padding:4px;
font-size:11px;max-width:220px;box-shadow:0 2px 6px rgba(0,0,0,.3)}#tip img{display:block;width:128px;height:128px}
"""

#: Hovering a pick on the map shows its thumbnail (the grid's image, when the pick is on this page) and label.
SCRIPT = """
(function () {
  var tip = document.getElementById("tip");
  function move(e) { tip.style.left = (e.clientX + 14) + "px"; tip.style.top = (e.clientY + 14) + "px"; }
  function show(e) {
    var c = e.currentTarget, img = document.getElementById("img-" + c.getAttribute("data-rank"));
    tip.textContent = "";
    if (img) {
      var i = document.createElement("img"); i.src = img.src; i.className = img.className; tip.appendChild(i);
    }
    var t = document.createElement("div"); t.textContent = c.getAttribute("data-label"); tip.appendChild(t);
    tip.style.display = "block"; move(e);
  }
  var picks = document.querySelectorAll("#map .pick");
  for (var k = 0; k < picks.length; k++) {
    picks[k].addEventListener("mouseover", show);
    picks[k].addEventListener("mousemove", move);
    picks[k].addEventListener("mouseout", function () { tip.style.display = "none"; });
  }
})();
"""

#: Nothing but the page itself: no script, style, image or font from anywhere else, no form, no frame.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")


def html_page(*, title: str, facts: Sequence[tuple[str, str]], shown: Sequence[dict], images: np.ndarray,
              unreadable: Mapping[int, str] | None = None, tile: int = 96, grouped: bool = False,
              totals: Mapping[int, int] | None = None, points: MapPoints | None = None,
              map_note: str | None = None) -> str:
    """The page: ``title``, the ``facts`` table (:func:`page_facts`), the picks ``shown`` (their images
    ``images``, (n, C, s, s) uint8 from :func:`selector.show.read_tiles`; those in ``unreadable`` crossed out)
    as a grid, grouped by estimated group with ``grouped`` (headers counting ``totals[g]`` of the whole
    selection), and the map of ``points`` (:func:`selector.show.map_points`) or ``map_note`` saying why there
    is none."""
    unreadable = unreadable or {}
    colours = _colours([*(points.rows if points is not None else []), *shown], grouped)  # the PNG map's order
    table = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts)
    grid = _grid(shown, images, unreadable, tile, grouped, totals or {}, colours)
    if points is not None:
        the_map = _map_svg(points, colours)
    else:
        the_map = f"<p>No map: {_esc(map_note or 'the pool’s embedding is not available')}.</p>"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_esc(title)}</title><style>{STYLE.replace("TILE", str(tile))}</style></head>\n<body>'
            f'<h1>{_esc(title)}</h1><table id="summary">{table}</table>'
            f'<h2>The picks</h2><div id="picks">{grid}</div>'
            f'<h2>The map</h2>{the_map}<div id="tip"></div>'
            f'<script>{SCRIPT}</script></body></html>\n')


def page_html(got: ShowInputs, selection: str | os.PathLike, pool: str | os.PathLike, images: np.ndarray,
              unreadable: Mapping[int, str], tile: int, points: MapPoints | None, embedding: str | None,
              map_note: str | None) -> str:
    """:func:`html_page` of what :func:`read_inputs` read, the images of its page and the map's ``points``
    (from the ``embedding`` so named), or ``map_note`` saying why there is no map."""
    facts = page_facts(selection=selection, pool=pool, rows=got.rows, shown=got.shown, classes=got.classes,
                       grouped=got.grouped, summary=got.summary, facts=got.facts, embedding=embedding,
                       n_pool=len(points.xy) if points is not None else None)
    return html_page(title=f"Selection {Path(selection).name}", facts=facts, shown=got.shown, images=images,
                     unreadable=unreadable, tile=tile, grouped=got.grouped, totals=got.totals, points=points,
                     map_note=map_note)


def write_html(text: str, out: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write the page atomically (UTF-8); ``overwrite=False`` never replaces a file that exists."""
    out = Path(out)
    with atomic_write(out, "w", encoding="utf-8", overwrite=overwrite) as f:
        f.write(text)
    return out
