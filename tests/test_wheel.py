"""The package as a user installs it: a wheel built from this checkout, offline, ships the
workflows' presets, systemd units and cluster guide, leaves the benchmarks and the tests out,
and runs the LM experiment's tiny-sample preset on its own, the checkout not importable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mirror_kit import REPO

# Left out of the copy the wheel is built from: what never goes into it, and build outputs.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "data", "build", "*.egg-info",
                                     "__pycache__", ".pytest_cache")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built with the venv's own pip and setuptools (no index, no isolation) from a
    copy of the checkout: a build in place would write build/ and *.egg-info into it."""
    pytest.importorskip("setuptools", minversion="77",
                        reason="the wheel is built without build isolation: it needs "
                               "setuptools>=77 in this environment (the dev extra has it)")
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, tmp / "src", ignore=NOT_SOURCES)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(tmp / "src"), "--no-deps",
                          "--no-build-isolation", "--no-index", "--quiet", "-w", str(tmp / "dist")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    [built] = (tmp / "dist").glob("twiki-*.whl")
    return built


def test_the_wheel_ships_every_file_of_the_packages_and_no_benchmarks(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    files = {str(p.relative_to(REPO)) for package in ("twiki", "pipelines")
             for p in (REPO / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert {"pipelines/CLUSTER.md", "pipelines/presets/tiny-sample.toml",
            "pipelines/systemd/twiki-monthly.service", "pipelines/systemd/twiki-monthly.timer",
            "pipelines/lm_samples.py"} <= files
    assert not files - names, files - names      # every module and data file: presets too
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"twiki", "pipelines"}


def test_the_tiny_sample_preset_runs_from_the_unpacked_wheel(wheel, tmp_path, request):
    for extra in ("torch", "transformers", "matplotlib"):   # the lm extra
        pytest.importorskip(extra)
    kit = request.getfixturevalue("kit")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    home = tmp_path / "home"       # the working directory: no twiki or pipelines in it
    inputs = home / "data" / "lm-sample"
    shutil.copytree(kit.pair.folder, inputs)            # the preset's pair, small
    shutil.copytree(kit.model, inputs / "base")         # and its start model: the tiny GPT-2
    env = {k: v for k, v in os.environ.items() if k != "TWIKI_DATA"}
    env["PYTHONPATH"] = str(site)  # before the editable install's finder, which maps to REPO

    def run(*args: str) -> str:
        res = subprocess.run([sys.executable, *args], cwd=home, env=env, capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        return res.stdout

    # The modules this environment imports, the experiment's among them, are the wheel's.
    where = run("-c", "import pipelines.lm_experiment as m, pipelines.lm_samples as s, twiki\n"
                      "print(m.__file__, s.__file__, twiki.__file__)").split()
    assert [Path(f).relative_to(site) for f in where] == [
        Path("pipelines/lm_experiment.py"), Path("pipelines/lm_samples.py"),
        Path("twiki/__init__.py")]
    out = run("-m", "pipelines.lm_experiment", "tiny-sample", "--data-root", "data",
              "--methods", "diff", "--threads", "1")
    assert "| 2016-05_2016-06 | initial |" in out and "| 2016-05_2016-06 | diff |" in out
    report = home / "data" / "runs" / "tiny-sample" / "report"
    assert (report / "table.md").read_text() in out
    assert (report / "stability_plasticity.png").stat().st_size > 0
