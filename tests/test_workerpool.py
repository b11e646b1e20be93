"""Pre-started SDK workers for multi_processing runs (pipeline/workerpool.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import workerpool

MULTI = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
REPO = Path(__file__).resolve().parents[1]


def _run_fresh(code: str, unset: str) -> str:
    """Runs ``code`` in a new interpreter (nothing of Beam imported) with the environment
    variable ``unset`` removed; its standard output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(unset, None)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["--input", "x.warc"], False),
        (["--input", "x.warc", *MULTI], True),
        (["--direct_running_mode", "multi_processing"], True),
        (["--direct_running_mode=multi_threading"], False),
        ([*MULTI, "--streaming"], False),
        ([*MULTI, "--runner=DataflowRunner"], False),
        ([*MULTI, "--runner", "DirectRunner"], True),
    ],
)
def test_pool_is_wanted_for_local_multi_processing_batch_runs(argv, wanted):
    assert workerpool.wants_pool(argv) is wanted


def test_pool_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(workerpool.DISABLE_ENV, "0")
    assert not workerpool.wants_pool(MULTI)


def _record_worker(i: int, folder: str) -> int:
    with open(os.path.join(folder, f"{os.getpid()}.txt"), "w") as fh:
        fh.write(f"{os.getppid()} {os.environ.get('STORYBEAM_POOL_TEST')}")
    return i


def _worker_parents(folder) -> set[tuple[int, str]]:
    """Runs a small pipeline on the local runner with 2 workers: (parent pid, the test's
    environment variable) of each worker process that ran a bundle."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    with beam.Pipeline(runner=workerpool.local_runner(), options=PipelineOptions(MULTI)) as p:
        rows = p | beam.Create(list(range(40))) | beam.Reshuffle() | beam.Map(_record_worker, str(folder))
        assert_that(rows, equal_to(list(range(40))))
    found = set()
    for path in folder.iterdir():
        parent, value = path.read_text().split(" ", 1)
        found.add((int(parent), value))
    return found


@pytest.fixture
def pool(monkeypatch):
    started = workerpool.start(MULTI)
    assert started is not None
    monkeypatch.setenv("STORYBEAM_POOL_TEST", "from the runner")  # the pool's own environment lacks it
    yield started
    workerpool.stop()


def test_workers_are_forked_by_the_pool_with_the_runners_environment(pool, tmp_path):
    # a worker forked by the pool has the pool process as its parent (Beam's own worker: the
    # shell the runner started), and the environment of the runner, not of the pool
    parents = _worker_parents(tmp_path)
    assert parents == {(pool._proc.pid, "from the runner")}
    proc = pool._proc
    workerpool.stop()
    assert proc.wait(10) == 0  # ends when the runner closes its input


FORKED_POOL_RUN = """
import os, sys, tempfile
from pipeline import workerpool

MULTI = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
workerpool.skip_optional_beam(MULTI)
pool = workerpool.start(MULTI)  # Beam not imported yet: the pool is forked from this process
proc = pool._proc
print(type(proc).__name__)
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

folder = tempfile.mkdtemp()

def record(i):
    with open(os.path.join(folder, str(os.getpid())), "w") as fh:
        fh.write(str(os.getppid()))
    return i

with beam.Pipeline(runner=workerpool.local_runner(), options=PipelineOptions(MULTI)) as p:
    _ = p | beam.Create(list(range(40))) | beam.Reshuffle() | beam.Map(record)
print(sorted({int(open(os.path.join(folder, name)).read()) == proc.pid for name in os.listdir(folder)}))
socket_folder = os.path.dirname(pool.socket_path)
workerpool.stop()
print(proc.wait(10), os.path.exists(socket_folder))
"""


def test_a_pool_started_before_beam_is_imported_is_forked_from_the_runner():
    # the command line's case: workers come from a pool forked from the runner process, which
    # ends with code 0 when the runner closes it and leaves no socket folder behind
    stdout = _run_fresh(FORKED_POOL_RUN, workerpool.DISABLE_ENV)
    assert stdout.split("\n")[:3] == ["_ForkedPool", "[True]", "0 False"], stdout


def test_pool_removes_its_socket_folder_when_its_runner_is_gone():
    # a runner killed with SIGKILL never closes the pool: the pool's input ends all the same
    started = workerpool.WorkerPool()
    folder = os.path.dirname(started.socket_path)
    proc, started._proc = started._proc, None
    proc.stdin.close()  # what the kernel does for a killed runner
    assert proc.wait(30) == 0
    assert not os.path.exists(folder)


def test_without_the_pool_workers_start_as_beams_own(pool, tmp_path):
    pool._proc.kill()
    pool._proc.wait()
    parents = _worker_parents(tmp_path)  # the client falls back to Beam's worker command
    assert parents and all(parent != pool._proc.pid and value == "from the runner" for parent, value in parents)


def test_local_runs_leave_out_the_optional_parts_of_beam():
    code = """
import sys
from pipeline import workerpool
assert workerpool.skip_optional_beam(["--runner=DataflowRunner"]) is False  # remote: all of Beam
assert workerpool.skip_optional_beam(["--input", "x.warc"]) is True  # the local runner
import apache_beam
from apache_beam.io.filesystems import FileSystems
assert type(FileSystems.get_filesystem("/tmp")).__name__ == "LocalFileSystem"  # stays
from apache_beam.runners.dataflow import DataflowRunner  # still imports, without its API client
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
print(sorted(m for m in workerpool.OPTIONAL_BEAM_MODULES if m in sys.modules))
try:
    import apache_beam.io.gcp.gcsio
except ModuleNotFoundError:
    print("refused")
"""
    assert _run_fresh(code, workerpool.LEAN_IMPORTS_ENV).split() == ["[]", "refused"]


def test_optional_parts_of_beam_stay_once_beam_is_imported_or_when_switched_off(monkeypatch):
    import apache_beam  # noqa: F401 - imported: nothing left to leave out

    before = list(sys.meta_path)
    assert workerpool.skip_optional_beam(["--input", "x.warc"]) is False
    monkeypatch.delitem(sys.modules, "apache_beam")
    monkeypatch.setenv(workerpool.LEAN_IMPORTS_ENV, "0")
    assert workerpool.skip_optional_beam(["--input", "x.warc"]) is False
    assert sys.meta_path == before


PRESTARTED_RUN = """
import os, sys
from pipeline import workerpool

MULTI = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
print(workerpool.prestart_extraction(["--source", "warc", *MULTI]))  # before Beam, as main() does
from transforms import extract
started = [child.pid for child in extract._prestarted]
workerpool.skip_optional_beam(MULTI)
workerpool.start(MULTI)
print(len(extract._prestarted))  # given up by the runner: the pool's workers claim them
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

PAGE = "<html><body><article><p>" + "The ferry crossed the harbour at dawn. " * 20 + "</p></article></body></html>"


def extract_once(i):
    from transforms import extract as ex  # the worker's module: one extractor per worker
    process = getattr(ex, "_test_extractor", None)
    if process is None:
        process = ex._test_extractor = ex.ProcessExtractor(2048)
    found = process.run(PAGE, None, f"https://news.example.org/{i}", ex.ExtractSettings())
    return type(process._proc).__name__, process._proc.pid, os.getpid(), len(found["text"]) > 200


with beam.Pipeline(runner=workerpool.local_runner(), options=PipelineOptions(MULTI)) as p:
    rows = p | beam.Create(list(range(8))) | beam.Reshuffle() | beam.Map(extract_once)
    rows | beam.combiners.ToList() | beam.Map(lambda found: print(sorted(set(found))))
print("children", started)
workerpool.stop()
print([os.path.exists(f"/proc/{pid}") for pid in started])
"""


def test_extraction_children_started_ahead_are_claimed_by_the_workers_and_reaped():
    # the command line starts one extraction child per worker before it imports Beam; the
    # workers forked by the pool (not the children's parent) use them, one each, and the
    # command line reaps them at its end
    lines = _run_fresh(PRESTARTED_RUN, workerpool.PRESTART_ENV).strip().split("\n")
    assert lines[:2] == ["2", "0"], lines
    children = eval(lines[-2].removeprefix("children "))  # noqa: S307 - our own print
    used = eval(next(line for line in lines if line.startswith("[(")))  # noqa: S307
    assert {kind for kind, _, _, _ in used} == {"PrestartedChild"}
    assert all(text for _, _, _, text in used)
    by_worker = {worker: child for _, child, worker, _ in used}
    assert set(by_worker.values()) <= set(children) and len(set(by_worker.values())) == len(by_worker)
    assert lines[-1] == "[False, False]"  # reaped, no zombie left


@pytest.mark.parametrize(
    ("argv", "config", "planned"),
    [
        (["--source", "warc", *MULTI], None, (2, 2048)),
        (["--source", "feeds", "--direct_num_workers", "3", "--direct_running_mode=multi_processing"], None, (3, 2048)),
        (["--source", "text", *MULTI], None, None),  # nothing to extract
        (MULTI, "run:\n  source: text\n", None),  # the config's source when no --source
        (MULTI, "run:\n  batch_files: 2\n", (2, 2048)),  # the default source, jsonl, may hold HTML
        (["--source", "warc"], None, None),  # one worker: the runner's own thread extracts
        (["--source", "warc", *MULTI, "--help"], None, None),  # runs nothing
        (["--source", "warc", *MULTI], "extract:\n  isolation: thread\n", None),  # no child
        (["--source", "warc", *MULTI], "extract:\n  max_memory_mb: 512\n", (2, 512)),
        (["--source", "warc", *MULTI], "extract: [not, a, mapping]\n", None),  # the run reports it
    ],
)
def test_extraction_children_are_started_ahead_for_pool_runs_that_extract_in_a_child(
    argv, config, planned, tmp_path, monkeypatch
):
    monkeypatch.delenv(workerpool.PRESTART_ENV, raising=False)
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
        argv = [*argv, "--config", str(tmp_path / "c.yaml")]
    assert workerpool.prestart_plan(argv) == planned
    monkeypatch.setenv(workerpool.PRESTART_ENV, "0")
    assert workerpool.prestart_plan(argv) is None


def test_a_child_started_ahead_with_another_memory_limit_is_not_claimed_and_is_reaped():
    from transforms import extract

    assert extract.prestart_children(1, 1234) == 1
    popen = extract._started_here[-1]
    try:
        assert extract.claim_prestarted(2048) is None
    finally:
        extract.release_prestarted()
    assert popen.returncode is not None and not extract._prestarted and not extract._started_here


def test_no_child_is_started_ahead_where_no_other_process_could_watch_it(monkeypatch):
    # a kernel without pidfds: the child just started is stopped and reaped, none is kept
    from transforms import extract

    spawned = []
    real_spawn = extract._spawn_child

    def spawn(max_memory_mb):
        spawned.append(real_spawn(max_memory_mb))
        return spawned[-1]

    def no_pidfd(pid, flags=0):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(extract, "_spawn_child", spawn)
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    assert extract.prestart_children(2, 2048) == 0
    assert len(spawned) == 1 and spawned[0].returncode is not None
    assert not extract._prestarted and not extract._started_here
