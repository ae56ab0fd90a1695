"""The committed sample mirror (data/sample/mirror): it is what tests/build_sample_mirror.py
builds; its runs are laid out like real dump runs; month B (enwiki 20160601) differs from month A
(20160501) by exactly the intended edits; the made-up articles are about the dump's entities
and state their facts, month B's added sentences included; the two entity dumps differ only in
Q42."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pytest

import build_sample_mirror as builder
from build_sample_mirror import (MADE_UP_ARTICLES, MADE_UP_OBJECTS, MONTH_B_DELETED, MONTH_B_EDITS,
                                 MONTH_B_FACTS, MONTH_B_FACTS_NOT_IN_TEXT)
from mirror_kit import (FOOTER, JOB, PAGES_PER_STREAM, SAMPLE_MIRROR, WIKIDATA_DIR, Page,
                        entity_dump, page_id, page_title, parse_revisions, split_dump,
                        split_entity_dump, wikitext_sha1)
from twiki.sources.wikidata import normalize_amount, render_time


def best_statements(statements: list) -> tuple[str, list]:
    """Statements of the best rank of one property: preferred if any, else normal;
    deprecated never. Returns (rank, statements). Written apart from the facts stage, so that
    the test checks it against the entities rather than against itself."""
    preferred = [s for s in statements if s.get("rank") == "preferred"]
    if preferred:
        return "preferred", preferred
    return "normal", [s for s in statements if s.get("rank", "normal") == "normal"]


RUN_A, RUN_B = builder.RUN_DATE, builder.RUN_DATE_B
WD_A, WD_B = builder.ENTITIES_RUN_DATE, builder.ENTITIES_RUN_DATE_B
# The run's page ids that month B changes, adds and deletes (by sha1 and page id).
EDITED = {330, 332, 340,            # Actrius, Animalia (book), Alain Connes: constructed edits
          24278,                    # Pear: its real 2002 revision -> its real 2014 revision
          100001}                   # Douglas Adams (made up): sentences for Q42's new facts
ADDED = {411964, 9261472}           # Computer accessibility (article), Pyrus (redirect): real
DELETED = {694}                     # Asia Minor (disambiguation)


def files_under(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_parts(run: str) -> list[tuple[Path, Path]]:
    """(data file, index file) of every part of an enwiki run, in part order, from the run's
    dumpstatus.json."""
    folder = SAMPLE_MIRROR / "enwiki" / run
    names = json.loads((folder / "dumpstatus.json").read_text())["jobs"][JOB]["files"]
    data = sorted((n for n in names if ".xml-" in n), key=lambda n: int(n.split("multistream")[1]
                                                                        .split(".")[0]))
    return [(folder / n, folder / n.replace("multistream", "multistream-index", 1)
             .replace(".xml-", ".txt-")) for n in data]


def run_pages(run: str) -> dict[int, bytes]:
    """page id -> the page's XML, of every part of an enwiki run."""
    pages: dict[int, bytes] = {}
    for data, _ in run_parts(run):
        _, part, _ = split_dump(bz2.decompress(data.read_bytes()))
        for raw in part:
            pid = page_id(raw)
            assert pid not in pages, f"page {pid} twice in run {run}"
            pages[pid] = raw
    return pages


def revision(raw: bytes) -> Page:
    [page] = parse_revisions(raw)
    return page


def entities(run: str) -> dict[str, dict]:
    data = bz2.decompress((SAMPLE_MIRROR / WIKIDATA_DIR / run / f"wikidata-{run}-all.json.bz2")
                          .read_bytes())
    return {e["id"]: e for e in map(json.loads, split_entity_dump(data))}


def entity_lines(run: str) -> dict[str, bytes]:
    data = bz2.decompress((SAMPLE_MIRROR / WIKIDATA_DIR / run / f"wikidata-{run}-all.json.bz2")
                          .read_bytes())
    return {json.loads(line)["id"]: line for line in split_entity_dump(data)}


def best_values(entity: dict, prop: str) -> list[str]:
    """The best-rank values of one property: a QID for an item, the rendered text otherwise."""
    out = []
    for s in best_statements(entity["claims"].get(prop, []))[1]:
        snak = s["mainsnak"]
        if snak["snaktype"] != "value":
            continue
        v = snak["datavalue"]["value"]
        kind = snak["datavalue"]["type"]
        if kind == "wikibase-entityid":
            out.append(v.get("id") or f"Q{v['numeric-id']}")
        elif kind == "time":
            out.append(render_time(v["time"], v["precision"]))
        elif kind == "quantity":
            out.append(normalize_amount(v["amount"]))
        elif kind == "monolingualtext":
            out.append(v["text"])
        else:
            out.append(v)
    return out


def names_of(value: str, dump: dict[str, dict]) -> list[str]:
    """How a fact's value can appear in text: an item's English label and aliases (from the
    same dump), or the literal itself."""
    if value not in dump:
        return [value]
    e = dump[value]
    return [e["labels"]["en"]["value"]] + [a["value"] for a in (e.get("aliases") or {})
                                           .get("en", [])]


# --------------------------------------------------------------------------------- rebuild

def test_committed_sample_is_what_the_script_builds(tmp_path):
    builder.build_mirror(tmp_path)
    assert files_under(tmp_path) == files_under(SAMPLE_MIRROR)  # rerun the script if this fails
    builder.build_mirror(tmp_path)                        # and a rerun changes no byte
    assert files_under(tmp_path) == files_under(SAMPLE_MIRROR)


def test_every_made_up_wikitext_file_is_used():
    used = {a.wikitext_path("2016-05").name for a in MADE_UP_ARTICLES}
    used |= {a.wikitext_path("2016-06").name for a in MADE_UP_ARTICLES
             if a.qid in builder.MONTH_B_MADE_UP}
    assert {p.name for p in builder.MADE_UP_DIR.iterdir()} == used


def test_sample_stays_small():
    size = sum(len(b) for b in files_under(SAMPLE_MIRROR.parent).values())
    assert size < 4_500_000, f"data/sample is {size:,} bytes"


# --------------------------------------------------------------------------------- layout

def streams(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, uncompressed bytes) of every bz2 stream of a multistream file, in order."""
    out, pos = [], 0
    while pos < len(data):
        d = bz2.BZ2Decompressor()
        text = d.decompress(data[pos:])
        assert d.eof, f"truncated bz2 stream at {pos}"
        out.append((pos, text))
        pos = len(data) - len(d.unused_data)
    return out


@pytest.mark.parametrize("run", [RUN_A, RUN_B])
def test_every_index_offset_starts_a_bz2_stream_of_whole_pages(run):
    header, ids = None, []
    for data_path, index_path in run_parts(run):
        index = [line.split(":", 2) for line in
                 bz2.decompress(index_path.read_bytes()).decode().splitlines()]
        (_, head), *middle, (_, foot) = streams(data_path.read_bytes())
        assert head.startswith(b"<mediawiki ") and head.endswith(b"</siteinfo>\n")
        assert foot == FOOTER                     # the last stream closes the document
        header = header or head
        assert head == header                             # every part has the same header
        # the index's offsets are exactly the page streams, each of whole pages
        assert sorted({int(o) for o, _, _ in index}) == [o for o, _ in middle]
        seen = []
        for offset, stream in middle:
            assert stream.startswith(b"  <page>\n") and stream.endswith(b"  </page>\n")
            _, pages, _ = split_dump(header + stream + FOOTER)
            assert b"".join(pages) == stream and len(pages) <= PAGES_PER_STREAM
            listed = [(int(i), t) for o, i, t in index if int(o) == offset]
            assert listed == [(page_id(p), page_title(p)) for p in pages]
            seen += pages
        assert len(seen) == len(index)
        ids += [page_id(p) for p in seen]
        # the part's span names its first and last page
        assert data_path.name.endswith(f"-p{page_id(seen[0])}p"
                                       f"{page_id(seen[-1])}.bz2")
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_month_a_is_the_real_pages_plus_pear_and_the_made_up_articles():
    _, real, _ = split_dump(bz2.decompress(builder.SOURCE.read_bytes()))
    pages = run_pages(RUN_A)
    for raw in real:                                      # byte for byte
        assert pages[page_id(raw)] == raw
    extra = sorted(set(pages) - {page_id(p) for p in real})
    assert extra == [24278] + [a.page_id for a in MADE_UP_ARTICLES]
    pear = revision(pages[24278])
    assert (pear.title, pear.revid, pear.timestamp) == ("Pear", 188924, "2002-08-31T05:53:10Z")
    assert len(real) == 206 and len(pages) == 217


def test_every_sha1_is_the_texts_as_mediawiki_computes_it():
    # gensim's pages carry MediaWiki's own sha1s: the function agrees with all of them
    for run in (RUN_A, RUN_B):
        for raw in run_pages(run).values():
            page = revision(raw)
            assert page.sha1 == wikitext_sha1(page.text), (run, page.title)
    assert wikitext_sha1("") == "phoiac9h4m842xq45sp7s6u21eteeq1"  # MediaWiki's empty text


# --------------------------------------------------------------------------------- month B

def test_month_b_differs_from_month_a_exactly_by_the_intended_edits():
    a, b = run_pages(RUN_A), run_pages(RUN_B)
    sha_a = {pid: revision(raw).sha1 for pid, raw in a.items()}
    sha_b = {pid: revision(raw).sha1 for pid, raw in b.items()}
    assert set(sha_a) - set(sha_b) == DELETED == {MONTH_B_DELETED}
    assert set(sha_b) - set(sha_a) == ADDED
    changed = {pid for pid in set(sha_a) & set(sha_b) if sha_a[pid] != sha_b[pid]}
    assert changed == EDITED
    assert len(set(sha_a) & set(sha_b)) - len(changed) == 217 - 1 - 5 == 211
    for pid in set(a) & set(b) - changed:                 # unchanged: the very same bytes
        assert a[pid] == b[pid]

    for pid in EDITED - {24278}:                          # made-up revisions
        old, new = revision(a[pid]), revision(b[pid])
        assert new.parentid == old.revid and new.revid > 723_000_000
        assert new.timestamp.startswith("2016-06-01T")
        assert new.ip == builder.MADE_UP_EDITOR_IP and "not a real revision" in new.comment
    for pid, (before, after, _) in MONTH_B_EDITS.items():  # exactly the intended edit
        assert revision(b[pid]).text == revision(a[pid]).text.replace(before, after)
    pear = revision(b[24278])
    assert (pear.revid, pear.timestamp) == (638548877, "2014-12-17T21:09:18Z")
    assert revision(b[9261472]).redirect == "Pear"
    assert revision(b[411964]).title == "Computer accessibility"
    assert revision(b[411964]).redirect is None


def test_the_runs_are_the_months_of_the_pair():
    for run, month in ((RUN_A, "2016-05"), (RUN_B, "2016-06")):
        status = json.loads((SAMPLE_MIRROR / "enwiki" / run / "dumpstatus.json").read_text())
        assert status["jobs"][JOB]["status"] == "done"
        stamps = [revision(raw).timestamp for raw in run_pages(run).values()]
        assert max(stamps) < f"{run[:4]}-{run[4:6]}-{run[6:]}T09:00:00Z"
        assert f"{run}/" in (SAMPLE_MIRROR / "enwiki" / "index.html").read_text()
    listing = (SAMPLE_MIRROR / WIKIDATA_DIR / "index.html").read_text()
    assert f"{WD_A}/" in listing and f"{WD_B}/" in listing


# --------------------------------------------------------------------------------- articles

def test_made_up_articles_are_about_the_dumps_entities():
    a, b = run_pages(RUN_A), run_pages(RUN_B)
    ids = [art.page_id for art in MADE_UP_ARTICLES]
    assert ids == sorted(ids) and min(ids) > 100_000
    for run, pages in ((WD_A, a), (WD_B, b)):
        dump = entities(run)
        for art in MADE_UP_ARTICLES:
            assert dump[art.qid]["sitelinks"]["enwiki"]["title"] == art.title
            page = revision(pages[art.page_id])
            assert page.title == art.title and page.ns == 0 and page.redirect is None
            assert page.ip == builder.MADE_UP_EDITOR_IP
            assert art.qid in page.comment and "not a real revision" in page.comment
    # the real pages have no item in the dumps and the items no real page: nothing to align
    # without the made-up articles
    titles = {revision(raw).title for pid, raw in a.items() if pid < 100_000}
    sitelinks = {e["sitelinks"]["enwiki"]["title"] for e in entities(WD_A).values()
                 if isinstance(e.get("sitelinks"), dict) and "enwiki" in e["sitelinks"]}
    assert not titles & sitelinks


def test_each_fact_a_made_up_article_states_is_its_entitys_and_named_in_its_text():
    pages = run_pages(RUN_A)
    for run in (WD_A, WD_B):
        dump = entities(run)
        for art in MADE_UP_ARTICLES:
            text = revision(pages[art.page_id]).text
            for prop, value in art.facts:
                assert value in best_values(dump[art.qid], prop), (art.qid, prop, value)
                if value.startswith("Q") and value[1:].isdigit():   # the object has a label
                    assert dump[value]["labels"]["en"]["value"]
                assert any(n in text for n in names_of(value, dump)), (art.qid, prop, value)


def test_month_b_adds_a_sentence_for_each_new_fact_of_q42():
    a, b = entities(WD_A)["Q42"], entities(WD_B)["Q42"]
    changed = set()
    for prop in set(a["claims"]) | set(b["claims"]):
        old = set(best_values(a, prop)) if prop in a["claims"] else set()
        new = set(best_values(b, prop)) if prop in b["claims"] else set()
        changed |= {("Q42", prop, v) for v in new - old}
        assert not old - new, prop                        # nothing removed
    # P800 gains Q902712 (updated); P1263, P1695, P1816 are new properties
    assert changed == {f[:3] for f in MONTH_B_FACTS} | set(MONTH_B_FACTS_NOT_IN_TEXT)
    assert changed == {("Q42", "P800", "Q902712"), ("Q42", "P1263", "731/000023662"),
                       ("Q42", "P1695", "A11573065"), ("Q42", "P1816", "mp60152")}

    art = next(x for x in MADE_UP_ARTICLES if x.qid == "Q42")
    text_a = revision(run_pages(RUN_A)[art.page_id]).text
    text_b = revision(run_pages(RUN_B)[art.page_id]).text
    dump_b = entities(WD_B)
    for qid, prop, value, sentence in MONTH_B_FACTS:
        assert sentence in text_b and sentence not in text_a
        assert any(n in sentence for n in names_of(value, dump_b)), (prop, value)
    assert "{{Authority control}}" in text_a and "{{Authority control}}" in text_b
    # month B keeps every sentence of month A
    assert all(line in text_b for line in text_a.splitlines())


# --------------------------------------------------------------------------------- wikidata

def test_the_entity_dumps_differ_only_in_q42():
    lines_a, lines_b = entity_lines(WD_A), entity_lines(WD_B)
    assert set(lines_a) == set(lines_b)
    assert [i for i in lines_a if lines_a[i] != lines_b[i]] == ["Q42"]
    q42_a, q42_b = json.loads(lines_a["Q42"]), json.loads(lines_b["Q42"])
    assert q42_a["modified"] == "2015-02-13T00:11:48Z"    # wbgetentities-Q6-Q42-P31.json
    assert "modified" not in q42_b and len(q42_b["claims"]) == 61   # ...-Douglas-Adams.json
    for run in (WD_A, WD_B):                              # the real all.json format
        folder = SAMPLE_MIRROR / WIKIDATA_DIR / run
        data = bz2.decompress((folder / f"wikidata-{run}-all.json.bz2").read_bytes())
        assert gzip.decompress((folder / f"wikidata-{run}-all.json.gz").read_bytes()) == data
        assert entity_dump(split_entity_dump(data)) == data


def test_made_up_entities_are_label_only_items_and_every_other_is_real():
    dump = entities(WD_A)
    made_up = {i for i, e in dump.items() if e["type"] == "item" and not e["claims"]
               and not e["sitelinks"] and not e["descriptions"] and e["labels"]}
    # the made-up countries also hold their demonym and an enwiki sitelink (nothing else)
    countries = {i for i, e in dump.items() if e["type"] == "item"
                 and not e.get("descriptions") and set(e.get("claims") or ()) == {"P1549"}
                 and set(e.get("sitelinks") or ()) == {"enwiki"}
                 and e["claims"]["P1549"][0]["id"].endswith("$made-up-demonym-en")}
    assert countries == set(builder.MADE_UP_DEMONYMS)
    for qid, demonym in builder.MADE_UP_DEMONYMS.items():
        assert dump[qid]["claims"]["P1549"][0]["mainsnak"]["datavalue"]["value"] == {
            "text": demonym, "language": "en"}
    made_up |= countries
    assert made_up == set(MADE_UP_OBJECTS)
    made_up_props = {i for i, e in dump.items() if e["type"] == "property" and not e["claims"]
                     and not e["descriptions"] and e["labels"]}
    assert made_up_props == set(builder.MADE_UP_PROPERTIES) - {"P31"}  # P31 is real here
    made_up |= made_up_props
    dump = {i: e for i, e in dump.items() if i not in made_up_props}
    for qid, (label, aliases) in MADE_UP_OBJECTS.items():
        assert set(dump[qid]["labels"]) == {"en"}
        assert dump[qid]["labels"]["en"]["value"] == label
        assert [a["value"] for a in (dump[qid]["aliases"] or {}).get("en", [])] == list(aliases)
    real = {json.loads(line)["id"] for line in builder.load_entities()} if \
        builder.WIKIDATA_SOURCE.exists() else set(dump) - made_up
    # Real entities, less the label-less real property entities the made-up ones replace.
    assert set(dump) - made_up == real - made_up_props


def test_property_labels_in_the_dumps():
    """Which properties the facts stage can name (it falls back to the id for the others)."""
    for run in (WD_A, WD_B):
        labelled = {i for i, e in entities(run).items()
                    if e["type"] == "property" and (e.get("labels") or {}).get("en")}
        assert labelled == {"P31", "P279", "P434", "P2003", "P3467", "P8098"} \
            | set(builder.MADE_UP_PROPERTIES)
