"""Comparison forms of text: the diff's key (word characters only) and alignment's search form
(words separated by single spaces, diacritics and thousands separators dropped)."""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache

_NON_WORD = re.compile(r"[\W_]+")


def compare_key(text: str, casefold: bool = True) -> str:
    """Comparison key of a piece of text: word characters only (punctuation, symbols and
    whitespace dropped), casefolded. Two texts that differ only in whitespace or punctuation
    have the same key; a key that occurs inside another text's key is text it already has."""
    return _NON_WORD.sub("", text.casefold() if casefold else text)


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# Punctuation, symbols and whitespace become one space; a point between digits is kept, so
# that "31.58" stays one word and does not match "31 58".
_SEPARATORS = re.compile(r"(?:[^\w.]|_|(?<!\d)\.|\.(?!\d))+")


@lru_cache(maxsize=1)
def _combining() -> dict[int, None]:
    return {cp: None for cp in range(sys.maxunicode + 1)
            if unicodedata.combining(chr(cp))}


def search_form(text: str) -> str:
    """Comparison form of text: diacritics stripped (NFKD), casefolded, thousands separators
    dropped, punctuation and whitespace collapsed to single spaces. Words are then whole-word
    searchable as ' ' + form + ' ' in ' ' + text + ' '."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).translate(_combining())
    text = _THOUSANDS.sub("", text.casefold())
    return _SEPARATORS.sub(" ", text).strip()


def normalize_title(title: str) -> str:
    """MediaWiki's canonical form of a page title: NFC, underscores as spaces, no surrounding
    or repeated spaces, first letter upper-case (enwiki is a 'first-letter' wiki). Link
    targets, redirects and the page <-> item mapping all compare titles in this form."""
    t = unicodedata.normalize("NFC", title).replace("_", " ")
    t = " ".join(t.split())
    return t[:1].upper() + t[1:]
