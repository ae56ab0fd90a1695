"""The monthly build: for month B, make sure month A = B - 1 is built, then build B, the
diffset A -> B, both months' Wikidata facts, the fact diff A -> B, the probes, the month's
dataset export (data/export/<B>/) and its report (data/reports/<B>/).

Each step is a stage that is idempotent and resumable, so rerunning the build after a crash
(or the next cron run) continues where it stopped, and finished steps say "up to date".
Every stage's settings come from one BuildConfig (twiki/config.py: `--config`, `--set`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from twiki.config import BuildConfig
from twiki.engine.artifacts import read_manifest
from twiki.engine.executors import Executor, LocalExecutor
from twiki.engine.paths import DataRoot, parse_month, previous_month
from twiki.engine.stage import StageResult
from twiki.errors import NoDumpError, TwikiError
from twiki.sources.download import download_month, download_wikidata
from twiki.sources.pageprops import download_page_props, snapshot_page_props
from twiki.stages.align import align_month_pair
from twiki.stages.diff import diff_months
from twiki.stages.export import export_month
from twiki.stages.extract import extract_month
from twiki.stages.factdiff import diff_facts
from twiki.stages.facts import build_facts
from twiki.stages.mapping import build_mapping
from twiki.stages.probes import filter_probes
from twiki.stages.report import write_report

log = logging.getLogger("twiki")


@dataclass
class MonthBuild:
    month: str
    wiki: str
    snapshots: dict[str, StageResult] = field(default_factory=dict)
    diff: StageResult | None = None
    facts: dict[str, StageResult] = field(default_factory=dict)
    mappings: dict[str, StageResult | None] = field(default_factory=dict)
    factdiff: StageResult | None = None
    aligned: StageResult | None = None
    probes: StageResult | None = None
    export: StageResult | None = None
    report: StageResult | None = None
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
        for month, facts in self.facts.items():
            found = self.mappings.get(month)
            mapping = found.manifest.get("rows") if found else None
            lines.append(f"wikidata {month}: {facts.manifest.get('rows', 0)} facts "
                         f"({'up to date' if facts.state == 'current' else facts.state}); "
                         f"{mapping if mapping is not None else 'no'} pages mapped to items")
        if self.factdiff is not None:
            c = self.factdiff.counts
            lines.append(f"fact diff {self.factdiff.path.name}: " + ", ".join(
                f"{k} {c.get(k, 0)}" for k in ("unchanged", "new", "updated", "removed")))
        if self.aligned is not None:
            lines.append(self.aligned.summary())
        if self.probes is not None:
            lines.append(self.probes.summary())
        if self.export is not None:
            lines.append(self.export.summary())
        if self.report is not None:
            lines.append(self.report.summary())
        lines.append(f"done in {self.seconds:.1f}s")
        return "\n".join(lines)


def build_snapshot(month: str, *, wiki: str, mirrors, data_root: DataRoot, executor: Executor,
                   config: BuildConfig) -> StageResult:
    """Download (verified) and extract one month."""
    download_month(month, wiki=wiki, mirrors=mirrors, data_root=data_root,
                   config=config.download)
    return extract_month(month, wiki=wiki, data_root=data_root, executor=executor,
                         config=config.extract, options=config.extract_run)


def build_probes(month_a: str, month_b: str, *, wiki: str, data_root: DataRoot,
                 executor: Executor, config: BuildConfig) -> tuple[StageResult, StageResult]:
    """Align, then filter: data/probes/<A>_<B>/ (aligned/, then probes/ and rejected/) from
    the fact diff and the diffset A -> B; the two stages' results."""
    aligned = align_month_pair(month_a, month_b, wiki=wiki, data_root=data_root,
                               executor=executor, config=config.align, options=config.align_run)
    probes = filter_probes(month_a, month_b, data_root=data_root, executor=executor,
                           config=config.filter)
    return aligned, probes


def facts_and_mapping(month: str, *, wiki: str, data_root: DataRoot, executor: Executor,
                      config: BuildConfig, dump=None) -> tuple[StageResult, StageResult | None]:
    """The month's facts, then its page <-> item mapping when the month's snapshot exists (by
    the snapshot run's page_props table when it was downloaded, else by sitelink titles)."""
    facts = build_facts(month, dump=dump, wiki=wiki, data_root=data_root, executor=executor,
                        config=config.facts, options=config.facts_run)
    snapshot = data_root.snapshot(wiki, month)
    if read_manifest(snapshot) is None:
        log.info("no %s snapshot for %s at %s: page_id <-> QID mapping not built", wiki,
                 month, snapshot)
        return facts, None
    return facts, build_mapping(month, wiki=wiki, data_root=data_root, executor=executor,
                                page_props=snapshot_page_props(data_root, wiki, month))


def build_month_facts(month: str, *, wiki: str, mirrors, data_root: DataRoot,
                      executor: Executor, config: BuildConfig, page_props: bool = True
                      ) -> tuple[StageResult, StageResult | None]:
    """Download the Wikidata dump nearest the month's enwiki run (and, with `page_props`, the
    run's page_props table when it has one); facts and page mapping."""
    download_wikidata(month, mirrors=mirrors, data_root=data_root, config=config.download)
    snap = read_manifest(data_root.snapshot(wiki, month))
    if page_props and snap is not None:
        download_page_props(month, wiki=wiki, mirrors=mirrors, data_root=data_root,
                            run=snap["inputs"]["run"], config=config.download)
    return facts_and_mapping(month, wiki=wiki, data_root=data_root, executor=executor,
                             config=config)


def build_month(month: str, *, wiki: str = "enwiki", mirrors: list[str] | None = None,
                data_root: DataRoot | None = None, executor: Executor | None = None,
                config: BuildConfig = BuildConfig(), with_previous: bool = True,
                with_facts: bool = True, page_props: bool = True) -> MonthBuild:
    """Build `month` and, with `with_previous`, month - 1 and the diffs between them; with
    `with_facts`, the months' Wikidata facts too (and their diff). With `page_props`, pages
    are mapped to items by each run's page_props table when the run has one (else, and
    without, by sitelink titles). Every stage takes its settings from `config`."""
    parse_month(month)
    data_root = data_root or DataRoot.default()
    executor = executor or LocalExecutor(1)
    t0 = time.perf_counter()
    result = MonthBuild(month, wiki)
    common = dict(wiki=wiki, mirrors=mirrors, data_root=data_root, executor=executor)
    prev = previous_month(month)
    months = [prev, month] if with_previous else [month]
    for m in months:
        try:
            result.snapshots[m] = build_snapshot(m, config=config, **common)
        except NoDumpError as e:
            if m == month:
                raise
            raise TwikiError(f"the diff of {month} needs the previous month {prev}, whose dump "
                             f"cannot be had: {e}. Build {month} alone with --no-diff, or "
                             f"point --mirror at a mirror that still has {prev}") from None
    if with_previous:
        result.diff = diff_months(prev, month, wiki=wiki, data_root=data_root, executor=executor,
                                  config=config.diff)
    if with_facts:
        for m in months:
            result.facts[m], result.mappings[m] = build_month_facts(
                m, config=config, page_props=page_props, **common)
        if with_previous:
            result.factdiff = diff_facts(prev, month, data_root=data_root, executor=executor)
            result.aligned, result.probes = build_probes(
                prev, month, wiki=wiki, data_root=data_root, executor=executor, config=config)
            result.export = export_month(month, month_a=prev, wiki=wiki, data_root=data_root,
                                         executor=executor, config=config.export)
    if with_previous:
        result.report = write_report(month, month_a=prev, wiki=wiki, data_root=data_root)
    result.seconds = time.perf_counter() - t0
    return result
