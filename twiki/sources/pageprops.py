"""The enwiki `page_props` table dump: page_id -> Wikidata item, from the wiki's own run.

Wikimedia publishes each run's `page_props` table as a MySQL dump
(`<wiki>-<run>-page_props.sql.gz`, dump job `pagepropstable`, ~360 MB for enwiki in 2023). Its
`wikibase_item` rows link every page of that run to its item, by page id: no title matching,
and pages renamed between the enwiki and the Wikidata dumps stay linked. When a month's
download has it (same run as the snapshot), the mapping stage maps pages with it instead of
matching sitelink titles (see twiki.stages.mapping.build_mapping).

The file is read as text, never executed: only the value tuples of its
`INSERT INTO `page_props` VALUES (pp_page,'pp_propname','pp_value',pp_sortkey),...;` lines
whose property is `wikibase_item` are taken. mysqldump escapes every quote inside a string
(\\'), so a tuple start `(<digits>,'wikibase_item','Q<digits>'` right after `VALUES ` or `),`
cannot occur inside another row's value. A row whose page id or item number no int64 column
holds (a corrupt file: enwiki's are below 1e8 and 2e8) is skipped and counted with its line.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .download import DownloadConfig, download_month, find_downloaded, read_download_manifest
from ..engine.artifacts import read_manifest
from ..engine.paths import DataRoot
from ..errors import DumpNotReadyError, InputError, NoDumpError

log = logging.getLogger("twiki")

PAGE_PROPS_JOB = "pagepropstable"
_INSERT = b"INSERT INTO `page_props` VALUES "
_ROW = re.compile(rb"(?:VALUES |\),)\((\d+),'wikibase_item','Q([1-9]\d*)'")

# The largest page id and item number the mapping's int64 columns hold.
MAX_ROW_ID = 2**63 - 1
# Skipped rows listed by line in the mapping's report; beyond this only the count grows.
MAX_LISTED_SKIPPED = 1000
# The longest dump line read, 64 MiB: mysqldump writes INSERT lines of about 1 MB. A longer
# line (a corrupt or hostile file) is skipped with its rows, never held whole: its rest is
# read past in pieces of SKIP_PIECE_BYTES (1 MiB).
MAX_SQL_LINE_BYTES = 64 * 2**20
SKIP_PIECE_BYTES = 1 << 20


@dataclass
class SkippedRows:
    """Rows a read skipped: how many, and the first MAX_LISTED_SKIPPED of them by line."""

    count: int = 0
    listed: list[dict] = field(default_factory=list)

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        if len(self.listed) < MAX_LISTED_SKIPPED:
            self.listed.append({"line": line, "reason": reason})


def _row_id(digits: bytes) -> int | None:
    """A row's decimal id, or None when no int64 column holds it (the length is checked
    first: Python refuses int() of over 4300 digits, and a corrupt line may hold millions)."""
    digits = digits.lstrip(b"0") or b"0"
    if len(digits) > len(str(MAX_ROW_ID)):
        return None
    number = int(digits)
    return number if number <= MAX_ROW_ID else None


def _shown(digits: bytes) -> str:
    """An id as a message shows it: whole up to 40 digits, else its length."""
    return digits.decode() if len(digits) <= 40 else f"<{len(digits)} digits>"


def _bounded_lines(f, max_bytes: int) -> Iterator[bytes | None]:
    """The lines of binary file `f`, each read with a bounded readline; a line over
    `max_bytes` is yielded as None once its rest has been read past in bounded pieces."""
    while line := f.readline(max_bytes + 1):
        if len(line) <= max_bytes or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = f.readline(SKIP_PIECE_BYTES)
        yield None


def _open(path: Path):
    name = path.name
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def iter_wikibase_items(path: Path, skipped: SkippedRows | None = None,
                        max_line_bytes: int = MAX_SQL_LINE_BYTES) -> Iterator[tuple[int, int]]:
    """(page_id, item number) of every `wikibase_item` row of a page_props dump, streamed
    (one INSERT line, about a MB, at a time); a row with an id out of range, or a line over
    `max_line_bytes` (all of its rows), is added to `skipped` instead. A file that is not a
    page_props dump, or that ends early, is an InputError naming it."""
    path = Path(path)
    skipped = SkippedRows() if skipped is None else skipped
    inserts = 0
    table_seen = False
    try:
        with _open(path) as f:
            for line_no, line in enumerate(_bounded_lines(f, max_line_bytes), 1):
                if line is None:
                    skipped.add(line_no, f"a line over {max_line_bytes} bytes "
                                         f"(MAX_SQL_LINE_BYTES): its rows are skipped")
                elif line.startswith(_INSERT):
                    inserts += 1
                    for m in _ROW.finditer(line):
                        page_id, qid = _row_id(m.group(1)), _row_id(m.group(2))
                        if page_id is None or qid is None:
                            skipped.add(line_no, f"page {_shown(m.group(1))} -> item "
                                                 f"Q{_shown(m.group(2))}: an id above "
                                                 f"{MAX_ROW_ID}")
                            continue
                        yield page_id, qid
                elif not table_seen and line.startswith(b"CREATE TABLE `page_props`"):
                    table_seen = True
    except (EOFError, OSError, zlib.error) as e:
        raise InputError(f"{path.name}: the page_props dump is truncated or corrupt ({e}); "
                         f"delete it and download the month again") from None
    if not (table_seen or inserts):
        raise InputError(f"{path.name} is not a MySQL dump of the page_props table (no "
                         f"CREATE TABLE `page_props` or INSERT INTO `page_props` line)")


def find_page_props(data_root: DataRoot, wiki: str, month: str, run: str | None
                    ) -> Path | None:
    """The month's downloaded page_props dump when it is of `run` (the snapshot's dump run),
    else None: a table of another run would link other revisions' pages."""
    folder = find_downloaded(data_root, wiki, month, PAGE_PROPS_JOB)
    if folder is None:
        return None
    manifest = read_download_manifest(folder, PAGE_PROPS_JOB)
    if run is not None and manifest.get("run") != run:
        return None
    names = [f["name"] for f in manifest.get("files", []) if "page_props" in f["name"]]
    return folder / names[0] if len(names) == 1 else None


def snapshot_page_props(data_root: DataRoot, wiki: str, month: str) -> Path | None:
    """The month's downloaded page_props dump of its snapshot's own dump run, or None: no
    snapshot, a snapshot that names no run, or no page_props table of that run."""
    snapshot = read_manifest(data_root.snapshot(wiki, month)) or {}
    run = (snapshot.get("inputs") or {}).get("run")
    return find_page_props(data_root, wiki, month, run) if run else None


def download_page_props(month: str, *, wiki: str, mirrors, data_root: DataRoot, run: str,
                        config: DownloadConfig | None = None) -> Path | None:
    """Download (verified, resumable, like every dump file) the page_props table of `run`,
    the month's snapshot run, if that run has finished the job; None, said in the log, when it
    has not or the mirror lacks it: the mapping then matches sitelink titles."""
    try:
        download_month(month, wiki=wiki, mirrors=mirrors, data_root=data_root,
                       job=PAGE_PROPS_JOB, config=config)
    except (NoDumpError, DumpNotReadyError) as e:
        log.info("%s %s: no page_props table to download (%s); pages are mapped to items by "
                 "sitelink titles", wiki, month, str(e).split(";")[0])
        return None
    found = find_page_props(data_root, wiki, month, run)
    if found is None:
        log.warning("%s %s: the page_props table downloaded is not of run %s (the snapshot's); "
                    "pages are mapped to items by sitelink titles", wiki, month, run)
    return found
