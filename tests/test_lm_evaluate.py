"""Probe perplexity: the object's tokens given "subject relation", batched and padded either
way, checked against a hand computation from the model's logits."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
# Tiny matrices: one thread is fastest, and it keeps a busy shared machine from thrashing.
torch.set_num_threads(1)
pytest.importorskip("transformers")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from twiki.errors import InputError  # noqa: E402
from twiki.lm import EvalConfig, evaluate  # noqa: E402
from twiki.lm.data import is_heldout, load_documents  # noqa: E402
from twiki.lm.evaluation import (pad_batch, probe_nll, read_probe_rows,  # noqa: E402
                                 sample_probes)
from twiki.lm.models import load_hf_model, load_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def sharp_model(kit, tmp_path_factory):
    """The tiny model with its embeddings scaled up, so that a token's log-probability
    depends strongly on its position and context (a random init is nearly uniform, which
    would hide a padding bug)."""
    model = load_hf_model(str(kit.model))
    with torch.no_grad():
        model.transformer.wpe.weight.mul_(40)
        model.transformer.wte.weight.mul_(20)
    out = tmp_path_factory.mktemp("sharp")
    model.save_pretrained(out)
    load_tokenizer(str(kit.model)).save_pretrained(out)
    return model, load_tokenizer(str(out)), out


def by_hand(model, tok, probe, whole=False) -> tuple[float, int]:
    """Summed NLL and token count from one unpadded forward pass and log_softmax."""
    s, r, o = probe["subject"], probe["relation"], probe["object"]
    if whole:
        ids = tok(f"{s} {r} {o}")["input_ids"]
        scored = range(1, len(ids))
    else:
        ctx, obj = tok(f"{s} {r}")["input_ids"], tok(f" {o}")["input_ids"]
        ids = ctx + obj
        scored = range(len(ctx), len(ids))
    with torch.no_grad():
        logp = F.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    return -sum(float(logp[j - 1, ids[j]]) for j in scored), len(scored)


PROBES = [
    {"subject": "Albedo or", "relation": "reflection coefficient is the diffuse reflectivity of",
     "object": "a surface", "kind": "unchanged"},
    {"subject": "Autism is", "relation": "a", "object": "neurodevelopmental disorder",
     "kind": "new"},
]


@pytest.mark.parametrize("side", ["left", "right"])
def test_object_perplexity_equals_a_hand_computation_under_padding(sharp_model, side):
    model, tok, _ = sharp_model
    got = probe_nll(model, tok, PROBES, batch_size=2, padding_side=side)
    for probe, (nll, n) in zip(PROBES, got):
        want, want_n = by_hand(model, tok, probe)
        assert n == want_n == len(tok(" " + probe["object"])["input_ids"])
        assert nll == pytest.approx(want, rel=1e-4)
    # The two probes differ in length, so one of them really was padded.
    lengths = {len(tok(f"{p['subject']} {p['relation']} {p['object']}")["input_ids"]) for p in PROBES}
    assert len(lengths) == 2


def test_the_hand_check_would_catch_wrong_position_ids(sharp_model):
    """Left padding without position ids (the original code's batches) scores differently:
    the model above is sensitive enough for the test to mean something."""
    model, tok, _ = sharp_model
    seqs = [tok(f"{p['subject']} {p['relation']}")["input_ids"] + tok(" " + p["object"])["input_ids"]
            for p in PROBES]
    ids, att, pos, _ = pad_batch(seqs, [[True] * len(s) for s in seqs], tok.eos_token_id, "left")
    with torch.no_grad():
        right = model(input_ids=ids, attention_mask=att, position_ids=pos).logits
        wrong = model(input_ids=ids, attention_mask=att).logits
    short = min(range(2), key=lambda i: len(seqs[i]))
    assert not torch.allclose(right[short, -1], wrong[short, -1], atol=1e-3)


def test_sequence_scoring_is_the_whole_string(sharp_model):
    model, tok, _ = sharp_model
    for side in ("left", "right"):
        got = probe_nll(model, tok, PROBES, scoring="sequence", batch_size=2, padding_side=side)
        for probe, (nll, n) in zip(PROBES, got):
            want, want_n = by_hand(model, tok, probe, whole=True)
            assert n == want_n and nll == pytest.approx(want, rel=1e-4)


def test_evaluate_reports_un_c_avg_and_heldout(kit, sharp_model, tmp_path):
    model, tok, folder = sharp_model
    probes = read_probe_rows(kit.pair.probes)
    out = tmp_path / "eval.json"
    res = evaluate(EvalConfig(model=str(folder), probes=str(kit.pair.probes), label="2016-05_2016-06",
                              heldout_data=str(kit.pair.diffset), heldout_permille=200,
                              block_size=32, padding_side="left", batch_size=5,
                              cache_dir=str(tmp_path / "tokens"), out=str(out)))
    hand = [by_hand(model, tok, p) for p in probes]
    # Probes on held-out pages (the same page-id hash as the held-out text) are apart.
    apart = [is_heldout(p["page_id"], 200) for p in probes]
    assert any(apart) and not all(apart)
    for kinds, got, held in [(("unchanged",), res.unchanged, False),
                             (("new", "updated"), res.changed, False),
                             (("new", "updated"), res.heldout_pages["changed"], True)]:
        got = got if not isinstance(got, dict) else type(res.changed)(**got)
        sel = [h for p, h, a in zip(probes, hand, apart) if p["kind"] in kinds and a == held]
        assert got.count == len(sel) > 0
        assert got.tokens == sum(n for _, n in sel)
        assert got.ppl == pytest.approx(math.exp(sum(s for s, _ in sel) / got.tokens), rel=1e-4)
    assert res.heldout_pages["permille"] == 200
    assert res.heldout_pages["unchanged"]["count"] == sum(
        a for p, a in zip(probes, apart) if p["kind"] == "unchanged")
    assert res.avg == pytest.approx((res.unchanged.ppl + res.changed.ppl) / 2)
    # Held-out perplexity covers exactly the held-out pages' text (EOS after each document).
    held = [d for d in load_documents(kit.pair.diffset) if is_heldout(d["page_id"], 200)]
    assert held
    n_tokens = sum(len(tok(f"{d['title']}\n\n{d['text']}")["input_ids"]) + 1 for d in held)
    assert res.heldout.tokens == n_tokens - 1 and res.heldout.ppl > 1
    written = json.loads(out.read_text())
    assert written["unchanged"]["ppl"] == res.unchanged.ppl and written["label"] == "2016-05_2016-06"


def test_bad_probes_are_named(tmp_path):
    pq.write_table(pa.table({"subject": ["a"], "relation": ["b"], "kind": ["new"]}),
                   tmp_path / "p.parquet")
    with pytest.raises(InputError, match="no column.*object"):
        read_probe_rows(tmp_path / "p.parquet")
    pq.write_table(pa.table({"subject": ["a"], "relation": ["b"], "object": ["c"],
                             "kind": ["removed"]}), tmp_path / "q.parquet")
    with pytest.raises(InputError, match="unknown probe kind"):
        read_probe_rows(tmp_path / "q.parquet")
    with pytest.raises(InputError, match="build them first"):
        read_probe_rows(tmp_path / "nothing")


def test_the_probes_prompt_is_what_is_scored(sharp_model):
    """A probe's `prompt` column (the probes stage writes it) is the context scored, whatever
    its subject and relation; without one, "subject relation" is."""
    model, tok, _ = sharp_model
    with_prompt = [{**p, "subject": "x", "relation": "y",
                    "prompt": f"{p['subject']} {p['relation']}"} for p in PROBES]
    assert probe_nll(model, tok, with_prompt) == probe_nll(model, tok, PROBES)
    other = [{**p, "prompt": "Wikipedia says"} for p in PROBES]
    assert probe_nll(model, tok, other) != probe_nll(model, tok, PROBES)


def test_max_probes_is_a_seeded_random_sample():
    items = [{"probe_id": f"{i:016x}"} for i in range(40)]
    samples = {seed: sample_probes(items, 5, seed) for seed in range(6)}
    for seed, got in samples.items():
        assert len(got) == 5 and got == sample_probes(items, 5, seed)       # reproducible
        assert [items.index(p) for p in got] == sorted(items.index(p) for p in got)
    assert any(got != items[:5] for got in samples.values())                # not the first N
    assert len({tuple(p["probe_id"] for p in got) for got in samples.values()}) > 1
    assert sample_probes(items, 5, None) == samples[0]      # no seed: seed 0, still random
    assert sample_probes(items, 99, 3) == items


def test_eval_cli_samples_by_default(tmp_path):
    import argparse
    from twiki.lm.cli import add_eval_arguments
    p = argparse.ArgumentParser()
    add_eval_arguments(p)
    args = p.parse_args(["--model", "m", "--max-probes", "3"])
    assert args.seed == 0 and args.max_probes == 3
    assert EvalConfig(model="m", probes="p").seed == 0
