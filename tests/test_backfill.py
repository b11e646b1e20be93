"""Backfill: batched runs commit one by one; --resume continues after a kill without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipeline.main import batch_progress, batches_of, plan_batches, remaining_inputs, run
from transforms.sinks import SinkSettings, commit_outputs, read_manifest, remove_orphans
from transforms.sources import input_part, parse_input, write_warc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "configs" / "sample"))


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """The bundled sample's pages spread over three WARC files."""
    from make_sample import pages

    folder = tmp_path_factory.mktemp("warcs")
    all_pages = pages()
    for i in range(3):
        write_warc(str(folder / f"part-{i}.warc.gz"), all_pages[i::3])
    config = folder / "backfill.yaml"
    config.write_text("run:\n  source: warc\n  batch_files: 1\n  max_failure_ratio: 1.0\n")
    return folder, config


def ids(out: Path) -> set[tuple[str, str, str | None]]:
    table = ds.dataset(str(out / "articles"), format="parquet", partitioning="hive").to_table()
    rows = table.to_pylist()
    assert len(rows) == len({r["article_id"] for r in rows}), "duplicate article rows"
    return {(r["article_id"], r["story_id"], r["duplicate_of"]) for r in rows}


def test_batches_of():
    assert batches_of(("a", "b", "c"), 2) == [("a", "b"), ("c",)]
    assert batches_of(("a", "b"), 0) == [("a", "b")]


def test_plan_batches_cut_large_archives_into_parts_and_keep_order(tmp_path):
    sizes = {"a.warc.gz": 5000, "b.warc.gz": 1000, "c.warc": 3000, "d.jsonl.gz": 2500}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    a, b, c, d = (str(tmp_path / name) for name in sizes)
    limit_mb = 2000 / (1 << 20)
    assert plan_batches([a, b, c], "warc", 0, limit_mb) == [
        (input_part(a, 0, 1666),),
        (input_part(a, 1666, 3333),),
        (input_part(a, 3333, 5000),),
        (b,),
        (c,),  # not gzipped: no member boundaries to cut at, so whole and alone
    ]
    assert plan_batches([b, b], "warc", 0, limit_mb) == [(b, b)]  # 2,000 bytes fit
    assert plan_batches([b, b, b], "warc", 2, 1.0) == [(b, b), (b,)]  # batch_files closes first
    assert plan_batches([d], "jsonl", 0, limit_mb) == [(d,)]  # only WARC files are cut
    assert plan_batches([a, b], "warc", 1, 0) == [(a,), (b,)]  # no size limit: as batch_files
    # a remaining part (after --resume) larger than the limit is cut too, within its bounds
    assert plan_batches([input_part(a, 1000, 5000)], "warc", 0, limit_mb) == [
        (input_part(a, 1000, 3000),),
        (input_part(a, 3000, 5000),),
    ]
    assert parse_input(input_part(a, 7, 9)) == (a, 7, 9) and parse_input(a) == (a, 0, None)


def test_remaining_inputs_are_the_gaps_between_done_parts(tmp_path):
    for name, size in (("a.warc.gz", 5000), ("b.warc.gz", 1000), ("c.warc.gz", 10)):
        (tmp_path / name).write_bytes(b"x" * size)
    a, b, c = (str(tmp_path / name) for name in ("a.warc.gz", "b.warc.gz", "c.warc.gz"))
    done = {input_part(a, 0, 1666), input_part(a, 3333, 5000), b, input_part(c, 0, 4), input_part(c, 4, 10)}
    assert remaining_inputs((a, b, c), done) == ([input_part(a, 1666, 3333)], 2)
    assert remaining_inputs((a,), {input_part(a, 1000, 2000)}) == (
        [input_part(a, 0, 1000), input_part(a, 2000, 5000)],
        0,
    )
    assert remaining_inputs((a, b), set()) == ([a, b], 0)


def test_size_batches_and_resume_read_every_record_once(tmp_path):
    """One archive cut into parts by run.batch_mb: the same articles as one whole run; a
    batch whose commit is lost is read again on --resume, and only it."""
    from make_sample import pages

    archive = tmp_path / "all.warc.gz"
    write_warc(str(archive), pages())
    half_mb = archive.stat().st_size / 2 / (1 << 20)
    config = tmp_path / "parts.yaml"
    config.write_text(f"run:\n  source: warc\n  batch_mb: {half_mb + 1e-6}\n  max_failure_ratio: 1.0\n")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(["--source", "warc", "--input", str(archive), "--output", str(whole)]) == 0
    assert run(["--config", str(config), "--input", str(archive), "--output", str(parts)]) == 0
    summary = json.loads((parts / "summary.json").read_text())
    assert len(summary["batches"]) == 2
    assert summary["inputs"] == json.loads((whole / "summary.json").read_text())["inputs"]
    expected = ids(parts)
    assert {i for i, _, _ in expected} == {i for i, _, _ in ids(whole)}
    done, _ = read_manifest(str(parts))
    size = archive.stat().st_size
    # the parts, and the file whole once its last part committed
    assert done == {input_part(str(archive), 0, size // 2), input_part(str(archive), size // 2, size), str(archive)}
    # the second batch's commit is lost (killed before its manifest entry): resume reads it again
    (last,) = [m for m in (parts / "_manifest").iterdir() if m.name.endswith("-b0001.json")]
    last.unlink()
    assert str(archive) not in read_manifest(str(parts))[0]
    assert run(["--config", str(config), "--input", str(archive), "--output", str(parts), "--resume"]) == 0
    assert str(archive) in read_manifest(str(parts))[0]
    assert json.loads((parts / "summary.json").read_text())["inputs"] < summary["inputs"]
    assert ids(parts) == expected


def test_kill_and_resume_gives_the_uninterrupted_result(archives, tmp_path):
    folder, config = archives
    pattern = str(folder / "part-*.warc.gz")
    full = tmp_path / "full"
    assert run(["--config", str(config), "--input", pattern, "--output", str(full)]) == 0
    expected = ids(full)
    summary = json.loads((full / "summary.json").read_text())
    assert len(summary["batches"]) == 3 and summary["inputs"] == 9
    stories = ds.dataset(str(full / "stories"), format="parquet").to_table().to_pylist()
    assert len(stories) == len({s["story_id"] for s in stories})  # compacted: one row per story

    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.main", "--config", str(config), "--input", pattern, "--output", str(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "_manifest").is_dir() and any((out / "_manifest").iterdir()):
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    done, _ = read_manifest(str(out))
    assert 1 <= len(done) <= 3
    assert run(["--config", str(config), "--input", pattern, "--output", str(out), "--resume"]) == 0
    assert ids(out) == expected
    done, _ = read_manifest(str(out))
    assert len(done) == 3
    # a second resume has nothing left to do and changes nothing
    assert run(["--config", str(config), "--input", pattern, "--output", str(out), "--resume"]) == 0
    assert ids(out) == expected


def run_in_batches(tmp_path: Path, files: dict[str, list]) -> tuple[Path, dict[str, dict]]:
    """WARC files (name -> pages), one batch each, in name order -> (output, article row by host)."""
    for name, pages_of_file in files.items():
        write_warc(str(tmp_path / name), pages_of_file)
    config = tmp_path / "batches.yaml"
    config.write_text("run:\n  source: warc\n  batch_files: 1\n")
    out = tmp_path / "out"
    assert run(["--config", str(config), "--input", str(tmp_path / "*.warc.gz"), "--output", str(out)]) == 0
    rows = ds.dataset(str(out / "articles"), format="parquet", partitioning="hive").to_table().to_pylist()
    return out, {r["url"].split("/")[2]: r for r in rows}


def test_a_copy_in_a_later_batch_is_a_duplicate_of_the_article_already_written(tmp_path):
    from make_sample import pages

    bridge, library, match = pages()[0], pages()[5], pages()[6]
    copy = (bridge[0].replace("harbourgazette", "reprints"), *bridge[1:])  # same page, other site
    out, by_host = run_in_batches(tmp_path, {"a.warc.gz": [bridge, library], "b.warc.gz": [copy, match]})
    original, reprint = by_host["www.harbourgazette.example"], by_host["www.reprints.example"]
    assert original["duplicate_of"] is None and original["content_hash"] == reprint["content_hash"]
    assert reprint["duplicate_of"] == original["article_id"]
    assert reprint["story_id"] == original["story_id"]  # linked to the story of the first batch
    assert by_host["portaldinesport.example"]["duplicate_of"] is None
    assert json.loads((out / "summary.json").read_text())["duplicates"] == 1
    assert not list(out.glob("_tmp/*"))  # the second batch's stored known articles went with its commit


def test_a_later_batchs_copy_joins_the_story_of_its_original_after_the_state_forgot_it(tmp_path):
    # Batches that mix publication dates: the second batch holds an article published two
    # months after the first batch's, so the bridge story falls out of the story state
    # (state_retention_days, counted from the newest article). A reprint of the bridge page in
    # the third batch is a duplicate of the written article and must share its story, not
    # found one of its own.
    from make_sample import LIBRARY, page, pages

    bridge = pages()[0]
    late = datetime(2026, 5, 20, 9, tzinfo=UTC)
    library = (
        "https://www.cityhall.example/2026/05/20/library-hours",
        page("City Hall News", "Central library opens on Sundays from June", LIBRARY, late.isoformat()),
        late,
        "text/html; charset=utf-8",
    )
    reprint = (bridge[0].replace("harbourgazette", "reprints"), *bridge[1:])
    # the middle batch matters: the state always keeps the stories its own batch touched
    out, by_host = run_in_batches(tmp_path, {"a.warc.gz": [bridge], "b.warc.gz": [library], "c.warc.gz": [reprint]})
    original, copy = by_host["www.harbourgazette.example"], by_host["www.reprints.example"]
    assert copy["duplicate_of"] == original["article_id"]
    assert copy["story_id"] == original["story_id"]
    stories = ds.dataset(str(out / "stories"), format="parquet").to_table().to_pylist()
    (row,) = [s for s in stories if s["story_id"] == original["story_id"]]
    assert sorted(row["article_ids"]) == sorted([original["article_id"], copy["article_id"]])
    assert len(stories) == 2  # bridge, library


def test_orphans_of_an_interrupted_commit_are_removed(tmp_path):
    root = str(tmp_path / "out")
    run1, run2 = "20260310T090000-aaaaaa", "20260310T100000-bbbbbb-b0001"
    commit_outputs(root, run1, [], {"inputs": 0}, SinkSettings(), inputs=("a.warc.gz",))
    orphan = tmp_path / "out" / "articles" / "date=2026-03-10" / f"part-{run2}-00001.parquet"
    streamed = tmp_path / "out" / "articles" / "date=2026-03-10" / "part-20260310T0000-r1-000003-00001.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"PAR1")
    streamed.write_bytes(b"PAR1")
    # state the killed run staged for its commit
    pending = tmp_path / "out" / "_state" / f"_pending-{run2}-hosts.json"
    pending.parent.mkdir(parents=True, exist_ok=True)
    pending.write_text("{}")
    done, runs = read_manifest(root)
    assert done == {"a.warc.gz"} and runs == {run1}
    removed = remove_orphans(root, runs)
    assert sorted(Path(p).name for p in removed) == sorted([orphan.name, pending.name])
    assert not orphan.exists() and streamed.exists()  # streaming files are not batch orphans
    assert not pending.exists()


def test_resume_finishes_a_run_killed_after_its_last_commit(archives, tmp_path, monkeypatch):
    import pipeline.main as main

    folder, config = archives
    pattern = str(folder / "part-*.warc.gz")
    full = tmp_path / "full"
    assert run(["--config", str(config), "--input", pattern, "--output", str(full)]) == 0
    expected = json.loads((full / "summary.json").read_text())
    assert expected["stories_in_output"] == expected["stories"]
    assert expected["articles_in_output"] == expected["articles"]

    # killed after the third batch committed, before story rows were merged and the
    # invocation's summary was written: summary.json holds the last batch's counts alone
    original = main.invocation_summary

    def killed_after_last_commit(output, parts, skipped=0, sink=None):
        if len(parts) == 3:
            raise SystemExit("killed")
        return original(output, parts, skipped, sink)

    out = tmp_path / "killed"
    monkeypatch.setattr(main, "invocation_summary", killed_after_last_commit)
    with pytest.raises(SystemExit):
        run(["--config", str(config), "--input", pattern, "--output", str(out)])
    monkeypatch.setattr(main, "invocation_summary", original)
    assert json.loads((out / "summary.json").read_text())["inputs"] < 9

    assert run(["--config", str(config), "--input", pattern, "--output", str(out), "--resume"]) == 0
    finished = json.loads((out / "summary.json").read_text())
    keys = ("inputs", "articles", "duplicates", "stories", "filtered", "failed", "failures_by_reason")
    assert {k: finished[k] for k in keys} == {k: expected[k] for k in keys}
    assert finished["stories_in_output"] == expected["stories_in_output"]
    stories = ds.dataset(str(out / "stories"), format="parquet").to_table().to_pylist()
    assert len(stories) == len({s["story_id"] for s in stories}) == expected["stories_in_output"]
    assert ids(out) == ids(full)


def test_merged_story_rows_are_written_with_the_configured_compression(tmp_path):
    """The story rows of several batches are merged into one file after each batch: that file
    is written with sink.compression, as every other file (a reader may lack zstd)."""
    import fsspec
    import pyarrow.parquet as pq

    from pipeline.main import invocation_summary
    from transforms.records import Story
    from transforms.sinks import write_table

    at = datetime(2026, 3, 1, tzinfo=UTC)
    fs, base = fsspec.core.url_to_fs(str(tmp_path / "out"))
    for batch in range(2):  # enough rows that the columns are compressed (not written plain)
        rows = [Story(f"{i:016x}", "general", "T", (f"{batch}{i:015x}",), 1, at, at, at, at) for i in range(200)]
        write_table(fs, f"{base}/stories/part-r-b000{batch}-00000.parquet", "stories", rows, "snappy")
    parts = [{"run_id": f"r-b000{b}", "inputs": 200, "articles": 200} for b in range(2)]
    invocation_summary(str(tmp_path / "out"), parts, sink=SinkSettings(compression="snappy"))
    (merged,) = (tmp_path / "out" / "stories").glob("*.parquet")
    meta = pq.ParquetFile(merged).metadata
    assert meta.num_rows == 200
    codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
    assert "ZSTD" not in codecs and "SNAPPY" in codecs


def test_each_committed_batch_logs_the_counts_so_far_and_the_time_left():
    summary = {"inputs": 3000, "articles": 2700, "duplicates": 40, "filtered": 250, "failed": 50}
    line = batch_progress(3, 12, summary, 600.0)
    assert line.startswith("batch 3/12 committed: 3000 documents so far (articles 2700, duplicates 40,")
    assert "5.0 docs/s" in line and line.endswith("about 30 min left")
    assert batch_progress(1, 2, summary, 20.0).endswith("about 20s left")
    assert "left" not in batch_progress(12, 12, summary, 2400.0)
