"""align: the fact diff of months A -> B, aligned to month B's Wikipedia text.

Reads data/factdiff/<A>_<B>/ (facts by subject QID), data/facts/<B>/mapping/ (QID -> page_id),
the diffset data/diffsets/<wiki>/<A>_<B>/ (and its removed text) and both snapshots, and
writes data/probes/<A>_<B>/aligned/: one row per fact whose object is stated in its subject's
article, with the sentence that states it (the evidence), partitioned by page_id like the text.

  Changed (new, updated)  the article is in the diffset and the object occurs in its diff text
  Unchanged               the article is in both months and the object occurs in a sentence
                          of month B that the diff left alone
Two phases, both resumable (work files under data/work/probes/...):
  map     one factdiff shard -> candidates re-keyed to page_id (month B's mapping), written as
          runs per (page shard, page-id bucket)
  reduce  one page shard -> for each bucket in page_id order, its candidates sorted and merged
          with the diffset, removed text and both snapshots (all sorted by page_id), streaming
Memory: the map holds one spill and the shard's mapping (16 bytes an article); the reduce one
bucket of candidates and one row group per input. Neither grows with the number of articles.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rapidfuzz import fuzz

from ..engine.artifacts import (ROW_GROUP_ROWS, ArtifactBuild, ShardWriter, release_memory,
                                require_artifact, shard_array, shard_name, sum_counts,
                                write_json_atomic)
from ..engine.executors import Executor
from ..engine.paths import DataRoot, check_wiki, month_pair
from ..engine.shuffle import markers, resumable
from ..engine.stage import StageResult, StageRun, stage_defaults
from ..errors import ConfigError, TwikiError
from ..sources.wikidata import MONTHS, id_numbers, ordinal
from ..text.normalize import search_form
from ..text.sentences import spacy_sentence_spans

log = logging.getLogger("twiki")

STAGE = "align"
# Bump when matching or the row layout changes: aligned sets made before are rebuilt.
STAGE_VERSION = 2

CHANGED_KINDS = ("new", "updated")
MATCH_KINDS = ("demonym", "exact_label", "alias", "fuzzy", "date", "number", "string")


# Relations whose object an article often names without stating the relation: 'born in Seoul,
# South Korea' names the country but does not say that she is its citizen; 'Minister for Foreign
# Affairs of Denmark' neither. A sentence aligns such a fact only when it also holds one of the
# relation's cue words (whole words, after normalization). Wikidata property -> cue words.
DEFAULT_RELATION_CUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("P19", ("born", "birth", "birthplace", "native")),                          # place of birth
    ("P20", ("died", "dies", "death", "killed")),                                # place of death
    ("P26", ("married", "marriage", "marries", "wife", "husband", "spouse",      # spouse
             "wed", "wedded", "widow", "widower")),
    ("P27", ("citizen", "citizens", "citizenship", "national", "nationality",    # country of
             "naturalised", "naturalized")),                                     # citizenship
    ("P740", ("formed", "founded", "established", "formation", "founding",       # location of
              "origin", "originated", "originating")),                           # formation
)

# One row per aligned fact (and, in the filter stage, per probe). Sorted by page_id, then
# subject, property (numeric), statement id.
ALIGNED_SCHEMA = pa.schema([
    pa.field("month_a", pa.string(), nullable=False),
    pa.field("month_b", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),             # unchanged | new | updated
    pa.field("subject", pa.string()),                          # the subject's English label
    pa.field("relation", pa.string()),                         # the property's English label
    pa.field("object", pa.string(), nullable=False),           # the value, rendered (facts' text)
    pa.field("old_objects", pa.list_(pa.string())),            # updated: month A's values, rendered
    pa.field("subject_qid", pa.string(), nullable=False),
    pa.field("property", pa.string(), nullable=False),         # "P800"
    pa.field("object_qid", pa.string()),                       # item values; null for literals
    pa.field("value", pa.string(), nullable=False),            # canonical value (facts' value)
    pa.field("value_type", pa.string(), nullable=False),       # item|time|quantity|string|...
    pa.field("old_values", pa.list_(pa.string())),             # updated: month A's canonical values
    pa.field("statement_id", pa.string(), nullable=False),
    pa.field("subject_new", pa.bool_(), nullable=False),       # the item has no entity in month A
    pa.field("page_id", pa.int64(), nullable=False),
    pa.field("title", pa.string(), nullable=False),            # month B's title
    pa.field("old_revid", pa.int64()),                         # month A's revision (null: new page)
    pa.field("new_revid", pa.int64(), nullable=False),
    pa.field("evidence", pa.string(), nullable=False),         # the sentence of month B
    pa.field("evidence_section", pa.list_(pa.string())),
    pa.field("evidence_paragraph", pa.int32(), nullable=False),  # paragraph index in month B
    pa.field("match_kind", pa.string(), nullable=False),       # one of MATCH_KINDS
    pa.field("match_score", pa.float32(), nullable=False),     # 0-100
    pa.field("matched", pa.string(), nullable=False),          # the form found (label, alias...)
    pa.field("object_in_month_a", pa.bool_()),                 # Changed: A's article already had it
    pa.field("evidence_in_diffset", pa.bool_()),               # Changed: all of it is diff text
])

# The factdiff columns a candidate carries (plus page_id and title from the mapping).
FACT_COLUMNS = ["category", "subject", "subject_label", "property", "property_label",
                "statement_id", "value_type", "datatype", "value", "text", "object_qid",
                "object_label", "object_aliases", "unit_qid", "precision", "old_values",
                "old_texts", "subject_new"]


@dataclass(frozen=True)
class AlignConfig:
    """What decides which facts align and to which sentence (all of it is in the artifact key)."""

    fuzzy: bool = True
    """Try near matches (rapidfuzz) for item labels and aliases that have no exact match."""
    fuzzy_threshold: float = 90.0
    """Lowest rapidfuzz `fuzz.ratio` (normalized Indel similarity, 0-100) between a label and
    a run of whole words of a sentence with about as many words. 90 accepts what survives
    normalization as spelling variants: 'St Johns College' for 'St John's College' (97),
    'Highgate Cemetary' (94), 'Santa Barbra' (96); it refuses a longer word that merely contains
    the label ('Cambridgeshire' for 'Cambridge': 78) and different names of the same shape
    ('University of Oxford' for 'University of Cambridge': 67)."""
    fuzzy_min_chars: int = 10
    """Near matches only for labels of at least this many characters (normalized): a one-letter
    difference between short names is another name ('Jon Smith' / 'John Smith': 95)."""
    number_min_digits: int = 3
    """A number with fewer digits ('2', '49') matches only when its unit's label is in the same
    sentence; alone it occurs in too many sentences that state something else."""
    min_form_chars: int = 2
    """Forms (labels, aliases) shorter than this after normalization are not searched."""
    excluded_datatypes: tuple[str, ...] = (
        "external-id", "url", "commonsMedia", "geo-shape", "tabular-data", "math",
        "musical-notation", "wikibase-property", "wikibase-lexeme", "wikibase-form",
        "wikibase-sense", "entity-schema")
    """Property datatypes never aligned: identifiers, links and media are not knowledge that an
    article states in prose (TemporalWiki kept only item-valued facts; twiki keeps literals)."""
    relation_cues: tuple[tuple[str, tuple[str, ...]], ...] = DEFAULT_RELATION_CUES
    """(property, cue words): a fact of such a property aligns only to a sentence that holds
    one of its cue words besides the object (a demonym needs none). A dict is accepted too;
    `()` turns the check off. Defaults: `DEFAULT_RELATION_CUES` (place of birth and death,
    spouse, country of citizenship, location of formation)."""
    demonym_relations: tuple[str, ...] = ("P27",)
    """Properties whose object is also searched as its demonyms ('Danish' for Denmark):
    Wikipedia states citizenship as 'a Danish politician'. The demonyms are the objects' own
    `demonym_property` statements in month B's facts (the dump's, never a live lookup)."""
    demonym_property: str = "P1549"
    """Wikidata's demonym property (monolingual text)."""
    demonym_language: str = "en"
    """The language of the demonyms searched (the wiki's)."""

    def __post_init__(self) -> None:
        cues = self.relation_cues
        if isinstance(cues, dict):
            cues = cues.items()
        cues = tuple(sorted((str(p), tuple(str(w) for w in words)) for p, words in cues))
        for p, words in cues:
            if not re.fullmatch(r"P[1-9]\d*", p) or not words:
                raise ConfigError(f"relation_cues: {p!r} is not a property id with cue words")
        object.__setattr__(self, "relation_cues", cues)
        object.__setattr__(self, "demonym_relations", tuple(self.demonym_relations))
        for p in self.demonym_relations + (self.demonym_property,):
            if not re.fullmatch(r"P[1-9]\d*", p):
                raise ConfigError(f"{p!r} is not a Wikidata property id")
        if not 0 < self.fuzzy_threshold <= 100:
            raise ConfigError(f"fuzzy_threshold must be in (0, 100], not {self.fuzzy_threshold}")
        if self.fuzzy_min_chars < 1 or self.number_min_digits < 1 or self.min_form_chars < 1:
            raise ConfigError("fuzzy_min_chars, number_min_digits and min_form_chars must be "
                              "at least 1")
        object.__setattr__(self, "excluded_datatypes", tuple(self.excluded_datatypes))


@dataclass(frozen=True)
class AlignOptions:
    """How the work is done; never changes the output."""

    bucket_page_ids: int = 1_000_000
    """Width of a page-id bucket: the reduce holds one bucket of one page shard's candidates at
    a time (enwiki, 64 shards: ~40k candidates a bucket)."""
    spill_rows: int = 50_000
    """Candidates a map task buffers before writing a run."""
    compress_work: bool = True
    """LZ4-compress the work files (the unchanged facts of a full dump are tens of GB)."""
    keep_work: bool = False
    """Keep data/work/probes/... after publishing."""

    def __post_init__(self) -> None:
        if self.bucket_page_ids < 1 or self.spill_rows < 1:
            raise ConfigError("bucket_page_ids and spill_rows must be positive")


# ---------------------------------------------------------------------------------------
# The forms in which an object is searched.

class Form(NamedTuple):
    norm: str          # normalized, padded with spaces: " 11 march 1952 "
    kind: str          # one of MATCH_KINDS (never "fuzzy": near matches are tried apart)
    surface: str       # what it was made from, for the probe's `matched` column
    needs: tuple[str, ...] | None   # one of these (a unit's label, padded) must be there too
    score: float


def _pad(s: str) -> str:
    return f" {s} "


_DATE = re.compile(r"(-?)(\d+)(?:-(\d\d)(?:-(\d\d))?)?")


def date_forms(value: str, text: str | None) -> list[tuple[str, str]]:
    """(surface, kind) of the ways Wikipedia writes a Wikidata time at its precision:
    day '11 March 1952', 'March 11, 1952', '1952-03-11', '11th March 1952'; month 'March 1952';
    year '1952'; BCE years '44 BC' and '44 BCE'; coarser precisions as rendered ('1950s')."""
    body, _, rest = value.partition("/")
    precision = int(rest.split("/")[0]) if rest else 9
    out: list[str] = []
    m = _DATE.fullmatch(body)
    if m and precision >= 9:
        bce = m.group(1) == "-"
        year = str(int(m.group(2)))
        years = [f"{year} BC", f"{year} BCE"] if bce else [year]
        month = int(m.group(3)) if m.group(3) else 0
        day = int(m.group(4)) if m.group(4) else 0
        for y in years:
            if precision >= 11 and month and day:
                name = MONTHS[month - 1]
                out += [f"{day} {name} {y}", f"{name} {day}, {y}",
                        f"{ordinal(day)} {name} {y}"]
                if not bce:
                    out.append(f"{year.zfill(4)}-{month:02d}-{day:02d}")
            elif precision >= 10 and month:
                out.append(f"{MONTHS[month - 1]} {y}")
            else:
                out.append(y)
    if text:
        out.append(text)
    return [(s, "date") for s in out]


def number_forms(amount: str) -> list[str]:
    """An amount as written with and without thousands separators ('296,033', '296033')."""
    a = amount.lstrip("+-")
    whole, _, frac = a.partition(".")
    out = [a]
    if whole.isdigit() and len(whole) > 3:
        grouped = f"{int(whole):,}" + (f".{frac}" if frac else "")
        out.append(grouped)
    return out   # a minus sign is punctuation to search_form(): the digits are what is searched


def object_forms(fact: dict, config: AlignConfig) -> list[Form]:
    """Every form under which the fact's object is searched, best first: the item's label,
    then its aliases; a time in the forms Wikipedia writes dates; a quantity's amount (with its
    unit's label as a condition for short numbers); strings as they are."""
    vt = fact["value_type"]
    raw: list[tuple[str, str, str | None, float]] = []   # surface, kind, needs, score
    if vt == "item":
        if fact.get("property") in config.demonym_relations:
            raw += [(d, "demonym", None, 100.0) for d in fact.get("object_demonyms") or ()]
        if fact.get("object_label"):
            raw.append((fact["object_label"], "exact_label", None, 100.0))
        for a in fact.get("object_aliases") or ():
            raw.append((a, "alias", None, 100.0))
    elif vt == "time":
        raw += [(s, k, None, 100.0) for s, k in date_forms(fact["value"], fact.get("text"))]
    elif vt == "quantity":
        amount = fact["value"].split("|", 1)[0]
        unit = None
        text = fact.get("text") or ""
        if fact.get("unit_qid") and text.startswith(amount + " "):
            unit = text[len(amount) + 1:]
        digits = sum(c.isdigit() for c in amount)
        for s in number_forms(amount):
            if unit:
                # with its unit in the sentence: certain; without: the bare amount, if long
                raw.append((s, "number", unit, 100.0))
                if digits >= config.number_min_digits:
                    raw.append((s, "number", None, 90.0))
            elif digits >= config.number_min_digits:
                raw.append((s, "number", None, 100.0))
    else:  # string, monolingualtext, and anything rendered to text
        if fact.get("text"):
            raw.append((fact["text"], "string", None, 100.0))
    forms: list[Form] = []
    seen: set[tuple[str, str | None]] = set()
    cue = relation_cues(config).get(fact.get("property"))
    for surface, kind, needs, score in raw:
        norm = search_form(surface)
        if len(norm) < config.min_form_chars:
            continue
        need = None
        if needs:   # Wikidata's unit labels are singular: 'year' also finds 'years'
            n = search_form(needs)
            need = (_pad(n), _pad(n + "s"), _pad(n + "es"))
        elif cue and kind != "demonym":
            need = cue
        if (norm, need) in seen:
            continue
        seen.add((norm, need))
        forms.append(Form(_pad(norm), kind, surface, need, score))
    return forms


@lru_cache(maxsize=8)
def relation_cues(config: AlignConfig) -> dict[str, tuple[str, ...]]:
    """property -> its cue words, normalized and padded for whole-word search."""
    return {p: tuple(dict.fromkeys(_pad(search_form(w)) for w in words))
            for p, words in config.relation_cues}


def strip_cue(forms: list[Form], cue: tuple[str, ...] | None) -> list[Form]:
    """The forms without their relation's cue (a unit stays): where the object occurs at all."""
    return [f._replace(needs=None) if cue and f.needs == cue else f for f in forms]


def fuzzy_labels(fact: dict, config: AlignConfig) -> list[tuple[str, str]]:
    """(normalized label, surface) of an item's label and aliases long enough for near matches."""
    if not config.fuzzy or fact["value_type"] != "item":
        return []
    out = []
    for s in [fact.get("object_label")] + list(fact.get("object_aliases") or ()):
        if s:
            n = search_form(s)
            if len(n) >= config.fuzzy_min_chars and (n, s) not in out:
                out.append((n, s))
    return out


def fuzzy_score(label: str, sentence: str) -> float:
    """Best fuzz.ratio between a normalized label and a run of whole words of a normalized
    sentence with one word fewer, as many, or one more than the label."""
    words = sentence.split()
    k = len(label.split())
    best = 0.0
    for size in (k - 1, k, k + 1):
        if size < 1 or size > len(words):
            continue
        for i in range(len(words) - size + 1):
            s = fuzz.ratio(label, " ".join(words[i:i + size]), score_cutoff=best)
            if s > best:
                best = s
    return best


# ---------------------------------------------------------------------------------------
# One article: which candidate facts it states, and where.

@dataclass
class Article:
    """What the reduce knows about one page: month B's paragraphs, the diff rows (paragraph
    index, text) and removed texts, whether month A has the page, and A's text on demand."""

    page_id: int
    title: str
    new_revid: int
    paragraphs: list[tuple[tuple[str, ...], str]]   # month B
    diff_rows: list[tuple[int, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    in_month_a: bool = False
    old_revid: int | None = None
    old_paragraphs: Sequence[tuple[tuple[str, ...], str]] | None = None


class _Unit(NamedTuple):
    """A paragraph of month B and the spans of it that are diff text."""
    index: int                        # paragraph index in month B (-1: a diff row not located)
    section: tuple[str, ...]
    text: str
    spans: list[tuple[int, int]]      # diff spans, sorted, merged


class _Sentence(NamedTuple):
    paragraph: int
    section: tuple[str, ...]
    text: str            # the whole sentence
    norm: str            # padded normalized text of the part that counts (diff part for Changed)
    whole: bool          # Changed: the whole sentence is diff text
    full: str            # padded normalized text of the whole sentence (where cues and units
                         # are looked for)


class _Aligner:
    """Matching state for one article: the normalized texts, split into sentences lazily."""

    def __init__(self, art: Article, config: AlignConfig, counts: dict):
        self.art = art
        self.config = config
        self.counts = counts
        spans: dict[int, list[tuple[int, int]]] = {}
        loose: list[str] = []
        for p, text in art.diff_rows:
            para = art.paragraphs[p][1] if 0 <= p < len(art.paragraphs) else None
            i = para.find(text) if para is not None else -1
            if i < 0:
                loose.append(text)
                counts["diff_rows_not_located"] = counts.get("diff_rows_not_located", 0) + 1
                continue
            spans.setdefault(p, []).append((i, i + len(text)))
        self.units = [_Unit(p, tuple(art.paragraphs[p][0]), art.paragraphs[p][1], _merge(s))
                      for p, s in sorted(spans.items())]
        self.units += [_Unit(-1, (), t, [(0, len(t))]) for t in loose]
        self.diff_spans = spans
        # padded normalized diff text of each unit and of them all, for a quick "is it
        # anywhere here" test before any sentence is split
        self.unit_norm = [_pad(" | ".join(search_form(u.text[a:b]) for a, b in u.spans))
                          for u in self.units]
        self.diff_norm = _pad(" | ".join(n.strip() for n in self.unit_norm))
        self.para_norm = [_pad(search_form(t)) for _, t in art.paragraphs]
        self.all_norm = _pad(" | ".join(n.strip() for n in self.para_norm))
        self._sentences: dict[int, list[tuple[int, int]]] = {}
        self._removed_norm: str | None = None
        self._old_norm: str | None = None

    # --- sentences of a paragraph, split once
    def _spans(self, key, text: str) -> list[tuple[int, int]]:
        s = self._sentences.get(key)
        if s is None:
            s = self._sentences[key] = spacy_sentence_spans(text)
        return s

    def changed_sentences(self, u: int) -> Iterator[_Sentence]:
        unit = self.units[u]
        key = unit.index if unit.index >= 0 else ("loose", u)
        for a, b in self._spans(key, unit.text):
            parts = [(max(a, x), min(b, y)) for x, y in unit.spans if x < b and y > a]
            if not parts:
                continue
            whole = any(x <= a and y >= b for x, y in parts)
            full = _pad(search_form(unit.text[a:b]))
            norm = full if whole else _pad(" | ".join(search_form(unit.text[x:y])
                                                      for x, y in parts))
            yield _Sentence(unit.index, unit.section, unit.text[a:b], norm, whole, full)

    def unchanged_sentences(self, p: int) -> Iterator[_Sentence]:
        section, text = self.art.paragraphs[p]
        diff = self.diff_spans.get(p, [])
        for a, b in self._spans(p, text):
            if any(x < b and y > a for x, y in diff):
                continue
            norm = _pad(search_form(text[a:b]))
            yield _Sentence(p, tuple(section), text[a:b], norm, True, norm)

    # --- searching
    def find_changed(self, forms: list[Form], fuzzy: list[tuple[str, str]],
                     cue: tuple[str, ...] | None = None):
        return self._find(forms, fuzzy, cue, self.diff_norm, self.unit_norm,
                          self.changed_sentences)

    def find_unchanged(self, forms: list[Form], fuzzy: list[tuple[str, str]],
                       cue: tuple[str, ...] | None = None):
        return self._find(forms, fuzzy, cue, self.all_norm, self.para_norm,
                          self.unchanged_sentences)

    def _find(self, forms: list[Form], fuzzy: list[tuple[str, str]],
              cue: tuple[str, ...] | None, region: str, parts: list[str],
              sentences: Callable[[int], Iterator[_Sentence]]):
        """(sentence, match kind, score, surface) of the first form (best first) found in a
        sentence of `parts` (the normalized text of each unit or paragraph of `region`, in
        document order), else of the best near match of a label; None when neither is."""
        for f in forms:
            if f.norm not in region:
                continue
            for i, part in enumerate(parts):
                if f.norm not in part:
                    continue
                for s in sentences(i):
                    if _hit(f, s):
                        return s, f.kind, f.score, f.surface
        return self._fuzzy(fuzzy, region, (s for i in range(len(parts)) for s in sentences(i)),
                           cue)

    def _fuzzy(self, labels, region: str, sentences, cue: tuple[str, ...] | None = None):
        if not labels:
            return None
        threshold = self.config.fuzzy_threshold
        # a cheap test on the whole region first; sentences only when it could pass
        live = [(n, s) for n, s in labels
                if fuzz.partial_ratio(n, region, score_cutoff=threshold)]
        if not live:
            return None
        best = None
        for sent in sentences:
            if cue and not any(c in sent.full for c in cue):
                continue
            for n, surface in live:
                score = fuzzy_score(n, sent.norm)
                if score >= threshold and (best is None or score > best[2]):
                    best = (sent, "fuzzy", round(score, 2), surface)
        return best

    def in_text(self, forms: list[Form], where: str) -> bool:
        if where == "old":
            if self._old_norm is None:
                old = self.art.old_paragraphs or ()
                self._old_norm = _pad(" | ".join(search_form(t) for _, t in old))
            region = self._old_norm
        elif where == "removed":
            if self._removed_norm is None:
                self._removed_norm = _pad(" | ".join(search_form(t) for t in self.art.removed))
            region = self._removed_norm
        elif where == "diff":
            region = self.diff_norm
        else:  # "unchanged": any sentence outside the diff
            return any(_hit(f, s) for f in forms if f.norm in self.all_norm
                       for p, pn in enumerate(self.para_norm) if f.norm in pn
                       for s in self.unchanged_sentences(p))
        return any(f.norm in region for f in forms)


def _hit(form: Form, sent: _Sentence) -> bool:
    """The form is in the part of the sentence that counts, and what it needs (its unit, its
    relation's cue) anywhere in the sentence."""
    return form.norm in sent.norm and (form.needs is None
                                       or any(n in sent.full for n in form.needs))


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _bump(counts: dict, group: str, reason: str, n: int = 1) -> None:
    g = counts.setdefault(group, {})
    g[reason] = g.get(reason, 0) + n


def _not_found(aligner: _Aligner, forms: list[Form], cue: tuple[str, ...] | None,
               changed: bool) -> str:
    """The reason a fact whose object is in no sentence that counts is rejected: where else
    the object is (a Changed fact's forms are looked for without their relation's cue)."""
    if not changed:
        return ("object_in_changed_text_only" if aligner.in_text(forms, "diff")
                else "object_not_in_article")
    forms = strip_cue(forms, cue)
    if aligner.in_text(forms, "unchanged"):
        return "object_in_unchanged_text_only"
    if aligner.in_text(forms, "removed"):
        return "object_only_in_removed_text"
    return "object_not_in_article"


def align_article(art: Article, facts: list[dict], config: AlignConfig,
                  months: tuple[str, str], counts: dict | None = None) -> list[dict]:
    """The aligned rows of one article's candidate facts (in the order given); failures are
    counted by reason under counts['rejected']['changed' | 'unchanged'].

    A Changed fact (kind new or updated) aligns when the article has diff text and one of the
    object's forms (label, aliases, dates, numbers: `object_forms`), or a near match of its
    label, occurs in the diff part of a sentence; the whole sentence is the evidence. An
    Unchanged fact aligns when month A has the page and a form occurs in a sentence of month B
    that has no diff text. The first form (best kind first) found in document order wins.
    A fact of a property with relation cues (`AlignConfig.relation_cues`) needs one of them in
    the same sentence, unless it matched by a demonym (`object_demonyms` of the fact, searched
    for `demonym_relations`); found only without one, it is rejected as relation_not_stated."""
    counts = counts if counts is not None else {}
    rejected = counts.setdefault("rejected", {})
    aligner = _Aligner(art, config, counts)
    cues = relation_cues(config)
    rows = []
    for fact in facts:
        changed = fact["category"] in CHANGED_KINDS
        group = "changed" if changed else "unchanged"
        forms = object_forms(fact, config)
        near = fuzzy_labels(fact, config)
        cue = cues.get(fact.get("property"))
        if not forms and not near:
            _bump(rejected, group, "object_unmatchable")
            continue
        if changed and not art.diff_rows:
            _bump(rejected, group, "article_not_in_diffset")
            continue
        if not changed and not art.in_month_a:
            _bump(rejected, group, "article_not_in_month_a")
            continue
        find = aligner.find_changed if changed else aligner.find_unchanged
        found = find(forms, near, cue)
        if found is None and cue and find(strip_cue(forms, cue), near):
            _bump(rejected, group, "relation_not_stated")
            continue
        if found is None:
            _bump(rejected, group, _not_found(aligner, forms, cue, changed))
            continue
        sent, kind, score, surface = found
        rows.append({
            "month_a": months[0], "month_b": months[1], "kind": fact["category"],
            "subject": fact["subject_label"], "relation": fact["property_label"],
            "object": fact["text"],
            "old_objects": fact["old_texts"] if fact["category"] == "updated" else None,
            "subject_qid": fact["subject"], "property": fact["property"],
            "object_qid": fact["object_qid"], "value": fact["value"],
            "value_type": fact["value_type"],
            "old_values": fact["old_values"] if fact["category"] == "updated" else None,
            "statement_id": fact["statement_id"], "subject_new": bool(fact["subject_new"]),
            "page_id": art.page_id, "title": art.title, "old_revid": art.old_revid,
            "new_revid": art.new_revid, "evidence": sent.text,
            "evidence_section": list(sent.section), "evidence_paragraph": sent.paragraph,
            "match_kind": kind, "match_score": float(score), "matched": surface,
            "object_in_month_a": (art.in_month_a and aligner.in_text(forms, "old"))
            if changed else None,
            "evidence_in_diffset": sent.whole if changed else None,
        })
        _bump(counts.setdefault("aligned_by_match", {}), group, kind)
    return rows


# ---------------------------------------------------------------------------------------
# Map: one factdiff shard -> candidates keyed by page, in runs per (page shard, bucket).

CANDIDATE_FIELDS = [("page_id", pa.int64()), ("title", pa.string())]


def _candidate_schema(factdiff_schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in CANDIDATE_FIELDS]
                     + [factdiff_schema.field(c) for c in FACT_COLUMNS])


@dataclass(frozen=True)
class MapTask:
    shard: int
    factdiff: str       # the factdiff shard file
    mapping: str        # month B's mapping shard file (same QID partition)
    work: str
    name: str           # "map-00003": map-00003.arrow + map-00003.json (written last)
    page_shards: int
    bucket_page_ids: int
    spill_rows: int
    compress: bool
    excluded_datatypes: tuple[str, ...]


def _id_array(col) -> np.ndarray:
    """Entity ids 'Q42' -> their numbers, as a numpy array (for searchsorted)."""
    return np.asarray(id_numbers(col).to_numpy(zero_copy_only=False), dtype=np.int64)


@resumable
def map_factdiff(task: MapTask) -> tuple[dict, dict]:
    """Map task: the facts of one factdiff shard that can become probes, with their page."""
    work = Path(task.work)
    t0 = time.perf_counter()
    mp = pq.read_table(task.mapping, columns=["qid", "page_id", "title"])
    m_qid = _id_array(mp.column("qid"))
    order = np.argsort(m_qid, kind="stable")
    m_qid = m_qid[order]
    m_page = np.asarray(mp.column("page_id").to_numpy(), dtype=np.int64)[order]
    m_title = mp.column("title").take(pa.array(order))
    del mp
    pf = pq.ParquetFile(task.factdiff)
    schema = _candidate_schema(pf.schema_arrow)
    tmp = work / f".{task.name}.arrow.tmp-{os.getpid()}"
    options = pa.ipc.IpcWriteOptions(compression="lz4" if task.compress else None)
    writer = pa.ipc.new_file(str(tmp), schema, options=options)
    index: dict[str, dict[str, list[int]]] = {}
    batches = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    counts = {"facts": {}, "rejected": {}}
    excluded = pa.array(list(task.excluded_datatypes), pa.string())

    def spill() -> None:
        nonlocal pending, pending_rows, batches
        if not pending_rows:
            return
        t = pa.concat_tables(pending).combine_chunks()
        pending, pending_rows = [], 0
        pid = np.asarray(t.column("page_id").to_numpy(), dtype=np.int64)
        shard = shard_array(pid, task.page_shards)
        bucket = pid // task.bucket_page_ids
        order = np.lexsort((bucket, shard))
        t = t.take(pa.array(order)).combine_chunks()
        shard, bucket = shard[order], bucket[order]
        key = shard * (1 << 40) + bucket
        bounds = np.flatnonzero(np.diff(key)) + 1
        starts = np.concatenate(([0], bounds)).tolist()
        ends = np.concatenate((bounds, [len(key)])).tolist()
        batch = t.to_batches()[0] if t.num_rows else None
        for a, b in zip(starts, ends):
            writer.write_batch(batch.slice(a, b - a))
            index.setdefault(str(int(shard[a])), {}).setdefault(str(int(bucket[a])), []) \
                .append(batches)
            batches += 1

    for i in range(pf.num_row_groups):
        t = pf.read_row_group(i, columns=FACT_COLUMNS, use_threads=False)
        cat = t.column("category")
        for c, n in zip(*_value_counts(cat)):
            counts["facts"][c] = counts["facts"].get(c, 0) + n
        t = t.filter(pc.not_equal(cat, "removed"))
        if not t.num_rows:
            continue
        group = pc.if_else(pc.equal(t.column("category"), "unchanged"), "unchanged", "changed")
        # in the order of the report: datatype, then object text, then the subject's page
        out = pc.fill_null(pc.is_in(t.column("datatype"), value_set=excluded), False)
        _count_reason(counts, group, out, "datatype_excluded")
        t, group = t.filter(pc.invert(out)), group.filter(pc.invert(out))
        out = pc.is_null(t.column("text"))
        _count_reason(counts, group, out, "object_without_text")
        t, group = t.filter(pc.invert(out)), group.filter(pc.invert(out))
        q = _id_array(t.column("subject"))
        pos = np.searchsorted(m_qid, q)
        pos_c = np.minimum(pos, max(len(m_qid) - 1, 0))
        found = (pos < len(m_qid)) & (m_qid[pos_c] == q) if len(m_qid) else np.zeros(len(q), bool)
        _count_reason(counts, group, pa.array(~found), "subject_without_article")
        keep = pa.array(found)
        t = t.filter(keep)
        if not t.num_rows:
            continue
        idx = pa.array(pos_c[found])
        t = pa.table({"page_id": pa.array(m_page[pos_c[found]]),
                      "title": m_title.take(idx),
                      **{c: t.column(c) for c in FACT_COLUMNS}}, schema=schema)
        pending.append(t)
        pending_rows += t.num_rows
        if pending_rows >= task.spill_rows:
            spill()
    spill()
    writer.close()
    os.replace(tmp, work / f"{task.name}.arrow")
    report = {"shard": task.shard, "counts": counts, "seconds": round(time.perf_counter() - t0, 4)}
    # index: {page shard: {page-id bucket: [batches]}}, two levels (the reduce reads a bucket
    # of one shard at a time), so not shuffle.PartitionedWriter's one
    return {"candidates": {"file": f"{task.name}.arrow", "index": index}}, report


def _value_counts(col) -> tuple[list, list]:
    if len(col) == 0:
        return [], []
    vc = pc.value_counts(col)
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


def _count_reason(counts: dict, group, mask, reason: str) -> None:
    if not len(mask):
        return
    for g, n in zip(*_value_counts(group.filter(mask))):
        _bump(counts["rejected"], g, reason, n)


# ---------------------------------------------------------------------------------------
# Reduce: one page shard, bucket by bucket, merged with the text of both months.

class _Cursor:
    """The rows of one Parquet shard sorted by page_id, visited in increasing page_id order,
    one row group in memory (row-group statistics skip groups without reading them)."""

    def __init__(self, path: Path, columns: list[str]):
        self.pf = pq.ParquetFile(path)
        self.columns = columns
        self.g = -1
        self.ids: np.ndarray | None = None
        self.table: pa.Table | None = None
        meta = self.pf.metadata
        pidx = self.pf.schema_arrow.get_field_index("page_id")
        self.max = []
        for i in range(meta.num_row_groups):
            st = meta.row_group(i).column(pidx).statistics
            self.max.append(st.max if st is not None and st.has_min_max else None)

    def _load(self, g: int) -> None:
        self.g = g
        self.table = None
        self.ids = np.asarray(self.pf.read_row_group(g, columns=["page_id"], use_threads=False)
                              .column(0).to_numpy(), dtype=np.int64)

    def _group_max(self, g: int) -> int:
        if self.max[g] is not None:
            return self.max[g]
        if self.g != g:
            self._load(g)
        return int(self.ids[-1]) if len(self.ids) else -1

    def rows(self, page_id: int) -> list[dict]:
        """Every row of `page_id` (none when the shard has no such page); ids asked for must
        not decrease."""
        out: list[dict] = []
        n = self.pf.metadata.num_row_groups
        g = max(self.g, 0)
        while g < n and self._group_max(g) < page_id:
            g += 1
        while g < n:
            if self.g != g:
                self._load(g)
            lo = int(np.searchsorted(self.ids, page_id, "left"))
            hi = int(np.searchsorted(self.ids, page_id, "right"))
            if lo == hi:
                break
            if self.table is None:
                self.table = self.pf.read_row_group(g, columns=self.columns, use_threads=False)
            out += self.table.slice(lo, hi - lo).to_pylist()
            if hi < len(self.ids):
                break
            g += 1   # the page may go on in the next row group
        return out


@dataclass(frozen=True)
class ReduceTask:
    shard: int
    work: str
    maps: tuple[str, ...]          # map sidecar names
    diffset: str                   # shard files
    removed: str
    snapshot_a: str
    snapshot_b: str
    out: str
    report: str                    # its report in the work folder
    config: AlignConfig
    month_a: str
    month_b: str
    demonyms: str = ""             # the work file of `collect_demonyms` ("" = none)


def collect_demonyms(factdiff: Path, shards: int, config: AlignConfig) -> dict[str, list[str]]:
    """Object QID -> its demonyms in `config.demonym_language`, from the `demonym_property`
    statements of month B in the fact diff (every category but removed): the demonyms that
    `demonym_relations` facts are also searched as. A column scan of one property."""
    if not config.demonym_relations:
        return {}
    prefix = config.demonym_language + ":"
    found: dict[str, set[str]] = {}
    for k in range(shards):   # streamed a batch at a time: one property of tens of millions
        pf = pq.ParquetFile(factdiff / shard_name(k))
        for batch in pf.iter_batches(batch_size=65_536, use_threads=False,
                                     columns=["category", "subject", "property", "value"]):
            keep = pc.and_(pc.equal(batch.column("property"), config.demonym_property),
                           pc.not_equal(batch.column("category"), "removed"))
            if not pc.any(keep).as_py():
                continue
            t = batch.filter(keep)
            for subject, value in zip(t.column("subject").to_pylist(),
                                      t.column("value").to_pylist()):
                if value.startswith(prefix) and len(value) > len(prefix):
                    found.setdefault(subject, set()).add(value[len(prefix):])
    release_memory()
    return {q: sorted(found[q]) for q in sorted(found)}


@lru_cache(maxsize=2)
def _load_demonyms(path: str) -> dict[str, list[str]]:
    return json.loads(Path(path).read_text()) if path else {}


def align_shard(task: ReduceTask) -> dict:
    """Reduce task: the aligned rows of one page shard."""
    t0 = time.perf_counter()
    work = Path(task.work)
    sides = [json.loads((work / m).read_text())["files"]["candidates"] for m in task.maps]
    readers = {}
    buckets: set[int] = set()
    for side in sides:
        buckets.update(int(b) for b in side["index"].get(str(task.shard), {}))
    diff = _Cursor(Path(task.diffset), ["page_id", "paragraph", "text"])
    removed = _Cursor(Path(task.removed), ["page_id", "text"])
    snap_a = _Cursor(Path(task.snapshot_a), ["page_id", "revid", "paragraphs"])
    snap_b = _Cursor(Path(task.snapshot_b), ["page_id", "title", "revid", "paragraphs"])
    counts: dict = {"candidates": {}, "rejected": {}, "aligned": {}}
    n_facts = 0
    buf: list[dict] = []
    months = (task.month_a, task.month_b)
    demonyms = _load_demonyms(task.demonyms)
    by_demonym = set(task.config.demonym_relations)
    w = ShardWriter(Path(task.out), ALIGNED_SCHEMA)
    try:
        for b in sorted(buckets):
            tables = []
            for side in sides:
                ids = side["index"].get(str(task.shard), {}).get(str(b))
                if not ids:
                    continue
                path = str(work / side["file"])
                if path not in readers:
                    readers[path] = pa.ipc.open_file(pa.OSFile(path))
                tables += [pa.Table.from_batches([readers[path].get_batch(i)]) for i in ids]
            t = pa.concat_tables(tables)
            t = t.take(pc.sort_indices(pa.table({
                "p": t.column("page_id"), "s": id_numbers(t.column("subject")),
                "r": id_numbers(t.column("property")),
                "id": t.column("statement_id")}),
                [("p", "ascending"), ("s", "ascending"), ("r", "ascending"),
                 ("id", "ascending")]))
            pids = np.asarray(t.column("page_id").to_numpy(), dtype=np.int64)
            bounds = np.flatnonzero(np.diff(pids)) + 1
            starts = np.concatenate(([0], bounds)).tolist()
            ends = np.concatenate((bounds, [len(pids)])).tolist()
            for a, e in zip(starts, ends):
                facts = t.slice(a, e - a).to_pylist()
                n_facts += len(facts)
                for f in facts:
                    _bump(counts, "candidates", _group(f["category"]))
                    if f["property"] in by_demonym and f["object_qid"] in demonyms:
                        f["object_demonyms"] = demonyms[f["object_qid"]]
                art = _article(int(pids[a]), diff, removed, snap_a, snap_b)
                if art is None:   # the mapping names a page that month B's snapshot lacks
                    for f in facts:
                        _bump(counts["rejected"], _group(f["category"]), "article_not_in_month_b")
                    continue
                rows = align_article(art, facts, task.config, months, counts)
                for r in rows:
                    _bump(counts, "aligned", r["kind"])
                buf += rows
                if len(buf) >= ROW_GROUP_ROWS:
                    w.write(pa.Table.from_pylist(buf, schema=ALIGNED_SCHEMA))
                    buf = []
            del t, tables
        w.write(pa.Table.from_pylist(buf, schema=ALIGNED_SCHEMA))
        report = {"shard": task.shard, "counts": counts, "facts": n_facts,
                  "seconds": round(time.perf_counter() - t0, 4)}
        # the report goes to the work folder before the shard is in place: a shard that exists
        # always has its report, so a resumed run still counts every shard
        write_json_atomic(Path(task.report), report)
        w.close()
    except BaseException:
        w.abort()
        raise
    release_memory()
    return report


def _group(kind: str) -> str:
    return "changed" if kind in CHANGED_KINDS else "unchanged"


def _article(page_id: int, diff: _Cursor, removed: _Cursor, snap_a: _Cursor,
             snap_b: _Cursor) -> Article | None:
    b = snap_b.rows(page_id)
    if not b:
        return None
    b = b[0]
    a = snap_a.rows(page_id)
    paragraphs = [(tuple(p["section"] or ()), p["text"]) for p in b["paragraphs"] or ()]
    old = [(tuple(p["section"] or ()), p["text"]) for p in a[0]["paragraphs"] or ()] if a else None
    return Article(
        page_id=page_id, title=b["title"], new_revid=b["revid"], paragraphs=paragraphs,
        diff_rows=[(r["paragraph"], r["text"]) for r in diff.rows(page_id)],
        removed=[r["text"] for r in removed.rows(page_id)],
        in_month_a=bool(a), old_revid=a[0]["revid"] if a else None, old_paragraphs=old)


# ---------------------------------------------------------------------------------------
# The stage.

def _inputs(month_a: str, month_b: str, wiki: str, data_root: DataRoot
            ) -> dict[str, tuple[Path, dict]]:
    """Every input's folder and manifest, checked, with a message that says how to make a
    missing one."""
    diff_hint = f"run `twiki diff --from {month_a} --to {month_b}` first"
    wanted = {   # name: (folder, its stage, what it is, how to make it)
        "factdiff": (data_root.factdiff(month_a, month_b), "factdiff",
                     f"fact diff {month_a} -> {month_b}",
                     f"run `twiki factdiff --from {month_a} --to {month_b}` first"),
        "mapping": (data_root.facts(month_b, "mapping"), "facts.mapping",
                    f"page_id <-> QID mapping of {month_b}",
                    f"run `twiki facts --month {month_b}` (after its snapshot) first"),
        "diffset": (data_root.diffset(wiki, month_a, month_b), "diff",
                    f"{wiki} diffset {month_a} -> {month_b}", diff_hint),
        "removed": (data_root.diffset(wiki, month_a, month_b, part="removed"), "diff-removed",
                    f"{wiki} removed text {month_a} -> {month_b}", diff_hint),
        **{f"snapshot_{side}": (data_root.snapshot(wiki, m), "extract", f"{wiki} snapshot of {m}",
                                f"run `twiki snapshot --month {m}` first")
           for side, m in (("a", month_a), ("b", month_b))},
    }
    ins = {name: (folder, require_artifact(folder, what, hint, stage=stage))
           for name, (folder, stage, what, hint) in wanted.items()}
    shard_count = {name: m["shard_count"] for name, (_, m) in ins.items()}
    if shard_count["factdiff"] != shard_count["mapping"]:
        raise TwikiError(f"the fact diff has {shard_count['factdiff']} shards and the mapping of "
                         f"{month_b} {shard_count['mapping']}: both come from the facts' "
                         f"--shards; rebuild the facts of both months with the same count")
    text = {shard_count[name] for name in ("diffset", "removed", "snapshot_a", "snapshot_b")}
    if len(text) != 1:
        raise TwikiError(f"the snapshots and diffset of {month_a} -> {month_b} have different "
                         f"shard counts ({sorted(text)}); rebuild them with one --shards")
    return ins


def _describe(result: StageResult) -> str:
    aligned, initial = result.report.get("aligned", {}), result.report.get("initial", {})
    return (f"unchanged {aligned.get('unchanged', 0)} of {initial.get('unchanged', 0)}, "
            f"changed {aligned.get('changed', 0)} of {initial.get('changed', 0)}")


def align_month_pair(month_a: str, month_b: str, *, wiki: str = "enwiki",
                     data_root: DataRoot | None = None, executor: Executor | None = None,
                     config: AlignConfig = AlignConfig(),
                     options: AlignOptions = AlignOptions()) -> StageResult:
    """Build (or confirm, or repair) data/probes/<A>_<B>/aligned/: the facts of the fact diff
    A -> B stated in month B's text, each with its evidence sentence (see `align_article`)."""
    month_a, month_b = month_pair(month_a, month_b)
    check_wiki(wiki)
    data_root, executor = stage_defaults(data_root, executor)
    ins = _inputs(month_a, month_b, wiki, data_root)
    folder = {name: f for name, (f, _) in ins.items()}
    shards = ins["snapshot_b"][1]["shard_count"]
    build = ArtifactBuild(data_root.aligned(month_a, month_b), stage=STAGE,
                          stage_version=STAGE_VERSION,
                          inputs={name: m["key"] for name, (_, m) in ins.items()},
                          config={"wiki": wiki, "from": month_a, "to": month_b, **asdict(config)},
                          shards=shards, schema=ALIGNED_SCHEMA)
    run = StageRun(f"align {month_a} -> {month_b}", build, data_root=data_root,
                   executor=executor)
    if run.current:
        return run.result(_describe, what="aligned facts")
    work = run.work("probes", f"{month_a}_{month_b}", "align")
    factdiff_files = [folder["factdiff"] / shard_name(k)
                      for k in range(ins["factdiff"][1]["shard_count"])]
    maps = [MapTask(k, str(path), str(folder["mapping"] / shard_name(k)), str(work),
                    f"map-{k:05d}", shards, options.bucket_page_ids, options.spill_rows,
                    options.compress_work, config.excluded_datatypes)
            for k, path in enumerate(factdiff_files)]
    map_reports = run.map(map_factdiff, maps, phase="facts", unit="B",
                          weights=[path.stat().st_size + 1 for path in factdiff_files])
    map_s = run.seconds()
    sidecars = markers(maps)
    demonyms = work / "demonyms.json"
    if not demonyms.exists():
        write_json_atomic(demonyms, collect_demonyms(folder["factdiff"], len(factdiff_files),
                                                     config))
    tasks = [ReduceTask(s, str(work), sidecars, str(folder["diffset"] / shard_name(s)),
                        str(folder["removed"] / shard_name(s)),
                        str(folder["snapshot_a"] / shard_name(s)),
                        str(folder["snapshot_b"] / shard_name(s)),
                        str(build.shard_path(s)), str(work / f"reduce-{s:05d}.json"), config,
                        month_a, month_b, str(demonyms))
             for s in build.pending_shards()]
    weights = [(folder["snapshot_b"] / shard_name(t.shard)).stat().st_size + 1 for t in tasks]
    reduce_reports = run.map(align_shard, tasks, phase="text", unit="B", weights=weights)
    reduce_s = run.seconds() - map_s
    if build.state == "build":   # shards of a killed run were reduced then: all their reports
        reduce_reports = [json.loads((work / f"reduce-{s:05d}.json").read_text())
                          for s in range(shards)]
    cpu = sum(r["seconds"] for r in map_reports) + sum(r["seconds"] for r in reduce_reports)
    facts_in = sum(r["facts"] for r in reduce_reports)
    run.publish(_align_report(ins["factdiff"][1], map_reports, reduce_reports),
                {"map_s": round(map_s, 3), "reduce_s": round(reduce_s, 3),
                 "cpu_s": round(cpu, 3), "shards_built": len(tasks),
                 "facts_per_second_per_worker": round(facts_in / cpu, 1) if cpu else None},
                keep_work=options.keep_work)
    result = run.result(_describe, what="aligned facts", shards_built=len(tasks))
    log.info("%s", result.summary())
    return result


def _align_report(fd_manifest: dict, map_reports: list[dict], reduce_reports: list[dict]
                  ) -> dict:
    """Counts of the stage, by probe set (unchanged | changed): the initial categorization (the
    fact diff's), the candidates that reached an article, the aligned facts (and by match
    kind), and every fact left out, by reason."""
    fd = fd_manifest.get("report", {}).get("counts", {})
    initial = {"unchanged": fd.get("unchanged", 0),
               "changed": fd.get("new", 0) + fd.get("updated", 0),
               "new": fd.get("new", 0), "updated": fd.get("updated", 0)}
    m = sum_counts(r["counts"] for r in map_reports)
    r = sum_counts(x["counts"] for x in reduce_reports)
    aligned = {"unchanged": 0, "new": 0, "updated": 0, **r.get("aligned", {})}
    aligned["changed"] = aligned["new"] + aligned["updated"]
    return {"initial": initial, "candidates": r.get("candidates", {}), "aligned": aligned,
            "aligned_by_match": r.get("aligned_by_match", {}),
            "rejected": sum_counts([m.get("rejected", {}), r.get("rejected", {})]),
            "diff_rows_not_located": r.get("diff_rows_not_located", 0)}
