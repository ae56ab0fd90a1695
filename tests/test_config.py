"""One build config for every data-side command: a TOML file (`--config`), `--set`, the
commands' own flags, and what changing one value rebuilds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE_MIRROR
from twiki.cli import main
from twiki.config import BuildConfig, load_build_config, to_toml
from twiki.errors import ConfigError


def test_file_then_set_then_flags(tmp_path):
    cfg_file = tmp_path / "my.toml"
    cfg_file.write_text('shards = 16\n[filter]\nmax_object_words = 4\nseed = 3\n'
                        '[facts_run]\npartitions = 256\n[align]\nfuzzy_threshold = 95\n')
    cfg = load_build_config(cfg_file, ["filter.seed=7", "align.fuzzy = false"],
                            {"filter.seed": 9, "extract_run.chunk_mb": None})
    assert cfg.shards == 16 and cfg.extract.shards == 16 and cfg.facts.shards == 16
    assert cfg.filter.max_object_words == 4 and cfg.filter.seed == 9   # the flag wins
    assert cfg.facts_run.partitions == 256
    assert cfg.align.fuzzy_threshold == 95.0 and cfg.align.fuzzy is False
    assert cfg.extract_run.chunk_mb == 2.0                              # a flag not given


def test_the_effective_config_reads_back_to_itself(tmp_path):
    cfg = load_build_config(None, ["shards=8", "filter.max_object_words=3",
                                   'align.relation_cues={P19 = ["born"]}',
                                   'align.excluded_datatypes=["url"]'])
    assert cfg.align.relation_cues == (("P19", ("born",)),)
    (tmp_path / "eff.toml").write_text(to_toml(cfg))
    assert load_build_config(tmp_path / "eff.toml") == cfg
    assert load_build_config(None) == BuildConfig()


@pytest.mark.parametrize("sets, says", [
    (["filter.max_words=3"], "unknown setting filter.max_words; filter has: max_object_words"),
    (["filtr.seed=1"], "unknown config section 'filtr'; sections: download, extract"),
    (["extract.shards=8"], "the shard count is set once, for every stage: shards = N"),
    (["filter.max_object_words=many"], "filter.max_object_words must be a int like 5"),
    (["filter.max_object_words=0"], "max_object_words must be at least 1, not 0"),
    (["align.fuzzy=1"], "align.fuzzy must be true or false, not 1"),
    (["shards=0"], "shards must be between 1 and 100000, not 0"),
    (["seed"], "--set wants SECTION.FIELD=VALUE (or shards=N), not 'seed'"),
])
def test_bad_settings_are_one_clear_error(sets, says):
    with pytest.raises(ConfigError) as e:
        load_build_config(None, sets)
    assert says in str(e.value)


def test_cli_errors_for_a_bad_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("shards = [")
    assert main(["probes", "--from", "2016-05", "--to", "2016-06", "--config", str(bad),
                 "--data-root", str(tmp_path)]) == 2
    assert "not a readable TOML file" in capsys.readouterr().err
    assert main(["extract", "--month", "2016-05", "--config", str(tmp_path / "nope.toml"),
                 "--data-root", str(tmp_path)]) == 2
    assert f"--config {tmp_path / 'nope.toml'}: no such file" in capsys.readouterr().err


def test_twiki_config_prints_the_effective_config(capsys):
    assert main(["config", "--set", "shards=8", "--set", "filter.max_object_words=3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("shards = 8\n") and "[filter]\nmax_object_words = 3\n" in out
    assert "[facts_run]" in out and "partitions = 64" in out


# ---------------------------------------------------------------------------------------
# Changing one value rebuilds exactly what it shapes.

ARTIFACTS = {"snapshot A": "snapshots/enwiki/2016-05", "snapshot B": "snapshots/enwiki/2016-06",
             "diffset": "diffsets/enwiki/2016-05_2016-06", "facts A": "facts/2016-05/facts",
             "facts B": "facts/2016-06/facts", "factdiff": "factdiff/2016-05_2016-06",
             "aligned": "probes/2016-05_2016-06/aligned",
             "probes": "probes/2016-05_2016-06/probes", "export": "export/2016-06"}


def snapshot(root: Path, *extra: str) -> None:
    res = subprocess.run([sys.executable, "-m", "twiki", "snapshot", "--month", "2016-06",
                          "--mirror", str(SAMPLE_MIRROR), "--data-root", str(root), *extra],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]


def manifests(root: Path) -> dict[str, bytes]:
    return {k: (root / v / "_manifest.json").read_bytes() for k, v in ARTIFACTS.items()}


def test_one_value_rebuilds_the_stages_it_shapes_and_no_other(tmp_path):
    root = tmp_path / "data"
    (tmp_path / "build.toml").write_text("shards = 8\n")
    snapshot(root, "--config", str(tmp_path / "build.toml"))
    before = manifests(root)
    probes_before = pq.read_table(root / ARTIFACTS["probes"]).num_rows

    snapshot(root, "--config", str(tmp_path / "build.toml"), "--set",
             "filter.max_object_words=1")
    after = manifests(root)
    changed = {k for k in ARTIFACTS if before[k] != after[k]}
    assert changed == {"probes", "export"}
    probes = json.loads(after["probes"])
    assert probes["config"]["max_object_words"] == 1    # the effective value, in the manifest
    def too_long(manifest: dict) -> int:
        return manifest["report"]["rejected"]["filter"]["unchanged"].get("object_too_long", 0)
    assert too_long(probes) > too_long(json.loads(before["probes"]))
    assert pq.read_table(root / ARTIFACTS["probes"]).num_rows < probes_before
