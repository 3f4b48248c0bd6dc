"""Tests of selector.eval.datasets: digits always; MNIST/notMNIST/CIFAR-10 when the shared data exists."""
from __future__ import annotations

import numpy as np
import pytest
from selector.eval.datasets import (
    CIFAR10_CLASSES,
    cifar10,
    default_data_dir,
    digits,
    load_dataset,
    mnist10k,
    notmnist10k,
)

from tests.conftest import SHARED_DATA

DATA = SHARED_DATA


def test_default_data_dir_is_beside_the_repo():
    assert default_data_dir() == DATA


def test_digits():
    x, y, name = digits()
    assert name == "digits" and x.shape == (1797, 8, 8) and x.dtype == np.uint8
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert x.min() == 0 and x.max() == 255
    from sklearn.datasets import load_digits

    raw = load_digits().images
    np.testing.assert_array_equal(x, np.rint(raw * 255 / 16).astype(np.uint8))
    assert load_dataset("digits")[2] == "digits"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnist10k.npz not found"):
        mnist10k(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="cifar10-jpeg.tar.gz not found"):
        cifar10(tar_path=tmp_path / "nope.tar.gz")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet")


@pytest.mark.skipif(not (DATA / "mnist10k.npz").is_file(), reason="shared data absent")
def test_mnist10k():
    x, y, name = mnist10k()
    assert name == "mnist10k" and x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


@pytest.mark.skipif(not (DATA / "notmnist10k.npz").is_file(), reason="shared data absent")
def test_notmnist10k():
    x, y, name = notmnist10k()
    assert name == "notmnist10k" and x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * 10


@pytest.mark.skipif(not (DATA / "cifar10-jpeg.tar.gz").is_file(), reason="shared data absent")
def test_cifar10_few_per_class_and_cache(tmp_path):
    x, y, name = cifar10("test", n_per_class=2, cache_dir=tmp_path)
    assert name == "cifar10-test-2pc"
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8
    assert y.tolist() == [c for c in range(10) for _ in range(2)]
    assert len(CIFAR10_CLASSES) == 10
    # real photographs: not constant, plausible mean brightness
    assert x.std() > 20 and 60 < x.mean() < 200
    # the first image of each class is 0000.jpg: decode it independently from the archive
    import tarfile
    from io import BytesIO

    from PIL import Image

    with tarfile.open(DATA / "cifar10-jpeg.tar.gz", "r|gz") as tf:
        for m in tf:
            if m.name == "cifar10/test/bird/0000.jpg":
                ref = np.asarray(Image.open(BytesIO(tf.extractfile(m).read())).convert("RGB"))
                break
    np.testing.assert_array_equal(x[2 * CIFAR10_CLASSES.index("bird")], ref)
    cache = tmp_path / "cifar10_test_2.npz"
    assert cache.is_file()
    x2, y2, _ = cifar10("test", n_per_class=2, cache_dir=tmp_path, tar_path=tmp_path / "absent.tar.gz")
    np.testing.assert_array_equal(x, x2)   # served from the cache, the tarball is not opened
    np.testing.assert_array_equal(y, y2)
