"""selector show: a contact sheet with one tile per chosen image in rank order (grouped by estimated group when the
class count is confident), and a map."""
from __future__ import annotations

import csv
import json
import math
import os
import struct
import subprocess
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from selector.cli import main
from selector.report import GROUP_COLORS
from selector.show import BACKGROUND, PICK_COLOR, SHEET_IMAGES, ShowError, load_selection, read_selection, sheet_layout
from tests.conftest import cli_cmd, error_line, subprocess_env, user_cache, write_digits


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


def confident_summary(path, rows, confident=True):
    """A summary as ``selector select --json`` prints it, with the class count of issue-29's shape."""
    path.write_text(json.dumps({"chosen": len(rows), "strategy": "typcover", "estimated_classes": 3,
                                "classes": {"estimate": 3, "low": 3, "high": 4, "confident": confident},
                                "paths": [r["path"] for r in rows],
                                "summary": {"pool": "60 images in pool", "encoder": "an encoder"}}),
                    encoding="utf-8")
    return path


def grid_cells_filled(img, n, cols, tile, top=8, margin=8, pad=4, label_h=16):
    """For every cell of an ungrouped grid: is it filled exactly when a chosen image goes there?"""
    lines = math.ceil(n / cols)
    return [tile_filled(img, margin + c * (tile + pad), top + line * (tile + label_h + pad), tile)
            == (line * cols + c < n) for line in range(lines) for c in range(cols)]


@pytest.mark.parametrize("cols", [4, 10, 20])
def test_sheet_is_a_compact_grid_in_rank_order_without_a_confident_class_count(chosen, cols):
    tmp, pool, rows = chosen
    out = tmp / f"grid{cols}.png"
    r = show(tmp / "sel.csv", "--pool", pool, "-o", out, "--cols", cols, "--tile", 48)
    assert r.exit_code == 0, r.output
    assert "11 images in rank order" in r.output
    img = Image.open(out)
    c = min(cols, 11)  # 20 columns for 11 picks: 11 wide, not 9 empty columns
    tile, pad, label_h, margin = 48, 4, 16, 8
    assert img.size == (2 * margin + c * (tile + pad) - pad, 2 * margin + math.ceil(11 / c) * (tile + label_h + pad))
    assert all(grid_cells_filled(img, 11, c, tile))
    # rank order: the tile in the second cell is the rank-2 image (digits: bright strokes on black)
    want = np.asarray(Image.open(pool / rows[1]["path"]).convert("L"), dtype=float)
    x = margin + (tile + pad) if c > 1 else margin
    y = margin if c > 1 else margin + tile + label_h + pad
    got = np.asarray(img.convert("L").crop((x, y, x + tile, y + tile)).resize((8, 8), Image.BOX), dtype=float)
    assert np.abs(got - want).mean() < 8
    # a summary that is not confident: the same grid
    confident_summary(tmp / "unsure.json", rows, confident=False)
    r = show(tmp / "sel.csv", "--pool", pool, "-o", out, "-f", "--cols", cols, "--tile", 48,
             "--summary", tmp / "unsure.json")
    assert r.exit_code == 0 and "11 images in rank order" in r.output, r.output
    assert Image.open(out).size == img.size


@pytest.mark.parametrize("cols", [4, 10])
def test_sheet_is_grouped_by_estimated_group_when_the_class_count_is_confident(chosen, cols):
    tmp, pool, rows = chosen
    out = tmp / f"sheet{cols}.png"
    r = show(tmp / "sel.csv", "--pool", pool, "-o", out, "--cols", cols, "--tile", 48,
             "--summary", confident_summary(tmp / "run.json", rows))
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
    lay = sheet_layout([2, 0, 2, 7, 0], cols=2, tile=10, label_h=0, header_h=5, pad=0, margin=0, grouped=True)
    assert [(g, n) for _, g, n in lay.headers] == [(2, 2), (0, 2), (7, 1)]
    assert lay.tiles == [(0, 5), (0, 20), (10, 5), (0, 35), (10, 20)]
    assert (lay.width, lay.height) == (20, 45)


def test_layout_without_groups_is_a_rank_order_grid():
    lay = sheet_layout([2, 0, 2, 7, 0], cols=2, tile=10, label_h=0, header_h=5, pad=0, margin=0)
    assert lay.headers == []
    assert lay.tiles == [(0, 0), (10, 0), (0, 10), (10, 10), (0, 20)]
    assert (lay.width, lay.height) == (20, 30)
    # the demo's 50 picks in 24 groups: 10 x 5 tiles, not 24 lines of a strip
    groups = [k % 24 for k in range(50)]
    grid, strip = sheet_layout(groups), sheet_layout(groups, grouped=True)
    assert (grid.width, grid.height) == (1012, 16 + 5 * 116)
    assert strip.height > 4 * grid.height and len(strip.headers) == 24


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


def show(*args):
    return CliRunner().invoke(main, ["show", *map(str, args)])


def one_tile(tmp, pool, path, tile=48, *extra):
    """Show a selection of the one image ``path`` of ``pool``; (result, the tile's pixels or None)."""
    write_selection(tmp / "one.csv", [{"rank": 1, "path": path, "group": 0}])
    out = tmp / "one.png"
    r = show(tmp / "one.csv", "--pool", pool, "-o", out, "--tile", tile, "-f", *extra)
    if r.exit_code != 0:
        return r, None
    x, y = 8, 8  # the margin; no header: one pick has no confident class count
    return r, np.asarray(Image.open(out).convert("RGB"))[y:y + tile, x:x + tile]


@pytest.mark.trains
def test_map_draws_the_embedding_the_selection_used_not_the_last_one_cached(chosen):
    from selector.api import Selector
    from selector.cache import cached_embedding
    from selector.pool import load_pool
    from selector.workflow import map_embeddings

    tmp, pool, rows = chosen
    cache = user_cache()
    ids = sorted(p.relative_to(pool).as_posix() for p in pool.rglob("*.png"))
    e = np.random.default_rng(0).normal(size=(len(ids), 6)).astype(np.float32)
    np.savez(tmp / "emb.npz", embeddings=e, ids=np.array(ids))
    r = show(tmp / "sel.csv", "--pool", pool, "--map", tmp / "map.png", "--embeddings", tmp / "emb.npz")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp / "map.png").size == (800, 800)
    # show never trains: an encoder select would train that is not in the cache is an error, nothing written
    a = ["--arch", "resnet-small", "--epochs", 1, "--no-flip"]
    r = show(tmp / "sel.csv", "--pool", pool, "--map", tmp / "ma.png", "-o", tmp / "sa.png", *a)
    assert r.exit_code == 1 and "no encoder trained on" in error_line(r) and "never trains" in error_line(r)
    assert not (tmp / "sa.png").exists() and not (tmp / "ma.png").exists()
    # selection A, then B with other options: B's embedding is the one cached last
    s = CliRunner().invoke(main, ["select", "-b", 5, "-p", str(pool), *map(str, a), "-s", "random", "-q",
                                  "-o", str(tmp / "a.csv")])
    assert s.exit_code == 0, s.output
    digests = load_pool(pool).digests
    used_by_a, _ = cached_embedding(cache, digests)
    b = ["--arch", "resnet-small", "--epochs", 2, "--no-flip", "--pixel-view"]
    s = CliRunner().invoke(main, ["select", "-b", 5, "-p", str(pool), *map(str, b), "-s", "random", "-q",
                                  "-o", str(tmp / "b.csv")])
    assert s.exit_code == 0, s.output
    last, _ = cached_embedding(cache, digests)
    assert not np.array_equal(last, used_by_a)
    # the map of A, with A's options, draws A's embedding; B's adds the pixel view to B's
    r = show(tmp / "a.csv", "--pool", pool, "--map", tmp / "ma.png", "-o", tmp / "sa.png", "-q", *a)
    assert r.exit_code == 0, r.output
    assert "60 x 256 embedding (resnet-small (trained))" in r.output and Image.open(tmp / "ma.png").size == (800, 800)
    r = show(tmp / "b.csv", "--pool", pool, "--map", tmp / "mb.png", "-o", tmp / "sb.png", "-q", *b)
    assert r.exit_code == 0, r.output
    assert "60 x 306 embedding (resnet-small (trained) + pixel view)" in r.output
    got, got_ids, how = map_embeddings(pool, selector=Selector(arch="resnet-small", epochs=1, flip=False,
                                                                cache_dir=cache))
    np.testing.assert_array_equal(got, used_by_a)
    assert got_ids == ids and how == "resnet-small (trained)"


@pytest.mark.processes
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_a_fifo_named_by_the_selection_is_skipped_not_waited_on(chosen):
    """A real FIFO in the pool named by the selection: a real ``selector show`` finishes (bounded wait), the
    FIFO a crossed-out tile with the reason, as select skips it; --on-bad-image fail stops with one line."""
    tmp, pool, rows = chosen
    os.mkfifo(pool / "fifo.png")
    write_selection(tmp / "f.csv", rows[:3] + [{"rank": 4, "path": "fifo.png", "group": 7}])
    for extra, code in (((), 0), (("--on-bad-image", "fail"), 1)):
        try:
            r = subprocess.run(cli_cmd("show", tmp / "f.csv", "--pool", pool, "-o", tmp / "f.png", "-f", *extra),
                               capture_output=True, text=True, timeout=120, env=subprocess_env())
        except subprocess.TimeoutExpired:
            pytest.fail("selector show hung on a FIFO named by the selection")
        assert r.returncode == code, r.stderr
        if code == 0:
            assert f"WARNING: skipping {pool / 'fifo.png'}: not a regular file (a FIFO)" in r.stderr
            assert "4 images in rank order, 1 not readable (crossed out; see the warnings)" in r.stdout
            assert Image.open(tmp / "f.png").size[0] == 2 * 8 + 4 * 100 - 4
        else:
            assert r.stderr.strip().splitlines() == [
                f"Error: cannot read image {pool / 'fifo.png'}: not a regular file (a FIFO)"]


def _bomb_png(path, side=50_000):
    """A PNG whose header says ``side`` x ``side`` px gray, with a few bytes of data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_a_crossed_out_tile_with_a_warning_as_in_select(chosen):
    tmp, pool, rows = chosen
    _bomb_png(pool / "bomb.png")
    write_selection(tmp / "b.csv", [{"rank": 1, "path": "bomb.png", "group": 0}] + rows[1:3])
    r = show(tmp / "b.csv", "--pool", pool, "-o", tmp / "b.png")
    assert r.exit_code == 0, r.output
    assert (f"WARNING: skipping {pool / 'bomb.png'}: 50000x50000 px is over the 89,478,485-pixel limit "
            "(decompression-bomb guard; raise it with --max-pixels)") in r.output
    assert "1 not readable" in r.output
    tile = np.asarray(Image.open(tmp / "b.png").convert("RGB"))[8:8 + 96, 8:8 + 96]
    assert tuple(tile[48, 48]) == (200, 40, 40)  # the cross over the tile
    r = show(tmp / "b.csv", "--pool", pool, "-o", tmp / "b.png", "-f", "--on-bad-image", "fail")
    assert r.exit_code == 1 and "cannot read image" in error_line(r) and "pixel limit" in error_line(r)


def test_paths_outside_the_pool_are_never_read(chosen, tmp_path_factory):
    """What select never lists is never read for the sheet: a file outside the pool, one behind a link
    to a folder outside it, one that is not there."""
    tmp, pool, rows = chosen
    outside = tmp_path_factory.mktemp("outside")
    Image.new("L", (8, 8), 255).save(outside / "secret.png")
    Image.new("L", (8, 8), 255).save(tmp / "secret.png")
    os.symlink(outside, pool / "elsewhere")
    names = ["../secret.png", "elsewhere/secret.png", "digit_0/missing.png", rows[0]["path"]]
    write_selection(tmp / "o.csv", [{"rank": k + 1, "path": n, "group": 0} for k, n in enumerate(names)])
    r = show(tmp / "o.csv", "--pool", pool, "-o", tmp / "o.png")
    assert r.exit_code == 0, r.output
    warned = [ln for ln in r.output.splitlines() if ln.startswith("WARNING: skipping")]
    assert warned == [
        f"WARNING: skipping {pool / '../secret.png'}: not one of the pool's image files (outside the pool, "
        "hidden, or not an image suffix)",
        f"WARNING: skipping {pool / 'elsewhere/secret.png'}: elsewhere is a link to {outside.resolve()}, outside "
        "the pool (pass --follow-links to read it)",
        f"WARNING: skipping {pool / 'digit_0/missing.png'}: no such file in the pool"], r.output
    assert "4 images in rank order, 3 not readable" in r.output
    r = show(tmp / "o.csv", "--pool", pool, "-o", tmp / "o.png", "-f", "--follow-links")
    assert r.exit_code == 0 and "2 not readable" in r.output  # the link is read as select reads it


def test_an_exif_rotated_photo_is_drawn_upright(tmp_path):
    from PIL import ImageOps

    pool = tmp_path / "pool"
    pool.mkdir()
    a = np.zeros((20, 40, 3), dtype=np.uint8)  # stored 40 x 20: red left half, blue right half
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to show
    Image.fromarray(a).save(pool / "photo.jpg", exif=exif, quality=95)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(pool / "photo.jpg")).convert("RGB"))
    assert upright.shape[:2] == (40, 20)
    r, tile = one_tile(tmp_path, pool, "photo.jpg")
    assert r.exit_code == 0, r.output
    for y in (4, 43):  # top and bottom of the tile: the colours of the upright photo's top and bottom
        want = upright[15 if y < 24 else 25, 10].astype(int)
        assert np.abs(tile[y, 24].astype(int) - want).max() < 40, (y, tile[y, 24], want)


def test_a_large_selection_is_drawn_a_page_at_a_time(chosen):
    tmp, pool, _ = chosen
    paths = sorted(p.relative_to(pool).as_posix() for p in pool.rglob("*.png"))
    n = 5_000
    write_selection(tmp / "big.csv", [{"rank": k + 1, "path": paths[k % len(paths)], "group": k % 3}
                                      for k in range(n)])
    r = show(tmp / "big.csv", "--pool", pool, "-o", tmp / "big.png")
    assert r.exit_code == 0, r.output
    pages = n // SHEET_IMAGES
    assert (f"{SHEET_IMAGES} of {n} images (ranks 1-{SHEET_IMAGES}, page 1 of {pages}) in rank order -> "
            f"{tmp / 'big.png'}; the next {SHEET_IMAGES}: --page 2") in r.output
    lay = sheet_layout([k % 3 for k in range(SHEET_IMAGES)])
    assert Image.open(tmp / "big.png").size == (lay.width, lay.height)
    r = show(tmp / "big.csv", "--pool", pool, "-o", tmp / "p.png", "--max-images", 7, "--page", 2)
    assert r.exit_code == 0 and "7 of 5000 images (ranks 8-14, page 2 of 715)" in r.output
    r = show(tmp / "big.csv", "--pool", pool, "-o", tmp / "p.png", "-f", "--page", pages + 1)
    assert r.exit_code == 1
    assert error_line(r) == (f"Error: page {pages + 1} is empty: the selection lists {n} images, {SHEET_IMAGES} a "
                             f"page (pages 1-{pages})")
    with pytest.raises(ShowError, match="over 100,000,000 pixels"):
        sheet_layout(list(range(SHEET_IMAGES)), tile=512, grouped=True)  # refused before any image is read
    with pytest.raises(ShowError, match="over 100,000,000 pixels"):
        sheet_layout([0] * 1000, cols=100, tile=512)


def test_a_selection_of_an_npz_pool_is_drawn_from_its_rows(tmp_path):
    x = np.zeros((5, 8, 8), dtype=np.uint8)
    x[3] = 255
    np.savez(tmp_path / "pool.npz", x=x)
    write_selection(tmp_path / "n.csv", [{"rank": 1, "path": "x[3]", "group": 0},
                                         {"rank": 2, "path": "x[9]", "group": 0}])
    r = show(tmp_path / "n.csv", "--pool", tmp_path / "pool.npz", "-o", tmp_path / "n.png", "--tile", 48)
    assert r.exit_code == 0, r.output
    assert "WARNING: skipping" in r.output and "not a row of" in r.output and "1 not readable" in r.output
    tile = np.asarray(Image.open(tmp_path / "n.png").convert("RGB"))[8:8 + 48, 8:8 + 48]
    assert (tile == 255).all()


def _tab20_colours_drawn(png):
    """How many of tab20's colours fill at least 20 pixels of ``png`` (each pick's marker is ~30)."""
    a = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(a, axis=0, return_counts=True)
    have = {tuple(c) for c, k in zip(colours.tolist(), counts.tolist()) if k >= 20}
    return sum(tuple(int(h[i:i + 2], 16) for i in (1, 3, 5)) in have for h in GROUP_COLORS)


def test_the_map_colours_picks_by_group_only_when_the_class_count_is_confident(chosen):
    """26 picks in 26 groups: one colour and a two-entry legend unless the class count is confident."""
    tmp, pool, _ = chosen
    ids = sorted(p.relative_to(pool).as_posix() for p in pool.rglob("*.png"))
    e = np.random.default_rng(0).normal(size=(len(ids), 6)).astype(np.float32)
    np.savez(tmp / "emb.npz", embeddings=e, ids=np.array(ids))
    rows = [{"rank": k + 1, "path": ids[2 * k], "group": k} for k in range(26)]
    write_selection(tmp / "g.csv", rows)
    r = show(tmp / "g.csv", "--pool", pool, "--map", tmp / "one.png", "-o", tmp / "s1.png", "--embeddings",
             tmp / "emb.npz")
    assert r.exit_code == 0, r.output
    r = show(tmp / "g.csv", "--pool", pool, "--map", tmp / "many.png", "-o", tmp / "s2.png", "--embeddings",
             tmp / "emb.npz", "--summary", confident_summary(tmp / "run.json", rows))
    assert r.exit_code == 0, r.output
    assert _tab20_colours_drawn(tmp / "one.png") <= 1  # PICK_COLOR alone
    assert PICK_COLOR in GROUP_COLORS
    assert _tab20_colours_drawn(tmp / "many.png") >= 15


def test_a_summary_of_another_selection_is_refused_before_anything_is_written(chosen):
    tmp, pool, rows = chosen
    confident_summary(tmp / "other.json", rows[::-1])
    r = show(tmp / "sel.csv", "--pool", pool, "-o", tmp / "s.png", "--summary", tmp / "other.json")
    assert r.exit_code == 1 and "describes another selection" in error_line(r) and "other.json" in error_line(r)
    assert not (tmp / "s.png").exists()
    (tmp / "list.json").write_text("[1, 2]", encoding="utf-8")
    r = show(tmp / "sel.csv", "--pool", pool, "-o", tmp / "s.png", "--summary", tmp / "list.json")
    assert r.exit_code == 1 and "is not the JSON object selector select --json prints" in error_line(r)


def test_load_selection_returns_what_the_file_carries_besides_the_rows(chosen):
    tmp, pool, rows = chosen
    assert load_selection(tmp / "sel.csv") == (rows, {})
    tasks = [{"data": {"path": r["path"], "rank": r["rank"], "group": r["group"]},
              "meta": {"strategy": "typcover", "classes": {"estimate": 3, "confident": True}}} for r in rows]
    (tmp / "t.json").write_text(json.dumps(tasks), encoding="utf-8")
    got, facts = load_selection(tmp / "t.json")
    assert got == rows and facts == {"strategy": "typcover", "classes": {"estimate": 3, "confident": True}}
    # a flat column is not a class count (nothing writes one; a user's column must not group the picks)
    (tmp / "c.csv").write_text("rank,path,group,score,confident\n1,a.png,0,0.5,true\n", encoding="utf-8")
    assert load_selection(tmp / "c.csv")[1] == {}
    for t in tasks:
        t["meta"] = {"strategy": "unknown"}  # what the Label Studio writer records without a strategy name
    (tmp / "t.json").write_text(json.dumps(tasks), encoding="utf-8")
    assert load_selection(tmp / "t.json") == (rows, {})
