"""Parquet outputs with our own commit protocol, through fsspec.

Layout under the output root (see CONTRACT.md)::

    articles/[date=YYYY-MM-DD/]part-<run>-<shard>.parquet
    stories/part-<run>-<shard>.parquet
    failures/part-<run>-<shard>.parquet
    summary.json
    _tmp/<run>/...            (in-flight files; never read as output; the folder goes once empty)

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
import re
import zlib
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from transforms.fsutil import commit_staged, move
from transforms.knownindex import HexMap, HexSet, known_from_batches
from transforms.records import FAILED, FILTER_STAGE, Article, Failure, Story, utcnow
from transforms.schemas import SCHEMAS, to_table

LOG = logging.getLogger(__name__)

KINDS = ("articles", "stories", "failures")
SUMMARY_KEYS = ("inputs", "articles", "duplicates", "stories", "filtered", "failed")


@dataclass(frozen=True)
class SinkSettings:
    # At most this many files per partition for each table. Rows go to shard hash(id) % n, so
    # the output is the same whatever the number of workers.
    shards: int = 4
    # ... and n is only as large as a partition needs: one file per rows_per_shard rows. A
    # backfill spreads articles over hundreds of dates; 8 files per date made files of a few
    # rows, and their fixed cost (open, footer, rename) was ~8 ms each.
    rows_per_shard: int = 50_000
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
        if self.rows_per_shard < 1:
            raise ValueError("rows_per_shard: must be at least 1")
        if self.compression not in ("zstd", "snappy", "gzip", "none"):
            raise ValueError(f"compression: unsupported {self.compression!r}")
        if self.mode not in ("replace", "append"):
            raise ValueError(f"mode: must be 'replace' or 'append', not {self.mode!r}")


def _shard(key: str, shards: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % shards


def partition_of(kind: str, record: Any, settings: SinkSettings) -> str:
    """Partition directory of one record ("" when the table is not partitioned)."""
    if kind == "articles" and settings.partition_by_date:
        return f"date={record.event_time.date().isoformat()}"
    return ""


def shard_count(rows: int | None, settings: SinkSettings) -> int:
    """Files for a partition of ``rows`` rows (None: unknown, the most allowed)."""
    if rows is None:
        return settings.shards
    return max(1, min(settings.shards, -(-rows // settings.rows_per_shard)))


def shard_of(kind: str, record: Any, settings: SinkSettings, rows: int | None = None) -> int:
    """Shard of one record inside its partition; ``rows``: how many rows its partition has
    (see ``shard_count``)."""
    key = record.article_id if kind == "articles" else record.story_id if kind == "stories" else record.url
    return _shard(key, shard_count(rows, settings))


def _sort_key(kind: str, record: Any) -> tuple:
    if kind == "articles":
        return (record.article_id, record.url)
    if kind == "stories":
        return (record.story_id,)
    return (record.url, record.stage, record.reason, record.detail)


# A column chunk smaller than this (bytes, in Arrow) is written plain: neither compressed nor
# dictionary-encoded. Small partitions (a date with a few articles) make files of a few rows,
# where setting up a codec and a dictionary per column costs more than it saves. Measured on
# the 526 files (1 to 9 rows each) of a 1,000-page run: 1.26 -> 0.63 ms per file, 8.62 ->
# 8.28 MB in all. In a file of 1,000 articles only columns that are (nearly) all null stay
# under the bound: the same articles in one file came out the same size either way.
PLAIN_COLUMN_BYTES = 1024


def write_table(fs, path: str, kind: str, records: list[Any], compression: str) -> None:
    """Write one Parquet file (rows sorted by id, so equal inputs give equal files)."""
    rows = sorted(records, key=lambda r: _sort_key(kind, r))
    write_arrow(fs, path, to_table(rows, SCHEMAS[kind]), compression)


def write_arrow(fs, path: str, table, compression: str) -> None:
    """Write a pyarrow table as one Parquet file (small column chunks plain)."""
    encoded = [name for name in table.column_names if table.column(name).nbytes >= PLAIN_COLUMN_BYTES]
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as handle:
        pq.write_table(
            table,
            handle,
            compression={name: compression if name in encoded else "none" for name in table.column_names},
            use_dictionary=encoded,
        )


def tmp_path(base: str, run_id: str, kind: str, partition: str, name: str) -> str:
    """Where a shard is written before the commit moves it to ``kind/partition/name``: one
    folder per kind, the partition in the file name (``date=...``, no slash). Folders per
    partition, as the final layout has, cost a folder to make per partition and a tree to
    walk to remove after the commit (1k pages: 526 partitions, ~0.08 s on one worker)."""
    return posixpath.join(base, "_tmp", run_id, kind, f"{partition}.{name}" if partition else name)


class _WriteShard(beam.DoFn):
    """((kind, partition, shard), records) -> (tmp path, final path)."""

    def __init__(self, root: str, run_id: str, settings: SinkSettings):
        self._root, self._run_id, self._settings = root, run_id, settings

    def setup(self):
        self._fs, self._base = fsspec.core.url_to_fs(self._root)

    def process(self, element):
        (kind, partition, shard), records = element
        name = f"part-{self._run_id}-{shard:05d}.parquet"
        final = (
            posixpath.join(self._base, kind, partition, name) if partition else posixpath.join(self._base, kind, name)
        )
        tmp = tmp_path(self._base, self._run_id, kind, partition, name)
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


def commit_outputs(
    root: str,
    run_id: str,
    written: list[tuple[str, str, str]],
    summary: dict,
    settings: SinkSettings,
    inputs: tuple[str, ...] = (),
    staged: list[tuple[str, str]] | None = None,
) -> dict:
    """Move a run's complete files into place, record the run in the manifest, drop earlier
    runs' files (replace mode), write summary.json last. Kinds with no rows get an empty file so
    every table stays readable.

    Crash safety: data files carry the run id in their name; then staged state files (feed
    seen-entries, story state: ``staged``) are moved into place; the manifest entry
    ``_manifest/<run_id>.json`` is written last, as the commit point; files of a run without a manifest entry
    are orphans of an interrupted commit, removed by ``remove_orphans`` before a resume."""
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
        move(fs, tmp, final)
        finals.add(final)
    commit_staged(list(staged or ()))
    entry = {"run_id": run_id, "inputs": sorted(inputs), "counts": {k: summary.get(k, 0) for k in SUMMARY_KEYS}}
    _write_json(
        fs,
        posixpath.join(base, "_tmp", f"manifest-{run_id}.json"),
        posixpath.join(base, MANIFEST, f"{run_id}.json"),
        entry,
    )
    if settings.mode == "replace":
        replaced = 0
        for kind in KINDS:
            for path in fs.find(posixpath.join(base, kind)):
                if path.endswith(".parquet") and path not in finals:
                    fs.rm(path)
                    replaced += 1
            _remove_empty_dirs(fs, posixpath.join(base, kind))
        if replaced:  # the default mode: said, since a user may have meant to append
            LOG.warning(
                "replace mode: removed %d file(s) of earlier runs under %s (sink.mode: append keeps them)",
                replaced,
                root,
            )
        for path in fs.find(posixpath.join(base, MANIFEST)):
            if not path.endswith(f"/{run_id}.json"):
                fs.rm(path)
    if fs.exists(posixpath.join(base, "_tmp", run_id)):
        fs.rm(posixpath.join(base, "_tmp", run_id), recursive=True)
    summary = dict(summary, run_id=run_id, files={k: sum(1 for w in written if w[0] == k) for k in KINDS})
    write_summary(root, run_id, summary)
    _remove_if_empty(fs, posixpath.join(base, "_tmp"))
    LOG.info("committed %d files under %s", len(written), root)
    return summary


def _write_json(fs, tmp: str, final: str, value: Any) -> None:
    fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
    with fs.open(tmp, "w") as handle:
        json.dump(value, handle, indent=2, sort_keys=True, default=str)
    move(fs, tmp, final)


MANIFEST = "_manifest"


def write_summary(root: str, run_id: str, summary: dict) -> None:
    """summary.json, replaced atomically (temp name, then move)."""
    fs, base = fsspec.core.url_to_fs(root)
    _write_json(
        fs, posixpath.join(base, "_tmp", f"summary-{run_id}.json"), posixpath.join(base, "summary.json"), summary
    )


# Batch file names: part-<YYYYmmddTHHMMSS>-<6 hex>[-b<batch>]-<shard | c0000>.parquet. Streaming
# files (part-<window YYYYmmddTHHMM>-<run>-<seq>-<shard>) do not match and are never orphans.
_BATCH_FILE = re.compile(r"^part-(\d{8}T\d{6}-[0-9a-f]{6}(?:-b\d{4})?)-(?:\d{5}|c\d{4})\.parquet$")


_PENDING_STATE = re.compile(r"^_pending-(\d{8}T\d{6}-[0-9a-f]{6}(?:-b\d{4})?)-")


def _run_of(path: str) -> str | None:
    """'.../part-<run_id>-<shard>.parquet' of a batch run -> run_id, else None."""
    match = _BATCH_FILE.match(posixpath.basename(path))
    return match.group(1) if match else None


def read_manifest(root: str) -> tuple[set[str], set[str]]:
    """(inputs fully processed by committed runs, committed run ids) of an output root."""
    entries = manifest_entries(root)
    return {i for e in entries for i in e.get("inputs", ())}, {e["run_id"] for e in entries}


def remove_orphans(root: str, committed_runs: set[str]) -> list[str]:
    """Delete data files written by runs that never committed (a commit killed midway)."""
    fs, base = fsspec.core.url_to_fs(root)
    removed = []
    for kind in KINDS:
        folder = posixpath.join(base, kind)
        if fs.exists(folder):
            for path in fs.find(folder):
                run = _run_of(path)
                if run is not None and run not in committed_runs:
                    fs.rm(path)
                    removed.append(path)
    tmp = posixpath.join(base, "_tmp")
    if fs.exists(tmp):
        fs.rm(tmp, recursive=True)
    # state files a killed run staged for its commit (``fsutil.stage_file``: "_pending-<run>-...")
    state = posixpath.join(base, "_state")
    if fs.exists(state):
        for path in fs.find(state):
            match = _PENDING_STATE.match(posixpath.basename(path))
            if match and match.group(1) not in committed_runs:
                fs.rm(path)
                removed.append(path)
    return removed


def existing_articles(root: str, runs: set[str] | None = None) -> tuple[HexSet, HexMap, HexMap]:
    """What the output under root already holds (empty when nothing): every committed
    article_id; content_hash -> article_id of the articles that are no duplicate (the
    smallest id when several are); and article_id -> story_id of those articles (a later
    exact copy joins that story). With ``runs``, only of the files those batch runs wrote.
    Kept as sorted 64-bit integers (``transforms.knownindex``): the DoFns of an appending run
    carry them to every bundle."""
    fs, base = fsspec.core.url_to_fs(root)
    folder = posixpath.join(base, "articles")
    if not fs.exists(folder):
        return HexSet(), HexMap(), HexMap()
    import pyarrow.dataset as ds

    source: str | list[str] = folder
    if runs is not None:
        source = [p for p in fs.find(folder) if _run_of(p) in runs]
        if not source:
            return HexSet(), HexMap(), HexMap()
    dataset = ds.dataset(source, format="parquet", partitioning="hive", filesystem=fs)
    columns = ["article_id", "content_hash", "duplicate_of", "story_id"]
    # batch by batch: an output's ids as strings would take ~80 bytes a row at once
    return known_from_batches(dataset.to_batches(columns=columns), lambda: dataset.to_table(columns=columns))


class _SkipKnown(beam.DoFn):
    def __init__(self, known: Set[str]):
        self._known = known

    def process(self, article: Article):
        if article.article_id in self._known:
            failure = Failure(
                article.url,
                FILTER_STAGE,
                "already_ingested",
                f"article {article.article_id} is in the output",
                utcnow(),
            )
            yield beam.pvalue.TaggedOutput(FAILED, failure)
        else:
            yield article


class SkipKnownArticles(beam.PTransform):
    """PCollection[Article] -> ``.ok`` articles not yet in the output, ``.failed`` the others
    (stage filter, reason already_ingested). Appending runs use it so that an article seen by an
    earlier run (the same URL in two archives) is not written twice."""

    def __init__(self, known: Set[str]):
        super().__init__()
        self._known = known

    def expand(self, articles):
        return articles | beam.ParDo(_SkipKnown(self._known)).with_outputs(FAILED, main="ok")


def compact_stories(root: str, run_id: str, settings: SinkSettings) -> int:
    """Merge story rows that several runs wrote for the same story_id into one row per story
    (union of article ids, earliest/latest dates, the earliest row's title, or the first
    headline of a later row when it has none) and replace the stories/ files with the result;
    returns the number of stories. Used after each batch of
    batched, appending or resumed runs, and by ``--resume`` to finish a run killed after its
    last commit. Nothing is rewritten when every story has one row already. A kill midway
    leaves rows twice (the merged file is moved in before the old ones go), never fewer.
    Rows of stories written once stay Arrow rows; only the repeated stories (those a batch
    continued) are merged in Python: a backfill's story table grows with every batch."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    fs, base = fsspec.core.url_to_fs(root)
    folder = posixpath.join(base, "stories")
    old = _parquet_files(fs, folder)
    if not old:
        return 0
    schema = SCHEMAS["stories"]
    table = ds.dataset(old, format="parquet", filesystem=fs).to_table().select(schema.names).cast(schema)
    counts = pc.value_counts(table["story_id"])
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if not len(repeated) and len(old) == 1:
        return table.num_rows
    several = pc.is_in(table["story_id"], value_set=repeated)
    merged = to_table(_merged_story_rows(table.filter(several).to_pylist()), schema)
    table = pa.concat_tables([table.filter(pc.invert(several)), merged]).sort_by("story_id")
    name = f"part-{run_id}-c0000.parquet"  # run id of a committed run: not an orphan
    tmp = posixpath.join(base, "_tmp", run_id, "stories", name)
    write_arrow(fs, tmp, table, settings.compression)
    move(fs, tmp, posixpath.join(folder, name))
    for path in old:
        fs.rm(path)
    staging = posixpath.join(base, "_tmp", run_id)  # its commit removed it once; made again above
    if fs.exists(staging):
        fs.rm(staging, recursive=True)
    return table.num_rows


def _merged_story_rows(rows: list[dict]) -> list[Story]:
    """One Story per story_id of ``rows`` (story rows as dicts), as ``compact_stories`` merges."""
    merged: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: (r["story_id"], r["first_published"] is None, r["first_published"] or 0)):
        cur = merged.get(row["story_id"])
        if cur is None:
            merged[row["story_id"]] = dict(row, article_ids=list(row["article_ids"] or []))
            continue
        cur["article_ids"] = sorted(set(cur["article_ids"]) | set(row["article_ids"] or []))
        cur["title"] = cur["title"] or row["title"]  # as link_clusters: the first headline
        for key, pick in (
            ("first_published", min),
            ("window_start", min),
            ("last_published", max),
            ("window_end", max),
        ):
            values = [v for v in (cur[key], row[key]) if v is not None]
            cur[key] = pick(values) if values else None
    stories = []
    for row in merged.values():
        ids = tuple(sorted(row["article_ids"]))
        stories.append(Story(**dict(row, article_ids=ids, size=len(ids))))
    return stories


def _parquet_files(fs, folder: str, runs: set[str] | None = None) -> list[str]:
    """The Parquet files under ``folder`` (of these batch runs only, when given)."""
    if not fs.exists(folder):
        return []
    return [p for p in fs.find(folder) if p.endswith(".parquet") and (runs is None or _run_of(p) in runs)]


def runs_totals(root: str, runs: set[str]) -> dict[str, Any]:
    """What the data files of these (committed, batch) runs hold: ``stories``, the distinct
    stories their articles belong to, and ``failures_by_reason`` ("stage/reason" -> rows)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    fs, base = fsspec.core.url_to_fs(root)
    articles = _parquet_files(fs, posixpath.join(base, "articles"), runs)
    stories = 0
    if articles:  # counted in Arrow: the invocation's articles grow with every batch
        table = ds.dataset(articles, format="parquet", filesystem=fs).to_table(columns=["story_id"])
        stories = pc.count_distinct(table.column("story_id"), mode="all").as_py()
    reasons: dict[str, int] = {}
    failures = _parquet_files(fs, posixpath.join(base, "failures"), runs)
    if failures:
        table = ds.dataset(failures, format="parquet", filesystem=fs).to_table(columns=["stage", "reason"])
        keys = pc.binary_join_element_wise(table.column("stage"), table.column("reason"), "/")
        counted = pc.value_counts(keys)
        reasons = dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True))
    return {"stories": stories, "failures_by_reason": dict(sorted(reasons.items()))}


def output_totals(root: str) -> dict[str, int]:
    """Rows in the whole output: ``articles_in_output``, ``stories_in_output``."""
    import pyarrow.dataset as ds

    fs, base = fsspec.core.url_to_fs(root)
    totals = {}
    for kind in ("articles", "stories"):
        folder = posixpath.join(base, kind)
        paths = _parquet_files(fs, folder)
        totals[f"{kind}_in_output"] = ds.dataset(paths, format="parquet", filesystem=fs).count_rows() if paths else 0
    return totals


def manifest_entries(root: str) -> list[dict]:
    """The committed runs' manifest entries, in run id order (time order)."""
    fs, base = fsspec.core.url_to_fs(root)
    folder = posixpath.join(base, MANIFEST)
    entries = []
    if fs.exists(folder):
        for path in sorted(fs.find(folder)):
            if path.endswith(".json"):
                with fs.open(path, "r") as handle:
                    entries.append(json.load(handle))
    return sorted(entries, key=lambda e: e["run_id"])


def _remove_if_empty(fs, path: str) -> None:
    """A local directory removed when it is empty; kept when another run (a streaming one,
    or a batch into the same output) is writing there."""
    if isinstance(fs, LocalFileSystem):
        try:
            os.rmdir(path)
        except OSError:
            pass


def _remove_empty_dirs(fs, top: str) -> None:
    if not isinstance(fs, LocalFileSystem):
        return  # object stores have no empty directories
    for dirpath, dirnames, filenames in os.walk(top, topdown=False):
        if dirpath != top and not dirnames and not filenames:
            os.rmdir(dirpath)


class _Commit(beam.DoFn):
    """One element in (any), the summary out, after every file is moved into place. Side
    inputs: the summary of the marks, then ``written`` lists of (kind, tmp path, final path),
    then the lists of staged state files."""

    def __init__(self, root: str, run_id: str, settings: SinkSettings, inputs: tuple[str, ...], written: int):
        self._root, self._run_id, self._settings, self._inputs = root, run_id, settings, inputs
        self._written = written

    def process(self, _, summary, *lists):
        written = [w for files in lists[: self._written] for w in files]
        staged = [s for files in lists[self._written :] for s in files]
        yield commit_outputs(self._root, self._run_id, written, summary, self._settings, self._inputs, staged)


def _keyed_by_shard(
    element: tuple[tuple[str, str], Any], sizes: Mapping[tuple[str, str], int], settings: SinkSettings
) -> tuple[tuple[str, str, int], Any]:
    """((kind, partition), record) -> ((kind, partition, shard), record), the partition's row
    count (``sizes``) deciding how many shards it has."""
    (kind, partition), record = element
    return (kind, partition, shard_of(kind, record, settings, sizes[kind, partition])), record


def _keyed_by_summary(
    element: tuple[tuple[str, str], Any], summary: Mapping[str, Any], settings: SinkSettings
) -> tuple[tuple[str, str, int], Any]:
    """``_keyed_by_shard`` for the stories and failures (unpartitioned: ``partition_of``),
    their row counts taken from the run's summary: a story row per story mark, a failure row
    per filtered or failed mark."""
    sizes = {("stories", ""): summary["stories"], ("failures", ""): summary["filtered"] + summary["failed"]}
    return _keyed_by_shard(element, sizes, settings)


#: the summary of a run without marks (no inputs at all)
EMPTY_SUMMARY = SummaryFn().extract_output(SummaryFn().create_accumulator())


class WriteOutputs(beam.PTransform):
    """{'articles': PCollection[Article], 'stories': PCollection[Story],
    'failures': PCollection[Failure], 'inputs': PCollection[Any] or a tuple of them (one
    element per input)} -> PCollection[dict] (the summary, one element, after everything is
    committed), plus optional ``'staged'``: a PCollection or a tuple of PCollections of
    (pending, final) state files moved into place in the same commit.
    ``inputs`` names the input files the run reads, recorded in the manifest when the run
    commits (for ``--resume``). Optional ``'article_partitions'``: one ``partition_of`` per
    article, made upstream of the articles (it decides how many files a date partition
    gets, see ``shard_count``), so that the articles need not be held to be counted.

    Every step of the local runner's plan is a round trip to the workers (~20-30 ms with 2
    of them, whatever it carries), so the small things are read where they are made: the
    stories and failures are counted by the summary's marks, not by a count of their own;
    the commit reads the writers' file lists and the staged files as side inputs, without a
    Flatten and a list combine first; the summary has no step that puts in a default for an
    empty run (the side inputs' default does)."""

    def __init__(self, root: str, run_id: str, settings: SinkSettings, inputs: tuple[str, ...] = ()):
        super().__init__()
        self._root, self._run_id, self._settings, self._inputs = root, run_id, settings, tuple(inputs)

    def expand(self, pcolls: dict[str, Any]):
        settings = self._settings
        inputs = pcolls["inputs"] if isinstance(pcolls["inputs"], tuple) else (pcolls["inputs"],)
        marks = (
            (
                *(pc | f"MarkInputs{i or ''}" >> beam.Map(lambda _: "inputs") for i, pc in enumerate(inputs)),
                pcolls["articles"] | "MarkArticles" >> beam.FlatMap(article_marks),
                pcolls["stories"] | "MarkStories" >> beam.Map(lambda _: "stories"),
                pcolls["failures"] | "MarkFailures" >> beam.FlatMap(failure_marks),
            )
            | "AllMarks" >> beam.Flatten()
            | "Summarise" >> beam.CombineGlobally(SummaryFn()).without_defaults()
        )
        summary = beam.pvalue.AsSingleton(marks, default_value=EMPTY_SUMMARY)

        def write(rows, key, sizes, name: str):
            """Rows keyed to their shard by their partition's count (``key`` reads it from
            ``sizes``), grouped, written: PCollection of (kind, tmp path, final path)."""
            return (
                rows
                | f"Key{name}" >> beam.Map(key, sizes, settings)
                | f"Group{name}" >> beam.GroupByKey()
                | f"Write{name}" >> beam.ParDo(_WriteShard(self._root, self._run_id, settings))
            )

        # Rows per (kind, partition) first, so that a small partition gets one file. Articles
        # are counted from ``article_partitions``, made upstream (from the articles when not
        # given): a count taken from the articles themselves makes the runner hold them all
        # until it is known. They also go through a shuffle and a writer of their own: a
        # Flatten is one more pass through the runner for everything that goes through it.
        articles = pcolls["articles"] | "PartitionArticles" >> beam.Map(
            lambda r: (("articles", partition_of("articles", r, settings)), r)
        )
        partitions = pcolls.get("article_partitions")
        if partitions is None:
            partitions = pcolls["articles"] | "MarkArticlePartitions" >> beam.Map(
                lambda r: partition_of("articles", r, settings)
            )
        sizes = (
            partitions
            | "ArticlePartitionSizes" >> beam.Map(lambda partition: ("articles", partition))
            | "CountArticlePartitions" >> beam.combiners.Count.PerElement()
        )
        written = [write(articles, _keyed_by_shard, beam.pvalue.AsDict(sizes), "ArticleShards")]
        small = [
            pcolls[kind]
            | f"Partition{kind.title()}" >> beam.Map(lambda r, k=kind: ((k, partition_of(k, r, settings)), r))
            for kind in KINDS
            if kind != "articles"
        ]
        rows = small | "AllPartitioned" >> beam.Flatten()
        written.append(write(rows, _keyed_by_summary, summary, "Shards"))
        staged = pcolls.get("staged", ())
        staged = staged if isinstance(staged, tuple) else (staged,)
        return (
            written[0].pipeline
            | "Commit" >> beam.Create([None])
            | "CommitOutputs"
            >> beam.ParDo(
                _Commit(self._root, self._run_id, settings, self._inputs, len(written)),
                summary,
                *(beam.pvalue.AsList(files) for files in written),
                *(beam.pvalue.AsList(files) for files in staged),
            )
        )
