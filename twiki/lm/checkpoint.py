"""A run's checkpoint: everything needed to resume exactly, with no pickle anywhere.

data/runs/<name>/checkpoint/
  twiki_checkpoint.json   method, kind, base model, step, max_steps, tokens seen, time, finished
  model/                  the weights (see twiki.lm.models): a whole HF model or an adapter
  optimizer.safetensors   every per-parameter optimizer tensor, keyed "<index>.<name>"
  optimizer.json          the parameter groups (hyperparameters), scalar state, parameter names
  rng.safetensors         torch's CPU and every CUDA device's generator states, of every
                          data-parallel process

A new checkpoint is written beside the old one (checkpoint.partial/) and swapped in by renames,
so a kill at any moment leaves a complete checkpoint (checkpoint/ or checkpoint.old/).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import InputError
from .models import CHECKPOINT_INFO


def save_optimizer(optimizer: torch.optim.Optimizer, names: dict[int, str], folder: Path) -> None:
    """Optimizer state as safetensors + JSON. `names` maps a parameter's index in the state
    dict to its name, recorded so that loading into another model fails loudly."""
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{k}"] = v
    save_file(tensors, folder / "optimizer.safetensors")
    (folder / "optimizer.json").write_text(json.dumps(
        {"type": type(optimizer).__name__, "param_groups": sd["param_groups"],
         "scalars": scalars, "names": {str(i): n for i, n in names.items()}}, indent=1) + "\n")


def load_optimizer(optimizer: torch.optim.Optimizer, names: dict[int, str], folder: Path) -> None:
    from safetensors.torch import load_file

    meta = json.loads((folder / "optimizer.json").read_text())
    if meta["type"] != type(optimizer).__name__ or meta["names"] != {str(i): n for i, n in names.items()}:
        raise InputError(f"the optimizer state in {folder} belongs to another method or model "
                         f"({meta['type']}); delete the run folder to start over")
    state: dict[int, dict] = {}
    for key, v in load_file(folder / "optimizer.safetensors").items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> dict[str, torch.Tensor]:
    """This process's generator states: the CPU's and every visible CUDA device's."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda:{i}"] = st
    return states


def gather_rng(world: int) -> list[dict[str, torch.Tensor]]:
    """Every process's rng_state(), in rank order (all processes call it together)."""
    if world == 1:
        return [rng_state()]
    out: list = [None] * world
    torch.distributed.all_gather_object(out, rng_state())
    return out


def save_rng(folder: Path, states: list[dict[str, torch.Tensor]] | None = None) -> None:
    """Write rng.safetensors: rank 0's states as "cpu", "cuda:N", rank r's as "rank<r>.cpu"..."""
    from safetensors.torch import save_file

    flat = {}
    for rank, st in enumerate(states or [rng_state()]):
        prefix = f"rank{rank}." if rank else ""
        flat.update({prefix + k: v.contiguous() for k, v in st.items()})
    save_file(flat, folder / "rng.safetensors")


def load_rng(folder: Path, rank: int = 0) -> None:
    from safetensors.torch import load_file

    states = load_file(folder / "rng.safetensors")
    prefix = f"rank{rank}." if rank else ""
    torch.set_rng_state(states[prefix + "cpu"])
    if torch.cuda.is_available():
        if prefix + "cuda" in states:      # checkpoints before per-device states
            torch.cuda.set_rng_state(states[prefix + "cuda"])
        for i in range(torch.cuda.device_count()):
            if f"{prefix}cuda:{i}" in states:
                torch.cuda.set_rng_state(states[f"{prefix}cuda:{i}"], i)


def write_checkpoint(run_dir: Path, write: Callable[[Path], None], info: dict) -> Path:
    """Write a checkpoint with `write(folder)` then swap it in atomically; returns its path."""
    final = run_dir / "checkpoint"
    partial = run_dir / "checkpoint.partial"
    old = run_dir / "checkpoint.old"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(partial)
    (partial / CHECKPOINT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run (checkpoint/, else checkpoint.old/ when a kill
    came between the two renames of a swap)."""
    for name in ("checkpoint", "checkpoint.old"):
        p = run_dir / name
        if (p / CHECKPOINT_INFO).is_file():
            return p
    return None
