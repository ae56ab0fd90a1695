"""A small month pair of real Wikidata entities, built with the real stages: the fixture of the
align, probes and export tests.

Facts come from the real facts and fact-diff stages on real Wikidata entity JSON
(tests/data/wikimedia/wikidata, see its README): Douglas Adams (Q42) as saved in 2015-02 (month
A) and about 2015-05 (month B), Karlsruhe (Q1040) in both months, Oliver Kahn (Q131261) only in
month B (so every fact of his is new). The diff is the real diff stage.

MADE UP for these tests (marked so where they are defined below):
- the article text of both months (ARTICLES): short articles written by us that state real
  Wikidata facts of those entities in sentences, with edits between the months;
- LABEL_ENTITIES: label-only entities for the objects and properties that the articles state
  (the real files lack them; the facts stage takes every label from the same dump). The labels
  and aliases are Wikidata's English ones, typed in.
Page ids and revision ids are made up too.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pyarrow as pa

from conftest import REAL_DATA
from twiki.engine.artifacts import ArtifactBuild, ShardWriter, shard_of
from twiki.stages.diff import diff_months
from twiki.engine.executors import LocalExecutor
from twiki.stages.extract import SCHEMA
from twiki.stages.links import build_links
from twiki.stages.factdiff import diff_facts
from twiki.stages.facts import FactsConfig, FactsRunOptions, build_facts
from twiki.stages.mapping import build_mapping
from twiki.engine.paths import DataRoot
from twiki.text.wikitext import clean_page

WD = REAL_DATA / "wikidata"
A, B = "2015-02", "2015-05"
SHARDS = 4

# ---------------------------------------------------------------------------------------
# MADE UP: article text (wikitext) of both months, written for these tests. Each sentence
# states facts that the real entities hold (comments name them).

ADAMS_A = """\
'''Douglas Noël Adams''' (11 March 1952 – 11 May 2001) was an English [[writer]] and humorist.
He is best known as the author of ''[[The Hitchhiker's Guide to the Galaxy]]''.

== Early life ==
Adams was born in [[Cambridge]], England.
He was educated at [[St John's College, Cambridge|St Johns College]].

== Death ==
Adams died of a [[myocardial infarction|heart attack]] in [[Santa Barbara, California]].
"""
# P569 11 March 1952, P570 11 May 2001, P106 writer, P800 The Hitchhiker's Guide to the Galaxy,
# P19 Cambridge, P69 St John's College (written without the apostrophe: a near match),
# P509 myocardial infarction (its alias 'heart attack'), P20 Santa Barbara, P1477 birth name.

ADAMS_B_ADDED = ("Among his other works is the comic detective novel "
                 "''[[Dirk Gently's Holistic Detective Agency]]''.")
ADAMS_B = ADAMS_A.replace(
    "He is best known as the author of ''[[The Hitchhiker's Guide to the Galaxy]]''.",
    "He is best known as the author of ''[[The Hitchhiker's Guide to the Galaxy]]''. "
    + ADAMS_B_ADDED)
# P800 Dirk Gently's Holistic Detective Agency: the value month B's Q42 adds (added_value: The
# Hitchhiker's Guide is still a notable work, so there is no old -> new).

KAHN_A = """\
'''Oliver Kahn''' is a German former [[association football|footballer]].
Kahn was born in [[Karlsruhe]].
He played as a [[goalkeeper]] for [[FC Bayern Munich|Bayern Munich]].
"""
KAHN_B = """\
'''Oliver Kahn''' (born 15 June 1969) is a German former [[association football|footballer]].
He played as a [[goalkeeper]] for [[FC Bayern Munich|Bayern Munich]].
"""
# Month B drops "born in Karlsruhe" (P19: only in removed text) and adds the birth date (P569)
# to the first sentence, which also names his occupation (P106 footballer: an alias).

KARLSRUHE = """\
'''Karlsruhe''' is a city in the southwest of [[Germany]]. In 2016 it had a population of 307,755.
"""
# P17 Germany, P1082 307755 (the entity's preferred population value). Same in both months.

ADAMS_ID, KAHN_ID, KARLSRUHE_ID = 100001, 100002, 100003
ARTICLES = {
    A: [(ADAMS_ID, "Douglas Adams", 1001, ADAMS_A), (KAHN_ID, "Oliver Kahn", 2001, KAHN_A),
        (KARLSRUHE_ID, "Karlsruhe", 3001, KARLSRUHE)],
    B: [(ADAMS_ID, "Douglas Adams", 1002, ADAMS_B), (KAHN_ID, "Oliver Kahn", 2002, KAHN_B),
        (KARLSRUHE_ID, "Karlsruhe", 3001, KARLSRUHE)],
}

# MADE UP: label-only entities (Wikidata's English labels and aliases, typed in).
ITEM_LABELS = {
    "Q350": ("Cambridge", []), "Q159288": ("Santa Barbara", ["Santa Barbara, California"]),
    "Q12152": ("myocardial infarction", ["heart attack"]),
    "Q691283": ("St John's College", ["St John's College, Cambridge"]),
    "Q25169": ("The Hitchhiker's Guide to the Galaxy", []),
    "Q902712": ("Dirk Gently's Holistic Detective Agency", []),
    "Q36180": ("writer", []), "Q463035": ("Douglas", []), "Q183": ("Germany", []),
    "Q201330": ("goalkeeper", []),
    "Q937857": ("association football player", ["footballer"]),
    "Q15789": ("FC Bayern Munich", ["Bayern Munich"]),
}
PROPERTY_LABELS = {
    "P17": ("country", "wikibase-item"), "P19": ("place of birth", "wikibase-item"),
    "P20": ("place of death", "wikibase-item"), "P27": ("country of citizenship", "wikibase-item"),
    "P31": ("instance of", "wikibase-item"), "P54": ("member of sports team", "wikibase-item"),
    "P69": ("educated at", "wikibase-item"), "P106": ("occupation", "wikibase-item"),
    "P509": ("cause of death", "wikibase-item"), "P569": ("date of birth", "time"),
    "P570": ("date of death", "time"), "P735": ("given name", "wikibase-item"),
    "P800": ("notable work", "wikibase-item"), "P1082": ("population", "quantity"),
    "P1477": ("birth name", "monolingualtext"),
}
DUMPS = {
    A: ["wbgetentities-Q6-Q42-P31.json", "wbgetentities-Q32063953.json"],
    B: ["wbgetentities-Douglas-Adams.json", "wbgetentities-Q32063953.json",
        "wbgetentites-Oliver-Kahn.json"],
}


# MADE UP likewise: Germany's English demonym (Wikidata's P1549 'German'), with the enwiki
# sitelink the real item has, so that the facts stage keeps the statement.
DEMONYMS = {"Q183": "German"}


def label_entities() -> dict:
    ents = {}
    for qid, (label, aliases) in ITEM_LABELS.items():
        ents[qid] = {"type": "item", "id": qid,
                     "labels": {"en": {"language": "en", "value": label}},
                     "aliases": {"en": [{"language": "en", "value": a} for a in aliases]}}
        if qid in DEMONYMS:
            ents[qid]["sitelinks"] = {"enwiki": {"site": "enwiki", "title": label}}
            ents[qid]["claims"] = {"P1549": [{
                "mainsnak": {"snaktype": "value", "property": "P1549", "datatype":
                             "monolingualtext", "datavalue": {"type": "monolingualtext", "value": {
                                 "text": DEMONYMS[qid], "language": "en"}}},
                "type": "statement", "id": f"{qid}$demonym", "rank": "normal"}]}
    for pid, (label, datatype) in PROPERTY_LABELS.items():
        ents[pid] = {"type": "property", "id": pid, "datatype": datatype,
                     "labels": {"en": {"language": "en", "value": label}}}
    return {"entities": ents}


# ---------------------------------------------------------------------------------------
# Building the month pair with the real stages.

# The snapshot schema of extract before stage version 4: paragraphs without their links.
SCHEMA_WITHOUT_LINKS = pa.schema([
    f if f.name != "paragraphs" else pa.field("paragraphs", pa.list_(pa.struct(
        [g for g in f.type.value_type if g.name != "links"])))
    for f in SCHEMA])


def write_snapshot(root: DataRoot, month: str, pages, shards: int = SHARDS,
                   links: bool = False) -> None:
    """A snapshot artifact as the extract stage writes it (its cleaner gives the paragraphs):
    with `links`, as extract 4 writes it (each paragraph's links); without, as extract 3 did
    (no links: alignment then goes by labels only)."""
    schema = SCHEMA if links else SCHEMA_WITHOUT_LINKS
    build = ArtifactBuild(root.snapshot("enwiki", month), stage="extract",
                          stage_version=4 if links else 3,
                          inputs={"made_up": month}, config={"shards": shards}, shards=shards,
                          schema=schema)
    ts = datetime(int(month[:4]), int(month[5:]), 1, tzinfo=timezone.utc)
    for s in range(shards):
        rows = []
        for page_id, title, revid, text in sorted(pages):
            if shard_of(page_id, shards) != s:
                continue
            paras = [{"section": list(p.section), "text": p.text,
                      **({"links": [{"start": a, "end": b, "target": t} for a, b, t in p.links]}
                         if links else {})}
                     for p in clean_page(text, title)]
            rows.append({"page_id": page_id, "title": title, "revid": revid, "timestamp": ts,
                         "sha1": hashlib.sha1(text.encode()).hexdigest(), "paragraphs": paras})
        with ShardWriter(build.shard_path(s), schema) as w:
            w.write(pa.Table.from_pylist(rows, schema=schema))
    build.publish(report={"counts": {}})


def build_pair(root: DataRoot, articles=ARTICLES, dumps=DUMPS, executor=None,
               links: bool = False) -> None:
    """Snapshots, diffset, facts (+ mapping; + the links resolved to items with `links`),
    fact diff of A -> B. Without `links` the snapshots are extract 3's (no links)."""
    executor = executor or LocalExecutor(1)
    labels = root.root / "made_up_labels.json"
    root.root.mkdir(parents=True, exist_ok=True)
    labels.write_text(json.dumps(label_entities()))
    for month in (A, B):
        write_snapshot(root, month, articles[month], links=links)
    diff_months(A, B, data_root=root, executor=executor)
    for month in (A, B):
        build_facts(month, dump=[WD / f for f in dumps[month]] + [labels], data_root=root,
                    config=FactsConfig(shards=SHARDS), options=FactsRunOptions(partitions=2),
                    executor=executor)
        build_mapping(month, data_root=root, executor=executor)
        if links:
            build_links(month, data_root=root, executor=executor)
    diff_facts(A, B, data_root=root, executor=executor)


# ---------------------------------------------------------------------------------------
# A run that dies part way, as a killed process would.

class Stopped(Exception):
    pass


class StopAfter(LocalExecutor):
    """A run that dies (as a killed process would) after `n` tasks of the phase whose progress
    description contains `phase`; other phases run normally, in this process."""

    def __init__(self, phase: str, n: int):
        super().__init__(1)
        self.phase, self.n = phase, n

    def run(self, fn, tasks, *, desc, weights=None, unit="task"):
        if self.phase in desc:
            for t in tasks[:self.n]:
                fn(t)
            raise Stopped(desc)
        return super().run(fn, tasks, desc=desc, weights=weights, unit=unit)
