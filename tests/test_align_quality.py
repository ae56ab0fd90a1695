"""Alignment quality on real text (issue 15 item 4): the labelled set of tests/data/labelled/
(16 real articles of the May 2016 enwiki sample, 338 true Wikidata facts, each labelled with
the sentences that state it) is whole and consistent, and align_article keeps to the issue's
targets on it: precision >= 0.95 with recall >= 0.5 of the stated facts. The harness and the
scoring are tests/labelled_set.py; `make bench` reports the same figures
(benchmarks/bench_align_quality.py)."""

from __future__ import annotations

import pytest

from labelled_set import HELDOUT, LABELLED, align_set, eligible, load_set, read_dump, score
from twiki.text.normalize import search_form

PRECISION, RECALL = 0.95, 0.5   # the issue's targets


@pytest.fixture(scope="module")
def lset():
    return load_set()


@pytest.fixture(scope="module")
def result(lset):
    return score(lset, align_set(lset))


def test_the_set_is_as_large_as_the_issue_asks(lset):
    assert len(lset.articles) >= 15
    facts = [f for a in lset.articles for f in a.facts]
    assert len(facts) >= 300 and len(facts) / len(lset.articles) >= 15
    types = {t: sum(f["value_type"] == t for f in facts) for t in ("item", "time", "quantity")}
    assert types["time"] >= 20 and types["quantity"] >= 8, types
    assert sum(f["set"] == "changed" for f in facts) >= 40
    assert sum(bool(f["stated_by"]) for f in facts) >= 250


def test_every_article_is_the_dumps_revision(lset):
    pages, redirects = read_dump()
    for art in lset.articles:
        assert pages[art.title][:2] == (art.page_id, art.revid), art.title
        assert not [u for u in art.unlocated if u[0] == "page"], art.unlocated
    assert len(redirects) >= 50   # the dump's redirect pages are read (links resolve through them)


def test_every_fact_names_known_entities_and_properties(lset):
    for art in lset.articles:
        assert art.subject in lset.entities, art.title
        assert lset.entities[art.subject]["enwiki"] == art.title
        for f in art.facts:
            assert f["subject"] == art.subject
            assert f["property"] in lset.properties, f
            assert f["set"] in ("changed", "unchanged"), f
            if f["value_type"] == "item":
                assert f["object_qid"] in lset.entities, f
                assert f["text"] == lset.entities[f["object_qid"]]["label"], f
            if f.get("unit_qid"):
                assert f["unit_qid"] in lset.entities, f


def test_every_label_is_a_sentence_of_the_clean_text(lset):
    unlocated = [(a.title, sid, label) for a in lset.articles for sid, label in a.unlocated]
    assert not unlocated, "labels found in no sentence of the clean text:\n" + "\n".join(
        map(str, unlocated))
    for art in lset.articles:
        for f in art.facts:
            spans = art.stated[f["statement_id"]]
            assert len(spans) == len({s for s in spans}), f
            assert len(spans) >= (1 if f["stated_by"] else 0), f


def test_changed_facts_are_stated_in_the_made_up_diff_only(lset):
    """Month A is month B without the files' month_a_removed_sections: a Changed fact is stated
    there and nowhere else, an Unchanged one has no stating sentence only there."""
    for art in lset.articles:
        assert art.removed, f"{art.title}: no paragraph in {art.removed_sections}"
        assert len(art.removed) < len(art.paragraphs)
        for f in art.facts:
            spans = art.stated[f["statement_id"]]
            in_diff = [p in art.removed for p, _, _ in spans]
            if f["set"] == "changed":
                assert spans and all(in_diff), (art.title, f["statement_id"])
                assert eligible(art, f) == spans
            else:
                assert not spans or not all(in_diff), (art.title, f["statement_id"])


def test_the_set_holds_the_hard_cases(lset):
    """Facts no sentence states although their object's label is in the article (the trap of
    string matching: 'English' in 'English Channel', 'Kwanza' the river): at least 35 (41 when written)."""
    traps = []
    for art in lset.articles:
        text = " " + search_form(" ".join(t for _, t in art.paragraphs)) + " "
        for f in art.facts:
            if not f["stated_by"] and f["value_type"] == "item":
                e = lset.entities[f["object_qid"]]
                if any(f" {search_form(s)} " in text for s in [e["label"]] + e["aliases"]):
                    traps.append((art.title, f["property"], e["label"]))
    assert len(traps) >= 35, traps
    assert ("Angola", "P38", "Angolan kwanza") in traps
    assert ("Azerbaijan", "P36", "Baku") in traps


def test_alignment_keeps_to_the_issues_targets(result):
    wrong = "\n".join(
        f"  {w['article']} | {w['property']} | {w['object']} ({w['set']}) | {w['match_kind']} "
        f"'{w['matched']}' cue '{w['cue']}' | {w['evidence'][:200]}" for w in result["wrong"])
    figures = ", ".join(f"{g}: precision {result[g]['precision']} recall {result[g]['recall']} "
                        f"({result[g]['right']} right of {result[g]['aligned']} aligned, "
                        f"{result[g]['stated']} stated)" for g in ("all", "changed", "unchanged"))
    assert result["all"]["precision"] is not None and result["all"]["recall"] is not None
    assert result["all"]["precision"] >= PRECISION and result["all"]["recall"] >= RECALL, (
        f"{figures}\nwrong alignments ({len(result['wrong'])}):\n{wrong}")


def test_the_files_say_what_is_made_up():
    readme = (LABELLED / "README.md").read_text(encoding="utf-8")
    assert "made up" in readme.lower()
    assert "month_a_removed_sections" in readme


# ---------------------------------------------------------------------------------------
# The held-out set (tests/data/labelled_heldout/, labelled blind): its files load and are
# consistent. Its precision and recall are a measurement (make bench, "heldout"), never
# asserted here: a threshold would make it a tuning target.

@pytest.fixture(scope="module")
def heldout():
    return load_set(HELDOUT)


def test_the_heldout_set_is_other_articles_of_the_same_dump(heldout, lset):
    assert len(heldout.articles) >= 5
    assert not {a.title for a in heldout.articles} & {a.title for a in lset.articles}
    facts = [f for a in heldout.articles for f in a.facts]
    assert len(facts) >= 75
    assert sum(f["set"] == "changed" for f in facts) >= 10
    assert sum(not f["stated_by"] for f in facts) >= 10     # the hard cases are there
    assert {f["value_type"] for f in facts} >= {"item", "time", "quantity", "monolingualtext"}
    pages, _ = read_dump()
    for art in heldout.articles:
        assert pages[art.title][:2] == (art.page_id, art.revid), art.title
        assert heldout.entities[art.subject]["enwiki"] == art.title


def test_every_heldout_label_is_a_sentence_of_the_clean_text(heldout):
    unlocated = [(a.title, sid, label) for a in heldout.articles for sid, label in a.unlocated]
    assert not unlocated, "labels found in no sentence of the clean text:\n" + "\n".join(
        map(str, unlocated))
    for art in heldout.articles:
        for f in art.facts:
            assert f["subject"] == art.subject and f["property"] in heldout.properties, f
            if f["value_type"] == "item":
                assert f["text"] == heldout.entities[f["object_qid"]]["label"], f
            spans = art.stated[f["statement_id"]]
            assert len(spans) >= (1 if f["stated_by"] else 0), f
            in_diff = [p in art.removed for p, _, _ in spans]
            if f["set"] == "changed":     # stated in month A's removed sections only
                assert spans and all(in_diff), (art.title, f["statement_id"])
            else:
                assert not spans or not all(in_diff), (art.title, f["statement_id"])


def test_the_heldout_set_aligns_and_scores(heldout):
    """The harness runs on it (the figures themselves are make bench's, not asserted)."""
    result = score(heldout, align_set(heldout))
    assert result["all"]["facts"] == sum(len(a.facts) for a in heldout.articles)
    assert result["all"]["aligned"] == result["changed"]["aligned"] + result["unchanged"]["aligned"]


def test_the_heldout_files_say_how_they_were_labelled():
    readme = (HELDOUT / "README.md").read_text(encoding="utf-8").lower()
    assert "made up" in readme and "blind" in readme and "month_a_removed_sections" in readme
