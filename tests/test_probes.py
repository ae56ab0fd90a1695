"""The filter stage (TWiki-Probes, step 2) and its report, on the month pair of
tests/entity_pair.py (real entities; article text MADE UP there, see its docstring), plus aligned sets made of those
rows for the filters that the pair alone does not reach (a homonym subject, big caps)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aligned_pair import aligned_pair
from entity_pair import A, B, SHARDS, Stopped, StopAfter
from twiki.stages.align import ALIGNED_SCHEMA, STAGE as ALIGN_STAGE
from twiki.engine.artifacts import ArtifactBuild, ShardWriter, read_manifest, shard_of
from twiki.errors import TwikiError
from twiki.engine.executors import LocalExecutor
from twiki.engine.paths import DataRoot
from twiki.stages.probes import (REASONS, ContainmentFilter, FilterConfig, filter_probes,
                                 probes_markdown)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> DataRoot:
    """The month pair, aligned."""
    root, _ = aligned_pair(tmp_path_factory.mktemp("probes"), spill_rows=5)
    return root


@pytest.fixture(scope="module")
def built(pair):
    """The aligned pair, filtered."""
    return filter_probes(A, B, data_root=pair)


def rows(folder) -> list[dict]:
    return pq.read_table(folder).to_pylist()


def rejected(res, reason) -> list[dict]:
    return rows(res.parts["rejected"] / reason)


def triple(r) -> tuple:
    return (r["subject"], r["relation"], r["object"])


def test_each_row_filter_names_its_reason(built):
    contain = {triple(r) for r in rejected(built, "subject_object_contain")}
    assert ("Douglas Adams", "given name", "Douglas") in contain
    # whole words: 'Douglas Adams' is not in 'Douglas Noël Adams' (a probe, if a cap keeps it)
    assert ("Douglas Adams", "birth name", "Douglas Noël Adams") not in contain
    long = rejected(built, "object_too_long")
    assert [triple(r) for r in long] == [
        ("Douglas Adams", "notable work", "The Hitchhiker's Guide to the Galaxy")]
    assert all(r["reason"] == "object_too_long" for r in long)
    # P373 (Commons category) has no label in the test dump: no relation text, no probe
    nolabel = rejected(built, "relation_without_label")
    assert nolabel and {r["property"] for r in nolabel} <= {"P373", "P935"}
    # every reason has its folder, empty or not, each a finished artifact
    for reason in REASONS:
        assert read_manifest(built.parts["rejected"] / reason) is not None, reason


def test_every_aligned_fact_is_a_probe_or_rejected_once(pair, built):
    aligned = rows(pair.aligned(A, B))
    probes = rows(built.path)
    rej = [r for reason in REASONS for r in rejected(built, reason)]
    key = lambda r: (r["statement_id"], r["page_id"])  # noqa: E731
    assert sorted(map(key, aligned)) == sorted(map(key, probes + rej))
    counts = built.report["stages"]
    assert counts["heuristic_filtering"] == {
        "unchanged": sum(r["kind"] == "unchanged" for r in probes),
        "changed": sum(r["kind"] != "unchanged" for r in probes)}
    assert counts["alignment"]["changed"] == sum(r["kind"] != "unchanged" for r in aligned)


def test_changed_probes_keep_old_object_and_flags(built):
    probes = {triple(r): r for r in rows(built.path)}
    dirk = probes[("Douglas Adams", "notable work", "Dirk Gently's Holistic Detective Agency")]
    assert dirk["kind"] == "updated"
    assert dirk["old_objects"] == ["The Hitchhiker's Guide to the Galaxy"]
    assert dirk["subject_qid"] == "Q42" and dirk["object_qid"] == "Q902712"
    assert dirk["property"] == "P800" and dirk["statement_id"].lower().startswith("q42$")
    # the caps of a 2-probe Changed set keep one probe per subject: Kahn's survivor is one of
    # his two aligned facts, chosen by the seed
    kahn = [r for r in rows(built.path) if r["subject_qid"] == "Q131261"]
    assert len(kahn) == 1 and kahn[0]["kind"] == "new"


def test_report_is_the_papers_table(built, pair):
    r = built.report
    md = (pair.probe_pair(A, B) / "report.md").read_text()
    assert md.startswith("| stage | Unchanged | Changed |")
    assert f"| initial categorization | {r['stages']['initial_categorization']['unchanged']}" in md
    assert "| filter | `subject_object_contain` |" in md
    assert "| alignment | `object_only_in_removed_text` |" in md
    assert probes_markdown(r) == md
    assert r["caps"]["unchanged"]["subject_cap"] == 1    # 1% of a handful: the floor, 1
    # Kahn's 'footballer', 'German' (his citizenship, by its demonym) and his Commons category
    # 'Oliver Kahn': all in A's first sentence
    assert r["leakage"]["aligned_object_in_month_a"] == 3


def test_rerun_is_a_noop(pair, built):
    again = filter_probes(A, B, data_root=pair)
    assert again.state == "current"


def test_killed_run_resumes_to_the_same_bytes(pair, built, tmp_path):
    import shutil
    root = DataRoot(tmp_path / "data")
    shutil.copytree(pair.aligned(A, B), root.aligned(A, B))
    with pytest.raises(Stopped):
        filter_probes(A, B, data_root=root, executor=StopAfter("relation caps", 2))
    again = filter_probes(A, B, data_root=root)
    assert again.state == "built" and again.report == built.report
    def folders(res):
        return [res.path] + [res.parts["rejected"] / r for r in REASONS]

    for first, second in zip(folders(built), folders(again)):
        for f in sorted(first.glob("part-*.parquet")):
            assert (second / f.name).read_bytes() == f.read_bytes(), (first.name, f.name)


def test_leakage_switch_drops_flagged_probes(pair, built, tmp_path):
    res = filter_probes(A, B, data_root=pair, config=FilterConfig(drop_leaked=True, min_cap=50))
    leaks = rejected(res, "object_in_month_a")
    assert sorted(triple(r) for r in leaks) == [
        ("Oliver Kahn", "country of citizenship", "Germany"),
        ("Oliver Kahn", "occupation", "association football player")]
    assert res.report["leakage"]["dropped"] is True
    assert not [r for r in rows(res.path) if r["object_in_month_a"]]


# ---------------------------------------------------------------------------------------
# Aligned sets made of the pair's real rows.

def write_aligned(root: DataRoot, rows_: list[dict], shards: int = SHARDS) -> None:
    build = ArtifactBuild(root.aligned(A, B), stage=ALIGN_STAGE,
                          stage_version=1, inputs={"rows": len(rows_)}, config={},
                          shards=shards, schema=ALIGNED_SCHEMA)
    for s in range(shards):
        part = sorted((r for r in rows_ if shard_of(r["page_id"], shards) == s),
                      key=lambda r: (r["page_id"], r["statement_id"]))
        with ShardWriter(build.shard_path(s), ALIGNED_SCHEMA) as w:
            w.write(pa.Table.from_pylist(part, schema=ALIGNED_SCHEMA))
    build.publish()


def homonyms(base: list[dict], copies: int) -> list[dict]:
    """The aligned rows again under `copies` other subjects with the same labels (as two
    people named alike): page ids and QIDs made up."""
    out = list(base)
    for k in range(1, copies + 1):
        for r in base:
            qid = 9_000_000 + k * 1000 + int(r["subject_qid"][1:]) % 1000
            out.append({**r, "subject_qid": f"Q{qid}",
                        "page_id": r["page_id"] + 1_000_000 * k,
                        "statement_id": f"{r['statement_id']}-copy{k}"})
    return out


def test_same_text_under_another_subject_is_a_duplicate(pair, built, tmp_path):
    base = rows(pair.aligned(A, B))
    root = DataRoot(tmp_path / "data")
    write_aligned(root, homonyms(base, 1))
    res = filter_probes(A, B, data_root=root, config=FilterConfig(min_cap=1000))
    dups = rejected(res, "duplicate")
    probes = rows(res.path)
    assert len(dups) == len(probes)                     # each probe had one twin
    assert {triple(r) for r in dups} == {triple(r) for r in probes}
    assert all(r["statement_id"].endswith("-copy1") for r in dups)   # the first by page wins


def test_caps_are_seeded_and_share_of_the_filtered_set(pair, built, tmp_path):
    """123 subjects (the pair's 3, and 40 copies of them under made-up labels) so that 1% and
    5% of a set are several probes."""
    base = rows(pair.aligned(A, B))
    many = []
    for k, r in enumerate(homonyms(base, 40)):
        many.append({**r, "subject": f"{r['subject']} {k // len(base)}"})
    results = {}
    for seed in (0, 0, 1):
        root = DataRoot(tmp_path / f"seed{seed}-{len(results)}" / "data")
        write_aligned(root, many)
        res = filter_probes(A, B, data_root=root, config=FilterConfig(seed=seed),
                            executor=LocalExecutor(2 if seed else 1))
        results.setdefault(seed, []).append(res)
    first, again = results[0]
    other = results[1][0]
    ids = lambda res: sorted(r["statement_id"] for r in rows(res.path))  # noqa: E731
    assert ids(first) == ids(again)
    assert ids(first) != ids(other)
    for res in (first, other):
        caps = res.report["caps"]
        probes = rows(res.path)
        for g in ("unchanged", "changed"):
            mine = [r for r in probes if (r["kind"] == "unchanged") == (g == "unchanged")]
            per_rel = {}
            for r in mine:
                per_rel[r["relation"]] = per_rel.get(r["relation"], 0) + 1
            per_subject = {}
            for r in mine:
                per_subject[r["subject_qid"]] = per_subject.get(r["subject_qid"], 0) + 1
            assert max(per_rel.values()) <= caps[g]["relation_cap"]
            assert max(per_subject.values()) <= caps[g]["subject_cap"]
            assert caps[g]["relation_cap"] == max(1, int(0.05 * caps[g]["n"]))
            assert caps[g]["subject_cap"] == max(1, int(0.01 * caps[g]["n"]))
        assert caps["unchanged"]["subject_cap"] > 1
        assert rejected(res, "relation_cap")
        for r in rejected(res, "relation_cap"):
            assert r["reason"] == "relation_cap"


def test_containment_is_by_whole_words():
    f = ContainmentFilter()
    row = {"subject": "Annapolis", "object": "Ann"}
    assert f.filter(row) == (True, None)
    assert f.filter({"subject": "Douglas Adams", "object": "douglas"}) == \
        (False, "subject_object_contain")


def test_missing_aligned_set_says_what_to_run(tmp_path):
    from twiki.cli import COMMANDS
    with pytest.raises(TwikiError, match="run `twiki probes --from 2015-02 --to 2015-05`") as e:
        filter_probes(A, B, data_root=DataRoot(tmp_path / "data"))
    named = str(e.value).split("`twiki ")[1].split()[0]
    assert named in COMMANDS     # a command the user can run
