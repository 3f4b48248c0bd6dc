"""Decoding a pool's files in worker processes, each file under a time limit.

A file that hangs or crashes the decoder is skipped (or fails the run), not the run: its worker is
killed and replaced. Results are written at their own index, so the outcome keeps the sorted order
whatever the scheduling. Workers die with the process that started them
(:func:`selector.supervise.die_with_parent`) and leave Ctrl-C to it. A :class:`Decoder` keeps its workers
from one call to the next, so a pool read in chunks (at the side an encoder needs) starts them once; with
no workers it decodes in this process (no time limit).
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

    A task is ``(channels, size, [(index, relative path), ...])``, so one worker serves reads at any side.
    The worker dies with its parent (:func:`die_with_parent`) and ignores SIGINT: Ctrl-C reaches the
    whole process group, and the parent alone handles it (it stops its workers)."""
    if parent is not None:
        die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root, max_pixels = spec
    root = Path(root)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        channels, size, items = task
        for i, r in items:
            try:
                arr, dig = decode_file(root / r, channels, size, max_pixels)
                conn.send((i, arr, dig, None))
            except Exception as e:  # noqa: BLE001
                conn.send((i, None, None, failure_reason(e)))


class DecodeAborted(RuntimeError):
    """:meth:`Decoder.decode` was stopped by :meth:`Decoder.abort`."""


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

    def give(self, channels: int, size: int, task: list[tuple[int, str]]) -> None:
        self.task, self.done, self.since = task, 0, time.monotonic()
        self.conn.send((channels, size, task))

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


class Decoder:
    """Decodes files of one folder: in ``workers`` processes (kept from one call of :meth:`decode` to the
    next, stopped by :meth:`close`), each file under ``timeout_s`` seconds, or in this process when
    ``workers`` is 0 (no time limit). A worker that takes longer than the limit, or dies (a crashing
    decoder), is replaced and its current file reported unreadable. Use it as a context manager."""

    def __init__(self, root: str | os.PathLike, max_pixels: int, workers: int = 1,
                 timeout_s: float = DEFAULT_DECODE_TIMEOUT_S):
        self.root = Path(root)
        self.spec = (str(root), int(max_pixels))
        self.workers = int(workers)
        self.timeout_s = float(timeout_s)
        self._ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self._pool: list[_Worker] = []
        self._aborted = False

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes (killed if busy)."""
        for w in self._pool:
            w.stop(kill=bool(w.task))
        self._pool = []

    def abort(self) -> None:
        """Stop a :meth:`decode` running in another thread: it raises :class:`DecodeAborted` within half a
        second, its workers killed."""
        self._aborted = True

    def decode(self, rel: list[str], channels: int, size: int, images: np.ndarray, on_bad: str = "skip",
               bar=None) -> tuple[np.ndarray, list[str], dict[int, str]]:
        """Decode the files ``rel`` to (channels, size, size) into ``images[i]`` (len(rel) rows).

        Returns (ok (n,) bool, digests (n,) hex strings, {index: reason} of the files that failed). With
        ``on_bad="fail"`` it stops once every file before the first failure is decoded. Results are written
        at their own index, so the outcome does not depend on scheduling."""
        if self.workers <= 0:
            return self._decode_here(rel, channels, size, images, on_bad, bar)
        n = len(rel)
        per_task = int(max(1, min(32, n // (self.workers * 8))))
        todo: deque[list[tuple[int, str]]] = deque(
            [(i, rel[i]) for i in range(s, min(n, s + per_task))] for s in range(0, n, per_task))
        ok = np.zeros(n, dtype=bool)
        resolved = np.zeros(n, dtype=bool)
        digests: list[str] = [""] * n
        errors: dict[int, str] = {}
        frontier = 0  # every index below it is resolved
        timeout_s = self.timeout_s
        while len(self._pool) < min(self.workers, len(todo)):
            self._pool.append(_Worker(self._ctx, self.spec))
        pool = self._pool

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
                if self._aborted:
                    raise DecodeAborted("decoding was stopped")
                if on_bad == "fail" and errors:
                    while frontier < n and resolved[frontier]:
                        frontier += 1
                    if frontier >= min(errors):  # every file before the first failure is done
                        break
                for k, w in enumerate(pool):
                    if not w.task and todo:
                        if not w.proc.is_alive():  # died between tasks: replace it
                            w.stop(kill=True)
                            pool[k] = w = _Worker(self._ctx, self.spec)
                        w.give(channels, size, todo.popleft())
                busy = [w for w in pool if w.task]
                if not busy:
                    break
                now = time.monotonic()
                wait_s = max(0.0, min(w.since + timeout_s - now for w in busy))
                ready = set(_wait_conns([w.conn for w in busy], timeout=min(wait_s + 0.01, 0.5)))
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
                            pool[k] = _Worker(self._ctx, self.spec)
                            continue
                    if w.task and time.monotonic() - w.since > timeout_s:
                        requeue_rest(w, f"decoding took longer than {timeout_s:g} s (worker stopped)")
                        w.stop(kill=True)
                        pool[k] = _Worker(self._ctx, self.spec)
        except BaseException:
            self.close()  # an interrupt: the busy workers are killed, not left decoding
            raise
        if any(w.task for w in pool):  # stopped early (on_bad="fail"): the busy workers' results are not wanted
            self.close()
        return ok, digests, errors

    def _decode_here(self, rel, channels, size, images, on_bad, bar):
        """Decode in this process, in order; with ``on_bad="fail"`` stop at the first failure."""
        _, max_pixels = self.spec
        ok = np.zeros(len(rel), dtype=bool)
        digests: list[str] = [""] * len(rel)
        errors: dict[int, str] = {}
        for i, r in enumerate(rel):
            if self._aborted:
                raise DecodeAborted("decoding was stopped")
            try:
                images[i], digests[i] = decode_file(self.root / r, channels, size, max_pixels)
                ok[i] = True
            except Exception as e:  # noqa: BLE001 - every decoder failure becomes a named skip or error
                errors[i] = failure_reason(e)
                if on_bad == "fail":
                    break
            if bar is not None:
                bar.update(1)
        return ok, digests, errors
