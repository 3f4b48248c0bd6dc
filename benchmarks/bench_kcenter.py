"""k-center speed on an idle and on a loaded CPU: 1,000 picks from 10,000 x 128.

The greedy loop makes one matrix-vector product per pick. With several BLAS threads each product
pays for waking and synchronising them, which on a busy machine costs far more than the product
itself; :func:`selector.strategies.kcenter.one_blas_thread` keeps the loop on one thread. This
script times :func:`kcenter_greedy` in fresh subprocesses, first one alone and then ``--procs``
at once (the "loaded" case), with the loop on one BLAS thread (the library's behaviour) and, for
comparison, with every BLAS thread (``--compare``). It prints wall and CPU seconds per process
and the 1-minute load average before each run (other work on the machine shows up there).

    python -m benchmarks.bench_kcenter                    # n=10,000, d=128, 1,000 picks, 1 and 2 procs
    python -m benchmarks.bench_kcenter --compare --repeat 3
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import click
import numpy as np

from benchmarks.common import help_text, list_option, make_data, run, script_command


def worker(spec: dict) -> dict:
    from selector.strategies import kcenter
    x = make_data(spec["n"], spec["d"], "clustered")
    if spec["threads"] == "all":
        kcenter.one_blas_thread = contextlib.nullcontext  # the loop on every BLAS thread
    t0, c0 = time.perf_counter(), time.process_time()
    kcenter.kcenter_greedy(x, np.zeros(0, dtype=np.int64), spec["budget"], shortlist=spec["shortlist"])
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def run_batch(spec: dict, procs: int) -> list[dict]:
    cmd, env = script_command("bench_kcenter")
    ps = [subprocess.Popen([*cmd, "--_worker", json.dumps(spec)], stdout=subprocess.PIPE, text=True, env=env)
          for _ in range(procs)]
    out = []
    for p in ps:
        so, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed with exit code {p.returncode}")
        out.append(json.loads(so.strip().splitlines()[-1]))
    return out


@click.command("bench_kcenter", help=help_text(__doc__))
@click.option("--n", type=int, default=10_000, show_default=True)
@click.option("--d", type=int, default=128, show_default=True)
@click.option("--budget", type=int, default=1_000, show_default=True)
@click.option("--procs", type=int, default=2, show_default=True, help="processes at once in the loaded case")
@click.option("--repeat", type=int, default=1, show_default=True)
@list_option("--shortlist", type=int,
             help="shortlist sizes to time (default: the library's choice; 1000000000 = full passes)")
@click.option("--compare", is_flag=True, help="also time the loop on all BLAS threads")
@click.option("--_worker", hidden=True)
def cli(n, d, budget, procs, repeat, shortlist, compare, _worker) -> None:
    if _worker:
        print(json.dumps(worker(json.loads(_worker))))
        return
    print(f"kcenter_greedy: {budget:,} picks from {n:,} x {d} (clustered), {os.cpu_count()} CPUs")
    print("| shortlist | BLAS threads in loop | processes at once | load avg (1 min) before | wall s (each) "
          "| CPU s (each) |")
    print("|---|---|---|---|---|---|")
    for sl in shortlist or [None]:
        for threads in (["one", "all"] if compare else ["one"]):
            for p in (1, procs):
                for _ in range(repeat):
                    load = os.getloadavg()[0]
                    spec = {"n": n, "d": d, "budget": budget, "threads": threads, "shortlist": sl}
                    res = run_batch(spec, p)
                    wall = ", ".join(f"{r['wall_s']:.2f}" for r in res)
                    cpu = ", ".join(f"{r['cpu_s']:.2f}" for r in res)
                    print(f"| {sl or 'default'} | {threads} | {p} | {load:.1f} | {wall} | {cpu} |", flush=True)


def main(argv: list[str] | None = None):
    return run(cli, argv)


if __name__ == "__main__":
    main()
