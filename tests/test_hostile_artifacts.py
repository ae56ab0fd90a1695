"""Damaged published artifacts, and builds resumed after a kill, through the real CLI (issue 16,
items 7 and 1b).

One sample month pair is built once for the module; each test works on a copy made with the
files' times kept (as `cp -a` does). A damaged file is made by flipping one byte in place: a
Parquet shard that still reads, with other text, is what a reader would be served.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mirror_kit import REPO, SAMPLE_MIRROR

MONTH_A, MONTH_B = "2016-05", "2016-06"


def twiki(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "twiki", *args, "--data-root", str(root)]


def snapshot(root: Path) -> list[str]:
    return twiki(root, "snapshot", "--month", MONTH_B, "--mirror", str(SAMPLE_MIRROR),
                 "--workers", "2")


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A data root with the sample pair built by `twiki snapshot` (never changed)."""
    root = tmp_path_factory.mktemp("reference") / "data"
    res = run(snapshot(root))
    assert res.returncode == 0, res.stderr
    return root


@pytest.fixture
def root(reference, tmp_path) -> Path:
    """A copy of the reference build, files' times kept."""
    dst = tmp_path / "data"
    shutil.copytree(reference, dst)
    return dst


def biggest_shard(folder: Path) -> Path:
    return max(folder.glob("part-*.parquet"), key=lambda p: p.stat().st_size)


def flip_a_byte(path: Path) -> None:
    """Flip one byte in place; in a Parquet shard, the first one after which the shard still
    reads but holds other data (the worst case: nothing fails, the text is wrong)."""
    data = path.read_bytes()
    candidates = range(4, len(data) - 8) if path.suffix == ".parquet" else [len(data) // 2]
    before = pq.read_table(path) if path.suffix == ".parquet" else None
    for offset in candidates:
        damaged = bytearray(data)
        damaged[offset] ^= 0x01
        path.write_bytes(damaged)
        if before is None:
            return
        try:
            if not pq.read_table(path).equals(before):
                return
        except Exception:  # noqa: BLE001 - a flip that breaks the file: try the next byte
            continue
    raise AssertionError(f"no byte of {path} changes its data silently")


def test_a_byte_flipped_in_published_files_is_found_and_rebuilt_by_the_next_run(root):
    """Before: the rerun said "up to date" (exit 0) and kept serving the changed bytes."""
    snap = root / "snapshots" / "enwiki" / MONTH_B
    damaged = [biggest_shard(snap), biggest_shard(root / "facts" / MONTH_A / "entities"),
               root / "export" / MONTH_B / "README.md", root / "reports" / MONTH_B / "report.md"]
    original = {p: p.read_bytes() for p in damaged}
    times = {p: p.stat().st_mtime_ns for p in snap.glob("part-*")}
    for p in damaged:
        flip_a_byte(p)
        assert p.read_bytes() != original[p]

    res = run(snapshot(root))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    for p in damaged:
        assert p.read_bytes() == original[p], f"{p} was not rebuilt"
        assert f"{p} differs from the sha256 its manifest records" in res.stderr
    assert "snapshot repaired" in res.stdout
    # Only the damaged shard was rebuilt.
    after = {p: p.stat().st_mtime_ns for p in snap.glob("part-*")}
    assert [p for p in after if after[p] != times[p]] == [damaged[0]]

    again = run(snapshot(root))
    assert again.returncode == 0, again.stderr
    assert "WARNING" not in again.stderr and "repaired" not in again.stdout


def test_verify_finds_damage_that_kept_size_and_time_and_the_next_run_rebuilds_it(root):
    """Damage a stat cannot see (bit rot: same size, same time): `twiki verify` hashes every
    published file, names the damaged one and removes it; the next run rebuilds it. Before:
    no such command (exit 2) and the rerun served the changed bytes."""
    shard = biggest_shard(root / "snapshots" / "enwiki" / MONTH_A)
    original, st = shard.read_bytes(), shard.stat()
    flip_a_byte(shard)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))

    res = run(twiki(root, "verify"))
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in res.stderr
    assert str(shard) in lines[0] and "differs from the sha256" in lines[0]
    assert lines[1].startswith("twiki: error: 1 of ") and "rerun the build" in lines[1]
    assert not shard.exists()

    rebuilt = run(snapshot(root))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert shard.read_bytes() == original

    clean = run(twiki(root, "verify"))
    assert clean.returncode == 0, clean.stderr
    assert "match the sha256 their manifests record" in clean.stdout


# Each case: the stage's command, the artifacts it (re)builds (the main one first), and the
# staging folder of the artifact its shard tasks write last.
RESUMED = {
    "extract": (("extract", "--month", MONTH_A, "--workers", "2"),
                [f"snapshots/enwiki/{MONTH_A}"], f"snapshots/enwiki/{MONTH_A}.partial"),
    "facts": (("facts", "--month", MONTH_A, "--workers", "2"),
              [f"facts/{MONTH_A}/{t}" for t in ("facts", "entities", "properties", "mapping")],
              f"facts/{MONTH_A}/entities.partial"),
    "mapping": (("facts", "--month", MONTH_A, "--workers", "2"),
                [f"facts/{MONTH_A}/mapping"], f"facts/{MONTH_A}/mapping.partial"),
    "factdiff": (("factdiff", "--from", MONTH_A, "--to", MONTH_B, "--workers", "2"),
                 [f"factdiff/{MONTH_A}_{MONTH_B}"], f"factdiff/{MONTH_A}_{MONTH_B}.partial"),
}


def comparable(manifest: dict) -> dict:
    """A manifest's key, rows and report, without the rates measured on the clock."""
    report = {k: v for k, v in manifest["report"].items() if "per_cpu_second" not in k}
    return {"key": manifest["key"], "rows": manifest["rows"], "report": report}


@pytest.mark.parametrize("stage", sorted(RESUMED))
def test_a_build_killed_while_writing_shards_resumes_to_the_whole_artifacts_counts(
        root, reference, stage):
    """Before: the resumed manifest counted only the shards the second run wrote (measured,
    depending on where the kill lands: extract 110-115 of 117 articles; facts 851 of 893 facts
    published; mapping 9 of 10 pages mapped; factdiff 851-866 of 893 facts unchanged)."""
    args, artifacts, staging = RESUMED[stage]
    for a in artifacts:
        shutil.rmtree(root / a)
    # Killed once a task that wrote rows is done: most of the sample's shards are empty.
    wanted = json.loads((reference / artifacts[0] / "_manifest.json").read_text())["shards"]
    with_rows = [root / staging / s["file"] for s in wanted if s["rows"]]
    proc = subprocess.Popen(twiki(root, *args), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    while proc.poll() is None and not any(p.exists() for p in with_rows):
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)   # the build and its pool's workers, as an OOM kill
    proc.wait()
    assert not (root / artifacts[0] / "_manifest.json").exists(), \
        "the stage finished before it could be killed"
    assert any(p.exists() for p in with_rows)

    res = run(twiki(root, *args))
    assert res.returncode == 0, res.stderr
    for a in artifacts:
        got = json.loads((root / a / "_manifest.json").read_text())
        want = json.loads((reference / a / "_manifest.json").read_text())
        assert comparable(got) == comparable(want), a
        assert [(p.name, p.read_bytes()) for p in sorted((root / a).glob("part-*"))] == \
            [(p.name, p.read_bytes()) for p in sorted((reference / a).glob("part-*"))]
