"""The artifact layer every stage uses: Parquet shards, `_manifest.json`, atomic publish,
no-op detection, per-shard resume and repair, damage checks (DESIGN.md rules 1-5).

An artifact is a folder of `part-NNNNN.parquet` shards plus `_manifest.json`, written last.
It is built in a sibling `<name>.partial/` folder and renamed into place, so a reader never
sees half an artifact. Its identity is a key: the hash of stage, stage version, inputs and
config. Same key and every shard intact -> nothing to do; a shard missing or damaged -> that
shard rebuilt (and checked against the manifest's sha256); another key -> rebuild.

Damage is checked two ways (`damaged_files`). Every run of a stage does the cheap check: each
file's size, and the sha256 of any file written after its manifest (a change in place after
publishing: a flipped byte, an editor, a copy over it), so a no-op rerun costs a stat per file
however big the month. `verify_artifacts` (`twiki verify`) hashes every file: it also finds
damage that kept the size and the time, such as a disk's bit rot, and removes the damaged files
so that the next run of their stage rebuilds them.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..version import __version__
from ..errors import TwikiError

log = logging.getLogger("twiki")

MANIFEST = "_manifest.json"
PARTIAL_SUFFIX = ".partial"
# In a staging folder: the report of each shard's task, kept until the artifact is published,
# so that a resumed build reports on every shard, those a killed run wrote included
# (StageRun.map_shards).
SHARD_REPORTS = "_reports"
# Parquet writer settings are fixed so that the same rows give the same bytes.
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, write_statistics=True)
# Rows per row group in published shards: small enough to stream, large enough to compress well.
ROW_GROUP_ROWS = 2048


def release_memory() -> None:
    """Hand memory freed by the last task back to the OS: pyarrow's allocator (mimalloc) and
    glibc's malloc both keep freed pages, so without this a long-lived worker's footprint
    grows to the largest task it has seen plus fragmentation."""
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


@contextlib.contextmanager
def cyclic_gc_paused():
    """Pause Python's cycle collector around a loop that turns millions of parsed objects into
    rows. Those objects are freed by reference counting as soon as they are dropped; the
    collector only rescans the rows buffered so far, again and again (a fifth of the facts
    map's time). Code inside must not make reference cycles per item: they would wait for the
    end of the block."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


# splitmix64's finalizer: the increment and the two multipliers.
_GOLD, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK = 0xFFFFFFFFFFFFFFFF


def shard_of(key: int, shards: int) -> int:
    """Stable shard of an integer key (page_id, QID number): a 64-bit mix, then modulo.

    The mix (splitmix64's finalizer) spreads consecutive ids evenly; Python's hash() is not
    used because it is not part of any format we promise to keep.
    """
    z = (key + _GOLD) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return (z ^ (z >> 31)) % shards


def shard_array(keys: np.ndarray, shards: int) -> np.ndarray:
    """shard_of() of every key of an int64 array, in numpy (uint64 arithmetic wraps as the
    masks above do)."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64(_GOLD)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(shards)).astype(np.int64)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def artifact_key(stage: str, stage_version: int, inputs: Any, config: dict) -> str:
    """The identity of an artifact: what it was made from and how."""
    blob = canonical_json({"stage": stage, "stage_version": stage_version,
                           "inputs": inputs, "config": config})
    return hashlib.sha256(blob.encode()).hexdigest()


def file_sha256(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (recorded, not keyed)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def read_manifest(folder: Path) -> dict | None:
    """The manifest of an artifact folder, or None when there is no (finished) artifact."""
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise TwikiError(f"{folder / MANIFEST} is unreadable ({e}); delete {folder} and rerun")


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


class ShardWriter:
    """Streams tables into one Parquet shard in row groups of `row_group_rows` rows, or fewer
    where `row_group_bytes` is set and the rows reach it (each row's size given by
    `row_bytes(table)`); renamed into place only when closed without error, so an existing
    shard file is always complete. A row group is what the writer (and a reader) holds at
    once: a byte bound keeps it small however long the rows are."""

    def __init__(self, path: Path, schema: pa.Schema, row_group_rows: int = ROW_GROUP_ROWS,
                 row_group_bytes: int | None = None,
                 row_bytes: Callable[[pa.Table], np.ndarray] | None = None):
        if (row_group_bytes is None) != (row_bytes is None):
            raise ValueError("row_group_bytes and row_bytes go together")
        self.path = path
        self.schema = schema
        self.row_group_rows = row_group_rows
        self.row_group_bytes = row_group_bytes
        self.row_bytes = row_bytes
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._sizes = np.zeros(0, dtype=np.int64)    # pending rows' sizes (with a byte bound)
        self._tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self._writer = pq.ParquetWriter(self._tmp, schema, **PARQUET_OPTIONS)

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._pending.append(table.cast(self.schema) if table.schema != self.schema else table)
        self._pending_rows += table.num_rows
        if self.row_bytes is not None:
            self._sizes = np.concatenate(
                (self._sizes, np.asarray(self.row_bytes(table), dtype=np.int64)))
        while (n := self._boundary()) is not None:
            self._flush(n)

    def _boundary(self) -> int | None:
        """Rows of the next complete row group among the pending ones, if there is one.
        Boundaries depend only on the rows, never on how callers batched their writes: that
        keeps the bytes identical however the work was split."""
        n = self.row_group_rows if self._pending_rows >= self.row_group_rows else None
        if self.row_group_bytes is not None:
            full = np.flatnonzero(np.cumsum(self._sizes[:self.row_group_rows])
                                  >= self.row_group_bytes)
            if len(full):
                n = int(full[0]) + 1
        return n

    def _flush(self, n: int) -> None:
        table = pa.concat_tables(self._pending)
        head, rest = table.slice(0, n), table.slice(n)
        self._writer.write_table(head, row_group_size=n)
        self.rows += head.num_rows
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        self._sizes = self._sizes[n:]

    def close(self) -> None:
        if self._pending_rows:
            self._flush(self._pending_rows)
        self._writer.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass
class ArtifactBuild:
    """One artifact being made: decides what is left to do and publishes atomically.

    Usage (what every stage does):
        build = ArtifactBuild(final, stage="extract", stage_version=1, inputs=..., config=...,
                              shards=n)
        if build.state == "current": return  (a no-op, said so by the caller)
        for i in build.pending_shards(): write build.shard_path(i) (via ShardWriter)
        build.publish(report=..., timings=...)
    """

    final: Path
    stage: str
    stage_version: int
    inputs: Any
    config: dict
    shards: int
    schema: pa.Schema | None = None
    key: str = field(init=False)
    state: str = field(init=False)  # "current" | "repair" | "build"
    missing: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.key = artifact_key(self.stage, self.stage_version, self.inputs, self.config)
        self.staging = self.final.with_name(self.final.name + PARTIAL_SUFFIX)
        manifest = read_manifest(self.final)
        if manifest is not None and manifest.get("key") == self.key:
            damaged = damaged_files(self.final, manifest["shards"])
            for entry, why in damaged:
                log.warning("%s %s: rebuilding it", self.final / entry["file"], why)
            self.missing = [entry["index"] for entry, _ in damaged]
            self.state = "repair" if self.missing else "current"
            self.manifest = manifest
        else:
            self.state = "build"
            self.manifest = manifest
            self._prepare_staging()
        if self.state == "repair":
            drop_temporaries(self.final)

    def _prepare_staging(self) -> None:
        # A staging folder from a killed run with the same key is resumed shard by shard;
        # one made for other inputs or config is thrown away.
        marker = self.staging / "_key"
        if self.staging.exists():
            if not marker.exists() or marker.read_text().strip() != self.key:
                shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            marker.write_text(self.key + "\n")
        drop_temporaries(self.staging)
        drop_temporaries(self.staging / SHARD_REPORTS)

    @property
    def folder(self) -> Path:
        """Where shards are written now: the staging folder, or the final one when repairing."""
        return self.final if self.state == "repair" else self.staging

    def shard_path(self, index: int) -> Path:
        return self.folder / shard_name(index)

    def pending_shards(self) -> list[int]:
        if self.state == "current":
            return []
        if self.state == "repair":
            return list(self.missing)
        return [i for i in range(self.shards) if not self.shard_path(i).exists()]

    def publish(self, report: dict | None = None, timings: dict | None = None,
                extra: dict | None = None) -> dict:
        """Write the manifest (last) and move the artifact into place."""
        if self.state == "current":
            return self.manifest
        if self.state == "repair":
            for s in self.manifest["shards"]:
                path = self.final / s["file"]
                if s["index"] in self.missing and file_sha256(path) != s["sha256"]:
                    raise TwikiError(
                        f"rebuilt {path} differs from the shard its manifest records; "
                        f"delete {self.final} and rerun to rebuild it whole"
                    )
            mark_checked(self.final / MANIFEST, self.manifest["shards"])
            return self.manifest
        shards = []
        total = 0
        for i in range(self.shards):
            path = self.staging / shard_name(i)
            if not path.exists():
                raise TwikiError(f"cannot publish {self.final}: shard {path.name} was not built")
            rows = pq.ParquetFile(path).metadata.num_rows
            total += rows
            shards.append({"index": i, "file": path.name, "rows": rows,
                           "bytes": path.stat().st_size, "sha256": file_sha256(path)})
        manifest = {
            "stage": self.stage,
            "stage_version": self.stage_version,
            "key": self.key,
            "code_version": code_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "inputs": self.inputs,
            "config": self.config,
            "schema": self.schema.to_string(show_schema_metadata=False) if self.schema else None,
            "shard_count": self.shards,
            "shards": shards,
            "rows": total,
            "timings": timings or {},
            "report": report or {},
            **(extra or {}),
        }
        (self.staging / "_key").unlink(missing_ok=True)
        shutil.rmtree(self.staging / SHARD_REPORTS, ignore_errors=True)
        write_json_atomic(self.staging / MANIFEST, manifest)
        replace_folder(self.staging, self.final)
        self.manifest = manifest
        return manifest


def drop_temporaries(folder: Path) -> None:
    """Remove files a killed writer left half-written (`.<name>.tmp-<pid>`), so that they
    are never published with an artifact."""
    for tmp in folder.glob(".*.tmp-*"):
        tmp.unlink(missing_ok=True)


def damaged_files(folder: Path, entries: list[dict], *, manifest: str = MANIFEST,
                  full: bool = False) -> list[tuple[dict, str]]:
    """The entries of a published folder's manifest `folder/manifest` (each a `file` with its
    `bytes` and `sha256`) whose file is missing or damaged, each with what is wrong, in a few
    words.

    By default (every run of a stage) the cheap check: the size, and the sha256 of the files
    written after the manifest, which is written last; the others cost a stat each. With `full`
    every file is hashed (`twiki verify`). When the files hashed are all intact the manifest is
    marked checked (`mark_checked`), so the next cheap check hashes nothing again."""
    reference = (folder / manifest).stat().st_mtime_ns
    damaged: list[tuple[dict, str]] = []
    hashed = False
    for e in entries:
        path = folder / e["file"]
        try:
            st = path.stat()
        except FileNotFoundError:
            damaged.append((e, "is missing"))
            continue
        if st.st_size != e["bytes"]:
            damaged.append((e, f"has {st.st_size} bytes where its manifest says {e['bytes']}"))
        elif full or st.st_mtime_ns > reference:
            hashed = True
            if file_sha256(path) != e["sha256"]:
                damaged.append((e, "differs from the sha256 its manifest records (changed "
                                   "after it was published)"))
    if hashed and not damaged:
        mark_checked(folder / manifest, entries)
    return damaged


def mark_checked(manifest: Path, entries: list[dict]) -> None:
    """Move the manifest's time past that of every file it lists, once they were found (or
    rebuilt) intact: the cheap check of `damaged_files` then hashes none of them until one is
    written again. Best effort: on a read-only data root the files are only hashed again."""
    folder = manifest.parent
    try:
        newest = max((folder / e["file"]).stat().st_mtime_ns for e in entries)
        now = max(time.time_ns(), newest + 1)
        os.utime(manifest, ns=(now, now))
    except (OSError, ValueError):   # read-only, or no entries
        pass


@dataclass
class Verified:
    """What `verify_artifacts` checked, and the damaged files it removed: (path, what is
    wrong, the stage that built it)."""

    artifacts: int = 0
    files: int = 0
    bytes: int = 0
    damaged: list[tuple[Path, str, str]] = field(default_factory=list)


def verify_artifacts(root: Path) -> Verified:
    """Hash every file that a published manifest under `root` lists (an artifact's shards, a
    dataset or report folder's files) and compare it with the manifest's sha256. Damaged files
    are removed: the next run of the stage that built them finds them missing and rebuilds them
    (byte-identical, checked against the manifest). An unreadable `_manifest.json` is removed
    too (its folder is then rebuilt whole). Work files and unfinished (.partial) folders are not
    artifacts and are skipped."""
    out = Verified()
    for path in _manifests(root):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            if path.name == MANIFEST:
                path.unlink(missing_ok=True)
                out.damaged.append((path, f"is unreadable ({e})", "unknown"))
            continue
        entries = listed_files(manifest)
        if entries is None:
            continue
        out.artifacts += 1
        out.files += len(entries)
        out.bytes += sum(e["bytes"] for e in entries)
        for entry, why in damaged_files(path.parent, entries, manifest=path.name, full=True):
            (path.parent / entry["file"]).unlink(missing_ok=True)
            out.damaged.append((path.parent / entry["file"], why, str(manifest.get("stage"))))
    return out


def _manifests(root: Path) -> Iterator[Path]:
    """The JSON files under `root` that may be published manifests, in path order: not under
    its work/ folder nor in a .partial one."""
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.endswith(PARTIAL_SUFFIX)
                         and not (here == root and d == "work"))
        yield from (here / f for f in sorted(files) if f.endswith(".json"))


def listed_files(manifest: Any) -> list[dict] | None:
    """The file entries of a manifest that ArtifactBuild ("shards") or FolderBuild ("files")
    wrote; None for any other JSON (a download's manifest, a stage's report)."""
    if not isinstance(manifest, dict) or "key" not in manifest:
        return None
    entries = manifest.get("shards", manifest.get("files"))
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and {"file", "bytes", "sha256"} <= e.keys() for e in entries):
        return None
    return entries


def replace_folder(src: Path, dst: Path) -> None:
    """Move a finished folder into place, replacing an older version of it."""
    old = None
    if dst.exists():
        old = dst.with_name(f"{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def iter_row_groups(path: Path, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The row groups of one Parquet file, in order, one in memory at a time."""
    pf = pq.ParquetFile(path)
    for i in range(pf.num_row_groups):
        yield pf.read_row_group(i, columns=columns)


def require_artifact(folder: Path, what: str, hint: str, *, stage: str | None = None) -> dict:
    """The manifest of an artifact a stage needs, or an error saying how to make it (also
    when the folder holds another stage's artifact, if `stage` is given)."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise TwikiError(f"no {what} at {folder}: {hint}")
    if stage is not None and manifest.get("stage") != stage:
        raise TwikiError(f"{folder} is a {manifest.get('stage')!r} artifact, not {what}; "
                         f"delete it, then {hint}")
    return manifest


def sum_counts(reports: Iterable[dict]) -> dict:
    """Add up per-task count dictionaries (nested dicts are added key by key)."""
    out: dict = {}
    for r in reports:
        for k, v in r.items():
            if isinstance(v, dict):
                out[k] = sum_counts([out.get(k, {}), v])
            elif isinstance(v, list):
                out[k] = out.get(k, []) + v
            else:
                out[k] = out.get(k, 0) + v
    return out
