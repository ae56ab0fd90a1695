"""training text: a diffset or a whole snapshot -> plain training documents {page_id, title, text}.

Reads data/diffsets/<wiki>/<A>_<B>/ (the diff stage's artifact) or data/snapshots/<wiki>/<M>/
(the extract stage's) and streams it as documents (`iter_documents`: what the LM side and the
dataset export read), or writes them as an artifact of their own (`export_training_text`:
data/training/<wiki>/<name>/ from `twiki training-text`), with the source's shard count.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ..engine.artifacts import (ROW_GROUP_ROWS, ArtifactBuild, ShardWriter, iter_row_groups,
                               require_artifact, shard_name)
from ..engine.executors import Executor, LocalExecutor
from ..errors import ConfigError

log = logging.getLogger("twiki")

# Bump when the documents change: exports made before are rebuilt.
STAGE_VERSION = 1
STAGE = "training-text"
# The stage whose artifact each view reads.
VIEWS = {"diffset": "diff", "snapshot": "extract"}

# Training documents: one per article (or per diff chunk).
DOCUMENT_SCHEMA = pa.schema([
    pa.field("page_id", pa.int64(), nullable=False),
    pa.field("title", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
])


def iter_documents(folder: Path, view: str = "diffset", unit: str = "article",
                   shards: Sequence[int] | None = None) -> Iterator[dict]:
    """Yield {page_id, title, text} documents from a diffset or a snapshot, shard by shard,
    in page_id order, holding one row group at a time.

    view "diffset": unit "article" joins an article's diff rows with blank lines; unit "chunk"
    gives every row (an inserted paragraph, a run of changed sentences, a paragraph of a new
    article) as its own document. view "snapshot": one document per article, its paragraphs
    joined with blank lines (unit must be "article"). Articles without text are skipped.
    """
    manifest = _check_view(folder, view, unit)
    for s in range(manifest["shard_count"]) if shards is None else shards:
        yield from _shard_documents(folder, s, view, unit)


def _check_view(folder: Path, view: str, unit: str) -> dict:
    if view not in VIEWS:
        raise ConfigError(f"view must be one of {sorted(VIEWS)}, not {view!r}")
    if unit not in ("article", "chunk") or (view == "snapshot" and unit != "article"):
        raise ConfigError(f"unit {unit!r} does not apply to a {view}: use 'article'"
                          + (" or 'chunk'" if view == "diffset" else ""))
    command = "twiki diff" if view == "diffset" else "twiki snapshot"
    manifest = require_artifact(Path(folder), view, f"build it first (`{command}`)")
    if manifest.get("stage") != VIEWS[view]:
        raise ConfigError(f"{folder} holds a {manifest.get('stage')!r} artifact, not a {view}")
    return manifest


def _shard_documents(folder: Path, shard: int, view: str, unit: str) -> Iterator[dict]:
    path = Path(folder) / shard_name(shard)
    if view == "snapshot":
        for batch in iter_row_groups(path, ["page_id", "title", "paragraphs"]):
            d = batch.to_pydict()
            for pid, title, paras in zip(d["page_id"], d["title"], d["paragraphs"]):
                text = "\n\n".join(p["text"] for p in paras or ())
                if text:
                    yield {"page_id": pid, "title": title, "text": text}
        return
    current: dict | None = None
    parts: list[str] = []
    for batch in iter_row_groups(path, ["page_id", "title", "text"]):
        d = batch.to_pydict()
        for pid, title, text in zip(d["page_id"], d["title"], d["text"]):
            if unit == "chunk":
                yield {"page_id": pid, "title": title, "text": text}
                continue
            if current is not None and current["page_id"] != pid:
                yield {**current, "text": "\n\n".join(parts)}
                current = None
            if current is None:
                current, parts = {"page_id": pid, "title": title}, []
            parts.append(text)
    if current is not None:
        yield {**current, "text": "\n\n".join(parts)}


@dataclass(frozen=True)
class ExportTask:
    source: str
    shard: int
    view: str
    unit: str
    out: str


def export_shard(task: ExportTask) -> int:
    rows = 0
    with ShardWriter(Path(task.out), DOCUMENT_SCHEMA) as w:
        buf: dict[str, list] = {"page_id": [], "title": [], "text": []}
        for doc in _shard_documents(Path(task.source), task.shard, task.view, task.unit):
            for k in buf:
                buf[k].append(doc[k])
            if len(buf["page_id"]) >= ROW_GROUP_ROWS:
                w.write(pa.table(buf, schema=DOCUMENT_SCHEMA))
                rows += len(buf["page_id"])
                buf = {k: [] for k in buf}
        w.write(pa.table(buf, schema=DOCUMENT_SCHEMA))
        rows += len(buf["page_id"])
    return rows


def export_training_text(source: Path, out: Path, *, view: str = "diffset",
                         unit: str = "article", executor: Executor | None = None) -> dict:
    """Write the documents of `iter_documents(source, view, unit)` as a Parquet artifact at
    `out` (page_id, title, text; same shard count as the source). Returns its manifest."""
    manifest = _check_view(Path(source), view, unit)
    executor = executor or LocalExecutor(1)
    build = ArtifactBuild(Path(out), stage=STAGE, stage_version=STAGE_VERSION,
                          inputs={"source": manifest["key"], "stage": manifest["stage"]},
                          config={"view": view, "unit": unit},
                          shards=manifest["shard_count"], schema=DOCUMENT_SCHEMA)
    if build.state == "current":
        log.info("training text %s is up to date: nothing to do", out)
        return build.manifest
    t0 = time.perf_counter()
    tasks = [ExportTask(str(source), s, view, unit, str(build.shard_path(s)))
             for s in build.pending_shards()]
    executor.run(export_shard, tasks, desc=f"export {view} text", unit="shard")
    docs = sum(pq.ParquetFile(build.shard_path(s)).metadata.num_rows
               for s in range(build.shards))
    return build.publish(report={"documents": docs},
                         timings={"total_s": round(time.perf_counter() - t0, 3)})
