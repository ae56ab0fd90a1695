"""probes: the aligned facts of months A -> B -> TWiki-Probes, TemporalWiki's heuristic filters
done right (named reasons, seeded caps), plus the stage-count report.

Reads data/probes/<A>_<B>/aligned/ (twiki.stages.align) and writes, under data/probes/<A>_<B>/:
  probes/              the probes: a seeded sample of probes_full/, stratified by relation, of
                       `sample_unchanged` Unchanged (kind unchanged) and `sample_changed`
                       Changed (kind new | updated) probes: what export and `twiki eval` use
  probes_full/         every probe the filters and caps keep (the set the sample is drawn from)
  rejected/<reason>/   every aligned fact that is not a probe, under the reason it was dropped
  report.json, report.md   initial categorization -> alignment -> heuristic filtering ->
                       sample, per set, rejections per reason, leakage, top relations
Each probe carries a stable `probe_id` (month pair, statement, value), the `prompt` a language
model scores the object after ("subject relation"), and align's change type, cue, object
aliases and validity (empty where the aligned rows lack them).
Five phases over shards, the first four resumable (work files under data/work/probes/...):
  rows     one aligned shard: the row filters (labels, containment, length, leakage switch);
           the rows kept go to partitions by a hash of the subject's label
  dedupe   one partition: facts whose sentence states their object under two relations out
           (`drop_ambiguous`), then one probe per (set, subject, relation, object) text
  subject  one partition: each subject capped (every row of a subject is in one partition)
  relation one partition: each relation capped, against thresholds computed from all of them
  sample   one partition: its probes_full/ shard, and its probes/ shard: the rows of each
           relation whose sample priority is within the relation's quota
Memory: a task holds one partition of the aligned facts (probes-to-be, a small share of the
facts), and the caller one integer (a priority) per probe of the relations that may exceed
their cap, and at most `sample_*` integers per relation for the sample.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa

from ..engine.artifacts import (ROW_GROUP_ROWS, ArtifactBuild, ShardWriter, iter_row_groups,
                                require_artifact, shard_name, shard_of, sum_counts,
                                write_json_atomic)
from ..engine.executors import Executor
from ..engine.paths import DataRoot, month_pair
from ..engine.shuffle import PartitionedWriter, PartitionTask, markers, resumable
from ..engine.stage import StageResult, StageRun, stage_defaults
from ..errors import ConfigError
from ..sources.wikidata import qid_number
from ..text.normalize import search_form
from .align import ALIGNED_SCHEMA, CHANGED_KINDS, STAGE as ALIGN_STAGE

log = logging.getLogger("twiki")

STAGE = "probes"
STAGE_VERSION = 2

# What a probe adds to its aligned row: a stable id and the exact prompt scored.
PROBE_ID_FIELDS = [pa.field("probe_id", pa.string(), nullable=False),   # probe_id()
                   pa.field("prompt", pa.string())]                     # probe_prompt()
# Align's columns of contract C4 (issue 15): a probe has them whether or not the aligned rows
# it is made from do (a missing column is an empty value: null, or [] for the aliases).
ALIGN_C4_FIELDS = [pa.field("change_type", pa.string()),     # the fact diff's category
                   pa.field("cue", pa.string()),             # the relation cue found
                   pa.field("object_aliases", pa.list_(pa.string())),
                   pa.field("valid_from", pa.string()),      # P580 start time (or P585)
                   pa.field("valid_to", pa.string())]        # P582 end time
PROBES_SCHEMA = pa.schema(PROBE_ID_FIELDS + list(ALIGNED_SCHEMA)
                          + [f for f in ALIGN_C4_FIELDS if f.name not in ALIGNED_SCHEMA.names])
REJECTED_SCHEMA = pa.schema(list(PROBES_SCHEMA)
                            + [pa.field("reason", pa.string(), nullable=False)])

SETS = ("unchanged", "changed")
FULL = "probes_full"   # the full filtered set's folder (DataRoot.probes_full), beside probes/
# Every reason a fact can be dropped for, in the order the filters run.
ROW_REASONS = ("subject_without_label", "relation_without_label", "subject_object_contain",
               "object_too_long", "object_in_month_a", "evidence_not_in_diffset")
REASONS = ROW_REASONS + ("ambiguous_relation", "duplicate", "subject_cap", "relation_cap")


@dataclass(frozen=True)
class FilterConfig:
    """TemporalWiki's heuristic filters (all of it is in the artifact key)."""

    max_object_words: int = 5
    """Objects longer than this many words are dropped (TemporalWiki: 5)."""
    subject_cap: float = 0.01
    """A subject keeps at most this share of its set's probes (TemporalWiki: 1%)."""
    relation_cap: float = 0.05
    """A relation keeps at most this share of its set's probes (TemporalWiki: 5%)."""
    min_cap: int = 1
    """A cap never falls below this many probes (1% of a small set is less than one)."""
    seed: int = 0
    """Which probes a cap and the sample keep: the same seed keeps the same ones, another seed
    others."""
    drop_leaked: bool = False
    """Drop Changed probes whose object month A's article already had, or whose evidence
    sentence is not wholly diff text (a model trained on the diffset never saw it whole).
    Off by default, as in TemporalWiki: they are flagged in the probes and counted."""
    drop_ambiguous: bool = True
    """Drop facts of one subject whose object is found in the same evidence sentence under two
    or more relations ('born in Seoul, South Korea' is the evidence of both IU's country of
    citizenship and location of formation): the sentence cannot say which relation it states.
    Not one of TemporalWiki's filters; it costs the rare sentence that states two (born and
    died in one city)."""
    sample_unchanged: int = 7000
    """Unchanged probes kept in probes/ (a seeded sample of probes_full/, stratified by
    relation; all of them when there are no more). Near the paper's Unchanged sets (6.9K-7.3K a
    month). 0: no sample, probes/ is the full set."""
    sample_changed: int = 2000
    """Changed probes kept in probes/, drawn as `sample_unchanged` (the paper's Changed sets:
    1.4K-2.0K a month). 0: no sample."""

    def __post_init__(self) -> None:
        if self.max_object_words < 1:
            raise ConfigError(f"max_object_words must be at least 1, not {self.max_object_words}")
        for name in ("subject_cap", "relation_cap"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ConfigError(f"{name} must be in (0, 1], not {v}")
        if self.min_cap < 1:
            raise ConfigError(f"min_cap must be at least 1, not {self.min_cap}")
        for name in ("sample_unchanged", "sample_changed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} must be a whole number >= 0 (0: no sample), not {v!r}")

    def sample_size(self, probe_set: str) -> int:
        """The sample's size for a probe set (0: no sample)."""
        return self.sample_unchanged if probe_set == "unchanged" else self.sample_changed


def probe_set(kind: str) -> str:
    """'changed' for new and updated facts, 'unchanged' otherwise."""
    return "changed" if kind in CHANGED_KINDS else "unchanged"


# ---------------------------------------------------------------------------------------
# Row filters: each answers (True, None) to keep a row or (False, reason).

def _words(text: str) -> str:
    return f" {search_form(text)} "


class RowFilter:
    """One heuristic over one probe row. `filter` returns (keep, reason)."""

    name = "filter"

    def filter(self, row: dict) -> tuple[bool, str | None]:
        raise NotImplementedError


class LabelFilter(RowFilter):
    """A probe is text: its subject and relation need an English label."""

    name = "labels"

    def filter(self, row):
        if not row["subject"]:
            return False, "subject_without_label"
        if not row["relation"]:
            return False, "relation_without_label"
        return True, None


class ContainmentFilter(RowFilter):
    """Subject and object that contain each other ('Douglas Adams' / 'Douglas') make a probe
    that repeats itself. Compared normalized and by whole words, unlike TemporalWiki's raw
    substring test ('Ann' is not in 'Annapolis')."""

    name = "containment"

    def filter(self, row):
        s, o = _words(row["subject"]), _words(row["object"])
        if s.strip() and o.strip() and (s in o or o in s):
            return False, "subject_object_contain"
        return True, None


class ObjectLengthFilter(RowFilter):
    """Objects longer than `max_words` words (TemporalWiki: 5) are titles and descriptions,
    not facts a language model can be probed on."""

    name = "object_length"

    def __init__(self, max_words: int):
        self.max_words = max_words

    def filter(self, row):
        if len(row["object"].split()) > self.max_words:
            return False, "object_too_long"
        return True, None


class LeakageFilter(RowFilter):
    """Changed probes a model could know without the diffset: the object was already in month
    A's article, or the evidence sentence is not wholly in the diffset."""

    name = "leakage"

    def filter(self, row):
        if row["kind"] in CHANGED_KINDS:
            if row["object_in_month_a"]:
                return False, "object_in_month_a"
            if row["evidence_in_diffset"] is False:
                return False, "evidence_not_in_diffset"
        return True, None


def row_filters(config: FilterConfig) -> list[RowFilter]:
    fs: list[RowFilter] = [LabelFilter(), ContainmentFilter(),
                           ObjectLengthFilter(config.max_object_words)]
    if config.drop_leaked:
        fs.append(LeakageFilter())
    return fs


def apply_filters(rows: Iterable[dict], filters: list[RowFilter]
                  ) -> tuple[list[dict], list[tuple[str, dict]]]:
    """The rows every filter keeps, and (reason, row) for the others (first failing filter)."""
    kept, rejected = [], []
    for row in rows:
        for f in filters:
            ok, reason = f.filter(row)
            if not ok:
                rejected.append((reason, row))
                break
        else:
            kept.append(row)
    return kept, rejected


def dedupe_key(row: dict) -> tuple:
    """(set, subject, relation, object) as text, normalized: two subjects with the same label
    make the same probe."""
    return (probe_set(row["kind"]), search_form(row["subject"]), search_form(row["relation"]),
            search_form(row["object"]))


def priority(seed: int, row: dict, salt: str = "") -> int:
    """The seeded sampling order of a row: a 64-bit hash of the seed and the statement, the
    same on every machine and in every shard layout. `salt` gives another order from the
    same seed (the sample's is "sample": independent of the caps')."""
    h = hashlib.blake2b(f"{seed}{salt}\x1f{row['statement_id']}\x1f{row['page_id']}".encode(),
                        digest_size=8)
    return int.from_bytes(h.digest(), "big")


def cap_value(share: float, n: int, min_cap: int) -> int:
    return max(min_cap, math.floor(share * n))


def probe_id(month_a: str, month_b: str, statement_id: str, value: str) -> str:
    """A probe's stable id: 16 hex digits of a hash of the month pair, the statement and its
    value. The same fact of the same pair has the same id in every rerun, shard layout and
    worker count; another pair (or a new value of the statement) another id."""
    h = hashlib.blake2b("\x1f".join((month_a, month_b, statement_id, value)).encode(),
                        digest_size=8)
    return h.hexdigest()


def probe_prompt(subject: str | None, relation: str | None) -> str | None:
    """The exact text a language model is given before the object: "subject relation" (the
    paper's probe; the scored string is prompt + " " + object). None without both labels."""
    s, r = (subject or "").strip(), (relation or "").strip()
    return f"{s} {r}" if s and r else None


def probe_row(row: dict) -> dict:
    """An aligned row as a probe row: its probe_id and prompt, and align's C4 columns empty
    where the aligned rows lack them."""
    out = {"probe_id": probe_id(row["month_a"], row["month_b"], row["statement_id"],
                                row["value"]),
           "prompt": probe_prompt(row["subject"], row["relation"])}
    for f in ALIGN_C4_FIELDS:
        if row.get(f.name) is None:
            out[f.name] = [] if pa.types.is_list(f.type) else None
    return {**row, **out}


def allocate(counts: dict[str, int], size: int) -> dict[str, int]:
    """How many probes of each relation a sample of `size` keeps, in proportion to `counts`
    (relation -> probes of the full set): every relation gets floor(size * n / N), and the
    rest, one each, goes to the largest remainders (ties: the larger relation, then the
    relation's name). The whole set when `size` is 0 or not below N."""
    total = sum(counts.values())
    if size <= 0 or total <= size:
        return dict(counts)
    quota = {r: size * n // total for r, n in counts.items()}
    rest = size - sum(quota.values())
    for r in sorted(counts, key=lambda r: (-(size * counts[r] % total), -counts[r], r))[:rest]:
        quota[r] += 1
    return quota


# ---------------------------------------------------------------------------------------
# Work files: Arrow IPC of rows, one batch per partition and flush (twiki.engine.shuffle).

WORK_SCHEMA = pa.schema(list(PROBES_SCHEMA) + [pa.field("priority", pa.uint64()),
                                               pa.field("sample_priority", pa.uint64())])


class _Rejects:
    """Rejected rows of one task, streamed into the rejected/<reason>/ shard it owns."""

    def __init__(self, outs: dict[str, str | None]):
        self.writers = {r: ShardWriter(Path(p), REJECTED_SCHEMA) for r, p in outs.items() if p}
        self.buf: dict[str, list[dict]] = {r: [] for r in outs}
        self.counts: dict = {}

    def add(self, reason: str, row: dict) -> None:
        g = probe_set(row["kind"])
        self.counts.setdefault(g, {})
        self.counts[g][reason] = self.counts[g].get(reason, 0) + 1
        if reason in self.writers:
            self.buf[reason].append({**{k: row[k] for k in PROBES_SCHEMA.names},
                                     "reason": reason})
            if len(self.buf[reason]) >= ROW_GROUP_ROWS:
                self.flush(reason)

    def flush(self, reason: str) -> None:
        if self.buf[reason]:
            self.writers[reason].write(pa.Table.from_pylist(self.buf[reason],
                                                            schema=REJECTED_SCHEMA))
            self.buf[reason] = []

    def close(self) -> None:
        for r in self.writers:
            self.flush(r)
            self.writers[r].close()

    def abort(self) -> None:
        for w in self.writers.values():
            w.abort()

    @classmethod
    @contextlib.contextmanager
    def open(cls, outs: dict[str, str | None]) -> Iterator["_Rejects"]:
        """The rejects of a task's block: their shards are closed into place when it ends
        without error, else dropped."""
        rejects = cls(outs)
        try:
            yield rejects
            rejects.close()
        except BaseException:
            rejects.abort()
            raise


class _PartWriter:
    """Rows into one work file of the shuffle, a batch per partition each time
    `ROW_GROUP_ROWS` rows are buffered (so a task holds one buffer, not its shard)."""

    def __init__(self, path: Path):
        self.out = PartitionedWriter(path, WORK_SCHEMA)
        self.rows: list[dict] = []
        self.parts: list[int] = []

    def add(self, part: int, row: dict) -> None:
        self.rows.append(row)
        self.parts.append(part)
        if len(self.rows) >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.out.write(pa.Table.from_pylist(self.rows, schema=WORK_SCHEMA),
                           np.asarray(self.parts, dtype=np.int64))
            self.rows, self.parts = [], []

    def close(self) -> dict:
        """The file's entry of the task's done-marker."""
        self.flush()
        return {"rows": self.out.close()}


def _write_rows(path: Path, rows: list[dict], part: int) -> dict:
    w = _PartWriter(path)
    for r in rows:
        w.add(part, r)
    return w.close()


def _read_rows(task: PartitionTask) -> list[dict]:
    return task.read("rows", WORK_SCHEMA).to_pylist()


def _row_order(row: dict) -> tuple:
    return (row["page_id"], qid_number(row["subject_qid"]), qid_number(row["property"]),
            row["statement_id"])


# --- phase 1: row filters, partitioned by subject

@dataclass(frozen=True)
class RowsTask:
    shard: int
    aligned: str
    work: str
    name: str             # "rows-00003": its work file rows-00003.arrow, its done-marker .json
    parts: int
    rejected: dict        # reason -> shard path (None: built already / not this phase's)
    config: FilterConfig


@resumable
def filter_rows(task: RowsTask) -> tuple[dict, dict]:
    filters = row_filters(task.config)
    parts = _PartWriter(Path(task.work) / f"{task.name}.arrow")
    leak = Counter()
    with _Rejects.open(task.rejected) as rejects:
        for t in iter_row_groups(Path(task.aligned)):
            rows = [probe_row(r) for r in t.to_pylist()]
            for r in rows:
                if r["kind"] in CHANGED_KINDS:
                    leak["changed"] += 1
                    leak["object_in_month_a"] += bool(r["object_in_month_a"])
                    leak["evidence_not_in_diffset"] += r["evidence_in_diffset"] is False
                    leak["either"] += bool(r["object_in_month_a"]) or \
                        r["evidence_in_diffset"] is False
            kept, rejected = apply_filters(rows, filters)
            for reason, row in rejected:
                rejects.add(reason, row)
            for row in kept:
                p = shard_of(zlib.crc32(search_form(row["subject"]).encode()), task.parts)
                parts.add(p, {**row, "priority": priority(task.config.seed, row),
                              "sample_priority": priority(task.config.seed, row, "sample")})
        files = parts.close()
    return files, {"rejected": rejects.counts, "leakage_aligned": dict(leak)}


# --- phase 2: dedupe

@dataclass(frozen=True)
class PartTask(PartitionTask):
    """`part`: a partition of the previous phase's rows (`sidecars`: its done-markers)."""

    name: str                       # "dedupe-00003": its work file and done-marker
    rejected: dict
    caps: dict                      # phase 2: drop_ambiguous; phase 3: subject caps, watched


@resumable
def dedupe_part(task: PartTask) -> tuple[dict, dict]:
    rows = _read_rows(task)
    rows.sort(key=lambda r: (dedupe_key(r), _row_order(r)))
    kept, last = [], None
    relations: dict = {}
    ambiguous = _ambiguous(rows) if task.caps.get("drop_ambiguous") else set()
    with _Rejects.open(task.rejected) as rejects:
        for r in rows:
            if _evidence_key(r) in ambiguous:
                rejects.add("ambiguous_relation", r)
                continue
            k = dedupe_key(r)
            if k == last:
                rejects.add("duplicate", r)
                continue
            last = k
            kept.append(r)
            g = probe_set(r["kind"])
            relations.setdefault(g, {})
            relations[g][r["relation"]] = relations[g].get(r["relation"], 0) + 1
        files = _write_rows(Path(task.work) / f"{task.name}.arrow", kept, task.part)
    n = Counter(probe_set(r["kind"]) for r in kept)
    return files, {"rejected": rejects.counts, "kept": dict(n), "relations": relations}


def _evidence_key(row: dict) -> tuple:
    return (probe_set(row["kind"]), row["subject_qid"], search_form(row["evidence"]),
            search_form(row["object"]))


def _ambiguous(rows: list[dict]) -> set[tuple]:
    """Evidence keys (subject, sentence, object) found under more than one relation."""
    props: dict[tuple, set[str]] = {}
    for r in rows:
        props.setdefault(_evidence_key(r), set()).add(r["property"])
    return {k for k, v in props.items() if len(v) > 1}


# --- phase 3: subject cap

@resumable
def cap_subjects(task: PartTask) -> tuple[dict, dict]:
    """Each subject (QID) of each set keeps its `cap` rows of lowest priority. Reports, for the
    relations that may be over their cap, the priorities of the rows it kept."""
    rows = _read_rows(task)
    rows.sort(key=lambda r: (probe_set(r["kind"]), r["subject_qid"], r["priority"],
                             r["statement_id"]))
    kept: list[dict] = []
    watched = task.caps["watched"]       # set -> relations that may exceed the relation cap
    prio: dict = {}
    with _Rejects.open(task.rejected) as rejects:
        n, last = 0, None
        for r in rows:
            g = probe_set(r["kind"])
            key = (g, r["subject_qid"])
            n = n + 1 if key == last else 1
            last = key
            if n > task.caps["subject"][g]:
                rejects.add("subject_cap", r)
                continue
            kept.append(r)
            if r["relation"] in watched.get(g, ()):
                prio.setdefault(g, {}).setdefault(r["relation"], []).append(r["priority"])
        files = _write_rows(Path(task.work) / f"{task.name}.arrow", kept, task.part)
    return files, {"rejected": rejects.counts, "priorities": prio}


# --- phase 4: relation cap

@dataclass(frozen=True)
class RelationTask(PartitionTask):
    """`part`: a partition of the subject phase's rows, and so a shard of the probes."""

    name: str                       # "relation-00003": its work file and done-marker
    rejected: dict
    thresholds: dict                # set -> relation -> the highest priority it keeps
    sizes: dict                     # set -> the sample's size (0: no sample)


@resumable
def cap_relations(task: RelationTask) -> tuple[dict, dict]:
    """Rows of a relation over its cap are kept when their priority is at most the relation's
    threshold (the cap-th lowest priority of the relation over every partition). Reports the
    rows kept per relation and, for the sample, each relation's lowest sample priorities (at
    most the sample's size of them: no relation's quota is larger)."""
    rows = _read_rows(task)
    kept = []
    with _Rejects.open(task.rejected) as rejects:
        for r in rows:
            t = task.thresholds.get(probe_set(r["kind"]), {}).get(r["relation"])
            if t is not None and r["priority"] > t:
                rejects.add("relation_cap", r)
            else:
                kept.append(r)
        kept.sort(key=_row_order)
        files = _write_rows(Path(task.work) / f"{task.name}.arrow", kept, task.part)
    counts: dict = {}
    prio: dict = {}
    for r in kept:
        g = probe_set(r["kind"])
        rel = counts.setdefault(g, {})
        rel[r["relation"]] = rel.get(r["relation"], 0) + 1
        if task.sizes.get(g):
            prio.setdefault(g, {}).setdefault(r["relation"], []).append(r["sample_priority"])
    for g, rels in prio.items():
        for rel, p in rels.items():
            rels[rel] = sorted(p)[:task.sizes[g]]
    return files, {"rejected": rejects.counts, "relations": counts, "sample_priorities": prio}


def sample_thresholds(relations: dict, priorities: Iterable[dict], config: FilterConfig
                      ) -> tuple[dict, dict]:
    """(thresholds, quotas) of the sample: set -> relation -> the highest sample priority a
    relation keeps (-1: none), for the relations the sample cuts; and set -> relation -> the
    probes it keeps (`allocate`). `relations`: set -> relation -> probes of the full set;
    `priorities`: every relation task's lowest sample priorities."""
    merged: dict = {}
    for rep in priorities:
        for g, rels in rep.items():
            for rel, p in rels.items():
                merged.setdefault(g, {}).setdefault(rel, []).extend(p)
    thresholds: dict = {}
    quotas: dict = {}
    for g in SETS:
        counts = relations.get(g, {})
        quotas[g] = allocate(counts, config.sample_size(g))
        for rel, q in quotas[g].items():
            if q < counts[rel]:
                p = sorted(merged[g][rel])
                thresholds.setdefault(g, {})[rel] = p[q - 1] if q else -1
    return thresholds, quotas


# --- phase 5: the sample, and the probes

@dataclass(frozen=True)
class SampleTask(PartitionTask):
    """`part`: a partition of the relation phase's rows: a shard of probes_full/ and of the
    sample, probes/."""

    thresholds: dict                # set -> relation -> the highest sample priority it keeps
    full: str | None                # the probes_full shard (None: built already)
    out: str | None                 # the probes shard (None: built already)


def _write_probes(path: str | None, rows: list[dict]) -> None:
    if not path:
        return
    with ShardWriter(Path(path), PROBES_SCHEMA) as w:
        for i in range(0, len(rows), ROW_GROUP_ROWS):
            w.write(pa.Table.from_pylist([{k: r[k] for k in PROBES_SCHEMA.names}
                                          for r in rows[i:i + ROW_GROUP_ROWS]],
                                         schema=PROBES_SCHEMA))
        if not rows:
            w.write(PROBES_SCHEMA.empty_table())


def _probe_counts(rows: list[dict]) -> dict:
    probes: dict = {}
    for r in rows:
        g = probe_set(r["kind"])
        c = probes.setdefault(g, {"kinds": {}, "relations": {}, "match_kinds": {},
                                  "change_types": {}, "object_in_month_a": 0,
                                  "evidence_not_in_diffset": 0})
        c["kinds"][r["kind"]] = c["kinds"].get(r["kind"], 0) + 1
        c["relations"][r["relation"]] = c["relations"].get(r["relation"], 0) + 1
        c["match_kinds"][r["match_kind"]] = c["match_kinds"].get(r["match_kind"], 0) + 1
        ct = r.get("change_type") or "?"
        c["change_types"][ct] = c["change_types"].get(ct, 0) + 1
        c["object_in_month_a"] += bool(r["object_in_month_a"])
        c["evidence_not_in_diffset"] += r["evidence_in_diffset"] is False
    return probes


def sample_part(task: SampleTask) -> dict:
    """Write the partition's probes_full shard (every row) and probes shard (the rows whose
    sample priority is at most their relation's threshold, where the sample cuts it)."""
    rows = _read_rows(task)
    sampled = []
    for r in rows:
        t = task.thresholds.get(probe_set(r["kind"]), {}).get(r["relation"])
        if t is None or r["sample_priority"] <= t:
            sampled.append(r)
    _write_probes(task.full, rows)
    _write_probes(task.out, sampled)
    return {"full": _probe_counts(rows), "probes": _probe_counts(sampled)}


# ---------------------------------------------------------------------------------------
# The stage.

def _describe(result: StageResult) -> str:
    stages = result.report.get("stages", {})
    final, aligned = stages.get("heuristic_filtering", {}), stages.get("alignment", {})
    sample = stages.get("sample", final)
    return (f"Unchanged {sample.get('unchanged', 0)}, Changed {sample.get('changed', 0)} "
            f"(sampled of {final.get('unchanged', 0)} / {final.get('changed', 0)} filtered, "
            f"aligned {aligned.get('unchanged', 0)} / {aligned.get('changed', 0)}); "
            f"report: {result.parts['report']}")


def filter_probes(month_a: str, month_b: str, *, data_root: DataRoot | None = None,
                  executor: Executor | None = None, config: FilterConfig = FilterConfig(),
                  keep_work: bool = False) -> StageResult:
    """Build (or confirm, or repair) data/probes/<A>_<B>/probes/, probes_full/ and
    rejected/<reason>/ from the aligned facts, and write the stage-count report (report.json,
    report.md).

    Row filters (in this order, the first that fails names the reason): subject or relation
    without an English label; subject and object containing each other (whole words,
    normalized); object longer than `max_object_words` words; with `drop_leaked`, Changed
    probes whose object month A's article had or whose evidence is not wholly diff text.
    Then, with `drop_ambiguous`, facts whose object and evidence sentence another relation of
    the same subject shares; then one probe per (set, subject, relation, object) text (the
    first by page_id, subject, property, statement id). Then the caps, per probe set
    (Unchanged, Changed), whose percentages refer to N, the number of probes of that set left
    after the filters and the dedupe above (the set the caps are drawn from, as TemporalWiki
    intended: no subject and no relation may dominate it): each subject keeps at most
    max(min_cap, floor(subject_cap * N)) probes, then each relation at most
    max(min_cap, floor(relation_cap * N)) of those left. A cap keeps the rows of lowest seeded
    priority (`priority`): deterministic given the seed, independent of sharding and order.

    What the caps keep is probes_full/. probes/ is a sample of it of `sample_unchanged` and
    `sample_changed` probes (the whole set where it has no more, or the size is 0), stratified
    by relation: each relation keeps its share of the sample (`allocate`: proportional, the
    rounding's remainder to the largest fractions), and within a relation the rows of lowest
    seeded sample priority (`priority(seed, row, "sample")`, independent of the caps' order).
    Both are sorted by page id, subject, property and statement id."""
    month_a, month_b = month_pair(month_a, month_b)
    data_root, executor = stage_defaults(data_root, executor)
    aligned = data_root.aligned(month_a, month_b)
    aligned_manifest = require_artifact(
        aligned, f"aligned facts {month_a} -> {month_b}",
        f"run `twiki probes --from {month_a} --to {month_b}` (it aligns, then filters)",
        stage=ALIGN_STAGE)
    shards = aligned_manifest["shard_count"]
    inputs = {"aligned": aligned_manifest["key"]}
    cfg = {"from": month_a, "to": month_b, **asdict(config)}
    rejected = {r: ArtifactBuild(data_root.rejected(month_a, month_b, r),
                                 stage=f"{STAGE}.rejected", stage_version=STAGE_VERSION,
                                 inputs=inputs, config={**cfg, "reason": r}, shards=shards,
                                 schema=REJECTED_SCHEMA) for r in REASONS}
    probes = ArtifactBuild(data_root.probes(month_a, month_b), stage=STAGE,
                           stage_version=STAGE_VERSION, inputs=inputs, config=cfg,
                           shards=shards, schema=PROBES_SCHEMA)
    folder = data_root.probe_pair(month_a, month_b)
    full = ArtifactBuild(data_root.probes_full(month_a, month_b), stage=f"{STAGE}.full", stage_version=STAGE_VERSION,
                         inputs=inputs, config=cfg, shards=shards, schema=PROBES_SCHEMA)
    run = StageRun(f"probes {month_a} -> {month_b}", probes, full, *rejected.values(),
                   data_root=data_root, executor=executor)
    parts = {"rejected": data_root.rejected(month_a, month_b), "full": full.final,
             "report": folder / "report.md"}
    if run.current:
        return run.result(_describe, what="probes", parts=parts)
    work = run.work("probes", f"{month_a}_{month_b}", "filter")
    pending = {r: set(b.pending_shards()) for r, b in rejected.items()}

    def outs(reasons, s):
        return {r: (str(rejected[r].shard_path(s)) if s in pending[r] else None)
                for r in reasons}

    row_tasks = [RowsTask(s, str(aligned / shard_name(s)), str(work), f"rows-{s:05d}", shards,
                          outs(ROW_REASONS, s), config) for s in range(shards)]
    rows_reports = run.map(filter_rows, row_tasks, phase="filters")
    dedupe_tasks = [PartTask(d, str(work), markers(row_tasks), f"dedupe-{d:05d}",
                             outs(["ambiguous_relation", "duplicate"], d),
                             {"drop_ambiguous": config.drop_ambiguous}) for d in range(shards)]
    dedupe_reports = run.map(dedupe_part, dedupe_tasks, phase="dedupe", unit="part")
    n = {g: sum(r["kept"].get(g, 0) for r in dedupe_reports) for g in SETS}
    subject_cap = {g: cap_value(config.subject_cap, n[g], config.min_cap) for g in SETS}
    relation_cap = {g: cap_value(config.relation_cap, n[g], config.min_cap) for g in SETS}
    rel_counts = sum_counts(r["relations"] for r in dedupe_reports)
    watched = {g: sorted(rel for rel, c in rel_counts.get(g, {}).items()
                         if c > relation_cap[g]) for g in SETS}
    subject_tasks = [PartTask(d, str(work), markers([dedupe]), f"subject-{d:05d}",
                              outs(["subject_cap"], d),
                              {"subject": subject_cap, "watched": watched})
                     for d, dedupe in enumerate(dedupe_tasks)]
    subject_reports = run.map(cap_subjects, subject_tasks, phase="subject caps", unit="part")
    thresholds: dict = {}
    for g in SETS:
        for rel in watched[g]:
            p = np.array([x for r in subject_reports
                          for x in r["priorities"].get(g, {}).get(rel, [])], dtype=np.uint64)
            if len(p) > relation_cap[g]:
                thresholds.setdefault(g, {})[rel] = int(np.partition(
                    p, relation_cap[g] - 1)[relation_cap[g] - 1])
    sizes = {g: config.sample_size(g) for g in SETS}
    relation_tasks = [RelationTask(d, str(work), markers([subject]), f"relation-{d:05d}",
                                   outs(["relation_cap"], d), thresholds, sizes)
                      for d, subject in enumerate(subject_tasks)]
    relation_reports = run.map(cap_relations, relation_tasks, phase="relation caps",
                               unit="part")
    kept = sum_counts(r["relations"] for r in relation_reports)
    sample_cut, quotas = sample_thresholds(
        kept, (r["sample_priorities"] for r in relation_reports), config)
    pending_probes, pending_full = set(probes.pending_shards()), set(full.pending_shards())
    sample_reports = run.map(sample_part, [
        SampleTask(d, str(work), markers([rel]), sample_cut,
                   str(full.shard_path(d)) if d in pending_full else None,
                   str(probes.shard_path(d)) if d in pending_probes else None)
        for d, rel in enumerate(relation_tasks)], phase="sample", unit="part")
    caps = {g: {"n": n[g], "subject_cap": subject_cap[g], "relation_cap": relation_cap[g]}
            for g in SETS}
    sample = {g: {"size": sizes[g], "full": sum(kept.get(g, {}).values()),
                  "sampled": sum(quotas[g].values()),
                  "relations_cut": len(sample_cut.get(g, {}))} for g in SETS}
    report = _filter_report(aligned_manifest, {
        "filters": rows_reports, "dedupe": dedupe_reports, "subject caps": subject_reports,
        "relation caps": relation_reports, "sample": sample_reports}, caps, config, sample)
    run.publish(report, companion_report=lambda b: (
        {"reason": b.config["reason"]} if "reason" in b.config else report),
        keep_work=keep_work)
    published = probes.manifest["report"]
    write_json_atomic(folder / "report.json", published)
    tmp = folder / f".report.md.tmp-{os.getpid()}"
    tmp.write_text(probes_markdown(published))
    os.replace(tmp, folder / "report.md")
    result = run.result(_describe, what="probes", parts=parts)
    log.info("%s", result.summary())
    return result


def _filter_report(aligned_manifest: dict, phases: dict[str, list[dict]], caps: dict,
                   config: FilterConfig, sample: dict) -> dict:
    """The stage's report, from the aligned facts' report and every phase's task reports:
    the counts of each stage in the paper's form (heuristic filtering: the full set; then the
    sample), rejections by reason, the caps, the sample, leakage, match kinds, change types
    and top relations, per probe set (of the sample, which is what is scored)."""
    ar = aligned_manifest.get("report", {})
    rejected = sum_counts(r.get("rejected", {}) for reports in phases.values() for r in reports)
    probes = sum_counts(r["probes"] for r in phases["sample"])
    full = sum_counts(r["full"] for r in phases["sample"])
    final = {g: sum(full.get(g, {}).get("kinds", {}).values()) for g in SETS}
    sampled = {g: sum(probes.get(g, {}).get("kinds", {}).values()) for g in SETS}
    leak_a = sum_counts(r["leakage_aligned"] for r in phases["filters"])
    changed_probes = probes.get("changed", {})
    changed = sampled["changed"]

    def rate(k, d, total):
        return round(d.get(k, 0) / total, 4) if total else None

    return {
        "stages": {
            "initial_categorization": {g: ar.get("initial", {}).get(g, 0) for g in SETS},
            "alignment": {g: ar.get("aligned", {}).get(g, 0) for g in SETS},
            "heuristic_filtering": final,
            "sample": sampled,
        },
        "sample": sample,
        "kinds": {k: v for g in SETS for k, v in probes.get(g, {}).get("kinds", {}).items()},
        "rejected": {"alignment": ar.get("rejected", {}), "filter": rejected},
        "caps": caps,
        "leakage": {
            "aligned_changed": leak_a.get("changed", 0),
            "aligned_object_in_month_a": leak_a.get("object_in_month_a", 0),
            "aligned_evidence_not_in_diffset": leak_a.get("evidence_not_in_diffset", 0),
            "aligned_rate": rate("either", leak_a, leak_a.get("changed", 0)),
            "probes_object_in_month_a": changed_probes.get("object_in_month_a", 0),
            "probes_evidence_not_in_diffset": changed_probes.get("evidence_not_in_diffset", 0),
            "probes_object_in_month_a_rate": rate("object_in_month_a", changed_probes, changed),
            "probes_evidence_not_in_diffset_rate": rate("evidence_not_in_diffset",
                                                        changed_probes, changed),
            "dropped": config.drop_leaked,
        },
        "match_kinds": {g: probes.get(g, {}).get("match_kinds", {}) for g in SETS},
        "change_types": {g: probes.get(g, {}).get("change_types", {}) for g in SETS},
        "full": {g: {k: full.get(g, {}).get(k, {}) for k in ("kinds", "match_kinds",
                                                          "change_types")} for g in SETS},
        "top_relations": {g: sorted(probes.get(g, {}).get("relations", {}).items(),
                                    key=lambda kv: (-kv[1], kv[0]))[:10] for g in SETS},
    }


def _count(v) -> str:
    return "—" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))


STAGE_ROWS = (("initial_categorization", "initial categorization"),
              ("alignment", "alignment"), ("heuristic_filtering", "heuristic filtering"))
"""The paper's three stage rows (Table 1), in order: (report key, name)."""


def sample_name(probes_report: dict) -> str:
    """The sample row's name: 'sample (of 7,000 / 2,000)'; '(whole set)' without a sample."""
    sizes = [probes_report.get("sample", {}).get(g, {}).get("size") for g in SETS]
    if not any(sizes):
        return "sample (whole set)"
    return "sample (of " + " / ".join(_count(v) if v else "all" for v in sizes) + ")"


def probe_stage_table(probes_report: dict) -> list[str]:
    """TemporalWiki's Table 1 form: initial categorization -> alignment -> heuristic filtering
    (the full filtered set, probes_full/), then the seeded sample of it (probes/)."""
    s = probes_report.get("stages", {})
    lines = ["| stage | Unchanged | Changed |", "|---|---:|---:|"]
    rows = list(STAGE_ROWS) + ([("sample", sample_name(probes_report))] if "sample" in s
                               else [])
    for key, name in rows:
        lines.append(f"| {name} | {_count(s.get(key, {}).get('unchanged', 0))} | "
                     f"{_count(s.get(key, {}).get('changed', 0))} |")
    return lines


def rejection_table(probes_report: dict) -> list[str]:
    """Every fact left out on the way, by stage and named reason."""
    rej = probes_report.get("rejected", {})
    lines = ["| left out at | reason | Unchanged | Changed |", "|---|---|---:|---:|"]
    for where in ("alignment", "filter"):
        reasons = sorted({r for g in SETS for r in rej.get(where, {}).get(g, {})})
        for r in reasons:
            un, ch = (rej[where].get(g, {}).get(r, 0) for g in SETS)
            lines.append(f"| {where} | `{r}` | {_count(un)} | {_count(ch)} |")
    if len(lines) == 2:
        lines.append("| — | none | 0 | 0 |")
    return lines


def probes_markdown(report: dict) -> str:
    """The stage-count table in the form of TemporalWiki's, then rejections and top relations."""
    lines = probe_stage_table(report) + [""] + rejection_table(report)
    lk = report.get("leakage", {})
    lines += ["", f"Leakage (Changed): of {lk.get('aligned_changed', 0)} aligned, "
                  f"{lk.get('aligned_object_in_month_a', 0)} had the object in month A's article, "
                  f"{lk.get('aligned_evidence_not_in_diffset', 0)} an evidence sentence not wholly "
                  f"in the diffset (rate {lk.get('aligned_rate')}); "
                  f"{'dropped' if lk.get('dropped') else 'kept, flagged'}."]
    sample = report.get("sample", {})
    if sample:
        lines += ["", "Sample: " + "; ".join(
            f"{g} {_count(sample[g].get('sampled'))} of {_count(sample[g].get('full'))}"
            + (f" (size {_count(sample[g]['size'])}, stratified by relation)"
               if sample[g].get("size") else " (no sample: the whole set)")
            for g in SETS if g in sample) + "; the full set is probes_full/."]
    for g in SETS:
        top = report.get("top_relations", {}).get(g, [])
        if top:
            lines += ["", f"Top relations, {g}: " + ", ".join(f"{r} {c}" for r, c in top)]
    return "\n".join(lines) + "\n"
