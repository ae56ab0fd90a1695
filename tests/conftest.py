"""Shared fixtures: the shipped sample mirror and builders of month-runs made from its real pages."""

from __future__ import annotations

import bz2
import shutil
from pathlib import Path

import pytest

from pipelines.build_sample_mirror import build_run, split_dump, write_listing

REPO = Path(__file__).resolve().parents[1]
SAMPLE_MIRROR = REPO / "data" / "sample" / "mirror"
SAMPLE_RUN = SAMPLE_MIRROR / "enwiki" / "20160501"
SHARED = REPO.parent / "shared" / "data" / "wikimedia"


def sample_pages() -> tuple[bytes, list[bytes]]:
    """(header, pages) of the sample mirror's real pages, byte-exact, in dump order."""
    pages: list[bytes] = []
    header = b""
    for part in sorted(SAMPLE_RUN.glob("*-multistream[0-9]*.xml-*.bz2")):
        h, p, _ = split_dump(bz2.decompress(part.read_bytes()))
        header = header or h
        pages += p
    return header, pages


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
