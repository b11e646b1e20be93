"""Pre-started SDK workers for the local runner's ``--direct_running_mode=multi_processing``.

Beam starts each SDK worker of that mode as a new ``python -m
apache_beam.runners.worker.sdk_worker_main``, when the pipeline starts to run: every worker
then imports Beam and storybeam (~3.4 s of CPU each here) while the runner waits for it. The
pool is a process started first thing by the command line, which imports all that once, in
parallel with the runner's own planning, and then waits: the command line imports Beam's
worker and storybeam's transforms (which it needs anyway) and forks the pool, which adds the
clustering's libraries; where Beam has already run in the process, the pool is a new
interpreter that imports all of it (``WorkerPool``). Beam's worker command
becomes ``pipeline/_worker_client.py``, which asks the pool for a worker: the pool forks one
(copy-on-write: the imported modules are shared) and the fork runs Beam's worker main with the
environment and standard streams of the client, as the stock worker would. A worker forked
from the pool starts in milliseconds, also for each batch of a batched run.

The pool process stays single-threaded (so forking it is safe), ends when the runner process
does (it reads a pipe from the runner to its end), and its workers end when their client
does. When the pool is not reachable the client runs Beam's stock worker instead. Set
``STORYBEAM_WORKER_POOL=0`` to use Beam's worker command unchanged.
"""

from __future__ import annotations

import importlib.abc
import json
import logging
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pipeline._worker_client import STARTED

LOG = logging.getLogger("storybeam")

ROOT = Path(__file__).resolve().parents[1]
CLIENT = Path(__file__).with_name("_worker_client.py")
DISABLE_ENV = "STORYBEAM_WORKER_POOL"
# What a worker of this pipeline imports anyway: Beam's harness, storybeam's transforms (their
# DoFns are unpickled there) and what they use at once. Not the extraction libraries: the
# worker hands pages to its extraction child (``transforms.extract.ProcessExtractor``).
PRELOAD = (
    "apache_beam.runners.worker.sdk_worker_main",
    "pipeline.build",
    "transforms.streaming",
    "pyarrow.parquet",
)

_pool: WorkerPool | None = None


def _flag_values(argv: list[str]) -> dict[str, str]:
    """``--name=value`` / ``--name value`` flags as a dict, read without argparse or Beam."""
    values: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
        values[name] = value
    return values


def _switched_off(variable: str) -> bool:
    return os.environ.get(variable, "1").strip().lower() in ("0", "false", "no", "off")


def _local_runner(values: dict[str, str]) -> bool:
    from pipeline.main import LOCAL_RUNNERS

    return values.get("runner", "") in LOCAL_RUNNERS


def wants_pool(argv: list[str]) -> bool:
    """True when these flags run a batch pipeline on the local runner in multi_processing
    mode (read cheaply, before Beam is imported; the runner is chosen later from the same
    flags)."""
    if _switched_off(DISABLE_ENV):
        return False
    if not (hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds")):
        return False  # not POSIX: Beam's own worker command
    values = _flag_values(argv)
    if "streaming" in values or not _local_runner(values):
        return False
    return values.get("direct_running_mode") == "multi_processing"


PRESTART_ENV = "STORYBEAM_PRESTART"


def prestart_extraction(argv: list[str]) -> int:
    """First thing on the command line, before Beam is imported: when ``argv`` runs workers
    from the pool and the config extracts pages in a child process, start one extraction
    child per worker now (``transforms.extract.prestart_children``), so that the children
    import the extraction libraries and their data while this process imports Beam (one core of
    two is idle then), not after the workers have started. The pool and its workers are
    forked from this process and inherit them; each worker claims one. Set
    ``STORYBEAM_PRESTART=0`` to start children when the first page comes, as before. Returns
    how many were started."""
    plan = prestart_plan(argv)
    if plan is None:
        return 0
    from transforms.extract import prestart_children

    return prestart_children(*plan)


def prestart_plan(argv: list[str]) -> tuple[int, int] | None:
    """(children, their memory limit in MiB) that ``prestart_extraction`` starts for these
    flags, or None."""
    if _switched_off(PRESTART_ENV) or not wants_pool(argv) or {"-h", "--help", "--version"} & set(argv):
        return None  # (help and version run nothing)
    values = _flag_values(argv)
    from transforms.extract import ExtractSettings

    # The config's own sections, read as YAML: validating it (pipeline.config) imports every
    # stage, Beam included. A value that fails validation later fails the run anyway.
    try:
        import yaml

        from pipeline.config import DEFAULT_CONFIG, RunSettings

        raw = yaml.safe_load(Path(values.get("config") or DEFAULT_CONFIG).read_text(encoding="utf-8")) or {}
        source = values.get("source") or (raw.get("run") or {}).get("source", RunSettings.source)
        extract = raw.get("extract") or {}
        isolation = extract.get("isolation", ExtractSettings.isolation)
        max_memory_mb = int(extract.get("max_memory_mb", ExtractSettings.max_memory_mb))
        workers = int(values.get("direct_num_workers") or 1)
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return None  # the run itself reports a bad config or flag
    if source == "text" or isolation not in ("auto", "process"):
        return None  # no HTML to extract, or no child to extract it in
    return (workers if workers > 0 else os.cpu_count() or 1), max_memory_mb


# Parts of Beam that its own imports treat as optional (an ImportError of a package not
# installed is skipped without a word) and that a local run of storybeam never uses: it reads
# and writes through fsspec, not Beam's IOs or filesystems. With the gcp and aws extras
# installed, ``import apache_beam`` loads them all (BigQuery, Pub/Sub, Beam's GCS, S3, Azure
# and HDFS filesystems, the cross-language IOs): ~0.27 s of the ~1.1 s that the runner, and
# the worker pool, spend importing, and ~400 modules. The same for two packages that Beam's
# modules import inside ``try/except ImportError``: the Dataflow API client (which
# ``apache_beam.runners`` imports with the Dataflow runner module) and apitools: import CPU
# 0.80 -> 0.62 s more, 1,603 -> 1,207 modules. Remote runners keep them all (their launcher
# stages files through Beam's filesystems and talks to Dataflow).
OPTIONAL_BEAM_MODULES = frozenset(
    {
        "apache_beam.io.gcp.bigquery",
        "apache_beam.io.gcp.pubsub",
        "apache_beam.io.gcp.gcsio",
        "apache_beam.transforms.xlang.io",
        "apache_beam.io.gcp.gcsfilesystem",
        "apache_beam.io.aws.s3filesystem",
        "apache_beam.io.azure.blobstoragefilesystem",
        "apache_beam.io.hadoopfilesystem",
        # packages that Beam's modules import inside ``try: ... except ImportError``:
        "google.cloud.dataflow",  # the Dataflow runner's API client (apache_beam.runners imports it)
        "apitools",  # HTTP errors for Beam's retry filters of GCP calls
    }
)
LEAN_IMPORTS_ENV = "STORYBEAM_LEAN_IMPORTS"


class _SkipOptionalBeam(importlib.abc.MetaPathFinder):
    """Answers an import of one of ``OPTIONAL_BEAM_MODULES`` as a package not installed."""

    def find_spec(self, name, path, target=None):
        if name in OPTIONAL_BEAM_MODULES:
            raise ModuleNotFoundError(f"{name} is not loaded in a local storybeam run ({LEAN_IMPORTS_ENV}=0 loads it)")
        return None


def skip_optional_beam(argv: list[str] | None = None) -> bool:
    """Before Beam is first imported, in a process that runs the local runner (``argv``: the
    command line's flags) or serves its workers (no ``argv``): leave out the parts of Beam in
    ``OPTIONAL_BEAM_MODULES``, for this process and the processes forked from it. Not done
    once Beam is imported (nothing left to save), nor with ``STORYBEAM_LEAN_IMPORTS=0``.
    True when installed."""
    if _switched_off(LEAN_IMPORTS_ENV) or "apache_beam" in sys.modules:
        return False
    if argv is not None and not _local_runner(_flag_values(argv)):
        return False
    if not any(isinstance(finder, _SkipOptionalBeam) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SkipOptionalBeam())
    return True


#: the runner's temporary folder for the pool's socket
SOCKET_DIR_PREFIX = "storybeam-workers-"


class WorkerPool:
    """The runner's handle on the pool process.

    In a process that has not imported Beam yet (the command line), the pool is forked from
    it: this process imports what the pool preloads first (``PRELOAD``: it needs all of it
    itself later, for the graph and the runner), so the pool starts with those imports
    done and only loads what clustering needs (``stories.preload``). A pool started as a new
    interpreter imported them all again, and the first stage waited for it (0.35 s in a
    traced 20-page run on 2 workers; such runs took 3.62 -> 3.45 s, 5.93 -> 5.24 s of CPU,
    medians of eight alternating pairs). Forking is safe there for the same
    reason the pool may fork its workers: Beam is imported, not used (no gRPC channel, no
    thread). Elsewhere (a test or another program that has run Beam in this process) the pool
    is a new interpreter, ``python -m pipeline.workerpool``."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX)
        self.socket_path = os.path.join(self._dir, "pool.sock")
        if "apache_beam" not in sys.modules:
            import importlib

            for module in PRELOAD:
                importlib.import_module(module)
            if threading.active_count() == 1:  # checked after the imports, right before the fork
                self._proc: subprocess.Popen | _ForkedPool = _ForkedPool(self.socket_path)
                _prestarted("give_up_prestarted")  # the pool's workers claim them
                return
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.workerpool", self.socket_path],
            stdin=subprocess.PIPE,
            env=env,
            cwd=str(ROOT),
        )
        _prestarted("give_up_prestarted")  # a pool started afresh has no access to them: idle until stop()

    @property
    def command(self) -> str:
        """The worker command line for Beam (run through the shell)."""
        return " ".join(shlex.quote(p) for p in (sys.executable, "-S", str(CLIENT), self.socket_path))

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            # The pool ends at end of input (its running workers carry on). One still importing
            # (the run stopped early, e.g. a config error) would answer only after its imports:
            # it is killed instead, which a pool that has no more forks to wait for can be.
            try:
                proc.stdin.close()
                proc.wait(0.2)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


class _ForkedPool:
    """The pool as a child forked from this process (which has imported ``PRELOAD``), with
    the part of ``subprocess.Popen`` that ``WorkerPool`` uses: ``pid``, ``stdin`` (a pipe the
    pool reads to its end), ``wait`` and ``kill``."""

    def __init__(self, socket_path: str) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the pool: never returns into the runner's code
            code = 1
            try:
                os.close(write_end)
                serve(socket_path, read_end)
                code = 0
            except BaseException:  # noqa: BLE001 - reported on stderr, as the interpreter would
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(read_end)
        self.stdin = os.fdopen(write_end, "wb", buffering=0)
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker pool {self.pid}", timeout)
            else:
                time.sleep(0.01)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start(argv: list[str]) -> WorkerPool | None:
    """Start the pool when ``argv`` asks for multi_processing workers (once per process)."""
    global _pool
    if _pool is None and wants_pool(argv):
        try:
            _pool = WorkerPool()
        except OSError as err:  # no pool: Beam's own worker command
            LOG.warning("worker pool not started (%s); workers start as separate processes", err)
    return _pool


def stop() -> None:
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.close()
    _prestarted("release_prestarted")


def _prestarted(action: str, *args) -> None:
    """``transforms.extract.<action>(*args)`` on the extraction children started ahead; a
    process that has not imported that module has started none and inherited none."""
    extract = sys.modules.get("transforms.extract")
    if extract is not None:
        getattr(extract, action)(*args)


def local_runner():
    """The FnApiRunner; its multi_processing workers come from the pool when one was started."""
    from apache_beam.portability import python_urns
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.beamspeed import short_sampling_period

    short_sampling_period()  # bundles run in this process with one worker
    forward_worker_logs()
    pool = _pool

    class LocalRunner(FnApiRunner):
        def run_via_runner_api(self, pipeline_proto, options):
            if pool is not None:
                stock = f"{sys.executable} -m apache_beam.runners.worker.sdk_worker_main".encode()
                for environment in pipeline_proto.components.environments.values():
                    if environment.urn == python_urns.SUBPROCESS_SDK and environment.payload == stock:
                        environment.payload = pool.command.encode()
            return super().run_via_runner_api(pipeline_proto, options)

    return LocalRunner()


#: folders of storybeam's own modules: their log lines from worker processes pass at INFO
_OWN_CODE = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), d) + os.sep
    for d in ("pipeline", "transforms")
)
#: Beam's note at every worker start that has no meaning for these runs
_WORKER_NOISE = ("No semi_persistent_directory found",)


def forward_worker_logs() -> None:
    """Log lines of multi-process workers reach the runner through Beam's logging service,
    which printed each as a WARNING-or-above dump of its proto (``Worker: severity: ...``),
    so our INFO progress lines were never seen (Beam's loggers are set to WARNING). Here:
    storybeam's own lines are logged as ``storybeam.worker`` at their level with their text,
    Beam's at WARNING and above as ``apache_beam.worker``, and Beam's notice about a
    semi-persistent directory not at all. Installed once, in the runner process."""
    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.worker.log_handler import LOGENTRY_TO_LOG_LEVEL_MAP

    servicer = local_job_service.BeamFnLoggingServicer
    if getattr(servicer.Logging, "_storybeam", False):
        return
    own, beam_log = logging.getLogger("storybeam.worker"), logging.getLogger("apache_beam.worker")

    def logging_service(self, log_bundles, context=None):
        for log_bundle in log_bundles:
            for entry in log_bundle.log_entries:
                level = LOGENTRY_TO_LOG_LEVEL_MAP.get(entry.severity, logging.INFO)
                if entry.log_location.startswith(_OWN_CODE):
                    own.log(level, "%s", entry.message)
                elif level >= logging.WARNING and not entry.message.startswith(_WORKER_NOISE):
                    beam_log.log(level, "%s (%s)", entry.message, entry.log_location)
        return iter([])

    logging_service._storybeam = True
    servicer.Logging = logging_service


# --- the pool process ---------------------------------------------------------------------


def _read_exact(conn: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = conn.recv(min(size - got, 1 << 16))
        if not chunk:
            raise EOFError("client went away")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _exit_with_client(conn: socket.socket) -> None:
    """In a worker: end when the client process ends (the runner killed it, or died)."""
    try:
        while conn.recv(1 << 10):
            pass
    except OSError:
        pass
    os._exit(1)


def _run_worker(conn: socket.socket, fds: list[int], request: dict) -> None:
    """In the forked child: become the client's SDK worker. Never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the pool's reaper is not the worker's
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        conn.sendall(STARTED)
        threading.Thread(target=_exit_with_client, args=(conn,), daemon=True).start()
        from apache_beam.runners.worker import sdk_worker_main

        sdk_worker_main.main([])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported on the worker's stderr, like a crash
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(bytes([code & 0xFF]))
        except (OSError, ValueError):
            pass
        os._exit(code)


def serve(path: str, control: int = 0) -> None:
    """The pool process: listen first (clients that come early wait in the backlog), import,
    then fork a worker per client until the runner closes ``control`` (our standard input;
    a pipe's read end in a pool forked from the runner)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    import importlib

    skip_optional_beam()  # the pool serves local runs only
    for module in PRELOAD:
        importlib.import_module(module)
    from transforms.beamspeed import short_sampling_period
    from transforms.extract import freeze_startup_heap
    from transforms.stories import preload

    short_sampling_period()  # for the workers it forks

    preload()  # scipy, wordfreq, function words (wordfreq imports on a thread, joined before any fork)
    freeze_startup_heap(libraries=False)
    # Workers are waited for (not left to the kernel with SIG_IGN) so that their CPU time adds
    # up in the resource usage of this process's children, and so of the runner's.
    signal.signal(signal.SIGCHLD, lambda signum, frame: _reap(os.WNOHANG))
    while True:
        ready, _, _ = select.select([listener, control], [], [])
        if control in ready and not os.read(control, 1 << 10):
            break
        if listener not in ready:
            continue
        conn, _ = listener.accept()
        fds: list[int] = []
        try:
            conn.settimeout(30)
            header, fds, _, _ = socket.recv_fds(conn, 8, 3)
            request = json.loads(_read_exact(conn, int.from_bytes(header, "big")))
            conn.settimeout(None)
        except (OSError, ValueError, EOFError):
            for fd in fds:
                os.close(fd)
            conn.close()  # the client runs the stock worker
            continue
        if os.fork() == 0:
            listener.close()
            _prestarted("pass_on_prestarted", True)  # to the worker: an extraction child started ahead, if one is left
            _run_worker(conn, fds, request)
        _prestarted("pass_on_prestarted", False)
        for fd in fds:
            os.close(fd)
        conn.close()
    listener.close()
    # The runner removes the socket's folder when it closes the pool; a runner that was killed
    # cannot, so the pool, which sees its standard input end either way, does it too.
    folder = os.path.dirname(path)
    if os.path.basename(folder).startswith(SOCKET_DIR_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)
    _reap(0)  # workers end with their clients, which the runner has waited for


def _reap(options: int) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, options)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":
    serve(sys.argv[1])
