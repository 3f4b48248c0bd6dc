"""Process supervision: a child process that ends when the process that started it does.

Used by the pool's decoder workers (:mod:`selector.pool.workers`), the torchrun launcher's child
(:mod:`selector.cli.torchrun`) and the ranks torchrun starts (the command line). Imports neither numpy nor
torch: it costs no more than the standard library.
"""
from __future__ import annotations

import os
import signal
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int, poll_s: float = 1.0, watch: bool = True) -> None:
    """Make this (worker) process end when process ``parent`` does, however it ends (``kill -9`` too).

    On Linux the kernel does it: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (through ctypes). Everywhere, as a
    fallback, a daemon thread checks every ``poll_s`` seconds that the parent is still this process's
    parent (an orphan is adopted by another process) and exits at once if not. A parent that already
    died before the call is caught by the first check. ``watch=False`` starts no thread: for a child
    between fork and exec (``subprocess.Popen(preexec_fn=...)``, :mod:`selector.cli.torchrun`), where the
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
