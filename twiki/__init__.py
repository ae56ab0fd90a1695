"""twiki: TemporalWiki-style lifelong benchmarks from monthly Wikipedia and Wikidata dumps."""

__version__ = "0.1.0"

from .errors import TwikiError  # noqa: E402

__all__ = ["TwikiError", "__version__"]
