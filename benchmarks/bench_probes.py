"""Figures of the probes stages (issue 5): align + filter on the demo month pair, and their
throughput and memory as the input grows.

- `demo_pair(root)`: the sample mirror's month pair (2016-05 -> 2016-06, data/sample/) built with
  the real stages: download, extract, diff, facts (+ mapping), fact diff. With
  `property_labels=True` the facts also read DEMO_PROPERTY_LABELS (MADE UP, see there): the
  sample's dump has no English label for most properties, so without them almost every probe
  is rejected for `relation_without_label`.
- `bench_probes(out_dir)`: facts/s per worker of align and of align + filter, and peak RSS of
  one process running both, at 1x and 10x of an input made by replicating the demo pair's
  artifacts, month B's resolved links included (every copy gets other QIDs and page ids; text
  and facts are the pair's own). Page
  ids of copy k are offset by k * 10^7, so 10x has ten times the pages, spread like a real dump.
  Runtime: about a minute.

    python -m benchmarks.bench_probes [OUT_DIR]      # prints the figures as JSON
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO / "data" / "sample" / "mirror"
A, B = "2016-05", "2016-06"
WIKIDATA_RUNS = {A: "20160502", B: "20160606"}
SHARDS = 8
COPIES_1X = 20
PAGE_STRIDE = 10_000_000
QID_STRIDE = 100_000_000
# Bounds of what one task holds, set low so that 1x already fills them (the defaults, 2048
# articles a row group and 50,000 candidates a spill, are reached only by inputs of hundreds of
# thousands of articles): peak memory then shows whether anything else grows with the input.
TEXT_ROW_GROUP = 128
SPILL_ROWS = 2_000

# MADE UP: label-only property entities for the properties the demo's facts use, with
# Wikidata's English labels typed in (the sample dump's property entities have their labels
# emptied, see data/sample/README.md). Used only when asked (`property_labels=True`).
DEMO_PROPERTY_LABELS = {
    "P17": "country", "P19": "place of birth", "P20": "place of death",
    "P27": "country of citizenship", "P31": "instance of", "P54": "member of sports team",
    "P69": "educated at", "P106": "occupation", "P108": "employer", "P119": "place of burial",
    "P131": "located in the administrative territorial entity", "P136": "genre",
    "P373": "Commons category", "P509": "cause of death", "P527": "has part(s)",
    "P569": "date of birth", "P570": "date of death", "P571": "inception",
    "P576": "dissolved, abolished or demolished date", "P577": "publication date",
    "P740": "location of formation", "P800": "notable work", "P921": "main subject",
    "P935": "Commons gallery", "P937": "work location", "P1303": "instrument",
    "P1435": "heritage designation", "P1449": "nickname", "P1477": "birth name",
    "P1559": "name in native language", "P2046": "area",
}


def _property_file(folder: Path) -> Path:
    ents = {p: {"type": "property", "id": p, "datatype": "string",
                "labels": {"en": {"language": "en", "value": label}}}
            for p, label in DEMO_PROPERTY_LABELS.items()}
    path = folder / "made_up_property_labels.json"
    path.write_text(json.dumps({"entities": ents}))
    return path


def demo_pair(root, *, property_labels: bool = False, executor=None):
    """Build the sample mirror's month pair under `root` (a DataRoot) with the real stages."""
    from pipelines.snapshot import build_month
    from twiki.engine.executors import LocalExecutor
    from twiki.config import BuildConfig
    from twiki.stages.factdiff import diff_facts
    from twiki.stages.facts import FactsConfig, build_facts
    executor = executor or LocalExecutor(1)
    build_month(B, mirrors=[str(MIRROR)], data_root=root, executor=executor,
                config=BuildConfig(shards=SHARDS))
    root.root.mkdir(parents=True, exist_ok=True)
    extra = [_property_file(root.root)] if property_labels else []
    for month, run in WIKIDATA_RUNS.items():
        dump = MIRROR / "wikidatawiki" / "entities" / run / f"wikidata-{run}-all.json.gz"
        # the sample's labels come first: a property it does label keeps its own label
        build_facts(month, dump=[dump] + extra, data_root=root, executor=executor,
                    config=FactsConfig(shards=SHARDS))
    diff_facts(A, B, data_root=root, executor=executor)
    return root


# ---------------------------------------------------------------------------------------
# A scaled copy of a month pair's artifacts.

def _renumber_qids(col: pa.ChunkedArray, k: int) -> pa.Array:
    num = pc.cast(pc.utf8_slice_codeunits(col, 1), pa.int64())
    num = pc.add(num, k * QID_STRIDE)
    return pc.binary_join_element_wise(pa.scalar("Q"), pc.cast(num, pa.string()), "")


def _scaled(src: Path, dst: Path, copies: int, key: str, stage: str, shards: int,
            row_group_rows: int) -> None:
    """Copy artifact `src` `copies` times into `dst`, renumbering page ids (key 'page_id') or
    subject QIDs (key 'subject' / 'qid'), re-sharded by the same hash and sorted as the
    stage sorts."""
    from twiki.engine.artifacts import ArtifactBuild, ShardWriter, read_manifest
    from twiki.engine.artifacts import shard_array
    manifest = read_manifest(src)
    table = pq.read_table(src)
    parts = []
    for k in range(copies):
        t = table
        if key == "page_id":
            t = t.set_column(t.schema.get_field_index("page_id"), "page_id",
                             pc.add(t.column("page_id"), k * PAGE_STRIDE))
        else:
            t = t.set_column(t.schema.get_field_index(key), key, _renumber_qids(t.column(key), k))
            if "subject_label" in t.schema.names and k:   # another subject, another label
                t = t.set_column(t.schema.get_field_index("subject_label"), "subject_label",
                                 pc.binary_join_element_wise(t.column("subject_label"),
                                                             pa.scalar(f"({k})"), " "))
            if "page_id" in t.schema.names:   # the mapping: its pages move with the copies
                t = t.set_column(t.schema.get_field_index("page_id"), "page_id",
                                 pc.add(t.column("page_id"), k * PAGE_STRIDE))
        parts.append(t)
    t = pa.concat_tables(parts)
    if key == "page_id":
        ids = t.column("page_id").to_numpy()
        sort = [("page_id", "ascending")] + [(c, "ascending") for c in ("position", "paragraph",
                                                                          "start")
                                             if c in t.schema.names]
    else:
        ids = pc.cast(pc.utf8_slice_codeunits(t.column(key), 1), pa.int64()).to_numpy()
        t = t.append_column("_n", pa.array(ids))
        sort = [("_n", "ascending")] + ([("property", "ascending"), ("statement_id", "ascending")]
                                        if "property" in t.schema.names else [])
    shard = shard_array(np.asarray(ids, dtype=np.int64), shards)
    schema = pq.read_schema(src / "part-00000.parquet")
    build = ArtifactBuild(dst, stage=stage, stage_version=1,
                          inputs={"copy_of": manifest["key"], "copies": copies}, config={},
                          shards=shards, schema=schema)
    for s in range(shards):
        part = t.filter(pa.array(shard == s))
        part = part.take(pc.sort_indices(part, sort))
        if "_n" in part.schema.names:
            part = part.drop_columns(["_n"])
        with ShardWriter(build.shard_path(s), schema, row_group_rows=row_group_rows) as w:
            w.write(part.cast(schema))
    report = json.loads(json.dumps(manifest.get("report", {})))
    if stage == "factdiff":
        report["counts"] = {c: v * copies for c, v in report.get("counts", {}).items()}
    build.publish(report=report)


def scale_pair(base, out, copies: int) -> None:
    """The month pair of DataRoot `base`, `copies` times over, as DataRoot `out`'s artifacts."""
    jobs = [(base.snapshot("enwiki", A), out.snapshot("enwiki", A), "page_id", "extract"),
            (base.snapshot("enwiki", B), out.snapshot("enwiki", B), "page_id", "extract"),
            (base.diffset("enwiki", A, B), out.diffset("enwiki", A, B), "page_id", "diff"),
            (base.diffset("enwiki", A, B, part="removed"),
             out.diffset("enwiki", A, B, part="removed"), "page_id", "diff-removed"),
            (base.factdiff(A, B), out.factdiff(A, B), "subject", "factdiff"),
            (base.facts(B, "mapping"), out.facts(B, "mapping"), "qid",
             "facts.mapping")]
    if (base.facts(B, "links") / "_manifest.json").exists():   # month B's resolved links
        jobs.append((base.facts(B, "links"), out.facts(B, "links"), "page_id", "facts.links"))
    for src, dst, key, stage in jobs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        _scaled(src, dst, copies, key, stage, SHARDS,
                TEXT_ROW_GROUP if key == "page_id" else 2048)


# ---------------------------------------------------------------------------------------
# Measurements.

def run_once(root: Path) -> dict:
    """Align + filter in this process (1 worker); timings and this process's peak RSS."""
    from twiki.stages.align import AlignOptions, align_month_pair
    from twiki.engine.paths import DataRoot
    from twiki.stages.probes import filter_probes
    data_root = DataRoot(root)
    t0 = time.process_time()
    res = align_month_pair(A, B, data_root=data_root, options=AlignOptions(spill_rows=SPILL_ROWS))
    t1 = time.process_time()
    pr = filter_probes(A, B, data_root=data_root)
    t2 = time.process_time()
    facts = res.report["initial"]["unchanged"] + res.report["initial"]["changed"]
    return {"facts": facts, "candidates": sum(res.report["candidates"].values()),
            "aligned": res.report["aligned"],
            "probes": pr.report["stages"]["heuristic_filtering"],
            "align_cpu_s": round(t1 - t0, 3), "filter_cpu_s": round(t2 - t1, 3),
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux from /proc (VmHWM): getrusage's ru_maxrss
    keeps the parent's peak across fork + exec, so a child started by a big parent would
    report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _measure(root: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_probes", "--run-once", str(root)],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_probes(out_dir) -> dict:
    """The figures: facts/s per worker and peak RSS at 1x and 10x (see the module docstring)."""
    from twiki.engine.paths import DataRoot
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    base = DataRoot(out_dir / "demo")
    demo_pair(base, property_labels=True)
    figures: dict = {"input": "demo month pair 2016-05 -> 2016-06 (data/sample), replicated",
                     "workers": 1}
    for name, copies in (("1x", COPIES_1X), ("10x", 10 * COPIES_1X)):
        root = DataRoot(out_dir / name)
        scale_pair(base, root, copies)
        m = _measure(root.root)
        cpu = m["align_cpu_s"] + m["filter_cpu_s"]
        figures[name] = {**m, "copies": copies,
                         "align_facts_per_s": round(m["facts"] / m["align_cpu_s"], 1),
                         "align_candidates_per_s": round(m["candidates"] / m["align_cpu_s"], 1),
                         "align_filter_facts_per_s": round(m["facts"] / cpu, 1)}
        shutil.rmtree(root.root, ignore_errors=True)
    figures["rss_ratio_10x_1x"] = round(figures["10x"]["peak_rss_mb"]
                                        / figures["1x"]["peak_rss_mb"], 3)
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--run-once":
        print(json.dumps(run_once(Path(sys.argv[2]))))
    else:
        target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "data" / "bench" / "probes"
        print(json.dumps(bench_probes(target), indent=2))
