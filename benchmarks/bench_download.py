"""Parallel download (issue 18): the aggregate rate of one large file fetched in segments from
three rate-limited mirrors at once, against the sum of their rates (the issue asks >= 85%).

The mirrors are the test's loopback servers (tests/test_parallel_download.py:
RateLimitedMirror on 127.0.0.1-3, each mirror's connections sharing its rate) serving a
made-up run; the download runs with the default settings except the segment size (so that a
file of tens of MB has enough segments to share out). Two cases: three equal mirrors, and
three unequal ones (1, 2 and 4 MiB/s), where each mirror's share should follow its rate.

    python -m benchmarks.bench_download [--scale 1.0]   # writes data/bench/download.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from tests.test_parallel_download import MONTH, RateLimitedMirror, make_run
from twiki.engine.paths import DataRoot
from twiki.sources.download import DownloadConfig, download_month, read_download_manifest

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20
# The file: 64 MiB at scale 1 (~11 s from three 2 MiB/s mirrors), the default segmented size.
FILE_MIB = 64
SEGMENT_MIB = 1
CASES = {"equal": (2, 2, 2), "unequal": (1, 2, 4)}


def run_case(work: Path, rates_mib: tuple[float, ...], size: int) -> dict:
    """Download a `size`-byte file from mirrors of `rates_mib` MiB/s; the figures."""
    shutil.rmtree(work, ignore_errors=True)
    make_run(work / "mirror", size)
    mirrors = [RateLimitedMirror(work / "mirror", n + 1, r * MiB)
               for n, r in enumerate(rates_mib)]
    config = DownloadConfig(segment_bytes=SEGMENT_MIB * MiB,
                            segmented_min_bytes=min(size, DownloadConfig.segmented_min_bytes))
    try:
        t0 = time.perf_counter()
        folder = download_month(MONTH, mirrors=[m.url for m in mirrors],
                                data_root=DataRoot(work / "data"), config=config)
        wall = time.perf_counter() - t0
    finally:
        for m in mirrors:
            m.close()
    manifest = read_download_manifest(folder)
    seconds = manifest["timings"]["download_s"]   # the transfer, after the run is resolved
    fetched = sum(m.sent for m in mirrors)  # with the endgame's second copies
    rate = size / seconds / MiB             # the file's bytes: what the download is for
    return {
        "mirror_rates_mib_s": list(rates_mib),
        "sum_of_rates_mib_s": sum(rates_mib),
        "aggregate_mib_s": round(rate, 2),
        "aggregate_vs_sum": round(rate / sum(rates_mib), 3),
        "shares": [round(m.sent / fetched, 3) for m in mirrors],
        "rate_shares": [round(r / sum(rates_mib), 3) for r in rates_mib],
        "fetched_vs_size": round(fetched / size, 3),
        "download_s": seconds, "wall_s": round(wall, 2),
        "verified": all(f["verified_with"] for f in manifest["files"]),
    }


def bench_download(work: Path, scale: float = 1.0) -> dict:
    """The figures of both cases, for `make bench` (benchmarks/bench.py)."""
    size = max(8, round(FILE_MIB * scale)) * MiB
    cases = {name: run_case(work / name, rates, size) for name, rates in CASES.items()}
    return {
        "input": f"one {size // MiB} MiB file, {SEGMENT_MIB} MiB segments, 3 loopback mirrors",
        "aggregate_vs_sum_of_mirror_rates": cases["equal"]["aggregate_vs_sum"],
        "aggregate_mib_s": cases["equal"]["aggregate_mib_s"],
        "unequal_aggregate_vs_sum": cases["unequal"]["aggregate_vs_sum"],
        "unequal_shares_vs_rate_shares": [cases["unequal"]["shares"],
                                          cases["unequal"]["rate_shares"]],
        "runs": cases,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="file size factor (default 1)")
    ap.add_argument("--out", type=Path, default=REPO / "data" / "bench")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    figures = bench_download(args.out / "work" / "download", args.scale)
    (args.out / "download.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
