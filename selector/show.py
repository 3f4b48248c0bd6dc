"""Pictures of a selection: a contact sheet of the chosen images in rank order (grouped by estimated group
when the class count is confident), and a 2-D map of the pool's embedding with the picks.

* :func:`read_selection` reads what ``selector select`` wrote (``.csv``, ``.jsonl`` or Label
  Studio ``.json``) back as rows ``{"rank", "path", "group"}`` in rank order; :func:`load_selection` also
  returns what else the file carries (the strategy, a class count).
* The picks are grouped by estimated group only when the class count is confident
  (:func:`selector.report.class_count`: a grouping by an estimate that may be wrong by a factor of 2 to 5
  would mislead); otherwise they are shown in rank order.
* :func:`sheet_page` takes a page of at most :data:`SHEET_IMAGES` picks in rank order (a selection of any
  size is drawn a page at a time); :func:`read_tiles` reads their images with the pool's own reader (the
  one ``select`` uses: FIFOs, devices and files outside the pool are never opened, bombs and slow files
  refused, photos turned upright), a file that cannot be read becoming a crossed-out tile.
* :func:`sheet_layout` places one tile per row: a compact grid of at most ``cols`` columns in rank order,
  or (``grouped``) groups in order of their best rank, each group starting a new line under a header;
  :func:`contact_sheet` draws it (PIL), each tile the image as the encoder reads it (its centre square)
  with its rank below.
* :func:`map_points` projects the embedding on its first two principal components (scikit-learn's PCA);
  :func:`pool_map` draws them, the pool in grey and the picks in one colour (by group when ``grouped``)
  with their ranks (matplotlib); :mod:`selector.report` draws the same points in the HTML page. The embedding
  is the one ``select`` used: :func:`selector.workflow.map_embeddings` plans it again from the same
  options (the selection file stays what labeling tools read, with nothing added), and
  :func:`check_cached_training` makes sure that nothing is trained to draw it.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .atomic import atomic_write
from .names import display_name

logger = logging.getLogger(__name__)

BACKGROUND = (255, 255, 255)
HEADER_COLOR = (40, 40, 40)
UNREADABLE_COLOR = (200, 40, 40)
#: The picks on a map whose class count is not confident: one colour, no groups.
PICK_COLOR = "#d62728"

#: Picks on one sheet (``--max-images``): the first page of the selection in rank order; ``--page`` the next.
SHEET_IMAGES = 200

#: A sheet larger than this many pixels is refused before any image is read (300 MB as RGB).
MAX_SHEET_PIXELS = 100_000_000


class ShowError(ValueError):
    """A selection file or pool that cannot be shown; the message names it."""


# ----------------------------------------------------------------------------- reading


def read_selection(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The chosen items of a selection file in rank order: ``[{"rank", "path", "group"}]``.

    Reads ``.csv`` (``rank,path,group,score``), ``.jsonl`` and Label Studio tasks ``.json`` (the
    ``data.path``/``data.rank``/``data.group`` fields, or ``meta``) as :mod:`selector.formats`
    writes them.
    """
    return load_selection(path)[0]


def load_selection(path: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(:func:`read_selection`'s rows, what else the file carries): ``{"strategy": name}`` when its rows name
    the strategy (Label Studio's ``meta.strategy``), ``{"classes": {...}}`` when they carry a class count
    object, read as :func:`selector.report.class_count` reads a summary (a flat column is not one)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ShowError(f"selection file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ShowError(f"cannot read selection file {p}: {e}") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            raw = list(csv.DictReader(text.splitlines()))
        elif suffix == ".jsonl":
            raw = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif suffix == ".json":
            raw = [dict(t.get("meta") or {}, **(t.get("data") or {})) for t in json.loads(text)]
        else:
            raise ShowError(f"selection file {p}: unknown suffix {suffix!r}; use the .csv, .jsonl or Label "
                            "Studio .json that selector select wrote")
        rows = [{"rank": int(r["rank"]), "path": str(r["path"]),
                 "group": int(r["group"]) if r.get("group") not in (None, "") else -1} for r in raw]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ShowError(f"selection file {p} is not a selection written by selector select ({e!r})") from None
    if not rows:
        raise ShowError(f"selection file {p} lists no images")
    rows.sort(key=lambda r: r["rank"])
    facts: dict[str, Any] = {}
    first = raw[0]
    if isinstance(first.get("strategy"), str) and first["strategy"] not in ("", "unknown"):
        facts["strategy"] = first["strategy"]
    if isinstance(first.get("classes"), dict):
        facts["classes"] = first["classes"]
    return rows, facts


# ----------------------------------------------------------------------------- contact sheet


@dataclass(frozen=True)
class SheetLayout:
    """Where everything goes on a contact sheet (pixels).

    Attributes:
        width, height: the sheet's size.
        tiles: one ``(x, y)`` top-left corner per row given to :func:`sheet_layout`, in that order.
        headers: ``(y, group, count)`` per group, in drawing order.
        tile, cell_w, cell_h, header_h, margin: the sizes used.
    """

    width: int
    height: int
    tiles: list[tuple[int, int]]
    headers: list[tuple[int, int, int]]
    tile: int
    cell_w: int
    cell_h: int
    header_h: int
    margin: int


def sheet_layout(groups: Sequence[int], cols: int = 10, tile: int = 96, label_h: int = 16,
                 header_h: int = 22, pad: int = 4, margin: int = 8, grouped: bool = False) -> SheetLayout:
    """Lay out one tile per chosen item (``groups`` in rank order).

    A grid of ``c = min(cols, len(groups))`` columns in rank order, left to right then top to bottom, no
    headers: ``2 * margin + c * cell_w - pad`` wide with ``cell_w = tile + pad``, ``2 * margin + lines *
    cell_h`` high with ``cell_h = tile + label_h + pad``. With ``grouped``, groups appear in order of their
    best-ranked item, each starting a new line under a header (``header_h`` more per group) and wrapping
    after ``c`` tiles, tiles keeping rank order within a group. A sheet over :data:`MAX_SHEET_PIXELS`
    raises ShowError.
    """
    if cols < 1 or tile < 8:
        raise ShowError(f"cols must be >= 1 and tile >= 8 px, got cols={cols}, tile={tile}")
    cols = max(1, min(cols, len(groups)))  # a few picks make a narrow sheet, not a wide empty one
    order: list[int | None] = [None]  # ungrouped: one block of every tile, with no header
    if grouped:
        order = []
        for g in groups:
            if g not in order:
                order.append(g)
    cell_w, cell_h = tile + pad, tile + label_h + pad
    tiles: list[tuple[int, int] | None] = [None] * len(groups)
    headers = []
    y = margin
    for g in order:
        members = [i for i, gi in enumerate(groups) if g is None or gi == g]
        if g is not None:
            headers.append((y, g, len(members)))
            y += header_h
        for j, i in enumerate(members):
            tiles[i] = (margin + (j % cols) * cell_w, y + (j // cols) * cell_h)
        y += math.ceil(len(members) / cols) * cell_h
    width = 2 * margin + cols * cell_w - pad
    if width * (y + margin) > MAX_SHEET_PIXELS:
        raise ShowError(f"the sheet would be {width} x {y + margin} px, over {MAX_SHEET_PIXELS:,} pixels; "
                        "draw fewer images a page (--max-images), smaller tiles (--tile) or more per line (--cols)")
    return SheetLayout(width=width, height=y + margin, tiles=tiles, headers=headers, tile=tile,  # type: ignore[arg-type]
                       cell_w=cell_w, cell_h=cell_h, header_h=header_h, margin=margin)


def sheet_page(rows: Sequence[dict], max_images: int = SHEET_IMAGES, page: int = 1) -> list[dict]:
    """The rows page ``page`` of a sheet shows: the ``max_images`` picks in rank order from
    ``(page - 1) * max_images`` on (a selection of 100,000 images is drawn a page at a time, never whole)."""
    if max_images < 1 or page < 1:
        raise ShowError(f"max_images and page must be >= 1, got max_images={max_images}, page={page}")
    pages = math.ceil(len(rows) / max_images)
    if page > pages:
        raise ShowError(f"page {page} is empty: the selection lists {len(rows)} images, {max_images} a page "
                        f"(pages 1-{pages})")
    return list(rows[(page - 1) * max_images:page * max_images])


def read_tiles(pool: str | os.PathLike, paths: Sequence[str], side: int, *, on_bad: str = "skip",
               max_pixels: int | None = None, workers: int | None = None, timeout_s: float | None = None,
               follow_links: bool = False) -> tuple[np.ndarray, dict[int, str]]:
    """The images ``paths`` of ``pool`` as (n, 3, s, s) uint8 (``s`` at most ``side``: small images at their
    own size), and ``{index: reason}`` for those that were not read (their rows are zero).

    A folder's files are read by the pool's own reader (:func:`selector.pool.files.read_files`: only the
    pool's listed image files, never a FIFO, device or a file outside the pool; decoded in worker
    processes under the time limit and the pixel limit, upright) with ``max_pixels``, ``workers``,
    ``timeout_s`` and ``follow_links`` (None: the pool's defaults). An ``.npz`` pool's rows ``x[i]`` through
    :class:`selector.pool.read.RowReader` (an array needs none of them). ``on_bad="fail"``: the first image
    that cannot be read raises PoolError naming it."""
    root = Path(pool)
    if root.is_dir():
        from .pool.files import read_files

        kw = {k: v for k, v in (("max_pixels", max_pixels), ("timeout_s", timeout_s)) if v is not None}
        return read_files(root, paths, 3, side, on_bad=on_bad, own_size=True, workers=workers,
                          follow_links=follow_links, **kw)
    if root.suffix.lower() != ".npz" or not root.is_file():
        raise ShowError(f"pool {root} is neither a folder nor an .npz file")
    from .pool import PoolError, load_npz
    from .pool.read import RowReader

    p = load_npz(root, channels=3)
    where = {name: i for i, name in enumerate(p.ids)}
    rows: dict[int, int] = {}
    errors: dict[int, str] = {}
    for k, path in enumerate(paths):
        name, _, rest = path.partition("[")
        j = where.get(path)
        if j is None and name == "x" and rest.endswith("]") and rest[:-1].isdigit() and int(rest[:-1]) < len(p):
            j = int(rest[:-1])  # x[7] for x[0007]
        if j is None:
            errors[k] = f"not a row of {root} (x[0] to x[{len(p) - 1}])"
            if on_bad == "fail":
                raise PoolError(f"cannot read image {display_name(path)}: {errors[k]}")
        else:
            rows[k] = j
    side = min(side, p.format.short_side or side)
    images = np.zeros((len(paths), 3, side, side), dtype=np.uint8)
    if rows:
        with RowReader(p, side) as reader:
            got, _, _ = reader.read(np.array(list(rows.values())))
        images[list(rows)] = got
    return images, errors


def contact_sheet(rows: Sequence[dict], images: np.ndarray, cols: int = 10, tile: int = 96,
                  unreadable: Mapping[int, str] | None = None, totals: Mapping[int, int] | None = None,
                  grouped: bool = False):
    """A PIL image with one tile per row (see :func:`sheet_layout`): ``images[i]`` ((C, s, s) uint8, from
    :func:`read_tiles`) scaled to the tile (enlarged without smoothing), a crossed-out tile for the rows in
    ``unreadable``, the rank below it, and with ``grouped`` per group a header ``group g: n images`` (``no
    group`` for -1; ``n of N images`` when the selection holds ``totals[g] = N`` of them, more than the sheet)."""
    from PIL import Image, ImageDraw, ImageFont

    unreadable = unreadable or {}
    lay = sheet_layout([r["group"] for r in rows], cols=cols, tile=tile, grouped=grouped)
    sheet = Image.new("RGB", (lay.width, lay.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for y, g, n in lay.headers:
        name = "no group" if g < 0 else f"group {g}"
        of = f" of {totals[g]}" if totals and totals.get(g, n) > n else ""
        draw.text((lay.margin, y + 4), f"{name}: {n}{of} image{'s' if n != 1 or of else ''}", fill=HEADER_COLOR,
                  font=font)
    for i, (r, (x, y)) in enumerate(zip(rows, lay.tiles)):
        if i in unreadable:
            draw.rectangle([x, y, x + tile - 1, y + tile - 1], fill=(235, 235, 235), outline=UNREADABLE_COLOR)
            draw.line([x, y, x + tile - 1, y + tile - 1], fill=UNREADABLE_COLOR, width=2)
            draw.line([x, y + tile - 1, x + tile - 1, y], fill=UNREADABLE_COLOR, width=2)
        else:
            a = np.asarray(images[i])
            im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)).convert("RGB")
            if im.size != (tile, tile):
                im = im.resize((tile, tile), Image.NEAREST if im.size[0] < tile else Image.LANCZOS)
            sheet.paste(im, (x, y))
        draw.text((x + 2, y + tile + 1), f"#{r['rank']}", fill=HEADER_COLOR, font=font)
    return sheet


def read_shown(pool: str | os.PathLike, shown: Sequence[dict], side: int, *, on_bad: str = "skip",
               **reading) -> tuple[np.ndarray, dict[int, str]]:
    """:func:`read_tiles` of the rows ``shown`` at ``side`` with ``on_bad`` and ``reading``, and a warning per
    image not read (as the pool's reader warns, names and reasons escaped)."""
    images, bad = read_tiles(pool, [r["path"] for r in shown], side, on_bad=on_bad, **reading)
    for i, reason in bad.items():
        logger.warning("skipping %s: %s", display_name(Path(pool) / shown[i]["path"]), display_name(reason))
    return images, bad


def draw_sheet(pool: str | os.PathLike, shown: Sequence[dict], rows: Sequence[dict], *, cols: int = 10,
               tile: int = 96, on_bad: str = "skip", grouped: bool = False, **reading):
    """(the contact sheet of the rows ``shown``, ``{index: reason}`` of the images that could not be read):
    :func:`read_shown`, then :func:`contact_sheet`, whose group headers (``grouped``) count the whole
    selection ``rows``."""
    images, bad = read_shown(pool, shown, tile, on_bad=on_bad, **reading)
    totals = Counter(r["group"] for r in rows)
    return contact_sheet(shown, images, cols=cols, tile=tile, unreadable=bad, totals=totals, grouped=grouped), bad


def sheet_line(shown: Sequence[dict], rows: Sequence[dict], page: int, max_images: int,
               unreadable: Mapping[int, str], out: str | os.PathLike, grouped: bool = False, note: str = "") -> str:
    """The summary of a sheet (or page): how many of the selection's images it shows (which ranks, and how to
    get the others), in how many groups (``grouped``) or in rank order, how many could not be read, ``note``."""
    groups = len({r["group"] for r in shown})
    how = f"in {groups} group{'s' if groups != 1 else ''}" if grouped else "in rank order"
    text = f"{len(shown)} images {how}"
    if len(shown) < len(rows):
        pages = math.ceil(len(rows) / max_images)
        text = (f"{len(shown)} of {len(rows)} images (ranks {shown[0]['rank']}-{shown[-1]['rank']}, page {page} of "
                f"{pages}) {how}")
    if unreadable:
        text += f", {len(unreadable)} not readable (crossed out; see the warnings)"
    text += f"{note} -> {out}"
    if len(shown) < len(rows) and page * max_images < len(rows):
        text += f"; the next {min(max_images, len(rows) - page * max_images)}: --page {page + 1}"
    return text


def write_png(image, out: str | os.PathLike, overwrite: bool = True) -> Path:
    """Save a PIL image as PNG atomically; ``overwrite=False`` never replaces a file that exists."""
    out = Path(out)
    with atomic_write(out, "wb", overwrite=overwrite) as f:
        image.save(f, format="PNG")
    return out


# ----------------------------------------------------------------------------- map


@dataclass(frozen=True)
class MapPoints:
    """The embedding on its first two principal components.

    Attributes:
        xy: (n, 2) float coordinates of every pool item.
        rows: the chosen rows that are in the embedding, in rank order.
        index: (len(rows),) their rows in ``xy``.
        dim: the embedding's width.
    """

    xy: np.ndarray
    rows: list[dict]
    index: np.ndarray
    dim: int


def map_points(embeddings: np.ndarray, ids: Sequence[str], rows: Sequence[dict], seed: int = 0) -> MapPoints:
    """Project ``embeddings`` (one row per id of ``ids``) on its first two principal components and find the
    chosen ``rows`` among them; a chosen path that is not in ``ids`` is left off with a warning (the pool's
    reader skipped it: a FIFO, an unreadable file).

    Raises:
        ShowError: none of the chosen paths is among ``ids``, or the shapes disagree.
    """
    from sklearn.decomposition import PCA

    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ShowError(f"embeddings of shape {emb.shape} do not match {len(ids)} ids")
    where = {p: i for i, p in enumerate(ids)}
    missing = [r["path"] for r in rows if r["path"] not in where]
    if len(missing) == len(rows):
        raise ShowError(f"none of the {len(rows)} chosen images is in the embedding's ids (first: "
                        f"'{display_name(missing[0])}')")
    if missing:
        logger.warning("%d chosen images are not in the embedding, left off the map (first: %s)", len(missing),
                       display_name(missing[0]))
    kept = [dict(r) for r in rows if r["path"] in where]
    xy = PCA(n_components=2, random_state=seed).fit_transform(emb) if emb.shape[1] > 1 else np.c_[emb, emb]
    return MapPoints(xy=np.asarray(xy, dtype=np.float64), rows=kept,
                     index=np.array([where[r["path"]] for r in kept], dtype=np.int64), dim=emb.shape[1])


def pool_map(embeddings: np.ndarray, ids: Sequence[str], rows: Sequence[dict], out: str | os.PathLike,
             seed: int = 0, label_ranks: int = 50, grouped: bool = False, points: MapPoints | None = None,
             overwrite: bool = True) -> Path:
    """PNG of the embedding's first two principal components (:func:`map_points`, or ``points`` already
    computed): every pool item in grey, the picks in one colour (coloured by group with ``grouped``), the
    first ``label_ranks`` picks with their rank. The legend has two entries whatever the number of groups.
    Written atomically; ``overwrite=False`` never replaces a file that exists."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    pts = points if points is not None else map_points(embeddings, ids, rows, seed)
    xy, idx, rows = pts.xy, pts.index, pts.rows
    groups = np.array([r["group"] for r in rows])
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    ax.scatter(xy[:, 0], xy[:, 1], s=4, c="#c8c8c8", linewidths=0)
    if grouped:
        cmap = plt.get_cmap("tab20")
        order = {g: j for j, g in enumerate(dict.fromkeys(g for g in groups.tolist() if g >= 0))}  # as the page
        colours = [(0, 0, 0, 1) if g < 0 else cmap(order[g] % 20) for g in groups.tolist()]
        what = f"picks ({len(rows)}), coloured by estimated group ({len({g for g in groups.tolist() if g >= 0})})"
    else:
        colours, what = [PICK_COLOR] * len(rows), f"picks ({len(rows)})"
    ax.scatter(xy[idx, 0], xy[idx, 1], s=36, c=colours, edgecolors="black", linewidths=0.5)
    for r, i in zip(rows[:label_ranks], idx[:label_ranks]):
        ax.annotate(str(r["rank"]), xy[i], xytext=(3, 3), textcoords="offset points", fontsize=7)
    ax.set_title(f"{len(rows)} chosen of {len(xy)} (PCA of the embedding)")
    ax.set_xticks([])
    ax.set_yticks([])
    handles = [Line2D([], [], ls="", marker="o", ms=3, mfc="#c8c8c8", mec="none", label=f"pool ({len(xy)})"),
               Line2D([], [], ls="", marker="o", ms=6, mfc=colours[0] if grouped else PICK_COLOR, mec="black",
                      mew=0.5, label=what)]
    ax.legend(handles=handles, loc="best", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    out = Path(out)
    try:
        with atomic_write(out, "wb", overwrite=overwrite) as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
    return out


def check_cached_training(plan, cache_dir: str | os.PathLike | None, pool: str | os.PathLike) -> None:
    """Raise ShowError when the encoder of ``plan`` (:class:`selector.encoding.EncoderPlan`) would be trained:
    a picture never trains an encoder, it draws the one ``select`` trained and cached for these options."""
    if plan.train is None:
        return
    from .checkpoint import CheckpointError, checkpoint_finished, read_checkpoint

    ckpt = Path(cache_dir) / "encoders" / plan.cache_name if cache_dir is not None else None
    try:
        if ckpt is not None and ckpt.is_file() and checkpoint_finished(read_checkpoint(ckpt)):
            return
    except CheckpointError:
        pass
    raise ShowError(f"no encoder trained on {pool} with these options in the cache {cache_dir}: give show the "
                    "options select was given (--arch, --epochs, --batch-size, --seed, --pixel-view, ...), or "
                    "--embeddings / --encoder; show draws the embedding select used and never trains one")


def embedding_name(plan) -> str:
    """What the map's embedding is, for the summary: the backbone (frozen or trained on the pool) or the
    encoder file, and the pixel view when it is added."""
    name = f"encoder {plan.checkpoint}" if plan.checkpoint is not None else f"{plan.backbone} ({plan.mode})"
    return name + (" + pixel view" if plan.pixel_view else "")
