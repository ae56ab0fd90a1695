"""The monthly build: for month B, make sure month A = B - 1 is built, then build B, the
diffset A -> B, both months' Wikidata facts, the fact diff A -> B, the probes, the month's
dataset export (data/export/<B>/) and its report (data/reports/<B>/).

Each step is a stage that is idempotent and resumable, so rerunning the build after a crash
(or the next cron run) continues where it stopped, and finished steps say "up to date".
Every stage's settings come from one BuildConfig (twiki/config.py: `--config`, `--set`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from twiki.config import BuildConfig
from twiki.engine.artifacts import read_manifest
from twiki.engine.executors import Executor, LocalExecutor
from twiki.engine.paths import DataRoot, parse_month, previous_month
from twiki.engine.stage import StageResult
from twiki.errors import NoDumpError, TwikiError
from twiki.sources.download import (download_month, download_wikidata, find_downloaded,
                                   read_download_manifest)
from twiki.sources.pageprops import download_page_props, snapshot_page_props
from twiki.stages.align import align_month_pair
from twiki.stages.diff import diff_months
from twiki.stages.export import export_month
from twiki.stages.extract import extract_month, prefetch_map
from twiki.stages.factdiff import CATEGORIES, diff_facts
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
    overlap: dict = field(default_factory=dict)
    """What ran while the downloads went on (_Overlap.figures): chunks read ahead, when the
    last download landed, the processing after it, and the build's timeline."""

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
                f"{k} {c.get(k, 0)}" for k in CATEGORIES if c.get(k) or k == "unchanged"))
        if self.aligned is not None:
            lines.append(self.aligned.summary())
        if self.probes is not None:
            lines.append(self.probes.summary())
        if self.export is not None:
            lines.append(self.export.summary())
        if self.report is not None:
            lines.append(self.report.summary())
        if self.overlap.get("last_download_s"):
            ahead = sum(self.overlap["read_ahead_chunks"].values())
            lines.append(f"downloads done at {self.overlap['last_download_s']:.1f}s, "
                         f"{ahead} extract chunks read while they went on; "
                         f"{self.overlap['after_download_s']:.1f}s of processing after them")
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
    the snapshot run's page_props table when it was downloaded, else by sitelink titles,
    following the month's redirects when extract wrote them), then the snapshot's links
    resolved to items (data/facts/<M>/links/) when the snapshot keeps its links."""
    from twiki.stages.links import build_links, snapshot_has_links
    facts = build_facts(month, dump=dump, wiki=wiki, data_root=data_root, executor=executor,
                        config=config.facts, options=config.facts_run)
    snapshot = data_root.snapshot(wiki, month)
    if read_manifest(snapshot) is None:
        log.info("no %s snapshot for %s at %s: page_id <-> QID mapping not built", wiki,
                 month, snapshot)
        return facts, None
    redirects = data_root.redirects(wiki, month)
    mapping = build_mapping(month, wiki=wiki, data_root=data_root, executor=executor,
                            redirects=redirects if read_manifest(redirects) else None,
                            page_props=snapshot_page_props(data_root, wiki, month))
    if snapshot_has_links(snapshot):
        log.info("%s", build_links(month, wiki=wiki, data_root=data_root,
                                   executor=executor).summary())
    else:
        log.info("the %s snapshot for %s has no links (an older extract): links not built",
                 wiki, month)
    return facts, mapping


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
    without, by sitelink titles). Every stage takes its settings from `config`.

    Processing overlaps the download (issue 18): every file is fetched by one background
    thread, in the order of _download_jobs, while this thread runs each stage as soon as its
    inputs have landed (see _Overlap), on `executor`. Extract reads a multistream part's
    chunks as soon as that part is verified (extract.prefetch_map), facts start once their
    dump is verified. The artifacts are byte for byte those of a build after a complete
    download: each stage still runs whole, finding the work done ahead of it finished."""
    parse_month(month)
    data_root = data_root or DataRoot.default()
    executor = executor or LocalExecutor(1)
    t0 = time.perf_counter()
    result = MonthBuild(month, wiki)
    prev = previous_month(month)
    months = [prev, month] if with_previous else [month]
    overlap = _Overlap(month, months, wiki=wiki, mirrors=mirrors, data_root=data_root,
                       executor=executor, config=config, with_previous=with_previous,
                       with_facts=with_facts, page_props=page_props, t0=t0)
    overlap.run(result)
    result.seconds = time.perf_counter() - t0
    result.overlap = overlap.figures(result.seconds)
    return result


def _download_jobs(months: list[str], with_facts: bool, page_props: bool
                   ) -> list[tuple[str, str]]:
    """The downloads of a build, in the order they are fetched (one after another, each with
    its own files in parallel, so the per-host connection caps hold for the whole build):
    the first month's enwiki run (and its page_props table), then the Wikidata dumps, then
    the other month's enwiki run. The last file to land decides what cannot overlap: an
    enwiki part leaves the rest of extract (its last part's chunks, the cleaning) and the
    stages after it, where a Wikidata dump, one file that facts reads only once it is whole,
    would leave all of facts. (A one-month build ends with its Wikidata dump: its enwiki run
    comes first so that extract's work starts first, as it always has.)"""
    def enwiki(m: str) -> list[tuple[str, str]]:
        return [("enwiki", m)] + ([("page_props", m)] if with_facts and page_props else [])

    wikidata = [("wikidata", m) for m in months] if with_facts else []
    return enwiki(months[0]) + wikidata + [j for m in months[1:] for j in enwiki(m)]


class _Overlap:
    """A monthly build whose stages run as their inputs land.

    The downloads run in one daemon thread (`_download`), which reports on a queue: a job's
    run resolved (every file's published name, size, checksums), each file verified, each job
    done, the thread's failure or end. This thread takes the reports and runs, one at a time
    on the executor, the first stage whose inputs are there (`_next`), in the order of
    `_stages`; with nothing to run it waits for the next report. Stages use the executor
    only from this thread, and the download never waits for a stage (its hooks only put on
    the queue), so a pool of any size, one worker included, cannot deadlock with it.

    A failure on either side stops the build with that error: a download's failure is raised
    here once the stage under way ends; a stage's failure sets the downloads' cancel event
    (they stop at their next chunk, keeping their bytes for the resume). Every stage resumes
    (work files with done-markers, atomic publish), so a killed build rerun loses nothing."""

    def __init__(self, month: str, months: list[str], *, wiki: str, mirrors,
                 data_root: DataRoot, executor: Executor, config: BuildConfig,
                 with_previous: bool, with_facts: bool, page_props: bool, t0: float):
        self.month, self.months, self.wiki, self.mirrors = month, months, wiki, mirrors
        self.data_root, self.executor, self.config = data_root, executor, config
        self.with_previous, self.with_facts = with_previous, with_facts
        self.t0 = t0
        self.jobs = _download_jobs(months, with_facts, page_props)
        self.events: queue.Queue = queue.Queue()
        self.cancel = threading.Event()
        self.landed: set[tuple[str, str]] = set()
        self.runs: dict[str, tuple[str, list[dict]]] = {}   # month -> (run date, files)
        self.verified: dict[str, dict[str, dict]] = {m: {} for m in months}
        self.read_ahead: dict[str, int] = {m: 0 for m in months}   # chunks read early
        self.tried: dict[str, int] = {m: -1 for m in months}  # files verified at last try
        self.done: set[str] = set()
        self.downloads_over = False
        self.timeline: list[tuple[float, str]] = []
        self.last_landed = 0.0
        self.snapshots: dict[str, StageResult] = {}
        self.facts: dict[str, tuple[StageResult, StageResult | None]] = {}

    # -- the downloads (background thread)

    def _download(self) -> None:
        try:
            for job in self.jobs:
                if self.cancel.is_set():
                    return
                self._fetch(*job)
                self._tell("landed", job)
        except BaseException as e:   # handed to the build's thread, raised there
            self._tell("failed", e)
        else:
            self._tell("over", None)

    def _tell(self, kind: str, what) -> None:
        """Report to the build's thread, with the time it happened."""
        self.events.put((kind, what, self._now()))

    def _fetch(self, kind: str, m: str) -> None:
        common = dict(mirrors=self.mirrors, data_root=self.data_root,
                      config=self.config.download)
        try:
            if kind == "enwiki":
                download_month(
                    m, wiki=self.wiki, cancel=self.cancel,
                    on_resolved=lambda run, _: self._tell("resolved", (m, run.run_date, run.files)),
                    on_verified=lambda path, record: self._tell("verified", (m, record)),
                    **common)
            elif kind == "wikidata":
                download_wikidata(m, cancel=self.cancel, **common)
            else:
                raw = find_downloaded(self.data_root, self.wiki, m)
                download_page_props(m, wiki=self.wiki, run=read_download_manifest(raw)["run"],
                                    **common)
        except NoDumpError as e:
            if m == self.month or not self.with_previous:
                raise
            raise TwikiError(f"the diff of {self.month} needs the previous month {m}, whose "
                             f"dump cannot be had: {e}. Build {self.month} alone with "
                             f"--no-diff, or point --mirror at a mirror that still has "
                             f"{m}") from None

    # -- the stages (the build's thread)

    def run(self, result: MonthBuild) -> None:
        thread = threading.Thread(target=self._download, name="twiki-downloads", daemon=True)
        thread.start()
        try:
            while True:
                self._take(block=False)
                stage = self._next()
                if stage is not None:
                    name, call = stage
                    began = self._now()
                    call(result)
                    if not name.startswith("read ahead"):
                        self.done.add(name)
                        self._note(f"{name} ({self._now() - began:.1f}s)")
                    continue
                left = {name for name, _, _ in self._stages()} - self.done
                if not left:
                    break
                if self.downloads_over:  # nothing to run and nothing to come: a bug here
                    raise RuntimeError(f"monthly build {self.month}: stages {sorted(left)} "
                                       f"wait for inputs that no download brings")
                self._take(block=True)
        finally:
            self.cancel.set()    # a no-op once the downloads are over
            thread.join(timeout=10)
        for m in self.months:    # the summary lists months in order
            if m in self.snapshots:
                result.snapshots[m] = self.snapshots[m]
            if m in self.facts:
                result.facts[m], result.mappings[m] = self.facts[m]

    def _take(self, block: bool) -> None:
        """Take every report waiting (with `block`, wait for one first)."""
        while True:
            try:
                kind, what, when = (self.events.get(timeout=0.5) if block
                                    else self.events.get_nowait())
            except queue.Empty:
                if block:
                    continue
                return
            block = False
            if kind == "failed":
                raise what
            if kind == "over":
                self.downloads_over = True
            elif kind == "landed":
                self.landed.add(what)
                self.last_landed = when
                self._note(f"downloaded {what[0]} {what[1]}", when)
            elif kind == "resolved":
                m, run, files = what
                self.runs[m] = (run, files)
            elif kind == "verified":
                m, record = what
                self.verified[m][record["name"]] = record
                self._note(f"verified {record['name']}", when)

    def _stages(self) -> list[tuple[str, bool, Callable]]:
        """(name, inputs there, call) of every stage of the build, in the order they are
        preferred when several can run."""
        ms, cfg, common = self.months, self.config, dict(
            wiki=self.wiki, data_root=self.data_root, executor=self.executor)
        stages = []
        for i, m in enumerate(ms):
            earlier = all(f"extract {p}" in self.done for p in ms[:i])
            got = ("enwiki", m) in self.landed
            stages.append((f"extract {m}", got and earlier,
                           lambda r, m=m: self._extract(m)))
        if self.with_facts:
            for m in ms:
                stages.append((f"facts {m}", ("wikidata", m) in self.landed,
                               lambda r, m=m: build_facts(
                                   m, dump=None, config=cfg.facts, options=cfg.facts_run,
                                   **common)))
        if self.with_previous:
            prev, month = ms
            stages.append(("diff", {f"extract {prev}", f"extract {month}"} <= self.done,
                           lambda r: setattr(r, "diff", diff_months(
                               prev, month, config=cfg.diff, **common))))
        if self.with_facts:
            for m in ms:
                stages.append((f"facts and mapping {m}",
                               {f"extract {m}", f"facts {m}"} <= self.done
                               and all(j in self.landed for j in self.jobs if j[1] == m),
                               lambda r, m=m: self.facts.__setitem__(m, facts_and_mapping(
                                   m, config=cfg, **common))))
            if self.with_previous:
                prev, month = ms
                stages.append(("factdiff", {f"facts and mapping {m}" for m in ms} <= self.done,
                               lambda r: setattr(r, "factdiff", diff_facts(
                                   prev, month, data_root=self.data_root,
                                   executor=self.executor))))
                stages.append(("probes", {"factdiff", "diff"} <= self.done,
                               lambda r: self._probes(r, prev, month)))
                stages.append(("export", "probes" in self.done,
                               lambda r: setattr(r, "export", export_month(
                                   month, month_a=prev, config=cfg.export, **common))))
        if self.with_previous:
            prev, month = ms
            before = "export" if self.with_facts else "diff"
            stages.append(("report", before in self.done,
                           lambda r: setattr(r, "report", write_report(
                               month, month_a=prev, wiki=self.wiki,
                               data_root=self.data_root))))
        return stages

    def _next(self) -> tuple[str, Callable] | None:
        """The stage to run now: an extract whose run has landed, else reading ahead in a
        run whose files are landing (once more after each file verified; never "done", it
        only saves extract work), else the first other stage whose inputs are there."""
        stages = [s for s in self._stages() if s[1] and s[0] not in self.done]
        for name, _, call in stages:
            if name.startswith("extract "):
                return name, call
        for i, m in enumerate(self.months):
            if (("enwiki", m) not in self.landed and m in self.runs
                    and len(self.verified[m]) > self.tried[m]
                    and all(f"extract {p}" in self.done for p in self.months[:i])):
                return f"read ahead {m}", lambda r, m=m: self._read_ahead(m)
        return (stages[0][0], stages[0][2]) if stages else None

    def _extract(self, m: str) -> None:
        self._read_ahead(m, final=True)
        self.snapshots[m] = extract_month(m, wiki=self.wiki, data_root=self.data_root,
                                           executor=self.executor, config=self.config.extract,
                                           options=self.config.extract_run)

    def _read_ahead(self, m: str, final: bool = False) -> None:
        """extract.prefetch_map on the parts of month `m` verified so far; with `final` (the
        job has landed), from its download manifest, which moves what was read under the
        published checksums into the folder extract_month uses."""
        if final:
            raw = find_downloaded(self.data_root, self.wiki, m)
            manifest = read_download_manifest(raw)
            run, files = manifest["run"], manifest["files"]
            verified = {f["name"]: f for f in files}
        else:
            (run, files), verified = self.runs[m], dict(self.verified[m])
            self.tried[m] = len(verified)
        got = prefetch_map(m, wiki=self.wiki, run=run, files=files, verified=verified,
                           data_root=self.data_root, executor=self.executor,
                           config=self.config.extract, options=self.config.extract_run)
        if not final:
            self.read_ahead[m] += got["chunks"]
            if got["chunks"]:
                self._note(f"read {got['chunks']} chunks of {m} ahead")
                log.info("extract %s %s: %d chunks read while the download goes on",
                         self.wiki, m, got["chunks"])

    def _probes(self, result: MonthBuild, prev: str, month: str) -> None:
        result.aligned, result.probes = build_probes(
            prev, month, wiki=self.wiki, data_root=self.data_root, executor=self.executor,
            config=self.config)

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def _note(self, what: str, when: float | None = None) -> None:
        self.timeline.append((round(self._now() if when is None else when, 3), what))

    def figures(self, seconds: float) -> dict:
        """What overlapped: chunks read before their run's download ended, when the last
        download landed, and the processing after it (what did not overlap)."""
        return {"read_ahead_chunks": dict(self.read_ahead),
                "last_download_s": round(self.last_landed, 3),
                "after_download_s": round(max(0.0, seconds - self.last_landed), 3),
                "timeline": sorted(self.timeline)}
