"""The command line's own layer: flags and config overrides, refused before any work (exit 2)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
import time

import fsspec
import pytest
from fsspec.spec import AbstractFileSystem

from pipeline.config import load_config
from pipeline.main import EXIT_USAGE, apply_flags, plan_run, run
from pipeline.options import UsageError, parse_args
from transforms.fsutil import OutputError, check_output


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


def test_output_under_a_plain_file_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    for output in (blocker, blocker / "out"):
        with pytest.raises(OutputError, match=f"output {output}: cannot write there: {blocker} is a file"):
            check_output(str(output))
    fresh = tmp_path / "new" / "out"
    check_output(str(fresh))  # created as the run would create it, the probe removed again
    assert fresh.is_dir() and list(fresh.iterdir()) == []


class _SilentFileSystem(AbstractFileSystem):
    """A store that never answers (an offline bucket): opening a file blocks until released."""

    protocol = "silentstore"
    release = threading.Event()

    def _open(self, path, mode="rb", **kwargs):
        self.release.wait(30)
        raise OSError("released")


def test_output_that_does_not_answer_or_is_unknown_is_refused(monkeypatch):
    fsspec.register_implementation("silentstore", _SilentFileSystem, clobber=True)
    try:
        started = time.monotonic()
        with pytest.raises(OutputError, match="output silentstore://bucket/out: no answer from its storage within"):
            check_output("silentstore://bucket/out", timeout_s=0.3)
        assert time.monotonic() - started < 5
    finally:
        _SilentFileSystem.release.set()
    with pytest.raises(OutputError, match="output nosuchstore://x: cannot write there: .*nosuchstore"):
        check_output("nosuchstore://x")


def test_memory_output_with_worker_processes_is_refused(repo_root):
    sample = str(repo_root / "configs" / "sample" / "sample.warc.gz")
    flags = ["--source", "warc", "--input", sample, "--output", "memory://storybeam-cli/out"]
    with pytest.raises(UsageError, match="memory:// exists in this process only"):
        plan_run([*flags, "--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    with pytest.raises(UsageError, match="memory:// exists in this process only"):
        plan_run([*flags, "--runner", "FlinkRunner"])
    plan, _, _ = plan_run([*flags, "--direct_num_workers=2", "--direct_running_mode=multi_threading"])
    assert plan.output == "memory://storybeam-cli/out"


def test_batch_runs_skip_beams_type_inference(repo_root, tmp_path):
    from apache_beam.options.pipeline_options import TypeOptions

    sample = str(repo_root / "configs" / "sample" / "sample.warc.gz")
    flags = ["--source", "warc", "--input", sample, "--output", str(tmp_path / "out")]
    _, options, _ = plan_run(flags)
    assert options.view_as(TypeOptions).pipeline_type_check is False
    # a polling feed run streams: its stateful steps need the types they declare
    feeds = tmp_path / "feeds.txt"
    feeds.write_text("http://127.0.0.1:9/feed.xml\n")
    poll = ["--source", "feeds", "--input", str(feeds), "--output", str(tmp_path / "f"), "--poll-interval", "60"]
    _, options, _ = plan_run(poll)
    assert options.view_as(TypeOptions).pipeline_type_check is True


def test_run_local_takes_relative_paths_from_the_callers_directory(repo_root, tmp_path):
    """./run_local.sh runs in the caller's directory (the real script, with the bootstrap
    stubbed so that nothing is installed): a relative --input is found there, and a relative
    --output is checked there (a plain file in the way stops the run before any work)."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(repo_root / "run_local.sh", checkout / "run_local.sh")
    (checkout / "scripts" / "bootstrap.sh").write_text(": # already installed\n")
    python = checkout / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    (checkout / "configs").symlink_to(repo_root / "configs")
    caller = tmp_path / "caller"
    caller.mkdir()
    (caller / "a.txt").write_text("Harbour news today\n\nFirst paragraph here.\n")
    (caller / "afile").write_text("")
    (caller / "pipeline").mkdir()  # a folder of the caller's that must not be imported
    (caller / "pipeline" / "__init__.py").write_text("raise SystemExit('the caller folder was imported')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo_root), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        ["bash", str(checkout / "run_local.sh"), "--source", "text", "--input", "a.txt", "--output", "afile/out"],
        cwd=caller,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_USAGE, result.stderr[-2000:]
    assert f"output {caller / 'afile' / 'out'}: cannot write there: {caller / 'afile'} is a file" in result.stderr


def test_misspelt_flags_stop_the_run_with_a_suggestion():
    for argv, message in [
        (["--ouput", "out"], "unknown flag --ouput (did you mean --output?)"),
        (
            ["--output=out", "--direct-num-workers=2"],
            "unknown flag --direct-num-workers (did you mean --direct_num_workers?)",
        ),
        (["--runn", "DirectRunner"], "unknown flag --runn (did you mean --runner?)"),
        (["--frobnicate"], "unknown flag --frobnicate: neither a storybeam flag nor a Beam pipeline option"),
        (["--output", "out", "stray"], "unexpected argument 'stray'"),
        (["--direct_running_mode=fast"], "argument --direct_running_mode: invalid choice: 'fast'"),
    ]:
        with pytest.raises(UsageError) as err:
            parse_args(argv)
        assert str(err.value).startswith(message), argv


def test_flags_of_every_beam_options_class_pass_through():
    beam_flags = [
        "--runner", "DataflowRunner", "--project", "p", "--region", "europe-west1",
        "--temp_location", "gs://b/tmp", "--staging_location", "gs://b/staging", "--job_name", "news",
        "--max_num_workers", "3", "--experiments", "use_runner_v2", "--sdk_container_image", "img:1",
        "--setup_file", "./setup.py", "--save_main_session", "--no_auth", "--dry_run=True",
        "--direct_num_workers=2", "--direct_running_mode=multi_processing", "--streaming",
        "--flink_master", "localhost:8081", "--spark_master_url", "spark://x:7077",
        "--environment_type=LOOPBACK", "--sdk_location=container",
    ]  # fmt: skip
    args = parse_args(["--output", "out", *beam_flags])
    assert args.output == "out" and args.beam_args == tuple(beam_flags)


def test_misspelt_flag_exits_2_with_one_line(tmp_path, capsys):
    assert run(["--source", "text", "--input", "a.txt", "--ouput", str(tmp_path / "o")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == "storybeam: error: unknown flag --ouput (did you mean --output?)"


def test_version_prints_storybeam_and_its_libraries_and_runs_nothing(tmp_path, capsys):
    assert run(["--version", "--output", str(tmp_path / "o")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("storybeam ") and "apache-beam " in line and "trafilatura " in line
    assert "not installed" not in line and "Python 3." in line
    assert not (tmp_path / "o").exists()
