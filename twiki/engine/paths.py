"""Where every artifact lives under the data root, and the checks on names that reach it.

One place for the layout of data/ (see data/README.md); stages ask a DataRoot for paths and
never build them by hand.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, UnsafePathError

MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
# Wikipedia began in January 2001: no dump holds an earlier month.
FIRST_YEAR = 2001
RUN_DATE_RE = re.compile(r"^\d{8}$")
WIKI_RE = re.compile(r"^[a-z][a-z0-9_]*wiki[a-z]*$")


def parse_month(month: str) -> str:
    """Validate a month written YYYY-MM, from FIRST_YEAR on, and return it; anything else is
    a ConfigError."""
    if not isinstance(month, str) or not MONTH_RE.match(month):
        if isinstance(month, str) and re.fullmatch(r"\d{4}-\d{2}", month):
            raise ConfigError(f"month {month!r} does not exist: MM runs from 01 to 12 "
                              f"(for example 2022-01)")
        raise ConfigError(f"month {month!r} is not of the form YYYY-MM (for example 2022-01)")
    if int(month[:4]) < FIRST_YEAR:
        raise ConfigError(f"month {month!r} is before Wikipedia began ({FIRST_YEAR}-01): no "
                          f"dump holds it")
    return month


def previous_month(month: str) -> str:
    year, mon = map(int, parse_month(month).split("-"))
    year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
    return f"{year:04d}-{mon:02d}"


def month_pair(month_a: str | None, month_b: str, *, b_flag: str = "--to") -> tuple[str, str]:
    """A validated month pair A -> B (A: the month before B when not given); A must be the
    earlier month. `b_flag` names B's option in the message (--to, or --month)."""
    parse_month(month_b)
    month_a = parse_month(month_a) if month_a else previous_month(month_b)
    if month_a >= month_b:
        raise ConfigError(f"--from {month_a} must be an earlier month than {b_flag} {month_b}")
    return month_a, month_b


def check_wiki(wiki: str) -> str:
    if not WIKI_RE.match(wiki or ""):
        raise ConfigError(f"wiki {wiki!r} is not a wiki database name such as 'enwiki'")
    return wiki


def safe_join(base: Path, name: str) -> Path:
    """Join a file name taken from remote metadata to `base`, refusing anything that escapes it.

    Only a plain relative name made of ordinary path parts is accepted: no absolute path, no
    drive, no `..`, no backslash tricks, no NUL.
    """
    if not name or "\x00" in name or "\\" in name:
        raise UnsafePathError(f"refusing file name {name!r} from dump metadata: not a plain name")
    pure = PurePosixPath(name)
    if (not pure.parts or pure.is_absolute() or any(part in ("..", "") for part in pure.parts)
            or ":" in pure.parts[0]):
        raise UnsafePathError(
            f"refusing file name {name!r} from dump metadata: it would land outside {base}"
        )
    target = (base / pure).resolve()
    if not target.is_relative_to(base.resolve()):
        raise UnsafePathError(
            f"refusing file name {name!r} from dump metadata: it resolves outside {base}"
        )
    return base / pure


FACT_TABLES = ("facts", "entities", "properties", "mapping", "links")


def pair_name(month_a: str, month_b: str) -> str:
    """'2016-06' when A is the month before B, else '2015-02_2015-05'."""
    a, b = parse_month(month_a), parse_month(month_b)
    return b if a == previous_month(b) else f"{a}_{b}"


# OSErrors that a run cannot get past and its user can: a full disk or quota, and a place it
# may not write. They end a command with one line naming the place (see os_error_line).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def os_error_line(error: OSError, root: Path) -> str | None:
    """One line for an OSError of NO_SPACE_ERRNOS or NOT_WRITABLE_ERRNOS, naming the file (or,
    when the error does not say, e.g. from Arrow's writers, the data root `root`) and what to
    do; None for any other OSError."""
    where = Path(error.filename) if error.filename else root
    reason = os.strerror(error.errno) if error.errno else str(error)
    if error.errno in NO_SPACE_ERRNOS:
        folder = next((p for p in [where, *where.parents] if p.is_dir()), Path("."))
        free_mb = shutil.disk_usage(folder).free // 10**6
        return (f"{reason} writing {'under ' if where == root else ''}{where} ({free_mb} MB "
                f"free there now): free some space (or pass a --data-root on a larger disk), "
                f"then rerun the same command: it resumes where it stopped")
    if error.errno in NOT_WRITABLE_ERRNOS:
        return (f"{reason} {'under' if where == root else 'on'} {where}: fix its permissions "
                f"or mount (or pass another --data-root), then rerun the same command")
    return None


def default_root() -> Path:
    """The data root: $TWIKI_DATA if set, else ./data."""
    return Path(os.environ.get("TWIKI_DATA", "data"))


@dataclass(frozen=True)
class DataRoot:
    """The artifact root (data/ by default). Every stage's output folder comes from here."""

    root: Path

    @classmethod
    def default(cls) -> "DataRoot":
        return cls(default_root())

    def raw(self, wiki: str, run_date: str) -> Path:
        """Downloaded dump files of one run: data/raw/<wiki>/<YYYYMMDD>/."""
        if not RUN_DATE_RE.match(run_date):
            raise ConfigError(f"dump run date {run_date!r} is not YYYYMMDD")
        return self.root / "raw" / check_wiki(wiki) / run_date

    def raw_entities(self, run_date: str) -> Path:
        """Downloaded Wikidata JSON entity dump of one run: data/raw/wikidatawiki/entities/<YYYYMMDD>/."""
        if not RUN_DATE_RE.match(run_date):
            raise ConfigError(f"dump run date {run_date!r} is not YYYYMMDD")
        return self.root / "raw" / "wikidatawiki" / "entities" / run_date

    def raw_wiki(self, wiki: str) -> Path:
        return self.root / "raw" / check_wiki(wiki)

    def snapshot(self, wiki: str, month: str) -> Path:
        """One month of clean articles: data/snapshots/<wiki>/<YYYY-MM>/."""
        return self.root / "snapshots" / check_wiki(wiki) / parse_month(month)

    def redirects(self, wiki: str, month: str) -> Path:
        """One month's redirects (title -> target), written beside its snapshot by extract:
        data/redirects/<wiki>/<YYYY-MM>/."""
        return self.root / "redirects" / check_wiki(wiki) / parse_month(month)

    def diffset(self, wiki: str, month_a: str, month_b: str, part: str = "") -> Path:
        """What changed from month A to B: data/diffsets/<wiki>/<A>_<B>/; with `part`
        "removed" or "articles", its sibling <A>_<B>_removed/ (removed text) or
        <A>_<B>_articles/ (per-article counts)."""
        if part not in ("", "removed", "articles"):
            raise ValueError(f"no diffset part {part!r}")
        name = f"{parse_month(month_a)}_{parse_month(month_b)}"
        return self.diffsets(wiki) / (f"{name}_{part}" if part else name)

    def diffsets(self, wiki: str) -> Path:
        """Every diffset of a wiki: data/diffsets/<wiki>/."""
        return self.root / "diffsets" / check_wiki(wiki)

    def facts_month(self, month: str) -> Path:
        """A month's Wikidata tables: data/facts/<YYYY-MM>/."""
        return self.root / "facts" / parse_month(month)

    def facts(self, month: str, table: str = "facts") -> Path:
        """One of a month's Wikidata tables: data/facts/<YYYY-MM>/<table>/, where table is
        facts, entities, properties, mapping (page <-> item) or links (the snapshot's links
        resolved to items)."""
        if table not in FACT_TABLES:
            raise ValueError(f"no facts table {table!r}: one of {', '.join(FACT_TABLES)}")
        return self.facts_month(month) / table

    def factdiff(self, month_a: str, month_b: str) -> Path:
        """Facts unchanged / new / updated / removed from A to B: data/factdiff/<A>_<B>/."""
        return self.root / "factdiff" / f"{parse_month(month_a)}_{parse_month(month_b)}"

    def probe_pair(self, month_a: str, month_b: str) -> Path:
        """Everything of the pair's probes: data/probes/<A>_<B>/ (aligned/, unaligned/<reason>/,
        probes/, probes_full/, rejected/<reason>/, report.json, report.md)."""
        return self.root / "probes" / f"{parse_month(month_a)}_{parse_month(month_b)}"

    def aligned(self, month_a: str, month_b: str) -> Path:
        """Facts aligned to the text that states them: data/probes/<A>_<B>/aligned/."""
        return self.probe_pair(month_a, month_b) / "aligned"

    def probes(self, month_a: str, month_b: str) -> Path:
        """TWiki-Probes of the pair: data/probes/<A>_<B>/probes/."""
        return self.probe_pair(month_a, month_b) / "probes"

    def probes_full(self, month_a: str, month_b: str) -> Path:
        """Every probe the filters keep, before the sample: data/probes/<A>_<B>/probes_full/."""
        return self.probe_pair(month_a, month_b) / "probes_full"

    def rejected(self, month_a: str, month_b: str, reason: str = "") -> Path:
        """Probes a filter dropped: data/probes/<A>_<B>/rejected/<reason>/."""
        folder = self.probe_pair(month_a, month_b) / "rejected"
        return folder / reason if reason else folder

    def unaligned(self, month_a: str, month_b: str, reason: str = "") -> Path:
        """Facts alignment left out, with their rows: data/probes/<A>_<B>/unaligned/<reason>/."""
        folder = self.probe_pair(month_a, month_b) / "unaligned"
        return folder / reason if reason else folder

    def export(self, month_a: str, month_b: str) -> Path:
        """The pair's datasets: data/export/<B>/ when A is the month before B, else
        data/export/<A>_<B>/."""
        return self.exports() / pair_name(month_a, month_b)

    def exports(self) -> Path:
        return self.root / "export"

    def report(self, month_a: str, month_b: str) -> Path:
        """The pair's report: data/reports/<B>/ (or <A>_<B>/)."""
        return self.root / "reports" / pair_name(month_a, month_b)

    def runs(self, name: str) -> Path:
        """An LM training run: data/runs/<name>/."""
        return self.root / "runs" / name

    def models(self, name: str) -> Path:
        """A model made here (e.g. imported from GGUF): data/models/<name>/."""
        return self.root / "models" / name

    def training_text(self, wiki: str, name: str) -> Path:
        """Plain documents for the LM stage: data/training/<wiki>/<name>/."""
        return self.root / "training" / check_wiki(wiki) / name

    def work(self, *parts: str) -> Path:
        """Intermediate files kept for resume and repair: data/work/..."""
        return self.root.joinpath("work", *parts)

    def remove_work(self, work: Path) -> None:
        """Delete a published stage's work folder, and the folders above it that this leaves
        empty, data/work/ included: a finished build leaves nothing behind in data/work/."""
        shutil.rmtree(work, ignore_errors=True)
        top = self.root / "work"
        for folder in [work, *work.parents]:
            if folder != top and top not in folder.parents:
                break   # not under data/work/
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    break   # another build's work is there
                raise
            if folder == top:
                break
