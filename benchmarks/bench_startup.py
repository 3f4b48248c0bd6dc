"""Start-up time of the command line: wall seconds of ``selector --version`` (and ``--help``).

    python -m benchmarks.bench_startup --repeats 10
    # an older checkout for comparison (its strategies/ and eval/ linked under selector/ first):
    git worktree add --detach /tmp/before 53cda79
    ln -s /tmp/before/strategies /tmp/before/selector/strategies; ln -s /tmp/before/eval /tmp/before/selector/eval
    python -m benchmarks.bench_startup --repeats 10 --pythonpath /tmp/before

Runs what the ``selector`` command runs (``from selector.cli import main; main()``) in a fresh
interpreter, and prints the median and the fastest wall time and the median CPU time of the repeats,
and whether importing ``selector.cli`` loads torch, faiss or kornia. Run it on an idle machine for
numbers to compare; a loaded machine gives larger and noisier wall times (CPU time less so).
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import click

from benchmarks.common import help_text, run

HEAVY = ("torch", "faiss", "kornia")
# `python -c` puts the working folder first on sys.path: run from one without a selector/ folder,
# so that --pythonpath (or the installed package) is what gets measured.
NEUTRAL_CWD = tempfile.gettempdir()


def run_times(cmd: list[str], repeats: int, env: dict | None = None) -> tuple[list[float], list[float]]:
    """(wall, CPU) seconds of ``repeats`` runs of ``cmd`` (output discarded); a failing run raises.
    CPU = user + system time of the child, which a loaded machine inflates less than wall time."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       cwd=NEUTRAL_CWD)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def heavy_modules_loaded(module: str, env: dict | None = None) -> list[str]:
    """The modules of :data:`HEAVY` that ``import module`` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env,
                         cwd=NEUTRAL_CWD).stdout
    return out.split()


ENTRY = "import sys; sys.argv[0] = 'selector'; from selector.cli import main; main()"


@click.command("bench_startup", help=help_text(__doc__))
@click.option("--repeats", type=int, default=10, show_default=True)
@click.option("--pythonpath", default=None, help="measure the selector package found in this folder")
def cli(repeats, pythonpath) -> None:
    env = None
    if pythonpath:
        env = dict(os.environ, PYTHONPATH=pythonpath)
        heavy_modules_loaded("selector", env)  # fails early if that folder holds no selector
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for flag in ("--version", "--help"):
        t, cpu = run_times([sys.executable, "-c", ENTRY, flag], repeats, env)
        print(f"selector {flag}: wall median {statistics.median(t):.2f} s, fastest {min(t):.2f} s; "
              f"CPU median {statistics.median(cpu):.2f} s ({repeats} runs)")
    loaded = ", ".join(heavy_modules_loaded("selector.cli", env)) or "none of " + ", ".join(HEAVY)
    print(f"import selector.cli loads: {loaded}")


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
