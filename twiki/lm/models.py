"""Models of the LM stage: where a run starts (a Hugging Face model or an earlier twiki run),
how each method wraps it, and how its weights go to and come from a checkpoint (safetensors).

A checkpoint's `model/` folder is, by method:
  full, diff, recadam, mixreview  a whole Hugging Face model (save_pretrained) + tokenizer:
                                  loadable with AutoModelForCausalLM.from_pretrained
  lora                            a peft adapter (adapter_model.safetensors, adapter_config.json)
                                  + tokenizer; the frozen base is named in twiki_checkpoint.json
  kadapter                        kadapter.safetensors + kadapter.json + tokenizer; base likewise
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, InputError
from .methods import (
    FULL_WEIGHT_METHODS,
    KAdapterLM,
    add_lora,
    checkpoint_kind,
    default_kadapter_layers,
    quiet_peft,
)

CHECKPOINT_INFO = "twiki_checkpoint.json"
KADAPTER_WEIGHTS = "kadapter.safetensors"
KADAPTER_CONFIG = "kadapter.json"


@dataclass(frozen=True)
class Start:
    """A resolved starting point. kind "hf" is a plain model (hub name or folder), "model" a
    whole-model twiki checkpoint, "lora"/"kadapter" an adapter checkpoint over `base`."""

    kind: str
    model: str                 # what from_pretrained loads: the model, or the adapter's base
    checkpoint: Path | None    # the twiki checkpoint folder, if any
    tokenizer: str             # where the tokenizer is

    @property
    def adapter_dir(self) -> Path:
        assert self.checkpoint is not None
        return self.checkpoint / "model"


def find_checkpoint(ref: str | Path) -> Path | None:
    """The checkpoint folder of a run folder or a checkpoint folder; None for anything else."""
    p = Path(ref)
    if (p / CHECKPOINT_INFO).is_file():
        return p
    if (p / "checkpoint" / CHECKPOINT_INFO).is_file():
        return p / "checkpoint"
    return None


def read_checkpoint_info(checkpoint: Path) -> dict:
    return json.loads((checkpoint / CHECKPOINT_INFO).read_text())


def resolve_start(ref: str, *, require_finished: bool = True) -> Start:
    """Where a run starts: a twiki run/checkpoint (a chain of months) or a Hugging Face model."""
    ckpt = find_checkpoint(ref)
    if ckpt is None:
        p = Path(ref)
        if p.exists() and p.is_dir() and not (p / "config.json").exists():
            raise InputError(f"{ref} is neither a Hugging Face model folder (no config.json) "
                             f"nor a twiki run or checkpoint (no {CHECKPOINT_INFO})")
        model = str(p.resolve()) if p.exists() else ref
        return Start("hf", model, None, model)
    info = read_checkpoint_info(ckpt)
    if require_finished and not info.get("finished"):
        raise ConfigError(f"run {ckpt.parent} stopped at step {info.get('step')} of "
                          f"{info.get('max_steps')}: finish it (run the same train command "
                          f"again) before starting the next month from it")
    kind = info["kind"]
    model_dir = str((ckpt / "model").resolve())
    base = model_dir if kind == "model" else info["base"]
    return Start(kind, base, ckpt.resolve(), model_dir)


def model_fingerprint(ref: str) -> dict:
    """What identifies a model's weights, for keying results by their inputs: a twiki run by
    its training key (which holds its own start's fingerprint, so a chain of months is keyed
    all the way down) and step; a local folder by its files' sha256; a hub name by its name."""
    from .data import folder_fingerprint

    ckpt = find_checkpoint(ref)
    if ckpt is not None:
        info = read_checkpoint_info(ckpt)
        if info.get("inputs_key"):
            return {"run": info["inputs_key"], "step": info.get("step")}
        return {"checkpoint": folder_fingerprint(ckpt / "model"), "step": info.get("step")}
    p = Path(ref)
    if p.is_dir():
        return {"folder": folder_fingerprint(p)}
    return {"hub": ref}


def _quiet_transformers() -> None:
    """No per-file progress bars from transformers: our own log says what is loading."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    _quiet_transformers()

    try:
        tok = AutoTokenizer.from_pretrained(ref)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load a tokenizer from {ref!r}: {e}") from e
    if tok.eos_token_id is None:
        raise ConfigError(f"the tokenizer of {ref!r} has no EOS token; documents are "
                          f"separated by EOS, so it needs one")
    return tok


def load_hf_model(ref: str) -> nn.Module:
    """A causal LM in float32 (the master weights; bf16 comes from autocast on a GPU)."""
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    try:
        # safetensors only: a pickled checkpoint (pytorch_model.bin) can run code on load.
        return AutoModelForCausalLM.from_pretrained(ref, dtype=torch.float32,
                                                    use_safetensors=True)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot load a causal LM from {ref!r} (safetensors weights are "
                         f"required; convert a .bin checkpoint first): {e}") from e


def _merged_lora(start: Start) -> nn.Module:
    from peft import PeftModel

    with quiet_peft():
        return PeftModel.from_pretrained(load_hf_model(start.model),
                                         start.adapter_dir).merge_and_unload()


def _kadapter_from(start: Start, base: nn.Module) -> KAdapterLM:
    cfg = json.loads((start.adapter_dir / KADAPTER_CONFIG).read_text())
    model = KAdapterLM(base, cfg["size"], cfg["heads"], cfg["layers"])
    load_model_part(model, "kadapter", start.checkpoint)
    return model


def build_model(method: str, start: Start, cfg) -> nn.Module:
    """The module a method trains, starting from `start`; `cfg` is the TrainConfig.

    Chains: a whole-model start feeds any method; a LoRA start continues its adapter (lora) or
    is merged into its base (other methods); a K-Adapter start continues only as kadapter.
    """
    if start.kind == "kadapter" and method != "kadapter":
        raise ConfigError(f"a K-Adapter checkpoint ({start.checkpoint}) can only be continued "
                          f"with method kadapter, not {method}")
    if start.kind == "lora" and method == "kadapter":
        raise ConfigError(f"a LoRA checkpoint ({start.checkpoint}) cannot start a K-Adapter "
                          f"run: its merged weights are saved nowhere for the adapter to "
                          f"build on; start from a whole-model run instead")
    if method == "lora" and start.kind == "lora":
        from peft import PeftModel

        with quiet_peft():
            return PeftModel.from_pretrained(load_hf_model(start.model), start.adapter_dir,
                                             is_trainable=True)
    if method == "kadapter" and start.kind == "kadapter":
        return _kadapter_from(start, load_hf_model(start.model))
    base = _merged_lora(start) if start.kind == "lora" else load_hf_model(start.model)
    if method in FULL_WEIGHT_METHODS:
        return base
    if method == "lora":
        return add_lora(base, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    if method == "kadapter":
        n = base.config.num_hidden_layers
        size = cfg.kadapter_size or base.config.hidden_size // 4
        layers = cfg.kadapter_layers or default_kadapter_layers(n)
        return KAdapterLM(base, size, cfg.kadapter_heads, layers)
    raise ConfigError(f"unknown method {method!r}")


def base_reference(method: str, start: Start) -> str | None:
    """For an adapter run, the frozen base model its checkpoint builds on."""
    return None if checkpoint_kind(method) == "model" else start.model


def max_positions(model: nn.Module) -> int | None:
    cfg = model.config
    for name in ("n_positions", "max_position_embeddings"):
        v = getattr(cfg, name, None)
        if isinstance(v, int):
            return v
    return None


# ---------------------------------------------------------------------------------------
# The model part of a checkpoint


def save_model_part(model: nn.Module, method: str, folder: Path, tokenizer) -> None:
    """Write `folder/model/`: the whole model, or only the adapter (safetensors, no pickle)."""
    from safetensors.torch import save_file

    out = folder / "model"
    out.mkdir(parents=True, exist_ok=True)
    kind = checkpoint_kind(method)
    if kind == "model" or kind == "lora":
        model.save_pretrained(out, safe_serialization=True)
    else:
        weights = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters()
                   if not n.startswith("base.")}
        save_file(weights, out / KADAPTER_WEIGHTS)
        (out / KADAPTER_CONFIG).write_text(json.dumps(model.adapter_config(), indent=2) + "\n")
    tokenizer.save_pretrained(out)


def load_model_part(model: nn.Module, method_or_kind: str, checkpoint: Path) -> None:
    """Load a checkpoint's weights into a model built for the same method, exactly."""
    from safetensors.torch import load_file

    folder = checkpoint / "model"
    kind = checkpoint_kind(method_or_kind) if method_or_kind != "model" else "model"
    if kind == "model":
        state: dict = {}
        files = sorted(folder.glob("model*.safetensors"))
        if not files:
            raise InputError(f"{folder} has no model*.safetensors")
        for f in files:
            state.update(load_file(f))
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = set(getattr(model, "_tied_weights_keys", None) or ())
        tied |= {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
        if unexpected or set(missing) - tied:
            raise InputError(f"{folder} does not fit the model: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
    elif kind == "lora":
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
    else:
        state = load_file(folder / KADAPTER_WEIGHTS)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("base.") for k in missing):
            raise InputError(f"{folder / KADAPTER_WEIGHTS} does not fit the K-Adapter: "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")


def load_trained(ref: str) -> tuple[nn.Module, object, dict]:
    """(model, tokenizer, info) of anything a run can start from or produce, for evaluation:
    a twiki run or checkpoint folder (finished or not), or a Hugging Face model."""
    start = resolve_start(ref, require_finished=False)
    tokenizer = load_tokenizer(start.tokenizer)
    if start.kind in ("hf", "model"):
        return load_hf_model(start.model), tokenizer, {"kind": start.kind, "model": start.model}
    info = read_checkpoint_info(start.checkpoint)
    if start.kind == "lora":
        from peft import PeftModel

        with quiet_peft():
            model = PeftModel.from_pretrained(load_hf_model(start.model), start.adapter_dir)
    else:
        model = _kadapter_from(start, load_hf_model(start.model))
    return model, tokenizer, {"kind": start.kind, "model": start.model, "step": info.get("step")}
