"""Parallel download (issue 18): a large file fetched in segments (HTTP Range) from three
rate-limited mirrors at once, on real HTTP servers on 127.0.0.1-3 that this file starts: every
mirror serves a share and the file is byte-identical and verified; a mirror that dies mid-file,
or serves corrupt bytes, is dropped and the file still verifies; a kill -9 mid-file keeps the
finished segments for the rerun. benchmarks/bench_download.py measures the aggregate rate on
the same servers (`RateLimitedMirror`, `make_run`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from twiki.engine.paths import DataRoot
from twiki.sources.download import DownloadConfig, download_month, read_download_manifest

RUN = "20160501"
MONTH = "2016-05"
BIG = f"enwiki-{RUN}-pages-articles-multistream.xml.bz2"
SMALL = f"enwiki-{RUN}-pages-articles-multistream-index.txt.bz2"
MiB = 1 << 20
# Each mirror's bandwidth, shared by its connections: 12 MiB from three take ~2 s.
RATE = 2 * MiB
SIZE = 12 * MiB
# Segments of 1 MiB, and segmented from 4 MiB: the test file has 12 segments.
CONFIG = DownloadConfig(attempts=3, backoff_s=0.05, max_backoff_s=0.2, connect_timeout_s=2,
                        read_timeout_s=5, chunk_bytes=64 * 1024, segment_bytes=MiB,
                        segmented_min_bytes=4 * MiB)
# One connection a mirror: segments finish one by one, so that a kill finds some done.
ONE_CONNECTION = replace(CONFIG, connections_per_host=1)
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- the mirrors

def make_run(root: Path, size: int, seed: int = 0) -> dict[str, bytes]:
    """A mirror folder with one enwiki run whose multistream job has a `size`-byte data file
    (made-up bytes: the download stage reads no content) and a small index file, listed with
    their sizes and sha1 in dumpstatus.json. Returns {file name: bytes}."""
    rng = random.Random(seed)
    files = {BIG: rng.randbytes(size), SMALL: rng.randbytes(64 * 1024)}
    run = root / "enwiki" / RUN
    run.mkdir(parents=True)
    (root / "enwiki" / "index.html").write_text(f'<a href="{RUN}/">{RUN}/</a>\n')
    listed = {}
    for name, data in files.items():
        (run / name).write_bytes(data)
        listed[name] = {"size": len(data), "url": f"/enwiki/{RUN}/{name}",
                        "sha1": hashlib.sha1(data).hexdigest()}
    (run / "dumpstatus.json").write_text(json.dumps({"jobs": {"articlesmultistreamdump": {
        "status": "done", "updated": "2016-05-03 04:12:55", "files": listed}}}))
    return files


class RateLimitedMirror:
    """An HTTP mirror of a folder on 127.0.0.`n` with Range support (bytes=a-b and bytes=a-),
    whose connections share `rate` bytes a second. Faults: `die_after` (bytes of the data
    file sent; then every connection is cut and the port closed) and `corrupt` (the first
    byte of every body of the data file is flipped). Counts the data file's body bytes it
    sent, in `sent`."""

    BLOCK = 16 * 1024

    def __init__(self, root: Path, n: int, rate: float, die_after: int | None = None,
                 corrupt: bool = False):
        self.root, self.rate, self.die_after, self.corrupt = root, rate, die_after, corrupt
        self.sent = 0
        self.lock = threading.Lock()
        self.slot = time.monotonic()  # when the bandwidth is next free
        self.dead = threading.Event()
        self.httpd = ThreadingHTTPServer((f"127.0.0.{n}", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.{n}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def pace(self, n: int) -> None:
        """Wait for `n` bytes' share of the bandwidth."""
        with self.lock:
            start = max(self.slot, time.monotonic())
            self.slot = start + n / self.rate
        time.sleep(max(0.0, self.slot - time.monotonic()))

    def count(self, n: int) -> bool:
        """Record `n` data bytes sent; False once the mirror has died."""
        with self.lock:
            self.sent += n
            dies = self.die_after is not None and self.sent >= self.die_after
        if dies and not self.dead.is_set():
            self.dead.set()
            threading.Thread(target=self.close, daemon=True).start()
        return not self.dead.is_set()

    def close(self) -> None:
        self.dead.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(mirror: RateLimitedMirror):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real mirror

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            local = mirror.root / path.lstrip("/")
            if local.is_dir():
                local = local / "index.html"
            if mirror.dead.is_set() or not local.is_file():
                self.send_error(404)
                return
            size = local.stat().st_size
            start, end = 0, size
            ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if ranged:
                start = int(ranged[1])
                end = min(size, int(ranged[2]) + 1) if ranged[2] else size
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            else:
                self.send_response(200)
            with open(local, "rb") as f:  # the range only: a segment of a big file is small
                f.seek(start)
                body = bytearray(f.read(end - start))
            is_data = local.name == BIG
            if is_data and mirror.corrupt and body:
                body[0] ^= 0xFF
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), mirror.BLOCK):
                block = body[i:i + mirror.BLOCK]
                mirror.pace(len(block))
                if is_data and not mirror.count(len(block)):
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(block)
                except OSError:
                    return

    return Handler


@pytest.fixture
def mirrors(tmp_path):
    """mirrors(*faults) -> three RateLimitedMirrors of one run, on 127.0.0.1-3; faults[i]
    is the keyword arguments of mirror i."""
    started: list[RateLimitedMirror] = []
    root = tmp_path / "mirror"
    files = make_run(root, SIZE)

    def start(*faults: dict) -> list[RateLimitedMirror]:
        for n in range(3):
            started.append(RateLimitedMirror(root, n + 1, RATE,
                                             **(faults[n] if n < len(faults) else {})))
        return started

    start.files = files
    yield start
    for m in started:
        if not m.dead.is_set():
            m.close()


@pytest.fixture
def root(tmp_path) -> DataRoot:
    return DataRoot(tmp_path / "data")


def check_downloaded(folder: Path, files: dict[str, bytes]) -> dict:
    """The run's files are there, byte-identical, and recorded as verified; the manifest."""
    manifest = read_download_manifest(folder)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data
    assert {f["name"]: f["sha1"] for f in manifest["files"]} == \
        {n: hashlib.sha1(d).hexdigest() for n, d in files.items()}
    assert all(f["verified_with"] == "sha1" for f in manifest["files"])
    assert not list(folder.glob("*.part*"))
    return manifest


# ------------------------------------------------------------------------------- tests

def test_three_mirrors_each_serve_a_share_of_one_large_file(mirrors, root):
    ms = mirrors()
    folder = download_month(MONTH, mirrors=[m.url for m in ms], data_root=root, config=CONFIG)
    manifest = check_downloaded(folder, mirrors.files)
    assert all(m.sent > 0 for m in ms), [m.sent for m in ms]
    # Every byte fetched once, but for the endgame's second copies of the last segments.
    assert SIZE <= sum(m.sent for m in ms) <= SIZE + 3 * 4 * MiB
    assert set(manifest["mirrors_used"]) == {m.url for m in ms}


def test_a_mirror_dying_mid_file_hands_its_segments_to_the_others(mirrors, root, caplog):
    ms = mirrors({}, {"die_after": 2 * MiB + 12345})
    with caplog.at_level(logging.WARNING, logger="twiki"):
        folder = download_month(MONTH, mirrors=[m.url for m in ms], data_root=root,
                                config=CONFIG)
    check_downloaded(folder, mirrors.files)
    assert ms[1].dead.is_set()
    assert f"{ms[1].url} is dropped for this file" in caplog.text


def test_a_mirror_serving_corrupt_segments_is_found_named_and_dropped(mirrors, root, caplog):
    ms = mirrors({}, {}, {"corrupt": True})
    with caplog.at_level(logging.WARNING, logger="twiki"):
        folder = download_month(MONTH, mirrors=[m.url for m in ms], data_root=root,
                                config=CONFIG)
    check_downloaded(folder, mirrors.files)
    assert f"mirror {ms[2].url} served corrupt bytes" in caplog.text
    assert not any(f"mirror {m.url} served corrupt" in caplog.text for m in ms[:2])


def test_kill_mid_file_then_rerun_keeps_the_finished_segments(mirrors, root):
    ms = mirrors()
    urls = [m.url for m in ms]
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from twiki.engine.paths import DataRoot; "
         "from twiki.sources.download import download_month; "
         "from tests.test_parallel_download import ONE_CONNECTION; "
         f"download_month({MONTH!r}, mirrors={urls!r}, data_root=DataRoot(Path(sys.argv[1])), "
         "config=ONE_CONNECTION)", str(root.root)], cwd=REPO)
    sidecar = root.raw("enwiki", RUN) / (BIG + ".part.segments")
    deadline = time.monotonic() + 15
    done = 0
    while done < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
        try:
            done = len(json.loads(sidecar.read_text())["done"])
        except (OSError, ValueError):
            pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    done = len(json.loads(sidecar.read_text())["done"])  # what the rerun finds
    assert 3 <= done < SIZE // MiB, "the child did not stop mid-file"
    first = sum(m.sent for m in ms)

    folder = download_month(MONTH, mirrors=urls, data_root=root, config=ONE_CONNECTION)
    check_downloaded(folder, mirrors.files)
    again = sum(m.sent for m in ms) - first
    # The finished segments were not fetched again: the rest only, and the endgame's second
    # copies of the last segment under way on each mirror (one connection each).
    assert again <= SIZE - done * MiB + 2 * MiB
    assert again < SIZE
