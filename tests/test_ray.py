"""The Ray executor on real Ray runtimes: a private local one and a two-node cluster on
loopback. Both build the monthly chain on the sample mirror byte-identical to the local
executor, also through killed workers, transient I/O errors and a relaunch; bad input
surfaces as the same one-line TwikiError, never retried.

What is built is listed in STAGES: a stage not yet part of the monthly build goes there.
"""

from __future__ import annotations

import contextlib
import errno
import html
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import pytest

ray = pytest.importorskip(
    "ray", reason="Ray is an optional extra: pip install 'twiki[ray]' (make test installs it)")

from conftest import SAMPLE_MIRROR, sample_pages  # noqa: E402
from executor_checks import assert_moves_with_each_task  # noqa: E402
from mirror_kit import build_run, page_title, wikitext_sha1, write_listing  # noqa: E402
from pipelines.snapshot import build_month  # noqa: E402
from twiki.cli import build_parser, main, make_executor  # noqa: E402
from twiki.config import load_build_config  # noqa: E402
from twiki.sources.download import download_month  # noqa: E402
from twiki.errors import ConfigError, InputError  # noqa: E402
from twiki.engine.executors import LocalExecutor  # noqa: E402
from twiki.engine.executors_ray import ClusterError, RayExecutor  # noqa: E402
from twiki.stages.extract import ExtractConfig, ExtractRunOptions, extract_month  # noqa: E402
from twiki.engine.paths import DataRoot  # noqa: E402

pytestmark = pytest.mark.ray

# Ray workers cannot import this test module (tests/ is not on their path): ship its
# functions (the fault injector below, conftest's nap) by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
ray.cloudpickle.register_pickle_by_value(sys.modules["conftest"])

RAY_BIN = Path(sys.executable).with_name("ray")
# Seconds any one test may take before it fails instead of hanging CI.
TEST_LIMIT_S = 300


# ---------------------------------------------------------------------------------------
# What is compared: the monthly build (`make snapshot`: download, extract both months, diff),
# on a mirror holding the sample month and a next month made from it. Stages that are not
# part of the monthly build yet go into STAGES after it. ~17 extract chunks (0.05 MB) and 8
# shards a month: enough tasks for two nodes and for a failure to land mid-build.

MONTH, NEXT = "2016-05", "2016-06"
# The next month: every 4th article gains a sentence at its start (and so a new sha1), one
# article is deleted, the rest are unchanged.
ADDED = "In June 2016 this article gained a sentence about {title}.\n\n"


def _edited(page: bytes) -> bytes:
    """The page with ADDED at the start of its text, and the sha1 of the new text."""
    m = re.search(rb"(<text[^>]*>)(.*?)(</text>)", page, re.S)
    title = html.unescape(page_title(page))
    old = html.unescape(m.group(2).decode("utf-8"))
    added = ADDED.format(title=title)
    page = page[:m.end(1)] + xml_escape(added).encode("utf-8") + page[m.start(2):]
    return re.sub(rb"<sha1>[0-9a-z]*</sha1>",
                  f"<sha1>{wikitext_sha1(added + old)}</sha1>".encode(), page, count=1)


@pytest.fixture(scope="module")
def two_month_mirror(tmp_path_factory) -> Path:
    mirror = tmp_path_factory.mktemp("mirror")
    shutil.copytree(SAMPLE_MIRROR, mirror, dirs_exist_ok=True)
    header, pages = sample_pages()
    articles = [i for i, p in enumerate(pages)
                if b"<ns>0</ns>" in p and b"<redirect" not in p]
    edited = set(articles[::4])
    nxt = [_edited(p) if i in edited else p for i, p in enumerate(pages)
           if i != articles[1]]
    build_run(mirror, header, nxt, run_date=NEXT.replace("-", "") + "01")
    write_listing(mirror)
    return mirror


def stage_monthly_build(root: DataRoot, executor, mirror: Path) -> None:
    res = build_month(NEXT, mirrors=[str(mirror)], data_root=root, executor=executor,
                      config=load_build_config(sets=["shards=8", "extract_run.chunk_mb=0.05"]))
    assert res.diff is not None and res.diff.state == "built"


STAGES = [stage_monthly_build]


def artifacts(folder: Path) -> dict[str, object]:
    """What must not depend on the executor: every shard's bytes and each manifest's content
    fields (not its timings), for every artifact under the data root but the raw dumps."""
    out: dict[str, object] = {}
    for manifest in sorted(folder.rglob("_manifest*.json")):
        artifact = manifest.parent
        if artifact.relative_to(folder).parts[0] in ("raw", "work"):
            continue
        for part in sorted(artifact.glob("part-*.parquet")):
            out[str(part.relative_to(folder))] = part.read_bytes()
        m = json.loads(manifest.read_text())
        out[str(manifest.relative_to(folder))] = {
            k: m.get(k) for k in ("stage", "key", "rows", "config", "inputs")} | {
            "counts": (m.get("report") or {}).get("counts")}
    return out


def build(folder: Path, executor, mirror: Path) -> dict[str, object]:
    """Run STAGES into a fresh data root; returns its `artifacts`."""
    root = DataRoot(folder)
    for stage in STAGES:
        stage(root, executor, mirror)
    return artifacts(folder)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, two_month_mirror):
    """The same build with the local executor."""
    ref = build(tmp_path_factory.mktemp("local"), LocalExecutor(1), two_month_mirror)
    diffset = ref[f"diffsets/enwiki/{MONTH}_{NEXT}/_manifest.json"]
    assert diffset["rows"] > 0  # the edits made it into the diffset: something to compare
    return ref


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    assert sum(k.endswith(".parquet") for k in want) >= 3 * 8  # two snapshots and a diffset
    for k in want:
        assert got[k] == want[k], f"{k} differs from the local executor's"


@pytest.fixture(autouse=True)
def time_limit():
    """Fail a test that runs past TEST_LIMIT_S (SIGALRM lands between `ray.wait` polls)."""
    def expired(*_):
        raise TimeoutError(f"test ran past {TEST_LIMIT_S}s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------------------
# Fault injection: a wrapper around a stage's task function, told per (function, task
# index) what to do in the first run of that function (extract runs once per month),
# logging every attempt (index, pid, node, first run) to a file per function.

def chaos(fn, plan: dict, log_dir: str, item):
    i, task = item
    name = fn.__name__
    node = ray.get_runtime_context().get_node_id()
    with open(os.path.join(log_dir, f"{name}.log"), "a") as f:
        f.write(f"{i} {os.getpid()} {node} {bool(plan)}\n")
    action = plan.get((name, i))
    first = action and _first_attempt(log_dir, name, i)
    if action == "bad_input":
        raise InputError(f"injected bad input in task {i}")
    if action == "eio_once" and first:
        raise OSError(errno.EIO, "injected I/O error")
    if action == "kill_always" or (action == "kill_before" and first):
        _wait_to_be_killed(log_dir, name, i)
    result = fn(task)
    if action == "kill_after" and first:  # output written, result not yet reported
        _wait_to_be_killed(log_dir, name, i)
    return result


def _first_attempt(log_dir: str, name: str, i: int) -> bool:
    try:
        os.close(os.open(os.path.join(log_dir, f"{name}-{i}.first"), os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


def _wait_to_be_killed(log_dir: str, name: str, i: int) -> None:
    """Hand this worker's pid to the test's killer thread and block until SIGKILL lands."""
    tmp = os.path.join(log_dir, f".{name}-{i}-{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, os.path.join(log_dir, f"{name}-{i}-{os.getpid()}.kill"))
    time.sleep(120)
    raise AssertionError("the worker was not killed")


class ChaosRay(RayExecutor):
    """RayExecutor whose tasks go through `chaos`, and a thread that SIGKILLs the worker
    processes that ask for it (from outside, as the OOM killer or a node loss would)."""

    def __init__(self, workers=2, *, plan, log_dir: Path, **kw):
        super().__init__(workers, **kw)
        self.plan, self.log_dir = plan, log_dir
        self.killed: list[int] = []
        self.seen: set[str] = set()
        self.planned: dict[tuple[str, int], str] = {}  # the plan, indexes made positive
        self._stop = threading.Event()
        self._killer = threading.Thread(target=self._kill_loop, daemon=True)
        self._killer.start()

    def run(self, fn, tasks, **kw):
        first = fn.__name__ not in self.seen
        self.seen.add(fn.__name__)
        # A negative index counts from the end, as in Python.
        plan = {(name, i % len(tasks)): v for (name, i), v in self.plan.items()
                if name == fn.__name__} if first and tasks else {}
        self.planned.update(plan)
        return super().run(partial(chaos, fn, plan, str(self.log_dir)),
                           list(enumerate(tasks)), **kw)

    def _kill_loop(self):
        while not self._stop.is_set():
            for flag in self.log_dir.glob("*.kill"):
                pid = int(flag.read_text())
                flag.unlink()
                # Only ever a Ray worker (its process title is "ray::<task name>").
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            time.sleep(0.02)

    def attempts(self, name: str, first_run: bool = True) -> list[tuple[int, int, str]]:
        """(task index, pid, node) of every attempt in the first (or every) run of `name`
        that had a plan."""
        path = self.log_dir / f"{name}.log"
        rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
        return [(int(i), int(pid), node) for i, pid, node, planned in rows
                if planned == "True" or not first_run]

    def close(self):
        self._stop.set()
        self._killer.join()
        super().close()


def cli_has_ray() -> bool:
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["extract", "--month", MONTH, "--executor", "ray"])
        return True
    except SystemExit:
        return False


def top_level_os_stat(path):
    return os.stat(path)


# ---------------------------------------------------------------------------------------
# A private local Ray runtime (one per class: starting one costs ~5 s).

@pytest.fixture(scope="class")
def runtime():
    ex = RayExecutor(2)
    ex.run(abs, [-1], desc="start ray")
    yield ex
    ex.close()
    assert not ray.is_initialized()


@pytest.mark.usefixtures("runtime")
class TestLocalRuntime:

    def test_builds_the_same_artifacts_as_the_local_executor(self, runtime, reference,
                                                             two_month_mirror, tmp_path):
        assert_same(build(tmp_path, runtime, two_month_mirror), reference)
        assert runtime.workers == 2

    def test_results_come_back_in_task_order(self, runtime):
        assert runtime.run(abs, list(range(0, -50, -1)), desc="abs") == list(range(50))
        assert runtime.run(abs, [], desc="nothing") == []

    def test_progress_moves_as_each_task_finishes(self, runtime, every_progress_line):
        assert_moves_with_each_task(runtime, every_progress_line)

    def test_a_killed_worker_is_retried_and_the_output_is_the_same(self, reference,
                                                                   two_month_mirror, tmp_path):
        logs = tmp_path / "logs"
        logs.mkdir()
        plan = {("extract_chunk", 3): "kill_before", ("extract_chunk", -1): "kill_after",
                ("reduce_shard", 2): "kill_before", ("reduce_shard", 5): "kill_after",
                ("diff_shard", 4): "kill_before", ("diff_shard", 6): "kill_after"}
        with ChaosRay(plan=plan, log_dir=logs) as ex:
            got = build(tmp_path / "data", ex, two_month_mirror)
            assert len(ex.killed) == len(plan)
            assert len(ex.planned) == len(plan)
            for name, i in ex.planned:
                pids = [pid for j, pid, _ in ex.attempts(name) if j == i]
                assert len(pids) == 2 and pids[0] in ex.killed, (name, i, pids)
        assert_same(got, reference)

    def test_a_transient_io_error_is_retried(self, reference, two_month_mirror, tmp_path):
        logs = tmp_path / "logs"
        logs.mkdir()
        with ChaosRay(plan={("extract_chunk", 5): "eio_once"}, log_dir=logs) as ex:
            got = build(tmp_path / "data", ex, two_month_mirror)
            assert [i for i, _, _ in ex.attempts("extract_chunk")].count(5) == 2
        assert_same(got, reference)

    def test_bad_input_surfaces_once_as_the_same_error(self, two_month_mirror, tmp_path):
        logs = tmp_path / "logs"
        logs.mkdir()
        with ChaosRay(plan={("extract_chunk", 4): "bad_input"}, log_dir=logs) as ex:
            with pytest.raises(InputError) as err:
                build(tmp_path / "data", ex, two_month_mirror)
            attempts = [i for i, _, _ in ex.attempts("extract_chunk")]
        assert type(err.value) is InputError  # not Ray's wrapper: the CLI prints one line
        assert str(err.value) == "injected bad input in task 4"
        assert attempts.count(4) == 1  # bad input is never retried

    def test_a_relaunch_skips_finished_tasks(self, runtime, reference, two_month_mirror,
                                             tmp_path):
        """A build stopped by an error keeps its finished tasks' outputs; the relaunch
        reuses them (same files, untouched) and publishes the same artifacts."""
        logs = tmp_path / "logs"
        logs.mkdir()
        root = DataRoot(tmp_path / "data")
        with ChaosRay(plan={("extract_chunk", -1): "bad_input"}, log_dir=logs) as ex:
            with pytest.raises(InputError):
                build(root.root, ex, two_month_mirror)
        work = list(root.root.glob("work/extract/**/chunk-*.arrow"))
        assert work, "finished map tasks left their outputs"
        before = {p: p.stat().st_mtime_ns for p in work}
        res = extract_month(MONTH, data_root=root, executor=runtime,
                            config=ExtractConfig(shards=8),
                            options=ExtractRunOptions(chunk_mb=0.05, keep_work=True))
        assert res.state == "built"
        assert {p: p.stat().st_mtime_ns for p in work} == before
        assert_same(build(root.root, runtime, two_month_mirror), reference)

    def test_a_corrupt_dump_is_the_same_one_line_error_as_with_the_local_pool(self, runtime,
                                                                             tmp_path):
        root = DataRoot(tmp_path)
        download_month(MONTH, mirrors=[str(SAMPLE_MIRROR)], data_root=root)
        part = sorted(root.raw("enwiki", "20160501").glob("*multistream1.xml*"))[0]
        data = bytearray(part.read_bytes())
        data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
        part.write_bytes(bytes(data))
        errors = []
        for ex in (LocalExecutor(1), runtime):
            with pytest.raises(InputError, match=r"corrupt bz2 data") as err:
                extract_month(MONTH, data_root=root, executor=ex, config=ExtractConfig(shards=8),
                              options=ExtractRunOptions(chunk_mb=0.05))
            errors.append((type(err.value), str(err.value)))
        assert errors[0] == errors[1]
        assert not root.snapshot("enwiki", MONTH).exists()

    @pytest.mark.skipif(not cli_has_ray(), reason="twiki/cli.py has no --executor ray yet")
    def test_cli_snapshot_on_ray(self, runtime, reference, two_month_mirror, tmp_path,
                                 capsys):
        args = ["snapshot", "--month", NEXT, "--mirror", str(two_month_mirror), "--data-root",
                str(tmp_path), "--executor", "ray", "--workers", "2", "--shards", "8",
                "--chunk-mb", "0.05"]
        assert main(args) == 0
        capsys.readouterr()
        assert_same(artifacts(tmp_path), reference)

        part = sorted(tmp_path.glob("raw/enwiki/20160601/*multistream1.xml*"))[0]
        data = bytearray(part.read_bytes())
        data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
        part.write_bytes(bytes(data))
        shutil.rmtree(tmp_path / "snapshots")
        assert main(["extract"] + args[1:3] + args[5:]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("twiki: error: ") and "corrupt bz2" in err[0]

    def test_a_missing_file_names_the_node_and_the_shared_data_root(self, runtime):
        with pytest.raises(ClusterError, match=r"/nonexistent/x: no such file on Ray node "
                                               r".*same path.*shared filesystem"):
            runtime.run(top_level_os_stat, ["/nonexistent/x"], desc="stat")

    def test_a_bug_keeps_its_remote_traceback(self, runtime):
        with pytest.raises(ValueError, match="invalid literal"):
            runtime.run(int, ["not a number"], desc="int")

    def test_a_worker_lost_every_time_fails_with_a_clear_error(self, tmp_path):
        logs = tmp_path / "logs"
        logs.mkdir()
        with ChaosRay(plan={("abs", 0): "kill_always"}, log_dir=logs, max_retries=1) as ex:
            with pytest.raises(ClusterError, match=r"task 0 was lost 2 times.*rerun"):
                ex.run(abs, [-1, -2], desc="doomed")
            assert len(ex.killed) == 2

    def test_joining_a_different_cluster_from_a_connected_process_is_refused(self, runtime):
        with pytest.raises(ConfigError, match="already connected"):
            RayExecutor(1, address="127.0.0.1:1")


# ---------------------------------------------------------------------------------------
# Two Ray nodes on loopback, started and stopped by the test: the head on 127.0.0.2 and a
# worker node on 127.0.0.3 (Ray rewrites 127.0.0.1 to the machine's public address; any
# other 127.x address stays on the loopback interface).

def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(stat.parent.name))
    return alive


class Cluster:
    HEAD, NODE = "127.0.0.2", "127.0.0.3"

    def __init__(self):
        self.port = _free_port(self.HEAD)
        self.address = f"{self.HEAD}:{self.port}"
        # Short: Ray's unix socket paths live under it (at most 107 bytes).
        self.temp = tempfile.mkdtemp(prefix="twr")
        # Token authentication, with the token Ray keeps in ~/.ray/auth_token (made if
        # missing): the one this process's Ray client has already loaded, if any.
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
        self.procs: list[subprocess.Popen] = []

    def _start(self, *args: str, log: str) -> None:
        # --block: each node is one process group we can stop without `ray stop`, which
        # would stop every Ray on the machine (other users' included).
        self.procs.append(subprocess.Popen(
            [str(RAY_BIN), "start", "--block", "--num-cpus=1", "--object-store-memory=80000000",
             "--disable-usage-stats", f"--temp-dir={self.temp}", *args],
            env=self.env, start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=open(os.path.join(self.temp, log), "w"), stderr=subprocess.STDOUT))

    def start(self) -> None:
        # (Ray before token authentication has no such command, and needs no token.)
        subprocess.run([str(RAY_BIN), "get-auth-token", "--generate"], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        self._start("--head", f"--port={self.port}", f"--node-ip-address={self.HEAD}",
                    "--include-dashboard=false", log="head.log")
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((self.HEAD, self.port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.procs[0].poll() is not None:
                    raise RuntimeError(f"the Ray head did not start: {self.log('head.log')}")
                time.sleep(0.2)
        self._start(f"--address={self.address}", f"--node-ip-address={self.NODE}",
                    log="node.log")

    def log(self, name: str) -> str:
        return Path(self.temp, name).read_text()[-2000:]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:  # whatever did not stop in time, raylet's workers included
            for _ in range(50):
                if not _group_alive(p.pid):
                    break
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            p.wait(10)
        left = [pid for p in self.procs for pid in _group_alive(p.pid)]
        shutil.rmtree(self.temp, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


@pytest.fixture(scope="class")
def cluster():
    assert not ray.is_initialized()
    c = Cluster()
    with pytest.MonkeyPatch.context() as mp:
        for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED"):
            mp.setenv(k, c.env[k])
        try:
            c.start()
            ex = RayExecutor(1, address=c.address)
            deadline = time.monotonic() + 60
            while sum(n["Alive"] for n in ray.nodes()) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the second node did not join: {c.log('node.log')}")
                time.sleep(0.2)
            yield c
            ex.close()
        finally:
            if ray.is_initialized():
                ray.shutdown()
            c.stop()


class TestTwoNodeCluster:

    def test_cluster_has_two_loopback_nodes(self, cluster):
        ips = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
        assert ips == [Cluster.HEAD, Cluster.NODE]
        ex = RayExecutor(1, address=cluster.address)
        assert ex.workers == 2  # the cluster's CPUs, not --workers

    def test_builds_the_same_artifacts_on_two_nodes(self, cluster, reference,
                                                    two_month_mirror, tmp_path):
        logs = tmp_path / "logs"
        logs.mkdir()
        with ChaosRay(1, plan={}, log_dir=logs, address=cluster.address) as ex:
            got = build(tmp_path / "data", ex, two_month_mirror)
            nodes = {node for name in ("extract_chunk", "reduce_shard", "diff_shard")
                     for _, _, node in ex.attempts(name, first_run=False)}
        assert len(nodes) == 2, "both nodes ran tasks"
        assert_same(got, reference)

    def test_a_killed_worker_on_the_cluster_is_retried(self, cluster, reference,
                                                       two_month_mirror, tmp_path):
        logs = tmp_path / "logs"
        logs.mkdir()
        plan = {("extract_chunk", 7): "kill_before", ("reduce_shard", 6): "kill_after",
                ("diff_shard", 1): "kill_before"}
        with ChaosRay(1, plan=plan, log_dir=logs, address=cluster.address) as ex:
            got = build(tmp_path / "data", ex, two_month_mirror)
            assert len(ex.killed) == len(plan) == len(ex.planned)
            # ex.planned: the plan's indexes within each function's first run (the monthly
            # build's first extract_chunk run reads ahead the parts verified so far, so it
            # may hold fewer than all chunks)
            for name, i in ex.planned:
                assert [j for j, _, _ in ex.attempts(name)].count(i) == 2
        assert_same(got, reference)


# ---------------------------------------------------------------------------------------
# Choosing the executor.

def test_make_executor_ray_with_a_ray_client_address_is_refused():
    with pytest.raises(ConfigError, match=r"ray://.*ray\[client\]"):
        make_executor("ray", 2, address="ray://head:10001")


def test_an_address_where_nothing_listens_fails_at_once():
    if ray.is_initialized():
        pytest.skip("needs a process not connected to Ray")
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=r"127.0.0.1:\d+: nothing answers there"):
        make_executor("ray", 2, address=f"127.0.0.1:{_free_port('127.0.0.1')}")
    assert time.monotonic() - t0 < 10


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    monkeypatch.delitem(sys.modules, "twiki.engine.executors_ray")
    with pytest.raises(ConfigError, match=r"--executor ray needs Ray .*pip install 'twiki\[ray\]'"):
        make_executor("ray", 2)


def test_make_executor_local_refuses_an_address():
    with pytest.raises(ConfigError, match="--address needs --executor ray"):
        make_executor("local", 2, address="127.0.0.1:6379")
