"""The shuffle between a stage's map and reduce phases, written once for every stage.

A map task writes its rows into work files, each an Arrow IPC file with one record batch per
partition per spill, then a JSON done-marker (its sidecar), written last:
`{"files": {kind: {"file", "rows", "index": {partition: [batch ids]}}}, "report": {...}}`.
A task whose sidecar exists is done: a rerun after a crash takes its report and skips it.
A reduce task reads one partition of one kind from every map task's files, in task order.
IPC rather than Parquet: a batch is written and read back without encoding, and thousands of
small batches cost little.

The pieces a stage builds its phases from:
- `PartitionedWriter`: one work file, rows by partition.
- `resumable`: a task function that writes work files run at most once: a task named `name`
  in the folder `work` has the done-marker <work>/<name>.json; `markers(tasks)` lists them
  for the next phase.
- `PartitionTask`: a task over one partition of the files those markers list (`read`,
  `batches`).
- `first_per_key`: a partition's rows sorted, each key kept once.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .artifacts import release_memory, write_json_atomic

Task = TypeVar("Task")


class PartitionedWriter:
    """One work file: `write(table, parts)` adds a batch for each partition present in
    `parts` (the partition of each row); rows keep their order within a partition."""

    def __init__(self, path: Path, schema: pa.Schema, compress: bool = False):
        self.path, self.schema = path, schema
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
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


def resumable(run: Callable[[Task], tuple[dict, dict]]) -> Callable[[Task], dict]:
    """A task that writes work files, done at most once. `run(task)` writes them and returns
    (files, report): the files by kind, each entry as `PartitionedWriter.close` returns it.
    The done-marker <task.work>/<task.name>.json, written last and atomically, holds both;
    where it exists the task is done, and running it again returns its report. The memory
    `run` held is released before the marker is written."""

    @functools.wraps(run)
    def once(task: Task) -> dict:
        marker = Path(task.work) / f"{task.name}.json"
        if marker.exists():
            return json.loads(marker.read_text())["report"]
        files, report = run(task)
        release_memory()
        write_json_atomic(marker, {"files": files, "report": report})
        return report

    return once


def markers(tasks: Sequence) -> tuple[str, ...]:
    """The done-markers' file names of `resumable` tasks, in task order: the `sidecars` of the
    next phase."""
    return tuple(f"{t.name}.json" for t in tasks)


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


@dataclass(frozen=True)
class PartitionTask:
    """A task over partition `part` of the work files that the done-markers `sidecars` (in
    the folder `work`, in task order) list."""

    part: int
    work: str
    sidecars: tuple[str, ...]

    def read(self, kind: str, schema: pa.Schema) -> pa.Table:
        """Every row of this partition of `kind`."""
        return read_partition(Path(self.work), self.sidecars, kind, self.part, schema)

    def batches(self, kind: str) -> Iterator[pa.RecordBatch]:
        """The record batches of this partition of `kind`, read a work file at a time (for
        a partition not to be held whole)."""
        return iter_partition(Path(self.work), self.sidecars, kind, self.part)


def first_per_key(table: pa.Table, keys: list[str], order: list[str]) -> pa.Table:
    """Sorted by `keys` then `order`; rows repeating the previous row's keys are dropped (of
    rows with the same keys, the first by `order` is kept)."""
    if table.num_rows < 2:
        return table
    table = table.take(pc.sort_indices(table, [(c, "ascending") for c in keys + order]))
    n = table.num_rows
    same = None
    for k in keys:
        col = table.column(k)
        eq = pc.fill_null(pc.equal(col.slice(1), col.slice(0, n - 1)), False)
        same = eq if same is None else pc.and_(same, eq)
    return table.filter(pa.concat_arrays([pa.array([True]), pc.invert(same).combine_chunks()]))
