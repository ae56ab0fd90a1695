"""Build the small offline dump mirror in data/sample/mirror/: two months of enwiki and the
Wikidata JSON entity dump nearest to each, so that a month pair (2016-05 -> 2016-06) can be built
end to end: snapshots, diffset, facts, fact diff, probes.

Month A, enwiki run 20160501: the 206 real pages of a real May 2016 pages-articles file (gensim's
test data), plus the real Pear page at its 2002 revision and ten short articles MADE UP for this
sample (data/sample/made_up/enwiki/). Each made-up article is about an entity of the Wikidata dump
(its title is the entity's enwiki sitelink) and was written from that entity's own statements, so
that facts can be aligned to text: the real pages have no entity in the dump and the real
entities have no article among the real pages.

Month B, enwiki run 20160601: month A with constructed changes (see MONTH_B_* below): Pear at its
real 2014 revision, three real articles with small made-up edits, the made-up Douglas Adams
article with sentences for the facts that Wikidata's later copy of Q42 adds, one real page
deleted and two real pages added (Pyrus, a redirect; Computer accessibility, an article).

Wikidata runs 20160502 and 20160606 (made-up dates): the same real entities in both, except Q42,
as saved in 2015-02 (month A) and about 2015-05 (month B); plus label-only entities MADE UP for
the objects that the made-up articles state (MADE_UP_OBJECTS), which the real files lack.

Every run is laid out like a run on dumps.wikimedia.org: pages-articles-multistream parts with
their index files, dumpstatus.json, sha1sums/md5sums and the wiki's run listing; all.json.bz2
and .gz with their sums. Real page XML is copied byte for byte; data/sample/README.md says, per
file, what is real and what is made up.

Deterministic: rerunning gives identical bytes. The dump layout itself (runs, parts, indexes,
sums, listings, entity dumps) is tests/mirror_kit.py's; this module says what the sample holds.

    .venv/bin/python tests/build_sample_mirror.py [--source FILE] [--wikidata DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from mirror_kit import (REAL_DATA, REPO, SAMPLE_MIRROR, WIKIDATA_DIR, Page, build_entities_run,
                        build_run, page_id, parse_revisions, split_dump, split_entity_dump,
                        write_listing)

# The real enwiki pages-articles file (gensim's test data; see data/sample/README.md).
SOURCE = REAL_DATA / "enwiki" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
# The source's newest revision is from 2016-05-01: it is a page of the May 2016 dump.
RUN_DATE = "20160501"
# The sample's runs cut their parts at fixed page ids, as enwiki does, so that a page stays in
# the same part from month to month: part 1 holds ids below 599 (the real pages 10..598), part 2
# the rest (real pages 599..775, then the added pages with higher ids).
PART_SPLIT = (599,)

# --- Month B: the enwiki run of the next month (made up: see the module docstring).
RUN_DATE_B = "20160601"
JOB_UPDATED_B = {
    "articlesmultistreamdump": ("done", "2016-06-03 03:58:14"),
    "metahistorybz2dump": ("in-progress", "2016-06-05 09:47:02"),
    "metahistory7zdump": ("waiting", ""),
}

# --- Real pages besides gensim's (all in tests/data/wikimedia/enwiki/, see its README).
ENWIKI_SOURCE = REAL_DATA / "enwiki"
PEAR_2002 = "article-pear.xml"        # Pear, 4 revisions of 2002 (export-0.3): A has the last
PEAR_2014 = "article-pear-0.10.xml"   # Pear, revision 638548877 of 2014 (export-0.10): B
PYRUS = "article-pyrus.xml"           # Pyrus, 6 revisions 2007-2008 (export-0.3): B has the last
W2V_SAMPLE = "enwiki-pages-articles-sample.xml.bz2"   # export-0.9, 3 pages of 2014
NEW_ARTICLE_B = "Computer accessibility"  # from W2V_SAMPLE: the new article of month B

# --- Made-up articles (month A) about entities of the Wikidata dump.
MADE_UP_DIR = REPO / "data" / "sample" / "made_up" / "enwiki"
# Made up, and marked so in the XML itself: an address reserved for documentation (RFC 5737) as
# the editor, and a comment that says what the revision is.
MADE_UP_EDITOR_IP = "192.0.2.1"
# Made-up revision ids: above every real one of the sample (the newest is 718047226) and about
# where enwiki's revision ids were on those dates.
MADE_UP_REVID_A = 718_100_000
MADE_UP_REVID_B = 723_000_000
MADE_UP_TIMESTAMP_A = "2016-05-01T08:{:02d}:00Z"   # after the real pages' newest (07:08:29)
MADE_UP_TIMESTAMP_B = "2016-06-01T06:{:02d}:00Z"


@dataclass(frozen=True)
class MadeUpArticle:
    """One made-up article: its page id (made up, above 100000 so that it never meets a real
    id of the sample), the entity it is about, its title (= the entity's enwiki sitelink), and
    the entity's statements that its month-A text states, as (property, value): a QID for an
    item value, the rendered text for a literal."""

    page_id: int
    qid: str
    title: str
    facts: tuple[tuple[str, str], ...]

    def wikitext_path(self, month: str) -> Path:
        return MADE_UP_DIR / f"{self.qid}.{month}.wikitext"


MADE_UP_ARTICLES = (
    MadeUpArticle(100001, "Q42", "Douglas Adams", (
        ("P569", "11 March 1952"), ("P19", "Q350"), ("P570", "11 May 2001"), ("P20", "Q159288"),
        ("P509", "Q12152"), ("P119", "Q533697"), ("P69", "Q4961791"), ("P69", "Q691283"),
        ("P69", "Q35794"), ("P108", "Q9531"), ("P106", "Q36180"), ("P106", "Q6625963"),
        ("P106", "Q28389"), ("P800", "Q25169"))),
    MadeUpArticle(100002, "Q1299", "The Beatles", (
        ("P740", "Q24826"), ("P571", "1960"), ("P576", "10 April 1970"), ("P527", "Q1203"),
        ("P527", "Q2599"), ("P527", "Q2643"), ("P527", "Q2632"), ("P527", "Q207335"),
        ("P527", "Q204218"), ("P136", "Q11399"))),
    MadeUpArticle(100003, "Q20145", "IU (entertainer)", (
        ("P569", "16 May 1993"), ("P19", "Q8684"), ("P27", "Q884"), ("P106", "Q177220"),
        ("P106", "Q753110"))),
    MadeUpArticle(100004, "Q494290", "Shin Jung-hyeon", (
        ("P569", "4 January 1938"), ("P19", "Q8684"), ("P27", "Q884"), ("P106", "Q177220"),
        ("P106", "Q753110"), ("P1303", "Q6607"), ("P136", "Q11399"))),
    MadeUpArticle(100005, "Q131261", "Oliver Kahn", (
        ("P569", "15 June 1969"), ("P19", "Q1040"), ("P54", "Q105853"), ("P54", "Q15789"),
        ("P106", "Q201330"), ("P106", "Q937857"))),
    MadeUpArticle(100006, "Q328212", "Veronica Roth", (
        ("P569", "19 August 1988"), ("P19", "Q60"), ("P69", "Q309350"), ("P937", "Q1297"),
        ("P106", "Q36180"))),
    MadeUpArticle(100007, "Q646148", "Henning Christophersen", (
        ("P569", "8 November 1939"), ("P19", "Q1748"), ("P27", "Q35"), ("P106", "Q82955"),
        ("P106", "Q193391"))),
    MadeUpArticle(100008, "Q271094", "Neihu District", (
        ("P131", "Q1867"), ("P17", "Q865"), ("P2046", "31.58"))),
    MadeUpArticle(100009, "Q217447", "Verla", (
        ("P1435", "Q9259"), ("P31", "Q83405"))),
    MadeUpArticle(100010, "Q4132785", "Bring the Jubilee", (
        ("P577", "1953"), ("P921", "Q8676"))),
)

# --- Month B's constructed changes.
# Real gensim articles with a small made-up edit: page id -> (old text, new text, what it is).
# The added facts come from the articles' own infoboxes (release date; Prize Ampère 1980).
MONTH_B_EDITS = {
    330: ("The film was produced in 1996.",
          "The film was produced in 1996 and released in Spain on 17 January 1997.",
          "one sentence changed"),
    332: ("The illustrations contain many other objects beginning with that letter that the "
          "reader can try to identify.",
          "Each illustration also contains many other objects beginning with that letter, which "
          "the reader can try to identify.",
          "one sentence reworded"),
    340: ("the gold medal of the [[CNRS]] in 2004.",
          "the gold medal of the [[CNRS]] in 2004. He had received the [[Prize Ampère]] of the "
          "[[French Academy of Sciences]] in 1980.",
          "one sentence added"),
}
# The real page deleted in month B (a disambiguation page of the gensim sample).
MONTH_B_DELETED = 694   # Asia Minor (disambiguation)
# Made-up articles whose text changes in month B (their month-B wikitext file exists).
MONTH_B_MADE_UP = ("Q42",)
# The sentences (or external-link lines) month B adds for the facts that are new or updated in
# the later copy of the entity: (QID, property, value, the wikitext added). The value is a QID
# (its label is the fact's object) or a literal.
MONTH_B_FACTS = (
    ("Q42", "P800", "Q902712", "Among his other works is the comic detective novel "
     "''[[Dirk Gently's Holistic Detective Agency]]''."),
    ("Q42", "P1263", "731/000023662",
     "* [http://www.nndb.com/people/731/000023662/ Douglas Adams] at [[NNDB]]"),
    ("Q42", "P1816", "mp60152", "* [https://www.npg.org.uk/collections/search/person/mp60152 "
     "Portraits of Douglas Adams] at the [[National Portrait Gallery, London]]"),
)
# Facts new in month B that the text does not state, as Wikipedia would not: (QID, property,
# value) -> why. The Q42 article has {{Authority control}}, which shows library ids from Wikidata.
MONTH_B_FACTS_NOT_IN_TEXT = {
    ("Q42", "P1695", "A11573065"): "a library authority id, shown by {{Authority control}}",
}

# --- Wikidata entities (see data/sample/README.md for what each source file is).
WIKIDATA_SOURCE = REAL_DATA / "wikidata"
# Made up: the Monday after the sample enwiki run (Wikidata's JSON dumps ran weekly on Mondays
# in 2016). The entities themselves were saved between 2015 and 2023.
ENTITIES_RUN_DATE = "20160502"
ENTITIES_RUN_DATE_B = "20160606"   # the Monday after the month-B enwiki run, made up likewise
# Source files, in priority order: an entity id is taken from the first file that has it, so
# the full API answers win over the trimmed copies (the 2015 sample dump emptied labels and
# sitelinks; some wikibase-sdk fixtures keep only claims). This is month B's order: Q42 as of
# about 2015-05.
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
# Month A's order: the same files, Q42 as of 2015-02 (the file that also gives P31) first.
Q42_2015_02 = "wbgetentities-Q6-Q42-P31.json"
ENTITY_SOURCES_A = (Q42_2015_02,) + tuple(s for s in ENTITY_SOURCES if s != Q42_2015_02)
# all.json holds items and properties; lexemes (and Commons' mediainfo) have dumps of their own.
DUMP_ENTITY_TYPES = ("item", "property")
# API-only fields that an entity in a dump never has.
API_ONLY_FIELDS = ("redirects",)

# MADE UP: label-only items for the objects of the statements that the made-up articles state,
# which no real file of the sample holds (an item-valued fact is rendered with its object's
# label from the same dump). QID -> (English label, English aliases). Labels as Wikidata has
# them, typed in for this sample; no descriptions, claims or sitelinks (but for the countries
# of MADE_UP_DEMONYMS).
MADE_UP_OBJECTS = {
    "Q350": ("Cambridge", ()),
    "Q159288": ("Santa Barbara", ("Santa Barbara, California",)),
    "Q12152": ("myocardial infarction", ("heart attack",)),
    "Q533697": ("Highgate Cemetery", ()),
    "Q4961791": ("Brentwood School", ()),
    "Q691283": ("St John's College", ("St John's College, Cambridge",)),
    "Q35794": ("University of Cambridge", ()),
    "Q9531": ("BBC", ("British Broadcasting Corporation",)),
    "Q36180": ("writer", ()),
    "Q6625963": ("novelist", ()),
    "Q28389": ("screenwriter", ()),
    "Q25169": ("The Hitchhiker's Guide to the Galaxy pentalogy",
               ("The Hitchhiker's Guide to the Galaxy",)),
    "Q902712": ("Dirk Gently's Holistic Detective Agency", ()),
    "Q24826": ("Liverpool", ()),
    "Q1203": ("John Lennon", ()),
    "Q2599": ("Paul McCartney", ()),
    "Q2643": ("George Harrison", ()),
    "Q2632": ("Ringo Starr", ()),
    "Q207335": ("Pete Best", ()),
    "Q204218": ("Stuart Sutcliffe", ()),
    "Q11399": ("rock music", ("rock",)),
    "Q8684": ("Seoul", ()),
    "Q884": ("South Korea", ()),
    "Q177220": ("singer", ()),
    "Q753110": ("songwriter", ()),
    "Q6607": ("guitar", ()),
    "Q105853": ("Karlsruher SC", ()),
    "Q15789": ("FC Bayern Munich", ("Bayern Munich",)),
    "Q201330": ("goalkeeper", ()),
    "Q937857": ("association football player", ("footballer",)),
    "Q60": ("New York City", ()),
    "Q309350": ("Northwestern University", ()),
    "Q1297": ("Chicago", ()),
    "Q1748": ("Copenhagen", ()),
    "Q35": ("Denmark", ()),
    "Q82955": ("politician", ()),
    "Q193391": ("diplomat", ()),
    "Q1867": ("Taipei", ()),
    "Q865": ("Taiwan", ()),
    "Q712226": ("square kilometre", ()),
    "Q9259": ("World Heritage Site", ()),
    "Q83405": ("factory", ()),
    "Q8676": ("American Civil War", ()),
    "Q30": ("United States of America", ("United States", "USA")),
    "Q145": ("United Kingdom", ("UK",)),
}
# MADE UP likewise: the English demonym (P1549, monolingual text) of the countries above, which
# is how Wikipedia states a country of citizenship ("a Danish politician"; the align stage
# searches P27 objects by it). These items also get an enwiki sitelink (title = label), as the
# real ones have, so that the facts stage keeps their statements. Typed in for this sample.
MADE_UP_DEMONYMS = {
    "Q35": "Danish", "Q884": "South Korean", "Q865": "Taiwanese",
    "Q30": "American", "Q145": "British",
}


# ------------------------------------------------------------------------------------------
# The two months of enwiki pages.

def read_wikitext(path: Path) -> str:
    # MediaWiki trims trailing whitespace from the text it saves.
    return path.read_text(encoding="utf-8").rstrip()


def made_up_page(article: MadeUpArticle, n: int, month: str = "2016-05",
                 parent: Page | None = None) -> Page:
    """The made-up article's revision of `month`: month A's is the page's first revision; a
    later one is an edit of `parent`, the revision before it."""
    comment = ("Made-up article for the twiki sample mirror, written from the statements of "
               f"Wikidata item {article.qid} (CC0); not a real revision")
    revid, stamp = MADE_UP_REVID_A + n, MADE_UP_TIMESTAMP_A.format(n)
    if parent is not None:
        comment = ("Constructed edit for the twiki sample mirror: facts new in Wikidata item "
                   f"{article.qid} (CC0); not a real revision")
        revid, stamp = MADE_UP_REVID_B + n, MADE_UP_TIMESTAMP_B.format(n)
    return Page(title=article.title, ns=0, page_id=article.page_id, revid=revid, timestamp=stamp,
                text=read_wikitext(article.wikitext_path(month)),
                parentid=None if parent is None else parent.revid, ip=MADE_UP_EDITOR_IP,
                comment=comment)


def constructed_edit(page: Page, new_text: str, n: int, what: str) -> Page:
    """A made-up next revision of a real page: new text, revid, timestamp and sha1."""
    return replace(page, revid=MADE_UP_REVID_B + n, parentid=page.revid,
                   timestamp=MADE_UP_TIMESTAMP_B.format(n), username=None, userid=None,
                   ip=MADE_UP_EDITOR_IP, minor=False, sha1=None, text=new_text,
                   comment=f"Constructed edit for the twiki sample mirror ({what}); "
                           "not a real revision")


def _sorted_pages(pages: list[bytes]) -> list[bytes]:
    ordered = sorted(pages, key=page_id)
    ids = [page_id(p) for p in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError("two pages of a run share a page id")
    return ordered


def month_a_pages(source: Path = SOURCE, enwiki: Path = ENWIKI_SOURCE
                  ) -> tuple[bytes, list[bytes]]:
    """(header, pages) of the 20160501 run: gensim's real pages byte for byte, the real Pear
    page at its last 2002 revision, and the made-up articles, in page-id order."""
    header, pages, _ = split_dump(bz2.decompress(source.read_bytes()))
    pear = parse_revisions((enwiki / PEAR_2002).read_bytes())[-1]
    extra = [pear.xml()] + [made_up_page(a, n).xml()
                            for n, a in enumerate(MADE_UP_ARTICLES, start=1)]
    return header, _sorted_pages(pages + extra)


def month_b_pages(pages_a: list[bytes], enwiki: Path = ENWIKI_SOURCE) -> list[bytes]:
    """The pages of the 20160601 run: month A's with the constructed changes (see MONTH_B_*)."""
    pear = parse_revisions((enwiki / PEAR_2014).read_bytes())[-1]
    replaced = {pear.page_id: pear.xml()}
    articles = {a.page_id: a for a in MADE_UP_ARTICLES}
    n = 0
    for raw in pages_a:   # revision ids follow the page order
        pid = page_id(raw)
        if pid in MONTH_B_EDITS:
            n += 1
            old, new, what = MONTH_B_EDITS[pid]
            [page] = parse_revisions(raw)
            if page.text.count(old) != 1:
                raise ValueError(f"page {pid}: the text to edit must occur exactly once: {old!r}")
            replaced[pid] = constructed_edit(page, page.text.replace(old, new), n, what).xml()
        elif pid in articles and articles[pid].qid in MONTH_B_MADE_UP:
            n += 1
            [page] = parse_revisions(raw)
            replaced[pid] = made_up_page(articles[pid], n, "2016-06", parent=page).xml()
    pages = [replaced.get(page_id(p), p) for p in pages_a if page_id(p) != MONTH_B_DELETED]
    pyrus = parse_revisions((enwiki / PYRUS).read_bytes())[-1]
    new = next(p for p in parse_revisions(bz2.decompress((enwiki / W2V_SAMPLE).read_bytes()))
               if p.title == NEW_ARTICLE_B)
    # The fixture's <sha1> is not the sha1 of its text (its authors seem to have shortened the
    # text; AccessibleComputing's matches): the page gets the sha1 of the text it carries.
    new = replace(new, sha1=None)
    return _sorted_pages(pages + [pyrus.xml(), new.xml()])



# ------------------------------------------------------------------------------------------
# Wikidata JSON entity dump.

def _entity_id_key(line: bytes) -> tuple[int, int]:
    # Dump order is page order, which for these old entities is id order, items before
    # properties of the same number (Q31 then P31), as in the 2015 sample dump.
    entity = json.loads(line)
    return int(entity["id"][1:]), DUMP_ENTITY_TYPES.index(entity["type"])


def _compact(entity: dict) -> bytes:
    return json.dumps(entity, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _source_entities(path: Path) -> list[tuple[dict, bytes | None]]:
    """(entity, its exact dump line or None) for every entity of one source file."""
    if path.name.endswith(".json.gz"):  # already in the dump format: keep its lines exactly
        return [(json.loads(line), line)
                for line in split_entity_dump(gzip.decompress(path.read_bytes()))]
    obj = json.loads(path.read_text(encoding="utf-8"))
    entities = obj["entities"].values() if "entities" in obj else [obj]
    return [(e, None) for e in entities]


def load_entities(source: Path = WIKIDATA_SOURCE, sources: tuple[str, ...] = ENTITY_SOURCES
                  ) -> list[bytes]:
    """One compact JSON line per real entity of `sources` (items and properties, each id once),
    in dump order. Lines of the 2015 sample dump are kept byte for byte; API answers are
    written compactly as the dumps write them (key order and values unchanged)."""
    chosen: dict[str, bytes] = {}
    for name in sources:
        for entity, line in _source_entities(source / name):
            if entity.get("type") not in DUMP_ENTITY_TYPES or entity["id"] in chosen:
                continue  # missing entities, lexemes, or an id a better source gave already
            if line is None or any(k in entity for k in API_ONLY_FIELDS):
                line = _compact({k: v for k, v in entity.items() if k not in API_ONLY_FIELDS})
            chosen[entity["id"]] = line
    return sorted(chosen.values(), key=_entity_id_key)


# MADE UP: label-only property entities for the properties the made-up articles state. The real
# entity files hold only a few property entities, so without these most facts would have no
# relation text (the probes stage rejects them as `relation_without_label`). Labels and
# datatypes are Wikidata's own for these ids; the lines themselves are ours. A real property
# entity with an English label wins over one of these; a real one without (the 2015 sample
# emptied its labels) is replaced by it.
MADE_UP_PROPERTIES = {
    "P17": ("country", "wikibase-item"), "P19": ("place of birth", "wikibase-item"),
    "P20": ("place of death", "wikibase-item"),
    "P27": ("country of citizenship", "wikibase-item"),
    "P31": ("instance of", "wikibase-item"), "P54": ("member of sports team", "wikibase-item"),
    "P69": ("educated at", "wikibase-item"), "P106": ("occupation", "wikibase-item"),
    "P108": ("employer", "wikibase-item"), "P119": ("place of burial", "wikibase-item"),
    "P131": ("located in the administrative territorial entity", "wikibase-item"),
    "P136": ("genre", "wikibase-item"), "P373": ("Commons category", "string"),
    "P463": ("member of", "wikibase-item"), "P509": ("cause of death", "wikibase-item"),
    "P527": ("has part(s)", "wikibase-item"), "P569": ("date of birth", "time"),
    "P570": ("date of death", "time"), "P571": ("inception", "time"),
    "P576": ("dissolved, abolished or demolished date", "time"),
    "P577": ("publication date", "time"), "P740": ("location of formation", "wikibase-item"),
    "P800": ("notable work", "wikibase-item"), "P921": ("main subject", "wikibase-item"),
    "P937": ("work location", "wikibase-item"), "P1303": ("instrument", "wikibase-item"),
    "P1435": ("heritage designation", "wikibase-item"),
    "P1449": ("nickname", "monolingualtext"), "P1477": ("birth name", "monolingualtext"),
    "P1549": ("demonym", "monolingualtext"),
    "P1559": ("name in native language", "monolingualtext"), "P2046": ("area", "quantity"),
}


def made_up_property_lines(skip: set[str] = frozenset(),
                           properties: dict[str, tuple[str, str]] = MADE_UP_PROPERTIES
                           ) -> list[bytes]:
    """The MADE_UP_PROPERTIES as dump lines (label and datatype only), less those in `skip`."""
    return [_compact({"type": "property", "datatype": datatype, "id": pid,
                      "labels": {"en": {"language": "en", "value": label}},
                      "descriptions": {}, "aliases": {}, "claims": {}})
            for pid, (label, datatype) in properties.items() if pid not in skip]


def made_up_entity_lines(objects: dict[str, tuple[str, tuple[str, ...]]] = MADE_UP_OBJECTS,
                         demonyms: dict[str, str] = MADE_UP_DEMONYMS) -> list[bytes]:
    """The MADE_UP_OBJECTS as dump lines: an item with an English label (and aliases), empty
    descriptions, in the key order of the 2015 dump's lines; no claims or sitelinks, but for
    the countries of MADE_UP_DEMONYMS: their demonym statement and enwiki sitelink."""
    lines = []
    for qid, (label, aliases) in objects.items():
        claims: dict = {}
        sitelinks: dict = {}
        if qid in demonyms:
            claims = {"P1549": [{
                "mainsnak": {"snaktype": "value", "property": "P1549", "datavalue": {
                    "value": {"text": demonyms[qid], "language": "en"},
                    "type": "monolingualtext"}, "datatype": "monolingualtext"},
                "type": "statement", "id": f"{qid}$made-up-demonym-en", "rank": "normal"}]}
            sitelinks = {"enwiki": {"site": "enwiki", "title": label, "badges": []}}
        lines.append(_compact({
            "type": "item", "id": qid,
            "labels": {"en": {"language": "en", "value": label}},
            "descriptions": {},
            "aliases": {"en": [{"language": "en", "value": a} for a in aliases]} if aliases else {},
            "claims": claims, "sitelinks": sitelinks}))
    return lines


def month_entities(source: Path = WIKIDATA_SOURCE, sources: tuple[str, ...] = ENTITY_SOURCES
                   ) -> list[bytes]:
    """The entity lines of one month's dump: the real entities of `sources` and the made-up
    object items, in dump order. A made-up item never replaces a real entity."""
    real = load_entities(source, sources)
    # A real property entity with an English label wins; one whose labels its source emptied
    # (the 2015 sample's) gives way to the made-up label line of the same id.
    parsed = [json.loads(line) for line in real]
    labelled = {e["id"] for e in parsed if (e.get("labels") or {}).get("en")}
    replaced = set(MADE_UP_PROPERTIES) - labelled
    real = [line for line, e in zip(real, parsed) if e["id"] not in replaced]
    made_up = made_up_entity_lines() + made_up_property_lines(skip=labelled)
    clash = ({json.loads(line)["id"] for line in real}
             & {json.loads(line)["id"] for line in made_up})
    if clash:
        raise ValueError(f"made-up entities would replace real ones: {sorted(clash)}")
    return sorted(real + made_up, key=_entity_id_key)


# ------------------------------------------------------------------------------------------

def build_mirror(out: Path = SAMPLE_MIRROR, source: Path = SOURCE,
                 wikidata_source: Path = WIKIDATA_SOURCE) -> list[Path]:
    """The whole sample mirror under `out`; returns the run folders written. The other real
    pages are read from `source`'s folder, the made-up articles from data/sample/made_up/."""
    enwiki = source.parent
    header, pages_a = month_a_pages(source, enwiki)
    pages_b = month_b_pages(pages_a, enwiki)
    runs = [build_run(out, header, pages_a, run_date=RUN_DATE, split_at=PART_SPLIT),
            build_run(out, header, pages_b, run_date=RUN_DATE_B, jobs=JOB_UPDATED_B,
                      split_at=PART_SPLIT)]
    write_listing(out)
    runs.append(build_entities_run(out, month_entities(wikidata_source, ENTITY_SOURCES_A),
                                   run_date=ENTITIES_RUN_DATE))
    runs.append(build_entities_run(out, month_entities(wikidata_source, ENTITY_SOURCES),
                                   run_date=ENTITIES_RUN_DATE_B))
    write_listing(out, WIKIDATA_DIR)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE,
                        help="real pages-articles .bz2 (the other real page files are read "
                             "from its folder)")
    parser.add_argument("--wikidata", type=Path, default=WIKIDATA_SOURCE,
                        help="folder of real Wikidata entity JSON (the ENTITY_SOURCES files)")
    parser.add_argument("--out", type=Path, default=SAMPLE_MIRROR, help="mirror root to write")
    args = parser.parse_args(argv)
    for run in build_mirror(args.out, args.source, args.wikidata):
        for path in sorted(run.iterdir()):
            print(f"{path.stat().st_size:>10}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
