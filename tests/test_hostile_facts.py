"""The facts stage on broken and odd input, through the command line (issue 16): a dump of bad
lines stops instead of publishing no facts, one odd value is skipped and counted instead of
ending the run, and work files kept by a run with other options are never reused.

MADE UP for these tests, in tmp_path: dumps in the dump format made of the real entities of
tests/data/wikimedia/wikidata with one value changed, a dump of invalid JSON lines, and a
page_props table (mysqldump's layout, as tests/test_pageprops.py makes it) with an oversized
page id, added as a job to a copy of the sample mirror's 2016-06 run.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from conftest import REAL_DATA, SAMPLE_MIRROR
from test_pageprops import HEADER, RUN, dump as page_props_dump
from twiki.engine.artifacts import read_manifest
from twiki.engine.paths import DataRoot
from twiki.sources.download import download_month, download_wikidata
from twiki.sources.pageprops import PAGE_PROPS_JOB, download_page_props
from twiki.stages.extract import extract_month

WD = REAL_DATA / "wikidata"
MONTH = "2019-08"


def twiki(*args) -> subprocess.CompletedProcess:
    """`python -m twiki ARGS`; whatever it prints, never a traceback."""
    res = subprocess.run([sys.executable, "-m", "twiki", *map(str, args)], capture_output=True,
                         text=True)
    assert "Traceback" not in res.stderr, res.stderr
    return res


def facts(root: Path, dump: Path, *args) -> subprocess.CompletedProcess:
    return twiki("facts", "--month", MONTH, "--dump", dump, "--data-root", root, *args)


def published(root: Path, table: str = "facts") -> Path:
    return DataRoot(root).facts(MONTH, table)


def shard_rows(folder: Path) -> list[list[dict]]:
    return [pq.read_table(p).to_pylist() for p in sorted(folder.glob("part-*.parquet"))]


def shard_bytes(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.glob("part-*.parquet"))]


def real_entities(*names: str) -> list[dict]:
    out = []
    for name in names:
        d = json.loads((WD / name).read_text())
        out += list(d["entities"].values()) if "entities" in d else [d]
    return out


def write_dump(path: Path, entities: list[dict]) -> Path:
    """Entities in the dump format: '[' on line 1, then one entity a line."""
    path.write_bytes(b"[\n" + b",\n".join(orjson.dumps(e) for e in entities) + b"\n]\n")
    return path


# ---------------------------------------------------------------------------------------------
# Item 2: a broken dump stops the stage

def test_a_dump_of_invalid_json_lines_stops_and_publishes_nothing(tmp_path):
    """Before: exit 0, "0 facts ... 5000 bad lines", and factdiff then read every fact as
    removed."""
    dump = tmp_path / "broken-all.json"
    dump.write_bytes(b"[\n" + b"".join(b'{"type": "item", "id": "Q%d", oops\n' % i
                                       for i in range(1, 5001)) + b"]\n")
    res = facts(tmp_path / "data", dump)
    assert res.returncode == 1
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"twiki: error: facts {MONTH}: 5000 of the dump's 5000 records "
                           f"(lines) are bad (100%, more than facts_run.max_bad_line_share = "
                           f"0.05); nothing published. The first is line 2 of broken-all.json: "
                           f"invalid JSON: ")
    assert read_manifest(published(tmp_path / "data")) is None
    # the documented way past it: the map's work is kept, the share raised
    again = facts(tmp_path / "data", dump, "--set", "facts_run.max_bad_line_share=1")
    assert again.returncode == 0, again.stderr
    assert read_manifest(published(tmp_path / "data"))["report"]["counts"]["bad_lines"] == 5000


def test_a_few_bad_lines_are_skipped_and_the_share_is_a_setting(tmp_path):
    ents = real_entities("Q8646.json", "Q1299.json", "Q20145.json", "Q494290.json")
    lines = [orjson.dumps(e) for e in ents] + [b"{not json"] * 11
    dump = tmp_path / "some-all.json"
    dump.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    refused = facts(tmp_path / "a", dump)            # 11 of 15: far above 5%
    assert refused.returncode == 1 and "11 of the dump's 15 records" in refused.stderr
    kept = facts(tmp_path / "b", dump, "--set", "facts_run.max_bad_line_share=0.8")
    assert kept.returncode == 0, kept.stderr
    report = read_manifest(published(tmp_path / "b"))["report"]
    assert report["counts"]["bad_lines"] == 11 and report["bad"][0]["line"] == 6


@pytest.mark.parametrize("setting, says", [
    ("max_bad_line_share=5", "facts_run.max_bad_line_share must be a share between 0 and 1 "
                             "(0.05 is 5%), not 5.0"),
    # before: a ValueError / OverflowError traceback when the dump was cut into chunks
    ("chunk_mb=nan", "facts_run.chunk_mb, partitions and spill_rows must be positive numbers"),
    ("chunk_mb=inf", "facts_run.chunk_mb, partitions and spill_rows must be positive numbers"),
])
def test_a_bad_setting_is_one_line(tmp_path, setting, says):
    dump = write_dump(tmp_path / "d-all.json", real_entities("Q8646.json"))
    res = facts(tmp_path / "data", dump, "--set", f"facts_run.{setting}")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"twiki: error: {says}"]


# ---------------------------------------------------------------------------------------------
# Item 3: one odd value never kills the stage

# The base dump, one entity a line from line 2: Q8646 (2), Q1299 (3), Q20145 (4), P434 (5).
BASE = ("Q8646.json", "Q1299.json", "Q20145.json", "P434.json")
LINE = {"Q8646": 2, "Q1299": 3, "Q20145": 4, "P434": 5}


def statement(entity: dict, pid: str) -> dict:
    [s] = entity["claims"][pid]
    return s


def value(entity: dict, pid: str) -> dict:
    return statement(entity, pid)["mainsnak"]["datavalue"]


def _rename_claim(entity: dict, pid: str, new: str) -> None:
    entity["claims"][new] = entity["claims"].pop(pid)


# name: (entity, how it is made odd, what is skipped: "statement" of that pid or the "entity")
ODD_VALUES = {
    "time precision 1000": ("Q1299", lambda e: value(e, "P571")["value"].update(precision=1000),
                            ("statement", "P571")),
    "numeric-id 1e23": ("Q8646", lambda e: value(e, "P1151")["value"].update(
        {"numeric-id": 1e23}), ("statement", "P1151")),
    "unit with an oversized id": ("Q8646", lambda e: value(e, "P3271")["value"].update(
        unit="http://www.wikidata.org/entity/Q99999999999999999999999"), ("statement", "P3271")),
    "string value that is a number": ("Q20145", lambda e: value(e, "P373").update(value=5),
                                      ("statement", "P373")),
    "item id Q99999999999999999999999": ("Q20145", lambda e: e.update(
        id="Q99999999999999999999999"), ("entity", None)),
    "property id above 2^31 in a claim": ("Q1299", lambda e: _rename_claim(e, "P571",
                                                                          "P2147483648"),
                                          ("entity", None)),
    "property entity id above 2^31": ("P434", lambda e: e.update(id="P2147483648"),
                                      ("entity", None)),
    "label that is a number": ("Q8646", lambda e: e["labels"]["en"].update(value=5),
                               ("entity", None)),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The base dump's entities and its facts, built from the unchanged dump."""
    tmp = tmp_path_factory.mktemp("clean")
    ents = real_entities(*BASE)
    res = facts(tmp / "data", write_dump(tmp / "base-all.json", ents))
    assert res.returncode == 0, res.stderr
    return ents, tmp / "data"


def expected_rows(clean_root: Path, eid: str, skipped: tuple[str, str | None],
                  sid: str | None) -> list[list[dict]]:
    """The clean build's facts shards without what the odd value takes away."""
    def keep(row: dict) -> bool:
        return row["statement_id"] != sid if skipped[0] == "statement" else row["subject"] != eid

    shards = [[r for r in rows if keep(r)] for rows in shard_rows(published(clean_root))]
    if eid.startswith("P"):           # a property skipped: its facts lose its label
        shards = [[dict(r, property_label=None) if r["property"] == eid else r for r in rows]
                  for rows in shards]
    return shards


@pytest.mark.parametrize("odd", sorted(ODD_VALUES))
def test_one_odd_value_is_skipped_and_counted_with_its_line(tmp_path, clean, odd):
    """Before: a traceback (ArrowInvalid, OverflowError or ArrowTypeError) when the row
    buffer holding it was written, on every rerun."""
    ents, clean_root = clean
    eid, change, skipped = ODD_VALUES[odd]
    ents = copy.deepcopy(ents)
    entity = next(e for e in ents if e["id"] == eid)
    sid = statement(entity, skipped[1])["id"] if skipped[0] == "statement" else None
    change(entity)
    res = facts(tmp_path / "data", write_dump(tmp_path / "odd-all.json", ents))
    assert res.returncode == 0, res.stderr
    manifest = read_manifest(published(tmp_path / "data"))
    report = manifest["report"]
    if skipped[0] == "statement":
        assert report["skipped_values"]["malformed_value"] == 1
        assert report["counts"]["bad_lines"] == 0
        [bad] = report["bad"]
        assert (bad["entity"], bad["statement"], bad["line"]) == (eid, sid, LINE[eid])
    else:
        assert report["counts"]["bad_lines"] == 1
        [bad] = report["bad"]
        assert (bad["line"], bad["file"]) == (LINE[eid], "odd-all.json")
        assert "failed" in bad["reason"]
    # every other value as a clean build has it
    assert shard_rows(published(tmp_path / "data")) == expected_rows(clean_root, eid, skipped, sid)


PETE_BEST = "q1299$306f6f12-4113-672c-3404-88c6cf84e16c"   # The Beatles' P527 Pete Best

# name: how the qualifier is made odd (on Pete Best's membership statement), which column
ODD_QUALIFIERS = {
    "start time of precision 1000": (lambda q: q["P580"][0]["datavalue"]["value"].update(
        precision=1000), "start_time"),
    "end time that is a string value": (lambda q: q["P582"][0].update(
        datavalue={"type": "string", "value": "1962"}), "end_time"),
    "end time whose time is a number": (lambda q: q["P582"][0]["datavalue"]["value"].update(
        time=1962), "end_time"),
}


@pytest.mark.parametrize("odd", sorted(ODD_QUALIFIERS))
def test_one_odd_time_qualifier_is_skipped_and_its_statement_kept(tmp_path, clean, odd):
    ents, clean_root = clean
    change, column = ODD_QUALIFIERS[odd]
    ents = copy.deepcopy(ents)
    beatles = next(e for e in ents if e["id"] == "Q1299")
    [member] = [s for s in beatles["claims"]["P527"] if s["id"] == PETE_BEST]
    change(member["qualifiers"])
    res = facts(tmp_path / "data", write_dump(tmp_path / "odd-all.json", ents))
    assert res.returncode == 0, res.stderr
    report = read_manifest(published(tmp_path / "data"))["report"]
    assert report["skipped_values"]["malformed_qualifier"] == 1
    assert report["counts"]["bad_lines"] == 0
    [bad] = report["bad"]
    assert (bad["entity"], bad["statement"], bad["line"]) == ("Q1299", PETE_BEST, LINE["Q1299"])
    assert "time qualifier" in bad["reason"]
    expected = [[dict(r, **{column: None}) if r["statement_id"] == PETE_BEST else r for r in rows]
                for rows in shard_rows(published(clean_root))]
    assert shard_rows(published(tmp_path / "data")) == expected
    [row] = [r for rows in expected for r in rows if r["statement_id"] == PETE_BEST]
    assert (row["start_time"], row["end_time"]) != (None, None)    # the other one is kept


def test_a_normal_dump_gives_the_same_bytes_whatever_the_options(tmp_path, clean):
    """The checks that skip odd values leave normal ones as they were: byte for byte, with
    one worker or two, in one chunk or several."""
    ents, clean_root = clean
    dump = write_dump(tmp_path / "base-all.json", ents)
    res = facts(tmp_path / "data", dump, "--workers", 2, "--set", "facts_run.chunk_mb=0.05",
                "--set", "facts_run.partitions=3")
    assert res.returncode == 0, res.stderr
    for table in ("facts", "entities", "properties"):
        assert shard_bytes(published(tmp_path / "data", table)) == \
            shard_bytes(published(clean_root, table)), table


def with_page_props(mirror: Path, rows: list[tuple[int, str, str]]) -> None:
    """The mirror's 2016-06 run, with a finished page_props job of these rows."""
    run = mirror / "enwiki" / RUN
    name = f"enwiki-{RUN}-page_props.sql.gz"
    data = gzip.compress(page_props_dump(rows, per_insert=1), mtime=0)
    (run / name).write_bytes(data)
    status = json.loads((run / "dumpstatus.json").read_text())
    status["jobs"][PAGE_PROPS_JOB] = {
        "status": "done", "updated": "2016-06-01 09:46:03",
        "files": {name: {"size": len(data), "url": f"/enwiki/{RUN}/{name}",
                         "sha1": hashlib.sha1(data).hexdigest()}}}
    (run / "dumpstatus.json").write_text(json.dumps(status))


def test_a_page_props_row_with_an_oversized_id_is_skipped_with_its_line(tmp_path):
    """Before: `twiki facts` ended in an OverflowError traceback when the mapping read the
    snapshot run's page_props table."""
    mirror = tmp_path / "mirror"
    shutil.copytree(SAMPLE_MIRROR, mirror)
    first_row = HEADER.count(b"\n") + 1          # one row an INSERT line after the header
    with_page_props(mirror, [(100001, "wikibase_item", "Q42"),
                             (99999999999999999999, "wikibase_item", "Q1299"),
                             (100003, "wikibase_item", "Q" + "9" * 5000),
                             (100002, "wikibase_item", "Q1299")])
    root = DataRoot(tmp_path / "data")
    download_month("2016-06", mirrors=[str(mirror)], data_root=root)
    extract_month("2016-06", data_root=root)
    download_wikidata("2016-06", mirrors=[str(mirror)], data_root=root)
    assert download_page_props("2016-06", wiki="enwiki", mirrors=[str(mirror)], data_root=root,
                               run=RUN) is not None
    res = twiki("facts", "--month", "2016-06", "--data-root", root.root)
    assert res.returncode == 0, res.stderr
    report = read_manifest(root.facts("2016-06", "mapping"))["report"]
    assert report["source"] == "page_props"
    assert report["counts"]["page_props_rows_skipped"] == 2
    assert [r["line"] for r in report["skipped_rows"]] == [first_row + 1, first_row + 2]
    assert "<5000 digits>" in report["skipped_rows"][1]["reason"]
    rows = pq.read_table(root.facts("2016-06", "mapping"), columns=["qid", "page_id"]).to_pylist()
    assert sorted(rows, key=lambda r: r["page_id"]) == [{"qid": "Q42", "page_id": 100001},
                                                       {"qid": "Q1299", "page_id": 100002}]


# ---------------------------------------------------------------------------------------------
# Item 1: work kept by a run with other options is never reused

@pytest.fixture(scope="module")
def chunked_dump(tmp_path_factory):
    """Every real entity file in one dump of concatenated gzip members (as Wikimedia's), and
    its facts built cleanly with the default options."""
    tmp = tmp_path_factory.mktemp("chunked")
    ents = real_entities(*sorted(p.name for p in WD.glob("*.json")))
    data = b"[\n" + b",\n".join(orjson.dumps(e) for e in ents) + b"\n]\n"
    dump = tmp / "real-all.json.gz"
    dump.write_bytes(b"".join(gzip.compress(data[i:i + 100_000], mtime=0)
                              for i in range(0, len(data), 100_000)))
    res = facts(tmp / "data", dump)
    assert res.returncode == 0, res.stderr
    return dump, tmp / "data"


@pytest.mark.parametrize("first, then", [
    # Before: exit 0 and 28 of the 64 facts shards short of rows (the joins of partitions 3..63,
    # whose statements the kept map had cut into 64, were never read).
    (["--set", "facts_run.partitions=64"], ["--set", "facts_run.partitions=3"]),
    # Before: "the dump ends without its closing ']'" (the kept map-00000, one 0.02 MB chunk,
    # was taken for the whole dump's).
    (["--set", "facts_run.chunk_mb=0.02"], []),
    (["--set", "facts_run.partitions=3"], []),
])
def test_work_kept_with_other_options_is_not_reused(tmp_path, chunked_dump, first, then):
    dump, clean_root = chunked_dump
    root = tmp_path / "data"
    kept = facts(root, dump, "--set", "facts_run.keep_work=true", *first)
    assert kept.returncode == 0, kept.stderr
    assert list((root / "work" / "facts").rglob("map-*.json"))
    shutil.rmtree(published(root).parent)
    again = facts(root, dump, *then)
    assert again.returncode == 0, again.stderr
    for table in ("facts", "entities", "properties"):
        assert shard_bytes(published(root, table)) == shard_bytes(published(clean_root, table))
