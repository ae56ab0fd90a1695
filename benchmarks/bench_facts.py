"""Figures of the facts stage (issue 4), measured in one run:

- entities/s per worker of `build_facts` (map + join + reduce, all of it) on the real
  101-entity dump-format sample (Wikidata-Toolkit, 2015-08) replicated to >= 200 MB, beside the
  parse floor: one process that only decompresses and `orjson.loads` each line of the same
  file; for .bz2 (the official all.json.bz2 is one lbzip2 stream) and .gz (concatenated gzip
  members, as Wikimedia writes all.json.gz);
- peak RSS of a 1-worker build at 1x (~20 MB) and 10x (~200 MB) of input, both cut into
  chunks of the same compressed size (so 1x already fills a map task's buffers; 10x has ten
  times as many tasks);
- 2 workers vs 1 (wall clock; the stage runs three executor phases on one pool); floor, 1
  worker and 2 workers alternate, best of three runs each. Both start with the stage's modules
  imported (1 worker runs in the bench's child process, which imported them; the pool's workers
  are started before the clock): the pool's one-off start-up (~0.4 s, once per run, whatever
  the dump's size) is reported on its own, and the ratio with it counted too;
- the same floor comparison on full-size real entities (Q42, The Beatles, Hong Kong, ... as the
  API returned them, labels and sitelinks included) replicated to ~200 MB in .gz: the sample
  above has emptied labels and tiny entities, the worst case for the ratio to the floor.

The sample's sitelinks were emptied by its authors, so the bench runs with
require_sitelink=False (every item is a subject). Replica k renumbers the items (Q<id + k*1000>)
so subjects stay unique; properties are written once. The replicated files are made up for
benchmarking from real entities and live in the output folder, never in git.

    python -m benchmarks.bench_facts [OUT_DIR]
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson

from twiki.sources.wikidata import qid_number

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "data" / "wikimedia" / "wikidata" / "sample-dump-20150815.json.gz"
TARGET_MB = 200          # the 10x input; 1x is a tenth of it
ID_STRIDE = 1000         # > the sample's largest item id (Q298)
GZ_MEMBER_BYTES = 8 << 20
CHUNKS = 8               # map tasks per input: chunk_mb is the compressed size / CHUNKS
ROUNDS = 3               # alternated runs of floor / 1 worker / 2 workers; the best of each counts


FULL_ENTITY_FILES = [
    "wbgetentities-Douglas-Adams.json", "Q1299.json", "Q8646.json", "Q20145.json", "Q33281.json",
    "Q494290.json", "wbgetentites-Oliver-Kahn.json", "wbgetentities-Q32063953.json",
    "Q16231742.json", "wbgetentities-Q1.json", "Q271094__2023-01-21__9fb7065.json",
    "Q328212__2023-01-21__9fb7065.json", "Q646148__2023-01-21__9fb7065.json",
    "Q217447__2023-01-21__9fb7065.json", "Q4132785__2023-01-21__9fb7065.json", "P434.json",
    "P2003.json", "wd_P279.json"]


def full_entities() -> list[dict]:
    out = []
    for name in FULL_ENTITY_FILES:
        d = json.loads((SAMPLE.parent / name).read_text())
        out += list(d["entities"].values()) if "entities" in d else [d]
    return out


def sample_lines() -> tuple[list[dict], list[dict]]:
    lines = [l.rstrip(b",") for l in gzip.decompress(SAMPLE.read_bytes()).split(b"\n")
             if l.startswith(b"{")]
    ents = [orjson.loads(l) for l in lines]
    return [e for e in ents if e["type"] == "item"], [e for e in ents if e["type"] != "item"]


def replicated(target_bytes: int, full: bool = False) -> bytes:
    if full:
        ents = full_entities()
        items = [e for e in ents if e["type"] == "item"]
        props = [e for e in ents if e["type"] != "item"]
        stride = 100_000_000        # > Q328212 etc.
    else:
        items, props = sample_lines()
        stride = ID_STRIDE
    out = [orjson.dumps(p) for p in props]
    size = sum(len(x) + 2 for x in out)
    k = 0
    while size < target_bytes:
        for e in items:
            line = orjson.dumps(dict(e, id=f"Q{qid_number(e['id']) + k * stride}"))
            out.append(line)
            size += len(line) + 2
        k += 1
    return b"[\n" + b",\n".join(out) + b"\n]\n"


def make_inputs(folder: Path) -> dict[str, Path]:
    """1x/10x bz2 and gz dumps (cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"bz2_10x": folder / "bench10x-all.json.bz2", "gz_10x": folder / "bench10x-all.json.gz",
             "bz2_1x": folder / "bench1x-all.json.bz2", "gz_full": folder / "benchfull-all.json.gz"}
    if all(p.exists() for p in paths.values()):
        return paths
    data = replicated(TARGET_MB * 1_000_000, full=True)
    with open(paths["gz_full"].with_suffix(".tmp"), "wb") as f:
        for i in range(0, len(data), GZ_MEMBER_BYTES):
            f.write(gzip.compress(data[i:i + GZ_MEMBER_BYTES], 6))
    paths["gz_full"].with_suffix(".tmp").replace(paths["gz_full"])
    del data
    for scale, tag in ((1, "1x"), (10, "10x")):
        data = replicated(TARGET_MB * 1_000_000 * scale // 10)
        tmp = paths[f"bz2_{tag}"].with_suffix(".tmp")
        tmp.write_bytes(bz2.compress(data, 9))
        tmp.replace(paths[f"bz2_{tag}"])
        if tag == "10x":
            tmp = paths["gz_10x"].with_suffix(".tmp")
            with open(tmp, "wb") as f:
                for i in range(0, len(data), GZ_MEMBER_BYTES):
                    f.write(gzip.compress(data[i:i + GZ_MEMBER_BYTES], 6))
            tmp.replace(paths["gz_10x"])
    return paths


def parse_floor(path: Path) -> dict:
    """Decompress and orjson.loads every entity line; nothing else."""
    opener = bz2.open if path.suffix == ".bz2" else gzip.open
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    loads = orjson.loads
    with opener(path, "rb") as f:
        for line in f:
            if line[:1] == b"{":
                loads(line.rstrip().rstrip(b","))
                n += 1
    s, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"entities": n, "seconds": round(s, 2), "entities_per_s": round(n / s),
            "entities_per_cpu_s": round(n / cpu)}


def run_child(dump: Path, root: Path, workers: int, chunk_mb: float) -> dict:
    """One build in a fresh process. Its peak RSS is the child's own VmHWM: ru_maxrss would
    include the (large) bench process it was spawned from, which Linux keeps across exec."""
    shutil.rmtree(root, ignore_errors=True)
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_facts", "child", str(dump),
                             str(root), str(workers), str(chunk_mb)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"bench child failed ({proc.returncode}) on {dump}")
    res = json.loads(out.strip().splitlines()[-1])
    shutil.rmtree(root, ignore_errors=True)
    return res


def child(dump: str, root: str, workers: str, chunk_mb: str) -> None:
    from twiki.engine.executors import LocalExecutor
    from twiki.stages.facts import FactsConfig, FactsRunOptions, build_facts
    from twiki.engine.paths import DataRoot
    # Both sides start with the stage's modules imported (in this process for one worker,
    # in every worker of a started pool) before the clock: the pool's one-off start-up is
    # reported on its own as pool_start_s.
    executor = LocalExecutor(int(workers))
    t0 = time.perf_counter()
    executor.warm()
    pool_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = build_facts("2015-08", dump=Path(dump), data_root=DataRoot(Path(root)),
                      executor=executor,
                      config=FactsConfig(require_sitelink=False),
                      options=FactsRunOptions(chunk_mb=float(chunk_mb)))
    s = time.perf_counter() - t0
    cpu = time.process_time()          # the whole build ran in this process (1 worker)
    c = res.manifest["report"]["counts"]
    hwm = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines()
               if l.startswith("VmHWM:"))
    executor.close()
    print(json.dumps({"seconds": round(s, 2), "pool_start_s": round(pool_start, 3),
                      "entities": c["entities"], "facts": c["facts"],
                      "entities_per_s": round(c["entities"] / s), "peak_rss_mb": round(hwm / 1024, 1),
                      "entities_per_cpu_s": round(c["entities"] / cpu),
                      "timings": res.manifest["timings"]}))


def bench_facts(out_dir: Path | str = Path("data/bench/facts")) -> dict:
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    inputs = make_inputs(out_dir / "work")
    figures: dict = {"input_mb": {k: round(p.stat().st_size / 1e6, 2) for k, p in inputs.items()}}
    for codec in ("bz2", "gz"):
        dump = inputs[f"{codec}_10x"]
        chunk_mb = dump.stat().st_size / 1e6 / CHUNKS
        # floor, 1 worker and 2 workers alternated, best of ROUNDS runs each: a burst of load
        # from another process on a shared machine must not decide a ratio
        tries: dict = {"floor": [], 1: [], 2: []}
        for _ in range(ROUNDS):
            tries["floor"].append(parse_floor(dump))
            for w in (1, 2):
                tries[w].append(run_child(dump, out_dir / "work" / "root", w, chunk_mb))
        floor = max(tries["floor"], key=lambda r: r["entities_per_s"])
        one, two = (min(tries[w], key=lambda r: r["seconds"]) for w in (1, 2))
        figures[codec] = {
            "entities": floor["entities"],
            "floor_entities_per_s": floor["entities_per_s"],
            "stage_1w_entities_per_s": one["entities_per_s"],
            "stage_1w_vs_floor": round(one["entities_per_s"] / floor["entities_per_s"], 3),
            "floor_entities_per_cpu_s": floor["entities_per_cpu_s"],
            "stage_1w_entities_per_cpu_s": one["entities_per_cpu_s"],
            "stage_1w_vs_floor_cpu": round(one["entities_per_cpu_s"] / floor["entities_per_cpu_s"], 3),
            "map_phase_1w_entities_per_s": round(one["entities"] / one["timings"]["map_s"]),
            "stage_2w_entities_per_s_per_worker": round(two["entities_per_s"] / 2),
            "map_phase_speedup_2w": round(one["timings"]["map_s"] / two["timings"]["map_s"], 3),
            "speedup_2w_vs_1w": round(one["seconds"] / two["seconds"], 3),
            "pool_start_2w_s": two["pool_start_s"],
            "speedup_2w_vs_1w_with_pool_start": round(
                one["seconds"] / (two["seconds"] + two["pool_start_s"]), 3),
            "stage_1w_timings": one["timings"], "stage_2w_timings": two["timings"],
            "runs_seconds": {"floor": [r["seconds"] for r in tries["floor"]],
                             "1w": [r["seconds"] for r in tries[1]],
                             "2w": [r["seconds"] for r in tries[2]]},
        }
    full = inputs["gz_full"]
    floors, ones = [], []
    for _ in range(ROUNDS):     # alternated, best of ROUNDS each (as above)
        floors.append(parse_floor(full))
        ones.append(run_child(full, out_dir / "work" / "root", 1,
                              full.stat().st_size / 1e6 / CHUNKS))
    floor = max(floors, key=lambda r: r["entities_per_s"])
    one = min(ones, key=lambda r: r["seconds"])
    figures["gz_full_entities"] = {
        "entities": floor["entities"], "floor_entities_per_s": floor["entities_per_s"],
        "stage_1w_entities_per_s": one["entities_per_s"],
        "stage_1w_vs_floor": round(one["entities_per_s"] / floor["entities_per_s"], 3),
        "stage_1w_vs_floor_cpu": round(one["entities_per_cpu_s"] / floor["entities_per_cpu_s"], 3),
        "stage_1w_timings": one["timings"]}
    # memory: the same chunk size at 1x and 10x (half of the 1x file)
    chunk_mb = inputs["bz2_1x"].stat().st_size / 1e6 / 2
    small = run_child(inputs["bz2_1x"], out_dir / "work" / "root", 1, chunk_mb)
    big = run_child(inputs["bz2_10x"], out_dir / "work" / "root", 1, chunk_mb)
    figures["rss"] = {"1x_mb": small["peak_rss_mb"], "10x_mb": big["peak_rss_mb"],
                      "growth": round(big["peak_rss_mb"] / small["peak_rss_mb"] - 1, 3),
                      "1x_entities": small["entities"], "10x_entities": big["entities"],
                      "chunk_mb": round(chunk_mb, 3)}
    figures["targets"] = {
        "stage_vs_floor_ge_0.5": {c: figures[c]["stage_1w_vs_floor"] >= 0.5
                                  for c in ("bz2", "gz", "gz_full_entities")},
        "rss_growth_le_0.10": figures["rss"]["growth"] <= 0.10,
        "speedup_2w_ge_1.7": {c: figures[c]["speedup_2w_vs_1w"] >= 1.7 for c in ("bz2", "gz")},
    }
    figures["cpus"] = os.cpu_count()
    figures["load_average_after"] = os.getloadavg()[0]
    figures["bench_seconds"] = round(time.perf_counter() - t_start, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_facts.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(*sys.argv[2:6])
    else:
        print(json.dumps(bench_facts(*(sys.argv[1:2] or [])), indent=2))
