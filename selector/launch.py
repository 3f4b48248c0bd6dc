"""``--nproc N``: run a ``selector`` command as N processes of one machine under PyTorch's ``torchrun``.

:func:`torchrun_command` builds ``python -m torch.distributed.run --standalone --nproc_per_node N -m
selector <the same arguments without --nproc>``; :func:`run_torchrun` runs it as a child that dies with
this process (``PR_SET_PDEATHSIG`` through :func:`selector.supervise.die_with_parent`, as the decoder
workers do), and the ranks it starts die with torchrun the same way (:func:`selector.distributed` is
joined by the CLI, which sets it up). Several machines: run ``torchrun`` yourself with its ``--nnodes``
and ``--rdzv-*`` flags (``docs/distributed.md``).

Imports neither torch nor numpy: launching costs no more than starting Python.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Sequence

from .supervise import die_with_parent

#: Environment variables torchrun sets in the processes it starts (one of them is enough to tell).
TORCHRUN_VARS = ("TORCHELASTIC_RUN_ID", "GROUP_RANK", "LOCAL_WORLD_SIZE")

#: Seconds to wait for torchrun to stop its processes after Ctrl-C before killing it.
STOP_WAIT_S = 30.0


def under_torchrun(env: dict | None = None) -> bool:
    """True in a process started by torchrun (or anything that sets ``WORLD_SIZE`` above 1)."""
    env = os.environ if env is None else env
    if any(v in env for v in TORCHRUN_VARS):
        return True
    try:
        return int(env.get("WORLD_SIZE", "1") or 1) > 1
    except ValueError:
        return True  # malformed: selector.distributed.init names it


def strip_option(argv: Sequence[str], name: str) -> list[str]:
    """``argv`` without the option ``name`` and its value (``--nproc 2`` or ``--nproc=2``); what follows
    ``--`` is kept as it is."""
    argv = list(argv)
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            out.extend(argv[i:])
            break
        if a == name:
            i += 2
            continue
        if not a.startswith(name + "="):
            out.append(a)
        i += 1
    return out


def torchrun_command(nproc: int, args: Sequence[str], python: str | None = None) -> list[str]:
    """The torchrun command line that runs ``selector *args`` as ``nproc`` processes of this machine."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    return [python or sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "selector", *args]


def _die_with_launcher(parent: int) -> None:  # runs in the child between fork and exec
    die_with_parent(parent, watch=False)


def run_torchrun(nproc: int, args: Sequence[str], env: dict | None = None) -> int:
    """Run ``selector *args`` as ``nproc`` processes under torchrun; returns its exit status (negative:
    killed by that signal). The child dies with this process; Ctrl-C lets torchrun stop its processes
    (up to :data:`STOP_WAIT_S` seconds), then kills it."""
    cmd = torchrun_command(nproc, args)
    parent = os.getpid()
    pre = (lambda: _die_with_launcher(parent)) if sys.platform.startswith("linux") else None
    proc = subprocess.Popen(cmd, env=env, preexec_fn=pre)  # noqa: PLW1509 - prctl only, no threads
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to the whole group: torchrun stops its workers
        try:
            return proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            return proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def describe_status(status: int) -> str:
    """``exit status 1`` or ``killed by SIGKILL`` for a child's return code."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"
