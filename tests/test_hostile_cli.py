"""Hostile and unlucky input at the command line (issue 16, items 5, 8, 9, 10), each through
the real CLI in a subprocess: the data root's lock, a full disk, a data root that is a file or
read-only, arguments out of range, a Wikidata dump given as a folder, a UTF-16 dump.

A full disk and a read-only data root are real: a small (or read-only) tmpfs mounted in a
private mount namespace (`unshare`), skipped where the system allows none."""

from __future__ import annotations

import bz2
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mirror_kit
from conftest import SAMPLE_MIRROR, sample_pages
from mirror_kit import FOOTER, page_id, page_title
from twiki.engine.lock import EXIT_LOCKED, LOCK_NAME, DataRootLock

SHARDS = "8"
ENTITIES_2016_05 = SAMPLE_MIRROR / "wikidatawiki" / "entities" / "20160502"


def twiki(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "twiki", *map(str, args)]


def snapshot(root: Path, mirror: Path, *extra: str, command: str = "snapshot") -> list[str]:
    """The sample's month A built by `command` (snapshot or cron), logging only warnings."""
    return twiki(command, "--month", "2016-05", "--no-diff", "--data-root", root, "--mirror",
                 mirror, "--shards", SHARDS, "-q", *extra)


def one_line(res: subprocess.CompletedProcess) -> str:
    """The command's stderr, which must be exactly one line and no traceback."""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def wait_for_lock(root: Path, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """Until `proc` has written itself into the data root's lock file."""
    lock = root / LOCK_NAME
    deadline = time.monotonic() + timeout_s
    while not (lock.exists() and lock.read_text().startswith(f"{proc.pid} ")):
        assert proc.poll() is None, "the command ended before it took the lock"
        assert time.monotonic() < deadline, "the command never took the data root's lock"
        time.sleep(0.01)


# ------------------------------------------------------------------------------------------
# Item 5: every writing command takes the data root's lock.

@pytest.mark.parametrize("holder, contender", [("snapshot", "snapshot"), ("snapshot", "cron"),
                                               ("cron", "snapshot")])
def test_a_second_writer_stops_at_once_naming_the_holder(tmp_path, mirror, holder, contender):
    """Two builds at once: before, one died with a FileNotFoundError traceback (4 of 4 tries)
    and a snapshot beside a cron run the same; now the second exits EXIT_LOCKED with one line
    and the first finishes."""
    first = subprocess.Popen(snapshot(tmp_path, mirror, "--chunk-mb", "0.02", command=holder),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lock(tmp_path, first)
        second = subprocess.run(snapshot(tmp_path, mirror, command=contender),
                                capture_output=True, text=True)
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert "117 articles" in out
    assert second.returncode == EXIT_LOCKED
    line = one_line(second)
    assert f"another twiki {holder} run holds {tmp_path / LOCK_NAME} (pid {first.pid}, " \
           f"started " in line and f"rerun twiki {contender} once it has finished" in line


WRITERS = {
    "download": ["--month", "2016-05"], "extract": ["--month", "2016-05"],
    "diff": ["--from", "2016-05", "--to", "2016-06"],
    "training-text": ["--month", "2016-06", "--from", "2016-05"],
    "facts": ["--month", "2016-05"], "factdiff": ["--from", "2016-05", "--to", "2016-06"],
    "probes": ["--from", "2016-05", "--to", "2016-06"], "export": ["--month", "2016-06"],
    "report": ["--month", "2016-06"], "snapshot": ["--month", "2016-05"],
    "cron": ["--month", "2016-05"],
}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_every_writing_command_takes_the_lock(tmp_path, command):
    with DataRootLock(tmp_path, "twiki test"):
        res = subprocess.run(twiki(command, *WRITERS[command], "--data-root", tmp_path),
                             capture_output=True, text=True)
    assert res.returncode == EXIT_LOCKED, res.stderr
    assert f"another twiki test run holds {tmp_path / LOCK_NAME} (pid {os.getpid()}" \
           in one_line(res)
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]   # nothing written


def test_config_runs_while_a_build_holds_the_lock(tmp_path):
    with DataRootLock(tmp_path, "twiki test"):
        res = subprocess.run(twiki("config", "--data-root", tmp_path), capture_output=True,
                             text=True)
    assert res.returncode == 0 and "[extract_run]" in res.stdout


def test_the_lock_is_reentrant_in_its_process_and_exclusive_across_processes(tmp_path):
    """pipelines/cron.py takes it again under the CLI's `twiki cron`: no waiting on itself."""
    probe = [sys.executable, "-c", "import sys; from twiki.engine.lock import DataRootLock; "
             f"sys.exit(0 if DataRootLock({str(tmp_path)!r}, 'twiki probe').acquire() else 9)"]
    outer = DataRootLock(tmp_path, "twiki cron")
    with outer:
        with DataRootLock(tmp_path, "twiki cron (build)"):
            assert subprocess.run(probe).returncode == 9
        assert subprocess.run(probe).returncode == 9   # the outer holder still has it
    assert subprocess.run(probe).returncode == 0


def test_kill_9_of_the_holder_frees_the_lock_though_its_pool_workers_live_on(tmp_path, mirror):
    """The lock's descriptor never reaches the pool's processes (close-on-exec): a killed
    build's next run starts at once and resumes, whatever the killed run's workers do."""
    cmd = snapshot(tmp_path, mirror, "--chunk-mb", "0.02", "--workers", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not list((tmp_path / "work").rglob("chunk-*.arrow")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "117 articles" in res.stdout


# ------------------------------------------------------------------------------------------
# Item 8: one line, never a traceback.

def _private_tmpfs(mount: Path, options: str, cmd: list[str]) -> subprocess.CompletedProcess:
    """`cmd` run with a tmpfs (mount -o `options`) at `mount`, in a private mount namespace
    (so the mount is gone with the command); skips the test where no namespace can be made."""
    mount.mkdir(exist_ok=True)
    script = 'mount -t tmpfs -o "$1" tmpfs "$2" || exit 99; shift 2; exec "$@"'
    res = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script,
                          "sh", options, str(mount), *cmd], capture_output=True, text=True)
    if res.returncode == 99 or "unshare:" in res.stderr:
        pytest.skip(f"no private tmpfs here: {res.stderr.strip()[:200]}")
    return res


def test_a_full_disk_is_one_line_naming_the_data_root(tmp_path):
    """2.5 MB hold the download (1.9 MB) but not the work files: before, an OSError traceback
    from Arrow's writer ("Error writing bytes to file"); now one line, the root, what to do."""
    root = tmp_path / "small" / "data"
    res = _private_tmpfs(tmp_path / "small", "size=2500k", snapshot(root, SAMPLE_MIRROR))
    assert res.returncode == 1
    line = one_line(res)
    assert line.startswith(f"twiki: error: No space left on device writing under {root} (")
    assert "then rerun the same command: it resumes where it stopped" in line


def test_a_read_only_data_root_is_one_line(tmp_path):
    """Before: an OSError traceback ("Read-only file system: .../raw")."""
    root = tmp_path / "ro" / "data"
    res = _private_tmpfs(tmp_path / "ro", "ro,size=1m", snapshot(root, SAMPLE_MIRROR))
    assert res.returncode == 2
    assert one_line(res) == (f"twiki: error: data root {root} is not writable (Read-only file "
                             f"system): twiki snapshot writes under it; pass --data-root a "
                             f"writable folder")


def test_a_data_root_that_is_a_file_is_one_line(tmp_path):
    """Before: a NotADirectoryError traceback."""
    root = tmp_path / "data"
    root.write_text("not a folder\n")
    res = subprocess.run(snapshot(root, SAMPLE_MIRROR), capture_output=True, text=True)
    assert res.returncode == 2
    assert f"twiki: error: data root {root} is a file, not a folder" in one_line(res)
    assert root.read_text() == "not a folder\n"


@pytest.mark.parametrize("option", [["--chunk-mb", "nan"], ["--chunk-mb", "inf"],
                                    ["--chunk-mb", "0"], ["--chunk-mb", "-1"],
                                    ["--set", "extract_run.chunk_mb=nan"]])
def test_a_chunk_size_that_is_no_size_is_refused(tmp_path, option):
    """Before: nan and inf a ValueError/OverflowError traceback, 0 and -1 a build cut at
    every stream; now exit 2 and one line."""
    res = subprocess.run(snapshot(tmp_path, SAMPLE_MIRROR, *option), capture_output=True,
                         text=True)
    assert res.returncode == 2
    assert "--chunk-mb (extract_run.chunk_mb) must be a positive number of MB such as 2, " \
           "not " in one_line(res)
    assert not (tmp_path / "raw").exists()


# ------------------------------------------------------------------------------------------
# Item 9: arguments checked.

def _descendants(pid: int) -> int:
    """How many processes descend from `pid` now (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue   # a process that ended meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    count, todo = 0, [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        count += len(kids)
        todo += kids
    return count


def test_workers_beyond_the_cpus_are_capped_with_one_warning(tmp_path, mirror):
    """--workers 1000 started a process per task (73 and 2.8 GB for the 4 MB sample); now
    the pool has at most the CPUs' workers, and stderr says so once."""
    cpus = len(os.sched_getaffinity(0))
    proc = subprocess.Popen(snapshot(tmp_path, mirror, "--workers", "1000", "--chunk-mb",
                                     "0.02"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _descendants(proc.pid))
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert "117 articles" in out
    warning = one_line(subprocess.CompletedProcess([], 0, out, err))
    assert warning.endswith(f"WARNING --workers 1000 is more than the {cpus} CPUs this "
                            f"machine lets twiki use: running {cpus} workers")
    assert peak <= cpus + 3   # the workers, the pool's forkserver and resource tracker (+1)


@pytest.mark.parametrize("command", [["snapshot", "--mirror", str(SAMPLE_MIRROR)],
                                     ["download", "--mirror", str(SAMPLE_MIRROR)], ["extract"]])
def test_a_month_before_wikipedia_is_refused(tmp_path, command):
    """Before: `--month 0000-01` erred about month '-001-12' (or searched the mirror)."""
    res = subprocess.run(twiki(*command, "--month", "0000-01", "--data-root", tmp_path),
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert one_line(res) == ("twiki: error: month '0000-01' is before Wikipedia began "
                             "(2001-01): no dump holds it")


def test_facts_takes_a_dump_folder_as_its_help_says(tmp_path):
    """Before: "Wikidata dump .../20160502 does not exist" for a folder holding the dump."""
    by_folder = subprocess.run(twiki("facts", "--month", "2016-05", "--shards", SHARDS,
                                     "--data-root", tmp_path / "folder", "--dump",
                                     ENTITIES_2016_05), capture_output=True, text=True)
    by_file = subprocess.run(twiki("facts", "--month", "2016-05", "--shards", SHARDS,
                                   "--data-root", tmp_path / "file", "--dump",
                                   ENTITIES_2016_05 / "wikidata-20160502-all.json.gz"),
                             capture_output=True, text=True)
    assert by_folder.returncode == 0, by_folder.stderr
    assert by_file.returncode == 0, by_file.stderr
    assert "893 facts" in by_folder.stdout
    folder, file = ([p.read_bytes() for p in sorted((tmp_path / name).glob("facts/*/facts/part-*"))]
                    for name in ("folder", "file"))
    assert folder and folder == file


# ------------------------------------------------------------------------------------------
# Item 10: a dump in another encoding.

def _utf16_part(header: bytes, pages: list[bytes], pages_per_stream: int
                ) -> tuple[bytes, bytes]:
    """mirror_kit.build_part's multistream part with its XML in UTF-16 (one byte order mark,
    at the start of the file); the index stays UTF-8, with the UTF-16 file's offsets."""
    def utf16(xml: bytes) -> bytes:
        return xml.decode("utf-8").encode("utf-16-le")

    body = bytearray(bz2.compress(b"\xff\xfe" + utf16(header)))
    lines = []
    for i in range(0, len(pages), pages_per_stream):
        stream = pages[i:i + pages_per_stream]
        lines += [f"{len(body)}:{page_id(p)}:{page_title(p)}\n" for p in stream]
        body += bz2.compress(utf16(b"".join(stream)))
    body += bz2.compress(utf16(FOOTER))
    return bytes(body), bz2.compress("".join(lines).encode("utf-8"))


def test_a_utf16_dump_is_refused_as_not_utf8(tmp_path, mirror, make_run, monkeypatch):
    """Before: "malformed XML (not well-formed (invalid token)) at line 1, column 13"."""
    _, pages = sample_pages()
    with monkeypatch.context() as m:
        m.setattr(mirror_kit, "build_part", _utf16_part)
        make_run(mirror, "20160601", pages=pages[:40], parts=1)
    root = tmp_path / "data"
    got = subprocess.run(twiki("download", "--month", "2016-06", "--mirror", mirror,
                               "--data-root", root), capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    res = subprocess.run(twiki("extract", "--month", "2016-06", "--shards", SHARDS,
                               "--data-root", root), capture_output=True, text=True)
    assert res.returncode == 1
    line = one_line(res)
    assert "multistream1.xml" in line and "the dump is not UTF-8" in line
    assert "malformed XML" not in line
    assert not (root / "snapshots" / "enwiki" / "2016-06").exists()
