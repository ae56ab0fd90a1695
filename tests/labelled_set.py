"""The labelled real-text set (tests/data/labelled/, issue 15 item 4) and the harness that aligns
it the way the align stage does.

Real: 16 articles of the May 2016 enwiki sample (tests/real_articles.ENWIKI_DUMP), their page
ids and revisions, the dump's redirects, and 338 true Wikidata facts about their subjects, each
labelled with the sentences of the article (the project's clean text) that state it, or none.
Made up: month A. The dump has one revision an article, so month A is month B without the
sections named in each file's `month_a_removed_sections` (tests/data/labelled/README.md):
their paragraphs are the diff, the facts stated only there are the Changed set.

What align_article gets here is what the reduce gives it (twiki/stages/align.py align_shard):
month B's clean paragraphs (clean_page, with its links when the cleaner keeps them), the diff
rows (the removed sections' paragraphs, whole), the links resolved to items
(twiki.stages.links.resolve_target over the set's entities' enwiki titles and the dump's
redirects) and one candidate dict per fact with the fact diff's columns (FACT_COLUMNS).

    from labelled_set import align_set, load_set, score
    figures = score(load_set(), align_set(load_set()))

benchmarks/bench_align_quality.py and tests/test_align_quality.py read it."""

from __future__ import annotations

import bz2
import dataclasses
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from rapidfuzz import fuzz

try:
    from real_articles import ENWIKI_DUMP
except ImportError:   # imported as tests.labelled_set (benchmarks/)
    from tests.real_articles import ENWIKI_DUMP
from twiki.text import wikitext
from twiki.text.sentences import spacy_sentence_spans

try:
    from twiki.text.normalize import normalize_title
except ImportError:   # before contract C1 moved it
    from twiki.stages.mapping import normalize_title

LABELLED = Path(__file__).resolve().parent / "data" / "labelled"
# The held-out set (tests/data/labelled_heldout/README.md): 5 other articles of the same dump,
# labelled blind (before any aligner ran on them), measured, never tuned on. Same file format.
HELDOUT = Path(__file__).resolve().parent / "data" / "labelled_heldout"
MONTHS = ("2016-04", "2016-05")   # month B: the dump's (May 2016); month A: made up (above)
# Links to articles outside the set's entities resolve to placeholder items: every enwiki
# article has an item, and the aligner must know that a link names *another* entity; the real
# QIDs of those items are not needed (nothing compares them). Far above real item numbers.
PLACEHOLDER_BASE = 10**12
FUZZY_LOCATE = 90.0   # a label whose text the cleaner changed slightly is found at this ratio


@dataclass
class LabelledArticle:
    title: str
    page_id: int
    revid: int
    subject: str
    removed_sections: list[str]
    facts: list[dict]                                # as in the file
    paragraphs: list[tuple[tuple[str, ...], str]]    # month B, clean text
    links: list[list[tuple[int, int, str]]]          # per paragraph: (start, end, target title)
    removed: set[int]                                # paragraphs month A lacks (the diff)
    stated: dict[str, list[tuple[int, int, int]]]    # statement id -> (paragraph, start, end)
    unlocated: list[tuple[str, str]] = field(default_factory=list)   # (statement id, label)


@dataclass
class LabelledSet:
    entities: dict[str, dict]
    properties: dict[str, str]
    articles: list[LabelledArticle]
    redirects: dict[str, str]        # the dump's namespace-0 redirects, normalized titles


def read_dump(path: Path = ENWIKI_DUMP) -> tuple[dict[str, tuple[int, int, str]], dict[str, str]]:
    """(title -> (page_id, revid, wikitext) of namespace-0 articles, redirect title -> target)."""
    pages: dict[str, tuple[int, int, str]] = {}
    redirects: dict[str, str] = {}
    with bz2.open(path) as f:
        cur: dict = {}
        for _, el in ET.iterparse(f):
            tag = el.tag.rsplit("}", 1)[-1]
            if tag in ("title", "ns", "id") and tag not in cur:
                cur[tag] = el.text
            elif tag == "redirect":
                cur["redirect"] = el.get("title")
            elif tag == "revision":
                cur["revid"] = next(int(c.text) for c in el if c.tag.endswith("}id"))
            elif tag == "text":
                cur["text"] = el.text or ""
            elif tag == "page":
                if cur.get("ns") == "0":
                    if cur.get("redirect"):
                        redirects[normalize_title(cur["title"])] = normalize_title(
                            cur["redirect"].split("#", 1)[0])
                    else:
                        pages[cur["title"]] = (int(cur["id"]), cur["revid"], cur.get("text", ""))
                cur = {}
                el.clear()
    return pages, redirects


def clean(text: str, title: str) -> tuple[list[tuple[tuple[str, ...], str]],
                                          list[list[tuple[int, int, str]]]]:
    """Month B's paragraphs and their links (target titles), as extract writes them: the
    cleaner's clean_page (contract C1) where it exists, else clean_wikitext without links."""
    if hasattr(wikitext, "clean_page"):
        paras = wikitext.clean_page(text, title)
        return ([(tuple(p.section), p.text) for p in paras],
                [[(lk.start, lk.end, lk.target) for lk in p.links] for p in paras])
    paras = wikitext.clean_wikitext(text, title)
    return [(tuple(s), t) for s, t in paras], [[] for _ in paras]


def _in_sections(section: tuple[str, ...], removed: list[str]) -> bool:
    path = " > ".join(section)
    return any(path == r or path.startswith(r + " > ") for r in removed)


def locate(paragraphs: list[tuple[tuple[str, ...], str]], label: str
           ) -> tuple[int, int, int] | None:
    """(paragraph, start, end) of the sentence (spaCy's sentencizer, as align splits) that
    holds `label` (a stated_by substring): exactly, else the best sentence of the article with
    a near match (rapidfuzz partial_ratio >= FUZZY_LOCATE: the cleaner changed a character)."""
    for p, (_, text) in enumerate(paragraphs):
        i = text.find(label)
        if i >= 0:
            for a, b in spacy_sentence_spans(text):
                if a <= i < b:
                    return p, a, b
    best, where = 0.0, None
    for p, (_, text) in enumerate(paragraphs):
        if fuzz.partial_ratio(label, text, score_cutoff=FUZZY_LOCATE) == 0:
            continue
        for a, b in spacy_sentence_spans(text):
            s = fuzz.partial_ratio(label, text[a:b], score_cutoff=FUZZY_LOCATE)
            if s > best:
                best, where = s, (p, a, b)
    return where


@lru_cache(maxsize=2)
def load_set(root: Path = LABELLED) -> LabelledSet:
    """The set in `root` (LABELLED, or HELDOUT), with each article's clean text from the dump
    and every label located."""
    ents = json.loads((root / "entities.json").read_text(encoding="utf-8"))
    pages, redirects = read_dump()
    articles = []
    for path in sorted(root.glob("*.json")):
        if path.name == "entities.json":
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        page_id, revid, text = pages[doc["title"]]
        paragraphs, links = clean(text, doc["title"])
        removed = {i for i, (s, _) in enumerate(paragraphs)
                   if _in_sections(s, doc["month_a_removed_sections"])}
        art = LabelledArticle(doc["title"], page_id, revid, doc["subject"],
                              doc["month_a_removed_sections"], doc["facts"], paragraphs, links,
                              removed, {})
        if (page_id, revid) != (doc["page_id"], doc["revid"]):
            art.unlocated.append(("page", f"{doc['title']}: the dump has page {page_id} "
                                          f"revision {revid}, the file {doc['page_id']} {doc['revid']}"))
        for fact in doc["facts"]:
            spans = []
            for label in fact["stated_by"]:
                where = locate(paragraphs, label)
                if where is None:
                    art.unlocated.append((fact["statement_id"], label))
                elif where not in spans:
                    spans.append(where)
            art.stated[fact["statement_id"]] = spans
        articles.append(art)
    return LabelledSet(ents["entities"], ents["properties"], articles, redirects)


def eligible(art: LabelledArticle, fact: dict) -> list[tuple[int, int, int]]:
    """The stating sentences a right alignment can use: a Changed fact's in the diff (the
    removed sections), an Unchanged fact's in the text month A has too."""
    changed = fact["set"] == "changed"
    return [s for s in art.stated[fact["statement_id"]] if (s[0] in art.removed) == changed]


# ---------------------------------------------------------------------------------------
# What align_article gets.

def candidates(lset: LabelledSet, art: LabelledArticle) -> list[dict]:
    """One candidate dict per fact, with the fact diff's columns (align.FACT_COLUMNS), the
    qualifier times (none here) and, for demonym relations, the object's demonyms."""
    unchanged_props = {f["property"] for f in art.facts if f["set"] == "unchanged"}
    subject = lset.entities[art.subject]
    out = []
    for f in art.facts:
        obj = lset.entities.get(f.get("object_qid") or "", {})
        if f["set"] == "unchanged":
            category = "unchanged"
        else:
            category = ("added_value" if f["property"] in unchanged_props
                        else "new_relation")
        out.append({
            "category": category, "subject": art.subject, "subject_label": subject["label"],
            "property": f["property"], "property_label": lset.properties[f["property"]],
            "statement_id": f["statement_id"], "value_type": f["value_type"],
            "datatype": f["datatype"], "value": f["value"], "text": f["text"],
            "object_qid": f.get("object_qid"), "object_label": obj.get("label"),
            "object_aliases": list(obj.get("aliases", [])) if obj else None,
            "unit_qid": f.get("unit_qid"), "precision": f.get("precision"),
            "old_values": None, "old_texts": None, "subject_new": False,
            "start_time": None, "end_time": None, "point_in_time": None,
            "object_demonyms": list(obj.get("demonyms", [])) if obj else [],
        })
    return out


def titles_of(lset: LabelledSet) -> dict[str, str]:
    """normalized enwiki title (and the redirects listed with an entity) -> QID; an entity with
    no enwiki article has enwiki "" (the held-out set's spouses)."""
    titles: dict[str, str] = {}
    for qid, e in lset.entities.items():
        for t in [e["enwiki"]] + e.get("enwiki_redirects", []):
            if t:
                titles.setdefault(normalize_title(t), qid)
    return titles


def resolved_links(lset: LabelledSet, art: LabelledArticle, titles: dict[str, str]
                   ) -> list[list[tuple[int, int, str]]]:
    """Each paragraph's links as (start, end, qid): resolve_target (contract C2) over the set's
    titles and the dump's redirects; a target outside the set gets a placeholder item."""
    from twiki.stages.links import resolve_target
    placeholders: dict[str, str] = {}
    out = []
    for links in art.links:
        row = []
        for start, end, target in links:
            qid, _ = resolve_target(target, titles, lset.redirects)
            if qid is None:
                t = normalize_title(target)
                t = lset.redirects.get(t, t)
                qid = placeholders.setdefault(t, f"Q{PLACEHOLDER_BASE + len(placeholders)}")
            row.append((start, end, qid))
        out.append(row)
    return out


def article_of(lset: LabelledSet, art: LabelledArticle, titles: dict[str, str] | None = None):
    """The align stage's Article for one labelled article: month B's paragraphs, the removed
    sections' paragraphs as diff rows, month A's paragraphs, and the resolved links where the
    Article takes them."""
    from twiki.stages.align import Article
    kw = {}
    if "links" in {f.name for f in dataclasses.fields(Article)}:
        kw["links"] = resolved_links(lset, art, titles if titles is not None else titles_of(lset))
    return Article(
        page_id=art.page_id, title=art.title, new_revid=art.revid,
        paragraphs=list(art.paragraphs),
        diff_rows=[(p, art.paragraphs[p][1]) for p in sorted(art.removed)],
        removed=[], in_month_a=True, old_revid=art.revid,
        old_paragraphs=[p for i, p in enumerate(art.paragraphs) if i not in art.removed], **kw)


def align_set(lset: LabelledSet, config=None) -> dict[str, list[dict]]:
    """title -> the aligned rows of align_article on that article (default AlignConfig)."""
    from twiki.stages.align import AlignConfig, align_article
    config = config or AlignConfig()
    titles = titles_of(lset)
    out = {}
    for art in lset.articles:
        facts = candidates(lset, art)
        if "demonym_relations" in {f.name for f in dataclasses.fields(config)}:
            demonym = set(config.demonym_relations)
            for f in facts:
                if f["property"] not in demonym:
                    f.pop("object_demonyms")
        out[art.title] = align_article(article_of(lset, art, titles), facts, config, MONTHS, {})
    return out


# ---------------------------------------------------------------------------------------
# Scoring.

def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score(lset: LabelledSet, aligned: dict[str, list[dict]]) -> dict:
    """Precision (aligned facts whose evidence is one of their stating sentences / aligned
    facts) and recall (right alignments / facts with a stating sentence in the part of the
    text their set may use), overall, by set, by match kind; the wrong alignments and the
    stated facts missed."""
    groups = {g: {"aligned": 0, "right": 0, "stated": 0, "facts": 0}
              for g in ("all", "changed", "unchanged")}
    kinds: dict[str, dict] = {}
    wrong, missed = [], []
    for art in lset.articles:
        rows = {r["statement_id"]: r for r in aligned.get(art.title, [])}
        for fact in art.facts:
            sid = fact["statement_id"]
            can = eligible(art, fact)
            for g in ("all", fact["set"]):
                groups[g]["facts"] += 1
                groups[g]["stated"] += bool(can)
            row = rows.get(sid)
            if row is None:
                if can:
                    missed.append(_describe(lset, art, fact))
                continue
            p = row["evidence_paragraph"]
            text = art.paragraphs[p][1] if 0 <= p < len(art.paragraphs) else ""
            a = text.find(row["evidence"])
            b = a + len(row["evidence"])
            right = a >= 0 and any(q == p and x < b and y > a
                                   for q, x, y in art.stated[sid])
            kind = row.get("match_kind", "?")
            k = kinds.setdefault(kind, {"aligned": 0, "right": 0})
            k["aligned"] += 1
            k["right"] += right
            for g in ("all", fact["set"]):
                groups[g]["aligned"] += 1
                groups[g]["right"] += right
            if not right:
                wrong.append({**_describe(lset, art, fact), "match_kind": kind,
                              "matched": row.get("matched"), "cue": row.get("cue"),
                              "evidence": row["evidence"]})
    figures = {g: {**v, "precision": _ratio(v["right"], v["aligned"]),
                   "recall": _ratio(v["right"], v["stated"])} for g, v in groups.items()}
    return {
        "articles": len(lset.articles), **figures,
        "by_match_kind": {k: {**v, "precision": _ratio(v["right"], v["aligned"])}
                          for k, v in sorted(kinds.items())},
        "wrong": wrong, "missed": missed,
    }


def _describe(lset: LabelledSet, art: LabelledArticle, fact: dict) -> dict:
    return {"article": art.title, "statement_id": fact["statement_id"], "set": fact["set"],
            "property": f"{fact['property']} {lset.properties[fact['property']]}",
            "object": fact["text"], "note": fact.get("note")}
