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
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.artifacts import ArtifactBuild, ShardWriter, require_artifact, shard_name, sum_counts
from ..errors import TwikiError
from ..engine.executors import Executor
from .facts import FACTS_SCHEMA
from ..engine.paths import DataRoot, month_pair
from ..engine.stage import StageResult, StageRun, stage_defaults
from ..sources.wikidata import id_numbers

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
class DiffTask:
    shard: int
    a_facts: str
    b_facts: str
    a_entities: str
    out: str
    month_a: str
    month_b: str


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
    order = pa.table({"s": id_numbers(table.column("subject")),
                      "p": id_numbers(table.column("property")),
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


def _describe(result: StageResult) -> str:
    c = result.counts
    return (f"{c.get('unchanged', 0)} unchanged, {c.get('new', 0)} new, "
            f"{c.get('updated', 0)} updated, {c.get('removed', 0)} removed")


def diff_facts(month_a: str, month_b: str, *, data_root: DataRoot | None = None,
               executor: Executor | None = None) -> StageResult:
    """Build (or confirm, or repair) data/factdiff/<A>_<B>/ from the two months' facts."""
    month_a, month_b = month_pair(month_a, month_b)
    data_root, executor = stage_defaults(data_root, executor)
    fa, fb = data_root.facts_month(month_a), data_root.facts_month(month_b)
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
    run = StageRun(f"factdiff {month_a} -> {month_b}", build, data_root=data_root,
                   executor=executor)
    if run.current:
        return run.result(_describe, what="factdiff")
    reports = run.map_shards(diff_shard, lambda s, out: DiffTask(
        s, str(fa / "facts" / shard_name(s)), str(fb / "facts" / shard_name(s)),
        str(fa / "entities" / shard_name(s)), out, month_a, month_b))
    counts = sum_counts(r["counts"] for r in reports)
    counts["changed"] = counts.get("new", 0) + counts.get("updated", 0)
    run.publish({"counts": counts, "initial_categorization": {
        "unchanged": counts.get("unchanged", 0), "changed": counts["changed"]}})
    result = run.result(_describe, what="factdiff")
    log.info("%s", result.summary())
    return result
