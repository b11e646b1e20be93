"""Config loading: defaults in one place, unknown keys and bad values stop the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, default_config, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_bundled_configs_load(repo_root):
    for name in ("local.yaml", "backfill.yaml", "dataflow.yaml"):
        path = repo_root / "configs" / name
        if path.exists():
            cfg = load_config(path)
            assert cfg.run.source in ("feeds", "warc", "jsonl", "text")


def test_local_config_points_at_the_bundled_sample(repo_root):
    cfg = load_config(repo_root / "configs" / "local.yaml")
    assert cfg.run.inputs and Path(cfg.run.inputs[0]).exists()


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "run:\n  max_failure_ration: 0.2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "c.yaml" in str(err.value) and "run.max_failure_ration" in str(err.value)


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="runn: unknown section"):
        load_config(write(tmp_path, "runn: {}\n"))


def test_wrong_type_and_bad_value(tmp_path):
    with pytest.raises(ConfigError, match="sink.shards: expected an integer"):
        load_config(write(tmp_path, "sink:\n  shards: many\n"))
    with pytest.raises(ConfigError, match="run.max_failure_ratio: must be between 0 and 1"):
        load_config(write(tmp_path, "run:\n  max_failure_ratio: 7\n"))
    with pytest.raises(ConfigError, match="sink.mode"):
        load_config(write(tmp_path, "sink:\n  mode: sometimes\n"))


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    cfg = load_config(write(tmp_path, "run:\n  inputs: [data/*.txt]\n  output: out\n"))
    assert cfg.run.inputs == (str(tmp_path / "data" / "*.txt"),)
    assert cfg.run.output == str(tmp_path / "out")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_defaults_are_valid():
    cfg = default_config()
    assert cfg.sink.shards >= 1


def test_local_yaml_lists_every_key_with_its_default(repo_root):
    """configs/local.yaml promises every key with its default (the run's inputs and paths aside)."""
    import dataclasses

    import yaml

    defaults = default_config()
    raw = yaml.safe_load((repo_root / "configs" / "local.yaml").read_text())
    specific = {("run", "source"), ("run", "inputs"), ("run", "output"), ("stories", "topics_file")}
    for section, values in raw.items():
        settings = getattr(defaults, section)
        assert set(values) == {f.name for f in dataclasses.fields(settings)}, section
        for key, value in values.items():
            default = getattr(settings, key)
            if (section, key) not in specific:
                assert value == (list(default) if isinstance(default, tuple) else default), f"{section}.{key}"
