"""The LM stage's sample month pair, tiny models, and throughput benchmark.

`build_sample_pair(folder)` makes two months of real article text from the committed sample
mirror (data/sample/mirror/enwiki/20160501): month A's and month B's snapshots (the extract
stage's row layout), the diffset between them, and probes stated by the text. Month B = A
with every 4th article new and every 4th edited (its next real paragraph inserted), so the
diffset and the Changed probes are real Wikipedia sentences the model has not seen in A.

`build_tokenizer` trains a byte-level BPE locally (tokenizers) and `build_model` makes a
GPT-2 from a config: no hub anywhere. `bench_lm(out_dir)` measures training and evaluation
throughput (tokens/s); `--size small` does it for a 124M GPT-2 (for a GPU).

    .venv/bin/python -m benchmarks.bench_lm --out data/bench/lm [--size small] [--device cuda]
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import html
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.build_sample_mirror import page_title, split_dump
from twiki.text.sentences import split_sentences
from twiki.stages.extract import SCHEMA as SNAPSHOT_SCHEMA
from twiki.text.wikitext import clean_wikitext

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RUN = REPO / "data" / "sample" / "mirror" / "enwiki" / "20160501"
MONTH_A, MONTH_B = "2016-05", "2016-06"

DOC_SCHEMA = pa.schema([pa.field("page_id", pa.int64(), nullable=False),
                        pa.field("title", pa.string(), nullable=False),
                        pa.field("text", pa.string(), nullable=False)])
PROBE_SCHEMA = pa.schema([pa.field("subject", pa.string()), pa.field("relation", pa.string()),
                          pa.field("object", pa.string()), pa.field("kind", pa.string()),
                          pa.field("page_id", pa.int64()), pa.field("evidence", pa.string())])

# GPT-2 sizes built from a config. tiny: the CPU smoke model; small: GPT-2 124M's shape.
SIZES = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=32, n_positions=256),
    "small": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024),
}
_TEXT = re.compile(rb"<text[^>]*>(.*?)</text>", re.DOTALL)
_WORD_OK = re.compile(r"^[\w'-]+$")


def sample_articles(limit: int | None = None, max_paragraphs: int | None = None,
                    min_paragraphs: int = 4) -> list[tuple[int, str, list[str]]]:
    """(page_id, title, paragraphs) of the sample mirror's articles, cleaned, in page_id order."""
    pages: list[bytes] = []
    for part in sorted(SAMPLE_RUN.glob("*-multistream[0-9]*.xml-*.bz2")):
        pages += split_dump(bz2.decompress(part.read_bytes()))[1]
    out = []
    for page in pages:
        if b"<redirect" in page or b"<ns>0</ns>" not in page:
            continue
        m = _TEXT.search(page)
        if not m:
            continue
        title = page_title(page)
        paras = [t for _, t in clean_wikitext(html.unescape(m.group(1).decode()), title)
                 if len(t) > 80]
        if len(paras) < min_paragraphs:
            continue
        pid = int(re.search(rb"<id>(\d+)</id>", page).group(1))
        out.append((pid, title, paras[:max_paragraphs] if max_paragraphs else paras))
    out.sort()
    return out[:limit] if limit else out


def _probes_from(text: str, title: str, page_id: int, kind: str, per_text: int) -> list[dict]:
    """Probes stated by a text: a sentence of 8-30 words split into subject (first two
    words), relation (the middle) and object (the last one to three words, at most 5 as
    TemporalWiki's filter wants), so that "s r o" is the sentence itself."""
    out = []
    for sent in split_sentences(text):
        words = sent.rstrip(".").split()
        if not 8 <= len(words) <= 30:
            continue
        k = 2 if len(words[-1]) < 12 else 1
        obj = words[-k:]
        if not all(_WORD_OK.match(w) for w in obj):
            continue
        out.append({"subject": " ".join(words[:2]), "relation": " ".join(words[2:-k]),
                    "object": " ".join(obj), "kind": kind, "page_id": page_id, "evidence": sent})
        if len(out) >= per_text:
            break
    return out


@dataclass(frozen=True)
class SamplePair:
    """Paths of the sample month pair."""

    folder: Path
    snapshot_a: Path
    snapshot_b: Path
    diffset: Path
    probes: Path
    month_a: str = MONTH_A
    month_b: str = MONTH_B

    @property
    def pair(self) -> str:
        return f"{self.month_a}_{self.month_b}"


def _write_pair(sp, rows_a, rows_b, diff, probes) -> None:
    """Both snapshots, the diffset and the probes of a made-up pair, one shard each."""
    for path, table in [
        (sp.snapshot_a, _snapshot_table(rows_a, MONTH_A)),
        (sp.snapshot_b, _snapshot_table(rows_b, MONTH_B)),
        (sp.diffset, pa.table({"page_id": [d[0] for d in diff], "title": [d[1] for d in diff],
                               "text": [d[2] for d in diff]}, schema=DOC_SCHEMA)),
        (sp.probes, pa.Table.from_pylist(probes, schema=PROBE_SCHEMA)),
    ]:
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path / "part-00000.parquet")


def _snapshot_table(rows: list[tuple[int, str, list[str]]], month: str) -> pa.Table:
    ts = datetime.fromisoformat(f"{month}-01T00:00:00").replace(tzinfo=timezone.utc)
    cols: dict[str, list] = {f.name: [] for f in SNAPSHOT_SCHEMA}
    for pid, title, paras in rows:
        body = "\n\n".join(paras)
        cols["page_id"].append(pid)
        cols["title"].append(title)
        cols["revid"].append(pid * 10 + len(paras))
        cols["timestamp"].append(ts)
        cols["sha1"].append(hashlib.sha1(body.encode()).hexdigest())
        cols["paragraphs"].append([{"section": [], "text": t} for t in paras])
    return pa.table(cols, schema=SNAPSHOT_SCHEMA)


def build_sample_pair(folder: str | Path, *, articles: int | None = 24,
                      max_paragraphs: int | None = 6, probes_per_text: int = 3) -> SamplePair:
    """Write the sample month pair under `folder` (idempotent: same inputs, same bytes)."""
    folder = Path(folder)
    sp = SamplePair(folder, folder / f"snapshot_{MONTH_A}", folder / f"snapshot_{MONTH_B}",
                    folder / f"diffset_{MONTH_A}_{MONTH_B}", folder / f"probes_{MONTH_A}_{MONTH_B}")
    rows_a, rows_b, diff, probes = [], [], [], []
    for i, (pid, title, paras) in enumerate(sample_articles(articles, max_paragraphs)):
        role = ("new", "edited", "same", "same")[i % 4]
        if role == "new":
            rows_b.append((pid, title, paras))
            diff.append((pid, title, "\n\n".join(paras)))
            probes += _probes_from(" ".join(paras), title, pid, "new", probes_per_text)
        elif role == "edited":
            cut = len(paras) // 2
            old = paras[:cut] + paras[cut + 1:]
            rows_a.append((pid, title, old))
            rows_b.append((pid, title, paras))
            diff.append((pid, title, paras[cut]))
            probes += _probes_from(paras[cut], title, pid, "updated", probes_per_text)
        else:
            rows_a.append((pid, title, paras))
            rows_b.append((pid, title, paras))
            probes += _probes_from(" ".join(paras), title, pid, "unchanged", probes_per_text)
    _write_pair(sp, rows_a, rows_b, diff, probes)
    return sp


# ---------------------------------------------------------------------------------------
# The counterfactual pair: real articles, clearly labelled made-up edits


_YEAR = re.compile(r"^(1[5-9]\d\d|200\d|201[0-5])$")
COUNTERFACTUAL_NOTE = (
    "MADE-UP EDITS. Month A is real Wikipedia text (the committed sample mirror, 2016-05). "
    "Month B is month A with, in every other article, up to two sentences ending in a year "
    "rewritten to state a different, made-up year; the diffset is the rewritten paragraphs "
    "and the Changed (updated) probes ask for the made-up years. They are not facts. The "
    "Unchanged probes ask for the real years of sentences no edit touched.")


def _year_sentences(paragraph: str) -> list[tuple[str, list[str]]]:
    """(sentence, its words) of a paragraph's 8-30-word sentences that end in a year."""
    out = []
    for sent in split_sentences(paragraph):
        words = sent.rstrip(".").split()
        if 8 <= len(words) <= 30 and _YEAR.match(words[-1]) and all(
                _WORD_OK.match(w) or w in {",", ";"} or len(w) < 40 for w in words):
            out.append((sent, words))
    return out


def _made_up_year(title: str, year: int) -> int:
    """A different year for an edit: a fixed hash of the title moves it 3 to 40 years."""
    h = int(hashlib.sha256(title.encode()).hexdigest()[:8], 16)
    shift = 3 + h % 38
    return year + shift if year + shift <= 2015 else year - shift


def build_counterfactual_pair(folder: str | Path, *, edited_articles: int = 16,
                              per_article: int = 2, unchanged_per_article: int = 2,
                              max_paragraphs: int | None = None) -> SamplePair:
    """Write a month pair whose Changed probes are made-up edits of real articles (see
    COUNTERFACTUAL_NOTE, also written to the folder's README.md). A pretrained model knows
    (some of) the real years and none of the made-up ones, so Changed perplexity can only
    fall by learning the diffset, and Unchanged perplexity rises only by forgetting.
    Same inputs, same bytes."""
    folder = Path(folder)
    sp = SamplePair(folder, folder / f"snapshot_{MONTH_A}", folder / f"snapshot_{MONTH_B}",
                    folder / f"diffset_{MONTH_A}_{MONTH_B}", folder / f"probes_{MONTH_A}_{MONTH_B}")
    rows_a, rows_b, diff, probes = [], [], [], []
    edited = 0
    for pid, title, paras in sample_articles(None, max_paragraphs):
        rows_a.append((pid, title, paras))
        candidates = [(k, sent, words) for k, para in enumerate(paras)
                      for sent, words in _year_sentences(para)]
        if not candidates:
            rows_b.append((pid, title, paras))
            continue
        if edited < edited_articles and len(rows_a) % 2:
            edited += 1
            new_paras = list(paras)
            for k, sent, words in candidates[:per_article]:
                old = int(words[-1])
                new = _made_up_year(title, old)
                new_sent = sent[:sent.rindex(words[-1])] + str(new) + sent[sent.rindex(words[-1]) + 4:]
                new_paras[k] = new_paras[k].replace(sent, new_sent, 1)
                probes.append({"subject": " ".join(words[:2]), "relation": " ".join(words[2:-1]),
                               "object": str(new), "kind": "updated", "page_id": pid,
                               "evidence": f"{new_sent} [made-up edit: the article says {old}]"})
            rows_b.append((pid, title, new_paras))
            changed = sorted({k for k, _, _ in candidates[:per_article]})
            diff.append((pid, title, "\n\n".join(new_paras[k] for k in changed)))
        else:
            rows_b.append((pid, title, paras))
            for k, sent, words in candidates[:unchanged_per_article]:
                probes.append({"subject": " ".join(words[:2]), "relation": " ".join(words[2:-1]),
                               "object": words[-1], "kind": "unchanged", "page_id": pid,
                               "evidence": sent})
    _write_pair(sp, rows_a, rows_b, diff, probes)
    (folder / "README.md").write_text("# A month pair with made-up edits\n\n" + COUNTERFACTUAL_NOTE + "\n")
    return sp


def build_tokenizer(texts: list[str], out: str | Path, vocab_size: int = 512) -> Path:
    """Train a byte-level BPE (GPT-2 style) on `texts` and save it as a HF tokenizer folder."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                  bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    out = Path(out)
    tok.save_pretrained(out)
    return out


def build_model(tokenizer_dir: str | Path, out: str | Path, size: str = "tiny",
                seed: int = 0) -> Path:
    """A GPT-2 of the given size built from a config (random weights) with the tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    vocab = len(tok) if size == "tiny" else max(len(tok), 50257)
    cfg = GPT2Config(vocab_size=vocab, bos_token_id=tok.eos_token_id,
                     eos_token_id=tok.eos_token_id, **SIZES[size])
    model = GPT2LMHeadModel(cfg)
    out = Path(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@dataclass(frozen=True)
class TinyLM:
    """The test and demo kit: a sample month pair, a local tokenizer, a tiny GPT-2."""

    pair: SamplePair
    tokenizer: Path
    model: Path


def tiny_lm(folder: str | Path, *, articles: int | None = 12, max_paragraphs: int | None = 5,
            vocab_size: int = 512, size: str = "tiny") -> TinyLM:
    """Build (once: a finished folder is reused) the sample pair, tokenizer and model."""
    folder = Path(folder)
    sp = SamplePair(folder, folder / f"snapshot_{MONTH_A}", folder / f"snapshot_{MONTH_B}",
                    folder / f"diffset_{MONTH_A}_{MONTH_B}", folder / f"probes_{MONTH_A}_{MONTH_B}")
    kit = TinyLM(sp, folder / "tokenizer", folder / f"gpt2-{size}")
    if (folder / "ready").exists():
        return kit
    sp = build_sample_pair(folder, articles=articles, max_paragraphs=max_paragraphs)
    build_tokenizer(sample_texts(sp), kit.tokenizer, vocab_size=vocab_size)
    build_model(kit.tokenizer, kit.model, size)
    (folder / "ready").write_text("")
    return kit


def sample_texts(sp: SamplePair) -> list[str]:
    from twiki.lm.data import load_documents

    return [d["text"] for d in load_documents(sp.snapshot_b)]


# ---------------------------------------------------------------------------------------
# The benchmark


def bench_lm(out_dir: str | Path, *, size: str = "tiny", device: str = "auto", steps: int = 20,
             block_size: int = 128, batch: int = 8, model: str | None = None) -> dict:
    """Train `steps` steps of method diff on the sample diffset and evaluate the probes;
    returns (and writes to <out_dir>/lm_bench.json) train and eval tokens/s. `model`: a local
    model folder to measure (e.g. SmolLM2 from twiki import-gguf) instead of a GPT-2 of `size`."""
    import torch

    from twiki.lm import EvalConfig, TrainConfig, evaluate, train

    out = Path(out_dir)
    if model is not None:
        size = Path(model).name
    work = out / f"lm-{size}"
    sp = build_sample_pair(work / "sample", articles=None, max_paragraphs=None)
    if model is None:
        tok = build_tokenizer(sample_texts(sp), work / "tokenizer",
                              vocab_size=512 if size == "tiny" else 8192)
        model = build_model(tok, work / f"gpt2-{size}", size)
    run = work / "run"
    import shutil
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    tr = train(TrainConfig(run_dir=str(run), model=str(model), train_data=str(sp.diffset),
                           method="diff", block_size=block_size, micro_batch_size=batch,
                           max_steps=steps, device=device, save_every=10**9, log_every=10**9,
                           learning_rate=1e-3))
    train_wall = time.perf_counter() - t0
    ev = evaluate(EvalConfig(model=str(run), probes=str(sp.probes), label=sp.pair,
                             device=device, batch_size=32))
    result = {
        "size": size, "device": tr.device, "precision": tr.precision,
        "torch_threads": torch.get_num_threads(),
        "params": tr.total_params, "block_size": block_size, "batch_rows": batch,
        "steps": tr.step, "train_tokens": tr.tokens_seen,
        "train_tokens_per_s": tr.tokens_per_s, "train_wall_s": round(train_wall, 2),
        "eval_probes": ev.unchanged.count + ev.changed.count,
        "eval_tokens_per_s": ev.tokens_per_s, "eval_seconds": ev.seconds,
        "heldout_tokens": ev.heldout.tokens if ev.heldout else 0,
    }
    (out / "lm_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_lm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/bench/lm", help="output folder (default: data/bench/lm)")
    p.add_argument("--size", choices=sorted(SIZES), default="tiny",
                   help="GPT-2 size built from a config: tiny (CPU smoke) or small (124M)")
    p.add_argument("--model", metavar="DIR",
                   help="measure this local model folder instead (e.g. twiki import-gguf "
                        "smollm2 --out data/models/smollm2-135m)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    p.add_argument("--steps", type=int, default=20, help="training steps (default: 20)")
    p.add_argument("--block-size", type=int, default=128, help="tokens per row (default: 128)")
    p.add_argument("--batch", type=int, default=8, help="rows per step (default: 8)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; 1 is fastest for the tiny model "
                        "on a shared machine)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    res = bench_lm(args.out, size=args.size, device=args.device, steps=args.steps,
                   block_size=args.block_size, batch=args.batch, model=args.model)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
