"""Throughput of the wikitext cleaner against the naive mwparserfromhell baseline
(`parse(text).strip_code()` per page), single process, on the same pages, in MB of input
wikitext per CPU second and pages per CPU second. `twiki` is `clean_page`, what the extract
stage runs (links kept, with their spans); `no_links` is `clean_wikitext` (the same text, no
links).

Run from the repo root: `.venv/bin/python -m benchmarks.bench_wikitext [REPEAT]` (reads the real
articles of tests/real_articles.py: the 34 raw-wikitext articles and the articles of the enwiki
bz2; prints one JSON line).
"""

from __future__ import annotations

import json
import sys
import time

import mwparserfromhell

from tests.real_articles import dump_articles, raw_articles
from twiki.text.wikitext import clean_page, clean_wikitext


def _best_seconds(fn, texts: list[str], repeat: int) -> float:
    """CPU seconds of the fastest of `repeat` passes over all texts. CPU time of this process,
    not wall time: both cleaners run single-threaded here, and on a shared machine wall time
    also counts other processes' work (the extract stage reports MB per CPU second too)."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.process_time()
        for t in texts:
            fn(t)
        best = min(best, time.process_time() - t0)
    return best


def bench_clean(texts: list[str], repeat: int = 1) -> dict:
    """MB/s (MB = 10^6 bytes of UTF-8 input wikitext) of twiki's cleaner and of the baseline."""
    input_mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    twiki_s = _best_seconds(clean_page, texts, repeat)
    no_links_s = _best_seconds(clean_wikitext, texts, repeat)
    naive_s = _best_seconds(lambda t: mwparserfromhell.parse(t).strip_code(), texts, repeat)
    links = sum(len(p.links) for t in texts for p in clean_page(t))
    return {
        "input_mb": round(input_mb, 6),
        "pages": len(texts),
        "links": links,
        "twiki_mb_s": round(input_mb / twiki_s, 2),
        "twiki_pages_s": round(len(texts) / twiki_s, 1),
        "no_links_mb_s": round(input_mb / no_links_s, 2),
        "no_links_pages_s": round(len(texts) / no_links_s, 1),
        "naive_mb_s": round(input_mb / naive_s, 2),
        "speedup": round(naive_s / twiki_s, 2),
    }


def sample_texts() -> list[str]:
    """The 34 raw articles plus the bz2's main-namespace, non-redirect pages."""
    return list(raw_articles().values()) + list(dump_articles().values())


if __name__ == "__main__":
    texts = sample_texts()
    print(f"{len(texts)} pages")
    print(json.dumps(bench_clean(texts, repeat=int(sys.argv[1]) if len(sys.argv) > 1 else 3)))
