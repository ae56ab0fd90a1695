"""The local pool on worker loss, through the CLI: a worker killed as the OOM killer does is
replaced and its tasks run again (the build ends as a clean one), and workers never outlive a
main process killed with kill -9. Processes are found in /proc (Linux)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SAMPLE_MIRROR
from twiki.engine.executors import MAX_RETRIES, LocalExecutor, WorkerLostError
from twiki.engine.paths import DataRoot
from twiki.sources.download import download_month

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="finds worker processes in /proc")

MONTH = "2016-05"
# Small chunks: many extract tasks, so a worker is killed while the pool has work.
EXTRACT = ["extract", "--month", MONTH, "--shards", "8", "--chunk-mb", "0.02", "--workers", "2"]
GONE_WITHIN_S = 10  # generous: the workers exit at once, but CI machines are shared


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the name, which may hold spaces
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    """Running or sleeping: a zombie (dead, not yet reaped) holds no memory."""
    st = _state_and_parent(pid)
    return st is not None and st[0] not in "ZX"


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        st = _state_and_parent(int(name)) if name.isdigit() else None
        if st is not None:
            children.setdefault(st[1], []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _wait_for_workers(proc: subprocess.Popen, count: int) -> list[int]:
    """Pool workers of a running CLI: its grandchildren (the forkserver forks them)."""
    while proc.poll() is None:
        workers = [p for p in _descendants(proc.pid)
                   if (st := _state_and_parent(p)) and st[1] != proc.pid]
        if len(workers) >= count:
            return workers
        time.sleep(0.005)
    raise AssertionError(f"the run ended (status {proc.returncode}) before its pool started")


def _extract(root: Path) -> list[str]:
    return [sys.executable, "-m", "twiki", *EXTRACT, "--data-root", str(root)]


def _start(root: Path) -> subprocess.Popen:
    return subprocess.Popen(_extract(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _shards(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("part-*.parquet"))}


@pytest.fixture
def downloaded(tmp_path) -> Path:
    root = tmp_path / "downloaded"
    download_month(MONTH, mirrors=[str(SAMPLE_MIRROR)], data_root=DataRoot(root))
    return root


def test_a_killed_worker_is_replaced_and_the_run_ends_as_a_clean_one(tmp_path, downloaded):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    shutil.copytree(downloaded, clean)
    shutil.copytree(downloaded, killed)
    ref = subprocess.run(_extract(clean), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr

    proc = _start(killed)
    os.kill(_wait_for_workers(proc, 1)[0], signal.SIGKILL)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert f"again on a fresh pool (retry 1 of {MAX_RETRIES})" in err  # it died mid-run
    snap = DataRoot(killed).snapshot("enwiki", MONTH)
    assert out.strip() == str(snap)
    assert _shards(snap) == _shards(DataRoot(clean).snapshot("enwiki", MONTH))


def test_workers_end_with_a_main_process_killed_by_kill_9(downloaded):
    proc = _start(downloaded)
    _wait_for_workers(proc, 2)
    started = _descendants(proc.pid)  # the workers, the forkserver, the resource tracker
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + GONE_WITHIN_S
    try:
        while any(map(_alive, started)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in started if _alive(p)], "processes outlived the killed run"
    finally:
        for pid in filter(_alive, started):  # never leave a failed run's workers behind
            os.kill(pid, signal.SIGKILL)


# -- the retry bound, on the executor itself ------------------------------------------------

def first_one_dies(task: tuple[str, int]) -> int:
    """Returns the task's number; the first task to start, whichever it is, kills its own
    worker as the OOM killer would (the marker file it creates says one did)."""
    marker, number = task
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return number
    os.kill(os.getpid(), signal.SIGKILL)


def die_always(_task) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def worker_pid(_task) -> int:
    return os.getpid()


def test_tasks_of_a_killed_worker_run_again_and_results_keep_task_order(tmp_path):
    marker = str(tmp_path / "died")
    with LocalExecutor(2) as ex:
        assert ex.run(first_one_dies, [(marker, i) for i in range(6)], desc="one dies") == [
            0, 1, 2, 3, 4, 5]


def test_a_task_that_always_kills_its_worker_stops_with_one_line():
    with LocalExecutor(2, max_retries=1) as ex:
        with pytest.raises(WorkerLostError) as e:
            ex.run(die_always, [1, 2, 3], desc="dying")
        message = str(e.value)
        assert "\n" not in message
        assert message.startswith("dying: a worker process died 2 times")
        assert "rerun the same command to resume" in message
        # and the executor is still usable: the next run gets a fresh pool
        assert ex.run(abs, [-1, -2], desc="abs") == [1, 2]


def test_a_worker_killed_between_runs_does_not_fail_the_next_run(caplog):
    with LocalExecutor(2) as ex:
        pid = ex.run(worker_pid, [1, 2], desc="pids")[0]
        os.kill(pid, signal.SIGKILL)
        while _state_and_parent(pid) is not None:  # until the forkserver has reaped it
            time.sleep(0.01)
        assert ex.run(abs, [-1, -2, -3], desc="abs") == [1, 2, 3]
    assert "abs: a worker process died" in caplog.text
