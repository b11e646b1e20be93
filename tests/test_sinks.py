"""The sink's commit protocol: complete files only, re-runs replace, failed runs leave no trace."""

from __future__ import annotations

import json
import posixpath
from datetime import datetime, timezone

import fsspec
import pyarrow.dataset as ds
import pytest

from transforms.records import Article, Failure
from transforms.schemas import ARTICLE_SCHEMA
from transforms.sinks import (
    SinkSettings,
    SummaryFn,
    commit_outputs,
    partition_of,
    shard_count,
    shard_of,
    tmp_path,
    write_table,
)

T = datetime(2026, 3, 10, 9, tzinfo=timezone.utc)


def article(i: int, **kw) -> Article:
    return Article(url=f"https://a.example/{i}", fetched_at=T, text=f"text {i}", article_id=f"{i:016x}", **kw)


def stage_run(root: str, run_id: str, rows: list[Article], settings: SinkSettings | None = None):
    """Write a run's shards to _tmp the way _WriteShard does; returns the written list."""
    settings = settings or SinkSettings(shards=2)
    fs, base = fsspec.core.url_to_fs(root)
    groups: dict = {}
    for row in rows:
        key = ("articles", partition_of("articles", row, settings), shard_of("articles", row, settings))
        groups.setdefault(key, []).append(row)
    written = []
    for (kind, part, shard), recs in sorted(groups.items()):
        name = f"part-{run_id}-{shard:05d}.parquet"
        tmp = tmp_path(base, run_id, kind, part, name)
        write_table(fs, tmp, kind, recs, settings.compression)
        written.append((kind, tmp, posixpath.join(base, kind, part, name)))
    return written


def read_articles(root: str):
    return ds.dataset(f"{root}/articles", format="parquet", partitioning="hive").to_table()


def summary(n: int) -> dict:
    return {"inputs": n, "articles": n, "duplicates": 0, "stories": 0, "filtered": 0, "failed": 0}


def test_rerun_replaces_earlier_files(tmp_path):
    root = str(tmp_path / "out")
    settings = SinkSettings(shards=2)
    commit_outputs(root, "run1", stage_run(root, "run1", [article(i) for i in range(5)]), summary(5), settings)
    commit_outputs(root, "run2", stage_run(root, "run2", [article(i) for i in range(3)]), summary(3), settings)
    table = read_articles(root)
    assert sorted(table.column("article_id").to_pylist()) == [f"{i:016x}" for i in range(3)]
    files = [p.name for p in (tmp_path / "out" / "articles").rglob("*.parquet")]
    assert files and all("run2" in f for f in files)
    assert not (tmp_path / "out" / "_tmp").exists()  # nothing in flight: no staging folder left
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["run_id"] == "run2"
    # another run's files in flight keep the staging folder (and its files)
    other = tmp_path / "out" / "_tmp" / "run4" / "part.parquet"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"in flight")
    commit_outputs(root, "run3", stage_run(root, "run3", [article(1)]), summary(1), settings)
    assert other.read_bytes() == b"in flight"
    assert not (tmp_path / "out" / "_tmp" / "run3").exists()


def test_append_mode_keeps_earlier_files(tmp_path):
    root = str(tmp_path / "out")
    commit_outputs(root, "run1", stage_run(root, "run1", [article(1)]), summary(1), SinkSettings(shards=2))
    commit_outputs(
        root, "run2", stage_run(root, "run2", [article(2)]), summary(1), SinkSettings(shards=2, mode="append")
    )
    assert sorted(read_articles(root).column("article_id").to_pylist()) == [f"{1:016x}", f"{2:016x}"]


def test_uncommitted_run_is_invisible_to_readers(tmp_path):
    root = str(tmp_path / "out")
    settings = SinkSettings(shards=2)
    commit_outputs(root, "run1", stage_run(root, "run1", [article(i) for i in range(4)]), summary(4), settings)
    stage_run(root, "run2", [article(i) for i in range(10, 20)])  # killed before commit
    assert sorted(read_articles(root).column("article_id").to_pylist()) == [f"{i:016x}" for i in range(4)]
    top = ds.dataset(root, format="parquet", partitioning="hive", exclude_invalid_files=True)
    assert all("_tmp" not in f for f in top.files)


def test_empty_tables_are_still_readable(tmp_path):
    root = str(tmp_path / "out")
    commit_outputs(root, "run1", [], summary(0), SinkSettings())
    for kind in ("articles", "stories", "failures"):
        table = ds.dataset(str(tmp_path / "out" / kind), format="parquet").to_table()
        assert table.num_rows == 0
    assert read_articles(root).schema.field("published_at").type == ARTICLE_SCHEMA.field("published_at").type


def test_memory_filesystem(tmp_path):
    root = "memory://sinktest/out"
    commit_outputs(root, "r", stage_run(root, "r", [article(7)]), summary(1), SinkSettings())
    fs = fsspec.filesystem("memory")
    assert fs.exists("/sinktest/out/summary.json")
    paths = [p for p in fs.find("/sinktest/out/articles") if p.endswith(".parquet")]
    assert len(paths) == 1 and "date=2026-03-10" in paths[0]


def test_rows_are_sharded_independently_of_order():
    settings = SinkSettings(shards=3)
    shards = {shard_of("articles", article(i), settings) for i in range(30)}
    assert shards <= {0, 1, 2} and len(shards) > 1
    assert shard_of("articles", article(5), settings) == shard_of("articles", article(5), settings)


def test_small_partitions_get_one_file_and_big_ones_up_to_shards():
    settings = SinkSettings(shards=4, rows_per_shard=10)
    assert [shard_count(n, settings) for n in (1, 10, 11, 35, 1000)] == [1, 1, 2, 4, 4]
    assert shard_count(None, settings) == 4
    assert {shard_of("articles", article(i), settings, rows=10) for i in range(30)} == {0}
    assert {shard_of("articles", article(i), settings, rows=1000) for i in range(30)} == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="rows_per_shard"):
        SinkSettings(rows_per_shard=0)


def test_summary_counts_and_invariant():
    fn = SummaryFn()
    acc = fn.create_accumulator()
    for mark in ["inputs"] * 4 + [
        "articles",
        "duplicates",
        "articles",
        "filtered",
        "reason:filter/empty_text",
        "failed",
        "reason:fetch/timeout",
    ]:
        acc = fn.add_input(acc, mark)
    out = fn.extract_output(fn.merge_accumulators([acc, fn.create_accumulator()]))
    assert out["inputs"] == 4 and out["articles"] == 2 and out["duplicates"] == 1
    assert out["unaccounted"] == 0
    assert out["failures_by_reason"] == {"filter/empty_text": 1, "fetch/timeout": 1}


def test_sink_settings_validate():
    with pytest.raises(ValueError, match="shards"):
        SinkSettings(shards=0)


def test_failure_rows_roundtrip(tmp_path):
    fs = fsspec.filesystem("file")
    path = str(tmp_path / "f.parquet")
    write_table(fs, path, "failures", [Failure("u", "fetch", "timeout", "d", T)], "zstd")
    assert ds.dataset(path).to_table().to_pylist()[0]["reason"] == "timeout"


def test_small_columns_written_plain_large_ones_encoded(tmp_path):
    import pyarrow.parquet as pq

    from transforms.sinks import PLAIN_COLUMN_BYTES

    fs = fsspec.filesystem("file")
    from transforms.records import replace

    rows = [replace(article(i), text=f"body {i} " * PLAIN_COLUMN_BYTES) for i in range(3)]
    for compression in ("zstd", "none"):
        path = str(tmp_path / f"{compression}.parquet")
        write_table(fs, path, "articles", rows, compression)
        meta = pq.ParquetFile(path).metadata.row_group(0)
        codecs = {meta.column(i).path_in_schema: meta.column(i).compression for i in range(meta.num_columns)}
        assert codecs["text"] == ("ZSTD" if compression == "zstd" else "UNCOMPRESSED")
        assert codecs["article_id"] == "UNCOMPRESSED"  # 3 ids: far below the bound
        back = ds.dataset(path).to_table()
        assert back.column("text").to_pylist() == [r.text for r in rows]
        assert back.column("article_id").to_pylist() == [r.article_id for r in rows]


def test_staged_state_moves_in_with_the_commit(tmp_path):
    from transforms.fsutil import stage_file

    root = str(tmp_path / "out")
    state = tmp_path / "out" / "_state" / "feeds.json"
    state.parent.mkdir(parents=True)
    state.write_text("old")
    pair = stage_file(str(state), b"new", "run2")
    assert state.read_text() == "old"  # a run that dies here leaves the old state
    commit_outputs(root, "run2", [], summary(0), SinkSettings(), staged=[pair])
    assert state.read_text() == "new"
    assert not list(state.parent.glob("_pending-*"))
    assert (tmp_path / "out" / "_manifest" / "run2.json").exists()


@pytest.mark.slow
def test_write_outputs_counts_articles_from_marks_or_from_the_articles_alike(tmp_path):
    """The sink keys articles to files from partition marks made upstream (as the pipeline
    does) or, without them, from the articles themselves: the same files either way."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.records import Story
    from transforms.sinks import WriteOutputs

    settings = SinkSettings(shards=3, rows_per_shard=4)
    rows = [article(i, published_at=T.replace(day=10 + i % 2)) for i in range(13)]
    story = Story("s1", "t", "A", ("1",), 1, T, T, T, T)
    roots = {"counted": str(tmp_path / "counted"), "marked": str(tmp_path / "marked")}
    with beam.Pipeline(runner=FnApiRunner()) as p:
        articles = p | "Articles" >> beam.Create(rows)
        for name, root in roots.items():
            outputs = {
                "articles": articles,
                "stories": p | f"Stories{name}" >> beam.Create([story]),
                "failures": p
                | f"Failures{name}" >> beam.Create([Failure("https://a.example/x", "fetch", "http_404", "", T)]),
                "inputs": p | f"Inputs{name}" >> beam.Create([1] * 14),
            }
            if name == "marked":
                outputs["article_partitions"] = articles | beam.Map(lambda a: partition_of("articles", a, settings))
            _ = outputs | f"Write{name}" >> WriteOutputs(root, "run1", settings)

    def files(root: str) -> dict[str, list]:
        fs, base = fsspec.core.url_to_fs(root)
        found = sorted(p for p in fs.find(base) if p.endswith(".parquet"))
        return {posixpath.relpath(p, base): ds.dataset(p).to_table().to_pylist() for p in found}

    counted, marked = files(roots["counted"]), files(roots["marked"])
    assert counted == marked
    # 13 articles over two dates at 4 rows per file: 7 -> 2 files, 6 -> 2 files
    assert sum(name.startswith("articles/") for name in marked) == 4
    assert {"stories/part-run1-00000.parquet", "failures/part-run1-00000.parquet"} <= set(marked)


@pytest.mark.slow
def test_write_outputs_shards_stories_and_failures_by_the_summary_and_commits_an_empty_run(tmp_path):
    """Stories and failures get as many files as their counts in the run's summary ask for
    (no count of their own); a run without any element still commits readable empty tables
    and a summary of zeros (the summary's default comes from the side input)."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.records import Story
    from transforms.sinks import WriteOutputs

    settings = SinkSettings(shards=8, rows_per_shard=4)
    failures = [Failure(f"https://a.example/{i}", "fetch", "http_404", "", T) for i in range(10)]
    stories = [Story(f"s{i}", "t", "A", (str(i),), 1, T, T, T, T) for i in range(3)]
    roots = {"full": str(tmp_path / "full"), "empty": str(tmp_path / "empty")}
    with beam.Pipeline(runner=FnApiRunner()) as p:
        for name, root in roots.items():
            full = name == "full"
            outputs = {
                "articles": p | f"Articles{name}" >> beam.Create([]),
                "stories": p | f"Stories{name}" >> beam.Create(stories if full else []),
                "failures": p | f"Failures{name}" >> beam.Create(failures if full else []),
                "inputs": (p | f"Inputs{name}" >> beam.Create([1] * 10 if full else []),),
            }
            _ = outputs | f"Write{name}" >> WriteOutputs(root, "run1", settings)

    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert (full["inputs"], full["failed"], full["stories"], full["unaccounted"]) == (10, 10, 3, 0)
    # 10 rows at 4 a file: 3 shards (by URL hash; a count of 1 or of none would give 1 or 8)
    shards = {shard_of("failures", f, settings, 10) for f in failures}
    assert len(shards) > 1 and shards != {shard_of("failures", f, settings, None) for f in failures}
    found = sorted(path.name for path in (tmp_path / "full" / "failures").glob("*.parquet"))
    assert found == [f"part-run1-{shard:05d}.parquet" for shard in sorted(shards)]
    assert len(list((tmp_path / "full" / "stories").glob("*.parquet"))) == 1
    assert ds.dataset(str(tmp_path / "full" / "failures")).count_rows() == 10
    empty = json.loads((tmp_path / "empty" / "summary.json").read_text())
    assert all(empty[k] == 0 for k in ("inputs", "articles", "stories", "failed", "filtered"))
    for kind in ("articles", "stories", "failures"):
        assert ds.dataset(str(tmp_path / "empty" / kind)).count_rows() == 0


def test_merging_story_rows_leaves_one_row_per_story_and_no_temporary_folder(tmp_path):
    from transforms.records import Story
    from transforms.sinks import compact_stories

    def story(run: str, ids: tuple[str, ...], hours: int) -> None:
        at = T.replace(hour=hours)
        row = Story("s1", "politics", "Title", ids, len(ids), at, at, at, at.replace(hour=hours + 1))
        fs, base = fsspec.core.url_to_fs(str(tmp_path / "out"))
        write_table(fs, posixpath.join(base, "stories", f"part-{run}-00000.parquet"), "stories", [row], "zstd")

    story("run1", ("a",), 9)
    story("run2", ("b",), 11)
    assert compact_stories(str(tmp_path / "out"), "run2", SinkSettings()) == 1
    (row,) = ds.dataset(str(tmp_path / "out" / "stories"), format="parquet").to_table().to_pylist()
    assert row["article_ids"] == ["a", "b"] and row["size"] == 2
    assert (row["first_published"].hour, row["last_published"].hour) == (9, 11)
    assert not list((tmp_path / "out").glob("_tmp/*"))


def test_merged_story_row_takes_the_first_headline_when_the_earliest_row_has_none(tmp_path):
    # A story started by untitled articles (plain text, a JSON line without a headline) and
    # continued by a titled one in a later run has that headline, as one run over both gives.
    from transforms.records import Story
    from transforms.sinks import compact_stories

    fs, base = fsspec.core.url_to_fs(str(tmp_path / "out"))
    for run, title, ids, hour in (("run1", "", ("a",), 9), ("run2", "Bridge closed", ("a", "b"), 11)):
        at = T.replace(hour=hour)
        row = Story("s1", "politics", title, ids, len(ids), at, at, at, at.replace(hour=hour + 1))
        write_table(fs, posixpath.join(base, "stories", f"part-{run}-00000.parquet"), "stories", [row], "zstd")
    compact_stories(str(tmp_path / "out"), "run2", SinkSettings())
    (row,) = ds.dataset(str(tmp_path / "out" / "stories"), format="parquet").to_table().to_pylist()
    assert row["title"] == "Bridge closed" and row["article_ids"] == ["a", "b"]


def test_merging_keeps_single_rows_as_they_are_and_merges_repeated_ones_as_all_rows_merged(tmp_path):
    # compact_stories merges in Python only the stories with several rows; the result equals
    # merging every row (the rule, ``_merged_story_rows``), with untitled and undated rows.
    import dataclasses
    import random
    from datetime import timedelta

    from transforms.records import Story
    from transforms.sinks import _merged_story_rows, compact_stories

    rng = random.Random(5)
    fs, base = fsspec.core.url_to_fs(str(tmp_path / "out"))
    every = []
    for run in ("run1", "run2", "run3"):
        rows = {}
        for _ in range(60):
            sid = f"{rng.randrange(120):016x}"
            at = None if rng.random() < 0.1 else T + timedelta(hours=rng.randrange(100))
            ids = tuple(sorted({f"{rng.randrange(500):016x}" for _ in range(rng.randrange(1, 4))}))
            title = rng.choice(["", "Bridge closed", f"Headline {sid[-3:]}"])
            end = None if at is None else at + timedelta(hours=1)
            rows[sid] = Story(sid, "politics", title, ids, len(ids), at, at, at, end)
        every.extend(rows.values())
        write_table(
            fs, posixpath.join(base, "stories", f"part-{run}-00000.parquet"), "stories", list(rows.values()), "zstd"
        )
    expected = sorted(
        _merged_story_rows([dataclasses.asdict(s) | {"article_ids": list(s.article_ids)} for s in every]),
        key=lambda s: s.story_id,
    )
    assert compact_stories(str(tmp_path / "out"), "run3", SinkSettings()) == len(expected)
    got = ds.dataset(str(tmp_path / "out" / "stories"), format="parquet").to_table().to_pylist()
    assert [r["story_id"] for r in got] == [s.story_id for s in expected]
    for row, story in zip(got, expected, strict=True):
        assert row == dict(dataclasses.asdict(story), article_ids=list(story.article_ids)), story.story_id
    assert len(fs.find(posixpath.join(base, "stories"))) == 1
    # nothing repeated, one file: left as it is
    before = fs.info(fs.find(posixpath.join(base, "stories"))[0])["mtime"]
    assert compact_stories(str(tmp_path / "out"), "run4", SinkSettings()) == len(expected)
    assert fs.info(fs.find(posixpath.join(base, "stories"))[0])["mtime"] == before
