"""Parquet outputs with our own commit protocol, through fsspec.

Layout under the output root (see CONTRACT.md)::

    articles/[date=YYYY-MM-DD/]part-<run>-<shard>.parquet
    stories/part-<run>-<shard>.parquet
    failures/part-<run>-<shard>.parquet
    summary.json
    _tmp/<run>/...            (in-flight files; never read as output)

Why our own sink: Beam's ``WriteToParquet`` finalisation deletes matching files of earlier runs
before the new ones are complete, and under streaming triggers it left files without a footer.
Here every shard is written under ``_tmp/<run>/`` and moved into place only after all shards of
the run are complete (one ``CommitOutputs`` step that sees the full list); files of earlier runs
are removed after the move (``mode: replace``) or kept (``mode: append``, used by ``--resume``).
A run that dies midway leaves the previous complete output untouched and nothing but ``_tmp``
files, which readers never look at (pyarrow ignores ``_``-prefixed paths).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from transforms.records import FILTER_STAGE, SCHEMAS, Article, Failure, Story, to_table

LOG = logging.getLogger(__name__)

KINDS = ("articles", "stories", "failures")
SUMMARY_KEYS = ("inputs", "articles", "duplicates", "stories", "filtered", "failed")


@dataclass(frozen=True)
class SinkSettings:
    # Files per partition for each table. Rows go to shard hash(id) % shards, so the output is
    # the same whatever the number of workers; 4 keeps files large enough for small runs.
    shards: int = 4
    # Hive-partition articles by event date (date=YYYY-MM-DD/), readable with
    # pyarrow.dataset.dataset(path, partitioning="hive").
    partition_by_date: bool = True
    # Parquet codec: zstd is compact and fast to read; snappy/gzip/none also accepted.
    compression: str = "zstd"
    # replace: a re-run replaces earlier files of the output; append: keeps them (resume).
    mode: str = "replace"

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= 10_000:
            raise ValueError("shards: must be between 1 and 10000")
        if self.compression not in ("zstd", "snappy", "gzip", "none"):
            raise ValueError(f"compression: unsupported {self.compression!r}")
        if self.mode not in ("replace", "append"):
            raise ValueError(f"mode: must be 'replace' or 'append', not {self.mode!r}")


def _shard(key: str, shards: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % shards


def shard_key(kind: str, record: Any, settings: SinkSettings) -> tuple[str, str, int]:
    """(kind, partition dir, shard) for one record."""
    if kind == "articles":
        partition = f"date={record.event_time.date().isoformat()}" if settings.partition_by_date else ""
        return kind, partition, _shard(record.article_id, settings.shards)
    if kind == "stories":
        return kind, "", _shard(record.story_id, settings.shards)
    return kind, "", _shard(record.url, settings.shards)


def _sort_key(kind: str, record: Any) -> tuple:
    if kind == "articles":
        return (record.article_id, record.url)
    if kind == "stories":
        return (record.story_id,)
    return (record.url, record.stage, record.reason, record.detail)


def write_table(fs, path: str, kind: str, records: list[Any], compression: str) -> None:
    """Write one Parquet file (rows sorted by id, so equal inputs give equal files)."""
    rows = sorted(records, key=lambda r: _sort_key(kind, r))
    table = to_table(rows, SCHEMAS[kind])
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as handle:
        pq.write_table(table, handle, compression=None if compression == "none" else compression)


class _WriteShard(beam.DoFn):
    """((kind, partition, shard), records) -> (tmp path, final path)."""

    def __init__(self, root: str, run_id: str, settings: SinkSettings):
        self._root, self._run_id, self._settings = root, run_id, settings

    def setup(self):
        self._fs, self._base = fsspec.core.url_to_fs(self._root)

    def process(self, element):
        (kind, partition, shard), records = element
        name = f"part-{self._run_id}-{shard:05d}.parquet"
        final = posixpath.join(self._base, kind, partition, name) if partition else posixpath.join(self._base, kind, name)
        tmp = posixpath.join(self._base, "_tmp", self._run_id, kind, partition, name)
        write_table(self._fs, tmp, kind, list(records), self._settings.compression)
        yield kind, tmp, final


class SummaryFn(beam.CombineFn):
    """Counting marks (str) -> dict of counts; reason marks look like 'reason:stage/code'."""

    def create_accumulator(self) -> dict[str, int]:
        return {}

    def add_input(self, acc: dict[str, int], mark: str) -> dict[str, int]:
        acc[mark] = acc.get(mark, 0) + 1
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, int]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for acc in accs:
            for key, value in acc.items():
                out[key] = out.get(key, 0) + value
        return out

    def extract_output(self, acc: dict[str, int]) -> dict[str, Any]:
        summary: dict[str, Any] = {key: acc.get(key, 0) for key in SUMMARY_KEYS}
        summary["failures_by_reason"] = {k[7:]: v for k, v in sorted(acc.items()) if k.startswith("reason:")}
        accounted = summary["articles"] + summary["filtered"] + summary["failed"]
        summary["unaccounted"] = summary["inputs"] - accounted
        return summary


def article_marks(article: Article) -> list[str]:
    return ["articles", "duplicates"] if article.duplicate_of else ["articles"]


def failure_marks(failure: Failure) -> list[str]:
    kind = "filtered" if failure.stage == FILTER_STAGE else "failed"
    return [kind, f"reason:{failure.stage}/{failure.reason}"]


def commit_outputs(root: str, run_id: str, written: list[tuple[str, str, str]], summary: dict, settings: SinkSettings) -> dict:
    """Move a run's complete files into place, drop earlier runs' files (replace mode), write
    summary.json last. Kinds with no rows get an empty file so every table stays readable."""
    fs, base = fsspec.core.url_to_fs(root)
    written = sorted(written)
    present = {kind for kind, _, _ in written}
    for kind in KINDS:
        if kind not in present:
            name = f"part-{run_id}-00000.parquet"
            tmp = posixpath.join(base, "_tmp", run_id, kind, name)
            write_table(fs, tmp, kind, [], settings.compression)
            written.append((kind, tmp, posixpath.join(base, kind, name)))
    finals = set()
    for _, tmp, final in written:
        fs.makedirs(posixpath.dirname(final), exist_ok=True)
        fs.mv(tmp, final)
        finals.add(final)
    if settings.mode == "replace":
        for kind in KINDS:
            for path in fs.find(posixpath.join(base, kind)):
                if path.endswith(".parquet") and path not in finals:
                    fs.rm(path)
            _remove_empty_dirs(fs, posixpath.join(base, kind))
    if fs.exists(posixpath.join(base, "_tmp", run_id)):
        fs.rm(posixpath.join(base, "_tmp", run_id), recursive=True)
    summary = dict(summary, run_id=run_id, files={k: sum(1 for w in written if w[0] == k) for k in KINDS})
    tmp = posixpath.join(base, "_tmp", f"summary-{run_id}.json")
    with fs.open(tmp, "w") as handle:
        json.dump(summary, handle, indent=2, sort_keys=True)
    fs.mv(tmp, posixpath.join(base, "summary.json"))
    LOG.info("committed %d files under %s", len(written), root)
    return summary


def _remove_empty_dirs(fs, top: str) -> None:
    if not isinstance(fs, LocalFileSystem):
        return  # object stores have no empty directories
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        if dirpath != top and not dirnames and not filenames:
            os.rmdir(dirpath)


class _Commit(beam.DoFn):
    def __init__(self, root: str, run_id: str, settings: SinkSettings):
        self._root, self._run_id, self._settings = root, run_id, settings

    def process(self, written, summary):
        yield commit_outputs(self._root, self._run_id, list(written), summary, self._settings)


class WriteOutputs(beam.PTransform):
    """{'articles': PCollection[Article], 'stories': PCollection[Story],
    'failures': PCollection[Failure], 'inputs': PCollection[Any]} -> PCollection[dict] (the
    summary, one element, after everything is committed)."""

    def __init__(self, root: str, run_id: str, settings: SinkSettings):
        super().__init__()
        self._root, self._run_id, self._settings = root, run_id, settings

    def expand(self, pcolls: dict[str, beam.PCollection]):
        settings = self._settings
        keyed = []
        for kind in KINDS:
            keyed.append(pcolls[kind] | f"Key{kind.title()}" >> beam.Map(lambda r, k=kind: (shard_key(k, r, settings), r)))
        written = (
            keyed
            | "AllRows" >> beam.Flatten()
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(_WriteShard(self._root, self._run_id, settings))
            | "ListWritten" >> beam.combiners.ToList()
        )
        marks = (
            (
                pcolls["inputs"] | "MarkInputs" >> beam.Map(lambda _: "inputs"),
                pcolls["articles"] | "MarkArticles" >> beam.FlatMap(article_marks),
                pcolls["stories"] | "MarkStories" >> beam.Map(lambda _: "stories"),
                pcolls["failures"] | "MarkFailures" >> beam.FlatMap(failure_marks),
            )
            | "AllMarks" >> beam.Flatten()
            | "Summarise" >> beam.CombineGlobally(SummaryFn())
        )
        return written | "CommitOutputs" >> beam.ParDo(
            _Commit(self._root, self._run_id, settings), beam.pvalue.AsSingleton(marks)
        )


__all__ = ["SinkSettings", "WriteOutputs", "commit_outputs", "write_table", "Story"]
