"""The README as a user follows it: every command it names exists, and its Python lines run
on a built month pair. (The crontab line is run in test_cron.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE_MIRROR
from twiki.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_every_twiki_command_in_the_readme_exists():
    named = set(re.findall(r"`(?:\.venv/bin/)?twiki ([a-z][a-z-]+)", README))
    named |= set(re.findall(r"^\| `twiki ([a-z][a-z-]+)", README, flags=re.M))
    assert {"download", "extract", "diff", "export", "report", "snapshot", "cron"} <= named
    assert named <= set(COMMANDS), named - set(COMMANDS)
    # and every command is in the README's table
    table = set(re.findall(r"^\| `twiki ([a-z][a-z-]+)", README, flags=re.M))
    assert set(COMMANDS) <= table, set(COMMANDS) - table


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"^([a-z]+):", (REPO / "Makefile").read_text(), flags=re.M))
    named = set(re.findall(r"\bmake ([a-z]+)", README))
    assert {"demo", "test", "snapshot", "bench"} <= named <= targets


def test_the_ci_script_runs_exactly_the_readmes_test_command():
    ci = [ln for ln in (REPO / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert ci == ["make test"] and "make test   # runs the test suite" in README


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A folder holding data/ as `make demo` leaves it (the sample pair, through the CLI)."""
    home = tmp_path_factory.mktemp("user")
    res = subprocess.run([sys.executable, "-m", "twiki", "snapshot", "--month", "2016-06",
                          "--mirror", str(SAMPLE_MIRROR), "--shards", "8"],
                         cwd=home, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return home


def test_the_readmes_python_lines_run_on_the_demo_pair(built):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks
    for code in blocks:
        res = subprocess.run([sys.executable, "-c", code + "\nprint(len(changed), len(df))"],
                             cwd=built, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        n_changed, n_articles = map(int, res.stdout.split()[-2:])
        assert n_changed >= 1 and n_articles > 100
