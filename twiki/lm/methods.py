"""The update methods of the LM stage and what makes each one really take effect.

- full / diff: every weight trained with AdamW; `full` reads month B's snapshot, `diff` its
  diffset (TemporalWiki's two baselines; the check that the data matches is in train.py).
- lora: peft LoRA matrices on the attention/MLP projections; every base weight frozen.
- recadam: RecAdam (Chen et al. 2020): Adam whose task step is scaled by an annealed
  lambda(t) = w / (1 + exp(-k (t - t0))) and which adds the step of the quadratic penalty
  (w - lambda(t)) * gamma * (theta - theta_start) to *every* parameter of *every* group, the
  anchors checked at construction (the original code's RecAdam never saw its anchors).
- mixreview: Mix-review (He et al. 2021): each batch mixes in rows of earlier-month text at a
  ratio that decays geometrically with the epochs of new text seen (see replay_schedule).
- kadapter: K-Adapter (Wang et al. 2021): adapter blocks fed by hidden states of a few layers
  of the frozen base; their output is added to the base's last hidden state before the LM head,
  so they are in the forward pass of every token (the original code built them and never
  used their output). The output projection starts at zero: at step 0 the model is the base.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("full", "diff", "lora", "recadam", "mixreview", "kadapter")
# Methods that train every weight of a plain Hugging Face model (their checkpoints are one).
FULL_WEIGHT_METHODS = ("full", "diff", "recadam", "mixreview")
ADAPTER_METHODS = ("lora", "kadapter")


def checkpoint_kind(method: str) -> str:
    """"model" (a whole HF model), "lora" or "kadapter": what a method's checkpoint holds."""
    return method if method in ADAPTER_METHODS else "model"


# ---------------------------------------------------------------------------------------
# K-Adapter


class AdapterBlock(nn.Module):
    """One K-Adapter layer: project a base hidden state down, add the previous adapter layer's
    output, then a small pre-norm causal transformer block in the adapter width."""

    def __init__(self, hidden: int, size: int, heads: int):
        super().__init__()
        if size % heads:
            raise ValueError(f"kadapter size {size} is not a multiple of its heads {heads}")
        self.heads = heads
        self.down = nn.Linear(hidden, size)
        self.ln1 = nn.LayerNorm(size)
        self.qkv = nn.Linear(size, 3 * size)
        self.proj = nn.Linear(size, size)
        self.ln2 = nn.LayerNorm(size)
        self.mlp = nn.Sequential(nn.Linear(size, 4 * size), nn.GELU(), nn.Linear(4 * size, size))

    def forward(self, h: torch.Tensor, prev: torch.Tensor | None,
                attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.down(h)
        if prev is not None:
            x = x + prev
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=-1)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


@dataclass
class LMOutput:
    logits: torch.Tensor


class KAdapterLM(nn.Module):
    """A frozen causal LM plus K-Adapter blocks that take part in every forward pass."""

    def __init__(self, base: nn.Module, size: int, heads: int, taps: Iterable[int]):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        hidden = base.config.hidden_size
        n_layers = base.config.num_hidden_layers
        self.taps = tuple(sorted(set(taps)))
        if not self.taps or not all(1 <= t <= n_layers for t in self.taps):
            raise ValueError(f"kadapter layers {self.taps} must lie in 1..{n_layers} "
                             f"(hidden state after that many base layers)")
        self.blocks = nn.ModuleList(AdapterBlock(hidden, size, heads) for _ in self.taps)
        self.out = nn.Linear(size, hidden)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def config(self):
        return self.base.config

    def adapter_config(self) -> dict:
        return {"size": self.blocks[0].down.out_features, "heads": self.blocks[0].heads,
                "layers": list(self.taps)}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, **_: object) -> LMOutput:
        out = self.base.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                   position_ids=position_ids, output_hidden_states=True,
                                   use_cache=False)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            t = input_ids.shape[1]
            causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
            mask = causal & attention_mask.bool()[:, None, None, :]
            # A padding query sees no real key; letting it see itself keeps its row finite.
            mask = mask | torch.eye(t, dtype=torch.bool, device=input_ids.device)
        a = None
        for tap, block in zip(self.taps, self.blocks):
            a = block(out.hidden_states[tap], a, mask)
        h = out.last_hidden_state + self.out(a)
        return LMOutput(logits=self.base.get_output_embeddings()(h))


def default_kadapter_layers(n_layers: int) -> tuple[int, ...]:
    """First, middle and last layer, as K-Adapter taps RoBERTa's layers 0, 11 and 23 of 24."""
    return tuple(sorted({1, max(1, n_layers // 2), n_layers}))


# ---------------------------------------------------------------------------------------
# LoRA


def add_lora(base: nn.Module, r: int, alpha: int, dropout: float,
             targets: tuple[str, ...] | None) -> nn.Module:
    """Wrap a model with fresh LoRA matrices (peft); the base weights are frozen by peft.

    targets None: peft's default modules for the model type when it has one (GPT-2: c_attn),
    else every linear layer.
    """
    from peft import LoraConfig, get_peft_model
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    from transformers.pytorch_utils import Conv1D

    if targets is None:
        targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(
            base.config.model_type, "all-linear")
    # GPT-2's projections are Conv1D (weights stored transposed): tell peft, not its warning.
    conv = any(isinstance(m, Conv1D) for m in base.modules())
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                     fan_in_fan_out=conv, task_type="CAUSAL_LM")
    with quiet_peft():
        return get_peft_model(base, cfg)


@contextlib.contextmanager
def quiet_peft():
    """peft calls a transformers API that v5 deprecates: not our users' concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


# ---------------------------------------------------------------------------------------
# RecAdam


def anneal_lambda(step: int, k: float, t0: float, w: float) -> float:
    """RecAdam's sigmoid annealing: the weight of the task loss at optimizer step `step`."""
    x = -k * (step - t0)
    return w / (1.0 + math.exp(x)) if x < 700 else 0.0


class RecAdam(torch.optim.Optimizer):
    """Adam with RecAdam's annealed quadratic pull toward the starting weights.

    Per parameter p with anchor p0 at step t: the Adam step (bias-corrected) is scaled by
    lambda(t), then p -= lr * (w - lambda(t)) * gamma * (p - p0), then the decoupled weight
    decay. The anchors are a dict {parameter: tensor}; every parameter of every group must
    have one of its shape, or construction fails (no silently unanchored group).
    """

    def __init__(self, params, anchors: dict[torch.Tensor, torch.Tensor], *, lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, gamma: float = 5000.0, anneal_k: float = 0.5,
                 anneal_t0: float = 250.0, anneal_w: float = 1.0):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, gamma=gamma,
                        anneal_k=anneal_k, anneal_t0=anneal_t0, anneal_w=anneal_w)
        super().__init__(params, defaults)
        self.anchors = anchors
        for i, group in enumerate(self.param_groups):
            if group["gamma"] <= 0 or group["anneal_w"] <= 0:
                raise ValueError(f"RecAdam group {i}: gamma and anneal_w must be > 0, or the "
                                 f"pull toward the starting weights is off")
            for p in group["params"]:
                a = anchors.get(p)
                if a is None or a.shape != p.shape:
                    raise ValueError(f"RecAdam group {i}: a parameter of shape "
                                     f"{tuple(p.shape)} has no anchor of that shape")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p,
                                                           memory_format=torch.preserve_format)
                state["step"] += 1
                t = int(state["step"].item())
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                g = p.grad.float() if p.grad.dtype != exp_avg.dtype else p.grad
                exp_avg.mul_(beta1).add_(g, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (exp_avg_sq / (1 - beta2 ** t)).sqrt_().add_(group["eps"])
                lam = anneal_lambda(t, group["anneal_k"], group["anneal_t0"], group["anneal_w"])
                step_size = group["lr"] * lam / (1 - beta1 ** t)
                anchor = self.anchors[p]
                pull = group["lr"] * (group["anneal_w"] - lam) * group["gamma"]
                diff = p - anchor.to(p.device, p.dtype)
                p.addcdiv_(exp_avg, denom, value=-step_size)
                p.add_(diff, alpha=-pull)
                if group["weight_decay"]:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss

    def distance(self) -> list[float]:
        """Per group, the squared distance of its parameters to their anchors."""
        return [sum(float((p.detach() - self.anchors[p].to(p.device, p.dtype)).pow(2).sum())
                    for p in g["params"]) for g in self.param_groups]


# ---------------------------------------------------------------------------------------
# Mix-review


def replay_schedule(rows_per_step: int, main_blocks: int, *, ratio: float, decay: float,
                    max_steps: int | None = None, epochs: float | None = None) -> list[int]:
    """Replay rows in each step's batch, step by step, for Mix-review.

    The replay share of a step's rows is ratio * decay ** e, where e is the number of epochs
    of new text seen before the step (Mix-review decays per epoch; this does it smoothly).
    Rows are rounded by error diffusion, so that over any span of steps the replay rows add up
    to the share asked for (a batch of 4 at 0.3 gives 1, 1, 2, 1, 1, 2, ...; a batch of 1
    is sometimes all replay). Runs until max_steps,
    or until the new text has been seen `epochs` times. ratio 0: no replay.
    """
    out: list[int] = []
    main_seen = 0
    target = 0.0
    while True:
        if max_steps is not None and len(out) >= max_steps:
            return out
        if max_steps is None and main_seen >= epochs * main_blocks:
            return out
        share = ratio * decay ** (main_seen / max(main_blocks, 1))
        before = round(target)
        target += share * rows_per_step
        replay = round(target) - before  # <= rows_per_step as share < 1
        out.append(replay)
        main_seen += rows_per_step - replay


def parameter_groups(named: Iterator[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """Two groups as nanoGPT makes them: matrices decay, biases and norms do not."""
    decay, no_decay = [], []
    for _, p in named:
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
