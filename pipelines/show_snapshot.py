"""Print what a month's snapshot holds: counts from its manifest and a few articles.

    python -m pipelines.show_snapshot --month 2016-05 [--data-root data] [--wiki enwiki]
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq

from twiki.engine.artifacts import read_manifest
from twiki.engine.paths import DataRoot


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--month", required=True)
    ap.add_argument("--wiki", default="enwiki")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--articles", type=int, default=3, help="articles to show (default 3)")
    args = ap.parse_args(argv)
    root = DataRoot(args.data_root) if args.data_root else DataRoot.default()
    folder = root.snapshot(args.wiki, args.month)
    manifest = read_manifest(folder)
    if manifest is None:
        print(f"no snapshot at {folder}; run `make demo` or `twiki snapshot` first",
              file=sys.stderr)
        return 1
    c = manifest["report"]["counts"]
    print(f"\n{folder}: {manifest['rows']} articles in {manifest['shard_count']} shards")
    print(f"  pages read {c['pages']}, redirects skipped {c['redirects']}, other namespaces "
          f"{c['other_namespaces']}, failed {c['failed']}")
    print(f"  wikitext {c['wikitext_bytes'] / 1e6:.1f} MB -> clean text "
          f"{c['clean_chars'] / 1e6:.1f} M chars in {c['paragraphs']} paragraphs")
    table = pq.read_table(folder / manifest["shards"][0]["file"])
    for row in table.slice(0, args.articles).to_pylist():
        print(f"\n  [{row['page_id']}] {row['title']} (rev {row['revid']}, {row['timestamp']:%Y-%m-%d})")
        for para in row["paragraphs"][:2]:
            where = " > ".join(para["section"]) or "lead"
            print(textwrap.indent(textwrap.fill(f"({where}) {para['text']}", 96,
                                                max_lines=3), "    "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
