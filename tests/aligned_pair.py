"""The month pair of tests/entity_pair.py built and aligned in a fresh data root: where the
align and probes tests start."""

from __future__ import annotations

from pathlib import Path

from entity_pair import A, B, build_pair
from twiki.engine.paths import DataRoot
from twiki.engine.stage import StageResult
from twiki.stages.align import AlignOptions, align_month_pair


def aligned_pair(folder: Path, spill_rows: int) -> tuple[DataRoot, StageResult]:
    """A data root under `folder` holding the month pair, aligned with spills of `spill_rows`
    rows (small ones take every path of the align's shuffle); the root and the align's
    result."""
    root = DataRoot(folder / "data")
    build_pair(root)
    return root, align_month_pair(A, B, data_root=root, options=AlignOptions(spill_rows=spill_rows))
