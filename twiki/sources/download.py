"""Download stage: one month's dump run from a mirror (HTTPS or a local folder) into data/raw/.

- `download_month`: a job of a wiki's run (by default enwiki's pages-articles-multistream parts
  and their indexes) into data/raw/<wiki>/<YYYYMMDD>/.
- `download_wikidata`: the Wikidata JSON entity dump (all.json, bz2 or gz) nearest the month's
  enwiki run into data/raw/wikidatawiki/entities/<YYYYMMDD>/.

Every file is verified against the dump's own sha1/md5; the job's manifest
`_manifest.<job>.json` is written last (one per job, so that jobs of one run share its folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests

from ..version import __version__
from ..engine.artifacts import MANIFEST, code_version, write_json_atomic
from ..errors import (ChecksumError, ConfigError, DownloadError, DumpNotReadyError, NoDumpError,
                     TwikiError, UnsafePathError)
from ..engine.paths import DataRoot, check_wiki, parse_month, safe_join
from ..engine.progress import Progress

log = logging.getLogger("twiki")

STAGE = "download"
DEFAULT_MIRROR = "https://dumps.wikimedia.org"
DEFAULT_WIKI = "enwiki"
# The job whose files the extract stage reads: pages-articles in bz2 streams of 100 pages,
# with an index of stream offsets, so that parts can be read in parallel.
DEFAULT_JOB = "articlesmultistreamdump"
# Dump runs start on the 1st and the 20th of a month; these are tried when a mirror's run
# listing cannot be read.
CONVENTIONAL_RUN_DAYS = ("01", "20")
# A file being downloaded; renamed to its final name only once verified.
PART_SUFFIX = ".part"
# Beside a file fetched in segments: the segments finished (JSON, written atomically), so that
# a rerun after a kill keeps them.
SEGMENTS_SUFFIX = ".part.segments"
# Seconds between two writes of a segments file (each write also flushes the .part to disk):
# a kill loses at most the segments of this last second.
SEGMENTS_SAVE_S = 1.0
# How often a transfer's watcher looks at the caller's cancel event (download_month's `cancel`).
CANCEL_POLL_S = 0.2
# Wikimedia asks clients to identify themselves: meta.wikimedia.org/wiki/User-Agent_policy
USER_AGENT = f"twiki/{__version__} (TemporalWiki benchmark builder) python-requests"
# Status codes worth another try: the server is busy or broken now, not the request.
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# Transport failures worth another try: refused or cut connections, stalls, truncated bodies.
RETRY_EXCEPTIONS = (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError)
# Redirects followed for one request, each within the mirror's host (see _within_host);
# requests alone would follow 30, to any host.
MAX_REDIRECTS = 5
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
# The longest file name most filesystems hold (NAME_MAX of ext4, XFS, btrfs): a longer name from
# dump metadata, with our .part suffix, could never be written.
MAX_NAME_BYTES = 255
RUN_DATE_RE = re.compile(r"^\d{8}$")
# A run folder in an HTML directory listing (nginx autoindex on dumps.wikimedia.org).
LISTING_HREF = re.compile(r'href="(?:[^"]*/)?(\d{8})/"')
# Multistream data files and their indexes; the single-file form has no part number or range.
MULTISTREAM_DATA = re.compile(
    r"-pages-articles-multistream(?P<part>\d*)\.xml(?:-p(?P<first>\d+)p(?P<last>\d+))?\.bz2$")
MULTISTREAM_INDEX = re.compile(
    r"-pages-articles-multistream-index(?P<part>\d*)\.txt(?:-p(?P<first>\d+)p(?P<last>\d+))?\.bz2$")
HEX_LEN = {"sha1": 40, "md5": 32}
# A job name becomes part of its manifest's file name.
JOB_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

# The Wikidata JSON entity dumps: not runs of the wiki with a dumpstatus.json, but weekly run
# folders of their own under <mirror>/wikidatawiki/entities/, each with its sums files.
WIKIDATA_WIKI = "wikidatawiki"
ENTITIES_DIR = "entities"
WIKIDATA_JOB = "entities-all-json"
# Formats of wikidata-YYYYMMDD-all.json.<fmt>; both hold the same JSON.
WIKIDATA_FORMATS = ("bz2", "gz")
# The JSON dumps run weekly, so the nearest run is a few days from any enwiki run; 14 days
# still finds one when a run or two failed, and never a dump from another month's world.
WIKIDATA_WINDOW_DAYS = 14


@dataclass(frozen=True)
class DownloadConfig:
    """How hard to try. The defaults suit dumps.wikimedia.org; tests shrink the delays."""

    attempts: int = 5
    """Tries of one request on one mirror (5xx, 429, connection errors, timeouts) before the
    next mirror is tried."""
    backoff_s: float = 2.0
    """Wait before the second try; doubled for each further try (2, 4, 8, 16 s)."""
    max_backoff_s: float = 120.0
    """Longest wait between tries, also the cap on a server's Retry-After."""
    connect_timeout_s: float = 30.0
    """Seconds to open a connection."""
    read_timeout_s: float = 120.0
    """Seconds without a single byte before a transfer counts as stalled (not the whole file)."""
    chunk_bytes: int = 1 << 20
    """Bytes read, hashed and written at a time; a cut connection loses at most the chunk
    being read (the rest is kept for the resume)."""
    request_deadline_s: float = 300.0
    """Longest one request may take to bring a whole metadata file (listing, dumpstatus.json,
    sums file), or the next chunk_bytes of a dump file (a floor of 3.5 KB/s with the
    defaults; a 100 GB file may take hours, but never stall). A server that trickles bytes
    never trips read_timeout_s; past this deadline its connection is cut and the request
    counts as a failed try (a file resumes where it stopped)."""
    max_metadata_bytes: int = 1 << 24
    """Largest metadata file read (16 MiB; enwiki's dumpstatus.json is ~130 KB, a listing or
    sums file a few KB). Above it the mirror's answer is refused, not read into memory."""
    max_unsized_file_bytes: int = 1 << 39
    """Largest dump file written when the metadata publishes no size for it, as for the
    Wikidata JSON dump (512 GiB, several times today's all.json): a mirror that sends more
    is stopped there, and nothing of it is kept. A file with a published size is stopped at
    that size."""
    parallel_files: int = 4
    """Files of a run downloaded at once, each over its own connection (within the
    per-host caps below): the small files of a run do not wait for each other."""
    segmented_min_bytes: int = 64 << 20
    """A file whose published size is at least this (64 MiB) is fetched in segments (HTTP
    Range requests) from every http(s) mirror at once, each mirror taking the next segment
    whenever one of its connections is free, so that a mirror's share follows its speed.
    Smaller files, files without a published size and folder mirrors are read whole, from
    one mirror at a time."""
    segment_bytes: int = 8 << 20
    """Bytes of one segment (8 MiB): what a stalled or dead mirror's connection holds up, and
    what a kill loses at most per connection (finished segments are kept for the resume)."""
    connections_per_host: int = 4
    """Connections open at once to one host name, all files and segments of the run together,
    for a host that host_connections does not name."""
    host_connections: tuple[tuple[str, int], ...] = ((urlsplit(DEFAULT_MIRROR).hostname, 2),)
    """(host name, connections) pairs that override connections_per_host. dumps.wikimedia.org
    asks for at most 2-3 connections at once (its usage rules), hence 2. In TOML:
    host_connections = [["dumps.wikimedia.org", 2], ["mirror.example.org", 8]]; a list given
    replaces this one, so keep dumps.wikimedia.org in it."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"download attempts must be at least 1, not {self.attempts}")
        if min(self.backoff_s, self.max_backoff_s) < 0:
            raise ConfigError("download backoff delays must not be negative")
        if min(self.connect_timeout_s, self.read_timeout_s, self.request_deadline_s) <= 0 \
                or self.chunk_bytes <= 0:
            raise ConfigError("download timeouts, deadline and chunk size must be positive")
        if min(self.max_metadata_bytes, self.max_unsized_file_bytes) <= 0:
            raise ConfigError("download size caps (max_metadata_bytes, "
                              "max_unsized_file_bytes) must be positive")
        if min(self.parallel_files, self.segmented_min_bytes, self.segment_bytes,
               self.connections_per_host) < 1:
            raise ConfigError("download parallel_files, segmented_min_bytes, segment_bytes and "
                              "connections_per_host must be at least 1")
        try:
            caps = tuple((str(host).lower(), int(n)) for host, n in self.host_connections
                         if isinstance(host, str) and not isinstance(n, bool) and n >= 1
                         and int(n) == n)
        except (TypeError, ValueError):
            caps = ()
        if len(caps) != len(self.host_connections):
            raise ConfigError(f"download host_connections must be [host name, connections >= 1] "
                              f"pairs, not {self.host_connections!r}")
        object.__setattr__(self, "host_connections", caps)

    def connections(self, host: str | None) -> int:
        """The most connections open at once to `host` (a host name)."""
        return dict(self.host_connections).get((host or "").lower(), self.connections_per_host)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        wait = self.backoff_s * 2 ** (attempt - 1)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_backoff_s)


@dataclass
class RunInfo:
    """One dump run chosen for a month: where it is and the files of the wanted job."""

    run_date: str
    mirror: str
    """The mirror whose dumpstatus.json was read."""
    status: dict
    """The job's entry in dumpstatus.json without its file list: {"status", "updated"}."""
    files: list[dict]
    """One {name, size, url, sha1, md5} per file of the job; sha1/md5 None when unknown."""
    wiki: str = DEFAULT_WIKI
    month: str = ""
    job: str = DEFAULT_JOB


# ----------------------------------------------------------------------------------------
# Mirrors: an HTTP(S) host or a local folder with the same layout.

class _Retryable(Exception):
    """A failure that another try on the same mirror may not have (5xx, cut connection)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class _MirrorFailed(Exception):
    """This mirror cannot serve the request; the next one may."""


class _NotThere(_MirrorFailed):
    """The mirror answered: no such file (404/410, or missing in the folder)."""


class _RangeNotSatisfiable(Exception):
    """HTTP 416: the partial file is not shorter than the mirror's file."""


class Mirror(ABC):
    label: str

    @abstractmethod
    def get_text(self, relpath: str) -> str:
        """A small text file (listing, dumpstatus, checksums); one try."""

    @abstractmethod
    def list_runs(self, folder: str) -> list[str]:
        """The run dates (YYYYMMDD) in a folder of runs ("enwiki", "wikidatawiki/entities"),
        sorted; one try."""

    @abstractmethod
    @contextmanager
    def open(self, relpath: str, offset: int) -> Iterator[tuple[int, Iterator[bytes]]]:
        """A file's bytes from `offset`, as (start actually served, chunks)."""

    def __str__(self) -> str:
        return self.label


class _HostSlots:
    """The per-host cap on connections (DownloadConfig.connections): one semaphore per host
    name, shared by every mirror on that host and every file and segment of a run. A transfer
    holds a slot while its connection is open; a transfer waiting for one has not asked the
    host for anything yet."""

    def __init__(self, config: DownloadConfig):
        self.config = config
        self._lock = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}

    @contextmanager
    def hold(self, host: str) -> Iterator[None]:
        with self._lock:
            slot = self._slots.setdefault(
                host, threading.BoundedSemaphore(self.config.connections(host)))
        with slot:
            yield


class HttpMirror(Mirror):
    def __init__(self, base: str, session: requests.Session, config: DownloadConfig,
                 slots: _HostSlots | None = None):
        self.label = base.rstrip("/")
        self.host = (urlsplit(self.label).hostname or "").lower()
        self.session = session
        self.config = config
        self.slots = slots or _HostSlots(config)
        self.cancel: threading.Event | None = None
        """The caller's cancel event (download_month's `cancel`): once set, a file transfer
        under way is cut even while its read is blocked (a stalled mirror), see _Deadline."""

    def url(self, relpath: str) -> str:
        return f"{self.label}/{quote(relpath, safe='/')}"

    def _get(self, relpath: str, headers: dict | None = None) -> requests.Response:
        """The streamed answer to GET `relpath`, after the redirects within the mirror's host
        (one to another host fails this mirror: its metadata and files would come from a
        server nobody chose)."""
        url = self.url(relpath)
        for _ in range(MAX_REDIRECTS + 1):
            r = self._send(url, headers)
            if r.status_code not in REDIRECT_STATUS:
                return self._checked(r, url, headers)
            r.close()
            url = self._redirect_target(url, r)
        raise _MirrorFailed(f"{self.url(relpath)}: more than {MAX_REDIRECTS} redirects")

    def _send(self, url: str, headers: dict | None) -> requests.Response:
        try:
            return self.session.get(url, headers=headers or {}, stream=True,
                                    allow_redirects=False,
                                    timeout=(self.config.connect_timeout_s,
                                             self.config.read_timeout_s))
        except RETRY_EXCEPTIONS as e:
            raise _Retryable(f"{url}: {_short(e)}") from None
        except requests.RequestException as e:
            raise _MirrorFailed(f"{url}: {_short(e)}") from None

    def _redirect_target(self, url: str, r: requests.Response) -> str:
        """Where redirect `r` of `url` points, if that is on the mirror's host."""
        location = r.headers.get("Location")
        if not location:
            raise _MirrorFailed(f"{url}: HTTP {r.status_code} redirect without a Location")
        target = urljoin(url, location)
        if not _within_host(self.label, target):
            raise _MirrorFailed(
                f"{url}: redirected to {_clip(target)}, another host: only redirects within "
                f"{urlsplit(self.label).netloc} are followed; pass that host as a --mirror "
                f"to use it")
        return target

    @staticmethod
    def _checked(r: requests.Response, url: str, headers: dict | None) -> requests.Response:
        """`r` when it is an answer to use; else the failure it stands for."""
        if r.status_code in RETRY_STATUS:
            r.close()
            raise _Retryable(f"{url}: HTTP {r.status_code}", _retry_after(r))
        if r.status_code in (404, 410):
            r.close()
            raise _NotThere(f"{url}: HTTP {r.status_code}")
        if r.status_code == 416 and headers and "Range" in headers:
            r.close()
            raise _RangeNotSatisfiable(url)
        if r.status_code >= 300:  # redirects are followed before; 300, 304, 305 are not
            r.close()
            raise _MirrorFailed(f"{url}: HTTP {r.status_code}")
        return r

    def get_text(self, relpath: str) -> str:
        url = self.url(relpath)
        cap = self.config.max_metadata_bytes
        r = self._get(relpath)
        body = bytearray()
        with r, _Deadline(r, self.config.request_deadline_s, url, "the whole file"):
            if _content_length(r) > cap:
                raise _metadata_too_large(url, cap)
            for chunk in r.iter_content(self.config.chunk_bytes):
                body += chunk
                if len(body) > cap:  # decoded bytes: a compressed answer counts unpacked
                    raise _metadata_too_large(url, cap)
        return body.decode("utf-8", errors="replace")

    def list_runs(self, folder: str) -> list[str]:
        runs = sorted(set(LISTING_HREF.findall(self.get_text(f"{folder}/"))))
        if not runs:  # some hosts answer a folder with a page that is not a listing
            raise _MirrorFailed(f"{self.url(folder + '/')}: no run folders in the listing")
        return runs

    @contextmanager
    def open(self, relpath: str, offset: int,
             end: int | None = None) -> Iterator[tuple[int, Iterator[bytes]]]:
        """As Mirror.open; with `end`, asks for bytes offset..end-1 only (a segment), and the
        caller reads no further. Holds a slot of the host's connection cap throughout."""
        # identity: a range of a compressed-on-the-fly body would not be a range of the file.
        headers = {"Accept-Encoding": "identity"}
        if offset or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end - 1}"
        with self.slots.hold(self.host):
            r = self._get(relpath, headers=headers)
            with r, _Deadline(r, self.config.request_deadline_s, self.url(relpath),
                              f"the next {self.config.chunk_bytes} bytes",
                              self.cancel) as deadline:
                start = 0
                if r.status_code == 206:
                    start = _content_range_start(r.headers.get("Content-Range", ""))
                    if start != offset:
                        raise _Retryable(f"{self.url(relpath)}: unusable Content-Range "
                                         f"{r.headers.get('Content-Range')!r}")
                elif offset and end is None:
                    log.info("%s ignored the range request: downloading from the start",
                             self.label)
                yield start, self._chunks(r, deadline)

    def _chunks(self, r: requests.Response, deadline: _Deadline) -> Iterator[bytes]:
        for chunk in r.iter_content(self.config.chunk_bytes):
            deadline.renew()  # the deadline is for each chunk: a big file may take hours
            yield chunk


class _Deadline:
    """While reading a streamed response: cuts its connection when `seconds` pass without a
    `renew()`, and then ends the `with` with a _Retryable that says the transfer stalled (a
    connection cut by the server or the read timeout is a _Retryable too).

    A server that sends a byte now and then never trips the read timeout, which is per
    byte, and a blocking read cannot look at the clock: a thread watching it can."""

    def __init__(self, r: requests.Response, seconds: float, url: str, what: str,
                 cancel: threading.Event | None = None):
        self.response = r
        self.seconds = seconds
        self.url = url
        self.what = what
        self.due = time.monotonic() + seconds
        self.expired = False
        self.cancel = cancel      # set: the connection is cut too, and the transfer stops
        self.cancelled = False
        self.done = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="twiki-download-deadline",
                                        daemon=True)

    def __enter__(self) -> _Deadline:
        self.watcher.start()
        return self

    def renew(self) -> None:
        self.due = time.monotonic() + self.seconds

    def _watch(self) -> None:
        while not self.done.wait(self._pause()):
            if self.cancel is not None and self.cancel.is_set():
                self.cancelled = True
            elif time.monotonic() >= self.due:
                self.expired = True
            else:
                continue
            try:
                self.response.raw.shutdown()  # wakes the blocked read, ends the body
            except (RuntimeError, ValueError, OSError):
                pass  # the body was read to its end and the connection released meanwhile
            return

    def _pause(self) -> float:
        left = max(0.0, self.due - time.monotonic())
        return left if self.cancel is None else min(left, CANCEL_POLL_S)

    def __exit__(self, kind, error, traceback) -> None:
        self.done.set()
        self.watcher.join()
        if self.cancelled:
            raise _Stopped() from None
        if self.expired:
            raise _Retryable(f"{self.url}: stalled: {self.what} not received within "
                             f"{self.seconds:g} s (download.request_deadline_s)") from None
        if kind is not None and issubclass(kind, RETRY_EXCEPTIONS):  # cut connection
            raise _Retryable(f"{self.url}: {_short(error)}") from None


class LocalMirror(Mirror):
    def __init__(self, root: Path, config: DownloadConfig):
        self.root = root
        self.label = str(root)
        self.config = config

    def _path(self, relpath: str) -> Path:
        path = safe_join(self.root, relpath.rstrip("/")) if relpath.strip("/") else self.root
        if not path.exists():
            raise _NotThere(f"{path}: no such file")
        return path

    def get_text(self, relpath: str) -> str:
        path = self._path(relpath)
        cap = self.config.max_metadata_bytes
        try:
            with open(path, "rb") as f:
                data = f.read(cap + 1)
        except OSError as e:
            raise _MirrorFailed(f"{path}: {e}") from None
        if len(data) > cap:
            raise _metadata_too_large(str(path), cap)
        return data.decode("utf-8", errors="replace")

    def list_runs(self, folder: str) -> list[str]:
        path = self._path(folder)
        runs = sorted(p.name for p in path.iterdir() if p.is_dir() and RUN_DATE_RE.match(p.name))
        if not runs:
            raise _MirrorFailed(f"{path}: no run folders")
        return runs

    @contextmanager
    def open(self, relpath: str, offset: int) -> Iterator[tuple[int, Iterator[bytes]]]:
        path = self._path(relpath)
        if offset and offset >= path.stat().st_size:
            raise _RangeNotSatisfiable(str(path))
        with open(path, "rb") as f:
            f.seek(offset)
            yield offset, iter(lambda: f.read(self.config.chunk_bytes), b"")


def _content_range_start(value: str) -> int | None:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)$", value.strip())
    return int(m.group(1)) if m else None


def _content_length(r: requests.Response) -> int:
    """The length a response announces; 0 when it announces none (or nonsense)."""
    try:
        return int(r.headers.get("Content-Length", 0))
    except ValueError:
        return 0


def _metadata_too_large(where: str, cap: int) -> _MirrorFailed:
    return _MirrorFailed(f"{where}: more than {cap} bytes, too large for dump metadata "
                         f"(the cap is download.max_metadata_bytes)")


def _within_host(base: str, target: str) -> bool:
    """Whether URL `target` is on the host of mirror `base`: the same host name and port, or
    the same host name moved from http to https on the default ports."""
    a, b = urlsplit(base), urlsplit(target)
    try:
        ports = (a.port, b.port)
    except ValueError:  # a port that is not a number
        return False
    if a.hostname != b.hostname or b.scheme not in DEFAULT_PORTS:
        return False
    if a.scheme == b.scheme:
        return (ports[0] or DEFAULT_PORTS[a.scheme]) == (ports[1] or DEFAULT_PORTS[b.scheme])
    return (a.scheme, b.scheme) == ("http", "https") and ports == (None, None)


def _retry_after(r: requests.Response) -> float | None:
    try:
        return float(r.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _short(e: Exception) -> str:
    return _clip(str(e) or type(e).__name__)


def _clip(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters, saying how long it was: a message stays one line."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _with_retries(config: DownloadConfig, what: str, call, *args):
    """`call(*args)`, retrying _Retryable with exponential backoff, then giving up on this
    mirror with _MirrorFailed."""
    for attempt in range(1, config.attempts + 1):
        try:
            return call(*args)
        except _Retryable as e:
            if attempt == config.attempts:
                raise _MirrorFailed(f"{e} ({attempt} tries)") from None
            wait = config.delay(attempt, e.retry_after)
            log.warning("%s: %s; try %d of %d in %.1fs", what, e, attempt + 1,
                        config.attempts, wait)
            time.sleep(wait)


@contextmanager
def _mirrors(mirrors, config: DownloadConfig,
             session: requests.Session | None = None) -> Iterator[list[Mirror]]:
    """Mirror objects for a mirror argument: None (the default host), one URL or folder, or a
    list of them tried in order."""
    if mirrors is None:
        mirrors = [DEFAULT_MIRROR]
    elif isinstance(mirrors, (str, os.PathLike)):
        mirrors = [mirrors]
    if not mirrors:
        raise ConfigError("no mirror given: pass a URL such as https://dumps.wikimedia.org "
                          "or a folder with the same layout")
    specs: list[tuple[str, str | Path]] = []
    for m in mirrors:
        text = os.fspath(m)
        scheme = urlsplit(text).scheme.lower() if isinstance(m, str) else ""
        if scheme in ("http", "https"):
            specs.append(("http", text))
            continue
        if scheme == "file":
            path = Path(unquote(urlsplit(text).path))
        elif len(scheme) > 1:  # one letter is a Windows drive
            raise ConfigError(f"mirror {text!r}: only http(s) URLs and local folders are "
                              "supported")
        else:
            path = Path(text)
        if not path.is_dir():
            raise ConfigError(f"mirror folder {path} does not exist; pass an existing folder "
                              "or an http(s) URL")
        specs.append(("local", path))
    own = session is None
    if own:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        # One pooled connection per transfer the caps allow (requests keeps 10 a host).
        pool = max([config.connections_per_host, config.parallel_files]
                   + [n for _, n in config.host_connections])
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=pool)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    slots = _HostSlots(config)
    try:
        yield [HttpMirror(v, session, config, slots) if kind == "http"
               else LocalMirror(v, config) for kind, v in specs]
    finally:
        if own:
            session.close()


def _read_text(mirrors: Sequence[Mirror], relpath: str, config: DownloadConfig
               ) -> tuple[str, Mirror] | None:
    """A small file from the first mirror that has it; None when every mirror that answered
    said it is not there; DownloadError when no mirror could be reached at all."""
    errors = []
    answered = False
    for m in mirrors:
        try:
            return _with_retries(config, f"{m}/{relpath}", m.get_text, relpath), m
        except _NotThere:
            answered = True
        except _MirrorFailed as e:
            errors.append(str(e))
    if answered:
        return None
    raise DownloadError(f"could not read {relpath} from any mirror: " + "; ".join(errors)
                        + ". Check the mirror address and the network, or pass another mirror.")


def _list_runs(ms: Sequence[Mirror], folder: str, config: DownloadConfig
               ) -> tuple[list[str] | None, list[str]]:
    """(the run dates of the first mirror that lists `folder`, or None; the failures)."""
    errors = []
    for m in ms:
        try:
            return _with_retries(config, f"{m}/{folder}/", m.list_runs, folder), errors
        except _MirrorFailed as e:
            errors.append(str(e))
    return None, errors


# ----------------------------------------------------------------------------------------
# Month -> run.

def _month_runs(runs: Sequence[str], month: str) -> list[str]:
    prefix = month.replace("-", "")
    return [r for r in runs if r.startswith(prefix)]


def _neighbour(month: str, step: int) -> str:
    year, mon = map(int, month.split("-"))
    index = year * 12 + (mon - 1) + step
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _nearby(runs: Sequence[str], month: str) -> str:
    parts = []
    for m in (_neighbour(month, -1), month, _neighbour(month, 1)):
        found = _month_runs(runs, m)
        parts.append(f"{m}: {', '.join(found) if found else 'none'}")
    text = "; ".join(parts)
    if len(runs) == 1:
        text += f" (the only run there: {runs[0]})"
    elif runs:
        text += f" (all runs there: {runs[0]} .. {runs[-1]}, {len(runs)} in all)"
    return text


def resolve_run(mirrors, wiki: str, month: str, job: str = DEFAULT_JOB, *,
                config: DownloadConfig | None = None,
                session: requests.Session | None = None) -> RunInfo:
    """The first run dated in `month` (YYYY-MM) whose `job` is done, with its files.

    `mirrors`: None (dumps.wikimedia.org), an http(s) URL or local folder, or a list of them
    tried in order for each request.

    Each file's sha1 (else md5) comes from dumpstatus.json, else from the run's sha1sums.txt
    (else md5sums.txt); a file found in none of them has sha1 = md5 = None.
    Raises NoDumpError (no run that month, or the job does not exist) or DumpNotReadyError
    (runs exist but the job has not finished: try later).
    """
    config = config or DownloadConfig()
    with _mirrors(mirrors, config, session) as ms:
        return _resolve(ms, check_wiki(wiki), parse_month(month), job, config)


def _resolve(ms: list[Mirror], wiki: str, month: str, job: str,
             config: DownloadConfig) -> RunInfo:
    where = ", ".join(str(m) for m in ms)
    runs, listing_errors = _list_runs(ms, wiki, config)
    if runs is None:
        candidates = [month.replace("-", "") + day for day in CONVENTIONAL_RUN_DAYS]
        log.warning("could not read the run listing of %s (%s); trying the usual run dates %s",
                    wiki, "; ".join(listing_errors), ", ".join(candidates))
    else:
        candidates = _month_runs(runs, month)
        if not candidates:
            raise NoDumpError(
                f"no {wiki} dump run dated {month} on {where}. Runs nearby: "
                f"{_nearby(runs, month)}. Pick a month that has a run, or a mirror that still "
                f"keeps {month} (dumps.wikimedia.org keeps only the last few months)."
            )

    seen: list[str] = []  # "<run>: <job status>" for the error message
    jobs_seen: set[str] = set()
    any_job = False
    for run in candidates:
        got = _read_text(ms, f"{wiki}/{run}/dumpstatus.json", config)
        if got is None:
            seen.append(f"{run}: no dumpstatus.json yet")
            continue
        text, mirror = got
        try:
            jobs = json.loads(text)["jobs"]
            if not isinstance(jobs, dict):
                raise TypeError("jobs is not an object")
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested deep
            seen.append(f"{run}: unreadable dumpstatus.json on {mirror}")
            continue
        jobs_seen.update(jobs)
        entry = jobs.get(job)
        if not isinstance(entry, dict):
            seen.append(f"{run}: no job {job!r}")
            continue
        any_job = True
        state = entry.get("status", "?")
        if state != "done":
            updated = entry.get("updated") or ""
            seen.append(f"{run}: {job} {state}" + (f" (updated {updated})" if updated else ""))
            continue
        listed = entry.get("files") or {}
        if not isinstance(listed, dict):
            seen.append(f"{run}: unreadable dumpstatus.json on {mirror}: the files of {job} are "
                        f"a {type(listed).__name__}, not an object of file names")
            continue
        files = _job_files(listed, wiki, run)
        _fill_checksums(files, ms, mirror, wiki, run, config)
        log.info("%s %s -> run %s on %s (%d files)", wiki, month, run, mirror, len(files))
        return RunInfo(run_date=run, mirror=str(mirror),
                       status={k: v for k, v in entry.items() if k != "files"},
                       files=files, wiki=wiki, month=month, job=job)

    if runs is None and all(s.endswith("no dumpstatus.json yet") for s in seen):
        raise NoDumpError(
            f"could not read the run listing of {wiki} on {where} "
            f"({'; '.join(listing_errors)}), and the usual run dates {', '.join(candidates)} "
            f"have no dumpstatus.json. Check the mirror address, or pick another month."
        )
    if not any_job and jobs_seen:
        raise NoDumpError(
            f"{wiki} {month}: no job {job!r} in the runs' dumpstatus.json ({'; '.join(seen)}); "
            f"jobs there: {', '.join(sorted(jobs_seen))}. Check the job name."
        )
    raise DumpNotReadyError(
        f"{wiki} {month}: no run has finished job {job!r} yet ({'; '.join(seen)}). "
        f"Try again later: a run takes several days to finish."
    )


def _job_files(listed: dict, wiki: str, run: str) -> list[dict]:
    files = []
    for name, meta in listed.items():
        meta = meta if isinstance(meta, dict) else {}
        files.append({
            "name": name,
            "size": _size(meta.get("size")),
            "url": meta.get("url") or f"/{wiki}/{run}/{name}",
            "sha1": _hex(meta.get("sha1"), "sha1"),
            "md5": _hex(meta.get("md5"), "md5"),
        })
    return files


def _size(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _hex(value, algo: str) -> str | None:
    if isinstance(value, str) and re.fullmatch(rf"[0-9a-fA-F]{{{HEX_LEN[algo]}}}", value):
        return value.lower()
    return None


def _fill_checksums(files: list[dict], ms: list[Mirror], preferred: Mirror, wiki: str,
                    run: str, config: DownloadConfig) -> None:
    # The multistream job has no checksums in dumpstatus.json; the run's sums files do.
    order = [preferred] + [m for m in ms if m is not preferred]
    for algo in ("sha1", "md5"):
        missing = [f for f in files if not f["sha1"] and not f["md5"]]
        if not missing:
            return
        got = _read_text(order, f"{wiki}/{run}/{wiki}-{run}-{algo}sums.txt", config)
        if got is None:
            continue
        sums = _parse_sums(got[0], algo)
        for f in missing:
            f[algo] = sums.get(f["name"])


def _parse_sums(text: str, algo: str) -> dict[str, str]:
    """`<hex>  <name>` lines (md5sum/sha1sum output) -> {name: hex}."""
    out = {}
    for line in text.splitlines():
        fields = line.strip().split(None, 1)
        if len(fields) == 2 and (digest := _hex(fields[0], algo)):
            out[fields[1].lstrip("*")] = digest
    return out


# ----------------------------------------------------------------------------------------
# Files.

def _check_url(url: str, name: str) -> str:
    """The mirror-relative path of a metadata URL; refuses hosts, schemes and `..`."""
    if not isinstance(url, str) or "\\" in url or "\x00" in url:
        raise UnsafePathError(f"refusing URL {url!r} for {_clip(name, 80)!r} from dump "
                              "metadata: not a plain path")
    bad = f"refusing URL {_clip(url, 80)!r} for {_clip(name, 80)!r} from dump metadata"
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("//"):
        raise UnsafePathError(f"{bad}: it names a host; only paths on the mirror are followed")
    if parts.query or parts.fragment:
        raise UnsafePathError(f"{bad}: it has a query or fragment")
    path = unquote(parts.path)
    segments = [s for s in path.split("/") if s]
    if not segments or any(s in ("..", ".") for s in segments) or "\\" in path:
        raise UnsafePathError(f"{bad}: it leaves the mirror's dump folder")
    if any(len(s.encode()) > MAX_NAME_BYTES for s in segments):
        raise UnsafePathError(f"{bad}: a part of it is longer than the {MAX_NAME_BYTES} bytes "
                              "a file name may have")
    return "/".join(segments)


def _check_file_name(name: str) -> None:
    """Refuse a file name from dump metadata that is not one plain file of the run's folder,
    is one of ours (hidden, underscore and .part names: temporary files, the manifest), or
    is too long to be written with its .part suffix."""
    bad = f"refusing file name {_clip(name, 80)!r} from dump metadata"
    if len(PurePosixPath(name).parts) != 1 or name.startswith((".", "_")) \
            or name.endswith((PART_SUFFIX, SEGMENTS_SUFFIX)):
        raise UnsafePathError(f"{bad}: not a plain dump file name")
    if len((name + SEGMENTS_SUFFIX).encode()) > MAX_NAME_BYTES:
        raise UnsafePathError(f"{bad}: longer than the {MAX_NAME_BYTES} bytes a file name may "
                              f"have (with the {SEGMENTS_SUFFIX} suffix of a download)")


def _plan(run: RunInfo, folder: Path) -> list[tuple[dict, Path, str]]:
    """(file entry, local target, mirror-relative path) for every file, all checked before
    anything is written."""
    plan = []
    for f in run.files:
        name = f["name"]
        _check_file_name(name)
        plan.append((f, safe_join(folder, name), _check_url(f["url"], name)))
    if not plan:
        raise NoDumpError(f"{run.wiki} run {run.run_date}: job {run.job!r} lists no files")
    unverifiable = [f["name"] for f in run.files if not f["sha1"] and not f["md5"]]
    if unverifiable:
        more = f" and {len(unverifiable) - 3} more" if len(unverifiable) > 3 else ""
        raise ChecksumError(
            f"no sha1 or md5 for {', '.join(unverifiable[:3])}{more} in dumpstatus.json, "
            f"{run.wiki}-{run.run_date}-sha1sums.txt or -md5sums.txt on {run.mirror}: "
            f"refusing to download files that cannot be verified. Try again later (the sums "
            f"files are written at the end of a run) or another mirror."
        )
    return plan


class _Hashes:
    def __init__(self) -> None:
        self.sha1 = hashlib.sha1()
        self.md5 = hashlib.md5()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.sha1.update(chunk)
        self.md5.update(chunk)
        self.size += len(chunk)

    def feed_file(self, path: Path, chunk_bytes: int) -> None:
        with open(path, "rb") as f:
            while chunk := f.read(chunk_bytes):
                self.update(chunk)

    def mismatch(self, entry: dict) -> tuple[str, str, str] | None:
        """(algorithm, expected, actual) of the first checksum that differs, else None."""
        for algo, h in (("sha1", self.sha1), ("md5", self.md5)):
            if entry.get(algo) and h.hexdigest() != entry[algo]:
                return algo, entry[algo], h.hexdigest()
        return None


class _Mismatch(Exception):
    def __init__(self, algo: str, expected: str, actual: str):
        super().__init__(f"{algo} {actual}, expected {expected}")
        self.algo, self.expected, self.actual = algo, expected, actual


# Progress.update is not thread-safe, and the files of a run (and the segments of a file)
# report from several threads.
_PROGRESS_LOCK = threading.Lock()


class _Stopped(Exception):
    """The run is stopping (another file failed, or Ctrl-C): this transfer ends here."""


class _Superseded(Exception):
    """The other copy of a segment arrived first: this fetch of it stops, writing nothing."""


class DownloadCancelled(DownloadError):
    """The caller stopped the download (its `cancel` event was set: the monthly build stopped
    for a failure elsewhere). Every finished file and segment is kept for the resume."""


class _FileBytesShown:
    """The bytes of one file counted in the run's progress bar, kept equal to what is on disk
    across resumes, restarts and mirrors. Every chunk passes here, so this is also where a
    transfer learns that the run is stopping (`stop` set, or the caller's `cancel`): more
    bytes then raise _Stopped."""

    def __init__(self, progress: Progress, stop: threading.Event | None = None,
                 cancel: threading.Event | None = None):
        self.progress = progress
        self.stop = stop
        self.cancel = cancel
        self.count = 0

    def set(self, n: int) -> None:
        self.add(n - self.count)

    def add(self, n: int) -> None:
        """`n` more bytes (fewer when negative), from any thread."""
        if n > 0 and any(e is not None and e.is_set() for e in (self.stop, self.cancel)):
            raise _Stopped()
        with _PROGRESS_LOCK:
            self.progress.update(n)
            self.count += n


def _fetch_from(mirror: Mirror, entry: dict, relpath: str, part: Path,
                config: DownloadConfig, shown: _FileBytesShown) -> _Hashes:
    """Fill `part` from one mirror, resuming what is there, and verify it. Raises _Mismatch
    (the bytes differ from the metadata) or _MirrorFailed (this mirror cannot deliver, or
    sends more than a file without a published size may have)."""
    size = entry["size"]
    limit = size if size is not None else config.max_unsized_file_bytes
    restarted = False  # a resumed file that fails verification gets one fresh download
    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if offset > limit:
            part.unlink()
            offset = 0
        # Resuming: the bytes already there are hashed first, so the digest covers the file.
        hashes = _Hashes()
        if offset:
            hashes.feed_file(part, config.chunk_bytes)
        shown.set(offset)
        try:
            if size is None or offset < size:
                with mirror.open(relpath, offset) as (start, chunks):
                    if start != offset:  # the server sent the whole file: start over
                        hashes = _Hashes()
                        shown.set(0)
                    with open(part, "r+b" if part.exists() else "wb") as out:
                        out.seek(start)
                        out.truncate()
                        for chunk in chunks:
                            out.write(chunk)
                            hashes.update(chunk)
                            shown.set(hashes.size)
                            if hashes.size > limit:
                                break
            if size is None and hashes.size > limit:
                part.unlink()
                shown.set(0)
                raise _MirrorFailed(f"{mirror}/{relpath}: more than {limit} bytes, and the dump "
                                    f"publishes no size for this file: stopped there "
                                    f"(the cap is download.max_unsized_file_bytes)")
            if size is not None and hashes.size < size:
                raise _Retryable(f"{mirror}/{relpath}: connection closed at byte "
                                 f"{hashes.size} of {size}")
        except _RangeNotSatisfiable:
            pass  # the partial file is at least as long as the mirror's: verify it as it is
        except _Retryable as e:
            attempt += 1
            if attempt >= config.attempts:
                raise _MirrorFailed(f"{e} ({attempt} tries)") from None
            wait = config.delay(attempt, e.retry_after)
            log.warning("%s: %s; resuming, try %d of %d in %.1fs", entry["name"], e,
                        attempt + 1, config.attempts, wait)
            time.sleep(wait)
            continue

        bad = None
        if size is not None and hashes.size != size:
            bad = ("size", str(size), str(hashes.size))
        bad = bad or hashes.mismatch(entry)
        if bad is None:
            return hashes
        part.unlink()
        shown.set(0)
        if offset and not restarted:
            # The old prefix may be what is wrong (e.g. left by a different file): one clean try.
            log.warning("%s: resumed file does not verify (%s %s, expected %s); downloading "
                        "it again from the start", entry["name"], bad[0], bad[2], bad[1])
            restarted = True
            continue
        raise _Mismatch(*bad)


def _download_file(entry: dict, target: Path, relpath: str, mirrors: list[Mirror],
                   config: DownloadConfig, shown: _FileBytesShown
                   ) -> tuple[_Hashes, list[str]]:
    """Download one file into place and return its hashes and the mirrors that served it:
    in segments from every http(s) mirror at once when it is large (_SegmentedFile), else
    whole from each mirror in turn; nothing unverified is kept."""
    part = target.with_name(target.name + PART_SUFFIX)
    failures: list[str] = []
    mismatch: _Mismatch | None = None
    rest = mirrors
    if _segmented(entry, mirrors, config):
        segments = _SegmentedFile(entry, relpath, part, config, shown)
        try:
            got = segments.download([m for m in mirrors if isinstance(m, HttpMirror)])
        except _Mismatch as e:
            segments.discard()
            raise _checksum_error(entry, e, segments.failures) from None
        if got is not None:
            os.replace(part, target)
            segments.sidecar.unlink(missing_ok=True)
            return got
        failures += segments.failures
        rest = [m for m in mirrors if not isinstance(m, HttpMirror)]
    if rest:
        _keep_prefix(part, config.segment_bytes)
    for m in rest:
        try:
            hashes = _fetch_from(m, entry, relpath, part, config, shown)
        except _Mismatch as e:
            mismatch = e
            failures.append(f"{m}: {e}")
            log.warning("%s from %s does not verify: %s", entry["name"], m, e)
            continue
        except _MirrorFailed as e:
            # The partial file stays for the next mirror or the next run to resume: every
            # mirror serves the same bytes, and they are verified at the end.
            failures.append(str(e))
            log.warning("%s: %s", entry["name"], e)
            continue
        os.replace(part, target)
        return hashes, [str(m)]
    if mismatch is not None:
        raise _checksum_error(entry, mismatch, failures)
    resume = (f"Rerun to resume (the partial file {part.name} is kept)" if part.exists()
              else "Rerun later")
    raise DownloadError(
        f"could not download {entry['name']}: {'; '.join(failures)}. {resume}, or use "
        f"another mirror."
    )


def _checksum_error(entry: dict, mismatch: _Mismatch, failures: list[str]) -> ChecksumError:
    return ChecksumError(
        f"checksum mismatch for {entry['name']}: expected {mismatch.algo} "
        f"{mismatch.expected}, got {mismatch.actual} (tried {'; '.join(failures)}). "
        f"The file was not kept; rerun later or use another mirror."
    )


def _segmented(entry: dict, mirrors: list[Mirror], config: DownloadConfig) -> bool:
    """Whether `entry` is fetched in segments: its size is published and at least
    segmented_min_bytes, and an http(s) mirror is there to serve ranges."""
    size = entry["size"]
    return (size is not None and size >= config.segmented_min_bytes
            and size > config.segment_bytes
            and any(isinstance(m, HttpMirror) for m in mirrors))


def _sidecar(part: Path) -> Path:
    """The segments file of a .part: `<name>.part.segments`."""
    return part.with_name(part.name.removesuffix(PART_SUFFIX) + SEGMENTS_SUFFIX)


def _keep_prefix(part: Path, segment_bytes: int) -> None:
    """Before a one-connection download resumes `part`: when segments of it were fetched
    (a segments file is there), keep only its leading run of finished segments, since the
    resume takes every byte before the end of the file as fetched."""
    sidecar = _sidecar(part)
    if not sidecar.exists():
        return
    try:
        state = json.loads(sidecar.read_text(encoding="utf-8"))
        done = {int(i) for i, _ in state["done"]}
        step = int(state["file"]["segment_bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        done, step = set(), segment_bytes
    prefix = 0
    while prefix in done:
        prefix += 1
    if part.exists():
        with open(part, "r+b") as f:
            f.truncate(min(prefix * step, f.seek(0, os.SEEK_END)))
    sidecar.unlink()


class _SegmentedFile:
    """One large file of published size fetched as segments of segment_bytes into its .part
    (made full size first) from several http(s) mirrors at once.

    Work stealing: each mirror opens as many connections as its host's cap allows, and each
    connection takes the next missing segment whenever it is free, so that a fast mirror
    serves more segments than a slow one, and a mirror that stalls or dies holds up at most
    one segment a connection, which goes back to the others. `done` maps each finished segment
    to the mirror that served it: written to the segments file beside the .part (the resume
    keeps those segments) and used to find the mirror at fault when the whole file does not
    verify. The file's published checksum is the only proof; segments have none of their own.
    """

    def __init__(self, entry: dict, relpath: str, part: Path, config: DownloadConfig,
                 shown: _FileBytesShown):
        self.entry, self.relpath, self.part = entry, relpath, part
        self.config, self.shown = config, shown
        self.name: str = entry["name"]
        self.size: int = entry["size"]
        self.step = config.segment_bytes
        self.count = -(-self.size // self.step)
        self.sidecar = _sidecar(part)
        self.done: dict[int, str] = {}
        self.failures: list[str] = []
        self.lock = threading.Condition()
        self.save_lock = threading.Lock()
        self.saved_at = 0.0
        self.saves = self.saved = 0  # segments files taken, and the last one written
        self.mismatch: tuple[str, str, str] | None = None
        self.speed: dict[str, float] = {}  # bytes/s of a connection of each mirror, last segment

    def bounds(self, i: int) -> tuple[int, int]:
        """Byte offsets [start, end) of segment `i`."""
        return i * self.step, min(self.size, (i + 1) * self.step)

    def _identity(self) -> dict:
        """What a segments file must say to be about this very file and segment size."""
        return {"name": self.name, "size": self.size, "segment_bytes": self.step,
                "sha1": self.entry.get("sha1"), "md5": self.entry.get("md5")}

    def download(self, mirrors: list[HttpMirror]) -> tuple[_Hashes, list[str]] | None:
        """Fetch the missing segments, verify the whole file (repairing it when a mirror
        served bad bytes) and return its hashes and the mirrors that served it. None when the
        mirrors could not serve every segment (self.failures says why; the .part and its
        segments file stay for a rerun or a folder mirror). Raises _Mismatch when the file
        does not verify and no mirror can be found at fault."""
        self._resume()
        if self.fetch([i for i in range(self.count) if i not in self.done], mirrors):
            return None
        hashes = self._verified() or self._repair(mirrors)
        if hashes is None:
            return None
        return hashes, sorted(set(self.done.values()))

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)
        self.shown.set(0)

    # -- resume

    def _resume(self) -> None:
        """Keep the finished segments of an earlier run: those its segments file lists when
        it was written for this file and segment size, else the whole segments of a .part
        left by a one-connection download (its leading bytes). Anything else starts afresh."""
        have = self.part.stat().st_size if self.part.exists() else None
        try:
            state = json.loads(self.sidecar.read_text(encoding="utf-8"))
            if state["file"] != self._identity() or have != self.size:
                raise ValueError("another file")
            labels = [str(label) for label in state["mirrors"]]
            self.done = {int(i): labels[j] for i, j in state["done"] if 0 <= int(i) < self.count}
        except FileNotFoundError:
            if have is not None and have <= self.size:
                self.done = {i: "an earlier download" for i in range(have // self.step)}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            self.done = {}
        if not self.done:
            self.part.unlink(missing_ok=True)
        with open(self.part, "r+b" if self.part.exists() else "wb") as f:
            f.truncate(self.size)
        self.shown.set(sum(self._length(i) for i in self.done))
        if self.done:
            log.info("%s: resuming with %d of %d segments already here", self.name,
                     len(self.done), self.count)

    def _length(self, i: int) -> int:
        start, end = self.bounds(i)
        return end - start

    def _save(self, force: bool = False) -> None:
        """Write the segments file, at most every SEGMENTS_SAVE_S unless forced. What it lists
        is taken first and the .part flushed to disk next, so that a segment listed there is on
        disk; both happen outside self.lock, so that the segments being fetched never wait for
        the disk. Call without self.lock."""
        with self.lock:
            now = time.monotonic()
            if not force and now - self.saved_at < SEGMENTS_SAVE_S:
                return
            self.saved_at = now
            self.saves += 1
            number, done = self.saves, dict(self.done)
        with self.save_lock:
            if number < self.saved:  # a later list was written meanwhile
                return
            self.saved = number
            with open(self.part, "r+b") as f:
                os.fsync(f.fileno())
            labels = sorted(set(done.values()))
            index = {label: j for j, label in enumerate(labels)}
            write_json_atomic(self.sidecar, {
                "file": self._identity(), "mirrors": labels,
                "done": sorted([i, index[label]] for i, label in done.items())})

    # -- fetching

    def fetch(self, todo: list[int], mirrors: list[HttpMirror]) -> list[int]:
        """Fetch (again) segments `todo` from `mirrors`, work stealing (see the class). A
        mirror is dropped for this file after `attempts` failed tries in a row, or at once when
        it cannot serve ranges of this file at all. Endgame: once no segment is left to hand
        out, a free connection fetches again, into memory, the segment under way with the most
        bytes still to come on another mirror; the first copy to arrive is kept and the other
        stops, so that a slow or stalled mirror does not hold up the end of the file. Returns
        the segments left when every mirror was dropped (empty when all were fetched)."""
        for i in todo:
            self.done.pop(i, None)
        pending = deque(sorted(todo))
        writing: dict[int, list] = {}  # segment -> [mirror, bytes written] of its fetch to disk
        copying: set[int] = set()      # segments with a second fetch, into memory, under way
        settled: set[int] = set()      # segments of this call fetched (the late copy stops)
        streak = {m.label: 0 for m in mirrors}
        dropped: set[str] = set()
        crashed: list[BaseException] = []
        live = [0]
        over = [False]  # set when this call returns: a late copy still running just ends

        def take(m: HttpMirror) -> tuple[int, bool] | None:
            """The next segment for `m` (and whether it is a second copy), with the lock."""
            while m.label not in dropped and not over[0]:
                if pending:
                    i = pending.popleft()
                    writing[i] = [m.label, 0]
                    return i, False
                spare = [i for i, (label, _) in writing.items()
                         if i not in settled and i not in copying and label != m.label
                         and self._copy_wins(i, writing[i], m.label)]
                if spare:
                    i = max(spare, key=lambda i: self._length(i) - writing[i][1])
                    copying.add(i)
                    return i, True
                if all(i in settled for i in writing):
                    return None
                self.lock.wait()
            return None

        def worker(m: HttpMirror) -> None:
            try:
                while True:
                    with self.lock:
                        task = take(m)
                    if task is None:
                        return
                    i, copy = task
                    error, fatal, began = None, False, time.monotonic()
                    try:
                        if copy:
                            self._copy_segment(m, i, writing, settled)
                        else:
                            self._write_segment(m, i, writing, settled)
                    except _Superseded:
                        error = _Superseded()
                    except _Retryable as e:
                        error = e
                    except (_MirrorFailed, _RangeNotSatisfiable) as e:
                        error, fatal = e, True
                    except BaseException as e:  # noqa: BLE001 - stops every worker; re-raised
                        error, fatal = e, True
                        crashed.append(e)
                        dropped.update(streak)
                    with self.lock:
                        tries = self._settle(m, i, copy, began, error, fatal, pending,
                                             writing, copying, settled, streak, dropped, over)
                        self.lock.notify_all()
                    if error is None:
                        self._save()
                    if tries:
                        wait = self.config.delay(tries, getattr(error, "retry_after", None))
                        log.warning("%s: %s; segment %d goes back, %s tries again in %.1fs",
                                    self.name, error, i, m, wait)
                        time.sleep(wait)
            finally:
                with self.lock:
                    live[0] -= 1
                    self.lock.notify_all()

        workers = [threading.Thread(target=worker, args=(m,), daemon=True,
                                    name=f"twiki-segments-{m.host}")
                   for m in mirrors for _ in range(min(self.config.connections(m.host),
                                                       len(pending)))]
        live[0] = len(workers)
        for t in workers:
            t.start()
        # Until every segment is fetched or no mirror is left; a copy that lost the race (on
        # a stalled connection, say) ends on its own, writing nothing.
        with self.lock:
            while live[0] and (pending or not all(i in settled for i in writing)):
                self.lock.wait()
            over[0] = True
        self._save(force=True)
        if crashed:
            raise crashed[0]
        return sorted(pending)

    def _settle(self, m: HttpMirror, i: int, copy: bool, began: float,
                error: BaseException | None, fatal: bool, pending: deque, writing: dict, copying: set, settled: set,
                streak: dict, dropped: set, over: list[bool]) -> int:
        """Book the end of one fetch of segment `i` from `m` (with the lock held): the segment
        done, superseded by the other copy, or back in the queue. Returns the failed tries in
        a row of `m` when it should wait before its next try, else 0."""
        if copy:
            copying.discard(i)
        elif writing.get(i, [None])[0] == m.label:
            del writing[i]
        if error is None:
            settled.add(i)
            self.done[i] = m.label
            streak[m.label] = 0
            self.speed[m.label] = self._length(i) / max(time.monotonic() - began, 1e-3)
            return 0
        if isinstance(error, _Superseded) or i in settled or over[0]:
            return 0  # the other copy arrived first, or the call is over: nothing to retry
        if not copy and i not in settled:
            pending.appendleft(i)
        streak[m.label] += 1
        tries = streak[m.label]
        if m.label in dropped:
            return 0
        if fatal or tries >= self.config.attempts:
            dropped.add(m.label)
            self.failures.append(f"{_segment_error(error, self.relpath)} ({tries} tries)")
            log.warning("%s: %s; %s is dropped for this file, its segments go to the other "
                        "mirrors", self.name, self.failures[-1], m)
            return 0
        return tries

    def _copy_wins(self, i: int, fetch: list, label: str) -> bool:
        """Whether a copy of segment `i` from mirror `label` should arrive before the fetch
        under way (`fetch`: [its mirror, bytes written]) ends, at the speeds a connection of
        each mirror last had; yes while a speed is not known yet (a stalled fetch has none)."""
        theirs, mine = self.speed.get(fetch[0]), self.speed.get(label)
        if not theirs or not mine:
            return True
        return (self._length(i) - fetch[1]) / theirs > self._length(i) / mine

    def _segment_chunks(self, m: HttpMirror, i: int) -> Iterator[bytes]:
        """The bytes of segment `i` from mirror `m`, chunk by chunk, and not one more."""
        start, end = self.bounds(i)
        left = end - start
        with m.open(self.relpath, start, end) as (got, chunks):
            if got != start:
                raise _MirrorFailed(f"{m.url(self.relpath)}: answered a range request with "
                                    f"the whole file")
            for chunk in chunks:
                chunk = chunk[:left]
                left -= len(chunk)
                yield chunk
                if not left:
                    return
        raise _Retryable(f"{m.url(self.relpath)}: connection closed at byte {end - left} of "
                         f"segment {start}-{end - 1}")

    def _write_segment(self, m: HttpMirror, i: int, writing: dict, settled: set) -> None:
        """Segment `i` from `m` into its place in the .part; each chunk is written with the
        lock held, and none once the segment is settled (a copy of it arrived first)."""
        written = 0
        try:
            with open(self.part, "r+b") as out, closing(self._segment_chunks(m, i)) as chunks:
                out.seek(self.bounds(i)[0])
                for chunk in chunks:
                    with self.lock:
                        if i in settled:
                            raise _Superseded()
                        out.write(chunk)
                        writing[i][1] += len(chunk)
                    written += len(chunk)
                    self.shown.add(len(chunk))
        except BaseException:
            self.shown.add(-written)
            raise

    def _copy_segment(self, m: HttpMirror, i: int, writing: dict, settled: set) -> None:
        """The endgame's second copy of segment `i`, from `m`, read into memory and written
        to the .part only if it arrives before the fetch to disk has written all its bytes."""
        copy = bytearray()
        with closing(self._segment_chunks(m, i)) as chunks:
            for chunk in chunks:
                if i in settled:
                    raise _Superseded()
                copy += chunk
        with self.lock:
            if i in settled or writing.get(i, [None, 0])[1] == len(copy):
                raise _Superseded()
            with open(self.part, "r+b") as out:
                out.seek(self.bounds(i)[0])
                out.write(copy)
            settled.add(i)  # the fetch to disk writes nothing more
        self.shown.add(len(copy))

    # -- verification

    def _verified(self) -> _Hashes | None:
        """The whole file's hashes when they match the published checksums, else None."""
        hashes = _Hashes()
        hashes.feed_file(self.part, self.config.chunk_bytes)
        self.mismatch = hashes.mismatch(self.entry)
        return hashes if self.mismatch is None else None

    def _digest(self, i: int) -> str:
        start, end = self.bounds(i)
        with open(self.part, "rb") as f:
            f.seek(start)
            return hashlib.sha1(f.read(end - start)).hexdigest()

    def _repair(self, mirrors: list[HttpMirror]) -> _Hashes | None:
        """After the whole file failed its checksum: find the mirror that served bad bytes and
        drop it. Each mirror's segments (the largest share first) are fetched again from the
        other mirrors and their sha1 compared; where two copies differ a third mirror, if
        there is one, says which is wrong; the wrong mirror's segments are all fetched again
        from the rest, and the file is verified anew. Returns the hashes once it verifies;
        raises _Mismatch when every mirror's segments were checked and it still does not;
        None when the mirrors left could not serve the segments."""
        alive = list(mirrors)
        agreed: set[int] = set()  # segments two mirrors served alike
        examined: set[str] = set()
        log.warning("%s does not verify (%s): checking which mirror served bad segments",
                    self.name, _Mismatch(*self.mismatch))
        while True:
            shares = Counter(label for i, label in self.done.items()
                             if i not in agreed and label not in examined)
            if not shares:
                raise _Mismatch(*self.mismatch)
            label = shares.most_common(1)[0][0]
            examined.add(label)
            others = [m for m in alive if m.label != label]
            if not others:
                continue
            mine = sorted(i for i, lab in self.done.items() if lab == label and i not in agreed)
            before = {i: self._digest(i) for i in mine}
            if self.fetch(mine, others):
                return None
            differ = [i for i in mine if self._digest(i) != before[i]]
            agreed.update(set(mine) - set(differ))
            if not differ:
                continue
            culprit, left = self._blame(differ[0], label, before[differ[0]], others)
            if left:
                return None
            start, end = self.bounds(differ[0])
            log.warning("%s: mirror %s served corrupt bytes (bytes %d-%d differ from the other "
                        "mirrors' copies): %s is dropped for this file", self.name, culprit,
                        start, end - 1, culprit)
            self.failures.append(f"{culprit}: served corrupt bytes")
            alive = [m for m in alive if m.label != culprit]
            redo = [i for i, lab in self.done.items() if lab == culprit]
            agreed.difference_update(redo)
            if redo and self.fetch(redo, alive):
                return None
            hashes = self._verified()
            if hashes is not None:
                return hashes

    def _blame(self, i: int, first: str, first_digest: str,
               others: list[HttpMirror]) -> tuple[str, list[int]]:
        """Which of two mirrors whose copies of segment `i` differ is wrong: `first`, whose
        copy had `first_digest`, or the mirror whose copy is in the .part now. A third mirror
        decides when there is one (its copy stays in the .part); without one, `first` is
        taken to be wrong and the file's checksum decides. Returns (the mirror at fault,
        segments left unfetched)."""
        second, second_digest = self.done[i], self._digest(i)
        third = [m for m in others if m.label != second]
        if not third:
            return first, []
        left = self.fetch([i], third)
        if left:
            return first, left
        digest = self._digest(i)
        return (second if digest == first_digest and digest != second_digest else first), []


def _segment_error(error: BaseException, relpath: str) -> str:
    if isinstance(error, _RangeNotSatisfiable):
        return f"{error}: HTTP 416, shorter than the published size of {relpath}"
    return str(error)


# ----------------------------------------------------------------------------------------
# Manifests: one per job, so that two jobs of one run can share the run's folder.

def manifest_path(folder: Path, job: str = DEFAULT_JOB) -> Path:
    """Where the download manifest of `job` lives in a raw folder: `_manifest.<job>.json`."""
    return folder / f"_manifest.{_check_job(job)}.json"


def read_download_manifest(folder: Path, job: str = DEFAULT_JOB) -> dict:
    """The manifest of a finished download of `job` in `folder` (as found by find_downloaded or
    find_downloaded_wikidata). Raises TwikiError when there is none."""
    manifest = _job_manifest(folder, job)
    if manifest is None:
        raise TwikiError(f"{folder} holds no finished download of job {job!r} (no "
                         f"{manifest_path(folder, job).name}); run `twiki download` again")
    return manifest


def _check_job(job: str) -> str:
    if not isinstance(job, str) or not JOB_RE.match(job):
        raise ConfigError(f"job {job!r} is not a dump job name such as {DEFAULT_JOB!r}")
    return job


def _job_manifest(folder: Path, job: str) -> dict | None:
    """`_manifest.<job>.json`, else a `_manifest.json` written for `job` (folders downloaded
    before manifests were per job; and the default job's copy, see _publish)."""
    for path in (manifest_path(folder, job), folder / MANIFEST):
        if not path.is_file():
            continue
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TwikiError(f"{path} is unreadable ({e}); delete it and download again") \
                from None
        if isinstance(manifest, dict) and manifest.get("stage") == STAGE \
                and manifest.get("job") == job:
            return manifest
    return None


def _forget(folder: Path, job: str) -> None:
    """Remove `job`'s manifest before its files change: it no longer describes them."""
    manifest_path(folder, job).unlink(missing_ok=True)
    try:
        legacy = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        legacy = None  # unreadable: it describes nothing
    if not isinstance(legacy, dict) or legacy.get("job") == job:
        (folder / MANIFEST).unlink(missing_ok=True)


def _publish(folder: Path, run: RunInfo, records: list[dict], used: list[str], fetched: int,
             timings: dict, **fields) -> None:
    """Write the manifest of `run`'s job into `folder`, last: the download is done. Every job
    records the run it took for its month, then `fields` (its own), then where the files came
    from, what they are and how long it took (`records`, `used`, `fetched`: see _transfer)."""
    write_json_atomic(manifest_path(folder, run.job), {
        "stage": STAGE, "wiki": run.wiki, "run": run.run_date, "month": run.month,
        "job": run.job, **fields,
        "job_status": run.status, "mirror": run.mirror, "mirrors_used": used,
        "files": records, "bytes": sum(r["size"] for r in records),
        "downloaded_bytes": fetched, "code_version": code_version(), "created": _now(),
        "timings": timings})


def _files_intact(folder: Path, manifest: dict) -> bool:
    try:
        return all(safe_join(folder, f["name"]).stat().st_size == f["size"]
                   for f in manifest["files"])
    except (OSError, KeyError, TypeError, UnsafePathError):
        return False


def _intact_manifest(folder: Path, job: str) -> dict | None:
    """The manifest of `job` in `folder` when every file it lists is there with its size."""
    try:
        manifest = _job_manifest(folder, job)
    except TwikiError as e:
        log.warning("%s", e)
        return None
    return manifest if manifest and _files_intact(folder, manifest) else None


# ----------------------------------------------------------------------------------------
# Transfer: shared by every kind of download.

OnVerified = Callable[[Path, dict], None]
"""A download's hook: called with a file's final path and its manifest record (name, size,
sha1, md5, verified_with) as soon as that file is in place and verified, from the thread that
fetched it, before the rest of the run is done (a file kept from an earlier try counts too)."""


def _transfer(run: RunInfo, folder: Path, ms: list[Mirror], config: DownloadConfig,
              on_verified: OnVerified | None = None, cancel: threading.Event | None = None
              ) -> tuple[list[dict], list[str], int]:
    """Put every file of `run` into `folder`, verified: kept when already there and verified,
    else downloaded (resuming a partial file). Returns (file records, mirrors used, bytes
    fetched). Removes the job's manifest first; the caller writes the new one. Each file is
    handed to `on_verified` once it is verified; `cancel` set stops the transfer at the next
    chunk (DownloadCancelled; finished files and segments stay)."""
    plan = _plan(run, folder)
    folder.mkdir(parents=True, exist_ok=True)
    _forget(folder, run.job)
    # The mirror that served the run's metadata first, then the others in the given order.
    served = next((m for m in ms if str(m) == run.mirror), ms[0])
    order = [served] + [m for m in ms if m is not served]
    total = sum(f["size"] or 0 for f in run.files) or None
    records, used, fetched = [], set(), 0
    with Progress(f"download {run.wiki} {run.run_date}", total=total, unit="B") as progress, \
            ThreadPoolExecutor(config.parallel_files, thread_name_prefix="twiki-download") as pool:
        stop = threading.Event()
        futures = [pool.submit(_place, entry, target, relpath, order, config,
                               _FileBytesShown(progress, stop, cancel), on_verified)
                   for entry, target, relpath in plan]
        # The first failure (or Ctrl-C) stops the run: files not started yet are not, those
        # under way end at their next chunk (their bytes stay for the resume), and the error
        # of the first file in plan order is raised.
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            if not all(f.done() for f in futures):
                stop.set()
            for f in futures:
                f.cancel()
            wait(futures)
        for f in futures:
            if not f.cancelled() and not isinstance(f.exception(), (type(None), _Stopped)):
                raise f.exception()
        if cancel is not None and cancel.is_set() and not all(
                f.done() and not f.cancelled() and f.exception() is None for f in futures):
            raise DownloadCancelled(f"download of {run.wiki} run {run.run_date} stopped; "
                                    f"what it fetched is kept for the resume")
        for (entry, _, _), f in zip(plan, futures):
            hashes, served = f.result()
            used.update(served)
            fetched += hashes.size if served else 0
            records.append(_record(entry, hashes))
    return records, sorted(used), fetched


def _cancel_with(ms: list[Mirror], cancel: threading.Event | None) -> None:
    """Hand the caller's cancel event to the http mirrors (see HttpMirror.cancel)."""
    for m in ms:
        if isinstance(m, HttpMirror):
            m.cancel = cancel


def _record(entry: dict, hashes: _Hashes) -> dict:
    """A verified file's line in the job's manifest."""
    return {"name": entry["name"], "size": hashes.size, "sha1": hashes.sha1.hexdigest(),
            "md5": hashes.md5.hexdigest(), "verified_with": _verified_with(entry)}


def _place(entry: dict, target: Path, relpath: str, mirrors: list[Mirror],
           config: DownloadConfig, shown: _FileBytesShown,
           on_verified: OnVerified | None = None) -> tuple[_Hashes, list[str]]:
    """One file of a run in place and verified (one task of _transfer's pool): kept when it is
    already there and verifies, else downloaded. Returns its hashes and the mirrors that
    served it (none when it was kept); hands the file to `on_verified` first."""
    hashes = _reuse(entry, target, config)
    if hashes is not None:
        shown.set(hashes.size)
        log.info("%s: already here and verified", entry["name"])
        served: list[str] = []
    else:
        hashes, served = _download_file(entry, target, relpath, mirrors, config, shown)
        log.info("%s: downloaded and verified (%s)", entry["name"], _verified_with(entry))
    if on_verified is not None:
        on_verified(target, _record(entry, hashes))
    return hashes, served


def _verified_with(entry: dict) -> str:
    return "+".join(a for a in ("sha1", "md5") if entry.get(a))


def _timings(start: float, resolved: float, end: float) -> dict:
    return {"resolve_s": round(resolved - start, 3), "download_s": round(end - resolved, 3),
            "total_s": round(end - start, 3)}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ----------------------------------------------------------------------------------------
# The stage: a wiki's dump job.

def find_downloaded(data_root: DataRoot, wiki: str, month: str,
                    job: str = DEFAULT_JOB) -> Path | None:
    """A finished download of `job` of a run dated in `month` (its manifest present, every file
    there with its recorded size), or None. Reads no network."""
    prefix = parse_month(month).replace("-", "")
    _check_job(job)
    base = data_root.raw_wiki(wiki)
    if not base.is_dir():
        return None
    for folder in sorted(base.iterdir()):
        if (folder.is_dir() and RUN_DATE_RE.match(folder.name)
                and folder.name.startswith(prefix) and _intact_manifest(folder, job)):
            return folder
    return None


def download_month(month: str, *, wiki: str = DEFAULT_WIKI, mirrors=None,
                   data_root: DataRoot, job: str = DEFAULT_JOB,
                   config: DownloadConfig | None = None,
                   session: requests.Session | None = None,
                   on_resolved: Callable[[RunInfo, Path], None] | None = None,
                   on_verified: OnVerified | None = None,
                   cancel: threading.Event | None = None) -> Path:
    """Download every file of `job` of the first finished run of `month` into
    data/raw/<wiki>/<YYYYMMDD>/ and return that folder; its manifest is
    `_manifest.<job>.json` (read it with read_download_manifest), so other jobs of the same
    run can be downloaded into the same folder.

    `mirrors`: None (dumps.wikimedia.org), an http(s) URL or local folder, or a list of them
    tried in order. A month already downloaded is a no-op that touches no network (and calls
    no hook).

    For work that overlaps the download (pipelines/snapshot.py): `on_resolved(run, folder)` is
    called once the run is chosen, before any file is fetched (`run.files`: every file's
    published name, size and checksums); `on_verified(path, record)` as each file is verified
    (see OnVerified); `cancel`, once set, stops the download at the next chunk with
    DownloadCancelled, keeping what was fetched.
    """
    start = time.monotonic()
    parse_month(month)
    check_wiki(wiki)
    _check_job(job)
    config = config or DownloadConfig()
    done = find_downloaded(data_root, wiki, month, job)
    if done is not None:
        log.info("%s %s: already downloaded in %s", wiki, month, done)
        return done
    with _mirrors(mirrors, config, session) as ms:
        _cancel_with(ms, cancel)
        run = _resolve(ms, wiki, month, job, config)
        resolved = time.monotonic()
        folder = data_root.raw(wiki, run.run_date)
        if on_resolved is not None:
            on_resolved(run, folder)
        records, used, fetched = _transfer(run, folder, ms, config, on_verified, cancel)
    _publish(folder, run, records, used, fetched, _timings(start, resolved, time.monotonic()))
    log.info("%s %s: run %s downloaded to %s (%d files, %.1f MB fetched)", wiki, month,
             run.run_date, folder, len(records), fetched / 1e6)
    return folder


# ----------------------------------------------------------------------------------------
# The stage: the Wikidata JSON entity dump nearest a month's enwiki run.

def entities_folder(data_root: DataRoot, run_date: str) -> Path:
    """data/raw/wikidatawiki/entities/<YYYYMMDD>/: the host's layout, below the data root."""
    _run_day(run_date)
    return data_root.raw_entities(run_date)


def find_downloaded_wikidata(data_root: DataRoot, month: str) -> Path | None:
    """The folder of a finished Wikidata all.json download made for `month` (manifest present,
    the file there with its recorded size), or None. Reads no network."""
    return _find_wikidata(data_root, parse_month(month))


def _find_wikidata(data_root: DataRoot, month: str, fmt: str | None = None,
                   enwiki_run: str | None = None) -> Path | None:
    base = data_root.raw_wiki(WIKIDATA_WIKI) / ENTITIES_DIR
    if not base.is_dir():
        return None
    for folder in sorted(base.iterdir()):
        if not (folder.is_dir() and RUN_DATE_RE.match(folder.name)):
            continue
        manifest = _intact_manifest(folder, WIKIDATA_JOB)
        served = (manifest or {}).get("months") or {}
        if not isinstance(served, dict) or month not in served:
            continue
        if enwiki_run is not None and served[month] != enwiki_run:
            continue
        if fmt is not None and fmt not in (manifest.get("format"),
                                           manifest.get("requested_format")):
            continue
        return folder
    return None


def resolve_wikidata_run(mirrors, enwiki_run: str, *, fmt: str = "bz2",
                         window_days: int = WIKIDATA_WINDOW_DAYS,
                         config: DownloadConfig | None = None,
                         session: requests.Session | None = None) -> RunInfo:
    """The Wikidata JSON entity dump run nearest enwiki run `enwiki_run` (YYYYMMDD), with its
    one all.json file. See download_wikidata for the rule."""
    config = config or DownloadConfig()
    fmt, window_days = _check_wikidata_args(fmt, window_days)
    with _mirrors(mirrors, config, session) as ms:
        return _resolve_wikidata(ms, enwiki_run, "", fmt, window_days, config)


def download_wikidata(month: str, *, mirrors=None, data_root: DataRoot,
                      enwiki_run: str | None = None, fmt: str = "bz2",
                      window_days: int = WIKIDATA_WINDOW_DAYS,
                      config: DownloadConfig | None = None,
                      session: requests.Session | None = None,
                      cancel: threading.Event | None = None) -> Path:
    """Download the Wikidata JSON entity dump (wikidata-<run>-all.json.bz2 or .gz) nearest the
    month's enwiki dump into data/raw/wikidatawiki/entities/<YYYYMMDD>/ and return that folder
    (manifest: `_manifest.entities-all-json.json`, see read_download_manifest).

    Which run: the enwiki run of the month is `enwiki_run` if given, else the run of the
    month's downloaded enwiki job (find_downloaded), else resolved on the mirror like
    download_month does. Among the run folders of <mirror>/wikidatawiki/entities/ dated at most
    `window_days` days from it, the one with the smallest |date difference| whose all.json is
    finished wins; a tie goes to the earlier run. Finished means listed in the run's
    sha1sums.txt or md5sums.txt (the host writes a run's files before it lists them there).
    `fmt` is the format taken when the run has both; the other one is taken when only it is
    finished. The file is verified against every checksum listed for it.

    Raises NoDumpError (no run within the window: the message names the runs nearest) or
    DumpNotReadyError (runs in the window, none finished yet: try later). A month already
    downloaded (for the same enwiki run when that is known, and in `fmt` or as asked for with
    `fmt`) is a no-op that touches no network. `cancel`, once set, stops the download at the
    next chunk with DownloadCancelled, keeping what was fetched.
    """
    start = time.monotonic()
    parse_month(month)
    fmt, window_days = _check_wikidata_args(fmt, window_days)
    config = config or DownloadConfig()
    if enwiki_run is not None:
        _run_day(enwiki_run)
    else:
        raw = find_downloaded(data_root, DEFAULT_WIKI, month)
        enwiki_run = read_download_manifest(raw)["run"] if raw is not None else None
    done = _find_wikidata(data_root, month, fmt, enwiki_run)
    if done is not None:
        log.info("%s %s: already downloaded in %s", WIKIDATA_WIKI, month, done)
        return done
    with _mirrors(mirrors, config, session) as ms:
        _cancel_with(ms, cancel)
        if enwiki_run is None:
            enwiki_run = _resolve(ms, DEFAULT_WIKI, month, DEFAULT_JOB, config).run_date
        run = _resolve_wikidata(ms, enwiki_run, month, fmt, window_days, config)
        resolved = time.monotonic()
        folder = entities_folder(data_root, run.run_date)
        name = run.files[0]["name"]
        # A run nearest to two months' enwiki runs serves both: keep what it served before.
        before = _intact_manifest(folder, WIKIDATA_JOB) if folder.is_dir() else None
        months = dict(before.get("months") or {}) \
            if before and [f.get("name") for f in before["files"]] == [name] else {}
        records, used, fetched = _transfer(run, folder, ms, config, cancel=cancel)
    months[month] = enwiki_run
    _publish(folder, run, records, used, fetched, _timings(start, resolved, time.monotonic()),
             for_enwiki_run=enwiki_run,
             days_from_enwiki_run=abs((_run_day(run.run_date) - _run_day(enwiki_run)).days),
             months=dict(sorted(months.items())), format=name.rsplit(".", 1)[1],
             requested_format=fmt, window_days=window_days)
    log.info("%s %s: entities run %s (for enwiki run %s) downloaded to %s (%.1f MB fetched)",
             WIKIDATA_WIKI, month, run.run_date, enwiki_run, folder, fetched / 1e6)
    return folder


def _check_wikidata_args(fmt: str, window_days: int) -> tuple[str, int]:
    if fmt not in WIKIDATA_FORMATS:
        raise ConfigError(f"Wikidata dump format {fmt!r} is not one of "
                          f"{', '.join(WIKIDATA_FORMATS)}")
    if isinstance(window_days, bool) or not isinstance(window_days, int) or window_days < 0:
        raise ConfigError(f"window_days must be a whole number of days >= 0, not "
                          f"{window_days!r}")
    return fmt, window_days


def _run_day(run_date: str) -> date:
    """The date of a run written YYYYMMDD; ConfigError for anything else."""
    try:
        if isinstance(run_date, str) and RUN_DATE_RE.match(run_date):
            return date(int(run_date[:4]), int(run_date[4:6]), int(run_date[6:]))
    except ValueError:
        pass
    raise ConfigError(f"dump run date {run_date!r} is not a date written YYYYMMDD "
                      "(for example 20230301)")


def _resolve_wikidata(ms: list[Mirror], enwiki_run: str, month: str, fmt: str,
                      window_days: int, config: DownloadConfig) -> RunInfo:
    where = ", ".join(str(m) for m in ms)
    folder = f"{WIKIDATA_WIKI}/{ENTITIES_DIR}"
    target = _run_day(enwiki_run)
    runs, errors = _list_runs(ms, folder, config)
    if runs is None:
        raise DownloadError(f"could not read the run listing {folder}/ on any mirror "
                            f"({'; '.join(errors)}). Check the mirror address, or pass a "
                            f"mirror that has Wikidata's JSON dumps.")
    days = {}
    for run in runs:
        try:
            days[run] = (_run_day(run) - target).days
        except ConfigError:
            continue  # an eight-digit folder that is not a date
    near = sorted((abs(d), run) for run, d in days.items() if abs(d) <= window_days)
    if not near:
        closest = sorted(days, key=lambda r: (abs(days[r]), r))[:4]
        raise NoDumpError(
            f"no Wikidata JSON dump run within {window_days} days of enwiki run {enwiki_run} "
            f"on {where}; the nearest runs there: "
            f"{', '.join(f'{r} ({days[r]:+d} days)' for r in sorted(closest)) or 'none'} "
            f"({len(runs)} runs, {runs[0]} .. {runs[-1]}). Use a mirror that keeps runs of "
            f"that time (dumps.wikimedia.org keeps only the last few weeks) or widen "
            f"window_days."
        )
    formats = (fmt,) + tuple(f for f in WIKIDATA_FORMATS if f != fmt)
    seen = []
    for distance, run in near:
        sums, source = {}, None
        for algo in ("sha1", "md5"):
            got = _read_text(ms, f"{folder}/{run}/wikidata-{run}-{algo}sums.txt", config)
            if got is not None:
                sums[algo] = _parse_sums(got[0], algo)
                source = source or got[1]
        for f in formats:
            name = f"wikidata-{run}-all.json.{f}"
            sha1, md5 = (sums.get(a, {}).get(name) for a in ("sha1", "md5"))
            if sha1 or md5:
                log.info("%s entities for enwiki run %s -> run %s (%d days away) on %s: %s",
                         WIKIDATA_WIKI, enwiki_run, run, distance, source, name)
                return RunInfo(
                    run_date=run, mirror=str(source),
                    status={"status": "done",
                            "listed_in": [f"wikidata-{run}-{a}sums.txt" for a in sums
                                          if name in sums[a]]},
                    files=[{"name": name, "size": None, "url": f"/{folder}/{run}/{name}",
                            "sha1": sha1, "md5": md5}],
                    wiki=WIKIDATA_WIKI, month=month, job=WIKIDATA_JOB)
        state = ("all.json not listed in its sums files yet" if sums
                 else "no sha1sums/md5sums file yet")
        seen.append(f"{run} ({days[run]:+d} days): {state}")
    raise DumpNotReadyError(
        f"no Wikidata JSON dump run within {window_days} days of enwiki run {enwiki_run} has "
        f"finished its all.json yet ({'; '.join(seen)}) on {where}. Try again later: a run "
        f"takes a few days, and its file counts once the run's sums files list it."
    )


def _reuse(entry: dict, target: Path, config: DownloadConfig) -> _Hashes | None:
    """Hashes of a file already in place from an interrupted run, if it still verifies."""
    if not target.is_file():
        return None
    if entry["size"] is not None and target.stat().st_size != entry["size"]:
        target.unlink()
        return None
    hashes = _Hashes()
    hashes.feed_file(target, config.chunk_bytes)
    if hashes.mismatch(entry) is not None:
        log.warning("%s is here but does not verify: downloading it again", entry["name"])
        target.unlink()
        return None
    return hashes


def multistream_parts(manifest: dict) -> list[tuple[str, str | None]]:
    """(data file, its index file or None) for every pages-articles-multistream file of a
    download manifest, in part order (part number, then first page id).

    When both the split parts and the single combined file are listed, only the parts are
    returned: the combined file holds the same pages again.
    """
    names = [f["name"] if isinstance(f, dict) else f for f in manifest.get("files", [])]
    data, index = {}, {}
    for name in names:
        if m := MULTISTREAM_DATA.search(name):
            data[_part_key(m)] = name
        elif m := MULTISTREAM_INDEX.search(name):
            index[_part_key(m)] = name
    if any(k[0] for k in data):
        data = {k: v for k, v in data.items() if k[0]}
    return [(data[k], index.get(k)) for k in sorted(data)]


def _part_key(m: re.Match) -> tuple[int, int, int]:
    return (int(m["part"] or 0), int(m["first"] or 0), int(m["last"] or 0))


__all__ = ["DEFAULT_JOB", "DEFAULT_MIRROR", "WIKIDATA_JOB", "DownloadCancelled",
           "DownloadConfig", "OnVerified", "RunInfo",
           "download_month", "download_wikidata", "entities_folder", "find_downloaded",
           "find_downloaded_wikidata", "manifest_path", "multistream_parts",
           "read_download_manifest", "resolve_run", "resolve_wikidata_run"]
