"""The monthly build: for month B, make sure month A = B - 1 is built, then build B and the
diffset A -> B.

Each step is a stage that is idempotent and resumable, so rerunning the build after a crash
(or the next cron run) continues where it stopped, and finished steps say "up to date".
Later stages (facts, factdiff, align, filter, export) join this chain as they land.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from twiki.diff import DiffResult, diff_months
from twiki.download import download_month
from twiki.errors import NoDumpError, TwikiError
from twiki.executors import Executor, LocalExecutor
from twiki.extract import ExtractConfig, ExtractResult, RunOptions, extract_month
from twiki.paths import DataRoot, parse_month, previous_month

log = logging.getLogger("twiki")


@dataclass
class MonthBuild:
    month: str
    wiki: str
    snapshots: dict[str, ExtractResult] = field(default_factory=dict)
    diff: DiffResult | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        lines = []
        for month, snap in self.snapshots.items():
            m = snap.manifest
            counts = m.get("report", {}).get("counts", {})
            verb = {"current": "up to date", "built": "built", "repaired": "repaired"}[snap.state]
            lines.append(f"{self.wiki} {month}: snapshot {verb} at {snap.path} — "
                         f"{m.get('rows', 0)} articles in {m.get('shard_count')} shards "
                         f"({counts.get('redirects', 0)} redirects skipped, "
                         f"{counts.get('failed', 0)} pages failed)")
        if self.diff is not None:
            lines.append(self.diff.summary())
        lines.append(f"done in {self.seconds:.1f}s")
        return "\n".join(lines)


def build_snapshot(month: str, *, wiki: str, mirrors, data_root: DataRoot, executor: Executor,
                   extract_config: ExtractConfig, options: RunOptions) -> ExtractResult:
    """Download (verified) and extract one month."""
    download_month(month, wiki=wiki, mirrors=mirrors, data_root=data_root)
    return extract_month(month, wiki=wiki, data_root=data_root, executor=executor,
                         config=extract_config, options=options)


def build_month(month: str, *, wiki: str = "enwiki", mirrors: list[str] | None = None,
                data_root: DataRoot | None = None, executor: Executor | None = None,
                extract_config: ExtractConfig = ExtractConfig(),
                options: RunOptions = RunOptions(), with_previous: bool = True) -> MonthBuild:
    """Build `month` and, with `with_previous`, month - 1 and the diffset between them."""
    parse_month(month)
    data_root = data_root or DataRoot.default()
    executor = executor or LocalExecutor(1)
    t0 = time.perf_counter()
    result = MonthBuild(month, wiki)
    common = dict(wiki=wiki, mirrors=mirrors, data_root=data_root, executor=executor,
                  extract_config=extract_config, options=options)
    prev = previous_month(month)
    if with_previous:
        try:
            result.snapshots[prev] = build_snapshot(prev, **common)
        except NoDumpError as e:
            raise TwikiError(f"the diff of {month} needs the previous month {prev}, whose dump "
                             f"cannot be had: {e}. Build {month} alone with --no-diff, or "
                             f"point --mirror at a mirror that still has {prev}") from None
    result.snapshots[month] = build_snapshot(month, **common)
    if with_previous:
        result.diff = diff_months(prev, month, wiki=wiki, data_root=data_root, executor=executor)
    result.seconds = time.perf_counter() - t0
    return result
