"""The export's dataset card as the Hub reads it (YAML header, licences, size, default config,
example rows, BibTeX, the sample's made-up note) and the lm-eval tasks' comparable metric,
on the sample mirror built the way `make demo` builds it (the monthly build, ~13 s)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.snapshot import build_month
from twiki.engine.artifacts import read_manifest
from twiki.stages.export import (CONFIGS, EXAMPLE_CHARS, ExportConfig, export_month, from_sample,
                          size_category)
from twiki.engine.paths import DataRoot

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO / "data" / "sample" / "mirror"
PROBE_CONFIGS = ("probes_unchanged", "probes_changed")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A copy of the sample mirror, then the monthly build of 2016-06 (snapshots, diff,
    facts, probes, export), as `twiki snapshot --month 2016-06` runs it."""
    tmp = tmp_path_factory.mktemp("card")
    shutil.copytree(MIRROR, tmp / "mirror")
    build_month("2016-06", mirrors=[str(tmp / "mirror")], data_root=DataRoot(tmp / "data"))
    return tmp / "data"


@pytest.fixture(scope="module")
def export(data) -> Path:
    return data / "export" / "2016-06"


@pytest.fixture(scope="module")
def card(export) -> str:
    return (export / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def no_probes(data, tmp_path_factory) -> Path:
    """The same month pair exported without probes (another data folder)."""
    root = tmp_path_factory.mktemp("card-no-probes") / "data"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns("export"))
    return export_month("2016-06", data_root=DataRoot(root),
                        config=ExportConfig(probes=False, snapshot_text=False)).path


def header(card: str) -> dict:
    """The YAML header as the Hub reads it: huggingface_hub's parser when installed."""
    if importlib.util.find_spec("huggingface_hub") is not None:
        from huggingface_hub import DatasetCard
        return DatasetCard(card).data.to_dict()
    yaml = pytest.importorskip("yaml")
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def python(code: str, tmp: Path) -> str:
    """Python in a subprocess with no network for `datasets` / the Hub and its own cache."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp / "hf"), "HF_DATASETS_CACHE": str(tmp / "hf" / "datasets")}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()[-1]


def rows_of(folder: Path) -> list[dict]:
    return pq.read_table(sorted(folder.glob("part-*.parquet"))).to_pylist()


# ---------------------------------------------------------------------------------------
# The YAML header.

def test_header_has_licences_size_task_and_one_default(export, card):
    h = header(card)
    # Wikipedia text of 2016: CC BY-SA 3.0 and the GFDL; the Wikidata facts: CC0
    assert h["license"] == ["cc-by-sa-3.0", "gfdl", "cc0-1.0"]
    rows = read_manifest(export)["report"]["rows"]
    assert sum(rows.values()) < 1000 and h["size_categories"] == ["n<1K"]
    assert h["task_categories"] == ["text-generation"]
    assert h["task_ids"] == ["language-modeling"]
    assert h["source_datasets"] == ["original"] and h["language"] == ["en"]
    names = [c["config_name"] for c in h["configs"]]
    assert names == [*CONFIGS, "probes"]
    defaults = [c for c in h["configs"] if c.get("default")]
    assert [c["config_name"] for c in defaults] == ["probes"]
    assert defaults[0]["data_files"] == [{"split": "test", "path": [
        "probes_unchanged/part-*.parquet", "probes_changed/part-*.parquet"]}]


def test_size_categories_are_the_hubs_buckets():
    assert [size_category(n) for n in (0, 999, 1000, 9999, 10_000, 2_500_000, 10**12)] == [
        "n<1K", "n<1K", "1K<n<10K", "1K<n<10K", "10K<n<100K", "1M<n<10M", "n>1T"]


def test_load_dataset_without_a_config_name_offline(export, no_probes, tmp_path):
    """The default config: all probes (Unchanged then Changed); without probes, the diffset."""
    pytest.importorskip("datasets")
    out = python(f"""
        import json, datasets
        d = datasets.load_dataset({str(export)!r})
        n = datasets.load_dataset({str(no_probes)!r})
        print(json.dumps([list(d), list(d["test"]["kind"]), list(d["test"]["statement_id"]),
                          list(n), n["train"].num_rows]))
        """, tmp_path)
    splits, kinds, ids, no_probe_splits, diffset_rows = json.loads(out)
    unchanged, changed = (rows_of(export / c) for c in PROBE_CONFIGS)
    # as many as the probes stage kept (their number follows alignment, tested there)
    assert splits == ["test"] and len(unchanged) > 0 and len(changed) > 0
    assert kinds == [r["kind"] for r in unchanged + changed]
    assert set(kinds[:len(unchanged)]) == {"unchanged"}
    assert set(kinds[len(unchanged):]) <= {"new", "updated"}
    assert ids == [r["statement_id"] for r in unchanged + changed]
    assert no_probe_splits == ["train"] and diffset_rows == 103
    h = header((no_probes / "README.md").read_text())
    assert [c["config_name"] for c in h["configs"] if c.get("default")] == ["diffset"]
    assert "probes" not in [c["config_name"] for c in h["configs"]]


# ---------------------------------------------------------------------------------------
# The card's text.

def test_example_rows_are_rows_of_the_data(export, card):
    section = card.split("## Example rows")[1].split("\n## ")[0]
    examples = dict(re.findall(r"`(\w+)`:\n\n```json\n(.*?)\n```", section, re.S))
    assert sorted(examples) == sorted(CONFIGS)
    cut = 0
    for config, text in examples.items():
        shown, first = json.loads(text), rows_of(export / config)[0]
        assert shown.keys() == first.keys()
        for k, v in shown.items():
            if isinstance(v, str) and v.endswith("…") and v != first[k]:
                assert first[k].startswith(v[:-1]) and len(v) == EXAMPLE_CHARS + 1
                cut += 1
            else:
                assert v == first[k], (config, k)
    assert cut >= 1, "the snapshot's first article is longer than an example shows"


def test_bibtex_cites_temporalwiki_and_the_wikimedia_dumps(card):
    bib = card.split("```bibtex\n")[1].split("```")[0]
    entries = re.findall(r"@(\w+)\{([\w-]+),(.*?)\n\}", bib, re.S)
    assert [(kind, key) for kind, key, _ in entries] == [
        ("inproceedings", "jang-etal-2022-temporalwiki"), ("misc", "wikimedia-downloads")]
    paper, dumps = entries[0][2], entries[1][2]
    assert "Lifelong Benchmark for Training and Evaluating Ever-Evolving Language Models" in paper
    assert 'year = "2022"' in paper and "Empirical Methods in Natural Language Processing" in paper
    assert "Jang, Joel" in paper and "Seo, Minjoon" in paper
    assert "Wikimedia Downloads" in dumps and "https://dumps.wikimedia.org" in dumps
    assert bib.count("{") == bib.count("}")


def test_the_samples_card_says_it_is_made_up(export, card, no_probes):
    h = header(card)
    assert "made up" in h["pretty_name"] and "made-up-sample" in h["tags"]
    top = card.split("## Loading")[0]
    assert "**Made up, for testing only.**" in top
    assert "2016-06, is not a real dump" in top and "were written for the sample" in top
    assert "Limitations" in card and "## Limitations" in card
    # the signal: the dump files' sha1s are those the sample mirror's sums files list
    prov = read_manifest(export)["provenance"]
    assert from_sample(prov) == ["2016-05", "2016-06"]
    other = json.loads(json.dumps(prov))
    for info in other["months"].values():
        for f in info["dump_files"] + info["wikidata_files"]:
            f["sha1"] = "0" * 40
    assert from_sample(other) == []


# ---------------------------------------------------------------------------------------
# lm-evaluation-harness: the comparable number first.

def _loader(folder: Path):
    spec = importlib.util.spec_from_file_location("twiki_data_card_test", folder / "twiki_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lm_eval_leads_with_the_per_token_perplexity(export, card):
    yaml = pytest.importorskip("yaml")
    folder = export / "lm_eval"

    class Loader(yaml.SafeLoader):
        pass
    Loader.add_constructor("!function", lambda loader, node: node.value)
    for name in ("twiki_enwiki_2016_06_unchanged", "twiki_enwiki_2016_06_changed"):
        text = (folder / f"{name}.yaml").read_text()
        assert 'pip install "lm-eval[hf]"' in text
        cfg = yaml.load(text, Loader=Loader)
        assert [m["metric"] for m in cfg["metric_list"]][:3] == [
            "token_perplexity", "byte_perplexity", "word_perplexity"]
        assert cfg["metric_list"][0]["aggregation"] == "weighted_perplexity"
    group = yaml.load((folder / "twiki_enwiki_2016_06.yaml").read_text(), Loader=Loader)
    assert group["aggregate_metric_list"][0] == {"metric": "token_perplexity",
                                                 "aggregation": "mean", "weight_by_size": False}
    assert 'pip install "lm-eval[hf]"' in card
    assert "the same number as `twiki eval`'s `ppl`" in card
    # without a tokenizer the loader cannot count tokens: the byte figure leads
    pytest.importorskip("datasets")
    docs = _loader(folder).load("probes_changed.jsonl")["test"]
    metrics = _loader(folder).process_results(docs[0], [(-6.0, False)])
    assert list(metrics)[0] == "byte_perplexity"
    assert metrics["byte_perplexity"] == (-6.0, len(docs[0]["object"].encode()))


def test_token_perplexity_is_the_number_twiki_eval_reports(export, tmp_path):
    """A tiny GPT-2 scored by `twiki eval` and, the harness's way (the tail of "subject
    relation object" after "subject relation"), through the exported loader: the harness's
    token_perplexity aggregation gives twiki eval's Unchanged and Changed ppl."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("datasets")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.lm_samples import build_model, build_tokenizer
    from twiki.lm import EvalConfig, evaluate

    torch.set_num_threads(1)
    texts = [r["text"] for r in rows_of(export / "train_diffset")]
    texts += [f"{r['subject']} {r['relation']} {r['object']}"
              for c in PROBE_CONFIGS for r in rows_of(export / c)]
    model_dir = build_model(build_tokenizer(texts, tmp_path / "tok", vocab_size=400),
                            tmp_path / "model")
    probes = tmp_path / "probes"
    probes.mkdir()
    for c in PROBE_CONFIGS:
        shutil.copy(export / c / "part-00000.parquet", probes / f"{c}.parquet")
    res = evaluate(EvalConfig(model=str(model_dir), probes=str(probes), device="cpu",
                              precision="fp32", out=str(tmp_path / "eval.json")))

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    loader = _loader(export / "lm_eval")
    got = {}
    for c in PROBE_CONFIGS:
        items = []
        for doc in loader.load(f"{c}.jsonl", pretrained=str(model_dir), version=2.0)["test"]:
            context = f"{doc['subject']} {doc['relation']}"
            ctx = tok(context)["input_ids"]
            cont = tok(context + f" {doc['object']}")["input_ids"][len(ctx):]
            with torch.no_grad():
                logits = model(torch.tensor([ctx + cont[:-1]])).logits[0]
            logp = torch.log_softmax(logits.float(), -1)
            ll = float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))
            metrics = loader.process_results(doc, [(ll, False)])
            assert list(metrics)[0] == "token_perplexity"
            items.append(metrics["token_perplexity"])
        # the harness's weighted_perplexity: exp(-sum of log-likelihoods / sum of tokens)
        got[c] = math.exp(-sum(a for a, _ in items) / sum(b for _, b in items))
    assert got["probes_unchanged"] == pytest.approx(res.unchanged.ppl, rel=1e-5)
    assert got["probes_changed"] == pytest.approx(res.changed.ppl, rel=1e-5)
    assert (got["probes_unchanged"] + got["probes_changed"]) / 2 == pytest.approx(res.avg,
                                                                                 rel=1e-5)
