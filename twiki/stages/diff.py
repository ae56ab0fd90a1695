"""diff: two monthly snapshots of a wiki -> the TWiki-Diffset between them (new + changed text).

Reads data/snapshots/<wiki>/<A>/ and <B>/ (the extract stage's artifacts) and writes three
artifacts side by side, joined shard by shard on page_id without ever loading a month:
  data/diffsets/<wiki>/<A>_<B>/           training text: kind `new` (whole new articles) and
                                          `changed` (inserted paragraphs, new/changed sentences)
  data/diffsets/<wiki>/<A>_<B>_removed/   text that B no longer has (kind `removed`), analysis only
  data/diffsets/<wiki>/<A>_<B>_articles/  one row per new, edited, deleted or renamed page, with
                                          its paragraph/sentence/character counts
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from rapidfuzz import process
from rapidfuzz.distance import Indel

from ..engine.artifacts import (ROW_GROUP_ROWS, ArtifactBuild, ShardWriter, iter_row_groups,
                               require_artifact, shard_name)
from ..engine.executors import Executor
from ..engine.paths import DataRoot, check_wiki, month_pair
from ..engine.stage import StageResult, StageRun, stage_defaults
from ..errors import ConfigError, InputError, TwikiError
from ..text.normalize import compare_key
from ..text.sentences import sentence_spans

log = logging.getLogger("twiki")

# Bump when the diff algorithm or a row layout changes: diffsets made before are rebuilt.
STAGE_VERSION = 1
STAGE = "diff"
REMOVED_STAGE = "diff-removed"
ARTICLES_STAGE = "diff-articles"

Section = tuple[str, ...]
Paragraph = tuple[Section, str]

# Rows of the diffset and of the removed-text artifact (same layout; kind tells them apart).
# Sorted by page_id, then position.
DIFFSET_SCHEMA = pa.schema([
    pa.field("page_id", pa.int64(), nullable=False),
    pa.field("title", pa.string(), nullable=False),          # the title in month B
    pa.field("old_revid", pa.int64()),                       # null for kind `new`
    pa.field("new_revid", pa.int64(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),           # new | changed | removed
    pa.field("position", pa.int32(), nullable=False),        # row number within the article
    pa.field("paragraph", pa.int32(), nullable=False),       # source paragraph (A's if removed)
    pa.field("section", pa.list_(pa.string())),              # section path of that paragraph
    pa.field("text", pa.string(), nullable=False),
])

# One row per page that is new, edited (sha1 changed), deleted, or renamed with the same text.
# Unchanged pages (about 92% of a month) are only counted, in the stage report.
ARTICLES_SCHEMA = pa.schema([
    pa.field("page_id", pa.int64(), nullable=False),
    pa.field("title", pa.string(), nullable=False),          # B's title (A's when deleted)
    pa.field("old_title", pa.string()),                      # null when new
    pa.field("old_revid", pa.int64()),
    pa.field("new_revid", pa.int64()),                       # null when deleted
    pa.field("status", pa.string(), nullable=False),         # new | edited | deleted | unchanged
    pa.field("renamed", pa.bool_(), nullable=False),
    pa.field("in_diffset", pa.bool_(), nullable=False),
    pa.field("paragraphs_old", pa.int32(), nullable=False),
    pa.field("paragraphs_new", pa.int32(), nullable=False),
    pa.field("paragraphs_unchanged", pa.int32(), nullable=False),  # same text, same place
    pa.field("paragraphs_moved", pa.int32(), nullable=False),      # same text, elsewhere
    pa.field("paragraphs_edited", pa.int32(), nullable=False),
    pa.field("paragraphs_inserted", pa.int32(), nullable=False),
    pa.field("paragraphs_deleted", pa.int32(), nullable=False),
    pa.field("sentences_added", pa.int32(), nullable=False),
    pa.field("sentences_removed", pa.int32(), nullable=False),
    pa.field("diff_rows", pa.int32(), nullable=False),
    pa.field("diff_chars", pa.int64(), nullable=False),
    pa.field("removed_chars", pa.int64(), nullable=False),
    pa.field("article_chars", pa.int64(), nullable=False),   # B's whole text (A's if deleted)
])

# Columns of a snapshot (twiki.stages.extract.SCHEMA) that the diff reads.
SNAPSHOT_COLUMNS = ["page_id", "title", "revid", "sha1", "paragraphs"]

PARAGRAPH_COUNTS = ("paragraphs_unchanged", "paragraphs_moved", "paragraphs_edited",
                    "paragraphs_inserted", "paragraphs_deleted")


@dataclass(frozen=True)
class DiffConfig:
    """What decides the diffset's content (all of it is part of the artifact key)."""

    edited_similarity: float = 0.5
    """rapidfuzz word-level Indel similarity (2*LCS/(len a + len b), over casefolded words) from
    which a new paragraph that shares no sentence with the old article still counts as an
    edited version of a vanished old paragraph (not an inserted one). 0.5, measured on the
    sample articles: two unrelated paragraphs of one article score under 0.2 in 95% of pairs,
    a paragraph with one or two words changed in every sentence over 0.85 in 95%."""
    casefold: bool = True
    """Compare text casefolded, so that case-only edits (a capital fixed) are not new text."""

    def __post_init__(self) -> None:
        if not 0.0 < self.edited_similarity <= 1.0:
            raise ConfigError(f"edited_similarity must be in (0, 1], not {self.edited_similarity}")


_WORDS = re.compile(r"[^\W_]+")


# ---------------------------------------------------------------------------------------
# The algorithm on one article.

class DiffText(NamedTuple):
    """One piece of diff text: its kind, section path, text, and source paragraph index."""

    kind: str  # "new" | "changed" | "removed"
    section: Section
    text: str
    paragraph: int


@dataclass
class ArticleDiff:
    added: list[DiffText] = field(default_factory=list)    # training text (new | changed)
    removed: list[DiffText] = field(default_factory=list)  # analysis only
    counts: dict[str, int] = field(default_factory=dict)


def new_article(paragraphs: Sequence[Paragraph]) -> ArticleDiff:
    """A page only in month B: the whole article, one `new` row per paragraph."""
    added = [DiffText("new", tuple(s), t, i) for i, (s, t) in enumerate(paragraphs)]
    counts = dict.fromkeys(PARAGRAPH_COUNTS, 0)
    counts["paragraphs_inserted"] = len(added)
    counts["sentences_added"] = sum(len(sentence_spans(t)) for _, t in paragraphs)
    counts["sentences_removed"] = 0
    return ArticleDiff(added, [], counts)


def diff_article(old: Sequence[Paragraph], new: Sequence[Paragraph],
                 config: DiffConfig = DiffConfig()) -> ArticleDiff:
    """What month B's version of an article adds to month A's, and what it removed.

    Paragraphs are compared by their normalized key (whitespace, punctuation and, by default,
    case ignored). A new paragraph whose key is anywhere in A is unchanged, or moved: not new
    text. Any other new paragraph is split into sentences; a sentence is old when A has it
    (same key, in any paragraph) or when it and its neighbours only re-cut A's sentences
    (a punctuation edit that split or joined sentences); the others are new or changed. The
    paragraph is *edited* when it keeps some of A's text or is similar (rapidfuzz,
    `config.edited_similarity`) to an A paragraph that vanished: then its runs of new/changed
    sentences are kept. Otherwise it is *inserted* and kept whole. Position plays no part, so
    edits before the first and after the last unchanged paragraph count like any other.
    Removed text is the mirror image, computed the same way from A's side.
    """
    old = [(tuple(s), t) for s, t in old]
    new = [(tuple(s), t) for s, t in new]
    # Every distinct paragraph is split and normalized once: most of an edited article's
    # paragraphs are in both versions. A paragraph's key is its sentences' keys joined (the
    # sentences cover all of its word characters; what lies between them is whitespace).
    split: dict[str, tuple[list[tuple[int, int]], list[str]]] = {}
    casefold = config.casefold
    for _, t in old + new:
        if t not in split:
            spans = sentence_spans(t)
            split[t] = (spans, [compare_key(t[a:b], casefold) for a, b in spans])
    old_keys = ["".join(split[t][1]) for _, t in old]
    new_keys = ["".join(split[t][1]) for _, t in new]
    old_key_set, new_key_set = set(old_keys), set(new_keys)
    counts = dict.fromkeys(PARAGRAPH_COUNTS, 0)
    counts["sentences_added"] = counts["sentences_removed"] = 0

    # Unchanged paragraphs in their place are the `equal` blocks of an LCS alignment of the
    # key sequences; a key found elsewhere is a moved paragraph.
    in_place: set[int] = set()
    if old_key_set & new_key_set:
        for op in Indel.opcodes(old_keys, new_keys):
            if op.tag == "equal":
                in_place.update(range(op.dest_start, op.dest_end))
    changed = [j for j, k in enumerate(new_keys) if k and k not in old_key_set]
    vanished = [i for i, k in enumerate(old_keys) if k and k not in new_key_set]
    for j, k in enumerate(new_keys):
        if k and k in old_key_set:
            counts["paragraphs_unchanged" if j in in_place else "paragraphs_moved"] += 1
    if not changed and not vanished:
        return ArticleDiff([], [], counts)

    old_s = _Sentences([split[t] for _, t in old])
    new_s = _Sentences([split[t] for _, t in new])
    vanished_words: list[list[str]] | None = None
    added: list[DiffText] = []
    for j in changed:
        section, text = new[j]
        spans, keys = new_s.spans[j], new_s.keys[j]
        fresh = old_s.fresh(keys)
        if not any(fresh) or any(k and not f for k, f in zip(keys, fresh)):
            edited = True  # keeps some of A's text
        else:
            if vanished_words is None:
                vanished_words = [_words(old[i][1], config.casefold) for i in vanished]
            edited = bool(vanished_words) and process.extractOne(
                _words(text, config.casefold), vanished_words,
                scorer=Indel.normalized_similarity,
                score_cutoff=config.edited_similarity) is not None
        if edited:
            counts["paragraphs_edited"] += 1
            for a, b, n in _runs(spans, fresh):
                added.append(DiffText("changed", section, text[a:b], j))
                counts["sentences_added"] += n
        else:
            counts["paragraphs_inserted"] += 1
            added.append(DiffText("changed", section, text, j))
            counts["sentences_added"] += sum(1 for k in keys if k)

    removed: list[DiffText] = []
    for i in vanished:
        section, text = old[i]
        spans, keys = old_s.spans[i], old_s.keys[i]
        gone = new_s.fresh(keys)
        if all(g for g, k in zip(gone, keys) if k):
            counts["paragraphs_deleted"] += 1
        for a, b, n in _runs(spans, gone):
            removed.append(DiffText("removed", section, text[a:b], i))
            counts["sentences_removed"] += n
    return ArticleDiff(added, removed, counts)


class _Sentences:
    """One version of an article as sentence keys, answering "which of these sentences does
    this version not have?" (`fresh`)."""

    def __init__(self, paragraphs: list[tuple[list[tuple[int, int]], list[str]]]):
        """`paragraphs`: each paragraph's sentence spans and sentence keys."""
        self.spans = [spans for spans, _ in paragraphs]
        self.keys = [keys for _, keys in paragraphs]
        self.set = {k for keys in self.keys for k in keys if k}
        # All keys in document order, with the offsets where a sentence starts and ends: a
        # run of the other version's sentences that covers exactly whole sentences here
        # (within a paragraph or across two that were merged) is the same text, re-cut.
        self.starts, self.ends, pos = set(), set(), 0
        for keys in self.keys:
            for k in keys:
                if k:
                    self.starts.add(pos)
                    pos += len(k)
                    self.ends.add(pos)
        self.text = "".join(k for keys in self.keys for k in keys)

    def _whole_sentences(self, key: str) -> bool:
        i = self.text.find(key)
        while i >= 0:
            if i in self.starts and i + len(key) in self.ends:
                return True
            i = self.text.find(key, i + 1)
        return False

    def fresh(self, keys: list[str]) -> list[bool]:
        """For each of another version's sentence keys (one paragraph, in order): True when
        this version does not have that text."""
        fresh = [bool(k) and k not in self.set for k in keys]
        i, n = 0, len(keys)
        while i < n:
            # A punctuation edit that split or joined sentences leaves a run of sentences
            # whose joined key is a run of whole sentences here.
            if fresh[i] and self.text.find(keys[i]) >= 0:
                j = i
                while j + 1 < n and fresh[j + 1]:
                    j += 1
                for end in range(j, i - 1, -1):
                    if self._whole_sentences("".join(keys[i:end + 1])):
                        for k in range(i, end + 1):
                            fresh[k] = False
                        i = end
                        break
            i += 1
        return fresh


def _words(text: str, casefold: bool) -> list[str]:
    return _WORDS.findall(text.casefold() if casefold else text)


def _runs(spans: list[tuple[int, int]], flags: list[bool]) -> Iterator[tuple[int, int, int]]:
    """(start, end, sentences) of each run of consecutive flagged sentences."""
    i = 0
    while i < len(spans):
        if not flags[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(spans) and flags[j + 1]:
            j += 1
        yield spans[i][0], spans[j][1], j - i + 1
        i = j + 1


# ---------------------------------------------------------------------------------------
# One shard: a streaming merge-join of shard k of month A with shard k of month B.

@dataclass(frozen=True)
class ShardTask:
    shard: int
    old: str
    new: str
    diffset_out: str | None   # None: that output's shard is already built
    removed_out: str | None
    articles_out: str | None
    config: DiffConfig


class _Page(NamedTuple):
    page_id: int
    title: str
    revid: int
    sha1: str | None
    column: pa.Array  # the batch's paragraphs column
    index: int

    def paragraphs(self) -> list[Paragraph]:
        rows = self.column[self.index].as_py() or ()
        return [(tuple(p["section"] or ()), p["text"]) for p in rows]


def _iter_pages(path: str) -> Iterator[_Page]:
    """Stream one snapshot shard's pages, a row group at a time, checking page_id order."""
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise InputError(f"{path}: unreadable snapshot shard ({e}); delete the snapshot folder "
                         f"and run the extract stage again") from None
    last = None
    # A row group at a time: iter_batches reads ahead by several row groups, so its memory
    # grows with the shard; a row group is bounded by the writer's ROW_GROUP_ROWS.
    for g in range(pf.num_row_groups):
        batch = pf.read_row_group(g, columns=SNAPSHOT_COLUMNS, use_threads=False)
        ids = batch.column(0).to_pylist()
        titles = batch.column(1).to_pylist()
        revids = batch.column(2).to_pylist()
        sha1s = batch.column(3).to_pylist()
        column = batch.column(4)
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        for i, page_id in enumerate(ids):
            if last is not None and page_id <= last:
                raise InputError(f"{path}: page_id {page_id} follows {last}; a snapshot shard "
                                 f"must be sorted by page_id without duplicates: rebuild it "
                                 f"with the extract stage")
            last = page_id
            yield _Page(page_id, titles[i], revids[i], sha1s[i], column, i)


class _Rows:
    """Column buffers streamed into one output shard (or dropped when the shard exists)."""

    def __init__(self, path: str | None, schema: pa.Schema):
        self.schema = schema
        self.writer = ShardWriter(Path(path), schema) if path else None
        self.cols: dict[str, list] = {f.name: [] for f in schema}
        self.n = 0

    def add(self, **row) -> None:
        if self.writer is None:
            return
        for k, v in row.items():
            self.cols[k].append(v)
        self.n += 1
        if self.n >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.n:
            self.writer.write(pa.table(self.cols, schema=self.schema))
            self.cols = {f.name: [] for f in self.schema}
            self.n = 0

    def close(self) -> None:
        if self.writer is not None:
            self.flush()
            self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def _same_revision(a: _Page, b: _Page) -> bool:
    """Same text, without reading it: equal sha1 (dumps give the text's sha1); when a dump has
    no sha1 (old export formats), equal revision ids."""
    if a.sha1 and b.sha1:
        return a.sha1 == b.sha1
    return a.revid == b.revid


def diff_shard(task: ShardTask) -> dict:
    """Join one shard of both months on page_id and write the shard of each output."""
    t0 = time.perf_counter()
    outs = [_Rows(task.diffset_out, DIFFSET_SCHEMA), _Rows(task.removed_out, DIFFSET_SCHEMA),
            _Rows(task.articles_out, ARTICLES_SCHEMA)]
    diffset, removed, articles = outs
    stats = {"pages_old": 0, "pages_new": 0, "pages_diffed": 0}
    try:
        old_pages, new_pages = _iter_pages(task.old), _iter_pages(task.new)
        a, b = next(old_pages, None), next(new_pages, None)
        while a is not None or b is not None:
            if b is None or (a is not None and a.page_id < b.page_id):
                _deleted(a, articles)
                stats["pages_old"] += 1
                a = next(old_pages, None)
            elif a is None or b.page_id < a.page_id:
                paragraphs = b.paragraphs()
                d = new_article(paragraphs)
                _write(None, b, d, paragraphs, 0, diffset, removed, articles, "new")
                stats["pages_new"] += 1
                b = next(new_pages, None)
            else:
                if _same_revision(a, b):
                    if a.title != b.title:  # renamed, same text: listed, no diff text
                        _write(a, b, ArticleDiff(counts=dict.fromkeys(PARAGRAPH_COUNTS, 0)),
                               None, None, diffset, removed, articles, "unchanged")
                else:
                    old_p, new_p = a.paragraphs(), b.paragraphs()
                    d = diff_article(old_p, new_p, task.config)
                    _write(a, b, d, new_p, len(old_p), diffset, removed, articles, "edited")
                    stats["pages_diffed"] += 1
                stats["pages_old"] += 1
                stats["pages_new"] += 1
                a, b = next(old_pages, None), next(new_pages, None)
        for o in outs:
            o.close()
    except BaseException:
        for o in outs:
            o.abort()
        raise
    stats["shard"] = task.shard
    stats["seconds"] = round(time.perf_counter() - t0, 4)
    return stats


def _write(a: _Page | None, b: _Page, d: ArticleDiff, new_paragraphs: list[Paragraph] | None,
           old_count: int | None, diffset: _Rows, removed: _Rows, articles: _Rows,
           status: str) -> None:
    old_revid = a.revid if a is not None else None
    for pos, t in enumerate(d.added):
        diffset.add(page_id=b.page_id, title=b.title, old_revid=old_revid, new_revid=b.revid,
                    kind=t.kind, position=pos, paragraph=t.paragraph, section=list(t.section),
                    text=t.text)
    for pos, t in enumerate(d.removed):
        removed.add(page_id=b.page_id, title=b.title, old_revid=old_revid, new_revid=b.revid,
                    kind=t.kind, position=pos, paragraph=t.paragraph, section=list(t.section),
                    text=t.text)
    c = d.counts
    articles.add(
        page_id=b.page_id, title=b.title, old_title=a.title if a is not None else None,
        old_revid=old_revid, new_revid=b.revid, status=status,
        renamed=a is not None and a.title != b.title, in_diffset=bool(d.added),
        paragraphs_old=old_count or 0,
        paragraphs_new=len(new_paragraphs) if new_paragraphs is not None else 0,
        **{k: c.get(k, 0) for k in PARAGRAPH_COUNTS},
        sentences_added=c.get("sentences_added", 0),
        sentences_removed=c.get("sentences_removed", 0),
        diff_rows=len(d.added), diff_chars=sum(len(t.text) for t in d.added),
        removed_chars=sum(len(t.text) for t in d.removed),
        article_chars=sum(len(t) for _, t in new_paragraphs) if new_paragraphs else 0)


def _deleted(a: _Page, articles: _Rows) -> None:
    """A page only in month A: counted and listed, never diff text (it is not parsed)."""
    articles.add(
        page_id=a.page_id, title=a.title, old_title=a.title, old_revid=a.revid, new_revid=None,
        status="deleted", renamed=False, in_diffset=False, paragraphs_old=0, paragraphs_new=0,
        **dict.fromkeys(PARAGRAPH_COUNTS, 0), sentences_added=0, sentences_removed=0,
        diff_rows=0, diff_chars=0, removed_chars=0, article_chars=0)


# ---------------------------------------------------------------------------------------
# The stage.

def _describe(result: StageResult) -> str:
    r = result.report
    p, d, share = r.get("pages", {}), r.get("diffset", {}), r.get("share_of_snapshot", {})
    return (f"{d.get('articles', 0)} articles ({d.get('new_articles', 0)} new, "
            f"{d.get('changed_articles', 0)} changed), {d.get('chars', 0)} characters, "
            f"{share.get('articles', 0):.1%} of the snapshot's articles; pages unchanged "
            f"{p.get('unchanged', 0)}, edited {p.get('edited', 0)}, new {p.get('new', 0)}, "
            f"deleted {p.get('deleted', 0)}")


def diff_months(month_a: str, month_b: str, *, wiki: str = "enwiki",
                data_root: DataRoot | None = None, executor: Executor | None = None,
                config: DiffConfig = DiffConfig()) -> StageResult:
    """Build (or confirm, or repair) the diffset from month A's snapshot to month B's, with
    its removed text and per-article counts (the result's `parts` "removed" and "articles")."""
    month_a, month_b = month_pair(month_a, month_b)
    check_wiki(wiki)
    data_root, executor = stage_defaults(data_root, executor)
    snap_a, snap_b = data_root.snapshot(wiki, month_a), data_root.snapshot(wiki, month_b)
    man_a, man_b = [require_artifact(folder, f"{wiki} snapshot of {month}",
                                     f"run `twiki snapshot --month {month}` first",
                                     stage="extract")
                    for folder, month in ((snap_a, month_a), (snap_b, month_b))]
    shards = man_a["shard_count"]
    if man_b["shard_count"] != shards:
        raise TwikiError(
            f"the snapshots of {month_a} and {month_b} have {shards} and "
            f"{man_b['shard_count']} shards: they can only be joined shard by shard with the "
            f"same count. Rebuild one of them with `twiki extract --month M --shards N` "
            f"using the other's count")
    inputs = {"old": {"month": month_a, "snapshot_key": man_a["key"]},
              "new": {"month": month_b, "snapshot_key": man_b["key"]}}
    cfg = {"wiki": wiki, "from": month_a, "to": month_b, **asdict(config)}

    def artifact(part: str, stage: str, schema: pa.Schema) -> ArtifactBuild:
        return ArtifactBuild(data_root.diffset(wiki, month_a, month_b, part=part), stage=stage,
                             stage_version=STAGE_VERSION, inputs=inputs, config=cfg,
                             shards=shards, schema=schema)

    removed_b = artifact("removed", REMOVED_STAGE, DIFFSET_SCHEMA)
    articles_b = artifact("articles", ARTICLES_STAGE, ARTICLES_SCHEMA)
    diffset_b = artifact("", STAGE, DIFFSET_SCHEMA)
    # The diffset is published last: when it exists, so do its two companions.
    run = StageRun(f"diff {wiki} {month_a} -> {month_b}", diffset_b, removed_b, articles_b,
                   data_root=data_root, executor=executor)
    parts = {"removed": removed_b.final, "articles": articles_b.final}
    if run.current:
        return run.result(_describe, what="diffset", parts=parts)

    pending = {b.final: set(b.pending_shards()) for b in run.builds}
    todo = sorted(set().union(*pending.values()))

    def out(b: ArtifactBuild, s: int) -> str | None:
        return str(b.shard_path(s)) if s in pending[b.final] else None

    tasks = [ShardTask(s, str(snap_a / shard_name(s)), str(snap_b / shard_name(s)),
                       out(diffset_b, s), out(removed_b, s), out(articles_b, s), config)
             for s in todo]
    weights = [(snap_a / shard_name(s)).stat().st_size + (snap_b / shard_name(s)).stat().st_size
               for s in todo]
    stats = run.map(diff_shard, tasks, weights=weights, unit="B")
    t_diff = run.seconds()

    report = diffset_report(articles_b, diffset_b, man_a, man_b)
    cpu = sum(s["seconds"] for s in stats)
    joined = sum(max(s["pages_old"], s["pages_new"]) for s in stats)
    run.publish(report, {"diff_s": round(t_diff, 3), "shards_built": len(todo),
                         "pages_per_second_per_worker": round(joined / cpu, 1) if cpu else None})
    result = run.result(_describe, what="diffset", parts=parts, shards_built=len(todo))
    log.info("%s", result.summary())
    return result


def diffset_report(articles: ArtifactBuild, diffset: ArtifactBuild, man_a: dict,
                   man_b: dict) -> dict:
    """The stage report, computed from the per-article artifact (so a resumed run reports the
    same numbers as an uninterrupted one) and the snapshots' manifests."""
    cols = ["status", "renamed", "in_diffset", "diff_chars", "removed_chars",
            "sentences_added", "sentences_removed", *PARAGRAPH_COUNTS]
    status = {"new": 0, "edited": 0, "deleted": 0, "unchanged": 0}
    sums = dict.fromkeys(cols[3:], 0)
    renamed = in_new = in_changed = 0
    for s in range(articles.shards):
        for batch in iter_row_groups(articles.shard_path(s), cols):
            d = batch.to_pydict()
            for i, st in enumerate(d["status"]):
                status[st] += 1
                renamed += d["renamed"][i]
                if d["in_diffset"][i]:
                    if st == "new":
                        in_new += 1
                    else:
                        in_changed += 1
            for k in sums:
                sums[k] += sum(d[k])
    rows = sum(pq.ParquetFile(diffset.shard_path(s)).metadata.num_rows
               for s in range(diffset.shards))
    pages_a, pages_b = man_a["rows"], man_b["rows"]
    unchanged = pages_b - status["new"] - status["edited"]
    if unchanged != pages_a - status["edited"] - status["deleted"]:
        raise TwikiError("the diff's page counts do not add up (a snapshot shard changed "
                         "during the run?); rerun the diff stage")
    snapshot_chars = man_b.get("report", {}).get("counts", {}).get("clean_chars")
    articles_in = in_new + in_changed
    return {
        "pages": {"in_old_snapshot": pages_a, "in_new_snapshot": pages_b,
                  "unchanged": unchanged,
                  "edited": status["edited"], "new": status["new"],
                  "deleted": status["deleted"], "renamed": renamed,
                  "edited_without_new_text": status["edited"] - in_changed},
        "paragraphs": {k.removeprefix("paragraphs_"): sums[k] for k in PARAGRAPH_COUNTS},
        "sentences": {"added": sums["sentences_added"], "removed": sums["sentences_removed"]},
        "diffset": {"articles": articles_in, "new_articles": in_new,
                    "changed_articles": in_changed, "rows": rows, "chars": sums["diff_chars"],
                    "removed_chars": sums["removed_chars"]},
        "share_of_snapshot": {
            "articles": round(articles_in / pages_b, 6) if pages_b else 0.0,
            "chars": round(sums["diff_chars"] / snapshot_chars, 6) if snapshot_chars else None,
        },
    }
