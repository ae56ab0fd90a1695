"""Continued pretraining of a causal LM on one month's text (`twiki train`).

Reads month B's diffset or snapshot (or any Parquet of title + text) and, for mixreview,
earlier-month text; writes the run folder data/runs/<name>/:
  train_config.json   the config the run was started with (a resume must match it)
  tokens/             token caches (unless cache_dir points elsewhere)
  checkpoint/         the resumable state, safetensors only (see checkpoint.py)
  log.jsonl           one line per logged step: loss, lr, tokens seen, seconds
  result.json         the finished run: steps, tokens seen, budget, time, throughput

train() reads top to bottom in its phases, nanoGPT style: _setup (device, text, model,
optimizer), _resume (the checkpoint), _loop (each _step with get_batch(step) and get_lr(step),
both pure; log lines, estimate_loss() under no_grad, checkpoints), _result. A batch is a pure
function of (seed, step), so a resumed run replays exactly the batches it would have had.

Data parallel: started by torchrun (WORLD_SIZE > 1), every process trains the same model on
its own share of each step's rows (micro_batch_size rows per process and micro-batch, so a
step holds micro_batch_size x grad_accum x world rows), gradients are averaged by
DistributedDataParallel (NCCL on GPUs, gloo on CPUs), and only rank 0 writes the run folder;
the checkpoint holds every rank's RNG state. The losses are those of one process taking the
same global batch, to float rounding.

    torchrun --nproc_per_node 8 -m twiki train --month 2021-09 --method diff --model gpt2-large
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.artifacts import canonical_json
from ..errors import ConfigError
from .checkpoint import (
    gather_rng,
    latest_checkpoint,
    load_optimizer,
    load_rng,
    save_optimizer,
    save_rng,
    write_checkpoint,
)
from .data import (
    Blocks,
    ConcatBlocks,
    TokenSet,
    artifact_fingerprint,
    collate,
    source_kind,
    tokenize_source,
)
from .methods import (
    METHODS,
    RecAdam,
    checkpoint_kind,
    parameter_groups,
    replay_schedule,
)
from .models import (
    base_reference,
    build_model,
    load_model_part,
    load_tokenizer,
    max_positions,
    model_fingerprint,
    read_checkpoint_info,
    resolve_start,
    save_model_part,
)

log = logging.getLogger("twiki")

# Fields that change how a run is operated, not what it computes: a resume may change them.
OPERATIONAL = frozenset({"save_every", "log_every", "eval_every", "cache_dir", "threads",
                         "device", "precision", "gradient_checkpointing"})
# Bump when what a run computes from the same inputs changes: older runs are then stale.
TRAIN_VERSION = 2
PRECISIONS = ("auto", "fp32", "bf16-mixed", "fp16-mixed")


@dataclass(frozen=True)
class TrainConfig:
    """One month's continued pretraining. Defaults follow TemporalWiki's GPT-2 runs where they
    say something (lr 1e-4, 512-token inputs, one epoch, 10% warmup then linear decay)."""

    run_dir: str
    """The run folder, data/runs/<name>/: checkpoints, logs, result."""
    model: str
    """Where training starts: a Hugging Face causal LM (hub name or local folder), or a twiki
    run/checkpoint folder, which is how a chain of months goes on (C starts from B's run)."""
    train_data: str
    """Month B's text: a diffset or snapshot artifact folder, or Parquet with title + text."""
    method: str = "diff"
    """One of full, diff, lora, recadam, mixreview, kadapter (see twiki.lm.methods)."""
    tokenizer: str | None = None
    """Tokenizer to use; None: the starting model's (a chain keeps its first tokenizer)."""
    replay_data: tuple[str, ...] = ()
    """mixreview only: earlier-month text mixed into the batches (e.g. month A's snapshot)."""
    cache_dir: str | None = None
    """Where token caches go; None: <run_dir>/tokens. Runs that share one tokenize a month once."""
    prepend_title: bool = True
    """Start every document with its title line (the diffset's edited text then says whose it is)."""
    heldout_permille: int = 10
    """Pages (by a hash of page_id) whose text is held out of training for held-out
    perplexity, in thousandths: 10 = 1%. A held-out page takes its probe evidence with it
    (its Changed probes can never be learned), so evaluation reports the probes of held-out
    pages apart from Un / C; 0 holds out nothing (the paper preset)."""
    block_size: int = 512
    """Tokens per training row: TemporalWiki's GPT-2 input length."""
    micro_batch_size: int = 8
    """Rows per forward/backward pass."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (TemporalWiki: 8 GPUs x 8 rows = 64 rows a step)."""
    learning_rate: float = 1e-4
    """Peak learning rate (TemporalWiki: 1e-4)."""
    min_lr: float = 0.0
    """Learning rate at the end of the decay."""
    warmup: float = 0.1
    """Share of the steps spent warming up linearly (TemporalWiki: 10%)."""
    lr_schedule: str = "linear"
    """Decay after warmup: linear (TemporalWiki's WarmupDecayLR), cosine, or constant."""
    weight_decay: float = 0.0
    """Decoupled weight decay of matrices (biases and norms never decay)."""
    beta1: float = 0.9
    """Adam's first-moment decay."""
    beta2: float = 0.999
    """Adam's second-moment decay."""
    eps: float = 1e-8
    """Adam's epsilon."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this; 0 turns clipping off."""
    epochs: float = 1.0
    """Passes over the month's text (TemporalWiki: 1), unless max_tokens or max_steps is set."""
    max_tokens: int | None = None
    """Token budget: steps = ceil(max_tokens / tokens per step). Reported with what was seen."""
    max_steps: int | None = None
    """Fixed number of optimizer steps (smoke tests, benchmarks); overrides the two above."""
    seed: int = 1234
    """Seeds data order, initial adapter weights and dropout."""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu, cuda, cuda:N."""
    precision: str = "auto"
    """auto (bf16-mixed on a GPU that has bf16, fp16-mixed with a grad scaler on one that
    has not, fp32 on the CPU), fp32, bf16-mixed, fp16-mixed."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of keeping them: much less memory
    for long blocks or big models, about a third more compute; the same numbers."""
    threads: int | None = None
    """torch CPU threads; None: torch's default. 1 is fastest for small models on a busy
    machine (measured: 15x faster than 2 threads for the tiny GPT-2 on 2 shared cores)."""
    save_every: int = 1000
    """Steps between checkpoints (and one at the end)."""
    log_every: int = 10
    """Steps between log lines."""
    eval_every: int = 0
    """Steps between held-out loss estimates; 0: only at the end."""
    eval_blocks: int = 32
    """Held-out blocks in each loss estimate."""
    lora_r: int = 16
    """lora: rank of the update matrices."""
    lora_alpha: int = 32
    """lora: scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """lora: dropout on the adapter's input."""
    lora_targets: tuple[str, ...] | None = None
    """lora: module names to adapt; None: peft's default for the model type (GPT-2: c_attn)."""
    recadam_gamma: float = 5000.0
    """recadam: strength of the quadratic pull (RecAdam's pretrain_cof; its default 5000)."""
    recadam_k: float = 0.5
    """recadam: slope of the sigmoid annealing (RecAdam's default 0.5)."""
    recadam_t0: float = 250.0
    """recadam: step where the task loss reaches half weight (RecAdam's default 250)."""
    recadam_w: float = 1.0
    """recadam: the annealing's ceiling: task weight lambda(t) -> w, pull weight w - lambda(t)."""
    mix_ratio: float = 0.3
    """mixreview: share of a step's rows that are replayed earlier-month text at the start."""
    mix_decay: float = 0.7
    """mixreview: the share is multiplied by this for every epoch of new text seen."""
    kadapter_size: int | None = None
    """kadapter: adapter width; None: a quarter of the model's hidden size."""
    kadapter_heads: int = 4
    """kadapter: attention heads of each adapter block."""
    kadapter_layers: tuple[int, ...] | None = None
    """kadapter: base layers whose output feeds an adapter block (1-based); None: first,
    middle and last."""

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(msg)

        if self.method not in METHODS:
            bad(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not self.run_dir or not self.model or not self.train_data:
            bad("run_dir, model and train_data are required")
        if self.block_size < 2 or self.micro_batch_size < 1 or self.grad_accum < 1:
            bad("block_size must be >= 2, micro_batch_size and grad_accum >= 1")
        if not 0 <= self.heldout_permille < 1000:
            bad(f"heldout_permille must be in [0, 1000), not {self.heldout_permille}")
        if self.learning_rate <= 0 or not 0 <= self.min_lr <= self.learning_rate:
            bad("learning_rate must be > 0 and 0 <= min_lr <= learning_rate")
        if not 0 <= self.warmup < 1:
            bad(f"warmup is a share of the steps, in [0, 1), not {self.warmup}")
        if self.lr_schedule not in ("linear", "cosine", "constant"):
            bad(f"lr_schedule must be linear, cosine or constant, not {self.lr_schedule!r}")
        if self.epochs <= 0 or (self.max_tokens is not None and self.max_tokens <= 0) or (
                self.max_steps is not None and self.max_steps <= 0):
            bad("epochs, max_tokens and max_steps must be positive")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            bad(f"device must be auto, cpu or cuda[:N], not {self.device!r}")
        if self.precision not in PRECISIONS:
            bad(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            bad("threads must be >= 1")
        if self.save_every < 1 or self.log_every < 1 or self.eval_every < 0:
            bad("save_every and log_every must be >= 1, eval_every >= 0")
        if self.method == "mixreview":
            if not self.replay_data:
                bad("mixreview needs replay_data: earlier-month text to mix in")
            if not 0 < self.mix_ratio < 1 or not 0 < self.mix_decay <= 1:
                bad("mix_ratio must be in (0, 1) and mix_decay in (0, 1]")
        elif self.replay_data:
            bad(f"replay_data is only used by mixreview, not {self.method}")
        if self.method == "recadam":
            if self.recadam_gamma <= 0 or self.recadam_w <= 0 or self.recadam_k <= 0:
                bad("recadam_gamma, recadam_w and recadam_k must be > 0")
            # The pull is p -= lr * (w - lambda) * gamma * (p - p0): past 1 it overshoots the
            # starting weights, past 2 it diverges.
            if self.learning_rate * self.recadam_gamma * self.recadam_w > 1:
                bad(f"recadam: learning_rate x recadam_gamma x recadam_w = "
                    f"{self.learning_rate * self.recadam_gamma * self.recadam_w:g} > 1 makes the "
                    f"pull overshoot the starting weights; lower recadam_gamma")
        if self.method == "lora" and (self.lora_r < 1 or self.lora_alpha < 1
                                      or not 0 <= self.lora_dropout < 1):
            bad("lora_r and lora_alpha must be >= 1, lora_dropout in [0, 1)")
        if self.method == "kadapter" and (self.kadapter_heads < 1 or (
                self.kadapter_size is not None and self.kadapter_size % self.kadapter_heads)):
            bad("kadapter_size must be a multiple of kadapter_heads")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """From TOML/JSON values: lists become tuples, an unknown key is a clear error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class TrainResult:
    """What a run did: written to result.json and returned by train()."""

    run_dir: str
    method: str
    finished: bool
    step: int
    max_steps: int
    tokens_seen: int
    """Target tokens trained on (replay included)."""
    replay_tokens_seen: int
    token_budget: int
    """Target tokens the planned steps hold (max_steps x rows x block_size, at most)."""
    train_tokens_available: int
    """Target tokens of the month's training split (one epoch)."""
    train_documents: int
    data_kind: str
    train_seconds: float
    """Wall time in the training loop, all resumes added up."""
    tokens_per_s: float
    final_loss: float | None
    heldout_loss: float | None
    checkpoint: str
    device: str
    precision: str
    trainable_params: int
    total_params: int
    world_size: int = 1
    """Data-parallel processes (torchrun); tokens_seen counts all of them."""
    inputs_key: str = ""
    """sha256 of train_inputs(): the same key, the same run."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# Setup helpers


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name} asked for but no CUDA GPU is visible")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> str:
    if name not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    if name == "auto":
        if device.type != "cuda":
            return "fp32"
        # bf16 where the GPU has it (Ampere and later); fp16 with a grad scaler before that.
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "fp16-mixed"
    if name != "fp32" and device.type != "cuda":
        raise ConfigError(f"{name} is for GPUs; use fp32 on the CPU")
    return name


def autocast(device: torch.device, precision: str):
    if precision == "bf16-mixed":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp16-mixed":
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def train_inputs(cfg: TrainConfig) -> dict:
    """Everything a run's weights depend on: its settings (less the operational ones and
    the paths), the start model's fingerprint (a run's own key, for a chain of months), and
    the training and replay text's (their artifact manifests' or files' hashes)."""
    settings = {k: v for k, v in cfg.to_dict().items()
                if k not in OPERATIONAL | {"run_dir", "model", "train_data", "replay_data",
                                           "tokenizer"}}
    return {"version": TRAIN_VERSION, "settings": settings,
            "start": model_fingerprint(cfg.model),
            "tokenizer": model_fingerprint(cfg.tokenizer) if cfg.tokenizer else None,
            "train_data": artifact_fingerprint(cfg.train_data),
            "replay_data": [artifact_fingerprint(p) for p in cfg.replay_data]}


def train_inputs_key(cfg: TrainConfig) -> str:
    return hashlib.sha256(canonical_json(train_inputs(cfg)).encode()).hexdigest()


def recorded_inputs_key(run_dir: str | Path) -> str | None:
    """The inputs key a run folder was trained with (its result, else its checkpoint); None
    when it has neither, or was made before runs were keyed."""
    run_dir = Path(run_dir)
    if (run_dir / "result.json").exists():
        return json.loads((run_dir / "result.json").read_text()).get("inputs_key") or None
    ckpt = latest_checkpoint(run_dir)
    return read_checkpoint_info(ckpt).get("inputs_key") if ckpt is not None else None


@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel run (torchrun's environment); one process
    without it."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _start_dist(dist: Dist, device: torch.device) -> None:
    if dist.world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")


def _all_sum(value: float, dist: Dist) -> float:
    if dist.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return float(t[0])


def _enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """HF gradient checkpointing on the transformer inside any method's wrapper (non-reentrant:
    it needs no input that requires grad, so frozen bases under adapters work too)."""
    hf = model.base if hasattr(model, "adapter_config") else model
    hf = hf.get_base_model() if hasattr(hf, "get_base_model") else hf
    if not getattr(hf, "supports_gradient_checkpointing", False):
        raise ConfigError(f"{type(hf).__name__} does not support gradient checkpointing")
    kwargs = {"use_reentrant": False}
    if hasattr(hf, "activation_checkpointing_enable"):   # transformers >= 5 names it so
        hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def get_lr(step: int, cfg: TrainConfig, max_steps: int) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup, then the decay."""
    warmup = int(cfg.warmup * max_steps)
    if step < warmup:
        return cfg.learning_rate * (step + 1) / (warmup + 1)
    if cfg.lr_schedule == "constant" or max_steps <= warmup:
        return cfg.learning_rate
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    scale = 1 - progress if cfg.lr_schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.min_lr + scale * (cfg.learning_rate - cfg.min_lr)


def lm_loss_sum(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over the unmasked targets."""
    logits = model(input_ids=x).logits
    loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1), reduction="none")
    return (loss * mask.view(-1)).sum()


class TrainData:
    """The batches of a run: a pure function of (seed, step) over the packed blocks.

    Row j of the main text (counting across steps) is block perm_e[j mod n] with e = j div n,
    perm_e a seeded permutation per epoch; the same for the replay text. Step t takes
    rows_per_step - r_t main rows and r_t replay rows (r_t from replay_schedule, 0 but for
    mixreview), shuffled together with a per-step seed, then cut into micro-batches of
    micro_batch_size x world rows, of which process `rank` takes its own micro_batch_size.
    """

    def __init__(self, main: Blocks, replay: Blocks | ConcatBlocks | None, replay_rows: list[int], *,
                 seed: int, micro_batch_size: int, grad_accum: int, pad_id: int,
                 rank: int = 0, world: int = 1):
        self.main, self.replay = main, replay
        self.seed = seed
        self.micro, self.accum = micro_batch_size, grad_accum
        self.rank, self.world = rank, world
        self.rows_per_step = micro_batch_size * grad_accum * world
        self.pad_id = pad_id
        self.replay_rows = replay_rows
        self._replay_before = np.concatenate([[0], np.cumsum(replay_rows)]).astype(np.int64)
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def _block(self, source: int, j: int) -> int:
        blocks = self.main if source == 0 else self.replay
        n = len(blocks)
        epoch, i = divmod(j, n)
        key = (source, epoch)
        if key not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[key] = np.random.default_rng([self.seed, source, epoch]).permutation(n)
        return int(self._perms[key][i])

    def rows(self, step: int) -> list[tuple[str, int]]:
        """The (source, block index) rows of step `step` (all processes'), in batch order."""
        r = int(self.replay_rows[step]) if step < len(self.replay_rows) else 0
        before = int(self._replay_before[min(step, len(self.replay_rows))])
        main_before = step * self.rows_per_step - before
        rows = [("main", self._block(0, main_before + k)) for k in range(self.rows_per_step - r)]
        rows += [("replay", self._block(1, before + k)) for k in range(r)]
        order = np.random.default_rng([self.seed, 2, step]).permutation(len(rows))
        return [rows[i] for i in order]

    def _source(self, name: str):
        return self.main if name == "main" else self.replay

    def step_targets(self, step: int) -> tuple[int, int]:
        """(target tokens, of which replay) of step `step` over every process's rows: the
        loss is normalised by the first, so that it does not depend on the process count."""
        rows = self.rows(step)
        total = sum(self._source(s).targets(i) for s, i in rows)
        return total, sum(self._source(s).targets(i) for s, i in rows if s == "replay")

    def get_batch(self, step: int):
        """This process's micro-batches of step `step`: (x, y, loss_mask, replay_mask) each."""
        rows = self.rows(step)
        width = self.micro * self.world
        out = []
        for m in range(self.accum):
            chunk = rows[m * width:(m + 1) * width][self.rank * self.micro:(self.rank + 1) * self.micro]
            windows = [self._source(s).window(i) for s, i in chunk]
            x, y, mask = collate(windows, self.main.block_size, self.pad_id)
            replay = torch.tensor([s == "replay" for s, _ in chunk])
            out.append((x, y, mask, replay))
        return out


def plan_steps(cfg: TrainConfig, main_blocks: int, world: int = 1) -> tuple[int, list[int]]:
    """(max_steps, replay rows per step) from the budget: max_steps, else max_tokens, else
    epochs over the month's text (replay rows come on top of it, as in Mix-review)."""
    rows = cfg.micro_batch_size * cfg.grad_accum * world
    mix = dict(ratio=cfg.mix_ratio, decay=cfg.mix_decay)
    if cfg.max_steps is not None:
        steps = cfg.max_steps
    elif cfg.max_tokens is not None:
        steps = math.ceil(cfg.max_tokens / (rows * cfg.block_size))
    elif cfg.method == "mixreview":
        steps = len(replay_schedule(rows, main_blocks, epochs=cfg.epochs, **mix))
    else:
        steps = math.ceil(cfg.epochs * main_blocks / rows)
    steps = max(1, steps)
    if cfg.method != "mixreview":
        return steps, [0] * steps
    return steps, replay_schedule(rows, main_blocks, max_steps=steps, **mix)


def _check_data_kind(cfg: TrainConfig, kind: str) -> None:
    if cfg.method == "full" and kind == "diffset":
        raise ConfigError(f"method full trains on month B's whole snapshot, but {cfg.train_data} "
                          f"is a diffset: use method diff, or give the snapshot")
    if cfg.method == "diff" and kind == "snapshot":
        raise ConfigError(f"method diff trains on the diffset, but {cfg.train_data} is a "
                          f"snapshot: use method full, or give the diffset")


def _check_config(run_dir: Path, cfg: TrainConfig) -> None:
    """A run that has trained (it has a checkpoint) resumes only with the same settings."""
    path = run_dir / "train_config.json"
    if not path.exists() or latest_checkpoint(run_dir) is None:
        return
    old = json.loads(path.read_text())
    new = cfg.to_dict()
    diff = sorted(k for k in set(old) | set(new)
                  if k not in OPERATIONAL and old.get(k) != new.get(k))
    if diff:
        raise ConfigError(f"run {run_dir} was started with other settings ({', '.join(diff)} "
                          f"differ): give the run another name, or delete the folder to start over")


def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2,
                                                          sort_keys=True) + "\n")


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, blocks: Blocks | None, n: int, batch: int,
                  device: torch.device, precision: str, pad_id: int) -> float | None:
    """Mean next-token loss on the first n blocks (deterministic), or None without blocks."""
    if blocks is None or len(blocks) == 0:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, min(n, len(blocks)), batch):
        idx = range(start, min(start + batch, n, len(blocks)))
        x, y, mask = collate([blocks.window(i) for i in idx], blocks.block_size, pad_id)
        with autocast(device, precision):
            total += float(lm_loss_sum(model, x.to(device), y.to(device), mask.to(device)))
        count += int(mask.sum())
    model.train(was_training)
    return total / count


# ---------------------------------------------------------------------------------------
# The loop, in phases: setup, resume, the steps, the result


@dataclass
class _Setup:
    """What one call of train() trains with, built by its setup phase."""

    device: torch.device
    precision: str
    tokenizer: Any
    pad_id: int
    data_kind: str
    train_set: TokenSet
    main: Blocks
    heldout: Blocks | None
    data: TrainData
    max_steps: int
    model: torch.nn.Module
    named: list[tuple[str, torch.nn.Parameter]]
    """The trainable parameters, by name."""
    total_params: int
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    names: dict[int, str]
    """A parameter's index in the optimizer state -> its name (checked on resume)."""
    base: str | None
    """The frozen base model of an adapter run (base_reference)."""

    @property
    def trainable(self) -> int:
        return sum(p.numel() for _, p in self.named)


@dataclass
class _Progress:
    """Where a run is: from its checkpoint (or zero), advanced by every step."""

    step: int = 0
    tokens_seen: int = 0
    replay_seen: int = 0
    train_seconds: float = 0.0
    """In the training loop, all resumes added up."""
    last_loss: float | None = None
    call_tokens: int = 0
    """Target tokens of this call alone (its throughput)."""
    call_seconds: float = 0.0


def train(cfg: TrainConfig, *, stop_at_step: int | None = None) -> TrainResult:
    """Train one month (resuming from the run's checkpoint if there is one).

    A finished run is a no-op that returns its result. stop_at_step: save a checkpoint and
    return after that step, as if the process had been killed there (tests, time slices).
    Under torchrun (WORLD_SIZE > 1) every process calls this; rank 0 writes the run folder.
    """
    run_dir = Path(cfg.run_dir)
    result_path = run_dir / "result.json"
    dist = Dist.from_env()
    _check_config(run_dir, cfg)
    key = train_inputs_key(cfg)
    recorded = recorded_inputs_key(run_dir)
    if recorded is not None and recorded != key:
        raise ConfigError(f"run {run_dir} was trained from other inputs (its start model, its "
                          f"text or its settings have changed since): give the run another "
                          f"name, or delete the folder to train it again")
    if result_path.exists():
        done = json.loads(result_path.read_text())
        if done.get("finished"):
            log.info("run %s is finished (%d steps): nothing to do", run_dir, done["step"])
            return TrainResult(**done)

    s = _setup(cfg, run_dir, dist)
    progress = _resume(cfg, run_dir, s, dist)
    log.info("train %s: %s on %s (%s, %d tokens, %d blocks of %d), %d steps of %d rows, "
             "%s/%s x %d, %d of %d parameters trainable", run_dir.name, cfg.method,
             cfg.train_data, s.data_kind, s.train_set.n_tokens, len(s.main), cfg.block_size,
             s.max_steps, s.data.rows_per_step, s.device, s.precision, dist.world, s.trainable,
             s.total_params)
    _loop(cfg, run_dir, s, progress, dist, key, stop_at_step)
    return _result(cfg, run_dir, s, progress, dist, key)


def _setup(cfg: TrainConfig, run_dir: Path, dist: Dist) -> _Setup:
    """The device, the tokenizer, the packed text and its batches, the model and its
    optimizer. The seed is set before the start model is resolved and built (adapter weights,
    dropout)."""
    device, precision = _hardware(cfg, dist)
    torch.manual_seed(cfg.seed)
    start = resolve_start(cfg.model)
    tokenizer = load_tokenizer(cfg.tokenizer or start.tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    data_kind = source_kind(cfg.train_data)
    _check_data_kind(cfg, data_kind)
    train_set, main, replay, heldout = _text(cfg, tokenizer, run_dir, dist)
    max_steps, replay_rows = plan_steps(cfg, len(main), dist.world)
    data = TrainData(main, replay, replay_rows, seed=cfg.seed, micro_batch_size=cfg.micro_batch_size,
                     grad_accum=cfg.grad_accum, pad_id=pad_id, rank=dist.rank, world=dist.world)

    model = _model(cfg, start, device)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = _optimizer(cfg, named)
    # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (scaler is off).
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16-mixed")
    param_name = {id(p): n for n, p in named}
    order = [param_name[id(p)] for g in optimizer.param_groups for p in g["params"]]
    return _Setup(device, precision, tokenizer, pad_id, data_kind, train_set, main, heldout, data,
                  max_steps, model, named, sum(p.numel() for p in model.parameters()), optimizer,
                  scaler, dict(enumerate(order)), base_reference(cfg.method, start))


def _hardware(cfg: TrainConfig, dist: Dist) -> tuple[torch.device, str]:
    """(device, precision); joins the data-parallel group under torchrun."""
    device = pick_device(cfg.device)
    if dist.world > 1 and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    precision = pick_precision(cfg.precision, device)
    _start_dist(dist, device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    return device, precision


def _text(cfg: TrainConfig, tokenizer, run_dir: Path, dist: Dist
          ) -> tuple[TokenSet, Blocks, ConcatBlocks | None, Blocks | None]:
    """(training split, its blocks, the replay text's blocks, the held-out blocks). Rank 0
    tokenizes; the other processes then read its caches."""
    cache = Path(cfg.cache_dir) if cfg.cache_dir else run_dir / "tokens"
    tok_args = dict(heldout_permille=cfg.heldout_permille, prepend_title=cfg.prepend_title)

    def tokenized():
        train_set = tokenize_source(cfg.train_data, tokenizer, cache, split="train", **tok_args)
        heldout_set = tokenize_source(cfg.train_data, tokenizer, cache, split="heldout",
                                      **tok_args)
        replay_sets = [tokenize_source(p, tokenizer, cache, split="train", **tok_args)
                       for p in cfg.replay_data]
        return train_set, heldout_set, replay_sets

    if not dist.main:
        dist.barrier()
    train_set, heldout_set, replay_sets = tokenized()
    if dist.main:
        dist.barrier()
    main = Blocks(train_set.tokens, cfg.block_size)
    if len(main) == 0:
        raise ConfigError(f"{cfg.train_data} has no training text left "
                          f"({train_set.meta['documents']} documents, {train_set.n_tokens} tokens)")
    replay = None
    if cfg.replay_data:
        replay = ConcatBlocks([Blocks(s.tokens, cfg.block_size) for s in replay_sets])
        if len(replay) == 0:
            raise ConfigError(f"the replay text {cfg.replay_data} is empty")
    heldout = Blocks(heldout_set.tokens, cfg.block_size) if heldout_set.n_tokens > 1 else None
    return train_set, main, replay, heldout


def _model(cfg: TrainConfig, start, device: torch.device) -> torch.nn.Module:
    """The method's model on the device (block_size checked against its positions)."""
    model = build_model(cfg.method, start, cfg)
    limit = max_positions(model)
    if limit is not None and cfg.block_size > limit:
        raise ConfigError(f"block_size {cfg.block_size} is longer than the model's "
                          f"{limit} positions: lower block_size")
    if cfg.gradient_checkpointing:
        _enable_gradient_checkpointing(model)
    model.to(device)
    return model


def _optimizer(cfg: TrainConfig, named: list[tuple[str, torch.nn.Parameter]]
               ) -> torch.optim.Optimizer:
    groups = parameter_groups(iter(named), cfg.weight_decay)
    opt_args = dict(lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    if cfg.method == "recadam":
        # The anchors are the weights this month started from, taken before any resume.
        anchors = {p: p.detach().clone() for _, p in named}
        return RecAdam(groups, anchors, gamma=cfg.recadam_gamma, anneal_k=cfg.recadam_k,
                       anneal_t0=cfg.recadam_t0, anneal_w=cfg.recadam_w, **opt_args)
    # foreach on the CPU too (faster than the per-tensor loop); fused kernels are not
    # used so that CPU and GPU runs do the same arithmetic steps.
    return torch.optim.AdamW(groups, foreach=True, **opt_args)


def _resume(cfg: TrainConfig, run_dir: Path, s: _Setup, dist: Dist) -> _Progress:
    """Load the run's checkpoint into the model, optimizer, RNGs and scaler, and return where
    it was; a run without one starts at zero (and gets its train_config.json)."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        if dist.main:  # written once setup has passed: a bad try blocks nothing
            _write_config(run_dir, cfg)
        return _Progress()
    info = read_checkpoint_info(ckpt)
    if info.get("world_size", 1) != dist.world:
        raise ConfigError(f"run {run_dir} was started on {info.get('world_size', 1)} "
                          f"process(es); resume it on as many (its batches depend on it)")
    load_model_part(s.model, cfg.method, ckpt)
    load_optimizer(s.optimizer, s.names, ckpt)
    load_rng(ckpt, dist.rank)
    if info.get("grad_scaler") and s.scaler.is_enabled():
        s.scaler.load_state_dict(info["grad_scaler"])
    progress = _Progress(info["step"], info["tokens_seen"], info["replay_tokens_seen"],
                         info["train_seconds"], info.get("loss"))
    log.info("resuming %s at step %d of %d", run_dir, progress.step, s.max_steps)
    if dist.main:
        _trim_log(run_dir / "log.jsonl", progress.step)
    return progress


def _save(cfg: TrainConfig, run_dir: Path, s: _Setup, p: _Progress, dist: Dist, key: str,
          finished: bool) -> Path | None:
    """Write the checkpoint (rank 0; every process gives its RNG states)."""
    states = gather_rng(dist.world)
    path = None
    if dist.main:
        info = {"method": cfg.method, "kind": checkpoint_kind(cfg.method), "base": s.base,
                "step": p.step, "max_steps": s.max_steps, "tokens_seen": p.tokens_seen,
                "replay_tokens_seen": p.replay_seen, "train_seconds": p.train_seconds,
                "loss": p.last_loss, "finished": finished, "inputs_key": key,
                "world_size": dist.world,
                "grad_scaler": s.scaler.state_dict() if s.scaler.is_enabled() else None}

        def write(folder: Path) -> None:
            save_model_part(s.model, cfg.method, folder, s.tokenizer)
            save_optimizer(s.optimizer, s.names, folder)
            save_rng(folder, states)

        path = write_checkpoint(run_dir, write, info)
    dist.barrier()
    return path


def _loop(cfg: TrainConfig, run_dir: Path, s: _Setup, p: _Progress, dist: Dist, key: str,
          stop_at_step: int | None) -> None:
    """The steps from p.step to the end (or to stop_at_step), with log lines, held-out loss
    estimates and checkpoints."""
    ddp = None
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(s.model, device_ids=[s.device.index]
                                      if s.device.type == "cuda" else None)
    s.model.train()
    run_dir.mkdir(parents=True, exist_ok=True)
    logf = open(run_dir / "log.jsonl", "a") if dist.main else None
    try:
        while p.step < s.max_steps:
            t0 = time.perf_counter()
            lr = get_lr(p.step, cfg, s.max_steps)
            loss, targets, replay = _step(cfg, s, p.step, lr, dist, ddp)
            p.step += 1
            p.tokens_seen += targets
            p.replay_seen += replay
            p.call_tokens += targets
            p.train_seconds += time.perf_counter() - t0
            p.call_seconds += time.perf_counter() - t0
            p.last_loss = loss
            heldout_loss = None
            if cfg.eval_every and p.step % cfg.eval_every == 0:
                heldout_loss = estimate_loss(s.model, s.heldout, cfg.eval_blocks,
                                             cfg.micro_batch_size, s.device, s.precision, s.pad_id)
            if logf is not None and (p.step % cfg.log_every == 0 or p.step == s.max_steps
                                     or heldout_loss is not None):
                _log_step(logf, p, lr, heldout_loss, s.max_steps)
            if p.step % cfg.save_every == 0 or p.step == s.max_steps:
                _save(cfg, run_dir, s, p, dist, key, finished=p.step == s.max_steps)
            if stop_at_step is not None and p.step >= stop_at_step and p.step < s.max_steps:
                if p.step % cfg.save_every:
                    _save(cfg, run_dir, s, p, dist, key, finished=False)
                break
    finally:
        if logf is not None:
            logf.close()


def _step(cfg: TrainConfig, s: _Setup, step: int, lr: float, dist: Dist, ddp
          ) -> tuple[float, int, int]:
    """One optimizer step: (its loss, its target tokens, of which replay)."""
    for g in s.optimizer.param_groups:
        g["lr"] = lr
    batch = s.data.get_batch(step)
    step_targets, step_replay = s.data.step_targets(step)
    train_model = ddp if ddp is not None else s.model
    loss_total = 0.0
    for m, (x, y, mask, _) in enumerate(batch):
        x, y, mask = x.to(s.device), y.to(s.device), mask.to(s.device)
        # Gradients are averaged over the processes only at the last micro-batch.
        sync = ddp is None or m == len(batch) - 1
        with contextlib.nullcontext() if sync else ddp.no_sync():
            with autocast(s.device, s.precision):
                loss = lm_loss_sum(train_model, x, y, mask) / step_targets
            # DDP averages over the processes; the loss is a share of the global sum.
            s.scaler.scale(loss * dist.world).backward()
        loss_total += float(loss.detach())
    loss_total = _all_sum(loss_total, dist)
    if cfg.grad_clip > 0:
        s.scaler.unscale_(s.optimizer)
        torch.nn.utils.clip_grad_norm_([p for _, p in s.named], cfg.grad_clip)
    s.scaler.step(s.optimizer)
    s.scaler.update()
    s.optimizer.zero_grad(set_to_none=True)
    return loss_total, step_targets, step_replay


def _log_step(logf, p: _Progress, lr: float, heldout_loss: float | None, max_steps: int) -> None:
    line = {"step": p.step, "loss": round(p.last_loss, 5), "lr": lr,
            "tokens_seen": p.tokens_seen, "replay_tokens_seen": p.replay_seen,
            "train_seconds": round(p.train_seconds, 3)}
    if heldout_loss is not None:
        line["heldout_loss"] = round(heldout_loss, 5)
    logf.write(json.dumps(line) + "\n")
    logf.flush()
    log.info("step %d/%d loss %.4f lr %.2e tokens %d (%.0f tok/s)", p.step, max_steps,
             p.last_loss, lr, p.tokens_seen, p.tokens_seen / max(p.train_seconds, 1e-9))


def _result(cfg: TrainConfig, run_dir: Path, s: _Setup, p: _Progress, dist: Dist, key: str
            ) -> TrainResult:
    """The call's TrainResult; a finished run's gets its held-out loss and result.json."""
    finished = p.step >= s.max_steps
    heldout_loss = estimate_loss(s.model, s.heldout, cfg.eval_blocks, cfg.micro_batch_size,
                                 s.device, s.precision, s.pad_id) if finished else None
    result = TrainResult(
        run_dir=str(run_dir), method=cfg.method, finished=finished, step=p.step,
        max_steps=s.max_steps, tokens_seen=p.tokens_seen, replay_tokens_seen=p.replay_seen,
        token_budget=s.max_steps * s.data.rows_per_step * cfg.block_size,
        train_tokens_available=s.main.total_targets,
        train_documents=s.train_set.meta["documents"], data_kind=s.data_kind,
        train_seconds=round(p.train_seconds, 3),
        tokens_per_s=round(p.call_tokens / p.call_seconds, 1) if p.call_seconds > 0 else 0.0,
        final_loss=p.last_loss, heldout_loss=heldout_loss, checkpoint=str(run_dir / "checkpoint"),
        device=str(s.device), precision=s.precision, trainable_params=s.trainable,
        total_params=s.total_params, world_size=dist.world, inputs_key=key)
    if finished and dist.main:
        (run_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        log.info("run %s finished: %d steps, %d tokens seen (budget %d) in %.1f s",
                 run_dir.name, p.step, p.tokens_seen, result.token_budget, p.train_seconds)
    dist.barrier()
    return result


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint we resume from (they will be written again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))
