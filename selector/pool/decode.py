"""Decoding one image file to the pool's channels and size, and choosing them for a pool.

Channels and size are chosen once per pool from a sample of it (:func:`choose_format`): grayscale
(1 channel) when every sampled image is single-channel, RGB (3) otherwise; the side S from the median
short side (16 px for tiny images, 28 for digit-like grayscale, 32 for CIFAR-like, 64 above). Every image
is then converted the same way (:func:`convert_image`): EXIF orientation applied, 16-bit scaled to 8-bit,
transparency composited on white, CMYK and palettes converted, the first frame of an animation, the
shorter side resized to S and the centre cropped to S x S. Images over ``max_pixels`` pixels are refused
(decompression-bomb guard).
"""
from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from .listing import open_regular
from .pool import PoolError, PoolFormat

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SIZE_SAMPLE = 2000  # images inspected to choose channels and size
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own warning threshold; larger images are refused


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
        raise PoolError(f"{w}x{h} px is over the {max_pixels:,}-pixel limit (decompression-bomb guard; "
                        "raise it with --max-pixels)")
    if w < 1 or h < 1:
        raise PoolError(f"image has no pixels ({w}x{h})")
    return img


def decode_file(path: Path, channels: int, size: int, max_pixels: int = DEFAULT_MAX_PIXELS
                ) -> tuple[np.ndarray, str]:
    """Read, hash and decode one file -> ((channels, size, size) uint8, hex digest of the bytes)."""
    with open_regular(path) as f:
        data = f.read()
    if not data:
        raise PoolError("empty file (0 bytes)")
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()  # as digest_file's
    with warnings.catch_warnings():
        # Our own limit (max_pixels) decides, with the same message at any size; Pillow's global one is
        # lifted for this call (it would raise its own error, without the size, above twice its limit).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pillow_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            img = _open(data, max_pixels)
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit
        if img.format == "JPEG":
            img.draft("L" if channels == 1 else "RGB", (size * 2, size * 2))
        img.load()
        return convert_image(img, channels, size), digest


def _inspect(path: Path) -> tuple[str, int] | None:
    """(mode, short side) from the header, or None when unreadable."""
    try:  # opened without blocking: a FIFO or device that slipped in is refused, not waited on
        with open_regular(path) as f, Image.open(f) as img:
            return img.mode, min(img.size)
    except Exception:  # noqa: BLE001 - any unreadable file is simply not counted here
        return None


def _evenly_spaced(items: Sequence[str], k: int) -> list[str]:
    if len(items) <= k:
        return list(items)
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in idx]


def choose_format(root: Path, rel: Sequence[str], channels: int | None = None, image_size: int | None = None
                  ) -> PoolFormat:
    """The :class:`PoolFormat` of the files ``rel`` under ``root``, from the headers of up to
    :data:`SIZE_SAMPLE` files spread evenly over the list (see module docstring); ``channels`` and
    ``image_size`` when given override the choice."""
    info = [m for m in (_inspect(root / r) for r in _evenly_spaced(rel, SIZE_SAMPLE)) if m is not None]
    gray = bool(info) and all(mode in GRAY_MODES for mode, _ in info)
    channels = channels or (1 if gray else 3)
    sides = [s for _, s in info]
    image_size = image_size or choose_size(sides, channels == 1)
    median, p90 = (int(np.ceil(np.percentile(sides, q))) for q in (50, 90)) if sides else (0, 0)
    return PoolFormat(channels, image_size, median, p90)


def digest_file(path: Path) -> str:
    """Hex content digest of a pool file (the same as :func:`decode_file`'s), read without blocking; raises
    PoolError for an empty file, OSError for one that cannot be read."""
    with open_regular(path) as f:
        data = f.read()
    if not data:
        raise PoolError("empty file (0 bytes)")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def failure_reason(e: Exception) -> str:
    """A one-line reason for a file that could not be decoded (for ``Pool.skipped`` and messages)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, Image.DecompressionBombWarning | Image.DecompressionBombError):
        return "too many pixels (decompression-bomb guard)"
    if isinstance(e, Image.UnidentifiedImageError):
        return "not an image file Pillow can identify"
    return f"{type(e).__name__}: {msg}" if not isinstance(e, PoolError) else msg
