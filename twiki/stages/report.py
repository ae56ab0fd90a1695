"""The monthly report: what the build of month B made, read from the artifacts' manifests, as
Markdown and two plots, and how it compares with the months before.

Reads the manifests (and their reports) of the snapshots, diffset, facts, mapping, fact diff,
aligned facts, probes and export of A -> B, the probes' relations, and the diffsets and probes
of every other month pair under the data root (the trend). Writes data/reports/<B>/:
  report.md     stage counts, diffset share, the probes table in the paper's form, rejections
                per reason, relations of the probes, the month-over-month trend
  report.json   the same numbers, the key that makes a rerun with the same ones a no-op, and
                the other files' checksums (written last: the folder's manifest)
  probes.png    probes per stage and relation distribution;  trend.png  (two months or more)
The folder is rewritten whole when a number changes (a new month changes the trend), which is
why it is not part of the export (an artifact that never changes once made).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from ..engine.artifacts import MANIFEST, artifact_key, code_version, iter_row_groups, read_manifest
from ..engine.paths import DataRoot, check_wiki, month_pair, previous_month
from ..engine.stage import FolderBuild, StageResult
from ..errors import TwikiError
from .align import MATCH_KINDS
from .export import CONFIGS as EXPORT_CONFIGS
from .factdiff import CATEGORIES as FACT_CATEGORIES, CHANGED_CATEGORIES
from .probes import SETS, probe_stage_table, rejection_table

log = logging.getLogger("twiki")

STAGE = "report"
# Bump when the report's content or plots change: reports are rewritten.
STAGE_VERSION = 2

SET_NAMES = {"unchanged": "Unchanged", "changed": "Changed"}
REPORT_JSON = "report.json"
"""The report's numbers, its key and its files' checksums: the folder's manifest."""
TOP_RELATIONS = 15
"""Relations shown in the table and the plot (the rest are summed as 'other')."""
_PAIR_RE = re.compile(r"^(\d{4}-\d{2})_(\d{4}-\d{2})$")


# ---------------------------------------------------------------------------------------
# Gathering the numbers.

def _artifact_numbers(folder: Path) -> dict | None:
    """An artifact's rows, key, report and inputs, from its manifest (None: not built)."""
    m = read_manifest(folder)
    return None if m is None else {"rows": m.get("rows"), "key": m.get("key"),
                                   "report": m.get("report", {}), "inputs": m.get("inputs", {})}


def relation_counts(probes: Path) -> dict[str, dict[str, int]]:
    """set -> relation -> probes, read from the probes artifact (two columns, streaming)."""
    counts = {g: Counter() for g in SETS}
    if read_manifest(probes) is None:
        return {g: {} for g in SETS}
    for path in sorted(probes.glob("part-*.parquet")):
        for t in iter_row_groups(path, ["kind", "relation"]):
            for kind, rel in zip(t["kind"].to_pylist(), t["relation"].to_pylist()):
                counts["unchanged" if kind == "unchanged" else "changed"][rel or "?"] += 1
    return {g: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for g, c in counts.items()}


def month_numbers(month_a: str, month_b: str, wiki: str, data_root: DataRoot) -> dict:
    """Every count of the month pair's stages, None where a stage has not been built."""
    snaps = {}
    for m in (month_a, month_b):
        r = _artifact_numbers(data_root.snapshot(wiki, m))
        snaps[m] = None if r is None else {
            "articles": r["rows"], "run": r["inputs"].get("run"),
            **{k: r["report"].get("counts", {}).get(k) for k in
               ("redirects", "failed", "paragraphs", "clean_chars", "reused", "cleaned")}}
    facts = {}
    for m in (month_a, month_b):
        f = _artifact_numbers(data_root.facts(m))
        mp = _artifact_numbers(data_root.facts(m, "mapping"))
        facts[m] = None if f is None else {
            "facts": f["rows"], "items": f["report"].get("counts", {}).get("items_kept"),
            "properties": f["report"].get("counts", {}).get("properties"),
            "mapped_pages": mp["rows"] if mp else None}
    diffset = _artifact_numbers(data_root.diffset(wiki, month_a, month_b))
    factdiff = _artifact_numbers(data_root.factdiff(month_a, month_b))
    aligned = _artifact_numbers(data_root.aligned(month_a, month_b))
    probes = _artifact_numbers(data_root.probes(month_a, month_b))
    export = read_manifest(data_root.export(month_a, month_b))
    return {
        "wiki": wiki, "month_a": month_a, "month_b": month_b,
        "snapshots": snaps,
        "diffset": diffset["report"] if diffset else None,
        "facts": facts,
        "factdiff": factdiff["report"].get("counts") if factdiff else None,
        "alignment": aligned["report"] if aligned else None,
        "probes": probes["report"] if probes else None,
        "relations": relation_counts(data_root.probes(month_a, month_b)) if probes else None,
        "export": ({c: v["rows"] for c, v in export.get("configs", {}).items()}
                   if export else None),
    }


def month_pairs(data_root: DataRoot, wiki: str, until: str) -> list[tuple[str, str]]:
    """The month pairs with a diffset, up to month `until`: one per month B (A = the month
    before B when that pair exists, else the latest A), in month order."""
    folder = data_root.diffsets(wiki)
    by_b: dict[str, list[str]] = {}
    for d in folder.iterdir() if folder.is_dir() else ():
        m = _PAIR_RE.match(d.name)
        if m and m.group(2) <= until and (d / MANIFEST).exists():
            by_b.setdefault(m.group(2), []).append(m.group(1))
    pairs = []
    for b, As in sorted(by_b.items()):
        prev = previous_month(b)
        pairs.append((prev if prev in As else max(As), b))
    return pairs


def trend_row(month_a: str, month_b: str, wiki: str, data_root: DataRoot) -> dict:
    """One month pair's headline numbers, from manifests only."""
    d = (read_manifest(data_root.diffset(wiki, month_a, month_b)) or {}).get("report", {})
    p = (read_manifest(data_root.probes(month_a, month_b)) or {}).get("report")
    fd = (read_manifest(data_root.factdiff(month_a, month_b)) or {}).get("report", {})
    counts = fd.get("counts", {})
    stages = (p or {}).get("stages", {})
    final = stages.get("sample", stages.get("heuristic_filtering", {}))
    return {
        "month_a": month_a, "month_b": month_b,
        "articles": d.get("pages", {}).get("in_new_snapshot"),
        "diffset_articles": d.get("diffset", {}).get("articles"),
        "diffset_chars": d.get("diffset", {}).get("chars"),
        "share_articles": d.get("share_of_snapshot", {}).get("articles"),
        "share_chars": d.get("share_of_snapshot", {}).get("chars"),
        "facts_unchanged": counts.get("unchanged") if counts else None,
        "facts_changed": _facts_changed(counts) if counts else None,
        "probes_unchanged": final.get("unchanged") if p else None,
        "probes_changed": final.get("changed") if p else None,
    }


def _facts_changed(counts: dict) -> int:
    """The fact diff's Changed facts (its 'changed' count; new + updated before categories)."""
    if "changed" in counts:
        return counts["changed"]
    return sum(counts.get(k, 0) for k in CHANGED_CATEGORIES + ("new", "updated"))


# ---------------------------------------------------------------------------------------
# Markdown.

def _n(v) -> str:
    return "—" if v is None else (f"{v:,}" if isinstance(v, int) else str(v))


def _slashed(*counts) -> str:
    """Counts of one table cell: '1,234 / 56 / —'."""
    return " / ".join(_n(v) for v in counts)


def _pct(v) -> str:
    return "—" if v is None else f"{v:.1%}"


def _top_relations(relations: dict, n: int = TOP_RELATIONS) -> list[tuple[str, int, int]]:
    total = Counter()
    for g in SETS:
        total.update(relations.get(g, {}))
    top = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(r, relations.get("unchanged", {}).get(r, 0), relations.get("changed", {}).get(r, 0))
            for r, _ in top]


def match_kind_table(alignment: dict, probes: dict) -> list[str]:
    """How the facts were found in their evidence (link | discourse | label | literal), per
    set: aligned (align's `aligned_by_match`) and the probes of the sample."""
    aligned, sampled = alignment.get("aligned_by_match", {}), probes.get("match_kinds", {})
    kinds = list(MATCH_KINDS) + sorted({k for d in (aligned, sampled) for g in SETS
                                        for k in d.get(g, {})} - set(MATCH_KINDS))
    lines = ["| match kind | aligned Unchanged | aligned Changed | probes Unchanged | "
             "probes Changed |", "|---|---:|---:|---:|---:|"]
    for k in kinds:
        lines.append(f"| `{k}` | " + " | ".join(_n(d.get(g, {}).get(k, 0)) for d in
                                                (aligned, sampled) for g in SETS) + " |")
    return lines


def change_type_table(factdiff: dict, alignment: dict, probes: dict) -> list[str]:
    """The fact diff's categories (WikiFactDiff's) through the stages: facts of month B (or A,
    for removed), aligned (align's `aligned_by_change_type`) and probes of the sample; '—'
    where a stage does not carry the category."""
    by_type = alignment.get("aligned_by_change_type", {})
    aligned = Counter()
    for v in by_type.values():
        if isinstance(v, dict):
            aligned.update(v)
    in_probes = Counter()
    for g in SETS:
        in_probes.update(probes.get("change_types", {}).get(g, {}))
    lines = ["| change type | set | fact diff | aligned | probes |", "|---|---|---:|---:|---:|"]
    for c in FACT_CATEGORIES:
        group = ("Unchanged" if c == "unchanged" else "Changed" if c in CHANGED_CATEGORIES
                 else "none")
        lines.append(f"| `{c}` | {group} | {_n(factdiff.get(c))} | "
                     f"{_n(aligned.get(c, 0)) if by_type else '—'} | "
                     f"{_n(in_probes.get(c, 0)) if group != 'none' else '—'} |")
    return lines


def report_markdown(nums: dict, trend: list[dict], plots: list[str]) -> str:
    a, b, wiki = nums["month_a"], nums["month_b"], nums["wiki"]
    out = [f"# twiki monthly report: {wiki} {b} (diff from {a})", "",
           f"Numbers from the artifacts' manifests under the data root; twiki "
           f"{code_version()}. '—' means the stage has not been built.", "",
           "## Stage counts", "", "| stage | count |", "|---|---:|"]
    for m in (a, b):
        s = nums["snapshots"][m]
        if s:
            out.append(f"| snapshot {m} (dump run {s['run'] or '?'}): articles | "
                       f"{_n(s['articles'])} |")
            out.append(f"| snapshot {m}: redirects skipped / pages failed | "
                       f"{_slashed(s['redirects'], s['failed'])} |")
        else:
            out.append(f"| snapshot {m} | — |")
    d = nums["diffset"]
    if d:
        p, dd, sh = d.get("pages", {}), d.get("diffset", {}), d.get("share_of_snapshot", {})
        out += ["| pages unchanged / edited / new / deleted | "
                + _slashed(*(p.get(k) for k in ("unchanged", "edited", "new", "deleted"))) + " |",
                f"| diffset articles (new + changed) | {_n(dd.get('articles'))} "
                f"({_n(dd.get('new_articles'))} + "
                f"{_n(dd.get('changed_articles'))}) |",
                f"| diffset characters | {_n(dd.get('chars'))} |",
                f"| **diffset share of the snapshot**: articles / characters | "
                f"**{_pct(sh.get('articles'))}** / **{_pct(sh.get('chars'))}** |"]
    else:
        out.append(f"| diffset {a} -> {b} | — |")
    for m in (a, b):
        f = nums["facts"][m]
        out.append(f"| Wikidata {m}: facts / items / pages mapped to items | "
                   + (f"{_slashed(f['facts'], f['items'], f['mapped_pages'])} |" if f else "— |"))
    fd = nums["factdiff"]
    out.append("| fact diff: unchanged / changed / removed | " + (
        _slashed(fd.get("unchanged"), _facts_changed(fd), fd.get("removed")) + " |"
        if fd else "— |"))
    al = nums["alignment"]
    if al:
        out.append(f"| aligned facts: Unchanged / Changed | "
                   f"{_slashed(*(al.get('aligned', {}).get(g) for g in SETS))} |")
    if nums["export"]:
        ex = [c for c in EXPORT_CONFIGS if c in nums["export"]]
        out.append("| export rows: " + ", ".join(ex) + " | "
                   + _slashed(*(nums["export"][c] for c in ex)) + " |")
    out += [""]
    pr = nums["probes"]
    out += ["## TWiki-Probes", ""]
    if pr:
        out += ["In the form of the paper's Table 1 (its 08->09.2021: 514,017 / 1,209,272 -> "
                "10,133 / 2,329 -> 6,935 / 1,776):", ""]
        out += probe_stage_table(pr) + [""]
        sample = pr.get("sample", {})
        if sample:
            out += ["The sample (probes/, what export and `twiki eval` use) is drawn from the "
                    "filtered set (probes_full/), seeded and stratified by relation: "
                    + "; ".join(f"{SET_NAMES[g]} {_n(sample[g].get('sampled'))} of "
                                f"{_n(sample[g].get('full'))}" for g in SETS if g in sample)
                    + ".", ""]
        out += ["### By match kind", ""] + match_kind_table(nums["alignment"] or {}, pr)
        out += ["", "### By change type", ""] + change_type_table(
            nums["factdiff"] or {}, nums["alignment"] or {}, pr)
        out += ["", "### Left out, per reason", ""]
        out += rejection_table(pr) + [""]
        lk = pr.get("leakage", {})
        if lk:
            leaked = _slashed(lk.get("probes_object_in_month_a"),
                              lk.get("probes_evidence_not_in_diffset"))
            out += [f"Leakage (Changed probes whose object month A's article already had, or "
                    f"whose evidence is not wholly diff text): {leaked} of the probes, "
                    f"{'dropped' if lk.get('dropped') else 'kept and flagged'}.", ""]
        out += ["### Relations of the probes", ""]
        top = _top_relations(nums["relations"] or {})
        if top:
            out += ["| relation | Unchanged | Changed |", "|---|---:|---:|"]
            out += [f"| {r} | {_n(u)} | {_n(c)} |" for r, u, c in top]
            rel = nums["relations"] or {}
            rest = {g: sum(rel.get(g, {}).values()) - sum(x[1 + i] for x in top)
                    for i, g in enumerate(SETS)}
            if any(rest.values()):
                out.append(f"| (other {sum(len(rel.get(g, {})) for g in SETS)} relations) | "
                           f"{_n(rest['unchanged'])} | {_n(rest['changed'])} |")
            out.append("")
        else:
            out += ["No probes.", ""]
        if "probes.png" in plots:
            out += ["![probes per stage and relations](probes.png)", ""]
    else:
        out += [f"Not built yet for {a} -> {b}.", ""]
    out += ["## Month over month", ""]
    out += ["| month B (from A) | articles | diffset articles | share (articles) | "
            "share (chars) | facts Un / C | probes Un / C |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for r in trend:
        out.append(f"| {r['month_b']} ({r['month_a']}) | {_n(r['articles'])} | "
                   f"{_n(r['diffset_articles'])} | {_pct(r['share_articles'])} | "
                   f"{_pct(r['share_chars'])} | "
                   f"{_slashed(r['facts_unchanged'], r['facts_changed'])} | "
                   f"{_slashed(r['probes_unchanged'], r['probes_changed'])} |")
    out.append("")
    if "trend.png" in plots:
        out += ["![month over month](trend.png)", ""]
    elif len(trend) < 2:
        out += ["(one month pair so far: the trend plot comes with the second)", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Plots (matplotlib, imported only here: the rest of twiki does not need it).

def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


_COLORS = {"unchanged": "#4C72B0", "changed": "#DD8452"}


def _save(fig, path: Path) -> None:
    # No software/date metadata: the same numbers give the same bytes.
    fig.savefig(path, dpi=110, metadata={"Software": None})


def plot_probes(nums: dict, path: Path) -> bool:
    """Left: probes per stage (log scale); right: the relations of the probes."""
    plt = _pyplot()
    if plt is None or not nums["probes"]:
        return False
    stages = nums["probes"].get("stages", {})
    keys = [("initial_categorization", "initial\ncategorization"), ("alignment", "alignment"),
            ("heuristic_filtering", "heuristic\nfiltering"), ("sample", "sample")]
    top = _top_relations(nums["relations"] or {})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8),
                                   gridspec_kw={"width_ratios": [1, 1.35]})
    width = 0.38
    for i, g in enumerate(SETS):
        vals = [stages.get(k, {}).get(g, 0) for k, _ in keys]
        xs = [x + (i - 0.5) * width for x in range(len(keys))]
        # A zero has no bar on a log scale: its label sits on the axis instead.
        ax1.bar(xs, [v if v > 0 else float("nan") for v in vals], width, label=SET_NAMES[g],
                color=_COLORS[g])
        for x, v in zip(xs, vals):
            ax1.annotate(f"{v:,}", (x, max(v, 0.7)), ha="center", va="bottom", fontsize=8,
                         xytext=(0, 2), textcoords="offset points")
    ax1.set_yscale("log")
    ax1.set_ylim(bottom=0.7, top=max([1] + [stages.get(k, {}).get(g, 0) for k, _ in keys
                                            for g in SETS]) * 3)
    ax1.set_xticks(range(len(keys)), [n for _, n in keys])
    ax1.set_ylabel("facts (log scale)")
    ax1.set_title(f"TWiki-Probes {nums['month_a']} → {nums['month_b']}: per stage")
    ax1.legend(frameon=False)
    ax1.spines[["top", "right"]].set_visible(False)
    if top:
        names = [r for r, _, _ in top][::-1]
        ys = range(len(names))
        un = [u for _, u, _ in top][::-1]
        ch = [c for _, _, c in top][::-1]
        ax2.barh([y + width / 2 for y in ys], un, width, color=_COLORS["unchanged"],
                 label="Unchanged")
        ax2.barh([y - width / 2 for y in ys], ch, width, color=_COLORS["changed"],
                 label="Changed")
        ax2.set_yticks(list(ys), [n if len(n) <= 28 else n[:27] + "…" for n in names],
                       fontsize=8)
        # Bars keep their thickness however few relations there are.
        ax2.set_ylim(len(names) - max(len(names), 8) - 0.5, len(names) - 0.5)
        ax2.xaxis.get_major_locator().set_params(integer=True)
        ax2.legend(frameon=False, loc="lower right")
    else:
        ax2.text(0.5, 0.5, "no probes", ha="center", va="center", transform=ax2.transAxes)
        ax2.set_yticks([])
    ax2.set_xlabel("probes")
    ax2.set_title(f"relations of the probes (top {min(len(top), TOP_RELATIONS)})")
    ax2.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def plot_trend(trend: list[dict], path: Path) -> bool:
    """Left: the diffset's share of the snapshot; right: probes per set, month by month."""
    plt = _pyplot()
    if plt is None or len(trend) < 2:
        return False
    nan = float("nan")
    months = [r["month_b"] for r in trend]
    xs = range(len(months))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for key, label, style in (("share_articles", "articles", "o-"),
                              ("share_chars", "characters", "s--")):
        # A month without the number is a gap in the line, not a straight line across it.
        ax1.plot(list(xs), [nan if r[key] is None else 100 * r[key] for r in trend], style,
                 label=label)
    ax1.set_ylabel("% of month B's snapshot")
    ax1.set_title("diffset share of the snapshot")
    ax1.set_ylim(bottom=0)
    ax1.legend(frameon=False)
    for g in SETS:
        ax2.plot(list(xs), [nan if r[f"probes_{g}"] is None else r[f"probes_{g}"]
                            for r in trend], "o-", color=_COLORS[g], label=SET_NAMES[g])
    ax2.set_ylabel("probes after filtering")
    ax2.set_title("TWiki-Probes per month")
    ax2.set_ylim(bottom=0)
    ax2.legend(frameon=False)
    for ax in (ax1, ax2):
        ax.set_xticks(list(xs), months, rotation=45 if len(months) > 8 else 0)
        ax.set_xlabel("month B")
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------
# The step.

def _describe(result: StageResult) -> str:
    return ", ".join(["report.md", REPORT_JSON, *result.manifest.get("plots", [])])


def write_report(month_b: str, *, month_a: str | None = None, wiki: str = "enwiki",
                 data_root: DataRoot | None = None) -> StageResult:
    """Write data/reports/<B>/ (report.md, report.json, probes.png, trend.png) from what the
    data root holds for A -> B and every month pair up to B. A no-op when no number changed."""
    month_a, month_b = month_pair(month_a, month_b, b_flag="--month")
    check_wiki(wiki)
    data_root = data_root or DataRoot.default()
    nums = month_numbers(month_a, month_b, wiki, data_root)
    if nums["snapshots"][month_b] is None and nums["diffset"] is None:
        raise TwikiError(f"nothing is built for {wiki} {month_b} under {data_root.root}: run "
                         f"`twiki snapshot --month {month_b}` first")
    pairs = month_pairs(data_root, wiki, month_b)
    if (month_a, month_b) not in pairs and nums["diffset"] is not None:
        pairs = sorted([p for p in pairs if p[1] != month_b] + [(month_a, month_b)],
                       key=lambda p: p[1])
    trend = [trend_row(a, b, wiki, data_root) for a, b in pairs]
    key = artifact_key(STAGE, STAGE_VERSION, {"numbers": nums, "trend": trend},
                       {"code_version": code_version()})
    build = FolderBuild(data_root.report(month_a, month_b), key, manifest=REPORT_JSON,
                        resume=False)
    if build.state == "current":
        log.info("report %s is up to date: nothing to do", build.final)
        return StageResult(build.final, "current", build.manifest, "report", _describe)
    staging = build.staging
    plots = [name for name, ok in (("probes.png", plot_probes(nums, staging / "probes.png")),
                                   ("trend.png", plot_trend(trend, staging / "trend.png"))) if ok]
    (staging / "report.md").write_text(report_markdown(nums, trend, plots), encoding="utf-8")
    manifest = build.publish({"stage": STAGE, "stage_version": STAGE_VERSION, "numbers": nums,
                              "trend": trend, "plots": plots})
    result = StageResult(build.final, "built", manifest, "report", _describe)
    log.info("%s", result.summary())
    return result
