"""Probe perplexity and held-out perplexity of a model (`twiki eval`).

Reads probes (data/probes/<A>_<B>/: subject, relation, object, kind) and, optionally, the
held-out pages of a month's training text; writes <run>/eval/<label>.json (or `out`).

Scoring "object" (the default, the paper's definition): the probe's prompt (its `prompt`
column, the probes stage's twiki.stages.probes.probe_prompt: "subject relation"; built the same
way for a probes file without the column), a space and the object are encoded as one string and
only the tokens that cover the object (by the tokenizer's character offsets) are scored, each
given everything before it; encoding " object" on its own would add a stray "▁" with
SentencePiece tokenizers. Scoring "sequence" (the original code's): every token of
"prompt object" but the first is scored (all of them after a BOS). `--max-probes N` scores a
seeded random sample of N probes of each kind (the seed's default is 0), never the first N. A BOS
starts every probe where the model family expects one (twiki.lm.data.bos_token_id). A category's perplexity is exp(total NLL / total scored tokens); the mean of
per-probe perplexities is reported beside it. Unchanged = kind "unchanged"; Changed = "new"
and "updated"; Avg = (Un + C) / 2, as in the paper's tables.

Probes whose page is held out of training (the same page-id hash as training's
heldout_permille) cannot be learned from the month's text: they are left out of Un / C and
reported apart (`heldout_pages`). Every result records the key of its inputs (the model's,
the probes' and the held-out text's fingerprints and the settings that change a number), so
a caller can tell a result that is still current from a stale one (`eval_inputs`).

Batches are padded on the side asked for; the attention mask hides padding and the position
ids count real tokens only, so a probe scores the same in any batch, padded either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError
from ..engine.artifacts import canonical_json
from ..stages.probes import probe_prompt
from .data import (
    Blocks,
    artifact_fingerprint,
    bos_token_id,
    collate,
    is_heldout,
    tokenize_source,
)
from .models import find_checkpoint, load_trained, model_fingerprint
from .training import autocast, lm_loss_sum, pick_device, pick_precision

log = logging.getLogger("twiki")

UNCHANGED = ("unchanged",)
CHANGED = ("new", "updated")
PROBE_COLUMNS = ("subject", "relation", "object", "kind")
# Read too where a probes file has them (the probes stage writes them all).
OPTIONAL_COLUMNS = ("page_id", "prompt", "probe_id")
# Bump when a score's definition changes: results keyed with another version are stale.
EVAL_VERSION = 2
# EvalConfig fields that do not change a number (batching, padding, where things go).
EVAL_OPERATIONAL = frozenset({"batch_size", "padding_side", "cache_dir", "device", "threads",
                              "out", "label", "model", "probes", "heldout_data"})


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation of one model on one month pair's probes."""

    model: str
    """A twiki run or checkpoint folder, or a Hugging Face model (hub name or folder)."""
    probes: str
    """The month pair's probes: a Parquet folder or file with subject, relation, object, kind."""
    heldout_data: str | None = None
    """Training text whose held-out pages give held-out perplexity (the diffset of the pair);
    None: the run's own train_data when `model` is a run, else no held-out perplexity."""
    label: str = ""
    """The month pair, e.g. 2021-08_2021-09 (names the output file and the report's column)."""
    scoring: str = "object"
    """object: the object's tokens given "subject relation" (the paper); sequence: the whole
    "subject relation object" string (the original code)."""
    batch_size: int = 32
    """Probes (or held-out blocks) per forward pass."""
    padding_side: str = "right"
    """Where batches are padded: right or left (scores are the same either way)."""
    max_probes: int | None = None
    """Score a seeded random sample of N probes of each kind (quick looks; `seed`), kept in
    file order; None: all."""
    heldout_permille: int | None = None
    """Held-out share used by the run (None: the run's, else 10)."""
    heldout_max_tokens: int = 200_000
    """Cap on held-out tokens scored (the first blocks, deterministic)."""
    block_size: int | None = None
    """Held-out block length; None: the run's, else 512."""
    cache_dir: str | None = None
    """Token caches for the held-out text; None: the run's cache, else <out folder>/tokens."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N."""
    threads: int | None = None
    """torch CPU threads; None: torch's default."""
    precision: str = "auto"
    """auto (bf16-mixed on a GPU with bf16, fp16-mixed on one without), fp32, bf16-mixed,
    fp16-mixed."""
    seed: int | None = 0
    """Which probes --max-probes samples: the same seed, the same N probes of each kind
    (None counts as 0). Scoring itself is deterministic (the model is in eval mode)."""
    out: str | None = None
    """Result file; None: <run>/eval/<label or probes folder name>.json (nothing written for a
    Hugging Face model without out)."""

    def __post_init__(self) -> None:
        if self.scoring not in ("object", "sequence"):
            raise ConfigError(f"scoring must be object or sequence, not {self.scoring!r}")
        if self.padding_side not in ("left", "right"):
            raise ConfigError(f"padding_side must be left or right, not {self.padding_side!r}")
        if self.batch_size < 1 or (self.max_probes is not None and self.max_probes < 1):
            raise ConfigError("batch_size and max_probes must be >= 1")
        if self.heldout_max_tokens < 0:
            raise ConfigError("heldout_max_tokens must be >= 0")


@dataclass
class Score:
    """Perplexity of one category of probes (or of held-out text)."""

    ppl: float | None
    """exp(total NLL / total scored tokens)."""
    count: int
    """Probes (or blocks) scored."""
    tokens: int
    """Tokens scored."""
    mean_probe_ppl: float | None = None
    """Mean over probes of each probe's own perplexity."""


@dataclass
class EvalResult:
    model: str
    label: str
    scoring: str
    unchanged: Score
    changed: Score
    avg: float | None
    """(Un + C) / 2, the paper's Avg."""
    new: Score
    updated: Score
    heldout: Score | None
    seconds: float
    tokens_per_s: float
    """Scored-and-context tokens run through the model per second."""
    heldout_pages: dict = field(default_factory=dict)
    """Probes on pages held out of training, apart: {"permille", "unchanged", "changed"}."""
    inputs_key: str = ""
    """sha256 of `inputs`: equal keys, equal numbers."""
    inputs: dict = field(default_factory=dict)
    """What the numbers depend on (eval_inputs)."""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# Probes


def read_probe_rows(path: str | Path) -> list[dict]:
    """The probes of a folder or file: dicts with subject, relation, object, kind, and page_id,
    prompt and probe_id where the file has them (other columns, the provenance, are
    ignored)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no probes at {path}: build them first (the probes stage)")
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise InputError(f"{path} holds no .parquet files of probes")
    probes: list[dict] = []
    for f in files:
        names = pq.read_schema(f).names
        missing = [c for c in PROBE_COLUMNS if c not in names]
        if missing:
            raise InputError(f"{f} has no column(s) {', '.join(missing)}: not a probes file")
        cols = list(PROBE_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in names]
        for batch in pq.ParquetFile(f).iter_batches(columns=cols):
            d = batch.to_pydict()
            probes += [dict(zip(cols, row)) for row in zip(*(d[c] for c in cols))]
    bad = sorted({p["kind"] for p in probes} - set(UNCHANGED + CHANGED))
    if bad:
        raise InputError(f"{path}: unknown probe kind(s) {bad}; expected unchanged, new, updated")
    return probes


def sample_probes(items: list[dict], n: int, seed: int | None = 0) -> list[dict]:
    """A seeded random sample of n of `items` (all of them when there are no more), in their
    order: what --max-probes scores of each kind. The same seed and probes, the same sample."""
    if len(items) <= n:
        return list(items)
    idx = np.random.default_rng(0 if seed is None else seed).choice(len(items), n,
                                                                   replace=False)
    return [items[i] for i in sorted(idx)]


def encode_probe(tokenizer, probe: dict, scoring: str,
                 bos: int | None = None) -> tuple[list[int], list[bool]]:
    """(token ids, scored flags) of one probe, after `bos` when it is not None.

    The context is the probe's `prompt` (probe_prompt(subject, relation) where it has none):
    the string scored is prompt + " " + object. Object scoring encodes it once and scores the
    tokens that end past the context's last character: the space before the object belongs to the object, as
    GPT-2's " Paris" does, and a SentencePiece tokenizer gets no stray "▁" token. A tokenizer
    without offsets (a slow one) encodes " object" separately, which is exact for GPT-2 style
    byte-level BPE only.
    """
    o = str(probe["object"]).strip()
    prompt = probe.get("prompt") or probe_prompt(str(probe["subject"]), str(probe["relation"]))
    prompt = prompt or ""
    head = [] if bos is None else [bos]
    text = f"{prompt} {o}"
    if scoring == "object":
        ctx_end = len(prompt)
        try:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, flags = enc["input_ids"], [end > ctx_end for _, end in enc["offset_mapping"]]
        except (NotImplementedError, ValueError, TypeError):
            ctx = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            obj = tokenizer(f" {o}", add_special_tokens=False)["input_ids"]
            ids, flags = ctx + obj, [False] * len(ctx) + [True] * len(obj)
        if not prompt or not o or not any(flags) or (all(flags) and not head):
            raise InputError(f"probe {probe!r} has an empty context or object")
        return head + ids, [False] * len(head) + flags
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    # Without a BOS the first token has nothing to be predicted from.
    return head + ids, [False] * len(head) + [bool(head)] + [True] * (len(ids) - 1)


def pad_batch(seqs: list[list[int]], flags: list[list[bool]], pad_id: int, side: str):
    """(input_ids, attention_mask, position_ids, scored) padded on `side`. Position ids count
    real tokens from 0, so a left-padded row gets the positions it would have alone."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    scored = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (s, f) in enumerate(zip(seqs, flags)):
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[i, sl] = torch.tensor(s)
        att[i, sl] = 1
        scored[i, sl] = torch.tensor(f)
    pos = (att.cumsum(-1) - 1).clamp(min=0)
    return ids, att, pos, scored


@torch.no_grad()
def probe_nll(model, tokenizer, probes: list[dict], *, scoring: str = "object",
              batch_size: int = 32, padding_side: str = "right",
              device: torch.device | str = "cpu", precision: str = "fp32") -> list[tuple[float, int]]:
    """(summed NLL, scored tokens) of every probe, in order."""
    device = torch.device(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    bos = bos_token_id(tokenizer)
    encoded = [encode_probe(tokenizer, p, scoring, bos) for p in probes]
    out: list[tuple[float, int]] = []
    model.eval()
    for b in range(0, len(encoded), batch_size):
        chunk = encoded[b:b + batch_size]
        ids, att, pos, scored = pad_batch([c[0] for c in chunk], [c[1] for c in chunk], pad_id,
                                          padding_side)
        ids, att, pos, scored = ids.to(device), att.to(device), pos.to(device), scored.to(device)
        with autocast(device, precision):
            logits = model(input_ids=ids, attention_mask=att, position_ids=pos).logits
        # Token j is predicted by the logits at j - 1.
        logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
        tok_lp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        mask = scored[:, 1:]
        nll = -(tok_lp * mask).sum(-1)
        for i in range(len(chunk)):
            out.append((float(nll[i]), int(mask[i].sum())))
    return out


def score(nlls: Iterable[tuple[float, int]]) -> Score:
    nlls = list(nlls)
    tokens = sum(n for _, n in nlls)
    if not nlls or tokens == 0:
        return Score(None, len(nlls), tokens, None)
    ppl = math.exp(sum(s for s, _ in nlls) / tokens)
    mean = sum(math.exp(s / n) for s, n in nlls if n) / len(nlls)
    return Score(ppl, len(nlls), tokens, mean)


@torch.no_grad()
def heldout_score(model, blocks: Blocks, *, max_tokens: int, batch_size: int, pad_id: int,
                  device: torch.device, precision: str) -> Score:
    """Perplexity of the first blocks of held-out text, up to max_tokens targets."""
    model.eval()
    chosen, planned = [], 0
    for i in range(len(blocks)):
        if planned >= max_tokens:
            break
        chosen.append(i)
        planned += blocks.targets(i)
    total, tokens = 0.0, 0
    for b in range(0, len(chosen), batch_size):
        idx = chosen[b:b + batch_size]
        x, y, mask = collate([blocks.window(j) for j in idx], blocks.block_size, pad_id)
        with autocast(device, precision):
            total += float(lm_loss_sum(model, x.to(device), y.to(device), mask.to(device)))
        tokens += int(mask.sum())
    count = len(chosen)
    return Score(math.exp(total / tokens) if tokens else None, count, tokens)


# ---------------------------------------------------------------------------------------
# Entry point


def _run_config(model: str) -> dict:
    """The train_config.json of the run `model` is (empty for a plain model)."""
    ckpt = find_checkpoint(model)
    if ckpt is not None and (ckpt.parent / "train_config.json").exists():
        return json.loads((ckpt.parent / "train_config.json").read_text())
    return {}


def _heldout_permille(cfg: EvalConfig, run_cfg: dict) -> int:
    return cfg.heldout_permille if cfg.heldout_permille is not None else run_cfg.get(
        "heldout_permille", 10)


def eval_inputs(cfg: EvalConfig) -> dict:
    """Everything an evaluation's numbers depend on: the model's weights (model_fingerprint),
    the probes and held-out text (their manifests' or files' hashes) and the settings that
    change a score, resolved (the run's held-out share and block length, the precision)."""
    run_cfg = _run_config(cfg.model)
    settings = {k: v for k, v in asdict(cfg).items() if k not in EVAL_OPERATIONAL}
    settings["heldout_permille"] = _heldout_permille(cfg, run_cfg)
    settings["block_size"] = cfg.block_size or run_cfg.get("block_size", 512)
    settings["prepend_title"] = run_cfg.get("prepend_title", True)
    settings["precision"] = pick_precision(cfg.precision, pick_device(cfg.device))
    if not cfg.max_probes:
        settings.pop("seed")   # the seed only picks which probes --max-probes keeps
    heldout_data = (cfg.heldout_data or run_cfg.get("train_data")) if cfg.heldout_max_tokens else None
    return {"version": EVAL_VERSION, "model": model_fingerprint(cfg.model),
            "probes": artifact_fingerprint(cfg.probes),
            "heldout_data": artifact_fingerprint(heldout_data) if heldout_data else None,
            "settings": settings}


def inputs_key(inputs: dict) -> str:
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def current_result(cfg: EvalConfig, out: str | Path) -> dict | None:
    """The result at `out` if it was computed from exactly cfg's inputs, else None (stale,
    from an older version of twiki, or missing)."""
    out = Path(out)
    if not out.exists():
        return None
    try:
        old = json.loads(out.read_text())
    except json.JSONDecodeError:
        return None
    return old if old.get("inputs_key") == inputs_key(eval_inputs(cfg)) else None


def evaluate(cfg: EvalConfig) -> EvalResult:
    """Score a model on a month pair's probes (Un, C, Avg) and held-out text; write the result."""
    device = pick_device(cfg.device)
    precision = pick_precision(cfg.precision, device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed = 0 if cfg.seed is None else cfg.seed
    torch.manual_seed(seed)
    inputs = eval_inputs(cfg)
    probes = read_probe_rows(cfg.probes)
    model, tokenizer, info = load_trained(cfg.model)
    model.to(device)
    ckpt = find_checkpoint(cfg.model)
    run_cfg = _run_config(cfg.model)
    label = cfg.label or Path(cfg.probes).name
    permille = _heldout_permille(cfg, run_cfg)

    # Probes on held-out pages: their evidence was never trained on, so they are apart.
    by_kind: dict[str, list[dict]] = {k: [] for k in UNCHANGED + CHANGED}
    apart: dict[str, list[dict]] = {k: [] for k in UNCHANGED + CHANGED}
    for p in probes:
        held = p.get("page_id") is not None and is_heldout(p["page_id"], permille)
        (apart if held else by_kind)[p["kind"]].append(p)
    if cfg.max_probes:
        by_kind = {k: sample_probes(v, cfg.max_probes, seed) for k, v in by_kind.items()}
        apart = {k: sample_probes(v, cfg.max_probes, seed) for k, v in apart.items()}
    t0 = time.perf_counter()
    run_tokens = 0
    bos = bos_token_id(tokenizer)
    nll: dict[str, list[tuple[float, int]]] = {}
    for name, groups in (("", by_kind), ("apart_", apart)):
        for kind, items in groups.items():
            nll[name + kind] = probe_nll(model, tokenizer, items, scoring=cfg.scoring,
                                         batch_size=cfg.batch_size,
                                         padding_side=cfg.padding_side, device=device,
                                         precision=precision)
            run_tokens += sum(len(encode_probe(tokenizer, p, cfg.scoring, bos)[0])
                              for p in items)

    heldout = None
    heldout_data = cfg.heldout_data or run_cfg.get("train_data")
    if heldout_data and cfg.heldout_max_tokens:
        block = cfg.block_size or run_cfg.get("block_size", 512)
        cache = cfg.cache_dir or run_cfg.get("cache_dir") or (
            str(ckpt.parent / "tokens") if ckpt is not None else None)
        if cache is None:
            cache = str(Path(cfg.out).parent / "tokens") if cfg.out else None
        if cache is None:
            raise ConfigError("held-out perplexity needs a cache_dir (or an `out` path) for its "
                              "token cache when the model is not a twiki run")
        hs = tokenize_source(heldout_data, tokenizer, cache, split="heldout",
                             heldout_permille=permille,
                             prepend_title=run_cfg.get("prepend_title", True))
        if hs.n_tokens > 1:
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            heldout = heldout_score(model, Blocks(hs.tokens, block), max_tokens=cfg.heldout_max_tokens,
                                    batch_size=max(1, cfg.batch_size // 4), pad_id=pad_id,
                                    device=device, precision=precision)
            run_tokens += heldout.tokens
    seconds = time.perf_counter() - t0

    un = score(nll["unchanged"])
    ch = score(nll["new"] + nll["updated"])
    result = EvalResult(
        model=str(cfg.model), label=label, scoring=cfg.scoring, unchanged=un, changed=ch,
        avg=(un.ppl + ch.ppl) / 2 if un.ppl is not None and ch.ppl is not None else None,
        new=score(nll["new"]), updated=score(nll["updated"]), heldout=heldout,
        seconds=round(seconds, 3), tokens_per_s=round(run_tokens / seconds, 1) if seconds else 0.0,
        heldout_pages={"permille": permille, "unchanged": asdict(score(nll["apart_unchanged"])),
                       "changed": asdict(score(nll["apart_new"] + nll["apart_updated"]))},
        inputs_key=inputs_key(inputs), inputs=inputs,
        extra={"model_kind": info["kind"], "step": info.get("step"), "device": str(device),
               "precision": precision, "padding_side": cfg.padding_side, "bos": bos})
    out = Path(cfg.out) if cfg.out else (ckpt.parent / "eval" / f"{label}.json"
                                         if ckpt is not None else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    log.info("eval %s on %s: Un %.2f C %.2f Avg %.2f%s", cfg.model, label, un.ppl or float("nan"),
             ch.ppl or float("nan"), result.avg or float("nan"),
             f" held-out {heldout.ppl:.2f}" if heldout and heldout.ppl else "")
    return result
