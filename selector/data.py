"""Pools of images: discover files, decode any mode to grayscale or RGB, resize, keep a stable order.

A :class:`Pool` is what every later step sees: ``images`` (n, C, S, S) uint8, ``ids`` (the relative
POSIX path of each image under the pool folder, sorted, so index i means the same file on every
run), a content digest per item (for the embedding cache and duplicate detection), and the files
that were skipped with the reason. The pool folder is only ever read.

Two sources:

* a folder, searched recursively for ``.jpg .jpeg .png .bmp .webp .gif .tif .tiff`` files (hidden
  files and folders, names starting with ``.``, are skipped, so a cache inside the pool is ignored);
* an ``.npz`` archive with an array ``x`` of images (n, H, W), (n, H, W, C) or (n, C, H, W), uint8
  or float in [0, 1], and an optional ``y`` of labels (kept for evaluation, never used to select).

Channels and size are chosen once per pool from a sample of it: grayscale (1 channel) when every
sampled image is single-channel, RGB (3) otherwise; the side S from the median short side
(16 px for tiny images, 28 for digit-like grayscale, 32 for CIFAR-like, 64 above). Every image is
then converted the same way: EXIF orientation applied, 16-bit scaled to 8-bit, transparency composited
on white, CMYK and palettes converted, the first frame of an animation, the shorter side resized to S
and the centre cropped to S x S.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SIZE_SAMPLE = 2000  # images inspected to choose channels and size
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own warning threshold; larger images are refused


class PoolError(ValueError):
    """A pool that cannot be read; the message names the path or value."""


@dataclass
class Pool:
    """Decoded images of a pool, in a stable order.

    Attributes:
        ids: n item ids: relative POSIX paths under ``root`` (folder pools) or ``x[i]`` (npz pools).
        images: (n, C, S, S) uint8 array, C in {1, 3}.
        digests: n hex content digests (of the file bytes, or of the array row for npz pools).
        root: the pool folder or npz file.
        labels: (n,) int64 labels from an npz ``y`` array, else None. Selection never reads them.
        skipped: (relative path, reason) for each file that could not be used.
    """

    ids: list[str]
    images: np.ndarray
    digests: list[str]
    root: Path
    labels: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        return int(self.images.shape[2])

    @property
    def key(self) -> str:
        """Digest of the pool's content and decoding (ids, file digests, channels, size)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.channels}x{self.size}\n".encode())
        for i, d in zip(self.ids, self.digests):
            h.update(i.encode("utf-8", "surrogateescape") + b"\0" + d.encode() + b"\n")
        return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Folder discovery


def list_image_files(root: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of image files under ``root``, recursively, sorted.

    Follows symbolic links to folders but never enters the same folder twice (no loop); skips hidden
    files and folders.
    """
    root = Path(root)
    if not root.exists():
        raise PoolError(f"pool {root} does not exist")
    if not root.is_dir():
        raise PoolError(f"pool {root} is not a folder")
    found: list[str] = []
    seen: set[tuple[int, int]] = set()

    def onerror(err: OSError) -> None:
        raise PoolError(f"cannot read folder {err.filename}: {err.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            found.append((rel_dir / name).as_posix())
    found.sort()
    return found


# ---------------------------------------------------------------------------------------------
# Decoding


def choose_size(short_sides: Sequence[int], grayscale: bool) -> int:
    """Encoder input side from the median short side of a pool's images (see module docstring)."""
    if len(short_sides) == 0:
        return 32
    m = float(np.median(short_sides))
    if m <= 16:
        return 16
    if grayscale and m <= 32:
        return 28
    if m <= 48:
        return 32
    return 64


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit int and float single-channel images to 8-bit 'L'."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I"):
        arr = arr / 257.0 if arr.max(initial=0) > 255 else arr
    elif img.mode == "F":
        arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "La", "PA", "RGBa") or "transparency" in img.info


def convert_image(img: Image.Image, channels: int, size: int) -> np.ndarray:
    """One PIL image -> (channels, size, size) uint8, as described in the module docstring."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _to_8bit_gray(img)
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba).convert("RGB")
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open image bytes, refusing decompression bombs (more than ``max_pixels`` pixels)."""
    img = Image.open(io.BytesIO(data))
    w, h = img.size
    if w * h > max_pixels:
        raise PoolError(f"{w}x{h} px is over the {max_pixels:,}-pixel limit (decompression-bomb guard)")
    if w < 1 or h < 1:
        raise PoolError(f"image has no pixels ({w}x{h})")
    return img


def decode_file(path: Path, channels: int, size: int, max_pixels: int = DEFAULT_MAX_PIXELS
                ) -> tuple[np.ndarray, str]:
    """Read, hash and decode one file -> ((channels, size, size) uint8, hex digest of the bytes)."""
    data = path.read_bytes()
    if not data:
        raise PoolError("empty file (0 bytes)")
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = _open(data, max_pixels)
        if img.format == "JPEG":
            img.draft("L" if channels == 1 else "RGB", (size * 2, size * 2))
        img.load()
        return convert_image(img, channels, size), digest


def _inspect(path: Path) -> tuple[str, int] | None:
    """(mode, short side) from the header, or None when unreadable."""
    try:
        with Image.open(path) as img:
            return img.mode, min(img.size)
    except Exception:  # noqa: BLE001 - any unreadable file is simply not counted here
        return None


def _evenly_spaced(items: Sequence[str], k: int) -> list[str]:
    if len(items) <= k:
        return list(items)
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in idx]


def load_folder(root: str | os.PathLike, *, channels: int | None = None, image_size: int | None = None,
                on_bad: str = "skip", max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False) -> Pool:
    """Read every image under ``root`` (see module docstring).

    Args:
        channels: 1 or 3 to force grayscale or RGB; None chooses from the pool.
        image_size: side S to force; None chooses from the pool.
        on_bad: "skip" (log a warning, count it in ``Pool.skipped``) or "fail" (raise PoolError naming
            the file) for files that cannot be decoded.
    """
    if on_bad not in ("skip", "fail"):
        raise PoolError(f"on_bad must be 'skip' or 'fail', got {on_bad!r}")
    root = Path(root)
    rel = list_image_files(root)
    if not rel:
        raise PoolError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root}")
    if channels is None or image_size is None:
        info = [m for m in (_inspect(root / r) for r in _evenly_spaced(rel, SIZE_SAMPLE)) if m is not None]
        gray = bool(info) and all(mode in GRAY_MODES for mode, _ in info)
        channels = channels or (1 if gray else 3)
        image_size = image_size or choose_size([s for _, s in info], channels == 1)
    if channels not in (1, 3):
        raise PoolError(f"channels must be 1 or 3, got {channels}")

    images = np.empty((len(rel), channels, image_size, image_size), dtype=np.uint8)
    ids: list[str] = []
    digests: list[str] = []
    skipped: list[tuple[str, str]] = []
    it: Iterable[str] = rel
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(rel, desc="reading pool", unit="img", leave=False)
    for r in it:
        try:
            arr, dig = decode_file(root / r, channels, image_size, max_pixels)
        except Exception as e:  # noqa: BLE001 - every decoder failure becomes a named skip or error
            reason = _reason(e)
            if on_bad == "fail":
                raise PoolError(f"cannot read image {root / r}: {reason}") from e
            log.warning("skipping %s: %s", root / r, reason)
            skipped.append((r, reason))
            continue
        images[len(ids)] = arr
        ids.append(r)
        digests.append(dig)
    if not ids:
        raise PoolError(f"none of the {len(rel)} image files in {root} could be read "
                        f"(first: {skipped[0][0]}: {skipped[0][1]})")
    images = images[: len(ids)] if len(ids) < len(rel) else images
    return Pool(ids=ids, images=images, digests=digests, root=root, skipped=skipped)


def _reason(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, Image.DecompressionBombWarning | Image.DecompressionBombError):
        return "too many pixels (decompression-bomb guard)"
    if isinstance(e, Image.UnidentifiedImageError):
        return "not an image file Pillow can identify"
    return f"{type(e).__name__}: {msg}" if not isinstance(e, PoolError) else msg


# ---------------------------------------------------------------------------------------------
# npz pools


def images_from_array(x: np.ndarray, where: str = "array") -> np.ndarray:
    """Images of any common layout -> (n, C, H, W) uint8 with C in {1, 3}."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)
    else:
        raise PoolError(f"{where}: images must have shape (n, H, W) or (n, H, W, C), got {x.shape}")
    if x.shape[1] == 4:
        x = x[:, :3]
    if x.shape[1] not in (1, 3):
        raise PoolError(f"{where}: expected 1, 3 or 4 channels, got shape {x.shape}")
    if x.dtype != np.uint8:
        xf = x.astype(np.float64)
        if not np.isfinite(xf).all():
            raise PoolError(f"{where}: images contain NaN or inf")
        scale = 255.0 if xf.max(initial=0) <= 1.0 else 1.0
        x = np.clip(np.rint(xf * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x)


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """(n, C, H, W) uint8 -> (n, C, size, size) uint8 by the same resize and centre crop as files."""
    if x.shape[2] == size and x.shape[3] == size:
        return x
    c = x.shape[1]
    out = np.empty((x.shape[0], c, size, size), dtype=np.uint8)
    for i in range(x.shape[0]):
        img = Image.fromarray(x[i, 0] if c == 1 else x[i].transpose(1, 2, 0))
        out[i] = convert_image(img, c, size)
    return out


def load_npz(path: str | os.PathLike, *, image_size: int | None = None, channels: int | None = None) -> Pool:
    """A pool from an ``.npz`` file with ``x`` (images) and optional ``y`` (labels).

    ``channels`` (1 or 3) converts the images when given (luminance or replicated gray)."""
    path = Path(path)
    if not path.is_file():
        raise PoolError(f"pool file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files:
                raise PoolError(f"{path}: no array 'x' (found {', '.join(z.files) or 'nothing'})")
            x = z["x"]
            y = z["y"].astype(np.int64) if "y" in z.files else None
    except PoolError:
        raise
    except Exception as e:  # noqa: BLE001
        raise PoolError(f"cannot read {path}: {_reason(e)}") from e
    x = images_from_array(x, str(path))
    if len(x) == 0:
        raise PoolError(f"{path}: the array 'x' holds no images")
    if y is not None and len(y) != len(x):
        raise PoolError(f"{path}: 'y' has {len(y)} labels for {len(x)} images")
    if channels == 3 and x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    elif channels == 1 and x.shape[1] == 3:
        lum = x.astype(np.float32).transpose(0, 2, 3, 1) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        x = np.clip(np.rint(lum), 0, 255).astype(np.uint8)[:, None]
    size = image_size or choose_size([min(x.shape[2:])], x.shape[1] == 1)
    x = resize_images(x, size)
    digests = [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in x]
    width = len(str(len(x) - 1))
    ids = [f"x[{i:0{width}d}]" for i in range(len(x))]
    return Pool(ids=ids, images=x, digests=digests, root=path, labels=y)


def load_pool(path: str | os.PathLike, **kw) -> Pool:
    """A folder of images or an ``.npz`` archive -> :class:`Pool` (keywords as in :func:`load_folder`)."""
    p = Path(path)
    if p.suffix.lower() == ".npz" and not p.is_dir():
        return load_npz(p, image_size=kw.get("image_size"), channels=kw.get("channels"))
    return load_folder(p, **kw)


# ---------------------------------------------------------------------------------------------
# The built-in demo pool


def write_demo_pool(folder: str | os.PathLike) -> int:
    """Write scikit-learn's digits (1,797 real 8x8 handwritten digits) as PNG files.

    Layout ``<folder>/digit_<d>/<nnnn>.png``. The folder names carry the true class for checking a
    selection by eye; the selector never reads them. Returns the number of files written.
    """
    from sklearn.datasets import load_digits

    folder = Path(folder)
    d = load_digits()
    imgs = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    for i, (img, y) in enumerate(zip(imgs, d.target)):
        sub = folder / f"digit_{y}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sub / f"{i:04d}.png")
    return len(imgs)
