"""Pools from an ``.npz`` archive, and image arrays of any common layout.

The archive holds an array ``x`` of images (n, H, W), (n, H, W, C) or (n, C, H, W), uint8 or float in
[0, 1], and an optional ``y`` of labels (kept for evaluation, never used to select). Item ids are
``x[i]``. Uncompressed archives are memory-mapped in place and compressed ones inflated in pieces, so a
pool of a million images is never held in memory; the images are converted like files (channels, the
same resize and centre crop, :func:`selector.pool.decode.convert_image`).
"""
from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .decode import choose_size, convert_image, failure_reason
from .pool import MMAP_THRESHOLD, Pool, PoolError, PoolFormat, alloc_images


def _layout(shape: tuple[int, ...], where: str) -> tuple[bool, int]:
    """(channels last?, channels in the source) for an image array shape (see images_from_array)."""
    if len(shape) == 3:
        return False, 1
    if len(shape) == 4:
        last = shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4)
        c = shape[-1] if last else shape[1]
        if c not in (1, 3, 4):
            raise PoolError(f"{where}: expected 1, 3 or 4 channels, got shape {shape}")
        return last, c
    raise PoolError(f"{where}: images must have shape (n, H, W) or (n, H, W, C), got {shape}")


def _float_scale(x: np.ndarray, where: str, step: int = 4096) -> float:
    """255 when a float image array holds values in [0, 1], else 1; checks for NaN/inf (in chunks)."""
    top = 0.0
    for s in range(0, x.shape[0], step):
        xf = np.asarray(x[s:s + step], dtype=np.float64)
        if not np.isfinite(xf).all():
            raise PoolError(f"{where}: images contain NaN or inf")
        top = max(top, float(xf.max(initial=0)))
    return 255.0 if top <= 1.0 else 1.0


def images_from_array(x: np.ndarray, where: str = "array", scale: float | None = None) -> np.ndarray:
    """Images of any common layout -> (n, C, H, W) uint8 with C in {1, 3}.

    Float images in [0, 1] are scaled by 255; ``scale`` fixes the factor (for chunks of one array)."""
    x = np.asarray(x)
    last, c = _layout(x.shape, where)
    x = x[:, None] if x.ndim == 3 else (x.transpose(0, 3, 1, 2) if last else x)
    if c == 4:
        x = x[:, :3]
    if x.dtype != np.uint8:
        if scale is None:
            scale = _float_scale(x, where)
        xf = x.astype(np.float64)
        if not np.isfinite(xf).all():
            raise PoolError(f"{where}: images contain NaN or inf")
        x = np.clip(np.rint(xf * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(x)


def _convert_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    if channels == 3 and x.shape[1] == 1:
        return np.repeat(x, 3, axis=1)
    if channels == 1 and x.shape[1] == 3:
        lum = x.astype(np.float32).transpose(0, 2, 3, 1) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(np.rint(lum), 0, 255).astype(np.uint8)[:, None]
    return x


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


def _npz_member(path: Path, name: str, scratch_dir, mmap_threshold: int) -> np.ndarray:
    """Array ``name`` of an .npz without reading it all into memory: an uncompressed member is
    memory-mapped in place (copy-on-write); a compressed one is inflated in pieces into
    :func:`alloc_images` storage. Object arrays are refused (no pickles)."""
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(name + ".npy")
        except KeyError:
            raise PoolError(f"{path}: no array {name!r} (found "
                            f"{', '.join(n[:-4] for n in zf.namelist() if n.endswith('.npy')) or 'nothing'})") from None
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            if dtype.hasobject:
                raise PoolError(f"{path}: array {name!r} holds Python objects; refused (no pickles)")
            header_len = f.tell()
            order = "F" if fortran else "C"
            if info.compress_type == zipfile.ZIP_STORED and dtype.itemsize > 0 and not fortran:
                with open(path, "rb") as raw:
                    raw.seek(info.header_offset)
                    local = raw.read(30)
                    name_len, extra_len = struct.unpack("<HH", local[26:30])
                offset = info.header_offset + 30 + name_len + extra_len + header_len
                if int(np.prod(shape)) == 0:
                    return np.empty(shape, dtype=dtype)
                return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order=order)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            buf = alloc_images((nbytes,), scratch_dir, mmap_threshold)
            view = memoryview(buf)
            got = 0
            while got < nbytes:
                k = f.readinto(view[got:got + (16 << 20)])
                if not k:
                    raise PoolError(f"{path}: array {name!r} is truncated ({got} of {nbytes} bytes)")
                got += k
            return buf.view(dtype).reshape(shape, order=order)


def load_npz(path: str | os.PathLike, *, image_size: int | None = None, channels: int | None = None,
             scratch_dir: str | os.PathLike | None = None, mmap_threshold: int = MMAP_THRESHOLD,
             step: int = 4096) -> Pool:
    """A pool from an ``.npz`` file with ``x`` (images) and optional ``y`` (labels).

    ``channels`` (1 or 3) converts the images when given (luminance or replicated gray). The array is
    read in pieces of ``step`` images (see :func:`_npz_member`): an uncompressed uint8 archive already
    in (n, H, W) or (n, C, S, S) layout at the target size is used in place, memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise PoolError(f"pool file {path} does not exist")
    try:
        x = _npz_member(path, "x", scratch_dir, mmap_threshold)
        with np.load(path, allow_pickle=False) as z:
            y = z["y"].astype(np.int64) if "y" in z.files else None
    except PoolError:
        raise
    except Exception as e:  # noqa: BLE001
        raise PoolError(f"cannot read {path}: {failure_reason(e)}") from e
    where = str(path)
    last, c_src = _layout(x.shape, where)
    n = x.shape[0]
    if n == 0:
        raise PoolError(f"{path}: the array 'x' holds no images")
    if y is not None and len(y) != n:
        raise PoolError(f"{path}: 'y' has {len(y)} labels for {n} images")
    h, w = (x.shape[1:3] if (last or x.ndim == 3) else x.shape[2:4])
    c_mid = 3 if c_src == 4 else c_src
    c_out = channels or c_mid
    size = image_size or choose_size([min(h, w)], c_out == 1)
    if x.dtype == np.uint8 and not last and c_src == c_out and h == w == size:
        images = x[:, None] if x.ndim == 3 else x  # already in the pool's layout: no copy
    else:
        scale = None if x.dtype == np.uint8 else _float_scale(x, where, step)
        images = alloc_images((n, c_out, size, size), scratch_dir, mmap_threshold)
        for s in range(0, n, step):
            part = images_from_array(x[s:s + step], where, scale)
            images[s:s + step] = resize_images(_convert_channels(part, c_out), size)
    digests = [hashlib.blake2b(images[i].tobytes(), digest_size=16).hexdigest() for i in range(n)]
    width = len(str(n - 1))
    ids = [f"x[{i:0{width}d}]" for i in range(n)]
    side = int(min(h, w))
    source = ArraySource(x, where, None if x.dtype == np.uint8 else _float_scale(x, where, step), c_out,
                         np.arange(n))
    return Pool(ids=ids, images=images, digests=digests, root=path, labels=y,
                format=PoolFormat(c_out, size, side, side), source=source)


@dataclass(frozen=True)
class ArraySource:
    """Rows of an image array (an ``.npz`` pool's ``x``, in any layout :func:`images_from_array` takes) read
    at any side: converted to ``channels`` and resized as files are (:func:`resize_images`). ``rows``: the
    array rows of the pool's items, in pool order."""

    x: np.ndarray
    where: str
    scale: float | None
    channels: int
    rows: np.ndarray

    def read(self, rows: np.ndarray, side: int) -> np.ndarray:
        """(k, channels, side, side) uint8 of the pool's items ``rows``."""
        part = images_from_array(self.x[self.rows[np.asarray(rows)]], self.where, self.scale)
        return resize_images(_convert_channels(part, self.channels), side)

    def subset(self, keep: np.ndarray) -> "ArraySource":
        return ArraySource(self.x, self.where, self.scale, self.channels, self.rows[np.asarray(keep)])
