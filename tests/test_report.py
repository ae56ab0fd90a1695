"""The monthly report on the sample month pair: stage counts, diffset share, the probes table
in the paper's form, rejections, relations, plots, and the trend once a second month exists."""

from __future__ import annotations

import shutil
from collections import Counter

import pyarrow.parquet as pq
import pytest

from pipelines.snapshot import build_month
from twiki.engine.artifacts import read_manifest
from twiki.stages.diff import diff_months
from twiki.errors import ConfigError, TwikiError
from twiki.config import BuildConfig
from twiki.engine.paths import DataRoot
from twiki.stages.align import align_month_pair
from twiki.stages.probes import filter_probes
from twiki.stages.report import write_report

from conftest import SAMPLE_MIRROR as MIRROR

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> DataRoot:
    root = DataRoot(tmp_path_factory.mktemp("report") / "data")
    build_month("2016-06", mirrors=[str(MIRROR)], data_root=root, config=BuildConfig(shards=8))
    # no-ops once the build makes them
    align_month_pair("2016-05", "2016-06", data_root=root)
    filter_probes("2016-05", "2016-06", data_root=root)
    return root


def test_report_has_the_stage_counts_and_plots(sample):
    res = write_report("2016-06", data_root=sample)
    # The monthly build wrote it already: asking again changes nothing.
    assert res.state == "current" and res.path == sample.root / "reports" / "2016-06"
    md = (res.path / "report.md").read_text()
    # snapshot, diffset and its share, facts, fact diff: numbers of the sample build
    assert "| snapshot 2016-06 (dump run 20160601): articles | 117 |" in md
    assert "| diffset articles (new + changed) | 6 (1 + 5) |" in md
    assert "**5.1%** / **0.9%**" in md
    fd = read_manifest(sample.factdiff("2016-05", "2016-06"))["report"]["counts"]
    assert (f"| fact diff: unchanged / changed / removed | {fd['unchanged']:,} / "
            f"{fd['changed']:,} / {fd['removed']:,} |") in md
    # the probes in the paper's table form, every rejection by name, the relations: as the
    # probes stage counted them
    probes = read_manifest(sample.probes("2016-05", "2016-06"))
    stages, rejected = probes["report"]["stages"], probes["report"]["rejected"]
    for key, name in (("initial_categorization", "initial categorization"),
                      ("alignment", "alignment"), ("heuristic_filtering", "heuristic filtering"),
                      ("sample", "sample (of 7,000 / 2,000)")):
        assert f"| {name} | {stages[key]['unchanged']:,} | {stages[key]['changed']:,} |" in md
    # the sampled and the full set, said in words too
    s = probes["report"]["sample"]
    assert (f"Unchanged {s['unchanged']['sampled']:,} of {s['unchanged']['full']:,}; "
            f"Changed {s['changed']['sampled']:,} of {s['changed']['full']:,}.") in md
    # the match kinds, aligned (align's counts) and in the probes
    by_match = read_manifest(sample.aligned("2016-05", "2016-06"))["report"]["aligned_by_match"]
    assert by_match
    sampled = pq.read_table(sample.probes("2016-05", "2016-06"),
                            columns=["kind", "match_kind", "change_type"]).to_pylist()
    for k in ("link", "discourse", "label", "literal"):
        cells = [by_match.get(g, {}).get(k, 0) for g in ("unchanged", "changed")] + [
            sum(r["match_kind"] == k and (r["kind"] == "unchanged") == un for r in sampled)
            for un in (True, False)]
        assert f"| `{k}` | " + " | ".join(f"{c:,}" for c in cells) + " |" in md
    # the change types, from the fact diff through the probes
    for c, group in (("unchanged", "Unchanged"), ("new_relation", "Changed"),
                     ("added_value", "Changed"), ("replacement", "Changed"),
                     ("new_entity", "Changed"), ("ended", "none"), ("historical", "none"),
                     ("removed", "none")):
        row = f"| `{c}` | {group} | {fd[c]:,} | "
        assert row in md, row
        if group != "none":
            n = sum(r["change_type"] == c for r in sampled)
            assert [line for line in md.splitlines() if line.startswith(row)][0].endswith(
                f" | {n:,} |")
    for where in ("alignment", "filter"):
        for reason, n in rejected[where].get("unchanged", {}).items():
            assert f"| {where} | `{reason}` | {n:,} |" in md
    relations = pq.read_table(sample.probes("2016-05", "2016-06"),
                              columns=["kind", "relation"]).to_pylist()
    top = Counter(r["relation"] for r in relations).most_common(1)[0][0]
    un = sum(r["relation"] == top and r["kind"] == "unchanged" for r in relations)
    ch = sum(r["relation"] == top and r["kind"] != "unchanged" for r in relations)
    assert f"| {top} | {un} | {ch} |" in md
    assert "![probes per stage and relations](probes.png)" in md
    assert (res.path / "probes.png").read_bytes().startswith(PNG)
    # one month pair: a trend table of one row, no trend plot yet
    final = stages["sample"]
    assert (f"| 2016-06 (2016-05) | 117 | 6 | 5.1% | 0.9% | {fd['unchanged']:,} / "
            f"{fd['changed']:,} | {final['unchanged']} / {final['changed']} |") in md
    assert not (res.path / "trend.png").exists()


def test_report_rerun_is_a_no_op_and_a_rewrite_is_identical(sample):
    first = write_report("2016-06", data_root=sample)
    before = {p.name: p.read_bytes() for p in first.path.iterdir()}
    assert write_report("2016-06", data_root=sample).state == "current"
    shutil.rmtree(first.path)
    assert write_report("2016-06", data_root=sample).state == "built"
    assert {p.name: p.read_bytes() for p in first.path.iterdir()} == before


def test_trend_across_months(sample, tmp_path):
    """A second month pair (2016-07: the same articles as 2016-06, so an empty diffset) adds
    a row to the trend and the trend plot."""
    root = DataRoot(tmp_path / "data")
    shutil.copytree(sample.root, root.root, ignore=shutil.ignore_patterns("raw", "work"))
    shutil.copytree(root.snapshot("enwiki", "2016-06"), root.snapshot("enwiki", "2016-07"))
    diff_months("2016-06", "2016-07", data_root=root)
    res = write_report("2016-07", data_root=root)
    md = (res.path / "report.md").read_text()
    assert "| 2016-06 (2016-05) | 117 | 6 | 5.1% |" in md
    assert "| 2016-07 (2016-06) | 117 | 0 | 0.0% |" in md
    assert "Not built yet for 2016-06 -> 2016-07." in md        # no probes for that pair
    assert (res.path / "trend.png").read_bytes().startswith(PNG)
    assert "![month over month](trend.png)" in md


def test_report_errors(tmp_path):
    with pytest.raises(TwikiError, match="twiki snapshot --month 2016-06"):
        write_report("2016-06", data_root=DataRoot(tmp_path))
    with pytest.raises(ConfigError, match="YYYY-MM"):
        write_report("June", data_root=DataRoot(tmp_path))
