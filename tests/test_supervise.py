"""Process supervision (selector.supervise): a child set to die with its parent follows it, also where
``prctl`` is missing and only the polling thread is left."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import IS_LINUX_PROC, alive, subprocess_env, wait_until

pytestmark = pytest.mark.processes


FALLBACK = """
import ctypes, os, time
import selector.supervise as d
def no_prctl(*a, **k):
    raise OSError("no prctl here")
ctypes.CDLL = no_prctl  # as on a system without prctl: only the polling thread is left
parent = os.getpid()
pid = os.fork()
if pid == 0:
    os.closerange(0, 3)  # the test reads the parent's output to its end: the child must not hold it
    d.die_with_parent(parent, poll_s=0.1)
    time.sleep(60)
    os._exit(0)
print(pid, flush=True)
os._exit(0)  # the parent dies at once; the child must follow it
"""


@pytest.mark.skipif(not IS_LINUX_PROC or not hasattr(os, "fork"), reason="forks; reads /proc")
def test_die_with_parent_fallback_without_prctl():
    r = subprocess.run([sys.executable, "-c", FALLBACK], capture_output=True, text=True, timeout=60,
                       env=subprocess_env())
    child = int(r.stdout.split()[0])
    try:
        assert wait_until(lambda: not alive(child), 10), "the child outlived its parent"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
