"""The align stage (TWiki-Probes, step 1) on a small month pair of real entities
(tests/entity_pair.py: real Wikidata entities, made-up articles that state their facts)."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import pyarrow.parquet as pq
import pytest

from aligned_pair import aligned_pair
from entity_pair import A, B, KAHN_ID, SHARDS, Stopped, StopAfter, build_pair
from real_articles import dump_articles
from twiki.errors import ConfigError
from twiki.stages.align import (UNALIGNED_REASONS, AlignConfig, AlignOptions, Article,
                                align_article, align_month_pair, date_forms, fuzzy_score,
                                load_lexicon, object_forms)
from twiki.text.normalize import search_form
from twiki.text.wikitext import clean_page
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
    assert (r["match_kind"], r["match_score"], r["cue"]) == ("literal", 100, "born")
    assert r["change_type"] == "new_entity"             # Kahn has no entity in month A
    assert r["evidence_in_diffset"] is True and r["object_in_month_a"] is False
    assert r["page_id"] == KAHN_ID and r["old_revid"] == 2001 and r["new_revid"] == 2002
    assert r["relation"] == "date of birth" and r["subject"] == "Oliver Kahn"


def test_added_value_of_a_multi_valued_property_is_new_without_old_objects(aligned):
    """Dirk Gently joins The Hitchhiker's Guide among Adams's notable works: an added value
    (WikiFactDiff), not a replacement of a work that is still his."""
    _, rows = aligned
    [r] = find(rows, "Q42", "P800", "Dirk Gently's Holistic Detective Agency")
    assert r["kind"] == "new" and r["change_type"] == "added_value"
    assert r["old_objects"] is None and r["old_values"] is None
    assert r["object_qid"] == "Q902712"
    assert r["evidence"] == ("Among his other works is the comic detective novel Dirk Gently's "
                             "Holistic Detective Agency.")
    # the demo's snapshots keep no links (extract before 4): the label, with its cue
    assert (r["match_kind"], r["cue"]) == ("label", "works") and r["relation"] == "notable work"
    assert r["object_in_month_a"] is False and r["evidence_in_diffset"] is True


def test_object_only_in_removed_text_is_not_a_changed_probe(aligned):
    res, rows = aligned
    assert find(rows, "Q131261", "P19") == []          # Karlsruhe: only in A's removed sentence
    assert res.report["rejected"]["changed"]["object_only_in_removed_text"] >= 1


def test_changed_fact_whose_object_was_already_in_month_a_is_flagged(aligned):
    _, rows = aligned
    [r] = find(rows, "Q131261", "P106")               # 'footballer', in the changed sentence
    assert (r["kind"], r["match_kind"], r["matched"], r["cue"]) == (
        "new", "label", "footballer", "is a")
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
    assert (death["match_kind"], death["matched"], death["cue"]) == (
        "label", "heart attack", "died")
    assert death["evidence"] == "Adams died of a heart attack in Santa Barbara, California."
    [college] = find(rows, "Q42", "P69")
    assert college["match_kind"] == "label" and 90 <= college["match_score"] < 100
    assert college["cue"] == "educated"
    assert college["evidence"] == "He was educated at St Johns College."
    [pop] = find(rows, "Q1040", "P1082")                # a page the diff did not touch
    assert pop["object"] == "307755" and pop["match_kind"] == "literal"
    assert pop["cue"] == "population"
    assert pop["evidence"] == "In 2016 it had a population of 307,755."
    assert find(rows, "Q1040", "P17")[0]["object"] == "Germany"


def test_citizenship_is_stated_by_a_demonym(aligned):
    """Kahn's country of citizenship (Germany, new in month B) is stated by 'is a German former
    footballer': the demonym comes from Germany's own P1549 statement in month B's facts, the
    cue is the lexicon's pattern of a first sentence."""
    _, rows = aligned
    [r] = find(rows, "Q131261", "P27")
    assert r["object"] == "Germany" and r["kind"] == "new"
    assert (r["match_kind"], r["matched"], r["cue"]) == ("label", "German", "is a German")
    assert r["evidence"] == "Oliver Kahn (born 15 June 1969) is a German former footballer."


# ---------------------------------------------------------------------------------------
# The rules of issue 15 (entity, not string), on real text.
#
# Paragraphs and links come from the real cleaner (clean_page) on real articles of
# tests/data/wikimedia (the enwiki sample dump: Albert Einstein, Angola, Algeria, Andorra,
# Aldous Huxley, Ayn Rand, American Revolutionary War), except where a case of the issue's
# hand check (articles the repo does not hold) is quoted: those are marked QUOTED. A link's
# target resolves to an item through TARGETS below (what facts.links does with the month's
# mapping); every other target to an item of its own ("item of <title>"), as an article's
# links to other articles do. Facts are true Wikidata facts of the subjects; QIDs are Wikidata's, but those
# marked "stand-in" (items whose number could not be checked offline): alignment only ever
# compares an object's QID with the QIDs of the links.

TARGETS = {
    "Nobel Prize in Physics": "Q38104", "Ulm": "Q3012", "Kingdom of Württemberg": "Q154195",
    "German Empire": "Q43287", "Photoelectric effect": "Q179695",
    "Namibia": "Q1030", "Zambia": "Q953", "Democratic Republic of the Congo": "Q974",
    "Democratic Republic of Congo": "Q974", "Republic of the Congo": "Q971",
    "Republic of Congo": "Q971", "Congo Republic": "Q971", "Luanda": "Q3897",
    "Portuguese Angolans": "Q10326423",   # stand-in
    "Kwanza River": "Q1327056",           # stand-in
    "Tunisia": "Q948", "Libya": "Q1016", "Morocco": "Q1028", "Mali": "Q912",
    "Niger": "Q1032", "Mauritania": "Q1025", "Western Sahara": "Q6250",
    "Godalming": "Q1012849",              # stand-in
    "Balliol College, Oxford": "Q805285", "Eton College": "Q192088",
    "Northern Ireland": "Q26", "Republic of Ireland": "Q27", "Ireland": "Q22890",
    "England": "Q21", "Scotland": "Q22", "Wales": "Q25", "Great Britain": "Q23666",
    "English Channel": "Q34640", "North Sea": "Q1693", "Atlantic Ocean": "Q97",
    "Celtic Sea": "Q211744", "Irish Sea": "Q212614", "British Isles": "Q38272",
    "Northwestern Europe": "Q27496", "Chicago": "Q1297", "ETH Zurich": "Q11942",
}


@lru_cache(maxsize=1)
def _dump() -> dict[str, str]:
    return dump_articles()


def _page(title: str, wikitext: str | None = None, *, diff: Sequence[tuple[int, str]] = (),
          in_month_a: bool = True) -> Article:
    """The real article `title` (or `wikitext`) as align's reduce sees it: clean paragraphs,
    links resolved to items by TARGETS."""
    paras = clean_page(_dump()[title] if wikitext is None else wikitext, title)
    links = [[(l.start, l.end, TARGETS.get(l.target, f"item of {l.target}")) for l in p.links]
             for p in paras]
    return Article(1, title, 2, [(p.section, p.text) for p in paras], diff_rows=list(diff),
                   in_month_a=in_month_a, old_revid=1 if in_month_a else None, links=links)


def _fact(subject: str, prop: str, label: str, qid: str | None, *, category="unchanged",
          aliases=(), value_type="item", value=None, **extra) -> dict:
    return {"category": category, "subject": subject, "subject_label": subject,
            "property": prop, "property_label": prop, "statement_id": f"{subject}$-{prop}",
            "value_type": value_type, "value": value or qid, "text": label, "object_qid": qid,
            "object_label": label if value_type == "item" else None,
            "object_aliases": list(aliases), "unit_qid": None, "old_values": None,
            "old_texts": None, "subject_new": False, **extra}


def _align(art: Article, *facts: dict, config: AlignConfig = AlignConfig()):
    counts: dict = {}
    left: list = []
    rows = align_article(art, list(facts), config, (A, B), counts, left)
    return rows, counts, left


def test_a_link_to_the_object_states_it_with_the_relations_cue():
    """Albert Einstein (Q937): the award, the birthplace and the birth date of his article."""
    nobel = _fact("Q937", "P166", "Nobel Prize in Physics", "Q38104")
    ulm = _fact("Q937", "P19", "Ulm", "Q3012")
    born = _fact("Q937", "P569", "14 March 1879", None, value_type="time",
                 value="1879-03-14/11")
    rows, counts, _ = _align(_page("Albert Einstein"), nobel, ulm, born)
    by = {r["property"]: r for r in rows}
    assert by["P166"]["evidence"].startswith("He received the 1921 Nobel Prize in Physics for")
    assert (by["P166"]["match_kind"], by["P166"]["matched"], by["P166"]["cue"]) == (
        "link", "Nobel Prize in Physics", "received")
    assert by["P19"]["evidence"] == ("Albert Einstein was born in Ulm, in the Kingdom of "
                                     "Württemberg in the German Empire on 14 March 1879.")
    assert (by["P19"]["match_kind"], by["P19"]["cue"]) == ("link", "born")
    # the lead, first in document order, states the birth date ('German-born': the cue)
    assert by["P569"]["evidence"] == ("Albert Einstein (14 March 1879 – 18 April 1955) was a "
                                      "German-born theoretical physicist.")
    assert (by["P569"]["match_kind"], by["P569"]["matched"], by["P569"]["cue"]) == (
        "literal", "14 March 1879", "born")
    # the date of death, by the lexicon's pattern of the lead's dates: no cue word there
    died = _fact("Q937", "P570", "18 April 1955", None, value_type="time",
                 value="1955-04-18/11")
    [r] = _align(_page("Albert Einstein"), died)[0]
    assert r["evidence"] == by["P569"]["evidence"] and r["cue"] == "– 18 April 1955)"
    assert counts["aligned_by_match"]["unchanged"] == {"link": 2, "literal": 1}


def test_a_link_without_the_relations_cue_is_not_enough():
    """Angola's lead links Namibia in 'is bordered by Namibia': the cue states the border. A
    link without the cue does not state twinning: the issue's 'surpassing Chicago' (QUOTED from
    the hand check of Toronto, twinned with Chicago; the words around the quote are ours)."""
    rows, _, _ = _align(_page("Angola"), _fact("Q916", "P47", "Namibia", "Q1030"))
    assert [(r["match_kind"], r["cue"]) for r in rows] == [("link", "bordered")]
    toronto = _page("Toronto", "Toronto is the most populous city in Canada, "
                    "surpassing [[Chicago]] in 2016.")
    rows, counts, left = _align(toronto, _fact("Q172", "P190", "Chicago", "Q1297"))
    assert rows == [] and counts["rejected"]["unchanged"] == {"relation_not_stated": 1}
    assert [(r, f["text"]) for r, f in left] == [("relation_not_stated", "Chicago")]


def test_an_unlinked_mention_of_a_form_the_article_links_is_a_discourse_match():
    """Angola, Geography: the second sentence names the Democratic Republic of the Congo
    unlinked (the first links it). As Changed facts stated in that sentence alone, the DRC
    aligns by discourse, the Republic of the Congo by its link there."""
    art = _page("Angola")
    [p] = [i for i, (_, t) in enumerate(art.paragraphs) if t.startswith("Angola is bordered")]
    second = ("The coastal exclave of Cabinda in the north, borders the Republic of the Congo "
              "to the north, and the Democratic Republic of the Congo to the south.")
    assert second in art.paragraphs[p][1]
    art.diff_rows = [(p, second)]
    drc = _fact("Q916", "P47", "Democratic Republic of the Congo", "Q974",
                category="new_relation", aliases=["DR Congo", "Congo-Kinshasa"])
    roc = _fact("Q916", "P47", "Republic of the Congo", "Q971", category="new_relation")
    rows, _, _ = _align(art, drc, roc)
    assert [(r["object_qid"], r["match_kind"], r["matched"], r["cue"], r["evidence"])
            for r in rows] == [
        ("Q974", "discourse", "Democratic Republic of the Congo", "borders", second),
        ("Q971", "link", "Republic of the Congo", "borders", second)]
    assert rows[0]["kind"] == "new" and rows[0]["change_type"] == "new_relation"
    assert rows[0]["object_aliases"] == ["DR Congo", "Congo-Kinshasa"]


def test_a_label_aligns_with_the_relations_cue_where_no_other_entity_owns_it():
    """Real unlinked names: Ayn Rand married Frank O'Connor; Aldous Huxley married Maria Nys
    (QIDs stand-ins). The first sentence that names them with a cue wins."""
    rand = _fact("Q132524", "P26", "Frank O'Connor", "Q5490876")
    rows, _, _ = _align(_page("Ayn Rand"), rand)
    [r] = rows
    assert r["evidence"] == ("While working on The King of Kings, she met an aspiring young "
                             "actor, Frank O'Connor; the two were married on April 15, 1929.")
    assert (r["match_kind"], r["matched"], r["cue"]) == ("label", "Frank O'Connor", "married")
    maria = _fact("Q81447", "P26", "Maria Nys", "Q18526307")
    [r] = _align(_page("Aldous Huxley"), maria)[0]
    assert r["evidence"] == ("He accepted immediately, and quickly married the Belgian refugee "
                             "Maria Nys, also at Garsington.")
    assert (r["match_kind"], r["cue"]) == ("label", "married")
    # a demonym with the cue: 'He acquired Swiss citizenship in February 1901' (the linked
    # 'Swiss Federal Polytechnic' and 'he passed the Swiss Matura' come before, and say nothing)
    swiss = _fact("Q937", "P27", "Switzerland", "Q39", object_demonyms=["Swiss"])
    [r] = _align(_page("Albert Einstein"), swiss)[0]
    assert r["evidence"].startswith("He acquired Swiss citizenship in February 1901")
    assert (r["match_kind"], r["matched"]) == ("label", "Swiss")


def test_a_label_the_article_links_to_another_item_is_refused():
    """Angola: 'Portuguese is the official language of the country.' is true, but the article
    links 'Portuguese' to the Portuguese Angolans, so the bare label names another entity (one
    sense per article); the kwanza (currency) is linked to the Kwanza River. Refused."""
    official = _fact("Q916", "P37", "Portuguese", "Q5146", aliases=["Portuguese language"])
    kwanza = _fact("Q916", "P38", "Angolan kwanza", "Q199471", aliases=["kwanza"])
    rows, counts, left = _align(_page("Angola"), official, kwanza)
    assert rows == []
    assert counts["rejected"]["unchanged"] == {"label_refused_other_entity": 2}
    assert sorted(f["text"] for _, f in left) == ["Angolan kwanza", "Portuguese"]


UK_LEAD = (   # QUOTED: the lead of the English Wikipedia article "United Kingdom" (2023)
    "The United Kingdom of Great Britain and Northern Ireland, commonly known as the United "
    "Kingdom (UK) or Britain, is a country in [[Northwestern Europe]], off the north-western "
    "coast of the continental mainland. It comprises [[England]], [[Scotland]], [[Wales]] and "
    "[[Northern Ireland]]. The UK includes the island of [[Great Britain]], the north-eastern "
    "part of the island of [[Ireland]], and most of the smaller islands within the "
    "[[British Isles]]. [[Northern Ireland]] shares a land border with the "
    "[[Republic of Ireland]]; otherwise, the United Kingdom is surrounded by the "
    "[[Atlantic Ocean]], the [[North Sea]], the [[English Channel]], the [[Celtic Sea]] and "
    "the [[Irish Sea]].")


def test_the_english_channel_is_not_the_english_language():
    """The UK's official language, English, is in no sentence of the lead: 'English' occurs
    only inside the linked 'English Channel' (another item). Before, it aligned there."""
    english = _fact("Q145", "P37", "English", "Q1860", aliases=["English language"])
    rows, counts, _ = _align(_page("United Kingdom", UK_LEAD), english)
    assert rows == []
    assert counts["rejected"]["unchanged"] == {"label_refused_other_entity": 1}


def test_northern_ireland_is_not_ireland():
    """The UK shares a border with Ireland (the state, Q27). 'Ireland' first occurs in
    'Northern Ireland' (another item) and then as the island (linked: another item too); the
    sentence that states the border links the Republic of Ireland: that one aligns."""
    ireland = _fact("Q145", "P47", "Ireland", "Q27", aliases=["Republic of Ireland", "Éire"])
    [r] = _align(_page("United Kingdom", UK_LEAD), ireland)[0]
    assert r["evidence"].startswith("Northern Ireland shares a land border with the Republic "
                                    "of Ireland;")
    assert (r["match_kind"], r["matched"], r["cue"]) == ("link", "Republic of Ireland", "border")
    # without that sentence, nothing in the lead states it
    lead = UK_LEAD[:UK_LEAD.index("[[Northern Ireland]] shares")]
    rows, counts, _ = _align(_page("United Kingdom", lead), ireland)
    assert rows == [] and counts["rejected"]["unchanged"] == {"label_refused_other_entity": 1}


def test_a_homonym_without_the_relations_cue_is_not_the_fact():
    """Andorra drives on the right: 'who do not have the right to vote (suffrage)' is another
    'right' (the issue's 'left' verb for driving side, on Andorra's real text)."""
    right = _fact("Q228", "P1622", "right", "Q14565199", aliases=["right-hand traffic"])
    rows, counts, _ = _align(_page("Andorra"), right)
    assert rows == [] and counts["rejected"]["unchanged"] == {"relation_not_stated": 1}


def test_a_top_level_domain_is_not_an_abbreviation():
    """'.uk' (the UK's top-level domain, QID stand-in) normalizes to 'uk': '(UK)' in the
    lead is not it. A property without lexicon entry aligns by a link only, and the dot must
    be in the text."""
    tld = _fact("Q145", "P78", ".uk", "Q186165")
    rows, _, _ = _align(_page("United Kingdom", UK_LEAD), tld)
    assert rows == []
    with_cue = AlignConfig(relation_cues={"P78": ["domain"]})
    art = _page("United Kingdom", "The country's internet domain is known as the UK domain.")
    assert _align(art, tld, config=with_cue)[0] == []


def test_a_demonym_string_needs_the_relations_cue():
    """The UK's demonym 'British' (P1549, a string) is not stated by 'The British government
    retaliated by closing the port of Boston' (American Revolutionary War, real)."""
    art = _page("American Revolutionary War")
    demonym = _fact("Q145", "P1549", "British", None, value_type="monolingualtext",
                    value="en:British")
    rows, counts, _ = _align(art, demonym)
    assert rows == [] and counts["rejected"]["unchanged"] == {"relation_not_stated": 1}


def test_literal_quantity_with_its_cue_and_valid_time():
    """Angola's population of its 2014 census, as the article states it (a real statement
    shape: quantity with P585 point in time)."""
    pop = _fact("Q916", "P1082", "24383301", None, value_type="quantity",
                value="+24383301|1", point_in_time="2014/9")
    [r] = _align(_page("Angola"), pop)[0]
    assert r["evidence"].startswith("Angola has a population of 24,383,301 inhabitants")
    assert (r["match_kind"], r["cue"], r["valid_from"], r["valid_to"]) == (
        "literal", "population", "2014/9", None)


def test_a_property_without_lexicon_entry_is_not_aligned_by_default():
    """A property id without lexicon entry (P9999, made up for this test): by default it never
    aligns, even where Angola's lead links its object Luanda; kept under its reason."""
    linked = _fact("Q916", "P9999", "Luanda", "Q3897")
    rows, counts, left = _align(_page("Angola"), linked)
    assert rows == [] and counts["rejected"]["unchanged"] == {"property_without_cues": 1}
    assert [(reason, f["object_qid"]) for reason, f in left] == [
        ("property_without_cues", "Q3897")]


def test_with_unlisted_link_a_property_without_lexicon_entry_aligns_by_a_link_only():
    """AlignConfig.unlisted = "link": a link is all such a property aligns by; a label alone
    never does."""
    config = AlignConfig(unlisted="link")
    linked = _fact("Q916", "P9999", "Luanda", "Q3897")
    [r] = _align(_page("Angola"), linked, config=config)[0]
    assert (r["match_kind"], r["cue"]) == ("link", None)
    unlinked = _fact("Q81447", "P9999", "Maria Nys", "Q18526307")
    rows, counts, _ = _align(_page("Aldous Huxley"), unlinked, config=config)
    assert rows == [] and counts["rejected"]["unchanged"] == {"property_without_cues": 1}


def test_an_unknown_unlisted_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="align.unlisted"):
        AlignConfig(unlisted="maybe")


def test_relation_cues_keep_implied_facts_out():
    """Naming a place is not stating a birthplace or a citizenship. Real facts of IU (Q20145);
    the sentences are made up."""
    text = ("IU was born in Seoul, South Korea. She moved to Busan in 2010. "
            "Her brother lives in Daegu, where their father was born.")
    art = Article(1, "IU", 2, [((), text)], in_month_a=True)
    citizenship = _fact("Q20145", "P27", "South Korea", "Q884")
    born = _fact("Q20145", "P19", "Seoul", "Q8684")
    moved = _fact("Q20145", "P19", "Busan", "Q16520")
    rows, counts, _ = _align(art, citizenship, born, moved)
    assert [(r["object"], r["evidence"]) for r in rows] == [
        ("Seoul", "IU was born in Seoul, South Korea.")]
    assert counts["rejected"]["unchanged"] == {"relation_not_stated": 2}
    # a cue word in the sentence, or the demonym, states it
    art2 = Article(1, "IU", 2, [((), "IU is a South Korean singer. In 2001 she became a "
                                     "citizen of South Korea.")], in_month_a=True)
    [r] = _align(art2, citizenship)[0]
    assert r["match_kind"] == "label" and r["evidence"].startswith("In 2001")
    assert r["cue"] == "citizen"
    [r] = _align(art2, dict(citizenship, object_demonyms=["South Korean"]))[0]
    assert r["matched"] == "South Korean" and r["evidence"] == "IU is a South Korean singer."
    # the lexicon can be replaced, and a bad entry is refused
    only_moved = AlignConfig(relation_cues={"P19": ["moved"]})
    assert [r["object"] for r in _align(art, born, moved, config=only_moved)[0]] == ["Busan"]
    with pytest.raises(ConfigError):
        AlignConfig(relation_cues={"birthplace": ["born"]})
    with pytest.raises(ConfigError):
        AlignConfig(excluded_properties=("Commons category",))


def test_the_lexicon_is_a_data_file_covering_frequent_properties():
    lexicon = load_lexicon()
    assert 40 <= len(lexicon) <= 100
    for p in ("P36", "P47", "P37", "P190", "P463", "P19", "P20", "P26", "P69", "P166",
              "P108", "P112", "P571", "P1082", "P2046", "P2044", "P106", "P27", "P39", "P800",
              "P101", "P40", "P22", "P25", "P102", "P131", "P17", "P150", "P6"):
        assert lexicon[p]["cues"], p
    assert AlignConfig().relation_cues == tuple(sorted(
        (p, tuple(e["cues"])) for p, e in lexicon.items()))


def test_report_counts_every_stage(aligned):
    res, rows = aligned
    r = res.report
    assert r["initial"]["changed"] == r["initial"]["new"] + r["initial"]["updated"]
    assert r["aligned"]["unchanged"] == sum(1 for x in rows if x["kind"] == "unchanged")
    assert r["aligned"]["changed"] == sum(1 for x in rows if x["kind"] != "unchanged")
    # every fact that entered is either aligned or rejected with a reason
    for g in ("unchanged", "changed"):
        assert r["initial"][g] == r["aligned"][g] + sum(r["rejected"].get(g, {}).values()), g
    # images, links, identifiers by datatype; Commons categories and the identifiers that
    # 2015 dumps type as strings by property (AlignConfig.excluded_properties)
    assert r["rejected"]["unchanged"]["datatype_excluded"] >= 1
    assert r["rejected"]["changed"]["property_excluded"] >= 3      # Q42's new identifiers
    assert not [x for x in rows if x["property"] in ("P373", "P214", "P227", "P345")]
    # the match kinds and change types per set add up to the aligned counts
    for g in ("unchanged", "changed"):
        assert sum(r["aligned_by_match"].get(g, {}).values()) == r["aligned"][g]
        assert sum(r["aligned_by_change_type"].get(g, {}).values()) == r["aligned"][g]
    assert r["aligned_by_change_type"]["changed"] == {"new_entity": 3, "added_value": 1}
    assert set(r["not_candidates"]) == {"ended", "historical", "removed"}
    assert r["links"] is False             # the pair's snapshots keep no links
    # output order: page_id, subject, property, statement
    keys = [(x["page_id"], int(x["subject_qid"][1:]), int(x["property"][1:]), x["statement_id"])
            for x in rows]
    for s in range(SHARDS):
        part = [(x["page_id"]) for x in pq.read_table(res.path / shard_name(s)).to_pylist()]
        assert part == sorted(part)
    assert len(keys) == len(set(keys))


def test_alignment_rejections_keep_their_rows(pair, aligned):
    """Every fact the reduce left out is a row of unaligned/<reason>/, with its reason."""
    res, _ = aligned
    rejected = res.report["rejected"]
    for reason in UNALIGNED_REASONS:
        t = pq.read_table(pair.unaligned(A, B, reason))
        assert t.schema.names[-1] == "reason"
        n = sum(rejected.get(g, {}).get(reason, 0) for g in ("unchanged", "changed"))
        assert t.num_rows == n, reason
        assert set(t.column("reason").to_pylist()) <= {reason}
    [karlsruhe] = pq.read_table(pair.unaligned(A, B, "object_only_in_removed_text")).to_pylist()
    assert (karlsruhe["subject"], karlsruhe["property"], karlsruhe["text"]) == (
        "Q131261", "P19", "Karlsruhe")
    assert karlsruhe["page_id"] == KAHN_ID and karlsruhe["category"] == "new_entity"
    assert res.parts["unaligned"] == pair.unaligned(A, B)


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
        for reason in UNALIGNED_REASONS:
            assert ((root.unaligned(A, B, reason) / shard_name(s)).read_bytes()
                    == (res.parts["unaligned"] / reason / shard_name(s)).read_bytes())
    # a lost companion folder is rebuilt, identical, and the aligned set stands
    import shutil
    shutil.rmtree(root.unaligned(A, B, "object_not_in_article"))
    fixed = align_month_pair(A, B, data_root=root)
    assert fixed.state == "built" and fixed.report["rejected"] == res.report["rejected"]
    assert ((root.unaligned(A, B, "object_not_in_article") / shard_name(0)).read_bytes()
            == (res.parts["unaligned"] / "object_not_in_article" / shard_name(0)).read_bytes())
    # a lost shard of the published artifact is rebuilt alone, identical
    (again.path / shard_name(1)).unlink()
    fixed = align_month_pair(A, B, data_root=root)
    assert fixed.state == "repaired"
    assert (fixed.path / shard_name(1)).read_bytes() == (res.path / shard_name(1)).read_bytes()


def test_snapshots_with_links_need_the_resolved_links(tmp_path):
    """Snapshots of extract 4 keep their links: align then reads month B's resolved links
    (data/facts/<B>/links/) and says how to make them when they are missing."""
    import shutil
    root = DataRoot(tmp_path / "data")
    build_pair(root, links=True)
    res = align_month_pair(A, B, data_root=root)
    assert res.report["links"] is True and res.manifest["inputs"]["links"]
    shutil.rmtree(root.facts(B, "links"))
    shutil.rmtree(root.aligned(A, B))
    with pytest.raises(TwikiError, match=f"twiki facts --month {B}"):
        align_month_pair(A, B, data_root=root)


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
    cued = AlignConfig(relation_cues={"P1": ["died", "wrote", "moved"]})   # every sentence
    rows = align_article(art, [row], cued, (A, B))
    assert [r["evidence"] for r in rows] == ["He wrote for 49 years."]
    assert fuzzy_score("cambridge", "he lived in cambridgeshire") < 90
    assert fuzzy_score("st john s college", "educated at st johns college") >= 90
