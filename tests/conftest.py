"""Shared fixtures and helpers: small real pools written from scikit-learn's digits (no network), a seeded
untrained encoder, the command line through click's runner, and the process helpers of the tests that
start real runs.

Fixtures are found by name; the plain helpers are imported from here (``from tests.conftest import ...``).
"""
from __future__ import annotations

import csv
import hashlib
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
IS_LINUX_PROC = Path("/proc/self/stat").is_file()
N_POOL = 40  # images in the ``pool`` fixture


# ----------------------------------------------------------------------------- pools


def write_digits(folder: Path, n: int = 60) -> Path:
    """The first ``n`` sklearn digits as 8x8 PNGs in ``folder/digit_<d>/<i>.png``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.clip(np.rint(d.images[:n] * (255 / 16)), 0, 255).astype(np.uint8)
    for i, (img, y) in enumerate(zip(imgs, d.target[:n])):
        sub = folder / f"digit_{y}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sub / f"{i:04d}.png")
    return folder


def write_pool(folder: Path, n: int = N_POOL) -> Path:
    """``n`` real handwritten digits (scikit-learn) as 8x8 grayscale PNGs directly in ``folder``
    (``000.png``, ``001.png``, ...)."""
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    d = load_digits()
    imgs = np.clip(np.rint(d.images[:n] * (255 / 16)), 0, 255).astype(np.uint8)
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return folder


def write_photos(folder: Path, n: int = 8, size: int = 80) -> Path:
    """``n`` colour JPEGs of ``size`` x ``size + 20`` px in ``folder`` (the digits, enlarged and tinted): a pool
    the automatic backbone treats as photos."""
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    d = load_digits()
    for i in range(n):
        g = Image.fromarray(np.clip(np.rint(d.images[i] * (255 / 16)), 0, 255).astype(np.uint8))
        g = g.resize((size + 20, size), Image.Resampling.BICUBIC)
        tint = np.array([1.0, 0.6 + 0.05 * (i % 5), 0.3], dtype=np.float32)
        rgb = (np.asarray(g, dtype=np.float32)[..., None] * tint).astype(np.uint8)
        Image.fromarray(rgb).save(folder / f"{i:03d}.jpg", quality=90)
    return folder


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


@pytest.fixture
def digits_pool(tmp_path) -> Path:
    """A folder of 60 real handwritten digits (8x8 grayscale PNG) in class folders ``digit_<d>/``."""
    return write_digits(tmp_path / "pool", 60)


@pytest.fixture
def pool(tmp_path) -> Path:
    """A flat folder of ``N_POOL`` real handwritten digits, ``000.png`` to ``039.png``."""
    return write_pool(tmp_path / "pool")


@pytest.fixture(scope="session")
def digits_images() -> np.ndarray:
    """(48, 1, 16, 16) uint8 digits, as the pool reader would give them."""
    from sklearn.datasets import load_digits

    from selector.pool import resize_images

    x = np.clip(np.rint(load_digits().images[:48] * (255 / 16)), 0, 255).astype(np.uint8)[:, None]
    return resize_images(x, 16)


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


# ----------------------------------------------------------------------------- encoder, torch, cache


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    """An (untrained, seeded) RGB 16 px encoder checkpoint: any pool is read to fit it, so the tests
    exercise reading and selecting without paying for training."""
    import torch

    from selector.backbones import Encoder, EncoderConfig
    from selector.checkpoint import save_checkpoint
    from selector.train import TrainConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "enc.pt"
    save_checkpoint(path, Encoder(EncoderConfig(in_channels=3, image_size=16)), TrainConfig(epochs=1), epoch=1, step=0)
    return path


@pytest.fixture(scope="module")
def mobilenet_weights(tmp_path_factory) -> Path:
    """A torchvision:mobilenet_v3_small weights file (seeded random weights: a stand-in for a download)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small-test.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    return path


@pytest.fixture(autouse=True)
def _user_cache_in_tmp(tmp_path_factory, monkeypatch):
    """No test writes into the real home: the default cache folder ($XDG_CACHE_HOME/selector) is a tmp dir."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))


def user_cache() -> Path:
    """The default cache folder of the running test (``_user_cache_in_tmp`` points XDG_CACHE_HOME at a tmp dir)."""
    return Path(os.environ["XDG_CACHE_HOME"]) / "selector"


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test that trains or embeds in-process: on a loaded 2-core machine two
    threads wait on each other (measured: 6 tiny training steps 1.7 s on one thread, 46 s on two); the
    results are the same either way within a test."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- the command line in-process


def run(*args):
    """``selector ARGS...`` through click's test runner; exceptions propagate."""
    from click.testing import CliRunner

    from selector.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def select(pool, out, encoder, *extra):
    """``selector select`` with a fixed encoder and the random strategy, one decoding worker."""
    return run("select", "--pool", pool, "--out", out, "--encoder", encoder, "--strategy", "random",
               "--workers", 1, *extra)


def rows(path: Path) -> list[dict]:
    """The rows of a written CSV selection."""
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def error_line(result) -> str:
    """The one ``Error:`` line of a command's output (fails unless there is exactly one)."""
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def png_bytes(value: int = 128) -> bytes:
    """An 8x8 gray PNG filled with ``value``."""
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- real processes


def cli_cmd(*args) -> list[str]:
    """The argv of a real ``selector ARGS...`` process."""
    return [sys.executable, "-m", "selector.cli", *map(str, args)]


def subprocess_env() -> dict:
    """The environment of a child process: this checkout importable, one OpenMP thread."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d.name))
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_until(cond, timeout_s: float, step: float = 0.1) -> bool:
    """Poll ``cond`` until it is true or ``timeout_s`` passed; returns its last value."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def kill_all(workers: list[int], proc) -> None:
    """Test clean-up: SIGKILL any worker still alive and the run itself."""
    for w in workers:
        if alive(w):
            os.kill(w, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)
