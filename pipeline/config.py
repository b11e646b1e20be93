"""YAML config -> frozen, validated dataclasses.

Defaults live in the settings dataclass of each stage (transforms/*.py); a YAML file only
overrides them. Unknown sections or keys and values of the wrong type stop the run before any
work with ``ConfigError`` naming the file, the key and the reason (exit status 2).
Relative paths in a config file (``run.inputs``, ``run.output`` and keys ending in ``_file`` or
``_path``) are resolved against the directory of that file, so a config works from any cwd.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "local.yaml"


class ConfigError(ValueError):
    """A bad config file, key or value (reported without a traceback, exit 2)."""


@dataclass(frozen=True)
class RunSettings:
    # Where documents come from: feeds, warc, jsonl or text (--source overrides).
    source: str = "jsonl"
    # Inputs: feed URLs / feed-list files for feeds, fsspec globs otherwise (--input overrides).
    inputs: tuple[str, ...] = ()
    # Output root: local path or fsspec URL (--output overrides).
    output: str = "storybeam-output"
    # The run exits non-zero when failed / inputs exceeds this share (filtered ones not counted):
    # half the inputs failing means something is broken, not that the web is messy.
    max_failure_ratio: float = 0.5
    # Seconds between progress log lines on long runs.
    progress_interval_s: float = 30.0
    # Input files per pipeline run (0 = all in one run). Each batch commits on its own and is
    # recorded in the manifest, so a killed backfill loses at most one batch (--resume).
    batch_files: int = 0
    # Input megabytes per pipeline run (0 = no size limit): a batch closes before it passes this
    # size, and a gzipped WARC larger than it is cut into parts (byte ranges, at gzip members)
    # of their own batches. The local runner holds a run's data in memory, so this bounds a
    # run's memory whatever the size of the archive files (a CC-NEWS file is ~1 GB, ~30k pages).
    # 256 MB is ~8k news pages; smaller inputs are one run. Near duplicates are found inside
    # a batch (exact copies and stories across batches too). With batch_files as well, a batch
    # closes at whichever limit comes first.
    batch_mb: float = 256.0

    def __post_init__(self) -> None:
        if self.source not in ("feeds", "warc", "jsonl", "text"):
            raise ValueError(f"source: must be one of feeds, warc, jsonl, text, not {self.source!r}")
        if not 0.0 <= self.max_failure_ratio <= 1.0:
            raise ValueError("max_failure_ratio: must be between 0 and 1")
        if self.batch_files < 0:
            raise ValueError("batch_files: must be 0 (no batching) or positive")
        if self.batch_mb < 0:
            raise ValueError("batch_mb: must be 0 (no size limit) or positive")
        if self.progress_interval_s <= 0:
            raise ValueError("progress_interval_s: must be positive")


def _sections() -> dict[str, type]:
    # Imported here so that `--help` and config errors do not pay for importing Beam.
    from transforms.clean import CleanRules
    from transforms.extract import ExtractSettings
    from transforms.feeds import FeedSettings
    from transforms.fingerprint import FingerprintSettings
    from transforms.http import FetchSettings
    from transforms.sinks import SinkSettings
    from transforms.sources import SourceSettings
    from transforms.stories import StorySettings
    from transforms.streaming import StreamingSettings

    return {
        "run": RunSettings,
        "sources": SourceSettings,
        "fetch": FetchSettings,
        "feeds": FeedSettings,
        "extract": ExtractSettings,
        "clean": CleanRules,
        "fingerprint": FingerprintSettings,
        "stories": StorySettings,
        "sink": SinkSettings,
        "streaming": StreamingSettings,
    }


@dataclass(frozen=True)
class Config:
    path: str
    run: RunSettings
    sources: Any
    fetch: Any
    feeds: Any
    extract: Any
    clean: Any
    fingerprint: Any
    stories: Any
    sink: Any
    streaming: Any

    def replace(self, section: str, **changes: Any) -> Config:
        """A copy with some keys of one section changed (validated like the file)."""
        current = getattr(self, section)
        try:
            updated = dataclasses.replace(current, **changes)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{section}.{err}") from err
        return dataclasses.replace(self, **{section: updated})


def _is_path_key(name: str) -> bool:
    return name in ("inputs", "output") or name.endswith("_file") or name.endswith("_path")


def _resolve(value: str, base: Path) -> str:
    if not value or "://" in value or os.path.isabs(value):
        return value
    return str((base / value).resolve()) if not any(c in value for c in "*?[") else os.path.normpath(str(base / value))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                return _coerce(value, arg, key)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        inner = args[0] if args else str
        return tuple(_coerce(v, inner, key) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def build_section(cls: type, raw: Any, section: str, base: Path | None) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping of keys, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{section}.{key}: unknown key (known: {', '.join(sorted(known))})")
        value = _coerce(value, hints[key], f"{section}.{key}")
        if base is not None and _is_path_key(key):
            value = tuple(_resolve(v, base) for v in value) if isinstance(value, tuple) else _resolve(value, base)
        values[key] = value
    # Default paths are relative to the repository (e.g. configs/topics.yaml).
    for f in dataclasses.fields(cls):
        if f.init and _is_path_key(f.name) and f.name not in values and isinstance(f.default, str) and f.default:
            values[f.name] = _resolve(f.default, REPO_ROOT)
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{section}.{err}") from err


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and validate a YAML config; ``None`` reads configs/local.yaml."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read config: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    sections = _sections()
    unknown = set(raw) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: {sorted(unknown)[0]}: unknown section (known: {', '.join(sections)})")
    base = path.resolve().parent
    try:
        built = {name: build_section(cls, raw.get(name), name, base) for name, cls in sections.items()}
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return Config(path=str(path), **built)


def default_config() -> Config:
    """All defaults, no file (for tests and library use)."""
    sections = _sections()
    return Config(path="<defaults>", **{name: build_section(cls, {}, name, None) for name, cls in sections.items()})


__all__ = ["Config", "ConfigError", "RunSettings", "load_config", "default_config", "field"]
