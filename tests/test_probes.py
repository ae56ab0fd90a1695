"""The filter stage (TWiki-Probes, step 2) and its report, on the month pair of
tests/entity_pair.py (real entities; article text MADE UP there, see its docstring), plus aligned sets made of those
rows for the filters that the pair alone does not reach (a homonym subject, big caps)."""

from __future__ import annotations

from collections import Counter

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
from twiki.stages.probes import (FULL, REASONS, ContainmentFilter, FilterConfig, allocate,
                                 filter_probes, probe_id, probes_markdown)


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


def filter_cases(base: list[dict]) -> list[dict]:
    """MADE UP: Douglas Adams's first aligned row of the pair again, as four facts the filters
    must tell apart (the pair's own rows follow what alignment accepts): his given name
    'Douglas' (contained in the subject), his birth name 'Douglas Noël Adams' (not: whole
    words), a six-word notable work and a relation without a label."""
    adams = next(r for r in base if r["subject_qid"] == "Q42")
    made = [("P735", "given name", "Douglas"), ("P1477", "birth name", "Douglas Noël Adams"),
            ("P800", "notable work", "The Hitchhiker's Guide to the Galaxy"),
            ("P373", None, "Douglas Adams photographs")]
    return [{**adams, "property": prop, "relation": rel, "object": obj, "value": obj,
             "statement_id": f"Q42$made-up-{k}"} for k, (prop, rel, obj) in enumerate(made)]


def test_each_row_filter_names_its_reason(pair, built, tmp_path):
    root = DataRoot(tmp_path / "data")
    write_aligned(root, rows(pair.aligned(A, B)) + filter_cases(rows(pair.aligned(A, B))))
    res = filter_probes(A, B, data_root=root, config=FilterConfig(min_cap=1000))
    contain = {triple(r) for r in rejected(res, "subject_object_contain")}
    assert ("Douglas Adams", "given name", "Douglas") in contain
    # whole words: 'Douglas Adams' is not in 'Douglas Noël Adams'
    assert ("Douglas Adams", "birth name", "Douglas Noël Adams") not in contain
    assert ("Douglas Adams", "birth name", "Douglas Noël Adams") in {
        triple(r) for r in rows(res.path)}
    long = rejected(res, "object_too_long")
    assert ("Douglas Adams", "notable work", "The Hitchhiker's Guide to the Galaxy") in {
        triple(r) for r in long}
    assert all(r["reason"] == "object_too_long" and len(r["object"].split()) > 5 for r in long)
    # no relation text, no probe
    nolabel = rejected(res, "relation_without_label")
    assert "Q42$made-up-3" in {r["statement_id"] for r in nolabel}
    assert all(r["relation"] is None for r in nolabel)
    # every reason has its folder, empty or not, each a finished artifact
    for reason in REASONS:
        assert read_manifest(res.parts["rejected"] / reason) is not None, reason


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


def test_changed_probes_keep_their_change_type_and_flags(pair, built):
    probes = {triple(r): r for r in rows(built.path)}
    dirk = probes[("Douglas Adams", "notable work", "Dirk Gently's Holistic Detective Agency")]
    # a second notable work, The Hitchhiker's Guide still one: an added value (contract C3),
    # a 'new' probe with no old object
    assert dirk["kind"] == "new" and dirk["change_type"] == "added_value"
    assert not dirk["old_objects"]
    assert dirk["subject_qid"] == "Q42" and dirk["object_qid"] == "Q902712"
    assert dirk["property"] == "P800" and dirk["statement_id"].lower().startswith("q42$")
    # what align wrote passes through, column by column
    aligned = {(r["statement_id"], r["page_id"]): r for r in rows(pair.aligned(A, B))}
    for r in rows(built.path):
        a = aligned[(r["statement_id"], r["page_id"])]
        for col in ("change_type", "cue", "object_aliases", "valid_from", "valid_to",
                    "object_in_month_a", "evidence_in_diffset", "evidence"):
            assert r[col] == a[col] or (col == "object_aliases" and a[col] is None), col
    # the caps of a small Changed set keep at most one probe per subject
    caps = built.report["caps"]["changed"]
    changed = Counter(r["subject_qid"] for r in rows(built.path) if r["kind"] != "unchanged")
    assert caps["subject_cap"] == 1 and max(changed.values()) == 1


def test_report_is_the_papers_table(built, pair):
    r = built.report
    md = (pair.probe_pair(A, B) / "report.md").read_text()
    assert md.startswith("| stage | Unchanged | Changed |")
    assert f"| initial categorization | {r['stages']['initial_categorization']['unchanged']}" in md
    for where in ("alignment", "filter"):
        for g, reasons in r["rejected"][where].items():
            for reason, n in reasons.items():
                if n:
                    assert f"| {where} | `{reason}` |" in md, reason
    assert r["rejected"]["filter"] and r["rejected"]["alignment"]
    assert probes_markdown(r) == md
    assert r["caps"]["unchanged"]["subject_cap"] == 1    # 1% of a handful: the floor, 1
    aligned = rows(pair.aligned(A, B))
    assert r["leakage"]["aligned_object_in_month_a"] == sum(
        bool(a["object_in_month_a"]) for a in aligned if a["kind"] != "unchanged")


def test_rerun_is_a_noop(pair, built):
    again = filter_probes(A, B, data_root=pair)
    assert again.state == "current"


@pytest.mark.parametrize("phase", ["relation caps", "sample"])
def test_killed_run_resumes_to_the_same_bytes(pair, built, tmp_path, phase):
    import shutil
    root = DataRoot(tmp_path / "data")
    shutil.copytree(pair.aligned(A, B), root.aligned(A, B))
    with pytest.raises(Stopped):
        filter_probes(A, B, data_root=root, executor=StopAfter(phase, 2))
    again = filter_probes(A, B, data_root=root)
    assert again.state == "built" and again.report == built.report
    def folders(res):
        return [res.path, res.parts["full"]] + [res.parts["rejected"] / r for r in REASONS]

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


# ---------------------------------------------------------------------------------------
# Probe ids, prompts, the sample.

def test_probes_carry_a_stable_id_the_prompt_scored_and_aligns_columns(pair, tmp_path):
    import shutil
    roots = []
    for name in ("one", "two"):
        roots.append(DataRoot(tmp_path / name / "data"))
        shutil.copytree(pair.aligned(A, B), roots[-1].aligned(A, B))
    built = filter_probes(A, B, data_root=roots[0])
    probes = rows(built.path)
    assert probes
    for r in probes:
        assert r["prompt"] == f"{r['subject']} {r['relation']}"
        assert len(r["probe_id"]) == 16 and int(r["probe_id"], 16) >= 0
        assert isinstance(r["object_aliases"], list)
        for col in ("change_type", "cue", "valid_from", "valid_to"):
            assert col in r
    assert len({r["probe_id"] for r in probes}) == len(probes)
    dirk = next(r for r in probes if r["object"] == "Dirk Gently's Holistic Detective Agency")
    assert dirk["prompt"] == "Douglas Adams notable work"
    # the same facts built again, elsewhere and with two workers: the same ids
    again = filter_probes(A, B, data_root=roots[1], executor=LocalExecutor(2))
    assert sorted((r["statement_id"], r["probe_id"]) for r in rows(again.path)) == \
        sorted((r["statement_id"], r["probe_id"]) for r in probes)
    # the same statement and value in another month pair is another probe
    assert probe_id("2015-02", "2015-06", dirk["statement_id"], dirk["value"]) != dirk["probe_id"]
    assert probe_id(A, B, dirk["statement_id"], dirk["value"]) == dirk["probe_id"]
    # rejected rows carry them too (a rejected fact can be looked up by its id)
    assert all(len(r["probe_id"]) == 16 for r in rejected(built, "object_too_long"))


def test_small_sets_are_not_sampled(pair):
    """The pair's sets are smaller than the default sample sizes: probes/ is probes_full/."""
    built = filter_probes(A, B, data_root=pair)
    r = built.report
    assert r["sample"]["unchanged"]["size"] == 7000 and r["sample"]["changed"]["size"] == 2000
    assert r["stages"]["sample"] == r["stages"]["heuristic_filtering"]
    assert rows(built.parts["full"]) == rows(built.path)
    assert read_manifest(built.parts["full"])["stage"] == "probes.full"


def test_allocation_is_proportional_with_a_fixed_rounding_rule():
    counts = {"a": 5, "b": 3, "c": 2}
    # floors 2, 1, 1; the one left goes to the largest remainder: a and b tie (.5), a is larger
    assert allocate(counts, 5) == {"a": 3, "b": 1, "c": 1}
    assert allocate(counts, 10) == counts and allocate(counts, 0) == counts
    assert allocate(counts, 99) == counts
    assert allocate({"x": 1, "y": 1, "z": 1}, 2) == {"x": 1, "y": 1, "z": 0}   # names break ties
    quota = allocate({f"r{i}": i for i in range(1, 30)}, 100)
    assert sum(quota.values()) == 100
    total = sum(range(1, 30))
    for i in range(1, 30):
        assert abs(quota[f"r{i}"] - 100 * i / total) < 1


def big_pair(pair, copies: int = 40) -> list[dict]:
    """The pair's aligned rows under `copies` more made-up subjects (labels suffixed with a
    number), so that sets are large enough to sample."""
    base = rows(pair.aligned(A, B))
    return [{**r, "subject": f"{r['subject']} {k // len(base)}"}
            for k, r in enumerate(homonyms(base, copies))]


def test_sample_is_seeded_stratified_and_of_the_configured_size(pair, built, tmp_path):
    many = big_pair(pair)
    results = {}
    for name, seed, workers in (("one", 0, 1), ("two", 0, 2), ("other", 1, 1)):
        root = DataRoot(tmp_path / name / "data")
        write_aligned(root, many)
        # caps off (min_cap above the sets) so that the sample alone decides what probes/ holds
        cfg = FilterConfig(seed=seed, min_cap=10_000, sample_unchanged=60, sample_changed=7)
        results[name] = filter_probes(A, B, data_root=root, config=cfg,
                                      executor=LocalExecutor(workers))
    first = results["one"]
    full, sample = rows(first.parts["full"]), rows(first.path)
    for g, size in (("unchanged", 60), ("changed", 7)):
        mine = [r for r in sample if (r["kind"] == "unchanged") == (g == "unchanged")]
        everything = [r for r in full if (r["kind"] == "unchanged") == (g == "unchanged")]
        assert len(everything) > size and len(mine) == size
        per_rel = Counter(r["relation"] for r in mine)
        full_rel = Counter(r["relation"] for r in everything)
        assert dict(per_rel) == {k: v for k, v in allocate(dict(full_rel), size).items() if v}
        for rel, n in full_rel.items():          # each relation keeps its share, within rounding
            assert abs(per_rel.get(rel, 0) - size * n / len(everything)) < 1
        assert first.report["stages"]["sample"][g] == size
        assert first.report["stages"]["heuristic_filtering"][g] == len(everything)
    ids = {r["probe_id"] for r in full}
    assert {r["probe_id"] for r in sample} <= ids
    md = (first.path.parent / "report.md").read_text()
    assert "| sample (of 60 / 7) | 60 | 7 |" in md
    # the same seed with another worker count: the same bytes; another seed: another sample
    two = results["two"]
    for folder in ("probes", FULL):
        for f in sorted((first.path.parent / folder).glob("part-*.parquet")):
            assert (two.path.parent / folder / f.name).read_bytes() == f.read_bytes()
    other = rows(results["other"].path)
    assert len(other) == len(sample)
    assert {r["probe_id"] for r in other} != {r["probe_id"] for r in sample}


def test_sample_size_must_be_a_count():
    with pytest.raises(TwikiError, match="sample_changed must be a whole number"):
        FilterConfig(sample_changed=-1)
    assert FilterConfig(sample_unchanged=0).sample_size("unchanged") == 0
