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

Robustness (see ``docs/robustness.md``): files are decoded in worker processes, each file under a time
limit (a file that hangs or crashes the decoder is skipped, not the run); results keep the sorted order
whatever the scheduling. Pools larger than ``mmap_threshold`` bytes once decoded are written to a
memory-mapped scratch file (removed as soon as it is mapped, so even ``kill -9`` leaves nothing), and
uncompressed ``.npz`` archives are memory-mapped in place, so a pool of a million images is never held
in memory. Byte-identical files are kept but marked by :meth:`Pool.duplicate_mask`, so a selection never
takes two copies of the same image. Nothing that reads a pool file can block on it: files are opened
non-blocking and must be regular files (a FIFO or device named like an image is skipped with the
reason). Names that are not valid UTF-8 or hold a control character are skipped (:mod:`selector.names`),
links to folders outside the pool are not followed unless asked, and ``/proc``, ``/sys``, ``/dev``
never are. Workers die with the process that started them (:func:`die_with_parent`).
"""
from __future__ import annotations

import hashlib
import io
import logging
import multiprocessing as mp
import os
import signal
import stat
import struct
import tempfile
import threading
import time
import warnings
import zipfile
from collections import deque
from multiprocessing.connection import wait as _wait_conns
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from .names import display_name, name_problem

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
SIZE_SAMPLE = 2000  # images inspected to choose channels and size
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own warning threshold; larger images are refused
DEFAULT_DECODE_TIMEOUT_S = 60.0  # a file whose decoding takes longer is skipped (or fails the run)
MMAP_THRESHOLD = 256 << 20  # decoded pools larger than this many bytes go to a memory-mapped scratch file


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
    def n_duplicates(self) -> int:
        """Items that are byte-identical to an earlier item of the pool."""
        return int(duplicate_mask(self.digests).sum())

    def duplicate_mask(self, labeled: np.ndarray | None = None) -> np.ndarray:
        """(n,) bool: items that must not be chosen because they repeat another item; see
        :func:`duplicate_mask`."""
        return duplicate_mask(self.digests, labeled)

    @property
    def key(self) -> str:
        """Digest of the pool's content and decoding (ids, file digests, channels, size)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.channels}x{self.size}\n".encode())
        for i, d in zip(self.ids, self.digests):
            h.update(i.encode("utf-8", "surrogateescape") + b"\0" + d.encode() + b"\n")
        return h.hexdigest()


def duplicate_mask(digests: Sequence[str], labeled: np.ndarray | None = None) -> np.ndarray:
    """(n,) bool mask of items not to choose because they are copies of another item.

    Items with the same content digest form a set of copies. The first item of each set (in pool
    order) stays selectable and the others are marked; when any copy is already labeled (``labeled``,
    (n,) bool) every unlabeled copy is marked, since that image is labeled already.
    """
    n = len(digests)
    first: dict[str, int] = {}
    out = np.zeros(n, dtype=bool)
    for i, d in enumerate(digests):
        if d in first:
            out[i] = True
        else:
            first[d] = i
    if labeled is not None and labeled.any() and out.any():
        done = {digests[i] for i in np.flatnonzero(labeled)}
        for i, d in enumerate(digests):
            if d in done and not labeled[i]:
                out[i] = True
    if labeled is not None:
        out &= ~labeled
    return out


def alloc_images(shape: tuple[int, ...], scratch_dir: str | os.PathLike | None = None,
                 mmap_threshold: int = MMAP_THRESHOLD) -> np.ndarray:
    """An uninitialised uint8 array: in memory when it is at most ``mmap_threshold`` bytes, else
    memory-mapped on a scratch file in ``scratch_dir`` (default: the system temp folder).

    The scratch file's blocks are reserved up front (a full disk is an error here, not a crash in the
    middle of decoding) and the file is unlinked once mapped: it lives as long as the mapping and
    vanishes with the process, even after ``kill -9``.
    """
    nbytes = int(np.prod(shape, dtype=np.int64))
    if nbytes <= mmap_threshold:
        return np.empty(shape, dtype=np.uint8)
    folder = Path(scratch_dir) if scratch_dir is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".pool-", suffix=".u8", dir=folder)
    try:
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, nbytes)
            else:  # pragma: no cover - non-POSIX
                os.ftruncate(fd, nbytes)
        except OSError as e:
            raise PoolError(f"cannot reserve {nbytes / 2**30:.2f} GiB for the decoded pool in {folder}: "
                            f"{e.strerror or e}") from e
        arr = np.memmap(name, dtype=np.uint8, mode="r+", shape=shape)
    finally:
        os.close(fd)
        try:
            os.unlink(name)
        except OSError:  # pragma: no cover - Windows keeps open files; the OS temp cleaner removes it
            pass
    log.info("decoded pool (%.2f GiB) is memory-mapped on a scratch file in %s", nbytes / 2**30, folder)
    return arr


# ---------------------------------------------------------------------------------------------
# Folder discovery


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))
SYSTEM_DIRS = ("/proc", "/sys", "/dev")  # never walked into, even with follow_links


def _not_regular(mode: int) -> str | None:
    """'not a regular file (a FIFO)' and the like, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((k for test, k in _KINDS if test(mode)), "a special file")
    return f"not a regular file ({kind})"


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def list_pool_files(root: str | os.PathLike, follow_links: bool = False
                    ) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """The files of a pool folder: (image files, skipped files, skipped folders), paths relative POSIX.

    Image files are those with an image suffix, recursively, sorted; hidden files and folders are left
    out. Skipped, each with its reason: files that are not regular files (FIFOs, sockets, devices: reading
    them could block forever) and files whose path is not valid UTF-8 or holds a control character (see
    :mod:`selector.names`); folders reached by a symbolic link that leaves the pool (unless
    ``follow_links``) or that lie on the system's special file systems (``/proc``, ``/sys``, ``/dev``,
    never read). No folder is entered twice (no loop).
    """
    root = Path(root)
    if not root.exists():
        raise PoolError(f"pool {display_name(root)} does not exist")
    if not root.is_dir():
        raise PoolError(f"pool {display_name(root)} is not a folder")
    real_root = os.path.realpath(root)
    found: list[str] = []
    skipped: list[tuple[str, str]] = []
    folders: list[tuple[str, str]] = []
    seen: set[tuple[int, int]] = set()

    def onerror(err: OSError) -> None:
        raise PoolError(f"cannot read folder {display_name(err.filename)}: {err.strerror}")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        rel_dir = Path(dirpath).relative_to(root)
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            full = os.path.join(dirpath, d)
            real = os.path.realpath(full)
            if any(_within(real, s) for s in SYSTEM_DIRS) and not any(_within(real_root, s) for s in SYSTEM_DIRS):
                folders.append(((rel_dir / d).as_posix(), f"it is {real}, a system folder (never read)"))
            elif os.path.islink(full) and not follow_links and not _within(real, real_root):
                folders.append(((rel_dir / d).as_posix(),
                                f"a link to {real}, outside the pool (pass --follow-links to read it)"))
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            rel = (rel_dir / name).as_posix()
            problem = name_problem(rel)
            if problem is None:
                try:
                    problem = _not_regular(os.stat(os.path.join(dirpath, name)).st_mode)
                except OSError:
                    problem = None  # a broken or looping link: the decoder reports it like any unreadable file
            if problem is None:
                found.append(rel)
            else:
                skipped.append((rel, problem))
    found.sort()
    skipped.sort()
    folders.sort()
    return found, skipped, folders


def list_image_files(root: str | os.PathLike, follow_links: bool = False) -> list[str]:
    """Relative POSIX paths of the usable image files under ``root``, sorted (see :func:`list_pool_files`)."""
    return list_pool_files(root, follow_links)[0]


def open_regular(path: str | os.PathLike):
    """Open a pool file for reading without ever blocking on it: opened non-blocking, then refused
    unless it is a regular file (a FIFO, socket or device named like an image raises PoolError)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        problem = _not_regular(os.fstat(fd).st_mode)
        if problem is not None:
            raise PoolError(problem)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
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


def load_folder(root: str | os.PathLike, *, channels: int | None = None, image_size: int | None = None,
                on_bad: str = "skip", max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False,
                workers: int | None = None, timeout_s: float = DEFAULT_DECODE_TIMEOUT_S,
                scratch_dir: str | os.PathLike | None = None, mmap_threshold: int = MMAP_THRESHOLD,
                follow_links: bool = False) -> Pool:
    """Read every image under ``root`` (see module docstring).

    Args:
        channels: 1 or 3 to force grayscale or RGB; None chooses from the pool.
        image_size: side S to force; None chooses from the pool.
        on_bad: "skip" (log a warning, count it in ``Pool.skipped``) or "fail" (raise PoolError naming
            the file) for files that cannot be decoded.
        workers: decoding processes; None picks from the CPU count and pool size (at least one, so the
            time limit holds); 0 decodes in this process (no time limit).
        timeout_s: seconds one file may take to decode before its worker is killed and the file is
            treated as unreadable.
        scratch_dir, mmap_threshold: see :func:`alloc_images`.
        follow_links: also read folders that symbolic links lead to outside ``root`` (see
            :func:`list_pool_files`; the system's special file systems are never read).
    """
    if on_bad not in ("skip", "fail"):
        raise PoolError(f"on_bad must be 'skip' or 'fail', got {on_bad!r}")
    root = Path(root)
    rel, unusable, folders = list_pool_files(root, follow_links)
    for r, reason in folders:
        log.warning("not reading %s: %s", display_name(root / r), reason)
    if unusable and on_bad == "fail":
        r, reason = unusable[0]
        raise PoolError(f"cannot read image {display_name(root / r)}: {reason}")
    if not rel and unusable:
        r, reason = unusable[0]
        raise PoolError(f"none of the {len(unusable)} image files in {display_name(root)} could be read "
                        f"(first: {display_name(r)}: {reason})")
    if not rel:
        n_other = sum(len(f) for _, _, f in os.walk(root))
        what = "the folder is empty" if n_other == 0 else f"{n_other} other files"
        raise PoolError(f"no image files in pool folder {root} ({what}; looked for "
                        f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    if channels is None or image_size is None:
        info = [m for m in (_inspect(root / r) for r in _evenly_spaced(rel, SIZE_SAMPLE)) if m is not None]
        gray = bool(info) and all(mode in GRAY_MODES for mode, _ in info)
        channels = channels or (1 if gray else 3)
        image_size = image_size or choose_size([s for _, s in info], channels == 1)
    if channels not in (1, 3):
        raise PoolError(f"channels must be 1 or 3, got {channels}")

    n = len(rel)
    images = alloc_images((n, channels, image_size, image_size), scratch_dir, mmap_threshold)
    if workers is None:
        workers = max(1, min(os.cpu_count() or 1, 8, n // 64))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="reading pool", unit="img", leave=False)
    spec = (str(root), channels, image_size, max_pixels)
    if workers <= 0:
        ok, digests, errors = _decode_serial(root, rel, spec, images, on_bad, bar)
    else:
        ok, digests, errors = _decode_parallel(rel, spec, images, on_bad, workers, timeout_s, bar)
    if bar is not None:
        bar.close()

    skipped = sorted([(rel[i], errors[i]) for i in sorted(errors)] + unusable)
    if on_bad == "fail" and skipped:
        r, reason = skipped[0]
        raise PoolError(f"cannot read image {display_name(root / r)}: {display_name(reason)}")
    for r, reason in skipped:  # names and reasons escaped: nothing raw reaches the terminal
        log.warning("skipping %s: %s", display_name(root / r), display_name(reason))
    keep = np.flatnonzero(ok)
    if len(keep) == 0:
        raise PoolError(f"none of the {len(skipped)} image files in {display_name(root)} could be read "
                        f"(first: {display_name(skipped[0][0])}: {display_name(skipped[0][1])})")
    if len(keep) < n:  # close the gaps left by skipped files, in order (in place: j <= i always)
        for j, i in enumerate(keep):
            if i != j:
                images[j] = images[i]
        images = images[: len(keep)]
    return Pool(ids=[rel[i] for i in keep], images=images, digests=[digests[i] for i in keep], root=root,
                skipped=skipped)


def _decode_serial(root: Path, rel: list[str], spec, images: np.ndarray, on_bad: str, bar):
    _, channels, size, max_pixels = spec
    ok = np.zeros(len(rel), dtype=bool)
    digests: list[str] = [""] * len(rel)
    errors: dict[int, str] = {}
    for i, r in enumerate(rel):
        try:
            images[i], digests[i] = decode_file(root / r, channels, size, max_pixels)
            ok[i] = True
        except Exception as e:  # noqa: BLE001 - every decoder failure becomes a named skip or error
            errors[i] = _reason(e)
            if on_bad == "fail":
                break
        if bar is not None:
            bar.update(1)
    return ok, digests, errors


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int, poll_s: float = 1.0, watch: bool = True) -> None:
    """Make this (worker) process end when process ``parent`` does, however it ends (``kill -9`` too).

    On Linux the kernel does it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (through ctypes). Everywhere, as a
    fallback, a daemon thread checks every ``poll_s`` seconds that the parent is still this process's
    parent (an orphan is adopted by another process) and exits at once if not. A parent that already
    died before the call is caught by the first check. ``watch=False`` starts no thread: for a child
    between fork and exec (``subprocess.Popen(preexec_fn=...)``, :mod:`selector.launch`), where the
    kernel's signal is kept across exec and a thread would not be."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the thread below does the job
        pass
    if os.getppid() != parent:
        os._exit(1)
    if not watch:
        return

    def check() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=check, name="die-with-parent", daemon=True).start()


def _worker_main(conn, spec, parent: int | None = None) -> None:
    """Decode the files the parent sends, one message back per file (index, array, digest, error).

    The worker dies with its parent (:func:`die_with_parent`) and ignores SIGINT: Ctrl-C reaches the
    whole process group, and the parent alone handles it (it stops its workers)."""
    if parent is not None:
        die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root, channels, size, max_pixels = spec
    root = Path(root)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        for i, r in task:
            try:
                arr, dig = decode_file(root / r, channels, size, max_pixels)
                conn.send((i, arr, dig, None))
            except Exception as e:  # noqa: BLE001
                conn.send((i, None, None, _reason(e)))


class _Worker:
    def __init__(self, ctx, spec):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, spec, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.task: list[tuple[int, str]] = []
        self.done = 0
        self.since = 0.0

    def give(self, task: list[tuple[int, str]]) -> None:
        self.task, self.done, self.since = task, 0, time.monotonic()
        self.conn.send(task)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                self.proc.kill()
        self.proc.join(timeout=5)
        if self.proc.is_alive():  # pragma: no cover
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _decode_parallel(rel: list[str], spec, images: np.ndarray, on_bad: str, workers: int, timeout_s: float, bar):
    """Decode in ``workers`` processes. Each file gets ``timeout_s`` seconds: a worker that takes
    longer, or dies (a crashing decoder), is replaced and its current file reported unreadable.
    Results are written at their own index, so the outcome does not depend on scheduling."""
    n = len(rel)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    per_task = int(max(1, min(32, n // (workers * 8))))
    todo: deque[list[tuple[int, str]]] = deque(
        [(i, rel[i]) for i in range(s, min(n, s + per_task))] for s in range(0, n, per_task))
    ok = np.zeros(n, dtype=bool)
    resolved = np.zeros(n, dtype=bool)
    digests: list[str] = [""] * n
    errors: dict[int, str] = {}
    frontier = 0  # every index below it is resolved

    pool = [_Worker(ctx, spec) for _ in range(min(workers, len(todo)))]

    def resolve(i: int) -> None:
        resolved[i] = True
        if bar is not None:
            bar.update(1)

    def requeue_rest(w: _Worker, reason: str) -> None:
        i, _ = w.task[w.done]
        errors[i] = reason
        resolve(i)
        rest = w.task[w.done + 1:]
        if rest:
            todo.appendleft(rest)
        w.task = []

    try:
        while True:
            if on_bad == "fail" and errors:
                while frontier < n and resolved[frontier]:
                    frontier += 1
                if frontier >= min(errors):  # every file before the first failure is done
                    break
            for k, w in enumerate(pool):
                if not w.task and todo:
                    if not w.proc.is_alive():  # died between tasks: replace it
                        w.stop(kill=True)
                        pool[k] = w = _Worker(ctx, spec)
                    w.give(todo.popleft())
            busy = [w for w in pool if w.task]
            if not busy:
                break
            now = time.monotonic()
            wait_s = max(0.0, min(w.since + timeout_s - now for w in busy))
            ready = set(_wait_conns([w.conn for w in busy], timeout=wait_s + 0.01))
            for k, w in enumerate(pool):
                if not w.task:
                    continue
                if w.conn in ready:
                    try:
                        while w.task and w.conn.poll():
                            i, arr, dig, err = w.conn.recv()
                            if err is None:
                                images[i] = arr
                                digests[i] = dig
                                ok[i] = True
                            else:
                                errors[i] = err
                            resolve(i)
                            w.done += 1
                            w.since = time.monotonic()
                            if w.done == len(w.task):
                                w.task = []
                        continue
                    except (EOFError, OSError):
                        code = w.proc.exitcode
                        w.proc.join(timeout=1)
                        code = w.proc.exitcode if w.proc.exitcode is not None else code
                        requeue_rest(w, f"the decoder crashed (worker exit status {code})")
                        w.stop(kill=True)
                        pool[k] = _Worker(ctx, spec)
                        continue
                if w.task and time.monotonic() - w.since > timeout_s:
                    requeue_rest(w, f"decoding took longer than {timeout_s:g} s (worker stopped)")
                    w.stop(kill=True)
                    pool[k] = _Worker(ctx, spec)
    finally:
        for w in pool:
            w.stop(kill=bool(w.task))
    return ok, digests, errors


def _reason(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, Image.DecompressionBombWarning | Image.DecompressionBombError):
        return "too many pixels (decompression-bomb guard)"
    if isinstance(e, Image.UnidentifiedImageError):
        return "not an image file Pillow can identify"
    return f"{type(e).__name__}: {msg}" if not isinstance(e, PoolError) else msg


# ---------------------------------------------------------------------------------------------
# npz pools


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
        raise PoolError(f"cannot read {path}: {_reason(e)}") from e
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
    return Pool(ids=ids, images=images, digests=digests, root=path, labels=y)


def load_pool(path: str | os.PathLike, **kw) -> Pool:
    """A folder of images or an ``.npz`` archive -> :class:`Pool` (keywords as in :func:`load_folder`)."""
    p = Path(path)
    if p.suffix.lower() == ".npz" and not p.is_dir():
        return load_npz(p, image_size=kw.get("image_size"), channels=kw.get("channels"),
                        scratch_dir=kw.get("scratch_dir"), mmap_threshold=kw.get("mmap_threshold", MMAP_THRESHOLD))
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
