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
from collections import OrderedDict
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


# Readers and sidecars stay open across the tasks a worker runs (a reduce task reads a batch
# from every map file: reopening them each time was most of its cost). Plain file reads, not
# memory maps: mapped pages would stay resident and make memory grow with the dump.
_OPEN: "OrderedDict[str, object]" = OrderedDict()
MAX_OPEN = 256   # well under the usual 1024 open files


def cached(path: str, make):
    """`make()` for a work file, kept open; keyed by the file's identity too, so that a worker
    that lives on (Ray, a persistent pool) never reads a stale copy from an earlier run."""
    st = os.stat(path)
    key = f"{path}\0{st.st_mtime_ns}\0{st.st_size}\0{st.st_ino}"
    if key in _OPEN:
        _OPEN.move_to_end(key)
        return _OPEN[key]
    while len(_OPEN) >= MAX_OPEN:
        _OPEN.popitem(last=False)
    _OPEN[key] = value = make()
    return value


def close_cached() -> None:
    """Forget every open work file (a new run in this process may reuse their names)."""
    _OPEN.clear()


def iter_partition(work: Path, sidecars: Sequence[str], kind: str, part: int,
                   keep_open: bool = True) -> Iterator[pa.RecordBatch]:
    """The record batches of one partition of one kind, one at a time, in task order.
    `keep_open`: keep the files open for the next reduce task of this worker (a stage whose
    reduce reads each file once passes False: nothing then holds its deleted work files)."""
    for name in sidecars:
        if keep_open:
            side = cached(str(work / name), lambda: json.loads((work / name).read_text()))
        else:
            side = json.loads((work / name).read_text())
        info = side["files"].get(kind)
        groups = info["index"].get(str(part)) if info else None
        if not groups:
            continue
        path = str(work / info["file"])
        if keep_open:
            reader = cached(path, lambda: pa.ipc.open_file(pa.OSFile(path)))
            yield from (reader.get_batch(i) for i in groups)
        else:
            with pa.ipc.open_file(pa.OSFile(path)) as reader:
                yield from [reader.get_batch(i) for i in groups]


def read_partition(work: Path, sidecars: Sequence[str], kind: str, part: int,
                   schema: pa.Schema, keep_open: bool = True) -> pa.Table:
    """Every row of one partition of one kind, from all tasks' work files, in task order."""
    batches = list(iter_partition(work, sidecars, kind, part, keep_open))
    if not batches:
        return schema.empty_table()
    return pa.Table.from_batches(batches, schema=schema)
