"""factdiff: two months' facts -> each fact categorized at the (subject, property, value) level,
as WikiFactDiff does.

Reads data/facts/<A>/facts/ and data/facts/<B>/facts/ (+ A's entities/) and writes
data/factdiff/<A>_<B>/, shard k from shard k of both months (both are partitioned by the same
hash of the subject QID), sorted (subject, property, removed last, statement id).

A value is *current* in a month when its statement there has no end time (qualifier P582,
facts.end_time) or one after that month (a term that ends next year). Every fact of B is one of
  unchanged     its value is among A's values of that (subject, property), and current in B
  ended         its value was current in A and has gained an end time in B
  historical    its value has an end time in B and already had one in A: not current in either
                month, so never an Unchanged ("still true") fact
  new_entity    its subject has no entity in A (every fact of an item new in B)
  new_relation  A has no value for that (subject, property)
  replacement   A has values for it, not this one, and some of A's current values are no longer
                current in B (gone, or ended): `old_values` / `old_texts` hold those, and only
                those (a value whose text is still among B's current texts of the (subject,
                property), case-insensitively, is not gone: it was re-itemized or re-cased)
  added_value   A has values for it, not this one, and all of A's current values are still
                current in B (a new value of a multi-valued property: no old -> new)
and a fact of B that is not in A by value but whose text equals, case-insensitively, the text
of a gone A value of that (subject, property) is unchanged (a replacement whose new text equals
an old text is no change). Every fact of A whose value B no longer has is recorded as removed.
Values are compared in canonical form (facts.value), so a relabelled object or a re-rendered
date is no change. A value new in B that already has an end time takes its category from the
rules above (new_entity, new_relation, added_value or replacement) and keeps its end_time.
TemporalWiki's "Changed" probes are CHANGED_CATEGORIES; PROBE_KIND gives each probe category
the probes' kind (unchanged | new | updated).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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

# 2: WikiFactDiff's categories (new -> new_relation | added_value | new_entity, updated ->
#    replacement; ended, historical), old_values only for a replacement's gone values.
STAGE_VERSION = 2
CATEGORIES = ("unchanged", "new_relation", "added_value", "replacement", "new_entity", "ended",
              "historical", "removed")
# TemporalWiki's Changed set; the probes' `kind` of each category that yields probes.
CHANGED_CATEGORIES = ("new_relation", "added_value", "replacement", "new_entity")
PROBE_KIND = {"unchanged": "unchanged", "new_relation": "new", "added_value": "new",
              "new_entity": "new", "replacement": "updated"}
_CODE = {c: i for i, c in enumerate(CATEGORIES)}
_CATEGORY_NAMES = pa.array(CATEGORIES, pa.string())

FACTDIFF_SCHEMA = pa.schema(
    [pa.field("category", pa.string(), nullable=False)]
    + [f for f in FACTS_SCHEMA if f.name != "month"]
    + [pa.field("old_values", pa.list_(pa.string())),   # replacement: A's values now gone
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


def _in(values, keys) -> np.ndarray:
    """values[i] is among keys, as a numpy bool array."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    return pc.is_in(values, value_set=pc.unique(keys)).to_numpy(zero_copy_only=False) \
        .astype(bool)


def period_start(key: str) -> tuple[int, int, int]:
    """(year, month, day) where the period of a canonical time (facts' `value` form, see
    twiki.sources.wikidata.time_key) begins: '2001-05-11/11' (2001, 5, 11), '1974/9'
    (1974, 1, 1), '1950s/8' (1950, 1, 1), '20c/7' (1901, 1, 1), '2m/6' (1001, 1, 1); times
    coarser than millennia, and BCE ones, are far in the past."""
    body, _, rest = key.partition("/")
    precision = int(rest.split("/")[0])
    if body.startswith("-"):
        return (-10**12, 1, 1)
    if precision >= 9:
        parts = [int(x) for x in body.split("-")]
        return (parts[0], parts[1] if len(parts) > 1 and parts[1] else 1,
                parts[2] if len(parts) > 2 and parts[2] else 1)
    if precision == 8:
        return (int(body[:-1]), 1, 1)
    if precision in (7, 6):
        unit = 100 if precision == 7 else 1000
        return ((int(body[:-1]) - 1) * unit + 1, 1, 1)
    return (-10**12, 1, 1)


def _ended(end_time: pa.ChunkedArray, month: str) -> np.ndarray:
    """Whether each end time (canonical, or null) has begun by the end of `month` ("YYYY-MM"):
    a statement whose end time lies after the month is still current in it (a term that ends
    next year). An end time that cannot be read counts as ended."""
    y, m = int(month[:4]), int(month[5:7])
    next_month = (y + m // 12, m % 12 + 1, 1)
    keys = pc.unique(end_time.combine_chunks().drop_null()).to_pylist()
    gone = []
    for k in keys:
        try:
            if period_start(k) < next_month:
                gone.append(k)
        except (ValueError, IndexError):
            gone.append(k)
    if not gone:
        return np.zeros(len(end_time), dtype=bool)
    return pc.is_in(end_time, value_set=pa.array(gone, pa.string())) \
        .to_numpy(zero_copy_only=False).astype(bool)


def _lower(text) -> str | None:
    return text.lower() if text is not None else None


def categorize(a: pa.Table, b: pa.Table, a_subjects: pa.Array, month_a: str, month_b: str
               ) -> tuple[np.ndarray, dict, dict]:
    """The category code (index in CATEGORIES) of every fact of `b` (month_b's facts) against
    the same shard of `a` (month_a's), the old values and texts of its replacements
    ({row: (values, texts)}) and counts. Pure: the stage calls it on facts tables."""
    n_b = b.num_rows
    a_sp, b_sp = _key(a, "subject", "property"), _key(b, "subject", "property")
    a_v = _key(a, "subject", "property", "value")
    b_v = _key(b, "subject", "property", "value")
    a_end = _ended(a.column("end_time"), month_a)
    b_end = _ended(b.column("end_time"), month_b)
    a_cur_keys = a_v.filter(pa.array(~a_end)) if a.num_rows else a_v
    b_cur_keys = b_v.filter(pa.array(~b_end)) if n_b else b_v
    in_a = _in(b_v, a_v)
    cur_in_a = _in(b_v, a_cur_keys)
    had_property = _in(b_sp, a_sp)
    subject_new = ~_in(b.column("subject"), a_subjects)

    code = np.full(n_b, _CODE["added_value"], dtype=np.int8)
    not_in_a = ~in_a
    code[not_in_a & ~had_property] = _CODE["new_relation"]
    code[not_in_a & subject_new] = _CODE["new_entity"]
    code[in_a & ~b_end] = _CODE["unchanged"]
    code[in_a & b_end & ~cur_in_a] = _CODE["historical"]
    code[in_a & b_end & cur_in_a] = _CODE["ended"]

    # Gone: A's current values that are not current in B. Only the (subject, property) groups
    # that have some decide between added_value, replacement and unchanged-by-text (few rows:
    # handled in Python).
    gone_rows = np.flatnonzero(~a_end & ~_in(a_v, b_cur_keys)) if a.num_rows else np.array([], int)
    old: dict[int, tuple[list, list]] = {}
    by_text = 0
    if len(gone_rows):
        a_sp_l = a_sp.take(pa.array(gone_rows)).to_pylist()
        a_val = a.column("value").take(pa.array(gone_rows)).to_pylist()
        a_txt = a.column("text").take(pa.array(gone_rows)).to_pylist()
        gone: dict[str, list[tuple[str, str | None]]] = {}
        for k, v, t in zip(a_sp_l, a_val, a_txt):
            vals = gone.setdefault(k, [])
            if all(v != x for x, _ in vals):
                vals.append((v, t))
        groups = _in(b_sp, pa.array(list(gone), pa.string()))
        cand = np.flatnonzero((code == _CODE["added_value"]) & groups)
        if len(cand):
            rows = np.flatnonzero(groups)
            b_sp_l = b_sp.take(pa.array(rows)).to_pylist()
            b_txt = b.column("text").take(pa.array(rows)).to_pylist()
            current: dict[str, set[str]] = {}
            row_sp, row_txt = {}, {}
            for r, k, t in zip(rows.tolist(), b_sp_l, b_txt):
                row_sp[r], row_txt[r] = k, t
                if not b_end[r] and t is not None:
                    current.setdefault(k, set()).add(t.lower())
            for r in cand.tolist():
                k, t = row_sp[r], _lower(row_txt[r])
                vals = gone[k]
                if t is not None and any(t == _lower(x) for _, x in vals):
                    code[r] = _CODE["unchanged"]
                    by_text += 1
                    continue
                still = current.get(k, set())
                left = [(v, x) for v, x in vals if x is None or x.lower() not in still]
                if left:
                    code[r] = _CODE["replacement"]
                    old[r] = ([v for v, _ in left], [x for _, x in left])
    return code, old, {"unchanged_by_text": by_text, "subject_new": subject_new}


def diff_shard(task: DiffTask) -> dict:
    a = pq.read_table(task.a_facts)
    b = pq.read_table(task.b_facts)
    a_subjects = pq.read_table(task.a_entities, columns=["qid"]).column("qid").combine_chunks()
    code, old, extra = categorize(a, b, a_subjects, task.month_a, task.month_b)
    n_b = b.num_rows
    subject_new = extra["subject_new"]
    # old values: a small list table taken at the replacement rows (null elsewhere)
    rows = sorted(old)
    idx = np.full(n_b, -1, dtype=np.int64)
    idx[rows] = np.arange(len(rows))
    gidx = pa.array(idx, mask=idx < 0)
    old_values = pa.array([old[r][0] for r in rows], pa.list_(pa.string())).take(gidx)
    old_texts = pa.array([old[r][1] for r in rows], pa.list_(pa.string())).take(gidx)
    b_rows = {
        "category": _CATEGORY_NAMES.take(pa.array(code)),
        **{f.name: b.column(f.name) for f in FACTS_SCHEMA if f.name != "month"},
        "old_values": old_values,
        "old_texts": old_texts,
        "subject_new": pa.array(subject_new, pa.bool_()),
    }
    b_v = _key(b, "subject", "property", "value")
    removed = a.filter(pa.array(~_in(_key(a, "subject", "property", "value"), b_v))) \
        if a.num_rows else a
    n_r = removed.num_rows
    r_rows = {
        "category": pa.array(["removed"] * n_r, pa.string()),
        **{f.name: removed.column(f.name) for f in FACTS_SCHEMA if f.name != "month"},
        "old_values": pa.nulls(n_r, pa.list_(pa.string())),
        "old_texts": pa.nulls(n_r, pa.list_(pa.string())),
        "subject_new": pa.array([False] * n_r, pa.bool_()),
    }
    for rows_, n in ((b_rows, n_b), (r_rows, n_r)):
        rows_["month_a"] = pa.array([task.month_a] * n, pa.string())
        rows_["month_b"] = pa.array([task.month_b] * n, pa.string())
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
    counts["unchanged_by_text"] = extra["unchanged_by_text"]
    new_subjects = pc.unique(b.column("subject").filter(pa.array(subject_new))) if n_b else []
    counts["subjects_new"] = len(new_subjects)
    counts["facts_of_new_subjects"] = int(subject_new.sum())
    b_subjects = pc.unique(b.column("subject").combine_chunks()) if n_b else pa.array([], pa.string())
    gone = pc.unique(removed.column("subject").combine_chunks()) if n_r else pa.array([], pa.string())
    counts["subjects_removed"] = int(pc.sum(pc.invert(pc.is_in(gone, value_set=b_subjects)))
                                     .as_py() or 0) if n_r else 0
    return {"shard": task.shard, "counts": counts}


def _describe(result: StageResult) -> str:
    c = result.counts
    changed = ", ".join(f"{c.get(k, 0)} {k.replace('_', ' ')}" for k in CHANGED_CATEGORIES)
    return (f"{c.get('unchanged', 0)} unchanged, {c.get('changed', 0)} changed ({changed}), "
            f"{c.get('ended', 0)} ended, {c.get('historical', 0)} historical, "
            f"{c.get('removed', 0)} removed")


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
    counts["changed"] = sum(counts.get(k, 0) for k in CHANGED_CATEGORIES)
    run.publish({"counts": counts, "initial_categorization": {
        "unchanged": counts.get("unchanged", 0), "changed": counts["changed"]}})
    result = run.result(_describe, what="factdiff")
    log.info("%s", result.summary())
    return result
