"""Labeled image datasets for the evaluation: ``(x uint8 images, y int64 labels, name)``.

* :func:`digits`: scikit-learn's ``load_digits`` (1,797 8x8 images; ships with scikit-learn).
* :func:`mnist10k`, :func:`notmnist10k`: 10,000 28x28 images from ``shared/data/*.npz``.
* :func:`cifar10`: CIFAR-10 (Krizhevsky, 2009) read from the JPEG tarball
  ``cifar10-jpeg.tar.gz`` (``cifar10/{train,test}/<class>/NNNN.jpg``) without extracting it,
  optionally cached as ``.npz``.

The default data folder is ``<repo>/../shared/data`` (found relative to this file); every loader
also takes an explicit path.
"""
from __future__ import annotations

import logging
import os
import tarfile
from io import BytesIO
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: CIFAR-10 class names in label order (= sorted folder names).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def default_data_dir() -> Path:
    """``<repo>/../shared/data``, where the project keeps its real data (may not exist)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path}; pass its path explicitly "
                                f"(default folder: {default_data_dir()})")
    return path


def _load_npz(path, default_name: str, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    p = _require(Path(path) if path is not None else default_data_dir() / default_name, default_name)
    with np.load(p, allow_pickle=False) as z:
        if "x" not in z or "y" not in z:
            raise ValueError(f"{p} must hold arrays 'x' and 'y', found {sorted(z.files)}")
        x = np.asarray(z["x"])
        y = np.asarray(z["y"]).astype(np.int64)
    if x.dtype != np.uint8 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{p}: expected uint8 images and one label each, got x {x.dtype} {x.shape}, "
                         f"y {y.shape}")
    return x, y, name


def mnist10k(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """10,000 MNIST digits: x (10000, 28, 28) uint8, y (10000,) int64 in 0..9 (grouped by class)."""
    return _load_npz(path, "mnist10k.npz", "mnist10k")


def notmnist10k(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """10,000 notMNIST glyphs A..J: x (10000, 28, 28) uint8, y (10000,) int64 in 0..9."""
    return _load_npz(path, "notmnist10k.npz", "notmnist10k")


def digits() -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's handwritten digits: x (1797, 8, 8) uint8 (0..16 scaled to 0..255), y int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return x, d.target.astype(np.int64), "digits"


def _read_cifar_jpegs(tar: Path, split: str, n_per_class: int | None) -> tuple[list[str], list[bytes], list[int]]:
    """One streaming pass over the gzip tarball: (names, jpeg bytes, labels) of the members
    ``cifar10/<split>/<class>/*.jpg``, per class the first ``n_per_class`` in sorted name order
    (all if None), classes in :data:`CIFAR10_CLASSES` order."""
    import heapq

    keep: dict[str, list] = {}  # class -> heap of (negated name key, name, bytes) when bounded
    with tarfile.open(tar, "r|gz") as tf:  # stream: no index pass, no seeking
        for m in tf:
            parts = m.name.split("/")
            if not (m.isfile() and len(parts) == 4 and parts[1] == split and parts[3].lower().endswith(".jpg")):
                continue
            cname = parts[2]
            if cname not in CIFAR10_CLASSES:
                raise ValueError(f"unexpected CIFAR-10 class folder {cname!r} in {m.name}")
            data = tf.extractfile(m).read()
            heap = keep.setdefault(cname, [])
            if n_per_class is None:
                heap.append((None, m.name, data))
            else:
                key = tuple(-ord(ch) for ch in m.name) + (1,)  # max-heap on the name
                if len(heap) < n_per_class:
                    heapq.heappush(heap, (key, m.name, data))
                elif m.name < heap[0][1]:
                    heapq.heapreplace(heap, (key, m.name, data))
    if not keep:
        raise ValueError(f"no cifar10/{split}/<class>/*.jpg members in {tar}")
    names, blobs, labels = [], [], []
    for cname in sorted(keep, key=CIFAR10_CLASSES.index):
        items = sorted(keep[cname], key=lambda t: t[1])
        if n_per_class is not None and len(items) < n_per_class:
            raise ValueError(f"class {cname} has {len(items)} {split} images, asked for {n_per_class}")
        for _, name, data in items:
            names.append(name)
            blobs.append(data)
            labels.append(CIFAR10_CLASSES.index(cname))
    return names, blobs, labels


def cifar10(split: str = "train", n_per_class: int | None = None, tar_path: str | os.PathLike | None = None,
            cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """CIFAR-10 from the JPEG tarball, decoded with PIL straight from the archive.

    Args:
        split: "train" (5,000 per class) or "test" (1,000 per class).
        n_per_class: keep the first n images of each class in sorted file-name order (None: all).
        tar_path: the ``cifar10-jpeg.tar.gz``; default ``<repo>/../shared/data/cifar10-jpeg.tar.gz``.
        cache_dir: if given, the decoded arrays are stored there as
            ``cifar10_<split>_<n|all>.npz`` and read from there next time.
    Returns:
        x (n, 32, 32, 3) uint8 RGB, y (n,) int64 (labels in :data:`CIFAR10_CLASSES` order, grouped
        by class), name (``"cifar10-train"``, or ``"cifar10-train-100pc"`` with n_per_class=100).

    The images are lossy JPEG re-encodings of CIFAR-10, so pixels differ slightly from the binary
    release; compare strategies side by side on it rather than against published numbers.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if n_per_class is not None and int(n_per_class) <= 0:
        raise ValueError(f"n_per_class must be positive, got {n_per_class}")
    n_per_class = None if n_per_class is None else int(n_per_class)
    name = f"cifar10-{split}" + ("" if n_per_class is None else f"-{n_per_class}pc")
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"cifar10_{split}_{'all' if n_per_class is None else n_per_class}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                log.info("read %s from cache %s", name, cache)
                return np.asarray(z["x"]), np.asarray(z["y"]).astype(np.int64), name
    tar = _require(Path(tar_path) if tar_path is not None else default_data_dir() / "cifar10-jpeg.tar.gz",
                   "cifar10-jpeg.tar.gz")
    from PIL import Image

    names, blobs, labels = _read_cifar_jpegs(tar, split, n_per_class)
    x = np.empty((len(blobs), 32, 32, 3), dtype=np.uint8)
    for i, data in enumerate(blobs):
        with Image.open(BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if arr.shape != (32, 32, 3):
            raise ValueError(f"{names[i]}: expected a 32x32 RGB image, got {arr.shape}")
        x[i] = arr
    y = np.array(labels, dtype=np.int64)
    log.info("decoded %d %s images from %s", len(y), split, tar)
    if cache is not None:
        from selector.atomic import atomic_write

        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(cache, "wb") as f:
            np.savez_compressed(f, x=x, y=y)
    return x, y, name


#: Dataset name -> loader returning (x, y, name).
DATASETS = {
    "digits": digits,
    "mnist10k": mnist10k,
    "notmnist10k": notmnist10k,
    "cifar10": cifar10,
}


def load_dataset(name: str, **kwargs) -> tuple[np.ndarray, np.ndarray, str]:
    """Load a dataset of :data:`DATASETS` by name, passing keyword arguments to its loader."""
    try:
        fn = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(sorted(DATASETS))}") from None
    return fn(**kwargs)
