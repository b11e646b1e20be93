"""Small fsspec helpers shared by every stage that writes files (sinks, feed and story state).

``check_output``: before any work, a probe file is written to the output root and removed,
so that an output that cannot be written (a path under a plain file, a bucket out of reach,
missing credentials) stops the run at once with one line, not after all the work with a
traceback from the commit step.

``move``: a rename where the file system has one (local, memory: atomic), else copy then
delete. On object stores a rename *is* a copy and a delete; doing it explicitly also avoids
gcsfs's ``moveTo`` call, which some GCS emulators and older buckets do not implement (gcsfs
retries it for ~30 s per file before falling back).
"""

from __future__ import annotations

import os
import posixpath
import threading
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem


def move(fs: fsspec.AbstractFileSystem, src: str, dst: str) -> None:
    parent = posixpath.dirname(dst)
    if isinstance(fs, (LocalFileSystem, MemoryFileSystem)):
        fs.makedirs(parent, exist_ok=True)
        fs.mv(src, dst)
        return
    fs.copy(src, dst)
    fs.rm(src)


def write_atomic(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` under a temporary name beside it, then move it into place, so
    a reader sees the old or the new content, never half of one."""
    fs, path = fsspec.core.url_to_fs(url)
    tmp = posixpath.join(posixpath.dirname(path), f"_tmp-{posixpath.basename(path)}")
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(tmp, "wb") as handle:
        handle.write(data)
    move(fs, tmp, path)


def stage_file(url: str, data: bytes, token: str) -> tuple[str, str]:
    """Write ``data`` beside ``url`` under a pending name; returns (pending URL, final URL).
    The sink's commit moves pending state files into place together with the run's output
    (``commit_staged``), so state never runs ahead of, or behind, what was committed."""
    fs, path = fsspec.core.url_to_fs(url)
    pending = posixpath.join(posixpath.dirname(path), f"_pending-{token}-{posixpath.basename(path)}")
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(pending, "wb") as handle:
        handle.write(data)
    return fs.unstrip_protocol(pending) if "://" in url else pending, url


def commit_staged(pairs: list[tuple[str, str]]) -> None:
    """Move staged (pending, final) files into place."""
    for pending, final in sorted(pairs):
        fs, src = fsspec.core.url_to_fs(pending)
        _, dst = fsspec.core.url_to_fs(final)
        move(fs, src, dst)


class OutputError(ValueError):
    """The output root cannot be written (a usage error: exit 2, one line)."""


# Seconds the output probe may take. Offline, gcsfs spends ~15 s looking for credentials and
# then retries the request for more than a minute; a reachable store answers in well under a
# second, a slow first authentication (metadata server) in a few.
PROBE_TIMEOUT_S = 20.0


def check_output(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise OutputError naming ``url`` and the reason unless a small file can be written under
    it and removed again (a local root is created as the run would create it). Runs in a
    daemon thread so that a store that does not answer (offline) costs ``timeout_s`` at most."""
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            _probe(url)
            outcome.append(None)
        except BaseException as err:  # reported in the caller's thread
            outcome.append(err)

    thread = threading.Thread(target=probe, name="storybeam-output-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise OutputError(f"output {url}: no answer from its storage within {timeout_s:.0f} s (offline?)")
    if outcome[0] is not None:
        raise OutputError(f"output {url}: cannot write there: {_one_line(outcome[0])}")


def _probe(url: str) -> None:
    fs, root = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        blocker = _file_on_path(root)
        if blocker is not None:
            raise NotADirectoryError(f"{blocker} is a file, not a directory")
        fs.makedirs(root, exist_ok=True)
    probe = posixpath.join(root.rstrip("/"), f"_probe-{uuid.uuid4().hex[:12]}")
    with fs.open(probe, "wb") as handle:
        handle.write(b"storybeam output probe\n")
    fs.rm(probe)


def _file_on_path(path: str) -> str | None:
    """The path itself or its nearest existing ancestor, when that is not a directory."""
    at = os.path.abspath(path)
    while not os.path.exists(at):
        parent = os.path.dirname(at)
        if parent == at:
            return None
        at = parent
    return None if os.path.isdir(at) else at


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = err.strerror  # the path is in the message already
    text = text.splitlines()[0] if text else text
    return text if len(text) <= 300 else text[:297] + "..."
