"""Wikitext cleaning for the extract stage: one article's raw wikitext -> clean paragraphs, each
with its section path. Reads and writes no artifact; `twiki.stages.extract` calls it once per page.

Speed is the point of its shape. A regex pre-pass (C-speed scanning, Python only once per
brace/table/link *token*) removes what is costly to parse and never training text: comments,
refs and other hidden tags, templates, tables, files and categories. What is left is mostly
prose, cleaned with a few guarded substitutions per paragraph. mwparserfromhell is used where it
pays: on the rare paragraph that the fast path cannot clean without leftover markup.

Templates that stand for words of their sentence ({{convert}}, {{birth date}}, {{lang}}, ...)
are rendered to their text instead of dropped: see INLINE_TEMPLATES at the end of the module.
Where a template or formula is dropped inside a line its place is marked (DROP_MARK), so that
the separators it leaves ("lifeboats: , , and") are tidied there and nowhere else.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import mwparserfromhell

__all__ = ["DROPPED_SECTIONS", "INLINE_TEMPLATES", "clean_wikitext"]

Section = tuple[str, ...]

# Sections whose text is apparatus, not prose about the subject (compared lowercased). They
# are dropped with their subsections; they are almost always trailing.
DROPPED_SECTIONS = frozenset(
    {
        "references", "external links", "see also", "further reading", "notes", "bibliography",
        "sources", "footnotes", "citations", "notes and references", "references and notes",
        "works cited", "literature",
        # dewiki equivalents: the sample data has a few German articles.
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
_BRACES = re.compile(r"\{\{+|\}\}+")
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

_LINK_PIPED = re.compile(r"\[\[[^\[\]|\n]*\|((?:[^\[\]\n]|\[(?!\[)|\](?!\]))+)\]\]")
# `[[Paris, Texas|]]` shows "Paris"; `[[Help:Foo (bar)|]]` shows "Foo".
_LINK_PIPE_TRICK = re.compile(
    r"\[\[:?(?:[^\[\]|\n:]*:)?([^\[\]|\n(,]*?)[ \t]*(?:\([^\[\]|\n]*\)|,[^\[\]|\n]*)?\|\]\]"
)
_LINK_PLAIN = re.compile(r"\[\[:?([^\[\]|\n]+)\]\]")
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
# Where a dropped template or formula was inside a line (see _tidy_drop_sites): a character
# that no wikitext holds (XML 1.0 forbids it), removed with the separators around it before a
# paragraph is emitted.
DROP_MARK = "\x00"
# A site runs from the separators and spaces before its first mark through those after its
# last. Found from the mark (a literal: fast search), the part before it scanned backwards: a
# pattern opening with `[\s,;:]*` would be tried at every character of the paragraph.
_SITE_TAIL = re.compile(r"[\s,;:\x00]*")
_OPENERS = ("", "(", "[")
_CLOSERS = ("", ".", "!", "?", ")", "]")
_INLINE_DROPPED_TAGS = frozenset({"math", "chem", "ce", "score", "hiero"})
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


def clean_wikitext(text: str, title: str = "") -> list[tuple[Section, str]]:
    """Return [(section_path, paragraph_text), ...] in document order.

    section_path is the tuple of cleaned heading titles above the paragraph (() for the lead).
    Raises ValueError (naming `title`) for a page that cannot be cleaned; callers skip it.
    """
    if not isinstance(text, str):
        raise ValueError(f"page {title!r}: wikitext is {type(text).__name__}, not str")
    try:
        if DROP_MARK in text:  # never in real wikitext (XML forbids it): ours alone
            text = text.replace(DROP_MARK, "")
        body = _drop_blocks(text.replace("\r\n", "\n").replace("\r", "\n"), title)
        return _paragraphs(body)
    except (RecursionError, mwparserfromhell.parser.ParserError) as exc:
        reason = f"unparseable wikitext ({exc.__class__.__name__})"
        raise ValueError(f"page {title!r}: {reason}") from exc


# ---------------------------------------------------------------------------------------------
# Block pre-pass


def _drop_blocks(s: str, title: str) -> str:
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
        s = _drop_tables(s, title)
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
    <ref>..</ref>."); most sit right after their word or punctuation and leave nothing."""
    if m.group(1).lower() in _INLINE_DROPPED_TAGS:
        return DROP_MARK
    return DROP_MARK if m.start() and m.string[m.start() - 1] in " \t" else ""


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
    by their text when INLINE_TEMPLATES renders them, else remove them.

    A template that is never closed is dropped through the end of the paragraph it opens in,
    and the scan resumes after it. Stray `}}` are dropped.
    """
    out: list[str] = []
    pos = 0  # start of the text not yet scanned
    for _ in range(MAX_UNCLOSED):
        depth, keep_from, opened_at = 0, pos, -1
        for m in _BRACES.finditer(s, pos):
            run = m.end() - m.start()
            if s[m.start()] == "{":
                if depth == 0:
                    out.append(s[keep_from : m.start()])
                    opened_at = m.start()
                depth += run
            elif depth == 0:  # stray closer
                out.append(s[keep_from : m.start()])
                keep_from = m.end()
            else:
                depth -= run
                if depth <= 0:
                    depth = 0
                    text = _render_template(s, opened_at, m.end(), 0)
                    if text:
                        out.append(text)
                        keep_from = m.end()
                    else:
                        keep_from = _after_block(s, opened_at, m.end())
                        if keep_from == m.end():  # dropped inside a line: mark the place
                            out.append(DROP_MARK)
        if depth == 0:
            out.append(s[keep_from:])
            return "".join(out)
        pos = _paragraph_end(s, opened_at + 2)
        # Text between the unclosed opener and its paragraph end is dropped; restart there.
    raise ValueError(f"page {title!r}: more than {MAX_UNCLOSED} unclosed templates")


def _after_block(s: str, start: int, end: int) -> int:
    """Where kept text resumes after removing s[start:end]: past its newline when the construct
    filled whole lines, so that removing it does not leave a blank line that splits a paragraph
    (or cuts a file caption in two)."""
    if end < len(s) and s[end] == "\n" and (start == 0 or s[start - 1] == "\n"):
        return end + 1
    return end


def _drop_tables(s: str, title: str) -> str:
    """Remove `{| ... |}` tables (nested); an unclosed table is dropped to its paragraph end."""
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
        if depth == 0:
            out.append(s[keep_from:])
            return "".join(out)
        pos = _paragraph_end(s, opened_at + 2)
    raise ValueError(f"page {title!r}: more than {MAX_UNCLOSED} unclosed tables")


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


def _paragraphs(body: str) -> list[tuple[Section, str]]:
    result: list[tuple[Section, str]] = []
    headings: list[tuple[int, str]] = []  # (level, title) of the open sections
    path: Section = ()
    dropped_level = 0  # level of the dropped section we are in, 0 when none
    lines: list[str] = []  # lines of the paragraph being collected

    def flush() -> None:
        if lines:
            if not dropped_level:
                _emit(result, path, " ".join(lines))
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


def _emit(result: list[tuple[Section, str]], path: Section, raw: str) -> None:
    text = _clean_inline(raw)
    if _RESIDUE.search(text):
        text = _clean_inline(_strip_with_parser(raw))
        if _RESIDUE.search(text):
            text = " ".join(_SCRUB.sub("", text).split())
    if text and _WORD.search(text):
        result.append((path, text))


def _strip_with_parser(raw: str) -> str:
    """mwparserfromhell's reading of a paragraph the fast path could not clean."""
    return mwparserfromhell.parse(raw).strip_code(normalize=True, collapse=True)


def _clean_inline(p: str) -> str:
    """Links to their text, tags and quotes removed, entities decoded, whitespace normalized."""
    if "[" in p:
        if "[[" in p:
            for _ in range(3):  # a label holding a link (invalid but seen) needs a second pass
                p = _LINK_PIPED.sub(r"\1", p)
                if "|]]" in p:
                    p = _LINK_PIPE_TRICK.sub(r"\1", p)
                p = _LINK_PLAIN.sub(r"\1", p)
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
    out: list[str] = []
    pos = 0
    while (k := p.find(DROP_MARK, pos)) >= 0:
        i = k
        while i > pos and (p[i - 1] in ",;:" or p[i - 1].isspace()):
            i -= 1
        j = _SITE_TAIL.match(p, k).end()
        out.append(p[pos:i])
        prev = p[i - 1] if i else ""
        nxt = p[j] if j < len(p) else ""
        if prev in _OPENERS or nxt in _CLOSERS:  # "" is in both
            pos = j
            continue
        before = p[i:k].strip()
        after = p[p.rindex(DROP_MARK, k, j) + 1 : j].strip()
        if before:
            out.append(before[0] + " ")
        elif after:
            out.append(after[-1] + " ")
        elif p[i:j].strip(DROP_MARK):
            out.append(" ")
        pos = j
    out.append(p[pos:])
    return "".join(out)


def _ext_label(m: re.Match) -> str:
    return m.group(1) or m.group(2) or ""


# ---------------------------------------------------------------------------------------------
# Inline text templates
#
# Most templates are apparatus (infoboxes, citations, navboxes, maintenance tags) and are
# dropped. A few stand for words of the sentence they sit in: "At {{convert|52419|sqmi|km2}},
# Alabama is ..." or "born {{birth date|1952|3|11}}". Dropping those would cut the facts the
# align stage looks for out of the evidence sentence, so INLINE_TEMPLATES (at the end of this
# section) renders them to the plain text a reader sees. Only a template in prose (at the top
# level of the page, or inside another rendered one) is rendered: one nested in an infobox or a
# reference goes with it. Inside a rendered template's arguments, allowed templates are
# rendered and every other one is dropped. Named arguments are options, never text (the few
# that *are* the shown text, such as {{ill|...|lt=label}} or {{as of|...|alt=...}}, are read
# by name). No template is expanded from its wiki source: each renderer is a small Python
# function of the arguments, written from the template's documentation.

# Deepest nesting of rendered templates inside each other; deeper ones are dropped. Each level
# rescans its arguments, so this bounds the work on a hostile page (real pages nest 2-3 deep).
MAX_TEMPLATE_NESTING = 8

_TEMPLATE_NAME = re.compile(r"\{\{([^{}|]*)")
_ARG_TOKENS = re.compile(r"\{\{|\}\}|\[\[|\]\]|[|=]")
_YES = frozenset({"y", "yes", "on", "true", "1"})
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_MONTH_NUMBER = {m[:3].lower(): i for i, m in enumerate(_MONTHS, 1)}
_ISO_DATE = re.compile(r"(-?\d{1,4})-(\d{1,2})(?:-(\d{1,2}))?")
_YEAR = re.compile(r"-?\d{1,4}")


class _Args:
    """A template call's arguments, nested templates already rendered: positional ones as
    written (whitespace kept, as MediaWiki does) and named ones stripped, names lowercased."""

    __slots__ = ("name", "pos", "named")

    def __init__(self, name: str, pos: list[str], named: dict[str, str]):
        self.name, self.pos, self.named = name, pos, named

    def __getitem__(self, i: int) -> str:
        """Positional argument i (0-based), stripped; "" when absent."""
        return self.pos[i].strip() if i < len(self.pos) else ""

    def raw(self, i: int) -> str:
        return self.pos[i] if i < len(self.pos) else ""

    def opt(self, key: str) -> str:
        return self.named.get(key, "")

    def flag(self, key: str) -> bool:
        return self.named.get(key, "").lower() in _YES

    def texts(self) -> list[str]:
        """The non-empty positional arguments, stripped."""
        return [t for t in (p.strip() for p in self.pos) if t]


def _render_template(s: str, start: int, end: int, level: int) -> str:
    """Text of the template s[start:end] (`{{` ... `}}`): its rendering when INLINE_TEMPLATES
    has its name, else "". The name is read before anything else: most templates are not
    rendered, and those cost one short regex match and a dict lookup."""
    raw_name = _TEMPLATE_NAME.match(s, start).group(1)
    renderer, colon_arg = _lookup(raw_name)
    if renderer is None or level >= MAX_TEMPLATE_NESTING:
        return ""
    parts = _split_args(s, start + 2 + len(raw_name), end - 2)
    by_index: dict[int, str] = {}
    named: dict[str, str] = {}
    if colon_arg is not None:  # a parser function: {{formatnum:1234}}
        by_index[1] = colon_arg
    n = len(by_index)
    for value, eq in parts:
        if DROP_MARK in value:  # a dropped ref or formula inside an argument
            value = value.replace(DROP_MARK, "")
        if eq < 0:
            n += 1
            by_index[n] = _expand(value, level + 1)
            continue
        key = value[:eq].strip().lower()
        text = _expand(value[eq + 1 :], level + 1).strip()
        if key.isdigit() and 0 < int(key) <= 50:
            by_index[int(key)] = text
        else:
            named[key] = text
    pos = [by_index.get(i, "") for i in range(1, max(by_index, default=0) + 1)]
    return renderer(_Args(raw_name, pos, named))


def _lookup(raw_name: str) -> tuple[Callable[[_Args], str] | None, str | None]:
    """(renderer, argument given after a parser function's colon) for a template name, or
    (None, None). Names compare as MediaWiki compares them, but case-insensitively:
    `Birth_date`, `birth  date` and `BIRTH DATE` are one template."""
    key = raw_name.strip().lower()
    renderer = INLINE_TEMPLATES.get(key)
    if renderer is not None:
        return renderer, None
    if "_" in key or "  " in key or "\n" in key or "\t" in key or key.startswith("template:"):
        key = " ".join(key.replace("_", " ").split())
        if key.startswith("template:"):
            key = key[9:].lstrip()
        renderer = INLINE_TEMPLATES.get(key)
        if renderer is not None:
            return renderer, None
    if ":" in key:
        fn, _, _ = key.partition(":")
        renderer = INLINE_PARSER_FUNCTIONS.get(fn.strip())
        if renderer is not None:
            return renderer, raw_name.split(":", 1)[1]
    elif key.startswith("lang-"):
        return _lang_xx, None
    return None, None


def _split_args(s: str, start: int, end: int) -> list[tuple[str, int]]:
    """The arguments of a template whose name ends at `start` and whose closing `}}` starts
    at `end`: [(text, index of its first top-level "=" or -1)]. Pipes and "=" inside nested
    templates and links (`[[a|b]]`) belong to them."""
    body = s[start:end]
    if "{{" not in body and "[[" not in body:  # the common case: no nesting, C-speed split
        return [(t, t.find("=")) for t in body.split("|")[1:]]
    parts: list[tuple[str, int]] = []
    braces = links = 0
    arg_start, eq = -1, -1  # -1: still in the name
    for m in _ARG_TOKENS.finditer(s, start, end):
        t = m.group()
        if t == "{{":
            braces += 1
        elif t == "}}":
            braces -= braces > 0
        elif t == "[[":
            links += 1
        elif t == "]]":
            links -= links > 0
        elif braces or links:
            continue
        elif t == "|":
            if arg_start >= 0:
                parts.append((s[arg_start : m.start()], eq - arg_start if eq >= 0 else -1))
            arg_start, eq = m.end(), -1
        elif eq < 0 and arg_start >= 0:
            eq = m.start()
    if arg_start >= 0:
        parts.append((s[arg_start:end], eq - arg_start if eq >= 0 else -1))
    return parts


def _expand(text: str, level: int) -> str:
    """An argument's text with its templates rendered (allowed ones) or removed."""
    if "{{" not in text and "}}" not in text:
        return text
    out: list[str] = []
    keep_from, depth, opened_at = 0, 0, -1
    for m in _BRACES.finditer(text):
        run = m.end() - m.start()
        if text[m.start()] == "{":
            if depth == 0:
                out.append(text[keep_from : m.start()])
                opened_at = m.start()
            depth += run
        elif depth == 0:  # stray closer
            out.append(text[keep_from : m.start()])
            keep_from = m.end()
        else:
            depth -= run
            if depth <= 0:
                depth = 0
                out.append(_render_template(text, opened_at, m.end(), level))
                keep_from = m.end()
    if depth == 0:
        out.append(text[keep_from:])
    return "".join(out)


# --- dates -----------------------------------------------------------------------------------
# Rendered day-first ("11 March 1952"), as twiki.sources.wikidata renders Wikidata times, unless the
# call asks for month-first (`mf=y`, `df=US`, `format=mdy`). MediaWiki's own default for some
# of these templates is month-first; articles that want it usually say so in the call or in
# {{Use mdy dates}}, which this per-call renderer does not see. Times of day are not shown.


def _month(text: str) -> int:
    if text.isdigit():
        m = int(text)
        return m if 1 <= m <= 12 else 0
    return _MONTH_NUMBER.get(text[:3].lower(), 0) if len(text) >= 3 else 0


def _format_date(year: str, month: str = "", day: str = "", mdy: bool = False) -> str:
    """"11 March 1952" / "March 1952" / "1952" (mdy: "March 11, 1952"); parts that are not a
    valid date are shown as written."""
    m = _month(month) if month else 0
    if not _YEAR.fullmatch(year) or (month and not m):
        return " ".join(t for t in (day, month, year) if t)
    y = str(int(year))
    if not m:
        return y
    d = int(day) if day.isdigit() and 1 <= int(day) <= 31 else 0
    if not d:
        return f"{_MONTHS[m - 1]} {y}"
    return f"{_MONTHS[m - 1]} {d}, {y}" if mdy else f"{d} {_MONTHS[m - 1]} {y}"


def _mdy(a: _Args) -> bool:
    return (a.flag("mf") or a.opt("df").lower() in ("us", "mdy")
            or a.opt("format").lower() == "mdy")


def _date_args(a: _Args) -> str:
    """{{birth date|1952|3|11}}, {{start date|1997|05|16}}; one argument may be a whole date
    ({{start date|1997-05-16}}), shown reformatted when ISO, else as written."""
    if len(a.texts()) == 1 and not _YEAR.fullmatch(a[0]):
        return _iso_or_written(a.texts()[0], _mdy(a))
    return _format_date(a[0], a[1], a[2], _mdy(a))


def _iso_or_written(text: str, mdy: bool) -> str:
    m = _ISO_DATE.fullmatch(text)
    if m and _month(m.group(2)):
        return _format_date(m.group(1), m.group(2), m.group(3) or "", mdy)
    return text


def _death_date_and_age(a: _Args) -> str:
    """"16 February 2012 (aged 82)": the age follows from the two dates in the call, so it is
    reproducible (unlike the "(age 75)" of {{birth date and age}}, which counts to today)."""
    date = _format_date(a[0], a[1], a[2], _mdy(a))
    try:
        born = (int(a[3]), _month(a[4]), int(a[5]))
        died = (int(a[0]), _month(a[1]), int(a[2]))
    except ValueError:
        return date
    if not (born[1] and died[1]):
        return date
    age = died[0] - born[0] - (died[1:] < born[1:])
    return f"{date} (aged {age})" if 0 <= age < 150 else date


def _dts(a: _Args) -> str:
    """{{dts|1810}}, {{dts|2001|3|1}}, {{dts|2001-03-01}}, {{dts|March 1, 2001}}."""
    texts = a.texts()
    if len(texts) == 1:
        return _iso_or_written(texts[0], _mdy(a))
    if _YEAR.fullmatch(a[0]):
        return _format_date(a[0], a[1], a[2], _mdy(a))
    return " ".join(texts)


def _date(a: _Args) -> str:
    """{{date|2016-05-01}} -> "1 May 2016"; {{date|2016-05-01|mdy}}. Without a date it
    shows today's: dropped, so that output does not depend on the day it runs."""
    mdy = a[1].lower() == "mdy" or _mdy(a)
    return _iso_or_written(a[0], mdy) if a[0] else ""


def _as_of(a: _Args) -> str:
    """{{as of|2014}} -> "As of 2014"; |lc=y -> "as of"; |since=y -> "Since"; |alt= -> alt;
    |bare=y -> the date only."""
    if a.opt("alt"):
        return a.opt("alt")
    date = _format_date(a[0], a[1], a[2], _mdy(a)) if a[0] else ""
    if not date or a.flag("bare"):
        return date
    word = "since" if a.flag("since") else "as of"
    if not a.flag("lc"):
        word = word[0].upper() + word[1:]
    return f"{word} {date}{a.opt('post')}"


def _prefixed(prefix: str):
    """{{circa|1900}} -> "c. 1900"; {{circa}} -> "c."."""
    return lambda a: f"{prefix} {a[0]}" if a[0] else prefix


def _ordinal_text(a: _Args) -> str:
    n = a[0]
    if not n.isdigit():
        return n
    k = int(n)
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{n}{suffix}"


# --- quantities ------------------------------------------------------------------------------
# {{convert}} shows the value as written in the call (thousands separated by commas, as the
# template does) and the input unit; the converted value in brackets is not computed (no
# conversion arithmetic: the input quantity is the one the editor wrote and the one a fact is
# most likely stated in). Units are spelled out ("52,419 square miles") unless the call
# abbreviates (`abbr=on`, or {{cvt}}: "52,419 sq mi"), as the article shows them; temperatures
# keep their symbol ("20 °C"), as the template does. A unit code missing from CONVERT_UNITS is
# shown as written.

# code -> (symbol, singular name, plural name; "" means singular + "s").
CONVERT_UNITS: dict[str, tuple[str, str, str]] = {
    # length
    "m": ("m", "metre", ""), "km": ("km", "kilometre", ""), "cm": ("cm", "centimetre", ""),
    "mm": ("mm", "millimetre", ""), "um": ("μm", "micrometre", ""),
    "μm": ("μm", "micrometre", ""), "nm": ("nm", "nanometre", ""),
    "Mm": ("Mm", "megametre", ""), "Gm": ("Gm", "gigametre", ""),
    "mi": ("mi", "mile", ""), "smi": ("mi", "mile", ""), "yd": ("yd", "yard", ""),
    "ft": ("ft", "foot", "feet"), "in": ("in", "inch", "inches"),
    "nmi": ("nmi", "nautical mile", ""), "fathom": ("fathom", "fathom", ""),
    "ch": ("ch", "chain", ""), "furlong": ("furlong", "furlong", ""), "hand": ("h", "hand", ""),
    "ly": ("ly", "light-year", ""), "pc": ("pc", "parsec", ""),
    "AU": ("AU", "astronomical unit", ""),
    # area
    "m2": ("m2", "square metre", ""), "km2": ("km2", "square kilometre", ""),
    "cm2": ("cm2", "square centimetre", ""), "mm2": ("mm2", "square millimetre", ""),
    "ha": ("ha", "hectare", ""), "acre": ("acre", "acre", ""),
    "sqmi": ("sq mi", "square mile", ""), "sqft": ("sq ft", "square foot", "square feet"),
    "sqyd": ("sq yd", "square yard", ""), "sqin": ("sq in", "square inch", "square inches"),
    # volume
    "m3": ("m3", "cubic metre", ""), "km3": ("km3", "cubic kilometre", ""),
    "cm3": ("cm3", "cubic centimetre", ""), "L": ("L", "litre", ""), "l": ("l", "litre", ""),
    "ml": ("ml", "millilitre", ""), "mL": ("mL", "millilitre", ""),
    "Ml": ("Ml", "megalitre", ""), "ML": ("ML", "megalitre", ""),
    "GL": ("GL", "gigalitre", ""), "USgal": ("US gal", "US gallon", ""),
    "impgal": ("imp gal", "imperial gallon", ""),
    "cuft": ("cu ft", "cubic foot", "cubic feet"), "ft3": ("cu ft", "cubic foot", "cubic feet"),
    "cuin": ("cu in", "cubic inch", "cubic inches"), "cuyd": ("cu yd", "cubic yard", ""),
    "oilbbl": ("bbl", "barrel", ""), "bbl": ("bbl", "barrel", ""),
    "acre.ft": ("acre⋅ft", "acre-foot", "acre-feet"),
    "USfloz": ("US fl oz", "US fluid ounce", ""),
    # mass
    "kg": ("kg", "kilogram", ""), "g": ("g", "gram", ""), "mg": ("mg", "milligram", ""),
    "t": ("t", "tonne", ""), "MT": ("t", "tonne", ""), "LT": ("long ton", "long ton", ""),
    "ST": ("short ton", "short ton", ""), "lb": ("lb", "pound", ""), "oz": ("oz", "ounce", ""),
    "ozt": ("ozt", "troy ounce", ""), "st": ("st", "stone", "stone"),
    "carat": ("carat", "carat", ""), "cwt": ("cwt", "hundredweight", "hundredweight"),
    # speed
    "km/h": ("km/h", "kilometre per hour", "kilometres per hour"),
    "kph": ("km/h", "kilometre per hour", "kilometres per hour"),
    "mph": ("mph", "mile per hour", "miles per hour"),
    "m/s": ("m/s", "metre per second", "metres per second"),
    "ft/s": ("ft/s", "foot per second", "feet per second"),
    "kn": ("kn", "knot", ""), "knot": ("kn", "knot", ""),
    # temperature (shown as symbols unless abbr=off)
    "C": ("°C", "degree Celsius", "degrees Celsius"),
    "°C": ("°C", "degree Celsius", "degrees Celsius"),
    "C-change": ("°C", "degree Celsius", "degrees Celsius"),
    "F": ("°F", "degree Fahrenheit", "degrees Fahrenheit"),
    "°F": ("°F", "degree Fahrenheit", "degrees Fahrenheit"),
    "F-change": ("°F", "degree Fahrenheit", "degrees Fahrenheit"),
    "K": ("K", "kelvin", ""), "K-change": ("K", "kelvin", ""),
    # power, energy, pressure
    "W": ("W", "watt", ""), "kW": ("kW", "kilowatt", ""), "MW": ("MW", "megawatt", ""),
    "GW": ("GW", "gigawatt", ""), "hp": ("hp", "horsepower", "horsepower"),
    "kWh": ("kWh", "kilowatt-hour", ""), "MWh": ("MWh", "megawatt-hour", ""),
    "GWh": ("GWh", "gigawatt-hour", ""), "TWh": ("TWh", "terawatt-hour", ""),
    "J": ("J", "joule", ""), "kJ": ("kJ", "kilojoule", ""), "MJ": ("MJ", "megajoule", ""),
    "cal": ("cal", "calorie", ""), "kcal": ("kcal", "kilocalorie", ""),
    "Pa": ("Pa", "pascal", ""), "kPa": ("kPa", "kilopascal", ""),
    "MPa": ("MPa", "megapascal", ""), "bar": ("bar", "bar", ""),
    "psi": ("psi", "pound per square inch", "pounds per square inch"),
    "atm": ("atm", "standard atmosphere", ""),
    "mmHg": ("mmHg", "millimetre of mercury", "millimetres of mercury"),
    "inHg": ("inHg", "inch of mercury", "inches of mercury"),
    # densities and flows
    "PD/sqmi": ("/sq mi", "per square mile", "per square mile"),
    "PD/km2": ("/km2", "per square kilometre", "per square kilometre"),
    "m3/s": ("m3/s", "cubic metre per second", "cubic metres per second"),
    "cuft/s": ("cu ft/s", "cubic foot per second", "cubic feet per second"),
}
_TEMPERATURE_UNITS = frozenset({"C", "°C", "C-change", "F", "°F", "F-change", "K", "K-change"})
# Scale prefixes: e6acre "million acres"; k/M/G/T only before the units convert scales so.
_SCALE_WORDS = {"e3": "thousand", "e6": "million", "e9": "billion", "e12": "trillion",
                "k": "thousand", "M": "million", "G": "billion", "T": "trillion"}
_SCALED_UNIT = re.compile(r"(e3|e6|e9|e12)(.+)|([kMGT])(oilbbl|bbl|cuft|USgal|impgal|cuyd)")
# How convert shows the words between the values of a range.
_CONVERT_RANGES = {"-": "–", "–": "–", "to": " to ", "to(-)": " to ", "and": " and ",
                   "and(-)": " and ", "or": " or ", "by": " by ", "x": " × ", "×": " × ",
                   "+/-": " ± ", "±": " ± ", "&": " & ", "+": " + "}
# Input in two units: {{convert|6|ft|2|in|cm}} -> "6 feet 2 inches".
_CONVERT_PAIRS = frozenset({("ft", "in"), ("lb", "oz"), ("st", "lb"), ("mi", "yd"),
                            ("mi", "ch"), ("yd", "ft"), ("LT", "cwt"), ("m", "cm")})
_CONVERT_NUMBER = re.compile(
    r"[-+−]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?\d[\d,]*(?:\.\d+)?"
)
_CONVERT_FRACTION = re.compile(r"(?:(\d+)\+)?(\d+)/(\d+)")


def _convert_unit(code: str) -> tuple[str, str, str] | None:
    unit = CONVERT_UNITS.get(code)
    if unit is not None:
        sym, one, many = unit
        return sym, one, many or one + "s"
    if code.endswith("/d") and (base := _convert_unit(code[:-2])) is not None:
        return base[0] + "/d", base[1] + " per day", base[2] + " per day"
    m = _SCALED_UNIT.fullmatch(code)
    if m and (base := _convert_unit(m.group(2) or m.group(4))) is not None:
        word = _SCALE_WORDS[m.group(1) or m.group(3)]
        return f"{word} {base[0]}", f"{word} {base[2]}", f"{word} {base[2]}"
    return None


def _convert_value(v: str, comma: str) -> str:
    """A value as convert shows it: "52419" -> "52,419" (from 4 digits; `comma=off`: never,
    `comma=5`: from 5), "1+1/2" -> "1 1/2"; anything else as written."""
    f = _CONVERT_FRACTION.fullmatch(v)
    if f:
        return (f"{f.group(1)} " if f.group(1) else "") + f"{f.group(2)}/{f.group(3)}"
    if comma == "off" or "," in v or "e" in v.lower():
        return v
    sign = v[0] if v and v[0] in "+-−" else ""
    whole, dot, frac = v[len(sign):].partition(".")
    if len(whole) >= (5 if comma == "5" else 4):
        whole = f"{int(whole):,}"
    return f"{sign}{whole}{dot}{frac}"


def _convert(a: _Args, abbreviate: bool = False) -> str:
    """{{convert|52419|sqmi|km2}} -> "52,419 square miles"; {{convert|10|to|20|km}} ->
    "10 to 20 kilometres"; {{cvt|...}} or abbr=on -> symbols."""
    p = [t.strip() for t in a.pos]
    if not p or not (_CONVERT_NUMBER.fullmatch(p[0]) or _CONVERT_FRACTION.fullmatch(p[0])):
        return ""  # no value (or a computed one we dropped): convert would show an error
    abbr = a.opt("abbr").lower()
    symbols = abbr in ("on", "in", "yes") or (abbreviate and abbr not in ("off", "out"))
    adjective = a.flag("adj")
    comma = a.opt("comma").lower()
    values, seps, i = [_convert_value(p[0], comma)], [], 1
    while i + 1 < len(p) and p[i] in _CONVERT_RANGES and _CONVERT_NUMBER.fullmatch(p[i + 1]):
        seps.append(_CONVERT_RANGES[p[i]])
        values.append(_convert_value(p[i + 1], comma))
        i += 2
    code = p[i] if i < len(p) else ""
    unit, spelled = _unit_text(code, values, symbols, adjective, a)
    if adjective and spelled:  # "a 10-kilometre road", "a 10-to-20-kilometre walk"
        seps = [sep if sep == "–" else "-" + sep.strip().replace(" ", "-") + "-" for sep in seps]
    out = values[0] + "".join(sep + v for sep, v in zip(seps, values[1:]))
    if unit:
        out += ("-" if adjective and spelled else " ") + unit
    if (i + 2 < len(p) and (code, p[i + 2]) in _CONVERT_PAIRS
            and _CONVERT_NUMBER.fullmatch(p[i + 1])):
        value = _convert_value(p[i + 1], comma)
        out += f" {value} {_unit_text(p[i + 2], [value], symbols, False, a)[0]}"
    return out


def _unit_text(code: str, values: list[str], symbols: bool, adjective: bool,
               a: _Args) -> tuple[str, bool]:
    """(how the unit `code` shows after `values`, whether that is its spelled-out name)."""
    unit = _convert_unit(code)
    if unit is None:
        return code, False
    sym, one, many = unit
    if symbols or (code in _TEMPERATURE_UNITS and a.opt("abbr").lower() != "off"):
        return sym, False
    if adjective:
        name = one.replace(" ", "-")  # "a 600,000-square-foot facility"
    else:
        name = one if len(values) == 1 and values[0] == "1" else many
    if a.opt("sp").lower() == "us":
        name = name.replace("metre", "meter").replace("litre", "liter")
    return name, True


def _formatnum(a: _Args) -> str:
    """{{formatnum:1234567}} -> "1,234,567"."""
    v = a[0]
    return _convert_value(v, "") if _CONVERT_NUMBER.fullmatch(v) else v


def _currency(symbol: str):
    """{{US$|5 million}} -> "US$5 million" (later arguments are a year for the inflation
    link)."""
    return lambda a: f"{symbol}{a[0]}" if a[0] else symbol


def _frac(a: _Args) -> str:
    """{{frac|1|2}} -> "1/2"; {{frac|3}} -> "1/3"; {{frac|1|1|2}} -> "1 1/2"."""
    t = a.texts()
    if len(t) >= 3:
        return f"{t[0]} {t[1]}/{t[2]}"
    if len(t) == 2:
        return f"{t[0]}/{t[1]}"
    return f"1/{t[0]}" if t else ""


def _val(a: _Args) -> str:
    """{{val|6.241|e=18|u=C}} -> "6.241×10^18 C" (an uncertainty `|0.005` -> "±0.005")."""
    out = a[0]
    if not out:
        return ""
    if a[1] and not a[2]:
        out += f"±{a[1]}"
    if a.opt("e"):
        out += f"×10^{a.opt('e')}"
    unit = a.opt("u") or a.opt("ul") or a.opt("up") or a.opt("upl")
    return f"{out} {unit}" if unit else out


# --- names, languages, typography ------------------------------------------------------------

# Language names for {{lang-xx|text}}, which MediaWiki shows as "French: texte". The label is
# kept: in a lead it is what makes "(Bulgarian: Юлия Кръстева; born 24 June 1941)" read as
# prose, and it says what the foreign text is. A code missing here shows the text alone.
# ({{lang|xx|text}} never shows a label.)
LANGUAGE_NAMES = {
    "af": "Afrikaans", "aln": "Gheg Albanian", "am": "Amharic", "ang": "Old English",
    "ar": "Arabic", "arc": "Aramaic", "az": "Azerbaijani", "be": "Belarusian",
    "ber": "Berber", "bg": "Bulgarian", "bn": "Bengali", "bo": "Tibetan", "br": "Breton",
    "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish",
    "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fo": "Faroese",
    "fr": "French", "fy": "West Frisian", "ga": "Irish", "gd": "Scottish Gaelic",
    "gl": "Galician", "got": "Gothic", "grc": "Ancient Greek", "gu": "Gujarati",
    "haw": "Hawaiian", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole",
    "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian", "is": "Icelandic", "it": "Italian",
    "ja": "Japanese", "jv": "Javanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer",
    "kn": "Kannada", "ko": "Korean", "ku": "Kurdish", "ky": "Kyrgyz", "la": "Latin",
    "lb": "Luxembourgish", "lo": "Lao", "lt": "Lithuanian", "lv": "Latvian", "mi": "Māori",
    "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian", "mr": "Marathi", "ms": "Malay",
    "mt": "Maltese", "my": "Burmese", "nah": "Nahuatl", "ne": "Nepali", "nl": "Dutch",
    "nn": "Norwegian Nynorsk", "no": "Norwegian", "nb": "Norwegian Bokmål", "non": "Old Norse",
    "oc": "Occitan", "ota": "Ottoman Turkish", "pa": "Punjabi", "peo": "Old Persian",
    "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "qu": "Quechua", "ro": "Romanian",
    "ru": "Russian", "rus": "Russian", "sa": "Sanskrit", "sc": "Sardinian", "sco": "Scots",
    "se": "Northern Sami", "si": "Sinhala", "sk": "Slovak", "sl": "Slovene", "so": "Somali",
    "sq": "Albanian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "syc": "Syriac",
    "ta": "Tamil", "te": "Telugu", "tg": "Tajik", "th": "Thai", "tk": "Turkmen",
    "tl": "Tagalog", "tr": "Turkish", "tt": "Tatar", "ug": "Uyghur", "uk": "Ukrainian",
    "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "yi": "Yiddish", "yo": "Yoruba",
    "zh": "Chinese", "zu": "Zulu",
}


def _lang_xx(a: _Args) -> str:
    """{{lang-fr|texte}} -> "French: texte" (a transliteration or translation argument is not
    shown)."""
    text = a[0]
    if not text:
        return ""
    code = a.name.strip().replace("_", " ").lower()[5:].strip()
    label = LANGUAGE_NAMES.get(code) or LANGUAGE_NAMES.get(code.split("-")[0])
    return f"{label}: {text}" if label else text


def _arg(i: int):
    """Positional argument i (0-based), stripped."""
    return lambda a: a[i]


def _raw(a: _Args) -> str:
    """The first argument with its spacing, for formatting wrappers ({{nowrap|...}})."""
    return a.raw(0)


def _last(a: _Args) -> str:
    t = a.texts()
    return t[-1] if t else ""


def _joined(sep: str):
    return lambda a: sep.join(a.texts())


def _literal(text: str):
    return lambda a: text


def _nihongo(a: _Args) -> str:
    """{{nihongo|English|漢字|rōmaji}} -> "English" (else the rōmaji, else the kanji)."""
    return a[0] or a[2] or a[1]


_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:-[a-z]+)?")


def _ill(a: _Args) -> str:
    """{{ill|Foo|de|Bar}} -> "Foo"; `lt=` is the shown label when given. The older form put
    the language first ({{ill|de|Foo|Bar}}, seen in 2016 dumps): then the second argument."""
    if a.opt("lt"):
        return a.opt("lt")
    if a[1] and _LANGUAGE_CODE.fullmatch(a[0]) and not _LANGUAGE_CODE.fullmatch(a[1]):
        return a[1]
    return a[0]


def _ship(prefix: str):
    """{{HMS|Ajax|22}} -> "HMS Ajax (22)"; a third argument picks the parts (1 prefix, 2 name,
    4 pennant/hull number, summed: {{HMS|Ajax|22|6}} -> "Ajax (22)")."""

    def render(a: _Args) -> str:
        name, number = a[0], a[1]
        show = int(a[2]) if a[2].isdigit() and 0 < int(a[2]) < 8 else 7
        parts = [prefix] if show & 1 else []
        if show & 2 and name:
            parts.append(name)
        if show & 4 and number:
            parts.append(f"({number})")
        return " ".join(parts) if name else ""

    return render


def _angbr(a: _Args) -> str:
    return f"⟨{a[0]}⟩" if a[0] else ""


# name (normalized: lowercase, "_" as " ", spaces collapsed) -> renderer(_Args) -> text.
# Every name not here (and not `lang-*`) is dropped with its arguments: infoboxes, citations
# ({{sfn}}, {{efn}}, {{refn}}, {{rp}}, {{harvnb}}), maintenance tags, pronunciation
# ({{IPA-xx}}, {{IPAc-en}}, {{respell}}: apparatus, not prose), {{inflation}} and other
# computed values, templates that show today's date or an age counted to today.
INLINE_TEMPLATES = {
    # quantities and numbers
    "convert": _convert, "cvt": lambda a: _convert(a, abbreviate=True),
    "frac": _frac, "sfrac": _frac, "fraction": _frac,
    "val": _val, "e": lambda a: f"×10^{a[0]}" if a[0] else "",
    "nts": _arg(0), "ordinal": _ordinal_text,
    "us$": _currency("US$"), "usd": _currency("US$"), "gbp": _currency("£"),
    "£": _currency("£"), "eur": _currency("€"), "€": _currency("€"), "jpy": _currency("¥"),
    "¥": _currency("¥"), "inr": _currency("₹"), "₹": _currency("₹"), "a$": _currency("A$"),
    "aud": _currency("A$"),
    # dates ("11 March 1952"; see _format_date)
    "birth date": _date_args, "birth date and age": _date_args, "bda": _date_args,
    "death date": _date_args, "death date and age": _death_date_and_age,
    "dda": _death_date_and_age, "start date": _date_args, "start date and age": _date_args,
    "end date": _date_args, "end date and age": _date_args, "film date": _date_args,
    "birth-date": _arg(0), "death-date": _arg(0), "birth-date and age": _arg(0),
    "start-date": _arg(0), "end-date": _arg(0),
    "birth year and age": _arg(0), "death year and age": _arg(0),
    "dts": _dts, "date": _date, "as of": _as_of,
    "circa": _prefixed("c."), "c.": _prefixed("c."), "ca.": _prefixed("c."),
    "floruit": _prefixed("fl."), "fl.": _prefixed("fl."),
    # foreign text: the text ({{lang-xx}}: see LANGUAGE_NAMES)
    "lang": _arg(1), "transl": _last, "transliteration": _last, "rtl-lang": _arg(1),
    "script": _arg(1), "nihongo": _nihongo, "polytonic": _arg(0), "iast": _arg(0),
    "ipa": _arg(0),  # plain {{IPA|...}} only sets a font: the symbols are the text
    # formatting wrappers: their text
    "nowrap": _raw, "nobr": _raw, "nobreak": _raw, "no wrap": _raw, "small": _raw,
    "smaller": _raw, "big": _raw, "large": _raw, "larger": _raw, "midsize": _raw,
    "resize": _last, "em": _raw, "strong": _raw, "var": _raw, "mvar": _raw, "math": _raw,
    "sub": _raw, "sup": _raw, "sc": _raw, "smallcaps": _raw, "small caps": _raw,
    "code": _arg(0), "kbd": _raw, "samp": _raw, "tt": _raw, "noitalic": _raw,
    "nobold": _raw, "not a typo": _joined(""), "proper name": _raw, "sic": _joined(""),
    "chem": _joined(""), "angbr": _angbr,
    # abbreviations and names: what the page shows
    "abbr": _arg(0), "tooltip": _arg(0), "abbrlink": _arg(0),
    "ill": _ill, "interlanguage link": _ill, "interlanguage link multi": _ill,
    "sortname": lambda a: " ".join(t for t in (a[0], a[1]) if t),
    "sortkeyname": lambda a: " ".join(t for t in (a[0], a[1]) if t),  # dewiki
    "hms": _ship("HMS"), "uss": _ship("USS"), "ss": _ship("SS"), "mv": _ship("MV"),
    "rms": _ship("RMS"), "hmas": _ship("HMAS"), "hmcs": _ship("HMCS"),
    "hmnzs": _ship("HMNZS"), "usns": _ship("USNS"), "uscgc": _ship("USCGC"),
    # RNLI lifeboat stations and classes (the sample's rnli_stations page lists them), shown
    # as the same page writes them by hand: "Mersey", "D-class (IB1)"
    "lbs": _arg(0), "lbb": _arg(0),
    "lbc": lambda a: (f"{a[0]}-class" + (f" ({a[1]})" if a[1] else "")) if a[0] else "",
    # characters
    "nbsp": _literal(" "), "thinsp": _literal(" "), "snd": _literal(" – "),
    "spaced ndash": _literal(" – "), "ndash": _literal("–"), "mdash": _literal("—"),
    "mdashb": _literal("—"), "=": _literal("="),
    # Apostrophes beside quote markup ("''Eagle''{{'s}} footpad"): an entity, decoded after
    # the '' / ''' markup is gone, so that "''" + "'s" is not read as bold.
    "'": _literal("&#39;"), "'s": _literal("&#39;s"), "' \"": _literal("&#39;\""),
    "\" '": _literal("\"&#39;"),
}
# Parser functions, written `{{name:argument|...}}`.
INLINE_PARSER_FUNCTIONS = {"formatnum": _formatnum}
