"""Errors a user can cause. Each message says what went wrong and what to do about it.

The CLI turns any TwikiError into one line on stderr and a non-zero exit status; anything
else is a bug and keeps its traceback.
"""


class TwikiError(Exception):
    """Base of every user-facing error; `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(TwikiError):
    """A bad argument or setting (e.g. a MONTH that is not YYYY-MM)."""

    exit_code = 2


class InputError(TwikiError):
    """A bad input file: truncated or corrupt bz2, malformed XML, unknown format."""


class DownloadError(TwikiError):
    """A download that could not be completed (all mirrors failed, HTTP error)."""


class ChecksumError(DownloadError):
    """A downloaded file whose checksum does not match the dump's metadata."""


class NoDumpError(DownloadError):
    """No finished dump run for the requested month."""


class DumpNotReadyError(NoDumpError):
    """The month has dump runs but none has finished the needed job yet: try later."""

    exit_code = 75  # EX_TEMPFAIL from sysexits.h: schedulers read it as "try again later"


class UnsafePathError(TwikiError):
    """A file name from remote metadata that would land outside the data folder."""
