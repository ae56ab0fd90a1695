"""Executors run a stage's tasks (one per input chunk or output shard) and nothing else.

A stage hands an executor a top-level function and a list of picklable tasks; the executor
returns the results in task order. It never knows what a task does, so a cluster executor
(Ray) can implement the same interface without touching any stage (DESIGN.md rule 6).

Tasks write their outputs atomically and skip themselves when their output exists, so an
executor may run a task again after losing its worker: the local pool, like Ray, retries tasks
whose worker died (the OOM killer's kill -9), and its workers end with the process that started
them instead of outliving it.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import sys
import threading
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Sequence, TypeVar

from ..errors import ConfigError, TwikiError
from .progress import Progress

log = logging.getLogger("twiki")

# Imported once by the forkserver, so that every worker starts as a fork of a process that
# already has them (a few ms) instead of importing pyarrow, pandas and the stages itself (~0.4 s
# a worker, every time a pool starts). Imports only: Arrow's thread pool and memory are made
# later, in the workers.
PRELOAD = ["pyarrow", "pandas", "orjson", "twiki.stages.extract", "twiki.stages.diff",
           "twiki.stages.training_text", "twiki.stages.facts", "twiki.stages.mapping",
           "twiki.stages.factdiff", "twiki.stages.align", "twiki.stages.probes"]

# Fresh pools one `run` may start after a worker dies, the Ray executor's default max_retries.
# A dead worker breaks the whole pool (concurrent.futures fails every unfinished task with
# BrokenProcessPool), so which task it ran is unknown: every unfinished task is sent again,
# and the retries are counted per run, not per task. Three absorb a rare OOM kill or two; a
# task that kills its worker every time ends the run after four pools instead of looping.
MAX_RETRIES = 3

T = TypeVar("T")
R = TypeVar("R")


class WorkerLostError(TwikiError):
    """A run whose pool workers kept dying (killed by the OOM killer or a signal)."""


class Executor(ABC):
    """Runs `fn(task)` for every task; results come back in task order."""

    workers: int = 1

    @abstractmethod
    def run(self, fn: Callable[[T], R], tasks: Sequence[T], *, desc: str,
            weights: Sequence[float] | None = None, unit: str = "task") -> list[R]:
        """`weights` (e.g. bytes per task) drive the progress rate and ETA."""


class LocalExecutor(Executor):
    """A local process pool. workers=1 runs in this process (easy to debug and profile).

    The pool is started at the first run that needs it and kept for the executor's life, so a
    stage's phases (and a build's stages) reuse warm workers instead of paying a start-up
    (about a second: imports of pyarrow and the stage modules) per phase.
    max_retries: fresh pools a run may start after a worker dies (see MAX_RETRIES)."""

    def __init__(self, workers: int = 1, *, max_retries: int = MAX_RETRIES):
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {workers}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, not {max_retries}")
        self.workers = workers
        self.max_retries = max_retries
        self._pool: ProcessPoolExecutor | None = None
        if workers > 1:
            atexit.register(self.close)  # a pool's workers end with the program

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: children start from a clean process, not a fork of one that may
            # hold pyarrow's threads (forking those can deadlock).
            if sys.platform == "win32":
                ctx = mp.get_context("spawn")
            else:
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload(PRELOAD)   # no effect once the server runs
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                             initializer=_exit_with_parent)
        return self._pool

    def warm(self) -> None:
        """Have the stages imported here and wherever tasks will run (every worker of a
        started pool), so that a bench's clock starts alike for one worker and for many."""
        _warm()
        if self.workers == 1:
            return
        pool = self._get_pool()
        for f in [pool.submit(_warm) for _ in range(self.workers)]:
            f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, fn, tasks, *, desc, weights=None, unit="task"):
        weights = list(weights) if weights is not None else [1.0] * len(tasks)
        results: list = [None] * len(tasks)
        with Progress(desc, total=sum(weights), unit=unit) as bar:
            if self.workers == 1 or len(tasks) <= 1:
                for i, task in enumerate(tasks):
                    results[i] = fn(task)
                    bar.update(weights[i])
                return results
            unfinished = set(range(len(tasks)))
            lost = 0
            while True:
                try:
                    self._run_on_pool(fn, tasks, unfinished, results, weights, bar)
                    return results
                except BrokenProcessPool:
                    self.close()  # stops its other workers: no task runs twice at once
                    lost += 1
                    if lost > self.max_retries:
                        raise WorkerLostError(
                            f"{desc}: a worker process died {lost} times (killed by the OOM "
                            f"killer or a signal); if memory is short, use fewer --workers or "
                            f"a smaller --chunk-mb, then rerun the same command to resume "
                            f"(finished tasks are kept)") from None
                    log.warning("%s: a worker process died (killed by the OOM killer or a "
                                "signal); running the %d unfinished task(s) again on a fresh "
                                "pool (retry %d of %d)", desc, len(unfinished), lost,
                                self.max_retries)

    def _run_on_pool(self, fn, tasks, unfinished: set[int], results: list, weights, bar) -> None:
        """Runs `tasks[i]` for each i in `unfinished` on the pool, storing `results[i]` and
        taking i out of `unfinished` as each task finishes; the first failure stops the rest."""
        pool = self._get_pool()
        futures = {}
        try:
            for i in sorted(unfinished):  # a pool broken since the last run fails here
                futures[pool.submit(fn, tasks[i])] = i
            pending = set(futures)
            while pending:
                # Each finished task moves the bar (and the cron log's rate and ETA) at
                # once; a failed one stops the run at once.
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = futures[fut]
                    exc = fut.exception()
                    if exc is not None:
                        raise exc
                    results[i] = fut.result()
                    unfinished.discard(i)
                    bar.update(weights[i])
        except BaseException:
            for fut in futures:  # queued ones never start; finished ones ignore it
                fut.cancel()
            raise


def _exit_with_parent() -> None:
    """Pool worker initializer: ends this worker as soon as the process that started the pool
    dies, even by kill -9 (which runs no cleanup). Otherwise the workers, idle on a task queue
    whose write end they hold themselves, live on and keep the forkserver and their memory.

    The parent is multiprocessing's: the process that made the pool, not the forkserver that
    forked the worker. Its sentinel, a pipe that process holds open, reads as closed when it
    dies, zombie or not (checking its pid would not see a zombie die)."""
    parent = mp.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_when_gone, args=(parent,), name="exit-with-parent",
                         daemon=True).start()


def _exit_when_gone(parent) -> None:
    parent.join()  # returns once the parent's sentinel reads as closed
    os._exit(1)    # at once: a task cut short here resumes from its done-markers


def _warm() -> None:
    import importlib
    for name in PRELOAD:
        importlib.import_module(name)
    import pyarrow as pa
    pa.array([None])        # the first conversion from Python objects loads pyarrow's pandas shim
