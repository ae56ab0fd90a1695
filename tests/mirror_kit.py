"""Dump files in the real layout, written and read back: what the tests (and the benchmarks and
the sample builder, tests/build_sample_mirror.py) make mirrors with.

- enwiki: `build_run` writes a pages-articles-multistream run (parts with their index files,
  dumpstatus.json, sha1sums/md5sums) from `<page>` elements; `write_listing` the wiki's run
  listing; `run_pages` and `split_dump` cut a run or a document back into its pages, byte-exact.
- Pages: `Page.xml()` writes one revision as a 2016 dump does, `parse_revisions` reads every
  revision of an export of any schema version, `wikitext_sha1` is MediaWiki's revision sha1.
- Wikidata: `build_entities_run` writes an all.json run (bz2 and gz, with their sums) from
  entity lines; `split_entity_dump` and `entity_dump` take a document apart and put it back.

Also where the repo keeps the real Wikimedia files (REAL_DATA) and the committed sample
mirror (SAMPLE_MIRROR; `sample_pages()` are its month A's pages). Deterministic: the same pages
give the same bytes.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The real Wikimedia files, in the repo with their provenance (tests/data/wikimedia/README.md).
REAL_DATA = REPO / "tests" / "data" / "wikimedia"
# The committed sample mirror that tests/build_sample_mirror.py builds (data/sample/README.md),
# and its month A run.
SAMPLE_MIRROR = REPO / "data" / "sample" / "mirror"
SAMPLE_RUN = SAMPLE_MIRROR / "enwiki" / "20160501"

WIKI = "enwiki"
JOB = "articlesmultistreamdump"
# Real dumps put 100 pages in each bz2 stream. The sample has only ~220 pages, so with 100 it
# would have 2-3 streams; 10 pages a stream gives ~22 streams, enough to exercise readers that
# seek to a stream's offset from the index and run streams in parallel.
PAGES_PER_STREAM = 10
# enwiki splits its multistream dump into 27 page-id ranges (64 files); two parts are enough to
# exercise "many parts, each with its own header, footer and index".
PARTS = 2
# Highest compression, as the real dumps use; fixed so that reruns give identical bytes.
COMPRESSLEVEL = 9
# The last stream of every part closes the document.
FOOTER = b"  </mediawiki>\n"
# The jobs of a run's dumpstatus.json, with fixed states and timestamps (the sample's month A):
# the packaging must be reproducible.
JOB_UPDATED = {
    "articlesmultistreamdump": ("done", "2016-05-03 04:12:55"),
    "metahistorybz2dump": ("in-progress", "2016-05-05 10:02:31"),
    "metahistory7zdump": ("waiting", ""),
}
DUMPSTATUS_VERSION = "0.8"

WIKIDATA_DIR = "wikidatawiki/entities"
# The real all.json.gz is a concatenation of gzip members (one per batch of pages); members of
# 16 entities give the sample several, for readers that split a .gz at member boundaries.
ENTITIES_PER_GZ_MEMBER = 16
ENTITY_FORMATS = ("bz2", "gz")

PAGE_START = re.compile(rb"^  <page>\n", re.M)
PAGE_ID = re.compile(rb"<id>(\d+)</id>")
PAGE_TITLE = re.compile(rb"<title>(.*?)</title>")
REDIRECT_TARGET = re.compile(r"^#REDIRECT\s*\[\[([^\]|#]+)", re.I)


def split_dump(xml: bytes) -> tuple[bytes, list[bytes], bytes]:
    """Cut a pages-articles XML document into (header, pages, footer), each byte-exact:
    header + b"".join(pages) + footer == xml."""
    starts = [m.start() for m in PAGE_START.finditer(xml)]
    if not starts:
        raise ValueError("no <page> elements in the source document")
    end = xml.rindex(b"  </page>\n") + len(b"  </page>\n")
    bounds = starts + [end]
    pages = [xml[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return xml[: starts[0]], pages, xml[end:]


def page_id(page: bytes) -> int:
    return int(PAGE_ID.search(page).group(1))


def page_title(page: bytes) -> str:
    # The index keeps the title as it is written in the XML (entities not expanded).
    return PAGE_TITLE.search(page).group(1).decode("utf-8")


# ------------------------------------------------------------------------------------------
# One page revision in the dump's XML layout.

def wikitext_sha1(text: str) -> str:
    """The revision sha1 that MediaWiki writes in dumps: the SHA-1 of the UTF-8 text in base 36,
    padded to 31 digits (`Wikimedia\\base_convert(sha1($text), 16, 36, 31)`)."""
    n = int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16)
    digits = ""
    while n:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return digits.rjust(31, "0")


@dataclass(frozen=True)
class Page:
    """A page with one revision, every field as the dump writes it (text unescaped)."""

    title: str
    ns: int
    page_id: int
    revid: int
    timestamp: str
    text: str
    parentid: int | None = None
    username: str | None = None
    userid: int | None = None
    ip: str | None = None
    minor: bool = False
    comment: str | None = None
    redirect: str | None = None
    restrictions: str | None = None
    model: str = "wikitext"
    format: str = "text/x-wiki"
    sha1: str | None = None   # None: computed from the text

    def xml(self) -> bytes:
        """The `<page>` element as a 2016 pages-articles dump (export-0.10) writes it."""
        esc = _xml_escape
        lines = ["  <page>", f"    <title>{esc(self.title)}</title>", f"    <ns>{self.ns}</ns>",
                 f"    <id>{self.page_id}</id>"]
        if self.redirect is not None:
            lines.append(f'    <redirect title="{esc(self.redirect)}" />')
        if self.restrictions is not None:
            lines.append(f"    <restrictions>{esc(self.restrictions)}</restrictions>")
        lines += ["    <revision>", f"      <id>{self.revid}</id>"]
        if self.parentid is not None:
            lines.append(f"      <parentid>{self.parentid}</parentid>")
        lines += [f"      <timestamp>{self.timestamp}</timestamp>", "      <contributor>"]
        if self.ip is not None:
            lines.append(f"        <ip>{esc(self.ip)}</ip>")
        else:
            lines += [f"        <username>{esc(self.username)}</username>",
                      f"        <id>{self.userid}</id>"]
        lines.append("      </contributor>")
        if self.minor:
            lines.append("      <minor />")
        if self.comment is not None:
            lines.append(f"      <comment>{esc(self.comment)}</comment>")
        lines += [f"      <model>{self.model}</model>", f"      <format>{self.format}</format>",
                  f'      <text xml:space="preserve">{esc(self.text)}</text>',
                  f"      <sha1>{self.sha1 or wikitext_sha1(self.text)}</sha1>",
                  "    </revision>", "  </page>"]
        return ("\n".join(lines) + "\n").encode("utf-8")


def _xml_escape(s: str) -> str:
    # As MediaWiki's dumps escape text, titles and comments (htmlspecialchars, ENT_COMPAT).
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in elem if _local(c.tag) == name), None)


def _child_text(elem: ET.Element, name: str) -> str | None:
    c = _child(elem, name)
    return None if c is None else (c.text or "")


def parse_revisions(xml: bytes) -> list[Page]:
    """Every revision of every `<page>` of a MediaWiki export (any schema version 0.3-0.10, a
    whole document or one `<page>` element), one Page each, in document order. The files are
    trusted (the project's own copies); ElementTree never fetches external entities."""
    root = ET.fromstring(xml)
    pages = [root] if _local(root.tag) == "page" else [e for e in root if _local(e.tag) == "page"]
    out = []
    for page in pages:
        redirect = _child(page, "redirect")
        for rev in (r for r in page if _local(r.tag) == "revision"):
            contributor = _child(rev, "contributor")
            text = _child_text(rev, "text") or ""
            target = None
            if redirect is not None:
                # export-0.3 writes a bare <redirect /> (and one for the whole page history):
                # the revision's text says whether and where it redirects.
                m = REDIRECT_TARGET.match(text)
                target = redirect.get("title") or (m.group(1).strip() if m else None)
            userid = _child_text(contributor, "id")
            parentid = _child_text(rev, "parentid")
            out.append(Page(
                title=_child_text(page, "title"), ns=int(_child_text(page, "ns") or 0),
                page_id=int(_child_text(page, "id")), revid=int(_child_text(rev, "id")),
                timestamp=_child_text(rev, "timestamp"), text=text,
                parentid=None if parentid is None else int(parentid),
                username=_child_text(contributor, "username"),
                userid=None if userid is None else int(userid),
                ip=_child_text(contributor, "ip"), minor=_child(rev, "minor") is not None,
                comment=_child_text(rev, "comment"), redirect=target,
                restrictions=_child_text(page, "restrictions"),
                model=_child_text(rev, "model") or "wikitext",
                format=_child_text(rev, "format") or "text/x-wiki",
                sha1=_child_text(rev, "sha1") or None))
    return out


# ------------------------------------------------------------------------------------------
# Dump runs.

def _compress(data: bytes) -> bytes:
    return bz2.compress(data, compresslevel=COMPRESSLEVEL)


def build_part(header: bytes, pages: list[bytes], pages_per_stream: int = PAGES_PER_STREAM
               ) -> tuple[bytes, bytes]:
    """One multistream part and its index: header stream, page streams, footer stream.

    Index lines are `offset:page_id:title`, offset = the byte offset of the page's stream in
    the part file (as in the real index)."""
    body = bytearray(_compress(header))
    lines = []
    for i in range(0, len(pages), pages_per_stream):
        chunk = pages[i:i + pages_per_stream]
        offset = len(body)
        lines += [f"{offset}:{page_id(p)}:{page_title(p)}\n" for p in chunk]
        body += _compress(b"".join(chunk))
    body += _compress(FOOTER)
    return bytes(body), _compress("".join(lines).encode("utf-8"))


def _split_parts(pages: list[bytes], parts: int, split_at: tuple[int, ...] | None
                 ) -> list[list[bytes]]:
    if split_at is None:  # `parts` parts of (nearly) the same number of pages
        per_part = -(-len(pages) // parts)
        return [pages[n * per_part:(n + 1) * per_part] for n in range(parts)]
    bounds = (0, *split_at, float("inf"))
    return [[p for p in pages if lo <= page_id(p) < hi] for lo, hi in zip(bounds, bounds[1:])]


def build_run(mirror: Path, header: bytes, pages: list[bytes], *, run_date: str,
              wiki: str = WIKI, parts: int = PARTS,
              pages_per_stream: int = PAGES_PER_STREAM,
              jobs: dict[str, tuple[str, str]] = JOB_UPDATED,
              split_at: tuple[int, ...] | None = None) -> Path:
    """Write one dump run `<mirror>/<wiki>/<run_date>/` in the real layout; returns the folder.
    Pages go into `parts` parts of about the same size, or, with `split_at` (ascending page
    ids), into fixed page-id ranges: a new part starts at each id of `split_at`."""
    run = mirror / wiki / run_date
    if run.exists():  # no file of an earlier layout may survive a rebuild
        shutil.rmtree(run)
    run.mkdir(parents=True)
    files: dict[str, bytes] = {}
    for n, chunk in enumerate(_split_parts(pages, parts, split_at)):
        if not chunk:
            continue
        span = f"p{page_id(chunk[0])}p{page_id(chunk[-1])}"
        data, index = build_part(header, chunk, pages_per_stream)
        files[f"{wiki}-{run_date}-pages-articles-multistream{n + 1}.xml-{span}.bz2"] = data
        files[f"{wiki}-{run_date}-pages-articles-multistream-index{n + 1}.txt-{span}.bz2"] = index
    for name, blob in files.items():
        (run / name).write_bytes(blob)

    # dumpstatus.json as the real host writes it: the multistream job lists size and url only
    # (no checksums), so a client must read them from the sha1sums/md5sums files.
    status = {"jobs": {}, "version": DUMPSTATUS_VERSION}
    for job, (state, updated) in jobs.items():
        entry: dict = {"status": state, "updated": updated}
        if job == JOB:
            entry["files"] = {
                name: {"size": len(blob), "url": f"/{wiki}/{run_date}/{name}"}
                for name, blob in files.items()
            }
        status["jobs"][job] = entry
    (run / "dumpstatus.json").write_text(json.dumps(status, indent=2) + "\n")

    for algo in ("sha1", "md5"):
        lines = "".join(f"{hashlib.new(algo, blob).hexdigest()}  {name}\n"
                        for name, blob in sorted(files.items()))
        (run / f"{wiki}-{run_date}-{algo}sums.txt").write_text(lines)
    return run


def write_listing(mirror: Path, wiki: str = WIKI) -> Path:
    """`<mirror>/<wiki>/index.html`: the run listing, in the real host's nginx format. `wiki`
    may be a deeper folder of run folders, such as "wikidatawiki/entities"."""
    runs = sorted(p.name for p in (mirror / wiki).iterdir()
                  if p.is_dir() and re.fullmatch(r"\d{8}", p.name))
    rows = []
    for run in runs:
        # The listing shows each folder's last change; the run's date stands in for it.
        stamp = date(int(run[:4]), int(run[4:6]), int(run[6:])).strftime("%d-%b-%Y") + " 09:30"
        link = f'<a href="{run}/">{run}/</a>'
        rows.append(f"{link}{' ' * (51 - len(run) - 1)}{stamp}{' ' * 19}-\n")
    html = (
        f"<html>\n<head><title>Index of /{wiki}/</title></head>\n<body>\n"
        f'<h1>Index of /{wiki}/</h1><hr><pre><a href="../">../</a>\n'
        + "".join(rows)
        + "</pre><hr></body>\n</html>\n"
    )
    path = mirror / wiki / "index.html"
    path.write_text(html)
    return path


def run_pages(run: Path) -> tuple[bytes, list[bytes]]:
    """(header, pages) of a mirror run's multistream parts, byte-exact, in dump order: read
    from the committed files, so it works without the real source data."""
    header, pages = b"", []
    for part in sorted(run.glob("*-multistream[0-9]*.xml-*.bz2"),
                       key=lambda p: int(re.search(r"multistream(\d+)", p.name).group(1))):
        h, p, _ = split_dump(bz2.decompress(part.read_bytes()))
        header = header or h
        pages += p
    return header, pages


def sample_pages() -> tuple[bytes, list[bytes]]:
    """(header, pages) of the sample mirror's month A, byte-exact, in dump order."""
    return run_pages(SAMPLE_RUN)


# ------------------------------------------------------------------------------------------
# Wikidata JSON entity dump.

def split_entity_dump(data: bytes) -> list[bytes]:
    """The entity lines of an all.json document (`[`, one entity a line ending in `,` except
    the last, `]`), without their commas: entity_dump(split_entity_dump(d)) == d."""
    lines = data.split(b"\n")
    if lines[0] != b"[" or lines[-2:] != [b"]", b""]:
        raise ValueError("not a Wikidata all.json document: it must open with a `[` line and "
                         "end with a `]` line")
    body = lines[1:-2]
    if any(not line.endswith(b",") for line in body[:-1]) or (body and body[-1].endswith(b",")):
        raise ValueError("not a Wikidata all.json document: every entity line but the last "
                         "must end with a comma")
    return [line[:-1] for line in body[:-1]] + body[-1:]


def entity_dump(lines: list[bytes]) -> bytes:
    """An all.json document: `[`, the entity lines joined by `,` + newline, `]`."""
    return b"[\n" + b",\n".join(lines) + (b"\n" if lines else b"") + b"]\n"


def compress_entities(data: bytes, fmt: str) -> bytes:
    """all.json compressed like the real files: bz2 as one stream (lbzip2 writes one stream of
    900k blocks), gz as a concatenation of gzip members of ENTITIES_PER_GZ_MEMBER lines."""
    if fmt == "bz2":
        return _compress(data)
    if fmt != "gz":
        raise ValueError(f"unknown entity dump format {fmt!r}")
    lines = data.splitlines(keepends=True)
    return b"".join(gzip.compress(b"".join(lines[i:i + ENTITIES_PER_GZ_MEMBER]),
                                  compresslevel=9, mtime=0)
                    for i in range(0, len(lines), ENTITIES_PER_GZ_MEMBER))


def build_entities_run(mirror: Path, lines: list[bytes], *, run_date: str,
                       formats: tuple[str, ...] = ENTITY_FORMATS,
                       listed: tuple[str, ...] | None = None) -> Path:
    """Write `<mirror>/wikidatawiki/entities/<run_date>/`: wikidata-<run>-all.json.<fmt> for
    each of `formats`, and the run's sha1sums/md5sums listing the formats in `listed` (default:
    all of them). A file left out of the sums files is one the host has not finished: that is
    how an unfinished run looks."""
    run = mirror / WIKIDATA_DIR / run_date
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    data = entity_dump(lines)
    files = {f"wikidata-{run_date}-all.json.{fmt}": compress_entities(data, fmt)
             for fmt in formats}
    for name, blob in files.items():
        (run / name).write_bytes(blob)
    listed = formats if listed is None else listed
    done = {name: blob for name, blob in files.items() if name.rsplit(".", 1)[1] in listed}
    for algo in ("sha1", "md5"):
        text = "".join(f"{hashlib.new(algo, blob).hexdigest()}  {name}\n"
                       for name, blob in sorted(done.items()))
        (run / f"wikidata-{run_date}-{algo}sums.txt").write_text(text)
    return run
