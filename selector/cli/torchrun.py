"""Several processes: ``--nproc N`` runs a command as N processes of one machine under PyTorch's
``torchrun``, and a command that torchrun started joins the process group.

:func:`torchrun_command` builds ``python -m torch.distributed.run --standalone --nproc_per_node N -m
selector <the same arguments without --nproc>``; :func:`run_torchrun` runs it as a child that dies with
this process (``PR_SET_PDEATHSIG`` through :func:`selector.supervise.die_with_parent`, as the decoder
workers do), and the ranks it starts die with torchrun the same way. torchrun's own messages (its log lines,
and its traceback when a process fails) go to a log file (:func:`agent_main`) while the processes it starts
keep the terminal: a failure reads as the failing rank's one line and the launcher's, which names the log.
:func:`start_distributed` is what a command calls first: it launches torchrun for ``--nproc``, or, in a rank
torchrun started, joins the process group (:func:`selector.distributed.init`). :class:`RankErrors` lets rank 0
alone report what every rank shares and prefixes the other ranks' own errors with their rank. Several
machines: run ``torchrun`` yourself with its ``--nnodes`` and ``--rdzv-*`` flags (``docs/distributed.md``).

Imports neither torch nor numpy: launching costs no more than starting Python.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any, Callable, Sequence

import click

from selector.supervise import die_with_parent

from . import errors
from .options import DistOptions

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


#: The program that runs torchrun through :func:`agent_main` (argv: the log file, then torchrun's arguments).
AGENT = "import sys; from selector.cli.torchrun import agent_main; agent_main(sys.argv[1], sys.argv[2:])"


def torchrun_command(nproc: int, args: Sequence[str], python: str | None = None, log: str | None = None) -> list[str]:
    """The torchrun command line that runs ``selector *args`` as ``nproc`` processes of this machine; with
    ``log``, torchrun runs through :func:`agent_main`, its own messages written to that file."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    launcher = ["-m", "torch.distributed.run"] if log is None else ["-c", AGENT, log]
    return [python or sys.executable, *launcher, "--standalone", f"--nproc_per_node={nproc}", "-m", "selector",
            *args]


def agent_main(log: str, argv: Sequence[str]) -> None:
    """Run torchrun (``torch.distributed.run``) with ``argv``, everything it writes itself through Python's
    ``sys.stderr`` (its log lines, the summary and traceback it raises when a process fails) appended to the
    file ``log``. Only the Python object is replaced, not file descriptor 2: the processes torchrun starts
    inherit the terminal, progress bars and one-line errors as without torchrun."""
    sys.stderr = open(log, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open until the process ends
    sys.argv = ["torchrun", *argv]
    from torch.distributed.run import main

    main()


def _die_with_launcher(parent: int) -> None:  # runs in the child between fork and exec
    die_with_parent(parent, watch=False)


def run_torchrun(nproc: int, args: Sequence[str], env: dict | None = None, log: str | None = None) -> int:
    """Run ``selector *args`` as ``nproc`` processes under torchrun; returns its exit status (negative:
    killed by that signal). ``log``: the file torchrun's own messages go to (:func:`agent_main`; None: the
    terminal). The child dies with this process; Ctrl-C lets torchrun stop its processes (up to
    :data:`STOP_WAIT_S` seconds), then kills it."""
    cmd = torchrun_command(nproc, args, log=log)
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


def start_distributed(opts: DistOptions, device: str):
    """``--nproc``: run this same command under torchrun, exit with its status. Under torchrun: join the
    process group (a :class:`selector.distributed.Dist`; None for one process). The ranks die with
    torchrun; only rank 0 logs below errors."""
    ctx = click.get_current_context()
    if opts.nproc is not None:
        if under_torchrun():
            raise click.UsageError("--nproc starts torchrun; in a process torchrun started, leave it out")
        fd, log = tempfile.mkstemp(prefix="selector-torchrun-", suffix=".log")
        os.close(fd)
        status = run_torchrun(opts.nproc, strip_option(sys.argv[1:], "--nproc"), log=log)
        if status != 0:
            raise click.ClickException(f"the run of {opts.nproc} processes under torchrun failed "
                                       f"({describe_status(status)}); the lines above say which process and why "
                                       f"(torchrun's own log: {log})")
        os.unlink(log)  # nothing to look into
        ctx.exit(0)
    if not under_torchrun():
        return None
    if "TORCHELASTIC_RUN_ID" in os.environ:  # die with torchrun's agent, however it ends
        die_with_parent(os.getppid())
    from selector.distributed import init

    dist = init(device, opts.dist_timeout)
    if dist is None:
        return None
    ctx.call_on_close(dist.close)
    if not dist.main:
        logging.getLogger().setLevel(logging.ERROR)  # warnings once, from rank 0
    return dist


def is_main(dist) -> bool:
    """Whether this process prints and writes: the only one, or rank 0."""
    return dist is None or dist.main


def agree(dist, fn: Callable[[], Any], main_only: bool = False) -> Any:
    """``fn()``; with several processes every rank runs it (rank 0 alone with ``main_only``) and a
    failure on any rank stops every rank (:meth:`selector.distributed.Dist.agree`), rank 0 reporting it."""
    if dist is None:
        return fn()
    return dist.on_main(fn) if main_only else dist.agree(fn)


class RankErrors:
    """Errors of ranks other than 0: those every rank shares are left to rank 0 (exit status 1, no line);
    the others become one line (:func:`selector.cli.errors.message`) that starts with the rank."""

    def __init__(self, dist):
        self.dist = dist

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if is_main(self.dist) or not isinstance(e, Exception) or isinstance(e, (click.exceptions.Exit,
                                                                                  click.exceptions.Abort)):
            return False
        from selector.distributed import DistributedError

        if any(isinstance(x, DistributedError) and x.shared for x in (e, e.__cause__)):
            raise click.exceptions.Exit(1)
        ctx = click.get_current_context()
        if errors.debug(ctx):
            return False
        msg = errors.message(e, ctx)
        if not msg.startswith("rank "):
            raise click.ClickException(f"rank {self.dist.rank}: {msg}") from e
        return False
