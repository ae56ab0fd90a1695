"""Figures for the diff stage (`make bench`), all on real article text (the gensim enwiki sample
and the 34 raw-wikitext articles in tests/data/wikimedia, cleaned by twiki.text.wikitext):

- precision and recall, per sentence, of the changed text `diff_article` finds on labelled
  edit cases (insertions at the start/middle/end, changed, added, replaced and truncated
  sentences; and edits that add no text: moves, deletions, splits, merges, whitespace,
  punctuation and case edits), 1-3 edits per article, seeded;
- diff throughput (pages/s per worker) on a synthetic month pair built from those articles
  with about 8% of pages changed (plus a few new and deleted pages);
- peak RSS of the diff stage (a subprocess, one worker) at 1x and 10x that input.

Run: `.venv/bin/python -m benchmarks.bench_diff [OUT_DIR]` (default data/bench/diff); the figures
are printed and written to OUT_DIR/bench_diff.json.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from twiki.engine.artifacts import ArtifactBuild, ShardWriter, shard_of  # noqa: E402
from twiki.engine.paths import DataRoot  # noqa: E402
from twiki.stages.diff import diff_article  # noqa: E402
from twiki.text.normalize import compare_key  # noqa: E402
from twiki.text.sentences import split_sentences  # noqa: E402
from twiki.stages.extract import SCHEMA, STAGE as EXTRACT_STAGE  # noqa: E402
from twiki.text.wikitext import clean_wikitext  # noqa: E402

SEED = 20220101
LABELLED_CASES = 600
CHANGED_SHARE = 0.08  # TemporalWiki: diffsets hold about 8% of a month's articles
NEW_SHARE = 0.005
DELETED_SHARE = 0.003
# Pages of the 1x month pair for the throughput and memory figures; 10x is ten times that.
BASE_PAGES = 8192
SHARDS = 2
MEAN_PARAGRAPHS = 8  # ~3.5 kB of clean text a page, about enwiki's mean article

Article = list[tuple[tuple[str, ...], str]]


# ---------------------------------------------------------------------------------------
# Real articles.

def real_articles() -> list[Article]:
    """Clean paragraphs of the sample's articles that have at least three paragraphs."""
    from benchmarks.bench_wikitext import sample_texts
    texts = sample_texts()
    articles = [clean_wikitext(t) for t in texts]
    return [a for a in articles if len(a) >= 3]


# ---------------------------------------------------------------------------------------
# Labelled edits. Each takes (paragraphs, rng, donor) and returns the edited paragraphs and
# the sentences it made new (the gold "changed text"; empty for edits that add no text).

_WORD = re.compile(r"(?<![\w.])[A-Za-z]{4,}(?![\w.])")
_NUMBER = re.compile(r"\b\d+\b")


def _multi_sentence(paras: Article, rng: random.Random) -> int | None:
    idx = [i for i, (_, t) in enumerate(paras) if len(split_sentences(t)) >= 2]
    return rng.choice(idx) if idx else None


def _pick_sentence(paras: Article, rng: random.Random) -> tuple[int, int, list[str]] | None:
    """(paragraph, sentence, that paragraph's sentences) of a random sentence in a paragraph
    of two sentences or more; None when the article has no such paragraph."""
    i = _multi_sentence(paras, rng)
    if i is None:
        return None
    sents = split_sentences(paras[i][1])
    return i, rng.randrange(len(sents)), sents


def _with_text(paras: Article, i: int, text: str) -> Article:
    """The article with paragraph i's text replaced (its section kept)."""
    out = list(paras)
    out[i] = (paras[i][0], text)
    return out


def _set_sentence(paras: Article, i: int, k: int, sentence: str | None) -> Article:
    s, t = paras[i]
    sents = split_sentences(t)
    if sentence is None:
        del sents[k]
    else:
        sents[k] = sentence
    out = list(paras)
    out[i] = (s, " ".join(sents))
    if not sents:
        del out[i]
    return out


def insert_paragraph(where):
    def op(paras, rng, donor):
        text = donor.paragraph(rng)
        pos = {"start": 0, "end": len(paras), "middle": rng.randrange(1, len(paras))}[where]
        section = paras[min(pos, len(paras) - 1)][0]
        return paras[:pos] + [(section, text)] + paras[pos:], split_sentences(text)
    op.__name__ = f"insert_paragraph_{where}"
    return op


def add_sentence(paras, rng, donor):
    i = rng.randrange(len(paras))
    t = paras[i][1]
    new = donor.sentence(rng)
    return _with_text(paras, i, f"{t} {new}" if rng.random() < 0.7 else f"{new} {t}"), [new]


def replace_sentence(paras, rng, donor):
    if (picked := _pick_sentence(paras, rng)) is None:
        return paras, []
    i, k, _ = picked
    new = donor.sentence(rng)
    return _set_sentence(paras, i, k, new), [new]


def change_word(paras, rng, donor):
    """One word (or number) of a sentence changed: the TemporalWiki 'updated fact' case."""
    if (picked := _pick_sentence(paras, rng)) is None:
        return paras, []
    i, k, sents = picked
    sent = sents[k]
    numbers = list(_NUMBER.finditer(sent))
    words = [m for m in _WORD.finditer(sent) if m.start() > 0]
    if numbers and rng.random() < 0.5:
        m = rng.choice(numbers)
        repl = str(int(m.group()) + rng.randint(1, 9))
    elif words:
        m = rng.choice(words)
        repl = donor.word(rng, avoid=m.group())
    else:
        return paras, []
    new = sent[:m.start()] + repl + sent[m.end():]
    return _set_sentence(paras, i, k, new), [new]


def truncate_sentence(paras, rng, donor):
    """The end of a sentence cut ("... CEO of Y until 2019." -> "... CEO of Y.")."""
    if (picked := _pick_sentence(paras, rng)) is None:
        return paras, []
    i, k, sents = picked
    words = sents[k].rstrip(".!?\"')").split()
    if len(words) < 6:
        return paras, []
    new = " ".join(words[:len(words) - rng.randint(2, 4)]) + "."
    return _set_sentence(paras, i, k, new), [new]


def delete_sentence(paras, rng, donor):
    if (picked := _pick_sentence(paras, rng)) is None:
        return paras, []
    i, k, _ = picked
    return _set_sentence(paras, i, k, None), []


def delete_paragraph(paras, rng, donor):
    out = list(paras)
    del out[rng.randrange(len(out))]
    return out, []


def move_paragraph(paras, rng, donor):
    out = list(paras)
    p = out.pop(rng.randrange(len(out)))
    out.insert(rng.randrange(len(out) + 1), p)
    return out, []


def split_paragraph(paras, rng, donor):
    i = _multi_sentence(paras, rng)
    if i is None:
        return paras, []
    s, t = paras[i]
    sents = split_sentences(t)
    k = rng.randrange(1, len(sents))
    return paras[:i] + [(s, " ".join(sents[:k])), (s, " ".join(sents[k:]))] + paras[i + 1:], []


def merge_paragraphs(paras, rng, donor):
    i = rng.randrange(len(paras) - 1)
    return paras[:i] + [(paras[i][0], paras[i][1] + " " + paras[i + 1][1])] + paras[i + 2:], []


def whitespace(paras, rng, donor):
    i = rng.randrange(len(paras))
    t = paras[i][1]
    spaces = [m.start() for m in re.finditer(" ", t)]
    if not spaces:
        return paras, []
    p = rng.choice(spaces)
    kind = rng.randrange(3)
    space = "  " if kind == 0 else "" if kind == 1 else " \u00a0"
    return _with_text(paras, i, t[:p] + space + t[p + 1:]), []


def punctuation(paras, rng, donor):
    i = rng.randrange(len(paras))
    t = paras[i][1]
    marks = [m.start() for m in re.finditer(r"[,;:]|\.(?= [A-Z])", t)]
    if marks and rng.random() < 0.6:
        p = rng.choice(marks)  # a comma dropped, or a full stop made a semicolon
        t = t[:p] + ("" if t[p] != "." else ";") + t[p + 1:]
    else:
        spaces = [m.start() for m in re.finditer(r"(?<=\w) (?=\w)", t)]
        if not spaces:
            return paras, []
        p = rng.choice(spaces)
        t = t[:p] + "," + t[p:]
    return _with_text(paras, i, t), []


def case(paras, rng, donor):
    i = rng.randrange(len(paras))
    t = paras[i][1]
    words = list(re.finditer(r"\b[a-z]{4,}\b", t))
    if not words:
        return paras, []
    m = rng.choice(words)
    return _with_text(paras, i, t[:m.start()] + m.group().capitalize() + t[m.end():]), []


ADDING = [insert_paragraph("start"), insert_paragraph("middle"), insert_paragraph("end"),
          add_sentence, replace_sentence, change_word, truncate_sentence]
NEUTRAL = [delete_sentence, delete_paragraph, move_paragraph, split_paragraph, merge_paragraphs,
           whitespace, punctuation, case]


class Donor:
    """New text taken from other real articles."""

    def __init__(self, articles: list[Article]):
        self.paragraphs = [t for a in articles for _, t in a if len(split_sentences(t)) >= 2]
        self.sentences = [s for t in self.paragraphs for s in split_sentences(t)
                          if len(s.split()) >= 5]
        self.words = sorted({w for s in self.sentences[:5000] for w in _WORD.findall(s)})

    def paragraph(self, rng):
        return rng.choice(self.paragraphs)

    def sentence(self, rng):
        return rng.choice(self.sentences)

    def word(self, rng, avoid: str):
        while True:
            w = rng.choice(self.words)
            if w.casefold() != avoid.casefold():
                return w


def make_edit(article: Article, rng: random.Random, donor: Donor):
    """1-3 random edits of an article -> (new paragraphs, gold sentence keys, edit names)."""
    paras, gold, names = list(article), [], []
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(ADDING if rng.random() < 0.5 else NEUTRAL)
        if len(paras) < 3:
            break
        paras, new = op(paras, rng, donor)
        gold += new
        names.append(op.__name__)
    # Gold: the new sentences that are still in the final text and were not already in
    # the article (a donor sentence may exist there verbatim).
    old_keys = {compare_key(s) for _, t in article for s in split_sentences(t)}
    final = compare_key(" ".join(t for _, t in paras))
    gold_keys = {k for k in map(compare_key, gold) if k and k in final and k not in old_keys}
    return paras, gold_keys, names


def precision_recall(articles: list[Article], cases: int = LABELLED_CASES,
                     seed: int = SEED) -> dict:
    """Sentence-level precision and recall of `diff_article`'s changed text on labelled edits.

    A found sentence (the diff's rows, split into sentences) is right when it holds changed
    text, i.e. contains a gold sentence (it may hold more: a sentence added after a list item
    without a full stop is one sentence with it for the splitter); `exact_precision` asks
    for the gold sentence alone. A gold sentence is recalled when a row contains it. Texts are
    compared normalized.
    """
    rng = random.Random(seed)
    donor = Donor(articles)
    totals = [0, 0, 0, 0]  # found, found right, gold, gold recalled
    exact = 0
    per_op: dict[str, list[int]] = {}
    for _ in range(cases):
        old = articles[rng.randrange(len(articles))]
        new, gold, names = make_edit(old, rng, donor)
        added = diff_article(old, new).added
        rows = [compare_key(t.text) for t in added]
        found = [compare_key(x) for t in added for x in split_sentences(t.text)]
        exact += sum(1 for f in found if f in gold)
        c = [len(found), sum(1 for f in found if any(g in f for g in gold)),
             len(gold), sum(1 for g in gold if any(g in r for r in rows))]
        totals = [x + y for x, y in zip(totals, c)]
        for n in set(names):
            s = per_op.setdefault(n, [0, 0, 0, 0, 0])
            s[0] += 1
            for k in range(4):
                s[k + 1] += c[k]
    found, right, gold, recalled = totals
    return {
        "cases": cases,
        "gold_sentences": gold,
        "found_sentences": found,
        "precision": round(right / found, 4) if found else 1.0,
        "recall": round(recalled / gold, 4) if gold else 1.0,
        "exact_precision": round(exact / found, 4) if found else 1.0,
        "by_edit": {n: {"cases": v[0], "found": v[1], "wrong": v[1] - v[2], "gold": v[3],
                        "missed": v[3] - v[4]} for n, v in sorted(per_op.items())},
    }


# ---------------------------------------------------------------------------------------
# A synthetic month pair from real text: pages are runs of paragraphs of real articles.

def _page(articles: list[Article], pid: int, seed: int) -> tuple[Article, random.Random]:
    rng = random.Random(seed * 1_000_003 + pid)
    art = articles[rng.randrange(len(articles))]
    n = min(len(art), max(3, int(rng.expovariate(1 / MEAN_PARAGRAPHS))))
    start = rng.randrange(len(art) - n + 1)
    return art[start:start + n], rng


def write_month_pair(root: Path, articles: list[Article], pages: int, seed: int = SEED) -> dict:
    """Write snapshots 2001-01 and 2001-02 under root/snapshots/enwiki (extract's format)."""
    donor = Donor(articles)
    ts = datetime(2000, 1, 1, tzinfo=timezone.utc)
    stats = {"pages_a": 0, "pages_b": 0, "edited": 0, "new": 0, "deleted": 0}
    new_ids = range(pages, pages + int(pages * NEW_SHARE))
    for month, is_b in (("2001-01", False), ("2001-02", True)):
        build = ArtifactBuild(DataRoot(root).snapshot("enwiki", month), stage=EXTRACT_STAGE,
                              stage_version=1, inputs={"synthetic": pages, "seed": seed},
                              config={"month": month}, shards=SHARDS, schema=SCHEMA)
        chars = 0
        for s in range(SHARDS):
            with ShardWriter(build.shard_path(s), SCHEMA) as w:
                cols = {f.name: [] for f in SCHEMA}

                def flush():
                    w.write(pa.table(cols, schema=SCHEMA))
                    for v in cols.values():
                        v.clear()

                ids = [p for p in range(pages) if shard_of(p, SHARDS) == s]
                ids += [p for p in new_ids if shard_of(p, SHARDS) == s] if is_b else []
                for pid in ids:
                    paras, rng = _page(articles, pid, seed)
                    roll = rng.random()
                    sha1 = f"{pid:x}"
                    if pid >= pages:
                        stats["new"] += 1
                    elif roll < DELETED_SHARE:
                        if is_b:
                            stats["deleted"] += 1
                            continue
                    elif roll < DELETED_SHARE + CHANGED_SHARE and is_b:
                        paras, _, _ = make_edit(paras, rng, donor)
                        sha1 += "e"
                        stats["edited"] += 1
                    stats["pages_b" if is_b else "pages_a"] += 1
                    chars += sum(len(t) for _, t in paras)
                    cols["page_id"].append(pid)
                    cols["title"].append(f"Page {pid}")
                    cols["revid"].append(pid * 10 + is_b)
                    cols["timestamp"].append(ts)
                    cols["sha1"].append(sha1)
                    cols["paragraphs"].append([{"section": list(sec), "text": t}
                                               for sec, t in paras])
                    if len(cols["page_id"]) >= 2048:
                        flush()
                flush()
        build.publish(report={"counts": {"clean_chars": chars}})
    return stats


CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from twiki.stages.diff import diff_months
from twiki.engine.executors import LocalExecutor
from twiki.engine.paths import DataRoot
t0 = time.perf_counter()
res = diff_months("2001-01", "2001-02", data_root=DataRoot(Path(sys.argv[1])),
                  executor=LocalExecutor(1))
print(json.dumps({"wall_s": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "timings": res.manifest["timings"], "report": res.report}))
"""


def run_diff_subprocess(root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(root),
                          str(Path(__file__).resolve().parents[1])],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_diff(out_dir: Path | str = Path("data/bench/diff")) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    articles = real_articles()
    figures: dict = {"articles": len(articles)}
    figures["changed_text"] = precision_recall(articles)
    for scale in (1, 10):
        root = out_dir / f"pair-{scale}x"
        if root.exists():
            shutil.rmtree(root)
        made = write_month_pair(root, articles, BASE_PAGES * scale)
        run = run_diff_subprocess(root)
        pages = made["pages_a"] + made["new"]  # pages of either month
        figures[f"{scale}x"] = {
            "pages": pages, **{k: made[k] for k in ("edited", "new", "deleted")},
            "diffset_share_of_articles": run["report"]["share_of_snapshot"]["articles"],
            "pages_per_second_per_worker": run["timings"]["pages_per_second_per_worker"],
            "diff_wall_s": round(run["wall_s"], 2),
            "peak_rss_mb": round(run["peak_rss_mb"], 1),
        }
        shutil.rmtree(root)
    one, ten = figures["1x"]["peak_rss_mb"], figures["10x"]["peak_rss_mb"]
    figures["peak_rss_growth_1x_to_10x"] = round(ten / one - 1, 4)
    figures["pages_per_second_per_worker"] = figures["10x"]["pages_per_second_per_worker"]
    figures["bench_s"] = round(time.perf_counter() - t0, 1)
    (out_dir / "bench_diff.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    print(json.dumps(bench_diff(sys.argv[1] if len(sys.argv) > 1 else "data/bench/diff"),
                     indent=2))
