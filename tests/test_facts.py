"""The facts stage on real Wikidata entity JSON (tests/data/wikimedia/wikidata): formats,
ranks, rendering, labels from the dump, bad input, resume, chunking, and the page mapping."""

from __future__ import annotations

import bz2
import gzip
import html
import json
import os
import re
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REAL_DATA
from twiki.engine.artifacts import (ArtifactBuild, ShardWriter, read_manifest, shard_array, shard_name,
                             shard_of)
from twiki.errors import InputError, TwikiError
from twiki.engine.executors import LocalExecutor
from twiki.stages.facts import FactsConfig, FactsRunOptions, build_facts
from twiki.stages.mapping import build_mapping, normalize_title
from twiki.engine.paths import DataRoot
from twiki.sources.wikidata import qid_number, render_time, time_key

WD = REAL_DATA / "wikidata"
SMALL = FactsRunOptions(partitions=3, spill_rows=7)   # tiny spills: every code path of the shuffle


def entities(name: str) -> list[dict]:
    """The entities of one real file: an API response or a single entity."""
    d = json.loads((WD / name).read_text())
    return list(d["entities"].values()) if "entities" in d else [d]


def write_dump(path: Path, ents: list[dict]) -> Path:
    """Real entities in the dump format: '[', one entity a line ending in ',', ']'."""
    body = b",\n".join(orjson.dumps(e) for e in ents)
    data = b"[\n" + body + b"\n]\n"
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".bz2":
        data = bz2.compress(data)
    path.write_bytes(data)
    return path


def artifact(result, table: str) -> Path:
    """One of the facts call's tables: facts (its path), entities or properties (its parts)."""
    return result.path if table == "facts" else result.parts[table]


def facts_of(result) -> list[dict]:
    return pq.read_table(result.path).to_pylist()


def build(tmp_path, month, dump, **kw):
    cfg = kw.pop("config", FactsConfig(shards=4))
    return build_facts(month, dump=dump, data_root=DataRoot(tmp_path / "data"), config=cfg,
                       options=kw.pop("options", SMALL), **kw)


# ---------------------------------------------------------------------------------------------
# Rendering

# Wikidata time value, precision, how it renders (the second row: the 2015 dumps' form).
RENDERED_DATES = """\
+1952-03-11T00:00:00Z           11  11 March 1952
+00000001952-03-11T00:00:00Z    11  11 March 1952
+1990-11-00T00:00:00Z           10  November 1990
+1291-00-00T00:00:00Z           9   1291
+1953-00-00T00:00:00Z           8   1950s
+1952-00-00T00:00:00Z           7   20th century
+1901-00-00T00:00:00Z           7   20th century
+1900-00-00T00:00:00Z           7   19th century
+1001-00-00T00:00:00Z           6   2nd millennium
-0044-03-15T00:00:00Z           11  15 March 44 BCE
-0753-00-00T00:00:00Z           9   753 BCE
-0050-00-00T00:00:00Z           8   50s BCE
-0250-00-00T00:00:00Z           7   3rd century BCE
-13798000000-00-00T00:00:00Z    3   13.798 billion years BCE
"""


@pytest.mark.parametrize("value,precision,text",
                         [line.split(None, 2) for line in RENDERED_DATES.splitlines()])
def test_dates_render_at_their_precision(value, precision, text):
    assert render_time(value, int(precision)) == text


def test_time_key_ignores_the_dump_format_and_digits_beyond_the_precision():
    assert time_key("+00000001952-03-11T00:00:00Z", 11, None) == \
        time_key("+1952-03-11T00:00:00Z", 11, None)
    assert time_key("+1952-01-01T00:00:00Z", 9, None) == time_key("+1952-00-00T00:00:00Z", 9, None)
    assert time_key("+1952-00-00T00:00:00Z", 9, None) != time_key("+1952-00-00T00:00:00Z", 8, None)
    julian = "http://www.wikidata.org/entity/Q1985786"
    assert time_key("+1552-03-11T00:00:00Z", 11, julian).endswith("/julian")


def test_time_key_and_rendering_agree_on_centuries_and_millennia():
    """Before: time_key rounded centuries and millennia down (+1950 and +1900 at century
    precision: one key, 19x100) while render_time rounds up as Wikidata does (+1950: "20th
    century", +1900: "19th century"): a false unchanged, and +1950 / +2000 (both the 20th
    century) a false update. Now two values share a key exactly when they render the same."""
    key = lambda t, p: time_key(t, p, None)
    assert key("+1950-00-00T00:00:00Z", 7) == key("+2000-00-00T00:00:00Z", 7) == "20c/7"
    assert key("+1900-00-00T00:00:00Z", 7) == "19c/7" != key("+1950-00-00T00:00:00Z", 7)
    assert key("+1001-00-00T00:00:00Z", 6) == key("+2000-00-00T00:00:00Z", 6) == "2m/6"
    assert key("-0250-00-00T00:00:00Z", 7) == "-3c/7"
    for precision in range(0, 10):
        unit = 10 ** max(9 - precision, 0)
        years = sorted({y for y in range(-3 * unit, 3 * unit + 1, max(unit // 7, 1)) if y}
                       | {-unit, unit, 2 * unit, unit + 1})
        pairs = {(key(f"{'-' if y < 0 else '+'}{abs(y):04d}-00-00T00:00:00Z", precision),
                  render_time(f"{'-' if y < 0 else '+'}{abs(y):04d}-00-00T00:00:00Z", precision))
                 for y in years}
        keys, texts = {k for k, _ in pairs}, {t for _, t in pairs}
        assert len(pairs) == len(keys) == len(texts), precision


def test_statements_keep_their_start_end_and_point_in_time(tmp_path):
    """The qualifiers P580 (start time), P582 (end time) and P585 (point in time) of real
    statements, first value of each, in the canonical form of a time `value`."""
    dump = write_dump(tmp_path / "d-all.json", entities("wbgetentities-Douglas-Adams.json")
                      + entities("wbgetentities-Q32063953.json") + entities("Q1299.json"))
    rows = facts_of(build(tmp_path, "2019-08", dump))
    times = {(r["subject"], r["property"], r["value"]):
             (r["start_time"], r["end_time"], r["point_in_time"]) for r in rows}
    # Douglas Adams married Jane Belson on 25 November 1991 (until his death); educated at
    # the University of Cambridge until 1974 (a year)
    assert times[("Q42", "P26", "Q14623681")] == ("1991-11-25/11", "2001-05-11/11", None)
    assert times[("Q42", "P69", "Q35794")] == (None, "1974/9", None)
    assert times[("Q42", "P69", "Q4961791")] == (None, None, None)
    # Karlsruhe's preferred population is that of 2015-12-31; its mayor since 2013-03-01
    assert times[("Q1040", "P1082", "307755")] == (None, None, "2015-12-31/11")
    assert times[("Q1040", "P6", "Q1443774")] == ("2013-03-01/11", None, None)
    # The Beatles: Pete Best was a member from 1960-08-12 to 1962-08-16, Ringo Starr since
    assert times[("Q1299", "P527", "Q207335")] == ("1960-08-12/11", "1962-08-16/11", None)
    assert times[("Q1299", "P527", "Q2632")] == ("1962-08-16/11", None, None)
    assert sum(1 for t in times.values() if t == (None, None, None)) > len(times) / 2


def test_shard_array_equals_shard_of():
    import numpy as np
    keys = np.array([0, 1, 42, 1040, 131261, 2**40 + 7], dtype=np.int64)
    assert shard_array(keys, 64).tolist() == [shard_of(int(k), 64) for k in keys]


# ---------------------------------------------------------------------------------------------
# Real entities

def test_q42_2015_02_api_response(tmp_path):
    """Q42 as wbgetentities returned it on 2015-02 (with P31 and the missing Q6)."""
    res = build(tmp_path, "2015-02", [WD / "wbgetentities-Q6-Q42-P31.json"])
    assert res.state == "built"
    rows = facts_of(res)
    c = res.manifest["report"]["counts"]
    assert c["missing_entities"] == 1 and c["items_kept"] == 1 and c["property_entities"] == 1
    assert len(rows) == 64 and {r["subject"] for r in rows} == {"Q42"}
    by = {(r["property"], r["value"]): r for r in rows}
    born = by[("P569", "1952-03-11/11")]
    assert born["text"] == "11 March 1952" and born["value_type"] == "time" and born["precision"] == 11
    assert by[("P570", "2001-05-11/11")]["text"] == "11 May 2001"
    p31 = by[("P31", "Q5")]
    # the property's label comes from the P31 entity in the same input, never from an API
    assert p31["property_label"] == "instance of" and p31["object_qid"] == "Q5"
    assert p31["text"] is None and p31["object_label"] is None   # Q5 is not in this input
    assert by[("P1477", "en:Douglas Noël Adams")]["text"] == "Douglas Noël Adams"
    assert by[("P373", "Douglas Adams")]["datatype"] == "string"
    # 2015: identifiers were plain strings (the external-id datatype came in 2016)
    assert by[("P214", "113230702")]["datatype"] == "string"
    assert by[("P18", "Douglas adams portrait cropped.jpg")]["datatype"] == "commonsMedia"
    assert all(r["subject_label"] == "Douglas Adams" and r["month"] == "2015-02" for r in rows)
    assert [r["statement_id"] for r in rows if r["property"] == "P69"] == sorted(
        r["statement_id"] for r in rows if r["property"] == "P69")
    ents = pq.read_table(res.parts["entities"]).to_pylist()
    assert ents[0]["qid"] == "Q42" and ents[0]["title"] == "Douglas Adams"
    assert "Douglas Noël Adams" in ents[0]["aliases"] and ents[0]["facts"] == 64
    props = pq.read_table(res.parts["properties"]).to_pylist()
    assert props[0]["property"] == "P31" and props[0]["label"] == "instance of"
    assert "is a" in props[0]["aliases"]


def test_best_rank_only(tmp_path):
    """Real statements with mixed ranks: preferred wins, else normal, deprecated never."""
    dump = write_dump(tmp_path / "d-all.json", entities("Q4115189__2023-01-21__9fb7065.json")
                      + entities("wbgetentities-Q1.json") + entities("wbgetentities-Douglas-Adams.json"))
    rows = facts_of(build(tmp_path, "2023-01", dump, config=FactsConfig(shards=4, require_sitelink=False)))
    sandbox = [r for r in rows if r["subject"] == "Q4115189"]
    # P135: deprecated + preferred + normal -> the preferred one only
    assert [r["rank"] for r in sandbox if r["property"] == "P135"] == ["preferred"]
    # P569: normal + deprecated -> the normal one only
    assert [r["rank"] for r in sandbox if r["property"] == "P569"] == ["normal"]
    # Q1's P361 has only a deprecated statement: no fact at all
    assert not [r for r in rows if r["subject"] == "Q1" and r["property"] == "P361"]
    # Q42's given name (2015-05): preferred "Douglas" (Q463035) wins over normal "Noël"
    assert [r["value"] for r in rows if r["subject"] == "Q42" and r["property"] == "P735"] == ["Q463035"]
    assert len([r for r in rows if r["subject"] == "Q42" and r["property"] == "P998"]) == 1


def test_object_labels_and_aliases_come_from_the_dump(tmp_path):
    """Oliver Kahn was born in Q1040: its English label is taken from Karlsruhe's own entity,
    which sits elsewhere in the same dump (here a redirect Q32063953 -> Q1040)."""
    dump = write_dump(tmp_path / "d-all.json.gz", entities("wbgetentites-Oliver-Kahn.json")
                      + entities("P434.json") + entities("wbgetentities-Q32063953.json"))
    res = build(tmp_path, "2017-02", dump)
    rows = facts_of(res)
    born = [r for r in rows if r["subject"] == "Q131261" and r["property"] == "P19"]
    assert len(born) == 1
    assert born[0]["object_qid"] == "Q1040" and born[0]["object_label"] == "Karlsruhe"
    assert born[0]["text"] == "Karlsruhe" and born[0]["object_aliases"] == []
    assert born[0]["subject_label"] == "Oliver Kahn"
    # the redirect's entity is kept under its target id, and the redirect is reported
    assert {r["subject"] for r in rows} == {"Q131261", "Q1040"}
    assert res.manifest["report"]["redirects"] == [["Q32063953", "Q1040"]]
    # property labels: P434 is in the dump, P19 is not
    mb = [r for r in rows if r["property"] == "P434"]
    assert not mb or mb[0]["property_label"] == "MusicBrainz artist ID"
    assert born[0]["property_label"] is None


def test_redirect_entity_keyed_by_its_target(tmp_path):
    """Special:EntityData for the redirect Q16231742 answers with Q3571994's entity."""
    rows = facts_of(build(tmp_path, "2017-08", [WD / "Q16231742.json"]))
    assert rows and {r["subject"] for r in rows} == {"Q3571994"}
    assert all(r["subject_label"] == "Kangnam" for r in rows)


def test_quantities_times_and_units(tmp_path):
    """Hong Kong (2019): quantities without '+', units labelled when their item is in the dump.
    The square kilometre entity is the only hand-made line here (its real English label)."""
    km2 = {"type": "item", "id": "Q712226", "claims": {}, "sitelinks": {},
           "labels": {"en": {"language": "en", "value": "square kilometre"}}, "aliases": {}}
    dump = write_dump(tmp_path / "d-all.json", entities("Q8646.json") + [km2])
    res = build(tmp_path, "2019-08", dump)
    rows = [r for r in facts_of(res) if r["subject"] == "Q8646"]
    area = [r for r in rows if r["property"] == "P2046"]
    assert area and all(r["text"].endswith(" square kilometre") for r in area)
    assert all(not r["text"].startswith("+") and r["unit_qid"] == "Q712226" for r in area)
    assert {r["value"] for r in area} <= {f"{a}|Q712226" for a in ("1105.69", "1649.34", "2755.03")}
    # a unit that is not in the dump: the bare number
    gdp = [r for r in rows if r["property"] == "P2131" or r["property"] == "P4010"]
    assert gdp and all(re.fullmatch(r"-?[0-9.]+", r["text"]) for r in gdp)
    skipped = res.manifest["report"]["skipped_values"]
    assert skipped.get("globecoordinate", 0) >= 1      # P625 coordinates: skipped and counted
    types = {r["value_type"] for r in rows}
    assert types == {"item", "time", "quantity", "string", "monolingualtext"}


def test_lexemes_mediainfo_and_properties_are_never_subjects(tmp_path):
    dump = write_dump(tmp_path / "d-all.json", entities("L525__2023-01-21__9fb7065.json")
                      + entities("lexeme.json") + entities("mediainfo.json")
                      + entities("P8098__2023-01-21__9fb7065.json") + entities("property.json")
                      + entities("Q20145.json"))
    res = build(tmp_path, "2023-01", dump)
    assert {r["subject"] for r in facts_of(res)} == {"Q20145"}
    report = res.manifest["report"]
    assert report["skipped_entities"] == {"lexeme": 2, "mediainfo": 1}
    props = {r["property"]: r["label"] for r in pq.read_table(res.parts["properties"]).to_pylist()}
    assert set(props) == {"P8098", "P3467"}


def test_the_101_entity_dump_sample(tmp_path):
    """Wikidata-Toolkit's real dump-format sample: 55 items, 46 properties, sitelinks emptied."""
    sample = WD / "sample-dump-20150815.json.gz"
    res = build(tmp_path, "2015-08", sample)
    c = res.manifest["report"]["counts"]
    assert c["entities"] == 101 and c["items"] == 55 and c["properties"] == 46
    assert c["items_without_sitelink"] == 55 and res.manifest["rows"] == 0
    every = build(tmp_path / "all", "2015-08", sample,
                  config=FactsConfig(shards=4, require_sitelink=False))
    rows = facts_of(every)
    # 4 of the 55 items have no statement at all
    assert len(rows) == 119 and len({r["subject"] for r in rows}) == 51
    assert {r["property"] for r in rows} == {"P31"}
    assert {r["rank"] for r in rows} == {"normal"}
    assert read_manifest(every.parts["entities"])["rows"] == 55


# ---------------------------------------------------------------------------------------------
# Bad input

def test_corrupt_line_is_skipped_and_counted_with_its_line_number(tmp_path):
    ents = entities("wbgetentities-Douglas-Adams.json") + entities("Q20145.json") \
        + entities("Q494290.json")
    lines = [orjson.dumps(e) for e in ents]
    lines[1] = lines[1][: len(lines[1]) // 2]          # cut mid-entity, as a bad disk would
    path = tmp_path / "d-all.json"
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    res = build(tmp_path, "2017-02", path)
    assert {r["subject"] for r in facts_of(res)} == {"Q42", "Q494290"}
    bad = res.manifest["report"]["bad"]
    assert res.manifest["report"]["counts"]["bad_lines"] == 1
    assert bad[0]["line"] == 3 and bad[0]["file"] == "d-all.json"   # '[' is line 1


def test_line_numbers_are_absolute_across_chunks(tmp_path):
    raw = gzip.decompress((WD / "sample-dump-20150815.json.gz").read_bytes()).split(b"\n")
    raw[60] = b'{"type":"item","id":"Q1",'                    # line 61: broken
    path = tmp_path / "d-all.json"
    path.write_bytes(b"\n".join(raw))
    res = build(tmp_path, "2015-08", path, config=FactsConfig(shards=4, require_sitelink=False),
                options=FactsRunOptions(partitions=3, chunk_mb=0.004))
    assert res.manifest["report"]["chunks"] > 5
    assert [b["line"] for b in res.manifest["report"]["bad"]] == [61]


@pytest.mark.parametrize("suffix", [".gz", ".bz2"])
def test_truncated_compressed_dump_is_an_error_and_nothing_is_published(tmp_path, suffix):
    full = write_dump(tmp_path / f"full-all.json{suffix}", entities("Q8646.json")
                      + entities("Q1299.json") + entities("wbgetentities-Douglas-Adams.json"))
    cut = tmp_path / "raw" / f"cut-all.json{suffix}"
    cut.parent.mkdir()
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    with pytest.raises(InputError, match="truncated"):
        build(tmp_path, "2019-08", cut)
    assert not (tmp_path / "data" / "facts" / "2019-08" / "facts").exists()


def test_truncated_plain_dump_without_closing_bracket(tmp_path):
    full = write_dump(tmp_path / "full-all.json", entities("Q8646.json") + entities("Q1299.json"))
    cut = tmp_path / "cut-all.json"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError, match="closing"):
        build(tmp_path, "2019-08", cut)
    assert read_manifest(tmp_path / "data" / "facts" / "2019-08" / "facts") is None


def test_pre_2014_formats_are_refused_clearly(tmp_path):
    xml = WD / "sample-daily-dump-20140220.xml"
    with pytest.raises(InputError, match="XML"):
        build(tmp_path, "2014-02", xml)
    # the same Q1 revision's internal JSON, one entity a line
    text = re.search(r"<text[^>]*>(.*?)</text>", xml.read_text(), re.S).group(1)
    old = tmp_path / "old-all.json"
    old.write_text(html.unescape(text) + "\n")
    with pytest.raises(InputError, match="pre-2014"):
        build(tmp_path, "2014-02", old)


def test_not_a_dump(tmp_path):
    f = tmp_path / "x-all.json"
    f.write_text("hello\n")
    with pytest.raises(InputError, match="not a Wikidata JSON dump"):
        build(tmp_path, "2014-02", f)


# ---------------------------------------------------------------------------------------------
# Idempotence, resume, determinism, splitting

def replicated_sample(copies: int) -> list[bytes]:
    """The 101-entity sample `copies` times, items renumbered per copy so ids stay unique."""
    lines = [l.rstrip(b",") for l in
             gzip.decompress((WD / "sample-dump-20150815.json.gz").read_bytes()).split(b"\n")
             if l.startswith(b"{")]
    ents = [orjson.loads(l) for l in lines]
    out = []
    for k in range(copies):
        for e in ents:
            if e["type"] == "item":
                if k == 0:
                    out.append(orjson.dumps(e))
                    continue
                e = dict(e, id=f"Q{qid_number(e['id']) + k * 10_000_000}")
            elif k:
                continue
            out.append(orjson.dumps(e))
    return out


def test_rerun_is_a_noop_and_a_lost_shard_is_repaired_identically(tmp_path):
    dump = write_dump(tmp_path / "d-all.json", entities("Q8646.json") + entities("Q1299.json")
                      + entities("Q20145.json") + entities("Q33281.json"))
    first = build(tmp_path, "2019-08", dump)
    before = {p.name: p.read_bytes() for p in first.path.glob("part-*")}
    assert build(tmp_path, "2019-08", dump).state == "current"
    (first.path / shard_name(1)).unlink()
    again = build(tmp_path, "2019-08", dump)
    assert again.state == "repaired"
    assert {p.name: p.read_bytes() for p in first.path.glob("part-*")} == before
    assert not (tmp_path / "data" / "work" / "facts").exists() or \
        not any((tmp_path / "data" / "work" / "facts").rglob("*.parquet"))


@pytest.mark.parametrize("suffix", [".json", ".json.gz", ".json.bz2"])
def test_same_bytes_whatever_the_chunking_and_workers(tmp_path, suffix):
    lines = replicated_sample(60)                 # ~2.3 MB: several bz2 blocks
    data = b"[\n" + b",\n".join(lines) + b"\n]\n"
    path = tmp_path / f"rep-all{suffix}"
    if suffix.endswith(".gz"):
        # like Wikimedia's: concatenated gzip members
        path.write_bytes(b"".join(gzip.compress(data[i:i + 300_000])
                                  for i in range(0, len(data), 300_000)))
    elif suffix.endswith(".bz2"):
        path.write_bytes(bz2.compress(data, 1))      # 100 kB blocks: ~20 of them
    else:
        path.write_bytes(data)
    cfg = FactsConfig(shards=4, require_sitelink=False)
    whole = build(tmp_path / "a", "2015-08", path, config=cfg,
                  options=FactsRunOptions(partitions=2, chunk_mb=1000))
    split = build_facts("2015-08", dump=path, data_root=DataRoot(tmp_path / "b"), config=cfg,
                        executor=LocalExecutor(2),
                        options=FactsRunOptions(partitions=5, chunk_mb=0.03, spill_rows=500))
    assert whole.manifest["report"]["chunks"] == 1 and split.manifest["report"]["chunks"] > 2
    for art in ("facts", "entities", "properties"):
        a = sorted(artifact(whole, art).glob("part-*"))
        b = sorted(artifact(split, art).glob("part-*"))
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b], art
    assert whole.manifest["rows"] == 119 * 60


def test_the_months_downloaded_dump_is_found(tmp_path, mirror):
    """No --dump: the Wikidata run that `twiki download` fetched for the month (the sample
    mirror's real-entity dump), identified by the checksums the download verified."""
    from twiki.sources.download import download_wikidata
    root = DataRoot(tmp_path / "data")
    with pytest.raises(TwikiError, match="twiki download --month 2016-05"):
        build_facts("2016-05", data_root=root, config=FactsConfig(shards=2), options=SMALL)
    download_wikidata("2016-05", mirrors=[str(mirror)], data_root=root)
    res = build_facts("2016-05", data_root=root, config=FactsConfig(shards=2), options=SMALL)
    dump = res.manifest["inputs"]["dump"][0]
    assert dump["name"].startswith("wikidata-2016") and dump["sha1"] and "sha256" not in dump
    assert res.manifest["rows"] > 0 and res.manifest["report"]["counts"]["bad_lines"] == 0


def test_a_dump_folder(tmp_path):
    folder = tmp_path / "wikidatawiki" / "20150509"
    folder.mkdir(parents=True)
    write_dump(folder / "wikidata-20150509-all.json.gz", entities("wbgetentities-Douglas-Adams.json"))
    res = build(tmp_path, "2015-05", folder)
    assert {r["subject"] for r in facts_of(res)} == {"Q42"}
    assert res.manifest["inputs"]["dump"][0]["name"] == "wikidata-20150509-all.json.gz"


# ---------------------------------------------------------------------------------------------
# The page_id <-> QID mapping

def make_snapshot(root: DataRoot, month: str, pages: list[tuple[int, str]], shards: int = 4):
    """A month's snapshot artifact with the given (page_id, title) articles."""
    from datetime import datetime, timezone

    from twiki.stages.extract import SCHEMA
    b = ArtifactBuild(root.snapshot("enwiki", month), stage="extract", stage_version=1,
                      inputs={"test": pages}, config={}, shards=shards, schema=SCHEMA)
    ts = datetime(2015, 5, 1, tzinfo=timezone.utc)
    for i in b.pending_shards():
        mine = sorted(p for p in pages if shard_of(p[0], shards) == i)
        with ShardWriter(b.shard_path(i), SCHEMA) as w:
            w.write(pa.table({"page_id": [p for p, _ in mine], "title": [t for _, t in mine],
                              "revid": [1] * len(mine), "timestamp": [ts] * len(mine),
                              "sha1": [None] * len(mine), "paragraphs": [[]] * len(mine)},
                             schema=SCHEMA))
    b.publish()


def test_mapping_from_sitelinks_and_snapshot_titles(tmp_path):
    root = DataRoot(tmp_path / "data")
    # Page ids are enwiki's (Douglas Adams 8091); the rest of the articles have none in Wikidata.
    make_snapshot(root, "2015-05", [(8091, "Douglas Adams"), (12, "Anarchism"), (39, "Albedo")])
    dump = write_dump(tmp_path / "d-all.json", entities("wbgetentities-Douglas-Adams.json")
                      + entities("wbgetentites-Oliver-Kahn.json"))
    build_facts("2015-05", dump=dump, data_root=root, config=FactsConfig(shards=4),
                options=SMALL)
    m = build_mapping("2015-05", data_root=root)
    assert m.state == "built"
    assert pq.read_table(m.path).select(["qid", "page_id", "title", "match"]).to_pylist() == [
        {"qid": "Q42", "page_id": 8091, "title": "Douglas Adams", "match": "title"}]
    c = m.manifest["report"]["counts"]
    assert c["sitelinks"] == 2 and c["mapped"] == 1 and c["sitelinks_unmatched"] == 1
    assert c["articles_without_item"] == 2
    assert build_mapping("2015-05", data_root=root).state == "current"


def test_mapping_follows_redirects_of_renamed_pages(tmp_path):
    """A page renamed after the Wikidata dump: the sitelink names the old title, which the
    wiki now redirects to the new one (the rename is staged here; the titles are real)."""
    root = DataRoot(tmp_path / "data")
    make_snapshot(root, "2017-02", [(8091, "Douglas Adams"), (1, "Oliver Kahn (goalkeeper)")])
    dump = write_dump(tmp_path / "d-all.json", entities("wbgetentities-Douglas-Adams.json")
                      + entities("wbgetentites-Oliver-Kahn.json"))
    build_facts("2017-02", dump=dump, data_root=root, config=FactsConfig(shards=4),
                options=SMALL)
    red = tmp_path / "redirects.parquet"
    pq.write_table(pa.table({"title": ["Oliver_Kahn"], "target": ["Oliver Kahn (goalkeeper)"]}), red)
    m = build_mapping("2017-02", data_root=root, redirects=red)
    rows = pq.read_table(m.path).select(["qid", "page_id", "match"]).to_pylist()
    assert sorted(rows, key=lambda r: r["page_id"]) == [
        {"qid": "Q131261", "page_id": 1, "match": "redirect"},
        {"qid": "Q42", "page_id": 8091, "match": "title"}]
    assert m.manifest["report"]["counts"]["matched_by_redirect"] == 1


def open_work_files(root: DataRoot, pids: list[int]) -> list[str]:
    """The files under the data root's work/ that these processes hold open (deleted or not)."""
    work = str(root.work())
    found = []
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue    # closed meanwhile
            if target.startswith(work):
                found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/<pid>/fd")
def test_no_worker_holds_a_work_file_open_once_published(tmp_path):
    """Pool workers outlive a run: after facts and mapping publish (and delete their work
    files), neither the workers nor this process still hold one of those files open."""
    root = DataRoot(tmp_path / "data")
    make_snapshot(root, "2015-05", [(8091, "Douglas Adams"), (12, "Anarchism")])
    dump = write_dump(tmp_path / "d-all.json", entities("wbgetentities-Douglas-Adams.json")
                      + entities("wbgetentites-Oliver-Kahn.json"))
    with LocalExecutor(2) as executor:
        build_facts("2015-05", dump=dump, data_root=root, executor=executor,
                    config=FactsConfig(shards=4), options=SMALL)
        build_mapping("2015-05", data_root=root, executor=executor)
        pids = [os.getpid(), *executor._pool._processes]
        assert len(pids) > 1      # the tasks ran in pool workers
        assert open_work_files(root, pids) == []
    assert not root.work().exists()


def test_normalize_title():
    assert normalize_title("oliver_Kahn ") == "Oliver Kahn"
    assert normalize_title("Hong  Kong") == "Hong Kong"
    assert normalize_title("e\u0301clair") == "\u00c9clair"
