"""Processing overlaps the download (issue 18, item 2): `twiki snapshot` from an HTTP mirror on
127.0.0.1 (started here) extracts a multistream part while the run's other part is still
downloading, and publishes every artifact byte for byte as a build after a complete download;
a kill -9 while it reads ahead resumes with nothing lost; a failure on either side stops the
build with one line, the download side cancelled rather than waited for.

The mirror serves the committed sample mirror (data/sample/mirror, real pages) and can *hold* a
file: send all of it but its last block, and the rest only once a condition holds (here: the
extract chunks of the part before it are in the work folder). That makes "extract read part 1
while part 2 was downloading" something the test sees happen, not a race it hopes to win; no
timing is measured (benchmarks/bench_overlap.py measures the wall times)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from conftest import SAMPLE_MIRROR

MONTH = "2016-06"
PREV = "2016-05"
# The runs' second parts: held until the first part has been read ahead.
PART2 = {PREV: "enwiki-20160501-pages-articles-multistream2.xml-p599p100010.bz2",
         MONTH: "enwiki-20160601-pages-articles-multistream2.xml-p599p9261472.bz2"}
PART1_A = "enwiki-20160501-pages-articles-multistream1.xml-p10p598.bz2"
# Longest a held file waits for its condition (a test that fails does not hang on it).
HOLD_S = 120.0


class HoldingMirror:
    """A folder served over HTTP/1.1 on 127.0.0.1 with Range support. `hold[name]` is a
    callable: the file `name` is sent but for its last 4 KiB, and the rest only once it
    returns true (checked every 20 ms, at most HOLD_S; `released[name]` says it did return
    true). `corrupt` names files whose last byte is flipped."""

    TAIL = 4096

    def __init__(self, root: Path, hold: dict | None = None, corrupt: tuple[str, ...] = ()):
        self.root, self.hold, self.corrupt = root, dict(hold or {}), set(corrupt)
        self.released: dict[str, bool] = {}
        self.closing = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01},
                         daemon=True).start()

    def wait(self, name: str) -> None:
        until = time.monotonic() + HOLD_S
        while not self.closing.is_set() and time.monotonic() < until:
            if self.hold[name]():
                self.released[name] = True
                return
            time.sleep(0.02)
        self.released.setdefault(name, False)

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                local = mirror.root / unquote(urlsplit(self.path).path).lstrip("/")
                if local.is_dir():
                    local = local / "index.html"
                if not local.is_file():
                    self.send_error(404)
                    return
                data = bytearray(local.read_bytes())
                if local.name in mirror.corrupt:
                    data[-1] ^= 0xFF
                start = 0
                ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if ranged and int(ranged[1]) >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if ranged:
                    start = int(ranged[1])
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = bytes(data[start:])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if local.name in mirror.hold and len(body) > mirror.TAIL:
                        self.wfile.write(body[:-mirror.TAIL])
                        self.wfile.flush()
                        mirror.wait(local.name)
                        body = body[-mirror.TAIL:]
                    self.wfile.write(body)
                except OSError:
                    return

        return Handler


def twiki(root: Path, mirror: str) -> list[str]:
    return [sys.executable, "-m", "twiki", "snapshot", "--month", MONTH, "--mirror", mirror,
            "--data-root", str(root), "--shards", "8", "--chunk-mb", "0.05"]


def chunks_read(root: Path, month: str) -> list[Path]:
    """The extract map's work files of `month` there now (read ahead, or by extract)."""
    return sorted((root / "work" / "extract" / "enwiki" / month).rglob("chunk-*.arrow"))


def part_hashes(root: Path) -> dict[str, str]:
    """sha256 of every published part-*.parquet below the data root, by path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("part-*.parquet")) if "work" not in p.parts}


def error_line(res: subprocess.CompletedProcess) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines and "Traceback" not in res.stderr, res.stderr
    return lines[-1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    """The artifacts of a build after a complete download: every file of both months
    downloaded first (`twiki download`, `twiki download-wikidata` equivalents from Python),
    then `twiki snapshot`, which finds every download done."""
    from twiki.engine.paths import DataRoot
    from twiki.sources.download import download_month, download_wikidata

    root = tmp_path_factory.mktemp("reference") / "data"
    for m in (PREV, MONTH):
        download_month(m, mirrors=[str(SAMPLE_MIRROR)], data_root=DataRoot(root))
        download_wikidata(m, mirrors=[str(SAMPLE_MIRROR)], data_root=DataRoot(root))
    res = subprocess.run(twiki(root, str(SAMPLE_MIRROR)), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "0 extract chunks read while they went on" in res.stdout
    hashes = part_hashes(root)
    assert any(k.startswith("probes/") for k in hashes) and len(hashes) > 50
    return hashes


def test_extract_reads_a_part_while_the_next_downloads_and_the_artifacts_are_identical(
        tmp_path, reference):
    """Each run's second part is held until the first part's chunks are read: the build can
    only finish if extract worked on part 1 while part 2 was downloading. Its artifacts equal
    the build after a complete download, part by part."""
    root = tmp_path / "data"
    server = HoldingMirror(SAMPLE_MIRROR, hold={PART2[m]: (lambda m=m: chunks_read(root, m))
                                                for m in (PREV, MONTH)})
    try:
        res = subprocess.run(twiki(root, server.url), capture_output=True, text=True,
                             timeout=600)
    finally:
        server.close()
    assert res.returncode == 0, res.stderr
    assert server.released == {PART2[PREV]: True, PART2[MONTH]: True}
    ahead = re.search(r"(\d+) extract chunks read while they went on", res.stdout)
    assert ahead and int(ahead[1]) >= 2, res.stdout
    assert "do not follow extract's plan" not in res.stderr   # what was read ahead was used
    assert part_hashes(root) == reference
    assert not (root / "work").exists(), "a finished build left work folders behind"


def test_killed_while_reading_ahead_then_rerun_is_identical(tmp_path, reference):
    """kill -9 once month B's first part is read ahead (its second part still held), then
    the same command again: the download resumes, the chunks read before the kill are used,
    and the artifacts equal the reference; nothing is left in data/work/."""
    root = tmp_path / "data"
    held = threading.Event()
    server = HoldingMirror(SAMPLE_MIRROR, hold={PART2[MONTH]: held.is_set})
    try:
        proc = subprocess.Popen(twiki(root, server.url), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while proc.poll() is None and not chunks_read(root, MONTH) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)   # let the read-ahead finish a few chunks (or all of them)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert chunks_read(root, MONTH), "month B was not read ahead before the kill"
        assert not (root / "snapshots" / "enwiki" / MONTH / "_manifest.json").exists()
        held.set()
        again = subprocess.run(twiki(root, server.url), capture_output=True, text=True,
                               timeout=600)
    finally:
        held.set()
        server.close()
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout      # month A's snapshot is not built again
    assert part_hashes(root) == reference
    assert not (root / "work").exists()


def test_a_bad_download_stops_the_build_with_one_line_and_keeps_what_was_built(tmp_path):
    """Month B's second part arrives corrupt, once month A's snapshot is built (the mirror
    holds its last bytes until then): the build stops with the checksum's one line, and what
    it built while B downloaded stays published."""
    root = tmp_path / "data"
    snapshot_a = root / "snapshots" / "enwiki" / PREV / "_manifest.json"
    server = HoldingMirror(SAMPLE_MIRROR, hold={PART2[MONTH]: snapshot_a.exists},
                           corrupt=(PART2[MONTH],))
    try:
        res = subprocess.run(twiki(root, server.url) + ["--set", "download.attempts=1"],
                             capture_output=True, text=True, timeout=600)
    finally:
        server.close()
    assert res.returncode == 1
    line = error_line(res)
    assert "checksum mismatch" in line and PART2[MONTH] in line
    assert server.released == {PART2[MONTH]: True}
    assert snapshot_a.exists()
    assert not (root / "snapshots" / "enwiki" / MONTH / "_manifest.json").exists()


def test_a_failing_stage_stops_the_download_with_one_line(tmp_path):
    """Month A's first part is made-up bytes (its checksums and size published to match, so
    it downloads and verifies) that are not bz2: extract fails on it while month B's second
    part is held by the mirror for HOLD_S. The build stops at once with extract's one line,
    cancelling the download instead of waiting for it."""
    mirror = tmp_path / "mirror"
    shutil.copytree(SAMPLE_MIRROR, mirror)
    run = mirror / "enwiki" / "20160501"
    part = run / PART1_A
    size = part.stat().st_size
    made_up = (bytes(range(256)) * (size // 256 + 1))[:size]   # made-up bytes: not bz2
    part.write_bytes(made_up)
    status = json.loads((run / "dumpstatus.json").read_text())
    assert status["jobs"]["articlesmultistreamdump"]["files"][PART1_A]["size"] == size
    for algo in ("sha1", "md5"):
        sums = run / f"enwiki-20160501-{algo}sums.txt"
        digest = hashlib.new(algo, made_up).hexdigest()
        sums.write_text("".join(f"{digest}  {PART1_A}\n" if line.endswith(f" {PART1_A}")
                                else line + "\n" for line in sums.read_text().splitlines()))
    server = HoldingMirror(mirror, hold={PART2[MONTH]: lambda: False})
    try:
        # The mirror holds the file for HOLD_S: a build that waited for its download to end
        # would outlive this (a hang, not a speed, is what is checked).
        res = subprocess.run(twiki(tmp_path / "data", server.url), capture_output=True,
                             text=True, timeout=HOLD_S / 2)
    finally:
        server.close()
    assert res.returncode == 1
    line = error_line(res)
    assert PART1_A in line and "bz2" in line
    assert not server.released.get(PART2[MONTH])
