"""The `twiki` command line: parses arguments, calls one library function per command, and
turns a TwikiError into one clear line (exit status from the error) instead of a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import TwikiError
from .paths import DataRoot, default_root

log = logging.getLogger("twiki")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                   help=f"artifact root (default: $TWIKI_DATA or ./data; now {default_root()})")
    p.add_argument("--wiki", default="enwiki", help="wiki database name (default: enwiki)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def _mirrors(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mirror", action="append", default=None, metavar="URL_OR_DIR",
                   help="dump mirror: an http(s) base URL or a local folder with the same "
                        "layout; repeat for fallbacks tried in order "
                        "(default: https://dumps.wikimedia.org)")


def _executor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes (default: 1)")
    p.add_argument("--executor", default="local", choices=["local"],
                   help="where tasks run (default: local process pool)")


def _extract_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", type=int, default=64,
                   help="output shards; keep it the same for every month (default: 64)")
    p.add_argument("--chunk-mb", type=float, default=8.0,
                   help="compressed MB per extract task; bounds memory (default: 8)")
    p.add_argument("--keep-work", action="store_true",
                   help="keep data/work/ after publishing (cheap repair of a lost shard)")


def cmd_download(args) -> None:
    from .download import download_month
    path = download_month(args.month, wiki=args.wiki, mirrors=args.mirror,
                          data_root=_root(args))
    print(path)


def cmd_extract(args) -> None:
    from .executors import make_executor
    from .extract import ExtractConfig, RunOptions, extract_month
    res = extract_month(args.month, wiki=args.wiki, data_root=_root(args),
                        executor=make_executor(args.executor, args.workers),
                        config=ExtractConfig(shards=args.shards),
                        options=RunOptions(chunk_mb=args.chunk_mb, keep_work=args.keep_work))
    print(res.path)


def cmd_snapshot(args) -> None:
    from pipelines.snapshot import build_month
    from .executors import make_executor
    from .extract import ExtractConfig, RunOptions
    result = build_month(args.month, wiki=args.wiki, mirrors=args.mirror,
                         data_root=_root(args),
                         executor=make_executor(args.executor, args.workers),
                         extract_config=ExtractConfig(shards=args.shards),
                         options=RunOptions(chunk_mb=args.chunk_mb, keep_work=args.keep_work))
    print(result.summary())


def cmd_cron(args) -> int:
    from pipelines.cron import run_cron
    from .executors import make_executor
    from .extract import ExtractConfig, RunOptions
    # Cron mails whatever a job prints: the console gets warnings and the one-line outcome;
    # the full log goes to the run's log file.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    status, line = run_cron(args.month, data_root=_root(args), wiki=args.wiki,
                            mirrors=args.mirror,
                            executor=make_executor(args.executor, args.workers),
                            extract_config=ExtractConfig(shards=args.shards),
                            options=RunOptions(chunk_mb=args.chunk_mb,
                                               keep_work=args.keep_work))
    print(line, file=sys.stdout if status == 0 else sys.stderr)
    return status


def _root(args) -> DataRoot:
    return DataRoot(args.data_root) if args.data_root else DataRoot.default()


COMMANDS = {
    "download": (cmd_download, "download and verify a month's dump files",
                 "twiki download --month 2023-03 --mirror https://dumps.wikimedia.org",
                 [_mirrors]),
    "extract": (cmd_extract, "turn a downloaded month into a Parquet snapshot of articles",
                "twiki extract --month 2023-03 --workers 8", [_executor, _extract_opts]),
    "snapshot": (cmd_snapshot, "download + extract a month (the monthly build)",
                 "twiki snapshot --month 2016-05 --mirror data/sample/mirror --workers 2",
                 [_mirrors, _executor, _extract_opts]),
    "cron": (cmd_cron, "scheduled build of last month (lock, log, 'try later' status)",
             "twiki cron --workers 8   # in crontab: 0 3 * * * cd ~/twiki && .venv/bin/twiki cron",
             [_mirrors, _executor, _extract_opts]),
}
# Commands whose --month may be left out (they pick a default month).
MONTH_OPTIONAL = {"cron"}


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
        if name in MONTH_OPTIONAL:
            p.add_argument("--month", default=None, metavar="YYYY-MM",
                           help="the month (default: last calendar month, UTC)")
        else:
            p.add_argument("--month", required=True, metavar="YYYY-MM",
                           help="the month: its first dump run whose job is done")
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
        status = args.func(args)
    except TwikiError as e:
        print(f"twiki: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("twiki: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
