"""Build the small offline dump mirror in data/sample/mirror/ from real enwiki pages and real
Wikidata entities.

Reads the real pages-articles file in /work/shared/data/wikimedia/enwiki/ and lays its pages out
exactly like a run on dumps.wikimedia.org: pages-articles-multistream parts with their index
files, dumpstatus.json, sha1sums/md5sums and the wiki's run listing. The page XML is copied byte
for byte; only the packaging is generated.

Reads the real entity JSON in /work/shared/data/wikimedia/wikidata/ and writes one run of the
Wikidata JSON entity dump, wikidatawiki/entities/<run>/wikidata-<run>-all.json.bz2 and .gz in the
real format, with the run's sha1sums/md5sums and the entities listing. The entities are real
(2015-2023); the run date is made up (see data/sample/README.md).

Deterministic: rerunning gives identical bytes.

    python -m pipelines.build_sample_mirror [--source FILE] [--wikidata DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import json
import re
import shutil
import sys
from datetime import date
from pathlib import Path

# The real enwiki pages-articles file (gensim's test data; see data/sample/README.md).
SOURCE = Path(
    "/work/shared/data/wikimedia/enwiki/"
    "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)
OUT = Path(__file__).resolve().parents[1] / "data" / "sample" / "mirror"
WIKI = "enwiki"
# The source's newest revision is from 2016-05-01: it is a page of the May 2016 dump.
RUN_DATE = "20160501"
JOB = "articlesmultistreamdump"
# Real dumps put 100 pages in each bz2 stream. The sample has only 206 pages, so with 100 it
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
# Fixed timestamps for dumpstatus.json and the listing (the packaging must be reproducible).
JOB_UPDATED = {
    "articlesmultistreamdump": ("done", "2016-05-03 04:12:55"),
    "metahistorybz2dump": ("in-progress", "2016-05-05 10:02:31"),
    "metahistory7zdump": ("waiting", ""),
}
DUMPSTATUS_VERSION = "0.8"

# --- Wikidata entities (see data/sample/README.md for what each source file is).
WIKIDATA_SOURCE = Path("/work/shared/data/wikimedia/wikidata")
WIKIDATA_DIR = "wikidatawiki/entities"
# Made up: the Monday after the sample enwiki run (Wikidata's JSON dumps ran weekly on Mondays
# in 2016). The entities themselves were saved between 2015 and 2023.
ENTITIES_RUN_DATE = "20160502"
# Source files, in priority order: an entity id is taken from the first file that has it, so
# the full API answers win over the trimmed copies (the 2015 sample dump emptied labels and
# sitelinks; some wikibase-sdk fixtures keep only claims).
ENTITY_SOURCES = (
    "wbgetentities-Douglas-Adams.json",                    # Q42, about 2015-05
    "wbgetentities-Q1.json",                               # Q1
    "wbgetentities-Q6-Q42-P31.json",                       # P31 (Q42 older; Q6 missing)
    "wbgetentites-Oliver-Kahn.json",                       # Q131261
    "wbgetentities-Q32063953.json",                        # Q1040 (redirect Q32063953's target)
    "Q1299.json", "Q8646.json", "Q20145.json", "Q494290.json", "Q33281.json",
    "Q16231742.json",                                      # Q3571994 (redirect Q16231742's target)
    "P434.json", "P2003.json", "property.json", "item.json", "wd_P279.json",
    "Q271094__2023-01-21__9fb7065.json", "Q328212__2023-01-21__9fb7065.json",
    "Q646148__2023-01-21__9fb7065.json", "Q217447__2023-01-21__9fb7065.json",
    "Q4132785__2023-01-21__9fb7065.json", "Q4115189__2023-01-21__9fb7065.json",
    "P8098__2023-01-21__9fb7065.json", "Q22002395__2023-01-21__9fb7065.json",
    "Q19180293__2023-01-21__9fb7065.json", "Q970917__2023-01-21__9fb7065.json",
    "P3035__2023-06-15__3df975a.json", "wbgetentities_response__2023-01-21__9fb7065.json",
    "sample-dump-20150815.json.gz",                        # 55 items + 46 properties, 2015-08
)
# all.json holds items and properties; lexemes (and Commons' mediainfo) have dumps of their own.
DUMP_ENTITY_TYPES = ("item", "property")
# API-only fields that an entity in a dump never has.
API_ONLY_FIELDS = ("redirects",)
# The real all.json.gz is a concatenation of gzip members (one per batch of pages); members of
# 16 entities give the sample several, for readers that split a .gz at member boundaries.
ENTITIES_PER_GZ_MEMBER = 16
ENTITY_FORMATS = ("bz2", "gz")

PAGE_START = re.compile(rb"^  <page>\n", re.M)
PAGE_ID = re.compile(rb"<id>(\d+)</id>")
PAGE_TITLE = re.compile(rb"<title>(.*?)</title>")


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


def build_run(mirror: Path, header: bytes, pages: list[bytes], *, wiki: str = WIKI,
              run_date: str = RUN_DATE, parts: int = PARTS,
              pages_per_stream: int = PAGES_PER_STREAM,
              jobs: dict[str, tuple[str, str]] = JOB_UPDATED) -> Path:
    """Write one dump run `<mirror>/<wiki>/<run_date>/` in the real layout; returns the folder."""
    run = mirror / wiki / run_date
    if run.exists():  # no file of an earlier layout may survive a rebuild
        shutil.rmtree(run)
    run.mkdir(parents=True)
    per_part = -(-len(pages) // parts)
    files: dict[str, bytes] = {}
    for n in range(parts):
        chunk = pages[n * per_part:(n + 1) * per_part]
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


# ------------------------------------------------------------------------------------------
# Wikidata JSON entity dump.

def _entity_id_key(line: bytes) -> tuple[int, int]:
    # Dump order is page order, which for these old entities is id order, items before
    # properties of the same number (Q31 then P31), as in the 2015 sample dump.
    entity = json.loads(line)
    return int(entity["id"][1:]), DUMP_ENTITY_TYPES.index(entity["type"])


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


def _source_entities(path: Path) -> list[tuple[dict, bytes | None]]:
    """(entity, its exact dump line or None) for every entity of one source file."""
    if path.name.endswith(".json.gz"):  # already in the dump format: keep its lines exactly
        return [(json.loads(line), line)
                for line in split_entity_dump(gzip.decompress(path.read_bytes()))]
    obj = json.loads(path.read_text(encoding="utf-8"))
    entities = obj["entities"].values() if "entities" in obj else [obj]
    return [(e, None) for e in entities]


def load_entities(source: Path = WIKIDATA_SOURCE) -> list[bytes]:
    """One compact JSON line per entity of ENTITY_SOURCES (items and properties, each id once),
    in dump order. Lines of the 2015 sample dump are kept byte for byte; API answers are
    written compactly as the dumps write them (key order and values unchanged)."""
    chosen: dict[str, bytes] = {}
    for name in ENTITY_SOURCES:
        for entity, line in _source_entities(source / name):
            if entity.get("type") not in DUMP_ENTITY_TYPES or entity["id"] in chosen:
                continue  # missing entities, lexemes, or an id a better source gave already
            if line is None or any(k in entity for k in API_ONLY_FIELDS):
                entity = {k: v for k, v in entity.items() if k not in API_ONLY_FIELDS}
                line = json.dumps(entity, ensure_ascii=False,
                                  separators=(",", ":")).encode("utf-8")
            chosen[entity["id"]] = line
    return sorted(chosen.values(), key=_entity_id_key)


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


def build_entities_run(mirror: Path, lines: list[bytes], *, run_date: str = ENTITIES_RUN_DATE,
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


# ------------------------------------------------------------------------------------------

def build_mirror(out: Path = OUT, source: Path = SOURCE,
                 wikidata_source: Path = WIKIDATA_SOURCE) -> list[Path]:
    """The whole sample mirror under `out`; returns the run folders written."""
    header, pages, _ = split_dump(bz2.decompress(source.read_bytes()))
    runs = [build_run(out, header, pages)]
    write_listing(out)
    runs.append(build_entities_run(out, load_entities(wikidata_source)))
    write_listing(out, WIKIDATA_DIR)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="real pages-articles .bz2")
    parser.add_argument("--wikidata", type=Path, default=WIKIDATA_SOURCE,
                        help="folder of real Wikidata entity JSON (the ENTITY_SOURCES files)")
    parser.add_argument("--out", type=Path, default=OUT, help="mirror root to write")
    args = parser.parse_args(argv)
    for run in build_mirror(args.out, args.source, args.wikidata):
        for path in sorted(run.iterdir()):
            print(f"{path.stat().st_size:>10}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
