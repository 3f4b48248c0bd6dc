"""Pool reading: every listed format and mode, nested folders, stable order, npz pools, bad files."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selector.pool import (PoolError, choose_size, convert_image, images_from_array, list_image_files, load_folder,
                           load_npz, load_pool, write_demo_pool)


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


def test_stable_order_and_hidden_files_skipped(tmp_path):
    for name in ["b/2.png", "a/10.png", "a/9.png", "C.png", ".hidden.png", ".cache/x.png", "notes.txt"]:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".png"):
            Image.new("L", (8, 8), 7).save(p)
        else:
            p.write_text("hello")
    assert list_image_files(tmp_path) == ["C.png", "a/10.png", "a/9.png", "b/2.png"]
    assert load_folder(tmp_path).ids == list_image_files(tmp_path)


def test_symlink_loop_terminates(tmp_path):
    (tmp_path / "d").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "d" / "x.png")
    (tmp_path / "d" / "loop").symlink_to(tmp_path, target_is_directory=True)
    files = list_image_files(tmp_path)
    assert files == ["d/x.png"]


def test_digest_is_file_content_hash(tmp_path):
    Image.new("RGB", (10, 10), (1, 2, 3)).save(tmp_path / "x.png")
    pool = load_folder(tmp_path)
    assert pool.digests[0] == hashlib.blake2b((tmp_path / "x.png").read_bytes(), digest_size=16).hexdigest()
    key = pool.key
    Image.new("RGB", (10, 10), (9, 9, 9)).save(tmp_path / "x.png")
    assert load_folder(tmp_path).key != key


def test_bad_files_skipped_or_fail(tmp_path):
    Image.new("L", (8, 8), 100).save(tmp_path / "ok.png")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    good = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])
    pool = load_folder(tmp_path)
    assert pool.ids == ["ok.png"]
    assert sorted(p for p, _ in pool.skipped) == ["empty.png", "text.jpg", "trunc.png"]
    with pytest.raises(PoolError, match="empty.png"):
        load_folder(tmp_path, on_bad="fail")


def test_pool_errors_name_the_path(tmp_path):
    with pytest.raises(PoolError, match="does not exist"):
        load_pool(tmp_path / "missing")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(PoolError, match="not a folder"):
        load_folder(tmp_path / "f.txt")
    with pytest.raises(PoolError, match="no image files"):
        load_folder(tmp_path)


def test_decompression_bomb_guard(tmp_path):
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    Image.new("L", (8, 8)).save(tmp_path / "small.png")
    pool = load_folder(tmp_path, max_pixels=10_000)
    assert pool.ids == ["small.png"]
    assert "decompression-bomb" in pool.skipped[0][1]


@pytest.mark.parametrize("sides,gray,expected", [([8, 8], True, 16), ([28] * 5, True, 28), ([32] * 3, False, 32),
                                                 ([32] * 3, True, 28), ([40], False, 32), ([500, 300], False, 64)])
def test_choose_size(sides, gray, expected):
    assert choose_size(sides, gray) == expected


def test_convert_image_one_pixel():
    out = convert_image(Image.new("RGB", (1, 1), (10, 20, 30)), 3, 16)
    assert out.shape == (3, 16, 16) and (out[:, 0, 0] == [10, 20, 30]).all()


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 28, 28, 1), (5, 28, 28, 3), (5, 3, 28, 28), (5, 28, 28, 4)])
def test_images_from_array_layouts(shape):
    x = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    out = images_from_array(x)
    c = 1 if (len(shape) == 3 or 1 in shape[1:]) else 3
    assert out.shape == (5, c, 28, 28) and out.dtype == np.uint8


def test_images_from_float_array_scaled():
    x = np.full((2, 8, 8), 0.5, dtype=np.float32)
    assert (images_from_array(x) == 128).all()


def test_npz_pool(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    y = np.arange(12) % 3
    np.savez(tmp_path / "p.npz", x=x, y=y)
    pool = load_pool(tmp_path / "p.npz")
    assert pool.images.shape == (12, 1, 28, 28) and (pool.images[:, 0] == x).all()
    assert pool.ids[0] == "x[00]" and pool.ids[-1] == "x[11]"
    assert (pool.labels == y).all()
    rgb = load_npz(tmp_path / "p.npz", channels=3, image_size=32)
    assert rgb.images.shape == (12, 3, 32, 32)
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(PoolError, match="no array 'x'"):
        load_pool(tmp_path / "bad.npz")


def test_demo_pool(tmp_path):
    n = write_demo_pool(tmp_path / "demo")
    assert n == 1797
    pool = load_folder(tmp_path / "demo")
    assert len(pool) == 1797 and pool.channels == 1 and pool.size == 16
    assert {p.split("/")[0] for p in pool.ids} == {f"digit_{d}" for d in range(10)}
