"""Start-up time of the command line: wall seconds of ``selector --version`` (and ``--help``).

    python eval/bench_startup.py --repeats 10

Prints the median and the fastest of the repeats for each command, and whether importing
``selector.cli`` loads torch, faiss or kornia. Run it on an idle machine for numbers to compare;
a loaded machine gives larger and noisier times.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "faiss", "kornia")


def wall_seconds(cmd: list[str], repeats: int) -> list[float]:
    """Wall time of ``repeats`` runs of ``cmd`` (output discarded); a failing run raises."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return times


def heavy_modules_loaded(module: str) -> list[str]:
    """The modules of :data:`HEAVY` that ``import module`` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return out.split()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    exe = shutil.which("selector") or sys.exit("the selector command is not on PATH (pip install -e .)")
    for flag in ("--version", "--help"):
        t = wall_seconds([exe, flag], args.repeats)
        print(f"selector {flag}: median {statistics.median(t):.2f} s, fastest {min(t):.2f} s ({args.repeats} runs)")
    print(f"import selector.cli loads: {', '.join(heavy_modules_loaded('selector.cli')) or 'none of ' + ', '.join(HEAVY)}")


if __name__ == "__main__":
    main()
