"""The align stage (TWiki-Probes, step 1) on a small month pair of real entities
(tests/entity_pair.py: real Wikidata entities, made-up articles that state their facts)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from aligned_pair import aligned_pair
from entity_pair import A, B, KAHN_ID, SHARDS, Stopped, StopAfter, build_pair
from twiki.stages.align import (AlignConfig, AlignOptions, Article, align_article, align_month_pair,
                         date_forms, fuzzy_score, object_forms)
from twiki.text.normalize import search_form
from twiki.engine.artifacts import shard_name
from twiki.errors import ConfigError, TwikiError
from twiki.engine.executors import LocalExecutor
from twiki.engine.paths import DataRoot
from twiki.engine.stage import StageResult


@pytest.fixture(scope="module")
def aligned_run(tmp_path_factory) -> tuple[DataRoot, StageResult]:
    """The month pair's data root, aligned, and the align's result."""
    return aligned_pair(tmp_path_factory.mktemp("pair"), spill_rows=7)


@pytest.fixture(scope="module")
def pair(aligned_run) -> DataRoot:
    return aligned_run[0]


@pytest.fixture(scope="module")
def aligned(aligned_run):
    _, res = aligned_run
    return res, pq.read_table(res.path).to_pylist()


def find(rows, subject, prop, obj=None):
    got = [r for r in rows if r["subject_qid"] == subject and r["property"] == prop
           and (obj is None or r["object"] == obj)]
    return got


# ---------------------------------------------------------------------------------------
# The cases, end to end.

def test_new_fact_stated_in_added_text_is_changed(aligned):
    _, rows = aligned
    [r] = find(rows, "Q131261", "P569")
    assert r["kind"] == "new" and r["object"] == "15 June 1969"
    assert r["evidence"] == "Oliver Kahn (born 15 June 1969) is a German former footballer."
    assert r["match_kind"] == "date" and r["match_score"] == 100
    assert r["evidence_in_diffset"] is True and r["object_in_month_a"] is False
    assert r["page_id"] == KAHN_ID and r["old_revid"] == 2001 and r["new_revid"] == 2002
    assert r["relation"] == "date of birth" and r["subject"] == "Oliver Kahn"


def test_updated_fact_with_new_object_in_diff_keeps_old_object(aligned):
    _, rows = aligned
    [r] = find(rows, "Q42", "P800", "Dirk Gently's Holistic Detective Agency")
    assert r["kind"] == "updated"
    assert r["old_objects"] == ["The Hitchhiker's Guide to the Galaxy"]
    assert r["old_values"] == ["Q25169"] and r["object_qid"] == "Q902712"
    assert r["evidence"] == ("Among his other works is the comic detective novel Dirk Gently's "
                             "Holistic Detective Agency.")
    assert r["match_kind"] == "exact_label" and r["relation"] == "notable work"
    assert r["object_in_month_a"] is False and r["evidence_in_diffset"] is True


def test_object_only_in_removed_text_is_not_a_changed_probe(aligned):
    res, rows = aligned
    assert find(rows, "Q131261", "P19") == []          # Karlsruhe: only in A's removed sentence
    assert res.report["rejected"]["changed"]["object_only_in_removed_text"] >= 1


def test_changed_fact_whose_object_was_already_in_month_a_is_flagged(aligned):
    _, rows = aligned
    [r] = find(rows, "Q131261", "P106")               # 'footballer', in the changed sentence
    assert r["kind"] == "new" and r["match_kind"] == "alias" and r["matched"] == "footballer"
    assert r["object_in_month_a"] is True               # A's first sentence said it already
    # goalkeeper: stated only in a sentence month B did not touch -> not a Changed probe
    assert find(rows, "Q131261", "P54") == []


def test_unchanged_fact_in_unchanged_text_is_unchanged_probe(aligned):
    _, rows = aligned
    [born] = find(rows, "Q42", "P569")
    assert born["kind"] == "unchanged" and born["object"] == "11 March 1952"
    assert born["evidence"].startswith("Douglas Noël Adams (11 March 1952 – 11 May 2001)")
    assert born["object_in_month_a"] is None and born["evidence_in_diffset"] is None
    [death] = find(rows, "Q42", "P509")
    assert death["match_kind"] == "alias" and death["matched"] == "heart attack"
    assert death["evidence"] == "Adams died of a heart attack in Santa Barbara, California."
    [college] = find(rows, "Q42", "P69")
    assert college["match_kind"] == "fuzzy" and 90 <= college["match_score"] < 100
    assert college["evidence"] == "He was educated at St Johns College."
    [pop] = find(rows, "Q1040", "P1082")                # a page the diff did not touch
    assert pop["object"] == "307755" and pop["match_kind"] == "number"
    assert pop["evidence"] == "In 2016 it had a population of 307,755."
    assert find(rows, "Q1040", "P17")[0]["object"] == "Germany"


def test_citizenship_is_stated_by_a_demonym(aligned):
    """Kahn's country of citizenship (Germany, new in month B) is stated by 'a German former
    footballer': the demonym comes from Germany's own P1549 statement in month B's facts."""
    _, rows = aligned
    [r] = find(rows, "Q131261", "P27")
    assert r["object"] == "Germany" and r["kind"] == "new"
    assert r["match_kind"] == "demonym" and r["matched"] == "German"
    assert r["evidence"] == "Oliver Kahn (born 15 June 1969) is a German former footballer."


def _fact(prop: str, label: str, qid: str, **extra) -> dict:
    return {"category": "unchanged", "subject": "Q20145", "subject_label": "IU",
            "property": prop, "property_label": prop, "statement_id": f"s-{prop}",
            "value_type": "item", "value": qid, "text": label, "object_qid": qid,
            "object_label": label, "object_aliases": [], "unit_qid": None, "old_values": None,
            "old_texts": None, "subject_new": False, **extra}


def test_relation_cues_keep_implied_facts_out():
    """Naming a place is not stating a birthplace or a citizenship. Real facts of IU (Q20145);
    the sentences are made up."""
    text = ("IU was born in Seoul, South Korea. She moved to Busan in 2010. "
            "Her brother lives in Daegu, where their father was born.")
    art = Article(1, "IU", 2, [((), text)], in_month_a=True)
    citizenship = _fact("P27", "South Korea", "Q884")
    born = _fact("P19", "Seoul", "Q8684")
    moved = _fact("P19", "Busan", "Q16520")
    counts: dict = {}
    rows = align_article(art, [citizenship, born, moved], AlignConfig(), (A, B), counts)
    assert [(r["object"], r["evidence"]) for r in rows] == [
        ("Seoul", "IU was born in Seoul, South Korea.")]
    assert counts["rejected"]["unchanged"] == {"relation_not_stated": 2}
    # a cue word in the sentence, or the demonym, states it
    art2 = Article(1, "IU", 2, [((), "IU is a South Korean singer. In 2001 she became a "
                                     "citizen of South Korea.")], in_month_a=True)
    [r] = align_article(art2, [citizenship], AlignConfig(), (A, B))
    assert r["match_kind"] == "exact_label" and r["evidence"].startswith("In 2001")
    [r] = align_article(art2, [dict(citizenship, object_demonyms=["South Korean"])],
                        AlignConfig(), (A, B))
    assert r["match_kind"] == "demonym" and r["evidence"] == "IU is a South Korean singer."
    # the check can be turned off or changed, and a bad entry is refused
    off = AlignConfig(relation_cues=())
    assert len(align_article(art, [citizenship, born, moved], off, (A, B))) == 3
    only_moved = AlignConfig(relation_cues={"P19": ["moved"]})
    assert [r["object"] for r in align_article(art, [born, moved], only_moved, (A, B))] == [
        "Busan"]
    with pytest.raises(ConfigError):
        AlignConfig(relation_cues={"birthplace": ["born"]})


def test_report_counts_every_stage(aligned):
    res, rows = aligned
    r = res.report
    assert r["initial"]["changed"] == r["initial"]["new"] + r["initial"]["updated"]
    assert r["aligned"]["unchanged"] == sum(1 for x in rows if x["kind"] == "unchanged")
    assert r["aligned"]["changed"] == sum(1 for x in rows if x["kind"] != "unchanged")
    # every fact that entered is either aligned or rejected with a reason
    for g in ("unchanged", "changed"):
        assert r["initial"][g] == r["aligned"][g] + sum(r["rejected"].get(g, {}).values()), g
    # images, links, identifiers (2015 dumps typed identifiers as strings: those are searched,
    # and found nowhere in prose)
    assert r["rejected"]["unchanged"]["datatype_excluded"] >= 1
    assert r["rejected"]["changed"]["object_not_in_article"] >= 3   # Q42's new identifiers
    # output order: page_id, subject, property, statement
    keys = [(x["page_id"], int(x["subject_qid"][1:]), int(x["property"][1:]), x["statement_id"])
            for x in rows]
    for s in range(SHARDS):
        part = [(x["page_id"]) for x in pq.read_table(res.path / shard_name(s)).to_pylist()]
        assert part == sorted(part)
    assert len(keys) == len(set(keys))


def test_rerun_is_a_noop_and_output_is_deterministic(pair, aligned, tmp_path):
    res, rows = aligned
    again = align_month_pair(A, B, data_root=pair)
    assert again.state == "current"
    # other run options (bigger spills, narrow buckets, 2 workers) give the same bytes
    other = DataRoot(tmp_path / "data")
    build_pair(other)
    res2 = align_month_pair(A, B, data_root=other, executor=LocalExecutor(2),
                            options=AlignOptions(spill_rows=100_000, bucket_page_ids=1))
    for s in range(SHARDS):
        assert ((res.path / shard_name(s)).read_bytes()
                == (res2.path / shard_name(s)).read_bytes())


def test_killed_run_resumes_to_the_same_bytes_and_counts(aligned, tmp_path):
    res, _ = aligned
    root = DataRoot(tmp_path / "data")
    build_pair(root)
    with pytest.raises(Stopped):
        align_month_pair(A, B, data_root=root, executor=StopAfter("text", 2),
                         options=AlignOptions(spill_rows=7))
    again = align_month_pair(A, B, data_root=root)
    assert again.state == "built"
    assert again.report == res.report
    for s in range(SHARDS):
        assert (again.path / shard_name(s)).read_bytes() == (res.path / shard_name(s)).read_bytes()
    # a lost shard of the published artifact is rebuilt alone, identical
    (again.path / shard_name(1)).unlink()
    fixed = align_month_pair(A, B, data_root=root)
    assert fixed.state == "repaired"
    assert (fixed.path / shard_name(1)).read_bytes() == (res.path / shard_name(1)).read_bytes()


def test_missing_input_says_what_to_run(tmp_path):
    with pytest.raises(TwikiError, match="twiki factdiff --from 2015-02 --to 2015-05"):
        align_month_pair(A, B, data_root=DataRoot(tmp_path / "data"))


# ---------------------------------------------------------------------------------------
# Matching, on real sentences.

def test_normalize_folds_case_diacritics_punctuation_and_thousands():
    assert search_form("Douglas Noël  ADAMS,") == "douglas noel adams"
    assert search_form("St. John's College") == "st john s college"
    assert search_form("a population of 296,033.") == "a population of 296033"
    assert search_form("31.58 km²") == "31.58 km2"


def test_date_forms_follow_precision():
    day = [s for s, _ in date_forms("1952-03-11/11", "11 March 1952")]
    assert {"11 March 1952", "March 11, 1952", "1952-03-11", "11th March 1952"} <= set(day)
    assert [s for s, _ in date_forms("1952-03/10", "March 1952")][0] == "March 1952"
    assert {s for s, _ in date_forms("1952/9", "1952")} == {"1952"}
    caesar = {s for s, _ in date_forms("-44-03-15/11/julian", "15 March 44 BCE")}
    assert {"15 March 44 BC", "15 March 44 BCE", "March 15, 44 BC"} <= caesar


def test_short_numbers_need_their_unit_and_words_are_whole():
    """A real fact shape (P2218-like 'age 49 year'); the sentences are made up."""
    cfg = AlignConfig()
    fact = {"value_type": "quantity", "value": "49|Q577", "text": "49 year", "unit_qid": "Q577"}
    assert [(f.kind, f.needs) for f in object_forms(fact, cfg)] == [
        ("number", (" year ", " years ", " yeares "))]
    art = Article(1, "X", 2, [((), "He died at the age of 49. He wrote for 49 years. "
                                    "In 1949 he moved.")], in_month_a=True)
    row = {**fact, "category": "unchanged", "subject": "Q1", "subject_label": "X",
           "property": "P1", "property_label": "age", "statement_id": "s", "object_qid": None,
           "old_values": None, "old_texts": None, "subject_new": False}
    rows = align_article(art, [row], cfg, (A, B))
    assert [r["evidence"] for r in rows] == ["He wrote for 49 years."]
    assert fuzzy_score("cambridge", "he lived in cambridgeshire") < 90
    assert fuzzy_score("st john s college", "educated at st johns college") >= 90
