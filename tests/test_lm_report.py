"""The LM stage's outputs a person reads: the experiment over the sample pair, its table
(Markdown, CSV) and plot, and the train/eval command functions run in-process."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("torch").set_num_threads(1)  # tiny model: one thread is fastest
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

from conftest import write_lm_preset  # noqa: E402
from pipelines.lm_experiment import load_preset, run_experiment  # noqa: E402
from twiki.errors import ConfigError  # noqa: E402
from twiki.lm.cli import add_eval_arguments, add_train_arguments, cmd_eval, cmd_train  # noqa: E402


def test_experiment_writes_the_table_and_the_plot(kit, tmp_path):
    preset = write_lm_preset(tmp_path / "t.toml", model=kit.model, data_root=tmp_path / "data",
                             inputs=kit.pair.folder, methods=("full", "diff", "lora", "mixreview"),
                             max_steps=3, heldout_permille=200)
    cfg = load_preset(preset)
    res = run_experiment(cfg)
    rows = res["rows"]
    assert [r["method"] for r in rows] == ["initial", "full", "diff", "lora", "mixreview"]
    assert all(r["pair"] == "2016-05_2016-06" for r in rows)
    assert rows[0]["tokens_seen"] == 0 and all(r["tokens_seen"] == 3 * 4 * 32 for r in rows[1:])
    assert rows[-1]["replay_tokens_seen"] > 0
    assert all(r["un_ppl"] > 1 and r["c_ppl"] > 1 and r["heldout_ppl"] > 1 for r in rows)
    md = Path(res["markdown"]).read_text()
    assert "| pair | method | Un | C | Avg |" in md and "| 2016-05_2016-06 | lora |" in md
    with open(res["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == [r["method"] for r in rows]
    assert float(table[2]["avg_ppl"]) == pytest.approx(rows[2]["avg_ppl"])
    png = Path(res["plot"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # Rerunning the preset trains nothing again and gives the same table.
    result_file = tmp_path / "data" / "runs" / "t" / "diff" / "2016-05_2016-06" / "result.json"
    mtime = result_file.stat().st_mtime_ns
    again = run_experiment(cfg)
    assert result_file.stat().st_mtime_ns == mtime
    assert again["rows"] == rows


def test_preset_errors_are_clear(tmp_path):
    bad = tmp_path / "b.toml"
    bad.write_text('name = "x"\nmodel = "m"\nmonths = ["2016-05"]\n')
    with pytest.raises(ConfigError, match="at least two months"):
        load_preset(bad)
    bad.write_text('name = "x"\nmodel = "m"\nmonths = ["2016-05", "2016-06"]\nlr = 1\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_preset(bad)
    with pytest.raises(ConfigError, match="no preset"):
        load_preset(tmp_path / "missing.toml")
    for name in ("tiny-sample", "gpt2-large-paper", "gpt2-small"):   # the shipped presets parse
        assert load_preset(name).name == name


def parser(add):
    p = argparse.ArgumentParser()
    p.add_argument("--month", required=True)
    p.add_argument("--data-root")
    p.add_argument("--wiki", default="enwiki")
    add(p)
    return p


def test_train_and_eval_commands_in_process(kit, tmp_path, capsys):
    data = tmp_path / "data"
    args = parser(add_train_arguments).parse_args([
        "--month", "2016-06", "--data-root", str(data), "--model", str(kit.model),
        "--method", "diff", "--train-data", str(kit.pair.diffset), "--max-steps", "2",
        "--block-size", "32", "--batch-size", "2", "--set", "heldout_permille=200",
        "--set", "learning_rate=2e-3"])
    res = cmd_train(args)
    assert res.finished and res.run_dir == str(data / "runs" / "diff_2016-05_2016-06")
    cfg = json.loads((data / "runs" / "diff_2016-05_2016-06" / "train_config.json").read_text())
    assert cfg["learning_rate"] == 2e-3 and cfg["heldout_permille"] == 200
    assert "diff finished, 2/2 steps, 128 tokens seen" in capsys.readouterr().out
    args = parser(add_eval_arguments).parse_args([
        "--month", "2016-06", "--data-root", str(data), "--model", res.run_dir,
        "--probes", str(kit.pair.probes), "--padding-side", "left"])
    ev = cmd_eval(args)
    assert ev.label == "2016-05_2016-06" and ev.unchanged.count > 0 and ev.heldout.tokens > 0
    assert (data / "runs" / "diff_2016-05_2016-06" / "eval" / "2016-05_2016-06.json").exists()
    assert "Un " in capsys.readouterr().out
    with pytest.raises(ConfigError, match="earlier month"):
        cmd_train(parser(add_train_arguments).parse_args(
            ["--month", "2016-06", "--from", "2016-07", "--model", "m"]))
    for add in (add_train_arguments, add_eval_arguments):
        p = parser(add)
        assert all(a.help for a in p._actions if a.dest not in ("help", "month", "data_root", "wiki"))


def test_the_command_options_load_without_torch():
    """`twiki --help` must stay fast: the LM options come without importing torch."""
    import subprocess
    import sys

    code = "import sys, twiki.lm.cli, twiki.lm; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
