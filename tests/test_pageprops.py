"""The page_props table dump: reading its wikibase_item rows, downloading it with a month, and
mapping pages to items by page id.

MADE UP for these tests: the page_props dumps below (the workplace has none; the layout is
mysqldump's, as Wikimedia publishes `<wiki>-<run>-page_props.sql.gz`, with made-up rows) and
the `pagepropstable` job added to a copy of the sample mirror's 2016-06 run. The QIDs given to
the sample's made-up articles are their own (data/sample/README.md); the others are made up.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from twiki.sources.download import download_month, download_wikidata
from twiki.errors import InputError
from twiki.stages.extract import extract_month
from twiki.stages.facts import build_facts
from twiki.stages.mapping import build_mapping
from twiki.sources.pageprops import (PAGE_PROPS_JOB, download_page_props, find_page_props,
                                     iter_wikibase_items, snapshot_page_props)
from twiki.engine.paths import DataRoot

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "mirror"
RUN = "20160601"

HEADER = b"""-- MySQL dump 10.19  Distrib 10.3.38-MariaDB, for debian-linux-gnu (x86_64)
--
-- Host: 10.64.16.77    Database: enwiki
-- ------------------------------------------------------
/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET NAMES utf8mb4 */;

--
-- Table structure for table `page_props`
--

DROP TABLE IF EXISTS `page_props`;
CREATE TABLE `page_props` (
  `pp_page` int(8) unsigned NOT NULL,
  `pp_propname` varbinary(60) NOT NULL,
  `pp_value` blob NOT NULL,
  `pp_sortkey` float DEFAULT NULL,
  PRIMARY KEY (`pp_page`,`pp_propname`),
  UNIQUE KEY `pp_propname_page` (`pp_propname`,`pp_page`)
) ENGINE=InnoDB DEFAULT CHARSET=binary;

LOCK TABLES `page_props` WRITE;
"""
FOOTER = b"UNLOCK TABLES;\n"


def dump(rows: list[tuple[int, str, str]], per_insert: int = 3) -> bytes:
    """A page_props dump of (page, propname, value) rows, escaped as mysqldump does."""
    def q(v: str) -> str:
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    lines = []
    for i in range(0, len(rows), per_insert):
        tuples = ",".join(f"({p},{q(n)},{q(v)},NULL)" for p, n, v in rows[i:i + per_insert])
        lines.append(f"INSERT INTO `page_props` VALUES {tuples};\n".encode())
    return HEADER + b"".join(lines) + FOOTER


def test_wikibase_items_are_read_and_nothing_inside_a_value_is_taken_for_a_row(tmp_path):
    rows = [
        (100001, "wikibase_item", "Q42"),
        (100001, "wikibase-shortdesc", "English writer (1952-2001)"),
        # a display title that spells a row inside its (escaped) value
        (100002, "displaytitle", "It's (7,'wikibase_item','Q5',NULL) \\"),
        (100002, "wikibase_item", "Q1299"),
        (24278, "wikibase_item", "Q13099586"),
        (24278, "page_image_free", "Pears.jpg"),
        (9999, "wikibase_item", "P31"),          # a property page: not an item
    ]
    path = tmp_path / "enwiki-20160601-page_props.sql.gz"
    path.write_bytes(gzip.compress(dump(rows)))
    assert list(iter_wikibase_items(path)) == [(100001, 42), (100002, 1299), (24278, 13099586)]


def test_truncated_or_foreign_files_are_clear_errors(tmp_path):
    data = gzip.compress(dump([(i, "wikibase_item", f"Q{i}") for i in range(1, 2000)]))
    cut = tmp_path / "cut-page_props.sql.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut-page_props.sql.gz.*truncated"):
        list(iter_wikibase_items(cut))
    other = tmp_path / "x-page.sql.gz"
    other.write_bytes(gzip.compress(b"INSERT INTO `page` VALUES (1,0,'A',0);\n"))
    with pytest.raises(InputError, match="not a MySQL dump of the page_props table"):
        list(iter_wikibase_items(other))


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """The sample's 2016-06 run with a page_props job, downloaded and extracted."""
    tmp = tmp_path_factory.mktemp("pp")
    mirror = tmp / "mirror"
    shutil.copytree(SAMPLE, mirror)
    run = mirror / "enwiki" / RUN
    name = f"enwiki-{RUN}-page_props.sql.gz"
    rows = [(100001, "wikibase_item", "Q42"), (100002, "wikibase_item", "Q1299"),
            (100003, "wikibase_item", "Q20145"),
            # Pyrus (a redirect: no article in the snapshot) and a page id of no page
            (24279, "wikibase_item", "Q13099586"), (77777777, "wikibase_item", "Q7")]
    (run / name).write_bytes(gzip.compress(dump(rows), mtime=0))
    status = json.loads((run / "dumpstatus.json").read_text())
    status["jobs"][PAGE_PROPS_JOB] = {"status": "done", "updated": "2016-06-01 09:46:03",
                                      "files": {name: {
                                          "size": (run / name).stat().st_size,
                                          "url": f"/enwiki/{RUN}/{name}",
                                          "sha1": hashlib.sha1((run / name).read_bytes())
                                          .hexdigest()}}}
    (run / "dumpstatus.json").write_text(json.dumps(status))
    root = DataRoot(tmp / "data")
    download_month("2016-06", mirrors=[str(mirror)], data_root=root)
    extract_month("2016-06", data_root=root)
    download_wikidata("2016-06", mirrors=[str(mirror)], data_root=root)
    return mirror, root


def test_page_props_of_the_snapshot_run_map_pages_by_id(month):
    mirror, root = month
    assert find_page_props(root, "enwiki", "2016-06", RUN) is None       # not downloaded yet
    path = download_page_props("2016-06", wiki="enwiki", mirrors=[str(mirror)], data_root=root,
                               run=RUN)
    assert path == root.raw("enwiki", RUN) / f"enwiki-{RUN}-page_props.sql.gz"
    assert find_page_props(root, "enwiki", "2016-06", "20160501") is None  # another run's
    build_facts("2016-06", data_root=root)
    m = build_mapping("2016-06", data_root=root,
                      page_props=snapshot_page_props(root, "enwiki", "2016-06"))
    assert m.manifest["report"]["source"] == "page_props"
    rows = sorted(pq.read_table(m.path).select(["qid", "page_id", "title", "match"]).to_pylist(),
                  key=lambda r: r["page_id"])
    assert rows == [
        {"qid": "Q42", "page_id": 100001, "title": "Douglas Adams", "match": "page_props"},
        {"qid": "Q1299", "page_id": 100002, "title": "The Beatles", "match": "page_props"},
        {"qid": "Q20145", "page_id": 100003, "title": "IU (entertainer)", "match": "page_props"}]
    c = m.manifest["report"]["counts"]
    assert c["page_props_items"] == 5 and c["mapped"] == 3
    assert c["page_props_items_not_in_snapshot"] == 2
    assert c["articles_without_item"] == c["articles"] - 3


def test_a_run_without_the_job_falls_back_to_titles(tmp_path):
    root = DataRoot(tmp_path / "data")
    download_month("2016-06", mirrors=[str(SAMPLE)], data_root=root)
    extract_month("2016-06", data_root=root)
    download_wikidata("2016-06", mirrors=[str(SAMPLE)], data_root=root)
    assert download_page_props("2016-06", wiki="enwiki", mirrors=[str(SAMPLE)], data_root=root,
                               run=RUN) is None
    build_facts("2016-06", data_root=root)
    m = build_mapping("2016-06", data_root=root,
                      page_props=snapshot_page_props(root, "enwiki", "2016-06"))
    assert m.manifest["report"]["source"] == "sitelink_titles"
    assert {r["match"] for r in pq.read_table(m.path, columns=["match"]).to_pylist()} == {"title"}
