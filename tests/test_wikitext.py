"""Tests of twiki.text.wikitext.clean_wikitext, and of the templates it renders
(twiki.text.templates), on real Wikipedia wikitext (the real files in tests/data/wikimedia: 34
raw articles and the articles of a real enwiki pages-articles bz2) and on small constructed
edge cases."""

from __future__ import annotations

import random
import re
import time

import mwparserfromhell
import pytest

import real_articles
from twiki.text.templates import MAX_TEMPLATE_NESTING
from twiki.text.wikitext import (DROPPED_SECTIONS, MAX_UNCLOSED, Link, clean_page,
                                  clean_wikitext, link_target, redirect_target)

# Markup that a reader of the cleaned text would recognise as wiki source.
RESIDUE = ["{{", "}}", "[[", "]]", "<ref", "{|", "|-", "<!--", "</", "&nbsp;", "'''"]


@pytest.fixture(scope="module")
def raw_articles() -> dict[str, str]:
    return real_articles.raw_articles()


@pytest.fixture(scope="module")
def dump() -> dict[str, str]:
    return real_articles.dump_articles()


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


def test_sample_data_is_what_the_tests_expect(raw_articles, dump):
    assert len(raw_articles) == 34
    assert 90 <= len(dump) <= 120  # ~100 articles among the bz2's 206 pages (many redirects)


def test_no_markup_residue_in_the_34_raw_articles(cleaned_raw):
    assert residue_report(cleaned_raw) == []


def test_no_markup_residue_in_the_dump_articles(cleaned_dump):
    assert residue_report(cleaned_dump) == []


def test_every_article_yields_prose(cleaned_raw, cleaned_dump):
    empty = [n for n, ps in {**cleaned_raw, **cleaned_dump}.items() if not ps]
    assert empty == []
    for paragraphs in [*cleaned_raw.values(), *cleaned_dump.values()]:
        for path, text in paragraphs:
            assert text == text.strip() and "  " not in text and "\n" not in text
            assert any(ch.isalnum() for ch in text)
            assert all(path) and all(isinstance(t, str) for t in path)


def test_link_labels_kept_as_plain_text(cleaned_raw):
    # [[French feminism]] together with [[Simone de Beauvoir]], [[Hélène Cixous]], ...<ref>
    feminist = [t for p, t in cleaned_raw["julia_kristeva"] if p == ("Feminist",)]
    assert feminist[0].startswith(
        "Kristeva has been regarded as a key proponent of French feminism together with "
        "Simone de Beauvoir, Hélène Cixous, and Luce Irigaray. Kristeva has had")
    # ({{IPA-fr|kʁisteva|lang}}; {{lang-bg|Юлия Кръстева}}; born 24 June 1941) is a
    # [[Bulgarians|Bulgarian]]-French [[philosopher]], ... [[psychoanalysis|psychoanalyst]]
    lead = cleaned_raw["julia_kristeva"][0]
    assert lead[0] == ()
    assert lead[1].startswith("Julia Kristeva (Bulgarian: Юлия Кръстева; born 24 June 1941) is "
                              "a Bulgarian-French "
                              "philosopher, literary critic, psychoanalyst, feminist, and, most "
                              "recently, novelist, who has lived in France since the mid-1960s.")


def test_link_trail_joins_the_label(cleaned_dump):
    # "lies between [[latitude]]s [[29th parallel north|...]]"
    assert any("which lies between latitudes" in t for t in texts(cleaned_dump["Afghanistan"]))


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


def test_headings_are_structure_not_text(cleaned_raw):
    for text in texts(cleaned_raw["julia_kristeva"]):
        assert "==" not in text
    assert not any(t in ("Life", "Work", "Honors") for t in texts(cleaned_raw["julia_kristeva"]))


def test_infobox_values_are_absent(raw_articles, cleaned_raw, dump, cleaned_dump):
    # Values that occur only inside the infobox of each article.
    for article, value in [("julia_kristeva", "Georges Bataille"),
                           ("julia_kristeva", "Kristeva IMG 5888.jpg")]:
        assert value in raw_articles[article]
        assert not any(value in t for t in texts(cleaned_raw[article]))
    for value in ["Heinrich Friedrich Weber", "Eine neue Bestimmung der Moleküldimensionen"]:
        assert value in dump["Albert Einstein"]
        assert not any(value in t for t in texts(cleaned_dump["Albert Einstein"]))


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


def test_file_caption_with_templates_does_not_eat_the_next_paragraph(cleaned_dump):
    # [[File:Taliban insurgency ...|thumb|Current military situation ...\n{{legend|..}}\n...]]
    # directly followed by the "Governance" prose.
    afghanistan = texts(cleaned_dump["Afghanistan"])
    assert not any("Current military situation" in t for t in afghanistan)
    governance = [t for p, t in cleaned_dump["Afghanistan"] if p == ("Governance",)]
    assert governance[0].startswith("Afghanistan is an Islamic republic consisting of three "
                                    "branches, the executive, legislative, and judicial.")


def test_trailing_apparatus_sections_are_dropped(cleaned_raw, cleaned_dump):
    kristeva = " ".join(texts(cleaned_raw["julia_kristeva"]))
    assert "Exberliner" not in kristeva  # == External links ==
    assert "Capacity to be alone" not in kristeva  # == See also ==
    for paragraphs in [*cleaned_raw.values(), *cleaned_dump.values()]:
        for path, _ in paragraphs:
            assert not any(h.lower() in DROPPED_SECTIONS for h in path), path


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


def test_entities_are_decoded(cleaned_raw):
    # *Reading the Bible. ... (pp.&nbsp;92–101). Oxford: Blackwell, 2001.
    assert any("(pp. 92–101). Oxford: Blackwell, 2001." in t
               for t in texts(cleaned_raw["julia_kristeva"]))


def test_tables_are_dropped_even_in_a_page_with_flattened_newlines(raw_articles, cleaned_raw):
    # raith_rovers.txt arrived with every newline turned into a space: its tables are mid-line.
    assert "{| class=\"wikitable\" |- ! Name" in raw_articles["raith_rovers"]
    raith = " ".join(texts(cleaned_raw["raith_rovers"]))
    assert "Simon Pollock" in raw_articles["raith_rovers"]
    assert "Simon Pollock" not in raith  # the kit man, only in a staff table's cell
    assert raith.startswith("Raith Rovers Football Club is a Scottish professional football club "
                            "based in the town of Kirkcaldy, Fife.")


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
    # Text templates inside an infobox go with it; inside a text template they are rendered.
    text = ("{{Infobox person\n| name = Hidden Name\n| birth = {{birth date|1900|1|1}}\n"
            "| spouse = {{marriage|[[Someone]]|{{nowrap|1920}}}}\n}}\n"
            "'''Ada''' was a {{lang|fr|{{small|poète}}}} writer."
            "{{citation needed|date={{CURRENTYEAR}}}}")
    assert clean(text) == ["Ada was a poète writer."]


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
    text = "Julia ({{IPA-fr|x}}; {{respell|y}}; born 1941) was."
    assert clean(text) == ["Julia (born 1941) was."]
    assert clean("Serper ({{IPAc-en|x}}) (born 1969) and {{sfn|a}}({{efn|b}}) then.") == [
        "Serper (born 1969) and then."
    ]


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


# ---------------------------------------------------------------------------------------------
# Inline text templates: rendered to the words a reader sees, not dropped

# (article, the template call as the page writes it, a sentence of the cleaned article that
# holds its rendering). Each exercises one renderer on real text.
REAL_TEMPLATE_SENTENCES = [
    ("Alabama", "{{convert|52419|sqmi|km2|abbr=out|sp=us}}",
     "Alabama is the thirtieth-largest state in the United States with 52,419 square miles of "
     "total area: 3.2% of the area is water,"),
    ("Arts_Club_of_Chicago", "{{convert|19000|sqft|m2}}",
     "However, the new space is 19,000 square feet, which is 7,000 square feet larger than the "
     "old space."),
    ("Aardwolf", "{{convert|55|to|80|cm|in}}",
     "The aardwolf is about 55 to 80 centimetres long, excluding its bushy tail, which is about "
     "20–30 centimetres long, and stands about 40 to 50 centimetres tall at the shoulders."),
    ("Algeria", "{{convert|400|to|670|mm|1|abbr=on}}",
     "Rainfall is fairly plentiful along the coastal part of the Tell Atlas, ranging from 400 to "
     "670 mm annually, the amount of precipitation increasing from west to east."),
    ("Alaska", "{{convert|15|–|17|in|disp=or|abbr=on}}",
     "It is a small (15–17 in) Arctic grouse that lives among willows and on open tundra and "
     "muskeg."),
    ("Adobe", "{{convert|25|by|36|cm|0|abbr=on}}",
     "In North America, the brick is typically about 25 by 36 cm in size."),
    ("Apollo 11", "{{convert|67|in|cm|0|adj=on}}",
     "a light informed Aldrin that at least one of the 67-inch probes hanging from Eagle's "
     "footpads had touched the surface"),  # also ''Eagle''{{'s}}: not read as bold
    ("Autism", "{{as of|2014|lc=y}}",
     "About 1.5% of children in the United States (one in 68) are diagnosed with ASD as of 2014, "
     "a 30% increase from one in 88 in 2012."),
    ("Afghanistan", "{{US$|2 billion}}",
     "The state needs more than US$2 billion to rehabilitate its irrigation systems so that the "
     "water is properly managed."),
    ("Alkane", "{{frac|3}}",
     "arranged spatially in the form of a tetrahedron, the angle of cos−1(−1/3) ≈ 109.47° "
     "between them."),
    ("Ampere", "{{val|6.241|e=18}}",
     "The ampere is equivalent to one coulomb (roughly 6.241×10^18 times the elementary charge) "
     "per second."),
    ("Alkali metal", "{{e|24}}", "The mass of the Earth is approximately 5.98×10^24 kg."),
    ("Alkane", "{{chem|C|''n''|H|2''n''+2}}",
     "linear (general formula CnH2n+2) wherein the carbon atoms are joined in a snake-like "
     "structure"),
    ("Arts_Club_of_Chicago", "{{lang|fr|Personnage et oiseaux devant le soleil}}",
     "Personage and Birds in Front of the Sun (Personnage et oiseaux devant le soleil), ink and "
     "gouache on paper, 1942, by Joan Miró"),
    ("Gregory-Serper", "{{lang-ru|Григорий Юрьевич Серпер}}",
     "Gregory Serper (Russian: Григорий Юрьевич Серпер) (born September 14, 1969) is a Grand "
     "Master of chess."),
    # lang-xx holding {{large}}, then {{transl}} in italics, then lang-ber
    ("Algeria", "{{lang-ar|{{large|الجزائر}}}} ''{{transl|ar|al-Jazā'ir}}''",
     "Algeria (Arabic: الجزائر al-Jazā'ir; Berber: ⵍⵣⵣⴰⵢⴻⵔ Dzayer), officially People's "
     "Democratic Republic of Algeria, is a sovereign state in North Africa"),
    ("Alchemy", "{{rtl-lang|ar|الكيمياء}}",
     "borrowed from Arabic al-kīmiyā’ (الكيمياء) ‘philosopher's stone’."),
    ("Mozilla-Firefox", "{{IPA|moʊˈzɪlə ˈfaɪɹfɑks}}",
     "Mozilla Firefox (amerikanisch-englische Aussprache [moʊˈzɪlə ˈfaɪɹfɑks]), auch kurz "
     "Firefox genannt,"),
    ("Aikido", "{{Nihongo|'''Aikido'''|合気道|Aikidō|lead=yes}}",
     "Aikido is a modern Japanese martial art developed by Morihei Ueshiba"),
    ("Alchemy", "{{nowrap|[[Pope Clement IV]]}}",
     "composed his Great Work (Latin: Opus Majus) for Pope Clement IV as part of a project "
     "towards rebuilding the medieval university curriculum"),
    ("Aldous Huxley", "{{smaller|(for ''After Many a Summer Dies the Swan'')}}",
     "1939 James Tait Black Memorial Prize (for After Many a Summer Dies the Swan)"),
    ("Alchemy", "{{sc|ad}}", "after suppressing a revolt in Alexandria (ad 292)."),
    ("ASCII", "{{mdashb}}readily",
     "An intermediate order—readily implemented—converts uppercase letters to lowercase before "
     "comparing ASCII values."),
    ("A", "{{angbr|a}} represents",
     "In modern English orthography, the letter ⟨a⟩ represents seven different vowel sounds:"),
    # the older {{ill|language|local title|...}} form
    ("Arthur Schopenhauer", "({{ill|de|Gymnasium Ernestinum Gotha|",
     "He dedicated himself wholly to studies at the Gotha gymnasium (Gymnasium Ernestinum Gotha) "
     "in Saxe-Gotha-Altenburg,"),
    ("Achilles", "{{HMS|Ajax|22|6}}",
     "It became famous for its part in the Battle of the River Plate, alongside Ajax (22) and "
     "Exeter (68)."),
    ("rnli_stations", "(ALBs): {{Lbb|Mersey}}",
     "All weather lifeboats (ALBs): Mersey, Severn, Shannon, Tamar, Trent and Tyne"),
    ("rnli_stations", "(ILBs): {{Lbc|D|IB1}}",
     "Inshore lifeboats (ILBs): D-class (IB1), Atlantic 75, Atlantic 85 and E-class"),
    # {{sfn}} stays dropped, and so does the gap it leaves: Staline"),{{sfn|...}} and in his
    ("Animal Farm", '"),{{sfn|Davison|2000|p=}} and',
     'Orwell described Animal Farm as a satirical tale against Stalin ("un conte satirique '
     'contre Staline"), and in his essay "Why I Write" (1946), wrote that'),
]


@pytest.fixture(scope="module")
def all_raw(raw_articles, dump) -> dict[str, str]:
    return {**raw_articles, **dump}


@pytest.fixture(scope="module")
def all_cleaned(cleaned_raw, cleaned_dump) -> dict[str, list]:
    return {**cleaned_raw, **cleaned_dump}


@pytest.mark.parametrize("article, template, sentence", REAL_TEMPLATE_SENTENCES,
                         ids=[f"{a}:{t[:24]}" for a, t, _ in REAL_TEMPLATE_SENTENCES])
def test_text_templates_render_in_real_sentences(all_raw, all_cleaned, article, template,
                                                 sentence):
    assert template in all_raw[article]
    assert [t for t in texts(all_cleaned[article]) if sentence in t] != []


def test_text_templates_inside_an_infobox_stay_dropped(all_raw, all_cleaned):
    # |death_date = {{nowrap|{{death date and age|2012|2|16|1929|8|22}}}} in the infobox only.
    assert "{{nowrap|{{death date and age|2012|2|16|1929|8|22}}}}" in all_raw["Harry-McPherson"]
    mcpherson = texts(all_cleaned["Harry-McPherson"])
    assert not any("(aged 82)" in t or "16 February 2012" in t for t in mcpherson)
    assert mcpherson[0].startswith("Harry Cummings McPherson, Jr. (August 22, 1929 – February "
                                   "16, 2012) served as counsel")


def test_named_arguments_never_reach_the_text(all_cleaned):
    option = re.compile(r"\b(?:df|mf|abbr|lc|sp|adj|lk|disp|italic|order|sigfig|lead|e|u)=")
    leaked = [t for ps in all_cleaned.values() for t in texts(ps) if option.search(t)]
    assert leaked == []


@pytest.mark.parametrize(
    "wikitext, expected",
    [
        # convert/cvt: the value as written (thousands separated) and the input unit, spelled
        # out unless abbreviated; nothing converted
        ("At {{convert|52419|sqmi|km2}}, Alabama is large.",
         "At 52,419 square miles, Alabama is large."),
        ("At {{cvt|52419|sqmi|km2}}.", "At 52,419 sq mi."),
        ("{{convert|10|to|20|km}} and {{convert|10|-|20|km|abbr=on}}",
         "10 to 20 kilometres and 10–20 km"),
        ("a {{convert|10|to|20|km|adj=on}} walk of {{convert|1|mi|km}}",
         "a 10-to-20-kilometre walk of 1 mile"),
        ("a {{convert|600000|sqft|m2|adj=on}} hall", "a 600,000-square-foot hall"),
        ("{{convert|6|ft|2|in|cm}} tall", "6 feet 2 inches tall"),
        ("{{convert|20|C|F}}, {{convert|20|C|F|abbr=off}}", "20 °C, 20 degrees Celsius"),
        ("{{convert|5|e6acre|e6ha}}; {{convert|3|Moilbbl/d}}",
         "5 million acres; 3 million barrels per day"),
        ("{{convert|1000|m|comma=off}}, {{convert|1000|m|sp=us}}, {{convert|1+1/2|mi}}",
         "1000 metres, 1,000 meters, 1 1/2 miles"),
        # an unknown unit as written; no value (or a computed one) -> dropped
        ("{{convert|7|zorps}}, then {{convert||km}}{{convert|{{#expr:2*3}}|km}}.",
         "7 zorps, then."),
        ("{{formatnum:1234567.5}}", "1,234,567.5"),
        # dates: day first unless the call asks for month first; no age counted to today
        ("born {{birth date|1952|3|11}}", "born 11 March 1952"),
        ("born {{birth date|mf=yes|1905|02|02}}", "born February 2, 1905"),
        ("born {{Birth date and age|df=yes|1989|7|23}}", "born 23 July 1989"),
        ("died {{death date and age|2012|2|16|1929|8|22}}", "died 16 February 2012 (aged 82)"),
        ("founded {{start date|1997-05-16}}, {{start date and age|1883}}, {{end date|2001|5}}",
         "founded 16 May 1997, 1883, May 2001"),
        ("{{dts|2001|3|1}}, {{dts|2001-03-01|format=mdy}}, {{dts|||1810}}",
         "1 March 2001, March 1, 2001, 1810"),
        ("{{date|2016-05-01}} and {{date}} today", "1 May 2016 and today"),
        ("{{as of|2016}}, {{as of|2016|5|lc=y}}, {{as of|2016|5|12|df=US}}, "
         "{{as of|2010|since=y}}", "As of 2016, as of May 2016, As of May 12, 2016, Since 2010"),
        ("{{circa|1900}}, {{c.|1900}}, {{fl.|1200}}", "c. 1900, c. 1900, fl. 1200"),
        ("the {{ordinal|1}}, {{ordinal|12}}, {{ordinal|22}} and {{ordinal|103}}",
         "the 1st, 12th, 22nd and 103rd"),
        # names, foreign text, typography
        ("{{lang-fr|texte}}, {{lang-xx-unknown|text}}, {{lang|de|Wort|italic=no}}",
         "French: texte, text, Wort"),
        ("{{abbr|NASA|National Aeronautics and Space Administration}} by "
         "{{sortname|Ada|Lovelace}}", "NASA by Ada Lovelace"),
        ("{{ill|Hans Meier|de|Johann Meier}} and {{ill|A|de|B|lt=the A}}",
         "Hans Meier and the A"),
        ("{{GBP|3}}, {{€|4}}, {{USD|5}}", "£3, €4, US$5"),
        ("{{frac|1|2}}, {{frac|1|1|2}}, {{mvar|x}}, {{math|1=x = 2}}", "1/2, 1 1/2, x, x = 2"),
        ("{{USS|Hornet|CV-12}}", "USS Hornet (CV-12)"),
        ("7{{nbsp}}September{{snd}}''GQ''{{'}}s critic", "7 September – GQ's critic"),
        # names compare as MediaWiki compares them, and case-insensitively
        ("{{Birth_date|1952|3|11}}, {{ BIRTH  DATE |1952|3|11}}, {{Template:Nowrap|x}}",
         "11 March 1952, 11 March 1952, x"),
    ],
)
def test_text_templates(wikitext, expected):
    assert clean(wikitext) == [expected]


def test_nested_text_templates():
    # allowed in allowed: rendered; dropped in allowed: dropped; allowed in dropped: dropped
    text = "{{nowrap|{{convert|10|km}} away}} and {{nowrap|a{{sfn|x}} b}}{{efn|{{nowrap|n}}}}."
    assert clean(text) == ["10 kilometres away and a b."]
    # nested deeper than MAX_TEMPLATE_NESTING: the deep part is dropped, nothing raises
    deep = "{{nowrap|" * (MAX_TEMPLATE_NESTING + 5) + "deep" + "}}" * (MAX_TEMPLATE_NESTING + 5)
    assert clean(f"Before {deep} after.") == ["Before after."]


def test_named_arguments_are_options_not_text():
    text = ("{{birth date|df=yes|1952|3|11}}; {{lang|fr|texte|italic=no}}; "
            "{{convert|1|km|abbr=on|lk=on}}; {{nowrap|df=y}}{{nowrap|1=a=b}}")
    assert clean(text) == ["11 March 1952; texte; 1 km; a=b"]


@pytest.mark.parametrize(
    "wikitext, expected",
    [
        ("Lifeboats: {{x|a}}, {{x|b}}, {{x|c}} and {{x|d}}.", "Lifeboats: and."),
        ("the city{{efn|x}}, which lies", "the city, which lies"),
        ("in groups: {{a}}, {{b}}.", "in groups."),
        ("a {{x}} b and foo{{x}}bar", "a b and foobar"),
        ("Medicus {{x}}. Next", "Medicus. Next"),
        ("{{x}}, sales rose.", "sales rose."),
        ("Kristeva ({{IPA-fr|x}}; {{lang-bg|y}}; born 1941)", "Kristeva (Bulgarian: y; born 1941)"),
        ("Let v be <math>v</math>. Text <ref>a</ref>. More <ref name=x/>, and",
         "Let v be. Text. More, and"),
        # real punctuation away from a dropped template stays as written
        ("the . operator , or ; and ... c . . . d: e {{x}}, f",
         "the . operator , or ; and ... c . . . d: e, f"),
    ],
)
def test_punctuation_left_by_dropped_templates_is_tidied(wikitext, expected):
    assert clean(wikitext) == [expected]


def test_real_punctuation_is_not_tidied(all_cleaned):
    # (others, including the No.&nbsp;2, did not shift ,&nbsp;(comma) or .&nbsp;(full stop)
    ascii_text = " ".join(texts(all_cleaned["ASCII"]))
    assert "did not shift , (comma) or . (full stop)" in ascii_text
    # "the best way to learn an algorithm is to try it . . . immediately take pen and paper
    assert "to try it . . . immediately take pen" in " ".join(texts(all_cleaned["Algorithm"]))


def test_cleaner_and_naive_baseline_both_have_a_rate():
    # What benchmarks/bench_wikitext.py measures: MB of input wikitext per CPU second of
    # clean_wikitext and of mwparserfromhell's strip_code, on the same pages.
    pages = ["'''Ada''' was a [[poet]].{{stub}}"] * 3
    input_mb = sum(len(t.encode("utf-8")) for t in pages) / 1e6
    cleaners = {"twiki": clean_wikitext, "naive": lambda t: mwparserfromhell.parse(t).strip_code()}
    rates = {}
    for name, cleaner in cleaners.items():
        start = time.process_time()
        for page in pages:
            cleaner(page)
        rates[name] = input_mb / (time.process_time() - start)
    assert input_mb > 0 and rates["twiki"] > 0 and rates["naive"] > 0


# ---------------------------------------------------------------------------------------------
# Links kept (clean_page): spans and targets on real pages


# Every wikilink of the raw page as written: (target, shown text with its trail).
_RAW_LINK = re.compile(r"\[\[([^\[\]|\n]+)(?:\|([^\[\]\n]*))?\]\]([a-z]*)")


def _raw_link_pairs(wikitext: str) -> set[tuple[str, str]]:
    """(normalized target, shown text as the cleaner shows it) of the page's article links,
    read from the raw wikitext alone (no offsets involved)."""
    pairs = set()
    for m in _RAW_LINK.finditer(wikitext):
        target = link_target(m.group(1))
        if target is None:
            continue
        shown = (m.group(2) if m.group(2) is not None else m.group(1).lstrip(":")) + m.group(3)
        cleaned = clean_wikitext(shown)
        if cleaned:
            pairs.add((target, cleaned[0][1]))
    return pairs


@pytest.fixture(scope="module")
def paged(raw_articles, dump):
    return {name: clean_page(text, name) for name, text in {**raw_articles, **dump}.items()}


def test_links_keep_the_text_exactly_as_without_links(raw_articles, dump, paged):
    for name, text in {**raw_articles, **dump}.items():
        assert [(p.section, p.text) for p in paged[name]] == clean_wikitext(text, name), name


@pytest.mark.parametrize("title, at_least", [("Albert Einstein", 300), ("Alabama", 500)])
def test_link_spans_show_the_link_text_and_target_on_real_pages(dump, paged, title, at_least):
    pairs = _raw_link_pairs(dump[title])
    links = [(p.text, link) for p in paged[title] for link in p.links]
    assert len(links) >= at_least
    for text, link in links:
        shown = text[link.start : link.end]
        assert 0 <= link.start < link.end <= len(text) and shown == shown.strip()
    found = [(link.target, text[link.start : link.end]) in pairs for text, link in links]
    assert sum(found) / len(found) >= 0.99, [
        (text[link.start : link.end], link.target)
        for (text, link), ok in zip(links, found) if not ok][:10]


def test_links_of_einsteins_lead(paged):
    lead = paged["Albert Einstein"][0]
    shown = {lead.text[a:b]: t for a, b, t in lead.links}
    # "...a German-born [[theoretical physicist]]..."; "[[Introduction to quantum
    # mechanics|quantum theory]]"
    assert shown["theoretical physicist"] == "Theoretical physicist"
    assert shown["quantum theory"] == "Introduction to quantum mechanics"
    assert shown["general theory of relativity"] == "General theory of relativity"


def test_every_real_link_span_is_shown_text(paged):
    total = 0
    for name, paragraphs in paged.items():
        for p in paragraphs:
            for a, b, target in p.links:
                total += 1
                assert 0 <= a < b <= len(p.text), (name, p.text, a, b)
                assert p.text[a:b].strip() == p.text[a:b] and target == target.strip()
                assert target[:1] == target[:1].upper() and "_" not in target
                assert "#" not in target
    assert total > 20_000


def test_link_kinds():
    [p] = clean_page("The [[cat]]s sat on [[Mat_(flooring)#Uses|a ''mat'']], near "
                     "[[Paris, Texas|]] and [[:Bonn]].")
    assert p.text == "The cats sat on a mat, near Paris and Bonn."
    assert [(p.text[a:b], t) for a, b, t in p.links] == [
        ("cats", "Cat"), ("a mat", "Mat (flooring)"), ("Paris", "Paris, Texas"),
        ("Bonn", "Bonn")]


def test_links_to_other_namespaces_projects_and_sections_give_no_link():
    [p] = clean_page("See [[:Category:Physics]], [[wikt:foo|foo]], [[#History|history]], "
                     "[[:fr:Paris|Paris]], [[Help:Contents]], [[Wikipedia:About|about]] and "
                     "[[Star Wars: Episode IV – A New Hope|the film]].")
    assert p.text == ("See Category:Physics, foo, history, Paris, Help:Contents, about and "
                      "the film.")
    assert [(p.text[a:b], t) for a, b, t in p.links] == [
        ("the film", "Star Wars: Episode IV – A New Hope")]


def test_link_spans_survive_templates_entities_quotes_and_whitespace():
    [p] = clean_page("'''[[Alabama]]''' ({{lang-en|[[Alabama]]}}) &amp; [[A&amp;B|A &amp; B]]"
                     "\u00a0 [[Foo| spaced  label ]]<ref>x</ref>, [[Bar|b{{cite web|x}}]], "
                     "'[[Epoch (astronomy)|''epoch'' year]]")
    # (the text is the cleaner's as without links, its quirks included: "label ,")
    assert p.text == "Alabama (English: Alabama) & A & B spaced label , b, epoch year"
    assert [(p.text[a:b], t) for a, b, t in p.links] == [
        ("Alabama", "Alabama"), ("Alabama", "Alabama"), ("A & B", "A&B"),
        ("spaced label", "Foo"), ("b", "Bar"), ("epoch year", "Epoch (astronomy)")]
    assert isinstance(p.links[0], Link) and p.links[0].start == 0


def test_links_in_list_items_and_inside_tags():
    paragraphs = clean_page("* [[Aristotle]] wrote\n* on <span>[[Plato|his teacher]]</span>\n\n"
                            "Odd [[Foo]] <div class=x>[[Bar|bar]] ''' b''' {{{1}}}")
    shown = {"Aristotle": "Aristotle", "his teacher": "Plato", "Foo": "Foo", "bar": "Bar"}
    for p in paragraphs:
        for a, b, t in p.links:
            assert shown[p.text[a:b]] == t
    assert [p.text for p in paragraphs][:2] == ["Aristotle wrote", "on his teacher"]
    assert [len(p.links) for p in paragraphs][:2] == [1, 1]


# ---------------------------------------------------------------------------------------------
# Text fixes (issue 15, item 8)


def test_a_literature_section_is_kept_and_reference_sections_are_not(paged):
    # Algeria: "=== Literature ===" under "== Culture ==" is prose about Algerian literature.
    literature = [p.text for p in paged["Algeria"] if p.section[-1:] == ("Literature",)]
    assert any(t.startswith("The historic roots of Algerian literature goes back to the "
                            "Numidian era") for t in literature)
    assert "literature" not in DROPPED_SECTIONS
    assert {"references", "notes", "external links", "see also", "further reading",
            "bibliography"} <= DROPPED_SECTIONS


def test_block_quotations_are_kept_as_paragraphs(paged):
    # Apollo 11: {{quote|Here men from the planet Earth first set foot upon the Moon, ...}}
    assert ("Here men from the planet Earth first set foot upon the Moon, July 1969 A.D. We "
            "came in peace for all mankind.") in [p.text for p in paged["Apollo 11"]]
    assert clean("He said:\n{{Quote|text=To be or not.|author=W. S.}}\nThen {{cquote|Hi}} x") \
        == ["He said:", "To be or not.", "Then", "Hi", "x"]


def test_a_removed_ref_between_sentences_leaves_a_space(paged):
    # Albania: "...3.2% in 2011.<ref>...</ref>Albania and Croatia have..."
    albania = " ".join(p.text for p in paged["Albania"])
    assert "3.2% in 2011. Albania and Croatia have" in albania
    assert "in 2011.Albania" not in albania
    mitchell = " ".join(p.text for p in paged["K.-Nicole-Mitchell"])
    assert "to the university. In 2001," in mitchell
    assert clean("in 1539.<ref>a</ref>Anarchist was. Then<ref>b</ref>, 2.<ref name=x/>"
                 "<ref>c</ref>The end.<ref>d</ref> Ok") == [
        "in 1539. Anarchist was. Then, 2. The end. Ok"]


def test_script_templates_nested_in_lang_keep_their_text(paged):
    assert clean("X ({{lang-he|{{Hebrew|עברית}}}}; {{lang-fa|{{nastaliq|فارسی}}}}; "
                 "{{lang-ar|{{Script/Arabic|عربي}}}}; {{lang-ru|{{script|Cyrl|Москва}}}}).") \
        == ["X (Hebrew: עברית; Persian: فارسی; Arabic: عربي; Russian: Москва)."]
    # Allah: "codepoint reserved for Allāh, {{unicode|ﷲ}} = U+FDF2"
    assert any("reserved for Allāh, ﷲ = U+FDF2" in p.text for p in paged["Allah"])


def test_redirect_text_without_the_xml_element_is_a_redirect():
    assert redirect_target("#REDIRECT [[Foo_bar#History]]\n{{R from move}}") == "Foo bar"
    assert redirect_target("#redirect[[ alabama ]]") == "Alabama"
    assert redirect_target("Redirects are pages: #REDIRECT [[X]]") is None
    assert clean_page("#REDIRECT [[Anarchism]]") == []
    assert clean_wikitext("  #REDIRECT: [[Anarchism]]") == []


def test_tables_are_dropped_by_default_and_kept_as_rows_on_request(raw_articles):
    page = raw_articles["AACTA-Award-for-Outstanding-Achievement-in-Short-Film-Screen-Craft"]
    default = [p.text for p in clean_page(page)]
    rows = clean_page(page, tables=True)
    assert not any(" | " in t for t in default)
    texts_ = [p.text for p in rows]
    assert "Year | Recipient(s) | Film | Craft" in texts_
    row = next(p for p in rows if p.text == "2006 (48th) | Emma Lung | Stranded | Acting")
    assert [(row.text[a:b], t) for a, b, t in row.links] == [
        ("(48th)", "2006 Australian Film Institute Awards"), ("Emma Lung", "Emma Lung"),
        ("Stranded", "Stranded (2005 film)")]
    # the prose around the table is the same either way
    assert [t for t in texts_ if " | " not in t] == default
    small = clean_page("{|\n|+ Caption\n|-\n! a !! b\n|-\n| style=\"x\" | 1 || [[Two|2]]\n"
                       "|-\n| {|\n| nested\n|}\n| kept\n|}", tables=True)
    assert [p.text for p in small] == ["Caption", "a | b", "1 | 2", "kept"]
    assert [(small[2].text[a:b], t) for a, b, t in small[2].links] == [("2", "Two")]


def test_paragraphs_the_fast_path_cannot_clean_keep_their_text_and_only_true_spans():
    # Leftover markup sends a paragraph to mwparserfromhell (and, failing that, to the
    # scrub): its text is the one clean_wikitext gives, and a link it keeps shows its text.
    for text in ["A [[Foo]] ]] b &bogus; [[Bar|the bar]]s.", "x |- [[Foo|y]] z",
                 "[[a|" * 50 + "]]" * 50 + " [[Foo]] &bogus;"]:
        paragraphs = clean_page(text)
        assert [(p.section, p.text) for p in paragraphs] == clean_wikitext(text)
        for p in paragraphs:
            for a, b, t in p.links:
                assert p.text[a:b] in {"Foo", "the bars", "y", "a"} and t in {"Foo", "Bar", "A"}


def test_spaces_from_markup_inside_a_link_are_not_its_text():
    shown = {t: [(p.text[a:b], target) for p in clean_page(t) for a, b, target in p.links]
             for t in ["a[[Foo|<br>bar]] x", "x [[Foo|bar<br>]]  y [[B|c]]",
                       "[[A|a [[b]] c]] d [[E]]"]}
    assert list(shown.values()) == [[("bar", "Foo")], [("bar", "Foo"), ("c", "B")],
                                    [("a b c", "A"), ("E", "E")]]
