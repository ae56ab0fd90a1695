"""Hostile and unlucky remote input, through the command line (`python -m twiki`): dump
metadata too large or malformed, a file without a published size that never ends, a server
that trickles bytes, redirects off the mirror's host, file names no disk can hold. Each ends
in one line and an exit status, within a bounded time and memory; never a traceback, never a
hang. The mirrors are the sample mirror (data/sample/mirror), served by a server on 127.0.0.1
that this file starts, or a copy of it in a folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from mirror_kit import SAMPLE_MIRROR
from twiki.sources.download import DownloadConfig

RUN = "20160501"
MONTH = "2016-05"
RUN_PATH = f"/enwiki/{RUN}"
DUMPSTATUS = f"{RUN_PATH}/dumpstatus.json"
JOB = "articlesmultistreamdump"
# The first file of the job in plan order (dumpstatus.json order), and its size.
FIRST_FILE = "enwiki-20160501-pages-articles-multistream1.xml-p10p598.bz2"
ENTITIES_FILE = "/wikidatawiki/entities/20160502/wikidata-20160502-all.json.bz2"
# Settings that keep a failing run short: two tries, no waiting between them.
QUICK = ["--set", "download.attempts=2", "--set", "download.backoff_s=0",
         "--set", "download.connect_timeout_s=2", "--set", "download.read_timeout_s=5"]
# One byte this often: far inside the read timeout, so only a deadline ends the transfer.
TRICKLE_S = 0.2
# A subprocess that runs longer than this hangs; every test here takes seconds.
HANG_S = 120

Route = Callable[[BaseHTTPRequestHandler], None]


# ------------------------------------------------------------------------------- the server

class Server:
    """A mirror on 127.0.0.1 serving a folder like nginx does, except for the URL paths in
    `routes`, which play a fault. Records every path asked for and the body bytes it sent."""

    def __init__(self, root: Path):
        self.root = root
        self.routes: dict[str, Route] = {}
        self.asked: list[str] = []
        self.sent = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def write(self, h: BaseHTTPRequestHandler, data: bytes) -> bool:
        """Send body bytes; False once the client has gone."""
        try:
            h.wfile.write(data)
            h.wfile.flush()
        except OSError:
            return False
        with self.lock:
            self.sent += len(data)
        return True

    # Faults, each a Route.

    def trickle(self, data: bytes) -> Route:
        """The whole length announced, then one byte every TRICKLE_S seconds."""
        def route(h: BaseHTTPRequestHandler) -> None:
            _headers(h, 200, {"Content-Length": str(len(data))})
            for i in range(len(data)):
                if self.stop.wait(TRICKLE_S) or not self.write(h, data[i:i + 1]):
                    return
        return route

    def stream(self, pieces: Callable[[], Iterable[bytes]], declared: int | None = None) -> Route:
        """A body of `pieces` ended by closing the connection, with no length or with the
        (false) length `declared`."""
        def route(h: BaseHTTPRequestHandler) -> None:
            fields = {"Connection": "close"}
            if declared is not None:
                fields["Content-Length"] = str(declared)
            _headers(h, 200, fields)
            for piece in pieces():
                if self.stop.is_set() or not self.write(h, piece):
                    return
            h.close_connection = True
        return route

    def redirect(self, location: str, status: int = 302) -> Route:
        def route(h: BaseHTTPRequestHandler) -> None:
            _headers(h, status, {"Location": location, "Content-Length": "0"})
        return route


def _headers(h: BaseHTTPRequestHandler, status: int, fields: dict[str, str]) -> None:
    h.send_response(status)
    h.send_header("Content-Type", "application/octet-stream")
    for key, value in fields.items():
        h.send_header(key, value)
    h.end_headers()


def _handler(server: Server):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            with server.lock:
                server.asked.append(path)
            route = server.routes.get(path)
            if route is not None:
                route(self)
                return
            local = server.root / path.lstrip("/")
            if local.is_dir():
                local = local / "index.html"
            if not local.resolve().is_relative_to(server.root.resolve()) or not local.is_file():
                self.send_error(404)
                return
            data = local.read_bytes()
            _headers(self, 200, {"Content-Length": str(len(data))})
            server.write(self, data)

    return Handler


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A private copy of the sample mirror that a test may damage."""
    return Path(shutil.copytree(SAMPLE_MIRROR, tmp_path / "mirror"))


@pytest.fixture
def serve():
    """serve(folder) -> a running Server, closed after the test."""
    servers: list[Server] = []

    def start(root: Path) -> Server:
        servers.append(Server(root))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def server(serve, mirror) -> Server:
    return serve(mirror)


# ------------------------------------------------------------------------------- helpers

def twiki(*args: str) -> subprocess.CompletedProcess:
    """Run the command line quietly (warnings and errors only), as a user or cron does."""
    return subprocess.run([sys.executable, "-m", "twiki", *args, "-q"], capture_output=True,
                          text=True, timeout=HANG_S)


def download(mirror_url: str | Path, data_root: Path, *settings: str
             ) -> subprocess.CompletedProcess:
    """`twiki download` of the sample's month A, with QUICK tries and `settings`."""
    return twiki("download", "--month", MONTH, "--mirror", str(mirror_url),
                 "--data-root", str(data_root), *QUICK, *settings)


def error_line(res: subprocess.CompletedProcess) -> str:
    """The one line a failed command ends with, after checking that there is no traceback."""
    assert res.returncode not in (0, None), res.stdout
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("twiki: error: "), res.stderr
    return lines[-1]


def raw_files(data_root: Path) -> list[Path]:
    raw = data_root / "raw"
    return sorted(p for p in raw.rglob("*") if p.is_file()) if raw.exists() else []


def edit_dumpstatus(mirror: Path, edit) -> None:
    path = mirror / "enwiki" / RUN / "dumpstatus.json"
    status = json.loads(path.read_text())
    edit(status["jobs"][JOB])
    path.write_text(json.dumps(status))


def padded(text: bytes, total: int) -> Callable[[], Iterable[bytes]]:
    """`total` bytes: white space (which JSON allows) and then `text`."""
    block = b" " * (1 << 16)

    def pieces() -> Iterable[bytes]:
        left = total - len(text)
        while left > 0:
            yield block[:left]
            left -= len(block)
        yield text
    return pieces


# ------------------------------------------------------------------------------- metadata size

CAP = DownloadConfig().max_metadata_bytes


@pytest.mark.parametrize("declared", [None, 1 << 30], ids=["unannounced", "announced"])
def test_metadata_over_the_cap_is_refused_in_one_line(server, mirror, tmp_path, declared):
    """A dumpstatus.json just over the default cap (valid JSON: spaces, then the real file)
    is refused, whether its length is announced or only seen while reading."""
    real = (mirror / "enwiki" / RUN / "dumpstatus.json").read_bytes()
    server.routes[DUMPSTATUS] = server.stream(padded(real, CAP + (1 << 20)), declared)

    res = download(server.url, tmp_path / "data")

    line = error_line(res)
    assert res.returncode == 1
    assert "dumpstatus.json" in line and f"more than {CAP} bytes" in line
    assert "download.max_metadata_bytes" in line
    assert raw_files(tmp_path / "data") == []


def test_metadata_over_the_cap_in_a_mirror_folder_is_refused(mirror, tmp_path):
    path = mirror / "enwiki" / RUN / "dumpstatus.json"
    real = path.read_bytes()
    path.write_bytes(b"".join(padded(real, CAP + 1)()))

    line = error_line(download(mirror, tmp_path / "data"))
    assert f"more than {CAP} bytes" in line and "download.max_metadata_bytes" in line


def test_the_metadata_cap_is_a_setting(server, mirror, tmp_path):
    """A small cap refuses the sample's own 1.2 KB dumpstatus.json: the cap is what is used."""
    res = download(server.url, tmp_path / "data", "--set", "download.max_metadata_bytes=1000")
    assert "more than 1000 bytes" in error_line(res)


# ------------------------------------------------------------------------------- no published size

def test_file_without_a_published_size_is_capped_while_written(server, tmp_path):
    """The Wikidata dump has no published size: a mirror that sends 128 MiB instead of the
    sample's 139 KB is stopped at the cap, and nothing of it is kept."""
    server.routes[ENTITIES_FILE] = server.stream(lambda: (b"\x00" * (1 << 16) for _ in range(2048)))
    data = tmp_path / "data"

    res = twiki("snapshot", "--month", MONTH, "--no-diff", "--no-page-props", "--shards", "4",
                "--mirror", server.url, "--data-root", str(data), *QUICK,
                "--set", f"download.max_unsized_file_bytes={1 << 20}",
                "--set", f"download.chunk_bytes={1 << 16}")

    line = error_line(res)
    assert res.returncode == 1
    assert "wikidata-20160502-all.json.bz2" in line and f"more than {1 << 20} bytes" in line
    assert "download.max_unsized_file_bytes" in line
    # Two tries of at most the cap, plus what the sockets buffered: far from the 128 MiB.
    assert server.sent < 32 << 20
    entities = data / "raw" / "wikidatawiki" / "entities"
    assert [p for p in entities.rglob("*") if p.is_file()] == []


# ------------------------------------------------------------------------------- deadlines

def test_trickled_file_is_cut_at_the_deadline_retried_then_one_line(server, mirror, tmp_path):
    """One byte every 0.2 s never trips the 5 s read timeout; the deadline for each chunk
    does, each try, and the run ends with one line instead of hanging."""
    data = (mirror / "enwiki" / RUN / FIRST_FILE).read_bytes()
    server.routes[f"{RUN_PATH}/{FIRST_FILE}"] = server.trickle(data)

    t0 = time.monotonic()
    res = download(server.url, tmp_path / "data", "--set", "download.request_deadline_s=1")

    line = error_line(res)
    assert res.returncode == 1
    assert time.monotonic() - t0 < 30
    assert FIRST_FILE in line and "stalled" in line and "download.request_deadline_s" in line
    assert "(2 tries)" in line
    assert server.asked.count(f"{RUN_PATH}/{FIRST_FILE}") == 2


def test_trickled_metadata_is_cut_at_the_deadline_retried_then_one_line(server, mirror, tmp_path):
    real = (mirror / "enwiki" / RUN / "dumpstatus.json").read_bytes()
    server.routes[DUMPSTATUS] = server.trickle(real)

    t0 = time.monotonic()
    res = download(server.url, tmp_path / "data", "--set", "download.request_deadline_s=1")

    line = error_line(res)
    assert time.monotonic() - t0 < 30
    assert "dumpstatus.json" in line and "stalled" in line and "(2 tries)" in line
    assert server.asked.count(DUMPSTATUS) == 2


# ------------------------------------------------------------------------------- redirects

@pytest.mark.parametrize("path", [DUMPSTATUS, f"{RUN_PATH}/{FIRST_FILE}"],
                         ids=["metadata", "file"])
def test_redirect_to_another_host_is_not_followed(serve, mirror, tmp_path, path):
    """requests follows any redirect to any host (30 of them); a mirror may only send the
    client elsewhere on its own host. The other server here serves the very same files."""
    elsewhere = serve(mirror)
    server = serve(mirror)
    server.routes[path] = server.redirect(elsewhere.url + path)

    line = error_line(download(server.url, tmp_path / "data"))

    assert "redirect" in line and elsewhere.url in line and "another host" in line
    assert elsewhere.asked == []
    assert not (tmp_path / "data" / "raw" / "enwiki" / RUN / FIRST_FILE).exists()


def test_redirect_within_the_mirror_host_is_followed(server, mirror, tmp_path):
    moved = f"/moved/{FIRST_FILE}"
    (mirror / "moved").mkdir()
    shutil.copy(mirror / "enwiki" / RUN / FIRST_FILE, mirror / "moved")
    server.routes[f"{RUN_PATH}/{FIRST_FILE}"] = server.redirect(moved, 301)

    res = download(server.url, tmp_path / "data")

    assert res.returncode == 0, res.stderr
    assert moved in server.asked
    assert (tmp_path / "data" / "raw" / "enwiki" / RUN / FIRST_FILE).read_bytes() == \
        (mirror / "moved" / FIRST_FILE).read_bytes()


# ------------------------------------------------------------------------------- malformed metadata

@pytest.mark.parametrize("files", [[FIRST_FILE], FIRST_FILE], ids=["list", "string"])
def test_job_files_that_are_not_an_object_are_one_line(mirror, tmp_path, files):
    edit_dumpstatus(mirror, lambda job: job.update(files=files))

    line = error_line(download(mirror, tmp_path / "data"))
    assert "dumpstatus.json" in line and "not an object" in line
    assert raw_files(tmp_path / "data") == []


def test_deeply_nested_dumpstatus_is_one_line(mirror, tmp_path):
    (mirror / "enwiki" / RUN / "dumpstatus.json").write_text("[" * 100_000)

    line = error_line(download(mirror, tmp_path / "data"))
    assert "unreadable dumpstatus.json" in line


@pytest.mark.parametrize("name", [".", "x" * 4996 + ".bz2"], ids=["dot", "5000-characters"])
def test_file_name_no_folder_can_hold_is_one_line(mirror, tmp_path, name):
    edit_dumpstatus(mirror, lambda job: job["files"].update(
        {name: {"size": 3, "url": f"{RUN_PATH}/{FIRST_FILE}", "sha1": "1" * 40}}))

    res = download(mirror, tmp_path / "data")

    line = error_line(res)
    assert res.returncode == 1 and "refusing file name" in line
    assert len(line) < 400  # the name is shortened, not printed whole
    assert raw_files(tmp_path / "data") == []
