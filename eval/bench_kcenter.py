"""k-center speed on an idle and on a loaded CPU: 1,000 picks from 10,000 x 128 (issue 13, item 5).

The greedy loop makes one matrix-vector product per pick. With several BLAS threads each product
pays for waking and synchronising them, which on a busy machine costs far more than the product
itself; :func:`selector.strategies.kcenter.one_blas_thread` keeps the loop on one thread. This
script times :func:`kcenter_greedy` in fresh subprocesses, first one alone and then ``--procs``
at once (the "loaded" case), with the loop on one BLAS thread (the library's behaviour) and, for
comparison, with every BLAS thread (``--compare``). It prints wall and CPU seconds per process
and the 1-minute load average before each run (other work on the machine shows up there).

    python eval/bench_kcenter.py                    # n=10,000, d=128, 1,000 picks, 1 and 2 procs
    python eval/bench_kcenter.py --compare --repeat 3
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

import numpy as np


def worker(spec: dict) -> dict:
    from selector.eval.bench_strategies import make_data
    from selector.strategies import kcenter
    x = make_data(spec["n"], spec["d"], "clustered")
    if spec["threads"] == "all":
        kcenter.one_blas_thread = contextlib.nullcontext  # the loop as it was before issue 13
    t0, c0 = time.perf_counter(), time.process_time()
    kcenter.kcenter_greedy(x, np.zeros(0, dtype=np.int64), spec["budget"], shortlist=spec["shortlist"])
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def run_batch(spec: dict, procs: int) -> list[dict]:
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec)]
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    out = []
    for p in ps:
        so, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed with exit code {p.returncode}")
        out.append(json.loads(so.strip().splitlines()[-1]))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--budget", type=int, default=1_000)
    ap.add_argument("--procs", type=int, default=2, help="processes at once in the loaded case")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--shortlist", type=int, nargs="+", default=[None],
                    help="shortlist sizes to time (default: the library's choice; 1000000000 = full passes)")
    ap.add_argument("--compare", action="store_true", help="also time the loop on all BLAS threads")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._worker:
        print(json.dumps(worker(json.loads(a._worker))))
        return
    print(f"kcenter_greedy: {a.budget:,} picks from {a.n:,} x {a.d} (clustered), {os.cpu_count()} CPUs")
    print("| shortlist | BLAS threads in loop | processes at once | load avg (1 min) before | wall s (each) "
          "| CPU s (each) |")
    print("|---|---|---|---|---|---|")
    for sl in a.shortlist:
        for threads in (["one", "all"] if a.compare else ["one"]):
            for procs in (1, a.procs):
                for _ in range(a.repeat):
                    load = os.getloadavg()[0]
                    spec = {"n": a.n, "d": a.d, "budget": a.budget, "threads": threads, "shortlist": sl}
                    res = run_batch(spec, procs)
                    wall = ", ".join(f"{r['wall_s']:.2f}" for r in res)
                    cpu = ", ".join(f"{r['cpu_s']:.2f}" for r in res)
                    print(f"| {sl or 'default'} | {threads} | {procs} | {load:.1f} | {wall} | {cpu} |", flush=True)


if __name__ == "__main__":
    main()
