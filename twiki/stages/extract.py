"""extract: a month's pages-articles-multistream dump -> the month's snapshot of articles.

Reads data/raw/<wiki>/<YYYYMMDD>/ (the download stage's verified files) and writes
data/snapshots/<wiki>/<YYYY-MM>/: one row per article (namespace 0, no redirects) with its
clean text as paragraphs, their section path and their links to articles, partitioned by a
hash of page_id. Beside it, data/redirects/<wiki>/<YYYY-MM>/ (stage "extract-redirects")
records the month's namespace-0 redirects (page_id, title, target), partitioned the same way.

Two phases, both run by the executor: *map* decompresses one chunk of consecutive bz2
streams (the multistream index tells where they start) and writes its articles' wikitext to a
work file grouped by output shard; *reduce* gathers one output shard from every chunk in
page_id order and cleans the wikitext. Cleaning in the reduce is what makes snapshots
incremental: shard k of last month's snapshot is merge-joined alongside, and a page whose
revision sha1 is unchanged reuses last month's clean text instead of being parsed again. Both
phases resume per task; the work files go once the snapshot is published.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import logging
import math
import os
import shutil
import time
from array import array
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from xml.parsers import expat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.artifacts import (ROW_GROUP_ROWS, ArtifactBuild, ShardWriter, read_manifest,
                               release_memory, shard_name, shard_of, sum_counts)
from ..engine.executors import Executor
from ..engine.paths import DataRoot, parse_month
from ..engine.stage import StageResult, StageRun, stage_defaults
from ..errors import ConfigError, InputError, TwikiError
from ..sources.download import find_downloaded, multistream_parts, read_download_manifest
from ..text.normalize import normalize_title
from ..text.wikitext import clean_page, redirect_target, title_of

log = logging.getLogger("twiki")

# Bump when the cleaning or the row layout changes: snapshots made before are rebuilt.
STAGE_VERSION = 4
STAGE = "extract"
REDIRECTS_STAGE = "extract-redirects"

SCHEMA = pa.schema([
    pa.field("page_id", pa.int64(), nullable=False),
    pa.field("title", pa.string(), nullable=False),
    pa.field("revid", pa.int64(), nullable=False),
    pa.field("timestamp", pa.timestamp("s", tz="UTC"), nullable=False),
    pa.field("sha1", pa.string()),
    pa.field("paragraphs", pa.list_(pa.struct([
        pa.field("section", pa.list_(pa.string())),
        pa.field("text", pa.string()),
        # links to articles: text[start:end] (str offsets) shows a link to `target`
        # (normalize_title of its target title, '#fragment' dropped)
        pa.field("links", pa.list_(pa.struct([
            pa.field("start", pa.int32()),
            pa.field("end", pa.int32()),
            pa.field("target", pa.string()),
        ]))),
    ]))),
])

# The month's redirects (namespace 0), one row a redirect page, sorted by page_id.
REDIRECTS_SCHEMA = pa.schema([
    pa.field("page_id", pa.int64(), nullable=False),   # the redirect page
    pa.field("title", pa.string(), nullable=False),    # normalize_title of its title
    pa.field("target", pa.string(), nullable=False),   # normalized target, fragment dropped
])

# Map-phase work files: the pages' metadata and raw wikitext, grouped by output shard; a
# redirect's row has its target in `redirect` (null for articles) and no wikitext.
WORK_SCHEMA = pa.schema([f for f in SCHEMA if f.name != "paragraphs"]
                        + [pa.field("unchanged", pa.bool_()), pa.field("redirect", pa.string()),
                           pa.field("wikitext", pa.string())])

# A row group of a snapshot shard is what a reader (and the writer) holds at once, so it is
# bounded by articles and by their clean text, never by a whole shard: at most 256 articles
# (enwiki's average is a few KB of clean text) and it closes at the article that brings it
# to 1 MB of text (long articles: the longest have 100s of KB).
SNAPSHOT_ROW_GROUP_ROWS = 256
SNAPSHOT_ROW_GROUP_BYTES = 1 << 20


def paragraph_bytes(table: pa.Table) -> np.ndarray:
    """UTF-8 bytes of each row's paragraph texts (the size that bounds a row group)."""
    lists = table.column("paragraphs").combine_chunks()
    texts = pc.struct_field(pc.list_flatten(lists), "text")
    lengths = np.asarray(pc.binary_length(texts).fill_null(0).to_numpy(zero_copy_only=False),
                         dtype=np.int64)
    parents = np.asarray(pc.list_parent_indices(lists).to_numpy(), dtype=np.int64)
    return np.bincount(parents, weights=lengths, minlength=table.num_rows).astype(np.int64)


# Work files of the map: Arrow IPC with zstd at its fastest level (wikitext compresses ~3x).
WORK_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=pa.Codec("zstd", compression_level=1))

# The reduce hands freed memory back to the OS once it has read this many bytes of pieces.
RELEASE_EVERY_BYTES = 64 << 10

# Below this many failed pages a build is never stopped for its failure rate (tiny samples).
MIN_FAILURES_TO_STOP = 10

# Failed pages listed by id in the report; beyond this only the count grows (a broken dump
# should not make a manifest of gigabytes).
MAX_LISTED_FAILURES = 1000


@dataclass(frozen=True)
class ExtractConfig:
    """What decides the snapshot's content (all of it is part of the artifact key)."""

    shards: int = 64
    """Output shards. Fixed per data root: month A and B are joined shard by shard, so every
    month must use the same count (64: ~100k articles a shard for full enwiki)."""
    namespaces: tuple[int, ...] = (0,)
    """MediaWiki namespaces kept; 0 is the article namespace."""
    tables: bool = False
    """Keep tables as text: each table row a paragraph of its own, its non-empty cells joined
    by " | " (a caption is a paragraph before the rows; tables nested in a cell are dropped).
    Off by default, as in TemporalWiki: tables are not prose; award, election and sports
    pages change mostly in them."""

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= 100_000:
            raise ConfigError(f"shards must be between 1 and 100000, not {self.shards}")


@dataclass(frozen=True)
class ExtractRunOptions:
    """How the work is done; never changes the output."""

    chunk_mb: float = 2.0
    """Compressed MB of consecutive bz2 streams per map task: bounds a worker's memory (2 MB:
    peak memory +4% from 115 MB to 1.15 GB of wikitext; 8 MB gave +13% to +21% before the map
    grouped text by shard, at the same throughput). It decides where the map's work files are
    cut, so it names their folder: work kept from a run with another chunk size is not
    reused."""
    keep_work: bool = False
    """Keep data/work/extract/... after publishing (makes repairing a lost shard cheap)."""
    max_failed_fraction: float = 0.05
    """Above this share of failed pages the stage stops instead of publishing: one bad page is
    a skip, thousands are a broken dump or a bug (real enwiki months fail almost none)."""
    incremental: bool = True
    """Reuse the clean text of the latest earlier snapshot for pages whose revision sha1 is
    unchanged (same output as a cold extract, a fraction of the work)."""
    max_page_chars: int = 64 * 2**20
    """Characters one field of one page (its wikitext, title...) may hold, 64 Mi by default:
    the largest real enwiki pages hold a few million. Counted while the XML is parsed and
    never kept past it, so a hostile page of gigabytes costs no memory; the page is skipped
    and counted as failed, with its title in the report."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.chunk_mb) and self.chunk_mb > 0):
            raise ConfigError(f"--chunk-mb (extract_run.chunk_mb) must be a positive number "
                              f"of MB such as 2, not {self.chunk_mb!r}")
        if not (isinstance(self.max_page_chars, int) and self.max_page_chars > 0):
            raise ConfigError(f"extract_run.max_page_chars must be a positive whole number of "
                              f"characters such as 67108864, not {self.max_page_chars!r}")


@dataclass(frozen=True)
class Chunk:
    index: int
    path: str
    start: int
    length: int
    streams: int | None  # None: a plain (non-multistream) file, read to its end


@dataclass(frozen=True)
class MapTask:
    chunk: Chunk
    out: str
    shards: int
    namespaces: tuple[int, ...]
    previous: str | None = None   # a `PreviousIndex.write` folder: pages unchanged since then
                                  # are written without their wikitext (the reduce reuses them)
    max_page_chars: int = ExtractRunOptions.max_page_chars


@dataclass(frozen=True)
class ReduceTask:
    shard: int
    pieces: tuple[tuple[int, int, str, int], ...]  # (min page_id, max, work file, row group)
    out: str | None              # the snapshot shard, None when only its redirects are needed
    previous: str | None = None  # last month's shard file with the same layout, if any
    redirects_out: str | None = None  # the redirects shard, None when it is not needed
    tables: bool = False


# ---------------------------------------------------------------------------------------
# Planning: split the dump parts into chunks of whole bz2 streams using the index.

def read_index_offsets(index_path: Path) -> list[int]:
    """Sorted distinct stream offsets from a multistream index (`offset:page_id:title`)."""
    offsets: set[int] = set()
    try:
        with bz2.open(index_path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                head, sep, _ = line.partition(":")
                if not sep or not head.isdigit():
                    raise InputError(f"{index_path.name}: line {lineno} is not "
                                     f"'offset:page_id:title': {line[:80]!r}")
                offsets.add(int(head))
    except (OSError, EOFError) as e:
        raise InputError(f"{index_path.name}: unreadable multistream index ({e}); "
                         f"delete it and download the month again") from None
    return sorted(offsets)


def _cut_part(chunks: list, path: Path, offsets: list[int], size: int, chunk_bytes: int
              ) -> None:
    """Append the chunks of one multistream part: runs of whole streams of about
    `chunk_bytes`, numbered on from the chunks before. Streams run from one offset to the next;
    the last page stream is followed by the footer stream (`</mediawiki>`), so it is bounded by
    the file size and read by count."""
    bounds = offsets + [size]
    i = 0
    while i < len(offsets):
        j = i + 1
        while j < len(offsets) and bounds[j] - bounds[i] < chunk_bytes:
            j += 1
        chunks.append(Chunk(len(chunks), str(path), bounds[i], bounds[j] - bounds[i], j - i))
        i = j


def _work_parts(wiki: str, month: str, previous: Path | None, chunk_bytes: int,
                options: "ExtractRunOptions") -> tuple[str, ...]:
    """The map's work folder under data/work/: besides the snapshot's key, its work files
    depend on the snapshot reused (its unchanged pages carry no text), on where the chunks are
    cut and on the page cap, so a resumed run never mixes work files of two of them."""
    return (STAGE, wiki, month,
            f"reuse-{read_manifest(previous)['key'][:12]}" if previous else "cold",
            f"chunks-{chunk_bytes}", f"page-cap-{options.max_page_chars}")


def _map_tasks(chunks, work: Path, config: "ExtractConfig", index: Path | None,
               options: "ExtractRunOptions") -> list["MapTask"]:
    return [MapTask(c, str(work / f"chunk-{c.index:05d}.arrow"), config.shards,
                    tuple(config.namespaces), str(index) if index else None,
                    options.max_page_chars)
            for c in chunks]


def plan_chunks(raw: Path, parts: list[tuple[str, str | None]], chunk_bytes: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for xml_name, index_name in parts:
        path = raw / xml_name
        size = path.stat().st_size
        if index_name is None:
            chunks.append(Chunk(len(chunks), str(path), 0, size, None))
            continue
        offsets = read_index_offsets(raw / index_name)
        if offsets and offsets[-1] >= size:
            raise InputError(f"{index_name} points past the end of {xml_name} "
                             f"(offset {offsets[-1]}, file is {size} bytes): the file is "
                             f"truncated; delete it and download the month again")
        _cut_part(chunks, path, offsets, size, chunk_bytes)
    return chunks


# ---------------------------------------------------------------------------------------
# Map: one chunk of bz2 streams -> pages -> rows grouped by output shard.

# Decompressed bytes handed to the XML parser at a time, 4 MiB: bz2 packs a repetitive page
# of a gigabyte into a few KB, which one unbounded decompress call would return whole.
DECOMPRESSED_PIECE_BYTES = 4 << 20


def iter_decompressed(path: Path, start: int, length: int, streams: int | None,
                      read_size: int = 1 << 20):
    """Yield the decompressed bytes of `streams` consecutive bz2 streams starting at `start`
    (all streams to the end of the file when None), in pieces of at most
    DECOMPRESSED_PIECE_BYTES. Errors name the file and byte offset."""
    done = 0
    with open(path, "rb") as f:
        f.seek(start)
        remaining = length
        dec = bz2.BZ2Decompressor()
        stream_start = start
        fed = 0
        while remaining > 0:
            data = f.read(min(read_size, remaining))
            if not data:
                break
            remaining -= len(data)
            while True:
                fed += len(data)
                try:
                    out = dec.decompress(data, DECOMPRESSED_PIECE_BYTES)
                except OSError as e:
                    raise InputError(f"{path.name}: corrupt bz2 data in the stream starting "
                                     f"at byte {stream_start} ({e}); delete the file and "
                                     f"download the month again") from None
                if out:
                    yield out
                if not dec.eof:
                    if dec.needs_input:
                        break
                    data = b""     # more output is pending from the input already given
                    continue
                data = dec.unused_data
                stream_start += fed - len(data)
                fed = 0
                done += 1
                if streams is not None and done == streams:
                    return
                dec = bz2.BZ2Decompressor()
                if not data:
                    break
        if fed or (streams is not None and done < streams) or done == 0:
            raise InputError(f"{path.name}: truncated bz2 data: the stream starting at byte "
                             f"{stream_start} ends early; delete the file and download the "
                             f"month again")


# Telling a dump in another encoding from a malformed one, once expat has refused it: UTF-8
# XML never holds a NUL byte, while in UTF-16 (UTF-32) every second (fourth) byte of its ASCII
# markup is one. Refused data whose first 4 KB are over a quarter NULs is not UTF-8; a stray
# NUL in a UTF-8 dump is still reported as malformed XML at its position.
NOT_UTF8_PROBE_BYTES = 4096
NOT_UTF8_NUL_SHARE = 0.25


class _PageParser:
    """Streams `<page>` elements out of dump XML with expat, refusing any DTD.

    Multistream chunks are sequences of `<page>` elements without their root, so they are
    parsed inside a synthetic root element. A document type declaration (and so any entity
    definition) is refused outright: dumps never have one, and an XML bomb needs one.
    A field over `max_chars` characters is counted, not kept: its page gets an "oversized"
    reason instead of the field, so a hostile page of gigabytes is never held in memory.
    """

    FIELDS = {("page", "title"), ("page", "ns"), ("page", "id"), ("page", "redirect"),
              ("revision", "id"), ("revision", "timestamp"), ("revision", "sha1"),
              ("revision", "text"), ("revision", "model")}

    def __init__(self, on_page, where: str, max_chars: int = ExtractRunOptions.max_page_chars):
        self.on_page = on_page
        self.where = where
        self.max_chars = max_chars
        p = expat.ParserCreate()
        p.buffer_text = True
        p.buffer_size = 1 << 16
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.StartDoctypeDeclHandler = self._refuse_dtd
        p.EntityDeclHandler = self._refuse_entity
        self.parser = p
        self.stack: list[str] = []
        self.page: dict | None = None
        self.buf: list[str] | None = None
        self.buf_chars = 0
        p.Parse(b"<twiki-chunk>", False)

    def _refuse_dtd(self, *args):
        raise InputError(f"{self.where}: the XML has a document type declaration; dumps never "
                         f"do, and entity expansion is refused (possible XML bomb)")

    def _refuse_entity(self, *args):
        raise InputError(f"{self.where}: the XML declares an entity; refused (possible XML bomb)")

    def _start(self, name, attrs):
        parent = self.stack[-1] if self.stack else ""
        self.stack.append(name)
        if name == "page":
            self.page = {}
        elif self.page is not None and (parent, name) in self.FIELDS:
            if name == "redirect":
                self.page["redirect"] = attrs.get("title", "")
            elif name == "text" and attrs.get("deleted"):
                self.page["text_deleted"] = True
            else:
                self.buf = []
                self.buf_chars = 0

    def _chars(self, data):
        if self.buf is not None:
            self.buf_chars += len(data)
            if self.buf_chars <= self.max_chars:
                self.buf.append(data)
            elif self.buf:
                self.buf.clear()   # over the cap: only the count is kept from here on

    def _end(self, name):
        self.stack.pop()
        if self.buf is not None:
            parent = self.stack[-1] if self.stack else ""
            key = f"rev_{name}" if parent == "revision" else name
            if self.buf_chars > self.max_chars:
                self.page.setdefault("oversized", (
                    f"<{name}> holds {self.buf_chars} characters, over the cap of "
                    f"{self.max_chars} (extract_run.max_page_chars)"))
            else:
                self.page.setdefault(key, "".join(self.buf))
            self.buf = None
        if name == "page":
            page, self.page = self.page, None
            self.on_page(page)

    def feed(self, data: bytes, offset_hint: str = "") -> None:
        try:
            self.parser.Parse(data, False)
        except expat.ExpatError as e:
            probe = data[:NOT_UTF8_PROBE_BYTES]
            if probe.count(0) > NOT_UTF8_NUL_SHARE * len(probe):
                raise InputError(f"{self.where}: the dump is not UTF-8 (over a quarter of its "
                                 f"decompressed bytes are NULs: UTF-16 or UTF-32?), and "
                                 f"Wikimedia dumps always are: convert it (iconv -f UTF-16 -t "
                                 f"UTF-8) or download it again") from None
            raise InputError(f"{self.where}: malformed XML ({expat.errors.messages[e.code]}) "
                             f"at line {e.lineno}, column {e.offset} of the decompressed "
                             f"text{offset_hint}") from None

    def close(self) -> None:
        if self.page is not None or len(self.stack) > 1:
            raise InputError(f"{self.where}: the XML ends inside an element "
                             f"(<{self.stack[-1]}>): truncated or malformed dump")
        self.feed(b"</twiki-chunk>")
        # The expat parser's handlers are this object's methods: a reference cycle that only
        # the cyclic GC would free, late (it holds expat's buffers and, through on_page, the
        # chunk's rows), so that chunk after chunk the process's memory ratcheted up.
        p = self.parser
        p.StartElementHandler = p.EndElementHandler = p.CharacterDataHandler = None
        p.StartDoctypeDeclHandler = p.EntityDeclHandler = None
        self.parser = self.on_page = None


def parse_timestamp(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _sha1_digest(page_id: int, sha1: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{page_id}:{sha1}".encode(), digest_size=8).digest(),
                          "little")


class PreviousIndex:
    """Which pages last month's snapshot has at which revision sha1: its page ids, sorted, and
    a 64-bit digest of (page id, sha1) beside each, as two .npy files that every map task maps
    (16 bytes a page: ~110 MB for enwiki, shared through the page cache). A page found here
    unchanged is written without its wikitext; the reduce checks the full sha1 again."""

    def __init__(self, ids: np.ndarray, digests: np.ndarray):
        self.ids, self.digests = ids, digests

    @staticmethod
    def write(snapshot: Path, folder: Path) -> Path:
        # one shard at a time, straight into numpy: 16 bytes a page, no Python int kept
        ids, digests = [], []
        for f in sorted(snapshot.glob("part-*.parquet")):
            t = pq.read_table(f, columns=["page_id", "sha1"])
            t = t.filter(pc.is_valid(t.column("sha1")))
            pids = t.column(0).to_pylist()
            ids.append(np.asarray(pids, dtype=np.int64))
            digests.append(np.fromiter(
                (_sha1_digest(p, h) for p, h in zip(pids, t.column(1).to_pylist())),
                dtype=np.uint64, count=len(pids)))
        ids_a = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        order = np.argsort(ids_a, kind="stable")
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / ".digests.npy",
                (np.concatenate(digests) if digests else np.zeros(0, np.uint64))[order])
        np.save(folder / ".ids.npy", ids_a[order])
        os.replace(folder / ".digests.npy", folder / "digests.npy")
        os.replace(folder / ".ids.npy", folder / "ids.npy")   # last: it existing = complete
        return folder

    @staticmethod
    @lru_cache(maxsize=2)
    def open(folder: str) -> "PreviousIndex":
        return PreviousIndex(np.load(Path(folder) / "ids.npy", mmap_mode="r"),
                             np.load(Path(folder) / "digests.npy", mmap_mode="r"))

    def has(self, page_id: int, sha1: str | None) -> bool:
        if not sha1:
            return False
        i = int(np.searchsorted(self.ids, page_id))
        return (i < len(self.ids) and int(self.ids[i]) == page_id
                and int(self.digests[i]) == _sha1_digest(page_id, sha1))


class _ChunkRows:
    """Collects one chunk's articles (metadata + raw wikitext), grouped by output shard as
    they arrive, and its counts."""

    def __init__(self, namespaces: tuple[int, ...], shards: int,
                 previous: "PreviousIndex | None" = None):
        self.namespaces = set(namespaces)
        self.shards = shards
        self.previous = previous
        self.cols: dict[str, list] = {f.name: [] for f in WORK_SCHEMA if f.name != "wikitext"}
        # Wikitext goes straight into one UTF-8 buffer per output shard (an Arrow string
        # column's layout): no per-page str kept alive, and each shard's row group is written
        # from its own buffer without a copy, so a chunk costs about its wikitext in memory.
        self.rows: dict[int, list[int]] = {}          # shard -> its rows (indices into cols)
        self.text: dict[int, bytearray] = {}
        self.offsets: dict[int, array] = {}
        self.counts = {"pages": 0, "redirects": 0, "redirects_unrecorded": 0,
                       "other_namespaces": 0, "failed": 0, "wikitext_bytes": 0}
        self.failures: list[dict] = []

    def fail(self, page: dict, reason: str) -> None:
        self.counts["failed"] += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            pid = page.get("id", "")
            self.failures.append({"page_id": int(pid) if pid.isdigit() else pid,
                                  "title": page.get("title"), "reason": reason})

    def add(self, page: dict) -> None:
        self.counts["pages"] += 1
        try:
            ns = int(page.get("ns", "0"))
        except ValueError:
            return self.fail(page, f"bad namespace {page.get('ns')!r}")
        if ns not in self.namespaces:
            self.counts["other_namespaces"] += 1
            return
        redirect = page.get("redirect")
        if redirect is not None:
            redirect = title_of(redirect)
        if not redirect and "rev_text" in page:  # `#REDIRECT [[X]]` with no XML element
            redirect = redirect_target(page["rev_text"]) or redirect
        if redirect is not None:
            self.counts["redirects"] += 1
            if redirect and ns == 0:
                self._add_redirect(page, redirect)
            return
        if "oversized" in page:
            return self.fail(page, page["oversized"])
        if page.get("text_deleted") or "rev_text" not in page:
            return self.fail(page, "revision has no text")
        if page.get("rev_model", "wikitext") != "wikitext":
            return self.fail(page, f"content model {page['rev_model']!r} is not wikitext")
        try:
            page_id, revid = int(page["id"]), int(page["rev_id"])
            ts = parse_timestamp(page["rev_timestamp"])
        except (KeyError, ValueError) as e:
            return self.fail(page, f"missing or bad page/revision field ({e})")
        text = page["rev_text"].encode("utf-8")
        self.counts["wikitext_bytes"] += len(text)
        sha1 = page.get("rev_sha1")
        unchanged = self.previous is not None and self.previous.has(page_id, sha1)
        if unchanged:
            text = b""            # last month's clean text is reused: no need to carry this
        self._add_row(page_id, page.get("title", ""), revid, ts, sha1, unchanged, None, text)

    def _add_redirect(self, page: dict, target: str) -> None:
        """A redirect's row (no text): the reduce writes it to the month's redirects."""
        try:
            page_id, revid = int(page["id"]), int(page["rev_id"])
            ts = parse_timestamp(page["rev_timestamp"])
        except (KeyError, ValueError):
            self.counts["redirects_unrecorded"] += 1
            return
        self._add_row(page_id, page.get("title", ""), revid, ts, page.get("rev_sha1"), False,
                      target, b"")

    def _add_row(self, page_id: int, title: str, revid: int, ts: datetime, sha1: str | None,
                 unchanged: bool, redirect: str | None, text: bytes) -> None:
        c = self.cols
        s = shard_of(page_id, self.shards)
        rows = self.rows.get(s)
        if rows is None:
            rows = self.rows[s] = []
            self.text[s] = bytearray()
            self.offsets[s] = array("q", [0])
        rows.append(len(c["page_id"]))
        c["page_id"].append(page_id)
        c["title"].append(title)
        c["revid"].append(revid)
        c["timestamp"].append(ts)
        c["sha1"].append(sha1)
        c["unchanged"].append(unchanged)
        c["redirect"].append(redirect)
        buf = self.text[s]
        buf += text
        self.offsets[s].append(len(buf))

    def shard_table(self, shard: int) -> pa.Table:
        """The shard's rows in page_id order; its text buffer is handed over (and dropped
        here), so call it once per shard."""
        rows = self.rows[shard]
        buf = self.text.pop(shard)
        offsets = self.offsets.pop(shard)
        if len(buf) >= 2**31:
            raise InputError("a chunk holds over 2 GB of one shard's wikitext: lower --chunk-mb")
        wikitext = pa.StringArray.from_buffers(
            len(rows), pa.py_buffer(array("i", offsets)), pa.py_buffer(buf))
        arrays = [pa.array([self.cols[f.name][i] for i in rows], type=f.type)
                  for f in list(WORK_SCHEMA)[:-1]]
        table = pa.Table.from_arrays(arrays + [wikitext], schema=WORK_SCHEMA)
        ids = [self.cols["page_id"][i] for i in rows]
        if any(a > b for a, b in zip(ids, ids[1:])):   # dumps list pages by page_id: rare
            table = table.take(pc.sort_indices(table, [("page_id", "ascending")]))
        return table


def extract_chunk(task: MapTask) -> dict:
    """Map task: one chunk's articles into a work file, rows grouped by output shard.

    The work file is Arrow IPC (zstd-compressed buffers), one record batch per output shard:
    a reduce task opens ~one file per chunk to read one batch, which IPC makes cheap (Parquet
    footers cost more to open than the small batch does to read). Its schema metadata maps
    each shard to its batch and page_id range; the file existing means the task is done (it
    is renamed into place complete)."""
    out = Path(task.out)
    if out.exists():
        with pa.OSFile(str(out)) as f:
            meta = pa.ipc.open_file(f).schema.metadata
        return {**json.loads(meta[b"twiki.stages.report"]),
                "shards": json.loads(meta[b"twiki.shards"])}
    chunk = task.chunk
    path = Path(chunk.path)
    rows = _ChunkRows(task.namespaces, task.shards,
                      PreviousIndex.open(task.previous) if task.previous else None)
    parser = _PageParser(rows.add, f"{path.name} (chunk at byte {chunk.start})",
                         task.max_page_chars)
    t0 = time.perf_counter()
    for data in iter_decompressed(path, chunk.start, chunk.length, chunk.streams):
        parser.feed(data)
    parser.close()
    del parser

    ids = rows.cols["page_id"]
    shard_map = {}
    for rg, s in enumerate(sorted(rows.rows)):
        pids = [ids[i] for i in rows.rows[s]]
        shard_map[str(s)] = {"row_group": rg, "rows": len(pids), "min": min(pids),
                             "max": max(pids)}
    report = {"counts": rows.counts, "failures": rows.failures,
              "seconds": round(time.perf_counter() - t0, 3)}
    meta = {b"twiki.shards": json.dumps(shard_map).encode(),
            b"twiki.stages.report": json.dumps(report).encode()}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    schema = WORK_SCHEMA.with_metadata(meta)
    with pa.OSFile(str(tmp), "wb") as sink, \
            pa.ipc.new_file(sink, schema, options=WORK_IPC_OPTIONS) as w:
        for s in sorted(rows.rows):  # one record batch per output shard
            [part] = rows.shard_table(s).combine_chunks().to_batches()
            w.write_batch(pa.RecordBatch.from_arrays(part.columns, schema=schema))
            del part
    tmp.replace(out)
    del rows
    release_memory()
    return {**report, "shards": shard_map}


# ---------------------------------------------------------------------------------------
# Reduce: one output shard from every chunk, in page_id order, cleaned.

class _PreviousShard:
    """Last month's shard, read forward in page_id order alongside this month's rows."""

    def __init__(self, path: str | None):
        self._batches = (pq.ParquetFile(path).iter_batches(
            batch_size=SNAPSHOT_ROW_GROUP_ROWS, columns=["page_id", "sha1", "paragraphs"])
            if path else iter(()))
        self._ids: list[int] = []
        self._sha1s: list = []
        self._pos = 0
        self._batch = None

    def lookup(self, page_id: int, sha1: str | None):
        """(batch, row) of last month's paragraphs of this page if its revision sha1 is
        unchanged, else None. The paragraphs stay Arrow data: reusing them costs a copy of
        their bytes, not a Python object per paragraph."""
        while True:
            while self._pos < len(self._ids) and self._ids[self._pos] < page_id:
                self._pos += 1
            if self._pos < len(self._ids):
                break
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._batch, self._pos = batch, 0
            self._ids, self._sha1s = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        if self._ids[self._pos] != page_id or not sha1 or self._sha1s[self._pos] != sha1:
            return None
        return self._batch, self._pos


PARAGRAPHS = SCHEMA.field("paragraphs")


def _clean_rows(table: pa.Table, previous: _PreviousShard, counts: dict,
                failures: list, tables: bool = False) -> pa.Table:
    ids = table.column("page_id").to_pylist()
    sha1s = table.column("sha1").to_pylist()
    titles = table.column("title").to_pylist()
    texts = table.column("wikitext")
    keep: list[int] = []
    where: list[tuple[int, int]] = []       # kept row -> (source, row): 0 = cleaned here
    cleaned: list[list] = []
    sources: dict[int, tuple[pa.RecordBatch, list[int]]] = {}   # id(batch) -> batch, rows
    unchanged = table.column("unchanged").to_pylist()
    for i, pid in enumerate(ids):
        reused = previous.lookup(pid, sha1s[i])
        if reused is None and unchanged[i]:
            raise TwikiError(f"page {pid}: the map found it unchanged since last month's "
                             f"snapshot, which no longer says so (was that snapshot rebuilt "
                             f"during this run?); delete data/work/extract/ and run again")
        if reused is not None:
            counts["reused"] += 1
            batch, row = reused
            rows = sources.setdefault(id(batch), (batch, []))[1]
            where.append((id(batch), len(rows)))
            rows.append(row)
        else:
            try:
                paras = [{"section": list(p.section), "text": p.text,
                          "links": [{"start": a, "end": b, "target": t} for a, b, t in p.links]}
                         for p in clean_page(texts[i].as_py(), titles[i], tables=tables)]
            except Exception as e:  # one bad page never kills the run (DESIGN.md rule 8)
                counts["failed"] += 1
                if len(failures) < MAX_LISTED_FAILURES:
                    failures.append({"page_id": pid, "title": titles[i],
                                     "reason": f"wikitext cleaning failed: "
                                               f"{type(e).__name__}: {e}"})
                continue
            counts["cleaned"] += 1
            where.append((0, len(cleaned)))
            cleaned.append(paras)
        keep.append(i)
    # one array per source, then the rows back in their order
    parts = [pa.array(cleaned, type=PARAGRAPHS.type)]
    start = {0: 0}
    n = len(cleaned)
    for key, (batch, rows) in sources.items():
        start[key] = n
        parts.append(batch.column(2).take(pa.array(rows, type=pa.int64())))
        n += len(rows)
    paragraphs = pa.concat_arrays(parts).take(
        pa.array([start[k] + r for k, r in where], type=pa.int64()))
    counts["paragraphs"] += int(pc.sum(pc.list_value_length(paragraphs)).as_py() or 0)
    texts_out = pc.struct_field(pc.list_flatten(paragraphs), "text")
    counts["clean_chars"] += int(pc.sum(pc.utf8_length(texts_out)).as_py() or 0)
    counts["links"] += int(pc.sum(pc.list_value_length(
        pc.struct_field(pc.list_flatten(paragraphs), "links"))).as_py() or 0)
    out = table.drop_columns(["unchanged", "redirect", "wikitext"]).take(
        pa.array(keep, type=pa.int64()))
    return out.append_column(PARAGRAPHS, paragraphs)


def _redirect_rows(table: pa.Table) -> pa.Table:
    """The redirects among a piece's rows, as REDIRECTS_SCHEMA rows (page_id order kept)."""
    titles = [normalize_title(t) for t in table.column("title").to_pylist()]
    return pa.table({"page_id": table.column("page_id"),
                     "title": pa.array(titles, type=pa.string()),
                     "target": table.column("redirect")}, schema=REDIRECTS_SCHEMA)


def reduce_shard(task: ReduceTask) -> dict:
    t0 = time.perf_counter()
    out = Path(task.out) if task.out is not None else None
    pieces = sorted(task.pieces)
    counts = {"articles": 0, "cleaned": 0, "reused": 0, "failed": 0, "paragraphs": 0,
              "clean_chars": 0, "links": 0, "duplicate_pages": 0, "redirect_rows": 0}
    failures: list[dict] = []
    previous = _PreviousShard(task.previous)
    unreleased = 0
    with ExitStack() as stack:
        writer = redirects = None
        if out is not None:
            writer = stack.enter_context(ShardWriter(
                out, SCHEMA, row_group_rows=SNAPSHOT_ROW_GROUP_ROWS,
                row_group_bytes=SNAPSHOT_ROW_GROUP_BYTES, row_bytes=paragraph_bytes))
        if task.redirects_out is not None:
            redirects = stack.enter_context(ShardWriter(Path(task.redirects_out),
                                                        REDIRECTS_SCHEMA))
        i = 0
        while i < len(pieces):
            # Dumps list pages in page_id order, so pieces are disjoint and simply follow each
            # other; overlapping ones (an unusual dump) are merged by sorting just them.
            j, hi = i + 1, pieces[i][1]
            while j < len(pieces) and pieces[j][0] <= hi:
                hi = max(hi, pieces[j][1])
                j += 1
            tables = [_read_piece(p[2], p[3]) for p in pieces[i:j]]
            table = tables[0] if len(tables) == 1 else _merge_sorted(tables)
            counts["duplicate_pages"] += sum(t.num_rows for t in tables) - table.num_rows
            unreleased += table.nbytes
            is_redirect = pc.is_valid(table.column("redirect"))
            # counted whether or not this task writes the redirects shard: a snapshot rebuilt
            # beside current redirects reports them all the same
            counts["redirect_rows"] += pc.sum(is_redirect).as_py() or 0
            if redirects is not None:
                redirects.write(_redirect_rows(table.filter(is_redirect)))
            if writer is not None:
                table = table.filter(pc.invert(is_redirect))
                for start in range(0, table.num_rows, ROW_GROUP_ROWS):
                    writer.write(_clean_rows(table.slice(start, ROW_GROUP_ROWS), previous,
                                             counts, failures, task.tables))
            del table, tables
            # a long shard must not ratchet the allocator up: hand memory back after every
            # piece of some size (not after each: an incremental month's are mostly text-less)
            if unreleased >= RELEASE_EVERY_BYTES:
                release_memory()
                unreleased = 0
            i = j
    counts["articles"] = writer.rows if writer is not None else 0
    release_memory()
    return {"shard": task.shard, "counts": counts, "failures": failures,
            "seconds": round(time.perf_counter() - t0, 3)}


def _read_piece(path: str, batch: int) -> pa.Table:
    """One output shard's rows of one chunk's work file."""
    with pa.OSFile(path) as f:
        b = pa.ipc.open_file(f).get_batch(batch)
    return pa.Table.from_batches([b]).replace_schema_metadata(None)


def _merge_sorted(tables: list[pa.Table]) -> pa.Table:
    """Sort overlapping pieces by page_id; a page listed twice keeps its newest revision."""
    t = pa.concat_tables(tables)
    t = t.take(pc.sort_indices(t, [("page_id", "ascending"), ("revid", "descending")]))
    ids = t.column("page_id").to_pylist()
    keep = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    return t.take(pa.array(keep, type=pa.int64()))


# ---------------------------------------------------------------------------------------
# The stage.

def find_previous_snapshot(data_root: DataRoot, wiki: str, month: str,
                           config: dict) -> Path | None:
    """The latest snapshot of an earlier month made by this stage version with the same
    layout, whose clean text can be reused; None when there is none."""
    base = data_root.snapshot(wiki, month).parent
    earlier = sorted((p for p in base.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9]")
                      if p.name < month), reverse=True) if base.exists() else []
    for folder in earlier:
        m = read_manifest(folder)
        if (m and m.get("stage") == STAGE and m.get("stage_version") == STAGE_VERSION
                and {k: v for k, v in m["config"].items() if k != "month"}
                == {k: v for k, v in config.items() if k != "month"}):
            return folder
    return None


def _describe(result: StageResult) -> str:
    c, r = result.counts, result.report
    return (f"{c.get('articles', 0)} articles with {c.get('links', 0)} links "
            f"({c.get('pages', 0)} pages read, "
            f"{c.get('redirects', 0)} redirects, {c.get('other_namespaces', 0)} other "
            f"namespaces, {c.get('failed', 0)} failed; {c.get('cleaned', 0)} cleaned, "
            f"{c.get('reused', 0)} reused from {r.get('reused_from') or 'no earlier month'}) "
            f"in {result.manifest.get('shard_count')} shards")


def extract_month(month: str, *, wiki: str = "enwiki", data_root: DataRoot | None = None,
                  executor: Executor | None = None, config: ExtractConfig = ExtractConfig(),
                  options: ExtractRunOptions = ExtractRunOptions()) -> StageResult:
    """Build (or confirm, or repair) the snapshot of `month` from its downloaded dump."""
    parse_month(month)
    data_root, executor = stage_defaults(data_root, executor)
    raw = find_downloaded(data_root, wiki, month)
    if raw is None:
        raise TwikiError(f"no downloaded {wiki} dump for {month} under {data_root.raw_wiki(wiki)}: "
                         f"run `twiki download --month {month}` first")
    raw_manifest = read_download_manifest(raw)
    parts = multistream_parts(raw_manifest)
    if not parts:
        raise InputError(f"{raw}: the download has no pages-articles-multistream file")
    by_name = {f["name"]: f for f in raw_manifest["files"]}
    inputs = {"wiki": wiki, "run": raw_manifest["run"], "files": [
        {k: by_name[n].get(k) for k in ("name", "size", "sha1", "md5")}
        for pair in parts for n in pair if n]}
    # Through JSON, so that it compares equal to a config read back from a manifest.
    cfg = json.loads(json.dumps({"wiki": wiki, "month": month, **asdict(config)}))
    build = ArtifactBuild(data_root.snapshot(wiki, month), stage=STAGE,
                          stage_version=STAGE_VERSION, inputs=inputs, config=cfg,
                          shards=config.shards, schema=SCHEMA)
    redirects = ArtifactBuild(data_root.redirects(wiki, month), stage=REDIRECTS_STAGE,
                              stage_version=STAGE_VERSION, inputs=inputs, config=cfg,
                              shards=config.shards, schema=REDIRECTS_SCHEMA)
    # The snapshot is published last: when it exists, so do its redirects.
    run = StageRun(f"extract {wiki} {month}", build, redirects, data_root=data_root,
                   executor=executor)
    companions = {"redirects": redirects.final}
    if run.current:
        return run.result(_describe, what="snapshot", parts=companions)
    if build.state == "repair":
        log.info("snapshot %s %s: rebuilding missing or damaged shards %s",
                 wiki, month, build.missing)

    previous = find_previous_snapshot(data_root, wiki, month, cfg) if options.incremental else None
    chunk_bytes = int(options.chunk_mb * 1e6)
    work = run.work(*_work_parts(wiki, month, previous, chunk_bytes, options))
    index = None
    if previous is not None:
        index = work / "previous-index"
        if not (index / "ids.npy").exists():
            PreviousIndex.write(previous, index)
    chunks = plan_chunks(raw, parts, chunk_bytes)
    map_tasks = _map_tasks(chunks, work, config, index, options)
    map_reports = run.map(extract_chunk, map_tasks, phase="read",
                          weights=[c.length for c in chunks], unit="B")
    t_map = run.seconds()
    release_memory()
    pieces: dict[int, list] = {}
    for task, done in zip(map_tasks, map_reports):
        for s, info in done["shards"].items():
            pieces.setdefault(int(s), []).append(
                (info["min"], info["max"], task.out, info["row_group"]))

    def reduce_task(s: int, out: str | None, redirects_out: str | None) -> ReduceTask:
        return ReduceTask(s, tuple(pieces.get(s, ())), out,
                          str(previous / shard_name(s)) if previous else None,
                          redirects_out, config.tables)

    reduce_reports = run.map_shards(reduce_shard, reduce_task, builds=(build, redirects),
                                    phase="clean")

    task_reports = map_reports + reduce_reports
    counts = sum_counts([r["counts"] for r in task_reports])
    failures = [f for r in task_reports for f in r["failures"]]
    cpu_seconds = sum(r["seconds"] for r in task_reports)
    report = {"counts": counts, "failed_pages": failures[:MAX_LISTED_FAILURES],
              "chunks": len(chunks), "reused_from": previous.name if previous else None,
              "wikitext_mb_per_cpu_second":
                  round(counts["wikitext_bytes"] / 1e6 / cpu_seconds, 3) if cpu_seconds else None}
    timings = {"map_s": round(t_map, 3), "reduce_s": round(run.seconds() - t_map, 3),
               "cpu_s": round(cpu_seconds, 3)}
    failed, seen = counts["failed"], counts["failed"] + counts["articles"]
    if failed > MIN_FAILURES_TO_STOP and failed > options.max_failed_fraction * seen:
        reasons = "; ".join(f"page {f['page_id']}: {f['reason']}" for f in failures[:3])
        for b in (build, redirects):
            if b.state == "build":
                shutil.rmtree(b.staging, ignore_errors=True)
        raise InputError(f"snapshot {wiki} {month}: {failed} of {seen} pages failed (more than "
                         f"{options.max_failed_fraction:.0%}); nothing published. First "
                         f"reasons: {reasons}")
    run.publish(report, timings, keep_work=options.keep_work)
    result = run.result(_describe, what="snapshot", parts=companions)
    log.info("%s, %.1fs", result.summary(), run.seconds())
    return result


def prefetch_map(month: str, *, wiki: str, run: str, files: list[dict], verified: dict,
                 data_root: DataRoot, executor: Executor,
                 config: ExtractConfig = ExtractConfig(),
                 options: ExtractRunOptions = ExtractRunOptions()) -> dict:
    """The map tasks of the multistream parts downloaded so far, run while the rest of the
    run downloads (pipelines/snapshot.py calls it as files are verified), into the work
    folder that extract_month will use: extract_month then finds those chunks done
    (extract_chunk's work file existing is its done-marker) and does only the rest, so the
    snapshot is byte for byte the one of an extract after the whole download.

    `run`: the dump run (YYYYMMDD); `files`: the job's files as the mirror publishes them
    (name, size, sha1, md5; records of a download manifest do too, their `verified_with`
    saying which checksum was published); `verified`: name -> the download manifest's record
    of every file verified so far. Chunks are numbered across parts (as plan_chunks does), so
    a part is planned once the index of every part up to it is verified and its size known.
    extract_month's work folder is named by the snapshot's key, which holds every file's sha1
    and md5 as downloaded: until all of them are known (published, or verified) the chunks
    go to data/work/.../pending-<hash of the published checksums>/, which the call that knows
    them all moves into the key's folder; call it once more when the download is done, before
    extract_month. That call also checks its plan against plan_chunks on the files: if they
    differ, the chunks are thrown away (extract_month then makes them) rather than used.
    Returns {"work": folder or None, "chunks": map tasks run by this call, "planned": chunks
    numbered so far, "complete": whether the key's folder was known}."""
    from ..engine.artifacts import artifact_key

    parse_month(month)
    by_name = {f["name"]: f for f in files}
    parts = multistream_parts({"files": list(by_name)})
    listed = [n for pair in parts for n in pair if n]
    out = {"work": None, "chunks": 0, "planned": 0, "complete": False}
    if not parts:
        return out

    def published(name: str, field: str):
        entry = by_name[name]
        if field in ("sha1", "md5") and "verified_with" in entry \
                and field not in str(entry["verified_with"]).split("+"):
            return None     # a manifest record: computed here, not published
        return entry.get(field)

    def known(name: str) -> dict | None:
        """The file's (name, size, sha1, md5) as its download manifest will record them."""
        if name in verified:
            return {k: verified[name].get(k) for k in ("name", "size", "sha1", "md5")}
        entry = {k: published(name, k) for k in ("name", "size", "sha1", "md5")}
        return entry if all(v is not None for v in entry.values()) else None

    cfg = json.loads(json.dumps({"wiki": wiki, "month": month, **asdict(config)}))
    chunk_bytes = int(options.chunk_mb * 1e6)
    previous = find_previous_snapshot(data_root, wiki, month, cfg) if options.incremental else None
    head = _work_parts(wiki, month, previous, chunk_bytes, options)
    pending = data_root.work(*head, "pending-" + artifact_key(STAGE, STAGE_VERSION, {
        "wiki": wiki, "run": run, "files": [{"name": n, "sha1": published(n, "sha1"),
                                             "md5": published(n, "md5")} for n in listed]},
        cfg)[:16])
    records = [known(n) for n in listed]
    work = pending
    if all(r is not None for r in records):
        key = artifact_key(STAGE, STAGE_VERSION, {"wiki": wiki, "run": run, "files": records},
                           cfg)
        snapshot = read_manifest(data_root.snapshot(wiki, month))
        if snapshot is not None and snapshot.get("key") == key:
            if pending.exists():
                data_root.remove_work(pending)
            return out      # built already: nothing to read ahead
        work = data_root.work(*head, key[:16])
        out["complete"] = True
        if pending.exists():      # adopt what was read while checksums were still unknown
            work.mkdir(parents=True, exist_ok=True)
            for item in sorted(pending.iterdir()):
                if not item.name.startswith(".") and not (work / item.name).exists():
                    os.replace(item, work / item.name)
            data_root.remove_work(pending)
    out["work"] = str(work)

    raw = data_root.raw(wiki, run)
    chunks: list[Chunk] = []
    for xml_name, index_name in parts:
        size = verified[xml_name]["size"] if xml_name in verified else published(xml_name, "size")
        if size is None or (index_name is not None and index_name not in verified):
            break           # later parts' chunk numbers depend on this part's
        path = raw / xml_name
        if index_name is None:
            chunks.append(Chunk(len(chunks), str(path), 0, size, None))
            continue
        # Each call would read every verified index again (enwiki's: tens of millions of
        # lines): their offsets are kept here, by file and checksum, for the next calls.
        seen = prefetch_map.__dict__.setdefault("offsets", {})
        at = (str(raw / index_name), verified[index_name].get("sha1"))
        if at not in seen:
            if len(seen) > 256:
                seen.clear()
            seen[at] = read_index_offsets(raw / index_name)
        offsets = seen[at]
        if offsets and offsets[-1] >= size:
            break           # a broken part: extract_month says so
        _cut_part(chunks, path, offsets, size, chunk_bytes)
    out["planned"] = len(chunks)
    if all(n in verified for n in listed):
        try:
            same = plan_chunks(raw, parts, chunk_bytes) == chunks
        except (OSError, InputError):
            same = False
        if not same:
            log.warning("extract %s %s: the chunks read ahead do not follow extract's plan; "
                        "they are dropped and read again", wiki, month)
            if work.exists():
                data_root.remove_work(work)
            return {**out, "work": None, "planned": 0}
    todo = [c for c in chunks if Path(c.path).name in verified
            and not (work / f"chunk-{c.index:05d}.arrow").exists()]
    if not todo:
        return out
    work.mkdir(parents=True, exist_ok=True)
    index = None
    if previous is not None:
        index = work / "previous-index"
        if not (index / "ids.npy").exists():
            PreviousIndex.write(previous, index)
    tasks = _map_tasks(todo, work, config, index, options)
    executor.run(extract_chunk, tasks, desc=f"extract {wiki} {month}: read, while the "
                 f"download goes on", weights=[c.length for c in todo], unit="B")
    return {**out, "chunks": len(tasks)}
