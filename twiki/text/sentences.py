"""Sentence splitting: a rule-based splitter (the diff's unit of new text) and spaCy's
sentencizer (alignment's evidence sentences)."""

from __future__ import annotations

import re

# Sentence end: terminal punctuation, closing quotes/brackets, then whitespace.
_BOUNDARY = re.compile(r"(?P<end>[.!?…]+[\"'”’»)\]]*)\s+")
_OPENERS = "\"'“‘«([¿¡"
# Words after which a period does not end a sentence (compared casefolded, without the dot).
ABBREVIATIONS = frozenset("""
    mr mrs ms dr prof st jr sr messrs gen col lt sgt capt cmdr adm maj rev hon gov sen rep pres
    fr sra srta no nos nr vol vols pp ed eds fig figs ch sec art approx ca cf vs al
    inc ltd co corp bros mt ft jan feb mar apr jun jul aug sep sept oct nov dec b d c r fl
    op cit ibid viz resp dept univ assn est
""".split())  # not "etc": it ends sentences as often as not
_DOTTED = re.compile(r"(?:[^\W\d_]\.){2,}")  # U.S., e.g., i.e., Ph.D.


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of a paragraph, rule-based: a sentence ends at . ! ? …
    (with closing quotes or brackets) followed by whitespace and an upper-case letter, a digit
    or an opening quote/bracket; not after an abbreviation, an initial or a dotted acronym."""
    spans: list[tuple[int, int]] = []
    start = 0
    n = len(text)
    for m in _BOUNDARY.finditer(text):
        nxt = m.end()
        if nxt >= n:
            break
        c = text[nxt]
        if not (c.isupper() or c.isdigit() or c in _OPENERS):
            continue
        punct = m.start("end")
        if text[punct] == "." and _is_abbreviation(text, start, punct):
            continue
        spans.append((start, m.end("end")))
        start = nxt
    end = len(text.rstrip())
    if start < end:
        spans.append((start, end))
    return spans


def _is_abbreviation(text: str, start: int, dot: int) -> bool:
    """Whether the word ending at text[dot] == '.' is an abbreviation or an initial."""
    i = dot
    while i > start and not text[i - 1].isspace():
        i -= 1
    word = text[i:dot].lstrip(_OPENERS)
    if not word:
        return False
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. R. R. Tolkien", "P. communis"
    if _DOTTED.fullmatch(word + "."):
        return True
    return word.casefold() in ABBREVIATIONS


def split_sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


_NLP = None


def sentencizer():
    """The process's spaCy pipeline: `spacy.blank("en")` + `sentencizer` (no model to download;
    its tokenizer knows English abbreviations, so 'Dr. Smith' and 'U.S.' do not end sentences)."""
    global _NLP
    if _NLP is None:
        import sys
        # thinc (under spaCy) imports torch when it is installed (the LM extra), ~200 MB of
        # memory per worker that sentence splitting never uses: hide it during the import.
        hide = "torch" not in sys.modules
        if hide:
            sys.modules["torch"] = None
        try:
            import spacy
        finally:
            if hide:
                del sys.modules["torch"]
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        _NLP = nlp
    return _NLP


def spacy_sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of a paragraph, whitespace trimmed."""
    nlp = sentencizer()
    if len(text) >= nlp.max_length:   # a giant paragraph: the rule-based splitter above
        spans, pos = [], 0
        for s in split_sentences(text):
            i = text.find(s, pos)
            spans.append((i, i + len(s)))
            pos = i + len(s)
        return spans
    out = []
    for sent in nlp(text).sents:
        a, b = sent.start_char, sent.end_char
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            out.append((a, b))
    return out
