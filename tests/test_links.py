"""The links stage: the snapshot's wikilinks resolved to items (data/facts/<M>/links/).

Real text: the articles of the real enwiki dump in tests/data/wikimedia (gensim's May 2016
sample: Ayn Rand, Aristotle, Angola, Alabama, ...), with their real wikilinks and the dump's
real redirect pages. The snapshot here is written by this module from that text: each
paragraph is a paragraph of the raw wikitext with its links rendered to their shown text
(spans and targets as contract C1 gives them), the rest of the markup left as it is, so that
the links do not depend on the cleaner.

WRITTEN BY US (made up in form, true in content): the Wikidata entity lines below, each an
item's real QID with its English label and its real enwiki sitelink and no statements (the
real Wikidata files in the repo have no entity for these articles). MADE UP: one article
("Links test page") and three redirects, to give links through one, two and three redirects.
"""

from __future__ import annotations

import bz2
import functools
import json
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mirror_kit import REAL_DATA, SAMPLE_MIRROR, parse_revisions
from pipelines.snapshot import facts_and_mapping
from twiki.config import BuildConfig
from twiki.engine.artifacts import ArtifactBuild, ShardWriter, shard_name, shard_of
from twiki.engine.executors import LocalExecutor
from twiki.engine.paths import DataRoot
from twiki.errors import TwikiError
from twiki.stages.extract import REDIRECTS_SCHEMA, SCHEMA as C1_SNAPSHOT
from twiki.stages.facts import FactsConfig, build_facts
from twiki.stages.links import LINKS_SCHEMA, build_links, resolve_target
from twiki.stages.mapping import build_mapping
from twiki.text.normalize import normalize_title

MONTH = "2016-05"
SHARDS = 4
DUMP = REAL_DATA / "enwiki" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"

# WRITTEN BY US: real items (QID, label = enwiki title) whose articles are in the real dump.
ITEMS = {"Q868": "Aristotle", "Q132524": "Ayn Rand", "Q6199": "Anarchism",
         "Q97": "Atlantic Ocean", "Q916": "Angola", "Q262": "Algeria", "Q173": "Alabama",
         "Q937": "Albert Einstein", "Q40949": "American Revolutionary War",
         "Q11451": "Agriculture", "Q889": "Afghanistan", "Q222": "Albania",
         # an item whose article is not in the dump: links to it stay unresolved
         "Q1040": "Karlsruhe"}

# MADE UP: an article linking through redirects, and redirects to make chains of two and three
# ("AynRand" -> "Ayn Rand" is a real redirect page of the dump).
MADE_UP_ID = 100001
MADE_UP_TEXT = ("The novelist [[AynRand|Rand]] read [[Rand, Ayn]] and [[Ayn Rand, novelist]]. "
                "She admired [[aristotle#Ethics|the philosopher]] and [[File:X.jpg|thumb]] "
                "[[Category:Tests]] [[Karlsruhe]] and [[#Notes|notes]].")
MADE_UP_REDIRECTS = [(100002, "Rand, Ayn", "AynRand"),                 # two hops
                     (100003, "Ayn Rand, novelist", "Rand, Ayn")]       # three hops


LINK = re.compile(r"\[\[([^\[\]|]*)(?:\|([^\[\]]*))?\]\]([a-z]*)")
OTHER_NAMESPACE = re.compile(r"^:?\s*(file|image|category|wikipedia|help|template|portal|draft|"
                             r"wikt|[a-z]{2,3}(-[a-z]+)?)\s*:", re.I)


def render_links(raw: str) -> tuple[str, list[dict]]:
    """A paragraph of raw wikitext with its links replaced by their shown text, and the links
    (start, end, target) as contract C1 describes them."""
    out, links, pos, n = [], [], 0, 0
    for m in LINK.finditer(raw):
        target, shown, trail = m.group(1), m.group(2), m.group(3)
        text = (shown if shown is not None else target) + trail
        out.append(raw[pos:m.start()])
        n += len(raw[pos:m.start()])
        name = target.split("#", 1)[0]
        if name.strip() and not OTHER_NAMESPACE.match(target):
            links.append({"start": n, "end": n + len(text), "target": normalize_title(name)})
        out.append(text)
        n += len(text)
        pos = m.end()
    out.append(raw[pos:])
    return "".join(out), links


def paragraphs_of(wikitext: str) -> list[dict]:
    return [{"section": [], "text": text, "links": links}
            for text, links in (render_links(p.strip()) for p in re.split(r"\n\s*\n", wikitext)
                                if p.strip())]


@functools.lru_cache(maxsize=1)
def dump_pages():
    """The real dump's namespace-0 pages: (articles, redirects) as parse_revisions reads them."""
    pages = [p for p in parse_revisions(bz2.decompress(DUMP.read_bytes())) if p.ns == 0]
    return (tuple(p for p in pages if p.redirect is None),
            tuple(p for p in pages if p.redirect is not None))


def write_artifact(folder: Path, schema: pa.Schema, rows: list[dict], stage: str) -> None:
    b = ArtifactBuild(folder, stage=stage, stage_version=4, inputs={"test": len(rows)},
                      config={}, shards=SHARDS, schema=schema)
    for i in b.pending_shards():
        mine = sorted((r for r in rows if shard_of(r["page_id"], SHARDS) == i),
                      key=lambda r: r["page_id"])
        with ShardWriter(b.shard_path(i), schema) as w:
            w.write(pa.Table.from_pylist(mine, schema=schema))
    b.publish()


def write_month(root: DataRoot, *, made_up: bool = True) -> dict[int, dict]:
    """The month's snapshot (with links) and redirects from the real dump; its rows by id."""
    articles, redirects = dump_pages()
    ts = datetime(2016, 5, 1, tzinfo=timezone.utc)
    rows = [{"page_id": p.page_id, "title": p.title, "revid": p.revid, "timestamp": ts,
             "sha1": p.sha1, "paragraphs": paragraphs_of(p.text)} for p in articles]
    reds = [{"page_id": p.page_id, "title": normalize_title(p.title),
             "target": normalize_title(p.redirect.split("#")[0])} for p in redirects]
    if made_up:
        rows.append({"page_id": MADE_UP_ID, "title": "Links test page", "revid": 1,
                     "timestamp": ts, "sha1": None, "paragraphs": paragraphs_of(MADE_UP_TEXT)})
        reds += [{"page_id": i, "title": t, "target": g} for i, t, g in MADE_UP_REDIRECTS]
    write_artifact(root.snapshot("enwiki", MONTH), C1_SNAPSHOT, rows, "extract")
    write_artifact(root.redirects("enwiki", MONTH), REDIRECTS_SCHEMA, reds, "extract-redirects")
    return {r["page_id"]: r for r in rows}


def entity_dump(path: Path) -> Path:
    lines = [orjson.dumps({"type": "item", "id": q, "labels": {"en": {"language": "en",
                                                                       "value": t}},
                           "sitelinks": {"enwiki": {"site": "enwiki", "title": t}},
                           "claims": {}}) for q, t in ITEMS.items()]
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    return path


def build_inputs(tmp: Path, **kw) -> tuple[DataRoot, dict[int, dict]]:
    root = DataRoot(tmp / "data")
    rows = write_month(root, **kw)
    build_facts(MONTH, dump=entity_dump(tmp / "items-all.json"), data_root=root,
                config=FactsConfig(shards=SHARDS))
    build_mapping(MONTH, data_root=root, redirects=root.redirects("enwiki", MONTH))
    return root, rows


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("links")
    root, rows = build_inputs(tmp)
    result = build_links(MONTH, data_root=root)
    return root, rows, result


def links_table(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def by_title(rows: dict[int, dict]) -> dict[str, int]:
    return {r["title"]: pid for pid, r in rows.items()}


# --------------------------------------------------------------------------------------------

def test_real_links_resolve_to_the_items_of_their_articles(month):
    root, rows, result = month
    assert result.state == "built"
    got = links_table(result.path)
    ids = by_title(rows)

    def resolved(article: str) -> set[tuple[str, str, str]]:
        pid = ids[article]
        return {(r["target"], r["qid"], rows[pid]["paragraphs"][r["paragraph"]]["text"]
                 [r["start"]:r["end"]]) for r in got if r["page_id"] == pid}

    assert ("Aristotle", "Q868", "Aristotle") in resolved("Ayn Rand")
    assert ("Anarchism", "Q6199", "anarchism") in resolved("Ayn Rand") or \
        ("Anarchism", "Q6199", "Anarchism") in resolved("Ayn Rand")
    assert ("Ayn Rand", "Q132524", "Ayn Rand") in resolved("Aristotle")
    assert ("Atlantic Ocean", "Q97", "Atlantic Ocean") in resolved("Angola")
    assert any(t == "American Revolutionary War" and q == "Q40949"
               for t, q, _ in resolved("Alabama"))
    # Every row names an item whose article the target is, and only such items.
    qid_of = {t: q for q, t in ITEMS.items()}
    for r in got:
        assert r["match"] == "title" or r["page_id"] == MADE_UP_ID
        if r["match"] == "title":
            assert qid_of[r["target"]] == r["qid"]
    # A link to an article that has no item (Alabama -> Amphibian), or to a page not in the
    # snapshot (Montgomery, Alabama: no article in the sample), gives no row.
    targets = {r["target"] for r in got}
    assert "Amphibian" not in targets and "Montgomery, Alabama" not in targets
    assert result.manifest["schema"] == LINKS_SCHEMA.to_string(show_schema_metadata=False)


def test_rows_are_partitioned_like_the_snapshot_and_sorted(month):
    root, rows, result = month
    snap = root.snapshot("enwiki", MONTH)
    assert result.manifest["shard_count"] == SHARDS
    for i in range(SHARDS):
        t = pq.read_table(result.path / shard_name(i)).to_pylist()
        pages = set(pq.read_table(snap / shard_name(i), columns=["page_id"])
                    .column("page_id").to_pylist())
        assert {r["page_id"] for r in t} <= pages
        keys = [(r["page_id"], r["paragraph"], r["start"]) for r in t]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_links_through_redirects_at_most_two_hops(month):
    root, rows, result = month
    mine = [r for r in links_table(result.path) if r["page_id"] == MADE_UP_ID]
    text = rows[MADE_UP_ID]["paragraphs"][0]["text"]
    shown = [(text[r["start"]:r["end"]], r["target"], r["qid"], r["match"]) for r in mine]
    assert shown == [
        ("Rand", "AynRand", "Q132524", "redirect"),          # a real redirect: one hop
        ("Rand, Ayn", "Rand, Ayn", "Q132524", "redirect"),   # two hops
        # "Ayn Rand, novelist" is three hops away: unresolved
        ("the philosopher", "Aristotle", "Q868", "title"),   # fragment dropped, first letter up
        # File:, Category:, [[#Notes]] are no links; Karlsruhe has an item but no article here
    ]
    c = result.counts
    assert c["unresolved_too_many_hops"] == 1
    assert c["resolved_by_redirect"] == 2
    assert c["links"] == c["resolved"] + c["unresolved"]
    assert c["unresolved"] == (c["unresolved_article_without_item"] + c["unresolved_no_page"]
                               + c["unresolved_too_many_hops"])
    assert c["resolved"] == result.manifest["rows"] == c["resolved_by_title"] + 2


def test_the_pure_rule_agrees_with_the_stage(month):
    root, rows, result = month
    titles = {r["title"]: None for r in rows.values()}
    titles.update({t: q for q, t in ITEMS.items() if t in titles})
    redirects = {r["title"]: r["target"]
                 for r in pq.read_table(root.redirects("enwiki", MONTH)).to_pylist()}
    got = {(r["page_id"], r["paragraph"], r["start"]): (r["qid"], r["match"])
           for r in links_table(result.path)}
    n = 0
    for pid, row in rows.items():
        for k, p in enumerate(row["paragraphs"]):
            for link in p["links"]:
                qid, how = resolve_target(link["target"], titles, redirects)
                assert got.get((pid, k, link["start"])) == (None if qid is None else (qid, how))
                n += 1
    assert n == result.counts["links"] > 1000
    assert resolve_target("ayn_Rand", {"Ayn Rand": "Q132524"}, {}) == ("Q132524", "title")
    assert resolve_target("Nowhere", {"Ayn Rand": "Q132524"}, {}) == (None, "unresolved")


def test_the_mapping_covers_items_without_statements(month):
    """Every item with an article is mapped, not only subjects of facts: these items have no
    statements at all."""
    root, rows, result = month
    m = pq.read_table(root.facts(MONTH, "mapping")).to_pylist()
    assert {r["qid"] for r in m} == {q for q, t in ITEMS.items() if t != "Karlsruhe"}


def test_rerun_is_a_noop_and_a_lost_shard_is_repaired_identically(month):
    root, rows, result = month
    before = {p.name: p.read_bytes() for p in result.path.glob("part-*")}
    assert build_links(MONTH, data_root=root).state == "current"
    (result.path / shard_name(2)).unlink()
    again = build_links(MONTH, data_root=root)
    assert again.state == "repaired"
    assert {p.name: p.read_bytes() for p in result.path.glob("part-*")} == before
    assert not root.work().exists()


def test_same_bytes_whatever_the_workers_and_partitions(month, tmp_path):
    root, rows, result = month
    before = {p.name: p.read_bytes() for p in result.path.glob("part-*")}
    other, _ = build_inputs(tmp_path)
    with LocalExecutor(2) as ex:
        res = build_links(MONTH, data_root=other, executor=ex, partitions=7)
    assert {p.name: p.read_bytes() for p in res.path.glob("part-*")} == before
    assert res.counts == result.counts


def test_a_killed_build_resumes_to_identical_output(month, tmp_path):
    root, rows, result = month
    other, _ = build_inputs(tmp_path)
    code = ("from pathlib import Path\nfrom twiki.engine.paths import DataRoot\n"
            "from twiki.stages.links import build_links\n"
            f"build_links({MONTH!r}, data_root=DataRoot(Path({str(other.root)!r})), "
            "partitions=41)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    work = other.work("links")
    while proc.poll() is None and not list(work.rglob("r1-*.json")):
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err
    assert not (other.facts(MONTH, "links") / "_manifest.json").exists(), \
        "the run finished before it could be killed"
    done = {p.name: p.stat().st_mtime_ns for p in work.rglob("*.json")}
    assert done
    res = build_links(MONTH, data_root=other, partitions=41)
    assert res.state == "built"
    assert {p.name: p.read_bytes() for p in res.path.glob("part-*")} == \
        {p.name: p.read_bytes() for p in result.path.glob("part-*")}
    assert res.counts == result.counts
    assert not other.work().exists()


def test_a_snapshot_without_links_is_a_clear_error(tmp_path):
    root = DataRoot(tmp_path / "data")
    old = pa.schema([f for f in C1_SNAPSHOT if f.name != "paragraphs"] + [
        pa.field("paragraphs", pa.list_(pa.struct([pa.field("section", pa.list_(pa.string())),
                                                   pa.field("text", pa.string())])))])
    ts = datetime(2016, 5, 1, tzinfo=timezone.utc)
    write_artifact(root.snapshot("enwiki", MONTH), old, [
        {"page_id": 12, "title": "Anarchism", "revid": 1, "timestamp": ts, "sha1": None,
         "paragraphs": [{"section": [], "text": "Anarchism is a political philosophy."}]}],
        "extract")
    build_facts(MONTH, dump=entity_dump(tmp_path / "items-all.json"), data_root=root,
                config=FactsConfig(shards=SHARDS))
    build_mapping(MONTH, data_root=root)
    with pytest.raises(TwikiError, match=r"has no links.*twiki extract --month 2016-05") as e:
        build_links(MONTH, data_root=root)
    assert "\n" not in str(e.value)
    assert not root.facts(MONTH, "links").exists()


def test_no_mapping_is_a_clear_error(tmp_path):
    root = DataRoot(tmp_path / "data")
    write_month(root)
    with pytest.raises(TwikiError, match="no page mapping for 2016-05.*twiki facts"):
        build_links(MONTH, data_root=root)


def test_the_monthly_facts_build_passes_redirects_and_builds_links(tmp_path):
    """pipelines.snapshot.facts_and_mapping (what `twiki facts` and the monthly build run):
    the mapping gets the month's redirects, and the links come with it."""
    root = DataRoot(tmp_path / "data")
    write_month(root)
    config = BuildConfig(shards=SHARDS)
    facts, mapping = facts_and_mapping(MONTH, wiki="enwiki", data_root=root,
                                       executor=LocalExecutor(1), config=config,
                                       dump=entity_dump(tmp_path / "items-all.json"))
    red = json.loads((root.redirects("enwiki", MONTH) / "_manifest.json").read_text())
    assert mapping.manifest["inputs"]["redirects"] == [{"name": MONTH, "key": red["key"]}]
    links = json.loads((root.facts(MONTH, "links") / "_manifest.json").read_text())
    assert links["inputs"]["mapping"] == mapping.manifest["key"]
    assert links["inputs"]["redirects"] == red["key"] and links["rows"] > 0


def test_the_extracted_sample_month_resolves_its_real_links(tmp_path):
    """The whole way: the sample mirror's month A downloaded and extracted (real articles,
    cleaned with their links), the items above, the mapping and the links."""
    from twiki.sources.download import download_month
    from twiki.stages.extract import ExtractConfig, extract_month
    root = DataRoot(tmp_path / "data")
    download_month(MONTH, mirrors=[str(SAMPLE_MIRROR)], data_root=root)
    snap = extract_month(MONTH, data_root=root, config=ExtractConfig(shards=SHARDS))
    facts_and_mapping(
        MONTH, wiki="enwiki", data_root=root, executor=LocalExecutor(1),
        config=BuildConfig(shards=SHARDS), dump=entity_dump(tmp_path / "items-all.json"))
    res = build_links(MONTH, data_root=root)
    assert res.state == "current"                 # facts_and_mapping built it
    rows = {r["page_id"]: r for r in pq.read_table(snap.path).to_pylist()}
    ids = {r["title"]: pid for pid, r in rows.items()}
    got = [(r["page_id"], r["target"], r["qid"],
            rows[r["page_id"]]["paragraphs"][r["paragraph"]]["text"][r["start"]:r["end"]])
           for r in links_table(res.path)]
    assert (ids["Ayn Rand"], "Aristotle", "Q868", "Aristotle") in got
    assert any(p == ids["Angola"] and q == "Q97" for p, _, q, _ in got)
    assert res.counts["links"] > 1000 and res.counts["resolved"] == len(got)
