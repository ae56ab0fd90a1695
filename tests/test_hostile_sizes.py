"""Hostile sizes (issue 16, item 4): one page's text, one Wikidata JSON line and one page_props
line each have a cap, enforced while reading, so that a few KB of bz2 holding a gigabyte costs
no memory. Each test runs the real CLI in a subprocess on an input built here, a few times the
cap (set small through `--set` where the stage has a setting for it), and checks the exit
status, the skip count and the command's peak RSS."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq

from conftest import SAMPLE_MIRROR, sample_pages
from test_hostile_facts import real_entities, with_page_props
from test_pageprops import HEADER, RUN
from twiki.engine.artifacts import read_manifest
from twiki.engine.paths import DataRoot
from twiki.sources.download import download_wikidata
from twiki.sources.pageprops import MAX_SQL_LINE_BYTES, download_page_props

SHARDS = "8"
MB = 2**20
# A hostile field of HOSTILE_MB against a cap of CAP_MB: held whole, it would cost several
# times HOSTILE_MB (str, UTF-8 copy, Arrow buffer); capped, it costs nothing beyond the baseline.
CAP_MB, HOSTILE_MB = 1, 96
# Peak RSS a capped run stays under. Measured here: capped, 165 MB (extract), 141 MB (facts),
# 270 MB (the page_props read, which holds one line up to its 64 MiB cap); held whole, the
# same inputs reached 1030 MB, 485 MB and 528 MB.
RSS_BOUND_MB = 350
# page_props lines have a fixed cap (the mapping task sets none): a line three times over it.
PAGE_PROPS_LINE_MB = 3 * MAX_SQL_LINE_BYTES // MB
GNU_TIME = Path("/usr/bin/time")


def run_measured(tmp_path: Path, *args: str | Path
                 ) -> tuple[subprocess.CompletedProcess, float | None]:
    """`python -m twiki ARGS` and its peak RSS in MB, as GNU time measures it (the largest of
    the command and its pool workers); None where /usr/bin/time is missing. Measured by time
    rather than by wait4 here, since a child forked from this test starts at this test's RSS."""
    cmd = [sys.executable, "-m", "twiki", *map(str, args)]
    if not GNU_TIME.exists():
        return subprocess.run(cmd, capture_output=True, text=True), None
    peak = tmp_path / "peak-rss-kb"
    res = subprocess.run([GNU_TIME, "-f", "%M", "-o", peak, *cmd], capture_output=True, text=True)
    return res, int(peak.read_text().split()[-1]) / 1024


def twiki_ok(*args: str | Path) -> None:
    """`python -m twiki ARGS`, which must succeed (a step that builds a test's input)."""
    res = subprocess.run([sys.executable, "-m", "twiki", *map(str, args)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr


def assert_bounded(rss_mb: float | None) -> None:
    assert rss_mb is None or rss_mb < RSS_BOUND_MB, f"peak RSS {rss_mb:.0f} MB"


def one_line(res: subprocess.CompletedProcess) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


# ------------------------------------------------------------------------------------------
# One page's wikitext: extract_run.max_page_chars.

def test_a_page_of_huge_wikitext_is_skipped_and_counted_in_bounded_memory(
        tmp_path, mirror, make_run):
    """Before: exit 0 with the page kept, at 1030 MB peak RSS for a 96 MB page (issue 16: 4.3 GB
    for 1 GB): it was decompressed in one piece, joined and encoded whole."""
    header, pages = sample_pages()
    i = next(k for k, p in enumerate(pages)
             if b"<title>Albedo</title>" in p and b"<ns>0</ns>" in p)
    huge = re.sub(rb"(<text[^>]*>).*?(</text>)", lambda m: m.group(1) + b"a" * (HOSTILE_MB * MB)
                  + m.group(2), pages[i], count=1, flags=re.S)
    make_run(mirror, "20160601", pages=pages[:i] + [huge] + pages[i + 1:], parts=1)
    del huge
    root = tmp_path / "data"
    twiki_ok("download", "--month", "2016-06", "--mirror", mirror, "--data-root", root)
    res, rss_mb = run_measured(tmp_path, "extract", "--month", "2016-06", "--shards", SHARDS, "-q",
                               "--data-root", root,
                               "--set", f"extract_run.max_page_chars={CAP_MB * MB}")
    assert res.returncode == 0, res.stderr
    snapshot = root / "snapshots" / "enwiki" / "2016-06"
    report = read_manifest(snapshot)["report"]
    assert report["counts"]["failed"] == 1
    [failure] = report["failed_pages"]
    assert failure["title"] == "Albedo" and "extract_run.max_page_chars" in failure["reason"]
    assert "Albedo" not in set(pq.read_table(snapshot, columns=["title"]).column(0).to_pylist())
    assert_bounded(rss_mb)


def test_the_page_cap_is_checked_as_a_setting(tmp_path):
    res = subprocess.run([sys.executable, "-m", "twiki", "extract", "--month", "2016-05",
                          "--data-root", tmp_path, "--set", "extract_run.max_page_chars=0"],
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert "extract_run.max_page_chars must be a positive whole number" in one_line(res)


# ------------------------------------------------------------------------------------------
# One line of a Wikidata dump: facts_run.max_line_bytes.

def test_a_huge_json_line_is_a_bad_line_read_in_bounded_memory(tmp_path):
    """Before: exit 0, the entity read, 0 bad lines, at 485 MB peak RSS for a 96 MB line (issue
    16: 2.5 GB for 300 MB): the line was joined whole and parsed."""
    ents = real_entities("Q8646.json", "Q1299.json", "Q20145.json", "Q494290.json")
    huge = (b'{"type":"item","id":"Q999999","labels":{"en":{"language":"en","value":"'
            + b"a" * (HOSTILE_MB * MB) + b'"}}}')
    dump = tmp_path / "some-all.json.gz"
    dump.write_bytes(gzip.compress(
        b"[\n" + b",\n".join([orjson.dumps(e) for e in ents] + [huge]) + b"\n]\n",
        compresslevel=1))
    del huge
    root = tmp_path / "data"
    res, rss_mb = run_measured(tmp_path, "facts", "--month", "2019-08", "--dump", dump,
                               "--data-root", root,
                               "--set", f"facts_run.max_line_bytes={CAP_MB * MB}")
    assert res.returncode == 0, res.stderr
    report = read_manifest(DataRoot(root).facts("2019-08", "facts"))["report"]
    assert report["counts"]["bad_lines"] == 1
    [bad] = report["bad"]
    assert bad["line"] == 6 and "facts_run.max_line_bytes" in bad["reason"]
    assert_bounded(rss_mb)


def test_the_line_cap_is_checked_as_a_setting(tmp_path):
    res = subprocess.run([sys.executable, "-m", "twiki", "facts", "--month", "2019-08",
                          "--dump", tmp_path, "--data-root", tmp_path,
                          "--set", "facts_run.max_line_bytes=-1"], capture_output=True, text=True)
    assert res.returncode != 0
    assert "facts_run.max_line_bytes must be a positive whole number" in one_line(res)


# ------------------------------------------------------------------------------------------
# One line of the page_props dump: MAX_SQL_LINE_BYTES.

def test_a_huge_page_props_line_is_skipped_with_its_line_in_bounded_memory(tmp_path):
    """Before: exit 0, nothing skipped, at 528 MB peak RSS for a 192 MB line: it was read whole
    and searched for rows."""
    mirror = tmp_path / "mirror"
    shutil.copytree(SAMPLE_MIRROR, mirror)
    first_row = HEADER.count(b"\n") + 1          # one row an INSERT line after the header
    with_page_props(mirror, [(100001, "wikibase_item", "Q42"),
                             (100003, "displaytitle", "a" * (PAGE_PROPS_LINE_MB * MB)),
                             (100002, "wikibase_item", "Q1299")])
    root = DataRoot(tmp_path / "data")
    twiki_ok("download", "--month", "2016-06", "--mirror", mirror, "--data-root", root.root)
    twiki_ok("extract", "--month", "2016-06", "--data-root", root.root)
    download_wikidata("2016-06", mirrors=[str(mirror)], data_root=root)
    assert download_page_props("2016-06", wiki="enwiki", mirrors=[str(mirror)], data_root=root,
                               run=RUN) is not None
    res, rss_mb = run_measured(tmp_path, "facts", "--month", "2016-06", "--data-root", root.root)
    assert res.returncode == 0, res.stderr
    report = read_manifest(root.facts("2016-06", "mapping"))["report"]
    assert report["source"] == "page_props"
    assert report["counts"]["page_props_rows_skipped"] == 1
    [skipped] = report["skipped_rows"]
    assert skipped["line"] == first_row + 1 and "MAX_SQL_LINE_BYTES" in skipped["reason"]
    rows = pq.read_table(root.facts("2016-06", "mapping"), columns=["qid", "page_id"]).to_pylist()
    assert sorted(rows, key=lambda r: r["page_id"]) == [{"qid": "Q42", "page_id": 100001},
                                                       {"qid": "Q1299", "page_id": 100002}]
    assert_bounded(rss_mb)
