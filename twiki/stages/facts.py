"""facts: a month's Wikidata JSON dump -> the month's facts about articles, plus its entities,
property labels and the page_id <-> QID mapping.

Reads the dump (data/raw/wikidatawiki/<YYYYMMDD>/*all.json.gz|.bz2|.json, or explicit files,
API responses included) and writes, under data/facts/<YYYY-MM>/:
  facts/       one row per best-rank statement of every kept item, partitioned by a hash of the
               subject QID, sorted (subject, property, statement id)
  entities/    one row per kept item (label, aliases, description, sitelink title), same shards
  properties/  one row per property entity of the dump (its English label), one shard
  mapping/     page_id, title, qid for the month's snapshot articles (build_mapping)
Nothing comes from a live API: object labels, unit labels and property labels are taken from
the entities of the same dump, so a build can be redone years later.

Three phases, all resumable per task (work files under data/work/facts/...):
  map    one dump chunk -> labels of every item (partitioned by QID hash), statements whose
         object (or unit) is an item (partitioned by that item's hash), other statements and
         the kept entities (partitioned by subject shard), property labels
  join   one object partition -> its statements get the object's label and aliases (or the
         unit's label), re-partitioned by subject shard
  reduce one subject shard -> facts and entities shards, property labels attached, sorted
Memory is bounded by the spill size (map), one object partition (join) and one subject shard
(reduce); none of them holds the dump.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.artifacts import (ArtifactBuild, ShardWriter, cyclic_gc_paused, file_sha256, read_manifest,
                        release_memory, require_artifact, shard_array, shard_name, shard_of,
                        sum_counts)
from ..errors import ConfigError, InputError, TwikiError
from ..engine.shuffle import (PartitionedWriter, cached, close_cached, iter_partition, mark_done,
                      read_partition, task_report)
from ..engine.executors import Executor, LocalExecutor
from ..engine.paths import DataRoot, check_wiki, parse_month
from ..sources.wikidata import (DumpChunk, DumpFormatError, aliases_of, check_entity,
                       description_of, entities_of, iter_chunk_pieces, iter_owned_lines,
                       label_of, normalize_amount, plan_chunks, read_document, render_time,
                       sitelink_title, time_key, unit_qid)

log = logging.getLogger("twiki")

# Bump when the rows or their rendering change: facts made before are rebuilt.
STAGE_VERSION = 1
MAPPING_VERSION = 2   # 2: page_props, the report's source

# Failed lines/entities listed in the report; beyond this only the count grows.
MAX_LISTED = 1000

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
    pa.field("month", pa.string(), nullable=False),
])

ENTITIES_SCHEMA = pa.schema([
    pa.field("qid", pa.string(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("aliases", pa.list_(pa.string())),
    pa.field("description", pa.string()),
    pa.field("title", pa.string()),                        # sitelink title on the wiki
    pa.field("facts", pa.int32(), nullable=False),         # rows in facts/
    pa.field("month", pa.string(), nullable=False),
])

PROPERTIES_SCHEMA = pa.schema([
    pa.field("property", pa.string(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("aliases", pa.list_(pa.string())),
    pa.field("datatype", pa.string()),
    pa.field("month", pa.string(), nullable=False),
])

MAPPING_SCHEMA = pa.schema([
    pa.field("qid", pa.string(), nullable=False),
    pa.field("page_id", pa.int64(), nullable=False),
    pa.field("title", pa.string(), nullable=False),        # the snapshot's title
    pa.field("match", pa.string(), nullable=False),        # "title" | "redirect" | "page_props"
    pa.field("month", pa.string(), nullable=False),
])

# Work-file schemas (between phases; ids kept numeric for cheap hashing and sorting).
_STMT_FIELDS = [
    ("subject", pa.int64()), ("property", pa.int32()), ("statement_id", pa.string()),
    ("rank", pa.string()), ("value_type", pa.string()), ("datatype", pa.string()),
    ("value", pa.string()), ("text", pa.string()), ("object", pa.int64()),
    ("unit", pa.int64()), ("precision", pa.int8()), ("ord", pa.int64()),
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
class RunOptions:
    """How the work is done; never changes the output."""

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

    def __post_init__(self) -> None:
        if self.chunk_mb <= 0 or self.partitions < 1 or self.spill_rows < 1:
            raise ConfigError("chunk_mb, partitions and spill_rows must be positive")


@dataclass
class FactsResult:
    path: Path                  # data/facts/<month>/
    state: str                  # "current" (no-op) | "built" | "repaired"
    manifest: dict = field(default_factory=dict)   # the facts/ manifest
    mapping: "MappingResult | None" = None


@dataclass
class MappingResult:
    path: Path
    state: str
    manifest: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Which dump: an explicit file or folder, or the run under data/raw/wikidatawiki nearest to the
# month.

DUMP_PATTERNS = ("*all.json", "*all.json.gz", "*all.json.bz2")


def resolve_dump(dump, data_root: DataRoot, month: str) -> list[Path]:
    """The dump file(s) to read: `dump` may be a file, a folder holding a `*all.json[.gz|.bz2]`
    file, a list of files (e.g. API responses), or None for the month's download
    (data/raw/wikidatawiki/entities/<YYYYMMDD>/, chosen by twiki.sources.download)."""
    if dump is None:
        from ..sources.download import find_downloaded_wikidata
        folder = find_downloaded_wikidata(data_root, month)
        if folder is None:
            raise TwikiError(f"no downloaded Wikidata dump for {month} under "
                             f"{data_root.root / 'raw' / 'wikidatawiki' / 'entities'}: run "
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
        from ..sources.download import WIKIDATA_JOB, read_download_manifest
        manifest = read_download_manifest(folder, WIKIDATA_JOB)
    except (TwikiError, ImportError, OSError, ValueError):
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
# Work-file helpers of this stage (the shuffle itself is twiki.engine.shuffle).

def _first_per_key(table: pa.Table, keys: list[str]) -> pa.Table:
    """Sorted by keys then `ord`; rows repeating the previous row's keys are dropped (an
    entity present twice in the input keeps its first occurrence)."""
    if table.num_rows == 0:
        return table
    table = table.take(pc.sort_indices(table, [(k, "ascending") for k in keys] +
                                       [("ord", "ascending")]))
    n = table.num_rows
    if n < 2:
        return table
    same = None
    for k in keys:
        col = table.column(k)
        eq = pc.fill_null(pc.equal(col.slice(1), col.slice(0, n - 1)), False)
        same = eq if same is None else pc.and_(same, eq)
    keep = pa.concat_arrays([pa.array([True]), pc.invert(same).combine_chunks()])
    return table.filter(keep)


# --------------------------------------------------------------------------------------------
# Map: one chunk of the dump -> partitioned work files.

@dataclass(frozen=True)
class MapTask:
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


class _Buffer:
    """Rows (tuples in schema order, plus the partition key last when it is not a column) for
    one kind of work file, spilled to a PartitionedWriter."""

    def __init__(self, writer: PartitionedWriter, key: int, nparts: int):
        self.writer, self.key, self.nparts = writer, key, nparts
        self.rows: list[tuple] = []
        self.append = self.rows.append

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

    def __init__(self, task: MapTask, prefix: Path):
        self.task = task
        self.lang = task.language
        w = {k: PartitionedWriter(prefix.with_name(f"{prefix.name}.{k}.arrow"), s, task.compress)
             for k, s in (("labels", W_LABELS), ("stmts", W_STMTS), ("direct", W_STMTS),
                          ("entities", W_ENTITIES), ("props", W_PROPS))}
        self.writers = w
        # the partition key: labels/entities by QID, statements by the joined item (object or
        # unit: an extra last element) or by subject, properties all in partition 0
        self.labels = _Buffer(w["labels"], 0, task.partitions)
        self.stmts = _Buffer(w["stmts"], 12, task.partitions)
        self.direct = _Buffer(w["direct"], 0, task.shards)
        self.entities = _Buffer(w["entities"], 0, task.shards)
        self.props = _Buffer(w["props"], 0, 1)
        self.counts: Counter = Counter()
        self.skipped_values: Counter = Counter()
        self.skipped_entities: Counter = Counter()
        self.bad: list[dict] = []
        self.redirects: list[list[str]] = []
        self.old_format_checked = False

    def spill_if_full(self) -> None:
        limit = self.task.spill_rows
        for b in (self.stmts, self.direct, self.labels, self.entities):
            if len(b) >= limit:
                b.flush()

    def bad_line(self, line_no: int, reason: str) -> None:
        self.counts["bad_lines"] += 1
        if len(self.bad) < MAX_LISTED:
            self.bad.append({"line": line_no, "reason": reason[:200]})

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
            self.props.append((int(eid[1:]), label_of(e, self.lang), aliases_of(e, self.lang),
                               e.get("datatype"), ord_))
        elif t:
            self.skipped_entities[t] += 1      # lexeme, mediainfo, ...: never subjects
        else:
            check_entity(e, where)
            self.counts["not_entities"] += 1

    def item(self, e: dict, eid: str, ord_: int) -> None:
        counts = self.counts
        counts["items"] += 1
        num = int(eid[1:])
        lang = self.lang
        # label_of, aliases_of, description_of and sitelink_title are not called where the
        # entity has none (the common case for aliases and descriptions): this runs per item
        label = label_of(e, lang) if e.get("labels") else None
        aliases = aliases_of(e, lang) if e.get("aliases") else []
        if label is not None or aliases:
            self.labels.append((num, label, aliases, ord_))
        title = sitelink_title(e, self.task.wiki) if e.get("sitelinks") else None
        if title is None and self.task.require_sitelink:
            counts["items_without_sitelink"] += 1
            return
        counts["items_kept"] += 1
        description = description_of(e, lang) if e.get("descriptions") else None
        self.entities.append((num, label, aliases, description, title, ord_))
        claims = e.get("claims")
        if claims is None:
            claims = e.get("statements")
        if not claims or not isinstance(claims, dict):
            return
        skipped = self.skipped_values
        to_join, direct = self.stmts.append, self.direct.append
        n_all = n_best = n_facts = 0
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
            p = int(pid[1:])
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
                        obj = v.get("numeric-id")
                        if obj is None:
                            obj = int(v["id"][1:])
                        value, vt = f"Q{obj}", "item"
                    elif vtype == "string":
                        if not v:
                            skipped["empty_string"] += 1
                            continue
                        value = text = v
                        vt = "string"
                    elif vtype == "time":
                        precision = int(v["precision"])
                        text = render_time(v["time"], precision)
                        value = time_key(v["time"], precision, v.get("calendarmodel"))
                        vt = "time"
                    elif vtype == "quantity":
                        text = normalize_amount(v["amount"])
                        u = unit_qid(v.get("unit"))
                        if u is not None:
                            unit = int(u[1:])
                            value = f"{text}|{u}"
                        else:
                            value = text
                        vt = "quantity"
                    elif vtype == "monolingualtext":
                        text = v["text"]
                        value = f"{v['language']}:{text}"
                        vt = "monolingualtext"
                    else:
                        skipped[vtype or "no_datavalue"] += 1
                        continue
                except (KeyError, TypeError, ValueError, AttributeError) as ex:
                    skipped["malformed_value"] += 1
                    if len(self.bad) < MAX_LISTED:
                        self.bad.append({"entity": eid, "statement": s.get("id"),
                                         "reason": f"malformed {vtype} value: {ex!r}"[:200]})
                    continue
                sid = s.get("id") or f"{eid}${pid}#{i}"
                datatype = m.get("datatype") or DATATYPE_OF_VALUE.get(vtype)
                if obj is not None or unit is not None:
                    to_join((num, p, sid, rank, vt, datatype, value, text, obj, unit, precision,
                             ord_, obj if obj is not None else unit))
                else:
                    direct((num, p, sid, rank, vt, datatype, value, text, obj, unit, precision,
                            ord_))
                n_facts += 1
        counts["statements"] += n_all
        counts["statements_best_rank"] += n_best
        counts["facts"] += n_facts

    def close(self) -> dict:
        for b in (self.labels, self.stmts, self.direct, self.entities, self.props):
            b.flush()
        return {k: w.close() for k, w in self.writers.items()}


def map_chunk(task: MapTask) -> dict:
    """Map task: one chunk of the dump into partitioned work files; the JSON sidecar, written
    last, holds the files' partition index and the task's report (it existing = done)."""
    work = Path(task.work)
    sidecar = work / f"{task.name}.json"
    if (done := task_report(sidecar)) is not None:
        return done
    chunk = task.chunk
    path = Path(chunk.path)
    where = f"{path.name} (chunk at {'bit' if chunk.codec == 'bz2' else 'byte'} {chunk.start})"
    rows = _MapRows(task, work / task.name)
    t0 = time.perf_counter()
    base = chunk.index << 32
    n_lines = 0
    entity = rows.entity
    with cyclic_gc_paused():     # rows pile up in buffers: see cyclic_gc_paused
        if chunk.codec == "document":
            for i, e in enumerate(entities_of(read_document(path))):
                entity(e, base + i, where)
                rows.counts["entities"] += 1
                if i % 1024 == 0:
                    rows.spill_if_full()
        else:
            loads = orjson.loads
            JSONDecodeError = orjson.JSONDecodeError
            saw_open = saw_close = False
            for line in iter_owned_lines(iter_chunk_pieces(chunk), chunk.first):
                n_lines += 1
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
                try:
                    obj = loads(s)
                except JSONDecodeError as ex:
                    rows.bad_line(n_lines, f"invalid JSON: {ex}")
                    continue
                ord_ = base + n_lines
                try:
                    if isinstance(obj, dict) and "entities" in obj and "id" not in obj:
                        for e in entities_of(obj):
                            rows.counts["entities"] += 1
                            entity(e, ord_, where)
                    elif isinstance(obj, dict):
                        rows.counts["entities"] += 1
                        entity(obj, ord_, where)
                    else:
                        rows.bad_line(n_lines, "not a JSON object")
                except DumpFormatError:
                    raise
                except Exception as ex:  # one bad entity never kills the run (DESIGN.md rule 8)
                    eid = obj.get("id") if isinstance(obj, dict) else "?"
                    rows.bad_line(n_lines, f"entity {eid} failed: {type(ex).__name__}: {ex}")
                if n_lines & 1023 == 0:
                    rows.spill_if_full()
            rows.counts["dump_open_bracket"] = int(saw_open)
            rows.counts["dump_close_bracket"] = int(saw_close)
    files = rows.close()
    seconds = time.perf_counter() - t0
    report = {"chunk": chunk.index, "file": path.name, "first": chunk.first, "lines": n_lines,
              "counts": dict(rows.counts), "skipped_values": dict(rows.skipped_values),
              "skipped_entities": dict(rows.skipped_entities), "bad": rows.bad,
              "redirects": rows.redirects, "seconds": round(seconds, 3)}
    del rows
    release_memory()
    return mark_done(sidecar, files, report)


# --------------------------------------------------------------------------------------------
# Join: one object partition -> statements with their object's (or unit's) label.

@dataclass(frozen=True)
class JoinTask:
    part: int
    work: str
    maps: tuple[str, ...]      # map sidecar names
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


def join_partition(task: JoinTask) -> dict:
    """Attach labels to the statements whose object (or unit) hashes to this partition.

    Only the partition's labels are held (one row per item); statements stream through batch
    by batch, because their objects are skewed: 'instance of: human' alone is millions."""
    work = Path(task.work)
    sidecar = work / f"{task.name}.json"
    if (done := task_report(sidecar)) is not None:
        return done
    labels = _first_per_key(read_partition(work, task.maps, "labels", task.part, W_LABELS),
                            ["qid"])
    qids = labels.column("qid").combine_chunks()
    label_col, alias_col = labels.column("label"), labels.column("aliases")
    writer = PartitionedWriter(work / f"{task.name}.joined.arrow", W_JOINED)
    unlabeled = n_stmts = 0
    for stmts in _grouped(iter_partition(work, task.maps, "stmts", task.part), W_STMTS):
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
    del labels, label_col, alias_col, qids
    release_memory()
    return mark_done(sidecar, files, report)


# --------------------------------------------------------------------------------------------
# Reduce: one subject shard -> facts and entities shards.

@dataclass(frozen=True)
class ReduceTask:
    shard: int
    work: str
    maps: tuple[str, ...]
    joins: tuple[str, ...]
    props: str                 # the properties work table (whole)
    facts_out: str | None      # None: that artifact's shard is already there
    entities_out: str | None
    month: str


def _qids(col, prefix: str = "Q") -> pa.Array:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(col, pa.string()), "")


def reduce_shard(task: ReduceTask) -> dict:
    work = Path(task.work)
    entities = _first_per_key(
        read_partition(work, task.maps, "entities", task.shard, W_ENTITIES), ["qid"])
    direct = read_partition(work, task.maps, "direct", task.shard, W_STMTS)
    joined = read_partition(work, task.joins, "joined", task.shard, W_JOINED)
    if direct.num_rows:
        n = direct.num_rows
        direct = direct.append_column("object_label", pa.nulls(n, pa.string()))
        direct = direct.append_column("object_aliases", pa.nulls(n, pa.list_(pa.string())))
    stmts = pa.concat_tables([t for t in (direct, joined) if t.num_rows] or
                             [W_JOINED.empty_table()])
    before = stmts.num_rows
    # One sort gives the published order and puts repeats of a statement side by side.
    stmts = _first_per_key(stmts, ["subject", "property", "statement_id"])
    duplicates = before - stmts.num_rows
    props = cached(str(work / task.props), lambda: pq.read_table(work / task.props))
    n = stmts.num_rows
    pidx = pc.index_in(stmts.column("property"), value_set=props.column("pid").combine_chunks())
    sidx = pc.index_in(stmts.column("subject"), value_set=entities.column("qid").combine_chunks())
    month = pa.array([task.month] * n, pa.string()) if n else pa.array([], pa.string())
    facts = pa.table({
        "subject": _qids(stmts.column("subject")),
        "subject_label": entities.column("label").take(sidx),
        "property": _qids(stmts.column("property"), "P"),
        "property_label": props.column("label").take(pidx),
        "statement_id": stmts.column("statement_id"),
        "rank": stmts.column("rank"),
        "value_type": stmts.column("value_type"),
        "datatype": stmts.column("datatype"),
        "value": stmts.column("value"),
        "text": stmts.column("text"),
        "object_qid": _qids(stmts.column("object")),
        "object_label": stmts.column("object_label"),
        "object_aliases": stmts.column("object_aliases"),
        "unit_qid": _qids(stmts.column("unit")),
        "precision": stmts.column("precision"),
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
            "qid": _qids(entities.column("qid")),
            "label": entities.column("label"),
            "aliases": entities.column("aliases"),
            "description": entities.column("description"),
            "title": entities.column("title"),
            "facts": pa.array([per_subject.get(q, 0) for q in qids], pa.int32()),
            "month": pa.array([task.month] * len(qids), pa.string()),
        }, schema=ENTITIES_SCHEMA)
        with ShardWriter(Path(task.entities_out), ENTITIES_SCHEMA) as w:
            w.write(ents)
    result = {"shard": task.shard, "facts": n, "entities": entities.num_rows,
              "duplicate_statements": duplicates}
    del facts, stmts, entities, direct, joined
    release_memory()
    return result


# --------------------------------------------------------------------------------------------
# The stage.

def build_facts(month: str, *, dump=None, wiki: str = "enwiki",
                data_root: DataRoot | None = None, executor: Executor | None = None,
                config: FactsConfig = FactsConfig(), options: RunOptions = RunOptions(),
                mapping: bool = True) -> FactsResult:
    """Build (or confirm, or repair) data/facts/<month>/ from the month's Wikidata dump, then
    the page_id <-> QID mapping when the month's snapshot exists (see build_mapping)."""
    parse_month(month)
    check_wiki(wiki)
    data_root = data_root or DataRoot.default()
    executor = executor or LocalExecutor(1)
    paths = resolve_dump(dump, data_root, month)
    inputs = {"dump": _dump_inputs(paths)}
    cfg = {"wiki": wiki, "month": month, **asdict(config)}
    root = data_root.facts_month(month)
    root.mkdir(parents=True, exist_ok=True)
    builds = {
        "facts": ArtifactBuild(root / "facts", stage="facts", stage_version=STAGE_VERSION,
                               inputs=inputs, config=cfg, shards=config.shards,
                               schema=FACTS_SCHEMA),
        "entities": ArtifactBuild(root / "entities", stage="facts.entities",
                                  stage_version=STAGE_VERSION, inputs=inputs, config=cfg,
                                  shards=config.shards, schema=ENTITIES_SCHEMA),
        "properties": ArtifactBuild(root / "properties", stage="facts.properties",
                                    stage_version=STAGE_VERSION, inputs=inputs, config=cfg,
                                    shards=1, schema=PROPERTIES_SCHEMA),
    }
    if all(b.state == "current" for b in builds.values()):
        m = builds["facts"].manifest
        log.info("facts %s are up to date (%d facts): nothing to do", month, m["rows"])
        result = FactsResult(root, "current", m)
    else:
        result = _run_facts(month, paths, builds, data_root, executor, config, options, wiki)
    if mapping:
        snap = data_root.snapshot(wiki, month)
        snap_manifest = read_manifest(snap)
        if snap_manifest is not None:
            from ..sources.pageprops import find_page_props
            run = (snap_manifest.get("inputs") or {}).get("run")
            result.mapping = build_mapping(
                month, wiki=wiki, data_root=data_root, executor=executor,
                page_props=find_page_props(data_root, wiki, month, run) if run else None)
        else:
            log.info("no %s snapshot for %s at %s: page_id <-> QID mapping not built", wiki,
                     month, snap)
    return result


def _run_facts(month, paths, builds, data_root, executor, config, options, wiki) -> FactsResult:
    close_cached()   # work files of an earlier run in this process may have had the same names
    try:
        return _run_facts_phases(month, paths, builds, data_root, executor, config, options,
                                 wiki)
    finally:
        close_cached()


def _run_facts_phases(month, paths, builds, data_root, executor, config, options, wiki
                      ) -> FactsResult:
    key = builds["facts"].key
    work = data_root.work("facts", month, key[:16])
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    chunks = plan_chunks(paths, max(1, int(options.chunk_mb * 1e6)))
    partitions = options.partitions
    maps = [MapTask(c, str(work), f"map-{c.index:05d}", wiki, config.language,
                    config.require_sitelink, config.shards, partitions,
                    options.spill_rows, options.compress_work) for c in chunks]
    map_reports = executor.run(map_chunk, maps, desc=f"facts {month}: read dump",
                               weights=[max(c.size, 1) for c in chunks], unit="B")
    t_map = time.perf_counter()
    _check_dump_complete(paths, chunks, map_reports)
    map_names = tuple(f"{m.name}.json" for m in maps)

    props = _first_per_key(read_partition(work, map_names, "props", 0, W_PROPS), ["pid"])
    pq.write_table(props, work / "properties.parquet")
    if builds["properties"].pending_shards():
        table = pa.table({"property": _qids(props.column("pid"), "P"),
                          "label": props.column("label"), "aliases": props.column("aliases"),
                          "datatype": props.column("datatype"),
                          "month": pa.array([month] * props.num_rows, pa.string())},
                         schema=PROPERTIES_SCHEMA)
        with ShardWriter(builds["properties"].shard_path(0), PROPERTIES_SCHEMA) as w:
            w.write(table)

    joins = [JoinTask(p, str(work), map_names, f"join-{p:05d}", config.shards)
             for p in range(partitions)]
    join_reports = executor.run(join_partition, joins, desc=f"facts {month}: object labels",
                                unit="partition")
    t_join = time.perf_counter()
    join_names = tuple(f"{j.name}.json" for j in joins)
    pending_f = set(builds["facts"].pending_shards())
    pending_e = set(builds["entities"].pending_shards())
    reduces = [ReduceTask(s, str(work), map_names, join_names, "properties.parquet",
                          str(builds["facts"].shard_path(s)) if s in pending_f else None,
                          str(builds["entities"].shard_path(s)) if s in pending_e else None,
                          month)
               for s in sorted(pending_f | pending_e)]
    reduce_reports = executor.run(reduce_shard, reduces, desc=f"facts {month}: write shards",
                                  unit="shard")
    t_end = time.perf_counter()

    report = _facts_report(chunks, map_reports, join_reports, reduce_reports, props.num_rows)
    cpu = sum(r["seconds"] for r in map_reports)
    report["entities_per_cpu_second_map"] = round(report["counts"].get("entities", 0) / cpu, 1) \
        if cpu else None
    timings = {"map_s": round(t_map - t0, 3), "join_s": round(t_join - t_map, 3),
               "reduce_s": round(t_end - t_join, 3), "total_s": round(t_end - t0, 3),
               "workers": executor.workers}
    states = {k: b.state for k, b in builds.items()}
    manifests = {k: b.publish(report=report, timings=timings) for k, b in builds.items()}
    if not options.keep_work:
        data_root.remove_work(work)
    c = report["counts"]
    state = "repaired" if "repair" in states.values() and "build" not in states.values() \
        else "built"
    log.info("facts %s %s: %d facts about %d items (%d entities read, %d properties, %d bad "
             "lines) in %d shards, %.1fs", month, state, c.get("facts", 0),
             c.get("items_kept", 0), c.get("entities", 0), props.num_rows,
             c.get("bad_lines", 0), config.shards, t_end - t0)
    return FactsResult(builds["facts"].final.parent, state, manifests["facts"])


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


def _facts_report(chunks, map_reports, join_reports, reduce_reports, n_props) -> dict:
    counts = sum_counts(r["counts"] for r in map_reports)
    for k in ("dump_open_bracket", "dump_close_bracket"):
        counts.pop(k, None)
    for k in ("entities", "items", "items_kept", "properties", "facts", "bad_lines"):
        counts.setdefault(k, 0)
    counts["facts_published"] = sum(r["facts"] for r in reduce_reports)
    counts["duplicate_statements"] = sum(r["duplicate_statements"] for r in reduce_reports)
    counts["item_objects_without_label"] = sum(r["items_without_label"] for r in join_reports)
    counts["property_entities"] = n_props
    # Line numbers: each chunk counts the lines it owns; a file's lines are numbered from 1.
    bad = []
    offset: dict[str, int] = {}
    for c, r in zip(chunks, map_reports):
        base = offset.get(c.path, 0)
        for b in r["bad"]:
            entry = dict(b)
            if "line" in entry:
                entry["line"] += base
            entry["file"] = r["file"]
            bad.append(entry)
        offset[c.path] = base + r["lines"]
    return {"counts": counts,
            "skipped_values": sum_counts(r["skipped_values"] for r in map_reports),
            "skipped_entities": sum_counts(r["skipped_entities"] for r in map_reports),
            "bad": bad[:MAX_LISTED],
            "redirects": [x for r in map_reports for x in r["redirects"]][:MAX_LISTED],
            "chunks": len(chunks), "codecs": sorted({c.codec for c in chunks})}


# --------------------------------------------------------------------------------------------
# Mapping page_id <-> QID: the month's sitelinks (entities/) joined to the month's snapshot
# titles, partitioned by a hash of the normalized title so that memory stays per partition.

def normalize_title(title: str) -> str:
    """MediaWiki's canonical form: NFC, underscores as spaces, no surrounding or repeated
    spaces, first letter upper-case (enwiki is a 'first-letter' wiki)."""
    t = unicodedata.normalize("NFC", title).replace("_", " ")
    t = " ".join(t.split())
    return t[:1].upper() + t[1:]


def _title_part(norm: str, parts: int) -> int:
    return shard_of(zlib.crc32(norm.encode("utf-8")), parts)


@dataclass(frozen=True)
class TitleMapTask:
    kind: str          # "sitelinks" | "articles" | "redirects"
    source: str        # artifact folder or file
    shard: int | None  # shard of that artifact (None: a plain Parquet file, whole)
    out: str
    parts: int


W_TITLES = pa.schema([("norm", pa.string()), ("id", pa.int64()), ("title", pa.string())])


def map_titles(task: TitleMapTask) -> dict:
    out = Path(task.out)
    if (done := task_report(out.with_suffix(".json"))) is not None:
        return done
    src = Path(task.source)
    pf = pq.ParquetFile(src / f"part-{task.shard:05d}.parquet" if task.shard is not None else src)
    cols = {"sitelinks": ["qid", "title"], "articles": ["page_id", "title"],
            "redirects": ["title", "target"]}[task.kind]
    writer = PartitionedWriter(out, W_TITLES)
    n = 0
    for batch in pf.iter_batches(batch_size=65536, columns=cols):
        a, b = (batch.column(0).to_pylist(), batch.column(1).to_pylist())
        norms, ids, titles = [], [], []
        for x, y in zip(a, b):
            if x is None or y is None:
                continue
            if task.kind == "sitelinks":
                norms.append(normalize_title(y)), ids.append(int(x[1:])), titles.append(y)
            elif task.kind == "articles":
                norms.append(normalize_title(y)), ids.append(int(x)), titles.append(y)
            else:  # redirect title -> target: `title` carries the normalized target
                norms.append(normalize_title(x)), ids.append(0), titles.append(normalize_title(y))
        if norms:
            parts = np.array([_title_part(t, task.parts) for t in norms], dtype=np.int64)
            writer.write(pa.table({"norm": norms, "id": ids, "title": titles}, schema=W_TITLES),
                         parts)
            n += len(norms)
    files = {task.kind: writer.close()}
    report = {"kind": task.kind, "rows": n}
    return mark_done(out.with_suffix(".json"), files, report)


@dataclass(frozen=True)
class TitleJoinTask:
    part: int
    work: str
    sidecars: tuple[str, ...]
    out: str
    shards: int
    round: int          # 1: direct titles (+ redirect hops out); 2: redirected titles


W_MATCHES = pa.schema([("qid", pa.int64()), ("page_id", pa.int64()), ("title", pa.string()),
                       ("match", pa.string())])


def join_titles(task: TitleJoinTask) -> dict:
    work = Path(task.work)
    out = Path(task.out)
    if (done := task_report(out.with_suffix(".json"))) is not None:
        return done
    articles = _first_by(read_partition(work, task.sidecars, "articles", task.part, W_TITLES), "norm")
    report: dict = {"part": task.part}
    matches = PartitionedWriter(out, W_MATCHES)
    files: dict = {}
    if task.round == 1:
        links = read_partition(work, task.sidecars, "sitelinks", task.part, W_TITLES)
        idx = pc.index_in(links.column("norm"), value_set=articles.column("norm").combine_chunks())
        hit = pc.is_valid(idx)
        m = links.filter(hit)
        midx = idx.filter(hit)
        _write_matches(matches, m.column("id"), articles.column("id").take(midx),
                       articles.column("title").take(midx), "title", task.shards)
        missed = links.filter(pc.invert(hit))
        redirects = _first_by(read_partition(work, task.sidecars, "redirects", task.part, W_TITLES),
                              "norm")
        ridx = pc.index_in(missed.column("norm"),
                           value_set=redirects.column("norm").combine_chunks())
        rhit = pc.is_valid(ridx)
        hops = pa.table({"norm": redirects.column("title").take(ridx.filter(rhit)),
                         "id": missed.column("id").filter(rhit),
                         "title": missed.column("title").filter(rhit)}, schema=W_TITLES)
        hop_writer = PartitionedWriter(out.with_name(out.stem + ".hops.arrow"), W_TITLES)
        if hops.num_rows:
            parts = np.array([_title_part(t, task.shards) for t in
                              hops.column("norm").to_pylist()], dtype=np.int64)
            hop_writer.write(hops, parts)
        files["hops"] = hop_writer.close()
        report.update(sitelinks=links.num_rows, matched=m.num_rows,
                      redirect_hops=hops.num_rows,
                      unmatched=missed.num_rows - hops.num_rows, articles=articles.num_rows)
    else:
        hops = read_partition(work, task.sidecars, "hops", task.part, W_TITLES)
        idx = pc.index_in(hops.column("norm"), value_set=articles.column("norm").combine_chunks())
        hit = pc.is_valid(idx)
        _write_matches(matches, hops.column("id").filter(hit),
                       articles.column("id").take(idx.filter(hit)),
                       articles.column("title").take(idx.filter(hit)), "redirect", task.shards)
        report.update(matched=int(pc.sum(hit).as_py() or 0),
                      unmatched=hops.num_rows - int(pc.sum(hit).as_py() or 0))
    files["matches"] = matches.close()
    return mark_done(out.with_suffix(".json"), files, report)


def _first_by(table: pa.Table, key: str) -> pa.Table:
    if table.num_rows < 2:
        return table
    table = table.take(pc.sort_indices(table, [(key, "ascending"), ("id", "ascending")]))
    col = table.column(key)
    same = pc.fill_null(pc.equal(col.slice(1), col.slice(0, table.num_rows - 1)), False)
    return table.filter(pa.concat_arrays([pa.array([True]), pc.invert(same).combine_chunks()]))


def _write_matches(writer, qids, page_ids, titles, how, shards) -> None:
    t = pa.table({"qid": qids, "page_id": page_ids, "title": titles,
                  "match": pa.array([how] * len(qids), pa.string())}, schema=W_MATCHES)
    if t.num_rows:
        writer.write(t, shard_array(t.column("qid").to_numpy(), shards))


@dataclass(frozen=True)
class MappingReduceTask:
    shard: int
    work: str
    sidecars: tuple[str, ...]
    out: str
    month: str


def reduce_mapping(task: MappingReduceTask) -> dict:
    t = read_partition(Path(task.work), task.sidecars, "matches", task.shard, W_MATCHES)
    # A direct title match wins over a redirect; a page claimed twice keeps the lower QID.
    rank = pc.if_else(pc.equal(t.column("match"), "title"), 0, 1)
    t = t.append_column("rank", rank)
    t = t.take(pc.sort_indices(t, [("qid", "ascending"), ("rank", "ascending"),
                                   ("page_id", "ascending")]))
    n = t.num_rows
    if n > 1:
        q = t.column("qid")
        same = pc.fill_null(pc.equal(q.slice(1), q.slice(0, n - 1)), False)
        t = t.filter(pa.concat_arrays([pa.array([True]), pc.invert(same).combine_chunks()]))
    out = pa.table({"qid": _qids(t.column("qid")), "page_id": t.column("page_id"),
                    "title": t.column("title"), "match": t.column("match"),
                    "month": pa.array([task.month] * t.num_rows, pa.string())},
                   schema=MAPPING_SCHEMA)
    with ShardWriter(Path(task.out), MAPPING_SCHEMA) as w:
        w.write(out)
    return {"shard": task.shard, "rows": out.num_rows, "qids_with_two_pages": n - out.num_rows}


def build_mapping(month: str, *, wiki: str = "enwiki", data_root: DataRoot | None = None,
                  executor: Executor | None = None, redirects: Path | None = None,
                  page_props: Path | None = None) -> MappingResult:
    """data/facts/<month>/mapping/: page_id, title, qid for the snapshot's articles.

    With `page_props` (the enwiki run's page_props table dump, see twiki.sources.pageprops): from its
    wikibase_item rows, by page id (match "page_props"), the pages of the snapshot only.
    Otherwise from the month's sitelinks (facts entities/) and the month's snapshot titles,
    normalized; a sitelink to a redirect (a page renamed between the two dumps) is followed
    when `redirects` (a Parquet file or folder with columns title, target) gives it.
    Unmatched counts are in the report either way."""
    parse_month(month)
    data_root = data_root or DataRoot.default()
    executor = executor or LocalExecutor(1)
    root = data_root.facts_month(month)
    ents_dir, snap_dir = root / "entities", data_root.snapshot(wiki, month)
    ents = require_artifact(ents_dir, f"facts for {month}",
                            f"run `twiki facts --month {month}` first")
    snap = require_artifact(snap_dir, f"{wiki} snapshot for {month}",
                            f"run `twiki extract --month {month}` first")
    red_files: list[Path] = []
    if redirects is not None:
        redirects = Path(redirects)
        red_files = sorted(redirects.glob("*.parquet")) if redirects.is_dir() else [redirects]
    inputs = {"entities": ents["key"], "snapshot": snap["key"],
              "redirects": [{"name": p.name, "sha256": file_sha256(p)} for p in red_files]}
    if page_props is not None:
        page_props = Path(page_props)
        inputs["page_props"] = {"name": page_props.name, "sha256": file_sha256(page_props)}
    shards = ents["shard_count"]
    build = ArtifactBuild(root / "mapping", stage="facts.mapping", stage_version=MAPPING_VERSION,
                          inputs=inputs, config={"wiki": wiki, "month": month, "shards": shards},
                          shards=shards, schema=MAPPING_SCHEMA)
    if build.state == "current":
        log.info("mapping %s is up to date (%d pages): nothing to do", month,
                 build.manifest["rows"])
        return MappingResult(build.final, "current", build.manifest)
    close_cached()
    t0 = time.perf_counter()
    work = data_root.work("mapping", month, build.key[:16])
    work.mkdir(parents=True, exist_ok=True)
    try:
        if page_props is not None:
            report = _run_mapping_page_props(month, executor, build, work, snap_dir, snap,
                                             page_props)
        else:
            report = _run_mapping(month, executor, build, work, ents_dir, snap_dir, snap,
                                  red_files)
    finally:
        close_cached()
    t = time.perf_counter() - t0
    manifest = build.publish(report=report, timings={"total_s": round(t, 3),
                                                     "workers": executor.workers})
    data_root.remove_work(work)
    c = report["counts"]
    log.info("mapping %s by %s: %d of %d articles mapped, %.1fs", month,
             report.get("page_props") or "sitelink titles", c["mapped"], c["articles"], t)
    return MappingResult(build.final, "built" if build.state == "build" else "repaired", manifest)


def _run_mapping(month, executor, build, work, ents_dir, snap_dir, snap, red_files) -> dict:
    """The mapping's shards by sitelink titles; returns the report."""
    shards = build.shards
    tasks = [TitleMapTask("sitelinks", str(ents_dir), i, str(work / f"sl-{i:05d}.arrow"), shards)
             for i in range(shards)]
    tasks += [TitleMapTask("articles", str(snap_dir), i, str(work / f"ar-{i:05d}.arrow"), shards)
              for i in range(snap["shard_count"])]
    tasks += [TitleMapTask("redirects", str(p), None, str(work / f"rd-{i:05d}.arrow"), shards)
              for i, p in enumerate(red_files)]
    executor.run(map_titles, tasks, desc=f"mapping {month}: titles", unit="shard")
    sides = tuple(Path(t.out).with_suffix(".json").name for t in tasks)
    r1 = [TitleJoinTask(p, str(work), sides, str(work / f"j1-{p:05d}.arrow"), shards, 1)
          for p in range(shards)]
    rep1 = executor.run(join_titles, r1, desc=f"mapping {month}: match titles", unit="part")
    sides1 = tuple(Path(t.out).with_suffix(".json").name for t in r1)
    r2 = [TitleJoinTask(p, str(work), sides + sides1, str(work / f"j2-{p:05d}.arrow"), shards, 2)
          for p in range(shards)]
    rep2 = executor.run(join_titles, r2, desc=f"mapping {month}: follow redirects", unit="part")
    sides2 = tuple(Path(t.out).with_suffix(".json").name for t in r2)
    reds = [MappingReduceTask(s, str(work), sides1 + sides2, str(build.shard_path(s)), month)
            for s in build.pending_shards()]
    rrep = executor.run(reduce_mapping, reds, desc=f"mapping {month}: write", unit="shard")
    sitelinks = sum(r["sitelinks"] for r in rep1)
    articles = sum(r["articles"] for r in rep1)
    matched = sum(r["rows"] for r in rrep)
    report = {"source": "sitelink_titles", "counts": {
        "sitelinks": sitelinks, "articles": articles, "mapped": matched,
        "matched_by_title": sum(r["matched"] for r in rep1),
        "matched_by_redirect": sum(r["matched"] for r in rep2),
        "sitelinks_unmatched": sitelinks - sum(r["matched"] for r in rep1)
        - sum(r["matched"] for r in rep2),
        "redirect_targets_not_in_snapshot": sum(r["unmatched"] for r in rep2),
        "articles_without_item": articles - matched,
        "qids_with_two_pages": sum(r["qids_with_two_pages"] for r in rrep)}}
    return report


# Mapping from the page_props table: page ids linked to items by the wiki itself.

W_PAGE_ITEMS = pa.schema([("page_id", pa.int64()), ("qid", pa.int64())])


@dataclass(frozen=True)
class PagePropsMapTask:
    path: str          # the page_props dump
    out: str
    page_shards: int   # the snapshot's shard count: rows are partitioned like its pages


def map_page_props(task: PagePropsMapTask) -> dict:
    """The dump's wikibase_item rows, partitioned by the snapshot shard of their page."""
    from ..sources.pageprops import iter_wikibase_items
    out = Path(task.out)
    if (done := task_report(out.with_suffix(".json"))) is not None:
        return done
    writer = PartitionedWriter(out, W_PAGE_ITEMS)
    pages: list[int] = []
    qids: list[int] = []

    def flush() -> None:
        ids = np.asarray(pages, dtype=np.int64)
        writer.write(pa.table({"page_id": ids, "qid": np.asarray(qids, dtype=np.int64)},
                              schema=W_PAGE_ITEMS), shard_array(ids, task.page_shards))
        pages.clear(), qids.clear()

    n = 0
    for page_id, qid in iter_wikibase_items(Path(task.path)):
        pages.append(page_id), qids.append(qid)
        n += 1
        if len(pages) >= 1_000_000:
            flush()
    if pages:
        flush()
    report = {"page_props_items": n}
    return mark_done(out.with_suffix(".json"), {"items": writer.close()}, report)


@dataclass(frozen=True)
class PagePropsJoinTask:
    shard: int         # snapshot shard
    snapshot: str      # its file
    work: str
    sidecars: tuple[str, ...]
    out: str
    shards: int        # mapping shards (by QID)


def join_page_props(task: PagePropsJoinTask) -> dict:
    """The snapshot shard's articles that the page_props rows link to an item."""
    out = Path(task.out)
    if (done := task_report(out.with_suffix(".json"))) is not None:
        return done
    items = read_partition(Path(task.work), task.sidecars, "items", task.shard, W_PAGE_ITEMS)
    items = items.take(pc.sort_indices(items, [("page_id", "ascending"), ("qid", "ascending")]))
    pages = pq.read_table(task.snapshot, columns=["page_id", "title"])
    idx = pc.index_in(pages.column("page_id"), value_set=items.column("page_id").combine_chunks())
    hit = pc.is_valid(idx)
    matches = PartitionedWriter(out, W_MATCHES)
    _write_matches(matches, items.column("qid").take(idx.filter(hit)),
                   pages.column("page_id").filter(hit), pages.column("title").filter(hit),
                   "page_props", task.shards)
    matched = int(pc.sum(hit).as_py() or 0)
    in_snapshot = pc.is_in(items.column("page_id"), value_set=pages.column("page_id").combine_chunks())
    report = {"shard": task.shard, "articles": pages.num_rows, "matched": matched,
              "items_not_in_snapshot": items.num_rows - int(pc.sum(in_snapshot).as_py() or 0)}
    return mark_done(out.with_suffix(".json"), {"matches": matches.close()}, report)


def _run_mapping_page_props(month, executor, build, work, snap_dir, snap, page_props) -> dict:
    """The mapping's shards by the page_props table's page ids; returns the report."""
    shards = build.shards
    page_shards = snap["shard_count"]
    read = PagePropsMapTask(str(page_props), str(work / "pp.arrow"), page_shards)
    [rep0] = executor.run(map_page_props, [read], desc=f"mapping {month}: page_props",
                          unit="file")
    joins = [PagePropsJoinTask(s, str(snap_dir / shard_name(s)), str(work), ("pp.json",),
                               str(work / f"jp-{s:05d}.arrow"), shards)
             for s in range(page_shards)]
    rep1 = executor.run(join_page_props, joins, desc=f"mapping {month}: match pages",
                        unit="shard")
    sides = tuple(Path(t.out).with_suffix(".json").name for t in joins)
    reds = [MappingReduceTask(s, str(work), sides, str(build.shard_path(s)), month)
            for s in build.pending_shards()]
    rrep = executor.run(reduce_mapping, reds, desc=f"mapping {month}: write", unit="shard")
    articles = sum(r["articles"] for r in rep1)
    matched = sum(r["rows"] for r in rrep)
    report = {"source": "page_props", "page_props": Path(page_props).name, "counts": {
        "page_props_items": rep0["page_props_items"], "articles": articles, "mapped": matched,
        "matched_by_page_props": sum(r["matched"] for r in rep1),
        "page_props_items_not_in_snapshot": sum(r["items_not_in_snapshot"] for r in rep1),
        "articles_without_item": articles - matched,
        "qids_with_two_pages": sum(r["qids_with_two_pages"] for r in rrep)}}
    return report
