"""probes: the aligned facts of months A -> B -> TWiki-Probes, TemporalWiki's heuristic filters
done right (named reasons, seeded caps), plus the stage-count report.

Reads data/probes/<A>_<B>/aligned/ (twiki.stages.align) and writes, under data/probes/<A>_<B>/:
  probes/              the probes: Unchanged (kind unchanged) and Changed (kind new | updated)
  rejected/<reason>/   every aligned fact that is not a probe, under the reason it was dropped
  report.json, report.md   initial categorization -> alignment -> heuristic filtering, per set,
                       rejections per reason, leakage, top relations
Four phases over shards, each resumable (work files under data/work/probes/...):
  rows     one aligned shard: the row filters (labels, containment, length, leakage switch);
           the rows kept go to partitions by a hash of the subject's label
  dedupe   one partition: facts whose sentence states their object under two relations out
           (`drop_ambiguous`), then one probe per (set, subject, relation, object) text
  subject  one partition: each subject capped (every row of a subject is in one partition)
  relation one partition: each relation capped, against thresholds computed from all of them
Memory: a task holds one partition of the aligned facts (probes-to-be, a small share of the
facts), and the caller one integer (a priority) per probe of the relations that may exceed
their cap.
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
STAGE_VERSION = 1

PROBES_SCHEMA = ALIGNED_SCHEMA
REJECTED_SCHEMA = pa.schema(list(ALIGNED_SCHEMA)
                            + [pa.field("reason", pa.string(), nullable=False)])

SETS = ("unchanged", "changed")
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
    """Which probes a cap keeps: the same seed keeps the same ones, another seed others."""
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

    def __post_init__(self) -> None:
        if self.max_object_words < 1:
            raise ConfigError(f"max_object_words must be at least 1, not {self.max_object_words}")
        for name in ("subject_cap", "relation_cap"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ConfigError(f"{name} must be in (0, 1], not {v}")
        if self.min_cap < 1:
            raise ConfigError(f"min_cap must be at least 1, not {self.min_cap}")


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


def priority(seed: int, row: dict) -> int:
    """The seeded sampling order of a row: a 64-bit hash of the seed and the statement, the
    same on every machine and in every shard layout."""
    h = hashlib.blake2b(f"{seed}\x1f{row['statement_id']}\x1f{row['page_id']}".encode(),
                        digest_size=8)
    return int.from_bytes(h.digest(), "big")


def cap_value(share: float, n: int, min_cap: int) -> int:
    return max(min_cap, math.floor(share * n))


# ---------------------------------------------------------------------------------------
# Work files: Arrow IPC of rows, one batch per partition and flush (twiki.engine.shuffle).

WORK_SCHEMA = pa.schema(list(ALIGNED_SCHEMA) + [pa.field("priority", pa.uint64())])


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
            self.buf[reason].append({**{k: row[k] for k in ALIGNED_SCHEMA.names},
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
            rows = t.to_pylist()
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
                parts.add(p, {**row, "priority": priority(task.config.seed, row)})
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


# --- phase 4: relation cap, and the probes

@dataclass(frozen=True)
class RelationTask(PartitionTask):
    """`part`: a partition of the subject phase's rows, and so a shard of the probes."""

    rejected: dict
    thresholds: dict                # set -> relation -> the highest priority it keeps
    out: str | None                 # the probes shard (None: built already)


def cap_relations(task: RelationTask) -> dict:
    """Rows of a relation over its cap are kept when their priority is at most the relation's
    threshold (the cap-th lowest priority of the relation over every partition)."""
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
        if task.out:
            with ShardWriter(Path(task.out), PROBES_SCHEMA) as w:
                for i in range(0, len(kept), ROW_GROUP_ROWS):
                    w.write(pa.Table.from_pylist(
                        [{k: r[k] for k in PROBES_SCHEMA.names}
                         for r in kept[i:i + ROW_GROUP_ROWS]], schema=PROBES_SCHEMA))
                if not kept:
                    w.write(PROBES_SCHEMA.empty_table())
    probes: dict = {}
    for r in kept:
        g = probe_set(r["kind"])
        c = probes.setdefault(g, {"kinds": {}, "relations": {}, "match_kinds": {},
                                  "object_in_month_a": 0, "evidence_not_in_diffset": 0})
        c["kinds"][r["kind"]] = c["kinds"].get(r["kind"], 0) + 1
        c["relations"][r["relation"]] = c["relations"].get(r["relation"], 0) + 1
        c["match_kinds"][r["match_kind"]] = c["match_kinds"].get(r["match_kind"], 0) + 1
        c["object_in_month_a"] += bool(r["object_in_month_a"])
        c["evidence_not_in_diffset"] += r["evidence_in_diffset"] is False
    return {"rejected": rejects.counts, "probes": probes}


# ---------------------------------------------------------------------------------------
# The stage.

def _describe(result: StageResult) -> str:
    stages = result.report.get("stages", {})
    final, aligned = stages.get("heuristic_filtering", {}), stages.get("alignment", {})
    return (f"Unchanged {final.get('unchanged', 0)}, Changed {final.get('changed', 0)} "
            f"(aligned {aligned.get('unchanged', 0)} / {aligned.get('changed', 0)}); "
            f"report: {result.parts['report']}")


def filter_probes(month_a: str, month_b: str, *, data_root: DataRoot | None = None,
                  executor: Executor | None = None, config: FilterConfig = FilterConfig(),
                  keep_work: bool = False) -> StageResult:
    """Build (or confirm, or repair) data/probes/<A>_<B>/probes/ and rejected/<reason>/ from
    the aligned facts, and write the stage-count report (report.json, report.md).

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
    priority (`priority`): deterministic given the seed, independent of sharding and order."""
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
    run = StageRun(f"probes {month_a} -> {month_b}", probes, *rejected.values(),
                   data_root=data_root, executor=executor)
    folder = data_root.probe_pair(month_a, month_b)
    parts = {"rejected": data_root.rejected(month_a, month_b), "report": folder / "report.md"}
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
    pending_probes = set(probes.pending_shards())
    relation_reports = run.map(cap_relations, [
        RelationTask(d, str(work), markers([subject]), outs(["relation_cap"], d), thresholds,
                     str(probes.shard_path(d)) if d in pending_probes else None)
        for d, subject in enumerate(subject_tasks)], phase="relation caps", unit="part")
    caps = {g: {"n": n[g], "subject_cap": subject_cap[g], "relation_cap": relation_cap[g]}
            for g in SETS}
    report = _filter_report(aligned_manifest, {
        "filters": rows_reports, "dedupe": dedupe_reports, "subject caps": subject_reports,
        "relation caps": relation_reports}, caps, config)
    run.publish(report, companion_report=lambda b: {"reason": b.config["reason"]},
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
                   config: FilterConfig) -> dict:
    """The stage's report, from the aligned facts' report and every phase's task reports:
    the counts of each stage in the paper's form, rejections by reason, the caps, leakage,
    match kinds and top relations, per probe set."""
    ar = aligned_manifest.get("report", {})
    rejected = sum_counts(r["rejected"] for reports in phases.values() for r in reports)
    probes = sum_counts(r["probes"] for r in phases["relation caps"])
    final = {g: sum(probes.get(g, {}).get("kinds", {}).values()) for g in SETS}
    leak_a = sum_counts(r["leakage_aligned"] for r in phases["filters"])
    changed_probes = probes.get("changed", {})
    changed = final["changed"]

    def rate(k, d, total):
        return round(d.get(k, 0) / total, 4) if total else None

    return {
        "stages": {
            "initial_categorization": {g: ar.get("initial", {}).get(g, 0) for g in SETS},
            "alignment": {g: ar.get("aligned", {}).get(g, 0) for g in SETS},
            "heuristic_filtering": final,
        },
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
        "top_relations": {g: sorted(probes.get(g, {}).get("relations", {}).items(),
                                    key=lambda kv: (-kv[1], kv[0]))[:10] for g in SETS},
    }


def _count(v) -> str:
    return "—" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))


def probe_stage_table(probes_report: dict) -> list[str]:
    """TemporalWiki's Table 1 form: initial categorization -> alignment -> heuristic filtering."""
    s = probes_report.get("stages", {})
    lines = ["| stage | Unchanged | Changed |", "|---|---:|---:|"]
    for key, name in (("initial_categorization", "initial categorization"),
                      ("alignment", "alignment"), ("heuristic_filtering", "heuristic filtering")):
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
    for g in SETS:
        top = report.get("top_relations", {}).get(g, [])
        if top:
            lines += ["", f"Top relations, {g}: " + ", ".join(f"{r} {c}" for r, c in top)]
    return "\n".join(lines) + "\n"
