"""The export stage: from an empty data folder to a dataset that pandas, `datasets` (offline)
and lm-evaluation-harness load, through the real CLI on the sample mirror; and, on the made-up
month pair of tests/entity_pair.py (which has Changed probes), the card, the lm-eval tasks, no-op,
resume and byte-identical rebuilds."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from entity_pair import A, B, build_pair
from twiki.engine.artifacts import read_manifest
from twiki.errors import ConfigError, TwikiError
from twiki.stages.align import align_month_pair
from twiki.stages.export import (CONFIGS, ExportConfig, export_month, load_diffset, load_probes,
                                 resolve_export)
from twiki.engine.paths import DataRoot
from twiki.stages.probes import FilterConfig, filter_probes

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO / "data" / "sample" / "mirror"


def twiki(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "twiki", *args], capture_output=True, text=True,
                         cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def python(code: str, env: dict | None = None) -> str:
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, cwd=REPO, env={**os.environ, **(env or {})})
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def offline_env(tmp: Path) -> dict:
    """No network for `datasets` / the Hub, and a cache of its own."""
    return {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf"),
            "HF_DATASETS_CACHE": str(tmp / "hf" / "datasets")}


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file of an export but its manifest (which holds a creation time)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "_manifest.json"}


# ---------------------------------------------------------------------------------------
# End to end on the sample mirror, through the real CLI.

@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """An empty data folder, then `twiki snapshot` (the monthly build: probes and export
    included), `twiki probes` and `twiki export` (no-ops by then)."""
    data = tmp_path_factory.mktemp("e2e") / "data"
    twiki("snapshot", "--month", "2016-06", "--mirror", str(MIRROR), "--data-root", str(data),
          "--shards", "8")
    twiki("probes", "--from", "2016-05", "--to", "2016-06", "--data-root", str(data))
    twiki("export", "--month", "2016-06", "--data-root", str(data))
    return data


def test_end_to_end_export_loads_with_pandas_and_datasets(sample, tmp_path):
    pytest.importorskip("datasets")
    export = sample / "export" / "2016-06"
    manifest = read_manifest(export)
    assert manifest["stage"] == "export"
    rows = manifest["report"]["rows"]
    assert rows["diffset"] == 103 and rows["train_diffset"] == 6 and rows["train_snapshot"] == 117
    # the sample's Changed probe: Douglas Adams' notable work, updated in month B
    assert rows["probes_unchanged"] >= 1 and rows["probes_changed"] >= 1
    out = python(f"""
        import json
        import datasets, pandas as pd
        path = {str(export)!r}
        got = {{}}
        for config in ("diffset", "train_diffset", "train_snapshot", "probes_unchanged",
                       "probes_changed"):
            d = datasets.load_dataset(path, config)
            split = list(d)[0]
            got[config] = [split, d[split].num_rows, d[split].column_names]
            pf = pd.read_parquet(f"{{path}}/{{config}}")
            assert len(pf) == d[split].num_rows
        pear = [r for r in datasets.load_dataset(path, "train_diffset")["train"]
                if r["title"] == "Pear"]
        got["pear"] = pear[0]["text"][:60] if pear else None
        got["changed"] = datasets.load_dataset(path, "probes_changed", split="test")[0]
        print(json.dumps(got))
        """, env=offline_env(tmp_path))
    got = json.loads(out.strip().splitlines()[-1])
    assert got["diffset"][:2] == ["train", 103]
    assert got["diffset"][2][:3] == ["month_a", "month_b", "page_id"]
    assert got["train_diffset"] == ["train", 6, ["page_id", "title", "text"]]
    assert got["train_snapshot"][:2] == ["train", 117]
    assert got["pear"], "the real Pear edit of the sample is in the diffset"
    for probe_set in ("probes_unchanged", "probes_changed"):
        split, n, cols = got[probe_set]
        assert split == "test" and n == rows[probe_set]
        assert {"subject", "relation", "object", "evidence", "page_id", "new_revid",
                "statement_id", "match_kind"} <= set(cols)
    changed = got["changed"]
    assert changed["kind"] in ("new", "updated") and changed["evidence"]
    assert changed["month_a"] == "2016-05" and changed["month_b"] == "2016-06"
    # and the small Python API
    import twiki as package
    probes = package.load_probes(export)
    assert len(probes) == rows["probes_unchanged"] + rows["probes_changed"]
    assert set(probes["kind"]) <= {"unchanged", "new", "updated"}
    diffset = package.load_diffset("2016-06", data_root=DataRoot(sample))
    assert len(diffset) == 103 and set(diffset["kind"]) == {"new", "changed"}
    assert len(load_diffset(export, as_documents=True)) == 6


def test_rerun_is_a_no_op(sample):
    export = sample / "export" / "2016-06"
    before = read_manifest(export)
    res = export_month("2016-06", data_root=DataRoot(sample))
    assert res.state == "current" and res.manifest["created"] == before["created"]
    assert "was up to date" in res.summary()


# ---------------------------------------------------------------------------------------
# The month pair of tests/entity_pair.py: Changed probes, lm-eval tasks, determinism, resume.

@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> DataRoot:
    root = DataRoot(tmp_path_factory.mktemp("export-pair") / "data")
    build_pair(root)
    align_month_pair(A, B, data_root=root)
    filter_probes(A, B, data_root=root)
    return root


@pytest.fixture(scope="module")
def exported(pair):
    return export_month(B, month_a=A, data_root=pair)


def test_pair_export_layout_and_card(exported):
    folder = exported.path
    assert folder.name == f"{A}_{B}"        # A is not the month before B
    for config in CONFIGS:
        assert sorted(p.name for p in (folder / config).iterdir()) == ["part-00000.parquet"]
    rows = exported.report["rows"]
    assert rows["probes_unchanged"] > 0 and rows["probes_changed"] > 0
    changed = pq.read_table(folder / "probes_changed").to_pylist()
    assert {r["kind"] for r in changed} <= {"new", "updated"}
    dirk = [r for r in changed if r["object"] == "Dirk Gently's Holistic Detective Agency"]
    # a second notable work (The Hitchhiker's Guide is still one): an added value, no old one
    assert dirk and dirk[0]["change_type"] == "added_value" and not dirk[0]["old_objects"]
    assert dirk[0]["evidence"].startswith("Among his other works")
    # the probe columns: its id, the prompt scored, align's columns
    assert dirk[0]["prompt"] == "Douglas Adams notable work" and len(dirk[0]["probe_id"]) == 16
    assert {"object_aliases", "cue", "valid_from", "valid_to"} <= set(dirk[0])
    card = (folder / "README.md").read_text()
    yaml = pytest.importorskip("yaml")
    header = yaml.safe_load(card.split("---\n")[1])
    assert [c["config_name"] for c in header["configs"]] == [*CONFIGS, "probes"]
    assert header["configs"][2] == {"config_name": "probes_changed", "data_files": [
        {"split": "test", "path": "probes_changed/part-*.parquet"}]}
    assert header["license"] == ["cc-by-sa-3.0", "gfdl", "cc0-1.0"]
    # counts, schema and provenance
    assert "| heuristic filtering |" in card and "`evidence`" in card
    assert "| sample (of 7,000 / 2,000) |" in card
    assert "TWiki-Probes are a seeded sample" in card and "`probe_id`" in card
    assert "`prompt` | `string` | the exact text a language model is given" in card
    assert exported.manifest["inputs"]["probes"] in [a["key"] for a in
                                                    exported.manifest["provenance"]["artifacts"]
                                                    .values()]
    files = {f["file"] for f in exported.manifest["files"]}
    assert {"README.md", "probes_changed/part-00000.parquet",
            "lm_eval/probes_changed.jsonl"} <= files


def test_datasets_loads_changed_probes_offline(exported, tmp_path):
    pytest.importorskip("datasets")
    out = python(f"""
        import datasets
        d = datasets.load_dataset({str(exported.path)!r}, "probes_changed")
        print(d["test"].num_rows, sorted(d["test"]["object"]))
        """, env=offline_env(tmp_path))
    n, objects = out.strip().splitlines()[-1].split(" ", 1)
    assert int(n) == exported.report["rows"]["probes_changed"]
    assert "Dirk Gently's Holistic Detective Agency" in objects


def _lm_eval_module(folder: Path):
    spec = importlib.util.spec_from_file_location("twiki_data_under_test",
                                                  folder / "twiki_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lm_eval_tasks_score_the_object_given_subject_relation(exported):
    """The task files, read as the harness reads them: with lm-eval installed, through its
    TaskManager (requests built offline); without it, against the documented TaskConfig keys,
    with the templates rendered by Jinja as the harness does."""
    folder = exported.path / "lm_eval"
    prefix = f"twiki_enwiki_{A.replace('-', '_')}_{B.replace('-', '_')}"
    assert sorted(p.name for p in folder.iterdir()) == sorted([
        f"{prefix}.yaml", f"{prefix}_unchanged.yaml", f"{prefix}_changed.yaml",
        "probes_unchanged.jsonl", "probes_changed.jsonl", "twiki_data.py"])
    changed = [json.loads(x) for x in (folder / "probes_changed.jsonl").read_text().splitlines()]
    assert len(changed) == exported.report["rows"]["probes_changed"]
    expected = sorted((f"{p['subject']} {p['relation']}", f" {p['object']}") for p in changed)
    if importlib.util.find_spec("lm_eval") is not None:
        from lm_eval.tasks import TaskManager, get_task_dict
        tm = TaskManager(include_path=str(folder), include_defaults=False)
        tasks = get_task_dict([prefix], tm)
        (group, children), = tasks.items()
        task = children[f"{prefix}_changed"]
        task.build_all_requests(limit=None, rank=0, world_size=1)
        assert sorted(i.arguments for i in task.instances) == expected
        return
    pytest.importorskip("datasets")
    jinja2 = pytest.importorskip("jinja2")
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        pass
    Loader.add_constructor("!function", lambda loader, node: ("function", node.value))
    cfg = yaml.load((folder / f"{prefix}_changed.yaml").read_text(), Loader=Loader)
    # TaskConfig keys of lm-evaluation-harness (docs/task_guide.md, lm_eval/config/task.py)
    documented = {"task", "custom_dataset", "dataset_kwargs", "test_split", "output_type",
                  "doc_to_text", "doc_to_target", "target_delimiter", "process_results",
                  "metric_list", "metadata"}
    assert set(cfg) <= documented and cfg["output_type"] == "loglikelihood"
    mod = _lm_eval_module(folder)
    docs = mod.load(**cfg["dataset_kwargs"], **cfg["metadata"])[cfg["test_split"]]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    got = sorted((env.from_string(cfg["doc_to_text"]).render(**d) + cfg["target_delimiter"],
                  env.from_string(cfg["doc_to_target"]).render(**d)) for d in docs)
    assert got == expected
    metrics = mod.process_results(docs[0], [(-6.0, False)])
    assert set(metrics) == {m["metric"] for m in cfg["metric_list"]} - {"token_perplexity"}


def test_an_empty_config_is_on_disk_but_not_declared(pair, tmp_path):
    """`datasets` cannot load a split without rows: the card leaves an empty config out and
    says so, pandas still reads its typed Parquet file, and lm_eval/ has no task for it."""
    root = DataRoot(tmp_path / "data")
    shutil.copytree(pair.root, root.root, ignore=shutil.ignore_patterns("export"))
    # one-word objects only, leaked ones dropped: every Changed object of the pair is longer
    # but Kahn's citizenship 'Germany', which month A's text already stated ('a German ...')
    filter_probes(A, B, data_root=root,
                  config=FilterConfig(max_object_words=1, drop_leaked=True))
    res = export_month(B, month_a=A, data_root=root)
    rows = res.report["rows"]
    assert rows["probes_changed"] == 0 and rows["probes_unchanged"] > 0
    card = (res.path / "README.md").read_text()
    header = card.split("---")[1]
    assert "config_name: probes_changed\n" not in header
    assert "config_name: probes_unchanged\n" in header
    assert "Empty this month" in card and "`probes_changed`" in card
    frame = load_probes(res.path, "changed")
    assert len(frame) == 0 and {"subject", "evidence"} <= set(frame.columns)
    assert len(load_probes(res.path)) == rows["probes_unchanged"]
    assert not (res.path / "lm_eval" / "probes_changed.jsonl").exists()
    assert res.report["lm_eval_tasks"] == [f"twiki_enwiki_{A}_{B}_unchanged".replace("-", "_")]


def test_rebuild_is_byte_identical_and_a_killed_run_resumes(pair, exported, tmp_path):
    folder = exported.path
    digest = tree_digest(folder)
    # a killed run: a staging folder with one finished file and a half-written one
    staging = folder.with_name(folder.name + ".partial")
    staging.mkdir()
    (staging / "_key").write_text(exported.manifest["key"] + "\n")
    (staging / "diffset").mkdir()
    shutil.copy(folder / "diffset" / "part-00000.parquet", staging / "diffset")
    (staging / "train_snapshot").mkdir()
    (staging / "train_snapshot" / ".part-00000.parquet.tmp-99999").write_bytes(b"half")
    shutil.rmtree(folder)
    again = export_month(B, month_a=A, data_root=pair)
    assert again.state == "built" and not staging.exists()
    assert tree_digest(folder) == digest


def test_another_config_rebuilds_and_the_card_says_what_is_missing(pair, exported):
    res = export_month(B, month_a=A, data_root=pair, config=ExportConfig(snapshot_text=False))
    try:
        assert res.state == "built"
        assert not (res.path / "train_snapshot").exists()
        card = (res.path / "README.md").read_text()
        assert "config_name: train_snapshot" not in card
        assert "Not exported: `train_snapshot`" in card
    finally:
        export_month(B, month_a=A, data_root=pair)


def test_user_errors_say_what_to_do(pair, tmp_path):
    empty = DataRoot(tmp_path / "data")
    with pytest.raises(TwikiError, match="twiki diff --from 2016-05 --to 2016-06"):
        export_month("2016-06", data_root=empty)
    with pytest.raises(ConfigError, match="not of the form YYYY-MM"):
        export_month("2016-6", data_root=empty)
    with pytest.raises(ConfigError, match="earlier month"):
        export_month("2016-06", month_a="2016-07", data_root=empty)
    with pytest.raises(TwikiError, match=r"twiki export --month 2016-06"):
        load_probes("2016-06", data_root=empty)
    with pytest.raises(ConfigError, match="unchanged, changed or all"):
        load_probes(pair.export(A, B), "new")
    # probes not built yet: how to build them, or how to export without them
    shutil.copytree(pair.root, empty.root, ignore=shutil.ignore_patterns("probes", "export"))
    with pytest.raises(TwikiError, match="--no-probes"):
        export_month(B, month_a=A, data_root=empty)
    res = export_month(B, month_a=A, data_root=empty, config=ExportConfig(probes=False))
    assert "probes_changed" not in res.report["rows"]
    assert "the probes were not built" in (res.path / "README.md").read_text()
    assert resolve_export(res.path) == res.path
