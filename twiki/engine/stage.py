"""The stage engine: what every stage run shares, written once.

A stage module holds its algorithm, its schema, its config and its phases; this module holds
the rest of a run:

    data_root, executor = stage_defaults(data_root, executor)
    run = StageRun("factdiff 2016-05 -> 2016-06", build, data_root=..., executor=...)
    if run.current:                          # every artifact's manifest has this key: a no-op
        return run.result(describe, what="factdiff")
    reports = run.map(diff_shard, tasks)     # on the executor, with a progress line
    run.publish(report)                      # companions first, the main artifact last
    return run.result(describe, what="factdiff")

- `StageRun` takes one or more `ArtifactBuild`s (the main one first; it is published last, so
  that its manifest marks the whole stage done) and knows the three ways a call ends: nothing
  to do ("current"), some shards rebuilt into a published artifact ("repaired"), or a build
  ("built").
- `StageRun.work(...)` is the stage's folder of intermediate files under data/work/, named by
  the main artifact's key (plus whatever else shapes the work files, passed as parts), so work
  cut for other inputs or options is never reused; it is removed once the stage publishes.
- `StageRun.map_shards(...)` runs the tasks that write the artifacts' shards and returns every
  shard's report: each is kept in the staging folder beside the shards, so a build resumed
  after a kill reports on the whole artifact, not only on the shards it wrote itself.
- `StageResult` is what every stage call returns: path, state, manifest, summary().
- `FolderBuild` does for a folder of other files (the export's dataset folder, the report) what
  `ArtifactBuild` does for Parquet shards: staging, resume for the same key, a manifest with
  every file's sha256 written last, atomic publish, the same damage check.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from .artifacts import (MANIFEST, PARTIAL_SUFFIX, SHARD_REPORTS, ArtifactBuild, damaged_files,
                        drop_temporaries, file_sha256, listed_files, replace_folder,
                        write_json_atomic)
from .executors import Executor, LocalExecutor
from .paths import DataRoot

log = logging.getLogger("twiki")

T = TypeVar("T")

VERBS = {"current": "was up to date", "built": "built", "repaired": "repaired"}
PLURAL_VERBS = {**VERBS, "current": "were up to date"}


@dataclass
class StageResult:
    """What a stage call did: where its artifact is, "current" (nothing to do), "built" or
    "repaired", and the artifact's manifest (its report, counts, timings, key)."""

    path: Path
    state: str
    manifest: dict = field(default_factory=dict)
    what: str = "artifact"
    describe: Callable[["StageResult"], str] | None = field(default=None, repr=False,
                                                           compare=False)
    parts: dict[str, Path] = field(default_factory=dict)
    """Other folders the call wrote beside `path` (a diffset's removed text, probes'
    rejections), by name."""
    shards_built: int = 0

    @property
    def report(self) -> dict:
        return self.manifest.get("report", {})

    @property
    def counts(self) -> dict:
        return self.report.get("counts", {})

    def summary(self) -> str:
        """One line for a person: what, what happened, where, and the stage's own numbers."""
        verbs = PLURAL_VERBS if self.what.endswith("s") else VERBS
        head = f"{self.what} {verbs[self.state]} at {self.path}"
        return f"{head}: {self.describe(self)}" if self.describe else head


def stage_defaults(data_root: DataRoot | None, executor: Executor | None
                   ) -> tuple[DataRoot, Executor]:
    """A stage called from Python without them runs under ./data (or $TWIKI_DATA) on one
    worker."""
    return data_root or DataRoot.default(), executor or LocalExecutor(1)


class StageRun:
    """One call of a stage over its artifacts: the main `ArtifactBuild` and its companions
    (built from the same tasks, published before it)."""

    def __init__(self, title: str, main: ArtifactBuild, *companions: ArtifactBuild,
                 data_root: DataRoot, executor: Executor) -> None:
        self.title = title
        self.main = main
        self.companions = companions
        self.data_root = data_root
        self.executor = executor
        self.t0 = time.perf_counter()
        self._work: Path | None = None

    @property
    def builds(self) -> tuple[ArtifactBuild, ...]:
        return (*self.companions, self.main)

    @property
    def current(self) -> bool:
        """Every artifact is published with this call's key and intact: nothing to do."""
        return all(b.state == "current" for b in self.builds)

    @property
    def state(self) -> str:
        """How the call ends: "current", "repaired" (only published artifacts lost shards)
        or "built"."""
        if self.current:
            return "current"
        return "built" if any(b.state == "build" for b in self.builds) else "repaired"

    @property
    def key(self) -> str:
        return self.main.key

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def work(self, *parts: str) -> Path:
        """data/work/<parts...>/<key[:16]>/, created: intermediate files of this exact run
        (another config, input or stage version gets another folder)."""
        if self._work is None:
            self._work = self.data_root.work(*parts, self.key[:16])
            self._work.mkdir(parents=True, exist_ok=True)
        return self._work

    def map(self, fn: Callable, tasks: Sequence, *, phase: str = "", unit: str = "shard",
            weights: Sequence[float] | None = None) -> list:
        """Run `fn` over `tasks` on the executor, with a progress line named after the run."""
        desc = f"{self.title}: {phase}" if phase else self.title
        if weights is None:
            return self.executor.run(fn, tasks, desc=desc, unit=unit)
        return self.executor.run(fn, tasks, desc=desc, unit=unit, weights=weights)

    def map_shards(self, fn: Callable[[T], dict], task: Callable[..., T], *,
                   builds: Sequence[ArtifactBuild] = (), phase: str = "",
                   unit: str = "shard") -> list[dict]:
        """Run `fn(task(shard, *outs))` for every shard that `builds` (default: the main
        artifact; they have the same shard count and are written by the same tasks) still need,
        `outs` being each build's shard path, or None where that build needs no new shard.

        Each task's report is kept in the staging folder of the first build being built (not
        repaired), written by the task once its shards are written; a shard without a kept
        report is written again. Returns the report of every shard, in shard order, those of
        shards a killed run finished included, so that a resumed build counts the whole
        artifact. Only repairs: the rebuilt shards' reports (the published report stands)."""
        builds = tuple(builds) or (self.main,)
        shards = range(builds[0].shards)
        keeper = next((b for b in builds if b.state == "build"), None)
        kept = None if keeper is None else keeper.staging / SHARD_REPORTS
        unreported: set[int] = set()
        if kept is not None:
            kept.mkdir(exist_ok=True)
            unreported = {s for s in shards if not (kept / _report_name(s)).exists()}
        # A shard without its report is written again in every artifact being built: a task
        # killed between its shards (one artifact's written, the other's not) reports the
        # rows of all of them only when it writes all of them.
        pending = [set(b.pending_shards()) | (unreported if b.state == "build" else set())
                   for b in builds]
        jobs = [(task(s, *(str(b.shard_path(s)) if s in p else None
                           for b, p in zip(builds, pending))),
                 None if kept is None else str(kept / _report_name(s)))
                for s in sorted(set().union(*pending))]
        reports = self.map(KeepingReport(fn), jobs, phase=phase, unit=unit)
        if kept is None:
            return reports
        return [json.loads((kept / _report_name(s)).read_text()) for s in shards]

    def result(self, describe: Callable[[StageResult], str] | None = None, *, what: str,
               path: Path | None = None, **kw) -> StageResult:
        """The result of this call as it stands (a no-op is logged as one)."""
        if self.current:
            log.info("%s is up to date: nothing to do", self.title)
        return StageResult(path or self.main.final, self.state, self.main.manifest, what,
                           describe, **kw)

    def publish(self, report: dict, timings: dict | None = None, *,
                companion_report: Callable[[ArtifactBuild], dict] | None = None,
                keep_work: bool = False, extra: dict | None = None) -> None:
        """Publish the companions, then the main artifact (its manifest is the stage's done
        mark), each with the report and the timings (total_s and workers added), then drop
        the work folder unless asked to keep it."""
        timings = {"total_s": round(self.seconds(), 3), "workers": self.executor.workers,
                   **(timings or {})}
        for b in self.companions:
            b.publish(report=companion_report(b) if companion_report else report,
                      timings=timings)
        self.main.publish(report=report, timings=timings, extra=extra)
        if self._work is not None and not keep_work:
            self.data_root.remove_work(self._work)


class KeepingReport:
    """What `StageRun.map_shards` hands the executor: `fn`, run on (task, where its report is
    kept or None) where the task runs; the report is written (atomically) after the task's
    shards. Named as `fn`, so that logs and progress still name the stage's function."""

    def __init__(self, fn: Callable[[T], dict]) -> None:
        self.fn = fn
        self.__name__ = fn.__name__

    def __call__(self, job: tuple[T, str | None]) -> dict:
        task, kept = job
        report = self.fn(task)
        if kept is not None:
            write_json_atomic(Path(kept), report)
        return report


def _report_name(shard: int) -> str:
    return f"part-{shard:05d}.json"


class FolderBuild:
    """A folder of files of any kind (an export's configs, card and task files; a report's
    Markdown and plots) published whole, as an `ArtifactBuild` publishes shards: made in
    <name>.partial/, `manifest` (a JSON file of the folder) written last with the key and every
    other file's size and sha256, then moved into place.

    "current" when the published manifest has this key and every file it lists is intact (the
    cheap check of `damaged_files`); else "build": a missing or damaged file rebuilds the
    folder. With `resume`, a staging folder that a killed run left for the same key is kept
    (the caller skips its finished files); without, or for another key, it is started
    afresh."""

    def __init__(self, final: Path, key: str, *, manifest: str = MANIFEST,
                 resume: bool = True) -> None:
        self.final, self.key, self.manifest_name = final, key, manifest
        self.staging = final.with_name(final.name + PARTIAL_SUFFIX)
        self.manifest = _read_json(final / manifest)
        if (self.manifest is not None and self.manifest.get("key") == key
                and self._intact()):
            self.state = "current"
            return
        self.state = "build"
        marker = self.staging / "_key"
        same_key = resume and marker.exists() and marker.read_text().strip() == key
        if self.staging.exists() and not same_key:
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True, exist_ok=True)
        if resume and not same_key:
            marker.write_text(key + "\n")
        for folder in [self.staging, *(p for p in self.staging.iterdir() if p.is_dir())]:
            drop_temporaries(folder)

    def _intact(self) -> bool:
        """Every file the published manifest lists is intact; each one that is not is logged."""
        files = listed_files(self.manifest)
        if files is None:
            return False
        damaged = damaged_files(self.final, files, manifest=self.manifest_name)
        for entry, why in damaged:
            log.warning("%s %s: rebuilding %s", self.final / entry["file"], why, self.final)
        return not damaged

    def publish(self, fields: dict) -> dict:
        """Write the manifest (`fields`, the key and the list of files), last, and move the
        folder into place."""
        (self.staging / "_key").unlink(missing_ok=True)
        files = [{"file": p.relative_to(self.staging).as_posix(), "bytes": p.stat().st_size,
                  "sha256": file_sha256(p)}
                 for p in sorted(self.staging.rglob("*"))
                 if p.is_file() and p != self.staging / self.manifest_name]
        manifest = {**fields, "key": self.key, "files": files}
        write_json_atomic(self.staging / self.manifest_name, manifest)
        replace_folder(self.staging, self.final)
        self.manifest = manifest
        return manifest


def _read_json(path: Path) -> dict | None:
    """A published manifest, or None when there is none or it is unreadable (the folder is
    then rebuilt whole)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
