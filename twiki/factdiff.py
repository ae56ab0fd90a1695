"""factdiff: two months' facts -> each fact categorized Unchanged / New / Updated / Removed.

Reads data/facts/<A>/facts/ and data/facts/<B>/facts/ (+ A's entities/) and writes
data/factdiff/<A>_<B>/, shard k from shard k of both months (both are partitioned by the same
hash of the subject QID), sorted (subject, property, removed last, statement id).

By (subject, property), for every fact of B:
  unchanged  its value is among A's values of that (subject, property)
  new        A has no value for that (subject, property) (every fact of an item new in B)
  updated    A has values for it, but not this one: A's values are kept as old -> new
and every fact of A whose value B no longer has is recorded as removed. Values are compared
in canonical form (facts.value), so a relabelled object or a re-rendered date is no change.
TemporalWiki's "Changed" probes are new + updated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .artifacts import ArtifactBuild, ShardWriter, require_artifact
from .errors import TwikiError
from .executors import Executor, LocalExecutor
from .facts import FACTS_SCHEMA
from .paths import DataRoot, month_pair

log = logging.getLogger("twiki")

STAGE_VERSION = 1
CATEGORIES = ("unchanged", "new", "updated", "removed")

FACTDIFF_SCHEMA = pa.schema(
    [pa.field("category", pa.string(), nullable=False)]
    + [f for f in FACTS_SCHEMA if f.name != "month"]
    + [pa.field("old_values", pa.list_(pa.string())),   # updated: A's values of (s, p)
       pa.field("old_texts", pa.list_(pa.string())),    # ... and their rendered text
       pa.field("subject_new", pa.bool_(), nullable=False),  # the item has no entity in A
       pa.field("month_a", pa.string(), nullable=False),
       pa.field("month_b", pa.string(), nullable=False)]
)


@dataclass(frozen=True)
class FactDiffConfig:
    """Nothing to choose yet beyond the categorization above; kept for the artifact key and
    for later options (e.g. ignoring external-id properties)."""


@dataclass
class FactDiffResult:
    path: Path
    state: str
    manifest: dict = field(default_factory=dict)

    @property
    def counts(self) -> dict:
        return self.manifest.get("report", {}).get("counts", {})


@dataclass(frozen=True)
class DiffTask:
    shard: int
    a_facts: str
    b_facts: str
    a_entities: str
    out: str
    month_a: str
    month_b: str


def _num(col: pa.ChunkedArray) -> pa.Array:
    """'Q42' -> 42, for sorting in id order."""
    return pc.cast(pc.utf8_slice_codeunits(col, 1), pa.int64())


def _key(t: pa.Table, *cols: str) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(*[t.column(c) for c in cols], "\x1f")


def diff_shard(task: DiffTask) -> dict:
    a = pq.read_table(task.a_facts)
    b = pq.read_table(task.b_facts)
    a_subjects = pq.read_table(task.a_entities, columns=["qid"]).column("qid").combine_chunks()
    a_sp, b_sp = _key(a, "subject", "property"), _key(b, "subject", "property")
    a_v = _key(a, "subject", "property", "value")
    b_v = _key(b, "subject", "property", "value")

    unchanged = pc.is_in(b_v, value_set=pc.unique(a_v.combine_chunks()))
    had_property = pc.is_in(b_sp, value_set=pc.unique(a_sp.combine_chunks()))
    category = pc.if_else(unchanged, "unchanged", pc.if_else(had_property, "updated", "new"))
    # A's values per (subject, property), for updated facts' old -> new
    groups = pa.table({"k": a_sp, "value": a.column("value"), "text": a.column("text")}) \
        .group_by("k", use_threads=False).aggregate([("value", "list"), ("text", "list")])
    gidx = pc.index_in(b_sp, value_set=groups.column("k").combine_chunks())
    is_updated = pc.equal(category, "updated")
    gidx = pc.if_else(is_updated, gidx, pa.scalar(None, gidx.type))
    n_b = b.num_rows
    b_rows = {
        "category": category,
        **{f.name: b.column(f.name) for f in FACTS_SCHEMA if f.name != "month"},
        "old_values": groups.column("value_list").take(gidx),
        "old_texts": groups.column("text_list").take(gidx),
        "subject_new": pc.invert(pc.is_in(b.column("subject"), value_set=a_subjects)),
    }
    removed = a.filter(pc.invert(pc.is_in(a_v, value_set=pc.unique(b_v.combine_chunks()))))
    n_r = removed.num_rows
    r_rows = {
        "category": pa.array(["removed"] * n_r, pa.string()),
        **{f.name: removed.column(f.name) for f in FACTS_SCHEMA if f.name != "month"},
        "old_values": pa.nulls(n_r, pa.list_(pa.string())),
        "old_texts": pa.nulls(n_r, pa.list_(pa.string())),
        "subject_new": pa.array([False] * n_r, pa.bool_()),
    }
    for rows, n in ((b_rows, n_b), (r_rows, n_r)):
        rows["month_a"] = pa.array([task.month_a] * n, pa.string())
        rows["month_b"] = pa.array([task.month_b] * n, pa.string())
    table = pa.concat_tables([pa.table(b_rows, schema=FACTDIFF_SCHEMA),
                              pa.table(r_rows, schema=FACTDIFF_SCHEMA)])
    order = pa.table({"s": _num(table.column("subject")), "p": _num(table.column("property")),
                      "r": pc.equal(table.column("category"), "removed"),
                      "id": table.column("statement_id")})
    table = table.take(pc.sort_indices(order, [("s", "ascending"), ("p", "ascending"),
                                               ("r", "ascending"), ("id", "ascending")]))
    with ShardWriter(Path(task.out), FACTDIFF_SCHEMA) as w:
        w.write(table)
    counts = {c: 0 for c in CATEGORIES}
    if table.num_rows:
        vc = pc.value_counts(table.column("category"))
        counts.update(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()))
    new_subjects = pc.unique(b.column("subject").filter(b_rows["subject_new"])) if n_b else []
    counts["subjects_new"] = len(new_subjects)
    counts["facts_of_new_subjects"] = int(pc.sum(b_rows["subject_new"]).as_py() or 0) if n_b else 0
    b_subjects = pc.unique(b.column("subject").combine_chunks()) if n_b else pa.array([], pa.string())
    gone = pc.unique(removed.column("subject").combine_chunks()) if n_r else pa.array([], pa.string())
    counts["subjects_removed"] = int(pc.sum(pc.invert(pc.is_in(gone, value_set=b_subjects)))
                                     .as_py() or 0) if n_r else 0
    return {"shard": task.shard, "counts": counts}


def diff_facts(month_a: str, month_b: str, *, data_root: DataRoot | None = None,
               executor: Executor | None = None, config: FactDiffConfig = FactDiffConfig()
               ) -> FactDiffResult:
    """Build (or confirm, or repair) data/factdiff/<A>_<B>/ from the two months' facts."""
    month_a, month_b = month_pair(month_a, month_b)
    data_root = data_root or DataRoot.default()
    executor = executor or LocalExecutor(1)
    fa, fb = data_root.facts(month_a), data_root.facts(month_b)
    ma = require_artifact(fa / "facts", f"facts for {month_a}",
                          f"run `twiki facts --month {month_a}` first")
    mb = require_artifact(fb / "facts", f"facts for {month_b}",
                          f"run `twiki facts --month {month_b}` first")
    ea = require_artifact(fa / "entities", f"entities for {month_a}",
                          f"run `twiki facts --month {month_a}` first")
    if ma["shard_count"] != mb["shard_count"]:
        raise TwikiError(f"facts of {month_a} have {ma['shard_count']} shards and those of "
                         f"{month_b} {mb['shard_count']}: rebuild one with the same --shards")
    shards = ma["shard_count"]
    inputs = {"a": ma["key"], "b": mb["key"], "a_entities": ea["key"]}
    build = ArtifactBuild(data_root.factdiff(month_a, month_b), stage="factdiff",
                          stage_version=STAGE_VERSION, inputs=inputs,
                          config={"from": month_a, "to": month_b}, shards=shards,
                          schema=FACTDIFF_SCHEMA)
    if build.state == "current":
        log.info("factdiff %s -> %s is up to date: nothing to do", month_a, month_b)
        return FactDiffResult(build.final, "current", build.manifest)
    t0 = time.perf_counter()
    name = "part-{:05d}.parquet".format
    tasks = [DiffTask(s, str(fa / "facts" / name(s)), str(fb / "facts" / name(s)),
                      str(fa / "entities" / name(s)), str(build.shard_path(s)), month_a, month_b)
             for s in build.pending_shards()]
    reports = executor.run(diff_shard, tasks, desc=f"factdiff {month_a} -> {month_b}",
                           unit="shard")
    counts: dict = {}
    for r in reports:
        for k, v in r["counts"].items():
            counts[k] = counts.get(k, 0) + v
    counts["changed"] = counts.get("new", 0) + counts.get("updated", 0)
    t = time.perf_counter() - t0
    state = "repaired" if build.state == "repair" else "built"
    manifest = build.publish(report={"counts": counts, "initial_categorization": {
        "unchanged": counts.get("unchanged", 0), "changed": counts["changed"]}},
        timings={"total_s": round(t, 3), "workers": executor.workers})
    log.info("factdiff %s -> %s %s: %d unchanged, %d new, %d updated, %d removed, %.1fs",
             month_a, month_b, state, counts.get("unchanged", 0), counts.get("new", 0),
             counts.get("updated", 0), counts.get("removed", 0), t)
    return FactDiffResult(build.final, state, manifest)
