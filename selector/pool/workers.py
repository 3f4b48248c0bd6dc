"""Decoding a pool's files in worker processes, each file under a time limit.

A file that hangs or crashes the decoder is skipped (or fails the run), not the run: its worker is
killed and replaced. Results are written at their own index, so the outcome keeps the sorted order
whatever the scheduling. Workers die with the process that started them
(:func:`selector.supervise.die_with_parent`) and leave Ctrl-C to it. :func:`decode_serial` decodes in this
process instead (no time limit).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from multiprocessing.connection import wait as _wait_conns
from pathlib import Path

import numpy as np

from ..supervise import die_with_parent
from .decode import decode_file, failure_reason

DEFAULT_DECODE_TIMEOUT_S = 60.0  # a file whose decoding takes longer is skipped (or fails the run)


def _worker_main(conn, spec, parent: int | None = None) -> None:
    """Decode the files the parent sends, one message back per file (index, array, digest, error).

    The worker dies with its parent (:func:`die_with_parent`) and ignores SIGINT: Ctrl-C reaches the
    whole process group, and the parent alone handles it (it stops its workers)."""
    if parent is not None:
        die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root, channels, size, max_pixels = spec
    root = Path(root)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        for i, r in task:
            try:
                arr, dig = decode_file(root / r, channels, size, max_pixels)
                conn.send((i, arr, dig, None))
            except Exception as e:  # noqa: BLE001
                conn.send((i, None, None, failure_reason(e)))


class _Worker:
    """One decoder process and the task (a list of (index, path)) it is working on."""

    def __init__(self, ctx, spec):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, spec, os.getpid()), daemon=True)
        self.proc.start()
        child.close()
        self.task: list[tuple[int, str]] = []
        self.done = 0
        self.since = 0.0

    def give(self, task: list[tuple[int, str]]) -> None:
        self.task, self.done, self.since = task, 0, time.monotonic()
        self.conn.send(task)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                self.proc.kill()
        self.proc.join(timeout=5)
        if self.proc.is_alive():  # pragma: no cover
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def decode_parallel(rel: list[str], spec, images: np.ndarray, on_bad: str, workers: int, timeout_s: float, bar):
    """Decode in ``workers`` processes. Each file gets ``timeout_s`` seconds: a worker that takes
    longer, or dies (a crashing decoder), is replaced and its current file reported unreadable.
    Results are written at their own index, so the outcome does not depend on scheduling."""
    n = len(rel)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    per_task = int(max(1, min(32, n // (workers * 8))))
    todo: deque[list[tuple[int, str]]] = deque(
        [(i, rel[i]) for i in range(s, min(n, s + per_task))] for s in range(0, n, per_task))
    ok = np.zeros(n, dtype=bool)
    resolved = np.zeros(n, dtype=bool)
    digests: list[str] = [""] * n
    errors: dict[int, str] = {}
    frontier = 0  # every index below it is resolved

    pool = [_Worker(ctx, spec) for _ in range(min(workers, len(todo)))]

    def resolve(i: int) -> None:
        resolved[i] = True
        if bar is not None:
            bar.update(1)

    def requeue_rest(w: _Worker, reason: str) -> None:
        i, _ = w.task[w.done]
        errors[i] = reason
        resolve(i)
        rest = w.task[w.done + 1:]
        if rest:
            todo.appendleft(rest)
        w.task = []

    try:
        while True:
            if on_bad == "fail" and errors:
                while frontier < n and resolved[frontier]:
                    frontier += 1
                if frontier >= min(errors):  # every file before the first failure is done
                    break
            for k, w in enumerate(pool):
                if not w.task and todo:
                    if not w.proc.is_alive():  # died between tasks: replace it
                        w.stop(kill=True)
                        pool[k] = w = _Worker(ctx, spec)
                    w.give(todo.popleft())
            busy = [w for w in pool if w.task]
            if not busy:
                break
            now = time.monotonic()
            wait_s = max(0.0, min(w.since + timeout_s - now for w in busy))
            ready = set(_wait_conns([w.conn for w in busy], timeout=wait_s + 0.01))
            for k, w in enumerate(pool):
                if not w.task:
                    continue
                if w.conn in ready:
                    try:
                        while w.task and w.conn.poll():
                            i, arr, dig, err = w.conn.recv()
                            if err is None:
                                images[i] = arr
                                digests[i] = dig
                                ok[i] = True
                            else:
                                errors[i] = err
                            resolve(i)
                            w.done += 1
                            w.since = time.monotonic()
                            if w.done == len(w.task):
                                w.task = []
                        continue
                    except (EOFError, OSError):
                        code = w.proc.exitcode
                        w.proc.join(timeout=1)
                        code = w.proc.exitcode if w.proc.exitcode is not None else code
                        requeue_rest(w, f"the decoder crashed (worker exit status {code})")
                        w.stop(kill=True)
                        pool[k] = _Worker(ctx, spec)
                        continue
                if w.task and time.monotonic() - w.since > timeout_s:
                    requeue_rest(w, f"decoding took longer than {timeout_s:g} s (worker stopped)")
                    w.stop(kill=True)
                    pool[k] = _Worker(ctx, spec)
    finally:
        for w in pool:
            w.stop(kill=bool(w.task))
    return ok, digests, errors


def decode_serial(root: Path, rel: list[str], spec, images: np.ndarray, on_bad: str, bar):
    """Decode in this process, in order; with ``on_bad="fail"`` stop at the first failure. Returns
    (ok (n,) bool, digests, {index: reason}) like :func:`decode_parallel`."""
    _, channels, size, max_pixels = spec
    ok = np.zeros(len(rel), dtype=bool)
    digests: list[str] = [""] * len(rel)
    errors: dict[int, str] = {}
    for i, r in enumerate(rel):
        try:
            images[i], digests[i] = decode_file(root / r, channels, size, max_pixels)
            ok[i] = True
        except Exception as e:  # noqa: BLE001 - every decoder failure becomes a named skip or error
            errors[i] = failure_reason(e)
            if on_bad == "fail":
                break
        if bar is not None:
            bar.update(1)
    return ok, digests, errors
