"""The paper's table and the stability-vs-plasticity plot from finished runs and evaluations.

Reads rows (method, month pair, an EvalResult dict, and the run's TrainResult dict or none for
the initial model); writes table.md, table.csv and stability_plasticity.png into a folder.
Table columns as in TemporalWiki's Table 2: Un, C, Avg probe perplexity per method and month
pair, plus held-out perplexity, training time and tokens seen.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

COLUMNS = ["method", "pair", "un_ppl", "c_ppl", "avg_ppl", "heldout_ppl", "train_seconds",
           "tokens_seen", "replay_tokens_seen", "token_budget", "un_probes", "c_probes",
           "scoring", "heldout_page_un_probes", "heldout_page_c_probes", "heldout_page_c_ppl"]
SCORING = {"object": "object scoring: the object's tokens given subject + relation (the paper)",
           "sequence": "sequence scoring: every token of subject relation object (the "
                       "original code)"}


def table_row(method: str, pair: str, ev: dict, tr: dict | None) -> dict[str, Any]:
    """One row of the table from an EvalResult dict and a TrainResult dict (None: no training)."""
    ho = ev.get("heldout") or {}
    return {
        "method": method, "pair": pair,
        "un_ppl": ev["unchanged"]["ppl"], "c_ppl": ev["changed"]["ppl"], "avg_ppl": ev["avg"],
        "heldout_ppl": ho.get("ppl"),
        "train_seconds": tr["train_seconds"] if tr else 0.0,
        "tokens_seen": tr["tokens_seen"] if tr else 0,
        "replay_tokens_seen": tr["replay_tokens_seen"] if tr else 0,
        "token_budget": tr["token_budget"] if tr else 0,
        "un_probes": ev["unchanged"]["count"], "c_probes": ev["changed"]["count"],
        "scoring": ev.get("scoring", "object"),
        "heldout_page_un_probes": ((ev.get("heldout_pages") or {}).get("unchanged") or {}).get("count", 0),
        "heldout_page_c_probes": ((ev.get("heldout_pages") or {}).get("changed") or {}).get("count", 0),
        "heldout_page_c_ppl": ((ev.get("heldout_pages") or {}).get("changed") or {}).get("ppl"),
    }


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown_table(rows: list[dict]) -> str:
    """Month pairs as row groups, methods as rows (the paper's layout)."""
    out = io.StringIO()
    out.write("| pair | method | Un | C | Avg | held-out | train time (s) | tokens seen "
              "| of which replay | scoring |\n")
    out.write("|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
    for r in rows:
        out.write(f"| {r['pair']} | {r['method']} | {_fmt(r['un_ppl'])} | {_fmt(r['c_ppl'])} "
                  f"| {_fmt(r['avg_ppl'])} | {_fmt(r['heldout_ppl'])} "
                  f"| {_fmt(float(r['train_seconds']), 1)} | {_fmt(int(r['tokens_seen']))} "
                  f"| {_fmt(int(r['replay_tokens_seen']))} | {r.get('scoring', 'object')} |\n")
    if rows:
        out.write(f"\nProbe perplexity (lower is better); {probe_counts(rows)}; "
                  f"Avg = (Un + C) / 2.\n")
        for mode in dict.fromkeys(r.get("scoring", "object") for r in rows):
            out.write(f"Scores by {SCORING.get(mode, mode)}.\n")
        held = rows[0].get("heldout_page_un_probes", 0), rows[0].get("heldout_page_c_probes", 0)
        if any(held):
            out.write(f"Probes on pages held out of training are not in Un / C (their evidence "
                      f"was never trained on): {held[0]:,} unchanged, {held[1]:,} changed; "
                      f"they are in table.csv (heldout_page_*).\n")
    return out.getvalue()


def probe_counts(rows: list[dict]) -> str:
    """'Un: N unchanged probes, C: M changed ...' of a pair's rows (the first row's counts)."""
    r = rows[0]
    return (f"Un: {r['un_probes']:,} unchanged probes, C: {r['c_probes']:,} changed "
            f"(new + updated) probes")


def plot(rows: list[dict], path: Path) -> Path:
    """Stability (Un perplexity) against plasticity (C perplexity), one point per method and
    pair; both lower is better, so the best methods sit in the lower left."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    markers = "osD^v<>ph*"
    cmap = plt.get_cmap("tab10")
    for mi, m in enumerate(methods):
        pts = [r for r in rows if r["method"] == m and r["un_ppl"] and r["c_ppl"]]
        for r in pts:
            ax.scatter(r["un_ppl"], r["c_ppl"], color=cmap(mi % 10),
                       marker=markers[pairs.index(r["pair"]) % len(markers)], s=60,
                       label=m if r is pts[0] else None, edgecolors="black", linewidths=0.5)
        if len(pts) > 1:
            ax.plot([r["un_ppl"] for r in pts], [r["c_ppl"] for r in pts], color=cmap(mi % 10),
                    alpha=0.4, linewidth=1)
    ax.set_xlabel("Unchanged probe perplexity (stability; lower is better)")
    ax.set_ylabel("Changed probe perplexity (plasticity; lower is better)")
    title = "Stability vs plasticity"
    if len(pairs) == 1:
        title += f" ({pairs[0]})"
    else:
        title += " (marker: month pair " + ", ".join(
            f"{markers[i % len(markers)]}={p}" for i, p in enumerate(pairs)) + ")"
    ax.set_title(title, fontsize=10)
    if rows:
        # How many probes each point stands on: a handful of Changed probes reads as noise.
        ax.text(0.01, 0.01, probe_counts(rows) + f" ({rows[0].get('scoring', 'object')} scoring)",
                transform=ax.transAxes, fontsize=7, va="bottom", ha="left", alpha=0.8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_experiment_report(rows: list[dict], out_dir: str | Path) -> dict[str, str]:
    """Write table.md, table.csv and stability_plasticity.png; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown_table(rows))
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in COLUMNS})
    png = plot(rows, out / "stability_plasticity.png")
    return {"markdown": str(out / "table.md"), "csv": str(out / "table.csv"), "plot": str(png)}
