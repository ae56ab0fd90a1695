"""Scheduled monthly builds: `twiki cron` builds a month's benchmark without anyone watching.

- One run at a time: the data root's writer lock (<data root>/.twiki.lock, twiki/engine/lock.py,
  shared with every command that writes there); a second run exits at once with EXIT_LOCKED and
  a one-line message naming the holder.
- Dumps not finished yet: exit EXIT_NOT_READY with a one-line "try later" message (not an
  error: the next scheduled run will find them).
- Every run logs to <data root>/logs/cron-<UTC time>.log and appends one JSON line to
  <data root>/logs/cron.jsonl (month, outcome, seconds; for a build, also when its last
  download landed and the seconds of processing after it: the build overlaps the two, see
  pipelines/snapshot.py). Only the newest `keep_logs` run logs
  are kept (a daily schedule's no-ops would otherwise pile up forever).
- A failure leaves every finished artifact intact (stages publish atomically and resume), so
  the next run continues where this one stopped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from twiki.engine.lock import EXIT_LOCKED, DataRootLock
from twiki.errors import ConfigError, DumpNotReadyError, TwikiError
from twiki.engine.paths import DataRoot, parse_month, previous_month

log = logging.getLogger("twiki")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_READY = 75  # EX_TEMPFAIL: the month's dumps are not finished; try later

# Run logs kept in <data root>/logs/ (about three months of a daily schedule).
KEEP_LOGS = 90


def default_month(now: datetime | None = None) -> str:
    """Last calendar month (UTC): its dump runs (the 1st and the 20th) are over by now."""
    now = now or datetime.now(timezone.utc)
    return previous_month(f"{now.year:04d}-{now.month:02d}")


def run_cron(month: str | None = None, *, data_root: DataRoot | None = None,
             build=None, keep_logs: int = KEEP_LOGS, **build_options) -> tuple[int, str]:
    """Build `month` (default: last month) under the data root's lock. Returns (exit status, line).

    `build` is the monthly build function (default: pipelines.snapshot.build_month); the
    newest `keep_logs` run logs are kept, older ones deleted."""
    if keep_logs < 1:
        raise ConfigError(f"--keep-logs must be at least 1 (this run's log), not {keep_logs}")
    data_root = data_root or DataRoot.default()
    month = parse_month(month) if month else default_month()
    if build is None:
        from pipelines.snapshot import build_month as build
    lock = DataRootLock(data_root.root, "twiki cron")
    if not lock.acquire():
        return EXIT_LOCKED, lock.busy_message()
    logs = data_root.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    handler = logging.FileHandler(logs / f"cron-{stamp}.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(min(log.level or logging.INFO, logging.INFO))
    t0 = time.monotonic()
    overlap: dict = {}
    try:
        log.info("twiki cron: building %s (pid %d)", month, os.getpid())
        result = build(month, data_root=data_root, **build_options)
        figures = getattr(result, "overlap", None)
        if isinstance(figures, dict) and "last_download_s" in figures:
            overlap = {"download_s": figures["last_download_s"],
                       "after_download_s": figures.get("after_download_s")}
        status, line = EXIT_OK, (result.summary() if hasattr(result, "summary")
                                 else f"{month}: built")
    except DumpNotReadyError as e:
        status, line = EXIT_NOT_READY, f"{month}: dumps not finished yet, try later ({e})"
    except TwikiError as e:
        status, line = EXIT_FAILED, f"{month}: failed: {e}"
    except Exception as e:  # a bug: keep the traceback in the log, one line for the mail
        log.exception("twiki cron: %s failed", month)
        status, line = EXIT_FAILED, f"{month}: failed with {type(e).__name__}: {e}"
    finally:
        seconds = round(time.monotonic() - t0, 1)
        log.removeHandler(handler)
        handler.close()
        lock.release()
    outcome = {EXIT_OK: "built", EXIT_NOT_READY: "not_ready"}.get(status, "failed")
    with open(logs / "cron.jsonl", "a") as f:
        f.write(json.dumps({"month": month, "outcome": outcome, "status": status,
                            "seconds": seconds, **overlap, "log": f"cron-{stamp}.log",
                            "message": line}) + "\n")
    with open(logs / f"cron-{stamp}.log", "a") as f:
        f.write(line + "\n")
    prune_logs(logs, keep_logs)
    return status, line


def prune_logs(logs: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` run logs (their names sort by time); returns them."""
    old = sorted(logs.glob("cron-*.log"))[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old
