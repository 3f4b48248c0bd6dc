"""Shared fixtures: small real pools written from scikit-learn's digits (no network)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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


@pytest.fixture
def digits_pool(tmp_path) -> Path:
    """A folder of 60 real handwritten digits (8x8 grayscale PNG)."""
    return write_digits(tmp_path / "pool", 60)


@pytest.fixture(scope="session")
def digits_images() -> np.ndarray:
    """(48, 1, 16, 16) uint8 digits, as the pool reader would give them."""
    from sklearn.datasets import load_digits

    from selector.pool import resize_images

    x = np.clip(np.rint(load_digits().images[:48] * (255 / 16)), 0, 255).astype(np.uint8)[:, None]
    return resize_images(x, 16)


@pytest.fixture(autouse=True)
def _user_cache_in_tmp(tmp_path_factory, monkeypatch):
    """No test writes into the real home: the default cache folder ($XDG_CACHE_HOME/selector) is a tmp dir."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))


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
