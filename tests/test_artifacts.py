"""The artifact layer: manifests, atomic publish, no-op, rebuild on change, resume, repair."""

import gc

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from twiki.engine.artifacts import (ArtifactBuild, ShardWriter, cyclic_gc_paused, read_manifest, shard_name,
                             shard_of)
from twiki.errors import ConfigError, UnsafePathError
from twiki.engine.paths import parse_month, previous_month, safe_join

SCHEMA = pa.schema([("page_id", pa.int64()), ("text", pa.string())])


def build(folder, config, shards=3, rows=30):
    b = ArtifactBuild(folder, stage="demo", stage_version=1, inputs={"x": 1}, config=config,
                      shards=shards, schema=SCHEMA)
    written = []
    for i in b.pending_shards():
        with ShardWriter(b.shard_path(i), SCHEMA, row_group_rows=4) as w:
            ids = [k for k in range(rows) if shard_of(k, shards) == i]
            w.write(pa.table({"page_id": ids, "text": [f"t{k}" for k in ids]}, schema=SCHEMA))
        written.append(i)
    b.publish(report={"n": rows})
    return b, written


def test_publish_writes_shards_and_manifest_last(tmp_path):
    folder = tmp_path / "art"
    b, written = build(folder, {"a": 1})
    assert written == [0, 1, 2]
    m = read_manifest(folder)
    assert m["rows"] == 30 and m["shard_count"] == 3
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json"] + [shard_name(i) for i in range(3)]
    assert not (tmp_path / "art.partial").exists()
    ids = sorted(pq.read_table(folder).column("page_id").to_pylist())
    assert ids == list(range(30))


def test_same_inputs_and_config_is_a_noop_changed_config_rebuilds(tmp_path):
    folder = tmp_path / "art"
    build(folder, {"a": 1})
    b, written = build(folder, {"a": 1})
    assert b.state == "current" and written == []
    b, written = build(folder, {"a": 2})
    assert b.state == "build" and written == [0, 1, 2]
    assert read_manifest(folder)["config"] == {"a": 2}


def test_deleted_shard_is_repaired_alone_and_identical(tmp_path):
    folder = tmp_path / "art"
    build(folder, {"a": 1})
    before = {p.name: p.read_bytes() for p in folder.glob("part-*")}
    (folder / shard_name(1)).unlink()
    b, written = build(folder, {"a": 1})
    assert b.state == "repair" and written == [1]
    assert {p.name: p.read_bytes() for p in folder.glob("part-*")} == before


def test_killed_build_resumes_from_finished_shards(tmp_path):
    folder = tmp_path / "art"
    b = ArtifactBuild(folder, stage="demo", stage_version=1, inputs={}, config={}, shards=2,
                      schema=SCHEMA)
    with ShardWriter(b.shard_path(0), SCHEMA) as w:
        w.write(pa.table({"page_id": [1], "text": ["x"]}, schema=SCHEMA))
    # A writer that dies leaves no shard file behind.
    with pytest.raises(RuntimeError):
        with ShardWriter(b.shard_path(1), SCHEMA) as w:
            w.write(pa.table({"page_id": [2], "text": ["y"]}, schema=SCHEMA))
            raise RuntimeError("killed")
    assert read_manifest(folder) is None  # nothing published yet
    again = ArtifactBuild(folder, stage="demo", stage_version=1, inputs={}, config={},
                          shards=2, schema=SCHEMA)
    assert again.pending_shards() == [1]


def test_row_groups_do_not_depend_on_write_batching(tmp_path):
    t = pa.table({"page_id": list(range(10)), "text": ["a"] * 10}, schema=SCHEMA)
    with ShardWriter(tmp_path / "a.parquet", SCHEMA, row_group_rows=4) as w:
        w.write(t)
    with ShardWriter(tmp_path / "b.parquet", SCHEMA, row_group_rows=4) as w:
        for k in range(10):
            w.write(t.slice(k, 1))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_row_groups_close_at_their_byte_bound_whatever_the_batching(tmp_path):
    """Long rows make small row groups (what a reader holds at once stays bounded)."""
    texts = ["x" * n for n in (5, 5, 30, 1, 1, 1, 1, 1, 1, 50, 2, 2)]
    t = pa.table({"page_id": list(range(len(texts))), "text": texts}, schema=SCHEMA)
    sizes = lambda tb: pc.binary_length(tb.column("text")).to_numpy()  # noqa: E731
    files = []
    for name, step in (("a", len(texts)), ("b", 1), ("c", 5)):
        path = tmp_path / f"{name}.parquet"
        with ShardWriter(path, SCHEMA, row_group_rows=4, row_group_bytes=20,
                         row_bytes=sizes) as w:
            for k in range(0, len(texts), step):
                w.write(t.slice(k, step))
        files.append(path.read_bytes())
    assert files[0] == files[1] == files[2]
    md = pq.ParquetFile(tmp_path / "a.parquet").metadata
    # 5+5+30 reaches 20 at the third row; then 4 rows (the row cap); then 1+1+50; then the rest
    assert [md.row_group(i).num_rows for i in range(md.num_row_groups)] == [3, 4, 3, 2]
    assert pq.read_table(tmp_path / "a.parquet").equals(t)


def test_shard_of_spreads_consecutive_ids():
    counts = [0] * 8
    for k in range(8000):
        counts[shard_of(k, 8)] += 1
    assert min(counts) > 850 and max(counts) < 1150


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "", "C:\\x", "..", "a\\..\\b"])
def test_safe_join_refuses_escaping_names(tmp_path, name):
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, name)


def test_safe_join_accepts_plain_names(tmp_path):
    assert safe_join(tmp_path, "enwiki-1.bz2") == tmp_path / "enwiki-1.bz2"


@pytest.mark.parametrize("bad", ["2022-1", "22-01", "2022/01", "", "latest"])
def test_bad_month_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="YYYY-MM"):
        parse_month(bad)


@pytest.mark.parametrize("bad", ["2022-13", "2022-00"])
def test_a_month_that_does_not_exist_says_so(bad):
    with pytest.raises(ConfigError, match=f"month '{bad}' does not exist: MM runs from 01 to 12"):
        parse_month(bad)


def test_previous_month_crosses_years():
    assert previous_month("2022-01") == "2021-12"
    assert previous_month("2022-07") == "2022-06"


def test_cycle_collector_comes_back_after_a_paused_block_even_on_error():
    assert gc.isenabled()
    with pytest.raises(ValueError):
        with cyclic_gc_paused():
            assert not gc.isenabled()
            raise ValueError("a task failed")
    assert gc.isenabled()
    gc.disable()             # a caller that had it off keeps it off
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
