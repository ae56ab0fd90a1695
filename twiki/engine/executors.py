"""Executors run a stage's tasks (one per input chunk or output shard) and nothing else.

A stage hands an executor a top-level function and a list of picklable tasks; the executor
returns the results in task order. It never knows what a task does, so a cluster executor
(Ray) can implement the same interface without touching any stage (DESIGN.md rule 6).
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import sys
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Sequence, TypeVar

from ..errors import ConfigError
from .progress import Progress

# Imported once by the forkserver, so that every worker starts as a fork of a process that
# already has them (a few ms) instead of importing pyarrow, pandas and the stages itself (~0.4 s
# a worker, every time a pool starts). Imports only: Arrow's thread pool and memory are made
# later, in the workers.
PRELOAD = ["pyarrow", "pandas", "orjson", "twiki.stages.extract", "twiki.stages.diff",
           "twiki.stages.training_text", "twiki.stages.facts", "twiki.stages.mapping",
           "twiki.stages.factdiff", "twiki.stages.align", "twiki.stages.probes"]

T = TypeVar("T")
R = TypeVar("R")


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
    (about a second: imports of pyarrow and the stage modules) per phase."""

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {workers}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: children start from a clean process, not a fork of one that may
            # hold pyarrow's threads (forking those can deadlock).
            if sys.platform == "win32":
                ctx = mp.get_context("spawn")
            else:
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload(PRELOAD)   # no effect once the server runs
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
            atexit.register(self.close)
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
            pool = self._get_pool()
            futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
            pending = set(futures)
            try:
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
                        bar.update(weights[i])
            except BaseException:
                for other in pending:
                    other.cancel()
                raise
        return results


def _warm() -> None:
    import importlib
    for name in PRELOAD:
        importlib.import_module(name)
    import pyarrow as pa
    pa.array([None])        # the first conversion from Python objects loads pyarrow's pandas shim
