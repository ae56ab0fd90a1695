"""The fact diff on real Wikidata entities at two dates (tests/data/wikimedia/wikidata)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from conftest import REAL_DATA
from twiki.errors import ConfigError, TwikiError
from twiki.engine.executors import LocalExecutor
from twiki.stages.factdiff import diff_facts
from twiki.stages.facts import FactsConfig, FactsRunOptions, build_facts
from twiki.engine.paths import DataRoot

WD = REAL_DATA / "wikidata"
OPTS = FactsRunOptions(partitions=3, spill_rows=11)
CFG = FactsConfig(shards=4, require_sitelink=False)


def two_months(tmp_path, a_files, b_files, cfg=CFG):
    root = DataRoot(tmp_path / "data")
    build_facts("2015-02", dump=[WD / f for f in a_files], data_root=root, config=cfg, options=OPTS)
    build_facts("2015-05", dump=[WD / f for f in b_files], data_root=root, config=cfg, options=OPTS)
    return root


def rows_by(result, subject):
    return [r for r in pq.read_table(result.path).to_pylist() if r["subject"] == subject]


def test_q42_from_2015_02_to_2015_05(tmp_path):
    """Worked out by hand from the two API responses (best rank only):
    - P800 (notable work): {Q25169} -> {Q25169, Q902712}: Q25169 unchanged, Q902712 updated
    - P735 (given name): 2015-05 adds a normal-rank 'Noël' (Q261113) and makes 'Douglas'
      (Q463035) preferred: best rank is still {Q463035}, unchanged
    - P1263, P1695, P1816: new properties, new
    - the other 58 properties: same values, unchanged; nothing removed."""
    root = two_months(tmp_path, ["wbgetentities-Q6-Q42-P31.json"],
                      ["wbgetentities-Douglas-Adams.json"])
    res = diff_facts("2015-02", "2015-05", data_root=root)
    rows = rows_by(res, "Q42")
    cats = {}
    for r in rows:
        cats.setdefault(r["category"], []).append((r["property"], r["value"]))
    assert sorted(cats["new"]) == [("P1263", "731/000023662"), ("P1695", "A11573065"),
                                   ("P1816", "mp60152")]
    assert cats["updated"] == [("P800", "Q902712")]
    updated = [r for r in rows if r["category"] == "updated"][0]
    assert updated["old_values"] == ["Q25169"] and updated["old_texts"] == [None]
    assert "removed" not in cats
    assert len(cats["unchanged"]) == 64
    assert ("P800", "Q25169") in cats["unchanged"] and ("P735", "Q463035") in cats["unchanged"]
    assert ("P569", "1952-03-11/11") in cats["unchanged"]      # 2015-02 wrote +00000001952-...
    assert all(not r["subject_new"] for r in rows)
    assert res.counts == {"unchanged": 64, "new": 3, "updated": 1, "removed": 0, "changed": 4,
                          "subjects_new": 0, "facts_of_new_subjects": 0, "subjects_removed": 0}
    m = res.manifest
    assert m["report"]["initial_categorization"] == {"unchanged": 64, "changed": 4}
    assert diff_facts("2015-02", "2015-05", data_root=root).state == "current"


def test_new_items_removed_facts_and_removed_items(tmp_path):
    """A: Q42 (2015-02), Q1 (Wikidata-Toolkit's response), Q20145. B: Q42 (2015-05), Q1 as
    wikibase-sdk's fixture keeps it (P580 only), Oliver Kahn (new in B)."""
    root = two_months(tmp_path,
                      ["wbgetentities-Q6-Q42-P31.json", "wbgetentities-Q1.json", "Q20145.json"],
                      ["wbgetentities-Douglas-Adams.json", "Q1__2023-01-21__9fb7065.json",
                       "wbgetentites-Oliver-Kahn.json"])
    res = diff_facts("2015-02", "2015-05", data_root=root, executor=LocalExecutor(2))
    universe = rows_by(res, "Q1")
    assert [(r["category"], r["property"]) for r in universe if r["category"] != "removed"] == [
        ("unchanged", "P580")]
    removed = sorted(r["property"] for r in universe if r["category"] == "removed")
    assert removed == sorted(["P18", "P31", "P227", "P349", "P373", "P508", "P793", "P793",
                              "P793", "P910", "P1036", "P1036", "P1051", "P1245"])
    kahn = rows_by(res, "Q131261")
    assert kahn and all(r["category"] == "new" and r["subject_new"] for r in kahn)
    gone = rows_by(res, "Q20145")
    assert gone and all(r["category"] == "removed" for r in gone)
    c = res.counts
    assert c["unchanged"] == 64 + 1 and c["updated"] == 1
    assert c["new"] == 3 + len(kahn) and c["facts_of_new_subjects"] == len(kahn)
    assert c["removed"] == 14 + len(gone)
    assert c["subjects_new"] == 1 and c["subjects_removed"] == 1
    # shard order: subject, property, then B's facts before A's removed ones
    table = pq.read_table(res.path / "part-00000.parquet").to_pylist()
    keys = [(int(r["subject"][1:]), int(r["property"][1:]), r["category"] == "removed")
            for r in table]
    assert keys == sorted(keys)


def test_errors_say_what_to_do(tmp_path):
    root = two_months(tmp_path, ["wbgetentities-Q1.json"], ["wbgetentities-Q1.json"])
    with pytest.raises(ConfigError, match="earlier month"):
        diff_facts("2015-05", "2015-02", data_root=root)
    with pytest.raises(TwikiError, match="twiki facts --month 2015-09"):
        diff_facts("2015-05", "2015-09", data_root=root)
    build_facts("2015-09", dump=WD / "wbgetentities-Q1.json", data_root=root,
                config=FactsConfig(shards=3, require_sitelink=False), options=OPTS)
    with pytest.raises(TwikiError, match="same --shards"):
        diff_facts("2015-05", "2015-09", data_root=root)
