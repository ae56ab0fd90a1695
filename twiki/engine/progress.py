"""Progress for long work: a bar with rate and ETA on a terminal, plain log lines otherwise
(cron logs stay readable)."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger("twiki")

# Seconds between plain progress lines when stderr is not a terminal.
LOG_EVERY_S = 30.0


class Progress:
    def __init__(self, desc: str, total: float | None = None, unit: str = "task",
                 initial: float = 0):
        self.desc, self.total, self.unit = desc, total, unit
        self.done = initial
        self._start = time.monotonic()
        self._last_log = self._start
        scale = unit in ("B", "bytes")
        self._bar = None
        if sys.stderr.isatty():
            self._bar = tqdm(total=total, desc=desc, unit="B" if scale else unit,
                             unit_scale=scale, unit_divisor=1024 if scale else 1000,
                             initial=initial, dynamic_ncols=True, leave=False)

    def update(self, n: float) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        if self.unit in ("B", "bytes"):
            text = f"{self.done / 1e6:.1f} MB, {rate / 1e6:.2f} MB/s"
        else:
            text = f"{self.done:g} {self.unit}, {rate:.1f} {self.unit}/s"
        if self.total and rate > 0:
            text += f", ETA {max(self.total - self.done, 0) / rate:.0f}s"
        return f"{self.desc}: {text}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
