"""The benchmark datasets as folders of image files, read by the product exactly as ``selector select --pool``
reads a user's folder: photos at their own sizes (JPEG), glyphs as PNG files.

* photos: Caltech-101 (102 classes, a natural long tail, short side up to 256 px), Natural Images (8 classes,
  mixed sources and sizes), EuroSAT RGB (10 classes, 64 px satellite chips), CIFAR-10 (10 classes, 32 px;
  the first 1,000 training images per class);
* grayscale: MNIST-10k, notMNIST-10k (28 px glyphs), scikit-learn's digits (8 px);
* grayscale photos: Caltech-101, Natural Images and CIFAR-10 converted to one channel (JPEG), so that a rule
  about grayscale pools is decided on photos too, not on glyphs alone.

:func:`dataset_folder` writes a dataset once under ``<cache>/folders/<name>/<class>/<file>`` (the class folder
is the true label; the product never reads it) and returns its files and labels; :func:`pool_folder` makes the
folder of one pool shape (hard links to those files, so the embedding cache, keyed by content, is shared by
every shape of a dataset). Everything is written to a temporary folder first and renamed when complete.
"""
from __future__ import annotations

import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PHOTOS = ("caltech101", "natural_images", "eurosat", "cifar10")
GLYPHS = ("mnist10k", "notmnist10k", "digits")
GRAY_PHOTOS = ("caltech101_gray", "natural_images_gray", "cifar10_gray")
DATASETS = PHOTOS + GLYPHS + GRAY_PHOTOS

#: ``full``: the dataset (at most :data:`FULL_MAX` images, a stratified sample above); ``small``: 200 per class
#: (100 for digits; Caltech-101: the smallest class's 12 per class, a balanced subset); ``lt100``: a long tail of
#: ratio 100 (not for Caltech-101, whose full pool is long-tailed already).
SHAPES = ("full", "small", "lt100")
FULL_MAX = 5_000

_ARCHIVES = {"caltech101": "caltech101-jpeg.tar.gz", "natural_images": "natural_images-jpeg.tar.gz",
             "eurosat": "eurosat-jpeg.tar.gz", "cifar10": "cifar10-jpeg.tar.gz"}


@dataclass(frozen=True)
class FolderDataset:
    """A dataset written as a folder: ``root/<files[i]>`` has label ``labels[i]`` (index into ``classes``)."""

    name: str
    root: Path
    files: list[str]
    labels: np.ndarray
    classes: list[str]

    @property
    def kind(self) -> str:
        return "photos" if self.name in PHOTOS else "glyphs" if self.name in GLYPHS else "grayscale photos"


def _data_dir(data_dir) -> Path:
    from selector.eval.datasets import default_data_dir

    return Path(data_dir) if data_dir else default_data_dir()


def _build(target: Path, write) -> None:
    """Run ``write(tmp_folder)`` and rename the folder to ``target`` (so a folder that exists is complete)."""
    if target.is_dir():
        return
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract(archive: Path, out: Path, keep) -> None:
    """The members of ``archive`` for which ``keep(parts)`` gives a relative path, written there."""
    with tarfile.open(archive, "r|gz") as tf:
        for m in tf:
            if not m.isfile():
                continue
            rel = keep(m.name.split("/"))
            if rel is None:
                continue
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tf.extractfile(m) as src, open(dest, "wb") as f:
                shutil.copyfileobj(src, f)


def _write_photos(name: str, data_dir: Path, out: Path) -> None:
    archive = data_dir / _ARCHIVES[name]
    if not archive.is_file():
        raise FileNotFoundError(f"{archive} not found (the shared data folder, see its README)")
    if name == "cifar10":  # cifar10/train/<class>/NNNN.jpg: the first 1,000 per class in name order
        _extract(archive, out, lambda p: "/".join(p[2:]) if len(p) == 4 and p[1] == "train" else None)
        for cls in out.iterdir():
            for f in sorted(cls.iterdir())[1000:]:
                f.unlink()
    else:  # <name>/<class>/<file>
        _extract(archive, out, lambda p: "/".join(p[1:]) if len(p) == 3 and p[2].lower().endswith(".jpg")
                 else None)


def _write_gray(base: FolderDataset, out: Path) -> None:
    from PIL import Image

    for rel in base.files:
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(base.root / rel) as img:
            img.convert("L").save(dest, quality=90)


def _write_glyphs(name: str, data_dir: Path, out: Path) -> None:
    from PIL import Image
    from selector.eval.datasets import digits, load_dataset

    if name == "digits":
        x, y, _ = digits()
    else:
        x, y, _ = load_dataset(name, path=data_dir / f"{name}.npz")
    for i, (img, label) in enumerate(zip(x, y)):
        folder = out / f"class_{int(label)}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:05d}.png")


def dataset_folder(name: str, cache_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> FolderDataset:
    """``name`` (one of :data:`DATASETS`) as a folder under ``<cache_dir>/folders`` (written on first use)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    root = Path(cache_dir) / "folders" / name
    data = _data_dir(data_dir)
    if name in PHOTOS:
        _build(root, lambda out: _write_photos(name, data, out))
    elif name in GLYPHS:
        _build(root, lambda out: _write_glyphs(name, data, out))
    else:
        base = dataset_folder(name[: -len("_gray")], cache_dir, data_dir)
        _build(root, lambda out: _write_gray(base, out))
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files, labels = [], []
    for c, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            files.append(f"{cls}/{f.name}")
            labels.append(c)
    return FolderDataset(name, root, files, np.asarray(labels, dtype=np.int64), classes)


def shape_rows(ds: FolderDataset, shape: str, seed: int = 0) -> np.ndarray:
    """Sorted indices into ``ds.files`` of the pool of ``shape`` (see :data:`SHAPES`).

    The ``small`` and ``lt100`` pools are drawn from the ``full`` pool, so one embedding of ``full`` serves all three.
    """
    from selector.eval.pools import balanced_pool, long_tail_pool

    rng = np.random.default_rng(seed + 1)
    y = ds.labels
    full = np.arange(len(y))
    if len(y) > FULL_MAX:
        per_class = np.bincount(y)
        take = np.floor(per_class * FULL_MAX / len(y)).astype(int)
        full = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=False)
                                       for c, k in enumerate(take)]))
    if shape == "full":
        return full
    y = y[full]
    if shape == "small":
        per = int(np.bincount(y).min()) if ds.name.startswith("caltech101") else 100 if ds.name == "digits" else 200
        return full[np.sort(balanced_pool(y, per, rng))]
    if shape == "lt100":
        if ds.name.startswith("caltech101"):
            raise ValueError("Caltech-101's full pool is its natural long tail; it has no lt100 shape")
        return full[np.sort(long_tail_pool(y, 100.0, rng))]
    raise ValueError(f"unknown pool shape {shape!r}; choose from {', '.join(SHAPES)}")


def pool_folder(ds: FolderDataset, shape: str, cache_dir: str | os.PathLike, seed: int = 0
                ) -> tuple[Path, list[str], np.ndarray]:
    """(folder, files, labels) of ``ds``'s pool of ``shape``: hard links (copies where links fail) to the
    dataset's files, under ``<cache_dir>/pools/<name>-<shape>``; files in the order the pool reader sorts them."""
    rows = shape_rows(ds, shape, seed)
    folder = Path(cache_dir) / "pools" / f"{ds.name}-{shape}"

    def write(out: Path) -> None:
        for i in rows:
            dest = out / ds.files[i]
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(ds.root / ds.files[i], dest)
            except OSError:
                shutil.copyfile(ds.root / ds.files[i], dest)

    _build(folder, write)
    files = [ds.files[i] for i in rows]
    order = np.argsort(files, kind="stable")  # the pool's ids are sorted relative paths
    return folder, [files[i] for i in order], ds.labels[rows][order]
