"""The shuffle between a stage's map and reduce phases, written once for every stage.

A map task writes its rows into work files, each an Arrow IPC file with one record batch per
partition per spill, then a JSON done-marker (its sidecar), written last:
`{"files": {kind: {"file", "rows", "index": {partition: [batch ids]}}}, "report": {...}}`.
A task whose sidecar exists is done: a rerun after a crash takes its report and skips it.
A reduce task reads one partition of one kind from every map task's files, in task order.
IPC rather than Parquet: a batch is written and read back without encoding, and thousands of
small batches cost little.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from .artifacts import write_json_atomic


class PartitionedWriter:
    """One work file: `write(table, parts)` adds a batch for each partition present in
    `parts` (the partition of each row); rows keep their order within a partition."""

    def __init__(self, path: Path, schema: pa.Schema, compress: bool = False):
        self.path, self.schema = path, schema
        self.tmp = path.with_name(f".{path.name}.tmp")
        options = pa.ipc.IpcWriteOptions(compression="lz4" if compress else None)
        self.writer = pa.ipc.new_file(self.tmp, schema, options=options)
        self.index: dict[int, list[int]] = {}
        self.batches = 0
        self.rows = 0

    def write(self, table: pa.Table, parts: np.ndarray) -> None:
        if table.num_rows == 0:
            return
        order = np.argsort(parts, kind="stable")
        table = table.take(pa.array(order)).combine_chunks()
        parts = parts[order]
        bounds = np.flatnonzero(np.diff(parts)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(parts)]))
        batch = table.to_batches()[0]
        for a, b in zip(starts.tolist(), ends.tolist()):
            self.writer.write_batch(batch.slice(a, b - a))
            self.index.setdefault(int(parts[a]), []).append(self.batches)
            self.batches += 1
        self.rows += table.num_rows

    def close(self) -> dict:
        """Publish the file; returns its entry for the sidecar's `files`."""
        self.writer.close()
        os.replace(self.tmp, self.path)
        return {"file": self.path.name, "rows": self.rows,
                "index": {str(k): v for k, v in self.index.items()}}


def task_report(sidecar: Path) -> dict | None:
    """The report of a finished map task (its sidecar exists), or None: it must run."""
    return json.loads(sidecar.read_text())["report"] if sidecar.exists() else None


def mark_done(sidecar: Path, files: dict, report: dict) -> dict:
    """Write the task's done-marker, last, atomically; returns the report."""
    write_json_atomic(sidecar, {"files": files, "report": report})
    return report


def iter_partition(work: Path, sidecars: Sequence[str], kind: str, part: int
                   ) -> Iterator[pa.RecordBatch]:
    """The record batches of one partition of one kind, in task order. Each work file is
    opened, read for this partition and closed: no worker holds a file of a run that has been
    published (and its work deleted) open, however long the worker lives."""
    for name in sidecars:
        side = json.loads((work / name).read_text())
        info = side["files"].get(kind)
        groups = info["index"].get(str(part)) if info else None
        if not groups:
            continue
        with pa.ipc.open_file(pa.OSFile(str(work / info["file"]))) as reader:
            batches = [reader.get_batch(i) for i in groups]
        yield from batches


def read_partition(work: Path, sidecars: Sequence[str], kind: str, part: int,
                   schema: pa.Schema) -> pa.Table:
    """Every row of one partition of one kind, from all tasks' work files, in task order."""
    batches = list(iter_partition(work, sidecars, kind, part))
    if not batches:
        return schema.empty_table()
    return pa.Table.from_batches(batches, schema=schema)
