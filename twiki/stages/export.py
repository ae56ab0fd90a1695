"""export: a month's benchmark as one dataset folder, data/export/<B>/, that pandas, pyarrow,
Hugging Face `datasets` and lm-evaluation-harness load as it is.

Reads the diffset <A>_<B>, month B's snapshot and the probes <A>_<B> (their manifests for the
card's counts and provenance) and writes, published whole (staging folder, then a rename):
  <config>/part-NNNNN.parquet  diffset, probes_unchanged, probes_changed, train_diffset,
                               train_snapshot (one folder per `datasets` config)
  README.md                    the dataset card: the Hub's YAML (licences, size, task,
                               `configs` with a default), an example row per config, schema,
                               counts, provenance, limitations, licence, BibTeX
  lm_eval/                     lm-evaluation-harness tasks: loglikelihood of " object" given
                               "subject relation", one task per probe set, and their group;
                               token_perplexity first, the figure `twiki eval` reports
  _manifest.json               written last: inputs' keys, config, every file's sha256
The folder is <B>/ when A is the month before B, <A>_<B>/ otherwise. Also here: the loaders
(`load_probes`, `load_diffset`, `load_export`) that read an export back as pandas frames.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.artifacts import (ROW_GROUP_ROWS, ShardWriter, artifact_key, code_version,
                                iter_row_groups, read_manifest, require_artifact, shard_name)
from ..engine.executors import Executor
from ..engine.paths import DataRoot, check_wiki, month_pair, parse_month
from ..engine.stage import FolderBuild, StageResult, stage_defaults
from ..errors import ConfigError, TwikiError
from .diff import DIFFSET_SCHEMA
from .probes import probe_stage_table, rejection_table
from .training_text import DOCUMENT_SCHEMA, iter_documents

log = logging.getLogger("twiki")

STAGE = "export"
# Bump when a file of the export changes (layout, columns, card, tasks): exports are rebuilt.
STAGE_VERSION = 3

CARD = "README.md"
LM_EVAL = "lm_eval"
LM_EVAL_LOADER = "twiki_data.py"
PART_PREFIX = "part-"

# The diffset's rows, with the month pair on every row so that exports of several months can
# be concatenated without losing where a row came from.
EXPORT_DIFFSET_SCHEMA = pa.schema([pa.field("month_a", pa.string(), nullable=False),
                                   pa.field("month_b", pa.string(), nullable=False),
                                   *DIFFSET_SCHEMA])

# config -> (split, what it holds). The order is the card's and the manifest's.
CONFIGS = {
    "diffset": ("train", "TWiki-Diffsets: the new and changed text of month B, one row per "
                         "inserted paragraph, run of changed sentences, or paragraph of a new "
                         "article"),
    "probes_unchanged": ("test", "TWiki-Probes, Unchanged: facts true in both months and stated "
                                 "in month B's unchanged text (stability)"),
    "probes_changed": ("test", "TWiki-Probes, Changed: new or updated facts stated in the "
                               "diffset text (plasticity)"),
    "train_diffset": ("train", "the diffset as training documents: one per article, its diff "
                               "text joined by blank lines"),
    "train_snapshot": ("train", "month B's whole snapshot as training documents: one per "
                                "article (the 'full update' baseline)"),
}
PROBE_SETS = {"probes_unchanged": ("unchanged",), "probes_changed": ("new", "updated")}
# A YAML-only config over both probe folders (Unchanged first, as `load_probes` reads them):
# the default of `datasets.load_dataset(folder)`, the diffset being the default without probes.
ALL_PROBES = "probes"

# The Hub's size_categories buckets, by the number of rows (upper bound, exclusive).
SIZE_CATEGORIES = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"),
                   (10**6, "100K<n<1M"), (10**7, "1M<n<10M"), (10**8, "10M<n<100M"),
                   (10**9, "100M<n<1B"), (10**10, "1B<n<10B"), (10**11, "10B<n<100B"),
                   (10**12, "100B<n<1T")]
# Strings of a card's example rows are cut to this many characters.
EXAMPLE_CHARS = 300

# The repository's sample mirror (a source checkout has it): an export whose dump files have
# the checksums that the sample's sums files list was made from the sample, whose second month
# and some articles are made up (data/sample/README.md), and its card says so.
SAMPLE_MIRROR = Path(__file__).resolve().parents[2] / "data" / "sample" / "mirror"

CITATION = '''@inproceedings{jang-etal-2022-temporalwiki,
    title = "{T}emporal{W}iki: A Lifelong Benchmark for Training and Evaluating Ever-Evolving Language Models",
    author = "Jang, Joel and Ye, Seonghyeon and Lee, Changho and Yang, Sohee and Shin, Joongbo and Han, Janghoon and Kim, Gyeonghun and Seo, Minjoon",
    booktitle = "Proceedings of the 2022 Conference on Empirical Methods in Natural Language Processing",
    month = dec,
    year = "2022",
    address = "Abu Dhabi, United Arab Emirates",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2022.emnlp-main.418",
    doi = "10.18653/v1/2022.emnlp-main.418",
    pages = "6237--6250"
}

@misc{wikimedia-downloads,
    author = "{Wikimedia Foundation}",
    title = "Wikimedia Downloads",
    howpublished = "\\url{https://dumps.wikimedia.org}",
    note = "Wikipedia and Wikidata database dumps"
}'''

# What each column means, for the card (types come from the Parquet schema).
COLUMN_DOCS = {
    "month_a": "the earlier month (YYYY-MM)",
    "month_b": "the later month (YYYY-MM)",
    "page_id": "MediaWiki page id",
    "title": "the article's title in month B",
    "old_revid": "month A's revision id (null: new article)",
    "new_revid": "month B's revision id",
    "kind": "diffset: new | changed; probes: unchanged | new | updated",
    "position": "row number within the article",
    "paragraph": "index of the source paragraph in month B's article",
    "section": "section path of that paragraph ([] = lead)",
    "text": "the text",
    "subject": "the subject's English label",
    "relation": "the property's English label",
    "object": "the value as text (item label, date, quantity, string)",
    "old_objects": "replacement facts (kind updated): month A's values that are gone, as text",
    "subject_qid": "Wikidata item of the subject",
    "property": "Wikidata property id (P...)",
    "object_qid": "Wikidata item of the object (null for literals)",
    "value": "the canonical value (QID, ISO time, amount...)",
    "value_type": "item | time | quantity | string | monolingualtext ...",
    "old_values": "replacement facts (kind updated): month A's gone values, canonical",
    "statement_id": "Wikidata statement id the probe comes from",
    "subject_new": "the subject item did not exist in month A",
    "evidence": "the sentence of month B's article that states the fact",
    "evidence_section": "section path of the evidence",
    "evidence_paragraph": "paragraph index of the evidence in month B's article",
    "match_kind": "how the evidence states the object: link (a link to the object's item) | "
                  "discourse (a form the article links to it) | label (its label or alias, "
                  "unlinked) | literal (a date, quantity or string)",
    "match_score": "match score, 0-100",
    "matched": "the form of the object found in the evidence",
    "object_in_month_a": "Changed: month A's article already stated the object (leakage flag)",
    "evidence_in_diffset": "Changed: the whole evidence sentence is diffset text",
    "probe_id": "stable id of the probe: a hash of the month pair, the statement and its value "
                "(the same fact of the same pair has the same id in every build)",
    "prompt": "the exact text a language model is given before the object (\"subject "
              "relation\"); the string scored is prompt + \" \" + object",
    "change_type": "what the fact diff says of the fact: unchanged | new_relation | "
                   "added_value | replacement | new_entity (empty where not known)",
    "cue": "the word of the relation found in the evidence (empty where none was needed)",
    "object_aliases": "the object item's English aliases (other answers a scorer may accept)",
    "valid_from": "the statement's start time (P580) or point in time (P585), if any",
    "valid_to": "the statement's end time (P582), if any",
}

# Columns of a probe in the lm-evaluation-harness data files.
LM_EVAL_COLUMNS = ("probe_id", "prompt", "subject", "relation", "object", "object_aliases",
                   "kind", "change_type", "old_objects", "subject_qid", "property",
                   "object_qid", "valid_from", "valid_to", "statement_id", "page_id", "title",
                   "month_a", "month_b")


@dataclass(frozen=True)
class ExportConfig:
    """What goes into an export (all of it is in the export's key)."""

    snapshot_text: bool = True
    """Export month B's whole snapshot as `train_snapshot`, the training text of the paper's
    'full update' baseline. As big as the snapshot (~20 GB of text for enwiki): turn it off
    when the export only needs to carry the diffset and the probes."""
    probes: bool = True
    """Export the probes (and the lm-eval tasks). Off only for a month pair whose probes are
    not built; the card then says that the probe configs are missing."""
    lm_eval: bool = True
    """Write lm_eval/: lm-evaluation-harness task YAMLs and data for the probes."""
    file_bytes: int = 256 << 20
    """Consecutive source shards are grouped into one output file until their Parquet bytes
    reach this: files of a few hundred MB are what the Hugging Face Hub recommends, and the
    grouping depends only on the inputs' manifests, so the output is deterministic."""

    def __post_init__(self) -> None:
        if self.file_bytes < 1:
            raise ConfigError(f"file_bytes must be positive, not {self.file_bytes}")


def task_prefix(wiki: str, name: str) -> str:
    """lm-eval task names: twiki_enwiki_2016_06 (+ _unchanged, _changed)."""
    return f"twiki_{wiki}_{name.replace('-', '_')}"


# ---------------------------------------------------------------------------------------
# Writing one output file: a task over a group of consecutive source shards.

@dataclass(frozen=True)
class FileTask:
    config: str
    source: str                 # the source artifact folder
    shards: tuple[int, ...]     # its shards, in order, that make this file
    out: str
    month_a: str
    month_b: str


def _batches(rows: Iterator[dict], schema: pa.Schema) -> Iterator[pa.Table]:
    buf: list[dict] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= ROW_GROUP_ROWS:
            yield pa.Table.from_pylist(buf, schema=schema)
            buf = []
    if buf:
        yield pa.Table.from_pylist(buf, schema=schema)


def _tables(task: FileTask) -> Iterator[pa.Table]:
    """The rows of one output file, one row group (or batch of documents) at a time."""
    source = Path(task.source)
    if task.config == "diffset":
        for s in task.shards:
            for t in iter_row_groups(source / shard_name(s)):
                n = t.num_rows
                yield pa.Table.from_arrays(
                    [pa.array([task.month_a] * n, pa.string()),
                     pa.array([task.month_b] * n, pa.string()),
                     *t.select(DIFFSET_SCHEMA.names).columns], schema=EXPORT_DIFFSET_SCHEMA)
    elif task.config in PROBE_SETS:
        kinds = pa.array(PROBE_SETS[task.config], pa.string())
        for s in task.shards:
            for t in iter_row_groups(source / shard_name(s)):
                yield t.filter(pc.is_in(t["kind"], value_set=kinds))
    elif task.config in ("train_diffset", "train_snapshot"):
        view = task.config.removeprefix("train_")
        yield from _batches(iter_documents(source, view=view, unit="article",
                                           shards=task.shards), DOCUMENT_SCHEMA)
    else:
        raise ValueError(f"unknown config {task.config!r}")


def export_file(task: FileTask) -> int:
    """Write one output file (atomically); returns its rows. A file that exists is done."""
    out = Path(task.out)
    if out.exists():
        return pq.ParquetFile(out).metadata.num_rows
    schema = _config_schema(task.config, Path(task.source))
    # ShardWriter writes no row group for no rows: `datasets` refuses a zero-row row group.
    with ShardWriter(out, schema) as w:
        for t in _tables(task):
            w.write(t)
    return w.rows


def _config_schema(config: str, source: Path) -> pa.Schema:
    if config == "diffset":
        return EXPORT_DIFFSET_SCHEMA
    if config in PROBE_SETS:
        return pq.read_schema(source / shard_name(0)).remove_metadata()
    return DOCUMENT_SCHEMA


def group_shards(manifest: dict, file_bytes: int) -> list[tuple[int, ...]]:
    """Consecutive shards of an artifact grouped until each group's bytes reach file_bytes
    (at least one group, even for an artifact of empty shards)."""
    groups: list[tuple[int, ...]] = []
    cur: list[int] = []
    size = 0
    for s in sorted(manifest["shards"], key=lambda s: s["index"]):
        cur.append(s["index"])
        size += s["bytes"]
        if size >= file_bytes:
            groups.append(tuple(cur))
            cur, size = [], 0
    if cur or not groups:
        groups.append(tuple(cur))
    return groups


# ---------------------------------------------------------------------------------------
# The stage.

def _inputs(month_a: str, month_b: str, wiki: str, data_root: DataRoot,
            config: ExportConfig) -> dict[str, tuple[Path, dict]]:
    """Every input's folder and manifest, checked, with a message that says how to make a
    missing one."""
    wanted = {   # name: (folder, its stage, what it is, how to make it)
        "diffset": (data_root.diffset(wiki, month_a, month_b), "diff",
                    f"{wiki} diffset {month_a} -> {month_b}",
                    f"run `twiki diff --from {month_a} --to {month_b}` (or `twiki snapshot "
                    f"--month {month_b}`) first"),
        "snapshot_b": (data_root.snapshot(wiki, month_b), "extract",
                       f"{wiki} snapshot of {month_b}",
                       f"run `twiki snapshot --month {month_b}` first"),
    }
    if config.probes:
        wanted["probes"] = (data_root.probes(month_a, month_b), "probes",
                            f"probes {month_a} -> {month_b}",
                            f"build them first (`twiki probes --from {month_a} --to {month_b}`), "
                            f"or export without them (`twiki export --month {month_b} "
                            f"--no-probes`)")
    return {name: (folder, require_artifact(folder, what, hint, stage=stage))
            for name, (folder, stage, what, hint) in wanted.items()}


def _plan(ins: dict, config: ExportConfig) -> dict[str, tuple[Path, list[tuple[int, ...]]]]:
    """config -> (source folder, groups of its shards: one output file each)."""
    sources = {"diffset": "diffset", "train_diffset": "diffset"}
    if config.probes:
        sources.update(probes_unchanged="probes", probes_changed="probes")
    if config.snapshot_text:
        sources["train_snapshot"] = "snapshot_b"
    plan = {}
    for c in CONFIGS:
        if c in sources:
            folder, manifest = ins[sources[c]]
            plan[c] = (folder, group_shards(manifest, config.file_bytes))
    return plan


def _describe(result: StageResult) -> str:
    rows = result.report.get("rows", {})
    return ", ".join(f"{c} {rows[c]}" for c in CONFIGS if c in rows)


def export_month(month_b: str, *, month_a: str | None = None, wiki: str = "enwiki",
                 data_root: DataRoot | None = None, executor: Executor | None = None,
                 config: ExportConfig = ExportConfig()) -> StageResult:
    """Build (or confirm) data/export/<B>/ from the diffset, month B's snapshot and the probes
    of A -> B (A: the month before B unless given). Rerunning with the same inputs and config
    is a no-op; a killed run resumes file by file from data/export/<B>.partial/."""
    month_a, month_b = month_pair(month_a, month_b, b_flag="--month")
    check_wiki(wiki)
    data_root, executor = stage_defaults(data_root, executor)
    ins = _inputs(month_a, month_b, wiki, data_root, config)
    inputs = {k: m["key"] for k, (_, m) in ins.items()}
    cfg = {"wiki": wiki, "from": month_a, "to": month_b, **asdict(config)}
    build = FolderBuild(data_root.export(month_a, month_b),
                        artifact_key(STAGE, STAGE_VERSION, inputs, cfg))
    final, staging = build.final, build.staging
    if build.state == "current":
        log.info("export %s is up to date: nothing to do", final)
        return StageResult(final, "current", build.manifest, "export", _describe)

    t0 = time.perf_counter()
    # The card and the lm-eval files are rewritten at the end of every run.
    shutil.rmtree(staging / LM_EVAL, ignore_errors=True)
    plan = _plan(ins, config)
    tasks, weights = [], []
    for c, (source, groups) in plan.items():
        (staging / c).mkdir(exist_ok=True)
        for i, shards in enumerate(groups):
            tasks.append(FileTask(c, str(source), shards, str(staging / c / shard_name(i)),
                                  month_a, month_b))
            weights.append(sum((source / shard_name(s)).stat().st_size for s in shards) + 1)
    executor.run(export_file, tasks, desc=f"export {final.name}", weights=weights, unit="B")
    t_files = time.perf_counter()

    rows = {c: sum(pq.ParquetFile(staging / c / shard_name(i)).metadata.num_rows
                   for i in range(len(groups))) for c, (_, groups) in plan.items()}
    prov = provenance(month_a, month_b, wiki, data_root, ins)
    tasks_written = []
    if config.lm_eval and config.probes:
        tasks_written = write_lm_eval(staging / LM_EVAL, staging, wiki, final.name, month_a,
                                      month_b, rows)
    report = {"rows": rows, "files": {c: len(g) for c, (_, g) in plan.items()},
              "lm_eval_tasks": tasks_written,
              "probes": ins["probes"][1].get("report", {}).get("stages") if config.probes
              else None,
              "diffset": ins["diffset"][1].get("report", {})}
    card = dataset_card(name=final.name, wiki=wiki, month_a=month_a, month_b=month_b,
                        rows=rows, plan=plan, staging=staging, config=config, prov=prov,
                        ins=ins, lm_eval_tasks=tasks_written)
    (staging / CARD).write_text(card, encoding="utf-8")
    manifest = build.publish({
        "stage": STAGE, "stage_version": STAGE_VERSION, "code_version": code_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": inputs, "config": cfg,
        "configs": {c: {"split": CONFIGS[c][0], "rows": rows[c],
                        "files": [f"{c}/{shard_name(i)}" for i in range(len(g))]}
                    for c, (_, g) in plan.items()},
        "provenance": prov, "rows": sum(rows.values()),
        "timings": {"files_s": round(t_files - t0, 3),
                    "total_s": round(time.perf_counter() - t0, 3),
                    "workers": executor.workers},
        "report": report,
    })
    result = StageResult(final, "built", manifest, "export", _describe)
    log.info("%s", result.summary())
    return result


# ---------------------------------------------------------------------------------------
# Provenance and the dataset card.

def provenance(month_a: str, month_b: str, wiki: str, data_root: DataRoot, ins: dict) -> dict:
    """Dump runs, files and checksums of both months (from the snapshots' and facts'
    manifests), and the keys of the artifacts the export was made from."""
    out: dict = {"code_version": code_version(), "wiki": wiki, "months": {}}
    for m in (month_a, month_b):
        snap = read_manifest(data_root.snapshot(wiki, m)) or {}
        facts = read_manifest(data_root.facts(m)) or {}
        si, fi = snap.get("inputs", {}), facts.get("inputs", {})
        out["months"][m] = {
            "dump_run": si.get("run"),
            "dump_files": [{k: f.get(k) for k in ("name", "size", "sha1", "md5")}
                           for f in si.get("files", [])],
            "wikidata_files": [{k: f.get(k) for k in ("name", "size", "sha1", "md5")}
                               for f in fi.get("dump", []) if isinstance(f, dict)],
            "snapshot_key": snap.get("key"), "facts_key": facts.get("key"),
        }
    out["artifacts"] = {k: {"stage": m.get("stage"), "key": m.get("key"),
                            "rows": m.get("rows"), "code_version": m.get("code_version")}
                        for k, (_, m) in ins.items()}
    return out


def _yaml_str(s: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return json.dumps(s, ensure_ascii=False)


def licences(month_b: str) -> list[str]:
    """The Hub's ids of every licence the export's content is under: Wikipedia text is
    CC BY-SA 3.0 with the GFDL (dual-licensed since 2009), and CC BY-SA 4.0 for text since
    the Terms of Use update of June 2023 (a month B from 2023-07 on holds both); Wikidata's
    facts (subject, relation, object of the probes) are CC0."""
    ids = ["cc-by-sa-3.0"] + (["cc-by-sa-4.0"] if month_b >= "2023-07" else [])
    return ids + ["gfdl", "cc0-1.0"]


def size_category(rows: int) -> str:
    """The Hub's size_categories bucket of a number of rows."""
    for bound, name in SIZE_CATEGORIES:
        if rows < bound:
            return name
    return "n>1T"


def default_config(configs: list[str]) -> str | None:
    """The config `datasets.load_dataset(folder)` loads without a name: all the probes (both
    sets) when there are any, else the diffset."""
    if any(c in PROBE_SETS for c in configs):
        return ALL_PROBES
    return "diffset" if "diffset" in configs else (configs[0] if configs else None)


def card_yaml(name: str, wiki: str, month_b: str, configs: list[str], rows: int,
              sample: bool = False) -> str:
    """The card's YAML header: what the Hub and `datasets.load_dataset` read. `configs`: the
    configs with rows; `rows`: all rows of the export, for size_categories."""
    lang = wiki.removesuffix("wiki") if wiki.endswith("wiki") else "en"
    pretty = f"TWiki {wiki} {name}" + (" (sample mirror, partly made up)" if sample else "")
    lines = ["---", f"pretty_name: {_yaml_str(pretty)}",
             "language:", f"- {lang}",
             "license:", *(f"- {x}" for x in licences(month_b)),
             "annotations_creators:", "- machine-generated",
             "language_creators:", "- crowdsourced",
             "multilinguality:", "- monolingual",
             "size_categories:", f"- {size_category(rows)}",
             # Made from the Wikimedia dumps themselves, not from a dataset on the Hub.
             "source_datasets:", "- original",
             "task_categories:", "- text-generation",
             "task_ids:", "- language-modeling",
             "tags:", "- temporalwiki", "- lifelong-learning", "- wikipedia", "- wikidata",
             *(["- made-up-sample"] if sample else []),
             "configs:"]
    default = default_config(configs)
    for c in configs:
        lines += [f"- config_name: {c}"] + (["  default: true"] if c == default else []) + [
            "  data_files:", f"  - split: {CONFIGS[c][0]}",
            f"    path: {_yaml_str(f'{c}/{PART_PREFIX}*.parquet')}"]
    if default == ALL_PROBES:
        lines += [f"- config_name: {ALL_PROBES}", "  default: true", "  data_files:",
                  "  - split: test", "    path:"]
        lines += [f"    - {_yaml_str(f'{c}/{PART_PREFIX}*.parquet')}"
                  for c in PROBE_SETS if c in configs]
    lines.append("---")
    return "\n".join(lines) + "\n"


def from_sample(prov: dict) -> list[str]:
    """The months of the export whose dump files are files of the repository's sample mirror
    (by their sha1, as the mirror's own sums files list them); [] for any other dump or
    without a source checkout."""
    known = set()
    for sums in SAMPLE_MIRROR.rglob("*-sha1sums.txt"):
        known |= {line.split()[0] for line in sums.read_text().splitlines() if line.strip()}
    return [m for m, info in prov["months"].items()
            if any(f.get("sha1") in known for f in info["dump_files"] + info["wikidata_files"])]


def example_row(path: Path) -> dict | None:
    """The first row of a config's first file, strings cut to EXAMPLE_CHARS."""
    for t in iter_row_groups(path):
        if t.num_rows:
            return {k: _cut(v) for k, v in t.slice(0, 1).to_pylist()[0].items()}
    return None


def _cut(v):
    if isinstance(v, str) and len(v) > EXAMPLE_CHARS:
        return v[:EXAMPLE_CHARS] + "…"
    if isinstance(v, list):
        return [_cut(x) for x in v]
    if isinstance(v, dict):
        return {k: _cut(x) for k, x in v.items()}
    return v


def _schema_table(schema: pa.Schema) -> list[str]:
    lines = ["| column | type | |", "|---|---|---|"]
    for f in schema:
        doc = COLUMN_DOCS.get(f.name, "").replace("|", "\\|")
        lines.append(f"| `{f.name}` | `{f.type}` | {doc} |")
    return lines


def dataset_card(*, name: str, wiki: str, month_a: str, month_b: str, rows: dict, plan: dict,
                 staging: Path, config: ExportConfig, prov: dict, ins: dict,
                 lm_eval_tasks: list[str]) -> str:
    """README.md of the export: YAML header, then what is in it, how to load it, an example
    row per config, its counts, schema, provenance, limitations, licence and citations.
    Deterministic: no dates but the dumps'."""
    # `datasets` cannot load a split without rows: empty configs stay out of the YAML.
    listed = [c for c in plan if rows[c] > 0]
    empty = [c for c in plan if rows[c] == 0]
    absent = [c for c in CONFIGS if c not in plan]
    made_up = from_sample(prov)
    default = default_config(listed)
    out = [card_yaml(name, wiki, month_b, listed, sum(rows.values()), sample=bool(made_up))]
    out += [f"# TWiki {wiki} {name}: what changed from {month_a} to {month_b}", ""]
    if made_up:
        out += ["> **Made up, for testing only.** This export was built from twiki's sample "
                "mirror (`data/sample/mirror`: its dump files have the checksums of the "
                "sample's, for " + " and ".join(made_up) + "). The sample's second month, "
                "2016-06, is not a real dump: it is 2016-05 with constructed edits (only "
                "Pear's is a real one); ten of its articles (Douglas Adams, The Beatles, ...) "
                "were written for the sample, 45 of its Wikidata items and its property "
                "labels are made up, and the dump dates are made up. Use it to test the "
                "pipeline, never as a picture of Wikipedia or Wikidata in 2016 "
                "(`data/sample/README.md` says what is real).", ""]
    out += [f"A TemporalWiki-style (Jang et al., EMNLP 2022) benchmark "
            f"for the update of a language model from {wiki} as of {month_a} to {wiki} as of "
            f"{month_b}: the text to train on (TWiki-Diffsets) and the facts to test on "
            f"(TWiki-Probes: Unchanged = stability, Changed = plasticity), made by "
            f"twiki {prov['code_version']} from the Wikimedia dumps "
            f"listed under Provenance.", "",
            "| config | split | rows | what |", "|---|---|---:|---|"]
    for c in plan:
        out.append(f"| `{c}` | {CONFIGS[c][0]} | {rows[c]:,} | {CONFIGS[c][1]} |")
    if default == ALL_PROBES:
        both = [c for c in PROBE_SETS if c in listed]
        out.append(f"| `{ALL_PROBES}` (default) | test | {sum(rows[c] for c in both):,} | "
                   f"all TWiki-Probes: " + " then ".join(f"`{c}`" for c in both)
                   + " (the `kind` column tells them apart) |")
    notes = []
    if default and default != ALL_PROBES:
        notes.append(f"The default config (`datasets.load_dataset(path)` without a name) is "
                     f"`{default}`.")
    if empty:
        notes.append("Empty this month, so not declared as `datasets` configs (`datasets` "
                     "cannot load a split without rows); their Parquet files are here, with "
                     "their schema, for pandas and pyarrow: " + ", ".join(f"`{c}`" for c in empty)
                     + ".")
    if absent:
        why = []
        if not config.probes:
            why.append("the probes were not built when this export was made")
        if not config.snapshot_text:
            why.append("the snapshot's text was left out (`snapshot_text: false`)")
        notes.append("Not exported: " + ", ".join(f"`{c}`" for c in absent) + " ("
                     + "; ".join(why) + ").")
    if "probes" in ins:
        notes.append(probe_sample_note(ins["probes"][1].get("report", {}), month_a, month_b))
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    probe = "probes_changed" if "probes_changed" in listed else (
        "probes_unchanged" if "probes_unchanged" in listed else None)
    out += ["", "## Loading", "", "```python",
            "import datasets, pandas as pd",
            f'ds = datasets.load_dataset("data/export/{name}")    # the default config, '
            f'{default or "none"}']
    if probe:
        out.append(f'probes = datasets.load_dataset("data/export/{name}", "{probe}")')
    out += [f'diffset = pd.read_parquet("data/export/{name}/diffset")',
            "import twiki",
            f'probes = twiki.load_probes("{name}")             # both sets, a pandas DataFrame',
            f'changed = twiki.load_probes("{name}", "changed")',
            f'diffset = twiki.load_diffset("{name}")', "```", ""]
    if lm_eval_tasks:
        out += lm_eval_card_section(wiki, name, staging, listed)
    out += ["## Example rows", "",
            f"The first row of each config, strings cut at {EXAMPLE_CHARS} characters "
            f"(\"…\"):", ""]
    for c in listed:
        row = example_row(sorted((staging / c).glob(f"{PART_PREFIX}*.parquet"))[0])
        out += [f"`{c}`:", "", "```json",
                json.dumps(row, ensure_ascii=False, indent=1, default=str), "```", ""]
    out += ["## Stage counts", "", "TWiki-Probes, in the form of the paper's Table 1:", ""]
    if "probes" in ins:
        report = ins["probes"][1].get("report", {})
        out += probe_stage_table(report) + [""] + rejection_table(report) + [""]
    else:
        out += ["(no probes in this export)", ""]
    d = ins["diffset"][1].get("report", {})
    dd, pages, share = d.get("diffset", {}), d.get("pages", {}), d.get("share_of_snapshot", {})
    chars_share = share.get("chars")
    out += ["TWiki-Diffsets:", "", "| | |", "|---|---:|",
            f"| articles in month B's snapshot | {pages.get('in_new_snapshot', 0):,} |",
            f"| pages unchanged / edited / new / deleted | {pages.get('unchanged', 0):,} / "
            f"{pages.get('edited', 0):,} / {pages.get('new', 0):,} / {pages.get('deleted', 0):,} |",
            f"| articles in the diffset (new + changed) | {dd.get('articles', 0):,} "
            f"({dd.get('new_articles', 0):,} + {dd.get('changed_articles', 0):,}) |",
            f"| share of the snapshot's articles | {share.get('articles', 0):.1%} |",
            f"| characters of diffset text | {dd.get('chars', 0):,} |",
            "| share of the snapshot's characters | "
            + (f"{chars_share:.1%}" if chars_share is not None else "n/a") + " |", ""]
    out += ["## Schema", ""]
    schemas: dict[str, list[str]] = {}      # configs of the same schema share one table
    for c, (source, _) in plan.items():
        schemas.setdefault(_config_schema(c, source).to_string(), []).append(c)
    for text, configs in schemas.items():
        schema = _config_schema(configs[0], plan[configs[0]][0])
        out += ["### " + ", ".join(f"`{c}`" for c in configs), ""]
        out += _schema_table(schema) + [""]
    out += ["## Provenance", "",
            f"Made by twiki {prov['code_version']}; every input is an artifact with a manifest "
            f"(its key below identifies inputs + config). Files of this folder with their "
            f"sha256: `_manifest.json`.", ""]
    for m, info in prov["months"].items():
        out.append(f"- **{m}**: {wiki} dump run {info['dump_run'] or 'unknown'}")
        for f in info["dump_files"] + info["wikidata_files"]:
            sums = ", ".join(f"{k} `{f[k]}`" for k in ("sha1", "md5") if f.get(k))
            out.append(f"  - `{f.get('name')}` ({f.get('size') or 0:,} bytes; {sums})")
    out += ["", "| artifact | stage | key | rows |", "|---|---|---|---:|"]
    for k, a in prov["artifacts"].items():
        out.append(f"| {k} | {a['stage']} | `{(a['key'] or '')[:16]}` | {a['rows'] or 0:,} |")
    out += ["", "## Limitations", ""] + [f"- {x}" for x in LIMITATIONS]
    if made_up:
        out.append("- This export comes from the sample mirror: its second month and some of "
                   "its articles and items are made up (see the note at the top).")
    out += ["", "## Licence", "",
            "Wikipedia text (diffset, training text, evidence sentences, titles) is CC BY-SA "
            "3.0 and GFDL (dual-licensed), and CC BY-SA 4.0 (with the GFDL) for text written "
            "since the Terms of Use update of June 2023, its authors the editors in each "
            "page's history on " + f"{lang_site(wiki)}; Wikidata facts (subject, relation, "
            "object and their ids) are CC0. Hence the YAML's `license`: "
            + ", ".join(f"`{x}`" for x in licences(month_b)) + ".", "",
            "## Citation", "",
            "TemporalWiki, whose method this follows, and the Wikimedia dumps it is made from:",
            "", "```bibtex", CITATION, "```", ""]
    return "\n".join(out)


def probe_sample_note(report: dict, month_a: str, month_b: str) -> str:
    """The card's line on the probes' sample: its size against the full filtered set's, per
    set, from the probes stage's report."""
    sample = report.get("sample", {})
    names = {"unchanged": "Unchanged", "changed": "Changed"}
    parts = []
    for g, name in names.items():
        sg = sample.get(g, {})
        if sg.get("size") and sg.get("full", 0) > sg["size"]:
            parts.append(f"{name} {sg.get('sampled', 0):,} of {sg.get('full', 0):,}")
        else:
            parts.append(f"{name} all {sg.get('full', 0):,}")
    return ("TWiki-Probes are a seeded sample of the probes left after the filters and "
            "TemporalWiki's 1%/5% caps, stratified by relation (each relation keeps its share): "
            + ", ".join(parts) + f". The full filtered set is `probes/{month_a}_{month_b}/"
            "probes_full/` under the data root (not exported). Each probe has a stable "
            "`probe_id` and the exact `prompt` scored before the object.")


def lang_site(wiki: str) -> str:
    """enwiki -> en.wikipedia.org."""
    return f"{wiki.removesuffix('wiki')}.wikipedia.org"


LIMITATIONS = [
    "Probes are made by machine, not checked by people: a fact is kept when a sentence of the "
    "subject's article refers to its object (a link to the object's item, a form the article "
    "links to it, its label or alias, a date or quantity) with the relation's cue where one is "
    "needed. A match can still be a coincidence; `match_kind`, `cue` and `match_score` say how "
    "it was found.",
    "The probe sets are a seeded sample, stratified by relation, of the probes the filters "
    "keep (see the stage counts): a relation's share of a set is its share of the filtered "
    "set, within one probe.",
    "A probe is \"subject relation object\" with the property's English label as relation "
    "(\"Douglas Adams place of birth Cambridge\"), not a natural sentence; a property without "
    "an English label in the dump carries its id (P...).",
    "Changed probes may be known from before: `object_in_month_a` flags an object that month "
    "A's article already stated; `evidence_in_diffset` whether the whole evidence sentence is "
    "new text.",
    "The diffset is sentence- and paragraph-level text cleaned from wikitext: templates "
    "(infoboxes among them, but for a few rendered inline), tables, references, files and "
    "apparatus sections (References, External links, ...) are dropped, so changes there are "
    "not in it; only namespace-0 articles, no redirects.",
    "Wikidata is the weekly JSON dump nearest to the Wikipedia run, which can be days away "
    "from it; a fact edited in that gap can look changed or unchanged wrongly.",
    "Perplexities depend on the tokenizer: compare per-token figures of one tokenizer only, "
    "and byte or word perplexities across tokenizers.",
    "Wikipedia's coverage and point of view carry its editors' biases; the probes inherit "
    "them, and those of which facts Wikidata records.",
]


# ---------------------------------------------------------------------------------------
# lm-evaluation-harness tasks.

LM_EVAL_INSTALL = 'pip install "lm-eval[hf]"'
# The harness passes --model_args (pretrained=..., tokenizer=...) to custom_dataset from this
# version on (lm_eval/evaluator.py, "Add loncxt tasks", #2629): token_perplexity needs it.
LM_EVAL_MIN_VERSION = "0.4.9"
# Metrics of a task and of the group, the comparable one first: token_perplexity is
# `twiki eval`'s figure; byte_/word_perplexity compare across tokenizers; acc; and the
# harness's own per-probe perplexity (a mean of per-probe likelihoods, 1e18..1e54 on small
# models: comparable with nothing), last.
LM_EVAL_METRICS = (("token_perplexity", "weighted_perplexity", False),
                   ("byte_perplexity", "weighted_perplexity", False),
                   ("word_perplexity", "weighted_perplexity", False),
                   ("acc", "mean", True),
                   ("perplexity", "perplexity", False))

LM_EVAL_LOADER_SOURCE = '''"""Loads this folder's probe files for lm-evaluation-harness (`custom_dataset` in the task
YAMLs). Paths are relative to this file, so the folder works wherever it is copied. Written by
twiki's export stage. Needs `pip install "lm-eval[hf]"` (0.4.9 or later for token_perplexity).

token_perplexity = exp(-total log-likelihood of the objects / their tokens), per probe set:
the figure `twiki eval` reports for the same model (its Unchanged and Changed `ppl`; the
group's mean is its Avg). The harness gives process_results no token counts, so `load`
counts each object's tokens with the model's tokenizer, which the harness passes it from
--model_args (pretrained=..., or tokenizer=...; or pass --metadata '{"tokenizer": "..."}').
The count is the harness's own: the tokens of "subject relation object" after those of
"subject relation". Without a tokenizer there is no token_perplexity, and byte_perplexity
leads."""

import json
import logging
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


def load(data_file: str, tokenizer=None, pretrained=None, revision=None,
         trust_remote_code=False, **_metadata) -> datasets.DatasetDict:
    path = HERE / Path(data_file).name
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    tok = _tokenizer(tokenizer or pretrained, revision, trust_remote_code)
    if tok is not None:
        for r in rows:
            r["object_tokens"] = object_tokens(tok, r)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _tokenizer(name, revision, trust_remote_code):
    if not isinstance(name, str) or not name:
        log.warning("twiki: no tokenizer in --model_args or --metadata: no token_perplexity")
        return None
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(name, revision=revision,
                                         trust_remote_code=bool(trust_remote_code))


def object_tokens(tok, doc: dict) -> int:
    """Tokens of the object as the harness scores them (doc_to_text + doc_to_target, less
    doc_to_text's tokens); twiki eval encodes " object" alone, the same for GPT-2-style BPE."""
    context = doc.get("prompt") or f"{doc['subject']} {doc['relation']}"
    whole = tok(f"{context} {doc['object']}", add_special_tokens=False)["input_ids"]
    return max(len(whole) - len(tok(context, add_special_tokens=False)["input_ids"]), 1)


def process_results(doc: dict, results) -> dict:
    """Per-token perplexity (with a tokenizer), per-byte and per-word perplexity of the
    object, greedy accuracy, and the harness's per-probe perplexity."""
    ll, is_greedy = results[0]
    obj = doc["object"]
    out = {}
    if doc.get("object_tokens"):
        out["token_perplexity"] = (ll, doc["object_tokens"])
    out.update(byte_perplexity=(ll, max(len(obj.encode("utf-8")), 1)),
               word_perplexity=(ll, max(len(obj.split()), 1)),
               acc=int(is_greedy), perplexity=ll)
    return out
'''


def lm_eval_task_yaml(task: str, data_file: str, title: str) -> str:
    """One task: the log-likelihood of " object" after the probe's prompt ("subject relation",
    what `twiki eval` scores with object scoring: the object's tokens only)."""
    lines = [
        f"# {title}",
        f"# Written by twiki's export stage. Needs: {LM_EVAL_INSTALL} ({LM_EVAL_MIN_VERSION} "
        "or later",
        "# for token_perplexity). Score: the log-likelihood of \" object\" given \"subject",
        "# relation\" (the object's tokens only). token_perplexity: exp(-sum of it / the",
        "# objects' tokens), equal to `twiki eval`'s ppl of the set for the same model;",
        "# byte_/word_perplexity: the same per UTF-8 byte / word of the objects (comparable",
        "# across tokenizers); acc: the object is the greedy continuation; perplexity: the",
        "# harness's exp(-mean over probes), not comparable.",
        f"task: {task}",
        "custom_dataset: !function twiki_data.load",
        "dataset_kwargs:",
        f"  data_file: {_yaml_str(data_file)}",
        "test_split: test",
        "output_type: loglikelihood",
        'doc_to_text: "{{prompt}}"',
        'doc_to_target: " {{object}}"',
        'target_delimiter: ""',
        "process_results: !function twiki_data.process_results",
        "metric_list:"]
    for metric, aggregation, higher in LM_EVAL_METRICS:
        lines += [f"  - metric: {metric}", f"    aggregation: {aggregation}",
                  f"    higher_is_better: {str(higher).lower()}"]
    return "\n".join(lines + ["metadata:", "  version: 2.0", ""])


def lm_eval_group_yaml(group: str, tasks: list[str], title: str) -> str:
    lines = [f"# {title}",
             f"# Needs: {LM_EVAL_INSTALL}. Unchanged and Changed averaged unweighted, like",
             "# TemporalWiki's Avg: token_perplexity's is `twiki eval`'s avg.",
             f"group: {group}", "task:"] + [f"  - {t}" for t in tasks] + [
        "aggregate_metric_list:"]
    for metric, _, _ in LM_EVAL_METRICS:
        lines += [f"  - metric: {metric}", "    aggregation: mean", "    weight_by_size: false"]
    return "\n".join(lines + ["metadata:", "  version: 2.0", ""])


def lm_eval_card_section(wiki: str, name: str, staging: Path, listed: list[str]) -> list[str]:
    """The card's lm-evaluation-harness part: how to run it, what each metric is, and the
    objects' words and bytes per set, to turn `twiki eval`'s figure into the byte one."""
    group = task_prefix(wiki, name)
    out = ["### lm-evaluation-harness", "",
           f"Tasks in `lm_eval/`, for [lm-evaluation-harness]"
           f"(https://github.com/EleutherAI/lm-evaluation-harness) {LM_EVAL_MIN_VERSION} or "
           f"later; install it with `{LM_EVAL_INSTALL}`. A probe is scored as `twiki eval` "
           "scores it: the log-likelihood of \" object\" given \"subject relation\", the "
           "object's tokens only.", "", "```sh", LM_EVAL_INSTALL,
           f"lm_eval --model hf --model_args pretrained=gpt2 "
           f"--include_path data/export/{name}/lm_eval --tasks {group}", "```", "",
           "Metrics, in the order the harness prints them:", "",
           "- `token_perplexity` (the one to compare): exp(total NLL of the objects / their "
           "tokens) over a probe set, **the same number as `twiki eval`'s `ppl`** for the "
           "same model (`unchanged.ppl`, `changed.ppl`; the group's is its `avg`, Unchanged "
           "and Changed averaged unweighted like TemporalWiki's Avg). The tokens are counted "
           "with the model's tokenizer, which the harness hands the task from `--model_args` "
           "(`pretrained=` or `tokenizer=`); without one (another model type) pass "
           "`--metadata '{\"tokenizer\": \"NAME\"}'`, or the metric is left out. The count is "
           "the harness's (the tokens of \"subject relation object\" after those of "
           "\"subject relation\"); `twiki eval` encodes \" object\" alone, which gives the "
           "same tokens with GPT-2-style byte-level BPE; a SentencePiece tokenizer can differ "
           "by a token at the join.",
           "- `byte_perplexity`, `word_perplexity`: the same total NLL per UTF-8 byte or "
           "whitespace word of the objects (the leading space not counted), comparable across "
           "tokenizers. From `twiki eval`'s result: byte_perplexity = exp(ln(ppl) x tokens / "
           "bytes), with its `tokens` and the bytes below.",
           "- `acc`: the object is the model's greedy continuation.",
           "- `perplexity`: the harness's own, exp(-mean log-likelihood of a probe): "
           "dominated by the least likely probes, not comparable with the others.", "",
           "| probe set | task | probes | object words | object UTF-8 bytes |",
           "|---|---|---:|---:|---:|"]
    for c in PROBE_SETS:
        if c not in listed:
            continue
        objects = [o for path in sorted((staging / c).glob(f"{PART_PREFIX}*.parquet"))
                   for t in iter_row_groups(path, ["object"]) for o in t["object"].to_pylist()]
        out.append(f"| `{c}` | `{group}_{c.removeprefix('probes_')}` | {len(objects):,} | "
                   f"{sum(max(len(o.split()), 1) for o in objects):,} | "
                   f"{sum(max(len(o.encode('utf-8')), 1) for o in objects):,} |")
    return out + [""]


def write_lm_eval(folder: Path, export: Path, wiki: str, name: str, month_a: str,
                  month_b: str, rows: dict) -> list[str]:
    """lm_eval/: a JSON-lines file, a task YAML per probe set with rows, a group of them and
    the loader. Returns the task names (none when there are no probes)."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = task_prefix(wiki, name)
    tasks = []
    for config in PROBE_SETS:
        if not rows.get(config):
            continue
        probe_set = config.removeprefix("probes_")
        data_file = f"{config}.jsonl"
        tmp = folder / f".{data_file}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            for path in sorted((export / config).glob(f"{PART_PREFIX}*.parquet")):
                for t in iter_row_groups(path, list(LM_EVAL_COLUMNS)):
                    for r in t.to_pylist():
                        f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, folder / data_file)
        task = f"{prefix}_{probe_set}"
        title = f"TWiki-Probes {probe_set.capitalize()}, {wiki} {month_a} -> {month_b}"
        (folder / f"{task}.yaml").write_text(lm_eval_task_yaml(task, data_file, title),
                                             encoding="utf-8")
        tasks.append(task)
    if tasks:
        (folder / LM_EVAL_LOADER).write_text(LM_EVAL_LOADER_SOURCE, encoding="utf-8")
        (folder / f"{prefix}.yaml").write_text(lm_eval_group_yaml(
            prefix, tasks, f"TWiki-Probes, {wiki} {month_a} -> {month_b}"), encoding="utf-8")
    else:
        folder.rmdir()
    return tasks


# ---------------------------------------------------------------------------------------
# Loading an export back.

_NAME_RE = re.compile(r"^\d{4}-\d{2}(_\d{4}-\d{2})?$")


def resolve_export(month_or_path: str | os.PathLike, data_root: DataRoot | None = None
                   ) -> Path:
    """An export folder from a month ('2016-06'), a pair ('2015-02_2015-05') or a path."""
    s = os.fspath(month_or_path)
    if _NAME_RE.match(s):
        for part in s.split("_"):
            parse_month(part)
        folder = (data_root or DataRoot.default()).exports() / s
    else:
        folder = Path(s)
    if read_manifest(folder) is None:
        if (folder / CARD).exists():
            return folder       # an export copied without its manifest still loads
        month = s.split("_")[-1] if _NAME_RE.match(s) else "YYYY-MM"
        raise TwikiError(f"no export at {folder}: run `twiki export --month {month}` first "
                         f"(or pass the folder of an export)")
    return folder


def export_files(month_or_path: str | os.PathLike, config: str,
                 data_root: DataRoot | None = None) -> list[Path]:
    """The Parquet files of one config of an export, in order (for streaming with pyarrow)."""
    if config not in CONFIGS:
        raise ConfigError(f"config must be one of {', '.join(CONFIGS)}, not {config!r}")
    folder = resolve_export(month_or_path, data_root)
    files = sorted((folder / config).glob(f"{PART_PREFIX}*.parquet"))
    if not files:
        raise TwikiError(f"the export at {folder} has no {config!r} config (see its README.md)")
    return files


def load_export(month_or_path: str | os.PathLike, config: str, *,
                columns: list[str] | None = None, data_root: DataRoot | None = None):
    """One config of an export as a pandas DataFrame."""
    files = export_files(month_or_path, config, data_root)
    tables = [pq.read_table(f, columns=columns) for f in files]
    return pa.concat_tables(tables).to_pandas()


def load_probes(month_or_path: str | os.PathLike, probe_set: str = "all", *,
                columns: list[str] | None = None, data_root: DataRoot | None = None):
    """TWiki-Probes of an export as a pandas DataFrame: probe_set 'unchanged', 'changed' or
    'all' (both, Unchanged first; the `kind` column tells them apart).

    >>> twiki.load_probes("2022-01", "changed")[["subject", "relation", "object"]]
    """
    sets = {"unchanged": ["probes_unchanged"], "changed": ["probes_changed"],
            "all": ["probes_unchanged", "probes_changed"]}
    if probe_set not in sets:
        raise ConfigError(f"probe_set must be unchanged, changed or all, not {probe_set!r}")
    import pandas as pd
    frames = [load_export(month_or_path, c, columns=columns, data_root=data_root)
              for c in sets[probe_set]]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def load_diffset(month_or_path: str | os.PathLike, *, as_documents: bool = False,
                 columns: list[str] | None = None, data_root: DataRoot | None = None):
    """TWiki-Diffsets of an export as a pandas DataFrame: one row per diff text (the `diffset`
    config), or with as_documents one per article (`train_diffset`: page_id, title, text)."""
    return load_export(month_or_path, "train_diffset" if as_documents else "diffset",
                       columns=columns, data_root=data_root)
