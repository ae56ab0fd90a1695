"""facts: a month's Wikidata JSON dump -> the month's facts about articles, plus its entities
and property labels.

Reads the dump (data/raw/wikidatawiki/entities/<YYYYMMDD>/*all.json.gz|.bz2|.json, or
explicit files, API responses included) and writes, under data/facts/<YYYY-MM>/:
  facts/       one row per best-rank statement of every kept item, partitioned by a hash of the
               subject QID, sorted (subject, property, statement id)
  entities/    one row per kept item (label, aliases, description, sitelink title), same shards
  properties/  one row per property entity of the dump (its English label), one shard
(The month's mapping/, articles <-> items, is the mapping stage's: twiki.stages.mapping.)
Nothing comes from a live API: object labels, unit labels and property labels are taken from
the entities of the same dump, so a build can be redone years later.

Three phases, all resumable per task (work files under data/work/facts/...):
  map    one dump chunk -> labels of every item (partitioned by QID hash), statements whose
         object (or unit) is an item (partitioned by that item's hash), other statements and
         the kept entities (partitioned by subject shard), property labels. A bad line (or
         an entity holding a value no column can: an id out of range, a label that is a
         number) is skipped and listed; above facts_run.max_bad_line_share of them the stage
         stops here, publishing nothing
  join   one object partition -> its statements get the object's label and aliases (or the
         unit's label), re-partitioned by subject shard
  reduce one subject shard -> facts and entities shards, property labels attached, sorted
Memory is bounded by the spill size (map), one object partition (join) and one subject shard
(reduce); none of them holds the dump. A join or reduce task reads each work file it needs once
and closes it: no worker holds a work file open once the run is published
and its work folder deleted.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.artifacts import (ArtifactBuild, ShardWriter, cyclic_gc_paused, file_sha256,
                                release_memory, shard_array, sum_counts)
from ..engine.executors import Executor
from ..engine.paths import DataRoot, check_wiki, parse_month
from ..engine.shuffle import (PartitionedWriter, PartitionTask, first_per_key, markers,
                              read_partition, resumable)
from ..engine.stage import StageResult, StageRun, stage_defaults
from ..errors import ConfigError, InputError, TwikiError
from ..sources.download import (ENTITIES_DIR, WIKIDATA_JOB, WIKIDATA_WIKI,
                                find_downloaded_wikidata, read_download_manifest)
from ..sources.wikidata import (MAX_LINE_BYTES, MAX_PROPERTY_NUMBER, TIME_PRECISIONS, DumpChunk,
                                DumpFormatError,
                                aliases_of, check_entity, description_of, entities_of,
                                id_strings, item_number, iter_chunk_pieces, iter_owned_lines,
                                label_of, normalize_amount, plan_chunks, qid_number,
                                read_document,
                                render_time, sitelink_title, text_value, time_key,
                                time_precision, unit_qid)

log = logging.getLogger("twiki")

# Bump when the rows or their rendering change: facts made before are rebuilt.
# 2: start_time, end_time, point_in_time (the P580 / P582 / P585 qualifiers); time keys of
#    centuries and millennia count them as render_time does (`+1950` at precision 7: `20c/7`).
STAGE_VERSION = 2

# The qualifiers kept, each statement's first value of each, as canonical times (time_key):
# FACTS_SCHEMA column -> property. A statement with an end time is no longer current
# (factdiff: ended, historical); the others give a probe's valid-from / valid-to.
TIME_QUALIFIERS = (("start_time", "P580"), ("end_time", "P582"), ("point_in_time", "P585"))

# Failed lines/entities listed in the report; beyond this only the count grows.
MAX_LISTED = 1000

# Below this many bad lines a build is never stopped for their share (tiny samples, a
# hand-made dump), as extract does for failed pages.
MIN_BAD_LINES_TO_STOP = 10

# A work row's `ord` is its chunk's index shifted by LINE_BITS, plus its line in the chunk
# (or its entity's index in a whole-document file): the low bits give a bad value's line back.
LINE_BITS = 32

FACTS_SCHEMA = pa.schema([
    pa.field("subject", pa.string(), nullable=False),      # QID of the item, "Q42"
    pa.field("subject_label", pa.string()),               # its English label
    pa.field("property", pa.string(), nullable=False),    # "P69"
    pa.field("property_label", pa.string()),              # from the dump's property entity
    pa.field("statement_id", pa.string(), nullable=False),
    pa.field("rank", pa.string(), nullable=False),        # "preferred" | "normal"
    pa.field("value_type", pa.string(), nullable=False),  # item|time|quantity|string|monolingualtext
    pa.field("datatype", pa.string()),                    # the property's datatype (external-id, url, ...)
    pa.field("value", pa.string(), nullable=False),       # canonical value: what the diff compares
    pa.field("text", pa.string()),                        # rendered; null for an unlabeled item
    pa.field("object_qid", pa.string()),                  # item values
    pa.field("object_label", pa.string()),
    pa.field("object_aliases", pa.list_(pa.string())),
    pa.field("unit_qid", pa.string()),                    # quantity values
    pa.field("precision", pa.int8()),                     # time values (11 day .. 0 billion years)
    pa.field("start_time", pa.string()),                  # qualifier P580, canonical as `value`
    pa.field("end_time", pa.string()),                    # qualifier P582 ("2001-05-11/11")
    pa.field("point_in_time", pa.string()),               # qualifier P585
    pa.field("month", pa.string(), nullable=False),
])


def _entity_schema(key: str, *fields: pa.Field) -> pa.Schema:
    """A table of entities: the id column `key`, the label and aliases, `fields`, the month."""
    return pa.schema([pa.field(key, pa.string(), nullable=False), pa.field("label", pa.string()),
                      pa.field("aliases", pa.list_(pa.string())), *fields,
                      pa.field("month", pa.string(), nullable=False)])


ENTITIES_SCHEMA = _entity_schema(
    "qid",
    pa.field("description", pa.string()),
    pa.field("title", pa.string()),                        # sitelink title on the wiki
    pa.field("facts", pa.int32(), nullable=False),         # rows in facts/
)
PROPERTIES_SCHEMA = _entity_schema("property", pa.field("datatype", pa.string()))

# Work-file schemas (between phases; ids kept numeric for cheap hashing and sorting).
_STMT_FIELDS = [
    ("subject", pa.int64()), ("property", pa.int32()), ("statement_id", pa.string()),
    ("rank", pa.string()), ("value_type", pa.string()), ("datatype", pa.string()),
    ("value", pa.string()), ("text", pa.string()), ("object", pa.int64()),
    ("unit", pa.int64()), ("precision", pa.int8()), ("start_time", pa.string()),
    ("end_time", pa.string()), ("point_in_time", pa.string()), ("ord", pa.int64()),
]
W_STMTS = pa.schema(_STMT_FIELDS)
W_JOINED = pa.schema(_STMT_FIELDS + [("object_label", pa.string()),
                                     ("object_aliases", pa.list_(pa.string()))])
W_LABELS = pa.schema([("qid", pa.int64()), ("label", pa.string()),
                      ("aliases", pa.list_(pa.string())), ("ord", pa.int64())])
W_ENTITIES = pa.schema([("qid", pa.int64()), ("label", pa.string()),
                        ("aliases", pa.list_(pa.string())), ("description", pa.string()),
                        ("title", pa.string()), ("ord", pa.int64())])
W_PROPS = pa.schema([("pid", pa.int32()), ("label", pa.string()),
                     ("aliases", pa.list_(pa.string())), ("datatype", pa.string()),
                     ("ord", pa.int64())])

# Times repeat (a city's population dates, a team's seasons, years of birth): their canonical
# form and text are computed once per distinct (time, precision, calendar).
_time_key = lru_cache(maxsize=1 << 16)(time_key)
_render_time = lru_cache(maxsize=1 << 16)(render_time)

DATATYPE_OF_VALUE = {"wikibase-entityid": "wikibase-item", "time": "time",
                     "quantity": "quantity", "string": "string",
                     "monolingualtext": "monolingualtext"}


@dataclass(frozen=True)
class FactsConfig:
    """What decides the facts' content (all of it is part of the artifact key)."""

    shards: int = 64
    """Output shards, by a hash of the subject QID. Month A and B are diffed shard by shard,
    so every month must use the same count (64: ~100k enwiki items a shard)."""
    require_sitelink: bool = True
    """Keep only items with a sitelink to the wiki (TemporalWiki's rule). False keeps every
    item: the benchmark uses it on the Wikidata-Toolkit sample, whose sitelinks were emptied."""
    language: str = "en"
    """Language of labels, aliases, descriptions (falls back to Wikidata's 'mul' labels)."""

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= 100_000:
            raise ConfigError(f"shards must be between 1 and 100000, not {self.shards}")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", self.language):
            raise ConfigError(f"language {self.language!r} is not a Wikidata language code")


@dataclass(frozen=True)
class FactsRunOptions:
    """How the work is done; never changes the output. chunk_mb and partitions, which cut the
    work files, also name their folder (data/work/facts/<month>/chunks-<bytes>/partitions-<n>/
    <key>): a run resumed with other values never reuses files cut with these."""

    chunk_mb: float = 64.0
    """Compressed MB of dump per map task (cut at gzip members / bz2 blocks / newlines)."""
    partitions: int = 64
    """Object-QID partitions of the label join; more partitions, less memory per join task
    (for a full Wikidata dump use 256: ~400k labels and ~600k statements a partition)."""
    spill_rows: int = 20_000
    """Rows a map task buffers before writing them out: bounds its memory."""
    compress_work: bool = False
    """LZ4-compress the work files: ~3x less disk (a full dump's shuffle is tens of GB
    uncompressed), at ~1.5 s more CPU per GB of facts."""
    keep_work: bool = False
    """Keep data/work/facts/... after publishing."""
    max_bad_line_share: float = 0.05
    """Above this share of bad lines (invalid JSON, an entity that cannot be read) the stage
    stops instead of publishing: a few are skipped and listed in the report, a dump of them is
    a broken download, and its facts would read as every fact removed (real dumps have
    none). MIN_BAD_LINES_TO_STOP (10) or fewer never stop a build."""
    max_line_bytes: int = MAX_LINE_BYTES
    """Bytes one line of the dump (one entity's JSON) may hold, 64 MiB by default: the largest
    Wikidata entities are a few MB. Counted while the line is read and never held past it; a
    longer line is a bad line, skipped and listed like invalid JSON."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.chunk_mb) and self.chunk_mb > 0) or self.partitions < 1 \
                or self.spill_rows < 1:
            raise ConfigError("facts_run.chunk_mb, partitions and spill_rows must be positive "
                              "numbers")
        if not 0 <= self.max_bad_line_share <= 1:
            raise ConfigError(f"facts_run.max_bad_line_share must be a share between 0 and 1 "
                              f"(0.05 is 5%), not {self.max_bad_line_share!r}")
        if not (isinstance(self.max_line_bytes, int) and self.max_line_bytes > 0):
            raise ConfigError(f"facts_run.max_line_bytes must be a positive whole number of "
                              f"bytes such as 67108864, not {self.max_line_bytes!r}")


# --------------------------------------------------------------------------------------------
# Which dump: an explicit file or folder, or the run under data/raw/wikidatawiki nearest to the
# month.

DUMP_PATTERNS = ("*all.json", "*all.json.gz", "*all.json.bz2")


def resolve_dump(dump, data_root: DataRoot, month: str) -> list[Path]:
    """The dump file(s) to read: `dump` may be a file, a folder holding a `*all.json[.gz|.bz2]`
    file, a list of files (e.g. API responses), or None for the month's download
    (data/raw/wikidatawiki/entities/<YYYYMMDD>/, chosen by twiki.sources.download)."""
    if dump is None:
        folder = find_downloaded_wikidata(data_root, month)
        if folder is None:
            raise TwikiError(f"no downloaded Wikidata dump for {month} under "
                             f"{data_root.raw_wiki(WIKIDATA_WIKI) / ENTITIES_DIR}: run "
                             f"`twiki download --month {month}` (it fetches the Wikidata dump "
                             f"nearest the month) or pass the dump with --dump PATH")
        return resolve_dump(folder, data_root, month)
    if isinstance(dump, (list, tuple)):
        paths = [Path(p) for p in dump]
    else:
        p = Path(dump)
        if p.is_dir():
            found = [f for pat in DUMP_PATTERNS for f in sorted(p.glob(pat))]
            if not found:
                raise TwikiError(f"{p} has no *all.json, *all.json.gz or *all.json.bz2 file: "
                                 f"download the Wikidata JSON dump into it or pass the file")
            # The same dump in several compressions: read the cheapest to decode.
            paths = [found[0]]
        else:
            paths = [p]
    for p in paths:
        if not p.is_file():
            raise TwikiError(f"Wikidata dump {p} does not exist")
    return paths


def _download_checksums(folder: Path) -> dict[str, dict]:
    """Checksums the download stage verified, by file name ({} when it did not fetch it)."""
    try:
        manifest = read_download_manifest(folder, WIKIDATA_JOB)
    except (TwikiError, OSError, ValueError):
        return {}
    return {f["name"]: f for f in manifest.get("files", []) if isinstance(f, dict)}


def _dump_inputs(paths: list[Path]) -> list[dict]:
    """What identifies the dump in the artifact key: the checksum the download verified when
    there is one, else sha256 of files up to 1 GB, else size and mtime."""
    out = []
    for p in paths:
        st = p.stat()
        entry = {"name": p.name, "size": st.st_size}
        known = _download_checksums(p.parent).get(p.name)
        if known and (known.get("sha1") or known.get("md5")):
            entry.update({k: known[k] for k in ("sha1", "md5") if known.get(k)})
        elif st.st_size <= 1 << 30:
            entry["sha256"] = file_sha256(p)
        else:
            entry["mtime_ns"] = st.st_mtime_ns
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------
# Map: one chunk of the dump -> partitioned work files.

@dataclass(frozen=True)
class ChunkTask:
    chunk: DumpChunk
    work: str
    name: str            # "map-00003": its files are map-00003.<kind>.arrow + .json
    wiki: str
    language: str
    require_sitelink: bool
    shards: int
    partitions: int
    spill_rows: int
    compress: bool = False
    max_line_bytes: int = MAX_LINE_BYTES


class _Buffer:
    """Rows (tuples in schema order, plus the partition key last when it is not a column) for
    one kind of work file, spilled to a PartitionedWriter."""

    def __init__(self, writer: PartitionedWriter, key: int, nparts: int):
        self.writer, self.key, self.nparts = writer, key, nparts
        self.rows: list[tuple] = []
        self.append = self.rows.append
        self.extend = self.rows.extend

    def __len__(self) -> int:
        return len(self.rows)

    def flush(self) -> None:
        if not self.rows:
            return
        schema = self.writer.schema
        fields = list(schema)
        if len(self.rows[0]) > len(fields):          # the partition key rides last
            fields.append(pa.field("_key", pa.int64()))
        # the row tuples straight into one struct array (C), then its columns: about half
        # the time of transposing them in Python and converting column by column
        cols = pa.array(self.rows, type=pa.struct(fields)).flatten()
        self.rows.clear()
        table = pa.Table.from_arrays(cols[:len(schema)], schema=schema)
        keys = np.asarray(cols[self.key].to_numpy(zero_copy_only=False), dtype=np.int64)
        self.writer.write(table, shard_array(keys, self.nparts))


class _MapRows:
    """Turns entities into work rows and counts what it skips, by reason."""

    def __init__(self, task: ChunkTask, prefix: Path):
        self.task = task
        self.lang = task.language
        w = {k: PartitionedWriter(prefix.with_name(f"{prefix.name}.{k}.arrow"), s, task.compress)
             for k, s in (("labels", W_LABELS), ("stmts", W_STMTS), ("direct", W_STMTS),
                          ("entities", W_ENTITIES), ("props", W_PROPS))}
        self.writers = w
        # the partition key: labels/entities by QID, statements by the joined item (object or
        # unit: an extra last element) or by subject, properties all in partition 0
        self.labels = _Buffer(w["labels"], 0, task.partitions)
        self.stmts = _Buffer(w["stmts"], len(_STMT_FIELDS), task.partitions)
        self.direct = _Buffer(w["direct"], 0, task.shards)
        self.entities = _Buffer(w["entities"], 0, task.shards)
        self.props = _Buffer(w["props"], 0, 1)
        self.counts: Counter = Counter()
        self.skipped_values: Counter = Counter()
        self.skipped_entities: Counter = Counter()
        self.bad: list[dict] = []
        self.first_bad_line: dict | None = None
        # where a bad record is: its line, or in a whole-document file its entity's index
        self.position_key = "entity_index" if task.chunk.codec == "document" else "line"
        self.redirects: list[list[str]] = []
        self.old_format_checked = False

    def spill_if_full(self) -> None:
        limit = self.task.spill_rows
        for b in (self.stmts, self.direct, self.labels, self.entities):
            if len(b) >= limit:
                b.flush()

    def bad_line(self, position: int, reason: str) -> None:
        self.counts["bad_lines"] += 1
        entry = {self.position_key: position, "reason": reason[:200]}
        if self.first_bad_line is None:
            self.first_bad_line = entry
        if len(self.bad) < MAX_LISTED:
            self.bad.append(entry)

    def malformed_value(self, eid: str, statement, ord_: int, reason: str) -> None:
        """A statement whose value cannot be read or stored: skipped, counted, listed."""
        self.skipped_values["malformed_value"] += 1
        if len(self.bad) < MAX_LISTED:
            self.bad.append({"entity": eid, "statement": statement,
                             self.position_key: ord_ & ((1 << LINE_BITS) - 1),
                             "reason": reason[:200]})

    def read(self, obj, ord_: int, where: str, position: int) -> None:
        """One record: a line of the dump (an entity, or an API response of several) or an
        entity of a whole-document file. One that fails is a bad line at `position`, never the
        end of the run (DESIGN.md rule 8): a value that is odd in any way (an id too large for
        its column, a label that is a number) is refused before any row of its entity is kept."""
        counts = self.counts
        try:
            if isinstance(obj, dict) and "entities" in obj and "id" not in obj:
                for e in entities_of(obj):
                    counts["entities"] += 1
                    self.entity(e, ord_, where)
            elif isinstance(obj, dict):
                counts["entities"] += 1
                self.entity(obj, ord_, where)
            else:
                self.bad_line(position, "not a JSON object")
        except DumpFormatError:
            raise
        except Exception as ex:
            eid = obj.get("id") if isinstance(obj, dict) else "?"
            self.bad_line(position, f"entity {eid} failed: {type(ex).__name__}: {ex}")

    def entity(self, e: dict, ord_: int, where: str) -> None:
        t = e.get("type")
        eid = e.get("id")
        if not self.old_format_checked:
            check_entity(e, where)
            self.old_format_checked = True
        if "missing" in e and t is None:
            self.counts["missing_entities"] += 1
            return
        if t == "item" and eid:
            red = e.get("redirects")
            if red and isinstance(red, dict):
                self.counts["redirects"] += 1
                if len(self.redirects) < MAX_LISTED:
                    self.redirects.append([red.get("from"), red.get("to")])
            self.item(e, eid, ord_)
        elif t == "property" and eid:
            self.counts["properties"] += 1
            self.props.append((qid_number(eid, MAX_PROPERTY_NUMBER), label_of(e, self.lang),
                               aliases_of(e, self.lang), text_value(e.get("datatype"), "datatype"),
                               ord_))
        elif t:
            self.skipped_entities[t] += 1      # lexeme, mediainfo, ...: never subjects
        else:
            check_entity(e, where)
            self.counts["not_entities"] += 1

    def item(self, e: dict, eid: str, ord_: int) -> None:
        counts = self.counts
        counts["items"] += 1
        num = qid_number(eid)
        lang = self.lang
        # label_of, aliases_of, description_of and sitelink_title are not called where the
        # entity has none (the common case for aliases and descriptions): this runs per item
        label = label_of(e, lang) if e.get("labels") else None
        aliases = aliases_of(e, lang) if e.get("aliases") else []
        title = sitelink_title(e, self.task.wiki) if e.get("sitelinks") else None
        kept = title is not None or not self.task.require_sitelink
        if kept:
            description = description_of(e, lang) if e.get("descriptions") else None
            to_join, direct = self.statements(e, eid, num, ord_)
        # Rows are kept once the whole item is read: one that fails midway leaves none.
        if label is not None or aliases:
            self.labels.append((num, label, aliases, ord_))
        if not kept:
            counts["items_without_sitelink"] += 1
            return
        counts["items_kept"] += 1
        self.entities.append((num, label, aliases, description, title, ord_))
        self.stmts.extend(to_join)
        self.direct.extend(direct)

    def statements(self, e: dict, eid: str, num: int, ord_: int
                   ) -> tuple[list[tuple], list[tuple]]:
        """The work rows of an item's best-rank statements: those whose object (or unit) is
        an item, to join with its label, and the others. A value that cannot be read or
        stored skips its statement; a claim that is not Wikibase's shape (a property id out of
        range, statements that are not a list of objects) fails the item."""
        to_join: list[tuple] = []
        direct: list[tuple] = []
        claims = e.get("claims")
        if claims is None:
            claims = e.get("statements")
        if not claims or not isinstance(claims, dict):
            return to_join, direct
        counts = self.counts
        skipped = self.skipped_values
        n_all = n_best = 0
        for pid, statements in claims.items():
            n_all += len(statements)
            # best rank: preferred if the property has any, else normal (one statement, the
            # common case: its own rank, unless deprecated or unknown)
            if len(statements) == 1:
                rank = statements[0].get("rank", "normal")
                if rank != "normal" and rank != "preferred":
                    continue
            else:
                rank = "normal"
                for s in statements:
                    if s.get("rank") == "preferred":
                        rank = "preferred"
                        break
            p = qid_number(pid, MAX_PROPERTY_NUMBER)
            for i, s in enumerate(statements):
                if s.get("rank", "normal") != rank:
                    continue
                n_best += 1
                m = s.get("mainsnak") or {}
                snaktype = m.get("snaktype")
                if snaktype != "value":
                    skipped[snaktype or "no_snaktype"] += 1
                    continue
                dv = m.get("datavalue") or {}
                vtype = dv.get("type")
                v = dv.get("value")
                obj = unit = precision = None
                text = None
                try:
                    if vtype == "wikibase-entityid":
                        etype = v.get("entity-type", "item")
                        if etype != "item":
                            skipped[f"{etype}_value"] += 1
                            continue
                        obj = item_number(v)
                        value, vt = f"Q{obj}", "item"
                    elif vtype == "string":
                        if not v:
                            skipped["empty_string"] += 1
                            continue
                        value = text = text_value(v, "string value")
                        vt = "string"
                    elif vtype == "time":
                        precision = time_precision(v)
                        text = _render_time(v["time"], precision)
                        value = _time_key(v["time"], precision, v.get("calendarmodel"))
                        vt = "time"
                    elif vtype == "quantity":
                        text = normalize_amount(v["amount"])
                        u = unit_qid(v.get("unit"))
                        if u is not None:
                            unit = qid_number(u)
                            value = f"{text}|{u}"
                        else:
                            value = text
                        vt = "quantity"
                    elif vtype == "monolingualtext":
                        text = text_value(v["text"], "monolingual text")
                        value = f"{v['language']}:{text}"
                        vt = "monolingualtext"
                    else:
                        skipped[vtype or "no_datavalue"] += 1
                        continue
                    sid = text_value(s.get("id"), "statement id") or f"{eid}${pid}#{i}"
                    datatype = (text_value(m.get("datatype"), "datatype")
                                or DATATYPE_OF_VALUE.get(vtype))
                except (KeyError, TypeError, ValueError, AttributeError) as ex:
                    self.malformed_value(eid, s.get("id"), ord_,
                                         f"malformed {vtype} value: {ex!r}")
                    continue
                start = end = point = None
                q = s.get("qualifiers")
                if q and type(q) is dict:
                    if "P580" in q:
                        start = self.qualifier_time(q["P580"], eid, s, ord_)
                    if "P582" in q:
                        end = self.qualifier_time(q["P582"], eid, s, ord_)
                    if "P585" in q:
                        point = self.qualifier_time(q["P585"], eid, s, ord_)
                if obj is not None or unit is not None:
                    to_join.append((num, p, sid, rank, vt, datatype, value, text, obj, unit,
                                    precision, start, end, point, ord_,
                                    obj if obj is not None else unit))
                else:
                    direct.append((num, p, sid, rank, vt, datatype, value, text, obj, unit,
                                   precision, start, end, point, ord_))
        counts["statements"] += n_all
        counts["statements_best_rank"] += n_best
        counts["facts"] += len(to_join) + len(direct)
        return to_join, direct

    def qualifier_time(self, snaks, eid: str, statement: dict, ord_: int) -> str | None:
        """The canonical time (time_key) of the first value snak of a time qualifier (P580,
        P582, P585), or None (only 'unknown value' / 'no value' snaks). A malformed one is
        skipped, counted and listed; its statement is kept."""
        try:
            for snak in snaks:
                if snak.get("snaktype", "value") != "value":
                    continue
                dv = snak["datavalue"]
                if dv.get("type") != "time":
                    raise ValueError(f"a {dv.get('type')!r} value where a time belongs")
                v = dv["value"]
                t, precision = v["time"], v["precision"]
                if type(t) is not str or type(precision) is not int \
                        or precision not in TIME_PRECISIONS:
                    text_value(t, "time")
                    precision = time_precision(v)
                return _time_key(t, precision, v.get("calendarmodel"))
        except (KeyError, TypeError, ValueError, AttributeError) as ex:
            self.skipped_values["malformed_qualifier"] += 1
            if len(self.bad) < MAX_LISTED:
                self.bad.append({"entity": eid, "statement": statement.get("id"),
                                 self.position_key: ord_ & ((1 << LINE_BITS) - 1),
                                 "reason": f"malformed time qualifier: {ex!r}"[:200]})
        return None

    def close(self) -> dict:
        for b in (self.labels, self.stmts, self.direct, self.entities, self.props):
            b.flush()
        return {k: w.close() for k, w in self.writers.items()}


@resumable
def map_chunk(task: ChunkTask) -> tuple[dict, dict]:
    """Map task: one chunk of the dump into partitioned work files."""
    chunk = task.chunk
    path = Path(chunk.path)
    where = f"{path.name} (chunk at {'bit' if chunk.codec == 'bz2' else 'byte'} {chunk.start})"
    rows = _MapRows(task, Path(task.work) / task.name)
    t0 = time.perf_counter()
    base = chunk.index << LINE_BITS
    n_lines = 0
    read, counts = rows.read, rows.counts
    with cyclic_gc_paused():     # rows pile up in buffers: see cyclic_gc_paused
        if chunk.codec == "document":
            for i, e in enumerate(entities_of(read_document(path))):
                counts["records"] += 1
                read(e, base + i, where, i)
                if i % 1024 == 0:
                    rows.spill_if_full()
        else:
            loads = orjson.loads
            JSONDecodeError = orjson.JSONDecodeError
            saw_open = saw_close = False
            for line in iter_owned_lines(iter_chunk_pieces(chunk), chunk.first,
                                         task.max_line_bytes):
                n_lines += 1
                if line is None:
                    counts["records"] += 1
                    rows.bad_line(n_lines, f"a line over {task.max_line_bytes} bytes "
                                           f"(facts_run.max_line_bytes)")
                    continue
                s = line.strip()
                if s.endswith(b","):
                    s = s[:-1]
                if not s:
                    continue
                if s == b"[":
                    saw_open = True
                    continue
                if s == b"]":
                    saw_close = True
                    continue
                counts["records"] += 1
                try:
                    obj = loads(s)
                except JSONDecodeError as ex:
                    rows.bad_line(n_lines, f"invalid JSON: {ex}")
                    continue
                read(obj, base + n_lines, where, n_lines)
                if n_lines & 1023 == 0:
                    rows.spill_if_full()
            counts["dump_open_bracket"] = int(saw_open)
            counts["dump_close_bracket"] = int(saw_close)
    files = rows.close()
    seconds = time.perf_counter() - t0
    report = {"chunk": chunk.index, "file": path.name, "first": chunk.first, "lines": n_lines,
              "counts": dict(rows.counts), "skipped_values": dict(rows.skipped_values),
              "skipped_entities": dict(rows.skipped_entities), "bad": rows.bad,
              "first_bad_line": rows.first_bad_line, "redirects": rows.redirects,
              "seconds": round(seconds, 3)}
    return files, report


# --------------------------------------------------------------------------------------------
# Join: one object partition -> statements with their object's (or unit's) label.

@dataclass(frozen=True)
class JoinTask(PartitionTask):
    """`part`: an object partition of the map's files (`sidecars`: the map's done-markers)."""

    name: str                  # "join-00007"
    shards: int


def _grouped(batches, schema: pa.Schema, rows: int = 16384):
    """Tables of consecutive batches, about `rows` rows each (few calls, bounded memory)."""
    group, n = [], 0
    for b in batches:
        group.append(b)
        n += b.num_rows
        if n >= rows:
            yield pa.Table.from_batches(group, schema=schema)
            group, n = [], 0
    if group:
        yield pa.Table.from_batches(group, schema=schema)


@resumable
def join_partition(task: JoinTask) -> tuple[dict, dict]:
    """Attach labels to the statements whose object (or unit) hashes to this partition.

    Only the partition's labels are held (one row per item); statements stream through batch
    by batch, because their objects are skewed: 'instance of: human' alone is millions."""
    labels = first_per_key(task.read("labels", W_LABELS), ["qid"], ["ord"])
    qids = labels.column("qid").combine_chunks()
    label_col, alias_col = labels.column("label"), labels.column("aliases")
    writer = PartitionedWriter(Path(task.work) / f"{task.name}.joined.arrow", W_JOINED)
    unlabeled = n_stmts = 0
    for stmts in _grouped(task.batches("stmts"), W_STMTS):
        n_stmts += stmts.num_rows
        is_item = pc.equal(stmts.column("value_type"), "item")
        key = pc.if_else(is_item, stmts.column("object"), stmts.column("unit"))
        idx = pc.index_in(key, value_set=qids)
        label = label_col.take(idx)
        text = stmts.column("text")
        qty_text = pc.if_else(pc.is_valid(label),
                              pc.binary_join_element_wise(text, label, " "), text)
        is_qty = pc.equal(stmts.column("value_type"), "quantity")
        text = pc.if_else(is_item, label, pc.if_else(is_qty, qty_text, text))
        item_idx = pc.if_else(is_item, idx, pa.scalar(None, idx.type))
        unlabeled += int(pc.sum(pc.and_(is_item, pc.is_null(label))).as_py() or 0)
        joined = stmts.set_column(stmts.schema.get_field_index("text"), "text", text)
        joined = joined.append_column("object_label", label_col.take(item_idx))
        joined = joined.append_column("object_aliases", alias_col.take(item_idx))
        writer.write(joined, shard_array(joined.column("subject").to_numpy(), task.shards))
    files = {"joined": writer.close()}
    report = {"part": task.part, "labels": labels.num_rows, "statements": n_stmts,
              "items_without_label": unlabeled}
    return files, report


# --------------------------------------------------------------------------------------------
# Reduce: one subject shard -> facts and entities shards.

@dataclass(frozen=True)
class SubjectShardTask(PartitionTask):
    """`part`: a subject shard; `sidecars`: the map's done-markers (entities and direct
    statements) and the join's (labelled statements)."""

    props: str                 # the properties work table (whole)
    facts_out: str | None      # None: that artifact's shard is already there
    entities_out: str | None
    month: str


def write_subject_shard(task: SubjectShardTask) -> dict:
    """The facts and entities shards of one subject shard, from the map's entities and direct
    statements and the join's labelled ones."""
    entities = first_per_key(task.read("entities", W_ENTITIES), ["qid"], ["ord"])
    direct = task.read("direct", W_STMTS)
    joined = task.read("joined", W_JOINED)
    if direct.num_rows:
        n = direct.num_rows
        direct = direct.append_column("object_label", pa.nulls(n, pa.string()))
        direct = direct.append_column("object_aliases", pa.nulls(n, pa.list_(pa.string())))
    stmts = pa.concat_tables([t for t in (direct, joined) if t.num_rows] or
                             [W_JOINED.empty_table()])
    before = stmts.num_rows
    # One sort gives the published order and puts repeats of a statement side by side.
    stmts = first_per_key(stmts, ["subject", "property", "statement_id"], ["ord"])
    duplicates = before - stmts.num_rows
    props = pq.read_table(Path(task.work) / task.props)
    n = stmts.num_rows
    pidx = pc.index_in(stmts.column("property"), value_set=props.column("pid").combine_chunks())
    sidx = pc.index_in(stmts.column("subject"), value_set=entities.column("qid").combine_chunks())
    month = pa.array([task.month] * n, pa.string()) if n else pa.array([], pa.string())
    facts = pa.table({
        "subject": id_strings(stmts.column("subject")),
        "subject_label": entities.column("label").take(sidx),
        "property": id_strings(stmts.column("property"), "P"),
        "property_label": props.column("label").take(pidx),
        "statement_id": stmts.column("statement_id"),
        "rank": stmts.column("rank"),
        "value_type": stmts.column("value_type"),
        "datatype": stmts.column("datatype"),
        "value": stmts.column("value"),
        "text": stmts.column("text"),
        "object_qid": id_strings(stmts.column("object")),
        "object_label": stmts.column("object_label"),
        "object_aliases": stmts.column("object_aliases"),
        "unit_qid": id_strings(stmts.column("unit")),
        "precision": stmts.column("precision"),
        "start_time": stmts.column("start_time"),
        "end_time": stmts.column("end_time"),
        "point_in_time": stmts.column("point_in_time"),
        "month": month,
    }, schema=FACTS_SCHEMA)
    if task.facts_out:
        with ShardWriter(Path(task.facts_out), FACTS_SCHEMA) as w:
            w.write(facts)
    if task.entities_out:
        per_subject = {}
        if n:
            vc = pc.value_counts(stmts.column("subject"))
            per_subject = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))
        qids = entities.column("qid").to_pylist()
        ents = pa.table({
            "qid": id_strings(entities.column("qid")),
            "label": entities.column("label"),
            "aliases": entities.column("aliases"),
            "description": entities.column("description"),
            "title": entities.column("title"),
            "facts": pa.array([per_subject.get(q, 0) for q in qids], pa.int32()),
            "month": pa.array([task.month] * len(qids), pa.string()),
        }, schema=ENTITIES_SCHEMA)
        with ShardWriter(Path(task.entities_out), ENTITIES_SCHEMA) as w:
            w.write(ents)
    result = {"shard": task.part, "facts": n, "entities": entities.num_rows,
              "duplicate_statements": duplicates}
    del facts, stmts, entities, direct, joined
    release_memory()
    return result


# --------------------------------------------------------------------------------------------
# The stage.

def _describe(result: StageResult) -> str:
    c = result.counts
    return (f"{c.get('facts', 0)} facts about {c.get('items_kept', 0)} items "
            f"({c.get('entities', 0)} entities read, {c.get('property_entities', 0)} "
            f"properties, {c.get('bad_lines', 0)} bad lines) in "
            f"{result.manifest.get('shard_count')} shards")


def build_facts(month: str, *, dump=None, wiki: str = "enwiki",
                data_root: DataRoot | None = None, executor: Executor | None = None,
                config: FactsConfig = FactsConfig(),
                options: FactsRunOptions = FactsRunOptions()) -> StageResult:
    """Build (or confirm, or repair) the month's facts from its Wikidata dump: the result's
    `path` is data/facts/<month>/facts/, its `parts` "entities" and "properties" the two
    tables built beside it."""
    parse_month(month)
    check_wiki(wiki)
    data_root, executor = stage_defaults(data_root, executor)
    paths = resolve_dump(dump, data_root, month)
    inputs = {"dump": _dump_inputs(paths)}
    cfg = {"wiki": wiki, "month": month, **asdict(config)}

    def artifact(table: str, stage: str, shards: int, schema: pa.Schema) -> ArtifactBuild:
        return ArtifactBuild(data_root.facts(month, table), stage=stage,
                             stage_version=STAGE_VERSION, inputs=inputs, config=cfg,
                             shards=shards, schema=schema)

    facts = artifact("facts", "facts", config.shards, FACTS_SCHEMA)
    entities = artifact("entities", "facts.entities", config.shards, ENTITIES_SCHEMA)
    properties = artifact("properties", "facts.properties", 1, PROPERTIES_SCHEMA)
    # The facts are published last: when they exist, so do the entities and properties.
    run = StageRun(f"facts {month}", facts, entities, properties, data_root=data_root,
                   executor=executor)
    parts = {"entities": entities.final, "properties": properties.final}
    if run.current:
        return run.result(_describe, what="facts", parts=parts)

    chunk_bytes = max(1, int(options.chunk_mb * 1e6))
    partitions = options.partitions
    # Besides the artifact's key, where the dump is cut and how many object partitions its
    # rows go to, and the line cap, shape the work files: a run resumed with other options
    # never reuses files cut differently (spill_rows and compress_work only change how the same
    # rows are written).
    work = run.work("facts", month, f"chunks-{chunk_bytes}", f"partitions-{partitions}",
                    f"line-cap-{options.max_line_bytes}")
    chunks = plan_chunks(paths, chunk_bytes)
    maps = [ChunkTask(c, str(work), f"map-{c.index:05d}", wiki, config.language,
                      config.require_sitelink, config.shards, partitions,
                      options.spill_rows, options.compress_work, options.max_line_bytes)
            for c in chunks]
    map_reports = run.map(map_chunk, maps, phase="read dump",
                          weights=[max(c.size, 1) for c in chunks], unit="B")
    t_map = run.seconds()
    _check_dump_complete(paths, chunks, map_reports)
    lines_before = _lines_before(chunks, map_reports)
    _check_bad_lines(month, map_reports, lines_before, options.max_bad_line_share)
    map_names = markers(maps)

    props = first_per_key(read_partition(work, map_names, "props", 0, W_PROPS), ["pid"], ["ord"])
    pq.write_table(props, work / "properties.parquet")
    if properties.pending_shards():
        table = pa.table({"property": id_strings(props.column("pid"), "P"),
                          "label": props.column("label"), "aliases": props.column("aliases"),
                          "datatype": props.column("datatype"),
                          "month": pa.array([month] * props.num_rows, pa.string())},
                         schema=PROPERTIES_SCHEMA)
        with ShardWriter(properties.shard_path(0), PROPERTIES_SCHEMA) as w:
            w.write(table)

    joins = [JoinTask(p, str(work), map_names, f"join-{p:05d}", config.shards)
             for p in range(partitions)]
    join_reports = run.map(join_partition, joins, phase="object labels", unit="partition")
    t_join = run.seconds()
    join_names = markers(joins)
    shard_reports = run.map_shards(
        write_subject_shard,
        lambda s, facts_out, entities_out: SubjectShardTask(
            s, str(work), map_names + join_names, "properties.parquet", facts_out, entities_out,
            month),
        builds=(facts, entities), phase="write shards")

    report = _facts_report(chunks, map_reports, lines_before, join_reports, shard_reports,
                           props.num_rows)
    cpu = sum(r["seconds"] for r in map_reports)
    report["entities_per_cpu_second_map"] = round(report["counts"].get("entities", 0) / cpu, 1) \
        if cpu else None
    timings = {"map_s": round(t_map, 3), "join_s": round(t_join - t_map, 3),
               "reduce_s": round(run.seconds() - t_join, 3)}
    run.publish(report, timings, keep_work=options.keep_work)
    result = run.result(_describe, what="facts", parts=parts)
    log.info("%s, %.1fs", result.summary(), run.seconds())
    return result


def _check_dump_complete(paths: list[Path], chunks: list[DumpChunk], reports: list[dict]) -> None:
    """A dump-format file ('[' ... ']') must end with its ']': otherwise it was cut short."""
    for p in paths:
        rs = [r for c, r in zip(chunks, reports) if c.path == str(p) and c.codec != "document"]
        if not rs:
            continue
        opened = any(r["counts"].get("dump_open_bracket") for r in rs)
        closed = any(r["counts"].get("dump_close_bracket") for r in rs)
        if opened and not closed:
            raise InputError(f"{p.name}: the dump ends without its closing ']': the file is "
                             f"truncated; delete it and download it again")


def _lines_before(chunks: list[DumpChunk], reports: list[dict]) -> list[int]:
    """For each chunk, the lines of its file before it: each chunk counts the lines it owns and
    numbers them from 1, a report numbers them from its file's first line."""
    before, seen = [], {}
    for c, r in zip(chunks, reports):
        before.append(seen.get(c.path, 0))
        seen[c.path] = before[-1] + r["lines"]
    return before


def _placed(entry: dict, lines_before: int, file: str) -> dict:
    """A chunk's bad line or value as the report lists it: with its file, and its line
    numbered from the file's first line."""
    out = dict(entry, file=file)
    if "line" in out:
        out["line"] += lines_before
    return out


def _check_bad_lines(month: str, reports: list[dict], lines_before: list[int],
                     max_share: float) -> None:
    """Stop, before any shard is written, when more than `max_share` of the dump's records
    (its lines) are bad: a broken dump, not a few corrupt lines."""
    bad = sum(r["counts"].get("bad_lines", 0) for r in reports)
    records = sum(r["counts"].get("records", 0) for r in reports)
    if bad <= MIN_BAD_LINES_TO_STOP or bad <= max_share * records:
        return
    first = next(_placed(r["first_bad_line"], n, r["file"])
                 for r, n in zip(reports, lines_before) if r["first_bad_line"])
    at = (f"line {first['line']}" if "line" in first
          else f"the entity at index {first['entity_index']}")
    raise InputError(f"facts {month}: {bad} of the dump's {records} records (lines) are bad "
                     f"({bad / records:.0%}, more than facts_run.max_bad_line_share = "
                     f"{max_share:g}); nothing published. The first is {at} of {first['file']}: "
                     f"{first['reason']}. Download the dump again, or rerun with --set "
                     f"facts_run.max_bad_line_share=SHARE to skip them")


def _facts_report(chunks, map_reports, lines_before, join_reports, shard_reports,
                  n_props) -> dict:
    counts = sum_counts(r["counts"] for r in map_reports)
    for k in ("dump_open_bracket", "dump_close_bracket"):
        counts.pop(k, None)
    for k in ("entities", "items", "items_kept", "properties", "facts", "bad_lines"):
        counts.setdefault(k, 0)
    counts["facts_published"] = sum(r["facts"] for r in shard_reports)
    counts["duplicate_statements"] = sum(r["duplicate_statements"] for r in shard_reports)
    counts["item_objects_without_label"] = sum(r["items_without_label"] for r in join_reports)
    counts["property_entities"] = n_props
    bad = [_placed(b, n, r["file"]) for r, n in zip(map_reports, lines_before) for b in r["bad"]]
    return {"counts": counts,
            "skipped_values": sum_counts(r["skipped_values"] for r in map_reports),
            "skipped_entities": sum_counts(r["skipped_entities"] for r in map_reports),
            "bad": bad[:MAX_LISTED],
            "redirects": [x for r in map_reports for x in r["redirects"]][:MAX_LISTED],
            "chunks": len(chunks), "codecs": sorted({c.codec for c in chunks})}
