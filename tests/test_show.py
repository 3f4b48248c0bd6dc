"""selector show: a contact sheet with one tile per chosen image, grouped by estimated group, and a map."""
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
from selector.show import BACKGROUND, SHEET_IMAGES, ShowError, read_selection, sheet_layout
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


def show(*args):
    return CliRunner().invoke(main, ["show", *map(str, args)])


def one_tile(tmp, pool, path, tile=48, *extra):
    """Show a selection of the one image ``path`` of ``pool``; (result, the tile's pixels or None)."""
    write_selection(tmp / "one.csv", [{"rank": 1, "path": path, "group": 0}])
    out = tmp / "one.png"
    r = show(tmp / "one.csv", "--pool", pool, "-o", out, "--tile", tile, "-f", *extra)
    if r.exit_code != 0:
        return r, None
    x, y = 8, 8 + 22  # margin, then the group's header
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
            assert "4 images in 3 groups, 1 not readable (crossed out; see the warnings)" in r.stdout
            assert Image.open(tmp / "f.png").size[0] == 2 * 8 + 10 * 100 - 4
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
    tile = np.asarray(Image.open(tmp / "b.png").convert("RGB"))[30:30 + 96, 8:8 + 96]
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
    assert "4 images in 1 group, 3 not readable" in r.output
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
    assert (f"{SHEET_IMAGES} of {n} images (ranks 1-{SHEET_IMAGES}, page 1 of {pages}) in 3 groups -> "
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
        sheet_layout(list(range(SHEET_IMAGES)), tile=512)  # refused before any image is read


def test_a_selection_of_an_npz_pool_is_drawn_from_its_rows(tmp_path):
    x = np.zeros((5, 8, 8), dtype=np.uint8)
    x[3] = 255
    np.savez(tmp_path / "pool.npz", x=x)
    write_selection(tmp_path / "n.csv", [{"rank": 1, "path": "x[3]", "group": 0},
                                         {"rank": 2, "path": "x[9]", "group": 0}])
    r = show(tmp_path / "n.csv", "--pool", tmp_path / "pool.npz", "-o", tmp_path / "n.png", "--tile", 48)
    assert r.exit_code == 0, r.output
    assert "WARNING: skipping" in r.output and "not a row of" in r.output and "1 not readable" in r.output
    tile = np.asarray(Image.open(tmp_path / "n.png").convert("RGB"))[30:30 + 48, 8:8 + 48]
    assert (tile == 255).all()
