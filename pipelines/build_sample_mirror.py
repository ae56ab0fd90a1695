"""Build the small offline dump mirror in data/sample/mirror/ from real enwiki pages.

Reads the real pages-articles file in /work/shared/data/wikimedia/enwiki/ and lays its pages out
exactly like a run on dumps.wikimedia.org: pages-articles-multistream parts with their index
files, dumpstatus.json, sha1sums/md5sums and the wiki's run listing. The page XML is copied byte
for byte; only the packaging is generated. Deterministic: rerunning gives identical bytes.

    python -m pipelines.build_sample_mirror [--source FILE] [--out data/sample/mirror]
"""

from __future__ import annotations

import argparse
import bz2
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
    """`<mirror>/<wiki>/index.html`: the run listing, in the real host's nginx format."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE, help="real pages-articles .bz2")
    parser.add_argument("--out", type=Path, default=OUT, help="mirror root to write")
    args = parser.parse_args(argv)
    header, pages, _ = split_dump(bz2.decompress(args.source.read_bytes()))
    run = build_run(args.out, header, pages)
    write_listing(args.out)
    for path in sorted(run.iterdir()):
        print(f"{path.stat().st_size:>10}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
