"""Shared fixtures: the shipped sample mirror and builders of month-runs made from its real pages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# REAL_DATA, SAMPLE_MIRROR and sample_pages are also the tests' (`from conftest import ...`).
from mirror_kit import (REAL_DATA, SAMPLE_MIRROR, build_run, sample_pages,  # noqa: F401
                        write_listing)


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


LM_PRESET = """
name = "t"
model = "{model}"
months = ["2016-05", "2016-06"]
methods = {methods}
data_root = "{root}"
[paths]
diffset = "{inputs}/diffset_{{a}}_{{b}}"
snapshot = "{inputs}/snapshot_{{b}}"
replay = "{inputs}/snapshot_{{a}}"
probes = "{inputs}/probes_{{a}}_{{b}}"
[train]
block_size = 32
micro_batch_size = 4
max_steps = {max_steps}
learning_rate = 3e-3
heldout_permille = {heldout_permille}
[train.lora]
lora_r = 4
[eval]
batch_size = 16
{eval}
"""


def write_lm_preset(path: Path, *, model, data_root, inputs, methods: tuple[str, ...],
                    max_steps: int, heldout_permille: int, eval_settings: str = "") -> Path:
    """A small LM experiment preset at `path`: the kit's model on the sample pair in `inputs`
    (the kit's, or a copy), a few steps of each method; `eval_settings` are more [eval] lines."""
    import json
    path.write_text(LM_PRESET.format(model=model, root=data_root, inputs=inputs,
                                     methods=json.dumps(list(methods)), max_steps=max_steps,
                                     heldout_permille=heldout_permille, eval=eval_settings))
    return path


@pytest.fixture(scope="session")
def kit(tmp_path_factory):
    """A tiny GPT-2 and tokenizer built locally, with the sample pair's LM data (no hub)."""
    from pipelines.lm_samples import tiny_lm   # torch: only the LM tests ask for it
    return tiny_lm(tmp_path_factory.getbasetemp() / "lm-kit", mirror=SAMPLE_MIRROR)
