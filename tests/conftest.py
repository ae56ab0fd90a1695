"""Shared fixtures: the shipped sample mirror and builders of month-runs made from its real pages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.build_sample_mirror import REAL_DATA, build_run, run_pages, write_listing  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SAMPLE_MIRROR = REPO / "data" / "sample" / "mirror"
SAMPLE_RUN = SAMPLE_MIRROR / "enwiki" / "20160501"


def sample_pages() -> tuple[bytes, list[bytes]]:
    """(header, pages) of the sample mirror's month A, byte-exact, in dump order."""
    return run_pages(SAMPLE_RUN)


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A writable copy of the sample mirror."""
    dst = tmp_path / "mirror"
    shutil.copytree(SAMPLE_MIRROR, dst)
    return dst


@pytest.fixture
def make_run():
    """make_run(mirror, run_date, pages=None, header=None): add a dump run to a mirror."""

    def make(mirror: Path, run_date: str, pages=None, header=None, **kw) -> Path:
        h, p = sample_pages()
        run = build_run(mirror, header or h, p if pages is None else pages,
                        run_date=run_date, **kw)
        write_listing(mirror)
        return run

    return make


# ---------------------------------------------------------------------------------------
# Progress as a cron log records it: one line at every update (LOG_EVERY_S = 0).

def nap(seconds: float) -> float:
    """A task that takes `seconds` and returns the wall-clock time it ended."""
    import time
    time.sleep(seconds)
    return time.time()


def progress_lines(caplog, desc: str) -> list[tuple[float, float, str]]:
    """(time logged, amount done, line) of every progress line of `desc` in the log."""
    import re
    out = []
    for r in caplog.records:
        m = re.match(rf"{re.escape(desc)}: (\S+) ", r.getMessage())
        if m:
            out.append((r.created, float(m.group(1)), r.getMessage()))
    return out


@pytest.fixture
def every_progress_line(monkeypatch, caplog):
    """The log gets a progress line at every update; yields caplog to read them back."""
    import logging
    from twiki.engine import progress
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="twiki")
    return caplog


@pytest.fixture(scope="session")
def kit(tmp_path_factory):
    """A tiny GPT-2 and tokenizer built locally, with the sample pair's LM data (no hub)."""
    from benchmarks.bench_lm import tiny_lm   # torch: only the LM tests ask for it
    return tiny_lm(tmp_path_factory.getbasetemp() / "lm-kit")
