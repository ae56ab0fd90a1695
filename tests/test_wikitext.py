"""Tests of twiki.wikitext.clean_wikitext on real Wikipedia wikitext (the shared sample data:
34 raw articles and the articles of a real enwiki pages-articles bz2) and on small constructed
edge cases. Real data is read at run time (CC BY-SA text is not copied into the repo)."""

from __future__ import annotations

import bz2
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from twiki.wikitext import DROPPED_SECTIONS, MAX_UNCLOSED, clean_wikitext

SAMPLE = Path("/work/shared/data/wikimedia")
WIKITEXT_DIR = SAMPLE / "wikitext"
DUMP = SAMPLE / "enwiki" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"

# Markup that a reader of the cleaned text would recognise as wiki source.
RESIDUE = ["{{", "}}", "[[", "]]", "<ref", "{|", "|-", "<!--", "</", "&nbsp;", "'''"]

needs_sample = pytest.mark.skipif(
    not (WIKITEXT_DIR.is_dir() and DUMP.is_file()),
    reason=f"shared sample data not found under {SAMPLE}",
)


def dump_articles(path: Path) -> dict[str, str]:
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
                if ns == "0" and not redirect:
                    articles[title] = text
                title, ns, text, redirect = None, None, None, False
                el.clear()
    return articles


@pytest.fixture(scope="module")
def raw_articles() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted(WIKITEXT_DIR.glob("*.txt"))}


@pytest.fixture(scope="module")
def dump() -> dict[str, str]:
    return dump_articles(DUMP)


@pytest.fixture(scope="module")
def cleaned_raw(raw_articles):
    return {name: clean_wikitext(text, name) for name, text in raw_articles.items()}


@pytest.fixture(scope="module")
def cleaned_dump(dump):
    return {title: clean_wikitext(text, title) for title, text in dump.items()}


def texts(paragraphs) -> list[str]:
    return [text for _, text in paragraphs]


def residue_report(cleaned: dict) -> list[str]:
    found = []
    for name, paragraphs in cleaned.items():
        for path, text in paragraphs:
            for token in RESIDUE:
                if token in text:
                    i = text.index(token)
                    context = text[max(0, i - 60) : i + 60]
                    found.append(f"{name} {path}: {token!r} in ...{context}...")
    return found


# ---------------------------------------------------------------------------------------------
# Real articles: no markup left, nothing important lost


@needs_sample
def test_sample_data_is_what_the_tests_expect(raw_articles, dump):
    assert len(raw_articles) == 34
    assert 90 <= len(dump) <= 120  # ~100 articles among the bz2's 206 pages (many redirects)


@needs_sample
def test_no_markup_residue_in_the_34_raw_articles(cleaned_raw):
    assert residue_report(cleaned_raw) == []


@needs_sample
def test_no_markup_residue_in_the_dump_articles(cleaned_dump):
    assert residue_report(cleaned_dump) == []


@needs_sample
def test_every_article_yields_prose(cleaned_raw, cleaned_dump):
    empty = [n for n, ps in {**cleaned_raw, **cleaned_dump}.items() if not ps]
    assert empty == []
    for paragraphs in [*cleaned_raw.values(), *cleaned_dump.values()]:
        for path, text in paragraphs:
            assert text == text.strip() and "  " not in text and "\n" not in text
            assert any(ch.isalnum() for ch in text)
            assert all(path) and all(isinstance(t, str) for t in path)


@needs_sample
def test_link_labels_kept_as_plain_text(cleaned_raw):
    # [[French feminism]] together with [[Simone de Beauvoir]], [[Hélène Cixous]], ...<ref>
    feminist = [t for p, t in cleaned_raw["julia_kristeva"] if p == ("Feminist",)]
    assert feminist[0].startswith(
        "Kristeva has been regarded as a key proponent of French feminism together with "
        "Simone de Beauvoir, Hélène Cixous, and Luce Irigaray. Kristeva has had")
    # [[Bulgarians|Bulgarian]]-French [[philosopher]], ... [[psychoanalysis|psychoanalyst]]
    lead = cleaned_raw["julia_kristeva"][0]
    assert lead[0] == ()
    assert lead[1].startswith("Julia Kristeva (born 24 June 1941) is a Bulgarian-French "
                              "philosopher, literary critic, psychoanalyst, feminist, and, most "
                              "recently, novelist, who has lived in France since the mid-1960s.")


@needs_sample
def test_link_trail_joins_the_label(cleaned_dump):
    # "lies between [[latitude]]s [[29th parallel north|...]]"
    assert any("which lies between latitudes" in t for t in texts(cleaned_dump["Afghanistan"]))


@needs_sample
def test_section_paths_follow_headings(cleaned_raw, cleaned_dump):
    kristeva = dict((t, p) for p, t in cleaned_raw["julia_kristeva"])
    semiotic = next(t for t in kristeva if t.startswith("One of Kristeva's most important"))
    # ===The "semiotic" and the "symbolic"===<!--Linked from infobox above--> under ==Work==
    assert kristeva[semiotic] == ("Work", 'The "semiotic" and the "symbolic"')
    novelist = next(t for t in kristeva if t.startswith("Kristeva wrote a number of novels"))
    assert kristeva[novelist] == ("Novelist",)  # a level-2 heading pops the level-3 one

    einstein = cleaned_dump["Albert Einstein"]
    born = [(p, t) for p, t in einstein if t.startswith("Albert Einstein was born in Ulm")]
    # Link labels, &nbsp; decoded, ref dropped: the sentence as a reader sees it.
    assert born[0] == (("Biography", "Early life and education"),
                       born[0][1])
    assert born[0][1].startswith("Albert Einstein was born in Ulm, in the Kingdom of "
                                 "Württemberg in the German Empire on 14 March 1879. ")
    assert all(not any(h in ("", "==") for h in p) for p, _ in einstein)


@needs_sample
def test_headings_are_structure_not_text(cleaned_raw):
    for text in texts(cleaned_raw["julia_kristeva"]):
        assert "==" not in text
    assert not any(t in ("Life", "Work", "Honors") for t in texts(cleaned_raw["julia_kristeva"]))


@needs_sample
def test_infobox_values_are_absent(raw_articles, cleaned_raw, dump, cleaned_dump):
    # Values that occur only inside the infobox of each article.
    for article, value in [("julia_kristeva", "Georges Bataille"),
                           ("julia_kristeva", "Kristeva IMG 5888.jpg")]:
        assert value in raw_articles[article]
        assert not any(value in t for t in texts(cleaned_raw[article]))
    for value in ["Heinrich Friedrich Weber", "Eine neue Bestimmung der Moleküldimensionen"]:
        assert value in dump["Albert Einstein"]
        assert not any(value in t for t in texts(cleaned_dump["Albert Einstein"]))


@needs_sample
def test_categories_references_and_files_are_absent(raw_articles, cleaned_raw, dump, cleaned_dump):
    kristeva = " ".join(texts(cleaned_raw["julia_kristeva"]))
    assert "[[Category:French Maoists]]" in raw_articles["julia_kristeva"]
    assert "French Maoists" not in kristeva and "Category" not in kristeva
    # <ref>Vanda Zajko and Miriam Leonard (eds.), ''Laughing with Medusa''. ...</ref>
    assert "Laughing with Medusa" in raw_articles["julia_kristeva"]
    assert "Laughing with Medusa" not in kristeva

    einstein = " ".join(texts(cleaned_dump["Albert Einstein"]))
    assert "20th-century American engineers" not in einstein
    # A file whose caption holds its own wikilinks.
    assert "matriculation certificate" in dump["Albert Einstein"]
    assert "matriculation certificate" not in einstein
    assert "thumb" not in einstein.split()


@needs_sample
def test_file_caption_with_templates_does_not_eat_the_next_paragraph(cleaned_dump):
    # [[File:Taliban insurgency ...|thumb|Current military situation ...\n{{legend|..}}\n...]]
    # directly followed by the "Governance" prose.
    afghanistan = texts(cleaned_dump["Afghanistan"])
    assert not any("Current military situation" in t for t in afghanistan)
    governance = [t for p, t in cleaned_dump["Afghanistan"] if p == ("Governance",)]
    assert governance[0].startswith("Afghanistan is an Islamic republic consisting of three "
                                    "branches, the executive, legislative, and judicial.")


@needs_sample
def test_trailing_apparatus_sections_are_dropped(cleaned_raw, cleaned_dump):
    kristeva = " ".join(texts(cleaned_raw["julia_kristeva"]))
    assert "Exberliner" not in kristeva  # == External links ==
    assert "Capacity to be alone" not in kristeva  # == See also ==
    for paragraphs in [*cleaned_raw.values(), *cleaned_dump.values()]:
        for path, _ in paragraphs:
            assert not any(h.lower() in DROPPED_SECTIONS for h in path), path


@needs_sample
def test_list_items_become_their_own_paragraphs(cleaned_raw, cleaned_dump):
    novels = [t for p, t in cleaned_raw["julia_kristeva"] if p == ("Selected writings", "Novels")]
    assert novels == [
        "The Samurai: A Novel. New York: Columbia University Press, 1992.",
        "The Old Man and the Wolves. New York: Columbia University Press, 1994.",
        "Possessions: A Novel. New York: Columbia University Press, 1998.",
        "Murder in Byzantium. New York: Columbia University Press, 2006.",
        "Teresa, My Love: An Imagined Life of the Saint of Avila. New York: Columbia University "
        "Press, 2015.",
    ]
    # Nested list items (## under #), each with a <ref> removed.
    apollo = [t for p, t in cleaned_dump["Apollo"]
              if p[-1:] == ("Consorts and children: extended list",)]
    assert ["Phylacides", "Phylander", "Acantha", "Aethusa", "Eleuther"] == apollo[3:8]


@needs_sample
def test_entities_are_decoded(cleaned_raw):
    # *Reading the Bible. ... (pp.&nbsp;92–101). Oxford: Blackwell, 2001.
    assert any("(pp. 92–101). Oxford: Blackwell, 2001." in t
               for t in texts(cleaned_raw["julia_kristeva"]))


@needs_sample
def test_tables_are_dropped_even_in_a_page_with_flattened_newlines(raw_articles, cleaned_raw):
    # raith_rovers.txt arrived with every newline turned into a space: its tables are mid-line.
    assert "{| class=\"wikitable\" |- ! Name" in raw_articles["raith_rovers"]
    raith = " ".join(texts(cleaned_raw["raith_rovers"]))
    assert "Simon Pollock" in raw_articles["raith_rovers"]
    assert "Simon Pollock" not in raith  # the kit man, only in a staff table's cell
    assert raith.startswith("Raith Rovers Football Club is a Scottish professional football club "
                            "based in the town of Kirkcaldy, Fife.")


@needs_sample
def test_truncated_and_spliced_articles_never_raise_nor_leave_markup(raw_articles, dump):
    # Cutting real pages at arbitrary points leaves unclosed templates, refs, comments, tables
    # and links everywhere: the cleaner must cope without raising or leaking markup.
    rng = random.Random(20160501)
    broken = {}
    for name, text in [*raw_articles.items(), *list(dump.items())[:40]]:
        for k in range(4):
            i, j = sorted(rng.randrange(len(text)) for _ in range(2))
            broken[f"{name}[:{j}]"] = text[:j]
            broken[f"{name}[:{i}]+[{j}:]"] = text[:i] + text[j:]
    cleaned = {name: clean_wikitext(text, name) for name, text in broken.items()}
    assert residue_report(cleaned) == []


# ---------------------------------------------------------------------------------------------
# Constructed edge cases


def clean(text: str) -> list[str]:
    return texts(clean_wikitext(text, "test"))


def test_nested_templates_and_a_template_spanning_lines():
    text = ("{{Infobox person\n| name = Hidden Name\n| birth = {{birth date|1900|1|1}}\n"
            "| spouse = {{marriage|[[Someone]]|{{nowrap|1920}}}}\n}}\n"
            "'''Ada''' was a {{lang|fr|{{small|poet}}}}writer."
            "{{citation needed|date={{CURRENTYEAR}}}}")
    assert clean(text) == ["Ada was a writer."]


def test_template_alone_on_its_line_does_not_split_a_paragraph():
    assert clean("First line\n{{clear}}\nsecond line.") == ["First line second line."]


def test_links():
    assert clean("[[Target|label]], [[Target]]s and [[Target|the label]]s, [[:Category:Foo]].") == [
        "label, Targets and the labels, Category:Foo."
    ]
    assert clean("[[Paris, Texas|]] and [[Mercury (planet)|]]") == ["Paris and Mercury"]


def test_files_with_captions_holding_links_are_dropped():
    text = ("Before [[File:Cat.jpg|thumb|upright|A [[cat]] on a [[Mat (flooring)|mat]], "
            "with [[Image:x.png|20px]] inside]] after.\n"
            "[[Image:Dog.png|left|A [[dog]]]]\n\nNext.")
    assert clean(text) == ["Before after.", "Next."]


def test_categories_interlanguage_links_and_galleries_are_dropped():
    text = ("Text.<gallery>\nFile:A.jpg|A [[b]]\n</gallery>\n"
            "[[Category:People| ]]\n[[de:Text]]\n[[zh-min-nan:Text]]")
    assert clean(text) == ["Text."]


def test_refs_comments_and_hidden_tags_are_dropped():
    text = ('A<ref name="a">{{cite web|title=Secret}}</ref> b<ref name=a/> c<ref name="b" /> '
            "d<!-- hidden [[x]] --> e <math>x^{2}</math>f<REF>Upper</REF>.")
    assert clean(text) == ["A b c d e f."]


def test_inline_tags_keep_their_text():
    text = "H<sub>2</sub>O is <small>small</small>,<br/>bold <b>b</b> <span style=\"x\">s</span>."
    assert clean(text) == ["H2O is small, bold b s."]
    assert clean("x<y and y>z, a < b") == ["x<y and y>z, a < b"]  # not tags: prose


def test_tables_nested_and_with_templates_are_dropped():
    text = ("Intro.\n{| class=\"wikitable\"\n|-\n! Header\n|-\n| cell {{flag|X}}\n"
            "{|\n| inner\n|}\n|}\nOutro.")
    assert clean(text) == ["Intro. Outro."]


def test_external_links_keep_their_label_only():
    assert clean("See [http://example.org the site] and [https://x.org] or http://bare.org.") == [
        "See the site and or http://bare.org."
    ]


def test_quotes_entities_magic_words_and_rules():
    assert clean("__NOTOC__'''Bold''' ''it'' '''''both''''' A&amp;B&nbsp;C&ndash;D\n----\nE") == [
        "Bold it both A&B C–D",
        "E",
    ]


def test_lists_are_split_and_markers_removed():
    text = "Intro:\n* one\n** one.a\n# two\n: three\n; four\nTail."
    assert clean(text) == ["Intro:", "one", "one.a", "two", "three", "four", "Tail."]


def test_punctuation_only_and_empty_paragraphs_are_dropped():
    assert clean("{{a}}\n\n* {{cite}}\n\n( ; )\n\n—.\n\nReal.") == ["Real."]


def test_empty_brackets_left_by_templates_are_tidied():
    text = "Julia ({{IPA-fr|x}}; {{lang-bg|y}}; born 1941) was."
    assert clean(text) == ["Julia (born 1941) was."]


def test_section_paths():
    text = ("Lead.\n== A ==\na\n=== A1 ===\na1\n==== A1x ====\na1x\n=== A2 ===\na2\n"
            "== [[Linked|B]] heading <!-- c --> ==\nb\n== References ==\nr\n=== Sub ===\nrs\n"
            "== After ==\nz")
    assert clean_wikitext(text) == [
        ((), "Lead."),
        (("A",), "a"),
        (("A", "A1"), "a1"),
        (("A", "A1", "A1x"), "a1x"),
        (("A", "A2"), "a2"),
        (("B heading",), "b"),
        (("After",), "z"),
    ]


def test_nowiki_text_is_literal():
    assert clean("<nowiki>*</nowiki>Not a list, <nowiki>''not italic''</nowiki>.") == [
        "*Not a list, ''not italic''."
    ]


@pytest.mark.parametrize(
    "broken",
    [
        "Broken {{cite web|url=http://x",
        "Broken<ref>unclosed reference text",
        "Broken<ref name=\"cut",
        "Broken<!-- unclosed comment",
        "Broken\n{| class=\"wikitable\"\n|-\n| cell",
        "Broken [[File:X.jpg|thumb|caption with [[link]]",
        "Broken<math>x^2",
        "Broken}} stray closer",
    ],
)
def test_unclosed_constructs_cost_their_paragraph_only(broken):
    text = f"Intro.\n\n{broken}\n\nSecond paragraph.\n== Later ==\nThird."
    out = clean_wikitext(text)
    assert out[0] == ((), "Intro.")
    assert out[-2:] == [((), "Second paragraph."), (("Later",), "Third.")]
    leaked = [t for _, t in out for w in ("cite", "url", "unclosed", "cell", "caption", "x^2")
              if w in t]
    assert leaked == []


def test_unclosed_template_stops_at_the_next_heading():
    assert clean_wikitext("Text {{cite\n== History ==\nMore.") == [
        ((), "Text"), (("History",), "More.")
    ]


def test_hopeless_page_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="Bad Page"):
        clean_wikitext("x {{open\n\n" * (MAX_UNCLOSED + 1), "Bad Page")
    with pytest.raises(ValueError, match="not str"):
        clean_wikitext(b"bytes", "Bytes Page")


def test_empty_and_markup_only_pages():
    assert clean_wikitext("") == []
    assert clean_wikitext("{{Infobox}}\n[[Category:X]]\n<!-- -->") == []


def test_windows_newlines():
    assert clean_wikitext("== H ==\r\nline one\r\nline two\r\n\r\nNext") == [
        (("H",), "line one line two"), (("H",), "Next")
    ]


def test_bench_helper_reports_both_rates():
    from pipelines.bench_wikitext import bench_clean

    result = bench_clean(["'''Ada''' was a [[poet]].{{stub}}"] * 3)
    assert set(result) == {"input_mb", "twiki_mb_s", "naive_mb_s", "speedup"}
    assert result["input_mb"] > 0 and result["twiki_mb_s"] > 0 and result["naive_mb_s"] > 0
