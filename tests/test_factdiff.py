"""The fact diff on real Wikidata entities at two dates (tests/data/wikimedia/wikidata), one
test per category (WikiFactDiff's, at the (subject, property, value) level) with the rows a
user reads; where no pair of real files shows a category, a real entity with one edit, marked
MADE UP where it is made."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from conftest import REAL_DATA
from twiki.errors import ConfigError, TwikiError
from twiki.engine.executors import LocalExecutor
from twiki.stages.factdiff import CHANGED_CATEGORIES, PROBE_KIND, diff_facts
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
    - P800 (notable work): {Q25169} -> {Q25169, Q902712}: Q902712 is an added value, shown
      with no old value (The Hitchhiker's Guide is still a notable work), Q25169 unchanged
    - P735 (given name): 2015-05 adds a normal-rank 'Noël' (Q261113) and makes 'Douglas'
      (Q463035) preferred: best rank is still {Q463035}, unchanged
    - P1263, P1695, P1816: properties A lacks, new relations
    - P26 (spouse) Jane Belson (1991-11-25 .. 2001-05-11) and P69 (educated at) the
      University of Cambridge (until 1974): an end time in both months, historical, never
      unchanged
    - the other properties: same values, unchanged; nothing removed."""
    root = two_months(tmp_path, ["wbgetentities-Q6-Q42-P31.json"],
                      ["wbgetentities-Douglas-Adams.json"])
    res = diff_facts("2015-02", "2015-05", data_root=root)
    rows = rows_by(res, "Q42")
    cats = {}
    for r in rows:
        cats.setdefault(r["category"], []).append((r["property"], r["value"]))
    assert sorted(cats["new_relation"]) == [("P1263", "731/000023662"), ("P1695", "A11573065"),
                                            ("P1816", "mp60152")]
    assert cats["added_value"] == [("P800", "Q902712")]
    added = [r for r in rows if r["category"] == "added_value"][0]
    assert added["old_values"] is None and added["old_texts"] is None
    assert sorted(cats["historical"]) == [("P26", "Q14623681"), ("P69", "Q35794")]
    spouse = [r for r in rows if r["property"] == "P26"][0]
    assert (spouse["start_time"], spouse["end_time"]) == ("1991-11-25/11", "2001-05-11/11")
    assert "removed" not in cats and "replacement" not in cats and "updated" not in cats
    assert len(cats["unchanged"]) == 62
    assert ("P800", "Q25169") in cats["unchanged"] and ("P735", "Q463035") in cats["unchanged"]
    assert ("P69", "Q4961791") in cats["unchanged"]           # Brentwood School: no end time
    assert ("P569", "1952-03-11/11") in cats["unchanged"]      # 2015-02 wrote +00000001952-...
    assert all(r["end_time"] is None for r in rows if r["category"] == "unchanged")
    assert all(not r["subject_new"] for r in rows)
    assert res.counts == {"unchanged": 62, "new_relation": 3, "added_value": 1,
                          "replacement": 0, "new_entity": 0, "ended": 0, "historical": 2,
                          "removed": 0, "changed": 4, "unchanged_by_text": 0,
                          "subjects_new": 0, "facts_of_new_subjects": 0, "subjects_removed": 0}
    m = res.manifest
    assert m["report"]["initial_categorization"] == {"unchanged": 62, "changed": 4}
    assert "62 unchanged, 4 changed (3 new relation, 1 added value, 0 replacement, 0 new " \
           "entity), 0 ended, 2 historical, 0 removed" in res.summary()
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
    assert kahn and all(r["category"] == "new_entity" and r["subject_new"] for r in kahn)
    # his awards keep their point in time at its precision (four of his six have one)
    awards = sorted(r["point_in_time"] or "-" for r in kahn if r["property"] == "P166")
    assert awards == ["-", "-", "2000/9", "2001/9", "2002-07-02/11", "2002/9"]
    gone = rows_by(res, "Q20145")
    assert gone and all(r["category"] == "removed" for r in gone)
    c = res.counts
    assert c["unchanged"] == 62 + 1 and c["added_value"] == 1 and c["historical"] == 2
    assert c["new_entity"] == len(kahn) == c["facts_of_new_subjects"]
    assert c["changed"] == 3 + 1 + len(kahn)
    assert c["removed"] == 14 + len(gone)
    assert c["subjects_new"] == 1 and c["subjects_removed"] == 1
    # shard order: subject, property, then B's facts before A's removed ones
    table = pq.read_table(res.path / "part-00000.parquet").to_pylist()
    keys = [(int(r["subject"][1:]), int(r["property"][1:]), r["category"] == "removed")
            for r in table]
    assert keys == sorted(keys)


# ---------------------------------------------------------------------------------------------
# Replacement, ended, unchanged by text, centuries: no pair of real files shows them, so month
# B is a real entity with one edit. MADE UP: each edit below (the values, dates and ranks it
# writes); everything else is the entity as Wikidata served it.

def real(name: str) -> dict:
    """An API response of tests/data/wikimedia/wikidata, to edit (a fresh copy each call)."""
    return json.loads((WD / name).read_text())


def entity_of(response: dict) -> dict:
    [e] = response["entities"].values()
    return e


def write(tmp_path, name: str, response: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(response))
    return str(path)


def time_snak(pid: str, time: str, precision: int = 11) -> dict:
    return {"snaktype": "value", "property": pid, "datatype": "time", "datavalue": {
        "type": "time", "value": {"time": time, "timezone": 0, "before": 0, "after": 0,
                                  "precision": precision,
                                  "calendarmodel": "http://www.wikidata.org/entity/Q1985727"}}}


def population(amount: str, year: int, rank: str) -> dict:
    return {"mainsnak": {"snaktype": "value", "property": "P1082", "datatype": "quantity",
                         "datavalue": {"type": "quantity",
                                       "value": {"amount": amount, "unit": "1"}}},
            "type": "statement", "rank": rank, "id": f"Q1040$made-up-population-{year}",
            "qualifiers": {"P585": [time_snak("P585", f"+{year}-12-31T00:00:00Z")]}}


KARLSRUHE = "wbgetentities-Q32063953.json"


def test_a_replacement_keeps_only_the_values_that_are_gone(tmp_path):
    """Karlsruhe (Q1040). MADE UP edit in B: a 2016 population (308,436, preferred) is added
    and the 2015 one (307,755) goes back to normal rank, as Wikidata's editors do each year.
    Best rank in A: {307755}; in B: {308436}: a replacement of 307755, which is removed."""
    b = real(KARLSRUHE)
    claims = entity_of(b)["claims"]["P1082"]
    for s in claims:
        s["rank"] = "normal"
    claims.append(population("+308436", 2016, "preferred"))
    root = two_months(tmp_path, [KARLSRUHE], [write(tmp_path, "karlsruhe-b.json", b)])
    res = diff_facts("2015-02", "2015-05", data_root=root)
    rows = [r for r in rows_by(res, "Q1040") if r["property"] == "P1082"]
    assert [(r["category"], r["text"], r["point_in_time"], r["old_values"], r["old_texts"])
            for r in rows] == [
        ("replacement", "308436", "2016-12-31/11", ["307755"], ["307755"]),
        ("removed", "307755", "2015-12-31/11", None, None)]
    others = [r for r in rows_by(res, "Q1040") if r["property"] != "P1082"]
    assert {r["category"] for r in others} <= {"unchanged", "historical"}
    assert res.counts["replacement"] == 1 and res.counts["changed"] == 1


def test_a_value_that_gains_an_end_time_has_ended(tmp_path):
    """Karlsruhe (Q1040). MADE UP edits in B: the twinning with Nancy (Q40898, since 1955)
    gains an end time (2020-06-30), the one with Q41262 an end time after month B
    (2099-12-31: not yet ended, still current); the mayor Frank Mentrup (Q1443774, preferred, since
    2013) gains an end time (2020-03-01) and a second preferred head of government is added
    (Q2038537, a real item, from 2020-03-01).
    Nancy: ended (in both months, not current in B). The new mayor: a replacement of Mentrup,
    whose statement ended; Mentrup's own row: ended. The other twin towns: unchanged."""
    b = real(KARLSRUHE)
    claims = entity_of(b)["claims"]
    [nancy] = [s for s in claims["P190"] if s["mainsnak"]["datavalue"]["value"]["id"] == "Q40898"]
    nancy["qualifiers"]["P582"] = [time_snak("P582", "+2020-06-30T00:00:00Z")]
    [later] = [s for s in claims["P190"] if s["mainsnak"]["datavalue"]["value"]["id"] == "Q41262"]
    later["qualifiers"]["P582"] = [time_snak("P582", "+2099-12-31T00:00:00Z")]
    [mentrup] = [s for s in claims["P6"] if s["rank"] == "preferred"]
    mentrup.setdefault("qualifiers", {})["P582"] = [time_snak("P582", "+2020-03-01T00:00:00Z")]
    successor = json.loads(json.dumps(mentrup))
    successor["id"] = "Q1040$made-up-mayor-2020"
    successor["mainsnak"]["datavalue"]["value"] = {"entity-type": "item", "numeric-id": 2038537,
                                                   "id": "Q2038537"}
    successor["qualifiers"] = {"P580": [time_snak("P580", "+2020-03-01T00:00:00Z")]}
    claims["P6"].append(successor)
    # month B: 2021-05, after the mayor's and Nancy's end times (the facts' month decides
    # what has ended by then)
    root = DataRoot(tmp_path / "data")
    build_facts("2015-02", dump=[WD / KARLSRUHE], data_root=root, config=CFG, options=OPTS)
    build_facts("2021-05", dump=[write(tmp_path, "karlsruhe-b.json", b)], data_root=root,
                config=CFG, options=OPTS)
    res = diff_facts("2015-02", "2021-05", data_root=root)
    rows = rows_by(res, "Q1040")
    twins = {r["value"]: (r["category"], r["end_time"]) for r in rows if r["property"] == "P190"}
    assert twins.pop("Q40898") == ("ended", "2020-06-30/11")
    assert twins.pop("Q41262") == ("unchanged", "2099-12-31/11")
    assert set(twins.values()) == {("unchanged", None)} and len(twins) == 4
    mayors = [(r["category"], r["value"], r["start_time"], r["end_time"], r["old_values"])
              for r in rows if r["property"] == "P6"]
    assert mayors == [("ended", "Q1443774", "2013-03-01/11", "2020-03-01/11", None),
                      ("replacement", "Q2038537", "2020-03-01/11", None, ["Q1443774"])]
    assert res.counts["ended"] == 2 and res.counts["replacement"] == 1
    assert res.counts["changed"] == 1            # ended is a change of its own kind


def test_a_new_text_equal_to_a_gone_text_is_no_change(tmp_path):
    """Douglas Adams (Q42) 2015-05. MADE UP edit in B: the birth name (P1477) re-typed in lower
    case, 'douglas noël adams': another value, the same text but for case, so unchanged (the
    old value is still recorded as removed); nothing is shown as an old -> new."""
    a = real("wbgetentities-Douglas-Adams.json")
    b = real("wbgetentities-Douglas-Adams.json")
    [name] = entity_of(b)["claims"]["P1477"]
    name["mainsnak"]["datavalue"]["value"]["text"] = "douglas noël adams"
    root = two_months(tmp_path, [write(tmp_path, "q42-a.json", a)],
                      [write(tmp_path, "q42-b.json", b)])
    res = diff_facts("2015-02", "2015-05", data_root=root)
    rows = [(r["category"], r["value"], r["old_values"]) for r in rows_by(res, "Q42")
            if r["property"] == "P1477"]
    assert rows == [("unchanged", "en:douglas noël adams", None),
                    ("removed", "en:Douglas Noël Adams", None)]
    assert res.counts["unchanged_by_text"] == 1 and res.counts["replacement"] == 0
    assert res.counts["changed"] == 0


@pytest.mark.parametrize("a_time,b_time,category,texts", [
    # the same century written with another year: Wikidata's +1950 and +2000 at century
    # precision are both the 20th century. Before: keys 19x100 and 20x100, a false update
    ("+1950-00-00T00:00:00Z", "+2000-00-00T00:00:00Z", "unchanged", ("20th century", None)),
    # another century: Before, +1900 and +1950 had one key (19x100), a false unchanged,
    # though they render "19th century" and "20th century"
    ("+1900-00-00T00:00:00Z", "+1950-00-00T00:00:00Z", "replacement",
     ("20th century", ["19th century"])),
])
def test_centuries_compare_as_they_render(tmp_path, a_time, b_time, category, texts):
    """Douglas Adams (Q42) 2015-05. MADE UP edit in both months: his date of birth (P569)
    written at century precision, A's and B's years as given."""
    months = []
    for t in (a_time, b_time):
        r = real("wbgetentities-Douglas-Adams.json")
        [born] = entity_of(r)["claims"]["P569"]
        born["mainsnak"]["datavalue"]["value"].update(time=t, precision=7)
        months.append(r)
    root = two_months(tmp_path, [write(tmp_path, "q42-a.json", months[0])],
                      [write(tmp_path, "q42-b.json", months[1])])
    res = diff_facts("2015-02", "2015-05", data_root=root)
    [born] = [r for r in rows_by(res, "Q42") if r["property"] == "P569"
              and r["category"] != "removed"]
    assert (born["category"], born["text"], born["old_texts"]) == (category, *texts)


def test_the_probe_kinds_of_the_categories():
    assert CHANGED_CATEGORIES == ("new_relation", "added_value", "replacement", "new_entity")
    assert PROBE_KIND == {"unchanged": "unchanged", "new_relation": "new", "added_value": "new",
                          "new_entity": "new", "replacement": "updated"}
    assert set(PROBE_KIND) == {"unchanged", *CHANGED_CATEGORIES}


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
