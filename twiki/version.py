"""The package version, in one place in the library (pyproject.toml carries the same; a test
keeps them equal)."""

__version__ = "0.1.0"
