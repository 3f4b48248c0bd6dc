"""Atomic file writes, and the one check every written file goes through before any work.

* :func:`atomic_write`: a reader sees the old file or the whole new one, never half of it. A failed
  write (disk full, permission) raises :class:`WriteError`, whose message names the file, and leaves
  nothing behind. With ``overwrite=False`` the file is only created, never replaced: if it appeared
  while this run worked (another run with the same output), :class:`OutputExistsError` is raised.
* :func:`check_outputs`: the rule "every file a run writes obeys ``--force``", applied to the list of
  every path a run will write (``selector.formats.output_paths``), before any work.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator


class OutputExistsError(ValueError):
    """An output file exists (or appeared while the run worked) and overwriting was not allowed."""

    def __init__(self, path: str | os.PathLike, message: str):
        super().__init__(message)
        self.path = Path(path)


class WriteError(OSError):
    """Writing ``path`` failed (disk full, permission...); nothing was written."""

    def __init__(self, err: OSError, path: str | os.PathLike):
        super().__init__(err.errno, err.strerror or str(err))
        self.path = Path(path)

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.strerror} (nothing was written)"


def check_outputs(paths: Iterable[str | os.PathLike], force: bool) -> None:
    """Refuse, before any work, to write where a run must not: any of ``paths`` is a folder, or exists
    while ``force`` is False. The one place that enforces the ``--force`` rule; raises
    :class:`OutputExistsError` (a ValueError) naming the first offending path."""
    for p in map(Path, paths):
        if p.is_dir():
            raise OutputExistsError(p, f"output {p} is a folder; give a file name")
        if not force and (p.exists() or p.is_symlink()):
            raise OutputExistsError(p, f"output {p} exists; pass --force to overwrite it")


def _commit_new(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist (a hard link fails if it does)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(path, f"output {path} was created by another run while this one worked; "
                                      "pass --force to overwrite it") from None
    except OSError as e:  # a file system without hard links: check, then rename (a small race remains)
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        if path.exists():
            raise OutputExistsError(path, f"output {path} was created by another run while this one worked; "
                                          "pass --force to overwrite it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = None, overwrite: bool = True) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On any error (disk full, interrupt) the temporary file is removed and ``path`` is untouched; an
    OSError is raised as :class:`WriteError` naming ``path``. ``mode`` is "w" (text) or "wb" (binary).
    ``overwrite=False`` never replaces an existing ``path`` (:class:`OutputExistsError`).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    umask = os.umask(0)
    os.umask(umask)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise WriteError(e, path) from e
    phase = "body"  # the caller writing; then "flush" and "commit", ours
    try:
        kw = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        try:
            with os.fdopen(fd, mode, **kw) as f:
                yield f
                phase = "flush"
                f.flush()
                os.fsync(f.fileno())
            phase = "commit"
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions of a new file
            if overwrite:
                os.replace(tmp, path)
            else:
                _commit_new(tmp, path)
        except OSError as e:
            # f.write fails without a file name (disk full); an error naming another file comes from the
            # caller reading its input and passes through as it is
            if isinstance(e, WriteError) or (phase == "body" and e.filename is not None):
                raise
            raise WriteError(e, path) from e
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
