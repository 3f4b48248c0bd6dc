"""Decoding image files (selector.pool.decode): every listed format and mode to the pool's channels and
size, orientation, bit depth, transparency, animated files, the size rule, broken files (skipped with a
reason, or the run fails with ``--on-bad-image fail``) and the decompression-bomb guard (``--max-pixels``).
The cases that go through ``selector select`` also check that the pool is left unchanged.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selector.pool import choose_size, convert_image, load_folder
from tests.conftest import N_POOL, error_line, rows, select

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gradient(w=20, h=12):
    """An RGB image whose left half is red and right half is blue (orientation-sensitive)."""
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[:, : w // 2, 0] = 255
    a[:, w // 2:, 2] = 255
    return a


def _write_formats(folder: Path) -> dict[str, str]:
    """One file per listed format and mode; returns {relative path: PIL mode written}."""
    rgb = Image.fromarray(_gradient())
    out = {}

    def save(rel, img, **kw):
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p, **kw)
        out[rel] = img.mode

    save("a.jpg", rgb)
    save("b.jpeg", rgb.convert("L"))
    save("c.png", rgb.convert("RGBA"))
    save("d.bmp", rgb)
    save("e.webp", rgb)
    save("f.gif", rgb.convert("P"))
    save("g.tif", rgb)
    save("h.tiff", rgb.convert("L"))
    save("sub/i.png", rgb.convert("P"))
    save("sub/deeper/j.jpg", rgb.convert("CMYK"))
    save("sub/k.png", Image.fromarray((np.arange(240, dtype=np.uint16).reshape(12, 20) * 270)))
    save("sub/l.png", rgb.convert("LA"))
    save("sub/m.png", rgb.convert("1"))
    return out


def test_every_format_and_mode_decodes_to_rgb(tmp_path):
    written = _write_formats(tmp_path)
    pool = load_folder(tmp_path)
    assert pool.ids == sorted(written)  # sorted relative POSIX paths, nested folders included
    assert pool.channels == 3 and pool.size == 16  # mixed modes -> RGB; 12 px short side -> 16
    assert pool.images.shape == (len(written), 3, 16, 16) and pool.images.dtype == np.uint8
    assert pool.skipped == []
    # Colour files keep red on the left, blue on the right after resize/crop.
    a = pool.images[pool.ids.index("a.jpg")].astype(int)
    assert a[0, :, :4].mean() > 200 and a[2, :, :4].mean() < 60
    assert a[2, :, -4:].mean() > 200 and a[0, :, -4:].mean() < 60
    # Grayscale files are replicated into three equal channels.
    b = pool.images[pool.ids.index("b.jpeg")].astype(int)
    assert np.abs(b[0] - b[1]).max() <= 1 and np.abs(b[1] - b[2]).max() <= 1


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    pool = load_folder(tmp_path)
    assert pool.channels == 1
    img = pool.images[0, 0].astype(int)
    # A 16-bit ramp keeps its full range: dark top-left, bright bottom-right, not saturated everywhere.
    assert img[0, 0] < 30 and img[-1, -1] > 225 and 80 < img.mean() < 175


def test_transparency_composited_on_white(tmp_path):
    a = np.zeros((32, 32, 4), dtype=np.uint8)
    a[..., 0] = 255
    a[:, 16:, 3] = 255  # left half fully transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    img = load_folder(tmp_path).images[0]
    assert img[:, :, :8].min() > 240  # white where transparent
    assert img[0, :, -8:].min() > 240 and img[1, :, -8:].max() < 15  # red where opaque


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(_gradient(40, 40))
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180 degrees: the viewer shows blue on the left
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    arr = load_folder(tmp_path).images[0].astype(int)
    assert arr[2, :, :8].mean() > 200 and arr[0, :, :8].mean() < 60


def test_gif_first_frame(tmp_path):
    frames = [Image.new("L", (32, 32), 20), Image.new("L", (32, 32), 230)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    img = load_folder(tmp_path).images[0]
    assert abs(int(img.mean()) - 20) <= 2


def _odd_files(folder: Path) -> None:
    """Decodable files in unusual encodings, each with a known expected look."""
    frames = [Image.new("RGB", (16, 16), (250, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 250))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    grad = np.zeros((24, 24, 3), dtype=np.uint8)
    grad[:, :12, 0] = 255  # red left, blue right
    grad[:, 12:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 3  # stored upside down: a viewer shows blue on the left
    Image.fromarray(grad).save(folder / "rotated.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray((np.linspace(0, 65535, 256).reshape(16, 16)).astype(np.uint16)).save(folder / "deep16.png")
    Image.fromarray(grad).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    pal = Image.new("P", (16, 16), 0)
    pal.putpalette([0, 200, 0] + [0, 0, 0] * 255)  # index 0 green, but fully transparent
    pal.save(folder / "palette_transparent.png", transparency=0)


def test_unusual_encodings_are_decoded(pool, tmp_path, encoder_file, unchanged):
    _odd_files(pool)
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL + 5)
    assert r.exit_code == 0, r.output
    assert f"{N_POOL + 5} images in {pool} (RGB, short side " in r.output  # nothing skipped
    p = load_folder(pool, channels=3, image_size=16, workers=0)
    img = {k: p.images[p.ids.index(k)].astype(int) for k in
           ("animated.gif", "rotated.jpg", "deep16.png", "cmyk.jpg", "palette_transparent.png")}
    assert img["animated.gif"][0].mean() > 200 and img["animated.gif"][2].mean() < 40  # the first frame
    assert img["rotated.jpg"][2, :, :4].mean() > 200 and img["rotated.jpg"][0, :, :4].mean() < 60  # turned
    assert img["deep16.png"][0, 0, 0] < 30 and img["deep16.png"][0, -1, -1] > 225  # 16 bit scaled, not clipped
    assert img["cmyk.jpg"][0, :, :4].mean() > 200 and img["cmyk.jpg"][2, :, -4:].mean() > 200  # colours kept
    assert img["palette_transparent.png"].min() > 240  # transparent palette entry shows white, not green


@pytest.mark.parametrize("sides,gray,expected", [([8, 8], True, 16), ([28] * 5, True, 28), ([32] * 3, False, 32),
                                                 ([32] * 3, True, 28), ([40], False, 32), ([500, 300], False, 64)])
def test_choose_size(sides, gray, expected):
    assert choose_size(sides, gray) == expected


def test_convert_image_one_pixel():
    out = convert_image(Image.new("RGB", (1, 1), (10, 20, 30)), 3, 16)
    assert out.shape == (3, 16, 16) and (out[:, 0, 0] == [10, 20, 30]).all()


def test_one_pixel_image_is_used(pool, tmp_path, encoder_file, unchanged):
    Image.new("RGB", (1, 1), (200, 10, 10)).save(pool / "dot.png")
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL + 1)
    assert r.exit_code == 0, r.output
    assert f"{N_POOL + 1} images in {pool} (" in r.output and "dot.png" in {x["path"] for x in rows(tmp_path / "s.csv")}


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _corrupt_png() -> bytes:
    b = bytearray(_png_bytes())
    i = b.index(b"IDAT") + 40
    b[i:i + 64] = bytes(64)  # zeroed compressed data: zlib or CRC error
    return bytes(b)


BAD_FILES = {
    "truncated.jpg": (lambda: _jpeg_bytes()[:600], "OSError: "),  # Pillow: "Truncated File Read"
    "truncated.png": (lambda: _png_bytes()[:500], "OSError: image file is truncated"),
    "corrupt.png": (_corrupt_png, "OSError: "),  # Pillow: "broken data stream ..."
    "text.jpg": (lambda: b"this is not a picture\n" * 10, "not an image file"),
    "zero.png": (lambda: b"", "empty file (0 bytes)"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_broken_file_skipped_or_fails(pool, tmp_path, encoder_file, unchanged, name):
    make, reason = BAD_FILES[name]
    (pool / name).write_bytes(make())
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL)
    assert r.exit_code == 0, r.output
    assert f"{N_POOL} images in {pool}, 1 unreadable files skipped" in r.output
    warn = [ln for ln in r.output.splitlines() if ln.startswith("WARNING: skipping")]
    assert len(warn) == 1 and warn[0].startswith(f"WARNING: skipping {pool / name}: ")
    assert reason in warn[0].split(f"{name}: ", 1)[1]
    r = select(pool, tmp_path / "t.csv", encoder_file, "-b", 3, "--on-bad-image", "fail")
    assert r.exit_code == 1 and error_line(r).startswith(f"Error: cannot read image {pool / name}: ")
    assert not (tmp_path / "t.csv").exists()


def test_decompression_bomb_guard(tmp_path):
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    Image.new("L", (8, 8)).save(tmp_path / "small.png")
    pool = load_folder(tmp_path, max_pixels=10_000)
    assert pool.ids == ["small.png"]
    assert "decompression-bomb" in pool.skipped[0][1]


def test_huge_image_refused_by_bomb_guard(pool, tmp_path, encoder_file, unchanged):
    Image.new("1", (10_000, 10_000)).save(pool / "huge.png")  # 100 Mpx in a 12 kB file
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 0, r.output
    assert f"{N_POOL} images in {pool}, 1 unreadable files skipped" in r.output
    assert "huge.png" in r.output and "decompression-bomb guard" in r.output
    r = select(pool, tmp_path / "t.csv", encoder_file, "-b", 3, "--on-bad-image", "fail")
    assert r.exit_code == 1 and f"cannot read image {pool / 'huge.png'}" in error_line(r)
    assert "decompression-bomb guard" in error_line(r)


def test_max_pixels_option(pool, tmp_path, encoder_file, unchanged):
    Image.new("L", (300, 300), 9).save(pool / "big.png")  # 90,000 px
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL + 1)
    assert r.exit_code == 0, r.output
    r = select(pool, tmp_path / "t.csv", encoder_file, "-b", N_POOL, "--max-pixels", 50_000)
    assert r.exit_code == 0, r.output
    assert "1 unreadable files skipped" in r.output and "300x300 px is over the 50,000-pixel limit" in r.output


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature, an IHDR claiming ``width`` x ``height`` (8-bit gray) and the start of an IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = struct.pack(">I", 2) + b"IDAT" + b"\x78\x9c" + struct.pack(">I", zlib.crc32(b"IDAT\x78\x9c"))
    return b"\x89PNG\r\n\x1a\n" + chunk + idat  # Pillow reads the size up to the first IDAT: no pixels needed


@pytest.mark.parametrize("side", [10_000, 20_000, 40_000])
def test_bomb_message_is_the_same_at_any_size(pool, tmp_path, encoder_file, side):
    (pool / "huge.png").write_bytes(_png_header(side, side))
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 0, r.output
    assert (f"huge.png: {side}x{side} px is over the 89,478,485-pixel limit (decompression-bomb guard; "
            "raise it with --max-pixels)") in r.output
