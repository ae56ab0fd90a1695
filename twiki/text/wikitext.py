"""Wikitext cleaning for the extract stage: one article's raw wikitext -> clean paragraphs, each
with its section path. Reads and writes no artifact; `twiki.stages.extract` calls it once per page.

Speed is the point of its shape. A regex pre-pass (C-speed scanning, Python only once per
brace/table/link *token*) removes what is costly to parse and never training text: comments,
refs and other hidden tags, templates, tables, files and categories. What is left is mostly
prose, cleaned with a few guarded substitutions per paragraph. mwparserfromhell is used where it
pays: on the rare paragraph that the fast path cannot clean without leftover markup.

Templates that stand for words of their sentence ({{convert}}, {{birth date}}, {{lang}}, ...)
are rendered to their text instead of dropped: see twiki.text.templates.
Where a template or formula is dropped inside a line its place is marked (DROP_MARK), so that
the separators it leaves ("lifeboats: , , and") are tidied there and nowhere else.

Wikilinks to articles are kept as `Link`s (clean_page): when a link becomes its shown text,
that text is wrapped in marker characters (LINK_OPEN + the link's number + ... + LINK_CLOSE,
control characters that no wikitext holds: XML forbids them), which every later step of the
paragraph (tags, quotes, entities, tidying) carries along like text. At the end the markers
are taken out, their places noted, and the places moved through the whitespace collapse: the
text is exactly the text cleaned without links, and text[start:end] is the link's shown text.
"""

from __future__ import annotations

import html
import re
from bisect import bisect_left
from functools import lru_cache
from itertools import accumulate
from typing import NamedTuple
from urllib.parse import unquote

import mwparserfromhell

from .normalize import normalize_title
from .templates import DROP_MARK, render_template, template_spans

__all__ = ["DROPPED_SECTIONS", "Link", "Paragraph", "clean_page", "clean_wikitext",
           "link_target", "redirect_target"]

Section = tuple[str, ...]


class Link(NamedTuple):
    """A wikilink of a clean paragraph: text[start:end] is its shown text (Python str
    offsets), target the normalized title it points to (normalize_title; '#fragment'
    dropped)."""

    start: int
    end: int
    target: str


class Paragraph(NamedTuple):
    """One clean paragraph: its section path (() for the lead), its text, its links."""

    section: Section
    text: str
    links: tuple[Link, ...]

# Sections whose text is apparatus, not prose about the subject (compared lowercased). They
# are dropped with their subsections; they are almost always trailing.
DROPPED_SECTIONS = frozenset(
    {
        "references", "external links", "see also", "further reading", "notes", "bibliography",
        "sources", "footnotes", "citations", "notes and references", "references and notes",
        "works cited",
        # ("Literature" is not here: in enwiki country and city articles it is prose about
        # the place's literature, under "Culture".)
        # dewiki equivalents: the sample data has a few German articles ("Literatur" there is
        # the list of books on the subject).
        "einzelnachweise", "weblinks", "literatur", "siehe auch", "anmerkungen", "quellen",
    }
)

# Namespace prefixes of links that render as media or page metadata, not as text: files and
# categories in English plus the local names of the larger Wikipedias (a dump of another wiki
# keeps its own names; the English ones always work there too).
DROPPED_LINK_NAMESPACES = (
    "file", "image", "media", "category",
    "datei", "bild", "kategorie",  # de (Bild, Kategorie also sv/af)
    "fichier", "catégorie",  # fr
    "archivo", "imagen", "categoría",  # es
    "immagine", "categoria",  # it, pt
    "arquivo", "imagem",  # pt
    "bestand", "categorie",  # nl
    "fil", "kategori",  # sv, da, no
    "lêer",  # af
    "plik", "kategoria",  # pl
    "файл", "изображение", "категория",  # ru
)

# Prefixes (compared lowercased) of links whose target is no article: namespaces (with their
# talk pages), interwiki prefixes of the Wikimedia projects, and the media/category names above.
# Such a link keeps its shown text but gives no Link; so does a link to a 2-3 letter lowercase
# language code ("[[:fr:Paris]]") and a link to a section of the same page ("[[#History]]").
NON_ARTICLE_PREFIXES = frozenset(
    {
        "media", "special", "talk", "user", "user talk", "wikipedia", "wikipedia talk", "wp",
        "wt", "project", "project talk", "file", "file talk", "image", "image talk",
        "mediawiki", "mediawiki talk", "template", "template talk", "help", "help talk",
        "category", "category talk", "portal", "portal talk", "draft", "draft talk",
        "timedtext", "timedtext talk", "module", "module talk", "book", "book talk",
        "education program", "education program talk", "gadget", "gadget talk",
        "gadget definition", "gadget definition talk", "topic", "mos", "cat", "h",
        # interwiki
        "wikt", "wiktionary", "w", "commons", "c", "s", "wikisource", "q", "wikiquote", "b",
        "wikibooks", "n", "wikinews", "v", "wikiversity", "voy", "wikivoyage", "species",
        "wikispecies", "d", "wikidata", "m", "meta", "metawikipedia", "mw", "mediawikiwiki",
        "foundation", "wmf", "phab", "phabricator", "incubator", "outreach", "simple",
        "doi", "arxiv", "rfc", "imdbname", "imdbtitle", "oclc", "iarchive", "google",
        *DROPPED_LINK_NAMESPACES,
    }
)
_LANGUAGE_PREFIX = re.compile(r"[a-z]{2,3}(?:-[a-z]+)*")
# Characters MediaWiki forbids in a title: a target holding one is no link.
_BAD_TITLE = re.compile(r"[<>\[\]{}|\x00-\x1f\x7f]")

# How a kept link is marked while its paragraph is cleaned (see the module's docstring):
# LINK_OPEN, the link's number in digits \x10-\x19, its shown text, LINK_CLOSE. None of these
# characters is whitespace (str.split), a word character or punctuation that a cleaning step
# looks at, and XML 1.0 forbids all of them, so no page holds them (any found are removed).
LINK_OPEN, LINK_CLOSE = "\x01", "\x02"
_OUR_CHARS = re.compile("[\x00\x01\x02\x10-\x19]")
_OUR_CHAR_LIST = "\x00\x01\x02" + "".join(map(chr, range(0x10, 0x1A)))  # `in`: faster
_LINK_MARK = re.compile("\x01[\x10-\x19]+|\x02")
_LINK_MARK_SPLIT = re.compile("(\x01[\x10-\x19]+|\x02)")
# Whitespace that " ".join(text.split()) changes inside a stripped text: a run that is not a
# single " ".
_WS_TO_FIX = re.compile(r"[^\S ]\s*| \s+")
_ASCII_WS = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # the ASCII whitespace but " " (str.isspace)
_TO_MARK_DIGITS = str.maketrans("0123456789", "".join(map(chr, range(0x10, 0x1A))))
_FROM_MARK_DIGITS = str.maketrans("".join(map(chr, range(0x10, 0x1A))), "0123456789")

# `#REDIRECT [[Target]]` (MediaWiki's magic word, any case; dewiki's own name too): a redirect
# page even when the dump's XML gives no <redirect> element.
_REDIRECT = re.compile(
    r"[ \t\n]*#[ \t]*(?:REDIRECT|WEITERLEITUNG)[ \t]*:?[ \t]*\[\[([^\[\]|\n]*)", re.I)

# Tags whose content is never prose: it is dropped with the tag. (`<code>` stays inline text:
# it is usually a word in a sentence.)
DROPPED_CONTENT_TAGS = (
    "ref", "references", "math", "chem", "ce", "gallery", "syntaxhighlight", "source", "pre",
    "score", "timeline", "imagemap", "graph", "mapframe", "maplink", "templatedata", "hiero",
    "inputbox", "categorytree", "includeonly", "table", "noinclude", "charinsert", "indicator",
    "templatestyles",
)

# Inline/HTML tags removed with their content kept. Only these are treated as tags when they
# open: prose such as "x<y and y>z" must survive. Any closing tag `</name>` is removed.
KEPT_CONTENT_TAGS = (
    "abbr", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center", "cite", "code",
    "data", "dd", "del", "dfn", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "ins", "kbd", "li", "mark", "nowiki", "ol", "onlyinclude", "p", "poem",
    "q", "rb", "rp", "rt", "rtc", "ruby", "s", "samp", "section", "small", "span", "strike",
    "strong", "sub", "sup", "td", "th", "time", "tr", "tt", "u", "ul", "var", "wbr", "audio",
    "video", "canvas", "translate", "languages",
)

# A page with more unclosed `{{` / `{|` than this is treated as unparseable: each unclosed
# opener costs a rescan of the rest of the page (so this bounds the work on a hostile page),
# and the sample articles have at most a handful.
MAX_UNCLOSED = 100

# ---------------------------------------------------------------------------------------------
# Block pre-pass: whole-page regexes.

# Where an unclosed construct stops swallowing text: a blank line or a heading line.
_PARA_END = re.compile(r"\n[ \t]*\n|\n(?==)")
_COMMENT_OPEN = re.compile(r"<!--")
# nowiki content may not hold another nowiki tag: an unclosed one cannot make the regex rescan
# the rest of the page for every later opener (quadratic on hostile pages).
_NOWIKI = re.compile(r"<nowiki\s*>([^<]*(?:<(?!/?nowiki\b)[^<]*)*)</nowiki\s*>", re.I)
_NOWIKI_SELF = re.compile(r"<nowiki\s*/>", re.I)
_DROP_NAMES = "|".join(DROPPED_CONTENT_TAGS)
_DROP_SELF = re.compile(rf"<({_DROP_NAMES})(?:\s[^<>]*)?/\s*>", re.I)
# Paired hidden tag: its content may not contain another opener of the same tag, so an unclosed
# `<ref>` cannot swallow the text up to the next ref's `</ref>`.
_DROP_PAIRED = re.compile(
    rf"<({_DROP_NAMES})(?:\s[^<>]*)?>[^<]*(?:<(?!/?\1[\s>/])[^<]*)*</\1\s*>", re.I
)
# Once closed pairs and self-closers are gone, any opener left (even one cut off before its
# `>`) is unclosed: it is dropped through the end of its paragraph. A bare `<ref` counts too:
# no prose writes it, and it is the one tag name a reader of the output would spot.
_DROP_OPEN = re.compile(rf"<(?:{_DROP_NAMES})(?=[\s/>]|\Z)|<ref", re.I)
_DROP_CLOSE = re.compile(rf"</(?:{_DROP_NAMES})\s*>", re.I)
# Table delimiters are taken anywhere, not only at a line start: some pages arrive with their
# newlines flattened to spaces, and with templates already gone `{|` / `|}` occur in no prose.
_TABLE_TOKENS = re.compile(r"\{\||\|\}")
_NS = "|".join(re.escape(n) for n in DROPPED_LINK_NAMESPACES)
_DROPPED_LINK_OPEN = re.compile(rf"\[\[[ \t]*(?:{_NS})[ \t]*:", re.I)
_LINK_TOKENS = re.compile(r"\[\[|\]\]")
# Interlanguage links (`[[de:Foo]]`): a lowercase language code, hidden by MediaWiki.
_INTERLANGUAGE = re.compile(r"\[\[[a-z]{2,3}(?:-[a-z]+)*:[^\[\]\n]*\]\]")

# ---------------------------------------------------------------------------------------------
# Lines and paragraphs.

_HEADING = re.compile(r"(=+)(.+?)(=+)[ \t]*")
_LIST_MARKERS = "*#:;"
_STRUCTURE_FIRST = "=*#:;|!-"  # first characters of the lines _paragraphs reads as structure
_TABLE_RESIDUE_LINE = re.compile(r"[ \t]*(?:\||!.*!!|!\s*(?:scope|style|class|colspan|rowspan)\b)")
_RULE_LINE = re.compile(r"-{4,}[ \t]*")

# ---------------------------------------------------------------------------------------------
# Inline cleaning, per paragraph.

# Each link pattern: (1) the target as written, (2) the shown text, (3) the link trail
# ("[[cat]]s" shows "cats", one link: MediaWiki's enwiki trail is [a-z]+).
_LINK_PIPED = re.compile(
    r"\[\[([^\[\]|\n]*)\|((?:[^\[\]\n]|\[(?!\[)|\](?!\]))+)\]\]([a-z]*)")
# `[[Paris, Texas|]]` shows "Paris"; `[[Help:Foo (bar)|]]` shows "Foo".
_LINK_PIPE_TRICK = re.compile(
    r"\[\[(:?(?:[^\[\]|\n:]*:)?([^\[\]|\n(,]*?)[ \t]*(?:\([^\[\]|\n]*\)|,[^\[\]|\n]*)?)\|\]\]"
    r"([a-z]*)"
)
_LINK_PLAIN = re.compile(r"\[\[(:?([^\[\]|\n]+))\]\]([a-z]*)")
_LINK_TEXT = r"\2\3"  # what a link shows
_EXT_LINK = re.compile(
    r"\[(?:(?:https?|ftp|ftps|irc|ircs|gopher|nntp|worldwind|svn|git|mms):)?//[^\s\[\]<>]*"
    r"(?:[ \t]+([^\]\n]*))?\]|\[(?:mailto|news|urn|tel):[^\s\[\]<>]*(?:[ \t]+([^\]\n]*))?\]",
    re.I,
)
_BR = re.compile(r"<br\s*/?>|</br\s*>", re.I)
_KEPT_NAMES = "|".join(KEPT_CONTENT_TAGS)
_TAG = re.compile(rf"<(?:{_KEPT_NAMES})(?:\s[^<>]*)?/?>|</[A-Za-z][A-Za-z0-9]*\s*>", re.I)
_BOLD_ITALIC = re.compile(r"'''''|'''|''")
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
# What dropped templates leave in brackets: "Kristeva (; ; born 1941)", "Serper () (born".
# (Each pattern starts with a literal or a class: a leading `\s*` would be tried at every
# position and cost more than all the link patterns together.)
_BRACKET_JUNK = re.compile(r"\([\s,;:]*[,;:)]|[,;:]\s*\)|\[[\s,;:]*\]")
_EMPTY_BRACKETS = re.compile(r"\([\s,;:]*\)|\[[\s,;:]*\]")
_BRACKET_LEAD_PUNCT = re.compile(r"\((?:\s*[,;:])+\s*")
_BRACKET_TAIL_PUNCT = re.compile(r"[,;:][\s,;:]*\)")
# A site of DROP_MARKs (see _tidy_drop_sites) runs from the separators and spaces before its
# first mark through those after its last. Found from the mark (a literal: fast search), the
# part before it scanned backwards: a pattern opening with `[\s,;:]*` would be tried at every
# character of the paragraph.
_SITE_TAIL = re.compile(r"[\s,;:\x00]*")
_OPENERS = ("", "(", "[")
_CLOSERS = ("", ".", "!", "?", ")", "]")
_INLINE_DROPPED_TAGS = frozenset({"math", "chem", "ce", "score", "hiero"})
_SENTENCE_END = ".!?"
_WORD = re.compile(r"\w")
# Markup that must never reach the output. A paragraph showing any of it after the fast path
# goes through mwparserfromhell; what survives even that is scrubbed. A `<` before anything
# but a known tag name is prose ("x<y"), as MediaWiki shows it.
_RESIDUE = re.compile(
    r"\[\[|\]\]|\{\{|\}\}|\{\||\|[-}]|<!--|</|'''|&[A-Za-z]+;"
    rf"|<(?:{_KEPT_NAMES}|{_DROP_NAMES})\b",
    re.I,
)
_SCRUB = re.compile(
    r"\[\[|\]\]|\{\{|\}\}|\{\||\|[-}]|<!--|-->|'{2,}"
    r"|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>|</[A-Za-z]*"
)


def clean_page(text: str, title: str = "", *, tables: bool = False) -> list[Paragraph]:
    """The page's clean paragraphs in document order, each with its section path (the tuple
    of cleaned heading titles above it, () for the lead) and its links to articles.

    With `tables`, each row of a table becomes a paragraph of its own, its non-empty cells
    (header cells too) joined by " | " and a caption a paragraph before them (tables nested
    in a cell are dropped); without, tables are dropped, as TemporalWiki does. A redirect
    page (`#REDIRECT [[X]]`) has no paragraphs. Raises ValueError (naming `title`) for a page
    that cannot be cleaned; callers skip it.
    """
    return _clean(text, title, tables, True)


def clean_wikitext(text: str, title: str = "") -> list[tuple[Section, str]]:
    """[(section_path, paragraph_text), ...]: clean_page without the links (and faster)."""
    return [(p.section, p.text) for p in _clean(text, title, False, False)]


def _clean(text: str, title: str, tables: bool, links: bool) -> list[Paragraph]:
    if not isinstance(text, str):
        raise ValueError(f"page {title!r}: wikitext is {type(text).__name__}, not str")
    try:
        if any(c in text for c in _OUR_CHAR_LIST):  # never in real wikitext (XML forbids
            text = _OUR_CHARS.sub("", text)         # them): ours alone
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if text[:1] in "#\n \t" and _REDIRECT.match(text):
            return []
        body = _drop_blocks(text, title, tables)
        return _paragraphs(body, links)
    except (RecursionError, mwparserfromhell.parser.ParserError) as exc:
        reason = f"unparseable wikitext ({exc.__class__.__name__})"
        raise ValueError(f"page {title!r}: {reason}") from exc


def redirect_target(text: str) -> str | None:
    """The normalized target title of a `#REDIRECT [[Target]]` page ('#fragment' dropped),
    or None when the text is not a redirect."""
    if not text or text[:1] not in "#\n \t":
        return None
    m = _REDIRECT.match(text)
    if m is None:
        return None
    return title_of(m.group(1))


def title_of(raw: str) -> str:
    """A title as written in a link or redirect -> its normalized form: entities and %XX
    decoded, a leading ':' and the '#fragment' dropped, normalize_title."""
    t = raw
    if "&" in t:
        t = html.unescape(t)
    if "%" in t:
        t = unquote(t)
    t = t.replace(DROP_MARK, "").strip()
    if t[:1] == ":":
        t = t[1:]
    return normalize_title(t.partition("#")[0])


@lru_cache(maxsize=1 << 16)
def link_target(raw: str) -> str | None:
    """The normalized article title a link `[[raw|...]]` points to, or None when it points to
    no article: another namespace or project (NON_ARTICLE_PREFIXES), a language, a section of
    the same page, or a title MediaWiki would refuse."""
    t = raw.strip()
    if t[:1] == ":":
        t = t[1:].lstrip()
    if ":" in t:
        head = t.partition(":")[0]
        if "&" in head or "%" in head:
            head = title_of(head)
        head = " ".join(head.replace("_", " ").split())
        if head.lower() in NON_ARTICLE_PREFIXES or _LANGUAGE_PREFIX.fullmatch(head):
            return None
    t = title_of(t)
    if not t or _BAD_TITLE.search(t):
        return None
    return t


class _Links:
    """The links of one paragraph being cleaned: the targets of the marks put in its text, and,
    once the marks are taken out (`finish`), its Links."""

    __slots__ = ("targets", "links")

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.links: list[Link] = []

    def mark(self, target_raw: str, shown: str, before: str = "'", after: str = "'") -> str:
        """`shown` wrapped in marks when the link points to an article. Whitespace stays
        outside them, and so does a run of apostrophes at either end that is bold or italic
        markup (two or more, or one beside an apostrophe outside the link: `before` and
        `after` are the characters around it): a mark inside a run would change how it reads
        ("'[[X|''y'']]"). A lone apostrophe is text ("[[Allies|the Allies']]")."""
        core = shown.strip()
        if core[:1] == "'" and (core[:2] == "''" or before == "'"):
            core = core.lstrip("'").lstrip()
        if core[-1:] == "'" and (core[-2:] == "''" or after == "'"):
            core = core.rstrip("'").rstrip()
        target = link_target(target_raw) if core else None
        if target is None:
            return shown
        number = str(len(self.targets)).translate(_TO_MARK_DIGITS)
        self.targets.append(target)
        if len(core) == len(shown):
            return f"{LINK_OPEN}{number}{shown}{LINK_CLOSE}"
        i = shown.index(core)
        return f"{shown[:i]}{LINK_OPEN}{number}{core}{LINK_CLOSE}{shown[i + len(core):]}"

    def piped(self, m: re.Match) -> str:
        p, a, b = m.string, m.start(), m.end()
        return self.mark(m.group(1), m.group(2) + m.group(3), p[a - 1 : a], p[b : b + 1])

    plain = pipe_trick = piped

    def finish(self, p: str) -> str:
        """Take the marks out of `p`, collapse its whitespace (as _clean_inline does) and
        keep the Links (a link nested in another's shown text gives none of its own)."""
        pieces = _LINK_MARK_SPLIT.split(p)  # text, mark, text, mark, ..., text
        texts, marks = pieces[0::2], pieces[1::2]
        ends = accumulate(map(len, texts))  # where each mark stands once the marks are out
        spans: list[tuple[int, int, int]]
        if (len(marks) % 2 == 0 and marks[1::2].count(LINK_CLOSE) == len(marks) // 2
                and LINK_CLOSE not in marks[0::2]):  # no nesting: open, close, open, ...
            at = list(ends)
            spans = [(a, b, int(m[1:].translate(_FROM_MARK_DIGITS)))
                     for a, b, m in zip(at[0::2], at[1::2], marks[0::2])]
        else:
            spans = []
            stack: list[tuple[int, int]] = []
            for n, mark in zip(ends, marks):
                if mark == LINK_CLOSE:
                    if stack:
                        start, number = stack.pop()
                        if not stack:
                            spans.append((start, n, number))
                else:
                    stack.append((n, int(mark[1:].translate(_FROM_MARK_DIGITS))))
            spans.sort()
        raw = "".join(texts)
        # " ".join(raw.split()), with the link places moved along: only the runs of
        # whitespace that are not one " " change anything (`\s` is exactly str.isspace).
        lead = len(raw) - len(raw.lstrip())
        body = raw.strip()
        if body.isascii() and "  " not in body and not any(c in body for c in _ASCII_WS):
            runs = []  # the common case, found at C speed: nothing to collapse
        else:
            runs = [m.span() for m in _WS_TO_FIX.finditer(body)]
        text = _WS_TO_FIX.sub(" ", body) if runs else body
        starts = [a for a, _ in runs]
        removed, total = [], 0  # whitespace removed before each run
        for a, b in runs:
            removed.append(total)
            total += b - a - 1
        size = len(body)

        def moved(x: int, end: bool) -> int:
            x = min(max(x - lead, 0), size)
            k = bisect_left(starts, x) - 1  # the last run starting before x
            if k < 0:
                return x
            a, b = runs[k]
            if x >= b:
                return x - removed[k] - (b - a - 1)
            return a - removed[k] + (0 if end else 1)  # inside the run: beside its space

        targets, links = self.targets, self.links
        still = not runs and not lead  # nothing moved
        for a, b, i in spans:
            if i >= len(targets):
                continue
            start, stop = (a, min(b, size)) if still else (moved(a, False), moved(b, True))
            if stop > start and (text[start] == " " or text[stop - 1] == " "):
                # a space that came from markup inside the link (`[[X|<br>y]]`): not its text
                while start < stop and text[start] == " ":
                    start += 1
                while stop > start and text[stop - 1] == " ":
                    stop -= 1
            if stop > start:
                links.append(Link(start, stop, targets[i]))
        return text


# ---------------------------------------------------------------------------------------------
# Block pre-pass


def _drop_blocks(s: str, title: str, tables: bool = False) -> str:
    """Remove comments, hidden tags, templates, tables, files, categories, interlanguage links."""
    if "<!--" in s:
        s = _drop_comments(s)
    if "<" in s:
        s = _NOWIKI_SELF.sub("", s)
        # nowiki text is literal: escape it so that no later pass reads it as markup; the
        # final entity decoding restores the characters.
        s = _NOWIKI.sub(_escape_nowiki, s)
        s = _DROP_SELF.sub(_drop_hidden_tag, s)
        s = _DROP_PAIRED.sub(_drop_hidden_tag, s)
        if _DROP_OPEN.search(s):
            s = _cut_unclosed(s, _DROP_OPEN)
        s = _DROP_CLOSE.sub("", s)
    if "{{" in s or "}}" in s:
        s = _drop_templates(s, title)
    if "{|" in s:
        s = _drop_tables(s, title, tables)
    if "[[" in s:
        s = _drop_links(s)
        s = _INTERLANGUAGE.sub("", s)
    return s


def _drop_comments(s: str) -> str:
    """Remove `<!-- ... -->`. A comment alone on its line goes with its newline, so that it does
    not split a paragraph. An unclosed one (MediaWiki hides the rest of the page) is dropped to
    the end of its paragraph, and so is every later opener (none of them can close either).

    str.find, not a lazy regex: `<!--.*?-->` rescans to the page end for each unclosed opener.
    """
    out, pos = [], 0
    while (start := s.find("<!--", pos)) >= 0:
        end = s.find("-->", start + 4)
        if end < 0:
            out.append(s[pos:start])
            return "".join(out) + _cut_unclosed(s[start:], _COMMENT_OPEN)
        end += 3
        line_start = start
        while line_start and s[line_start - 1] in " \t":
            line_start -= 1
        if line_start == 0 or s[line_start - 1] == "\n":  # only blanks before it on its line
            rest = end
            while rest < len(s) and s[rest] in " \t":
                rest += 1
            if rest < len(s) and s[rest] == "\n":
                end = rest + 1
        out.append(s[pos:start])
        pos = end
    out.append(s[pos:])
    return "".join(out)


def _drop_hidden_tag(m: re.Match) -> str:
    """A formula sits inside a sentence ("let the vector be <math>v</math>."): its place is
    marked for _tidy_drop_sites. A reference needs a mark only after a space ("the city
    <ref>..</ref>."); most sit right after their word or punctuation and leave nothing. One
    between a sentence's end and the next word ("in 1539.<ref>..</ref>Anarchist was") leaves
    the space that MediaWiki's rendering shows there."""
    if m.group(1).lower() in _INLINE_DROPPED_TAGS:
        return DROP_MARK
    s, start = m.string, m.start()
    if not start:
        return ""
    prev = s[start - 1]
    if prev in " \t":
        return DROP_MARK
    nxt = s[m.end() : m.end() + 1]
    if nxt and (nxt.isalnum() or nxt in "[{'\"") and prev in _SENTENCE_END:
        return " "
    return ""


def _escape_nowiki(m: re.Match) -> str:
    """nowiki text as character references for the characters later passes read as markup."""
    return "".join(f"&#{ord(c)};" if c in "[]{}<>|'=*#:;!_" else c for c in m.group(1))


def _cut_unclosed(s: str, opener: re.Pattern) -> str:
    """Drop every match of `opener` through the end of its paragraph."""
    out, pos = [], 0
    while (m := opener.search(s, pos)) is not None:
        out.append(s[pos : m.start()])
        pos = _paragraph_end(s, m.end())
    out.append(s[pos:])
    return "".join(out)


def _paragraph_end(s: str, pos: int) -> int:
    """Start of the blank or heading line that ends the paragraph holding `pos` (or len(s))."""
    m = _PARA_END.search(s, pos)
    return m.start() if m else len(s)


def _drop_templates(s: str, title: str) -> str:
    """Replace `{{...}}` (templates, parser functions, parameters; nested, brace runs counted)
    by their text when twiki.text.templates renders them, else remove them.

    A template that is never closed is dropped through the end of the paragraph it opens in,
    and the scan resumes after it. Stray `}}` are dropped.
    """
    out: list[str] = []
    pos = 0  # start of the text not yet scanned
    for _ in range(MAX_UNCLOSED):
        keep_from = pos
        for start, end in template_spans(s, pos):
            out.append(s[keep_from:start])
            if end < 0:  # never closed: dropped to its paragraph end, the scan restarts there
                pos = _paragraph_end(s, start + 2)
                break
            keep_from = end
            if s[start] == "}":  # stray closer
                continue
            text = render_template(s, start, end)
            if text:
                out.append(text)
            else:
                keep_from = _after_block(s, start, end)
                if keep_from == end:  # dropped inside a line: mark the place
                    out.append(DROP_MARK)
        else:  # every template closed
            out.append(s[keep_from:])
            return "".join(out)
    raise ValueError(f"page {title!r}: more than {MAX_UNCLOSED} unclosed templates")


def _after_block(s: str, start: int, end: int) -> int:
    """Where kept text resumes after removing s[start:end]: past its newline when the construct
    filled whole lines, so that removing it does not leave a blank line that splits a paragraph
    (or cuts a file caption in two)."""
    if end < len(s) and s[end] == "\n" and (start == 0 or s[start - 1] == "\n"):
        return end + 1
    return end


def _drop_tables(s: str, title: str, as_rows: bool = False) -> str:
    """Remove `{| ... |}` tables (nested); an unclosed table is dropped to its paragraph end.
    With `as_rows`, a (top-level, closed) table is replaced by its rows as text paragraphs
    (_table_rows) instead."""
    out: list[str] = []
    pos = 0
    for _ in range(MAX_UNCLOSED):
        depth, keep_from, opened_at = 0, pos, -1
        for m in _TABLE_TOKENS.finditer(s, pos):
            if m.group() == "{|":
                if depth == 0:
                    out.append(s[keep_from : m.start()])
                    opened_at = m.start()
                depth += 1
            elif depth:
                depth -= 1
                if depth == 0:
                    keep_from = _after_block(s, opened_at, m.end())
                    if as_rows:
                        out.append(f"\n\n{_table_rows(s[opened_at + 2 : m.start()], title)}\n\n")
        if depth == 0:
            out.append(s[keep_from:])
            return "".join(out)
        pos = _paragraph_end(s, opened_at + 2)
    raise ValueError(f"page {title!r}: more than {MAX_UNCLOSED} unclosed tables")


def _table_rows(table: str, title: str) -> str:
    """A table's body (between `{|` and `|}`) as text: a paragraph a row (its caption first),
    the row's non-empty cells joined by " | ". Cell attributes (`style=".." | text`) are not
    text; tables nested in a cell are dropped."""
    if "{|" in table:
        table = _drop_tables(table, title)
    rows: list[list[str]] = []
    row: list[str] = []
    for line in table.split("\n")[1:]:  # the first line holds the table's attributes
        t = line.strip()
        if not t:
            continue
        if t[:2] == "|+":
            rows.append([_table_cell(t[2:])])
        elif t[:2] == "|-":
            rows.append(row)
            row = []
        elif t[0] == "!":
            row.extend(_table_cell(c) for c in re.split(r"!!|\|\|", t[1:]))
        elif t[0] == "|":
            row.extend(_table_cell(c) for c in t[1:].split("||"))
        elif row:  # a cell's text goes on over lines
            row[-1] = f"{row[-1]} {t}"
    rows.append(row)
    return "\n\n".join(" | ".join(c for c in r if c) for r in rows if any(r))


def _table_cell(cell: str) -> str:
    """A cell's text, without its attributes (`style="..." | text`)."""
    i = cell.find("|")
    if i >= 0 and "[[" not in cell[:i] and ("=" in cell[:i] or not cell[:i].strip()):
        cell = cell[i + 1 :]
    return cell.strip()


def _drop_links(s: str) -> str:
    """Remove file/image/category links, whose captions may hold nested links.

    An unclosed one is dropped to the end of its paragraph (MediaWiki links never span one).
    """
    out: list[str] = []
    pos = 0
    while True:
        m = _DROPPED_LINK_OPEN.search(s, pos)
        if m is None:
            break
        out.append(s[pos : m.start()])
        end = _paragraph_end(s, m.end())
        depth, pos = 1, end
        for t in _LINK_TOKENS.finditer(s, m.end(), end):
            depth += 1 if t.group() == "[[" else -1
            if depth == 0:
                pos = t.end()
                break
    out.append(s[pos:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Lines -> paragraphs


def _paragraphs(body: str, links: bool = False) -> list[Paragraph]:
    result: list[Paragraph] = []
    headings: list[tuple[int, str]] = []  # (level, title) of the open sections
    path: Section = ()
    dropped_level = 0  # level of the dropped section we are in, 0 when none
    lines: list[str] = []  # lines of the paragraph being collected

    def flush() -> None:
        if lines:
            if not dropped_level:
                _emit(result, path, " ".join(lines), links)
            lines.clear()

    for line in body.split("\n"):
        stripped = line.strip()
        if stripped[:1] == DROP_MARK:
            # What the dropped template hid is structure ("{{anchor|x}}== Heading ==", a
            # list item), or else prose whose mark must stay ("<math>..</math>, where").
            bare = stripped.lstrip(DROP_MARK + " \t")
            if not bare or bare[0] in _STRUCTURE_FIRST:
                stripped = bare
        if not stripped:
            flush()
            continue
        h = _HEADING.fullmatch(stripped) if stripped[0] == "=" else None
        if h:
            flush()
            level = min(len(h.group(1)), len(h.group(3)), 6)
            # Unbalanced `==` runs keep their extra `=` as title text, as MediaWiki does.
            name = "=" * (len(h.group(1)) - level) + h.group(2) + "=" * (len(h.group(3)) - level)
            name = _clean_inline(name)
            while headings and headings[-1][0] >= level:
                headings.pop()
            headings.append((level, name))
            path = tuple(t for _, t in headings)
            if dropped_level and level <= dropped_level:
                dropped_level = 0
            if not dropped_level and name.lower() in DROPPED_SECTIONS:
                dropped_level = level
            continue
        first = stripped[0]
        if first in _LIST_MARKERS:
            flush()
            lines.append(stripped.lstrip(_LIST_MARKERS))
            flush()
        elif first in "|!" and _TABLE_RESIDUE_LINE.match(line):
            flush()  # a row of a table opened by a template: not prose
        elif first == "-" and _RULE_LINE.fullmatch(stripped):
            flush()
        else:
            lines.append(stripped)
    flush()
    return result


def _emit(result: list[Paragraph], path: Section, raw: str, links: bool) -> None:
    found = _Links() if links else None
    text = _clean_inline(raw, found)
    if _RESIDUE.search(text):
        found = _Links() if links else None
        text = _clean_inline(_strip_with_parser(raw, found), found)
        if _RESIDUE.search(text):
            text = " ".join(_SCRUB.sub("", text).split())
            found = None  # the scrub moves text: its links' places are lost
    if text and _WORD.search(text):
        result.append(Paragraph(path, text, tuple(found.links) if found else ()))


def _strip_with_parser(raw: str, found: _Links | None = None) -> str:
    """mwparserfromhell's reading of a paragraph the fast path could not clean (its article
    links marked for `found`)."""
    code = mwparserfromhell.parse(raw)
    if found is not None and "[[" in raw:
        # the paragraph's top-level links (one pass over its nodes: linear however deep a
        # hostile page nests them), marked, and the marked text read again
        parts = []
        for node in code.nodes:
            if isinstance(node, mwparserfromhell.nodes.Wikilink):
                shown = str(node.text if node.text is not None else node.title)
                parts.append(found.mark(str(node.title), shown))
            else:
                parts.append(str(node))
        code = mwparserfromhell.parse("".join(parts))
    return code.strip_code(normalize=True, collapse=True)


def _clean_inline(p: str, found: _Links | None = None) -> str:
    """Links to their text (marked for `found`, which gets the paragraph's Links), tags and
    quotes removed, entities decoded, whitespace normalized."""
    if "[" in p:
        if "[[" in p:
            piped = _LINK_TEXT if found is None else found.piped
            for _ in range(3):  # a label holding a link (invalid but seen) needs a second pass
                p = _LINK_PIPED.sub(piped, p)
                if "|]]" in p:
                    p = _LINK_PIPE_TRICK.sub(piped, p)
                p = _LINK_PLAIN.sub(piped, p)
                if "[[" not in p:
                    break
        p = _EXT_LINK.sub(_ext_label, p)
    if "<" in p:
        p = _BR.sub(" ", p)
        p = _TAG.sub("", p)
    if "''" in p:
        p = _BOLD_ITALIC.sub("", p)
    if "__" in p:
        p = _MAGIC_WORD.sub("", p)
    if "&" in p:
        p = html.unescape(p)
    if DROP_MARK in p:
        p = _tidy_drop_sites(p)
    if ("(" in p or "[" in p) and _BRACKET_JUNK.search(p):
        p = _EMPTY_BRACKETS.sub("", p)
        p = _BRACKET_LEAD_PUNCT.sub("(", p)
        p = _BRACKET_TAIL_PUNCT.sub(")", p)
        p = p.replace(" )", ")")
    if found is not None and LINK_OPEN in p:
        return found.finish(p)
    return " ".join(p.split())  # str.split: all Unicode whitespace, NBSP included


def _tidy_drop_sites(p: str) -> str:
    """Replace each place of a dropped template or formula (one or more DROP_MARKs with the
    separators and spaces around them) by what the sentence needs there. Text elsewhere is
    never touched, so real punctuation (". . .", "the . operator", "shift , (comma)") stays.

    - at the start of the paragraph or after "(" / "[", or before ". ! ? ) ]" or the end:
      nothing ("Julia (<m>; <m>; born 1941)" -> "Julia (born 1941)", "Medicus <m>." ->
      "Medicus.");
    - else the separator written before the dropped part, or else the last one after it, and
      a space ("lifeboats: <m>, <m>, <m> and" -> "lifeboats: and", "the city<m>, which" ->
      "the city, which");
    - else a space where there was one ("a <m> b" -> "a b", "foo<m>bar" -> "foobar").
    """
    if LINK_OPEN in p or LINK_CLOSE in p:
        return _tidy_around_links(p)
    out: list[str] = []
    pos = 0
    for i, j, repl in _drop_sites(p):
        out.append(p[pos:i])
        out.append(repl)
        pos = j
    out.append(p[pos:])
    return "".join(out)


def _drop_sites(p: str) -> list[tuple[int, int, str]]:
    """The sites of _tidy_drop_sites in `p`: (start, end, what replaces p[start:end])."""
    sites: list[tuple[int, int, str]] = []
    pos = 0
    while (k := p.find(DROP_MARK, pos)) >= 0:
        i = k
        while i > pos and (p[i - 1] in ",;:" or p[i - 1].isspace()):
            i -= 1
        j = _SITE_TAIL.match(p, k).end()
        prev = p[i - 1] if i else ""
        nxt = p[j] if j < len(p) else ""
        repl = ""
        if not (prev in _OPENERS or nxt in _CLOSERS):  # "" is in both
            before = p[i:k].strip()
            after = p[p.rindex(DROP_MARK, k, j) + 1 : j].strip()
            if before:
                repl = before[0] + " "
            elif after:
                repl = after[-1] + " "
            elif p[i:j].strip(DROP_MARK):
                repl = " "
        sites.append((i, j, repl))
        pos = j
    return sites


def _tidy_around_links(p: str) -> str:
    """_tidy_drop_sites of a paragraph holding link marks: the sites are found in its text
    without the marks (so the text is what it is without links), then the marks are put back:
    one inside a site goes to its edge on the link's side (an opening mark after what
    replaces the site, a closing one before it)."""
    marks: list[tuple[int, str]] = []  # (position in the text without marks, mark)
    parts: list[str] = []
    pos = n = 0
    for m in _LINK_MARK.finditer(p):
        parts.append(p[pos : m.start()])
        n += m.start() - pos
        marks.append((n, m.group()))
        pos = m.end()
    parts.append(p[pos:])
    q = "".join(parts)
    out: list[str] = []
    at = 0  # position in q up to which out is written
    mi = 0
    for i, j, repl in _drop_sites(q):
        while mi < len(marks) and marks[mi][0] <= i:
            out.append(q[at : marks[mi][0]])
            at = marks[mi][0]
            out.append(marks[mi][1])
            mi += 1
        out.append(q[at:i])
        closing, opening = [], []
        while mi < len(marks) and marks[mi][0] < j:
            (closing if marks[mi][1] == LINK_CLOSE else opening).append(marks[mi][1])
            mi += 1
        out.extend(closing)
        out.append(repl)
        out.extend(opening)
        at = j
    for x, mark in marks[mi:]:
        out.append(q[at:x])
        at = x
        out.append(mark)
    out.append(q[at:])
    return "".join(out)


def _ext_label(m: re.Match) -> str:
    return m.group(1) or m.group(2) or ""
