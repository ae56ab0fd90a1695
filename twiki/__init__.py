"""twiki: TemporalWiki-style lifelong benchmarks from monthly Wikipedia and Wikidata dumps."""

from .errors import TwikiError
from .version import __version__

# Loaders of an export (twiki.load_probes, load_diffset, load_export), imported on first use
# so that `import twiki` and the CLI do not pay for pyarrow and pandas.
_LOADERS = ("load_probes", "load_diffset", "load_export")


def __getattr__(name: str):
    if name in _LOADERS:
        from .stages import export
        return getattr(export, name)
    raise AttributeError(f"module 'twiki' has no attribute {name!r}")


__all__ = ["TwikiError", "__version__", *_LOADERS]
