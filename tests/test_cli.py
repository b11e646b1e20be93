"""The command line's own layer: flags and config overrides, refused before any work (exit 2)."""

from __future__ import annotations

import pytest

from pipeline.config import load_config
from pipeline.main import EXIT_USAGE, apply_flags, run
from pipeline.options import UsageError, parse_args


@pytest.fixture(scope="module")
def local_config(repo_root):
    return load_config(repo_root / "configs" / "local.yaml")


def test_source_override_without_input_is_refused(local_config):
    """configs/local.yaml lists a WARC: --source text must not read it as a text article."""
    assert local_config.run.source == "warc"
    with pytest.raises(UsageError, match="--source text needs --input: the inputs in .*local.yaml are for source warc"):
        apply_flags(local_config, parse_args(["--source", "text"]))
    # the config's own source keeps its inputs; another source with its own inputs is fine
    assert apply_flags(local_config, parse_args(["--source", "warc"])).run.inputs == local_config.run.inputs
    cfg = apply_flags(local_config, parse_args(["--source", "text", "--input", "a.txt"]))
    assert (cfg.run.source, cfg.run.inputs) == ("text", ("a.txt",))


def test_source_override_without_input_exits_2_with_one_line(tmp_path, capsys):
    assert run(["--source", "jsonl", "--output", str(tmp_path / "o")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("storybeam: error: --source jsonl needs --input") and "\n" not in err
    assert not (tmp_path / "o").exists()
