"""One build config: every data-side stage's settings in one object, read from a TOML file
(`--config FILE.toml`) and `--set section.field=value`, with the shard count set once.

    shards = 64                 # articles and facts: every month of a data root the same
    [filter]
    max_object_words = 3
    [facts_run]
    partitions = 256            # a full Wikidata dump

Sections are the stages' own frozen configs, whose fields document themselves: what shapes
an artifact (`extract`, `diff`, `facts`, `align`, `filter`, `export`) is part of its key, so
changing a value rebuilds exactly the artifacts it shapes and those built from them; the
`*_run` sections say how the work is done and never change the output. `twiki config`
prints the effective config.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable

from .stages.align import AlignConfig, AlignOptions
from .stages.diff import DiffConfig
from .sources.download import DownloadConfig
from .errors import ConfigError
from .stages.export import ExportConfig
from .stages.extract import ExtractConfig
from .stages.extract import ExtractRunOptions as ExtractRun
from .stages.facts import FactsConfig
from .stages.facts import FactsRunOptions as FactsRun
from .stages.probes import FilterConfig

# Sections whose `shards` field is the build's one shard count.
SHARDED = ("extract", "facts")


@dataclass(frozen=True)
class BuildConfig:
    """Every setting of the monthly build (see each section's class for its fields)."""

    shards: int = 64
    """Shards of the snapshots (by page_id) and the facts (by QID). Month A and B are joined
    shard by shard, so keep it the same for every month of a data root (64: ~100k articles a
    shard for full enwiki)."""
    download: DownloadConfig = field(default_factory=DownloadConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    extract_run: ExtractRun = field(default_factory=ExtractRun)
    diff: DiffConfig = field(default_factory=DiffConfig)
    facts: FactsConfig = field(default_factory=FactsConfig)
    facts_run: FactsRun = field(default_factory=FactsRun)
    align: AlignConfig = field(default_factory=AlignConfig)
    align_run: AlignOptions = field(default_factory=AlignOptions)
    filter: FilterConfig = field(default_factory=FilterConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        for name in SHARDED:   # the one shard count reaches every sharded section
            object.__setattr__(self, name, replace(getattr(self, name), shards=self.shards))

    def to_dict(self) -> dict:
        """The effective config, as `twiki config` prints it and a TOML file would hold it."""
        out: dict[str, Any] = {"shards": self.shards}
        for name in sections():
            section = dataclasses.asdict(getattr(self, name))
            if name in SHARDED:
                section.pop("shards")
            out[name] = section
        return out


def sections() -> list[str]:
    return [f.name for f in fields(BuildConfig) if f.name != "shards"]


def _section_fields(name: str) -> list[str]:
    cls = type(getattr(BuildConfig(), name))
    return [f.name for f in fields(cls) if not (name in SHARDED and f.name == "shards")]


def parse_value(text: str) -> Any:
    """A --set value in TOML syntax (3, 0.5, true, ["a", "b"], "x"); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _assign(tree: dict, key: str, value: Any, where: str) -> None:
    parts = key.split(".")
    if parts == ["shards"]:
        tree["shards"] = value
        return
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{where}: {key!r} is not shards or SECTION.FIELD (sections: "
                          f"{', '.join(sections())})")
    if parts[1] == "shards" and parts[0] in SHARDED:
        raise ConfigError(f"{where}: the shard count is set once, for every stage: "
                          f"shards = N (--set shards=N), not {key}")
    tree.setdefault(parts[0], {})[parts[1]] = value


def _merge(tree: dict, raw: dict, where: str) -> None:
    for key, value in raw.items():
        if isinstance(value, dict) and key != "shards":
            for sub, v in value.items():
                _assign(tree, f"{key}.{sub}", v, where)
        else:
            _assign(tree, key, value, where)


def build_config(tree: dict) -> BuildConfig:
    """A BuildConfig from {"shards": N, section: {field: value}}; unknown names and bad values
    are one ConfigError that says what is allowed."""
    known = sections()
    kwargs: dict[str, Any] = {}
    for name, values in tree.items():
        if name == "shards":
            if not isinstance(values, int) or isinstance(values, bool):
                raise ConfigError(f"shards must be a whole number, not {values!r}")
            if not 1 <= values <= 100_000:
                raise ConfigError(f"shards must be between 1 and 100000, not {values}")
            kwargs["shards"] = values
            continue
        if name not in known:
            raise ConfigError(f"unknown config section {name!r}; sections: {', '.join(known)}")
        allowed = _section_fields(name)
        for f in values:
            if f not in allowed:
                raise ConfigError(f"unknown setting {name}.{f}; {name} has: {', '.join(allowed)}")
        default = getattr(BuildConfig(), name)
        typed = {f: _typed(name, f, v, getattr(default, f)) for f, v in values.items()}
        try:
            kwargs[name] = replace(default, **typed)
        except TypeError as e:
            raise ConfigError(f"{name}: {e}") from None
    return BuildConfig(**kwargs)


def _typed(section: str, name: str, value: Any, default: Any) -> Any:
    """TOML has no tuples; a float field takes an integer; anything else must match."""
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if isinstance(default, tuple) and isinstance(value, dict):
        return value   # e.g. align.relation_cues as a table {P19 = ["born"]}
    if isinstance(default, bool) or isinstance(value, bool):
        if type(value) is not type(default):
            raise ConfigError(f"{section}.{name} must be true or false, not {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if default is not None and not isinstance(value, type(default)):
        raise ConfigError(f"{section}.{name} must be a {type(default).__name__} like "
                          f"{default!r}, not {value!r}")
    return value


def load_build_config(path: str | Path | None = None, sets: Iterable[str] = (),
                      overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Defaults, then the TOML file, then each `--set KEY=VALUE`, then `overrides`
    ({"section.field" or "shards": value}: the command's own flags that were given)."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"--config {path}: no such file") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"--config {path}: not a readable TOML file ({e})") from None
        _merge(tree, raw, f"--config {path}")
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set wants SECTION.FIELD=VALUE (or shards=N), not {item!r}")
        _assign(tree, key.strip(), parse_value(text.strip()), f"--set {item}")
    for key, value in (overrides or {}).items():
        if value is not None:
            _assign(tree, key, value, "option")
    return build_config(tree)


def to_toml(config: BuildConfig) -> str:
    """The effective config as a TOML file that `--config` reads back to the same config."""
    lines = [f"shards = {config.shards}"]
    for name, values in config.to_dict().items():
        if name == "shards":
            continue
        lines += ["", f"[{name}]"]
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} as TOML")
