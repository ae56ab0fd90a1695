"""Inline text templates: what a template in prose renders to, for twiki.text.wikitext.

Most templates are apparatus (infoboxes, citations, navboxes, maintenance tags) and are
dropped. A few stand for words of the sentence they sit in: "At {{convert|52419|sqmi|km2}},
Alabama is ..." or "born {{birth date|1952|3|11}}". Dropping those would cut the facts the
align stage looks for out of the evidence sentence, so INLINE_TEMPLATES (at the end of this
module) renders them to the plain text a reader sees. Only a template in prose (at the top
level of the page, or inside another rendered one) is rendered: one nested in an infobox or a
reference goes with it. Inside a rendered template's arguments, allowed templates are
rendered and every other one is dropped. Named arguments are options, never text (the few
that *are* the shown text, such as {{ill|...|lt=label}} or {{as of|...|alt=...}}, are read
by name). No template is expanded from its wiki source: each renderer is a small Python
function of the arguments, written from the template's documentation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["DROP_MARK", "INLINE_PARSER_FUNCTIONS", "INLINE_TEMPLATES", "MAX_TEMPLATE_NESTING",
           "render_template", "template_spans"]

# Deepest nesting of rendered templates inside each other; deeper ones are dropped. Each level
# rescans its arguments, so this bounds the work on a hostile page (real pages nest 2-3 deep).
MAX_TEMPLATE_NESTING = 8

# The mark twiki.text.wikitext leaves where it dropped a template or formula inside a line, so
# that the separators around it are tidied there and nowhere else: a character that no wikitext
# holds (XML 1.0 forbids it). A rendered template's arguments are read without it.
DROP_MARK = "\x00"

_BRACES = re.compile(r"\{\{+|\}\}+")
_TEMPLATE_NAME = re.compile(r"\{\{([^{}|]*)")
_ARG_TOKENS = re.compile(r"\{\{|\}\}|\[\[|\]\]|[|=]")
_YES = frozenset({"y", "yes", "on", "true", "1"})
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_MONTH_NUMBER = {m[:3].lower(): i for i, m in enumerate(_MONTHS, 1)}
_ISO_DATE = re.compile(r"(-?\d{1,4})-(\d{1,2})(?:-(\d{1,2}))?")
_YEAR = re.compile(r"-?\d{1,4}")


def _data(name: str) -> dict:
    """A table of this module kept as JSON beside it (twiki/text/<name>), read once at import."""
    return json.loads((Path(__file__).parent / name).read_text(encoding="utf-8"))


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


def template_spans(s: str, pos: int = 0) -> Iterator[tuple[int, int]]:
    """The top-level templates of s from `pos` on, in order, as (start, end) of `{{` ... `}}`
    (nested ones lie inside; brace runs are counted, so `{{{1}}}` closes with its run). A stray
    `}}` run outside any template is yielded too (s[start] is "}"), and a template never closed
    comes last, as (start, -1)."""
    depth, opened_at = 0, -1
    for m in _BRACES.finditer(s, pos):
        run = m.end() - m.start()
        if s[m.start()] == "{":
            if depth == 0:
                opened_at = m.start()
            depth += run
        elif depth == 0:  # stray closer
            yield m.start(), m.end()
        else:
            depth -= run
            if depth <= 0:
                depth = 0
                yield opened_at, m.end()
    if depth:
        yield opened_at, -1


def render_template(s: str, start: int, end: int, level: int = 0) -> str:
    """Text of the template s[start:end] (`{{` ... `}}`): its rendering when INLINE_TEMPLATES
    has its name, else "". `level` counts the rendered templates around it (0 in prose). The
    name is read before anything else: most templates are not rendered, and those cost one
    short regex match and a dict lookup."""
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
    elif key.startswith("script/"):  # {{Script/Hebrew|...}}: a font for its text
        return _arg(0), None
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
    keep_from = 0
    for start, end in template_spans(text):
        out.append(text[keep_from:start])
        if end < 0:  # never closed: dropped with the rest of the argument
            return "".join(out)
        if text[start] == "{":
            out.append(render_template(text, start, end, level))
        keep_from = end
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

# code -> (symbol, singular name, plural name; "" means singular + "s"), from
# convert_units.json, where the codes stand in groups ("length", "area", ...). The
# "temperature" group shows as symbols unless abbr=off.
_UNIT_GROUPS: dict[str, dict[str, list[str]]] = _data("convert_units.json")
CONVERT_UNITS: dict[str, tuple[str, str, str]] = {
    code: tuple(unit) for group in _UNIT_GROUPS.values() for code, unit in group.items()}
_TEMPERATURE_UNITS = frozenset(_UNIT_GROUPS["temperature"])
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
LANGUAGE_NAMES: dict[str, str] = _data("language_names.json")  # code -> name


def _lang_xx(a: _Args) -> str:
    """{{lang-fr|texte}} -> "French: texte" (a transliteration or translation argument is not
    shown)."""
    text = a[0]
    if not text:
        return ""
    code = a.name.strip().replace("_", " ").lower()[5:].strip()
    label = LANGUAGE_NAMES.get(code) or LANGUAGE_NAMES.get(code.split("-")[0])
    return f"{label}: {text}" if label else text


def _block_quote(a: _Args) -> str:
    """{{quote|text=...|author=...}}, {{cquote|...}}, {{blockquote}}, {{quotation}}: MediaWiki
    shows the quotation as a block of its own, so it is a paragraph of its own here (the
    author and source are apparatus, as a citation is)."""
    text = a.opt("text") or a.opt("quote") or a[0]
    return f"\n\n{text}\n\n" if text.strip() else ""


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
    # script templates: a font for the text, often nested in {{lang-xx}}
    "hebrew": _arg(0), "nastaliq": _arg(0), "coptic": _arg(0), "unicode": _arg(0),
    "script/arabic": _arg(0), "script/hebrew": _arg(0), "script/nastaliq": _arg(0),
    # block quotations: a paragraph of their own
    "quote": _block_quote, "cquote": _block_quote, "blockquote": _block_quote,
    "quotation": _block_quote, "quote frame": _block_quote,
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
