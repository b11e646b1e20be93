"""Small fsspec helpers shared by every stage that writes files (sinks, feed and story state).

``move``: a rename where the file system has one (local, memory: atomic), else copy then
delete. On object stores a rename *is* a copy and a delete; doing it explicitly also avoids
gcsfs's ``moveTo`` call, which some GCS emulators and older buckets do not implement (gcsfs
retries it for ~30 s per file before falling back).
"""

from __future__ import annotations

import posixpath

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
