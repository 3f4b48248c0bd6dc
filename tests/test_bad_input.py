"""Bad input through the command line (issue 7): every case gets a one-line error naming the file or
value (exit status 1; 2 for a malformed option value), or a warning, a skip and a count in the summary.
Every test also checks that the pool folder is byte-for-byte unchanged afterwards.

Tests run as root in CI, where ``chmod 000`` does not stop reading: the real permission tests are
skipped there and the same failure is simulated in-process (marked ``simulated`` in the names).
"""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import selector.pool.workers as workers_mod
from selector.backbones import Encoder, EncoderConfig
from selector.checkpoint import save_checkpoint
from selector.cli import main
from selector.pool import load_folder
from selector.train import TrainConfig

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
N_POOL = 40


# ----------------------------------------------------------------------------- helpers


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256 of the bytes, or 'link -> target'} for everything under ``folder``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):  # does not follow links: loops are safe
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink():
                out[rel] = "link -> " + os.readlink(p)
            elif p.is_file():
                try:
                    out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
                except OSError as e:  # unreadable on purpose: record the mode instead
                    out[rel] = f"unreadable {e.errno} {oct(p.stat().st_mode)}"
    return out


def write_pool(folder: Path, n: int = N_POOL) -> Path:
    """``n`` real handwritten digits (scikit-learn) as 8x8 grayscale PNGs in ``folder``."""
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    d = load_digits()
    imgs = np.clip(np.rint(d.images[:n] * (255 / 16)), 0, 255).astype(np.uint8)
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    """An (untrained, seeded) RGB 16 px encoder checkpoint: any pool is read to fit it, so the tests
    exercise reading and selecting without paying for training."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "enc.pt"
    save_checkpoint(path, Encoder(EncoderConfig(in_channels=3, image_size=16)), TrainConfig(epochs=1), epoch=1, step=0)
    return path


@pytest.fixture
def pool(tmp_path) -> Path:
    return write_pool(tmp_path / "pool")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def select(pool, out, encoder, *extra):
    """``selector select`` with a fixed encoder and the random strategy, one decoding worker."""
    return run("select", "--pool", pool, "--out", out, "--encoder", encoder, "--strategy", "random",
               "--workers", 1, *extra)


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path, encoding="utf-8")))


def error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def unchanged():
    """Call with folders to watch; at teardown, asserts their files are byte-for-byte the same."""
    watched: list[tuple[Path, dict]] = []

    def watch(folder: Path) -> Path:
        watched.append((folder, snapshot(folder)))
        return folder

    yield watch
    for folder, before in watched:
        assert snapshot(folder) == before, f"files under {folder} changed"


# ----------------------------------------------------------------------------- the pool path


def test_pool_missing(tmp_path, encoder_file):
    r = select(tmp_path / "nope", tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 1 and error_line(r) == f"Error: pool {tmp_path / 'nope'} does not exist"


def test_pool_is_a_file(tmp_path, encoder_file, unchanged):
    f = tmp_path / "pool.jpg"
    Image.new("L", (8, 8)).save(f, "JPEG")
    unchanged(tmp_path)
    r = select(f, tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 1 and error_line(r) == f"Error: pool {f} is not a folder"


def test_pool_empty(tmp_path, encoder_file, unchanged):
    (tmp_path / "empty").mkdir()
    unchanged(tmp_path / "empty")
    r = select(tmp_path / "empty", tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 1
    assert f"no image files in pool folder {tmp_path / 'empty'} (the folder is empty" in error_line(r)


def test_pool_without_images(tmp_path, encoder_file, unchanged):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "notes.txt").write_text("hi")
    (d / "table.csv").write_text("a,b")
    unchanged(d)
    r = select(d, tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 1 and "no image files in pool folder" in error_line(r) and "2 other files" in r.output


def test_pool_where_nothing_decodes(tmp_path, encoder_file, unchanged):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "a.jpg").write_text("text")
    (d / "b.png").write_bytes(b"")
    unchanged(d)
    r = select(d, tmp_path / "s.csv", encoder_file, "-b", 1)
    assert r.exit_code == 1 and "none of the 2 image files" in error_line(r) and "a.jpg" in error_line(r)


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their mode; see the simulated test")
def test_unreadable_file_and_folder_permissions(pool, tmp_path, encoder_file):
    locked = pool / "000.png"
    locked.chmod(0)
    sub = pool / "private"
    sub.mkdir()
    Image.new("L", (8, 8)).save(sub / "x.png")
    sub.chmod(0)
    try:
        r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3)
        assert r.exit_code == 1 and f"cannot read folder {sub}" in error_line(r)
        sub.chmod(0o755)
        shutil.rmtree(sub)
        before = snapshot(pool)
        r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3)
        assert r.exit_code == 0, r.output
        assert "1 unreadable files skipped" in r.output and "000.png" in r.output and "Permission denied" in r.output
        assert snapshot(pool) == before
    finally:
        locked.chmod(0o644)
        if sub.exists():
            sub.chmod(0o755)


def test_unreadable_file_simulated(pool, tmp_path, encoder_file, monkeypatch, unchanged):
    """As root, a permission error is made to happen where the OS would raise it: reading the file
    (the decoding worker is forked after the patch, so it sees it)."""
    unchanged(pool)
    real = workers_mod.decode_file

    def denied(path, *a, **k):
        if path.name == "005.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(workers_mod, "decode_file", denied)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL - 1)
    assert r.exit_code == 0, r.output
    assert f"{N_POOL - 1} images in {pool}, 1 unreadable files skipped" in r.output
    assert "WARNING: skipping" in r.output and "005.png: PermissionError" in r.output
    assert "005.png" not in {x["path"] for x in rows(tmp_path / "s.csv")}
    r = select(pool, tmp_path / "t.csv", encoder_file, "-b", 3, "--on-bad-image", "fail")
    assert r.exit_code == 1 and error_line(r).startswith(f"Error: cannot read image {pool / '005.png'}: PermissionError")


def test_symlink_loops(pool, tmp_path, encoder_file, unchanged):
    (pool / "sub").mkdir()
    Image.new("L", (8, 8), 3).save(pool / "sub" / "in_sub.png")
    (pool / "sub" / "back_to_top").symlink_to(pool, target_is_directory=True)  # folder loop
    (pool / "self.png").symlink_to(pool / "self.png")  # a link to itself
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 0, r.output
    assert f"{N_POOL + 1} images in {pool}, 1 unreadable files skipped" in r.output
    assert "self.png" in r.output and "symbolic links" in r.output


def test_names_with_spaces_and_non_ascii(pool, tmp_path, encoder_file, unchanged):
    names = ["a b c.png", "é accent.png", "日本語/写真 1.png", "emoji 😀.jpg", "comma, quote\".png"]
    for i, name in enumerate(names):
        p = pool / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (10, 10), (20 * i, 5, 90)).save(p)
    unchanged(pool)
    n = N_POOL + len(names)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", n)  # budget equal to the pool: all of it
    assert r.exit_code == 0, r.output
    chosen = {x["path"] for x in rows(tmp_path / "s.csv")}
    assert set(names) <= chosen and len(chosen) == n
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("".join(x + "\n" for x in names[:3]), encoding="utf-8")
    r = select(pool, tmp_path / "t.csv", encoder_file, "-b", n - 3, "--labeled", labeled)
    assert r.exit_code == 0, r.output
    assert "3 images already labeled excluded" in r.output
    assert not set(names[:3]) & {x["path"] for x in rows(tmp_path / "t.csv")}


def test_duplicate_files_never_both_chosen(pool, tmp_path, encoder_file, unchanged):
    shutil.copyfile(pool / "000.png", pool / "copy_a.png")
    shutil.copyfile(pool / "000.png", pool / "zcopy_b.png")
    shutil.copyfile(pool / "007.png", pool / "007 again.png")
    unchanged(pool)
    n = N_POOL + 3
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL)  # every distinct image once
    assert r.exit_code == 0, r.output
    assert f"{n} images in {pool}, 3 duplicate files (byte-identical to another) not selectable" in r.output
    chosen = [x["path"] for x in rows(tmp_path / "s.csv")]
    digests = [hashlib.sha256((pool / c).read_bytes()).hexdigest() for c in chosen]
    assert len(set(digests)) == len(chosen) == N_POOL
    assert {"000.png", "007 again.png"} <= set(chosen)  # the first copy (sorted order) is the one kept
    r = select(pool, tmp_path / "t.csv", encoder_file, "-b", N_POOL + 1)
    assert r.exit_code == 1 and f"budget {N_POOL + 1} > {N_POOL} unlabeled images" in error_line(r)
    # A labeled copy makes every copy of that image not selectable.
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("zcopy_b.png\n", encoding="utf-8")
    r = select(pool, tmp_path / "u.csv", encoder_file, "-b", N_POOL - 1, "--labeled", labeled)
    assert r.exit_code == 0, r.output
    assert not {"000.png", "copy_a.png", "zcopy_b.png"} & {x["path"] for x in rows(tmp_path / "u.csv")}


def test_one_pixel_image_is_used(pool, tmp_path, encoder_file, unchanged):
    Image.new("RGB", (1, 1), (200, 10, 10)).save(pool / "dot.png")
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL + 1)
    assert r.exit_code == 0, r.output
    assert f"{N_POOL + 1} images in {pool} (" in r.output and "dot.png" in {x["path"] for x in rows(tmp_path / "s.csv")}


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
    assert f"{N_POOL + 5} images in {pool} (RGB, 16 px)" in r.output  # nothing skipped
    p = load_folder(pool, channels=3, image_size=16, workers=0)
    img = {k: p.images[p.ids.index(k)].astype(int) for k in
           ("animated.gif", "rotated.jpg", "deep16.png", "cmyk.jpg", "palette_transparent.png")}
    assert img["animated.gif"][0].mean() > 200 and img["animated.gif"][2].mean() < 40  # the first frame
    assert img["rotated.jpg"][2, :, :4].mean() > 200 and img["rotated.jpg"][0, :, :4].mean() < 60  # turned
    assert img["deep16.png"][0, 0, 0] < 30 and img["deep16.png"][0, -1, -1] > 225  # 16 bit scaled, not clipped
    assert img["cmyk.jpg"][0, :, :4].mean() > 200 and img["cmyk.jpg"][2, :, -4:].mean() > 200  # colours kept
    assert img["palette_transparent.png"].min() > 240  # transparent palette entry shows white, not green


def _hang_or_crash(monkeypatch, name: str, how: str):
    real = workers_mod.decode_file

    def decode(path, *a, **k):
        if path.name == name:
            if how == "hang":
                time.sleep(3600)
            os.kill(os.getpid(), signal.SIGKILL)  # dies mid-file, like a crashing decoder or the OOM killer
        return real(path, *a, **k)

    monkeypatch.setattr(workers_mod, "decode_file", decode)


@pytest.mark.parametrize("how,reason", [("hang", "decoding took longer than 1 s"),
                                        ("crash", "the decoder crashed")])
def test_decoder_that_hangs_or_crashes_does_not_stop_the_run(pool, tmp_path, encoder_file, monkeypatch, unchanged,
                                                             how, reason):
    """Simulated: the worker process is forked after the patch and hangs (or dies) on one file."""
    unchanged(pool)
    _hang_or_crash(monkeypatch, "017.png", how)
    t = time.monotonic()
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL - 1, "--decode-timeout", 1)
    assert time.monotonic() - t < 60
    assert r.exit_code == 0, r.output
    assert f"{N_POOL - 1} images in {pool}, 1 unreadable files skipped" in r.output
    assert "017.png" in r.output and reason in r.output
    # Every other file decoded exactly as in one process (sorted order kept across worker restarts).
    par = load_folder(pool, channels=3, image_size=16, workers=2, timeout_s=1)
    monkeypatch.undo()
    ref = load_folder(pool, channels=3, image_size=16, workers=0)
    keep = [i for i, k in enumerate(ref.ids) if k != "017.png"]
    assert par.ids == [ref.ids[i] for i in keep] and (par.images == ref.images[keep]).all()


# ----------------------------------------------------------------------------- budget


def user_cache() -> Path:
    """The default cache folder of this test (conftest points XDG_CACHE_HOME at a tmp dir)."""
    return Path(os.environ["XDG_CACHE_HOME"]) / "selector"


@pytest.mark.parametrize("bad,msg", [("0", "budget must be positive, got 0"), ("-5", "budget must be positive, got -5"),
                                     ("ten", "budget must be a whole number, got 'ten'"),
                                     ("2.5", "budget must be a whole number, got '2.5'")])
def test_budget_not_a_positive_number(pool, tmp_path, encoder_file, unchanged, bad, msg):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", bad)
    assert r.exit_code == 2 and msg in error_line(r)  # a malformed option: click's usage error status
    assert not user_cache().exists()  # refused before anything ran


def test_budget_larger_than_pool(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL + 1)
    assert r.exit_code == 1
    assert error_line(r) == (f"Error: budget {N_POOL + 1} > {N_POOL} unlabeled images in {pool} "
                             "(pass --allow-smaller to take them all)")
    assert not (tmp_path / "s.csv").exists()
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL + 1, "--allow-smaller")
    assert r.exit_code == 0, r.output
    assert f"WARNING: budget {N_POOL + 1} > {N_POOL} unlabeled images" in r.output
    assert len(rows(tmp_path / "s.csv")) == N_POOL


def test_budget_equal_to_pool(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL)
    assert r.exit_code == 0, r.output
    assert sorted(x["path"] for x in rows(tmp_path / "s.csv")) == sorted(p.name for p in pool.iterdir())


# ----------------------------------------------------------------------------- --labeled


def test_labeled_file_missing(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3, "--labeled", tmp_path / "nope.csv")
    assert r.exit_code == 1 and error_line(r) == f"Error: labels file {tmp_path / 'nope.csv'} does not exist"


@pytest.mark.parametrize("suffix", [".csv", ".txt"])
def test_labeled_file_empty(pool, tmp_path, encoder_file, unchanged, suffix):
    unchanged(pool)
    lab = tmp_path / f"labeled{suffix}"
    lab.write_text("")
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3, "--labeled", lab)
    assert r.exit_code == 0, r.output
    assert f"WARNING: labeled file {lab} lists no images; nothing is excluded" in r.output
    assert "0 images already labeled excluded" in r.output


def test_labeled_names_not_in_pool(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    lab = tmp_path / "labeled.txt"
    lab.write_text("000.png\n001.png\nelsewhere/x.png\ngone.png\n", encoding="utf-8")
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", N_POOL - 2, "--labeled", lab)
    assert r.exit_code == 0, r.output
    assert f"WARNING: 2 entries of {lab} name no item of the pool; ignored" in r.output
    assert f"2 images already labeled excluded; 2 entries of {lab} are not in the pool" in r.output
    assert not {"000.png", "001.png"} & {x["path"] for x in rows(tmp_path / "s.csv")}


def test_whole_pool_labeled(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    lab = tmp_path / "labeled.txt"
    lab.write_text("".join(f"{i:03d}.png\n" for i in range(N_POOL)), encoding="utf-8")
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 1, "--labeled", lab, "--allow-smaller")
    assert r.exit_code == 1 and error_line(r) == f"Error: every image in {pool} is already labeled; nothing to choose"


# ----------------------------------------------------------------------------- --encoder


def test_encoder_missing(pool, tmp_path, unchanged):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", tmp_path / "none.pt", "-b", 3)
    assert r.exit_code == 1 and error_line(r) == f"Error: encoder file {tmp_path / 'none.pt'} does not exist"


@pytest.mark.parametrize("kind", ["garbage", "truncated", "not-a-checkpoint"])
def test_encoder_corrupt(pool, tmp_path, encoder_file, unchanged, kind):
    unchanged(pool)
    bad = tmp_path / "bad.pt"
    if kind == "garbage":
        bad.write_bytes(os.urandom(2000))
    elif kind == "truncated":
        bad.write_bytes(encoder_file.read_bytes()[:5000])
    else:
        torch.save({"weights": torch.zeros(3)}, bad)
    r = select(pool, tmp_path / "s.csv", bad, "-b", 3)
    assert r.exit_code == 1
    line = error_line(r)
    assert str(bad) in line and ("cannot load encoder" in line or "is not a selector encoder checkpoint" in line)


def test_encoder_wrong_architecture(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    state = torch.load(encoder_file, weights_only=True)
    state["config"]["arch"] = "resnet18"  # the weights are resnet-small's
    bad = tmp_path / "wrong_arch.pt"
    torch.save(state, bad)
    r = select(pool, tmp_path / "s.csv", bad, "-b", 3)
    assert r.exit_code == 1 and f"{bad}: weights do not fit the stored architecture" in error_line(r)


def test_encoder_wrong_input_size(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    r = select(pool, tmp_path / "s.csv", encoder_file, "-b", 3, "--image-size", 32)
    assert r.exit_code == 1
    assert error_line(r) == (f"Error: encoder {encoder_file} expects 16 px images, but --image-size 32 was given; "
                             "leave --image-size out")
    state = torch.load(encoder_file, weights_only=True)
    state["config"]["image_size"] = 32  # claims 32 px, but the stem's weights are for a 16 px stride-1 stem...
    state["config"]["in_channels"] = 1  # ...and for three channels
    bad = tmp_path / "wrong_input.pt"
    torch.save(state, bad)
    r = select(pool, tmp_path / "s.csv", bad, "-b", 3)
    assert r.exit_code == 1 and f"{bad}: weights do not fit the stored architecture" in error_line(r)


class _Payload:
    """A pickle that runs code when loaded (it would create ``marker``)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_encoder_pickle_with_code_is_refused(pool, tmp_path, unchanged):
    unchanged(pool)
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    torch.save({"format": "selector-encoder", "version": 1, "x": _Payload(marker)}, bad)
    r = select(pool, tmp_path / "s.csv", bad, "-b", 3)
    assert r.exit_code == 1 and error_line(r) == (f"Error: cannot load encoder {bad}: it holds Python objects other "
                                                  "than weights; refused (only weights are ever loaded)")
    assert not marker.exists()  # weights_only loading never ran the payload


# ----------------------------------------------------------------------------- --out


def test_output_exists_without_force(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    out = tmp_path / "s.csv"
    out.write_text("earlier selection\n")
    r = select(pool, out, encoder_file, "-b", 3)
    assert r.exit_code == 1 and error_line(r) == f"Error: output {out} exists; pass --force to overwrite it"
    assert out.read_text() == "earlier selection\n"
    r = select(pool, out, encoder_file, "-b", 3, "--force")
    assert r.exit_code == 0 and len(rows(out)) == 3


@pytest.mark.parametrize("case", ["folder", "suffix", "no-parent"])
def test_output_refused_before_any_work(pool, tmp_path, encoder_file, unchanged, case):
    unchanged(pool)
    out = {"folder": tmp_path, "suffix": tmp_path / "s.pdf", "no-parent": tmp_path / "missing" / "s.csv"}[case]
    msg = {"folder": f"output {tmp_path} is a folder", "suffix": "cannot tell the export format",
           "no-parent": f"output folder {tmp_path / 'missing'} does not exist"}[case]
    r = select(pool, out, encoder_file, "-b", 3)
    assert r.exit_code == 1 and msg in error_line(r)
    assert not user_cache().exists()


@pytest.mark.skipif(IS_ROOT, reason="root may write anywhere; see the simulated test")
def test_output_folder_not_writable(pool, tmp_path, encoder_file, unchanged):
    unchanged(pool)
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        r = select(pool, d / "s.csv", encoder_file, "-b", 3)
        assert r.exit_code == 1 and f"output folder {d} is not writable: Permission denied" in error_line(r)
    finally:
        d.chmod(0o755)


def test_output_folder_not_writable_simulated(pool, tmp_path, encoder_file, unchanged, monkeypatch):
    """The OS refuses to create any file in the output folder (as it would for a non-root user)."""
    unchanged(pool)
    d = tmp_path / "ro"
    d.mkdir()
    real = tempfile.mkstemp

    def refuse(*a, dir=None, **k):
        if dir is not None and Path(dir) == d:
            raise PermissionError(errno.EACCES, "Permission denied", str(d))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    r = select(pool, d / "s.csv", encoder_file, "-b", 3)
    assert r.exit_code == 1 and error_line(r) == f"Error: output folder {d} is not writable: Permission denied"
    assert list(d.iterdir()) == []


@pytest.mark.parametrize("suffix", [".csv", ".json"])
@pytest.mark.parametrize("existing", [False, True])
def test_disk_full_while_writing_leaves_no_half_file(pool, tmp_path, encoder_file, unchanged, monkeypatch, suffix,
                                                    existing):
    """Simulated disk full: the data reaches the temporary file, then the OS reports ENOSPC when it is
    flushed to disk (fsync), for files in the output folder only (caches elsewhere still work)."""
    unchanged(pool)
    d = tmp_path / "out"
    d.mkdir()
    out = d / f"s{suffix}"
    if existing:
        out.write_text("earlier selection\n")
    real = os.fsync

    def full(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).parent == d:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file an fd is")
    monkeypatch.setattr(os, "fsync", full)
    r = select(pool, out, encoder_file, "-b", 5, "--cache-dir", tmp_path / "cache", *(["--force"] if existing else []))
    assert r.exit_code == 1
    assert error_line(r) == f"Error: cannot write {out}: No space left on device (nothing was written)"
    assert sorted(p.name for p in d.iterdir()) == ([out.name] if existing else [])  # no temp file left
    if existing:
        assert out.read_text() == "earlier selection\n"
