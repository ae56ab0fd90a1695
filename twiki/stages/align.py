"""align: the fact diff of months A -> B, aligned to month B's Wikipedia text.

Reads data/factdiff/<A>_<B>/ (facts by subject QID), data/facts/<B>/mapping/ (QID -> page_id),
data/facts/<B>/links/ (month B's wikilinks resolved to items, when built), the diffset
data/diffsets/<wiki>/<A>_<B>/ (and its removed text) and both snapshots, and writes
data/probes/<A>_<B>/aligned/: one row per fact stated by a sentence of its subject's article,
with that sentence (the evidence), partitioned by page_id like the text; and
data/probes/<A>_<B>/unaligned/<reason>/: the candidates alignment left out, one folder a reason.

  Changed (new_relation, added_value, replacement, new_entity; the old fact diff's new, updated)
          the article is in the diffset and the fact is stated in its diff text
  Unchanged  the article is in both months and the fact is stated in a sentence of month B
          that the diff left alone
  ended, historical, removed facts are no candidates (counted in the report)

When a sentence states a fact (issue 15: a string equal to the object's label is not enough):
  link       an item object (s, r, o): a link of the sentence resolves to o
  discourse  an unlinked mention of a surface form that the same article links to o (one
             sense per article: the shown texts of the article's links to o)
  label      o's label, an alias (or, for `demonym_relations`, o's demonym), only where no other
             entity of the article is linked under that form: a form that the article links to
             another item is refused everywhere ("Ireland" when "Ireland" is linked to the
             island), and inside a longer span linked to another item, or an unlinked mention
             of such a span's text, the form is not searched ("English" in "English Channel",
             "Ireland" in "Northern Ireland")
  literal    dates at their precision, quantities with their unit, strings as rendered
and the relation is evidenced: a cue of the property (twiki/stages/relation_cues.json, a word
or short phrase, whole words after normalization, or a pattern around the object) in the same
sentence. Link matches of a property marked link_is_enough need no cue. A demonym needs the
cue too: citizenship's lexicon has the pattern of Wikipedia's first sentence, 'is a German
former footballer' ('the Swiss Matura' does not state it).
Stricter rule for a property with no lexicon entry: it is not aligned at all (rejected as
property_without_cues); with AlignConfig.unlisted = "link", only a link match aligns it (an item
object linked in the sentence); its labels, discourse mentions and literals never do.
Every row records its match kind and the cue found.

Two phases, both resumable (work files under data/work/probes/...):
  map     one factdiff shard -> candidates re-keyed to page_id (month B's mapping), written as
          runs per (page shard, page-id bucket)
  reduce  one page shard -> for each bucket in page_id order, its candidates sorted and merged
          with the diffset, removed text, both snapshots and the links (all sorted by page_id),
          streaming
Memory: the map holds one spill and the shard's mapping (16 bytes an article); the reduce one
bucket of candidates and one row group per input. Neither grows with the number of articles.
Rows are kept for the rejections of the reduce (alignment proper); the map's pre-filters
(datatype or property excluded, object without text, subject without article: most of
Wikidata's statements) are counted only.
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
from typing import Iterator, NamedTuple, Sequence

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
from .factdiff import FACTDIFF_SCHEMA
from .factdiff import PROBE_KIND as FACTDIFF_PROBE_KIND

log = logging.getLogger("twiki")

STAGE = "align"
# Bump when matching or the row layout changes: aligned sets made before are rebuilt.
STAGE_VERSION = 3
LINKS_STAGE = "facts.links"   # month B's links resolved to items (twiki/stages/links.py, C2)

CHANGED_KINDS = ("new", "updated")
"""The probes' `kind` values of the Changed set (the `kind` column: unchanged | new | updated)."""
MATCH_KINDS = ("link", "discourse", "label", "literal")

# The fact diff's categories and the probe kind of each (twiki/stages/factdiff.py).
PROBE_KIND = FACTDIFF_PROBE_KIND
NOT_CANDIDATES = ("ended", "historical", "removed")
"""Categories that never become probes: a value that gained an end time, one that had ended in
month A already, a value gone in month B."""


def change_type(fact: dict) -> str:
    """The fact's change type: its fact diff category."""
    return fact["category"]


# ---------------------------------------------------------------------------------------
# The relation cue lexicon (a data file, twiki/stages/relation_cues.json).

LEXICON = Path(__file__).with_name("relation_cues.json")


@lru_cache(maxsize=4)
def load_lexicon(path: str = "") -> dict[str, dict]:
    """property -> {"label", "cues", "link_is_enough", "patterns"} from the lexicon file
    (`path`, default the packaged relation_cues.json). Keys starting with '_' are comments."""
    p = Path(path) if path else LEXICON
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the relation cue lexicon {p}: {e}") from None
    out = {}
    for prop, entry in data.items():
        if prop.startswith("_"):
            continue
        if not re.fullmatch(r"P[1-9]\d*", prop) or not isinstance(entry, dict) \
                or not entry.get("cues"):
            raise ConfigError(f"relation cue lexicon {p}: {prop!r} needs a property id and cues")
        out[prop] = entry
    return out


def _lexicon_cues() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted((p, tuple(e["cues"])) for p, e in load_lexicon().items()))


def _lexicon_flag(flag: str) -> tuple[str, ...]:
    return tuple(sorted(p for p, e in load_lexicon().items() if e.get(flag)))


def _lexicon_patterns() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted((p, tuple(e["patterns"])) for p, e in load_lexicon().items()
                        if e.get("patterns")))


# Wiki-internal properties whose values are strings about Wikimedia itself, or identifiers
# that older dumps type as `string` (before the external-id datatype, 2016): never knowledge an
# article states in prose. Beside `excluded_datatypes`, which catches them in newer dumps.
DEFAULT_EXCLUDED_PROPERTIES = (
    # about Wikimedia itself
    "P373", "P935", "P1472", "P1612",   # Commons category, gallery, Creator, Institution
    "P910", "P1151", "P3722",           # topic's main category, main portal; Commons maps cat.
    "P1740", "P1464", "P1465", "P1791", "P1792", "P3876", "P2033", "P2517",  # 'category for ...'
    "P1423", "P1424", "P1753", "P1754",  # template's / topic's main template, list <-> category
    "P424",                             # Wikimedia language code
    "P1630", "P1921", "P3303", "P1793",  # formatter URL / URI, third-party formatter, regex
    # identifiers that dumps before the external-id datatype (2016) type as `string`: the
    # string properties of tests/data/wikimedia/wikidata (2014-2015 entities), and their kin
    "P214", "P227", "P213", "P244", "P268", "P269", "P349", "P345", "P434", "P435", "P436",
    "P646", "P691", "P906", "P950", "P1006", "P1015", "P1263", "P1417", "P2163", "P998",
    "P1036", "P1005", "P949", "P1273", "P1233", "P1207", "P1368", "P947", "P535", "P409",
    "P396", "P1415", "P1375", "P1670", "P1284", "P866", "P212", "P957", "P1245", "P508",
    "P1051", "P2979", "P1695", "P1816", "P243", "P1469", "P1285", "P2003", "P2002", "P2013",
    "P3035", "P8098", "P1814", "P898",   # ... and a kana reading, an IPA transcription
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
    pa.field("old_objects", pa.list_(pa.string())),            # replacement: A's gone values
    pa.field("subject_qid", pa.string(), nullable=False),
    pa.field("property", pa.string(), nullable=False),         # "P800"
    pa.field("object_qid", pa.string()),                       # item values; null for literals
    pa.field("value", pa.string(), nullable=False),            # canonical value (facts' value)
    pa.field("value_type", pa.string(), nullable=False),       # item|time|quantity|string|...
    pa.field("old_values", pa.list_(pa.string())),             # replacement: canonical, gone
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
    pa.field("change_type", pa.string()),                      # the fact diff's category
    pa.field("cue", pa.string()),                              # the relation cue found (or null)
    pa.field("object_aliases", pa.list_(pa.string())),         # item objects' English aliases
    pa.field("valid_from", pa.string()),                       # P580 start time, else P585
    pa.field("valid_to", pa.string()),                         # P582 end time
])

# The factdiff columns a candidate carries (plus page_id and title from the mapping), and the
# qualifier columns it carries when the fact diff has them (contract C3).
FACT_COLUMNS = ["category", "subject", "subject_label", "property", "property_label",
                "statement_id", "value_type", "datatype", "value", "text", "object_qid",
                "object_label", "object_aliases", "unit_qid", "precision", "old_values",
                "old_texts", "subject_new"]
TIME_COLUMNS = ["start_time", "end_time", "point_in_time"]

# Why alignment left a candidate out (the reduce's reasons; one unaligned/<reason>/ each).
UNALIGNED_REASONS = (
    "article_not_in_month_b", "object_unmatchable", "article_not_in_diffset",
    "article_not_in_month_a", "property_without_cues", "relation_not_stated",
    "label_refused_other_entity", "object_in_changed_text_only",
    "object_in_unchanged_text_only", "object_only_in_removed_text", "object_not_in_article")


def _candidate_fields() -> list[pa.Field]:
    names = FACTDIFF_SCHEMA.names
    return ([pa.field("page_id", pa.int64()), pa.field("title", pa.string())]
            + [FACTDIFF_SCHEMA.field(c) for c in FACT_COLUMNS + TIME_COLUMNS if c in names])


UNALIGNED_SCHEMA = pa.schema(_candidate_fields()
                             + [pa.field("reason", pa.string(), nullable=False)])
"""A candidate alignment left out: the columns the candidate had, and the reason."""


@dataclass(frozen=True)
class AlignConfig:
    """What decides which facts align and to which sentence (all of it is in the artifact key)."""

    fuzzy: bool = True
    """Try near matches (rapidfuzz) for item labels and aliases that have no exact match (a
    `label` match with a score below 100; it needs the relation's cue like any label)."""
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
    excluded_properties: tuple[str, ...] = DEFAULT_EXCLUDED_PROPERTIES
    """Properties never aligned whatever their datatype (`DEFAULT_EXCLUDED_PROPERTIES`): strings
    about Wikimedia itself (Commons category P373, Commons gallery P935, Commons Creator P1472,
    Commons Institution P1612, topic's main category P910, main portal P1151, 'category for
    ...' P1740 and kin, formatter URLs) and identifiers that dumps before 2016 type as `string`
    (VIAF P214, GND P227, IMDb P345, ...: the string properties of the 2014-2015 entities in
    tests/data/wikimedia/wikidata). In prose they are found only as homonyms (the Commons
    category 'Oliver Kahn' is the article's title)."""
    relation_cues: tuple[tuple[str, tuple[str, ...]], ...] = field(
        default_factory=_lexicon_cues)
    """(property, cue words or phrases) from the lexicon file twiki/stages/relation_cues.json
    (about 80 properties: the frequent ones of real probes). A fact of a property listed here
    aligns by a label, a discourse mention or a literal only in a sentence that also holds one
    of its cues (whole words, after normalization); a property absent aligns only by a link
    (see the module docstring). A dict is accepted too."""
    link_is_enough: tuple[str, ...] = field(default_factory=lambda: _lexicon_flag(
        "link_is_enough"))
    """Properties whose `link` matches need no cue (the lexicon's "link_is_enough": country,
    located in, notable work, author, genre, part of, ...: linking the object from the
    subject's article is how Wikipedia states them). Other listed properties' links need one."""
    cue_patterns: tuple[tuple[str, tuple[str, ...]], ...] = field(
        default_factory=_lexicon_patterns)
    """(property, regular expressions) that evidence the relation around the object's form
    ({o} in the pattern), on the raw sentence: the lead's '(11 March 1952 – 11 May 2001)' states
    the dates of birth and death without a cue word."""
    cue_window: int = 0
    """A label's or discourse mention's cue must be within this many words of it (0:
    anywhere in the sentence). Measured on the labelled set (tests/data/labelled, see
    docs/design.md): windows of 4, 6, 8 and 12 words lower both precision and recall (a
    correct sentence refused lets a later, wrong one win), so the default is off."""
    link_cue_window: int = 0
    """The same for the cue of a link match (0: anywhere in the sentence)."""
    unlisted: str = "skip"
    """A property with no lexicon entry: "skip" (never aligned) or "link" (aligned by a link
    to the object in the sentence, nothing else). Measured on the held-out labelled set
    (tests/data/labelled_heldout, blind-labelled, not tuned on): the link-only rule aligned 15
    facts of unlisted properties of which 4 were wrong ("(the first being Apollo 10)" for
    `follows`, a character's own paragraph for `characters`), against 44 of 44 right for the
    properties the lexicon covers; so unlisted properties are skipped by default. Add a
    property to twiki/stages/relation_cues.json to align it."""
    demonym_relations: tuple[str, ...] = ("P27",)
    """Properties whose object is also searched as its demonyms ('Danish' for Denmark):
    Wikipedia states citizenship as 'is a Danish politician' (a `label` match; the cue is the
    lexicon's pattern 'is/was a ... <demonym>', or a cue word: 'acquired Swiss citizenship').
    The demonyms are the objects' own `demonym_property` statements in month B's facts (the
    dump's, never a live lookup)."""
    demonym_property: str = "P1549"
    """Wikidata's demonym property (monolingual text)."""
    demonym_language: str = "en"
    """The language of the demonyms searched (the wiki's)."""

    def __post_init__(self) -> None:
        if self.unlisted not in ("skip", "link"):
            raise ConfigError(f"align.unlisted must be \"skip\" or \"link\", not {self.unlisted!r}")
        cues = self.relation_cues
        if isinstance(cues, dict):
            cues = cues.items()
        cues = tuple(sorted((str(p), tuple(str(w) for w in words)) for p, words in cues))
        for p, words in cues:
            if not re.fullmatch(r"P[1-9]\d*", p) or not words:
                raise ConfigError(f"relation_cues: {p!r} is not a property id with cue words")
        object.__setattr__(self, "relation_cues", cues)
        pats = self.cue_patterns
        if isinstance(pats, dict):
            pats = pats.items()
        pats = tuple(sorted((str(p), tuple(str(x) for x in xs)) for p, xs in pats))
        for p, xs in pats:
            for x in xs:
                try:
                    re.compile(x.replace("{o}", "o"))
                except re.error as e:
                    raise ConfigError(f"cue_patterns: {p} {x!r}: {e}") from None
        object.__setattr__(self, "cue_patterns", pats)
        for name in ("demonym_relations", "link_is_enough", "excluded_properties",
                     "excluded_datatypes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for p in (self.demonym_relations + self.link_is_enough + self.excluded_properties
                  + (self.demonym_property,)):
            if not re.fullmatch(r"P[1-9]\d*", p):
                raise ConfigError(f"{p!r} is not a Wikidata property id")
        if not 0 < self.fuzzy_threshold <= 100:
            raise ConfigError(f"fuzzy_threshold must be in (0, 100], not {self.fuzzy_threshold}")
        if self.cue_window < 0 or self.link_cue_window < 0:
            raise ConfigError("cue_window and link_cue_window must be at least 0 (0: anywhere)")
        if self.fuzzy_min_chars < 1 or self.number_min_digits < 1 or self.min_form_chars < 1:
            raise ConfigError("fuzzy_min_chars, number_min_digits and min_form_chars must be "
                              "at least 1")


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
    kind: str          # label | alias | demonym (items: a `label` match); date | number |
                       # string (a `literal` match)
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
    then its aliases (demonyms first for `demonym_relations`); a time in the forms Wikipedia
    writes dates; a quantity's amount (with its unit's label as a condition for short
    numbers); strings as they are. The relation's cue is checked apart (`_Aligner`)."""
    vt = fact["value_type"]
    raw: list[tuple[str, str, str | None, float]] = []   # surface, kind, needs, score
    if vt == "item":
        if fact.get("property") in config.demonym_relations:
            raw += [(d, "demonym", None, 100.0) for d in fact.get("object_demonyms") or ()]
        if fact.get("object_label"):
            raw.append((fact["object_label"], "label", None, 100.0))
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
    seen: set[tuple[str, object]] = set()
    for surface, kind, needs, score in raw:
        norm = search_form(surface)
        if len(norm) < config.min_form_chars:
            continue
        need = None
        if needs:   # Wikidata's unit labels are singular: 'year' also finds 'years'
            n = search_form(needs)
            need = (_pad(n), _pad(n + "s"), _pad(n + "es"))
        if (norm, need) in seen:
            continue
        seen.add((norm, need))
        forms.append(Form(_pad(norm), kind, surface, need, score))
    return forms


def _literal_surface(surface: str) -> str | None:
    """The raw text a form must be found as when normalization drops what tells it apart: a
    leading dot ('.uk', a top-level domain, is not '(UK)')."""
    s = surface.strip()
    return s.lower() if s.startswith(".") and len(s) > 1 else None


class _Cues(NamedTuple):
    words: tuple[tuple[str, str], ...]      # (padded normalized cue, the lexicon's surface)
    patterns: tuple[str, ...]               # regexes with {o}
    link_is_enough: bool


@lru_cache(maxsize=8)
def relation_cues(config: AlignConfig) -> dict[str, _Cues]:
    """property -> its cues (normalized and padded for whole-word search), patterns and
    whether a link alone states it; a property absent has no lexicon entry."""
    pats = dict(config.cue_patterns)
    enough = set(config.link_is_enough)
    out = {}
    for p, words in config.relation_cues:
        seen = dict.fromkeys((_pad(search_form(w)), w) for w in words if search_form(w))
        out[p] = _Cues(tuple(seen), pats.get(p, ()), p in enough)
    return out


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

Link = tuple[int, int, str]   # (start, end, qid): a link of a paragraph resolved to an item


@dataclass
class Article:
    """What the reduce knows about one page: month B's paragraphs, the diff rows (paragraph
    index, text) and removed texts, whether month A has the page, A's text on demand, and the
    links of month B's paragraphs resolved to items (`links[i]`: (start, end, qid) of
    paragraph i, character offsets in its text; paragraphs past the list have none)."""

    page_id: int
    title: str
    new_revid: int
    paragraphs: list[tuple[tuple[str, ...], str]]   # month B
    diff_rows: list[tuple[int, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    in_month_a: bool = False
    old_revid: int | None = None
    old_paragraphs: Sequence[tuple[tuple[str, ...], str]] | None = None
    links: list[list[Link]] = field(default_factory=list)


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
    plain: str           # `norm` with every linked span cut out (' | '): unlinked text only
    links: tuple[tuple[int, int, str, str], ...]   # (start, end, qid, shown) of the links in
                                                   # the part that counts


class _Found(NamedTuple):
    sent: _Sentence
    kind: str            # one of MATCH_KINDS
    score: float
    surface: str         # the form found
    cue: str | None


def _cut(parts: list[tuple[int, int]], cuts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`parts` without the spans `cuts` (both sorted)."""
    out = []
    for x, y in parts:
        for s, e in cuts:
            if e <= x or s >= y:
                continue
            if s > x:
                out.append((x, s))
            x = max(x, e)
            if x >= y:
                break
        if x < y:
            out.append((x, y))
    return out


def _mask(text: str, forms: Sequence[str]) -> str:
    for f in forms:
        if f in text:
            text = text.replace(f, " | ")
    return text


class _Aligner:
    """Matching state for one article: the normalized texts, split into sentences lazily, and
    the article's links: which surface forms it links to which item."""

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
        self.unit_of = {u.index: i for i, u in enumerate(self.units) if u.index >= 0}
        self.diff_spans = spans
        # padded normalized diff text of each unit and of them all, for a quick "is it
        # anywhere here" test before any sentence is split
        self.unit_norm = [_pad(" | ".join(search_form(u.text[a:b]) for a, b in u.spans))
                          for u in self.units]
        self.diff_norm = _pad(" | ".join(n.strip() for n in self.unit_norm))
        self.para_norm = [_pad(search_form(t)) for _, t in art.paragraphs]
        self.all_norm = _pad(" | ".join(n.strip() for n in self.para_norm))
        self._sentences: dict[object, list[tuple[int, int]]] = {}
        self._cache: dict[tuple, list[_Sentence]] = {}
        self._removed_norm: str | None = None
        self._old_norm: str | None = None
        # the article's links: per paragraph (sorted), and which item each shown form names
        self.links: list[list[Link]] = []
        self.forms_of: dict[str, dict[str, str]] = {}     # qid -> {padded form: shown text}
        self.owners: dict[str, set[str]] = {}             # padded form -> qids linked under it
        self.link_paras: dict[str, list[int]] = {}        # qid -> paragraphs linking it
        for p, (_, text) in enumerate(art.paragraphs):
            raw = art.links[p] if p < len(art.links) else ()
            ls = sorted((int(s), int(e), str(q)) for s, e, q in raw or ()
                        if 0 <= int(s) < int(e) <= len(text))
            self.links.append(ls)
            for s, e, q in ls:
                n = search_form(text[s:e])
                if len(n) >= config.min_form_chars:
                    self.forms_of.setdefault(q, {}).setdefault(_pad(n), text[s:e])
                    self.owners.setdefault(_pad(n), set()).add(q)
                lp = self.link_paras.setdefault(q, [])
                if not lp or lp[-1] != p:
                    lp.append(p)

    # --- sentences of a paragraph, split once
    def _spans(self, key, text: str) -> list[tuple[int, int]]:
        s = self._sentences.get(key)
        if s is None:
            s = self._sentences[key] = spacy_sentence_spans(text)
        return s

    def _sentence(self, p: int, section, text: str, a: int, b: int,
                  parts: list[tuple[int, int]], whole: bool, norm: str | None = None
                  ) -> _Sentence:
        full = _pad(search_form(text[a:b]))
        if norm is None:
            norm = full if whole else _pad(" | ".join(search_form(text[x:y]) for x, y in parts))
        links = self.links[p] if p >= 0 else ()
        if not links:
            return _Sentence(p, section, text[a:b], norm, whole, full, norm, ())
        inside = tuple((s, e, q, text[s:e]) for s, e, q in links
                       if any(s < y and e > x for x, y in parts))
        cuts = [(s, e) for s, e, _ in links if s < b and e > a]
        plain = _pad(" | ".join(search_form(text[x:y]) for x, y in _cut(parts, cuts)))
        return _Sentence(p, section, text[a:b], norm, whole, full, plain, inside)

    def changed_sentences(self, u: int) -> list[_Sentence]:
        got = self._cache.get(("c", u))
        if got is not None:
            return got
        unit = self.units[u]
        key = unit.index if unit.index >= 0 else ("loose", u)
        out = []
        for a, b in self._spans(key, unit.text):
            parts = [(max(a, x), min(b, y)) for x, y in unit.spans if x < b and y > a]
            if not parts:
                continue
            whole = any(x <= a and y >= b for x, y in parts)
            out.append(self._sentence(unit.index, unit.section, unit.text, a, b, parts, whole))
        self._cache[("c", u)] = out
        return out

    def unchanged_sentences(self, p: int) -> list[_Sentence]:
        got = self._cache.get(("u", p))
        if got is not None:
            return got
        section, text = self.art.paragraphs[p]
        diff = self.diff_spans.get(p, [])
        out = []
        for a, b in self._spans(p, text):
            if any(x < b and y > a for x, y in diff):
                continue
            out.append(self._sentence(p, tuple(section), text, a, b, [(a, b)], True))
        self._cache[("u", p)] = out
        return out

    # --- where to look: the counted sentences, in document order
    def region(self, changed: bool) -> str:
        return self.diff_norm if changed else self.all_norm

    def sentences(self, changed: bool, needle: str | None = None,
                  paragraphs: Sequence[int] | None = None) -> Iterator[_Sentence]:
        """The sentences that count (diff sentences for a Changed fact, untouched ones for an
        Unchanged fact), in document order; only parts holding `needle` (a padded normalized
        form), or only `paragraphs`, when given."""
        if changed:
            if paragraphs is not None:
                units = [self.unit_of[p] for p in paragraphs if p in self.unit_of]
            else:
                units = range(len(self.units))
            for u in units:
                if needle is None or needle in self.unit_norm[u]:
                    yield from self.changed_sentences(u)
        else:
            for p in (range(len(self.para_norm)) if paragraphs is None else paragraphs):
                if needle is None or needle in self.para_norm[p]:
                    yield from self.unchanged_sentences(p)

    def others_containing(self, form: str, qid: str | None) -> list[str]:
        """Forms the article links to items other than `qid` that hold `form` as whole words
        (longer ones: 'northern ireland' for 'ireland'), longest first."""
        out = {n for q, ns in self.forms_of.items() if q != qid for n in ns
               if form in n and n != form}
        return sorted(out, key=lambda n: (-len(n), n))

    # --- the relation's evidence
    @staticmethod
    def cue(sent: _Sentence, cues: _Cues | None, obj_norm: str, surface: str,
            window: int | None = None) -> str | None:
        """The cue of the relation in the sentence, outside the object's own mention (the
        'prize' of 'Nobel Prize' is not a cue of award received), within `window` words of
        that mention when given; None when none is."""
        if cues is None:
            return None
        has_obj = bool(obj_norm.strip()) and obj_norm in sent.full
        full = sent.full.replace(obj_norm, " \x00 ") if has_obj else sent.full
        near = None
        if window and has_obj:
            words = full.split()
            marks = [i for i, w in enumerate(words) if w == "\x00"]
            near = set()
            for i in marks:
                near.update(range(max(0, i - window), i + window + 1))
        for n, w in cues.words:
            if n not in full:
                continue
            if near is None:
                return w
            k = len(n.split())
            words = full.split()
            for i in range(len(words) - k + 1):
                if " ".join(words[i:i + k]) == n.strip() and (i in near or i + k - 1 in near):
                    return w
        for pat in cues.patterns:
            m = re.search(pat.replace("{o}", re.escape(surface)), sent.text, re.IGNORECASE)
            if m:
                return m.group(0)
        return None

    # --- searching
    def find_link(self, changed: bool, qid: str, cues: _Cues | None, flags: set
                  ) -> _Found | None:
        paras = self.link_paras.get(qid)
        if not paras:
            return None
        for sent in self.sentences(changed, paragraphs=paras):
            for s, e, q, shown in sent.links:
                if q != qid:
                    continue
                cue = self.cue(sent, cues, _pad(search_form(shown)), shown,
                               self.config.link_cue_window)
                if cue is None and cues is not None and not cues.link_is_enough:
                    flags.add("cue")
                    continue
                return _Found(sent, "link", 100.0, shown, cue)
        return None

    def find_mention(self, changed: bool, qid: str | None, forms: list[Form],
                     cues: _Cues | None, kind: str, flags: set) -> _Found | None:
        """The first form (best first) found in unlinked text that counts, in document order:
        a form the article links to another item is refused, and longer forms of other items
        are masked where they occur."""
        region = self.region(changed)
        for f in forms:
            if f.norm not in region:
                continue
            owners = self.owners.get(f.norm, set())
            if owners - {qid}:          # the article links this very form to another item
                flags.add("refused")
                continue
            longer = self.others_containing(f.norm, qid)
            raw = _literal_surface(f.surface)
            for sent in self.sentences(changed, f.norm):
                if f.norm not in sent.plain:
                    if f.norm in sent.norm:
                        flags.add("refused")
                    continue
                text = _mask(sent.plain, longer) if longer else sent.plain
                if f.norm not in text:
                    flags.add("refused")
                    continue
                if raw is not None and raw not in sent.text.lower():
                    continue
                if f.needs is not None and not any(n in sent.full for n in f.needs):
                    continue
                if cues is None:
                    flags.add("unlisted")
                    return None
                cue = self.cue(sent, cues, f.norm, f.surface, self.config.cue_window)
                if cue is None:
                    flags.add("cue")
                    continue
                return _Found(sent, kind, f.score, f.surface, cue)
        return None

    def find_literal(self, changed: bool, forms: list[Form], cues: _Cues | None, flags: set
                     ) -> _Found | None:
        region = self.region(changed)
        for f in forms:
            if f.norm not in region:
                continue
            raw = _literal_surface(f.surface)
            for sent in self.sentences(changed, f.norm):
                if f.norm not in sent.norm:
                    continue
                if raw is not None and raw not in sent.text.lower():
                    continue
                if f.needs is not None and not any(n in sent.full for n in f.needs):
                    continue
                if cues is None:
                    flags.add("unlisted")
                    return None
                cue = self.cue(sent, cues, f.norm, f.surface)
                if cue is None:
                    flags.add("cue")
                    continue
                return _Found(sent, "literal", f.score, f.surface, cue)
        return None

    def find_fuzzy(self, changed: bool, qid: str | None, labels: list[tuple[str, str]],
                   cues: _Cues | None, flags: set) -> _Found | None:
        """The best near match of a label (`fuzzy_score`) in unlinked text that counts, in a
        sentence with the relation's cue."""
        if not labels or cues is None:
            return None
        threshold = self.config.fuzzy_threshold
        region = self.region(changed)
        # a cheap test on the whole region first; sentences only when it could pass; never a
        # label the article links to another item
        live = [(n, s, self.others_containing(_pad(n), qid)) for n, s in labels
                if not self.owners.get(_pad(n), set()) - {qid}
                and fuzz.partial_ratio(n, region, score_cutoff=threshold)]
        if not live:
            return None
        best = None
        for sent in self.sentences(changed):
            for n, surface, longer in live:
                score = fuzzy_score(n, _mask(sent.plain, longer) if longer else sent.plain)
                if score >= threshold and (best is None or score > best.score):
                    cue = self.cue(sent, cues, "", surface)   # no position: anywhere
                    if cue is None:
                        flags.add("cue")
                        continue
                    best = _Found(sent, "label", round(score, 2), surface, cue)
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
            return any(f.norm in s.norm and (f.needs is None
                                             or any(n in s.full for n in f.needs))
                       for f in forms if f.norm in self.all_norm
                       for s in self.sentences(False, f.norm))
        return any(f.norm in region for f in forms)


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


def _not_found(aligner: _Aligner, forms: list[Form], changed: bool) -> str:
    """The reason a fact whose object is in no sentence that counts is rejected: where else
    the object is."""
    if not changed:
        return ("object_in_changed_text_only" if aligner.in_text(forms, "diff")
                else "object_not_in_article")
    if aligner.in_text(forms, "unchanged"):
        return "object_in_unchanged_text_only"
    if aligner.in_text(forms, "removed"):
        return "object_only_in_removed_text"
    return "object_not_in_article"


def _group(category: str) -> str:
    return "unchanged" if PROBE_KIND.get(category, category) == "unchanged" else "changed"


def align_article(art: Article, facts: list[dict], config: AlignConfig,
                  months: tuple[str, str], counts: dict | None = None,
                  unaligned: list[tuple[str, dict]] | None = None) -> list[dict]:
    """The aligned rows of one article's candidate facts (in the order given); failures are
    counted by reason under counts['rejected']['changed' | 'unchanged'], and, with
    `unaligned`, appended to it as (reason, fact).

    A Changed fact (new_relation, added_value, replacement, new_entity) aligns to a sentence
    that is diff text where the fact is stated; an Unchanged fact (month A has the page) to a
    sentence of month B that has no diff text. Stated (module docstring): an item object by a
    link (`Article.links`), else a discourse mention of a form the article links to it, else
    its label, aliases or demonyms where no other linked entity owns that form; a literal by
    its forms (`object_forms`); each with the relation's cue (`AlignConfig.relation_cues`) in
    the sentence, but for link matches of `link_is_enough` properties. A
    property without cues aligns by a link only. The first match (link, discourse, label,
    near label; forms best first) in document order wins. Reasons of a rejection:
    relation_not_stated (found, never with a cue), property_without_cues (found, but only a
    link would do), label_refused_other_entity (the form names another linked entity there),
    else where else the object is (`_not_found`)."""
    counts = counts if counts is not None else {}
    rejected = counts.setdefault("rejected", {})
    aligner = _Aligner(art, config, counts)
    cues_of = relation_cues(config)
    rows = []

    def refuse(fact: dict, group: str, reason: str) -> None:
        _bump(rejected, group, reason)
        if unaligned is not None:
            unaligned.append((reason, fact))

    for fact in facts:
        category = change_type(fact)
        kind = PROBE_KIND.get(category)
        if kind is None or category in NOT_CANDIDATES:
            continue
        changed = kind != "unchanged"
        group = "changed" if changed else "unchanged"
        forms = object_forms(fact, config)
        near = fuzzy_labels(fact, config)
        qid = fact.get("object_qid") if fact["value_type"] == "item" else None
        cues = cues_of.get(fact.get("property"))
        if not forms and not near and not (qid and qid in aligner.link_paras):
            refuse(fact, group, "object_unmatchable")
            continue
        if changed and not art.diff_rows:
            refuse(fact, group, "article_not_in_diffset")
            continue
        if not changed and not art.in_month_a:
            refuse(fact, group, "article_not_in_month_a")
            continue
        flags: set[str] = set()
        if cues is None and config.unlisted == "skip":
            refuse(fact, group, "property_without_cues")
            continue
        if qid:
            found = aligner.find_link(changed, qid, cues, flags)
            if found is None and cues is not None:
                discourse = [Form(n, "label", shown, None, 100.0)
                             for n, shown in aligner.forms_of.get(qid, {}).items()]
                found = aligner.find_mention(changed, qid, discourse, cues, "discourse", flags)
            if found is None:
                found = aligner.find_mention(changed, qid, forms, cues, "label", flags)
            if found is None and "unlisted" not in flags:
                found = aligner.find_fuzzy(changed, qid, near, cues, flags)
        else:
            found = aligner.find_literal(changed, forms, cues, flags)
        if found is None:
            if "cue" in flags:
                reason = "relation_not_stated"
            elif "unlisted" in flags:
                reason = "property_without_cues"
            elif "refused" in flags:
                reason = "label_refused_other_entity"
            else:
                extra = [Form(n, "label", s, None, 100.0)
                         for n, s in aligner.forms_of.get(qid, {}).items()] if qid else []
                reason = _not_found(aligner, forms + extra, changed)
            refuse(fact, group, reason)
            continue
        sent = found.sent
        replacement = category == "replacement"
        rows.append({
            "month_a": months[0], "month_b": months[1], "kind": kind,
            "subject": fact["subject_label"], "relation": fact["property_label"],
            "object": fact["text"],
            "old_objects": fact["old_texts"] if replacement else None,
            "subject_qid": fact["subject"], "property": fact["property"],
            "object_qid": fact["object_qid"], "value": fact["value"],
            "value_type": fact["value_type"],
            "old_values": fact["old_values"] if replacement else None,
            "statement_id": fact["statement_id"], "subject_new": bool(fact["subject_new"]),
            "page_id": art.page_id, "title": art.title, "old_revid": art.old_revid,
            "new_revid": art.new_revid, "evidence": sent.text,
            "evidence_section": list(sent.section), "evidence_paragraph": sent.paragraph,
            "match_kind": found.kind, "match_score": float(found.score),
            "matched": found.surface,
            "object_in_month_a": (art.in_month_a and aligner.in_text(forms, "old"))
            if changed else None,
            "evidence_in_diffset": sent.whole if changed else None,
            "change_type": category, "cue": found.cue,
            "object_aliases": list(fact.get("object_aliases") or []),
            "valid_from": fact.get("start_time") or fact.get("point_in_time"),
            "valid_to": fact.get("end_time"),
        })
        _bump(counts.setdefault("aligned_by_match", {}), group, found.kind)
        _bump(counts.setdefault("aligned_by_change_type", {}), group, category)
    return rows


# ---------------------------------------------------------------------------------------
# Map: one factdiff shard -> candidates keyed by page, in runs per (page shard, bucket).

CANDIDATE_FIELDS = [("page_id", pa.int64()), ("title", pa.string())]


def _fact_columns(factdiff_schema: pa.Schema) -> list[str]:
    """The factdiff columns candidates carry: FACT_COLUMNS, and the qualifier times where the
    fact diff has them."""
    return FACT_COLUMNS + [c for c in TIME_COLUMNS if c in factdiff_schema.names]


def _candidate_schema(factdiff_schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in CANDIDATE_FIELDS]
                     + [factdiff_schema.field(c) for c in _fact_columns(factdiff_schema)])


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
    excluded_properties: tuple[str, ...] = ()


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
    columns = _fact_columns(pf.schema_arrow)
    tmp = work / f".{task.name}.arrow.tmp-{os.getpid()}"
    options = pa.ipc.IpcWriteOptions(compression="lz4" if task.compress else None)
    writer = pa.ipc.new_file(str(tmp), schema, options=options)
    index: dict[str, dict[str, list[int]]] = {}
    batches = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    counts = {"facts": {}, "rejected": {}}
    excluded = pa.array(list(task.excluded_datatypes), pa.string())
    excluded_props = pa.array(list(task.excluded_properties), pa.string())
    not_candidates = pa.array(list(NOT_CANDIDATES), pa.string())

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
        t = pf.read_row_group(i, columns=columns, use_threads=False)
        cat = t.column("category")
        for c, n in zip(*_value_counts(cat)):
            counts["facts"][c] = counts["facts"].get(c, 0) + n
        t = t.filter(pc.invert(pc.is_in(cat, value_set=not_candidates)))
        if not t.num_rows:
            continue
        group = pc.if_else(pc.equal(t.column("category"), "unchanged"), "unchanged", "changed")
        # in the order of the report: datatype, property, then object text, then the page
        out = pc.fill_null(pc.is_in(t.column("datatype"), value_set=excluded), False)
        _count_reason(counts, group, out, "datatype_excluded")
        t, group = t.filter(pc.invert(out)), group.filter(pc.invert(out))
        out = pc.fill_null(pc.is_in(t.column("property"), value_set=excluded_props), False)
        _count_reason(counts, group, out, "property_excluded")
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
                      **{c: t.column(c) for c in columns}}, schema=schema)
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
    out: str | None                # the aligned shard (None: this call does not write it)
    report: str                    # its report in the work folder
    config: AlignConfig
    month_a: str
    month_b: str
    demonyms: str = ""             # the work file of `collect_demonyms` ("" = none)
    links: str = ""                # month B's links shard ("" = no links artifact)
    unaligned: tuple[tuple[str, str | None], ...] = ()   # (reason, its shard or None)


class _Writer:
    """A ShardWriter that may have nowhere to write (a shard this call does not rebuild)."""

    def __init__(self, path: str | None, schema: pa.Schema):
        self.schema = schema
        self.w = ShardWriter(Path(path), schema) if path else None
        self.buf: list[dict] = []

    def add(self, rows: list[dict]) -> None:
        if self.w is None:
            return
        self.buf += rows
        if len(self.buf) >= ROW_GROUP_ROWS:
            self.w.write(pa.Table.from_pylist(self.buf, schema=self.schema))
            self.buf = []

    def flush(self) -> None:
        if self.w is not None:
            self.w.write(pa.Table.from_pylist(self.buf, schema=self.schema))
            self.buf = []

    def close(self) -> None:
        if self.w is not None:
            self.w.close()

    def abort(self) -> None:
        if self.w is not None:
            self.w.abort()


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
    links = (_Cursor(Path(task.links), ["page_id", "paragraph", "start", "end", "qid"])
             if task.links else None)
    counts: dict = {"candidates": {}, "rejected": {}, "aligned": {}}
    n_facts = 0
    months = (task.month_a, task.month_b)
    demonyms = _load_demonyms(task.demonyms)
    by_demonym = set(task.config.demonym_relations)
    w = _Writer(task.out, ALIGNED_SCHEMA)
    left = {r: _Writer(path, UNALIGNED_SCHEMA) for r, path in task.unaligned}
    names = UNALIGNED_SCHEMA.names

    def keep(pairs: list[tuple[str, dict]]) -> None:
        by: dict[str, list[dict]] = {}
        for reason, f in pairs:
            by.setdefault(reason, []).append({**{n: f.get(n) for n in names}, "reason": reason})
        for reason, rows in by.items():
            if reason in left:
                left[reason].add(rows)

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
                art = _article(int(pids[a]), diff, removed, snap_a, snap_b, links)
                if art is None:   # the mapping names a page that month B's snapshot lacks
                    for f in facts:
                        _bump(counts["rejected"], _group(f["category"]), "article_not_in_month_b")
                    keep([("article_not_in_month_b", f) for f in facts])
                    continue
                out: list[tuple[str, dict]] = []
                rows = align_article(art, facts, task.config, months, counts, out)
                for r in rows:
                    _bump(counts, "aligned", r["kind"])
                w.add(rows)
                keep(out)
            del t, tables
        w.flush()
        for x in left.values():
            x.flush()
        report = {"shard": task.shard, "counts": counts, "facts": n_facts,
                  "seconds": round(time.perf_counter() - t0, 4)}
        # the report goes to the work folder before the shard is in place: a shard that exists
        # always has its report, so a resumed run still counts every shard
        write_json_atomic(Path(task.report), report)
        for x in left.values():
            x.close()
        w.close()
    except BaseException:
        w.abort()
        for x in left.values():
            x.abort()
        raise
    release_memory()
    return report


def _article(page_id: int, diff: _Cursor, removed: _Cursor, snap_a: _Cursor,
             snap_b: _Cursor, links: _Cursor | None = None) -> Article | None:
    b = snap_b.rows(page_id)
    if not b:
        return None
    b = b[0]
    a = snap_a.rows(page_id)
    paragraphs = [(tuple(p["section"] or ()), p["text"]) for p in b["paragraphs"] or ()]
    old = [(tuple(p["section"] or ()), p["text"]) for p in a[0]["paragraphs"] or ()] if a else None
    per_paragraph: list[list[Link]] = [[] for _ in paragraphs]
    for r in (links.rows(page_id) if links is not None else ()):
        if 0 <= r["paragraph"] < len(per_paragraph):
            per_paragraph[r["paragraph"]].append((r["start"], r["end"], r["qid"]))
    return Article(
        page_id=page_id, title=b["title"], new_revid=b["revid"], paragraphs=paragraphs,
        diff_rows=[(r["paragraph"], r["text"]) for r in diff.rows(page_id)],
        removed=[r["text"] for r in removed.rows(page_id)],
        in_month_a=bool(a), old_revid=a[0]["revid"] if a else None, old_paragraphs=old,
        links=per_paragraph)


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
    # month B's links resolved to items (contract C2): required when month B's snapshot keeps
    # its links (extract 4 on); an older snapshot has none, and then every item fact aligns by
    # its label (with its cue) only, and the report says so (`links`: false).
    links = data_root.facts(month_b, "links")
    if _keeps_links(ins["snapshot_b"][0]) or (links / "_manifest.json").exists():
        ins["links"] = (links, require_artifact(
            links, f"links of {month_b} resolved to items",
            f"run `twiki facts --month {month_b}` (after its snapshot) first", stage=LINKS_STAGE))
    else:
        log.warning("align %s -> %s: no links of %s (%s): items align by their labels only",
                    month_a, month_b, month_b, links)
    shard_count = {name: m["shard_count"] for name, (_, m) in ins.items()}
    if shard_count["factdiff"] != shard_count["mapping"]:
        raise TwikiError(f"the fact diff has {shard_count['factdiff']} shards and the mapping of "
                         f"{month_b} {shard_count['mapping']}: both come from the facts' "
                         f"--shards; rebuild the facts of both months with the same count")
    text = {shard_count[name] for name in ("diffset", "removed", "snapshot_a", "snapshot_b",
                                           "links") if name in shard_count}
    if len(text) != 1:
        raise TwikiError(f"the snapshots, diffset and links of {month_a} -> {month_b} have "
                         f"different shard counts ({sorted(text)}); rebuild them with one "
                         f"--shards")
    return ins


def _keeps_links(snapshot: Path) -> bool:
    """Whether a snapshot's paragraphs keep their links (extract 4 on): its schema says."""
    para = pq.read_schema(snapshot / shard_name(0)).field("paragraphs").type
    return (pa.types.is_list(para) and pa.types.is_struct(para.value_type)
            and para.value_type.get_field_index("links") >= 0)


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
    inputs = {name: m["key"] for name, (_, m) in ins.items()}
    cfg = {"wiki": wiki, "from": month_a, "to": month_b, **asdict(config)}
    build = ArtifactBuild(data_root.aligned(month_a, month_b), stage=STAGE,
                          stage_version=STAGE_VERSION, inputs=inputs, config=cfg,
                          shards=shards, schema=ALIGNED_SCHEMA)
    left = {r: ArtifactBuild(data_root.unaligned(month_a, month_b, r), stage=f"{STAGE}.unaligned",
                             stage_version=STAGE_VERSION, inputs=inputs,
                             config={**cfg, "reason": r}, shards=shards,
                             schema=UNALIGNED_SCHEMA) for r in UNALIGNED_REASONS}
    run = StageRun(f"align {month_a} -> {month_b}", build, *left.values(), data_root=data_root,
                   executor=executor)
    parts = {"unaligned": data_root.unaligned(month_a, month_b)}
    if run.current:
        return run.result(_describe, what="aligned facts", parts=parts)
    work = run.work("probes", f"{month_a}_{month_b}", "align")
    factdiff_files = [folder["factdiff"] / shard_name(k)
                      for k in range(ins["factdiff"][1]["shard_count"])]
    maps = [MapTask(k, str(path), str(folder["mapping"] / shard_name(k)), str(work),
                    f"map-{k:05d}", shards, options.bucket_page_ids, options.spill_rows,
                    options.compress_work, config.excluded_datatypes,
                    config.excluded_properties)
            for k, path in enumerate(factdiff_files)]
    map_reports = run.map(map_factdiff, maps, phase="facts", unit="B",
                          weights=[path.stat().st_size + 1 for path in factdiff_files])
    map_s = run.seconds()
    sidecars = markers(maps)
    demonyms = work / "demonyms.json"
    if not demonyms.exists():
        write_json_atomic(demonyms, collect_demonyms(folder["factdiff"], len(factdiff_files),
                                                     config))
    pending = {b.final: set(b.pending_shards()) for b in run.builds}
    todo = set().union(*pending.values())
    building = any(b.state == "build" for b in run.builds)
    if building:   # every shard's report is needed: redo those a finished run's work lacks
        todo |= {s for s in range(shards) if not (work / f"reduce-{s:05d}.json").exists()}

    def out(b: ArtifactBuild, s: int) -> str | None:
        return str(b.shard_path(s)) if s in pending[b.final] else None

    tasks = [ReduceTask(s, str(work), sidecars, str(folder["diffset"] / shard_name(s)),
                        str(folder["removed"] / shard_name(s)),
                        str(folder["snapshot_a"] / shard_name(s)),
                        str(folder["snapshot_b"] / shard_name(s)),
                        out(build, s), str(work / f"reduce-{s:05d}.json"), config,
                        month_a, month_b, str(demonyms),
                        str(folder["links"] / shard_name(s)) if "links" in folder else "",
                        tuple((r, out(b, s)) for r, b in left.items()))
             for s in sorted(todo)]
    weights = [(folder["snapshot_b"] / shard_name(t.shard)).stat().st_size + 1 for t in tasks]
    reduce_reports = run.map(align_shard, tasks, phase="text", unit="B", weights=weights)
    reduce_s = run.seconds() - map_s
    if building:   # shards of a killed run were reduced then: all their reports
        reduce_reports = [json.loads((work / f"reduce-{s:05d}.json").read_text())
                          for s in range(shards)]
    cpu = sum(r["seconds"] for r in map_reports) + sum(r["seconds"] for r in reduce_reports)
    facts_in = sum(r["facts"] for r in reduce_reports)
    run.publish(_align_report(ins["factdiff"][1], map_reports, reduce_reports,
                              links="links" in ins),
                {"map_s": round(map_s, 3), "reduce_s": round(reduce_s, 3),
                 "cpu_s": round(cpu, 3), "shards_built": len(tasks),
                 "facts_per_second_per_worker": round(facts_in / cpu, 1) if cpu else None},
                keep_work=options.keep_work)
    result = run.result(_describe, what="aligned facts", shards_built=len(tasks), parts=parts)
    log.info("%s", result.summary())
    return result


def _align_report(fd_manifest: dict, map_reports: list[dict], reduce_reports: list[dict],
                  *, links: bool = True) -> dict:
    """Counts of the stage, by probe set (unchanged | changed): the initial categorization (the
    fact diff's, by probe kind and by change type), the facts that are no candidates (ended,
    historical, removed), the candidates that reached an article, the aligned facts (by probe
    kind, by match kind, by change type), and every fact left out, by reason."""
    fd = fd_manifest.get("report", {}).get("counts", {})
    by_type: dict[str, int] = {}
    for c, n in fd.items():
        if c in PROBE_KIND:
            by_type[c] = by_type.get(c, 0) + n
    kinds = {"unchanged": 0, "new": 0, "updated": 0}
    for c, n in by_type.items():
        kinds[PROBE_KIND[c]] += n
    initial = {"unchanged": kinds["unchanged"], "changed": kinds["new"] + kinds["updated"],
               "new": kinds["new"], "updated": kinds["updated"],
               "by_change_type": {c: by_type[c] for c in sorted(by_type)}}
    m = sum_counts(r["counts"] for r in map_reports)
    r = sum_counts(x["counts"] for x in reduce_reports)
    aligned = {"unchanged": 0, "new": 0, "updated": 0, **r.get("aligned", {})}
    aligned["changed"] = aligned["new"] + aligned["updated"]
    facts = m.get("facts", {})
    return {"initial": initial,
            "not_candidates": {c: facts.get(c, 0) for c in NOT_CANDIDATES},
            "candidates": r.get("candidates", {}), "aligned": aligned,
            "aligned_by_match": r.get("aligned_by_match", {}),
            "aligned_by_change_type": r.get("aligned_by_change_type", {}),
            "links": links,
            "rejected": sum_counts([m.get("rejected", {}), r.get("rejected", {})]),
            "diff_rows_not_located": r.get("diff_rows_not_located", 0)}
