"""Throughput of the LM stage: training and evaluation tokens/s on the sample month pair
(pipelines.lm_samples), for the tiny GPT-2 on a CPU, a 124M GPT-2 (`--size small`, for a GPU)
or any local model folder (`--model`).

    .venv/bin/python -m benchmarks.bench_lm --out data/bench/lm [--size small] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from pipelines.lm_samples import (SIZES, build_model, build_sample_pair, build_tokenizer,
                                  sample_texts)
from tests.mirror_kit import SAMPLE_MIRROR
from twiki.lm.cli import add_threads_argument, set_threads


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
    sp = build_sample_pair(work / "sample", mirror=SAMPLE_MIRROR, articles=None,
                           max_paragraphs=None)
    if model is None:
        tok = build_tokenizer(sample_texts(sp), work / "tokenizer",
                              vocab_size=512 if size == "tiny" else 8192)
        model = build_model(tok, work / f"gpt2-{size}", size)
    run = work / "run"
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
    add_threads_argument(p)
    args = p.parse_args(argv)
    set_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    res = bench_lm(args.out, size=args.size, device=args.device, steps=args.steps,
                   block_size=args.block_size, batch=args.batch, model=args.model)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
