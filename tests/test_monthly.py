"""The monthly build through the real CLI: kill -9 in the middle, rerun, same artifacts."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import SAMPLE_MIRROR


def snapshot_cmd(root: Path) -> list[str]:
    return [sys.executable, "-m", "twiki", "snapshot", "--month", "2016-06", "--mirror",
            str(SAMPLE_MIRROR), "--data-root", str(root), "--shards", "8", "--chunk-mb", "0.05"]


def artifacts(root: Path) -> dict[str, bytes]:
    """Every published Parquet file and export file, by path below the data root."""
    out = {}
    for sub in ("snapshots", "diffsets", "facts", "factdiff", "probes", "export"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file() and p.name != "_manifest.json" and "/work/" not in str(p):
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_kill_9_in_the_middle_of_the_monthly_build_then_rerun_is_identical(tmp_path):
    ref = tmp_path / "ref"
    done = subprocess.run(snapshot_cmd(ref), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (ref / "work").exists(), "a finished build left work folders behind"
    want = artifacts(ref)
    assert any(k.startswith("probes/") for k in want) and any(k.startswith("export/") for k in want)

    root = tmp_path / "killed"
    proc = subprocess.Popen(snapshot_cmd(root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # Kill once the second month's snapshot is published and the later stages are running.
    target = root / "snapshots" / "enwiki" / "2016-06" / "_manifest.json"
    deadline = time.monotonic() + 300
    while proc.poll() is None and not target.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (root / "export" / "2016-06" / "_manifest.json").exists(), \
        "the build finished before it could be killed"

    again = subprocess.run(snapshot_cmd(root), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout  # what was finished before the kill is not redone
    got = artifacts(root)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
