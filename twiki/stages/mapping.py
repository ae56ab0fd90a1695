"""mapping: a month's snapshot articles <-> the month's Wikidata items (page_id, title, qid).

Reads data/facts/<YYYY-MM>/entities/ (the items' sitelink titles) and the month's snapshot
data/snapshots/<wiki>/<YYYY-MM>/, and writes data/facts/<YYYY-MM>/mapping/, partitioned by a
hash of the QID like the facts, sorted by QID. Pages are matched to items one of two ways:
  page_props      the wiki run's page_props table (twiki.sources.pageprops) links page ids to
                  items: the snapshot's pages it names are mapped (match "page_props")
  sitelink titles otherwise: an item's sitelink title, normalized, equals an article's title
                  (match "title"), or names a redirect to it (match "redirect", when a
                  redirects table is given)
An item matched to two pages keeps one: a title match before a redirect, then the lower page id.

Phases, each resumable per task (work files under data/work/mapping/...), partitioned by a
hash of the normalized title (sitelink titles) or by the snapshot's page shards (page_props),
so that memory stays per partition:
  titles (or page_props)  the inputs -> partitioned work files
  match                   one partition -> (qid, page_id, title, match), partitioned by QID;
                          for titles a second round follows the redirect hops of the first
  write                   one QID shard -> the mapping shard
A task reads each work file it needs once and closes it: no worker holds a
work file open once the run is published and its work folder deleted.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.artifacts import (ArtifactBuild, ShardWriter, file_sha256, read_manifest,
                                require_artifact, shard_array, shard_name, shard_of)
from ..engine.executors import Executor
from ..engine.paths import DataRoot, check_wiki, parse_month
from ..engine.shuffle import (PartitionedWriter, PartitionTask, first_per_key, markers,
                              resumable)
from ..engine.stage import StageResult, StageRun, stage_defaults
from ..sources.pageprops import SkippedRows, iter_wikibase_items
from ..sources.wikidata import id_strings, qid_number
# normalize_title lives in twiki.text.normalize (extract's link targets and redirects use it
# too); re-exported here for the callers that import it from this module.
from ..text.normalize import normalize_title  # noqa: F401

log = logging.getLogger("twiki")

STAGE = "facts.mapping"
# Bump when the rows change: mappings made before are rebuilt.
STAGE_VERSION = 2   # 2: page_props, the report's source

MAPPING_SCHEMA = pa.schema([
    pa.field("qid", pa.string(), nullable=False),
    pa.field("page_id", pa.int64(), nullable=False),
    pa.field("title", pa.string(), nullable=False),        # the snapshot's title
    pa.field("match", pa.string(), nullable=False),        # "title" | "redirect" | "page_props"
    pa.field("month", pa.string(), nullable=False),
])

# Work-file schemas.
W_TITLES = pa.schema([("norm", pa.string()), ("id", pa.int64()), ("title", pa.string())])
W_MATCHES = pa.schema([("qid", pa.int64()), ("page_id", pa.int64()), ("title", pa.string()),
                       ("match", pa.string())])
W_PAGE_ITEMS = pa.schema([("page_id", pa.int64()), ("qid", pa.int64())])


def _title_parts(norms: list[str], parts: int) -> np.ndarray:
    """The partition of each normalized title."""
    return np.array([shard_of(zlib.crc32(t.encode("utf-8")), parts) for t in norms],
                    dtype=np.int64)


def _write_matches(writer: PartitionedWriter, qids, page_ids, titles, how: str,
                   shards: int) -> None:
    t = pa.table({"qid": qids, "page_id": page_ids, "title": titles,
                  "match": pa.array([how] * len(qids), pa.string())}, schema=W_MATCHES)
    if t.num_rows:
        writer.write(t, shard_array(t.column("qid").to_numpy(), shards))


# --------------------------------------------------------------------------------------------
# By sitelink titles.

@dataclass(frozen=True)
class TitleMapTask:
    kind: str          # "sitelinks" | "articles" | "redirects"
    source: str        # artifact folder or file
    shard: int | None  # shard of that artifact (None: a plain Parquet file, whole)
    work: str
    name: str          # "sl-00003": its work file sl-00003.arrow, its done-marker .json
    parts: int


@resumable
def map_titles(task: TitleMapTask) -> tuple[dict, dict]:
    """One shard of the sitelinks or the snapshot (or one redirects file), by normalized
    title into partitions."""
    src = Path(task.source)
    pf = pq.ParquetFile(src / shard_name(task.shard) if task.shard is not None else src)
    cols = {"sitelinks": ["qid", "title"], "articles": ["page_id", "title"],
            "redirects": ["title", "target"]}[task.kind]
    writer = PartitionedWriter(Path(task.work) / f"{task.name}.arrow", W_TITLES)
    n = 0
    for batch in pf.iter_batches(batch_size=65536, columns=cols):
        a, b = (batch.column(0).to_pylist(), batch.column(1).to_pylist())
        norms, ids, titles = [], [], []
        for x, y in zip(a, b):
            if x is None or y is None:
                continue
            if task.kind == "sitelinks":
                norms.append(normalize_title(y)), ids.append(qid_number(x)), titles.append(y)
            elif task.kind == "articles":
                norms.append(normalize_title(y)), ids.append(int(x)), titles.append(y)
            else:  # redirect title -> target: `title` carries the normalized target
                norms.append(normalize_title(x)), ids.append(0), titles.append(normalize_title(y))
        if norms:
            writer.write(pa.table({"norm": norms, "id": ids, "title": titles}, schema=W_TITLES),
                         _title_parts(norms, task.parts))
            n += len(norms)
    return {task.kind: writer.close()}, {"kind": task.kind, "rows": n}


@dataclass(frozen=True)
class TitleJoinTask(PartitionTask):
    name: str           # "j1-00003": its work files j1-00003.arrow (+ .hops.arrow)
    shards: int
    round: int          # 1: direct titles (+ redirect hops out); 2: redirected titles


@resumable
def join_titles(task: TitleJoinTask) -> tuple[dict, dict]:
    """One title partition: sitelinks matched to articles by title (round 1, which sends the
    sitelinks that name a redirect on to its target's partition), or those redirect hops
    matched (round 2)."""
    work = Path(task.work)
    articles = first_per_key(task.read("articles", W_TITLES), ["norm"], ["id"])
    report: dict = {"part": task.part}
    matches = PartitionedWriter(work / f"{task.name}.arrow", W_MATCHES)
    files: dict = {}
    if task.round == 1:
        links = task.read("sitelinks", W_TITLES)
        idx = pc.index_in(links.column("norm"), value_set=articles.column("norm").combine_chunks())
        hit = pc.is_valid(idx)
        m = links.filter(hit)
        midx = idx.filter(hit)
        _write_matches(matches, m.column("id"), articles.column("id").take(midx),
                       articles.column("title").take(midx), "title", task.shards)
        missed = links.filter(pc.invert(hit))
        redirects = first_per_key(task.read("redirects", W_TITLES), ["norm"], ["id"])
        ridx = pc.index_in(missed.column("norm"),
                           value_set=redirects.column("norm").combine_chunks())
        rhit = pc.is_valid(ridx)
        hops = pa.table({"norm": redirects.column("title").take(ridx.filter(rhit)),
                         "id": missed.column("id").filter(rhit),
                         "title": missed.column("title").filter(rhit)}, schema=W_TITLES)
        hop_writer = PartitionedWriter(work / f"{task.name}.hops.arrow", W_TITLES)
        if hops.num_rows:
            hop_writer.write(hops, _title_parts(hops.column("norm").to_pylist(), task.shards))
        files["hops"] = hop_writer.close()
        report.update(sitelinks=links.num_rows, matched=m.num_rows,
                      redirect_hops=hops.num_rows,
                      unmatched=missed.num_rows - hops.num_rows, articles=articles.num_rows)
    else:
        hops = task.read("hops", W_TITLES)
        idx = pc.index_in(hops.column("norm"), value_set=articles.column("norm").combine_chunks())
        hit = pc.is_valid(idx)
        _write_matches(matches, hops.column("id").filter(hit),
                       articles.column("id").take(idx.filter(hit)),
                       articles.column("title").take(idx.filter(hit)), "redirect", task.shards)
        report.update(matched=int(pc.sum(hit).as_py() or 0),
                      unmatched=hops.num_rows - int(pc.sum(hit).as_py() or 0))
    files["matches"] = matches.close()
    return files, report


def _map_by_titles(run: StageRun, build: ArtifactBuild, entities: Path, snapshot: Path,
                   snapshot_shards: int, redirect_files: list[Path], month: str) -> dict:
    """The mapping's shards by sitelink titles; returns the report."""
    work = run.work("mapping", month)
    shards = build.shards
    tasks = [TitleMapTask("sitelinks", str(entities), i, str(work), f"sl-{i:05d}", shards)
             for i in range(shards)]
    tasks += [TitleMapTask("articles", str(snapshot), i, str(work), f"ar-{i:05d}", shards)
              for i in range(snapshot_shards)]
    tasks += [TitleMapTask("redirects", str(p), None, str(work), f"rd-{i:05d}", shards)
              for i, p in enumerate(redirect_files)]
    run.map(map_titles, tasks, phase="titles")
    title_joins = [TitleJoinTask(p, str(work), markers(tasks), f"j1-{p:05d}", shards, 1)
                   for p in range(shards)]
    by_title = run.map(join_titles, title_joins, phase="match titles", unit="part")
    redirect_joins = [TitleJoinTask(p, str(work), markers(tasks) + markers(title_joins),
                                    f"j2-{p:05d}", shards, 2) for p in range(shards)]
    by_redirect = run.map(join_titles, redirect_joins, phase="follow redirects", unit="part")
    written = _write_mapping(run, build, work, markers(title_joins) + markers(redirect_joins),
                             month)
    sitelinks = sum(r["sitelinks"] for r in by_title)
    articles = sum(r["articles"] for r in by_title)
    matched_by_title = sum(r["matched"] for r in by_title)
    matched_by_redirect = sum(r["matched"] for r in by_redirect)
    return {"source": "sitelink_titles", "counts": {
        "sitelinks": sitelinks, "articles": articles,
        **_mapped_counts(written, articles),
        "matched_by_title": matched_by_title,
        "matched_by_redirect": matched_by_redirect,
        "sitelinks_unmatched": sitelinks - matched_by_title - matched_by_redirect,
        "redirect_targets_not_in_snapshot": sum(r["unmatched"] for r in by_redirect)}}


# --------------------------------------------------------------------------------------------
# By the page_props table: page ids linked to items by the wiki itself.

@dataclass(frozen=True)
class PagePropsMapTask:
    path: str          # the page_props dump
    work: str
    name: str          # its work file <name>.arrow, its done-marker <name>.json
    page_shards: int   # the snapshot's shard count: rows are partitioned like its pages


@resumable
def map_page_props(task: PagePropsMapTask) -> tuple[dict, dict]:
    """The dump's wikibase_item rows, partitioned by the snapshot shard of their page (a row
    with an id out of range skipped, counted and listed by line)."""
    writer = PartitionedWriter(Path(task.work) / f"{task.name}.arrow", W_PAGE_ITEMS)
    skipped = SkippedRows()
    pages: list[int] = []
    qids: list[int] = []

    def flush() -> None:
        ids = np.asarray(pages, dtype=np.int64)
        writer.write(pa.table({"page_id": ids, "qid": np.asarray(qids, dtype=np.int64)},
                              schema=W_PAGE_ITEMS), shard_array(ids, task.page_shards))
        pages.clear(), qids.clear()

    n = 0
    for page_id, qid in iter_wikibase_items(Path(task.path), skipped):
        pages.append(page_id), qids.append(qid)
        n += 1
        if len(pages) >= 1_000_000:
            flush()
    if pages:
        flush()
    return {"items": writer.close()}, {"page_props_items": n, "rows_skipped": skipped.count,
                                       "skipped": skipped.listed}


@dataclass(frozen=True)
class PagePropsJoinTask(PartitionTask):
    """`part`: a snapshot shard."""

    name: str          # "jp-00003": its work file jp-00003.arrow, its done-marker .json
    snapshot: str      # that shard's file
    shards: int        # mapping shards (by QID)


@resumable
def join_page_props(task: PagePropsJoinTask) -> tuple[dict, dict]:
    """The snapshot shard's articles that the page_props rows link to an item."""
    items = task.read("items", W_PAGE_ITEMS)
    items = items.take(pc.sort_indices(items, [("page_id", "ascending"), ("qid", "ascending")]))
    pages = pq.read_table(task.snapshot, columns=["page_id", "title"])
    idx = pc.index_in(pages.column("page_id"), value_set=items.column("page_id").combine_chunks())
    hit = pc.is_valid(idx)
    matches = PartitionedWriter(Path(task.work) / f"{task.name}.arrow", W_MATCHES)
    _write_matches(matches, items.column("qid").take(idx.filter(hit)),
                   pages.column("page_id").filter(hit), pages.column("title").filter(hit),
                   "page_props", task.shards)
    matched = int(pc.sum(hit).as_py() or 0)
    in_snapshot = pc.is_in(items.column("page_id"),
                           value_set=pages.column("page_id").combine_chunks())
    report = {"shard": task.part, "articles": pages.num_rows, "matched": matched,
              "items_not_in_snapshot": items.num_rows - int(pc.sum(in_snapshot).as_py() or 0)}
    return {"matches": matches.close()}, report


def _map_by_page_props(run: StageRun, build: ArtifactBuild, snapshot: Path,
                       snapshot_shards: int, page_props: Path, month: str) -> dict:
    """The mapping's shards by the page_props table's page ids; returns the report."""
    work = run.work("mapping", month)
    read = PagePropsMapTask(str(page_props), str(work), "pp", snapshot_shards)
    [items] = run.map(map_page_props, [read], phase="page_props", unit="file")
    joins = [PagePropsJoinTask(s, str(work), markers([read]), f"jp-{s:05d}",
                               str(snapshot / shard_name(s)), build.shards)
             for s in range(snapshot_shards)]
    by_page = run.map(join_page_props, joins, phase="match pages")
    written = _write_mapping(run, build, work, markers(joins), month)
    articles = sum(r["articles"] for r in by_page)
    return {"source": "page_props", "page_props": page_props.name,
            "skipped_rows": items["skipped"], "counts": {
        "page_props_items": items["page_props_items"],
        "page_props_rows_skipped": items["rows_skipped"], "articles": articles,
        **_mapped_counts(written, articles),
        "matched_by_page_props": sum(r["matched"] for r in by_page),
        "page_props_items_not_in_snapshot": sum(r["items_not_in_snapshot"] for r in by_page)}}


# --------------------------------------------------------------------------------------------
# Write: one QID shard of the matches -> the mapping shard.

@dataclass(frozen=True)
class MappingShardTask(PartitionTask):
    """`part`: a QID shard of the matches, and so of the mapping."""

    out: str           # the mapping shard
    month: str


def write_mapping_shard(task: MappingShardTask) -> dict:
    matches = task.read("matches", W_MATCHES)
    # One page per item: a direct title match wins over a redirect, then the lower page id.
    matches = matches.append_column(
        "rank", pc.if_else(pc.equal(matches.column("match"), "title"), 0, 1))
    t = first_per_key(matches, ["qid"], ["rank", "page_id"])
    out = pa.table({"qid": id_strings(t.column("qid")), "page_id": t.column("page_id"),
                    "title": t.column("title"), "match": t.column("match"),
                    "month": pa.array([task.month] * t.num_rows, pa.string())},
                   schema=MAPPING_SCHEMA)
    with ShardWriter(Path(task.out), MAPPING_SCHEMA) as w:
        w.write(out)
    return {"shard": task.part, "rows": out.num_rows,
            "qids_with_two_pages": matches.num_rows - out.num_rows}


def _write_mapping(run: StageRun, build: ArtifactBuild, work: Path, sidecars: tuple[str, ...],
                   month: str) -> list[dict]:
    return run.map_shards(write_mapping_shard,
                          lambda s, out: MappingShardTask(s, str(work), sidecars, out, month),
                          builds=(build,), phase="write")


def _mapped_counts(written: list[dict], articles: int) -> dict:
    mapped = sum(r["rows"] for r in written)
    return {"mapped": mapped, "articles_without_item": articles - mapped,
            "qids_with_two_pages": sum(r["qids_with_two_pages"] for r in written)}


# --------------------------------------------------------------------------------------------
# The stage.

def _describe(result: StageResult) -> str:
    r = result.report
    c = r.get("counts", {})
    how = r.get("page_props") or "sitelink titles"
    return f"{c.get('mapped', 0)} of {c.get('articles', 0)} articles mapped to items by {how}"


def build_mapping(month: str, *, wiki: str = "enwiki", data_root: DataRoot | None = None,
                  executor: Executor | None = None, redirects: Path | None = None,
                  page_props: Path | None = None) -> StageResult:
    """Build (or confirm, or repair) data/facts/<month>/mapping/: page_id, title, qid for the
    month's snapshot articles, from the month's facts entities and snapshot.

    With `page_props` (the wiki run's page_props table dump, see twiki.sources.pageprops): from
    its wikibase_item rows, by page id (match "page_props"), the pages of the snapshot only.
    Otherwise from the month's sitelinks and the month's snapshot titles, normalized; a
    sitelink to a redirect (a page renamed between the two dumps) is followed when
    `redirects` (extract's redirects artifact, data/redirects/<wiki>/<M>/, or any Parquet file
    or folder with columns title, target) gives it.
    Unmatched counts are in the report either way."""
    parse_month(month)
    check_wiki(wiki)
    data_root, executor = stage_defaults(data_root, executor)
    entities, snapshot = data_root.facts(month, "entities"), data_root.snapshot(wiki, month)
    ents = require_artifact(entities, f"facts for {month}",
                            f"run `twiki facts --month {month}` first")
    snap = require_artifact(snapshot, f"{wiki} snapshot for {month}",
                            f"run `twiki extract --month {month}` first")
    redirect_files: list[Path] = []
    redirect_inputs: list[dict] = []
    if redirects is not None:
        redirects = Path(redirects)
        published = read_manifest(redirects) if redirects.is_dir() else None
        if published is not None:       # extract's redirects artifact: keyed by its key
            redirect_files = [redirects / shard_name(i) for i in range(published["shard_count"])]
            redirect_inputs = [{"name": redirects.name, "key": published["key"]}]
        else:
            redirect_files = (sorted(redirects.glob("*.parquet")) if redirects.is_dir()
                              else [redirects])
            redirect_inputs = [{"name": p.name, "sha256": file_sha256(p)}
                               for p in redirect_files]
    inputs = {"entities": ents["key"], "snapshot": snap["key"], "redirects": redirect_inputs}
    if page_props is not None:
        page_props = Path(page_props)
        inputs["page_props"] = {"name": page_props.name, "sha256": file_sha256(page_props)}
    shards = ents["shard_count"]
    build = ArtifactBuild(data_root.facts(month, "mapping"), stage=STAGE,
                          stage_version=STAGE_VERSION, inputs=inputs,
                          config={"wiki": wiki, "month": month, "shards": shards},
                          shards=shards, schema=MAPPING_SCHEMA)
    run = StageRun(f"mapping {month}", build, data_root=data_root, executor=executor)
    if run.current:
        return run.result(_describe, what="page mapping")
    if page_props is not None:
        report = _map_by_page_props(run, build, snapshot, snap["shard_count"], page_props, month)
    else:
        report = _map_by_titles(run, build, entities, snapshot, snap["shard_count"],
                                redirect_files, month)
    run.publish(report)
    result = run.result(_describe, what="page mapping")
    log.info("%s, %.1fs", result.summary(), run.seconds())
    return result
