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
cannot occur inside another row's value.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import re
import zlib
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


def _open(path: Path):
    name = path.name
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def iter_wikibase_items(path: Path) -> Iterator[tuple[int, int]]:
    """(page_id, item number) of every `wikibase_item` row of a page_props dump, streamed
    (one INSERT line, about a MB, at a time). A file that is not a page_props dump, or that
    ends early, is an InputError naming it."""
    path = Path(path)
    inserts = 0
    table_seen = False
    try:
        with _open(path) as f:
            for line in f:
                if line.startswith(_INSERT):
                    inserts += 1
                    for m in _ROW.finditer(line):
                        yield int(m.group(1)), int(m.group(2))
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
