"""The real Wikipedia articles shipped in tests/data/wikimedia, as wikitext: the 34 raw-wikitext
articles and the main-namespace pages of the shortened enwiki pages-articles bz2. Shared by the
cleaner's tests and its benchmark (`benchmarks.bench_wikitext`), which read the same pages."""

from __future__ import annotations

import bz2
import xml.etree.ElementTree as ET
from pathlib import Path

WIKIMEDIA = Path(__file__).resolve().parent / "data" / "wikimedia"
RAW_ARTICLES = WIKIMEDIA / "wikitext"
ENWIKI_DUMP = (WIKIMEDIA / "enwiki"
               / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")


def raw_articles() -> dict[str, str]:
    """file stem -> wikitext of the raw articles, in file-name order."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(RAW_ARTICLES.glob("*.txt"))}


def dump_articles(path: Path = ENWIKI_DUMP) -> dict[str, str]:
    """title -> wikitext for the main-namespace, non-redirect pages of a pages-articles dump."""
    articles: dict[str, str] = {}
    with bz2.open(path) as f:
        title, ns, text, redirect = None, None, None, False
        for _, el in ET.iterparse(f):
            tag = el.tag.rsplit("}", 1)[-1]
            if tag == "title":
                title = el.text
            elif tag == "ns":
                ns = el.text
            elif tag == "redirect":
                redirect = True
            elif tag == "text":
                text = el.text or ""
            elif tag == "page":
                if ns == "0" and not redirect and text is not None:
                    articles[title] = text
                title, ns, text, redirect = None, None, None, False
                el.clear()
    return articles
