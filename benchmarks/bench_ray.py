"""Figures of the Ray executor (issue 8), measured in one run, written to data/bench/ray.json
and data/bench/ray.md:

- overhead: the same extract of the sample month with the local process pool and with Ray
  (same workers, same process, alternating, median of --repeat runs), Ray's runtime already
  up; Ray's start-up is timed apart. Once on the shipped sample, once on the sample pages
  replicated --replicas times (bigger tasks, as in a real month);
- the incremental rate: the replicated month extracted cold, then a next month with the same
  pages (every revision unchanged, all clean text reused), 1 worker;
- the sizing table: hours for one full enwiki + Wikidata month on 8, 32 and 128 cores, cold and
  incremental, from the per-core rates that `make bench` measured (data/bench/results.json)
  and the incremental rate above. A rate not measured yet is said so, never guessed.

    python -m benchmarks.bench_ray [--repeat 3] [--replicas 10] [--workers 2] [--sizing-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

from tests.mirror_kit import REPO, SAMPLE_MIRROR, build_run, sample_pages, write_listing

MONTH, NEXT = "2016-05", "2016-06"

# One full month, as published (orders of magnitude from the dumps of 2024-2026; the figures
# scale linearly, so a different month is a different row, not a different model).
ENWIKI_WIKITEXT_MB = 90_000      # ~90 GB of wikitext in ~22 GB of multistream bz2
ENWIKI_BZ2_MB = 22_000
ENWIKI_ARTICLES = 6_700_000
WIKIDATA_BZ2_MB = 110_000        # all.json.bz2
WIKIDATA_ENTITIES = 100_000_000
CORES = (8, 32, 128)
# Share of enwiki articles whose revision changes in a month, for the incremental column.
# TemporalWiki's diffsets hold 299K-329K of ~6.3M articles (~5%) a month; pages edited
# without a text change (bots, templates' parameters) also get a new sha1, so the share that
# must be cleaned again is larger: 10% is taken, and the table shows 5% and 20% beside it.
CHANGED_SHARES = (0.05, 0.10, 0.20)
DEFAULT_CHANGED = 0.10


# ---------------------------------------------------------------------------------------
# Measuring.

def two_month_mirror(work: Path, replicas: int) -> Path:
    """The sample pages x`replicas` as month 2016-05 and, unchanged, as 2016-06."""
    from benchmarks.bench import _sample_tag, replicate
    mirror = work / f"mirror-2m-{_sample_tag()}-x{replicas}"  # named after the sample
    if (mirror / "enwiki" / "20160601" / "dumpstatus.json").exists():
        return mirror
    shutil.rmtree(mirror, ignore_errors=True)
    header, pages = sample_pages()
    pages = replicate(pages, replicas)
    for run in ("20160501", "20160601"):
        build_run(mirror, header, pages, run_date=run, parts=2, pages_per_stream=100)
    write_listing(mirror)
    return mirror


def _fresh_root(work: Path, name: str, mirror: Path, months=(MONTH,)):
    from twiki.sources.download import download_month
    from twiki.engine.paths import DataRoot
    root = DataRoot(work / name)
    for sub in ("snapshots", "work", "diffsets"):
        shutil.rmtree(root.root / sub, ignore_errors=True)
    for m in months:
        download_month(m, mirrors=[str(mirror)], data_root=root)
    return root


def _extract(root, executor, month=MONTH) -> dict:
    from twiki.stages.extract import ExtractConfig, ExtractRunOptions, extract_month
    t0 = time.perf_counter()
    res = extract_month(month, data_root=root, executor=executor, config=ExtractConfig(),
                        options=ExtractRunOptions(incremental=month != MONTH))
    wall = time.perf_counter() - t0
    c, t = res.manifest["report"]["counts"], res.manifest["timings"]
    return {"wall_s": round(wall, 3), "map_s": t["map_s"], "reduce_s": t["reduce_s"],
            "wikitext_mb": round(c["wikitext_bytes"] / 1e6, 2), "articles": c["articles"],
            "reused": c.get("reused", 0), "chunks": res.manifest["report"]["chunks"],
            "shards": res.manifest["shard_count"]}


def overhead(work: Path, mirror: Path, label: str, workers: int, repeat: int, ray_ex,
             start_s: float) -> dict:
    """Local pool vs Ray on the same extract, alternating, after one warm-up run of each."""
    from twiki.engine.executors import LocalExecutor
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    for i in range(repeat + 1):
        for name, ex in (("local", LocalExecutor(workers)), ("ray", ray_ex)):
            r = _extract(_fresh_root(work, f"root-{label}", mirror), ex)
            if i:  # the first round warms imports and caches
                runs[name].append(r)
    med = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
    shutil.rmtree(work / f"root-{label}", ignore_errors=True)
    return {
        "input": label, "workers": workers, "tasks": runs["ray"][0]["chunks"] +
        runs["ray"][0]["shards"], "wikitext_mb": runs["ray"][0]["wikitext_mb"],
        "local_wall_s": med["local"], "ray_wall_s": med["ray"],
        "overhead_pct": round(100 * (med["ray"] / med["local"] - 1), 1),
        "overhead_with_start_pct": round(100 * ((med["ray"] + start_s) / med["local"] - 1), 1),
        "local_runs_s": [r["wall_s"] for r in runs["local"]],
        "ray_runs_s": [r["wall_s"] for r in runs["ray"]],
    }


def incremental_rate(work: Path, mirror: Path, repeat: int) -> dict:
    """1 worker, `repeat` times: month A cold, then month B whose pages are all unchanged
    (all clean text reused). The fastest of each phase is kept: the machine is shared, and
    interference only ever adds time. The map phase is the same work in both months."""
    from twiki.engine.executors import LocalExecutor
    cold, warm = [], []
    for _ in range(repeat):
        root = _fresh_root(work, "root-incremental", mirror, months=(MONTH, NEXT))
        cold.append(_extract(root, LocalExecutor(1), MONTH))
        warm.append(_extract(root, LocalExecutor(1), NEXT))
        assert warm[-1]["reused"] == warm[-1]["articles"]
    shutil.rmtree(work / "root-incremental", ignore_errors=True)
    mb = cold[0]["wikitext_mb"]
    map_s = min(r["map_s"] for r in cold + warm)
    red_cold = min(r["reduce_s"] for r in cold)
    red_reused = min(r["reduce_s"] for r in warm)
    return {
        "wikitext_mb": mb, "runs": {"cold": cold, "all_reused": warm},
        "map_s": map_s, "reduce_cold_s": red_cold, "reduce_all_reused_s": red_reused,
        "cold_mb_s": round(mb / (map_s + red_cold), 2),
        "all_reused_mb_s": round(mb / (map_s + red_reused), 2),
        "cold_map_share": round(map_s / (map_s + red_cold), 3),
        "reused_reduce_ratio": round(red_reused / red_cold, 3),
    }


# ---------------------------------------------------------------------------------------
# The sizing table.

def load_benches(out_dir: Path) -> dict:
    """make bench's figures, each bench from the newest file that has it: results.json, then
    the dated copies (a `make bench --only X` run rewrites results.json with X alone)."""
    files = [out_dir / "results.json"] + sorted(out_dir.glob("results-*.json"), reverse=True)
    merged: dict = {"benches": {}, "from": {}}
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for name, figures in data.get("benches", {}).items():
            if name not in merged["benches"]:
                merged["benches"][name] = figures
                merged["from"][name] = (f"{path.name}, {data.get('when')}; "
                                        f"{data.get('machine')}")
    return merged


def facts_rate(results: dict) -> float | None:
    """Entities per second per worker of the facts stage, if `make bench` measured it."""
    facts = results.get("benches", {}).get("facts") or {}
    for path in (("bz2", "stage_1w_entities_per_s"), ("stage_1w_entities_per_s",),
                 ("entities_per_s_per_worker",)):
        v = facts
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return None


def enwiki_hours(cores: int, cold_mb_s: float, map_share: float, shards: int,
                 reused_reduce_ratio: float = 1.0, changed: float = 1.0) -> float:
    """Hours to extract one enwiki month on `cores`. The map phase (decompress, parse,
    split by shard) reads every stream, cold or not, and spreads over every core; the reduce
    phase (clean, or reuse last month's clean text for an unchanged page) runs one task per
    shard, so on at most `shards` cores."""
    core_s = ENWIKI_WIKITEXT_MB / cold_mb_s
    map_s = core_s * map_share
    reduce_s = core_s * (1 - map_share) * (changed + (1 - changed) * reused_reduce_ratio)
    return (map_s / cores + reduce_s / min(cores, shards)) / 3600


def incremental_check(results: dict, map_share: float | None,
                      ratio: float | None) -> dict | None:
    """make bench's measured incremental extract (if any) beside what the model predicts."""
    inc = results.get("benches", {}).get("incremental") or {}
    measured, articles = inc.get("incremental_extract_only_vs_cold_pct"), inc.get("articles")
    if measured is None or not articles or map_share is None or ratio is None:
        return None
    changed = inc.get("cleaned", 0) / articles
    model = map_share + (1 - map_share) * (changed + (1 - changed) * ratio)
    return {"from": results.get("from", {}).get("incremental"),
            "changed_pct": 100 * changed, "measured_pct": measured, "model_pct": 100 * model}


def sizing(results: dict, inc: dict | None, shards: int = 64) -> dict:
    ext = results.get("benches", {}).get("extract", {})
    cold = ext.get("extract_1_worker_mb_s")
    # The absolute rate is make bench's (so the table follows make bench when it is rerun);
    # the map/reduce split and what reuse saves come from this bench's 1-worker runs.
    share = inc["cold_map_share"] if inc else None
    ratio = inc["reused_reduce_ratio"] if inc else None
    frate = facts_rate(results)
    rows = []
    for n in CORES:
        row = {"cores": n, "enwiki_cold_h": None, "enwiki_incremental_h": None}
        if cold and share is not None:
            row["enwiki_cold_h"] = round(enwiki_hours(n, cold, share, shards), 4)
            row["enwiki_incremental_h"] = {
                f"{int(c * 100)}%": round(enwiki_hours(n, cold, share, shards, ratio, c), 4)
                for c in CHANGED_SHARES}
        # Facts has no incremental mode: a month is read whole either way.
        row["wikidata_h"] = round(WIKIDATA_ENTITIES / frate / n / 3600, 4) if frate else None
        rows.append(row)
    return {
        "rates": {"extract_1_worker_mb_s": cold, "extract_map_share": share,
                  "extract_reused_reduce_ratio": ratio,
                  "facts_1_worker_entities_per_s": frate, "shards": shards,
                  "extract_from": results.get("from", {}).get("extract"),
                  "facts_from": results.get("from", {}).get("facts"),
                  "incremental_check": incremental_check(results, share, ratio)},
        "month": {"enwiki_wikitext_mb": ENWIKI_WIKITEXT_MB, "enwiki_bz2_mb": ENWIKI_BZ2_MB,
                  "enwiki_articles": ENWIKI_ARTICLES, "wikidata_bz2_mb": WIKIDATA_BZ2_MB,
                  "wikidata_entities": WIKIDATA_ENTITIES},
        "rows": rows,
    }


def _h(v) -> str:
    if v is None:
        return "not measured yet"
    return f"{v:.2f} h" if v >= 0.1 else f"{v * 60:.1f} min"


def to_markdown(out: dict) -> str:
    lines = [f"# twiki Ray bench — {out['when']}", "", f"machine: {out['machine']}", ""]
    if out.get("overhead"):
        lines += ["## Ray vs local process pool (extract, same run, median)", "",
                  "| input | tasks | workers | local pool | Ray (runtime up) | overhead | "
                  "overhead with Ray's start |", "|---|---|---|---|---|---|---|"]
        for o in out["overhead"]:
            lines.append(f"| {o['input']} ({o['wikitext_mb']} MB wikitext) | {o['tasks']} | "
                         f"{o['workers']} | {o['local_wall_s']:.2f} s | {o['ray_wall_s']:.2f} s"
                         f" | {o['overhead_pct']:+.1f}% | {o['overhead_with_start_pct']:+.1f}% |")
        lines += ["", f"Overhead: Ray's wall time over the local pool's, in % of the local "
                  f"pool's. A local Ray runtime ({out['ray_start']['workers']} CPUs) takes "
                  f"{out['ray_start']['seconds']:.1f} s to start, once per command (joining a "
                  f"running cluster takes about a second); the local pool starts its worker "
                  f"processes in every stage phase, which Ray's reused workers do not.", ""]
    if out.get("incremental"):
        i = out["incremental"]
        lines += ["## Incremental extract (1 worker, fastest of each phase)", "",
                  f"{i['wikitext_mb']} MB wikitext: map {i['map_s']:.2f} s; reduce "
                  f"{i['reduce_cold_s']:.2f} s cold, {i['reduce_all_reused_s']:.2f} s with "
                  f"every page unchanged (clean text reused). Cold {i['cold_mb_s']} MB/s, "
                  f"all reused {i['all_reused_mb_s']} MB/s.", ""]
    s = out["sizing"]
    r, m = s["rates"], s["month"]
    inc_default = f"{int(DEFAULT_CHANGED * 100)}%"
    lines += ["## Sizing: one full month", "",
              f"enwiki: ~{m['enwiki_wikitext_mb'] / 1000:.0f} GB wikitext "
              f"(~{m['enwiki_bz2_mb'] / 1000:.0f} GB bz2, ~{m['enwiki_articles'] / 1e6:.1f} M "
              f"articles); Wikidata: ~{m['wikidata_bz2_mb'] / 1000:.0f} GB all.json.bz2, "
              f"~{m['wikidata_entities'] / 1e6:.0f} M entities.", "",
              "| cores | enwiki cold | enwiki incremental "
              f"({inc_default} of pages changed; 5% / 20%) | Wikidata facts | total cold | "
              "total incremental |", "|---|---|---|---|---|---|"]
    for row in s["rows"]:
        inc = row["enwiki_incremental_h"]
        inc_txt = (f"{_h(inc[inc_default])} ({_h(inc['5%'])} / {_h(inc['20%'])})"
                   if inc else _h(None))
        wd = row["wikidata_h"]
        tot_c = (row["enwiki_cold_h"] + wd) if (row["enwiki_cold_h"] is not None and wd) else None
        tot_i = (inc[inc_default] + wd) if (inc and wd) else None
        lines.append(f"| {row['cores']} | {_h(row['enwiki_cold_h'])} | {inc_txt} | {_h(wd)} | "
                     f"{_h(tot_c)} | {_h(tot_i)} |")
    map_bz2_mb_s = (128 * r["extract_1_worker_mb_s"] / r["extract_map_share"]
                    * ENWIKI_BZ2_MB / ENWIKI_WIKITEXT_MB
                    if r["extract_1_worker_mb_s"] and r["extract_map_share"] else None)
    lines += ["", "Rates used (per core):", "",
              f"- extract, cold: {r['extract_1_worker_mb_s']} MB wikitext/s "
              f"(make bench: {r['extract_from']})",
              f"- extract map phase: {r['extract_map_share']} of a cold extract (this "
              f"bench); it reads every page, changed or not",
              f"- extract reduce phase of an unchanged page: {r['extract_reused_reduce_ratio']}"
              f" of a cleaned one's (this bench); it runs on at most {r['shards']} cores "
              f"({r['shards']} shards)",
              "- facts: " + (f"{r['facts_1_worker_entities_per_s']:.0f} entities/s (make "
                             f"bench: {r['facts_from']})"
                             if r["facts_1_worker_entities_per_s"] else "not measured yet"),
              ""]
    chk = r.get("incremental_check")
    if chk:
        lines += [f"Cross-check: make bench's own incremental run ({chk['from']}) cleaned "
                  f"{chk['changed_pct']:.1f}% of the articles again and took "
                  f"{chk['measured_pct']:.1f}% of a cold extract's CPU time; the model above "
                  f"gives {chk['model_pct']:.1f}% for that share.", ""]
    lines += ["Not included: the download (network-bound), Ray start-up (seconds), and the "
              "shared filesystem's limit"
              + (f": at 128 cores the map phase reads ~{map_bz2_mb_s:.0f} MB/s of bz2 and "
                 f"writes its work files (zstd Parquet) at a similar rate." if map_bz2_mb_s
                 else "."), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per executor (default 3)")
    ap.add_argument("--replicas", type=int, default=10,
                    help="sample pages replicated this many times for the big input (default 10)")
    ap.add_argument("--workers", type=int, default=2, help="workers of both executors")
    ap.add_argument("--sizing-only", action="store_true",
                    help="only recompute the table from results.json and the last ray.json")
    ap.add_argument("--out", type=Path, default=REPO / "data" / "bench")
    args = ap.parse_args(argv)
    results = load_benches(args.out)
    if "extract" not in results["benches"]:
        print(f"no extract figures in {args.out}/results*.json: run `make bench` first; the "
              f"sizing table needs its rates", file=sys.stderr)
    prev_path = args.out / "ray.json"
    out = json.loads(prev_path.read_text()) if (args.sizing_only and prev_path.exists()) else {}
    if not args.sizing_only:
        from twiki.engine.executors_ray import RayExecutor
        work = args.out / "work" / "ray"
        work.mkdir(parents=True, exist_ok=True)
        out = {"when": time.strftime("%Y-%m-%d %H:%M:%S"),
               "machine": f"{platform.platform()}, {os.cpu_count()} cores, "
                          f"Python {platform.python_version()}"}
        big = two_month_mirror(work, args.replicas)
        print("bench ray: incremental rate ...", file=sys.stderr, flush=True)
        out["incremental"] = incremental_rate(work, big, args.repeat)
        ray_ex = RayExecutor(args.workers)
        t0 = time.perf_counter()
        ray_ex.run(abs, [-1], desc="start ray")
        out["ray_start"] = {"workers": args.workers,
                            "seconds": round(time.perf_counter() - t0, 2)}
        out["overhead"] = []
        for label, mirror in (("sample", SAMPLE_MIRROR), (f"sample x{args.replicas}", big)):
            print(f"bench ray: overhead on {label} ...", file=sys.stderr, flush=True)
            out["overhead"].append(overhead(work, mirror, label.replace(" ", "-"),
                                            args.workers, args.repeat, ray_ex,
                                            out["ray_start"]["seconds"]))
        ray_ex.close()
    out.setdefault("when", time.strftime("%Y-%m-%d %H:%M:%S"))
    out.setdefault("machine", "")
    out["sizing"] = sizing(results, out.get("incremental"))
    args.out.mkdir(parents=True, exist_ok=True)
    prev_path.write_text(json.dumps(out, indent=2) + "\n")
    md = to_markdown(out)
    (args.out / "ray.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
