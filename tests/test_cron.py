"""Scheduled builds through the real CLI in subprocesses: lock, 'try later', logs, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipelines.cron import EXIT_LOCKED, EXIT_NOT_READY, default_month
from twiki.engine.lock import LOCK_NAME, DataRootLock
from twiki.engine.artifacts import read_manifest


def cron(root, mirror, *extra):
    return [sys.executable, "-m", "twiki", "cron", "--month", "2016-05", "--no-diff", "--data-root",
            str(root), "--mirror", str(mirror), "--shards", "8", *extra]


def test_default_month_is_last_calendar_month():
    from datetime import datetime, timezone
    assert default_month(datetime(2023, 1, 5, tzinfo=timezone.utc)) == "2022-12"
    assert default_month(datetime(2023, 3, 31, tzinfo=timezone.utc)) == "2023-02"


def test_cron_builds_and_logs(tmp_path, mirror):
    res = subprocess.run(cron(tmp_path, mirror), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "117 articles" in res.stdout
    runs = [json.loads(line) for line in (tmp_path / "logs" / "cron.jsonl").read_text().splitlines()]
    assert runs[-1]["outcome"] == "built" and runs[-1]["month"] == "2016-05"
    log = (tmp_path / "logs" / runs[-1]["log"]).read_text()
    snapshot = tmp_path / "snapshots" / "enwiki" / "2016-05"
    assert "downloaded and verified" in log and f"snapshot built at {snapshot}:" in log


def test_second_concurrent_run_exits_with_the_lock_message(tmp_path, mirror):
    first = subprocess.Popen(cron(tmp_path, mirror, "--chunk-mb", "0.02"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / LOCK_NAME
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
            lock.exists() and lock.read_text().startswith(f"{first.pid} ")):
        time.sleep(0.01)
    second = subprocess.run(cron(tmp_path, mirror), capture_output=True, text=True)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == EXIT_LOCKED
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "another twiki cron run holds" in lines[0]
    assert str(first.pid) in lines[0]


def test_lock_held_elsewhere_means_no_second_build(tmp_path, mirror):
    lock = DataRootLock(tmp_path, "twiki test")
    assert lock.acquire()
    try:
        res = subprocess.run(cron(tmp_path, mirror), capture_output=True, text=True)
    finally:
        lock.release()
    assert res.returncode == EXIT_LOCKED
    assert not (tmp_path / "snapshots").exists()


def test_unfinished_dumps_exit_with_try_later(tmp_path, mirror):
    status = mirror / "enwiki" / "20160501" / "dumpstatus.json"
    data = json.loads(status.read_text())
    data["jobs"]["articlesmultistreamdump"]["status"] = "in-progress"
    status.write_text(json.dumps(data))
    res = subprocess.run(cron(tmp_path, mirror), capture_output=True, text=True)
    assert res.returncode == EXIT_NOT_READY
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "not finished yet, try later" in lines[0]
    last = json.loads((tmp_path / "logs" / "cron.jsonl").read_text().splitlines()[-1])
    assert last["outcome"] == "not_ready"


def test_kill_9_mid_build_then_rerun_gives_identical_artifacts(tmp_path, mirror):
    ref = tmp_path / "ref"
    assert subprocess.run(cron(ref, mirror), capture_output=True).returncode == 0
    root = tmp_path / "killed"
    proc = subprocess.Popen(cron(root, mirror, "--chunk-mb", "0.02"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not list((root / "work").rglob("chunk-*.arrow")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    snap = root / "snapshots" / "enwiki" / "2016-05"
    assert read_manifest(snap) is None, "the build finished before it could be killed"
    # The lock died with the process: the next scheduled run starts and resumes.
    res = subprocess.run(cron(root, mirror, "--chunk-mb", "0.02"), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    want = ref / "snapshots" / "enwiki" / "2016-05"
    parts = sorted(p.name for p in want.glob("part-*"))
    assert parts and [(snap / n).read_bytes() for n in parts] == [(want / n).read_bytes() for n in parts]


def test_the_readme_crontab_line_starts_on_a_fresh_checkout(tmp_path, mirror):
    """The README's line as cron runs it (sh, from $HOME), on a checkout whose data/ has no
    logs/ yet; only twiki's arguments are pointed at the sample mirror."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("0 3 * * *"))
    command = line.split(None, 5)[5]
    assert "twiki cron --workers 8 " in command
    checkout = tmp_path / "twiki"
    (checkout / "data").mkdir(parents=True)
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "twiki").symlink_to(Path(sys.executable).with_name("twiki"))
    command = command.replace("twiki cron --workers 8", "twiki cron --workers 1 --month 2016-05 "
                              f"--no-diff --shards 8 --mirror {mirror}")
    res = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                         env={**os.environ, "HOME": str(tmp_path)}, cwd="/")
    assert res.returncode == 0, res.stderr
    out = (checkout / "data" / "logs" / "cron.out").read_text()
    assert "117 articles" in out
    assert (checkout / "data" / "snapshots" / "enwiki" / "2016-05" / "_manifest.json").exists()


def test_only_the_newest_run_logs_are_kept(tmp_path, mirror):
    logs = tmp_path / "logs"
    logs.mkdir()
    for day in range(1, 6):   # five earlier daily runs
        (logs / f"cron-202301{day:02d}-030000.log").write_text("an earlier run\n")
    res = subprocess.run(cron(tmp_path, mirror, "--keep-logs", "3"), capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    kept = sorted(p.name for p in logs.glob("cron-*.log"))
    last = json.loads((logs / "cron.jsonl").read_text().splitlines()[-1])
    assert kept == ["cron-20230104-030000.log", "cron-20230105-030000.log", last["log"]]
    bad = subprocess.run(cron(tmp_path, mirror, "--keep-logs", "0"), capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "--keep-logs must be at least 1" in bad.stderr
