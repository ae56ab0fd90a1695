"""One writer at a time per data root: an exclusive flock on <data root>/.twiki.lock.

Every command that writes under the data root holds it for its whole run (twiki/cli.py says
which), so two builds never share a staging folder, a work file or a temporary name. It is
taken without waiting: a second writer stops at once with EXIT_LOCKED and one line naming the
holder (its command, pid and start time, which the holder writes into the lock file).

- The OS releases a flock when its holder dies, kill -9 included: a killed run never leaves a
  stale lock behind, and the next run simply resumes.
- The descriptor is close-on-exec, so processes the holder starts (the pool's forkserver and
  its workers, Ray's processes) never hold it: they cannot keep it after the holder is gone.
- Within one process the lock is re-entrant: `twiki cron` holds it through the CLI, and the
  cron pipeline may take it again around the build without waiting for itself.
"""

from __future__ import annotations

import errno
import fcntl
import os
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError, TwikiError

LOCK_NAME = ".twiki.lock"

# The exit status of a command that found the data root locked (sysexits' EX_CANTCREAT, the
# status `twiki cron` has always used for it).
EXIT_LOCKED = 73

# Lock files this process holds: path -> [descriptor, how many holders in this process].
_HELD: dict[Path, list[int]] = {}


class LockedError(TwikiError):
    """Another twiki command holds the data root's lock."""

    exit_code = EXIT_LOCKED


class DataRootLock:
    """The data root's writer lock, held by `command` (e.g. "twiki snapshot").

    `with DataRootLock(root, command):` raises LockedError when another process holds it;
    `acquire()` answers False instead. A data root that is a file, or that cannot be written,
    is a ConfigError naming it: every command that takes this lock writes under the root."""

    def __init__(self, root: Path, command: str):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.command = command
        self._key: Path | None = None   # the lock file's resolved path while held

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        if self._key is not None:
            return True
        key = self.path.resolve()
        if key in _HELD:
            _HELD[key][1] += 1
            self._key = key
            return True
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {started} {self.command}\n".encode())
        except OSError:   # e.g. a full disk: give the lock back, the caller reports the error
            os.close(fd)
            raise
        _HELD[key] = [fd, 1]
        self._key = key
        return True

    def _open(self) -> int:
        """The lock file's descriptor; the root is made when missing."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"data root {self.root} is a file, not a folder (or lies under "
                              f"one): pass --data-root a folder, or set $TWIKI_DATA to "
                              f"one") from None
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            raise ConfigError(f"data root {self.root} is not writable ({e.strerror}): "
                              f"{self.command} writes under it; pass --data-root a writable "
                              f"folder") from None

    def holder(self) -> tuple[str, str, str] | None:
        """(command, pid, start time) of the holder, as it wrote them; None while unwritten."""
        try:
            pid, started, command = self.path.read_text().split(maxsplit=2)
        except (OSError, ValueError):
            return None
        return command.strip(), pid, started

    def busy_message(self) -> str:
        """The one line for a command that found the lock held."""
        held = self.holder()
        who = (f"another {held[0]} run holds {self.path} (pid {held[1]}, started {held[2]})"
               if held else f"another twiki command holds {self.path}")
        return (f"{who}; one twiki command writes under a data root at a time: rerun "
                f"{self.command} once it has finished")

    def release(self) -> None:
        if self._key is None:
            return
        key, self._key = self._key, None
        entry = _HELD[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[key]
            fcntl.flock(entry[0], fcntl.LOCK_UN)
            os.close(entry[0])

    def __enter__(self) -> "DataRootLock":
        if not self.acquire():
            raise LockedError(self.busy_message())
        return self

    def __exit__(self, *exc) -> None:
        self.release()
