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
"""

from __future__ import annotations

import html
import re

import mwparserfromhell

from .templates import DROP_MARK, render_template, template_spans

__all__ = ["DROPPED_SECTIONS", "clean_wikitext"]

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
# A site of DROP_MARKs (see _tidy_drop_sites) runs from the separators and spaces before its
# first mark through those after its last. Found from the mark (a literal: fast search), the
# part before it scanned backwards: a pattern opening with `[\s,;:]*` would be tried at every
# character of the paragraph.
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
