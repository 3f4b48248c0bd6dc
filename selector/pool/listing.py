"""Finding the files of a pool folder, and opening them without ever blocking.

A folder is searched recursively for ``.jpg .jpeg .png .bmp .webp .gif .tif .tiff`` files (hidden files
and folders, names starting with ``.``, are skipped, so a cache inside the pool is ignored); the list is
sorted. Nothing that reads a pool file can block on it: files are opened non-blocking and must be
regular files (a FIFO or device named like an image is skipped with the reason). Names that are not
valid UTF-8 or hold a control character are skipped (:mod:`selector.names`), links to folders outside
the pool are not followed unless asked, and ``/proc``, ``/sys``, ``/dev`` never are.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ..names import display_name, name_problem
from .pool import PoolError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})

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
