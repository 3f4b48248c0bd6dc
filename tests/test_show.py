"""selector show: a contact sheet with one tile per chosen image, grouped by estimated group, and a map."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from selector.cli import main
from selector.show import BACKGROUND, ShowError, read_selection, sheet_layout
from tests.conftest import write_digits


def write_selection(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["rank", "path", "group", "score"])
        for r in rows:
            w.writerow([r["rank"], r["path"], r["group"], 0.5])


@pytest.fixture
def chosen(tmp_path):
    """A 60-digit pool and a selection of 11 of them in groups of 5, 4 and 2 (interleaved ranks)."""
    pool = write_digits(tmp_path / "pool", 60)
    paths = sorted(p.relative_to(pool).as_posix() for p in pool.rglob("*.png"))
    groups = [2, 0, 2, 7, 0, 2, 0, 2, 7, 0, 2]
    rows = [{"rank": i + 1, "path": paths[3 * i], "group": g} for i, g in enumerate(groups)]
    write_selection(tmp_path / "sel.csv", rows)
    return tmp_path, pool, rows


def tile_filled(img, x, y, tile):
    """True when the tile square at (x, y) holds a drawn tile (not the sheet's background)."""
    a = np.asarray(img.crop((x, y, x + tile, y + tile)))
    return bool((a != np.array(BACKGROUND, dtype=np.uint8)).any(axis=2).mean() > 0.5)


@pytest.mark.parametrize("cols", [4, 10])
def test_sheet_has_one_tile_per_chosen_image(chosen, cols):
    tmp, pool, rows = chosen
    out = tmp / f"sheet{cols}.png"
    r = CliRunner().invoke(main, ["show", str(tmp / "sel.csv"), "--pool", str(pool), "-o", str(out),
                                  "--cols", str(cols), "--tile", "48"])
    assert r.exit_code == 0, r.output
    assert "11 images in 3 groups" in r.output
    img = Image.open(out)
    # By size: groups 2 (5 images), 0 (4), 7 (2) in order of best rank, each on its own lines.
    tile, pad, label_h, header_h, margin = 48, 4, 16, 22, 8
    lines = sum(math.ceil(n / cols) for n in (5, 4, 2))
    assert img.size == (2 * margin + cols * (tile + pad) - pad,
                        2 * margin + 3 * header_h + lines * (tile + label_h + pad))
    # Every grid cell: filled exactly where a chosen image goes, and nowhere else.
    filled = []
    y = margin
    for n in (5, 4, 2):
        y += header_h
        for line in range(math.ceil(n / cols)):
            for c in range(cols):
                x, yy = margin + c * (tile + pad), y + line * (tile + label_h + pad)
                filled.append(tile_filled(img, x, yy, tile) == (line * cols + c < n))
        y += math.ceil(n / cols) * (tile + label_h + pad)
    assert all(filled) and len(filled) == cols * lines


def test_layout_places_groups_in_rank_order():
    lay = sheet_layout([2, 0, 2, 7, 0], cols=2, tile=10, label_h=0, header_h=5, pad=0, margin=0)
    assert [(g, n) for _, g, n in lay.headers] == [(2, 2), (0, 2), (7, 1)]
    assert lay.tiles == [(0, 5), (0, 20), (10, 5), (0, 35), (10, 20)]
    assert (lay.width, lay.height) == (20, 45)


def test_read_selection_formats_and_errors(chosen):
    tmp, pool, rows = chosen
    assert read_selection(tmp / "sel.csv") == rows
    tasks = [{"data": {"image": "u", "path": r["path"], "rank": r["rank"], "group": r["group"]}} for r in rows]
    (tmp / "t.json").write_text(json.dumps(tasks[::-1]), encoding="utf-8")
    assert read_selection(tmp / "t.json") == rows  # back in rank order
    (tmp / "bad.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ShowError, match="bad.csv"):
        read_selection(tmp / "bad.csv")
    r = CliRunner().invoke(main, ["show", str(tmp / "bad.csv"), "--pool", str(pool)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(main, ["show", str(tmp / "sel.csv"), "--pool", str(pool), "-o", str(tmp / "s.jpg")])
    assert r.exit_code == 2 and ".png" in r.output
    (tmp / "sel.sheet.png").write_bytes(b"keep")
    r = CliRunner().invoke(main, ["show", str(tmp / "sel.csv"), "--pool", str(pool)])
    assert r.exit_code == 1 and "--force" in r.output and (tmp / "sel.sheet.png").read_bytes() == b"keep"


@pytest.mark.trains
def test_map_from_embeddings_and_from_the_cache(chosen):
    tmp, pool, rows = chosen
    ids = sorted(p.relative_to(pool).as_posix() for p in pool.rglob("*.png"))
    e = np.random.default_rng(0).normal(size=(len(ids), 6)).astype(np.float32)
    np.savez(tmp / "emb.npz", embeddings=e, ids=np.array(ids))
    r = CliRunner().invoke(main, ["show", str(tmp / "sel.csv"), "--pool", str(pool), "--map", str(tmp / "map.png"),
                                  "--embeddings", str(tmp / "emb.npz")])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp / "map.png").size == (800, 800)
    # from the cache: nothing cached yet is a clear error, and neither picture is written
    r = CliRunner().invoke(main, ["show", str(tmp / "sel.csv"), "--pool", str(pool), "--map", str(tmp / "m2.png"),
                                  "-o", str(tmp / "s2.png")])
    assert r.exit_code == 1 and "no embedding of every image" in r.output
    assert not (tmp / "s2.png").exists() and not (tmp / "m2.png").exists()
    # after a select, the cached embedding of the pool is found, and it is the one select used
    s = CliRunner().invoke(main, ["select", "-b", 5, "-p", str(pool), "--arch", "resnet-small", "--epochs", 1,
                                  "-s", "random", "-q", "-o", str(tmp / "s2.csv")])
    assert s.exit_code == 0, s.output
    r = CliRunner().invoke(main, ["show", str(tmp / "s2.csv"), "--pool", str(pool), "--map", str(tmp / "m2.png"),
                                  "-q"])
    assert r.exit_code == 0, r.output
    assert "from the cache" in r.output and Image.open(tmp / "m2.png").size == (800, 800)
    from selector.api import Selector
    from selector.cache import cached_embedding, default_cache_dir
    from selector.pool import load_pool

    p = load_pool(pool)
    got, _ = cached_embedding(default_cache_dir(), p.digests)
    want = Selector(arch="resnet-small", epochs=1, cache_dir=default_cache_dir()).fit(p).embeddings_
    np.testing.assert_array_equal(got, want)
    assert cached_embedding(default_cache_dir(), p.digests + ["0" * 32]) is None  # one image not covered
