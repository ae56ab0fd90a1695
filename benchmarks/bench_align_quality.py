"""Alignment quality on the labelled real-text set (issue 15 item 4): precision and recall of
align_article on tests/data/labelled/ (16 real articles of the May 2016 enwiki sample, 338 true
Wikidata facts, each labelled with the sentences that state it), overall, Changed and Unchanged
apart, and by match kind; the wrong alignments (fact, evidence) and the stated facts missed.

    precision  aligned facts whose evidence sentence is one of the fact's labelled stating
               sentences / aligned facts
    recall     right alignments / facts with a stating sentence in the part of the text their
               set may use (Changed: the diff, i.e. the made-up month A's removed sections;
               Unchanged: the rest)

The held-out set (tests/data/labelled_heldout/: 5 other real articles of the same dump, 81
facts, labelled blind before any aligner ran on them; the aligner was tuned on the first set,
never on this one) is measured the same way and reported apart, as "heldout": the honest figure.

Writes data/bench/align_quality.json (everything) and data/bench/align_quality.md; returns the
figures for `make bench` (benchmarks/bench.py). The sets and the harness: tests/labelled_set.py.

    python -m benchmarks.bench_align_quality [OUT_DIR]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(root: Path | None = None) -> dict:
    """Everything: the score of tests/labelled_set.py plus the set's size and align time, on the
    labelled set (root None) or the set in `root` (tests.labelled_set.HELDOUT)."""
    from tests.labelled_set import LABELLED, align_set, load_set, score
    lset = load_set(root or LABELLED)
    t0 = time.perf_counter()
    aligned = align_set(lset)
    seconds = time.perf_counter() - t0
    result = score(lset, aligned)
    facts = result["all"]["facts"]
    result["align_seconds"] = round(seconds, 3)
    result["align_facts_per_s"] = round(facts / seconds, 1) if seconds else None
    result["unlocated_labels"] = [u for a in lset.articles for u in a.unlocated]
    return result


def figures_of(result: dict) -> dict:
    """The compact figures (what results.md shows)."""
    out = {"articles": result["articles"], "facts": result["all"]["facts"]}
    for g in ("all", "changed", "unchanged"):
        v = result[g]
        out[g] = {k: v[k] for k in ("precision", "recall", "aligned", "right", "stated", "facts")}
    out["by_match_kind"] = {k: {"precision": v["precision"], "aligned": v["aligned"]}
                            for k, v in result["by_match_kind"].items()}
    out["wrong"] = len(result["wrong"])
    out["missed"] = len(result["missed"])
    out["align_facts_per_s"] = result["align_facts_per_s"]
    if "heldout" in result:
        out["heldout"] = figures_of(result["heldout"])
    return out


def to_markdown(result: dict) -> str:
    lines = ["# Alignment quality on the labelled real-text set", "",
             "tests/data/labelled/ (real text and facts; month A made up: README there).", ""]
    lines += _section(result)
    if "heldout" in result:
        lines += ["", "# Held-out set (labelled blind, never tuned on)", "",
                  "tests/data/labelled_heldout/ (5 other articles of the same dump; README there).",
                  ""] + _section(result["heldout"])
    return "\n".join(lines) + "\n"


def _section(result: dict) -> list[str]:
    lines = ["| set | precision | recall | aligned | right | stated | facts |",
             "|---|---|---|---|---|---|---|"]
    for g in ("all", "changed", "unchanged"):
        v = result[g]
        lines.append(f"| {g} | {v['precision']} | {v['recall']} | {v['aligned']} | "
                     f"{v['right']} | {v['stated']} | {v['facts']} |")
    lines += ["", "| match kind | precision | aligned | right |", "|---|---|---|---|"]
    for k, v in result["by_match_kind"].items():
        lines.append(f"| {k} | {v['precision']} | {v['aligned']} | {v['right']} |")
    lines += ["", f"align: {result['align_facts_per_s']} facts/s (one process)", "",
              f"## Wrong alignments ({len(result['wrong'])})", ""]
    for w in result["wrong"]:
        lines.append(f"- {w['article']} | {w['property']} | {w['object']} | {w['set']} | "
                     f"{w['match_kind']} '{w['matched']}' cue '{w['cue']}' | {w['evidence']}")
    lines += ["", f"## Stated facts not aligned ({len(result['missed'])})", ""]
    for m in result["missed"]:
        lines.append(f"- {m['article']} | {m['property']} | {m['object']} | {m['set']}")
    return lines


def bench_align_quality(out_dir: Path | str = REPO / "data" / "bench") -> dict:
    """Measure, write align_quality.{json,md} under out_dir, return the compact figures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from tests.labelled_set import HELDOUT
    result = measure()
    if HELDOUT.is_dir():
        result["heldout"] = measure(HELDOUT)
    (out_dir / "align_quality.json").write_text(
        json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "align_quality.md").write_text(to_markdown(result), encoding="utf-8")
    return figures_of(result)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "data" / "bench"
    print(json.dumps(bench_align_quality(target), indent=1))
