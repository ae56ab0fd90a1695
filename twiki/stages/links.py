"""links: a month's snapshot wikilinks -> the items they name (page_id, paragraph, span, qid).

Reads the month's snapshot data/snapshots/<wiki>/<YYYY-MM>/ (each paragraph's `links`: span
and normalized target title), its page <-> item mapping data/facts/<YYYY-MM>/mapping/ and,
when extract wrote it, its redirects data/redirects/<wiki>/<YYYY-MM>/; writes
data/facts/<YYYY-MM>/links/: one row per link whose target resolves to an item, partitioned
exactly like the snapshot (shard_of(page_id), same shard count), sorted (page_id, paragraph,
start). A target resolves (`resolve_target`, the same rule as a pure function):
  title     it is the title of an article of the snapshot, and the mapping gives that article
            an item
  redirect  it is a redirect whose target is such an article, at most MAX_HOPS (2) redirects
            away (a redirect to a redirect to the article)
Links to an article without an item, to a page that is not in the snapshot (a red link, a
page of another namespace) or through more redirects are counted in the report, not written.

Phases, each resumable per task (work files under data/work/links/...), partitioned by a hash
of the normalized title (crc32, then shard_of) so that one partition holds every link to a
title, that title's article and item, and its redirect: memory stays per partition.
  read       snapshot shards -> links and article titles; mapping shards -> (title, page,
             item); redirect shards -> (title, target); each by title partition
  resolve 1  one title partition: links matched to article titles -> resolved rows
             (partitioned by the snapshot's page shard); the misses that name a redirect go on
             as hops to the partition of the redirect's target
  resolve 2, 3  the same for the hops of the round before (match "redirect"), in the
             partitions that received hops only
  write      one page shard of the resolved rows -> the links shard, sorted
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.artifacts import (ArtifactBuild, ShardWriter, read_manifest, require_artifact,
                                shard_array, shard_name)
from ..engine.executors import Executor
from ..engine.paths import DataRoot, check_wiki, parse_month
from ..engine.shuffle import (PartitionedWriter, PartitionTask, first_per_key, markers,
                              resumable)
from ..engine.stage import StageResult, StageRun, stage_defaults
from ..errors import ConfigError, TwikiError
from ..sources.wikidata import id_strings, qid_number
from ..text.normalize import normalize_title

log = logging.getLogger("twiki")

STAGE = "facts.links"
# Bump when the rows change: link tables made before are rebuilt.
STAGE_VERSION = 1
# Redirects followed from a link's target to an article: MediaWiki itself follows one, and a
# double redirect (fixed by bots within days) is followed once more.
MAX_HOPS = 2
# Rows a read task buffers before writing them to its work file.
SPILL_ROWS = 200_000
# The default title partitions: one per this many articles (their links, ~30 an article on
# enwiki, are what a resolve task holds), at most one per snapshot shard. A partition costs
# every resolve task a look at every read task's done-marker, so a small month gets few.
ARTICLES_PER_PARTITION = 50_000

LINKS_SCHEMA = pa.schema([
    pa.field("page_id", pa.int64(), nullable=False),      # the linking article
    pa.field("paragraph", pa.int32(), nullable=False),    # index in its snapshot paragraphs
    pa.field("start", pa.int32(), nullable=False),        # text[start:end] is the link text
    pa.field("end", pa.int32(), nullable=False),
    pa.field("target", pa.string(), nullable=False),      # normalized target title
    pa.field("qid", pa.string(), nullable=False),         # the item the target resolves to
    pa.field("match", pa.string(), nullable=False),       # "title" | "redirect"
])

# Work-file schemas.
W_LINKS = pa.schema([("norm", pa.string()), ("page_id", pa.int64()), ("paragraph", pa.int32()),
                     ("start", pa.int32()), ("end", pa.int32()), ("target", pa.string())])
W_ARTICLES = pa.schema([("norm", pa.string()), ("page_id", pa.int64())])
# An item's article, by the article's title (so that it lands beside that title's links);
# rank 0 for a page_props or title match, 1 for a redirect match (a page two items map to keeps
# the first).
W_ITEMS = pa.schema([("norm", pa.string()), ("page_id", pa.int64()), ("qid", pa.int64()),
                     ("rank", pa.int8())])
W_REDIRECTS = pa.schema([("norm", pa.string()), ("target", pa.string())])
W_RESOLVED = pa.schema([("page_id", pa.int64()), ("paragraph", pa.int32()),
                        ("start", pa.int32()), ("end", pa.int32()), ("target", pa.string()),
                        ("qid", pa.int64()), ("match", pa.string())])


# --------------------------------------------------------------------------------------------
# The rule, as a pure function.

def resolve_target(target: str, titles: Mapping[str, str], redirects: Mapping[str, str]
                   ) -> tuple[str | None, str]:
    """The item a link target names: (qid, "title") when `target` is a title of `titles`
    (normalized article title -> QID of its item), (qid, "redirect") when it reaches one
    through at most MAX_HOPS redirects (`redirects`: normalized redirect title -> normalized
    target), else (None, "unresolved"). A title mapped to None is an article without an item:
    it resolves to nothing (an article is no redirect). Titles are compared in
    normalize_title's form."""
    title = normalize_title(target)
    for hop in range(MAX_HOPS + 1):
        qid = titles.get(title)
        if qid is not None:
            return qid, "title" if hop == 0 else "redirect"
        if title in titles:          # an article without an item
            break
        nxt = redirects.get(title)
        if nxt is None:
            break
        title = normalize_title(nxt)
    return None, "unresolved"


def snapshot_has_links(snapshot: Path) -> bool:
    """Whether the published snapshot at `snapshot` keeps its paragraphs' links (extract
    stage version 4 on); False for older snapshots or none."""
    manifest = read_manifest(snapshot)
    if manifest is None or not manifest.get("shard_count"):
        return False
    if manifest.get("schema"):       # the schema as the manifest records it
        return bool(re.search(r"\blinks: list<", manifest["schema"]))
    schema = pq.read_schema(snapshot / shard_name(0))
    if "paragraphs" not in schema.names:
        return False
    para = schema.field("paragraphs").type
    return (pa.types.is_list(para) and pa.types.is_struct(para.value_type)
            and para.value_type.get_field_index("links") >= 0)


def title_parts(norms: list[str], parts: int) -> np.ndarray:
    """The partition of each normalized title (crc32 of its UTF-8, then shard_of): the
    mapping stage's title hash, so both stages cut titles the same way."""
    crc = np.fromiter((zlib.crc32(t.encode("utf-8")) for t in norms), dtype=np.int64,
                      count=len(norms))
    return shard_array(crc, parts)


def _parts_of(col: pa.Array, parts: int) -> np.ndarray:
    """title_parts of a string column, each distinct title hashed once."""
    enc = pc.dictionary_encode(col).combine_chunks() if isinstance(col, pa.ChunkedArray) \
        else pc.dictionary_encode(col)
    by_value = title_parts(enc.dictionary.to_pylist(), parts)
    return by_value[enc.indices.to_numpy(zero_copy_only=False)]


def _normalized(col: pa.Array) -> pa.Array:
    """normalize_title of every value of a string column, each distinct value once."""
    enc = pc.dictionary_encode(col)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    values = enc.dictionary.to_pylist()
    norm = pa.array([normalize_title(v) for v in values], pa.string())
    return norm.take(enc.indices)


# --------------------------------------------------------------------------------------------
# Read: the inputs -> partitioned work files.

@dataclass(frozen=True)
class ReadTask:
    kind: str          # "snapshot" | "mapping" | "redirects"
    source: str        # the artifact folder
    shard: int         # its shard
    work: str
    name: str          # "sn-00003": its work file(s) sn-00003.*.arrow, its done-marker .json
    parts: int         # title partitions
    page_shards: int   # the snapshot's shard count (the mapping's items go by page shard)


def links_of(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """The links of a snapshot batch (columns page_id, paragraphs with `links`), one row each:
    page_id, paragraph (index in the row's paragraphs), start, end, target."""
    paras = batch.column("paragraphs")
    if isinstance(paras, pa.ChunkedArray):
        paras = paras.combine_chunks()
    page_ids = batch.column("page_id")
    if isinstance(page_ids, pa.ChunkedArray):
        page_ids = page_ids.combine_chunks()
    flat = paras.flatten()                                   # every paragraph of the batch
    row = pc.list_parent_indices(paras).to_numpy()
    lens = pc.fill_null(pc.list_value_length(paras), 0).to_numpy().astype(np.int64)
    first = np.cumsum(lens) - lens                           # each row's first paragraph
    para_index = np.arange(len(flat), dtype=np.int64) - first[row]
    links = pc.struct_field(flat, "links")
    link_flat = links.flatten()
    owner = pc.list_parent_indices(links).to_numpy()          # each link's paragraph
    return pa.table({
        "page_id": page_ids.take(pa.array(row[owner])),
        "paragraph": pa.array(para_index[owner].astype(np.int32)),
        "start": pc.cast(pc.struct_field(link_flat, "start"), pa.int32()),
        "end": pc.cast(pc.struct_field(link_flat, "end"), pa.int32()),
        "target": pc.cast(pc.struct_field(link_flat, "target"), pa.string()),
    })


def _links_column(pf: pq.ParquetFile) -> str:
    """The Parquet path of the paragraphs' links ("paragraphs.list.element.links"): read
    alone, the paragraphs' text is never decoded (most of a snapshot's bytes)."""
    for i in range(pf.metadata.num_columns):
        path = pf.schema.column(i).path
        if path.startswith("paragraphs.") and ".links." in path:
            return path[:path.index(".links.") + len(".links")]
    return "paragraphs"


class _Spill:
    """Rows buffered up to SPILL_ROWS, then written to a PartitionedWriter by title."""

    def __init__(self, writer: PartitionedWriter, parts: int) -> None:
        self.writer, self.parts = writer, parts
        self.tables: list[pa.Table] = []
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.tables.append(table)
            self.rows += table.num_rows
            if self.rows >= SPILL_ROWS:
                self.flush()

    def flush(self) -> None:
        if self.tables:
            t = pa.concat_tables(self.tables).combine_chunks()
            self.writer.write(t, _parts_of(t.column("norm"), self.parts))
        self.tables, self.rows = [], 0

    def close(self) -> dict:
        self.flush()
        return self.writer.close()


@resumable
def read_input(task: ReadTask) -> tuple[dict, dict]:
    """One shard of the snapshot (its links and its article titles), of the mapping (each
    item's page) or of the redirects, into work files by title partition."""
    work, src = Path(task.work), Path(task.source) / shard_name(task.shard)
    pf = pq.ParquetFile(src)
    if task.kind == "snapshot":
        links = _Spill(PartitionedWriter(work / f"{task.name}.links.arrow", W_LINKS),
                       task.parts)
        articles = _Spill(PartitionedWriter(work / f"{task.name}.articles.arrow", W_ARTICLES),
                          task.parts)
        n_links = n_articles = 0
        columns = ["page_id", "title", _links_column(pf)]
        for batch in pf.iter_batches(batch_size=256, columns=columns):
            articles.add(pa.table({"norm": _normalized(batch.column("title")),
                                   "page_id": batch.column("page_id")}, schema=W_ARTICLES))
            n_articles += batch.num_rows
            found = links_of(batch)
            if found.num_rows:
                # Targets are in normalize_title's form already (extract, contract C1).
                target = found.column("target")
                links.add(pa.table({"norm": target,
                                    "page_id": found.column("page_id"),
                                    "paragraph": found.column("paragraph"),
                                    "start": found.column("start"), "end": found.column("end"),
                                    "target": target}, schema=W_LINKS))
            n_links += found.num_rows
        return ({"links": links.close(), "articles": articles.close()},
                {"kind": task.kind, "links": n_links, "articles": n_articles})
    if task.kind == "mapping":
        items = PartitionedWriter(work / f"{task.name}.items.arrow", W_ITEMS)
        n = 0
        for batch in pf.iter_batches(batch_size=65536, columns=["qid", "page_id", "title",
                                                                "match"]):
            qids = [qid_number(q) for q in batch.column("qid").to_pylist()]
            rank = pc.if_else(pc.equal(batch.column("match"), "redirect"), 1, 0)
            t = pa.table({"norm": _normalized(batch.column("title")),
                          "page_id": batch.column("page_id"),
                          "qid": pa.array(qids, pa.int64()),
                          "rank": pc.cast(rank, pa.int8())}, schema=W_ITEMS)
            items.write(t, _parts_of(t.column("norm"), task.parts))
            n += t.num_rows
        return {"items": items.close()}, {"kind": task.kind, "items": n}
    redirects = _Spill(PartitionedWriter(work / f"{task.name}.redirects.arrow", W_REDIRECTS),
                       task.parts)
    n = 0
    for batch in pf.iter_batches(batch_size=65536, columns=["title", "target"]):
        t = pa.table({"norm": _normalized(batch.column("title")),
                      "target": _normalized(batch.column("target"))}, schema=W_REDIRECTS)
        redirects.add(t)
        n += t.num_rows
    return {"redirects": redirects.close()}, {"kind": task.kind, "redirects": n}


# --------------------------------------------------------------------------------------------
# Resolve: one title partition, one round.

@dataclass(frozen=True)
class ResolveTask(PartitionTask):
    """`part`: a title partition; `sidecars`: the read phase's done-markers and, after round
    1, the round before's (its hops)."""

    name: str           # "r1-00003": its work files r1-00003.*.arrow, its done-marker .json
    round: int          # 1: the links' own targets; 2..MAX_HOPS+1: redirect hops
    parts: int
    page_shards: int


def _titles(task: ResolveTask) -> pa.Table:
    """The partition's article titles with their item (qid null: an article without one)."""
    articles = first_per_key(task.read("articles", W_ARTICLES), ["norm"], ["page_id"])
    items = first_per_key(task.read("items", W_ITEMS), ["page_id"], ["rank", "qid"])
    idx = pc.index_in(articles.column("page_id"),
                      value_set=items.column("page_id").combine_chunks())
    return articles.append_column("qid", items.column("qid").take(idx))


@resumable
def resolve_partition(task: ResolveTask) -> tuple[dict, dict]:
    work = Path(task.work)
    titles = _titles(task)
    kind = "links" if task.round == 1 else f"hops{task.round - 1}"
    links = task.read(kind, W_LINKS)
    idx = pc.index_in(links.column("norm"), value_set=titles.column("norm").combine_chunks())
    is_article = pc.is_valid(idx)
    qid = titles.column("qid").take(idx)
    hit = pc.fill_null(pc.is_valid(qid), False)
    found = links.filter(hit)
    resolved = pa.table({"page_id": found.column("page_id"),
                         "paragraph": found.column("paragraph"),
                         "start": found.column("start"), "end": found.column("end"),
                         "target": found.column("target"), "qid": qid.filter(hit),
                         "match": pa.array(["title" if task.round == 1 else "redirect"]
                                           * found.num_rows, pa.string())},
                        schema=W_RESOLVED)
    out = PartitionedWriter(work / f"{task.name}.resolved.arrow", W_RESOLVED)
    out.write(resolved, shard_array(resolved.column("page_id").to_numpy(), task.page_shards))
    files = {"resolved": out.close()}
    missed = links.filter(pc.invert(is_article))
    redirects = first_per_key(task.read("redirects", W_REDIRECTS), ["norm"], ["target"])
    ridx = pc.index_in(missed.column("norm"),
                       value_set=redirects.column("norm").combine_chunks())
    via = pc.is_valid(ridx)
    hops = missed.filter(via).set_column(0, "norm", redirects.column("target").take(
        ridx.filter(via)))
    n_hops = hops.num_rows
    report = {"part": task.part, "round": task.round, "links": links.num_rows,
              "resolved": resolved.num_rows,
              "article_without_item": int(pc.sum(is_article).as_py() or 0) - resolved.num_rows,
              "no_page": missed.num_rows - n_hops}
    if task.round <= MAX_HOPS:
        writer = PartitionedWriter(work / f"{task.name}.hops.arrow", W_LINKS)
        writer.write(hops, _parts_of(hops.column("norm"), task.parts) if n_hops
                     else np.zeros(0, np.int64))
        files[f"hops{task.round}"] = writer.close()
        report["redirect_hops"] = n_hops
    else:
        report["too_many_hops"] = n_hops
    return files, report


def _parts_with(work: Path, tasks: list[ResolveTask], kind: str) -> list[int]:
    """The partitions that the done `tasks` wrote rows of `kind` to, in order: the next
    round has nothing to do in the others."""
    found: set[int] = set()
    for t in tasks:
        info = json.loads((work / f"{t.name}.json").read_text())["files"].get(kind)
        if info:
            found.update(int(p) for p in info["index"])
    return sorted(found)


# --------------------------------------------------------------------------------------------
# Write: one page shard of the resolved rows -> the links shard.

@dataclass(frozen=True)
class LinksShardTask(PartitionTask):
    """`part`: a page shard of the snapshot, and so of the links."""

    out: str


def write_links_shard(task: LinksShardTask) -> dict:
    t = task.read("resolved", W_RESOLVED)
    t = t.take(pc.sort_indices(t, [(c, "ascending") for c in
                                   ("page_id", "paragraph", "start", "end", "target")]))
    out = pa.table({"page_id": t.column("page_id"), "paragraph": t.column("paragraph"),
                    "start": t.column("start"), "end": t.column("end"),
                    "target": t.column("target"), "qid": id_strings(t.column("qid")),
                    "match": t.column("match")}, schema=LINKS_SCHEMA)
    with ShardWriter(Path(task.out), LINKS_SCHEMA) as w:
        w.write(out)
    return {"shard": task.part, "rows": out.num_rows}


# --------------------------------------------------------------------------------------------
# The stage.

def _describe(result: StageResult) -> str:
    c = result.counts
    return (f"{c.get('resolved', 0)} of {c.get('links', 0)} links resolved to items "
            f"({c.get('resolved_by_title', 0)} by title, {c.get('resolved_by_redirect', 0)} "
            f"through a redirect; {c.get('unresolved', 0)} unresolved)")


def build_links(month: str, *, wiki: str = "enwiki", data_root: DataRoot | None = None,
                executor: Executor | None = None, partitions: int | None = None
                ) -> StageResult:
    """Build (or confirm, or repair) data/facts/<month>/links/: every link of the month's
    snapshot whose target resolves to an item (see `resolve_target`), from the snapshot, the
    month's mapping and, when extract wrote them, the month's redirects.

    `partitions` (default: one per ARTICLES_PER_PARTITION articles, at most the snapshot's
    shard count) cuts the title shuffle; it shapes only the work files, never the rows."""
    parse_month(month)
    check_wiki(wiki)
    data_root, executor = stage_defaults(data_root, executor)
    snapshot, mapping = data_root.snapshot(wiki, month), data_root.facts(month, "mapping")
    redirects = data_root.redirects(wiki, month)
    snap = require_artifact(snapshot, f"{wiki} snapshot for {month}",
                            f"run `twiki extract --month {month}` first")
    mapped = require_artifact(mapping, f"page mapping for {month}",
                              f"run `twiki facts --month {month}` first")
    if mapped.get("inputs", {}).get("snapshot") != snap["key"]:
        raise TwikiError(f"the page mapping at {mapping} was made from another {wiki} snapshot "
                         f"than {snapshot}: run `twiki facts --month {month}` again to remake it")
    if not snapshot_has_links(snapshot):
        raise TwikiError(f"the {wiki} snapshot for {month} at {snapshot} has no links (an "
                         f"older extract made it): rebuild it with `twiki extract --month "
                         f"{month}`, then run `twiki facts --month {month}`")
    red = read_manifest(redirects)
    if red is None:
        log.info("no redirects for %s %s at %s: links to redirects stay unresolved", wiki,
                 month, redirects)
    shards = snap["shard_count"]
    parts = (min(shards, -(-snap.get("rows", 0) // ARTICLES_PER_PARTITION)) or 1
             if partitions is None else int(partitions))
    if not 1 <= parts <= 100_000:
        raise ConfigError(f"partitions must be between 1 and 100000, not {partitions}")
    inputs = {"snapshot": snap["key"], "mapping": mapped["key"],
              "redirects": red["key"] if red else None}
    build = ArtifactBuild(data_root.facts(month, "links"), stage=STAGE,
                          stage_version=STAGE_VERSION, inputs=inputs,
                          config={"wiki": wiki, "month": month, "shards": shards,
                                  "max_hops": MAX_HOPS},
                          shards=shards, schema=LINKS_SCHEMA)
    run = StageRun(f"links {month}", build, data_root=data_root, executor=executor)
    if run.current:
        return run.result(_describe, what="links")
    work = run.work("links", month, f"p{parts}")
    reads = [ReadTask("snapshot", str(snapshot), i, str(work), f"sn-{i:05d}", parts, shards)
             for i in range(shards)]
    reads += [ReadTask("mapping", str(mapping), i, str(work), f"mp-{i:05d}", parts, shards)
              for i in range(mapped["shard_count"])]
    if red is not None:
        reads += [ReadTask("redirects", str(redirects), i, str(work), f"rd-{i:05d}", parts,
                           shards) for i in range(red["shard_count"])]
    read_reports = run.map(read_input, reads, phase="read")
    rounds: list[list[ResolveTask]] = []
    round_reports: list[list[dict]] = []
    for r in range(1, MAX_HOPS + 2):
        before = markers(rounds[-1]) if rounds else ()
        todo = range(parts) if r == 1 else _parts_with(work, rounds[-1], f"hops{r - 1}")
        tasks = [ResolveTask(p, str(work), markers(reads) + before, f"r{r}-{p:05d}", r, parts,
                             shards) for p in todo]
        phase = "resolve titles" if r == 1 else f"follow redirects ({r - 1})"
        round_reports.append(run.map(resolve_partition, tasks, phase=phase, unit="part"))
        rounds.append(tasks)
    sidecars = tuple(m for tasks in rounds for m in markers(tasks))
    written = run.map_shards(write_links_shard,
                             lambda s, out: LinksShardTask(s, str(work), sidecars, out),
                             phase="write")
    by_title = sum(r["resolved"] for r in round_reports[0])
    by_redirect = sum(r["resolved"] for rep in round_reports[1:] for r in rep)
    links = sum(r.get("links", 0) for r in read_reports if r["kind"] == "snapshot")
    counts = {
        "links": links,
        "articles": sum(r.get("articles", 0) for r in read_reports if r["kind"] == "snapshot"),
        "items": sum(r.get("items", 0) for r in read_reports if r["kind"] == "mapping"),
        "redirects": sum(r.get("redirects", 0) for r in read_reports if r["kind"] == "redirects"),
        "resolved": sum(r["rows"] for r in written),
        "resolved_by_title": by_title, "resolved_by_redirect": by_redirect,
        "unresolved": links - by_title - by_redirect,
        "unresolved_article_without_item": sum(r["article_without_item"]
                                               for rep in round_reports for r in rep),
        "unresolved_no_page": sum(r["no_page"] for rep in round_reports for r in rep),
        "unresolved_too_many_hops": sum(r.get("too_many_hops", 0) for r in round_reports[-1]),
        "links_to_redirects": sum(r.get("redirect_hops", 0) for r in round_reports[0]),
    }
    report = {"counts": counts, "partitions": parts, "redirects": "extract" if red else "none"}
    run.publish(report)
    result = run.result(_describe, what="links")
    log.info("%s, %.1fs", result.summary(), run.seconds())
    return result
