"""The extract stage on the real sample dump: rows, cleaning, errors, no-op, resume, repair."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from conftest import sample_pages
from twiki.engine.artifacts import read_manifest, shard_name
from twiki.sources.download import download_month
from twiki.errors import InputError
from twiki.engine.executors import LocalExecutor
from twiki.stages.extract import (REDIRECTS_STAGE, STAGE_VERSION, ExtractConfig,
                                  ExtractRunOptions, extract_month)
from twiki.text.normalize import normalize_title
from twiki.engine.paths import DataRoot

RESIDUE = ["{{", "}}", "[[", "]]", "<ref", "{|", "|-", "<!--"]
SHARDS = 8


def build(root, month="2016-05", mirror=None, workers=1, chunk_mb=0.05, tables=False, **opts):
    dr = DataRoot(root)
    if mirror is not None:
        download_month(month, mirrors=[str(mirror)], data_root=dr)
    return extract_month(month, data_root=dr, executor=LocalExecutor(workers),
                         config=ExtractConfig(shards=SHARDS, tables=tables),
                         options=ExtractRunOptions(chunk_mb=chunk_mb, **opts))


def redirect_pages(pages) -> dict[int, tuple[str, str]]:
    """page_id -> (title, target) of the namespace-0 pages with a <redirect title=...>."""
    out = {}
    for p in pages:
        m = re.search(rb'<redirect title="([^"]*)"', p)
        if m and b"<ns>0</ns>" in p:
            pid = int(re.search(rb"<id>(\d+)</id>", p).group(1))
            title = re.search(rb"<title>([^<]*)</title>", p).group(1).decode()
            target = m.group(1).decode().replace("&amp;", "&").replace("&quot;", '"')
            out[pid] = (title, normalize_title(target.partition("#")[0]))
    return out


def shard_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("part-*.parquet"))}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    from conftest import SAMPLE_MIRROR
    root = tmp_path_factory.mktemp("data")
    res = build(root, mirror=SAMPLE_MIRROR)
    return res, pq.read_table(res.path).to_pandas()


def test_articles_are_namespace_0_without_redirects(snapshot):
    res, df = snapshot
    _, pages = sample_pages()
    redirects = {int(re.search(rb"<id>(\d+)</id>", p).group(1)) for p in pages
                 if b"<redirect" in p and b"<ns>0</ns>" in p}
    articles = {int(re.search(rb"<id>(\d+)</id>", p).group(1)) for p in pages
                if b"<redirect" not in p and b"<ns>0</ns>" in p}
    assert set(df.page_id) == articles
    assert not set(df.page_id) & redirects
    assert {"Anarchism", "Autism", "Albedo", "Abraham Lincoln", "Aristotle"} <= set(df.title)
    assert "AccessibleComputing" not in set(df.title)  # a redirect (page 10)
    counts = res.manifest["report"]["counts"]
    assert counts["pages"] == len(pages) and counts["redirects"] == len(redirects)
    assert counts["articles"] == len(df) == res.manifest["rows"]


def test_rows_carry_dump_metadata(snapshot):
    _, df = snapshot
    row = df[df.title == "Anarchism"].iloc[0]
    assert row.page_id == 12 and row.revid > 0 and len(row.sha1) == 31
    assert row.timestamp.year == 2016 or row.timestamp.year == 2015


def test_clean_text_keeps_link_text_and_sections(snapshot):
    _, df = snapshot
    paras = df[df.title == "Anarchism"].iloc[0].paragraphs
    lead = paras[0]
    assert list(lead["section"]) == []
    assert lead["text"].startswith("Anarchism is a political philosophy that advocates "
                                   "self-governed societies based on voluntary institutions.")
    sections = {tuple(p["section"]) for p in paras}
    assert ("History", "Origins") in sections
    assert not any("Category:" in p["text"] for p in paras)


def test_no_markup_residue_in_any_paragraph(snapshot):
    _, df = snapshot
    for title, paras in zip(df.title, df.paragraphs):
        for p in paras:
            for mark in RESIDUE:
                assert mark not in p["text"], (title, mark, p["text"][:200])


def test_shards_are_partitioned_and_sorted_by_page_id(snapshot):
    from twiki.engine.artifacts import shard_of
    res, _ = snapshot
    for i in range(SHARDS):
        ids = pq.read_table(res.path / shard_name(i), columns=["page_id"]).column(0).to_pylist()
        assert ids == sorted(ids)
        assert all(shard_of(pid, SHARDS) == i for pid in ids)


def test_rerun_is_a_noop_and_changed_config_rebuilds(tmp_path, mirror, caplog):
    first = build(tmp_path, mirror=mirror)
    before = {p.name: p.stat().st_mtime_ns for p in first.path.iterdir()}
    caplog.set_level("INFO", logger="twiki")
    again = build(tmp_path, mirror=mirror)
    assert again.state == "current" and "nothing to do" in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in again.path.iterdir()} == before
    other = extract_month("2016-05", data_root=DataRoot(tmp_path), config=ExtractConfig(shards=4))
    assert other.state == "built" and read_manifest(other.path)["shard_count"] == 4


def test_deleted_shard_is_rebuilt_alone_byte_identical(tmp_path, mirror):
    res = build(tmp_path, mirror=mirror)
    before = shard_bytes(res.path)
    stats = {p.name: p.stat().st_mtime_ns for p in res.path.glob("part-*")}
    (res.path / shard_name(3)).unlink()
    again = build(tmp_path)
    assert again.state == "repaired"
    assert shard_bytes(res.path) == before
    after = {p.name: p.stat().st_mtime_ns for p in res.path.glob("part-*")}
    assert [n for n in after if after[n] != stats.get(n)] == [shard_name(3)]
    # a lost shard of the redirects alone is rebuilt alone too, the snapshot left as it is
    redirects = res.parts["redirects"]
    redirects_before = shard_bytes(redirects)
    (redirects / shard_name(5)).unlink()
    third = build(tmp_path)
    assert third.state == "repaired"
    assert shard_bytes(redirects) == redirects_before
    assert {p.name: p.stat().st_mtime_ns for p in res.path.glob("part-*")} == after


def test_output_does_not_depend_on_workers_or_chunking(tmp_path, mirror):
    one = build(tmp_path / "a", mirror=mirror, workers=1, chunk_mb=1)
    two = build(tmp_path / "b", mirror=mirror, workers=2, chunk_mb=0.02)
    assert shard_bytes(one.path) == shard_bytes(two.path)
    assert shard_bytes(one.parts["redirects"]) == shard_bytes(two.parts["redirects"])
    assert read_manifest(one.parts["redirects"])["rows"] > 0


def test_incremental_month_reuses_unchanged_pages_and_equals_a_cold_extract(
        tmp_path, mirror, make_run):
    header, pages = sample_pages()
    i = next(k for k, p in enumerate(pages) if b"<title>Albedo</title>" in p)
    edited = re.sub(rb"<sha1>\w+</sha1>", b"<sha1>0000000000000000000000000000000</sha1>",
                    pages[i].replace(b"Albedo", b"Albedo (reflectivity)", 3))
    make_run(mirror, "20160601", pages=pages[:i] + [edited] + pages[i + 1:])
    build(tmp_path / "warm", mirror=mirror)
    warm = build(tmp_path / "warm", month="2016-06", mirror=mirror)
    cold = build(tmp_path / "cold", month="2016-06", mirror=mirror, incremental=False)
    counts = warm.manifest["report"]["counts"]
    assert counts["cleaned"] == 1 and counts["reused"] == counts["articles"] - 1
    assert cold.manifest["report"]["counts"]["reused"] == 0
    assert shard_bytes(warm.path) == shard_bytes(cold.path)


def _raw_part(root):
    return sorted((root / "raw" / "enwiki" / "20160501").glob("*multistream1.xml*"))[0]


def test_corrupt_bz2_stops_with_file_and_offset_and_publishes_nothing(tmp_path, mirror):
    dr = DataRoot(tmp_path)
    download_month("2016-05", mirrors=[str(mirror)], data_root=dr)
    part = _raw_part(tmp_path)
    data = bytearray(part.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(64)
    part.write_bytes(bytes(data))
    os.utime(part)
    with pytest.raises(InputError, match=rf"{re.escape(part.name)}.*byte \d+"):
        extract_month("2016-05", data_root=dr, config=ExtractConfig(shards=SHARDS))
    assert read_manifest(dr.snapshot("enwiki", "2016-05")) is None
    assert not dr.snapshot("enwiki", "2016-05").exists()


def test_truncated_bz2_is_a_clear_error(tmp_path, mirror):
    dr = DataRoot(tmp_path)
    download_month("2016-05", mirrors=[str(mirror)], data_root=dr)
    part = _raw_part(tmp_path)
    size = part.stat().st_size
    with open(part, "r+b") as f:
        f.truncate(size - 5000)
    # The download's manifest no longer matches the file: the month is not downloaded.
    with pytest.raises(Exception, match="twiki download --month 2016-05"):
        extract_month("2016-05", data_root=dr, config=ExtractConfig(shards=SHARDS))


def test_truncated_stream_inside_a_part_names_the_offset(tmp_path, mirror, make_run):
    # A part whose index says more streams than the file holds whole: cut inside a stream,
    # with the manifest still matching (as if the mirror had served a short file).
    header, pages = sample_pages()
    run = make_run(mirror, "20160601", pages=pages[:40], parts=1)
    part = sorted(run.glob("*multistream1.xml*"))[0]
    blob = part.read_bytes()
    part.write_bytes(blob[: len(blob) - 3000])
    _rewrite_checksums(run)
    with pytest.raises(InputError, match=rf"{re.escape(part.name)}.*(truncated|corrupt)"):
        build(tmp_path, month="2016-06", mirror=mirror)
    assert not DataRoot(tmp_path).snapshot("enwiki", "2016-06").exists()


def _rewrite_checksums(run):
    import hashlib
    import json
    status = json.loads((run / "dumpstatus.json").read_text())
    files = status["jobs"]["articlesmultistreamdump"]["files"]
    for name in files:
        files[name]["size"] = (run / name).stat().st_size
    (run / "dumpstatus.json").write_text(json.dumps(status))
    for algo in ("sha1", "md5"):
        sums = run / f"enwiki-{run.name}-{algo}sums.txt"
        sums.write_text("".join(f"{hashlib.new(algo, (run / n).read_bytes()).hexdigest()}  {n}\n"
                                for n in sorted(files)))


def test_malformed_xml_names_file_and_position(tmp_path, mirror, make_run):
    header, pages = sample_pages()
    broken = pages[25].replace(b"</ns>", b"</nz>", 1)
    make_run(mirror, "20160601", pages=pages[:25] + [broken] + pages[26:60], parts=1)
    with pytest.raises(InputError, match=r"multistream1\.xml.*malformed XML.*line \d+"):
        build(tmp_path, month="2016-06", mirror=mirror)
    assert not DataRoot(tmp_path).snapshot("enwiki", "2016-06").exists()


def test_xml_bomb_is_refused_quickly(tmp_path, mirror, make_run):
    header, pages = sample_pages()
    lol = b'<!DOCTYPE lolz [<!ENTITY lol "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (k, (b"&lol%d;" % (k - 1) if k > 1 else b"&lol;") * 10)
        for k in range(1, 10)) + b"]>\n"
    bomb = pages[3].replace(b"<text ", b"<text ", 1).replace(b"</text>", b"&lol9;</text>", 1)
    make_run(mirror, "20160601", header=header + lol, pages=[lol + bomb] + pages[4:20], parts=1)
    t0 = time.monotonic()
    with pytest.raises(InputError, match="XML|entity|document type"):
        build(tmp_path, month="2016-06", mirror=mirror)
    assert time.monotonic() - t0 < 30  # refused, not expanded (generous bound: CI machines vary)
    assert not DataRoot(tmp_path).snapshot("enwiki", "2016-06").exists()


def test_killed_extract_resumes_to_identical_output(tmp_path, mirror):
    ref = build(tmp_path / "ref", mirror=mirror, chunk_mb=0.02)
    root = tmp_path / "killed"
    download_month("2016-05", mirrors=[str(mirror)], data_root=DataRoot(root))
    cmd = [sys.executable, "-m", "twiki", "extract", "--month", "2016-05", "--data-root",
           str(root), "--shards", str(SHARDS), "--chunk-mb", "0.02"]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    work = root / "work" / "extract"
    while proc.poll() is None and not list(work.rglob("chunk-*.arrow")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    snap = DataRoot(root).snapshot("enwiki", "2016-05")
    assert read_manifest(snap) is None, "the run finished before it could be killed"
    done_before = len(list(work.rglob("chunk-*.arrow")))
    assert done_before >= 1
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert shard_bytes(snap) == shard_bytes(ref.path)
    redirects = DataRoot(root).redirects("enwiki", "2016-05")
    assert shard_bytes(redirects) == shard_bytes(ref.parts["redirects"])


def test_work_kept_for_another_chunk_size_is_not_reused(tmp_path, mirror):
    """Work files kept by a run with --chunk-mb 0.05 are cut at other boundaries than the
    default's: a later default run makes its own and publishes every article."""
    ref = build(tmp_path / "ref", mirror=mirror)
    root = tmp_path / "kept"
    download_month("2016-05", mirrors=[str(mirror)], data_root=DataRoot(root))
    cmd = [sys.executable, "-m", "twiki", "extract", "--month", "2016-05", "--data-root",
           str(root), "--shards", str(SHARDS)]
    kept = subprocess.run(cmd + ["--chunk-mb", "0.05", "--keep-work"], capture_output=True,
                          text=True)
    assert kept.returncode == 0, kept.stderr
    assert list((root / "work" / "extract").rglob("chunk-*.arrow"))
    snap = DataRoot(root).snapshot("enwiki", "2016-05")
    shutil.rmtree(snap)
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert read_manifest(snap)["rows"] == ref.manifest["rows"]
    assert shard_bytes(snap) == shard_bytes(ref.path)


def test_a_page_that_fails_is_skipped_and_reported_with_id_and_reason(tmp_path, mirror, make_run):
    header, pages = sample_pages()
    i = next(k for k, p in enumerate(pages) if b"<title>Albedo</title>" in p)
    # Hundreds of unclosed templates: the cleaner gives up on this page (a ValueError).
    hostile = re.sub(rb"(<text[^>]*>)", rb"\1" + b"{{unclosed\n\n" * 300, pages[i], count=1)
    # A revision without text.
    j = next(k for k, p in enumerate(pages) if b"<title>Autism</title>" in p)
    textless = re.sub(rb"<text[^>]*>.*?</text>", b'<text deleted="deleted" />', pages[j],
                      count=1, flags=re.S)
    new = list(pages)
    new[i], new[j] = hostile, textless
    make_run(mirror, "20160601", pages=new)
    res = build(tmp_path, month="2016-06", mirror=mirror)
    report = res.manifest["report"]
    failed = {f["page_id"]: f["reason"] for f in report["failed_pages"]}
    assert report["counts"]["failed"] == 2
    assert "cleaning failed" in failed[39]
    assert "no text" in failed[25]
    titles = set(pq.read_table(res.path, columns=["title"]).column(0).to_pylist())
    assert "Albedo" not in titles and "Autism" not in titles and "Anarchism" in titles


def test_mass_failure_stops_instead_of_publishing_an_empty_snapshot(tmp_path, mirror, make_run):
    header, pages = sample_pages()
    hostile = [re.sub(rb"(<text[^>]*>)", rb"\1" + b"{{unclosed\n\n" * 300, p, count=1)
               for p in pages]
    make_run(mirror, "20160601", pages=hostile)
    with pytest.raises(InputError, match=r"pages failed .*nothing published.*cleaning failed"):
        build(tmp_path, month="2016-06", mirror=mirror)
    assert not DataRoot(tmp_path).snapshot("enwiki", "2016-06").exists()
    redirects = DataRoot(tmp_path).redirects("enwiki", "2016-06")
    assert not redirects.parent.exists() or not any(redirects.parent.iterdir())


def test_paragraphs_keep_their_links(snapshot):
    _, df = snapshot
    lead = df[df.title == "Anarchism"].iloc[0].paragraphs[0]
    shown = {lead["text"][l["start"]:l["end"]]: l["target"] for l in lead["links"]}
    # "Anarchism is a [[political philosophy]] that advocates [[self-governance|self-governed]]
    # societies based on voluntary institutions."
    assert shown["political philosophy"] == "Political philosophy"
    assert shown["self-governed"] == "Self-governance"
    total = 0
    for paras in df.paragraphs:
        for p in paras:
            for l in p["links"]:
                total += 1
                span = p["text"][l["start"]:l["end"]]
                assert span and span == span.strip() and l["target"]
    assert total > 10_000


def test_redirects_are_recorded_beside_the_snapshot(snapshot):
    res, df = snapshot
    _, pages = sample_pages()
    expected = redirect_pages(pages)
    assert len(expected) > 50
    folder = res.parts["redirects"]
    assert folder == DataRoot(res.path.parents[2]).redirects("enwiki", "2016-05")
    manifest = read_manifest(folder)
    assert manifest["stage"] == REDIRECTS_STAGE and manifest["stage_version"] == STAGE_VERSION
    table = pq.read_table(folder)
    assert table.schema.names == ["page_id", "title", "target"]
    rows = {r["page_id"]: (r["title"], r["target"]) for r in table.to_pylist()}
    assert rows == expected
    assert rows[10] == ("AccessibleComputing", "Computer accessibility")
    assert not set(rows) & set(df.page_id)
    from twiki.engine.artifacts import shard_of
    for i in range(SHARDS):
        ids = pq.read_table(folder / shard_name(i), columns=["page_id"]).column(0).to_pylist()
        assert ids == sorted(ids) and all(shard_of(pid, SHARDS) == i for pid in ids)
    assert res.manifest["report"]["counts"]["redirect_rows"] == len(expected)


def test_redirect_written_only_in_its_text_is_a_redirect_and_tables_are_an_option(
        tmp_path, mirror, make_run):
    header, pages = sample_pages()
    i = next(k for k, p in enumerate(pages) if b"<title>AccessibleComputing</title>" in p)
    # the same page without the XML <redirect> element: only "#REDIRECT [[...]]" says so
    pages = list(pages)
    pages[i] = re.sub(rb"\s*<redirect [^>]*/>", b"", pages[i])
    assert b"<redirect" not in pages[i]
    make_run(mirror, "20160601", pages=pages)
    res = build(tmp_path, month="2016-06", mirror=mirror)
    titles = set(pq.read_table(res.path, columns=["title"]).column(0).to_pylist())
    assert "AccessibleComputing" not in titles
    assert not any(t.startswith("REDIRECT") for t in titles)
    rows = {r["page_id"]: r["target"] for r in pq.read_table(res.parts["redirects"]).to_pylist()}
    assert rows[10] == "Computer accessibility"
    # tables as text rows: another artifact key (the snapshot is rebuilt in place), the same
    # articles, and more paragraphs: the tables' rows
    def paragraphs(r):
        return [p["text"] for ps in pq.read_table(r.path, columns=["paragraphs"]).column(0)
                .to_pylist() for p in ps]

    plain = paragraphs(res)
    assert not any(" | " in t for t in plain)
    with_tables = build(tmp_path, month="2016-06", tables=True)
    assert with_tables.state == "built" and with_tables.manifest["key"] != res.manifest["key"]
    assert with_tables.manifest["config"]["tables"] is True
    assert with_tables.manifest["rows"] == res.manifest["rows"]
    rows_too = paragraphs(with_tables)
    assert len(rows_too) > len(plain) + 1000
    assert sum(" | " in t for t in rows_too) > 1000
