"""`make bench`: the figures the issues ask for, measured in one run, written to
data/bench/results.json and data/bench/results.md (plus a dated copy).

Extraction (issue 2): wikitext MB/s per worker on the real sample pages replicated to >= 100 MB,
beside the naive baseline `mwparserfromhell.parse(text).strip_code()` on the same pages; peak
RSS at 1x and 10x input (the highest of three runs each); 2 workers vs 1 (best of two runs
each). The replicated dumps are made up for benchmarking
(real pages, shifted page ids) and live in data/bench/work/, never in git.

    python -m benchmarks.bench [--only extract,wikitext] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.mirror_kit import REPO, SAMPLE_RUN, build_run, sample_pages, write_listing
from twiki.engine.paths import DataRoot

# Real dumps put 100 pages in a bz2 stream; the bench dumps do too.
PAGES_PER_STREAM = 100
# Page ids of replica r are shifted by r * ID_STRIDE (> the sample's largest id, 100010), so
# replicas follow each other in page_id order as in a real dump.
ID_STRIDE = 1_000_000
# Replicas for the throughput runs: >= 100 MB of wikitext (the "1x").
THROUGHPUT_REPLICAS = 40
# The memory check: 1x = at least 100 MB of wikitext (~5.8 MB a replica), 10x = ten times that.
RSS_BASE_REPLICAS = 20
MEMORY_RUNS = 3   # runs of each size for the peak-memory figure (the highest peak counts)
MONTH, RUN = "2016-05", "20160501"


def replicate(pages: list[bytes], replicas: int) -> list[bytes]:
    out = []
    for r in range(replicas):
        for p in pages:
            pid = int(re.search(rb"<id>(\d+)</id>", p).group(1))
            out.append(p.replace(b"<id>%d</id>" % pid, b"<id>%d</id>" % (pid + r * ID_STRIDE), 1))
    return out


def _sample_tag() -> str:
    """Names cached bench mirrors after the sample and the replication they were made from."""
    import hashlib
    blob = (SAMPLE_RUN / "dumpstatus.json").read_bytes() + str(ID_STRIDE).encode()
    return hashlib.sha1(blob).hexdigest()[:8]


def make_mirror(folder: Path, replicas: int) -> Path:
    """A local mirror holding the sample replicated `replicas` times (cached by size)."""
    mirror = folder / f"mirror-{_sample_tag()}-x{replicas}"
    if (mirror / "enwiki" / RUN / "dumpstatus.json").exists():
        return mirror
    shutil.rmtree(mirror, ignore_errors=True)
    header, pages = sample_pages()
    build_run(mirror, header, replicate(pages, replicas), run_date=RUN, parts=2,
              pages_per_stream=PAGES_PER_STREAM)
    write_listing(mirror)
    return mirror


def run_child(args: list[str], mode: str = "child") -> dict:
    """Run `python -m benchmarks.bench child ...`; returns its JSON plus its peak RSS."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench", mode, *args],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"bench child {args} failed with status {status}")
    result = json.loads(out.strip().splitlines()[-1])
    # The child's own high-water mark (VmHWM): ru_maxrss would carry this parent's peak across
    # fork+exec. With a pool, the workers' peak is reported beside it.
    result["peak_rss_mb"] = round(result.pop("vmhwm_kb") / 1024, 1)
    return result


def vmhwm_kb() -> int:
    """This process's peak resident set (Linux /proc), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child(argv: list[str]) -> int:
    """One extraction in a fresh process: download from the bench mirror, extract, report."""
    from twiki.sources.download import download_month
    from twiki.engine.executors import LocalExecutor
    from twiki.stages.extract import ExtractConfig, ExtractRunOptions, extract_month

    ap = argparse.ArgumentParser()
    ap.add_argument("--mirror", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--chunk-mb", type=float, default=ExtractRunOptions.chunk_mb)
    ap.add_argument("--shards", type=int, default=ExtractConfig.shards)
    a = ap.parse_args(argv)
    root = DataRoot(Path(a.root))
    shutil.rmtree(root.root, ignore_errors=True)  # nothing from an earlier bench is reused
    download_month(MONTH, mirrors=[a.mirror], data_root=root)
    t0 = time.perf_counter()
    res = extract_month(MONTH, data_root=root, executor=LocalExecutor(a.workers),
                        config=ExtractConfig(shards=a.shards),
                        options=ExtractRunOptions(incremental=False, chunk_mb=a.chunk_mb))
    wall = time.perf_counter() - t0
    c = res.manifest["report"]["counts"]
    print(json.dumps({
        "workers": a.workers, "wall_s": round(wall, 3), "articles": c["articles"],
        "wikitext_mb": round(c["wikitext_bytes"] / 1e6, 2),
        "mb_s": round(c["wikitext_bytes"] / 1e6 / wall, 2),
        "vmhwm_kb": vmhwm_kb(),
    }))
    return 0


def bench_extract(work: Path, scale: float) -> dict:
    from benchmarks.bench_wikitext import bench_clean

    base = max(1, round(RSS_BASE_REPLICAS * scale))
    big = max(2, round(THROUGHPUT_REPLICAS * scale))
    m1, m10 = make_mirror(work, base), make_mirror(work, 10 * base)
    mt = make_mirror(work, big)
    # The memory check runs with the default settings (2 MB chunks, 64 shards), as a user would.
    # Peak RSS varies by run (allocator layout): each size runs MEMORY_RUNS times, alternated,
    # and the highest peak of each counts (the worst case, for 1x as for 10x).
    mem_runs: dict[str, list[dict]] = {"1x": [], "10x": []}
    for _ in range(MEMORY_RUNS):
        mem_runs["1x"].append(run_child(["--mirror", str(m1), "--root", str(work / "root-1x"),
                                         "--workers", "1"]))
        mem_runs["10x"].append(run_child(["--mirror", str(m10), "--root",
                                          str(work / "root-10x-mem"), "--workers", "1"]))
    one, ten_mem = (max(mem_runs[k], key=lambda r: r["peak_rss_mb"]) for k in ("1x", "10x"))
    # Throughput: 1 and 2 workers alternated, best of two runs each, so that a burst of load
    # from another process on a shared machine does not decide the ratio.
    tries: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(2):
        for w in (1, 2):
            tries[w].append(run_child(["--mirror", str(mt), "--root", str(work / f"root-tp-{w}w"),
                                       "--workers", str(w)]))
    ten, two = (max(tries[w], key=lambda r: r["mb_s"]) for w in (1, 2))

    # The naive baseline on the same real pages (each distinct page once: replicas are copies).
    header, pages = sample_pages()
    texts = []
    for p in pages:
        if b"<redirect" in p or b"<ns>0</ns>" not in p:
            continue
        m = re.search(rb"<text[^>]*>(.*?)</text>", p, re.S)
        if m:
            import html
            texts.append(html.unescape(m.group(1).decode("utf-8")))
    clean = bench_clean(texts, repeat=1)
    return {
        "input": f"sample pages x{big} ({ten['wikitext_mb']} MB wikitext, {ten['articles']} "
                 f"articles); memory check x{base} vs x{10 * base}",
        "extract_1_worker_mb_s": ten["mb_s"],
        "extract_2_workers_mb_s": two["mb_s"],
        "speedup_2_vs_1": round(two["mb_s"] / ten["mb_s"], 2),
        "naive_strip_code_mb_s": clean["naive_mb_s"],
        "clean_only_mb_s": clean["twiki_mb_s"],
        "extract_vs_naive_per_core": round(ten["mb_s"] / clean["naive_mb_s"], 2),
        "peak_rss_1x_mb": one["peak_rss_mb"],
        "peak_rss_10x_mb": ten_mem["peak_rss_mb"],
        "rss_growth_pct": round(100 * (ten_mem["peak_rss_mb"] / one["peak_rss_mb"] - 1), 1),
        "peak_rss_runs_mb": {k: [r["peak_rss_mb"] for r in v] for k, v in mem_runs.items()},
        "peak_rss_throughput_run_default_settings_mb": ten["peak_rss_mb"],
        "wikitext_mb_1x": one["wikitext_mb"],
        "wikitext_mb_10x": ten_mem["wikitext_mb"],
        "throughput_runs_mb_s": {f"{w}_worker{'s' * (w > 1)}": [r["mb_s"] for r in tries[w]]
                                 for w in (1, 2)},
        "runs": {"1x": one, "10x_memory": ten_mem, "10x_1_worker": ten, "10x_2_workers": two},
    }


# Share of the articles edited in the made-up second month (the paper's diffsets: ~8%).
CHANGED_SHARE = 0.08


def make_pair_mirror(folder: Path, replicas: int) -> Path:
    """Two runs: month A = the replicated sample, month B = A with ~8% of articles edited
    (a sentence appended, a new sha1): made up for benchmarking."""
    import hashlib
    import random
    mirror = folder / f"pair-lead-{_sample_tag()}-x{replicas}"
    if (mirror / "enwiki" / "20160601" / "dumpstatus.json").exists():
        return mirror
    shutil.rmtree(mirror, ignore_errors=True)
    header, pages = sample_pages()
    month_a = replicate(pages, replicas)
    rng = random.Random(0)
    month_b = []
    for p in month_a:
        if b"<redirect" not in p and b"<ns>0</ns>" in p and rng.random() < CHANGED_SHARE:
            stamp = hashlib.sha1(p).hexdigest()[:8].encode()
            # At the top of the lead: the end of the wikitext is usually a section the
            # cleaner drops (References, External links), where an edit adds no text.
            p = re.sub(rb"(<text[^>]*>)", rb"\1A sentence added in June, marked " + stamp
                       + b".\n\n", p, count=1)
            p = re.sub(rb"<sha1>\w+</sha1>", b"<sha1>" + stamp + b"0" * 23 + b"</sha1>", p, 1)
        month_b.append(p)
    for run, pgs in (("20160501", month_a), ("20160601", month_b)):
        build_run(mirror, header, pgs, run_date=run, parts=2, pages_per_stream=PAGES_PER_STREAM)
    write_listing(mirror)
    return mirror


def child_incremental(argv: list[str]) -> int:
    """Month A cold, then month B incrementally (+ the diff), and month B cold: CPU seconds."""
    from twiki.stages.diff import diff_months
    from twiki.sources.download import download_month
    from twiki.stages.extract import ExtractConfig, ExtractRunOptions, extract_month

    ap = argparse.ArgumentParser()
    ap.add_argument("--mirror", required=True)
    ap.add_argument("--root", required=True)
    a = ap.parse_args(argv)
    shutil.rmtree(a.root, ignore_errors=True)
    warm, cold = DataRoot(Path(a.root) / "warm"), DataRoot(Path(a.root) / "cold")
    for root in (warm, cold):
        for month in ("2016-05", "2016-06"):
            download_month(month, mirrors=[a.mirror], data_root=root)
    extract_month("2016-05", data_root=warm, config=ExtractConfig())

    def timed(fn):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        return out, time.process_time() - c0, time.perf_counter() - w0

    inc, inc_cpu, inc_wall = timed(lambda: extract_month("2016-06", data_root=warm,
                                                         config=ExtractConfig()))
    diff, diff_cpu, diff_wall = timed(lambda: diff_months("2016-05", "2016-06", data_root=warm))
    cold_res, cold_cpu, cold_wall = timed(lambda: extract_month(
        "2016-06", data_root=cold, config=ExtractConfig(),
        options=ExtractRunOptions(incremental=False)))
    def decompress_only():
        import bz2
        for part in sorted((warm.raw("enwiki", "20160601")).glob("*multistream[0-9]*.xml*")):
            dec, data = bz2.BZ2Decompressor(), part.read_bytes()
            while data:
                dec.decompress(data)
                data = dec.unused_data if dec.eof else b""
                dec = bz2.BZ2Decompressor() if data else dec

    _, bz2_cpu, _ = timed(decompress_only)
    c = inc.manifest["report"]["counts"]
    print(json.dumps({
        "bz2_decompress_only_cpu_s": round(bz2_cpu, 2),
        "bz2_floor_vs_cold_pct": round(100 * bz2_cpu / cold_cpu, 1),
        "articles": c["articles"], "reused": c["reused"], "cleaned": c["cleaned"],
        "diffset_share_of_articles": diff.report["share_of_snapshot"]["articles"],
        "incremental_extract_cpu_s": round(inc_cpu, 2), "diff_cpu_s": round(diff_cpu, 2),
        "cold_extract_cpu_s": round(cold_cpu, 2),
        "incremental_plus_diff_vs_cold_pct": round(100 * (inc_cpu + diff_cpu) / cold_cpu, 1),
        "incremental_extract_only_vs_cold_pct": round(100 * inc_cpu / cold_cpu, 1),
        "wall_s": {"incremental": round(inc_wall, 2), "diff": round(diff_wall, 2),
                   "cold": round(cold_wall, 2)},
        "vmhwm_kb": vmhwm_kb(),
        "identical_to_cold": all(
            (inc.path / f).read_bytes() == (cold_res.path / f).read_bytes()
            for f in (p.name for p in cold_res.path.glob("part-*"))),
    }))
    return 0


def bench_incremental(work: Path, scale: float) -> dict:
    replicas = max(2, round(THROUGHPUT_REPLICAS * scale))
    mirror = make_pair_mirror(work, replicas)
    return run_child(["--mirror", str(mirror), "--root", str(work / "root-pair")],
                     mode="child-incremental")


def bench_wikitext(work: Path, scale: float) -> dict:
    from benchmarks.bench_wikitext import bench_clean, sample_texts
    return bench_clean(sample_texts(), repeat=3)


def bench_diff(work: Path, scale: float) -> dict:
    from benchmarks.bench_diff import bench_diff as run
    return run(work / "diff")


def bench_facts(work: Path, scale: float) -> dict:
    from benchmarks.bench_facts import bench_facts as run
    return run(work / "facts")


def bench_probes(work: Path, scale: float) -> dict:
    from benchmarks.bench_probes import bench_probes as run
    return run(work / "probes")


def bench_lm(work: Path, scale: float) -> dict:
    from benchmarks.bench_lm import bench_lm as run
    return run(work / "lm")


def bench_download(work: Path, scale: float) -> dict:
    from benchmarks.bench_download import bench_download as run
    return run(work / "download", scale)


def bench_overlap(work: Path, scale: float) -> dict:
    """A monthly build from a rate-limited loopback mirror, processing overlapping the
    download, against the download alone: data/bench/overlap.{json,md}."""
    from benchmarks.bench_overlap import bench_overlap as run
    return run(work / "overlap", scale)


def bench_links(work: Path, scale: float) -> dict:
    from benchmarks.bench_links import bench_links as run
    return run(work / "links")


def bench_align_quality(work: Path, scale: float) -> dict:
    """Alignment precision / recall on the labelled real-text set (tests/data/labelled/):
    data/bench/align_quality.{json,md}."""
    from benchmarks.bench_align_quality import bench_align_quality as run
    return run(work.parent)


def bench_sizing(work: Path, scale: float) -> dict:
    """Measured per-byte / per-entity rates and the month's wall-time model:
    data/bench/sizing.{json,md} (the table of pipelines/CLUSTER.md)."""
    from benchmarks.bench_sizing import bench_sizing as run
    return run(work.parent)


BENCHES = {"download": bench_download, "overlap": bench_overlap, "extract": bench_extract,
           "incremental": bench_incremental,
           "wikitext": bench_wikitext, "diff": bench_diff, "facts": bench_facts,
           "probes": bench_probes, "align_quality": bench_align_quality, "links": bench_links,
           "sizing": bench_sizing, "lm": bench_lm}


def _flatten(figures: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested figures as dotted keys (the per-run details under "runs" are left to the JSON)."""
    out = []
    for k, v in figures.items():
        if k == "runs":
            continue
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def to_markdown(results: dict) -> str:
    lines = [f"# twiki bench — {results['when']}", "",
             f"machine: {results['machine']}", ""]
    for name, figures in results["benches"].items():
        lines += [f"## {name}", "", "| figure | value |", "|---|---|"]
        for k, v in _flatten(figures):
            lines.append(f"| {k} | {v} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    if argv[:1] == ["child-incremental"]:
        return child_incremental(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(BENCHES), help="comma-separated benches")
    ap.add_argument("--scale", type=float, default=1.0, help="input size factor (default 1)")
    ap.add_argument("--out", type=Path, default=REPO / "data" / "bench")
    args = ap.parse_args(argv)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    # `--only X` updates X's figures and keeps the others from the last results.json.
    try:
        previous = json.loads((args.out / "results.json").read_text())["benches"]
    except (OSError, ValueError, KeyError):
        previous = {}
    results = {"when": time.strftime("%Y-%m-%d %H:%M:%S"),
               "machine": f"{platform.platform()}, {os.cpu_count()} cores, "
                          f"Python {platform.python_version()}",
               "benches": previous}
    for name in args.only.split(","):
        if name not in BENCHES:
            ap.error(f"unknown bench {name!r}; choose from {', '.join(BENCHES)}")
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            results["benches"][name] = BENCHES[name](work, args.scale)
        except ImportError as e:  # a stage not installed (e.g. the lm extra)
            results["benches"][name] = {"skipped": f"{type(e).__name__}: {e}"}
        results["benches"][name]["bench_seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(results["benches"][name], indent=1), file=sys.stderr)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in (args.out / "results.json", args.out / f"results-{stamp}.json"):
        path.write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(to_markdown(results))
    print(f"results in {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
