"""The monthly build: download a month's dumps, then extract its snapshot.

Later stages (diff, facts, align, filter, export) join this chain as they land; each stage is
idempotent, so rerunning the build after a crash resumes where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from twiki.download import download_month
from twiki.executors import Executor, LocalExecutor
from twiki.extract import ExtractConfig, ExtractResult, RunOptions, extract_month
from twiki.paths import DataRoot, parse_month


@dataclass
class MonthBuild:
    month: str
    wiki: str
    raw: object
    snapshot: ExtractResult
    seconds: float

    def summary(self) -> str:
        m = self.snapshot.manifest
        counts = m.get("report", {}).get("counts", {})
        verb = {"current": "was up to date", "built": "built",
                "repaired": "repaired"}[self.snapshot.state]
        return (f"{self.wiki} {self.month}: snapshot {verb} at {self.snapshot.path} — "
                f"{m.get('rows', 0)} articles in {m.get('shard_count')} shards "
                f"({counts.get('redirects', 0)} redirects skipped, "
                f"{counts.get('failed', 0)} pages failed) in {self.seconds:.1f}s")


def build_month(month: str, *, wiki: str = "enwiki", mirrors: list[str] | None = None,
                data_root: DataRoot | None = None, executor: Executor | None = None,
                extract_config: ExtractConfig = ExtractConfig(),
                options: RunOptions = RunOptions()) -> MonthBuild:
    parse_month(month)
    data_root = data_root or DataRoot.default()
    t0 = time.perf_counter()
    raw = download_month(month, wiki=wiki, mirrors=mirrors, data_root=data_root)
    snap = extract_month(month, wiki=wiki, data_root=data_root,
                         executor=executor or LocalExecutor(1), config=extract_config,
                         options=options)
    return MonthBuild(month, wiki, raw, snap, time.perf_counter() - t0)
