"""Tokenization beyond GPT-2: a BOS where the model family expects one, and the object's
tokens taken from one encoding of the whole probe, with a SentencePiece-style tokenizer (Llama
2's layout: prepend "▁", spaces to "▁", BOS added) built here from the sample text."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402

from twiki.lm.data import bos_token_id, tokenize_source  # noqa: E402
from twiki.lm.evaluation import encode_probe, probe_nll  # noqa: E402
from twiki.lm.models import load_tokenizer  # noqa: E402

PROBE = {"subject": "The capital", "relation": "of France is", "object": "Paris", "kind": "new"}


@pytest.fixture(scope="module")
def sp_tokenizer(kit, tmp_path_factory):
    """A BPE trained on the sample with SentencePiece's conventions, as Llama 2's
    tokenizer.json has them: the normalizer prepends "▁" and turns spaces into "▁", and the
    post-processor puts <s> first. Saved and loaded back like any model's tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from pipelines.lm_samples import sample_texts

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tk.train_from_iterator(sample_texts(kit.pair), trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    tk.pre_tokenizer = None
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tk.token_to_id("<s>"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>")
    out = tmp_path_factory.mktemp("sp-tokenizer")
    tok.save_pretrained(out)
    return load_tokenizer(str(out))


def test_a_sentencepiece_style_tokenizer_gets_its_bos(sp_tokenizer):
    assert bos_token_id(sp_tokenizer) == sp_tokenizer.convert_tokens_to_ids("<s>")


def test_gpt2_style_tokenizers_get_no_bos(kit):
    tok = load_tokenizer(str(kit.model))
    assert tok.bos_token is not None          # it names one, but never adds it
    assert bos_token_id(tok) is None


def test_the_object_is_scored_from_one_encoding_without_a_stray_piece(sp_tokenizer):
    tok = sp_tokenizer
    # The old way, " Paris" on its own, starts with a lone "▁" the joint text never has.
    alone = tok.convert_ids_to_tokens(tok(" Paris", add_special_tokens=False)["input_ids"])
    assert alone[0] == "▁"
    ids, flags = encode_probe(tok, PROBE, "object", bos_token_id(tok))
    joint = tok("The capital of France is Paris")["input_ids"]     # with its BOS
    assert ids == joint
    scored = [t for t, f in zip(tok.convert_ids_to_tokens(ids), flags) if f]
    assert "▁" not in scored and tok.convert_tokens_to_string(scored).strip() == "Paris"
    assert scored[0].startswith("▁") and not flags[0]


def test_gpt2_joint_encoding_matches_separate_encodings(kit):
    tok = load_tokenizer(str(kit.model))
    ids, flags = encode_probe(tok, PROBE, "object", bos_token_id(tok))
    ctx = tok("The capital of France is")["input_ids"]
    obj = tok(" Paris")["input_ids"]
    assert ids == ctx + obj and flags == [False] * len(ctx) + [True] * len(obj)


@pytest.fixture(scope="module")
def tiny_llama(sp_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(sp_tokenizer), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=128, bos_token_id=sp_tokenizer.bos_token_id,
                      eos_token_id=sp_tokenizer.eos_token_id)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(30)   # sharp: a wrong context shows in the score
    return model


@pytest.mark.parametrize("side", ["left", "right"])
def test_probe_scores_follow_the_bos_and_the_joint_encoding(sp_tokenizer, tiny_llama, side):
    tok, model = sp_tokenizer, tiny_llama
    probes = [PROBE, {"subject": "Autism is", "relation": "a", "object": "neurodevelopmental disorder",
                      "kind": "new"}]
    got = probe_nll(model, tok, probes, batch_size=2, padding_side=side)
    for probe, (nll, n) in zip(probes, got):
        ids = tok(f"{probe['subject']} {probe['relation']} {probe['object']}")["input_ids"]
        ctx = len(tok(f"{probe['subject']} {probe['relation']}")["input_ids"])   # BOS included
        with torch.no_grad():
            logp = F.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        want = -sum(float(logp[j - 1, ids[j]]) for j in range(ctx, len(ids)))
        assert n == len(ids) - ctx and nll == pytest.approx(want, rel=1e-4)


def test_training_text_starts_every_document_with_bos(kit, sp_tokenizer, tmp_path):
    tok = sp_tokenizer
    ts = tokenize_source(kit.pair.diffset, tok, tmp_path, split="train", heldout_permille=0,
                         prepend_title=True)
    stream = list(ts.tokens)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert stream[0] == bos and stream[-1] == eos
    assert stream.count(bos) == stream.count(eos) == ts.meta["documents"]
    starts = [i + 1 for i, t in enumerate(stream[:-1]) if t == eos]
    assert all(stream[i] == bos for i in starts)
    assert ts.meta["bos"] == bos
