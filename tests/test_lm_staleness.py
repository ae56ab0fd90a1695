"""Results that cannot go stale: the LM experiment reuses a run or an evaluation only while
its inputs (model, text and probe artifacts, settings) are the same, and reruns what changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch").set_num_threads(1)  # tiny model: one thread is fastest
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

import pyarrow.parquet as pq  # noqa: E402

from conftest import write_lm_preset  # noqa: E402
from pipelines.lm_experiment import load_preset, run_experiment  # noqa: E402
from twiki.errors import ConfigError  # noqa: E402
from twiki.lm import TrainConfig, train  # noqa: E402


def write_probes(folder: Path, table, created: str) -> None:
    """A probes artifact as the probes stage publishes it: Parquet and its _manifest.json."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-00000.parquet")
    (folder / "_manifest.json").write_text(json.dumps({"stage": "probes", "key": "k",
                                                       "created": created, "rows": len(table)}))


@pytest.fixture
def inputs(kit, tmp_path):
    """Copies of the sample pair the test can rebuild; the probes as a published artifact."""
    folder = tmp_path / "inputs"
    shutil.copytree(kit.pair.folder, folder, ignore=shutil.ignore_patterns("tokens", "probes_*"))
    write_probes(folder / "probes_2016-05_2016-06", pq.read_table(kit.pair.probes), "t1")
    return folder


def experiment(kit, tmp_path, inputs, eval_settings=""):
    preset = write_lm_preset(tmp_path / "t.toml", model=kit.model, data_root=tmp_path / "data",
                             inputs=inputs, methods=("diff", "lora"), max_steps=2,
                             heldout_permille=0, eval_settings=eval_settings)
    return run_experiment(load_preset(preset))


def stamps(tmp_path) -> dict[str, int]:
    """mtime of every result and evaluation the experiment wrote."""
    runs = tmp_path / "data" / "runs" / "t"
    return {str(p.relative_to(runs)): p.stat().st_mtime_ns
            for p in sorted(runs.rglob("*.json")) if p.parent.name == "eval"
            or p.name == "result.json"}


def test_same_inputs_reuse_everything(kit, tmp_path, inputs):
    first = experiment(kit, tmp_path, inputs)
    before = stamps(tmp_path)
    assert len(before) == 5      # initial eval; diff and lora: result + eval
    again = experiment(kit, tmp_path, inputs)
    assert stamps(tmp_path) == before
    assert again["rows"] == first["rows"]
    assert "| object |" in Path(again["markdown"]).read_text()


def test_a_changed_eval_setting_rescored_without_retraining(kit, tmp_path, inputs):
    first = experiment(kit, tmp_path, inputs)
    before = stamps(tmp_path)
    second = experiment(kit, tmp_path, inputs, 'scoring = "sequence"')
    after = stamps(tmp_path)
    evals = [k for k in before if "/eval/" in k or k.startswith("initial")]
    results = [k for k in before if k.endswith("result.json")]
    assert all(after[k] != before[k] for k in evals)          # every evaluation again
    assert all(after[k] == before[k] for k in results)        # no training again
    assert all(r["scoring"] == "sequence" for r in second["rows"])
    assert [r["un_ppl"] for r in second["rows"]] != [r["un_ppl"] for r in first["rows"]]
    md = Path(second["markdown"]).read_text()
    assert "| sequence |" in md and "sequence scoring" in md


def test_rebuilt_probes_are_scored_again(kit, tmp_path, inputs):
    first = experiment(kit, tmp_path, inputs)
    probes = inputs / "probes_2016-05_2016-06"
    table = pq.read_table(probes)
    keep = [i for i, k in enumerate(table.column("kind").to_pylist()) if k != "unchanged"][1:]
    keep += [i for i, k in enumerate(table.column("kind").to_pylist()) if k == "unchanged"]
    write_probes(probes, table.take(sorted(keep)), "t2")    # one Changed probe fewer
    second = experiment(kit, tmp_path, inputs)
    assert [r["c_probes"] for r in second["rows"]] == [r["c_probes"] - 1 for r in first["rows"]]
    assert [r["un_probes"] for r in second["rows"]] == [r["un_probes"] for r in first["rows"]]


def test_changed_training_text_trains_again(kit, tmp_path, inputs):
    experiment(kit, tmp_path, inputs)
    before = stamps(tmp_path)
    diffset = inputs / "diffset_2016-05_2016-06" / "part-00000.parquet"
    table = pq.read_table(diffset)
    pq.write_table(table.slice(1), diffset)                  # the diffset rebuilt: one page fewer
    experiment(kit, tmp_path, inputs)
    after = stamps(tmp_path)
    assert after["initial/eval/2016-05_2016-06.json"] != before["initial/eval/2016-05_2016-06.json"]
    for method in ("diff", "lora"):
        assert after[f"{method}/2016-05_2016-06/result.json"] != before[f"{method}/2016-05_2016-06/result.json"]
        assert (tmp_path / "data" / "runs" / "t" / method / "2016-05_2016-06.stale" / "result.json").exists()


def test_train_refuses_a_finished_run_whose_inputs_changed(kit, tmp_path, inputs):
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), model=str(kit.model),
                      train_data=str(inputs / "diffset_2016-05_2016-06"), method="diff",
                      block_size=32, micro_batch_size=4, max_steps=1,
                      cache_dir=str(tmp_path / "tokens"))
    assert train(cfg).finished
    assert train(cfg).finished     # same inputs: a no-op
    diffset = inputs / "diffset_2016-05_2016-06" / "part-00000.parquet"
    pq.write_table(pq.read_table(diffset).slice(1), diffset)
    with pytest.raises(ConfigError, match="trained from other inputs"):
        train(cfg)
