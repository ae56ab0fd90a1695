"""Figures of the links stage (issue 15, item 2): links/s per worker of `build_links` (read +
three resolve rounds + write, all of it), 1 worker and 2, best of ROUNDS runs each.

Input: the real articles of the enwiki sample dump in tests/data/wikimedia (gensim's May 2016
pages), cleaned by `clean_page` with their links, and the dump's real redirect pages,
replicated REPLICAS times. MADE UP for benchmarking: replica r > 0 shifts page ids by
r * ID_STRIDE and suffixes every title, link target and redirect with " (r)", so that each
replica links only within itself; the items (one per article of every second title, QIDs
Q<900000000 + n>) are label-and-sitelink lines written here. All of it lives in the output
folder, never in git.

    python -m benchmarks.bench_links [OUT_DIR]
"""

from __future__ import annotations

import bz2
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pyarrow as pa

from tests.mirror_kit import REAL_DATA, parse_revisions
from twiki.engine.artifacts import ArtifactBuild, ShardWriter, shard_of
from twiki.engine.executors import LocalExecutor
from twiki.engine.paths import DataRoot
from twiki.stages.extract import REDIRECTS_SCHEMA as REDIRECTS, SCHEMA as SNAPSHOT
from twiki.stages.facts import FactsConfig, build_facts
from twiki.stages.links import build_links
from twiki.stages.mapping import build_mapping
from twiki.text.normalize import normalize_title
from twiki.text.wikitext import clean_page

DUMP = REAL_DATA / "enwiki" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
MONTH = "2016-05"
SHARDS = 8
REPLICAS = 60
ID_STRIDE = 1_000_000
ROUNDS = 2



def _suffix(title: str, r: int) -> str:
    return title if r == 0 else f"{title} ({r})"


def _write(folder: Path, schema: pa.Schema, rows: list[dict], stage: str) -> None:
    b = ArtifactBuild(folder, stage=stage, stage_version=4, inputs={"bench": len(rows)},
                      config={}, shards=SHARDS, schema=schema)
    by_shard: list[list[dict]] = [[] for _ in range(SHARDS)]
    for row in rows:
        by_shard[shard_of(row["page_id"], SHARDS)].append(row)
    for i in b.pending_shards():
        with ShardWriter(b.shard_path(i), schema) as w:
            w.write(pa.Table.from_pylist(sorted(by_shard[i], key=lambda r: r["page_id"]),
                                         schema=schema))
    b.publish()


def make_inputs(root: DataRoot, work: Path, replicas: int) -> int:
    """The replicated month: snapshot, redirects, facts and mapping. Returns its links."""
    pages = [p for p in parse_revisions(bz2.decompress(DUMP.read_bytes())) if p.ns == 0]
    ts = datetime(2016, 5, 1, tzinfo=timezone.utc)
    cleaned = [(p, clean_page(p.text, p.title)) for p in pages if p.redirect is None]
    redirects = [p for p in pages if p.redirect is not None]
    rows, reds, items, links = [], [], [], 0
    for r in range(replicas):
        for k, (p, paras) in enumerate(cleaned):
            title = _suffix(p.title, r)
            rows.append({"page_id": p.page_id + r * ID_STRIDE, "title": title, "revid": p.revid,
                         "timestamp": ts, "sha1": p.sha1, "paragraphs": [
                             {"section": list(q.section), "text": q.text, "links": [
                                 {"start": l.start, "end": l.end,
                                  "target": _suffix(l.target, r)} for l in q.links]}
                             for q in paras]})
            links += sum(len(q.links) for q in paras)
            if k % 2 == 0:
                items.append({"type": "item", "id": f"Q{900_000_000 + len(items)}",
                              "labels": {"en": {"language": "en", "value": title}},
                              "sitelinks": {"enwiki": {"site": "enwiki", "title": title}},
                              "claims": {}})
        reds += [{"page_id": p.page_id + r * ID_STRIDE,
                  "title": normalize_title(_suffix(p.title, r)),
                  "target": normalize_title(_suffix(p.redirect.split("#")[0], r))}
                 for p in redirects]
    _write(root.snapshot("enwiki", MONTH), SNAPSHOT, rows, "extract")
    _write(root.redirects("enwiki", MONTH), REDIRECTS, reds, "extract-redirects")
    dump = work / "items-all.json"
    dump.write_bytes(b"[\n" + b",\n".join(orjson.dumps(e) for e in items) + b"\n]\n")
    build_facts(MONTH, dump=dump, data_root=root, config=FactsConfig(shards=SHARDS))
    build_mapping(MONTH, data_root=root, redirects=root.redirects("enwiki", MONTH))
    return links


def bench_links(out: Path, replicas: int = REPLICAS) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    root = DataRoot(out / "data")
    links = make_inputs(root, out, replicas)
    best: dict[int, float] = {}
    counts: dict = {}
    with LocalExecutor(2) as pool:
        pool.run(len, [[1], [2]], desc="start")   # start the pool's workers before the clock
        for _ in range(ROUNDS):
            for workers, executor in ((1, LocalExecutor(1)), (2, pool)):
                shutil.rmtree(root.facts(MONTH, "links"), ignore_errors=True)
                t0 = time.perf_counter()
                res = build_links(MONTH, data_root=root, executor=executor, partitions=SHARDS)
                s = time.perf_counter() - t0
                best[workers] = min(best.get(workers, s), s)
                counts = res.counts
    assert counts["links"] == links
    return {
        "input": f"{replicas} replicas of the sample dump's real articles "
                 f"(made-up titles per replica)",
        "links": links, "resolved": counts["resolved"],
        "resolved_by_title": counts["resolved_by_title"],
        "resolved_by_redirect": counts["resolved_by_redirect"],
        "unresolved": counts["unresolved"],
        "seconds_1_worker": round(best[1], 2), "seconds_2_workers": round(best[2], 2),
        "links_per_s_1_worker": round(links / best[1]),
        "links_per_s_per_worker_2_workers": round(links / best[2] / 2),
        "speedup_2_vs_1": round(best[1] / best[2], 2),
    }


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data/bench/work/links")
    print(json.dumps(bench_links(folder), indent=2))
