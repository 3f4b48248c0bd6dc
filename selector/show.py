"""Pictures of a selection: a contact sheet of the chosen images grouped by estimated group, and a
2-D map of the pool's embedding with the picks.

* :func:`read_selection` reads what ``selector select`` wrote (``.csv``, ``.jsonl`` or Label
  Studio ``.json``) back as rows ``{"rank", "path", "group"}`` in rank order.
* :func:`sheet_layout` places one tile per row: groups in order of their best rank, each group
  starting a new line of at most ``cols`` tiles under a header; :func:`contact_sheet` draws it
  (PIL), each tile the image fitted into ``tile`` x ``tile`` px with its rank below.
* :func:`pool_map` draws the first two principal components of the embedding (scikit-learn's
  PCA), the pool in grey and the picks coloured by group with their ranks (matplotlib).
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .atomic import atomic_write

logger = logging.getLogger(__name__)

BACKGROUND = (255, 255, 255)
HEADER_COLOR = (40, 40, 40)


class ShowError(ValueError):
    """A selection file or pool that cannot be shown; the message names it."""


# ----------------------------------------------------------------------------- reading


def read_selection(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The chosen items of a selection file in rank order: ``[{"rank", "path", "group"}]``.

    Reads ``.csv`` (``rank,path,group,score``), ``.jsonl`` and Label Studio tasks ``.json`` (the
    ``data.path``/``data.rank``/``data.group`` fields, or ``meta``) as :mod:`selector.formats`
    writes them.
    """
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
    return rows


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
                 header_h: int = 22, pad: int = 4, margin: int = 8) -> SheetLayout:
    """Lay out one tile per chosen item (``groups`` in rank order).

    Groups appear in order of their best-ranked item; each starts a new line under a header and
    wraps after ``cols`` tiles; within a group tiles keep rank order. The sheet is
    ``2 * margin + cols * cell_w - pad`` wide with ``cell_w = tile + pad``, and
    ``2 * margin + sum over groups (header_h + lines * cell_h)`` high with
    ``cell_h = tile + label_h + pad``.
    """
    if cols < 1 or tile < 8:
        raise ShowError(f"cols must be >= 1 and tile >= 8 px, got cols={cols}, tile={tile}")
    order: list[int] = []
    for g in groups:
        if g not in order:
            order.append(g)
    cell_w, cell_h = tile + pad, tile + label_h + pad
    tiles: list[tuple[int, int] | None] = [None] * len(groups)
    headers = []
    y = margin
    for g in order:
        members = [i for i, gi in enumerate(groups) if gi == g]
        headers.append((y, g, len(members)))
        y += header_h
        for j, i in enumerate(members):
            tiles[i] = (margin + (j % cols) * cell_w, y + (j // cols) * cell_h)
        y += math.ceil(len(members) / cols) * cell_h
    width = 2 * margin + cols * cell_w - pad
    return SheetLayout(width=width, height=y + margin, tiles=tiles, headers=headers, tile=tile,  # type: ignore[arg-type]
                       cell_w=cell_w, cell_h=cell_h, header_h=header_h, margin=margin)


def image_loader(root: str | os.PathLike) -> Callable[[str], "Any"]:
    """``path -> PIL image`` for a pool: files under a folder, or rows ``x[i]`` of an ``.npz``."""
    from PIL import Image

    root = Path(root)
    if root.is_dir():
        def load(path: str):
            try:
                with Image.open(root / path) as im:
                    im.load()
                    return im.convert("RGB")
            except (OSError, ValueError) as e:
                raise ShowError(f"cannot read image {root / path}: {e}") from None
        return load
    if root.suffix.lower() == ".npz" and root.is_file():
        with np.load(root, allow_pickle=False) as z:
            x = z["x"]

        def load_row(path: str):
            name, _, rest = path.partition("[")
            try:
                a = np.asarray(x[int(rest.rstrip("]"))])
            except (ValueError, IndexError):
                raise ShowError(f"{path!r} is not a row of {root}") from None
            if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
                a = np.moveaxis(a, 0, -1)
            if a.dtype != np.uint8:
                a = np.clip(np.rint(a * 255 if a.max() <= 1 else a), 0, 255).astype(np.uint8)
            return Image.fromarray(a.squeeze()).convert("RGB")
        return load_row
    raise ShowError(f"pool {root} is neither a folder nor an .npz file")


def contact_sheet(rows: Sequence[dict], load: Callable[[str], Any], cols: int = 10, tile: int = 96):
    """A PIL image with one tile per row (see :func:`sheet_layout`): the image fitted into the
    tile (aspect kept, small images scaled up without smoothing), the rank below it, and per group
    a header ``group g: n images`` (``no group`` for -1)."""
    from PIL import Image, ImageDraw, ImageFont

    lay = sheet_layout([r["group"] for r in rows], cols=cols, tile=tile)
    sheet = Image.new("RGB", (lay.width, lay.height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for y, g, n in lay.headers:
        name = "no group" if g < 0 else f"group {g}"
        draw.text((lay.margin, y + 4), f"{name}: {n} image{'s' if n != 1 else ''}", fill=HEADER_COLOR, font=font)
    for r, (x, y) in zip(rows, lay.tiles):
        im = load(r["path"])
        scale = tile / max(im.size)
        size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
        im = im.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)
        draw.rectangle([x, y, x + tile - 1, y + tile - 1], fill=(235, 235, 235))
        sheet.paste(im, (x + (tile - size[0]) // 2, y + (tile - size[1]) // 2))
        draw.text((x + 2, y + tile + 1), f"#{r['rank']}", fill=HEADER_COLOR, font=font)
    return sheet


def write_png(image, out: str | os.PathLike) -> Path:
    """Save a PIL image as PNG atomically."""
    out = Path(out)
    with atomic_write(out, "wb") as f:
        image.save(f, format="PNG")
    return out


# ----------------------------------------------------------------------------- map


def pool_map(embeddings: np.ndarray, ids: Sequence[str], rows: Sequence[dict], out: str | os.PathLike,
             seed: int = 0, label_ranks: int = 50) -> Path:
    """PNG of the embedding's first two principal components: every pool item in grey, the picks
    coloured by group, the first ``label_ranks`` picks with their rank.

    Raises:
        ShowError: a chosen path is not among ``ids``, or the shapes disagree.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(ids):
        raise ShowError(f"embeddings of shape {emb.shape} do not match {len(ids)} ids")
    where = {p: i for i, p in enumerate(ids)}
    missing = [r["path"] for r in rows if r["path"] not in where]
    if missing:
        raise ShowError(f"{len(missing)} chosen images are not in the embedding's ids (first: {missing[0]!r})")
    xy = PCA(n_components=2, random_state=seed).fit_transform(emb) if emb.shape[1] > 1 else np.c_[emb, emb]
    idx = np.array([where[r["path"]] for r in rows])
    groups = np.array([r["group"] for r in rows])
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    ax.scatter(xy[:, 0], xy[:, 1], s=4, c="#c8c8c8", linewidths=0, label=f"pool ({len(ids)})")
    cmap = plt.get_cmap("tab20")
    for j, g in enumerate(sorted(set(groups.tolist()))):
        sel = idx[groups == g]
        ax.scatter(xy[sel, 0], xy[sel, 1], s=36, color="black" if g < 0 else cmap(j % 20), edgecolors="black",
                   linewidths=0.5, label=("no group" if g < 0 else f"group {g}") + f" ({len(sel)})")
    for r, i in zip(rows[:label_ranks], idx[:label_ranks]):
        ax.annotate(str(r["rank"]), xy[i], xytext=(3, 3), textcoords="offset points", fontsize=7)
    ax.set_title(f"{len(rows)} chosen of {len(ids)} (PCA of the embedding)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=7, markerscale=1, framealpha=0.8)
    fig.tight_layout()
    out = Path(out)
    try:
        with atomic_write(out, "wb") as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
    return out
