"""Does a backfill slow down as its output grows? One batch of pages appended to outputs that
already hold N articles (and N/3 story rows), against the same batch into an empty output.

    python -m benchmarks.growth [--held 0 100000 300000] [--pages 200] [--workers 1]

Each later batch of a backfill (``run.batch_mb``), every ``--resume`` and every appending run
carries what the output holds: the article ids (already-ingested pages are skipped), the
content hashes (a copy of a written article is its duplicate) and their stories, and merges the
story rows after it commits. Prints, per N: the run's seconds as storybeam reports them, peak
memory of the process tree, and the seconds the story-row merge takes on its own. The held
articles are synthetic rows (ids, hashes and story ids as storybeam makes them, empty texts):
what is measured is the bookkeeping, not extraction. The pages come from
../shared/data/trafilatura_eval (benchmarks.corpus).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _hex(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def fill_output(root: Path, held: int) -> None:
    """An output holding ``held`` article rows and ``held // 3`` story rows (one file each)."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from transforms.records import Story
    from transforms.schemas import ARTICLE_SCHEMA
    from transforms.sinks import write_table

    root.mkdir(parents=True)
    if not held:
        return
    fs = fsspec.filesystem("file")
    at = datetime(2001, 1, 1, tzinfo=timezone.utc)
    stories = [_hex(f"s{i // 3}") for i in range(held)]
    columns = {}
    for field in ARTICLE_SCHEMA:
        if field.name == "article_id":
            columns[field.name] = [_hex(f"a{i}") for i in range(held)]
        elif field.name == "content_hash":
            columns[field.name] = [_hex(f"h{i}") for i in range(held)]
        elif field.name == "story_id":
            columns[field.name] = stories
        elif pa.types.is_timestamp(field.type):
            columns[field.name] = [at] * held
        elif pa.types.is_string(field.type) and not field.nullable:
            columns[field.name] = [""] * held
        else:
            columns[field.name] = [None] * held
    table = pa.table(columns, schema=ARTICLE_SCHEMA)
    (root / "articles" / "date=2001-01-01").mkdir(parents=True)
    pq.write_table(table, str(root / "articles" / "date=2001-01-01" / "part-held-00000.parquet"))
    rows = []
    for s in range(held // 3):
        start = at + timedelta(minutes=s)
        ids = tuple(sorted(_hex(f"a{3 * s + j}") for j in range(3)))
        rows.append(
            Story(_hex(f"s{s}"), "world", f"story {s}", ids, 3, start, start, start, start + timedelta(hours=1))
        )
    write_table(fs, str(root / "stories" / "part-held-c0000.parquet"), "stories", rows, "zstd")


def run_append(pattern: str, out: Path, config: Path, workers: int) -> tuple[float, float, dict]:
    """(seconds storybeam reports, peak RSS MB of the process tree, summary)."""
    import re
    import subprocess

    from benchmarks.throughput import watch_memory

    cmd = [sys.executable, "-m", "pipeline.main", "--config", str(config), "--source", "warc"]
    cmd += ["--input", pattern, "--output", str(out)]
    if workers > 1:
        cmd += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = watch_memory([proc])
    stdout, stderr = proc.communicate()
    if proc.returncode not in (0, 3):
        raise SystemExit(f"pipeline failed ({proc.returncode}):\n{stderr[-3000:]}")
    secs = float(re.search(r"wrote .* in ([0-9.]+)s", stdout).group(1))
    return secs, peak[0], json.loads((out / "summary.json").read_text())


def merge_seconds(held: int, batch: int = 4000) -> float:
    """Seconds of ``compact_stories`` when a batch's ``batch`` story rows (500 of them
    continuing held stories) meet ``held // 3`` held ones."""
    import fsspec

    from transforms.records import Story
    from transforms.sinks import SinkSettings, compact_stories, write_table

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "out"
        fill_output(root, held)
        fs = fsspec.filesystem("file")
        at = datetime(2001, 2, 1, tzinfo=timezone.utc)
        continued = min(500, held // 3)
        ids = [_hex(f"s{held // 3 - 1 - i}") for i in range(continued)]
        ids += [_hex(f"new{i}") for i in range(batch - continued)]
        rows = [Story(s, "world", "", (_hex(f"b{s}"),), 1, at, at, at, at) for s in ids]
        write_table(fs, str(root / "stories" / "part-batch-00000.parquet"), "stories", rows, "zstd")
        started = time.perf_counter()
        compact_stories(str(root), "batch", SinkSettings())
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--held", type=int, nargs="+", default=[0, 100_000, 300_000])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    from benchmarks.corpus import build_warc

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_warc(str(work / "pages"), args.pages, files=2)
        config = work / "append.yaml"
        topics = (REPO / "configs" / "topics.yaml").resolve()
        config.write_text(f"sink:\n  mode: append\nstories:\n  topics_file: {topics}\n")
        print(f"{args.pages} pages appended, {args.workers} worker(s); held: articles already in the output")
        header = f"{'held':>8} | {'run s':>6} | {'vs empty':>8} | {'peak MB':>7} | {'articles':>8} | {'merge s':>7}"
        print(header)
        print("-" * len(header))
        empty = None
        for held in args.held:
            out = work / f"out-{held}"
            fill_output(out, held)
            secs, peak, summary = run_append(str(work / "pages-*.warc.gz"), out, config, args.workers)
            empty = empty or secs
            print(
                f"{held:>8} | {secs:>6.1f} | {secs / empty:>8.2f} | {peak:>7.0f} | {summary['articles']:>8}"
                f" | {merge_seconds(held):>7.2f}"
            )
            shutil.rmtree(out)
    print("run s: as storybeam reports it (no interpreter start); vs empty: over the first row's run.")
    print("merge s: compact_stories alone, 4,000 new story rows (500 continuing held stories) against the held ones.")


if __name__ == "__main__":
    main()
