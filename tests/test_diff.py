"""The diff stage: real two-date data (Pear 2002 -> 2014), constructed edits on real articles
(the gensim enwiki sample), each asserting exactly which text lands in the diffset; resume after
SIGKILL; no-op; errors; training-text export.

Snapshots are made by the real extract stage from a raw run folder laid out as the download
stage leaves it (a plain non-multistream pages-articles .xml.bz2 plus its manifest).
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from twiki.sources import download
from twiki.engine.artifacts import ArtifactBuild, ShardWriter, read_manifest, shard_name, shard_of
from twiki.stages.diff import DiffConfig, diff_article, diff_months
from twiki.text.normalize import compare_key
from twiki.text.sentences import sentence_spans, split_sentences
from twiki.errors import ConfigError, TwikiError
from twiki.engine.executors import LocalExecutor
from twiki.stages.extract import SCHEMA, ExtractConfig, extract_month
from twiki.stages.training_text import export_training_text, iter_documents
from twiki.engine.paths import DataRoot
from twiki.text.wikitext import clean_wikitext
from conftest import REAL_DATA
from mirror_kit import wikitext_sha1

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REAL_DATA / "enwiki"
GENSIM = SAMPLE / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
W2V = SAMPLE / "enwiki-pages-articles-sample.xml.bz2"
SHARDS = 8
A, B = "2016-05", "2016-06"


# ---------------------------------------------------------------------------------------
# Real pages and the raw dump folder the extract stage reads.

def read_pages(path: Path, last_revision: bool = True) -> list[dict]:
    """Pages of a MediaWiki XML export (trusted sample file), newest revision of each."""
    opener = bz2.open if path.suffix == ".bz2" else open
    pages = []
    with opener(path, "rb") as f:
        for _, el in ET.iterparse(f):
            if el.tag.rsplit("}", 1)[-1] != "page":
                continue
            kids = {c.tag.rsplit("}", 1)[-1]: c for c in el}
            revs = [c for c in el if c.tag.endswith("revision")]
            rev = {c.tag.rsplit("}", 1)[-1]: c for c in revs[-1 if last_revision else 0]}
            pages.append({
                "id": int(kids["id"].text), "title": kids["title"].text,
                "ns": int(kids["ns"].text) if "ns" in kids else 0,
                "redirect": kids["redirect"].get("title") if "redirect" in kids else None,
                "revid": int(rev["id"].text), "timestamp": rev["timestamp"].text,
                "sha1": rev["sha1"].text if "sha1" in rev else None,
                "text": rev["text"].text or "",
            })
            el.clear()
    return pages


def page_xml(p: dict) -> str:
    redirect = f"    <redirect title={quoteattr(p['redirect'])} />\n" if p.get("redirect") else ""
    sha1 = f"      <sha1>{p['sha1']}</sha1>\n" if p.get("sha1") else ""
    return (f"  <page>\n    <title>{escape(p['title'])}</title>\n    <ns>{p['ns']}</ns>\n"
            f"    <id>{p['id']}</id>\n{redirect}    <revision>\n      <id>{p['revid']}</id>\n"
            f"      <timestamp>{p['timestamp']}</timestamp>\n      <model>wikitext</model>\n"
            f"      <format>text/x-wiki</format>\n"
            f"      <text xml:space=\"preserve\">{escape(p['text'])}</text>\n{sha1}"
            f"    </revision>\n  </page>\n")


def extract_pages(data_root: DataRoot, month: str, pages: list[dict], shards: int = SHARDS):
    """Lay out month's raw run as the download stage does, then run the real extract stage."""
    run = month.replace("-", "") + "01"
    folder = data_root.raw("enwiki", run)
    folder.mkdir(parents=True)
    name = f"enwiki-{run}-pages-articles-multistream.xml.bz2"
    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" '
           'xml:lang="en">\n' + "".join(page_xml(p) for p in pages) + "</mediawiki>\n")
    data = bz2.compress(xml.encode("utf-8"))
    (folder / name).write_bytes(data)
    (folder / "_manifest.json").write_text(json.dumps({
        "stage": download.STAGE, "wiki": "enwiki", "run": run, "month": month,
        "job": download.DEFAULT_JOB,
        "files": [{"name": name, "size": len(data), "sha1": hashlib.sha1(data).hexdigest(),
                   "md5": hashlib.md5(data).hexdigest(), "verified_with": "sha1"}]}))
    return extract_month(month, wiki="enwiki", data_root=data_root,
                         config=ExtractConfig(shards=shards))


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"edit anchor not found exactly once: {old[:60]!r}"
    return text.replace(old, new)


def edited(p: dict, text: str | None = None, title: str | None = None) -> dict:
    text = p["text"] if text is None else text
    return {**p, "text": text, "title": title or p["title"],
            "revid": p["revid"] + 10**9 if text != p["text"] else p["revid"],
            "timestamp": "2016-05-20T12:00:00Z" if text != p["text"] else p["timestamp"],
            "sha1": wikitext_sha1(text) if text != p["text"] else p["sha1"]}


# The constructed edits: title -> (edit, exactly the diffset rows it must give).
ANIMALIA_NEW = ("Animalia was reissued in 2016 as a board book for toddlers. The board book "
                "edition has twelve pages.")
CONNES_NEW = "In 2015 Connes gave the Hardy Lecture of the London Mathematical Society."
ACTRIUS_NEW = "The film was restored and re-released in Barcelona in 2016."
ASTRONOMER_CHANGED = ("The American Astronomical Society, which is the major organization of "
                      "professional astronomers in North America, has approximately 8,000 "
                      "members.")
AA_CHANGED = "Aa is the name of many small rivers in Europe."


def month_b(pages: list[dict], accessibility: dict) -> list[dict]:
    out = []
    for p in pages:
        t, text = p["title"], p["text"]
        if t == "Animalia (book)":  # insertion at the start of the article
            p = edited(p, replace_once(text, "'''''Animalia''''' is an illustrated",
                                       ANIMALIA_NEW + "\n\n'''''Animalia''''' is an illustrated"))
        elif t == "Alain Connes":  # insertion in the middle, between two paragraphs
            p = edited(p, replace_once(text, "\n\nConnes has applied his work",
                                       f"\n\n{CONNES_NEW}\n\nConnes has applied his work"))
        elif t == "Actrius":  # insertion at the end of the prose
            p = edited(p, replace_once(text, "\n\n==References==",
                                       f"\n\n{ACTRIUS_NEW}\n\n==References=="))
        elif t == "Astronomer":  # one sentence changed inside a paragraph
            p = edited(p, replace_once(text, "has approximately 7,000 members",
                                       "has approximately 8,000 members"))
        elif t == "Answer":  # a paragraph moved to the top
            moved = text[text.index('In music an "'):text.index("\n\n==Notes==")]
            text = text.replace("\n\n" + moved, "")
            p = edited(p, replace_once(text, "Generally, an '''answer'''",
                                       moved + "\n\nGenerally, an '''answer'''"))
        elif t == "Adventure":  # whitespace only: doubled spaces, a line break in a paragraph
            text = replace_once(text, "It may also be a bold, usually",
                                "It may  also be a bold,\nusually")
            p = edited(p, replace_once(text, "pursuit in and of itself.",
                                       "pursuit in and  of itself. "))
        elif t == "Abstract (law)":  # punctuation only
            text = replace_once(
                text, "The Abstract of Title, used in [[real estate]] transactions, is",
                "The Abstract of Title used in [[real estate]] transactions is")
            p = edited(p, replace_once(text, "several related legal papers.",
                                       "several related legal papers;"))
        elif t == "Ampere":  # markup only (a reference date): sha1 changes, clean text does not
            p = edited(p, replace_once(text, "accessdate =21 November 2011",
                                       "accessdate =22 November 2011"))
        elif t == "Algorithms (journal)":  # renamed, same text
            p = edited(p, title="Algorithms (MDPI journal)")
        elif t == "Aa River":  # renamed and edited
            p = edited(p, replace_once(
                text, "is the name of a large number of small European rivers.",
                "is the name of many small rivers in Europe."), title="Aa (river)")
        elif t == "Alien":  # deleted
            continue
        out.append(p)
    out.append(accessibility)  # a new article
    return sorted(out, key=lambda p: p["id"])


@pytest.fixture(scope="module")
def real_pages():
    pages = read_pages(GENSIM)
    w2v = {p["title"]: p for p in read_pages(W2V)}
    return pages, w2v


@pytest.fixture(scope="module")
def two_months(tmp_path_factory, real_pages):
    """Month A: the gensim sample as it is; month B: the same with the edits above, Alien
    deleted, and the real 2014 article "Computer accessibility" new."""
    pages, w2v = real_pages
    root = DataRoot(tmp_path_factory.mktemp("months"))
    extract_pages(root, A, pages)
    extract_pages(root, B, month_b(pages, w2v["Computer accessibility"]))
    return root


@pytest.fixture(scope="module")
def diffed(two_months):
    result = diff_months(A, B, wiki="enwiki", data_root=two_months, executor=LocalExecutor(1))
    return result


def rows(folder: Path) -> dict[int, list[tuple]]:
    t = pq.read_table(folder).to_pylist()
    out: dict[int, list] = {}
    for r in sorted(t, key=lambda r: (r["page_id"], r["position"])):
        out.setdefault(r["page_id"], []).append((r["kind"], tuple(r["section"]), r["text"]))
    return out


def page_id(pages, title):
    return next(p["id"] for p in pages if p["title"] == title)


# ---------------------------------------------------------------------------------------
# Constructed edits on real articles: exactly which text lands in the diffset.

def test_insertions_at_start_middle_and_end_are_kept_whole(diffed, real_pages):
    pages, _ = real_pages
    got = rows(diffed.path)
    assert got[page_id(pages, "Animalia (book)")] == [("changed", (), ANIMALIA_NEW)]
    assert got[page_id(pages, "Alain Connes")] == [("changed", ("Work",), CONNES_NEW)]
    assert got[page_id(pages, "Actrius")] == [
        ("changed", ("Recognition", "Awards and nominations"), ACTRIUS_NEW)]


def test_changed_sentence_is_the_only_text_and_old_one_is_removed(diffed, real_pages):
    pages, _ = real_pages
    pid = page_id(pages, "Astronomer")
    assert rows(diffed.path)[pid] == [("changed", ("Academic",), ASTRONOMER_CHANGED)]
    assert rows(diffed.parts["removed"])[pid] == [
        ("removed", ("Academic",), ASTRONOMER_CHANGED.replace("8,000", "7,000"))]


def test_moved_whitespace_punctuation_and_markup_edits_add_no_text(diffed, real_pages):
    pages, _ = real_pages
    got = rows(diffed.path)
    arts = {r["title"]: r for r in pq.read_table(diffed.parts["articles"]).to_pylist()}
    for title in ["Answer", "Adventure", "Abstract (law)", "Ampere"]:
        assert page_id(pages, title) not in got, title
        assert arts[title]["status"] == "edited" and not arts[title]["in_diffset"], title
    assert arts["Answer"]["paragraphs_moved"] == 1
    assert arts["Answer"]["paragraphs_unchanged"] == 5
    assert page_id(pages, "Answer") not in rows(diffed.parts["removed"])


def test_rename_is_an_edit_not_a_new_article(diffed, real_pages):
    pages, _ = real_pages
    arts = {r["page_id"]: r for r in pq.read_table(diffed.parts["articles"]).to_pylist()}
    aa = page_id(pages, "Aa River")
    assert rows(diffed.path)[aa] == [("changed", (), AA_CHANGED)]
    table = pq.read_table(diffed.path).to_pylist()
    row = next(r for r in table if r["page_id"] == aa)
    assert (row["title"], row["kind"]) == ("Aa (river)", "changed")
    assert arts[aa]["old_title"] == "Aa River" and arts[aa]["renamed"]
    journal = page_id(pages, "Algorithms (journal)")
    assert journal not in rows(diffed.path)
    assert arts[journal]["status"] == "unchanged" and arts[journal]["renamed"]
    assert arts[journal]["title"] == "Algorithms (MDPI journal)"


def test_deleted_is_counted_and_new_article_is_whole(diffed, real_pages):
    pages, w2v = real_pages
    got = rows(diffed.path)
    alien = page_id(pages, "Alien")
    assert alien not in got
    arts = {r["page_id"]: r for r in pq.read_table(diffed.parts["articles"]).to_pylist()}
    assert arts[alien]["status"] == "deleted"
    new = w2v["Computer accessibility"]
    expected = [("new", s, t) for s, t in clean_wikitext(new["text"], new["title"])]
    assert got[new["id"]] == expected
    assert got[new["id"]][0][2].startswith("In human–computer interaction, computer access")
    table = pq.read_table(diffed.path).to_pylist()
    assert {r["old_revid"] for r in table if r["page_id"] == new["id"]} == {None}


def test_only_edited_and_new_pages_are_in_the_diffset_and_report_adds_up(diffed, real_pages):
    pages, _ = real_pages
    articles = [p for p in pages if p["ns"] == 0 and not p["redirect"]]
    changed = {"Animalia (book)", "Alain Connes", "Actrius", "Astronomer", "Aa River"}
    assert set(rows(diffed.path)) == {page_id(pages, t) for t in changed} | {411964}
    r = diffed.report
    assert r["pages"] == {
        "in_old_snapshot": len(articles), "in_new_snapshot": len(articles),
        "unchanged": len(articles) - 10,
        "edited": 9, "new": 1, "deleted": 1, "renamed": 2, "edited_without_new_text": 4}
    assert r["diffset"]["articles"] == 6 and r["diffset"]["new_articles"] == 1
    assert r["share_of_snapshot"]["articles"] == round(6 / len(articles), 6)
    chars = sum(len(t) for rs in rows(diffed.path).values() for _, _, t in rs)
    assert r["diffset"]["chars"] == chars


def test_rows_are_sorted_and_carry_provenance(diffed):
    t = pq.read_table(diffed.path)
    assert t.schema.field("page_id").type == pa.int64()
    for s in range(SHARDS):
        part = pq.read_table(diffed.path / shard_name(s)).to_pylist()
        keys = [(r["page_id"], r["position"]) for r in part]
        assert keys == sorted(keys)
        assert all(shard_of(r["page_id"], SHARDS) == s for r in part)
    m = read_manifest(diffed.path)
    assert m["config"]["from"] == A and m["config"]["to"] == B
    assert set(m["inputs"]) == {"old", "new"}


# ---------------------------------------------------------------------------------------
# Real two-date data.

def test_pear_2002_to_2014(tmp_path):
    root = DataRoot(tmp_path)
    old = read_pages(SAMPLE / "article-pear.xml")[0]  # newest of its four 2002 revisions
    new = read_pages(SAMPLE / "article-pear-0.10.xml")[0]
    assert (old["id"], old["revid"], new["revid"]) == (24278, 188924, 638548877)
    extract_pages(root, "2002-09", [old], shards=2)
    extract_pages(root, "2014-12", [new], shards=2)
    res = diff_months("2002-09", "2014-12", data_root=root)
    got = rows(res.path)[24278]
    kept = ("Other species are used as rootstocks for European and Asian pears and as "
            "ornamental trees.")
    # Every 2014 paragraph is new text, except the one sentence the 2002 article already had.
    expected = []
    for section, text in clean_wikitext(new["text"], "Pear"):
        if text.startswith(kept):
            text = text[len(kept) + 1:]
            assert text.startswith("The Manchurian or Ussurian Pear")
        expected.append(("changed", section, text))
    assert got == expected
    assert all(kept not in t for _, _, t in got)
    texts = " ".join(t for _, _, t in got)
    assert "Pears are consumed fresh, canned, as juice, and dried." in texts
    assert "Fermented pear juice is called perry or pear cider." in texts
    removed = " ".join(t for _, _, t in rows(res.parts["removed"])[24278])
    assert "Unlike most fruits, European pears do not ripen on the tree." in removed
    assert kept not in removed
    table = pq.read_table(res.path).to_pylist()
    assert {(r["title"], r["old_revid"], r["new_revid"]) for r in table} == {
        ("Pear", 188924, 638548877)}
    assert res.report["pages"]["edited"] == 1 and res.report["pages"]["new"] == 0


def test_same_revision_from_two_dump_files_is_unchanged(tmp_path):
    """AccessibleComputing rev 631144794 is in both the gensim and the wikipedia2vec sample
    files: same sha1, so unchanged without being parsed. (It is a redirect, which the extract
    stage drops, so these two snapshots are written directly in the snapshot format.)"""
    a = next(p for p in read_pages(GENSIM) if p["id"] == 10)
    b = next(p for p in read_pages(W2V) if p["id"] == 10)
    assert a["revid"] == b["revid"] == 631144794 and a["sha1"] == b["sha1"]
    root = DataRoot(tmp_path)
    for month, p in [("2016-05", a), ("2016-06", b)]:
        build = ArtifactBuild(root.snapshot("enwiki", month), stage="extract", stage_version=1,
                              inputs={"file": month}, config={}, shards=1, schema=SCHEMA)
        with ShardWriter(build.shard_path(0), SCHEMA) as w:
            w.write(pa.table({
                "page_id": [p["id"]], "title": [p["title"]], "revid": [p["revid"]],
                "timestamp": [datetime.strptime(p["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
                              .replace(tzinfo=timezone.utc)],
                "sha1": [p["sha1"]],
                "paragraphs": [[{"section": list(s), "text": t}
                                for s, t in clean_wikitext(p["text"], p["title"])]]},
                schema=SCHEMA))
        build.publish()
    res = diff_months("2016-05", "2016-06", data_root=root)
    assert res.report["pages"]["unchanged"] == 1
    assert res.report["diffset"]["articles"] == 0 and res.manifest["rows"] == 0
    assert pq.read_table(res.parts["articles"]).num_rows == 0


# ---------------------------------------------------------------------------------------
# The algorithm alone, on real paragraphs.

def test_diff_article_on_real_paragraphs_edits_at_both_ends():
    text = (SAMPLE.parent / "wikitext" / "toronto_star.txt").read_text(encoding="utf-8")
    old = clean_wikitext(text, "Toronto Star")
    assert len(old) > 4
    first_s, first_t = old[0]
    last_s, last_t = old[-1]
    new = ([(first_s, "A new lead sentence about the newspaper appeared in 2020.")]
           + [(first_s, first_t + " It moved its printing plant in 2020.")] + old[1:-1]
           + [(last_s, last_t.upper())] + [(last_s, "A closing paragraph was added.")])
    d = diff_article(old, new)
    assert [(t.kind, t.section, t.text) for t in d.added] == [
        ("changed", first_s, "A new lead sentence about the newspaper appeared in 2020."),
        ("changed", first_s, "It moved its printing plant in 2020."),
        ("changed", last_s, "A closing paragraph was added."),
    ]  # the upper-cased last paragraph is a case-only edit: not new text
    assert d.removed == []
    assert d.counts["paragraphs_inserted"] == 2 and d.counts["paragraphs_edited"] == 1
    strict = diff_article(old, new, DiffConfig(casefold=False))
    assert (strict.added[2].text, strict.added[2].paragraph) == (last_t.upper(), len(new) - 2)


def test_split_and_merged_paragraphs_add_nothing():
    text = (SAMPLE.parent / "wikitext" / "statoil.txt").read_text(encoding="utf-8")
    old = clean_wikitext(text, "Statoil")
    i = next(k for k, (_, t) in enumerate(old) if len(split_sentences(t)) >= 3)
    s, t = old[i]
    sents = split_sentences(t)
    split = old[:i] + [(s, sents[0]), (s, " ".join(sents[1:]))] + old[i + 1:]
    assert diff_article(old, split).added == []
    merged = old[:i] + [(s, t + " " + old[i + 1][1])] + old[i + 2:]
    assert diff_article(old, merged).added == []


def test_punctuation_that_rejoins_sentences_is_not_new_but_a_cut_sentence_is():
    text = (SAMPLE.parent / "wikitext" / "statoil.txt").read_text(encoding="utf-8")
    old = clean_wikitext(text, "Statoil")
    i = next(k for k, (_, t) in enumerate(old) if len(sentence_spans(t)) >= 3
             and t[sentence_spans(t)[0][1] - 1] == "." and len(split_sentences(t)[2].split()) > 4)
    s, t = old[i]
    (_, end0), _, (a, b) = sentence_spans(t)[:3]
    cut = " ".join(t[a:b].rstrip(".").split()[:-2]) + "."  # "... of Y until 2019." -> "... of Y."
    # In one paragraph: "A. B" -> "A; B" (one sentence now, no new text) and a sentence cut.
    new = list(old)
    new[i] = (s, t[:end0 - 1] + ";" + t[end0:a] + cut + t[b:])
    d = diff_article(old, new)
    assert [(x.section, x.text) for x in d.added] == [(s, cut)]
    assert [(x.section, x.text) for x in d.removed] == [(s, t[a:b])]


def test_sentence_splitter_and_normalization():
    assert split_sentences("P. communis grows in the U.S. and Europe. It was named by "
                           "J. R. R. Tolkien. No. 5 is big! \"Quoted.\" Then it ends.") == [
        "P. communis grows in the U.S. and Europe.", "It was named by J. R. R. Tolkien.",
        "No. 5 is big!", "\"Quoted.\"", "Then it ends."]
    assert compare_key("Hello,  World!") == compare_key("hello world") == "helloworld"


# ---------------------------------------------------------------------------------------
# The stage: no-op, errors, resume after SIGKILL.

def test_rerun_is_a_noop(diffed, two_months):
    again = diff_months(A, B, data_root=two_months)
    assert again.state == "current" and again.shards_built == 0
    assert again.manifest["key"] == diffed.manifest["key"]


def test_missing_snapshot_and_shard_mismatch_are_clear_errors(tmp_path, two_months):
    with pytest.raises(TwikiError, match=r"run `twiki snapshot --month 2016-07` first"):
        diff_months(B, "2016-07", data_root=two_months)
    with pytest.raises(ConfigError, match="earlier month"):
        diff_months(B, A, data_root=two_months)
    root = DataRoot(tmp_path)
    shutil.copytree(two_months.snapshot("enwiki", A), root.snapshot("enwiki", A))
    pear = read_pages(SAMPLE / "article-pear-0.10.xml")
    extract_pages(root, B, pear, shards=SHARDS // 2)
    with pytest.raises(TwikiError, match=r"have 8 and 4 shards"):
        diff_months(A, B, data_root=root)


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from twiki.stages.diff import diff_months
    from twiki.engine.executors import Executor
    from twiki.engine.paths import DataRoot

    class OneByOne(Executor):
        # Runs the shards in this process with a pause after each, so that the parent
        # can kill the run between (or during) shards.
        workers = 1
        def run(self, fn, tasks, *, desc, weights=None, unit="task"):
            out = []
            for t in tasks:
                out.append(fn(t))
                time.sleep(0.3)
            return out

    diff_months(sys.argv[2], sys.argv[3], data_root=DataRoot(Path(sys.argv[1])),
                executor=OneByOne())
""")


def test_sigkill_mid_run_then_rerun_is_byte_identical(tmp_path, two_months):
    roots = []
    for name in ("killed", "clean"):
        root = DataRoot(tmp_path / name)
        shutil.copytree(two_months.root / "snapshots", root.root / "snapshots")
        roots.append(root)
    killed, clean = roots
    final = killed.diffset("enwiki", A, B)
    staging = final.with_name(final.name + ".partial")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(killed.root), A, B], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(staging.glob("part-*.parquet"))) < 2:
        assert child.poll() is None, f"the run ended before it was killed: {child.stderr.read()}"
        assert time.monotonic() < deadline, "no shard was written in time"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert read_manifest(final) is None  # nothing published by the killed run
    assert 2 <= len(list(staging.glob("part-*.parquet"))) < SHARDS
    # A shard is done when all three of its outputs were written before the kill.
    stagings = [final.with_name(final.name + suffix + ".partial")
                for suffix in ("", "_removed", "_articles")]
    done = sum(all((f / shard_name(s)).exists() for f in stagings) for s in range(SHARDS))
    assert done >= 1

    resumed = diff_months(A, B, data_root=killed, executor=LocalExecutor(2))
    reference = diff_months(A, B, data_root=clean, executor=LocalExecutor(1))
    assert resumed.shards_built == SHARDS - done and reference.shards_built == SHARDS
    for got, want in [(resumed.path, reference.path),
                      (resumed.parts["removed"], reference.parts["removed"]),
                      (resumed.parts["articles"], reference.parts["articles"])]:
        names = sorted(p.name for p in want.glob("part-*.parquet"))
        assert sorted(p.name for p in got.iterdir()) == ["_manifest.json"] + names
        for n in names:
            assert (got / n).read_bytes() == (want / n).read_bytes(), f"{got.name}/{n}"
    assert resumed.report == reference.report
    assert not staging.exists()


# ---------------------------------------------------------------------------------------
# Training text.

def test_training_documents_from_diffset_and_snapshot(diffed, two_months, tmp_path, real_pages):
    pages, _ = real_pages
    docs = list(iter_documents(diffed.path, view="diffset"))
    by_id = {d["page_id"]: d for d in docs}
    assert len(docs) == len(by_id) == 6
    assert by_id[page_id(pages, "Animalia (book)")] == {
        "page_id": page_id(pages, "Animalia (book)"), "title": "Animalia (book)",
        "text": ANIMALIA_NEW}
    chunks = list(iter_documents(diffed.path, view="diffset", unit="chunk"))
    assert len(chunks) == diffed.manifest["rows"]
    snap = two_months.snapshot("enwiki", B)
    snap_docs = list(iter_documents(snap, view="snapshot"))
    assert len(snap_docs) == read_manifest(snap)["rows"]
    accessibility = next(d for d in snap_docs if d["page_id"] == 411964)
    # A new article's diffset document is the whole article, as in the snapshot.
    assert accessibility["text"] == by_id[411964]["text"]
    assert accessibility["text"].count("\n\n") == len(rows(diffed.path)[411964]) - 1

    out = tmp_path / "train"
    m = export_training_text(diffed.path, out, view="diffset")
    assert m["rows"] == 6
    assert sorted(pq.read_table(out).to_pylist(), key=lambda d: d["page_id"]) == sorted(
        docs, key=lambda d: d["page_id"])
    assert export_training_text(diffed.path, out, view="diffset")["key"] == m["key"]
    with pytest.raises(ConfigError, match="not a snapshot"):
        list(iter_documents(diffed.path, view="snapshot"))
