"""The Ray executor: `Executor.run` on a Ray cluster, or on a local Ray runtime.

One Ray task per stage task. Tasks write their own outputs atomically and skip themselves when
the output exists, so a retried or relaunched task redoes nothing that finished. Paths travel
inside tasks as they are: every node must see the data root at the same path (pipelines/
CLUSTER.md). Needs the optional extra: pip install 'twiki[ray]'.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from typing import Callable

import ray
from ray.exceptions import RayError, RayTaskError

from ..errors import ConfigError, TwikiError
from .executors import Executor
from .progress import Progress

log = logging.getLogger("twiki")

# Smallest object store Ray accepts is ~75 MiB; tasks exchange only small reports (outputs go
# to files), so more would only take shared memory from the stages themselves.
OBJECT_STORE_MB = 100

# Seconds the driver waits for results before refreshing the progress line.
POLL_S = 0.5

# errnos worth another attempt: a shared filesystem or network that hiccups. Anything else
# (a missing file, a corrupt input, a bug) fails the same way every time.
TRANSIENT_ERRNOS = frozenset({errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN,
                              errno.EBUSY, errno.EINTR, errno.ENOLCK, errno.ECONNRESET,
                              errno.ECONNABORTED, errno.ECONNREFUSED, errno.EHOSTUNREACH,
                              errno.ENETUNREACH, errno.ENETDOWN})


class ClusterError(TwikiError):
    """A task that the cluster could not complete (its worker or node died too often)."""


class TransientTaskError(Exception):
    """A task's OSError that may pass on a second attempt; the only error Ray retries."""

    def __init__(self, message: str, original: BaseException | None = None):
        super().__init__(message)
        self.original = original

    def __reduce__(self):
        return (type(self), (self.args[0], self.original))


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and (isinstance(exc, (ConnectionError, TimeoutError))
                                         or exc.errno in TRANSIENT_ERRNOS)


def run_task(fn: Callable, task, cwd: str):
    """Runs on a Ray worker: one task in the driver's working directory (so relative paths
    mean the same on every node), with errors sorted into retried and final ones."""
    if os.getcwd() != cwd:
        try:
            os.chdir(cwd)
        except OSError:
            pass  # absolute paths still work; a relative one fails below with the hint
    try:
        return fn(task)
    except TwikiError:
        raise
    except FileNotFoundError as e:
        where = e.filename or str(e)
        rel = "" if os.path.isabs(str(where)) else f" (relative to {os.getcwd()})"
        raise ClusterError(
            f"{where}: no such file on Ray node {socket.gethostname()}{rel}. Every node must "
            f"see the data root at the same path: put it on a shared filesystem and pass an "
            f"absolute --data-root (see pipelines/CLUSTER.md)") from None
    except OSError as e:
        if is_transient(e):
            raise TransientTaskError(f"{type(e).__name__}: {e}", e) from e
        raise


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on an address where nothing listens: Ray itself retries for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not HOST:PORT (or 'auto')")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout_s).close()
    except OSError as e:
        raise ClusterError(f"could not join the Ray cluster at {address}: nothing answers "
                           f"there ({e.strerror or e}). Is `ray start --head` running on that "
                           f"host, and is the port its GCS port (6379 by default)? (see "
                           f"pipelines/CLUSTER.md)") from None


def _connect_error(address: str | None, e: BaseException) -> str:
    chain, cause = [], e
    while cause is not None and len(chain) < 5:
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    if address and any("AuthToken" in c or "AuthenticationError" in c for c in chain):
        return (f"the Ray cluster at {address} refused this driver's authentication token: "
                f"set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or "
                f"~/.ray/auth_token as `ray get-auth-token` prints it on the head node), or "
                f"use --address auto on a node of the cluster (see pipelines/CLUSTER.md)")
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if address:
        return (f"could not join the Ray cluster at {address} ({first}): is `ray start "
                f"--head` running there, and is the port right? (see pipelines/CLUSTER.md)")
    return f"could not start a local Ray runtime ({first})"


class RayExecutor(Executor):
    """Runs tasks as Ray tasks; results come back in task order.

    address: a running cluster ("host:port" of its head, or "auto" on one of its nodes);
    default $RAY_ADDRESS, and without it a private local Ray runtime with `workers` CPUs that
    lives as long as this executor. Joining a cluster happens here, so a wrong address fails
    before any work; the local runtime starts at the first `run`.
    max_retries: attempts after a worker or node dies, and after a transient OSError.
    """

    def __init__(self, workers: int = 1, *, address: str | None = None, max_retries: int = 3,
                 object_store_mb: int = OBJECT_STORE_MB, cpus_per_task: float = 1):
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {workers}")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be 0 or more, not {max_retries}")
        self.workers = workers
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.max_retries = max_retries
        self.object_store_mb = object_store_mb
        self.cpus_per_task = cpus_per_task
        self._owned = False  # whether close() shuts Ray down (we started or joined it)
        self._remote = None
        if self.address and self.address.startswith("ray://"):
            raise ConfigError(f"--address {self.address}: Ray Client (ray://) needs "
                              f"ray[client]; run twiki on a node of the cluster with --address "
                              f"HOST:PORT or 'auto'")
        if self.address:
            self._connect()

    # -- lifecycle --------------------------------------------------------------------

    def _connect(self) -> None:
        if ray.is_initialized():  # a caller (a notebook, a test) already set Ray up
            current = ray.get_runtime_context().gcs_address
            if self.address not in (None, "auto", current):
                raise ConfigError(f"Ray is already connected to {current} in this process, "
                                  f"not to --address {self.address}")
            self._note_cluster()
            return
        common = dict(include_dashboard=False, logging_level=logging.WARNING,
                      namespace="twiki")
        if self.address and self.address != "auto":
            _probe(self.address)
        try:
            if self.address:
                ray.init(address=self.address, **common)
            else:
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a private runtime
                # "local": a private runtime, never a cluster found in /tmp/ray by chance.
                ray.init(address="local", num_cpus=self.workers,
                         object_store_memory=self.object_store_mb << 20,
                         **common)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError, RayError) as e:
            raise ClusterError(_connect_error(self.address, e)) from None
        self._owned = True
        self._note_cluster()

    def _note_cluster(self) -> None:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if self.address or not self._owned:
            # On a cluster its CPUs set the parallelism, not --workers.
            self.workers = max(cpus, 1)
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        log.info("ray: %d node(s), %d CPUs", nodes, cpus)

    def close(self) -> None:
        """Leave the cluster (a private local runtime stops with it)."""
        if self._owned and ray.is_initialized():
            ray.shutdown()
        self._owned = False
        self._remote = None

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running ----------------------------------------------------------------------

    def run(self, fn, tasks, *, desc, weights=None, unit="task"):
        weights = list(weights) if weights is not None else [1.0] * len(tasks)
        if not tasks:
            return []
        if not ray.is_initialized():
            self._connect()
        if self._remote is None:
            self._remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=self.max_retries,
                                      retry_exceptions=[TransientTaskError])(run_task)
        remote = self._remote.options(name=desc)  # how `ray list tasks` shows them
        cwd = os.getcwd()
        fn_ref = ray.put(fn)  # sent once, not with every task
        refs = [remote.remote(fn_ref, task, cwd) for task in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list = [None] * len(tasks)
        pending = list(refs)
        try:
            with Progress(desc, total=sum(weights), unit=unit) as bar:
                while pending:
                    # Back as soon as one task is done (the bar moves with each), or after
                    # POLL_S with none (the bar's rate and ETA are refreshed).
                    done, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
                    if not done:
                        bar.update(0)
                    for ref in done:
                        i = index[ref]
                        results[i] = self._result(ref, i, desc)
                        bar.update(weights[i])
        except BaseException:
            for ref in pending:  # queued ones never start; running ones are interrupted
                ray.cancel(ref)
            raise
        return results

    def _result(self, ref, i: int, desc: str):
        """The task's result, or its error as the driver should see it: a TwikiError as the
        same one-line error, a bug with its remote traceback, a lost worker as ClusterError."""
        try:
            return ray.get(ref)
        except RayTaskError as e:
            cause = e.cause
            if isinstance(cause, TwikiError):
                raise cause from None
            if isinstance(cause, TransientTaskError):
                raise ClusterError(f"{desc}: task {i} failed {self.max_retries + 1} times: "
                                   f"{cause}; rerun the same command to resume (finished "
                                   f"tasks are kept)") from None
            raise
        except RayError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ClusterError(f"{desc}: task {i} was lost {self.max_retries + 1} times "
                               f"({type(e).__name__}: {first}); if workers ran out of memory, "
                               f"lower --chunk-mb; rerun the same command to resume (finished "
                               f"tasks are kept)") from None
